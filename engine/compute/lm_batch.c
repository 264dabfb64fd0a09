/* engine/compute/lm_batch.c: packed batches (validation, targets, M-RoPE positions,
 * cu_seqlens) and the per-batch workspace of the LM passes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/compute/lm_internal.h"

aqs_status aqs_lm_batch_make(const aqs_lm *lm, const int32_t *ids, const int32_t *seq_lens,
                             int n_seqs, int max_seq_len, aqs_lm_batch *out, aqs_err *e) {
  memset(out, 0, sizeof *out);
  aqs_backend *be = lm->be;
  if (n_seqs < 1) return aqs_errf(e, AQS_ERR_INVALID, "empty batch: no sequences");
  int64_t N = 0;
  int maxlen = 0;
  int limit = lm->cfg.max_position_embeddings;
  if (max_seq_len > 0 && (limit <= 0 || max_seq_len < limit)) limit = max_seq_len;
  for (int s = 0; s < n_seqs; s++) {
    if (seq_lens[s] < 1)
      return aqs_errf(e, AQS_ERR_INVALID, "sequence %d is empty", s);
    if (limit > 0 && seq_lens[s] > limit)
      return aqs_errf(e, AQS_ERR_INVALID, "sequence %d has %d tokens, more than the maximum %d",
                      s, seq_lens[s], limit);
    if (seq_lens[s] > maxlen) maxlen = seq_lens[s];
    N += seq_lens[s];
  }
  if (N > INT32_MAX / 4) return aqs_errf(e, AQS_ERR_INVALID, "batch of %lld tokens is too large", (long long)N);
  int64_t off = 0;
  for (int s = 0; s < n_seqs; s++)
    for (int i = 0; i < seq_lens[s]; i++, off++)
      if (ids[off] < 0 || ids[off] >= lm->cfg.vocab_size)
        return aqs_errf(e, AQS_ERR_INVALID,
                        "sequence %d position %d: token id %d outside the vocabulary [0, %d)", s,
                        i, ids[off], lm->cfg.vocab_size);
  int32_t *targets = malloc((size_t)N * sizeof *targets);
  int32_t *pos = malloc(3 * (size_t)N * sizeof *pos);
  int32_t *cu = malloc(((size_t)n_seqs + 1) * sizeof *cu);
  if (!targets || !pos || !cu) {
    free(targets);
    free(pos);
    free(cu);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  off = 0;
  cu[0] = 0;
  for (int s = 0; s < n_seqs; s++) {
    for (int i = 0; i < seq_lens[s]; i++, off++) {
      targets[off] = i + 1 < seq_lens[s] ? ids[off + 1] : -1;
      pos[off] = pos[N + off] = pos[2 * N + off] = i;
    }
    cu[s + 1] = (int32_t)off;
  }
  out->n_seqs = n_seqs;
  out->n_tokens = (int)N;
  out->max_seqlen = maxlen;
  out->n_targets = (int)(N - n_seqs);
  out->host_cu_seqlens = cu;
  aqs_status st = AQS_OK;
  void *p;
  if ((st = be->ops->alloc(be, (size_t)N * 4, &p, e)) != AQS_OK) goto done;
  out->ids = p;
  if ((st = be->ops->alloc(be, (size_t)N * 4, &p, e)) != AQS_OK) goto done;
  out->targets = p;
  if ((st = be->ops->alloc(be, (size_t)N * 12, &p, e)) != AQS_OK) goto done;
  out->pos = p;
  if ((st = be->ops->alloc(be, ((size_t)n_seqs + 1) * 4, &p, e)) != AQS_OK) goto done;
  out->cu_seqlens = p;
  be->ops->copy_h2d(be, out->ids, ids, (size_t)N * 4);
  be->ops->copy_h2d(be, out->targets, targets, (size_t)N * 4);
  be->ops->copy_h2d(be, out->pos, pos, (size_t)N * 12);
  be->ops->copy_h2d(be, out->cu_seqlens, cu, ((size_t)n_seqs + 1) * 4);
  st = be->ops->sync(be, e);
done:
  free(targets);
  free(pos);
  if (st != AQS_OK) aqs_lm_batch_free(lm, out);
  return st;
}

void aqs_lm_batch_free(const aqs_lm *lm, aqs_lm_batch *b) {
  aqs_backend *be = lm->be;
  be->ops->free(be, b->ids);
  be->ops->free(be, b->targets);
  be->ops->free(be, b->pos);
  be->ops->free(be, b->cu_seqlens);
  be->ops->free(be, b->image_rows);
  free(b->host_cu_seqlens);
  memset(b, 0, sizeof *b);
}

/* Allocates floats (or bytes when bytes != 0) and records the buffer for aqs_lm_ws_free. */
static aqs_status ws_get(const aqs_lm *lm, aqs_lm_ws *ws, size_t count, size_t elem, void **out,
                         const char *what, aqs_err *e) {
  aqs_status st = lm->be->ops->alloc(lm->be, count * elem, out, e);
  if (st != AQS_OK) return aqs_err_prefix(e, "workspace %s", what);
  ws->bufs[ws->nbufs++] = *out;
  return AQS_OK;
}

static aqs_status ws_alloc(const aqs_lm *lm, const aqs_lm_batch *b, int with_grads, int with_logp_ref,
                           int with_head, aqs_lm_ws **out, aqs_err *e) {
  *out = NULL;
  aqs_lm_ws *ws = calloc(1, sizeof *ws);
  if (!ws) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  const aqs_qwen_text_config *c = &lm->cfg;
  size_t N = (size_t)b->n_tokens, C = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
  size_t QD = (size_t)c->num_heads * (size_t)c->head_dim;
  size_t KD = (size_t)c->num_kv_heads * (size_t)c->head_dim, V = (size_t)c->vocab_size;
  size_t max_in = C > I ? C : I, max_out;
  if (QD > max_in) max_in = QD;
  max_out = max_in;
  ws->N = (int)N;
  aqs_status st = AQS_OK;
#define WS(field, count, what)                                                           \
  do {                                                                                   \
    void *p_;                                                                            \
    if ((st = ws_get(lm, ws, (count), sizeof *ws->field, &p_, what, e)) != AQS_OK) goto fail; \
    ws->field = p_;                                                                      \
  } while (0)
  WS(ckpt, ((size_t)c->num_layers + 1) * N * C, "residual checkpoints");
  { /* one layer's intermediates: the workspace's own set (kept sets: lm_backward.c) */
    static const char *const names[AQS_LM_ACTS] = {"ln1", "rstd1", "q", "k", "v", "q_rope", "k_rope", "attention",
                                                   "lse", "o", "residual", "ln2", "rstd2", "gate", "up", "act",
                                                   "down"};
    size_t part[AQS_LM_ACTS];
    float *f[AQS_LM_ACTS];
    aqs_lm_acts_sizes(lm, N, part);
    for (int i = 0; i < AQS_LM_ACTS; i++) {
      void *p_;
      if ((st = ws_get(lm, ws, part[i], sizeof(float), &p_, names[i], e)) != AQS_OK) goto fail;
      f[i] = p_;
    }
    ws->base = aqs_lm_acts_of(f);
    aqs_lm_ws_select_layer(ws, -1);
  }
  WS(xa, N * C, "xa");
  WS(xb, N * C, "xb");
  WS(layer_amax, (size_t)c->num_layers, "layer output amax");
  if (with_head) {
    WS(normf, N * C, "final norm");
    WS(rstdf, N, "final rstd");
    WS(logits, N * V, "logits");
  }
  if (with_logp_ref) WS(logp_ref, N * V, "reference log-probs");
  if (with_grads) {
    WS(d_x, N * C, "d_x");
    WS(d_h, N * C, "d_h");
    WS(d_ln, N * C, "d_ln");
    WS(d_attn, N * QD, "d_attn");
    WS(d_q, N * QD, "d_q");
    WS(d_k, N * KD, "d_k");
    WS(d_v, N * KD, "d_v");
    WS(d_act, N * I, "d_act");
    WS(d_gate, N * I, "d_gate");
    WS(d_up, N * I, "d_up");
  }
  WS(xq, N * max_in, "fp8 input");
  WS(wq, max_out * max_in, "fp8 weight");
  WS(yq, N * max_out, "fp8 output");
#undef WS
  *out = ws;
  return AQS_OK;
fail:
  aqs_lm_ws_free(lm, ws);
  return st;
}

aqs_status aqs_lm_ws_alloc(const aqs_lm *lm, const aqs_lm_batch *b, int with_grads,
                           int with_logp_ref, aqs_lm_ws **out, aqs_err *e) {
  return ws_alloc(lm, b, with_grads, with_logp_ref, 1, out, e);
}

aqs_status aqs_lm_ws_alloc_layers(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws **out, aqs_err *e) {
  return ws_alloc(lm, b, 0, 0, 0, out, e);
}

void aqs_lm_acts_sizes(const aqs_lm *lm, size_t N, size_t part[AQS_LM_ACTS]) {
  const aqs_qwen_text_config *c = &lm->cfg;
  const size_t C = (size_t)c->hidden_size, I = (size_t)c->intermediate_size, H = (size_t)c->num_heads,
               QD = H * (size_t)c->head_dim, KD = (size_t)c->num_kv_heads * (size_t)c->head_dim;
  const size_t sizes[AQS_LM_ACTS] = {N * C,  N,     N * QD, N * KD, N * KD, N * QD, N * KD, N * QD, N * H,
                                     N * C,  N * C, N * C,  N,      N * I,  N * I,  N * I,  N * C};
  memcpy(part, sizes, sizeof sizes);
}

aqs_lm_acts aqs_lm_acts_of(float *const f[AQS_LM_ACTS]) {
  return (aqs_lm_acts){f[0], f[1], f[2],  f[3],  f[4],  f[5],  f[6],  f[7], f[8],
                       f[9], f[10], f[11], f[12], f[13], f[14], f[15], f[16]};
}

void aqs_lm_ws_select_layer(aqs_lm_ws *ws, int l) {
  const aqs_lm_acts *a = l >= 0 && ws->kept ? &ws->kept[l] : &ws->base;
  ws->ln1 = a->ln1;
  ws->rstd1 = a->rstd1;
  ws->q = a->q;
  ws->k = a->k;
  ws->v = a->v;
  ws->qr = a->qr;
  ws->kr = a->kr;
  ws->attn = a->attn;
  ws->lse = a->lse;
  ws->o = a->o;
  ws->hmid = a->hmid;
  ws->ln2 = a->ln2;
  ws->rstd2 = a->rstd2;
  ws->gate = a->gate;
  ws->up = a->up;
  ws->act = a->act;
  ws->down = a->down;
}

void aqs_lm_ws_free(const aqs_lm *lm, aqs_lm_ws *ws) {
  if (!ws) return;
  lm->be->ops->free(lm->be, ws->kept_mem);
  free(ws->kept);
  for (int i = 0; i < ws->nbufs; i++) lm->be->ops->free(lm->be, ws->bufs[i]);
  free(ws);
}

float *aqs_lm_ws_logits(aqs_lm_ws *ws) { return ws->logits; }
const float *aqs_lm_ws_dinput(const aqs_lm_ws *ws) { return ws->d_x; }
const float *aqs_lm_ws_logp_ref(const aqs_lm_ws *ws) { return ws->logp_ref; }

void aqs_lm_ws_track_kv_amax(aqs_lm_ws *ws, float *kv_amax) { ws->kv_amax = kv_amax; }
