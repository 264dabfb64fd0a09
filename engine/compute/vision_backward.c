/* engine/compute/vision_backward.c: activation backward of the vision tower (no weight
 * gradients) from dL/d(output): merger, then each block recomputed from its residual checkpoint
 * and differentiated; the hook sees every linear's input x, output y and gradient g = dL/dy. */
#include <stdio.h>

#include "engine/compute/mlp_backward.h"
#include "engine/compute/vision_internal.h"

/* The MLP half's hook: maps its linears onto the block's slots for the caller's hook. */
typedef struct block_hook_ctx {
  aqs_vision_hook hook;
  void *ctx;
  const aqs_vision *vis;
  int blk, N;
} block_hook_ctx;

static aqs_status mlp_hook(void *ctx, aqs_mlp_linear which, const float *x, const float *y, const float *g,
                           aqs_err *e) {
  static const aqs_vis_slot slot[] = {[AQS_MLP_DOWN] = AQS_VIS_DOWN, [AQS_MLP_GATE] = AQS_VIS_GATE,
                                      [AQS_MLP_UP] = AQS_VIS_UP};
  const block_hook_ctx *h = ctx;
  return h->hook(h->ctx, h->vis, h->blk, slot[which], &h->vis->blocks[h->blk].lin[slot[which]], x, y, g, h->N,
                 e);
}

/* Backward through block blk: ws->d_x holds dL/d(block output) on entry, dL/d(block input) on
 * return. The block intermediates must be those of its forward on x_in. */
static aqs_status block_bwd(const aqs_vision *vis, const aqs_vision_batch *b, aqs_vision_ws *ws,
                            int blk, const float *x_in, aqs_vision_hook hook, void *ctx,
                            aqs_err *e) {
  aqs_backend *be = vis->be;
  const aqs_ops *op = be->ops;
  const aqs_qwen_vision_config *c = &vis->cfg;
  const aqs_vision_block *B = &vis->blocks[blk];
  const aqs_lm_linear *lin = B->lin;
  const int N = ws->N, C = c->hidden_size, H = c->num_heads, D = vis->head_dim,
            I = c->intermediate_size;
  const size_t NC = (size_t)N * (size_t)C;
  int full = 0;
  for (int i = 0; i < c->n_fullatt; i++) full |= c->fullatt_block_indexes[i] == blk;
  aqs_status st;
  const aqs_mlp_bwd_io mlp = {.hmid = ws->hmid, .rstd2 = ws->rstd2, .ln2 = ws->ln2, .gate = ws->gate,
                              .up = ws->up, .act = ws->act, .down = ws->down, .norm2 = B->norm2,
                              .w_gate = lin[AQS_VIS_GATE].w, .w_up = lin[AQS_VIS_UP].w,
                              .w_down = lin[AQS_VIS_DOWN].w, .d_out = ws->d_x, .d_h = ws->d_h,
                              .d_ln = ws->d_ln, .d_act = ws->d_act, .d_gate = ws->d_gate, .d_up = ws->d_up};
  block_hook_ctx hctx = {hook, ctx, vis, blk, N};
  if ((st = aqs_mlp_swiglu_bwd(be, &mlp, N, C, I, hook ? mlp_hook : NULL, &hctx, e)) != AQS_OK) return st;
#define HOOK(slot, x, y, g) \
  if (hook && (st = hook(ctx, vis, blk, slot, &lin[slot], x, y, g, N, e)) != AQS_OK) return st
  HOOK(AQS_VIS_PROJ, ws->attn, ws->proj, ws->d_h);
  op->linear_bwd_input(be, ws->d_attn, ws->d_h, lin[AQS_VIS_PROJ].w, N, C, C, 0);
  if (full)
    op->attention_full_bwd(be, ws->d_q, ws->d_k, ws->d_v, ws->d_attn, ws->attn, ws->lse, ws->qr,
                           ws->kr, ws->v, b->cu_full, b->win.n_frames, b->win.max_frame, N, H, D);
  else
    op->attention_full_bwd(be, ws->d_q, ws->d_k, ws->d_v, ws->d_attn, ws->attn, ws->lse, ws->qr,
                           ws->kr, ws->v, b->cu_window, b->win.n_windows, b->win.max_window, N,
                           H, D);
  op->vision_rope_bwd(be, ws->d_q, b->pos_hw, N, H, D, 10000.0f);
  op->vision_rope_bwd(be, ws->d_k, b->pos_hw, N, H, D, 10000.0f);
  op->scatter_rows(be, ws->d_qkv, ws->d_q, b->qkv_rows, N, C);
  op->scatter_rows(be, ws->d_qkv, ws->d_k, b->qkv_rows + N, N, C);
  op->scatter_rows(be, ws->d_qkv, ws->d_v, b->qkv_rows + 2 * (size_t)N, N, C);
  HOOK(AQS_VIS_QKV, ws->ln1, ws->qkv, ws->d_qkv);
  op->linear_bwd_input(be, ws->d_ln, ws->d_qkv, lin[AQS_VIS_QKV].w, N, C, 3 * C, 0);
  op->copy_d2d(be, ws->d_x, ws->d_h, NC * sizeof(float));
  op->rmsnorm_bwd(be, ws->d_x, ws->d_ln, x_in, ws->rstd1, B->norm1, N, C, 1);
#undef HOOK
  return AQS_OK;
}

aqs_status aqs_vision_backward(const aqs_vision *vis, const aqs_vision_batch *b,
                               aqs_vision_ws *ws, aqs_vision_hook hook, void *ctx, aqs_err *e) {
  aqs_backend *be = vis->be;
  const aqs_ops *op = be->ops;
  const aqs_qwen_vision_config *c = &vis->cfg;
  const int N = ws->N, M = ws->M, C = c->hidden_size, O = c->out_hidden_size,
            MC = vis->merge_unit * C;
  const size_t NC = (size_t)N * (size_t)C;
  if (!ws->d_x) return aqs_errf(e, AQS_ERR_INTERNAL, "vision workspace allocated without gradients");
  aqs_status st;
  /* merger, in window order */
  op->gather_rows(be, ws->d_m2, ws->d_out, b->window_index, M, O);
  if (hook && (st = hook(ctx, vis, -1, AQS_VIS_MERGER2, &vis->merger[1], ws->gel, ws->m2,
                         ws->d_m2, M, e)) != AQS_OK)
    return st;
  op->linear_bwd_input(be, ws->d_gel, ws->d_m2, vis->merger[1].w, M, MC, O, 0);
  op->gelu_bwd(be, ws->d_m0, ws->d_gel, ws->m0, (size_t)M * (size_t)MC);
  if (hook && (st = hook(ctx, vis, -1, AQS_VIS_MERGER0, &vis->merger[0], ws->lnq, ws->m0,
                         ws->d_m0, M, e)) != AQS_OK)
    return st;
  op->linear_bwd_input(be, ws->d_ln, ws->d_m0, vis->merger[0].w, M, MC, MC, 0);
  op->rmsnorm_bwd(be, ws->d_x, ws->d_ln, ws->ckpt + (size_t)c->depth * NC, ws->rstdq, vis->ln_q,
                  N, C, 0);
  for (int blk = c->depth - 1; blk >= 0; blk--) {
    const float *x_in = ws->ckpt + (size_t)blk * NC;
    if ((st = aqs_vision_block_fwd(vis, b, ws, blk, x_in, ws->xa, NULL, NULL, NULL, e))) return st;
    if ((st = block_bwd(vis, b, ws, blk, x_in, hook, ctx, e)) != AQS_OK) return st;
  }
  if (hook && (st = hook(ctx, vis, -1, AQS_VIS_PATCH, &vis->patch_embed, b->patches, ws->ckpt,
                         ws->d_x, N, e)) != AQS_OK)
    return st;
  return op->sync(be, e);
}
