/* engine/stages/stage_slice.c: the slice stage: which candidate groups go to FP8 (slice.h decides)
 * from the sensitivity scores and the recipe's coverage or effective-bits budget; the result is
 * the plan (engine/export/plan.h JSON). What it records in the build (groups, candidates, FP8
 * groups, effective bits) is read back from the plan: a cache hit decides nothing again. */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/compute/scores.h"
#include "engine/export/plan.h"
#include "engine/stages/build.h"
#include "engine/stages/recipe.h"
#include "engine/stages/slice.h"
#include "engine/stages/stage.h"
#include "engine/stages/stage_env.h"

#define VERSION "1"

static int group_is_candidate(const aqs_qwen_group *g, const aqs_recipe *r) {
  if (!aqs_qwen_group_in_scope(g, r->scope)) return 0;
  int attn = strcmp(g->kind, "qkv") == 0 || strcmp(g->kind, "o") == 0 || strcmp(g->kind, "proj") == 0;
  if (r->candidates == AQS_CANDIDATES_MLP && attn) return 0;
  if (r->candidates == AQS_CANDIDATES_ATTN && !attn) return 0;
  if (r->candidates == AQS_CANDIDATES_VISUAL && g->tower != AQS_TOWER_VISION) return 0;
  if (r->candidates == AQS_CANDIDATES_LM && g->tower != AQS_TOWER_LM) return 0;
  for (int m = 0; m < g->nmembers; m++) {
    char *save = NULL;
    char copy[AQS_RECIPE_TEXT_MAX];
    snprintf(copy, sizeof copy, "%s", r->disabled);
    for (char *pat = strtok_r(copy, ",", &save); pat; pat = strtok_r(NULL, ",", &save)) {
      while (*pat == ' ') pat++;
      if (*pat && fnmatch(pat, g->members[m].module, 0) == 0) return 0;
    }
  }
  return 1;
}

json_t *aqs_slice_params_json(const aqs_recipe *r) {
  json_t *p = json_pack("{s:s, s:s, s:s, s:s}", "scope", aqs_qwen_scope_name(r->scope), "candidates",
                        aqs_candidates_name(r->candidates), "disabled", r->disabled, "mode",
                        r->budget_mode ? "effective_bits" : "coverage");
  if (r->budget_mode) {
    json_object_set_new(p, "effective_bits", json_real(r->effective_bits));
  } else {
    json_object_set_new(p, "coverage", json_real(r->coverage));
    json_object_set_new(p, "order", json_string(aqs_order_name(r->order)));
    if (r->order == AQS_ORDER_RANDOM) json_object_set_new(p, "order_seed", json_integer(r->order_seed));
  }
  return p;
}

aqs_status aqs_build_load_plan(aqs_store *s, const aqs_digest *d, aqs_plan **plan, aqs_err *e) {
  char *text = NULL;
  size_t len = 0;
  aqs_status st = aqs_stage_get_text(s, d, &text, &len, e);
  if (st) return st;
  char what[AQS_DIGEST_STR_SIZE];
  st = aqs_plan_parse(text, len, aqs_digest_str(d, what), plan, e);
  free(text);
  return st;
}

aqs_status aqs_build_load_scores(aqs_store *s, const aqs_digest *d, aqs_scores *sc, aqs_err *e) {
  char *text = NULL;
  size_t len = 0;
  aqs_status st = aqs_stage_get_text(s, d, &text, &len, e);
  if (st) return st;
  char what[AQS_DIGEST_STR_SIZE];
  st = aqs_scores_from_json(text, len, aqs_digest_str(d, what), sc, e);
  free(text);
  return st;
}

aqs_status aqs_build_load_amax(aqs_store *s, const aqs_digest *d, aqs_amax_table *t, aqs_err *e) {
  char *text = NULL;
  size_t len = 0;
  aqs_status st = aqs_stage_get_text(s, d, &text, &len, e);
  if (st) return st;
  char what[AQS_DIGEST_STR_SIZE];
  st = aqs_amax_from_json(text, len, aqs_digest_str(d, what), t, e);
  free(text);
  return st;
}

static aqs_status slice_key(aqs_stage_job *job, json_t **inputs, json_t **params, aqs_err *e) {
  (void)e;
  *inputs = json_pack("{s:o, s:o}", "source", aqs_stage_jdigest(&job->in[0]), "sensitivity",
                      aqs_stage_jdigest(&job->in[1]));
  *params = aqs_slice_params_json(job->recipe);
  return AQS_OK;
}

/* The scope's groups as the slice sees them; score_of gives each group's score (NULL: the
 * group has none, an error). */
typedef const double *(*score_fn)(const void *ctx, const char *group);

static aqs_status slice_groups(aqs_stage_job *job, score_fn score_of, const void *ctx, aqs_slice_group **out,
                               size_t *n_out, aqs_err *e) {
  const aqs_qwen_model *model = job->env->model;
  aqs_slice_group *groups = calloc(model->ngroups + 1, sizeof *groups);
  if (!groups) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  size_t m = 0;
  for (size_t i = 0; i < model->ngroups; i++) {
    const aqs_qwen_group *g = &model->groups[i];
    if (!aqs_qwen_group_in_scope(g, job->recipe->scope)) continue;
    const double *score = score_of(ctx, g->id);
    if (!score) {
      free(groups);
      return aqs_errf(e, AQS_ERR_NOT_FOUND, "slice: no sensitivity score for group %s", g->id);
    }
    groups[m++] = (aqs_slice_group){.id = g->id, .score = *score, .weight_params = (int64_t)g->weight_params,
                                    .bias_params = (int64_t)g->bias_params, .n_modules = g->nmembers,
                                    .candidate = group_is_candidate(g, job->recipe)};
  }
  *out = groups;
  *n_out = m;
  return AQS_OK;
}

static const double *score_in_scores(const void *ctx, const char *group) {
  const aqs_scores *sc = ctx;
  for (size_t k = 0; k < sc->ngroups; k++)
    if (strcmp(sc->groups[k].id, group) == 0) return &sc->groups[k].score;
  return NULL;
}

static const double *score_in_plan(const void *ctx, const char *group) {
  const aqs_plan_entry *en = aqs_plan_find(ctx, group);
  return en ? &en->score : NULL;
}

static aqs_status slice_run(aqs_stage_job *job, aqs_stage_ctx *ctx, aqs_digest *result, aqs_err *e) {
  (void)ctx;
  const aqs_recipe *r = job->recipe;
  aqs_scores sc = {0};
  aqs_slice_group *groups = NULL;
  size_t m = 0;
  bool *fp8 = NULL;
  aqs_plan *plan = NULL;
  aqs_status st = aqs_build_load_scores(job->store, &job->in[1], &sc, e);
  if (!st) st = slice_groups(job, score_in_scores, &sc, &groups, &m, e);
  if (!st && !(fp8 = calloc(m + 1, sizeof *fp8))) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  aqs_slice_params sp = {.budget_mode = r->budget_mode, .coverage = r->coverage, .effective_bits = r->effective_bits,
                         .order = r->order, .order_seed = (uint64_t)r->order_seed};
  aqs_slice_result res;
  if (!st) st = aqs_slice_decide(groups, m, &sp, fp8, &res, e);
  if (!st) {
    plan = aqs_plan_new();
    snprintf(plan->scope, sizeof plan->scope, "%s", aqs_qwen_scope_name(r->scope));
    for (size_t i = 0; !st && i < m; i++) {
      st = aqs_plan_set(plan, groups[i].id, fp8[i] ? AQS_FMT_FP8 : AQS_FMT_BF16, e);
      if (!st) st = aqs_plan_set_score(plan, groups[i].id, groups[i].score, e);
    }
  }
  if (!st) {
    char *pj = aqs_plan_to_json(plan);
    st = pj ? aqs_stage_put_text(job->store, pj, result, e) : aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
    free(pj);
  }
  aqs_plan_free(plan);
  free(groups);
  free(fp8);
  aqs_scores_free(&sc);
  return st;
}

/* The build's summary, from the stored plan. */
static aqs_status slice_record(aqs_stage_job *job, const aqs_digest *result, aqs_err *e) {
  if (!job->report) return AQS_OK;
  aqs_plan *plan = NULL;
  aqs_slice_group *groups = NULL;
  size_t m = 0;
  bool *fp8 = NULL;
  aqs_status st = aqs_build_load_plan(job->store, result, &plan, e);
  if (!st) st = slice_groups(job, score_in_plan, plan, &groups, &m, e);
  if (!st && !(fp8 = calloc(m + 1, sizeof *fp8))) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  for (size_t i = 0; !st && i < m; i++) fp8[i] = aqs_plan_format(plan, groups[i].id) == AQS_FMT_FP8;
  if (!st) {
    aqs_slice_result res;
    aqs_slice_summarize(groups, m, fp8, &res);
    job->report->n_groups = res.n_groups;
    job->report->n_candidates = res.n_candidates;
    job->report->n_fp8 = res.n_fp8;
    job->report->effective_bits = res.effective_bits;
  }
  aqs_plan_free(plan);
  free(groups);
  free(fp8);
  return st;
}

const aqs_stage_def aqs_stage_slice = {
    .name = "slice",
    .version = VERSION,
    .inputs = {"source", "sensitivity", NULL},
    .recipe_keys = "sensitivity.scope sensitivity.candidates sensitivity.disabled slice.coverage "
                   "slice.effective_bits slice.order slice.order_seed",
    .key = slice_key,
    .run = slice_run,
    .record = slice_record,
};
