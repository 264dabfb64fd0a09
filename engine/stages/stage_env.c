/* engine/stages/stage_env.c: the build's shared model and backend, loaded lazily (see
 * stage_env.h). */
#include "engine/stages/stage_env.h"

#include <stdlib.h>

#include "engine/compute/calibrate.h"
#include "engine/compute/vlm.h"
#include "engine/export/fp8_cache.h"
#include "engine/stages/build.h"
#include "engine/stages/stage.h"
#include "kernels/backend.h"

/* Compute stages run at F32: the precision is part of their keys (compute_params). */
#define COMPUTE_PRECISION AQS_PREC_F32

void aqs_stage_env_init(aqs_stage_env *env, const struct aqs_build_opts *o, aqs_store *store) {
  *env = (aqs_stage_env){.o = o, .store = store};
  pthread_mutex_init(&env->fp8_lock, NULL);
}

aqs_status aqs_stage_env_fp8(aqs_stage_env *env, struct aqs_fp8_cache **out, aqs_err *e) {
  pthread_mutex_lock(&env->fp8_lock);
  aqs_status st = env->fp8 ? AQS_OK : aqs_fp8_cache_new(0, &env->fp8, e);
  *out = env->fp8;
  pthread_mutex_unlock(&env->fp8_lock);
  return st;
}

const char *aqs_stage_env_backend(const aqs_stage_env *env) {
  return env->o && env->o->backend ? env->o->backend : "cpu";
}

aqs_status aqs_stage_env_lm(aqs_stage_env *env, aqs_lm **lm_out, aqs_err *e) {
  aqs_status st = AQS_OK;
  if (!env->lm) {
    st = aqs_backend_open(aqs_stage_env_backend(env), COMPUTE_PRECISION, &env->be, e);
    if (!st) st = aqs_lm_load(env->be, env->o->model_dir, &env->lm, e);
  }
  *lm_out = env->lm;
  return st;
}

aqs_status aqs_stage_env_vision(aqs_stage_env *env, const aqs_digest *amax, aqs_vision **vis_out,
                                aqs_err *e) {
  aqs_lm *lm;
  aqs_status st = aqs_stage_env_lm(env, &lm, e);
  if (!st && !env->vis) st = aqs_vision_load_dir(env->be, env->o->model_dir, &env->vis, e);
  *vis_out = env->vis;
  if (st || !amax || (env->vis_amax_set && aqs_digest_eq(&env->vis_amax, amax))) return st;
  aqs_amax_table t = {0};
  st = aqs_build_load_amax(env->store, amax, &t, e);
  aqs_vlm m = {env->lm, env->vis};
  if (!st) st = aqs_vlm_set_amax(&m, &t, e);
  aqs_amax_free(&t);
  if (!st) {
    env->vis_amax = *amax;
    env->vis_amax_set = 1;
  }
  return st;
}

aqs_status aqs_stage_env_lm_amax(aqs_stage_env *env, const aqs_digest *amax, aqs_lm **lm_out, aqs_err *e) {
  aqs_status st = aqs_stage_env_lm(env, lm_out, e);
  if (st || (env->lm_amax_set && aqs_digest_eq(&env->lm_amax, amax))) return st;
  aqs_amax_table t = {0};
  st = aqs_build_load_amax(env->store, amax, &t, e);
  if (!st) st = aqs_lm_set_amax(env->lm, &t, e);
  aqs_amax_free(&t);
  if (!st) {
    env->lm_amax = *amax;
    env->lm_amax_set = 1;
  }
  return st;
}

void aqs_stage_env_free(aqs_stage_env *env) {
  aqs_vision_free(env->vis);
  env->vis = NULL;
  aqs_lm_free(env->lm);
  aqs_backend_close(env->be);
  aqs_qwen_model_free(env->model);
  aqs_fp8_cache_free(env->fp8);
  env->fp8 = NULL;
  env->lm = NULL;
  env->be = NULL;
  env->model = NULL;
  pthread_mutex_destroy(&env->fp8_lock);
}
