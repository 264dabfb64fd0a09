/* engine/compute/calibrate.c: max calibration (input and weight amax of every language-model
 * linear) over one batch, and installing a calibrated table into the model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/compute/calibrate.h"

typedef struct calib_ctx {
  float (*input_amax)[AQS_LIN_COUNT]; /* (num_layers, slots) */
} calib_ctx;

static aqs_status calib_hook(void *ctx, const aqs_lm *lm, int layer, aqs_lin_slot slot,
                             const float *x, const float *y, const float *g, int N, aqs_err *e) {
  (void)y;
  (void)g;
  calib_ctx *cc = ctx;
  float *dst = &cc->input_amax[layer][slot];
  /* q/k/v and gate/up share their input: measure it once */
  if (slot == AQS_LIN_K || slot == AQS_LIN_V) {
    *dst = cc->input_amax[layer][AQS_LIN_Q];
    return AQS_OK;
  }
  if (slot == AQS_LIN_UP) {
    *dst = cc->input_amax[layer][AQS_LIN_GATE];
    return AQS_OK;
  }
  const aqs_lm_linear *lin = &lm->layers[layer].lin[slot];
  lm->be->ops->amax_f32(lm->be, x, (size_t)N * (size_t)lin->in, dst);
  if (!isfinite(*dst))
    return aqs_errf(e, AQS_ERR_NUMERIC, "non-finite activation (%s) at the input of %s",
                    isnan(*dst) ? "NaN" : "Inf", lin->module);
  return AQS_OK;
}

aqs_status aqs_calibrate_batch(const aqs_lm *lm, const aqs_token_batch *batch, int max_seq_len,
                               aqs_amax_table *out, aqs_err *e) {
  const int L = lm->cfg.num_layers;
  calib_ctx cc = {calloc((size_t)L, sizeof *cc.input_amax)};
  float *kv_amax = calloc(2 * (size_t)L, sizeof *kv_amax);
  if (!cc.input_amax || !kv_amax) {
    free(cc.input_amax);
    free(kv_amax);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  aqs_lm_batch b;
  aqs_lm_ws *ws = NULL;
  aqs_status st = aqs_lm_batch_make(lm, batch->token_ids, batch->seq_lens, batch->n_seqs,
                                    max_seq_len, &b, e);
  if (st != AQS_OK) goto done_nobatch;
  if ((st = aqs_lm_ws_alloc(lm, &b, 0, 0, &ws, e)) != AQS_OK) goto done;
  aqs_lm_ws_track_kv_amax(ws, kv_amax);
  if ((st = aqs_lm_forward_layers(lm, &b, ws, calib_hook, &cc, e)) != AQS_OK) goto done;
  out->n_tokens += b.n_tokens;
  out->n_seqs += b.n_seqs;
  for (int l = 0; l < L && st == AQS_OK; l++)
    for (int s = 0; s < AQS_LIN_COUNT && st == AQS_OK; s++) {
      const aqs_lm_linear *lin = &lm->layers[l].lin[s];
      st = aqs_amax_set(out, lin->module, cc.input_amax[l][s], lin->weight_amax, e);
    }
  char name[AQS_AMAX_NAME_MAX];
  for (int l = 0; l < L && st == AQS_OK; l++)
    for (int kv = 0; kv < 2 && st == AQS_OK; kv++) {
      aqs_lm_kv_cache_name(lm, l, kv, name, sizeof name);
      st = aqs_amax_set(out, name, kv_amax[2 * l + kv], 0.0f, e);
    }
done:
  aqs_lm_ws_free(lm, ws);
  aqs_lm_batch_free(lm, &b);
done_nobatch:
  free(cc.input_amax);
  free(kv_amax);
  return st;
}

aqs_status aqs_lm_set_amax(aqs_lm *lm, const aqs_amax_table *t, aqs_err *e) {
  for (int l = 0; l < lm->cfg.num_layers; l++)
    for (int s = 0; s < AQS_LIN_COUNT; s++) {
      aqs_lm_linear *lin = &lm->layers[l].lin[s];
      const aqs_amax_entry *en = aqs_amax_find(t, lin->module);
      if (!en)
        return aqs_errf(e, AQS_ERR_NOT_FOUND, "amax table has no entry for %s", lin->module);
      if (en->weight_amax != lin->weight_amax)
        return aqs_errf(e, AQS_ERR_MISMATCH,
                        "amax table's weight_amax of %s is %.9g but the checkpoint's is %.9g: the "
                        "table was calibrated on another checkpoint",
                        lin->module, en->weight_amax, lin->weight_amax);
      lin->input_amax = en->input_amax;
    }
  return AQS_OK;
}

void aqs_lm_kv_cache_name(const aqs_lm *lm, int layer, int v, char *buf, size_t n) {
  aqs_qwen_lm_name(lm->model->naming, layer, v ? "self_attn.v_cache" : "self_attn.k_cache", buf, n);
}
