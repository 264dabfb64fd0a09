/* engine/stages/stage_env.h: what the stages of one build share across recipes: the options, the
 * model description, and, from the first compute miss on, the backend with the loaded language
 * model and the amax table currently set in it. A build where every stage hits never loads it.
 * Ownership: aqs_stage_env_free releases what the env loaded; opts and store stay the caller's.
 * Threads: one env per build, used by one thread, except for the stages a build runs on several
 * threads at once (stage.h, concurrent): those read o and store, and take the FP8 code cache
 * through aqs_stage_env_fp8 only. Errors: aqs_status + *e (common/err.h). */
#ifndef AQS_STAGES_STAGE_ENV_H
#define AQS_STAGES_STAGE_ENV_H

#include <pthread.h>

#include "common/err.h"
#include "engine/compute/lm.h"
#include "engine/compute/vision.h"
#include "engine/model/qwen_config.h"
#include "store/store.h"

struct aqs_build_opts;

typedef struct aqs_stage_env {
  const struct aqs_build_opts *o;
  aqs_store *store;
  aqs_qwen_model *model;  /* groups and sizes of the source checkpoint (opened by the build) */
  aqs_backend *be;        /* loaded on the first compute miss */
  aqs_lm *lm;
  aqs_digest lm_amax;     /* amax table currently set in lm */
  int lm_amax_set;
  aqs_vision *vis;        /* the vision tower, loaded on the first image chunk computed */
  aqs_digest vis_amax;    /* amax table currently set in vis */
  int vis_amax_set;
  /* FP8 weight codes shared by the build's exports (engine/export/fp8_cache.h), made by the
   * first export that runs: a sweep quantizes and hashes each weight once. */
  struct aqs_fp8_cache *fp8;
  pthread_mutex_t fp8_lock; /* guards making fp8; initialized with aqs_stage_env_init */
} aqs_stage_env;

/* Fills env for a build of opts on store (everything else empty: loaded lazily). */
void aqs_stage_env_init(aqs_stage_env *env, const struct aqs_build_opts *o, aqs_store *store);

/* The build's FP8 code cache, made by the first caller (any thread). AQS_ERR_NOMEM. */
aqs_status aqs_stage_env_fp8(aqs_stage_env *env, struct aqs_fp8_cache **out, aqs_err *e);

/* "cpu" unless the options name another backend. */
const char *aqs_stage_env_backend(const aqs_stage_env *env);

/* The language model on the backend, loaded once per build (AQS_ERR_* of backend and loading). */
aqs_status aqs_stage_env_lm(aqs_stage_env *env, aqs_lm **lm_out, aqs_err *e);

/* The loaded model with its input amax set from the stored table `amax` (once per table). */
aqs_status aqs_stage_env_lm_amax(aqs_stage_env *env, const aqs_digest *amax, aqs_lm **lm_out, aqs_err *e);

/* The vision tower on the same backend (loaded once per build), and with its input amax set from
 * the stored table `amax` (once per table; amax NULL: none set). */
aqs_status aqs_stage_env_vision(aqs_stage_env *env, const aqs_digest *amax, aqs_vision **vis_out,
                                aqs_err *e);

void aqs_stage_env_free(aqs_stage_env *env);

#endif
