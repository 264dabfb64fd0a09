/* engine/stages/family.c: the per-tensor proof that two checkpoints differ exactly as planned
 * (see family.h). Works on tensor digests recorded in the checkpoint trees. */
#include "engine/stages/family.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/stages/ckpt_store.h"

typedef struct tensor_ref {
  const char *name; /* borrowed from the manifest JSON */
  const char *digest;
} tensor_ref;

static int by_name(const void *a, const void *b) {
  return strcmp(((const tensor_ref *)a)->name, ((const tensor_ref *)b)->name);
}

struct aqs_ckpt_tensors {
  json_t *keep;      /* the shard manifests the names and digests point into */
  tensor_ref *refs;  /* sorted by name */
  size_t n;
};

/* Every tensor of a checkpoint, sorted by name. *keep keeps the shard JSON alive. */
static aqs_status collect_tensors(aqs_store *s, const aqs_digest *ckpt, json_t **keep, tensor_ref **out,
                                  size_t *n_out, aqs_err *e) {
  json_t *doc;
  aqs_status st = aqs_ckpt_load_manifest(s, ckpt, "aqs-checkpoint", &doc, e);
  if (st) return st;
  json_t *shards = json_array();
  size_t n = 0, cap = 256;
  tensor_ref *refs = malloc(cap * sizeof *refs);
  size_t i;
  json_t *f;
  json_array_foreach(json_object_get(doc, "files"), i, f) {
    if (strcmp(json_string_value(json_object_get(f, "type")) ? json_string_value(json_object_get(f, "type")) : "",
               "shard") != 0)
      continue;
    aqs_digest d;
    json_t *shard;
    if ((st = aqs_digest_parse(json_string_value(json_object_get(f, "digest")), &d, e))) break;
    if ((st = aqs_ckpt_load_manifest(s, &d, "aqs-shard", &shard, e))) break;
    json_array_append_new(shards, shard);
    size_t k;
    json_t *t;
    json_array_foreach(json_object_get(shard, "tensors"), k, t) {
      if (n == cap) refs = realloc(refs, (cap *= 2) * sizeof *refs);
      refs[n++] = (tensor_ref){json_string_value(json_array_get(t, 0)), json_string_value(json_array_get(t, 1))};
    }
  }
  json_decref(doc);
  if (st) {
    json_decref(shards);
    free(refs);
    return st;
  }
  qsort(refs, n, sizeof *refs, by_name);
  *keep = shards;
  *out = refs;
  *n_out = n;
  return AQS_OK;
}

/* The group a tensor belongs to (by its module name), or NULL. */
static const aqs_qwen_group *group_of_tensor(const aqs_qwen_model *m, const char *tensor) {
  static const char *const suffixes[] = {".weight_scale", ".input_scale", ".weight", ".bias"};
  char module[256];
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    size_t n = strlen(tensor), k = strlen(suffixes[i]);
    if (n > k && n - k < sizeof module && strcmp(tensor + n - k, suffixes[i]) == 0) {
      memcpy(module, tensor, n - k);
      module[n - k] = '\0';
      return aqs_qwen_group_of_module(m, module);
    }
  }
  return NULL;
}

aqs_status aqs_ckpt_tensors_load(aqs_store *s, const aqs_digest *ckpt, aqs_ckpt_tensors **out, aqs_err *e) {
  aqs_ckpt_tensors *t = calloc(1, sizeof *t);
  if (!t) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  aqs_status st = collect_tensors(s, ckpt, &t->keep, &t->refs, &t->n, e);
  if (st) {
    free(t);
    return st;
  }
  *out = t;
  return AQS_OK;
}

void aqs_ckpt_tensors_free(aqs_ckpt_tensors *t) {
  if (!t) return;
  json_decref(t->keep);
  free(t->refs);
  free(t);
}

aqs_status aqs_family_check(aqs_store *s, const aqs_qwen_model *model, const char *name_a,
                            const aqs_digest *ckpt_a, const aqs_plan *plan_a, const char *name_b,
                            const aqs_digest *ckpt_b, const aqs_plan *plan_b, aqs_family_pair *stats,
                            aqs_err *e) {
  aqs_ckpt_tensors *a = NULL, *b = NULL;
  aqs_status st = aqs_ckpt_tensors_load(s, ckpt_a, &a, e);
  if (!st) st = aqs_ckpt_tensors_load(s, ckpt_b, &b, e);
  if (!st) st = aqs_family_check_tensors(model, name_a, a, plan_a, name_b, b, plan_b, stats, e);
  aqs_ckpt_tensors_free(a);
  aqs_ckpt_tensors_free(b);
  return st;
}

aqs_status aqs_family_check_tensors(const aqs_qwen_model *model, const char *name_a, const aqs_ckpt_tensors *A,
                                    const aqs_plan *plan_a, const char *name_b, const aqs_ckpt_tensors *B,
                                    const aqs_plan *plan_b, aqs_family_pair *stats, aqs_err *e) {
  aqs_family_pair local = {0};
  if (!stats) stats = &local;
  memset(stats, 0, sizeof *stats);
  const tensor_ref *ta = A->refs, *tb = B->refs;
  size_t na = A->n, nb = B->n;
  const char **planned = NULL;
  size_t n_planned = 0;
  aqs_status st = aqs_plan_diff(plan_a, plan_b, &planned, &n_planned, e);
  unsigned char *differs = calloc(model->ngroups + 1, 1);
  char problem[768] = "";
  size_t ia = 0, ib = 0;
  while (!st && (ia < na || ib < nb)) {
    int c = ia == na ? 1 : ib == nb ? -1 : strcmp(ta[ia].name, tb[ib].name);
    const char *name = c <= 0 ? ta[ia].name : tb[ib].name;
    int same = c == 0 && strcmp(ta[ia].digest, tb[ib].digest) == 0;
    if (c <= 0) ia++;
    if (c >= 0) ib++;
    if (same) {
      stats->shared_tensors++;
      continue;
    }
    stats->differing_tensors++;
    const aqs_qwen_group *g = group_of_tensor(model, name);
    if (!g) {
      if (!problem[0])
        snprintf(problem, sizeof problem, "tensor %s differs between %s and %s but belongs to no group", name, name_a,
                 name_b);
      continue;
    }
    differs[g - model->groups] = 1;
  }
  for (size_t gi = 0; !st && gi < model->ngroups; gi++) {
    if (!differs[gi]) continue;
    stats->differing_groups++;
    const char *id = model->groups[gi].id;
    int in_plan_diff = 0;
    for (size_t k = 0; k < n_planned; k++) in_plan_diff |= strcmp(planned[k], id) == 0;
    if (!in_plan_diff && !problem[0])
      snprintf(problem, sizeof problem, "group %s differs between %s and %s, but both plans make it %s", id, name_a,
               name_b, aqs_format_name(aqs_plan_format(plan_a, id)));
  }
  stats->plan_diff_groups = n_planned;
  for (size_t k = 0; !st && k < n_planned; k++) {
    const aqs_qwen_group *g = aqs_qwen_find_group(model, planned[k]);
    if ((!g || !differs[g - model->groups]) && !problem[0] && stats->differing_tensors > 0)
      snprintf(problem, sizeof problem, "plans differ on group %s (%s in %s, %s in %s) but its tensors are identical",
               planned[k], aqs_format_name(aqs_plan_format(plan_a, planned[k])), name_a,
               aqs_format_name(aqs_plan_format(plan_b, planned[k])), name_b);
  }
  if (!st && n_planned > 0 && stats->differing_tensors == 0)
    st = aqs_errf(e, AQS_ERR_MISMATCH, "%s and %s have different plans (%zu groups differ) but identical weights",
                  name_a, name_b, n_planned);
  else if (!st && problem[0])
    st = aqs_errf(e, AQS_ERR_MISMATCH, "%s", problem);
  free(differs);
  free((void *)planned);
  return st;
}
