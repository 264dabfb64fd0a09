/* engine/compute/batch_loop.h: computing over a list of batches, the one loop behind
 * `aqs calibrate`, `aqs sensitivity` and the chunked build stages: for batch i in index order,
 * take its part from the caller's cache or compute it, then fold it into the total (fixed order:
 * the same bits however the parts were obtained), with progress on stderr.
 * Ownership: parts handed to hooks are the loop's (copy what you keep); the total is the
 * caller's (aqs_amax_free / aqs_scores_free). Threads: one loop per thread; hooks run on it.
 * Errors: the first failing hook or computation stops the loop; compute errors are prefixed
 * with "<unit> <i>". */
#ifndef AQS_COMPUTE_BATCH_LOOP_H
#define AQS_COMPUTE_BATCH_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/compute/lm.h"
#include "engine/model/qwen_config.h"

/* One packed batch of sequences as host arrays (what a calib chunk holds). */
typedef struct aqs_token_batch {
  int n_seqs;
  const int32_t *seq_lens;  /* (n_seqs) */
  const int32_t *token_ids; /* (sum of seq_lens), packed */
  /* Image+text batches (both NULL for text): the calib chunk with the pixel patches and the
   * image placement, and the vision tower to run them with (engine/compute/vlm.h; its input
   * amax must be set for sensitivity, like the language model's). */
  const struct aqs_calib_chunk *image_chunk;
  const struct aqs_vision *vision;
} aqs_token_batch;

typedef struct aqs_batch_loop {
  size_t n;                    /* batches */
  /* Sensitivity scope (0 = lm_only). all_layers scores the vision groups too and needs image
   * batches (AQS_ERR_INVALID on a text batch). */
  aqs_qwen_scope scope;
  const char *unit;            /* names a batch in errors: "batch", "chunk" */
  const char *progress_label;  /* NULL: no progress */
  uint64_t progress_total;     /* in tokens, or in batches when progress_batches */
  int progress_batches;
  void *ctx;
  /* Optional: part i from a cache (*found = 1 and *part filled: an aqs_amax_table or
   * aqs_scores, empty on entry). */
  aqs_status (*cached)(void *ctx, size_t i, void *part, int *found, aqs_err *e);
  /* Batch i and the model to compute it with; called only for parts not cached, so a loop
   * whose parts are all cached never needs a model. */
  aqs_status (*batch)(void *ctx, size_t i, aqs_token_batch *batch, const aqs_lm **lm, aqs_err *e);
  /* Optional: batch i is no longer used. */
  void (*batch_done)(void *ctx, size_t i);
  /* Optional: part i was computed (a cache stores it). */
  aqs_status (*computed)(void *ctx, size_t i, const void *part, aqs_err *e);
  /* Optional, for a worker that computes some of the batches for a cache (engine/stages/
   * chunk_workers.h): batch i is not its own (no hook is called for it). With skip set the loop
   * folds nothing: the total stays empty. */
  int (*skip)(void *ctx, size_t i);
} aqs_batch_loop;

#endif
