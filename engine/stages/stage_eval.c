/* engine/stages/stage_eval.c: the eval stage of a build (a recipe with an [eval] section, or
 * `aqs build --eval`): the exported checkpoint against the BF16 source on the captions that
 * calibration did not use (engine/stages/eval_stage.h). Its key is the one `aqs eval` uses for the
 * same checkpoint and eval set, so either command finds the other's result. */
#include <stdlib.h>
#include <string.h>

#include "engine/stages/build.h"
#include "engine/stages/eval_stage.h"
#include "engine/stages/recipe.h"
#include "engine/stages/stage.h"
#include "engine/stages/stage_env.h"
#include "kernels/backend.h"

static int eval_wanted(const aqs_stage_job *job) {
  return job->recipe && (job->recipe->eval_samples > 0 || (job->env && job->env->o->eval));
}

typedef struct eval_state {
  aqs_eval_opts opts;
  aqs_eval_session *session;
} eval_state;

static aqs_status eval_key(aqs_stage_job *job, json_t **inputs, json_t **params, aqs_err *e) {
  const aqs_build_opts *o = job->env->o;
  eval_state *es = calloc(1, sizeof *es);
  if (!es) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  job->state = es;
  es->opts = (aqs_eval_opts){.store = job->store, .model_dir = o->model_dir, .captions_path = o->captions_path,
                             .images_path = o->images_path, .images_root = o->images_root,
                             .allow_outside_root = o->allow_outside_root,
                             .samples = job->recipe->eval_samples, .backend = aqs_stage_env_backend(job->env),
                             .precision = AQS_PREC_BF16, .progress = o->progress,
                             .lookup_only = o->dry_run};
  aqs_eval_calib c;
  aqs_eval_calib_of_recipe(job->recipe, &c);
  aqs_status st = aqs_eval_session_open(&es->opts, &c, &es->session, e);
  if (st) return st;
  aqs_eval_session_key(es->session, &job->in[0], inputs, params);
  return AQS_OK;
}

static aqs_status eval_run(aqs_stage_job *job, aqs_stage_ctx *ctx, aqs_digest *result, aqs_err *e) {
  (void)ctx;
  eval_state *es = job->state;
  json_t *inputs, *params;
  aqs_eval_session_key(es->session, &job->in[0], &inputs, &params);
  aqs_eval_metrics m;
  aqs_status st = aqs_eval_session_compute(es->session, &job->in[0], job->recipe->name, params, &m, result, e);
  json_decref(inputs);
  json_decref(params);
  return st;
}

static void eval_release(aqs_stage_job *job) {
  eval_state *es = job->state;
  if (!es) return;
  aqs_eval_session_close(es->session);
  free(es);
  job->state = NULL;
}

const aqs_stage_def aqs_stage_eval = {
    .name = "eval",
    .version = "1",
    .inputs = {"export", NULL},
    .recipe_keys = "calib.samples calib.seed calib.max_len calib.template calib.chunk_sequences eval.samples",
    .key = eval_key,
    .run = eval_run,
    .release = eval_release,
    .wanted = eval_wanted,
};
