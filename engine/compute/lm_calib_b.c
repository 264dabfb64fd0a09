/* engine/compute/lm_calib_b.c: the calibration forward of the decoder layers in BF16 mode on
 * BF16 activation storage (kernels/ops.h, "BF16 activation storage"). Same values as
 * aqs_lm_forward_layers with calibrate.c's hook in AQS_PREC_BF16, bit for bit, with half the
 * activation bytes, no casts around the GEMMs, and every amax fused into the op that writes the
 * measured tensor. The residual stream is BF16 too: in BF16 mode it holds BF16 values only (token
 * embeddings, image features from a BF16-mode vision tower, rounded sums). */
#include <stdlib.h>

#include "engine/compute/lm_internal.h"

int aqs_lm_calib_b_applies(const aqs_lm *lm) {
  const aqs_backend *be = lm->be;
  const aqs_ops *op = be->ops;
  if (be->precision != AQS_PREC_BF16) return 0;
  if (!op->rmsnorm_fwd_b || !op->linear_b || !op->rope_fwd_b || !op->attention_fwd_b || !op->add_b ||
      !op->swiglu_fwd_b || !op->amax_bf16_async)
    return 0;
  /* served FP8 linears and an FP8 KV cache keep the F32-buffer path (their ops take F32) */
  for (int l = 0; l < lm->cfg.num_layers; l++) {
    if (lm->layers[l].k_scale > 0.0f) return 0;
    for (int s = 0; s < AQS_LIN_COUNT; s++)
      if (lm->layers[l].lin[s].wq || !lm->layers[l].lin[s].w) return 0;
  }
  return 1;
}

/* One layer, the residual x (N, C) BF16 updated in place. amax = this layer's (AQS_LIN_COUNT)
 * input amaxes (only Q, O, GATE, DOWN are written: K/V share Q's input, UP shares GATE's), kv = its
 * (2) K-after-RoPE / V amaxes. */
static void layer_b(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws, int l, aqs_bf16 *x, float *amax,
                    float *kv, float *out_amax) {
  aqs_backend *be = lm->be;
  const aqs_ops *op = be->ops;
  const aqs_qwen_text_config *c = &lm->cfg;
  const aqs_lm_layer *L = &lm->layers[l];
  const aqs_lm_linear *lin = L->lin;
  const int N = ws->N, C = c->hidden_size, D = c->head_dim, Hq = c->num_heads, Hkv = c->num_kv_heads,
            I = c->intermediate_size;
  const size_t NC = (size_t)N * (size_t)C, kn = (size_t)N * (size_t)Hkv * (size_t)D;
  const float eps = (float)c->rms_norm_eps, theta = (float)c->rope_theta;
  /* BF16 views of the workspace's F32 buffers (each is at least as large) */
  aqs_bf16 *ln1 = (aqs_bf16 *)ws->ln1, *q = (aqs_bf16 *)ws->q, *k = (aqs_bf16 *)ws->k,
           *v = (aqs_bf16 *)ws->v, *attn = (aqs_bf16 *)ws->attn, *o = (aqs_bf16 *)ws->o,
           *ln2 = (aqs_bf16 *)ws->ln2, *gate = (aqs_bf16 *)ws->gate, *up = (aqs_bf16 *)ws->up,
           *down = (aqs_bf16 *)ws->down, *hmid = (aqs_bf16 *)ws->hmid;
  op->rmsnorm_fwd_b(be, ln1, NULL, x, L->ln1, N, C, eps, amax + AQS_LIN_Q);
  op->linear_b(be, q, ln1, lin[AQS_LIN_Q].w, lin[AQS_LIN_Q].b, N, C, lin[AQS_LIN_Q].out);
  op->linear_b(be, k, ln1, lin[AQS_LIN_K].w, lin[AQS_LIN_K].b, N, C, lin[AQS_LIN_K].out);
  op->linear_b(be, v, ln1, lin[AQS_LIN_V].w, lin[AQS_LIN_V].b, N, C, lin[AQS_LIN_V].out);
  op->rope_fwd_b(be, q, b->pos, N, Hq, D, c->mrope_section, theta, NULL);
  op->rope_fwd_b(be, k, b->pos, N, Hkv, D, c->mrope_section, theta, kv);
  if (kv) op->amax_bf16_async(be, v, kn, kv + 1);
  op->attention_fwd_b(be, attn, NULL, q, k, v, b->cu_seqlens, b->n_seqs, b->max_seqlen, N, Hq, Hkv, D);
  op->amax_bf16_async(be, attn, (size_t)N * (size_t)lin[AQS_LIN_O].in, amax + AQS_LIN_O);
  op->linear_b(be, o, attn, lin[AQS_LIN_O].w, lin[AQS_LIN_O].b, N, lin[AQS_LIN_O].in, C);
  op->add_b(be, hmid, x, o, NC, NULL);
  op->rmsnorm_fwd_b(be, ln2, NULL, hmid, L->ln2, N, C, eps, amax + AQS_LIN_GATE);
  op->linear_b(be, gate, ln2, lin[AQS_LIN_GATE].w, lin[AQS_LIN_GATE].b, N, C, I);
  op->linear_b(be, up, ln2, lin[AQS_LIN_UP].w, lin[AQS_LIN_UP].b, N, C, I);
  op->swiglu_fwd_b(be, gate, gate, up, (size_t)N * (size_t)I, amax + AQS_LIN_DOWN); /* act in gate */
  op->linear_b(be, down, gate, lin[AQS_LIN_DOWN].w, lin[AQS_LIN_DOWN].b, N, I, C);
  op->add_b(be, x, hmid, down, NC, out_amax); /* x is dead after the first add: in place */
}

aqs_status aqs_lm_calib_layers_b(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws, float *d_amax,
                                 float *d_kv_amax, aqs_err *e) {
  aqs_backend *be = lm->be;
  const aqs_qwen_text_config *c = &lm->cfg;
  const int L = c->num_layers;
  const size_t NC = (size_t)ws->N * (size_t)c->hidden_size;
  be->ops->embedding(be, ws->ckpt, lm->embed, b->ids, ws->N, c->hidden_size);
  if (b->n_image_rows > 0) {
    if (!b->image_embeds) return aqs_errf(e, AQS_ERR_INTERNAL, "image batch without image features");
    be->ops->scatter_rows(be, ws->ckpt, b->image_embeds, b->image_rows, b->n_image_rows, c->hidden_size);
  }
  /* The residual as BF16 in the (N, C) F32 buffer xa (calibration keeps no checkpoints). The cast
   * is exact: embeddings are BF16 weights, and image features from a vision tower in BF16 mode are
   * its last linear's BF16-rounded output, so every later op reads the values the F32 path reads. */
  aqs_bf16 *x = (aqs_bf16 *)ws->xa;
  be->ops->cast_f32_to_bf16(be, x, ws->ckpt, NC);
  /* the fused amaxes take the max with what is there: start from 0 */
  be->ops->zero(be, ws->layer_amax, (size_t)L * sizeof(float));
  for (int l = 0; l < L; l++)
    layer_b(lm, b, ws, l, x, d_amax + (size_t)l * AQS_LIN_COUNT, d_kv_amax ? d_kv_amax + 2 * (size_t)l : NULL,
            ws->layer_amax + l);
  return aqs_lm_check_layer_amax(lm, ws, 0, "the output of", e);
}
