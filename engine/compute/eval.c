/* engine/compute/eval.c: the reference side of an eval set (forward once, log-probs kept on the
 * backend), each scheme's batches (forward, cross-entropy, per-row KL + argmax on the backend, the
 * last-token logits copied back) and the final metrics. */
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

/* One batch of the reference. */
typedef struct ref_batch {
  aqs_lm_batch b;
  aqs_vision_batch vis; /* image batches: the images on the backend (n_images 0 otherwise) */
  int32_t *targets;    /* host (N) next-token targets (-1: no metric at that position) */
  float *logp_ref;     /* backend (N, V) */
  double ce;           /* reference cross-entropy sum */
  int32_t *top1;       /* host (N) reference argmax */
  float *last;         /* host (B, V) reference logits at each sequence's last token */
} ref_batch;

struct aqs_eval_ref {
  aqs_eval_model model;
  const aqs_lm *ref;   /* model.lm */
  int max_seq_len;
  ref_batch *batches;
  int n, cap;
  size_t max_tokens;   /* largest batch (host scratch of a scheme run) */
};

aqs_status aqs_eval_ref_new(const aqs_eval_model *ref, int max_seq_len, aqs_eval_ref **out, aqs_err *e) {
  *out = calloc(1, sizeof **out);
  if (!*out) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  (*out)->model = *ref;
  (*out)->ref = ref->lm;
  (*out)->max_seq_len = max_seq_len;
  return AQS_OK;
}

static void ref_batch_free(const aqs_eval_ref *r, ref_batch *rb) {
  const aqs_lm *ref = r->ref;
  ref->be->ops->free(ref->be, rb->logp_ref);
  if (rb->vis.patches) aqs_vision_batch_free(r->model.vis, &rb->vis);
  free(rb->targets);
  free(rb->top1);
  free(rb->last);
  if (rb->b.cu_seqlens || rb->b.ids) aqs_lm_batch_free(ref, &rb->b);
  memset(rb, 0, sizeof *rb);
}

void aqs_eval_ref_free(aqs_eval_ref *r) {
  if (!r) return;
  for (int i = 0; i < r->n; i++) ref_batch_free(r, &r->batches[i]);
  free(r->batches);
  free(r);
}

/* Copies the logits of each sequence's last token (device) into last (host, B x V). */
static void copy_last_rows(const aqs_lm *lm, const aqs_lm_batch *b, const float *dev_logits, float *last) {
  const size_t V = (size_t)lm->cfg.vocab_size;
  for (int s = 0; s < b->n_seqs; s++)
    lm->be->ops->copy_d2h(lm->be, last + (size_t)s * V, dev_logits + (size_t)(b->host_cu_seqlens[s + 1] - 1) * V,
                          V * sizeof(float));
}

/* m's forward over rb into ws: on an image batch the tower first, its features at the
 * <|image_pad|> rows. */
static aqs_status model_forward(const aqs_eval_model *m, const ref_batch *rb, aqs_lm_ws *ws, aqs_err *e) {
  aqs_lm_batch b = rb->b;
  aqs_vision_ws *vws = NULL;
  aqs_status st = AQS_OK;
  if (rb->vis.n_images > 0) {
    if ((st = aqs_vision_ws_alloc(m->vis, &rb->vis, 0, &vws, e)) == AQS_OK &&
        (st = aqs_vision_forward(m->vis, &rb->vis, vws, NULL, NULL, NULL, e)) == AQS_OK)
      b.image_embeds = aqs_vision_ws_output(vws);
  }
  if (st == AQS_OK) st = aqs_lm_forward(m->lm, &b, ws, NULL, NULL, e);
  aqs_vision_ws_free(m->vis, vws);
  return st;
}

/* Grows the batch table; the new slot is zeroed. */
static ref_batch *next_batch(aqs_eval_ref *r, aqs_err *e) {
  if (r->n == r->cap) {
    int cap = r->cap ? 2 * r->cap : 8;
    ref_batch *p = realloc(r->batches, (size_t)cap * sizeof *p);
    if (!p) {
      aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
      return NULL;
    }
    r->batches = p;
    r->cap = cap;
  }
  memset(&r->batches[r->n], 0, sizeof r->batches[r->n]);
  return &r->batches[r->n];
}

/* The reference's results over rb, whose batch (and images) are made; r->n grows on success,
 * rb is freed on failure. */
static aqs_status ref_results(aqs_eval_ref *r, ref_batch *rb, aqs_err *e) {
  const aqs_lm *ref = r->ref;
  aqs_backend *be = ref->be;
  const aqs_ops *op = be->ops;
  const int V = ref->cfg.vocab_size;
  aqs_lm_ws *ws = NULL;
  double *row_kl = NULL;
  const size_t N = (size_t)rb->b.n_tokens, NV = N * (size_t)V;
  aqs_status st = aqs_lm_ws_alloc(ref, &rb->b, 0, 0, &ws, e);
  if (st != AQS_OK) goto done;
  if ((st = op->alloc(be, NV * sizeof(float), (void **)&rb->logp_ref, e)) != AQS_OK) {
    aqs_err_prefix(e, "reference log-probabilities of %zu tokens", N);
    goto done;
  }
  rb->targets = malloc(N * sizeof *rb->targets);
  rb->top1 = malloc(N * sizeof *rb->top1);
  rb->last = malloc((size_t)rb->b.n_seqs * (size_t)V * sizeof *rb->last);
  row_kl = malloc(N * sizeof *row_kl);
  if (!rb->targets || !rb->top1 || !rb->last || !row_kl) {
    st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory (reference results of %zu tokens)", N);
    goto done;
  }
  if ((st = model_forward(&r->model, rb, ws, e)) != AQS_OK) goto done;
  float *dev_logits = aqs_lm_ws_logits(ws);
  op->cross_entropy(be, NULL, dev_logits, rb->b.targets, rb->b.n_tokens, V, 0.0f, &rb->ce);
  op->log_softmax(be, rb->logp_ref, dev_logits, rb->b.n_tokens, V);
  op->kl_argmax_rows(be, rb->logp_ref, dev_logits, rb->b.n_tokens, V, row_kl, rb->top1);
  copy_last_rows(ref, &rb->b, dev_logits, rb->last);
  op->copy_d2h(be, rb->targets, rb->b.targets, N * sizeof *rb->targets);
  st = op->sync(be, e);
done:
  free(row_kl);
  aqs_lm_ws_free(ref, ws);
  if (st != AQS_OK) {
    ref_batch_free(r, rb);
    return st;
  }
  if (N > r->max_tokens) r->max_tokens = N;
  r->n++;
  return AQS_OK;
}

aqs_status aqs_eval_ref_add(aqs_eval_ref *r, const aqs_token_batch *batch, aqs_err *e) {
  ref_batch *rb = next_batch(r, e);
  if (!rb) return AQS_ERR_NOMEM;
  aqs_status st = aqs_lm_batch_make(r->ref, batch->token_ids, batch->seq_lens, batch->n_seqs, r->max_seq_len,
                                    &rb->b, e);
  return st != AQS_OK ? st : ref_results(r, rb, e);
}

aqs_status aqs_eval_ref_add_images(aqs_eval_ref *r, const aqs_token_batch *batch, const aqs_lm_images *images,
                                   const float *patches, aqs_err *e) {
  if (!r->model.vis)
    return aqs_errf(e, AQS_ERR_INVALID, "an image+text eval batch needs the reference's vision tower");
  ref_batch *rb = next_batch(r, e);
  if (!rb) return AQS_ERR_NOMEM;
  aqs_status st = aqs_lm_batch_make_images(r->ref, batch->token_ids, batch->seq_lens, batch->n_seqs,
                                           r->max_seq_len, images, &rb->b, e);
  if (st != AQS_OK) return st;
  st = aqs_vision_batch_make(r->model.vis, images->image_grid_thw, images->n_images, patches, &rb->vis, e);
  if (st == AQS_OK && rb->vis.n_merged != rb->b.n_image_rows)
    st = aqs_errf(e, AQS_ERR_INVALID, "%d image tokens but the images make %d features", rb->b.n_image_rows,
                  rb->vis.n_merged);
  if (st != AQS_OK) {
    ref_batch_free(r, rb);
    return st;
  }
  return ref_results(r, rb, e);
}

/* The scheme over one reference batch; row_kl, top1 (N) and last (B x V) are host scratch. */
static aqs_status scheme_batch(const aqs_eval_ref *r, const ref_batch *rb, const aqs_eval_model *model,
                               double *row_kl, int32_t *top1, float *last, aqs_eval_acc *acc, aqs_err *e) {
  const aqs_lm *scheme = model->lm;
  aqs_backend *be = scheme->be;
  const aqs_ops *op = be->ops;
  const int V = scheme->cfg.vocab_size;
  const aqs_lm_batch *b = &rb->b;
  aqs_lm_ws *ws = NULL;
  aqs_status st = aqs_lm_ws_alloc(r->ref, b, 0, 0, &ws, e);
  if (st == AQS_OK) st = grow_kl(acc, (size_t)(acc->n_targets + b->n_targets), e);
  if (st == AQS_OK) st = model_forward(model, rb, ws, e);
  if (st != AQS_OK) {
    aqs_lm_ws_free(r->ref, ws);
    return st;
  }
  float *dev_logits = aqs_lm_ws_logits(ws);
  double ce = 0.0;
  op->cross_entropy(be, NULL, dev_logits, b->targets, b->n_tokens, V, 0.0f, &ce);
  op->kl_argmax_rows(be, rb->logp_ref, dev_logits, b->n_tokens, V, row_kl, top1);
  copy_last_rows(scheme, b, dev_logits, last);
  st = op->sync(be, e);
  aqs_lm_ws_free(r->ref, ws);
  if (st != AQS_OK) return st;
  /* positions with a target only, in token order */
  size_t k = (size_t)acc->n_targets;
  int64_t agree = 0;
  double kl_sum = 0.0, mse_sum = 0.0;
  for (int s = 0; s < b->n_seqs; s++) {
    int start = b->host_cu_seqlens[s], end = b->host_cu_seqlens[s + 1];
    for (int t = start; t < end; t++) {
      if (rb->targets[t] < 0) continue;
      acc->kl_tok[k++] = row_kl[t];
      kl_sum += row_kl[t];
      agree += rb->top1[t] == top1[t];
    }
    const float *a = rb->last + (size_t)s * (size_t)V, *q = last + (size_t)s * (size_t)V;
    double se = 0.0;
    for (int v = 0; v < V; v++) se += ((double)q[v] - a[v]) * ((double)q[v] - a[v]);
    mse_sum += se / V;
  }
  acc->n_seqs += b->n_seqs;
  acc->n_tokens += b->n_tokens;
  acc->n_targets += b->n_targets;
  acc->ce_sum += ce;
  acc->ref_ce_sum += rb->ce;
  acc->kl_sum += kl_sum;
  acc->top1_agree += agree;
  acc->mse_sum += mse_sum;
  return AQS_OK;
}

aqs_status aqs_eval_ref_run(const aqs_eval_ref *r, const aqs_eval_model *model, aqs_eval_acc *acc, aqs_err *e) {
  const aqs_lm *scheme = model->lm;
  if (r->ref->be != scheme->be || !same_shape(&r->ref->cfg, &scheme->cfg))
    return aqs_errf(e, AQS_ERR_MISMATCH,
                    "the scheme and its reference differ in backend or model shape: a checkpoint "
                    "is evaluated against its own BF16 source");
  for (int i = 0; i < r->n; i++)
    if (r->batches[i].vis.n_images > 0 && !model->vis)
      return aqs_errf(e, AQS_ERR_MISMATCH, "the eval set holds images but the scheme has no vision tower");
  size_t max_seqs = 0;
  for (int i = 0; i < r->n; i++)
    if ((size_t)r->batches[i].b.n_seqs > max_seqs) max_seqs = (size_t)r->batches[i].b.n_seqs;
  double *row_kl = malloc((r->max_tokens + 1) * sizeof *row_kl);
  int32_t *top1 = malloc((r->max_tokens + 1) * sizeof *top1);
  float *last = malloc((max_seqs + 1) * (size_t)scheme->cfg.vocab_size * sizeof *last);
  aqs_status st = row_kl && top1 && last ? AQS_OK : aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  for (int i = 0; st == AQS_OK && i < r->n; i++)
    st = scheme_batch(r, &r->batches[i], model, row_kl, top1, last, acc, e);
  free(row_kl);
  free(top1);
  free(last);
  return st;
}

aqs_status aqs_eval_batch(const aqs_lm *ref, const aqs_lm *scheme, const aqs_token_batch *batch,
                          int max_seq_len, aqs_eval_acc *acc, aqs_err *e) {
  aqs_eval_ref *r;
  const aqs_eval_model ref_model = {ref, NULL}, scheme_model = {scheme, NULL};
  aqs_status st = aqs_eval_ref_new(&ref_model, max_seq_len, &r, e);
  if (st != AQS_OK) return st;
  if ((st = aqs_eval_ref_add(r, batch, e)) == AQS_OK) st = aqs_eval_ref_run(r, &scheme_model, acc, e);
  aqs_eval_ref_free(r);
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
