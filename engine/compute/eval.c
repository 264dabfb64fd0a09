/* engine/compute/eval.c: one eval batch (reference forward, scheme forward, per-position KL on
 * the backend; argmax and last-token logits on the host) and the final metrics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/compute/eval.h"
#include "engine/compute/lm_internal.h"

static int same_shape(const aqs_qwen_text_config *a, const aqs_qwen_text_config *b) {
  return a->hidden_size == b->hidden_size && a->num_layers == b->num_layers &&
         a->vocab_size == b->vocab_size && a->num_heads == b->num_heads &&
         a->num_kv_heads == b->num_kv_heads && a->head_dim == b->head_dim &&
         a->intermediate_size == b->intermediate_size;
}

static size_t argmax_row(const float *x, int V) {
  size_t best = 0;
  for (int v = 1; v < V; v++)
    if (x[v] > x[best]) best = (size_t)v;
  return best;
}

static aqs_status grow_kl(aqs_eval_acc *acc, size_t need, aqs_err *e) {
  if (need <= acc->kl_cap) return AQS_OK;
  size_t cap = acc->kl_cap ? acc->kl_cap : 1024;
  while (cap < need) cap *= 2;
  double *p = realloc(acc->kl_tok, cap * sizeof *p);
  if (!p) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory (%zu per-token KL values)", cap);
  acc->kl_tok = p;
  acc->kl_cap = cap;
  return AQS_OK;
}

aqs_status aqs_eval_batch(const aqs_lm *ref, const aqs_lm *scheme, const aqs_token_batch *batch,
                          int max_seq_len, aqs_eval_acc *acc, aqs_err *e) {
  if (ref->be != scheme->be || !same_shape(&ref->cfg, &scheme->cfg))
    return aqs_errf(e, AQS_ERR_MISMATCH,
                    "the scheme and its reference differ in backend or model shape: a checkpoint "
                    "is evaluated against its own BF16 source");
  aqs_backend *be = ref->be;
  const aqs_ops *op = be->ops;
  const int V = ref->cfg.vocab_size;
  aqs_lm_batch b;
  aqs_lm_ws *ws = NULL;
  float *ref_logits = NULL, *logits = NULL;
  aqs_status st = aqs_lm_batch_make(ref, batch->token_ids, batch->seq_lens, batch->n_seqs,
                                    max_seq_len, &b, e);
  if (st != AQS_OK) return st;
  const size_t NV = (size_t)b.n_tokens * (size_t)V;
  if ((st = aqs_lm_ws_alloc(ref, &b, 0, 1, &ws, e)) != AQS_OK) goto done;
  ref_logits = malloc(NV * sizeof *ref_logits);
  logits = malloc(NV * sizeof *logits);
  if (!ref_logits || !logits) {
    st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory (2 x %zu logits on the host)", NV);
    goto done;
  }
  if ((st = grow_kl(acc, (size_t)(acc->n_targets + b.n_targets), e)) != AQS_OK) goto done;
  float *dev_logits = aqs_lm_ws_logits(ws);
  double ref_ce = 0.0, ce = 0.0;
  if ((st = aqs_lm_forward(ref, &b, ws, NULL, NULL, e)) != AQS_OK) goto done;
  op->copy_d2h(be, ref_logits, dev_logits, NV * sizeof(float));
  op->cross_entropy(be, NULL, dev_logits, b.targets, b.n_tokens, V, 0.0f, &ref_ce);
  if ((st = aqs_lm_save_logp_ref(ref, &b, ws, e)) != AQS_OK) goto done;
  if (scheme != ref && (st = aqs_lm_forward(scheme, &b, ws, NULL, NULL, e)) != AQS_OK) goto done;
  op->cross_entropy(be, NULL, dev_logits, b.targets, b.n_tokens, V, 0.0f, &ce);
  op->copy_d2h(be, logits, dev_logits, NV * sizeof(float));
  /* per-position KL, positions with a target only, in token order */
  const float *logp_ref = ws->logp_ref;
  size_t k = (size_t)acc->n_targets;
  int64_t agree = 0;
  double kl_sum = 0.0, mse_sum = 0.0;
  for (int s = 0; s < b.n_seqs; s++) {
    int start = b.host_cu_seqlens[s], end = b.host_cu_seqlens[s + 1];
    for (int t = start; t < end - 1; t++) {
      double kl;
      size_t off = (size_t)t * (size_t)V;
      op->kl_div(be, logp_ref + off, dev_logits + off, 1, V, &kl);
      acc->kl_tok[k++] = kl;
      kl_sum += kl;
      agree += argmax_row(ref_logits + off, V) == argmax_row(logits + off, V);
    }
    const float *a = ref_logits + (size_t)(end - 1) * (size_t)V, *q = logits + (size_t)(end - 1) * (size_t)V;
    double se = 0.0;
    for (int v = 0; v < V; v++) se += ((double)q[v] - a[v]) * ((double)q[v] - a[v]);
    mse_sum += se / V;
  }
  if ((st = op->sync(be, e)) != AQS_OK) goto done;
  acc->n_seqs += b.n_seqs;
  acc->n_tokens += b.n_tokens;
  acc->n_targets += b.n_targets;
  acc->ce_sum += ce;
  acc->ref_ce_sum += ref_ce;
  acc->kl_sum += kl_sum;
  acc->top1_agree += agree;
  acc->mse_sum += mse_sum;
done:
  free(ref_logits);
  free(logits);
  aqs_lm_ws_free(ref, ws);
  aqs_lm_batch_free(ref, &b);
  return st;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

aqs_status aqs_eval_finish(const aqs_eval_acc *acc, aqs_eval_metrics *out, aqs_err *e) {
  memset(out, 0, sizeof *out);
  if (acc->n_targets < 1)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "nothing to evaluate: the eval sequences hold no position with a next token "
                    "(every sequence has 1 token)");
  out->n_seqs = acc->n_seqs;
  out->n_tokens = acc->n_tokens;
  out->n_targets = acc->n_targets;
  const double n = (double)acc->n_targets;
  out->ppl = exp(acc->ce_sum / n);
  out->ref_ppl = exp(acc->ref_ce_sum / n);
  out->kl_mean = acc->kl_sum / n;
  out->top1 = (double)acc->top1_agree / n;
  out->last_mse = acc->n_seqs ? acc->mse_sum / (double)acc->n_seqs : 0.0;
  double *sorted = malloc((size_t)acc->n_targets * sizeof *sorted);
  if (!sorted) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  memcpy(sorted, acc->kl_tok, (size_t)acc->n_targets * sizeof *sorted);
  qsort(sorted, (size_t)acc->n_targets, sizeof *sorted, cmp_double);
  size_t rank = (size_t)ceil(0.99 * n); /* nearest rank, 1-based */
  if (rank < 1) rank = 1;
  out->kl_p99 = sorted[rank - 1];
  out->kl_max = sorted[acc->n_targets - 1];
  free(sorted);
  return AQS_OK;
}

void aqs_eval_acc_free(aqs_eval_acc *acc) {
  free(acc->kl_tok);
  memset(acc, 0, sizeof *acc);
}
