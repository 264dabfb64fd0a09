/* engine/stages/stage_calibrate.c: the calibrate stage: max calibration of the language model's
 * linears over the calib set, one cached action per chunk ("calibrate-chunk", stage_chunks.h)
 * reduced (max) in chunk order into the amax table (engine/model/amax.h JSON). The K/V cache
 * amax that compute also measures are kept only for recipes with [export] kv_cache = fp8, whose
 * keys say so ("kv_cache": "fp8"): every other key, and its result, is what it always was. */
#include <string.h>
#include <stdlib.h>

#include "engine/compute/calibrate.h"
#include "engine/stages/build.h"
#include "engine/stages/recipe.h"
#include "engine/stages/stage.h"
#include "engine/stages/stage_chunks.h"
#include "engine/stages/stage_env.h"

#define VERSION "1"

/* The chunk actions' params: the compute params, and the K/V cache when the recipe wants it. */
static json_t *chunk_params(aqs_stage_job *job) {
  json_t *p = aqs_stage_compute_params(job);
  if (job->recipe->kv_cache_fp8) json_object_set_new(p, "kv_cache", json_string("fp8"));
  return p;
}

static aqs_status calibrate_key(aqs_stage_job *job, json_t **inputs, json_t **params, aqs_err *e) {
  (void)e;
  *inputs = json_pack("{s:o, s:o}", "source", aqs_stage_jdigest(&job->in[0]), "calib_set",
                      aqs_stage_jdigest(&job->in[1]));
  *params = chunk_params(job);
  json_object_set_new(*params, "algorithm", json_string("max"));
  return AQS_OK;
}

static aqs_status parse_amax(const char *text, size_t len, const char *what, void *part, aqs_err *e) {
  return aqs_amax_from_json(text, len, what, part, e);
}

static int is_kv_cache(const char *module) {
  size_t n = strlen(module);
  return n > 8 && (strcmp(module + n - 8, ".k_cache") == 0 || strcmp(module + n - 8, ".v_cache") == 0);
}

/* The table as stored: without K/V cache entries unless the key holds "kv_cache". */
static aqs_status stored_json(const aqs_amax_table *t, int kv, char **text, aqs_err *e) {
  if (kv) return aqs_amax_to_json(t, text, e);
  aqs_amax_table lin = {.n_tokens = t->n_tokens, .n_seqs = t->n_seqs};
  aqs_status st = AQS_OK;
  for (size_t i = 0; !st && i < t->n; i++)
    if (!is_kv_cache(t->entries[i].module))
      st = aqs_amax_set(&lin, t->entries[i].module, t->entries[i].input_amax, t->entries[i].weight_amax, e);
  if (!st) st = aqs_amax_to_json(&lin, text, e);
  aqs_amax_free(&lin);
  return st;
}

static aqs_status amax_json_lin(const void *part, char **text, aqs_err *e) { return stored_json(part, 0, text, e); }
static aqs_status amax_json_kv(const void *part, char **text, aqs_err *e) { return stored_json(part, 1, text, e); }

static aqs_status calibrate_run(aqs_stage_job *job, aqs_stage_ctx *ctx, aqs_digest *result, aqs_err *e) {
  int kv = job->recipe->kv_cache_fp8;
  aqs_chunk_cache c = {.job = job, .stage = "calibrate-chunk", .version = VERSION, .parse = parse_amax,
                       .to_json = kv ? amax_json_kv : amax_json_lin};
  aqs_batch_loop loop;
  aqs_amax_table total = {0};
  char *text = NULL;
  aqs_status st = aqs_chunk_cache_open(&c, &job->in[1], chunk_params(job), -1, &loop, e);
  if (!st && job->env->o->progress) {
    loop.progress_label = "calibrate";
    loop.progress_total = (uint64_t)c.set.n_tokens;
  }
  if (!st) st = aqs_chunk_cache_spread(&c, &loop, "calibrate", &ctx->key, e);
  if (!st) st = aqs_calibrate_batches(&loop, (int)job->recipe->max_len, &total, e);
  if (aqs_chunk_cache_is_worker(&c)) goto out; /* its chunks are recorded; the build reduces them */
  if (!st) st = stored_json(&total, kv, &text, e);
  if (!st) st = aqs_stage_put_text(job->store, text, result, e);
out:
  free(text);
  aqs_amax_free(&total);
  aqs_chunk_cache_close(&c);
  return st;
}

const aqs_stage_def aqs_stage_calibrate = {
    .name = "calibrate",
    .version = VERSION,
    .inputs = {"source", "calib-set", NULL},
    .recipe_keys = "calib.max_len calibrate.algorithm export.kv_cache",
    .key = calibrate_key,
    .run = calibrate_run,
};
