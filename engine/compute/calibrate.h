/* engine/compute/calibrate.h: max calibration of the language model's candidate linears over a
 * batch of token sequences (one calib-set chunk), and over a list of batches (batch_loop.h):
 * each batch into its own amax table, reduced with aqs_amax_reduce (engine/model/amax.h) in
 * batch order. Threads: one call per model at a time. Ownership: *out is the caller's. */
#ifndef AQS_COMPUTE_CALIBRATE_H
#define AQS_COMPUTE_CALIBRATE_H

#include "common/err.h"
#include "engine/compute/batch_loop.h"
#include "engine/compute/lm.h"
#include "engine/model/amax.h"

/* Runs the forward over batch and fills *out (must be empty) with, for every language-model
 * linear, input_amax = max |input| over the batch and weight_amax = max |W|; n_tokens/n_seqs
 * count the batch. max_seq_len > 0 rejects longer sequences. NaN/Inf activations are
 * AQS_ERR_NUMERIC naming the module. */
aqs_status aqs_calibrate_batch(const aqs_lm *lm, const aqs_token_batch *batch, int max_seq_len,
                               aqs_amax_table *out, aqs_err *e);

/* The same on a batch already on the backend (text or image+text with image_embeds set). */
aqs_status aqs_calibrate_lm_batch(const aqs_lm *lm, const aqs_lm_batch *b, aqs_amax_table *out,
                                  aqs_err *e);
/* The same with the forward chosen: storage_b = 1 runs it on BF16 activation storage where that
 * applies (BF16 precision, the backend has the ops: engine/compute/lm_calib_b.c), 0 always on F32
 * buffers. Both give the same bits; aqs_calibrate_lm_batch passes 1. Tests compare the two. */
aqs_status aqs_calibrate_lm_batch_storage(const aqs_lm *lm, const aqs_lm_batch *b, int storage_b,
                                          aqs_amax_table *out, aqs_err *e);
/* The amax table of every batch of loop, max-reduced in batch order into *out (empty on entry).
 * Errors: those of the hooks and of aqs_calibrate_batch. */
aqs_status aqs_calibrate_batches(const aqs_batch_loop *loop, int max_seq_len, aqs_amax_table *out, aqs_err *e);

/* Besides the linears, the table gets the FP8 KV cache amax of each layer: module
 * "<layer>.self_attn.k_cache" (input_amax = max |K after RoPE|) and ".v_cache" (max |V|), with
 * weight_amax 0; aqs_lm_kv_cache_name writes those names. */
void aqs_lm_kv_cache_name(const aqs_lm *lm, int layer, int v, char *buf, size_t n);

/* Copies the input amax of every linear from t into lm (module names must all be present:
 * AQS_ERR_NOT_FOUND naming the first missing one). Weight amax stays the one computed at load;
 * a table whose weight_amax differs means another checkpoint: AQS_ERR_MISMATCH naming it. */
aqs_status aqs_lm_set_amax(aqs_lm *lm, const aqs_amax_table *t, aqs_err *e);
/* The same for one linear (either tower). */
aqs_status aqs_linear_set_amax(aqs_lm_linear *lin, const aqs_amax_table *t, aqs_err *e);

#endif
