/* engine/compute/calibrate.c: max calibration (input and weight amax of every language-model
 * linear) over one batch, and installing a calibrated table into the model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/compute/calibrate.h"
#include "engine/compute/lm_internal.h"

/* The batch's amaxes stay on the backend (amax_f32_async) and come back in one copy after the
 * forward: no synchronization per linear. Layout of the backend table: (L, AQS_LIN_COUNT) input
 * amaxes, then (L, 2) K/V amaxes. */
typedef struct calib_ctx {
  float *d_amax;
} calib_ctx;

static aqs_status calib_hook(void *ctx, const aqs_lm *lm, int layer, aqs_lin_slot slot,
                             const float *x, const float *y, const float *g, int N, aqs_err *e) {
  (void)y;
  (void)g;
  (void)e;
  calib_ctx *cc = ctx;
  /* q/k/v and gate/up share their input: measured once (copied from Q / GATE afterwards) */
  if (slot == AQS_LIN_K || slot == AQS_LIN_V || slot == AQS_LIN_UP) return AQS_OK;
  const aqs_lm_linear *lin = &lm->layers[layer].lin[slot];
  lm->be->ops->amax_f32_async(lm->be, x, (size_t)N * (size_t)lin->in,
                              cc->d_amax + (size_t)layer * AQS_LIN_COUNT + slot);
  return AQS_OK;
}

aqs_status aqs_calibrate_lm_batch(const aqs_lm *lm, const aqs_lm_batch *b, aqs_amax_table *out,
                                  aqs_err *e) {
  return aqs_calibrate_lm_batch_storage(lm, b, 1, out, e);
}

aqs_status aqs_calibrate_lm_batch_storage(const aqs_lm *lm, const aqs_lm_batch *b, int storage_b,
                                          aqs_amax_table *out, aqs_err *e) {
  const int L = lm->cfg.num_layers;
  const size_t n_in = (size_t)L * AQS_LIN_COUNT, n_all = n_in + 2 * (size_t)L;
  aqs_backend *be = lm->be;
  float *amax = calloc(n_all, sizeof *amax);
  calib_ctx cc = {NULL};
  if (!amax) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  aqs_lm_ws *ws = NULL;
  aqs_status st;
  if ((st = be->ops->alloc(be, n_all * sizeof(float), (void **)&cc.d_amax, e)) != AQS_OK) goto done;
  be->ops->zero(be, cc.d_amax, n_all * sizeof(float));
  if ((st = aqs_lm_ws_alloc_layers(lm, b, &ws, e)) != AQS_OK) goto done;
  /* A non-finite layer output (AQS_ERR_NUMERIC) is reported below by the first linear whose
   * input it reached, which names the module; other errors stop here. */
  aqs_err fwd_err;
  aqs_err_clear(&fwd_err);
  aqs_status fwd;
  if (storage_b && aqs_lm_calib_b_applies(lm)) {
    fwd = aqs_lm_calib_layers_b(lm, b, ws, cc.d_amax, cc.d_amax + n_in, &fwd_err);
  } else {
    aqs_lm_ws_track_kv_amax(ws, cc.d_amax + n_in);
    fwd = aqs_lm_forward_layers(lm, b, ws, calib_hook, &cc, &fwd_err);
  }
  if (fwd != AQS_OK && fwd != AQS_ERR_NUMERIC) {
    st = fwd;
    if (e) *e = fwd_err;
    goto done;
  }
  be->ops->copy_d2h(be, amax, cc.d_amax, n_all * sizeof(float));
  if ((st = be->ops->sync(be, e)) != AQS_OK) goto done;
  /* in forward order, so the first non-finite activation is the one named */
  for (int l = 0; l < L && st == AQS_OK; l++)
    for (int s = 0; s < AQS_LIN_COUNT && st == AQS_OK; s++) {
      float *a = &amax[(size_t)l * AQS_LIN_COUNT + s];
      if (s == AQS_LIN_K || s == AQS_LIN_V) *a = amax[(size_t)l * AQS_LIN_COUNT + AQS_LIN_Q];
      if (s == AQS_LIN_UP) *a = amax[(size_t)l * AQS_LIN_COUNT + AQS_LIN_GATE];
      if (!isfinite(*a))
        st = aqs_errf(e, AQS_ERR_NUMERIC, "non-finite activation (%s) at the input of %s", isnan(*a) ? "NaN" : "Inf",
                      lm->layers[l].lin[s].module);
    }
  if (st == AQS_OK && fwd != AQS_OK) { /* e.g. the last layer's output */
    st = fwd;
    if (e) *e = fwd_err;
  }
  if (st != AQS_OK) goto done;
  out->n_tokens += b->n_tokens;
  out->n_seqs += b->n_seqs;
  for (int l = 0; l < L && st == AQS_OK; l++)
    for (int s = 0; s < AQS_LIN_COUNT && st == AQS_OK; s++) {
      const aqs_lm_linear *lin = &lm->layers[l].lin[s];
      st = aqs_amax_set(out, lin->module, amax[(size_t)l * AQS_LIN_COUNT + s], lin->weight_amax, e);
    }
  char name[AQS_AMAX_NAME_MAX];
  for (int l = 0; l < L && st == AQS_OK; l++)
    for (int kv = 0; kv < 2 && st == AQS_OK; kv++) {
      aqs_lm_kv_cache_name(lm, l, kv, name, sizeof name);
      st = aqs_amax_set(out, name, amax[n_in + 2 * (size_t)l + kv], 0.0f, e);
    }
done:
  aqs_lm_ws_free(lm, ws);
  be->ops->free(be, cc.d_amax);
  free(amax);
  return st;
}

aqs_status aqs_calibrate_batch(const aqs_lm *lm, const aqs_token_batch *batch, int max_seq_len,
                               aqs_amax_table *out, aqs_err *e) {
  aqs_lm_batch b;
  aqs_status st = aqs_lm_batch_make(lm, batch->token_ids, batch->seq_lens, batch->n_seqs,
                                    max_seq_len, &b, e);
  if (st != AQS_OK) return st;
  st = aqs_calibrate_lm_batch(lm, &b, out, e);
  aqs_lm_batch_free(lm, &b);
  return st;
}

aqs_status aqs_linear_set_amax(aqs_lm_linear *lin, const aqs_amax_table *t, aqs_err *e) {
  const aqs_amax_entry *en = aqs_amax_find(t, lin->module);
  if (!en) return aqs_errf(e, AQS_ERR_NOT_FOUND, "amax table has no entry for %s", lin->module);
  if (en->weight_amax != lin->weight_amax)
    return aqs_errf(e, AQS_ERR_MISMATCH,
                    "amax table's weight_amax of %s is %.9g but the checkpoint's is %.9g: the "
                    "table was calibrated on another checkpoint",
                    lin->module, en->weight_amax, lin->weight_amax);
  lin->input_amax = en->input_amax;
  return AQS_OK;
}

aqs_status aqs_lm_set_amax(aqs_lm *lm, const aqs_amax_table *t, aqs_err *e) {
  aqs_status st = AQS_OK;
  for (int l = 0; l < lm->cfg.num_layers && st == AQS_OK; l++)
    for (int s = 0; s < AQS_LIN_COUNT && st == AQS_OK; s++)
      st = aqs_linear_set_amax(&lm->layers[l].lin[s], t, e);
  return st;
}

void aqs_lm_kv_cache_name(const aqs_lm *lm, int layer, int v, char *buf, size_t n) {
  aqs_qwen_lm_name(lm->model->naming, layer, v ? "self_attn.v_cache" : "self_attn.k_cache", buf, n);
}
