/* engine/stages/quality_report.c: `aqs report` (quality_report.h): names -> cached eval rows ->
 * figures (engine/plot) and report.md. */
#include "engine/stages/quality_report.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "engine/compute/scores.h"
#include "engine/plot/plot.h"
#include "engine/stages/build.h"
#include "engine/stages/build_names.h"
#include "engine/stages/ckpt_store.h"

const char *const aqs_report_figure_names[AQS_REPORT_FIGURES] = {
    "sensitivity_heatmap.png", "quality_kl.png", "quality_ppl.png", "checkpoint_size.png"};

static const char *const kinds[] = {"qkv", "o", "gate_up", "down"};
#define NKINDS 4

/* ---- names ---- */

/* Every recipe built from this model (newest build per recipe, natural order), then bf16. */
static aqs_status default_names(const aqs_eval_opts *o, char ***names_out, size_t *n_out, aqs_err *e) {
  aqs_digest source;
  aqs_status st = aqs_eval_source(o, &source, e);
  if (st) return st;
  aqs_build_entry *list;
  size_t n;
  if ((st = aqs_build_list(o->store, &list, &n, e))) return st;
  char **names = calloc(n + 1, sizeof *names);
  size_t k = 0;
  for (size_t i = 0; names && i < n; i++) {
    if (!aqs_digest_eq(&list[i].model, &source)) continue;
    if (k > 0 && strcmp(names[k - 1], list[i].recipe) == 0) continue; /* newest first per recipe */
    names[k++] = strdup(list[i].recipe);
  }
  aqs_build_list_free(list, n);
  if (!names) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  if (k == 0) {
    free(names);
    return aqs_errf(e, AQS_ERR_NOT_FOUND,
                    "no build of %s in %s: build some recipes first (aqs build recipe top10 ... top100)",
                    o->model_dir, aqs_store_path(o->store));
  }
  names[k++] = strdup(AQS_EVAL_BASELINE);
  *names_out = names;
  *n_out = k;
  return AQS_OK;
}

/* ---- figures ---- */

static aqs_status save(aqs_canvas *c, const char *dir, const char *name, aqs_err *e) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  aqs_status st = aqs_canvas_write_png(c, path, e);
  aqs_canvas_free(c);
  return st;
}

/* Heat map of the first built row's sensitivity: layers x group kind; the most sensitive 10 %
 * of the groups (at least one) outlined. */
static aqs_status figure_heatmap(const aqs_eval_opts *o, const aqs_eval_row *rows, size_t n, const char *dir,
                                 char *marked_ids, size_t marked_len, aqs_err *e) {
  const aqs_eval_row *r = NULL;
  for (size_t i = 0; i < n && !r; i++)
    if (rows[i].has_sensitivity) r = &rows[i];
  aqs_scores sc = {0};
  int L = 0;
  aqs_status st = r ? aqs_build_load_scores(o->store, &r->sensitivity, &sc, e) : AQS_OK;
  if (st) return st;
  for (size_t g = 0; g < sc.ngroups; g++)
    if (strncmp(sc.groups[g].id, "lm.", 3) == 0 && sc.groups[g].layer + 1 > L) L = sc.groups[g].layer + 1;
  if (L == 0) L = 1;
  double *v = calloc((size_t)L * NKINDS, sizeof *v);
  unsigned char *mark = calloc((size_t)L * NKINDS, 1);
  char (*labels)[16] = calloc((size_t)L, sizeof *labels);
  const char **row_labels = calloc((size_t)L, sizeof *row_labels);
  size_t *rank = sc.ngroups ? aqs_scores_ranking(&sc) : NULL;
  if (!v || !mark || !labels || !row_labels || (sc.ngroups && !rank)) {
    st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int l = 0; l < L; l++) {
    snprintf(labels[l], sizeof labels[l], "%d", l);
    row_labels[l] = labels[l];
  }
  size_t n_lm = 0;
  for (size_t g = 0; g < sc.ngroups; g++)
    for (int k = 0; k < NKINDS; k++)
      if (strncmp(sc.groups[g].id, "lm.", 3) == 0 && strcmp(sc.groups[g].kind, kinds[k]) == 0) {
        v[sc.groups[g].layer * NKINDS + k] = sc.groups[g].score;
        n_lm++;
      }
  size_t n_mark = (n_lm + 5) / 10, marked = 0;
  if (n_mark < 1) n_mark = 1;
  for (size_t i = sc.ngroups; i-- > 0 && marked < n_mark;) { /* ranking is least sensitive first */
    const aqs_group_score *g = &sc.groups[rank[i]];
    for (int k = 0; k < NKINDS; k++)
      if (strncmp(g->id, "lm.", 3) == 0 && strcmp(g->kind, kinds[k]) == 0) {
        mark[g->layer * NKINDS + k] = 1;
        size_t used = strlen(marked_ids);
        snprintf(marked_ids + used, marked_len - used, "%s%s", marked ? ", " : "", g->id);
        marked++;
      }
  }
  char title[160], mark_label[64];
  snprintf(title, sizeof title, "FP8 sensitivity (%s, %s)", r ? r->name : "-", sc.method[0] ? sc.method : "none");
  snprintf(mark_label, sizeof mark_label, "most sensitive %zu", n_mark);
  aqs_heatmap h = {.title = title, .rows = L, .cols = NKINDS, .values = v, .marked = mark,
                   .mark_label = mark_label, .row_labels = row_labels, .col_labels = kinds,
                   .row_title = "language layer", .col_title = "group", .value_title = "score (log)"};
  aqs_canvas c;
  int cell_h = L > 40 ? 18 : L > 20 ? 24 : 40;
  if ((st = aqs_canvas_new(900, 190 + L * cell_h, &c, e))) goto done;
  aqs_chart_heatmap(&c, &h);
  st = save(&c, dir, aqs_report_figure_names[0], e);
done:
  free(v);
  free(mark);
  free(labels);
  free(row_labels);
  free(rank);
  aqs_scores_free(&sc);
  return st;
}

static int cmp_x(const void *a, const void *b) {
  const double *x = a, *y = b;
  return (x[0] > y[0]) - (x[0] < y[0]);
}

/* KL or perplexity against effective bits: one series per slice order, BF16 as a point. */
static aqs_status figure_quality(const aqs_eval_row *rows, size_t n, int ppl, const char *dir, const char *file,
                                 aqs_err *e) {
  static const struct {
    const char *order, *label;
    uint32_t rgb;
    int marker;
    int kv;
  } kSeries[] = {{"least_sensitive_first", "sensitivity order", 0x1f77b4u, 1, 0},
                 {"most_sensitive_first", "most_sensitive_first", 0xd62728u, 2, 0},
                 {"random", "random", 0xff7f0eu, 3, 0},
                 {"*", "FP8 KV cache", 0x9467bdu, 0, 1},
                 {"-", "BF16", 0x2ca02cu, 0, 0}};
  const int NS = 5;
  double *pts = calloc(n * 2 + 2, sizeof *pts), *xs = calloc(n * NS + 1, sizeof *xs), *ys = calloc(n * NS + 1, sizeof *ys);
  if (!pts || !xs || !ys) {
    free(pts), free(xs), free(ys);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  aqs_series series[5];
  int ns = 0;
  for (int s = 0; s < NS; s++) {
    int k = 0;
    for (size_t i = 0; i < n; i++)
      if (rows[i].kv_fp8 == kSeries[s].kv && (kSeries[s].kv || strcmp(rows[i].order, kSeries[s].order) == 0) &&
          (ppl || strcmp(rows[i].name, AQS_EVAL_BASELINE) != 0)) { /* KL of BF16 is 0: no log point */
        pts[2 * k] = rows[i].effective_bits;
        pts[2 * k + 1] = ppl ? rows[i].m.ppl : rows[i].m.kl_mean;
        k++;
      }
    if (!k) continue;
    qsort(pts, (size_t)k, 2 * sizeof *pts, cmp_x);
    double *x = xs + (size_t)s * n, *y = ys + (size_t)s * n;
    for (int i = 0; i < k; i++) x[i] = pts[2 * i], y[i] = pts[2 * i + 1];
    series[ns++] = (aqs_series){kSeries[s].label, x, y, k, kSeries[s].rgb, kSeries[s].marker, s < 2 && k > 1};
  }
  aqs_linechart lc = {.title = ppl ? "Perplexity vs effective bits" : "KL(BF16 || scheme) vs effective bits",
                      .x_title = "effective bits per weight",
                      .y_title = ppl ? "perplexity (held-out captions)" : "mean KL per token (nats, log)",
                      .log_y = !ppl, .series = series, .n_series = ns};
  aqs_canvas c;
  aqs_status st = aqs_canvas_new(960, 600, &c, e);
  if (!st) {
    aqs_chart_lines(&c, &lc);
    st = save(&c, dir, file, e);
  }
  free(pts), free(xs), free(ys);
  return st;
}

/* Distinct tensor bytes of the built checkpoints (what the store holds for them). */
static aqs_status family_bytes(aqs_store *s, const aqs_eval_row *rows, size_t n, uint64_t *logical,
                               uint64_t *stored, aqs_err *e) {
  *logical = *stored = 0;
  json_t *seen = json_object();
  aqs_status st = seen ? AQS_OK : aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  for (size_t i = 0; !st && i < n; i++) {
    if (strcmp(rows[i].name, AQS_EVAL_BASELINE) == 0) continue;
    *logical += rows[i].ckpt_bytes;
    json_t *ck;
    if ((st = aqs_ckpt_load_manifest(s, &rows[i].checkpoint, "aqs-checkpoint", &ck, e))) break;
    size_t fi;
    json_t *f;
    json_array_foreach(json_object_get(ck, "files"), fi, f) {
      const char *type = json_string_value(json_object_get(f, "type"));
      aqs_digest d;
      if (st || !type || strcmp(type, "shard") != 0) continue;
      if ((st = aqs_digest_parse(json_string_value(json_object_get(f, "digest")), &d, e))) break;
      json_t *sh;
      if ((st = aqs_ckpt_load_manifest(s, &d, "aqs-shard", &sh, e))) break;
      size_t ti;
      json_t *t;
      json_array_foreach(json_object_get(sh, "tensors"), ti, t) {
        const char *dg = json_string_value(json_array_get(t, 1));
        if (dg && !json_object_get(seen, dg)) {
          json_object_set_new(seen, dg, json_true());
          *stored += (uint64_t)json_integer_value(json_array_get(t, 2));
        }
      }
      json_decref(sh);
    }
    json_decref(ck);
  }
  json_decref(seen);
  return st;
}

static void mib(char *buf, size_t n, uint64_t bytes) { snprintf(buf, n, "%.2f MiB", (double)bytes / 1048576.0); }

static aqs_status figure_sizes(const aqs_eval_row *rows, size_t n, uint64_t logical, uint64_t stored,
                               const char *dir, aqs_err *e) {
  size_t nb = n + 2;
  const char **labels = calloc(nb, sizeof *labels), **texts = calloc(nb, sizeof *texts);
  double *vals = calloc(nb, sizeof *vals);
  uint32_t *rgb = calloc(nb, sizeof *rgb);
  char (*tbuf)[48] = calloc(nb, sizeof *tbuf);
  if (!labels || !texts || !vals || !rgb || !tbuf) {
    free(labels), free(texts), free(vals), free(rgb), free(tbuf);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    labels[k] = rows[i].name;
    vals[k] = (double)rows[i].ckpt_bytes / 1048576.0;
    rgb[k] = strcmp(rows[i].name, AQS_EVAL_BASELINE) == 0 ? 0x2ca02cu : 0x1f77b4u;
    snprintf(tbuf[k], sizeof tbuf[k], "%.2f MiB, %.0f%%", vals[k],
             rows[i].bf16_bytes ? 100.0 * (double)rows[i].ckpt_bytes / (double)rows[i].bf16_bytes : 0.0);
    texts[k] = tbuf[k];
    k++;
  }
  const struct {
    const char *label;
    uint64_t bytes;
    uint32_t rgb;
  } family[2] = {{"all built (files)", logical, 0x9a9a9au}, {"all built (store)", stored, 0xff7f0eu}};
  for (int f = 0; f < 2; f++, k++) {
    labels[k] = family[f].label;
    vals[k] = (double)family[f].bytes / 1048576.0;
    rgb[k] = family[f].rgb;
    mib(tbuf[k], sizeof tbuf[k], family[f].bytes);
    texts[k] = tbuf[k];
  }
  aqs_barchart b = {.title = "Checkpoint size per scheme (safetensors)", .value_title = "MiB", .n = (int)k,
                    .labels = labels, .values = vals, .rgb = rgb, .value_text = texts};
  aqs_canvas c;
  aqs_status st = aqs_canvas_new(1000, 160 + (int)k * 34, &c, e);
  if (!st) {
    aqs_chart_bars(&c, &b);
    st = save(&c, dir, aqs_report_figure_names[3], e);
  }
  free(labels), free(texts), free(vals), free(rgb), free(tbuf);
  return st;
}

/* ---- report.md ---- */

static aqs_status write_markdown(const aqs_eval_opts *o, const aqs_eval_row *rows, size_t n,
                                 const aqs_report_result *res, aqs_err *e) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  fprintf(f, "# Quality of %zu scheme(s) against BF16\n\n", n);
  fprintf(f, "Source model: `%s`. Eval set: %lld held-out caption sequences (%lld predicted tokens), "
             "backend %s, precision %s: each scheme runs as served (FP8 weights and static input "
             "scales, FP8 GEMM with F32 accumulation, FP8 KV cache where the scheme has one).\n\n",
          o->model_dir, n ? (long long)rows[0].m.n_seqs : 0, n ? (long long)rows[0].m.n_targets : 0,
          o->backend ? o->backend : "cpu", o->precision == AQS_PREC_F32 ? "f32" : "bf16");
  fprintf(f, "| scheme | order | effective bits | FP8 groups | KV cache | perplexity | KL mean | KL p99 | "
             "top-1 | last-token MSE | size |\n| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (size_t i = 0; i < n; i++) {
    const aqs_eval_row *r = &rows[i];
    fprintf(f, "| %s | %s | %.2f | %lld/%lld | %s | %.4f | %.3e | %.3e | %.2f %% | %.3e | %.2f MiB |\n", r->name,
            r->order, r->effective_bits, (long long)r->n_fp8, (long long)r->n_candidates, r->kv_fp8 ? "fp8" : "bf16",
            r->m.ppl, r->m.kl_mean, r->m.kl_p99, 100.0 * r->m.top1, r->m.last_mse, (double)r->ckpt_bytes / 1048576.0);
  }
  fprintf(f, "\nBF16 perplexity on the same tokens: %.4f.\n\n", n ? rows[0].m.ref_ppl : 0.0);
  fprintf(f, "## Sensitivity\n\n![Sensitivity heat map](%s)\n\nFP8 sensitivity score of each language-model "
             "group (log colour); outlined: the most sensitive groups, the last a least-sensitive-first "
             "order quantizes: %s.\n\n", aqs_report_figure_names[0], res->most_sensitive[0] ? res->most_sensitive : "none");
  fprintf(f, "## Quality against effective bits\n\n![KL against effective bits](%s)\n\n![Perplexity against "
             "effective bits](%s)\n\nThe sensitivity order (least sensitive groups first) beside the control "
             "orders: where its curve lies below theirs, the ranking is worth something.\n\n",
          aqs_report_figure_names[1], aqs_report_figure_names[2]);
  fprintf(f, "## Size\n\n![Checkpoint sizes](%s)\n\nThe built checkpoints hold %.2f MiB of safetensors "
             "files together; the store keeps %.2f MiB of distinct tensors for them (a tensor two schemes "
             "share is stored once).\n",
          aqs_report_figure_names[3], (double)res->family_logical_bytes / 1048576.0,
          (double)res->family_stored_bytes / 1048576.0);
  if (fclose(f) != 0) {
    free(text);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  aqs_status st = aqs_file_write_atomic(res->markdown_path, text, len, e);
  free(text);
  return st;
}

aqs_status aqs_quality_report(const aqs_eval_opts *o, const char *const *names, size_t n, const char *out_dir,
                              aqs_report_result *res, aqs_err *e) {
  memset(res, 0, sizeof *res);
  char **owned = NULL;
  aqs_status st = AQS_OK;
  if (n == 0) {
    size_t k = 0;
    if (!o->model_dir)
      return aqs_errf(e, AQS_ERR_INVALID, "no model: pass --model DIR or set [model] path in .aqstore");
    if ((st = default_names(o, &owned, &k, e))) return st;
    names = (const char *const *)owned;
    n = k;
  }
  aqs_eval_row *rows = calloc(n, sizeof *rows);
  if (!rows) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  if (!st) st = aqs_eval_names(o, names, n, rows, e);
  if (!st && mkdir(out_dir, 0777) != 0 && errno != EEXIST)
    st = aqs_errno(e, AQS_ERR_IO, errno, "cannot create the report directory %s", out_dir);
  if (!st) {
    res->n_rows = n;
    for (size_t i = 0; i < n; i++) res->n_evaluated += !rows[i].hit;
    snprintf(res->markdown_path, sizeof res->markdown_path, "%s/report.md", out_dir);
    st = family_bytes(o->store, rows, n, &res->family_logical_bytes, &res->family_stored_bytes, e);
  }
  if (!st) st = figure_heatmap(o, rows, n, out_dir, res->most_sensitive, sizeof res->most_sensitive, e);
  if (!st) st = figure_quality(rows, n, 0, out_dir, aqs_report_figure_names[1], e);
  if (!st) st = figure_quality(rows, n, 1, out_dir, aqs_report_figure_names[2], e);
  if (!st) st = figure_sizes(rows, n, res->family_logical_bytes, res->family_stored_bytes, out_dir, e);
  if (!st) st = write_markdown(o, rows, n, res, e);
  free(rows);
  if (owned) {
    for (size_t i = 0; i < n; i++) free(owned[i]);
    free(owned);
  }
  return st;
}
