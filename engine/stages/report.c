/* engine/stages/report.c: the per-layer sensitivity Markdown table (see report.h). */
#include "engine/stages/report.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct text_buf {
  char *s;
  size_t len, cap;
  int oom;
} text_buf;

static void put(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text_buf *t, const char *fmt, ...) {
  if (t->oom) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (t->len + (size_t)n + 1 > t->cap) {
    size_t cap = (t->len + (size_t)n + 1) * 2;
    char *s = realloc(t->s, cap);
    if (!s) {
      t->oom = 1;
      return;
    }
    t->s = s;
    t->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
  va_end(ap);
  t->len += (size_t)n;
}

static const aqs_group_score *find(const aqs_scores *sc, int layer, const char *kind) {
  for (size_t i = 0; i < sc->ngroups; i++)
    if (sc->groups[i].layer == layer && strcmp(sc->groups[i].kind, kind) == 0) return &sc->groups[i];
  return NULL;
}

char *aqs_sensitivity_markdown(const char *recipe, const aqs_scores *sc, const aqs_plan *plan) {
  static const char *const kinds[] = {"qkv", "o", "gate_up", "down"};
  text_buf t = {0};
  put(&t, "# Per-layer sensitivity: %s\n\n", recipe);
  put(&t, "Method `%s`, scope `%s`, %lld scored tokens in %lld sequences (backend %s, %s).\n", sc->method,
      sc->scope, (long long)sc->n_tokens, (long long)sc->n_seqs, sc->backend, sc->precision);
  put(&t, "Each cell: the group's FP8 sensitivity score and its format in this plan "
          "(**FP8** in bold).\n\n");
  put(&t, "| layer | qkv | o | gate_up | down |\n|---:|---:|---:|---:|---:|\n");
  int max_layer = -1;
  for (size_t i = 0; i < sc->ngroups; i++)
    if (sc->groups[i].layer > max_layer) max_layer = sc->groups[i].layer;
  for (int layer = 0; layer <= max_layer; layer++) {
    put(&t, "| %d |", layer);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
      const aqs_group_score *g = find(sc, layer, kinds[k]);
      if (!g) {
        put(&t, " - |");
        continue;
      }
      int fp8 = aqs_plan_format(plan, g->id) == AQS_FMT_FP8;
      put(&t, fp8 ? " **%.3e FP8** |" : " %.3e BF16 |", g->score);
    }
    put(&t, "\n");
  }
  size_t *rank = aqs_scores_ranking(sc);
  if (!rank) t.oom = 1;
  put(&t, "\nRanking, least sensitive first (the order coverage recipes quantize in):\n\n");
  for (size_t i = 0; rank && i < sc->ngroups; i++) {
    const aqs_group_score *g = &sc->groups[rank[i]];
    put(&t, "%zu. `%s` %.3e%s\n", i + 1, g->id, g->score,
        aqs_plan_format(plan, g->id) == AQS_FMT_FP8 ? " (FP8)" : "");
  }
  free(rank);
  if (t.oom) {
    free(t.s);
    return NULL;
  }
  return t.s;
}
