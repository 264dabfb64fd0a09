/* engine/stages/stage_calibrate.c: the calibrate stage: max calibration of the language model's
 * linears over the calib set, one cached action per chunk ("calibrate-chunk", stage_chunks.h)
 * reduced (max) in chunk order into the amax table (engine/model/amax.h JSON). */
#include <stdlib.h>

#include "engine/compute/calibrate.h"
#include "engine/stages/build.h"
#include "engine/stages/recipe.h"
#include "engine/stages/stage.h"
#include "engine/stages/stage_chunks.h"
#include "engine/stages/stage_env.h"

#define VERSION "1"

static aqs_status calibrate_key(aqs_stage_job *job, json_t **inputs, json_t **params, aqs_err *e) {
  (void)e;
  *inputs = json_pack("{s:o, s:o}", "source", aqs_stage_jdigest(&job->in[0]), "calib_set",
                      aqs_stage_jdigest(&job->in[1]));
  *params = aqs_stage_compute_params(job);
  json_object_set_new(*params, "algorithm", json_string("max"));
  return AQS_OK;
}

static aqs_status parse_amax(const char *text, size_t len, const char *what, void *part, aqs_err *e) {
  return aqs_amax_from_json(text, len, what, part, e);
}
static aqs_status amax_json(const void *part, char **text, aqs_err *e) { return aqs_amax_to_json(part, text, e); }

static aqs_status calibrate_run(aqs_stage_job *job, aqs_stage_ctx *ctx, aqs_digest *result, aqs_err *e) {
  (void)ctx;
  aqs_chunk_cache c = {.job = job, .stage = "calibrate-chunk", .version = VERSION, .parse = parse_amax,
                       .to_json = amax_json};
  aqs_batch_loop loop;
  aqs_amax_table total = {0};
  char *text = NULL;
  aqs_status st = aqs_chunk_cache_open(&c, &job->in[1], aqs_stage_compute_params(job), -1, &loop, e);
  if (!st && job->env->o->progress) {
    loop.progress_label = "calibrate";
    loop.progress_total = (uint64_t)c.set.n_tokens;
  }
  if (!st) st = aqs_calibrate_batches(&loop, (int)job->recipe->max_len, &total, e);
  if (!st) st = aqs_amax_to_json(&total, &text, e);
  if (!st) st = aqs_stage_put_text(job->store, text, result, e);
  free(text);
  aqs_amax_free(&total);
  aqs_chunk_cache_close(&c);
  return st;
}

const aqs_stage_def aqs_stage_calibrate = {
    .name = "calibrate",
    .version = VERSION,
    .inputs = {"source", "calib-set", NULL},
    .recipe_keys = "calib.max_len calibrate.algorithm",
    .key = calibrate_key,
    .run = calibrate_run,
};
