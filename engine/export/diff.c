/* engine/export/diff.c: `aqs diff` as a library: hashes every tensor of two export directories,
 * measures the dequantized difference of those that differ, attributes them to groups and checks
 * the proof of diff.h (differing groups == symmetric difference of the plans, nothing else). */
#include "engine/export/diff.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/progress.h"
#include "engine/export/export.h"
#include "engine/model/safetensors.h"
#include "kernels/fp8.h"
#include "store/digest.h"

#define MAX_VIOLATIONS 64

typedef struct diff_side {
  const char *label;            /* "A" / "B" */
  const char *dir;
  json_t *manifest;
  aqs_plan *plan;
  aqs_ckpt *ckpt;
  aqs_digest *digests;          /* parallel to ckpt->tensors */
} diff_side;

typedef struct module_group {
  const char *module;           /* points into a manifest */
  const char *group;
} module_group;

typedef struct diff_ctx {
  diff_side a, b;
  module_group *mg;
  size_t nmg;
  aqs_diff_report *r;
  size_t n_violations_dropped;
} diff_ctx;

static void violation(diff_ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(diff_ctx *x, const char *fmt, ...) {
  aqs_diff_report *r = x->r;
  if (r->nviolations >= MAX_VIOLATIONS) {
    x->n_violations_dropped++;
    return;
  }
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  char **grown = realloc(r->violations, (r->nviolations + 1) * sizeof *grown);
  if (!grown) return;
  r->violations = grown;
  r->violations[r->nviolations] = strdup(buf);
  if (r->violations[r->nviolations]) r->nviolations++;
}

/* ---- loading ---- */

static aqs_status load_side(diff_side *s, aqs_err *e) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", s->dir, AQS_EXPORT_MANIFEST);
  json_error_t jerr;
  char *text;
  size_t len;
  aqs_err rerr = {0};
  if (aqs_file_read_input(path, AQS_INPUT_DOCUMENT, &text, &len, &rerr) != AQS_OK)
    return aqs_errf(e, rerr.code == AQS_ERR_NOT_FOUND ? AQS_ERR_NOT_FOUND : rerr.code,
                    "%s is not an aqs export: %s", s->dir, rerr.msg);
  s->manifest = json_loadb(text, len, 0, &jerr);
  free(text);
  if (!s->manifest)
    return aqs_errf(e, AQS_ERR_NOT_FOUND, "%s is not an aqs export: cannot read %s: %s", s->dir,
                    path, jerr.text);
  json_t *plan = json_object_get(s->manifest, "plan");
  char *plan_text = plan ? json_dumps(plan, JSON_COMPACT) : NULL;
  if (!plan_text || !json_is_array(json_object_get(s->manifest, "groups")) ||
      !json_is_object(json_object_get(s->manifest, "tensors"))) {
    free(plan_text);
    return aqs_errf(e, AQS_ERR_INVALID, "%s: manifest lacks \"plan\", \"groups\" or \"tensors\"", path);
  }
  aqs_status st = aqs_plan_parse(plan_text, strlen(plan_text), path, &s->plan, e);
  free(plan_text);
  if (st) return st;
  if ((st = aqs_ckpt_open(s->dir, &s->ckpt, e))) return st;
  s->digests = calloc(s->ckpt->ntensors + 1, sizeof *s->digests);
  if (!s->digests) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  return AQS_OK;
}

static void free_side(diff_side *s) {
  json_decref(s->manifest);
  aqs_plan_free(s->plan);
  if (s->ckpt) aqs_ckpt_close(s->ckpt);
  free(s->digests);
}

static void hash_side(diff_side *s, aqs_progress *prog) {
  size_t n = s->ckpt->ntensors;
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t i = 0; i < n; i++) {
    const aqs_st_tensor *t = s->ckpt->tensors[i];
    aqs_sha256_buf(t->data, t->nbytes, &s->digests[i]);
    aqs_progress_add(prog, t->nbytes);
  }
}

static int mg_cmp(const void *a, const void *b) {
  return strcmp(((const module_group *)a)->module, ((const module_group *)b)->module);
}

static aqs_status build_module_map(diff_ctx *x, aqs_err *e) {
  size_t cap = 0;
  const diff_side *sides[2] = {&x->a, &x->b};
  for (int s = 0; s < 2; s++) {
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(sides[s]->manifest, "groups"), i, g)
      cap += json_array_size(json_object_get(g, "members"));
  }
  x->mg = calloc(cap + 1, sizeof *x->mg);
  if (!x->mg) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  for (int s = 0; s < 2; s++) {
    size_t i, k;
    json_t *g, *m;
    json_array_foreach(json_object_get(sides[s]->manifest, "groups"), i, g) {
      const char *id = json_string_value(json_object_get(g, "id"));
      json_array_foreach(json_object_get(g, "members"), k, m) {
        const char *module = json_string_value(json_object_get(m, "module"));
        if (id && module) x->mg[x->nmg++] = (module_group){module, id};
      }
    }
  }
  qsort(x->mg, x->nmg, sizeof *x->mg, mg_cmp);
  return AQS_OK;
}

/* Group of a tensor name: strips .weight/.weight_scale/.input_scale/.bias; *suffix_out set. */
static const char *group_of_tensor(const diff_ctx *x, const char *name, const char **suffix_out) {
  static const char *const suffixes[] = {".weight_scale", ".input_scale", ".weight", ".bias", NULL};
  size_t n = strlen(name);
  *suffix_out = "";
  for (int i = 0; suffixes[i]; i++) {
    size_t sl = strlen(suffixes[i]);
    if (n <= sl || strcmp(name + n - sl, suffixes[i]) != 0) continue;
    char module[256];
    snprintf(module, sizeof module, "%.*s", (int)(n - sl), name);
    module_group key = {module, NULL};
    const module_group *hit = bsearch(&key, x->mg, x->nmg, sizeof *x->mg, mg_cmp);
    *suffix_out = suffixes[i];
    return hit ? hit->group : NULL;
  }
  return NULL;
}

/* ---- dequantized comparison ---- */

/* Values of t as floats (F8 codes x the module's weight_scale). NULL if not a float type. */
static float *dequantize(const aqs_ckpt *c, const aqs_st_tensor *t) {
  float *v = malloc((t->numel ? t->numel : 1) * sizeof *v);
  if (!v) return NULL;
  if (t->dtype == AQS_DT_BF16) {
    aqs_bf16_to_f32_n(t->data, v, t->numel);
  } else if (t->dtype == AQS_DT_F32) {
    memcpy(v, t->data, t->numel * sizeof *v);
  } else if (t->dtype == AQS_DT_F8_E4M3) {
    float scale = 1.0f;
    size_t n = strlen(t->name);
    if (n > 7 && strcmp(t->name + n - 7, ".weight") == 0) {
      char name[300];
      snprintf(name, sizeof name, "%.*s.weight_scale", (int)(n - 7), t->name);
      const aqs_st_tensor *s = aqs_ckpt_find(c, name);
      if (s && s->dtype == AQS_DT_F32 && s->numel == 1) memcpy(&scale, s->data, 4);
    }
    aqs_fp8_dequantize(t->data, t->numel, scale, v);
  } else {
    free(v);
    return NULL;
  }
  return v;
}

static void compare_values(const diff_side *a, const aqs_st_tensor *ta, const diff_side *b,
                           const aqs_st_tensor *tb, aqs_diff_tensor *d) {
  d->max_abs = d->rel_l2 = NAN;
  if (ta->numel != tb->numel || ta->ndim != tb->ndim ||
      memcmp(ta->shape, tb->shape, sizeof ta->shape[0] * (size_t)ta->ndim) != 0)
    return;
  float *va = dequantize(a->ckpt, ta), *vb = dequantize(b->ckpt, tb);
  if (va && vb) {
    double max_abs = 0, diff2 = 0, ref2 = 0;
    for (uint64_t i = 0; i < ta->numel; i++) {
      double dv = fabs((double)va[i] - (double)vb[i]);
      if (dv > max_abs || isnan(dv)) max_abs = dv;
      diff2 += dv * dv;
      ref2 += (double)va[i] * va[i];
    }
    d->max_abs = max_abs;
    d->rel_l2 = ref2 > 0 ? sqrt(diff2 / ref2) : diff2 > 0 ? INFINITY : 0.0;
  }
  free(va);
  free(vb);
}

/* ---- manifests vs bytes ---- */

static void check_against_manifest(diff_ctx *x, const diff_side *s) {
  json_t *tensors = json_object_get(s->manifest, "tensors");
  char hex[AQS_DIGEST_STR_SIZE];
  for (size_t i = 0; i < s->ckpt->ntensors; i++) {
    const char *name = s->ckpt->tensors[i]->name;
    const char *want = json_string_value(json_object_get(json_object_get(tensors, name), "sha256"));
    if (!want)
      violation(x, "%s (%s): tensor %s is not listed in its manifest", s->label, s->dir, name);
    else if (strcmp(want, aqs_digest_str(&s->digests[i], hex)) != 0)
      violation(x, "%s (%s): tensor %s has digest %.19s but its manifest says %.19s: changed after "
                "export (tampered or corrupt)", s->label, s->dir, name, hex, want);
  }
  const char *key;
  json_t *val;
  json_object_foreach(tensors, key, val) if (!aqs_ckpt_find(s->ckpt, key))
    violation(x, "%s (%s): manifest lists tensor %s but no shard holds it", s->label, s->dir, key);
}

/* ---- the comparison ---- */

static aqs_diff_group *group_entry(aqs_diff_report *r, const char *id) {
  for (size_t i = 0; i < r->ngroups; i++)
    if (strcmp(r->groups[i].id, id) == 0) return &r->groups[i];
  aqs_diff_group *grown = realloc(r->groups, (r->ngroups + 1) * sizeof *grown);
  if (!grown) return NULL;
  r->groups = grown;
  aqs_diff_group *g = &r->groups[r->ngroups++];
  memset(g, 0, sizeof *g);
  snprintf(g->id, sizeof g->id, "%s", id);
  return g;
}

static void add_tensor_diff(diff_ctx *x, const aqs_st_tensor *ta, const aqs_st_tensor *tb) {
  aqs_diff_report *r = x->r;
  aqs_diff_tensor *grown = realloc(r->tensors, (r->ntensors + 1) * sizeof *grown);
  if (!grown) return;
  r->tensors = grown;
  aqs_diff_tensor *d = &r->tensors[r->ntensors++];
  memset(d, 0, sizeof *d);
  const char *name = ta ? ta->name : tb->name;
  snprintf(d->name, sizeof d->name, "%s", name);
  d->kind = ta && tb ? AQS_DIFF_CHANGED : ta ? AQS_DIFF_ONLY_A : AQS_DIFF_ONLY_B;
  if (ta) snprintf(d->dtype_a, sizeof d->dtype_a, "%s", aqs_dtype_name(ta->dtype));
  if (tb) snprintf(d->dtype_b, sizeof d->dtype_b, "%s", aqs_dtype_name(tb->dtype));
  d->max_abs = d->rel_l2 = NAN;
  if (ta && tb) compare_values(&x->a, ta, &x->b, tb, d);
  const char *suffix;
  const char *gid = group_of_tensor(x, name, &suffix);
  if (!gid) {
    violation(x, "tensor %s differs but belongs to no quantization group", name);
    return;
  }
  snprintf(d->group, sizeof d->group, "%s", gid);
  aqs_diff_group *g = group_entry(r, gid);
  if (!g) return;
  g->n_differ++;
  if (!isnan(d->max_abs) && d->max_abs > g->max_abs) g->max_abs = d->max_abs;
  if (!isnan(d->rel_l2) && d->rel_l2 > g->rel_l2) g->rel_l2 = d->rel_l2;
  if (strcmp(suffix, ".bias") == 0)
    violation(x, "bias %s differs (group %s); a plan decision never changes a bias", name, gid);
  if (d->kind != AQS_DIFF_CHANGED && strcmp(suffix, ".weight_scale") && strcmp(suffix, ".input_scale"))
    violation(x, "tensor %s exists only in %s", name, ta ? "A" : "B");
}

static void compare_all(diff_ctx *x) {
  const aqs_ckpt *ca = x->a.ckpt, *cb = x->b.ckpt;
  size_t i = 0, j = 0;
  while (i < ca->ntensors || j < cb->ntensors) {
    int c = i == ca->ntensors ? 1 : j == cb->ntensors ? -1
          : strcmp(ca->tensors[i]->name, cb->tensors[j]->name);
    if (c == 0) {
      if (aqs_digest_eq(&x->a.digests[i], &x->b.digests[j]) &&
          ca->tensors[i]->dtype == cb->tensors[j]->dtype)
        x->r->n_identical++;
      else
        add_tensor_diff(x, ca->tensors[i], cb->tensors[j]);
      i++, j++;
    } else if (c < 0) {
      add_tensor_diff(x, ca->tensors[i++], NULL);
    } else {
      add_tensor_diff(x, NULL, cb->tensors[j++]);
    }
  }
}

/* Where a side's plan says fp8 its weights must be F8_E4M3, and BF16 otherwise. */
static void check_formats(diff_ctx *x, const diff_side *s) {
  for (size_t i = 0; i < x->nmg; i++) {
    if (i > 0 && strcmp(x->mg[i].module, x->mg[i - 1].module) == 0) continue;
    char name[300];
    snprintf(name, sizeof name, "%s.weight", x->mg[i].module);
    const aqs_st_tensor *t = aqs_ckpt_find(s->ckpt, name);
    if (!t) {
      violation(x, "%s (%s): weight %s of group %s is missing", s->label, s->dir, name, x->mg[i].group);
      continue;
    }
    int fp8 = aqs_plan_format(s->plan, x->mg[i].group) == AQS_FMT_FP8;
    if (fp8 != (t->dtype == AQS_DT_F8_E4M3))
      violation(x, "%s (%s): group %s is %s in its plan but weight %s is %s", s->label, s->dir,
                x->mg[i].group, fp8 ? "fp8" : "bf16", name, aqs_dtype_name(t->dtype));
  }
}

static int diff_group_cmp(const void *a, const void *b) {
  return aqs_group_id_cmp(((const aqs_diff_group *)a)->id, ((const aqs_diff_group *)b)->id);
}

static void prove(diff_ctx *x) {
  aqs_diff_report *r = x->r;
  const char **plan_diff = NULL;
  size_t n_plan_diff = 0;
  if (aqs_plan_diff(x->a.plan, x->b.plan, &plan_diff, &n_plan_diff, NULL)) return;
  r->n_plan_diff = n_plan_diff;
  for (size_t i = 0; i < n_plan_diff; i++) {
    aqs_diff_group *g = group_entry(r, plan_diff[i]);
    if (!g) continue;
    g->in_plan_diff = 1;
    if (g->n_differ == 0 && r->ntensors > 0)
      violation(x, "plans differ on group %s (A: %s, B: %s) but its tensors are identical",
                g->id, aqs_format_name(aqs_plan_format(x->a.plan, g->id)),
                aqs_format_name(aqs_plan_format(x->b.plan, g->id)));
  }
  for (size_t i = 0; i < r->ngroups; i++) {
    aqs_diff_group *g = &r->groups[i];
    g->format_a = aqs_plan_format(x->a.plan, g->id);
    g->format_b = aqs_plan_format(x->b.plan, g->id);
    if (g->n_differ > 0 && !g->in_plan_diff)
      violation(x, "group %s differs in %zu tensor(s) but both plans make it %s", g->id,
                g->n_differ, aqs_format_name(g->format_a));
  }
  if (r->ngroups > 1) qsort(r->groups, r->ngroups, sizeof *r->groups, diff_group_cmp);
  int identical_weights = r->ntensors == 0;
  if (n_plan_diff > 0 && identical_weights) {
    char list[600] = "";
    for (size_t i = 0; i < n_plan_diff && strlen(list) < 500; i++)
      snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", plan_diff[i]);
    snprintf(r->verdict, sizeof r->verdict,
             "plans differ in %zu group(s) (%s%s) but the two checkpoints have identical weights: "
             "the plan was not applied", n_plan_diff, list, strlen(list) >= 500 ? ", ..." : "");
    violation(x, "%s", r->verdict);
  }
  free(plan_diff);
  if (x->n_violations_dropped) violation(x, "... and %zu more", x->n_violations_dropped);
  r->proof_holds = r->nviolations == 0;
  if (r->proof_holds && r->ntensors == 0)
    snprintf(r->verdict, sizeof r->verdict,
             "identical: the plans agree and all %zu tensors are bit-identical", r->n_identical);
  else if (r->proof_holds)
    snprintf(r->verdict, sizeof r->verdict,
             "proof holds: %zu tensor(s) differ, all in the %zu group(s) where the plans differ "
             "(their symmetric difference); the other %zu tensors are bit-identical",
             r->ntensors, n_plan_diff, r->n_identical);
  else if (!(n_plan_diff > 0 && identical_weights))
    snprintf(r->verdict, sizeof r->verdict, "proof fails (%zu problem%s): %s", r->nviolations,
             r->nviolations == 1 ? "" : "s", r->violations[0]);
}

aqs_status aqs_export_diff(const char *dir_a, const char *dir_b, int progress, aqs_diff_report *r,
                           aqs_err *e) {
  memset(r, 0, sizeof *r);
  snprintf(r->dir_a, sizeof r->dir_a, "%s", dir_a);
  snprintf(r->dir_b, sizeof r->dir_b, "%s", dir_b);
  diff_ctx x = {.a = {.label = "A", .dir = dir_a}, .b = {.label = "B", .dir = dir_b}, .r = r};
  aqs_status st;
  if ((st = load_side(&x.a, e)) || (st = load_side(&x.b, e)) || (st = build_module_map(&x, e)))
    goto done;
  uint64_t total = 0;
  for (size_t i = 0; i < x.a.ckpt->ntensors; i++) total += x.a.ckpt->tensors[i]->nbytes;
  for (size_t i = 0; i < x.b.ckpt->ntensors; i++) total += x.b.ckpt->tensors[i]->nbytes;
  aqs_progress *prog = progress ? aqs_progress_start("diff: hashing", total, "B") : NULL;
  hash_side(&x.a, prog);
  hash_side(&x.b, prog);
  if (prog) aqs_progress_finish(prog);
  r->n_tensors_a = x.a.ckpt->ntensors;
  r->n_tensors_b = x.b.ckpt->ntensors;
  check_against_manifest(&x, &x.a);
  check_against_manifest(&x, &x.b);
  compare_all(&x);
  check_formats(&x, &x.a);
  check_formats(&x, &x.b);
  prove(&x);
  if (!r->proof_holds) st = aqs_errf(e, AQS_ERR_MISMATCH, "%s", r->verdict);
done:
  free_side(&x.a);
  free_side(&x.b);
  free(x.mg);
  return st;
}

void aqs_diff_report_free(aqs_diff_report *r) {
  if (!r) return;
  free(r->tensors);
  free(r->groups);
  for (size_t i = 0; i < r->nviolations; i++) free(r->violations[i]);
  free(r->violations);
  memset(r, 0, sizeof *r);
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

char *aqs_diff_report_to_json(const aqs_diff_report *r) {
  static const char *const kinds[] = {"changed", "only_a", "only_b"};
  json_t *groups = json_array(), *tensors = json_array(), *violations = json_array(),
         *plan_diff = json_array();
  for (size_t i = 0; i < r->ngroups; i++) {
    const aqs_diff_group *g = &r->groups[i];
    if (g->in_plan_diff) json_array_append_new(plan_diff, json_string(g->id));
    json_array_append_new(groups, json_pack("{s:s, s:s, s:s, s:b, s:I, s:o, s:o}", "id", g->id,
                                            "a", aqs_format_name(g->format_a), "b",
                                            aqs_format_name(g->format_b), "in_plan_diff",
                                            g->in_plan_diff, "differing_tensors",
                                            (json_int_t)g->n_differ, "max_abs",
                                            num_or_null(g->max_abs), "rel_l2", num_or_null(g->rel_l2)));
  }
  for (size_t i = 0; i < r->ntensors; i++) {
    const aqs_diff_tensor *t = &r->tensors[i];
    json_array_append_new(tensors, json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o}", "name", t->name,
                                             "group", t->group, "kind", kinds[t->kind], "dtype_a",
                                             t->dtype_a, "dtype_b", t->dtype_b, "max_abs",
                                             num_or_null(t->max_abs), "rel_l2", num_or_null(t->rel_l2)));
  }
  for (size_t i = 0; i < r->nviolations; i++) json_array_append_new(violations, json_string(r->violations[i]));
  json_t *doc = json_pack("{s:s, s:s, s:I, s:I, s:I, s:b, s:o, s:o, s:o, s:o, s:s}", "a", r->dir_a,
                          "b", r->dir_b, "tensors_a", (json_int_t)r->n_tensors_a, "tensors_b",
                          (json_int_t)r->n_tensors_b, "identical", (json_int_t)r->n_identical,
                          "proof_holds", r->proof_holds, "plan_diff", plan_diff, "groups", groups,
                          "tensors", tensors, "violations", violations, "verdict", r->verdict);
  if (!doc) return NULL;
  char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
  json_decref(doc);
  if (!text) return NULL;
  size_t len = strlen(text);
  char *out = realloc(text, len + 2);
  if (!out) {
    free(text);
    return NULL;
  }
  out[len] = '\n';
  out[len + 1] = '\0';
  return out;
}
