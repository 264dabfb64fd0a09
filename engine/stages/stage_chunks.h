/* engine/stages/stage_chunks.h: what the chunked stages (calibrate, sensitivity) share: one cached
 * action per calib-set chunk (key: source, chunk digest, [amax], compute params [, method]),
 * served to the compute loop (engine/compute/batch_loop.h) as its cache, so a chunk computed by
 * any build, process or machine sharing the store is not computed again, and an interrupted
 * build resumes at the first missing chunk. The stage then stores the reduced total.
 * Ownership: aqs_chunk_cache_close frees what open loaded. Threads: one cache per thread.
 * Errors: aqs_status + *e; a chunk's errors name its digest. */
#ifndef AQS_STAGES_STAGE_CHUNKS_H
#define AQS_STAGES_STAGE_CHUNKS_H

#include <jansson.h>

#include "engine/calib/calibset.h"
#include "engine/compute/batch_loop.h"
#include "engine/stages/stage.h"

typedef struct aqs_chunk_cache {
  aqs_stage_job *job;
  const char *stage;        /* "calibrate-chunk", "sensitivity-chunk" */
  const char *version;
  const aqs_digest *amax;   /* sensitivity: the model's input amax (key input); NULL otherwise */
  json_t *params;           /* the chunk key's params (owned) */
  /* Part <-> stored JSON (the part is an aqs_amax_table or aqs_scores). */
  aqs_status (*parse)(const char *text, size_t len, const char *what, void *part, aqs_err *e);
  aqs_status (*to_json)(const void *part, char **text, aqs_err *e);
  aqs_calib_set set;        /* loaded by open */
  aqs_calib_chunk chunk;    /* the chunk being computed */
  aqs_stage_ctx ctx;        /* its lookup, recorded once computed */
  int have_ctx;
  uint8_t *by_worker;       /* chunks chunk workers just computed: hits even under --rebuild */
} aqs_chunk_cache;

/* Loads the calib set (the stage's input calib_set) and fills loop's hooks for its first n
 * chunks (n < 0: all); the caller sets progress and runs aqs_calibrate_batches /
 * aqs_sensitivity_batches. params: the chunk key's params (taken). */
aqs_status aqs_chunk_cache_open(aqs_chunk_cache *c, const aqs_digest *calib_set, json_t *params, int32_t n,
                                aqs_batch_loop *loop, aqs_err *e);
void aqs_chunk_cache_close(aqs_chunk_cache *c);

/* With --devices naming two workers or more (engine/stages/chunk_workers.h): has the chunks of
 * loop (its final n) that miss computed by worker processes and waits for them, so that the
 * loop then finds every chunk cached. stage_key: the calling stage's action key. A no-op with one
 * device, in a worker, or when fewer than two chunks miss. Errors: a worker's failure. */
aqs_status aqs_chunk_cache_spread(aqs_chunk_cache *c, const aqs_batch_loop *loop, const char *stage,
                                  const aqs_digest *stage_key, aqs_err *e);

/* In a chunk worker: whether the stage only computes the worker's chunks (and stores no total). */
int aqs_chunk_cache_is_worker(const aqs_chunk_cache *c);

/* The params every compute key holds: backend, precision, max_len (new reference). */
json_t *aqs_stage_compute_params(aqs_stage_job *job);

#endif
