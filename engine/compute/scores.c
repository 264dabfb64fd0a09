/* engine/compute/scores.c: sensitivity scores: costs, ranking, chunk reduce (fixed order) and
 * the JSON form (jansson, sorted keys, 17 significant digits so doubles round-trip). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/compute/scores.h"

#include "common/file.h"

void aqs_scores_free(aqs_scores *s) {
  if (!s) return;
  free(s->groups);
  memset(s, 0, sizeof *s);
}

uint64_t aqs_group_cost_fp8(const aqs_group_score *g) {
  return g->weight_params + 2 * g->bias_params + 8 * (uint64_t)g->nmembers;
}

uint64_t aqs_group_cost_bf16(const aqs_group_score *g) {
  return 2 * (g->weight_params + g->bias_params);
}

/* Increasing score, ties by group order (qsort_r context: the scores). */
static int rank_cmp(const void *a, const void *b, void *ctx) {
  const aqs_scores *s = ctx;
  size_t i = *(const size_t *)a, j = *(const size_t *)b;
  double si = s->groups[i].score, sj = s->groups[j].score;
  if (si < sj) return -1;
  if (si > sj) return 1;
  return i < j ? -1 : (i > j);
}

size_t *aqs_scores_ranking(const aqs_scores *s) {
  size_t *idx = malloc((s->ngroups ? s->ngroups : 1) * sizeof *idx);
  if (!idx) return NULL;
  for (size_t i = 0; i < s->ngroups; i++) idx[i] = i;
  qsort_r(idx, s->ngroups, sizeof *idx, rank_cmp, (void *)s);
  return idx;
}

aqs_status aqs_scores_reduce(const aqs_scores *const *parts, size_t n, aqs_scores *out,
                             aqs_err *e) {
  memset(out, 0, sizeof *out);
  if (n == 0) return aqs_errf(e, AQS_ERR_INVALID, "scores reduce: no parts");
  const aqs_scores *p0 = parts[0];
  *out = *p0;
  out->groups = malloc((p0->ngroups ? p0->ngroups : 1) * sizeof *out->groups);
  if (!out->groups) {
    memset(out, 0, sizeof *out);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  memcpy(out->groups, p0->groups, p0->ngroups * sizeof *out->groups);
  for (size_t p = 1; p < n; p++) {
    const aqs_scores *s = parts[p];
    const char *diff = strcmp(s->method, p0->method) ? "method"
                       : strcmp(s->scope, p0->scope) ? "scope"
                       : strcmp(s->precision, p0->precision) ? "precision"
                       : strcmp(s->backend, p0->backend) ? "backend"
                       : s->ngroups != p0->ngroups ? "number of groups" : NULL;
    for (size_t i = 0; !diff && i < s->ngroups; i++)
      if (strcmp(s->groups[i].id, p0->groups[i].id)) diff = "group list";
    if (diff) {
      aqs_scores_free(out);
      return aqs_errf(e, AQS_ERR_MISMATCH, "scores reduce: part %zu differs from part 0 in %s",
                      p, diff);
    }
    out->n_tokens += s->n_tokens;
    out->n_seqs += s->n_seqs;
    out->n_batches += s->n_batches;
    for (size_t i = 0; i < s->ngroups; i++) {
      out->groups[i].score += s->groups[i].score;
      for (int k = 0; k < s->groups[i].nmembers; k++)
        out->groups[i].member_score[k] += s->groups[i].member_score[k];
    }
  }
  return AQS_OK;
}

aqs_status aqs_scores_to_json(const aqs_scores *s, char **out, aqs_err *e) {
  *out = NULL;
  json_t *root = json_object(), *groups = json_array(), *ranking = json_array();
  json_object_set_new(root, "format", json_string("aqs-scores-1"));
  json_object_set_new(root, "method", json_string(s->method));
  json_object_set_new(root, "scope", json_string(s->scope));
  json_object_set_new(root, "precision", json_string(s->precision));
  json_object_set_new(root, "backend", json_string(s->backend));
  if (s->device[0]) json_object_set_new(root, "device", json_string(s->device));
  json_object_set_new(root, "n_tokens", json_integer(s->n_tokens));
  json_object_set_new(root, "n_seqs", json_integer(s->n_seqs));
  json_object_set_new(root, "n_batches", json_integer(s->n_batches));
  for (size_t i = 0; i < s->ngroups; i++) {
    const aqs_group_score *g = &s->groups[i];
    if (!isfinite(g->score)) {
      json_decref(root);
      json_decref(groups);
      json_decref(ranking);
      return aqs_errf(e, AQS_ERR_NUMERIC, "scores: group %s has a non-finite score", g->id);
    }
    json_t *members = json_array();
    for (int k = 0; k < g->nmembers; k++)
      json_array_append_new(members, json_pack("{s:s,s:f}", "module", g->members[k], "score",
                                               g->member_score[k]));
    json_t *formats = json_pack("{s:{s:f,s:I},s:{s:f,s:I}}", "fp8", "score", g->score,
                                "cost_bytes", (json_int_t)aqs_group_cost_fp8(g), "bf16", "score",
                                0.0, "cost_bytes", (json_int_t)aqs_group_cost_bf16(g));
    json_array_append_new(
        groups, json_pack("{s:s,s:i,s:s,s:I,s:I,s:I,s:o,s:o}", "id", g->id, "layer", g->layer,
                          "kind", g->kind, "weight_params", (json_int_t)g->weight_params,
                          "bias_params", (json_int_t)g->bias_params, "params",
                          (json_int_t)(g->weight_params + g->bias_params), "members", members,
                          "formats", formats));
  }
  size_t *order = aqs_scores_ranking(s);
  if (!order) {
    json_decref(root);
    json_decref(groups);
    json_decref(ranking);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  for (size_t i = 0; i < s->ngroups; i++)
    json_array_append_new(ranking, json_string(s->groups[order[i]].id));
  free(order);
  json_object_set_new(root, "groups", groups);
  json_object_set_new(root, "ranking", ranking);
  char *text = json_dumps(root, JSON_SORT_KEYS | JSON_INDENT(1) | JSON_REAL_PRECISION(17));
  json_decref(root);
  if (!text) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory serializing scores");
  size_t len = strlen(text);
  char *nl = realloc(text, len + 2);
  if (!nl) {
    free(text);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory serializing scores");
  }
  nl[len] = '\n';
  nl[len + 1] = '\0';
  *out = nl;
  return AQS_OK;
}

static void copy_str(char *dst, size_t n, json_t *v) {
  snprintf(dst, n, "%s", json_is_string(v) ? json_string_value(v) : "");
}

aqs_status aqs_scores_from_json(const char *json, size_t len, const char *what, aqs_scores *out,
                                aqs_err *e) {
  memset(out, 0, sizeof *out);
  json_error_t jerr;
  json_t *root = json_loadb(json, len, 0, &jerr);
  if (!root)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: not JSON (line %d: %s)", what, jerr.line, jerr.text);
  aqs_status st = AQS_OK;
  const char *fmt = json_string_value(json_object_get(root, "format"));
  json_t *groups = json_object_get(root, "groups");
  if (!fmt || strcmp(fmt, "aqs-scores-1") != 0 || !json_is_array(groups)) {
    st = aqs_errf(e, AQS_ERR_INVALID, "%s: not an aqs scores document (format '%s')", what,
                  fmt ? fmt : "(missing)");
    goto done;
  }
  copy_str(out->method, sizeof out->method, json_object_get(root, "method"));
  copy_str(out->scope, sizeof out->scope, json_object_get(root, "scope"));
  copy_str(out->precision, sizeof out->precision, json_object_get(root, "precision"));
  copy_str(out->backend, sizeof out->backend, json_object_get(root, "backend"));
  copy_str(out->device, sizeof out->device, json_object_get(root, "device"));
  out->n_tokens = json_integer_value(json_object_get(root, "n_tokens"));
  out->n_seqs = json_integer_value(json_object_get(root, "n_seqs"));
  out->n_batches = json_integer_value(json_object_get(root, "n_batches"));
  out->ngroups = json_array_size(groups);
  out->groups = calloc(out->ngroups ? out->ngroups : 1, sizeof *out->groups);
  if (!out->groups) {
    st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < out->ngroups; i++) {
    json_t *g = json_array_get(groups, i);
    aqs_group_score *gs = &out->groups[i];
    json_t *members = json_object_get(g, "members");
    json_t *score = json_object_get(json_object_get(json_object_get(g, "formats"), "fp8"), "score");
    if (!json_is_string(json_object_get(g, "id")) || !json_is_number(score) ||
        !json_is_array(members) || json_array_size(members) > AQS_QWEN_GROUP_MAX_MEMBERS) {
      st = aqs_errf(e, AQS_ERR_INVALID, "%s: group %zu is malformed (id, members, formats.fp8.score)",
                    what, i);
      goto done;
    }
    copy_str(gs->id, sizeof gs->id, json_object_get(g, "id"));
    copy_str(gs->kind, sizeof gs->kind, json_object_get(g, "kind"));
    gs->layer = (int)json_integer_value(json_object_get(g, "layer"));
    gs->weight_params = (uint64_t)json_integer_value(json_object_get(g, "weight_params"));
    gs->bias_params = (uint64_t)json_integer_value(json_object_get(g, "bias_params"));
    gs->score = json_number_value(score);
    gs->nmembers = (int)json_array_size(members);
    for (int k = 0; k < gs->nmembers; k++) {
      json_t *m = json_array_get(members, (size_t)k);
      copy_str(gs->members[k], sizeof gs->members[k], json_object_get(m, "module"));
      gs->member_score[k] = json_number_value(json_object_get(m, "score"));
    }
  }
done:
  json_decref(root);
  if (st != AQS_OK) aqs_scores_free(out);
  return st;
}

aqs_status aqs_scores_save(const aqs_scores *s, const char *path, aqs_err *e) {
  char *text;
  aqs_status st = aqs_scores_to_json(s, &text, e);
  if (st != AQS_OK) return st;
  st = aqs_file_write_atomic(path, text, strlen(text), e);
  free(text);
  return st;
}

aqs_status aqs_scores_load(const char *path, aqs_scores *out, aqs_err *e) {
  memset(out, 0, sizeof *out);
  char *buf;
  size_t len;
  aqs_status st = aqs_file_read(path, NULL, &buf, &len, e);
  if (st) return st;
  st = aqs_scores_from_json(buf, len, path, out, e);
  free(buf);
  return st;
}
