/* tests/unit/export/export_fixture.h: helpers shared by the export and diff tests (header-only,
 * static): a tiny synthetic Qwen2.5-VL checkpoint, an amax table for it, plans "none", "half",
 * "all" and coverage-like ones, and running an export into a fresh directory. */
#ifndef AQS_TEST_EXPORT_FIXTURE_H
#define AQS_TEST_EXPORT_FIXTURE_H

#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/export/export.h"
#include "engine/export/plan.h"
#include "engine/model/amax.h"
#include "engine/model/qwen_config.h"
#include "engine/model/synth.h"

typedef struct fx_model {
  char *root;              /* temp dir holding everything */
  char src[4096];          /* synthetic checkpoint */
  aqs_qwen_model *model;
  aqs_amax_table amax;
} fx_model;

static inline void fx_check(aqs_status st, const aqs_err *e) {
  if (st != AQS_OK) {
    fprintf(stderr, "unexpected error: %s: %s\n", aqs_status_name(st), e->msg);
    fail();
  }
}

/* Tiny synthetic model (seed 7) + an amax table with distinct input amaxes per module. */
static inline fx_model *fx_model_new(const char *tag) {
  fx_model *fx = calloc(1, sizeof *fx);
  aqs_err e;
  aqs_err_clear(&e);
  fx->root = tu_mkdtemp(tag);
  snprintf(fx->src, sizeof fx->src, "%s/src", fx->root);
  aqs_synth_opts so = {.preset = "tiny", .seed = 7, .out_dir = fx->src, .naming = AQS_NAMING_HF5,
                       .threads = 1};
  fx_check(aqs_synth_write(&so, &e), &e);
  fx_check(aqs_qwen_model_open(fx->src, &fx->model, NULL, &e), &e);
  for (size_t g = 0; g < fx->model->ngroups; g++)
    for (int k = 0; k < fx->model->groups[g].nmembers; k++)
      fx_check(aqs_amax_set(&fx->amax, fx->model->groups[g].members[k].module,
                            1.5f + 0.25f * (float)g + 0.125f * (float)k, 0.1f, &e), &e);
  return fx;
}

static inline void fx_model_free(fx_model *fx) {
  aqs_qwen_model_free(fx->model);
  aqs_amax_free(&fx->amax);
  tu_rm_rf(fx->root);
  free(fx->root);
  free(fx);
}

/* Plan over the lm_only candidates: group i (in model order) is fp8 when pick(i) != 0. */
static inline aqs_plan *fx_plan(const fx_model *fx, int (*pick)(size_t i, size_t n)) {
  aqs_plan *p = aqs_plan_new();
  snprintf(p->scope, sizeof p->scope, "lm_only");
  size_t n = fx->model->n_lm_groups;
  for (size_t i = 0; i < n; i++) {
    aqs_plan_set(p, fx->model->groups[i].id, pick(i, n) ? AQS_FMT_FP8 : AQS_FMT_BF16, NULL);
    aqs_plan_set_score(p, fx->model->groups[i].id, 0.001 * (double)(i + 1), NULL);
  }
  return p;
}

static inline int fx_pick_none(size_t i, size_t n) { (void)i, (void)n; return 0; }
static inline int fx_pick_all(size_t i, size_t n) { (void)i, (void)n; return 1; }
static inline int fx_pick_half(size_t i, size_t n) { (void)n; return i % 2 == 0; }
/* "top10"-like and "top50"-like: the first ceil(10% / 50% of n) groups. */
static inline int fx_pick_top10(size_t i, size_t n) { return i < (n + 9) / 10; }
static inline int fx_pick_top50(size_t i, size_t n) { return i < (n + 1) / 2; }

/* Exports fx with plan into <root>/<name>; returns the directory path (static per name). */
static inline const char *fx_export(fx_model *fx, const aqs_plan *plan, const char *name,
                             aqs_export_result *res) {
  static char dirs[8][4096];
  static int next;
  char *dir = dirs[next++ % 8];
  snprintf(dir, 4096, "%s/%s", fx->root, name);
  aqs_export_opts o = {.model_dir = fx->src, .amax = &fx->amax, .plan = plan, .out_dir = dir};
  aqs_err e;
  aqs_err_clear(&e);
  aqs_export_result local;
  fx_check(aqs_export_run(&o, res ? res : &local, &e), &e);
  if (!res) aqs_export_result_free(&local);
  return dir;
}

#endif
