/* engine/compute/vision_forward.c: the vision tower forward: patch embedding, blocks (window or
 * full attention from fullatt_block_indexes), patch merger and the inverse window reordering,
 * with optional FP8 fake-quant per linear. Only kernels/ops.h is called. */
#include <stdio.h>

#include "engine/compute/vision_internal.h"

static int is_full_attention(const aqs_qwen_vision_config *c, int blk) {
  for (int i = 0; i < c->n_fullatt; i++)
    if (c->fullatt_block_indexes[i] == blk) return 1;
  return 0;
}

/* y = linear(x) or its FP8 fake-quant, then the hook. */
static aqs_status run_linear(const aqs_vision *vis, aqs_vision_ws *ws, int blk, aqs_vis_slot s,
                             float *y, const float *x, int rows, const unsigned char *quant,
                             aqs_vision_hook hook, void *ctx, aqs_err *e) {
  const aqs_lm_linear *lin = aqs_vision_linear((aqs_vision *)vis, blk, s);
  if (lin->wq) /* served FP8 (aqs_vision_load_served_over) */
    aqs_linear_served_fp8(vis->be, lin, y, x, rows, ws->xq);
  else if (quant && quant[aqs_vision_quant_index(blk, s)])
    aqs_linear_fp8(vis->be, lin, y, x, rows, ws->xq, ws->wq);
  else
    vis->be->ops->linear(vis->be, y, x, lin->w, lin->b, rows, lin->in, lin->out);
  return hook ? hook(ctx, vis, blk, s, lin, x, y, NULL, rows, e) : AQS_OK;
}

aqs_status aqs_vision_block_fwd(const aqs_vision *vis, const aqs_vision_batch *b,
                                aqs_vision_ws *ws, int blk, const float *x_in, float *x_out,
                                const unsigned char *quant, aqs_vision_hook hook, void *ctx,
                                aqs_err *e) {
  aqs_backend *be = vis->be;
  const aqs_ops *op = be->ops;
  const aqs_qwen_vision_config *c = &vis->cfg;
  const aqs_vision_block *B = &vis->blocks[blk];
  const int N = ws->N, C = c->hidden_size, H = c->num_heads, D = vis->head_dim;
  const size_t NC = (size_t)N * (size_t)C;
  const float eps = (float)c->rms_norm_eps, theta = 10000.0f;
  const int full = is_full_attention(c, blk);
  aqs_status st;
  op->rmsnorm_fwd(be, ws->ln1, ws->rstd1, x_in, B->norm1, N, C, eps);
  if ((st = run_linear(vis, ws, blk, AQS_VIS_QKV, ws->qkv, ws->ln1, N, quant, hook, ctx, e)))
    return st;
  /* (N, 3, H, D): q, k, v are rows 3i, 3i+1, 3i+2 of the (3N, C) view */
  op->gather_rows(be, ws->q, ws->qkv, b->qkv_rows, N, C);
  op->gather_rows(be, ws->k, ws->qkv, b->qkv_rows + N, N, C);
  op->gather_rows(be, ws->v, ws->qkv, b->qkv_rows + 2 * (size_t)N, N, C);
  op->copy_d2d(be, ws->qr, ws->q, NC * sizeof(float));
  op->copy_d2d(be, ws->kr, ws->k, NC * sizeof(float));
  op->vision_rope_fwd(be, ws->qr, b->pos_hw, N, H, D, theta);
  op->vision_rope_fwd(be, ws->kr, b->pos_hw, N, H, D, theta);
  if (full)
    op->attention_full_fwd(be, ws->attn, ws->lse, ws->qr, ws->kr, ws->v, b->cu_full,
                           b->win.n_frames, b->win.max_frame, N, H, D);
  else
    op->attention_full_fwd(be, ws->attn, ws->lse, ws->qr, ws->kr, ws->v, b->cu_window,
                           b->win.n_windows, b->win.max_window, N, H, D);
  if ((st = run_linear(vis, ws, blk, AQS_VIS_PROJ, ws->proj, ws->attn, N, quant, hook, ctx, e)))
    return st;
  op->add(be, ws->hmid, x_in, ws->proj, NC);
  op->rmsnorm_fwd(be, ws->ln2, ws->rstd2, ws->hmid, B->norm2, N, C, eps);
  if ((st = run_linear(vis, ws, blk, AQS_VIS_GATE, ws->gate, ws->ln2, N, quant, hook, ctx, e)))
    return st;
  if ((st = run_linear(vis, ws, blk, AQS_VIS_UP, ws->up, ws->ln2, N, quant, hook, ctx, e)))
    return st;
  op->swiglu_fwd(be, ws->act, ws->gate, ws->up, (size_t)N * (size_t)c->intermediate_size);
  if ((st = run_linear(vis, ws, blk, AQS_VIS_DOWN, ws->down, ws->act, N, quant, hook, ctx, e)))
    return st;
  op->add(be, x_out, ws->hmid, ws->down, NC);
  return AQS_OK;
}

static aqs_status check_finite(const aqs_vision *vis, const float *x, size_t n, const char *what,
                               aqs_err *e) {
  float amax;
  vis->be->ops->amax_f32(vis->be, x, n, &amax);
  aqs_status st = vis->be->ops->sync(vis->be, e);
  if (st != AQS_OK) return st;
  if (!(amax <= 3.4e38f))
    return aqs_errf(e, AQS_ERR_NUMERIC, "non-finite activation (%s) at %s",
                    amax != amax ? "NaN" : "Inf", what);
  return AQS_OK;
}

aqs_status aqs_vision_forward(const aqs_vision *vis, const aqs_vision_batch *b,
                              aqs_vision_ws *ws, const unsigned char *quant,
                              aqs_vision_hook hook, void *ctx, aqs_err *e) {
  aqs_backend *be = vis->be;
  const aqs_ops *op = be->ops;
  const aqs_qwen_vision_config *c = &vis->cfg;
  const int N = ws->N, M = ws->M, C = c->hidden_size, MC = vis->merge_unit * C;
  const size_t NC = (size_t)N * (size_t)C;
  aqs_status st;
  if ((st = run_linear(vis, ws, -1, AQS_VIS_PATCH, ws->ckpt, b->patches, N, quant, hook, ctx, e)))
    return st;
  for (int blk = 0; blk < c->depth; blk++) {
    float *x_in = ws->ckpt + (size_t)blk * NC, *x_out = x_in + NC;
    if ((st = aqs_vision_block_fwd(vis, b, ws, blk, x_in, x_out, quant, hook, ctx, e))) return st;
    char what[64];
    snprintf(what, sizeof what, "the output of vision block %d", blk);
    if ((st = check_finite(vis, x_out, NC, what, e)) != AQS_OK) return st;
  }
  /* merger: ln_q per patch, m^2 consecutive patches (one merged token) as one row */
  op->rmsnorm_fwd(be, ws->lnq, ws->rstdq, ws->ckpt + (size_t)c->depth * NC, vis->ln_q, N, C,
                  (float)c->rms_norm_eps);
  if ((st = run_linear(vis, ws, -1, AQS_VIS_MERGER0, ws->m0, ws->lnq, M, quant, hook, ctx, e)))
    return st;
  op->gelu_fwd(be, ws->gel, ws->m0, (size_t)M * (size_t)MC);
  if ((st = run_linear(vis, ws, -1, AQS_VIS_MERGER2, ws->m2, ws->gel, M, quant, hook, ctx, e)))
    return st;
  /* back to the processor's order: output row window_index[i] = merged row i */
  op->scatter_rows(be, ws->out, ws->m2, b->window_index, M, c->out_hidden_size);
  if ((st = check_finite(vis, ws->out, (size_t)M * (size_t)c->out_hidden_size,
                         "the vision tower output", e)) != AQS_OK)
    return st;
  return op->sync(be, e);
}
