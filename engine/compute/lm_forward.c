/* engine/compute/lm_forward.c: the Qwen2.5-VL text decoder forward (one layer at a time, the
 * residual stream checkpointed at every layer input), final norm + lm_head, the FP8 fake-quant
 * linear, and the finite-value checks. Only kernels/ops.h is called. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/compute/lm_internal.h"

float aqs_fp8_scale_of_amax(float amax) {
  float s = amax / 448.0f;
  return s > 0.0f ? s : 1.0f;
}

void aqs_linear_fp8(aqs_backend *be, const aqs_lm_linear *lin, float *yq, const float *x, int N,
                    uint8_t *scratch_xq, uint8_t *scratch_wq) {
  be->ops->quantize_fp8_f32(be, scratch_xq, x, (size_t)N * (size_t)lin->in,
                            aqs_fp8_scale_of_amax(lin->input_amax));
  aqs_linear_fp8_codes(be, lin, yq, scratch_xq, N, scratch_wq);
}

void aqs_linear_fp8_codes(aqs_backend *be, const aqs_lm_linear *lin, float *yq, const uint8_t *xq, int N,
                          uint8_t *scratch_wq) {
  const aqs_ops *op = be->ops;
  float xs = aqs_fp8_scale_of_amax(lin->input_amax), wsc = aqs_fp8_scale_of_amax(lin->weight_amax);
  const uint8_t *wq = lin->w_fake;
  if (!wq) {
    op->quantize_fp8_bf16(be, scratch_wq, lin->w, (size_t)lin->out * (size_t)lin->in, wsc);
    wq = scratch_wq;
  }
  op->linear_fp8(be, yq, xq, xs, wq, wsc, lin->b, N, lin->in, lin->out);
}

void aqs_linear_served_fp8(aqs_backend *be, const aqs_lm_linear *lin, float *y, const float *x, int N,
                           uint8_t *scratch_xq) {
  be->ops->quantize_fp8_f32(be, scratch_xq, x, (size_t)N * (size_t)lin->in, lin->x_scale);
  be->ops->linear_fp8(be, y, scratch_xq, lin->x_scale, lin->wq, lin->w_scale, lin->b, N, lin->in, lin->out);
}

aqs_status aqs_lm_fake_quant_weights(const aqs_lm *lm, aqs_err *e) {
  aqs_backend *be = lm->be;
  for (int l = 0; l < lm->cfg.num_layers; l++)
    for (int s = 0; s < AQS_LIN_COUNT; s++) {
      aqs_lm_linear *lin = (aqs_lm_linear *)&lm->layers[l].lin[s]; /* the cache is mutable */
      if (lin->w_fake || !lin->w) continue;
      size_t n = (size_t)lin->out * (size_t)lin->in;
      void *p;
      aqs_status st = be->ops->alloc(be, n, &p, e);
      if (st != AQS_OK) return aqs_err_prefix(e, "FP8 weight codes of %s", lin->module);
      be->ops->quantize_fp8_bf16(be, p, lin->w, n, aqs_fp8_scale_of_amax(lin->weight_amax));
      lin->w_fake = p;
    }
  return be->ops->sync(be, e);
}

void aqs_lm_linear_fp8(const aqs_lm *lm, const aqs_lm_linear *lin, float *yq, const float *x,
                       int N, uint8_t *scratch_xq, uint8_t *scratch_wq) {
  aqs_linear_fp8(lm->be, lin, yq, x, N, scratch_xq, scratch_wq);
}

aqs_status aqs_lm_check_finite(const aqs_lm *lm, const float *x, size_t n, const char *what,
                               aqs_err *e) {
  float amax;
  lm->be->ops->amax_f32(lm->be, x, n, &amax);
  aqs_status st = lm->be->ops->sync(lm->be, e);
  if (st != AQS_OK) return st;
  if (!(amax <= 3.4e38f))
    return aqs_errf(e, AQS_ERR_NUMERIC, "non-finite activation (%s) at %s",
                    amax != amax ? "NaN" : "Inf", what);
  return AQS_OK;
}

/* y = linear(x) or its FP8 fake-quant, then the hook. */
static aqs_status run_linear(const aqs_lm *lm, aqs_lm_ws *ws, int l, aqs_lin_slot s, float *y,
                             const float *x, unsigned quant_mask, aqs_lm_linear_hook hook,
                             void *ctx, aqs_err *e) {
  const aqs_lm_linear *lin = &lm->layers[l].lin[s];
  if (lin->wq) /* served FP8: static input scale, the checkpoint's codes */
    aqs_linear_served_fp8(lm->be, lin, y, x, ws->N, ws->xq);
  else if (quant_mask & (1u << s))
    aqs_lm_linear_fp8(lm, lin, y, x, ws->N, ws->xq, ws->wq);
  else
    lm->be->ops->linear(lm->be, y, x, lin->w, lin->b, ws->N, lin->in, lin->out);
  return hook ? hook(ctx, lm, l, s, x, y, NULL, ws->N, e) : AQS_OK;
}

aqs_status aqs_lm_layer_fwd(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws, int l,
                            const float *x_in, float *x_out, unsigned quant_mask,
                            aqs_lm_linear_hook hook, void *ctx, aqs_err *e) {
  aqs_backend *be = lm->be;
  const aqs_ops *op = be->ops;
  const aqs_qwen_text_config *c = &lm->cfg;
  const aqs_lm_layer *L = &lm->layers[l];
  const int N = ws->N, C = c->hidden_size, D = c->head_dim, Hq = c->num_heads,
            Hkv = c->num_kv_heads;
  const size_t qn = (size_t)N * (size_t)Hq * (size_t)D, kn = (size_t)N * (size_t)Hkv * (size_t)D;
  const float eps = (float)c->rms_norm_eps, theta = (float)c->rope_theta;
  aqs_status st;
  op->rmsnorm_fwd(be, ws->ln1, ws->rstd1, x_in, L->ln1, N, C, eps);
  if ((st = run_linear(lm, ws, l, AQS_LIN_Q, ws->q, ws->ln1, quant_mask, hook, ctx, e))) return st;
  if ((st = run_linear(lm, ws, l, AQS_LIN_K, ws->k, ws->ln1, quant_mask, hook, ctx, e))) return st;
  if ((st = run_linear(lm, ws, l, AQS_LIN_V, ws->v, ws->ln1, quant_mask, hook, ctx, e))) return st;
  op->copy_d2d(be, ws->qr, ws->q, qn * sizeof(float));
  op->copy_d2d(be, ws->kr, ws->k, kn * sizeof(float));
  op->rope_fwd(be, ws->qr, b->pos, N, Hq, D, c->mrope_section, theta);
  op->rope_fwd(be, ws->kr, b->pos, N, Hkv, D, c->mrope_section, theta);
  if (ws->kv_amax) { /* no sync: the caller reads the (L, 2) table once after the forward */
    op->amax_f32_async(be, ws->kr, kn, ws->kv_amax + 2 * l);
    op->amax_f32_async(be, ws->v, kn, ws->kv_amax + 2 * l + 1);
  }
  if (L->k_scale > 0.0f) { /* FP8 KV cache: what attention reads back is E4M3 * scale */
    op->quantize_fp8_f32(be, ws->xq, ws->kr, kn, L->k_scale);
    op->dequantize_fp8(be, ws->kr, ws->xq, kn, L->k_scale);
    op->quantize_fp8_f32(be, ws->xq, ws->v, kn, L->v_scale);
    op->dequantize_fp8(be, ws->v, ws->xq, kn, L->v_scale);
  }
  op->attention_fwd(be, ws->attn, ws->lse, ws->qr, ws->kr, ws->v, b->cu_seqlens, b->n_seqs,
                    b->max_seqlen, N, Hq, Hkv, D);
  if ((st = run_linear(lm, ws, l, AQS_LIN_O, ws->o, ws->attn, quant_mask, hook, ctx, e))) return st;
  op->add(be, ws->hmid, x_in, ws->o, (size_t)N * (size_t)C);
  op->rmsnorm_fwd(be, ws->ln2, ws->rstd2, ws->hmid, L->ln2, N, C, eps);
  if ((st = run_linear(lm, ws, l, AQS_LIN_GATE, ws->gate, ws->ln2, quant_mask, hook, ctx, e)))
    return st;
  if ((st = run_linear(lm, ws, l, AQS_LIN_UP, ws->up, ws->ln2, quant_mask, hook, ctx, e)))
    return st;
  op->swiglu_fwd(be, ws->act, ws->gate, ws->up, (size_t)N * (size_t)c->intermediate_size);
  if ((st = run_linear(lm, ws, l, AQS_LIN_DOWN, ws->down, ws->act, quant_mask, hook, ctx, e)))
    return st;
  op->add(be, x_out, ws->hmid, ws->down, (size_t)N * (size_t)C);
  return AQS_OK;
}

void aqs_lm_head_fwd(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws, const float *x) {
  (void)b;
  const aqs_qwen_text_config *c = &lm->cfg;
  lm->be->ops->rmsnorm_fwd(lm->be, ws->normf, ws->rstdf, x, lm->final_norm, ws->N,
                           c->hidden_size, (float)c->rms_norm_eps);
  lm->be->ops->linear(lm->be, ws->logits, ws->normf, lm->lm_head, NULL, ws->N, c->hidden_size,
                      c->vocab_size);
}

aqs_status aqs_lm_forward(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws,
                          aqs_lm_linear_hook hook, void *ctx, aqs_err *e) {
  aqs_status st = aqs_lm_forward_layers(lm, b, ws, hook, ctx, e);
  if (st != AQS_OK) return st;
  const size_t NC = (size_t)ws->N * (size_t)lm->cfg.hidden_size;
  aqs_lm_head_fwd(lm, b, ws, ws->ckpt + (size_t)lm->cfg.num_layers * NC);
  return lm->be->ops->sync(lm->be, e);
}

aqs_status aqs_lm_forward_layers(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws,
                                 aqs_lm_linear_hook hook, void *ctx, aqs_err *e) {
  const aqs_qwen_text_config *c = &lm->cfg;
  const size_t NC = (size_t)ws->N * (size_t)c->hidden_size;
  lm->be->ops->embedding(lm->be, ws->ckpt, lm->embed, b->ids, ws->N, c->hidden_size);
  if (b->n_image_rows > 0) {
    if (!b->image_embeds)
      return aqs_errf(e, AQS_ERR_INTERNAL, "image batch without image features");
    lm->be->ops->scatter_rows(lm->be, ws->ckpt, b->image_embeds, b->image_rows, b->n_image_rows,
                              c->hidden_size);
  }
  aqs_status st;
  /* Each layer output's amax goes to the backend table layer_amax without a sync; the table is
   * read once at the end (NaN/Inf spread to every later layer, so the first bad one is found). */
  for (int l = 0; l < c->num_layers; l++) {
    float *x_in = ws->ckpt + (size_t)l * NC, *x_out = x_in + NC;
    if (ws->kept) aqs_lm_ws_select_layer(ws, l); /* kept for the backward (lm_backward.c) */
    if ((st = aqs_lm_layer_fwd(lm, b, ws, l, x_in, x_out, 0, hook, ctx, e)) != AQS_OK) return st;
    lm->be->ops->amax_f32_async(lm->be, x_out, NC, ws->layer_amax + l);
  }
  return aqs_lm_check_layer_amax(lm, ws, 0, "the output of", e);
}

aqs_status aqs_lm_check_layer_amax(const aqs_lm *lm, aqs_lm_ws *ws, int from_top, const char *what,
                                   aqs_err *e) {
  const int L = lm->cfg.num_layers;
  float *amax = malloc((size_t)L * sizeof *amax);
  if (!amax) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  lm->be->ops->copy_d2h(lm->be, amax, ws->layer_amax, (size_t)L * sizeof *amax);
  aqs_status st = lm->be->ops->sync(lm->be, e);
  for (int i = 0; i < L && st == AQS_OK; i++) {
    int l = from_top ? L - 1 - i : i;
    if (!(amax[l] <= 3.4e38f))
      st = aqs_errf(e, AQS_ERR_NUMERIC, "non-finite activation (%s) at %s language layer %d",
                    amax[l] != amax[l] ? "NaN" : "Inf", what, l);
  }
  free(amax);
  return st;
}

aqs_status aqs_lm_save_logp_ref(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws,
                                aqs_err *e) {
  (void)b;
  if (!ws->logp_ref)
    return aqs_errf(e, AQS_ERR_INTERNAL, "workspace has no reference log-prob buffer");
  lm->be->ops->log_softmax(lm->be, ws->logp_ref, ws->logits, ws->N, lm->cfg.vocab_size);
  return lm->be->ops->sync(lm->be, e);
}

aqs_status aqs_lm_kl_from_layer(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws,
                                int layer, unsigned quant_mask, double *kl_out, aqs_err *e) {
  const aqs_qwen_text_config *c = &lm->cfg;
  const size_t NC = (size_t)ws->N * (size_t)c->hidden_size;
  aqs_status st;
  float *cur = ws->xa, *next = ws->xb;
  const float *x_in = ws->ckpt + (size_t)layer * NC;
  for (int l = layer; l < c->num_layers; l++) {
    st = aqs_lm_layer_fwd(lm, b, ws, l, x_in, cur, l == layer ? quant_mask : 0, NULL, NULL, e);
    if (st != AQS_OK) return st;
    x_in = cur;
    float *t = cur;
    cur = next;
    next = t;
  }
  char what[80];
  snprintf(what, sizeof what, "the model output with layer %d's linears fake-quantized", layer);
  if ((st = aqs_lm_check_finite(lm, x_in, NC, what, e)) != AQS_OK) return st;
  aqs_lm_head_fwd(lm, b, ws, x_in);
  lm->be->ops->kl_div(lm->be, ws->logp_ref, ws->logits, ws->N, c->vocab_size, kl_out);
  return lm->be->ops->sync(lm->be, e);
}
