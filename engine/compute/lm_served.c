/* engine/compute/lm_served.c: loading the FP8 parts of an exported checkpoint as the serving
 * engine (vLLM's modelopt loader) runs them: F8_E4M3 weights with their weight/input scales,
 * fused members requantized to one weight scale, and the FP8 KV cache scales. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/compute/lm_internal.h"
#include "kernels/fp8.h"

/* A finite, positive F32 scalar tensor `name`; 0 in *out and AQS_OK when absent and optional. */
static aqs_status read_scale(const aqs_ckpt *ck, const char *name, int required, float *out,
                             aqs_err *e) {
  *out = 0.0f;
  const aqs_st_tensor *t = aqs_ckpt_find(ck, name);
  if (!t) {
    if (!required) return AQS_OK;
    return aqs_errf(e, AQS_ERR_NOT_FOUND, "%s: tensor %s is missing (the FP8 weight needs it)",
                    ck->dir, name);
  }
  if (t->dtype != AQS_DT_F32 || t->numel != 1)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor %s must be one F32 value, found %s with %llu",
                    ck->dir, name, aqs_dtype_name(t->dtype), (unsigned long long)t->numel);
  float v;
  memcpy(&v, t->data, sizeof v);
  if (!(v > 0.0f) || !isfinite(v))
    return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor %s holds %g; a scale must be finite and > 0",
                    ck->dir, name, (double)v);
  *out = v;
  return AQS_OK;
}

int aqs_lm_weight_is_fp8(const aqs_ckpt *ck, const char *module) {
  char name[192];
  snprintf(name, sizeof name, "%s.weight", module);
  const aqs_st_tensor *t = aqs_ckpt_find(ck, name);
  return t && t->dtype == AQS_DT_F8_E4M3;
}

/* vLLM requantize_with_max_scale: each member's codes are dequantized in float16
 * (code * own scale, rounded to half) and quantized again with the fused GEMM's scale
 * (multiplied by its float reciprocal, E4M3 round to nearest even, saturated). */
static void requantize(uint8_t *q, size_t n, float own_scale, float max_scale) {
  if (own_scale == max_scale) return;
  const float inv = 1.0f / max_scale;
  for (size_t i = 0; i < n; i++) {
    _Float16 dq = (_Float16)(aqs_fp8_e4m3_to_f32(q[i]) * own_scale);
    q[i] = aqs_fp8_e4m3_from_f32((float)dq * inv, AQS_FP8_E4M3_NAN_CODE);
  }
}

/* Uploads the FP8 linears [first, first + n) of layer l (one fused GEMM). Either all members are
 * FP8 or none (vLLM refuses a partly quantized fused layer). */
static aqs_status load_fused(aqs_lm *lm, const aqs_ckpt *ck, int l, int first, int n, aqs_err *e) {
  aqs_lm_layer *L = &lm->layers[l];
  int n_fp8 = 0;
  for (int s = first; s < first + n; s++) n_fp8 += aqs_lm_weight_is_fp8(ck, L->lin[s].module);
  if (n_fp8 == 0) return AQS_OK;
  if (n_fp8 != n)
    return aqs_errf(e, AQS_ERR_UNSUPPORTED,
                    "%s: layer %d: %s is FP8 but a member of its fused GEMM is not (vLLM fuses "
                    "q/k/v and gate/up and needs all members in one format)",
                    ck->dir, l, L->lin[first].module);
  float w_max = 0.0f, x_max = 0.0f, w_scale[AQS_LIN_COUNT], x_scale[AQS_LIN_COUNT];
  char name[192];
  aqs_status st;
  for (int s = first; s < first + n; s++) {
    snprintf(name, sizeof name, "%s.weight_scale", L->lin[s].module);
    if ((st = read_scale(ck, name, 1, &w_scale[s], e)) != AQS_OK) return st;
    snprintf(name, sizeof name, "%s.input_scale", L->lin[s].module);
    if ((st = read_scale(ck, name, 1, &x_scale[s], e)) != AQS_OK) return st;
    w_max = fmaxf(w_max, w_scale[s]);
    x_max = fmaxf(x_max, x_scale[s]);
  }
  aqs_backend *be = lm->be;
  for (int s = first; s < first + n; s++) {
    aqs_lm_linear *lin = &L->lin[s];
    const aqs_st_tensor *t;
    snprintf(name, sizeof name, "%s.weight", lin->module);
    if ((st = aqs_ckpt_get(ck, name, &t, e)) != AQS_OK) return st;
    size_t numel = (size_t)lin->out * (size_t)lin->in;
    if (t->numel != numel)
      return aqs_errf(e, AQS_ERR_MISMATCH, "%s: tensor %s has %llu elements, config implies %zu",
                      ck->dir, name, (unsigned long long)t->numel, numel);
    uint8_t *host = malloc(numel ? numel : 1);
    if (!host) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory loading %s", name);
    memcpy(host, t->data, numel);
    requantize(host, numel, w_scale[s], w_max);
    float amax = 0.0f;
    for (size_t i = 0; i < numel; i++) {
      float v = fabsf(aqs_fp8_e4m3_to_f32(host[i]));
      if (!(v <= amax)) amax = v; /* NaN codes propagate */
    }
    if (isnan(amax)) {
      free(host);
      return aqs_errf(e, AQS_ERR_NUMERIC, "%s: tensor %s holds NaN codes", ck->dir, name);
    }
    void *p;
    if ((st = be->ops->alloc(be, numel, &p, e)) != AQS_OK) {
      free(host);
      return aqs_err_prefix(e, "loading %s", name);
    }
    be->ops->copy_h2d(be, p, host, numel);
    st = be->ops->sync(be, e);
    free(host);
    lin->wq = p;
    if (st != AQS_OK) return st;
    lm->weight_bytes += numel;
    lin->w_scale = w_max;
    lin->x_scale = x_max;
    lin->weight_amax = amax * w_max;
    lm->n_served_fp8++;
  }
  return AQS_OK;
}

aqs_status aqs_lm_load_served_layer(aqs_lm *lm, const aqs_ckpt *ck, int l, aqs_err *e) {
  aqs_status st;
  if ((st = load_fused(lm, ck, l, AQS_LIN_Q, 3, e)) != AQS_OK) return st;
  if ((st = load_fused(lm, ck, l, AQS_LIN_O, 1, e)) != AQS_OK) return st;
  if ((st = load_fused(lm, ck, l, AQS_LIN_GATE, 2, e)) != AQS_OK) return st;
  if ((st = load_fused(lm, ck, l, AQS_LIN_DOWN, 1, e)) != AQS_OK) return st;
  aqs_lm_layer *L = &lm->layers[l];
  char name[192];
  snprintf(name, sizeof name, "%s.k_scale", L->lin[AQS_LIN_K].module);
  if ((st = read_scale(ck, name, 0, &L->k_scale, e)) != AQS_OK) return st;
  snprintf(name, sizeof name, "%s.v_scale", L->lin[AQS_LIN_V].module);
  if ((st = read_scale(ck, name, 0, &L->v_scale, e)) != AQS_OK) return st;
  if ((L->k_scale > 0.0f) != (L->v_scale > 0.0f))
    return aqs_errf(e, AQS_ERR_INVALID, "%s: layer %d has only one of k_scale / v_scale", ck->dir, l);
  if (L->k_scale > 0.0f) lm->kv_fp8 = 1;
  return AQS_OK;
}
