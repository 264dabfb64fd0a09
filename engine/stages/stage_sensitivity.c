/* engine/stages/stage_sensitivity.c: the sensitivity stage: FP8 sensitivity of every group of the
 * scope, one cached action per chunk ("sensitivity-chunk", stage_chunks.h) over the first chunks
 * covering score_samples sequences, summed in chunk order into the scores manifest
 * (engine/compute/scores.h JSON). The method is the recipe's, parsed by compute: a method
 * compute does not know is an error, never another method's scores under this key. */
#include <stdlib.h>

#include "engine/compute/sensitivity.h"
#include "engine/stages/build.h"
#include "engine/stages/recipe.h"
#include "engine/stages/stage.h"
#include "engine/stages/stage_chunks.h"
#include "engine/stages/stage_env.h"

#define VERSION "1"

static aqs_status sensitivity_key(aqs_stage_job *job, json_t **inputs, json_t **params, aqs_err *e) {
  const aqs_recipe *r = job->recipe;
  const char *method = aqs_sens_method_name(r->method);
  if (!method) return aqs_errf(e, AQS_ERR_INVALID, "recipe %s: unknown sensitivity method %d", r->name, (int)r->method);
  *inputs = json_pack("{s:o, s:o, s:o}", "source", aqs_stage_jdigest(&job->in[0]), "calib_set",
                      aqs_stage_jdigest(&job->in[1]), "amax", aqs_stage_jdigest(&job->in[2]));
  *params = aqs_stage_compute_params(job);
  json_object_set_new(*params, "method", json_string(method));
  json_object_set_new(*params, "score_samples", json_integer(r->score_samples));
  json_object_set_new(*params, "scope", json_string(aqs_qwen_scope_name(r->scope)));
  return AQS_OK;
}

static aqs_status parse_scores(const char *text, size_t len, const char *what, void *part, aqs_err *e) {
  return aqs_scores_from_json(text, len, what, part, e);
}

/* The stored bytes must not name the machine: the device is provenance, not content. */
static aqs_status scores_json(const void *part, char **text, aqs_err *e) {
  aqs_scores s = *(const aqs_scores *)part;
  s.device[0] = '\0';
  return aqs_scores_to_json(&s, text, e);
}

static aqs_status sensitivity_run(aqs_stage_job *job, aqs_stage_ctx *ctx, aqs_digest *result, aqs_err *e) {
  const aqs_recipe *r = job->recipe;
  aqs_chunk_cache c = {.job = job, .stage = "sensitivity-chunk", .version = VERSION, .amax = &job->in[2],
                       .parse = parse_scores, .to_json = scores_json};
  json_t *params = aqs_stage_compute_params(job);
  json_object_set_new(params, "method", json_string(aqs_sens_method_name(r->method)));
  /* all_layers chunk results hold the vision groups too (lm_only chunk keys stay as they were) */
  if (r->scope == AQS_SCOPE_ALL_LAYERS) json_object_set_new(params, "scope", json_string("all_layers"));
  aqs_batch_loop loop;
  aqs_scores total = {0};
  char *text = NULL;
  aqs_status st = aqs_chunk_cache_open(&c, &job->in[1], params, 0, &loop, e);
  /* Scoring uses the calib set's first chunks covering score_samples sequences: the sample
   * order is prefix-stable, so these are the same sequences whatever calib_samples is. */
  if (!st && c.set.chunk_seqs > 0) {
    int64_t n = (r->score_samples + c.set.chunk_seqs - 1) / c.set.chunk_seqs;
    loop.n = n < c.set.n_chunks ? (size_t)n : (size_t)c.set.n_chunks;
  }
  if (!st && job->env->o->progress) {
    loop.progress_label = "sensitivity";
    loop.progress_total = loop.n;
    loop.progress_batches = 1;
  }
  loop.scope = r->scope;
  if (!st) st = aqs_chunk_cache_spread(&c, &loop, "sensitivity", &ctx->key, e);
  if (!st) st = aqs_sensitivity_batches(&loop, r->method, (int)r->max_len, &total, NULL, e);
  if (aqs_chunk_cache_is_worker(&c)) goto out; /* its chunks are recorded; the build reduces them */
  if (!st) st = scores_json(&total, &text, e);
  if (!st) st = aqs_stage_put_text(job->store, text, result, e);
out:
  free(text);
  aqs_scores_free(&total);
  aqs_chunk_cache_close(&c);
  return st;
}

const aqs_stage_def aqs_stage_sensitivity = {
    .name = "sensitivity",
    .version = VERSION,
    .inputs = {"source", "calib-set", "calibrate", NULL},
    .recipe_keys = "calib.max_len sensitivity.method sensitivity.score_samples sensitivity.scope",
    .key = sensitivity_key,
    .run = sensitivity_run,
};
