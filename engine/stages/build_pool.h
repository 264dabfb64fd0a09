/* engine/stages/build_pool.h: the stages a build may run for several recipes at once (stage.h,
 * concurrent: the export of a sweep's later schemes) run here, on a few threads, each item one
 * aqs_stage_exec. Items start in order; after a failure no further item starts and those running
 * finish, so every item before the first failure has run: the build then reports the failure of
 * the lowest recipe, as a sequential build would.
 * Ownership: items are the caller's. Threads: each item is touched by one pool thread until
 * aqs_build_pool_run returns. Errors: per item (st, err); running itself cannot fail (a thread
 * that cannot start leaves its items to the calling thread). */
#ifndef AQS_STAGES_BUILD_POOL_H
#define AQS_STAGES_BUILD_POOL_H

#include <stddef.h>

#include "common/err.h"
#include "engine/stages/stage.h"

typedef struct aqs_pool_item {
  const aqs_stage_def *def;   /* NULL: not deferred */
  aqs_stage_job job;
  aqs_stage_outcome *out;     /* the recipe's report slot */
  aqs_status st;
  aqs_err err;
  int started;
} aqs_pool_item;

/* Threads for n items: AQS_EXPORT_SCHEMES when set, else 1 (one after another: build_pool.c
 * says why); never more than n. */
int aqs_build_pool_threads(size_t n);

/* Runs the n items (pointers into the caller's array) on `threads` threads. progress_label: a
 * progress line on stderr counting finished items ("export  9/9 schemes"), or NULL. */
void aqs_build_pool_run(aqs_pool_item *const *items, size_t n, int threads, const char *progress_label);

#endif
