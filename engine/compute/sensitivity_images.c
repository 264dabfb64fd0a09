/* engine/compute/sensitivity_images.c: per-group FP8 sensitivity on an image+text chunk, both
 * towers: gradient (the language model's backward continues into the vision tower through the
 * <|image_pad|> rows) and kl_div (language groups re-run from their layer; vision groups re-run
 * the tower with the group fake-quantized, then the whole language model). */
#include <stdlib.h>
#include <string.h>

#include "engine/compute/sensitivity_internal.h"
#include "engine/compute/vlm.h"

typedef struct vis_grad_ctx {
  aqs_vision_ws *ws;
  double *module_score; /* indexed by aqs_vision_quant_index */
} vis_grad_ctx;

static aqs_status vis_grad_hook(void *ctx, const aqs_vision *vis, int block, aqs_vis_slot slot,
                                const aqs_lm_linear *lin, const float *x, const float *y,
                                const float *g, int rows, aqs_err *e) {
  vis_grad_ctx *gc = ctx;
  if (!g) return AQS_OK;
  if (lin->input_amax <= 0.0f)
    return aqs_errf(e, AQS_ERR_INVALID, "no calibrated input amax for %s", lin->module);
  const float *yq = aqs_vision_ws_linear_fp8(vis, gc->ws, lin, x, rows);
  double s = 0.0;
  vis->be->ops->grad_score(vis->be, g, y, yq, (size_t)rows * (size_t)lin->out, &s);
  if (!(s == s)) return aqs_errf(e, AQS_ERR_NUMERIC, "NaN gradient score at %s", lin->module);
  gc->module_score[aqs_vision_quant_index(block, slot)] = s;
  return AQS_OK;
}

/* Checks every member of gs has a calibrated input amax; vision members also get their quant
 * flag set in quant (when not NULL). */
static aqs_status group_members(const aqs_vlm *m, const aqs_group_score *gs, unsigned char *quant,
                                aqs_err *e) {
  for (int k = 0; k < gs->nmembers; k++) {
    int blk;
    aqs_vis_slot slot;
    const aqs_lm_linear *lin;
    if (aqs_vision_find_linear(m->vis, gs->members[k], &blk, &slot)) {
      lin = aqs_vision_linear(m->vis, blk, slot);
      if (quant) quant[aqs_vision_quant_index(blk, slot)] = 1;
    } else {
      int s = aqs_sens_slot_of_module(gs->members[k]);
      if (s < 0 || gs->layer < 0)
        return aqs_errf(e, AQS_ERR_INTERNAL, "group %s: unknown member %s", gs->id, gs->members[k]);
      lin = &m->lm->layers[gs->layer].lin[s];
    }
    if (lin->input_amax <= 0.0f)
      return aqs_errf(e, AQS_ERR_INVALID, "no calibrated input amax for %s", lin->module);
  }
  return AQS_OK;
}

static int is_vision(const aqs_group_score *gs) { return strncmp(gs->id, "vis.", 4) == 0; }

static aqs_status gradient_scores(const aqs_vlm *m, aqs_vlm_batch *b, aqs_lm_ws *lws,
                                  aqs_vision_ws *vws, aqs_scores *out, double *loss_out,
                                  aqs_err *e) {
  const aqs_ops *op = m->lm->be->ops;
  const int nq = (m->vis->cfg.depth + 1) * AQS_VIS_SLOT_COUNT;
  aqs_sens_grad_ctx gc = {0};
  vis_grad_ctx vc = {vws, calloc((size_t)nq, sizeof(double))};
  aqs_status st = aqs_sens_grad_begin(m->lm, lws, &gc, e);
  double loss = 0.0;
  if (!st && !vc.module_score) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  if (st == AQS_OK) st = aqs_vision_forward(m->vis, &b->vis, vws, NULL, NULL, NULL, e);
  if (st == AQS_OK) {
    b->lm.image_embeds = aqs_vision_ws_output(vws);
    st = aqs_lm_forward_backward(m->lm, &b->lm, lws, aqs_sens_grad_hook, &gc, &loss, e);
  }
  if (st == AQS_OK) st = aqs_sens_grad_end(m->lm, &gc, e);
  if (st == AQS_OK) {
    /* dL/d(features) = the input-embedding gradient at the image rows */
    op->gather_rows(m->lm->be, aqs_vision_ws_doutput(vws), aqs_lm_ws_dinput(lws),
                    b->lm.image_rows, b->lm.n_image_rows, m->lm->cfg.hidden_size);
    st = aqs_vision_backward(m->vis, &b->vis, vws, vis_grad_hook, &vc, e);
  }
  for (size_t i = 0; i < out->ngroups && st == AQS_OK; i++) {
    aqs_group_score *gs = &out->groups[i];
    gs->score = 0.0;
    for (int k = 0; k < gs->nmembers; k++) {
      int blk;
      aqs_vis_slot slot;
      if (aqs_vision_find_linear(m->vis, gs->members[k], &blk, &slot))
        gs->member_score[k] = vc.module_score[aqs_vision_quant_index(blk, slot)];
      else
        gs->member_score[k] = gc.module_score[gs->layer][aqs_sens_slot_of_module(gs->members[k])];
      gs->score += gs->member_score[k];
    }
  }
  if (loss_out) *loss_out = loss;
  aqs_sens_grad_free(m->lm, &gc);
  free(vc.module_score);
  return st;
}

static aqs_status kl_scores(const aqs_vlm *m, aqs_vlm_batch *b, aqs_lm_ws *lws,
                            aqs_vision_ws *vws, aqs_scores *out, aqs_err *e) {
  const aqs_lm *lm = m->lm;
  const int nq = (m->vis->cfg.depth + 1) * AQS_VIS_SLOT_COUNT;
  unsigned char *quant = calloc((size_t)nq, 1);
  if (!quant) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  aqs_status st = aqs_vision_forward(m->vis, &b->vis, vws, NULL, NULL, NULL, e);
  if (st == AQS_OK) {
    b->lm.image_embeds = aqs_vision_ws_output(vws);
    st = aqs_lm_forward(lm, &b->lm, lws, NULL, NULL, e);
  }
  if (st == AQS_OK) st = aqs_lm_save_logp_ref(lm, &b->lm, lws, e);
  /* language groups first: they re-run from the saved residual checkpoints, which the vision
   * groups' full re-runs overwrite */
  for (size_t i = 0; i < out->ngroups && st == AQS_OK; i++) {
    aqs_group_score *gs = &out->groups[i];
    if (is_vision(gs)) continue;
    if ((st = group_members(m, gs, NULL, e)) != AQS_OK) break;
    st = aqs_lm_kl_from_layer(lm, &b->lm, lws, gs->layer, aqs_sens_kind_mask(gs->kind),
                              &gs->score, e);
  }
  for (size_t i = 0; i < out->ngroups && st == AQS_OK; i++) {
    aqs_group_score *gs = &out->groups[i];
    if (!is_vision(gs)) continue;
    memset(quant, 0, (size_t)nq);
    if ((st = group_members(m, gs, quant, e)) != AQS_OK) break;
    if ((st = aqs_vision_forward(m->vis, &b->vis, vws, quant, NULL, NULL, e)) != AQS_OK) break;
    if ((st = aqs_lm_forward(lm, &b->lm, lws, NULL, NULL, e)) != AQS_OK) break;
    lm->be->ops->kl_div(lm->be, aqs_lm_ws_logp_ref(lws), aqs_lm_ws_logits(lws), b->lm.n_tokens,
                        lm->cfg.vocab_size, &gs->score);
    st = lm->be->ops->sync(lm->be, e);
  }
  free(quant);
  return st;
}

aqs_status aqs_vlm_sensitivity_chunk(const aqs_vlm *m, const aqs_calib_chunk *c,
                                     aqs_sens_method method, aqs_qwen_scope scope,
                                     int max_seq_len, aqs_scores *out, double *loss_out,
                                     aqs_err *e) {
  if (loss_out) *loss_out = 0.0;
  aqs_status st = aqs_sens_init_groups(m->lm->model, m->lm->be, method, scope, out, e);
  if (st != AQS_OK) {
    aqs_scores_free(out);
    return st;
  }
  aqs_vlm_batch b;
  if ((st = aqs_vlm_batch_of_chunk(m, c, max_seq_len, &b, e)) != AQS_OK) {
    aqs_scores_free(out);
    return st;
  }
  const int grad = method == AQS_SENS_GRADIENT;
  aqs_lm_ws *lws = NULL;
  aqs_vision_ws *vws = NULL;
  st = aqs_lm_ws_alloc(m->lm, &b.lm, grad, !grad, &lws, e);
  if (st == AQS_OK) st = aqs_vision_ws_alloc(m->vis, &b.vis, grad, &vws, e);
  if (st == AQS_OK)
    st = grad ? gradient_scores(m, &b, lws, vws, out, loss_out, e) : kl_scores(m, &b, lws, vws, out, e);
  if (st == AQS_OK) {
    out->n_tokens = b.lm.n_tokens;
    out->n_seqs = b.lm.n_seqs;
    out->n_batches = 1;
  }
  aqs_vision_ws_free(m->vis, vws);
  aqs_lm_ws_free(m->lm, lws);
  aqs_vlm_batch_free(m, &b);
  if (st != AQS_OK) aqs_scores_free(out);
  return st;
}
