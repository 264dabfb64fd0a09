/* engine/compute/eval.h: quality of a scheme against its BF16 source on held-out token
 * sequences: both models run the same batches; the scheme's logits are compared with the
 * reference's token by token. Metrics (docs/eval.md):
 *   perplexity      exp(mean next-token cross-entropy) over every position with a target
 *   KL              per position with a target: KL(p_ref || p_scheme) in nats; mean and p99
 *                   (nearest rank) over positions
 *   top-1           fraction of those positions where both models' argmax agree
 *   last-token MSE  mean over sequences of mean_v (logit_scheme - logit_ref)^2 at the last token
 * Sums are accumulated in double in a fixed order, so a result does not depend on how the
 * sequences were split into batches only through that order (same batches -> same bits).
 * The reference runs once per eval set (aqs_eval_ref), however many schemes are compared with it.
 * Threads: one accumulator per thread; the models' backend is not thread-safe. */
#ifndef AQS_COMPUTE_EVAL_H
#define AQS_COMPUTE_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/compute/calibrate.h"
#include "engine/compute/lm.h"
#include "engine/compute/vision.h"

/* Running sums over batches. Zero-initialize; free with aqs_eval_acc_free. */
typedef struct aqs_eval_acc {
  int64_t n_seqs, n_tokens, n_targets;
  double ce_sum, ref_ce_sum;   /* next-token cross-entropy sums (scheme, reference) */
  double kl_sum;
  int64_t top1_agree;
  double mse_sum;              /* sum over sequences of their last-token MSE */
  double *kl_tok;              /* (n_targets) per-position KL, in batch order */
  size_t kl_cap;
} aqs_eval_acc;

typedef struct aqs_eval_metrics {
  int64_t n_seqs, n_tokens, n_targets;
  double ppl, ref_ppl;
  double kl_mean, kl_p99, kl_max;
  double top1;                 /* 0..1 */
  double last_mse;
} aqs_eval_metrics;

/* The BF16 reference's side of an eval set, computed once and reused for every scheme evaluated
 * against it (a sweep): per batch, the packed batch on the backend, the reference's log-softmax
 * (backend memory, N x vocab floats: 4 * vocab bytes per token is what the reuse costs), its
 * cross-entropy, its argmax per position and its logits at each sequence's last token (host).
 * Threads: one call at a time (the backend is not thread-safe). */
typedef struct aqs_eval_ref aqs_eval_ref;
/* What a batch runs through: the language model and, for image+text batches, the vision tower
 * whose features fill the <|image_pad|> rows (NULL for text-only eval). */
typedef struct aqs_eval_model {
  const aqs_lm *lm;
  const aqs_vision *vis;
} aqs_eval_model;
/* ref's models must outlive *out. max_seq_len as aqs_lm_batch_make. Errors: AQS_ERR_NOMEM. */
aqs_status aqs_eval_ref_new(const aqs_eval_model *ref, int max_seq_len, aqs_eval_ref **out, aqs_err *e);
/* Runs the reference over one batch (host token ids) and keeps its results. Errors: those of
 * the forward (AQS_ERR_NUMERIC naming the layer), of aqs_lm_batch_make, AQS_ERR_NOMEM. */
aqs_status aqs_eval_ref_add(aqs_eval_ref *r, const aqs_token_batch *batch, aqs_err *e);
/* The same for an image+text batch: images as aqs_lm_batch_make_images takes them, patches
 * (host, processor order) as aqs_vision_batch_make. Metrics count the positions that predict a
 * text token (aqs_lm_batch_make_images' targets: the caption). Needs the reference's tower
 * (AQS_ERR_INVALID otherwise); errors of both batch makers. */
aqs_status aqs_eval_ref_add_images(aqs_eval_ref *r, const aqs_token_batch *batch, const aqs_lm_images *images,
                                   const float *patches, aqs_err *e);
/* Runs scheme over every batch of r in order and adds to acc: one forward (the tower first on
 * image batches), one cross-entropy and one per-row KL + argmax pass per batch. scheme must share
 * r's backend and config, and have a tower when r has image batches (AQS_ERR_MISMATCH
 * otherwise); it may be the reference itself (the baseline: KL 0, top-1 1). */
aqs_status aqs_eval_ref_run(const aqs_eval_ref *r, const aqs_eval_model *scheme, aqs_eval_acc *acc, aqs_err *e);
void aqs_eval_ref_free(aqs_eval_ref *r);

/* One batch without reuse: aqs_eval_ref_new + add + run + free. */
aqs_status aqs_eval_batch(const aqs_lm *ref, const aqs_lm *scheme, const aqs_token_batch *batch,
                          int max_seq_len, aqs_eval_acc *acc, aqs_err *e);

/* Metrics of the sums (sorts a copy of the per-position KL for the percentile). */
aqs_status aqs_eval_finish(const aqs_eval_acc *acc, aqs_eval_metrics *out, aqs_err *e);
void aqs_eval_acc_free(aqs_eval_acc *acc);

#endif
