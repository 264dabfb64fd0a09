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
 * Threads: one accumulator per thread; the models' backend is not thread-safe. */
#ifndef AQS_COMPUTE_EVAL_H
#define AQS_COMPUTE_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/compute/calibrate.h"
#include "engine/compute/lm.h"

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

/* Runs ref (the BF16 source) and scheme over one batch (host token ids) and adds to acc.
 * ref and scheme must share a backend and a config (AQS_ERR_MISMATCH otherwise); scheme may be
 * ref itself (the baseline: KL 0, top-1 1). max_seq_len as aqs_lm_batch_make. Errors: those of
 * the forward (AQS_ERR_NUMERIC naming the layer), AQS_ERR_NOMEM. */
aqs_status aqs_eval_batch(const aqs_lm *ref, const aqs_lm *scheme, const aqs_token_batch *batch,
                          int max_seq_len, aqs_eval_acc *acc, aqs_err *e);

/* Metrics of the sums (sorts a copy of the per-position KL for the percentile). */
aqs_status aqs_eval_finish(const aqs_eval_acc *acc, aqs_eval_metrics *out, aqs_err *e);
void aqs_eval_acc_free(aqs_eval_acc *acc);

#endif
