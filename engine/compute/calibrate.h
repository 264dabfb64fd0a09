/* engine/compute/calibrate.h: max calibration of the language model's candidate linears over a
 * batch of token sequences (one calib-set chunk). Chunk-associative: calibrate each chunk into
 * its own amax table, then aqs_amax_reduce (engine/model/amax.h) in chunk order. */
#ifndef AQS_COMPUTE_CALIBRATE_H
#define AQS_COMPUTE_CALIBRATE_H

#include "common/err.h"
#include "engine/calib/calibset.h"
#include "engine/compute/lm.h"
#include "engine/model/amax.h"

/* One packed batch of sequences as host arrays (what a calib chunk holds). */
typedef struct aqs_token_batch {
  int n_seqs;
  const int32_t *seq_lens;  /* (n_seqs) */
  const int32_t *token_ids; /* (sum of seq_lens), packed */
} aqs_token_batch;

/* View of a text calib chunk as a token batch (no copy). Image chunks: AQS_ERR_UNSUPPORTED
 * (the vision tower is not computed; the text tokens alone would mis-state the inputs). */
aqs_status aqs_token_batch_of_chunk(const aqs_calib_chunk *c, aqs_token_batch *out, aqs_err *e);

/* Runs the forward over batch and fills *out (must be empty) with, for every language-model
 * linear, input_amax = max |input| over the batch and weight_amax = max |W|; n_tokens/n_seqs
 * count the batch. max_seq_len > 0 rejects longer sequences. NaN/Inf activations are
 * AQS_ERR_NUMERIC naming the module. */
aqs_status aqs_calibrate_batch(const aqs_lm *lm, const aqs_token_batch *batch, int max_seq_len,
                               aqs_amax_table *out, aqs_err *e);

/* The same, and with with_kv the FP8 KV cache amax of each layer too: module
 * "<layer>.self_attn.k_cache" (input_amax = max |K after RoPE|) and ".v_cache" (max |V|), with
 * weight_amax 0; aqs_lm_kv_cache_name writes those names. */
aqs_status aqs_calibrate_batch_kv(const aqs_lm *lm, const aqs_token_batch *batch, int max_seq_len,
                                  int with_kv, aqs_amax_table *out, aqs_err *e);
void aqs_lm_kv_cache_name(const aqs_lm *lm, int layer, int v, char *buf, size_t n);

/* Copies the input amax of every linear from t into lm (module names must all be present:
 * AQS_ERR_NOT_FOUND naming the first missing one). Weight amax stays the one computed at load;
 * a table whose weight_amax differs means another checkpoint: AQS_ERR_MISMATCH naming it. */
aqs_status aqs_lm_set_amax(aqs_lm *lm, const aqs_amax_table *t, aqs_err *e);

#endif
