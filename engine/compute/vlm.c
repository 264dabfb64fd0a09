/* engine/compute/vlm.c: loading both towers, image+text chunks as backend batches, and max
 * calibration of both towers over one chunk. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/compute/vlm.h"

aqs_status aqs_vlm_load(aqs_backend *be, const char *model_dir, aqs_vlm **out, aqs_err *e) {
  *out = NULL;
  aqs_vlm *m = calloc(1, sizeof *m);
  if (!m) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  aqs_status st = aqs_lm_load(be, model_dir, &m->lm, e);
  if (st == AQS_OK) st = aqs_vision_load_dir(be, model_dir, &m->vis, e);
  if (st != AQS_OK) {
    aqs_vlm_free(m);
    return st;
  }
  *out = m;
  return AQS_OK;
}

void aqs_vlm_free(aqs_vlm *m) {
  if (!m) return;
  aqs_vision_free(m->vis);
  aqs_lm_free(m->lm);
  free(m);
}

aqs_status aqs_vlm_batch_of_chunk(const aqs_vlm *m, const aqs_calib_chunk *c, int max_seq_len,
                                  aqs_vlm_batch *out, aqs_err *e) {
  memset(out, 0, sizeof *out);
  if (c->n_images < 1)
    return aqs_errf(e, AQS_ERR_INVALID, "calib chunk at sequence %lld holds no images",
                    (long long)c->first_seq);
  if (c->patch_dim != m->vis->patch_dim)
    return aqs_errf(e, AQS_ERR_MISMATCH,
                    "calib chunk at sequence %lld has %d values per patch; the vision tower takes %d",
                    (long long)c->first_seq, c->patch_dim, m->vis->patch_dim);
  aqs_lm_images im = {c->n_images, c->image_seq, c->image_token_start, c->image_grid_thw,
                      m->vis->cfg.spatial_merge_size};
  aqs_status st = aqs_lm_batch_make_images(m->lm, c->token_ids, c->seq_lens, c->n_seqs,
                                           max_seq_len, &im, &out->lm, e);
  if (st != AQS_OK)
    return aqs_err_prefix(e, "calib chunk at sequence %lld", (long long)c->first_seq);
  st = aqs_vision_batch_make(m->vis, c->image_grid_thw, c->n_images, c->pixel_patches, &out->vis, e);
  if (st == AQS_OK && out->vis.n_merged != out->lm.n_image_rows)
    st = aqs_errf(e, AQS_ERR_INVALID, "%d image tokens but the images make %d features",
                  out->lm.n_image_rows, out->vis.n_merged);
  if (st != AQS_OK) {
    aqs_vlm_batch_free(m, out);
    return aqs_err_prefix(e, "calib chunk at sequence %lld", (long long)c->first_seq);
  }
  return AQS_OK;
}

void aqs_vlm_batch_free(const aqs_vlm *m, aqs_vlm_batch *b) {
  if (b->lm.cu_seqlens || b->lm.ids) aqs_lm_batch_free(m->lm, &b->lm);
  if (b->vis.patches) aqs_vision_batch_free(m->vis, &b->vis);
  memset(b, 0, sizeof *b);
}

/* input amax per vision linear, indexed by aqs_vision_quant_index */
typedef struct vis_calib_ctx {
  float *input_amax;
} vis_calib_ctx;

static aqs_status vis_calib_hook(void *ctx, const aqs_vision *vis, int block, aqs_vis_slot slot,
                                 const aqs_lm_linear *lin, const float *x, const float *y,
                                 const float *g, int rows, aqs_err *e) {
  (void)y;
  (void)g;
  vis_calib_ctx *cc = ctx;
  float *dst = &cc->input_amax[aqs_vision_quant_index(block, slot)];
  if (slot == AQS_VIS_UP) { /* gate and up share their input */
    *dst = cc->input_amax[aqs_vision_quant_index(block, AQS_VIS_GATE)];
    return AQS_OK;
  }
  vis->be->ops->amax_f32(vis->be, x, (size_t)rows * (size_t)lin->in, dst);
  if (!isfinite(*dst))
    return aqs_errf(e, AQS_ERR_NUMERIC, "non-finite activation (%s) at the input of %s",
                    isnan(*dst) ? "NaN" : "Inf", lin->module);
  return AQS_OK;
}

aqs_status aqs_vlm_calibrate_chunk(const aqs_vlm *m, const aqs_calib_chunk *c, int max_seq_len,
                                   aqs_amax_table *out, aqs_err *e) {
  aqs_vlm_batch b;
  aqs_status st = aqs_vlm_batch_of_chunk(m, c, max_seq_len, &b, e);
  if (st != AQS_OK) return st;
  const int nq = (m->vis->cfg.depth + 1) * AQS_VIS_SLOT_COUNT;
  vis_calib_ctx cc = {calloc((size_t)nq, sizeof(float))};
  aqs_vision_ws *vws = NULL;
  if (!cc.input_amax) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  if (st == AQS_OK) st = aqs_vision_ws_alloc(m->vis, &b.vis, 0, &vws, e);
  if (st == AQS_OK) st = aqs_vision_forward(m->vis, &b.vis, vws, NULL, vis_calib_hook, &cc, e);
  if (st == AQS_OK) {
    b.lm.image_embeds = aqs_vision_ws_output(vws);
    st = aqs_calibrate_lm_batch(m->lm, &b.lm, out, e);
  }
  for (int blk = -1; blk < m->vis->cfg.depth && st == AQS_OK; blk++)
    for (int s = 0; s < AQS_VIS_SLOT_COUNT && st == AQS_OK; s++) {
      const aqs_lm_linear *lin = aqs_vision_linear(m->vis, blk, (aqs_vis_slot)s);
      if (lin)
        st = aqs_amax_set(out, lin->module, cc.input_amax[aqs_vision_quant_index(blk, (aqs_vis_slot)s)],
                          lin->weight_amax, e);
    }
  aqs_vision_ws_free(m->vis, vws);
  free(cc.input_amax);
  aqs_vlm_batch_free(m, &b);
  return st;
}

aqs_status aqs_vlm_set_amax(aqs_vlm *m, const aqs_amax_table *t, aqs_err *e) {
  aqs_status st = aqs_lm_set_amax(m->lm, t, e);
  for (int blk = -1; blk < m->vis->cfg.depth && st == AQS_OK; blk++)
    for (int s = 0; s < AQS_VIS_SLOT_COUNT && st == AQS_OK; s++) {
      aqs_lm_linear *lin = aqs_vision_linear(m->vis, blk, (aqs_vis_slot)s);
      if (lin && (st = aqs_linear_set_amax(lin, t, e)) == AQS_ERR_NOT_FOUND)
        aqs_err_prefix(e, "calibrate on an image+text set");
    }
  return st;
}
