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
 * (multiplied by its float reciprocal, E4M3 round to nearest even, saturated). A code maps to one
 * code, so the 256 answers are computed once and looked up. */
static void requantize_table(uint8_t lut[256], float own_scale, float max_scale) {
  const float inv = 1.0f / max_scale;
  for (int c = 0; c < 256; c++) {
    _Float16 dq = (_Float16)(aqs_fp8_e4m3_to_f32((uint8_t)c) * own_scale);
    lut[c] = aqs_fp8_e4m3_from_f32((float)dq * inv, AQS_FP8_E4M3_NAN_CODE);
  }
}

/* max |code| over E4M3 codes: magnitude grows with the low 7 bits, 0x7f is NaN. Returns the
 * largest magnitude pattern, or 0x7f when a NaN code is present. */
static uint8_t max_magnitude_code(const uint8_t *q, size_t n) {
  uint8_t m = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t a = q[i] & 0x7f;
    m = a > m ? a : m;
  }
  return m;
}

aqs_status aqs_served_load_fused(aqs_backend *be, const aqs_ckpt *ck, aqs_lm_linear *const *lin, int n,
                                 size_t *weight_bytes, int *n_served, aqs_err *e) {
  int n_fp8 = 0;
  for (int s = 0; s < n; s++) n_fp8 += aqs_lm_weight_is_fp8(ck, lin[s]->module);
  if (n_fp8 == 0) return AQS_OK;
  if (n_fp8 != n)
    return aqs_errf(e, AQS_ERR_UNSUPPORTED,
                    "%s: %s is FP8 but a member of its fused GEMM is not (vLLM fuses q/k/v and "
                    "gate/up and needs all members in one format)",
                    ck->dir, lin[0]->module);
  float w_max = 0.0f, x_max = 0.0f, w_scale[AQS_LIN_COUNT];
  char name[192];
  aqs_status st;
  for (int s = 0; s < n; s++) {
    float x_scale;
    snprintf(name, sizeof name, "%s.weight_scale", lin[s]->module);
    if ((st = read_scale(ck, name, 1, &w_scale[s], e)) != AQS_OK) return st;
    snprintf(name, sizeof name, "%s.input_scale", lin[s]->module);
    if ((st = read_scale(ck, name, 1, &x_scale, e)) != AQS_OK) return st;
    w_max = fmaxf(w_max, w_scale[s]);
    x_max = fmaxf(x_max, x_scale);
  }
  for (int s = 0; s < n; s++) {
    const aqs_st_tensor *t;
    snprintf(name, sizeof name, "%s.weight", lin[s]->module);
    if ((st = aqs_ckpt_get(ck, name, &t, e)) != AQS_OK) return st;
    size_t numel = (size_t)lin[s]->out * (size_t)lin[s]->in;
    /* rows first, not only the count: a transposed (in, out) weight would run as wrong numbers
     * (a conv weight, the vision patch embedding, is (out, C, T, P, P)) */
    if (t->numel != numel || t->ndim < 2 || t->shape[0] != lin[s]->out)
      return aqs_errf(e, AQS_ERR_MISMATCH,
                      "%s: tensor %s has %llu elements, %lld rows; config implies %zu elements, %d rows",
                      ck->dir, name, (unsigned long long)t->numel, (long long)(t->ndim ? t->shape[0] : 0), numel,
                      lin[s]->out);
    const uint8_t *codes = t->data;
    uint8_t *host = NULL;
    if (w_scale[s] != w_max) {
      uint8_t lut[256];
      requantize_table(lut, w_scale[s], w_max);
      if (!(host = malloc(numel ? numel : 1))) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory loading %s", name);
      for (size_t i = 0; i < numel; i++) host[i] = lut[codes[i]];
      codes = host;
    }
    uint8_t max_code = max_magnitude_code(codes, numel);
    if (max_code == 0x7f) {
      free(host);
      return aqs_errf(e, AQS_ERR_NUMERIC, "%s: tensor %s holds NaN codes", ck->dir, name);
    }
    void *p;
    if ((st = be->ops->alloc(be, numel, &p, e)) != AQS_OK) {
      free(host);
      return aqs_err_prefix(e, "loading %s", name);
    }
    be->ops->copy_h2d(be, p, codes, numel);
    st = be->ops->sync(be, e);
    free(host);
    lin[s]->wq = p;
    lin[s]->w = NULL; /* a served FP8 linear runs only from its codes */
    if (st != AQS_OK) return st;
    *weight_bytes += numel;
    lin[s]->w_scale = w_max;
    lin[s]->x_scale = x_max;
    lin[s]->weight_amax = aqs_fp8_e4m3_to_f32(max_code) * w_max;
    (*n_served)++;
  }
  return AQS_OK;
}

/* The FP8 linears [first, first + n) of layer l as one fused GEMM. */
static aqs_status load_fused(aqs_lm *lm, const aqs_ckpt *ck, int l, int first, int n, aqs_err *e) {
  aqs_lm_linear *members[AQS_LIN_COUNT];
  for (int s = 0; s < n; s++) members[s] = &lm->layers[l].lin[first + s];
  return aqs_served_load_fused(lm->be, ck, members, n, &lm->weight_bytes, &lm->n_served_fp8, e);
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

/* 1 when name is a tensor the language model reads (its prefix, or lm_head). */
static int read_by_lm(const aqs_lm *lm, const char *name) {
  const char *prefix = aqs_qwen_lm_prefix(lm->model->naming);
  return strncmp(name, prefix, strlen(prefix)) == 0 || strncmp(name, "lm_head.", 8) == 0;
}

int aqs_served_tensor(const aqs_st_tensor *t) {
  static const char *const suffixes[] = {".weight_scale", ".input_scale", ".k_scale", ".v_scale"};
  size_t n = strlen(t->name);
  if (n > 7 && strcmp(t->name + n - 7, ".weight") == 0) return t->dtype == AQS_DT_F8_E4M3;
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    size_t k = strlen(suffixes[i]);
    if (n > k && strcmp(t->name + n - k, suffixes[i]) == 0) return 1;
  }
  return 0;
}

aqs_status aqs_served_check_diff(const aqs_ckpt *diff, const char *const *prefixes, int n, aqs_err *e) {
  for (size_t i = 0; i < diff->ntensors; i++) {
    const aqs_st_tensor *t = diff->tensors[i];
    for (int p = 0; p < n; p++)
      if (strncmp(t->name, prefixes[p], strlen(prefixes[p])) == 0 && !aqs_served_tensor(t))
        return aqs_errf(e, AQS_ERR_UNSUPPORTED,
                        "%s: tensor %s (%s) differs from the BF16 source; eval runs a scheme whose "
                        "BF16 tensors are the source's",
                        diff->dir, t->name, aqs_dtype_name(t->dtype));
  }
  return AQS_OK;
}

int aqs_served_reads(const aqs_lm_linear *lin, const char *name, const char *kv_suffix) {
  size_t m = strlen(lin->module);
  if (strncmp(name, lin->module, m) != 0) return 0;
  const char *sfx = name + m;
  if (kv_suffix && strcmp(sfx, kv_suffix) == 0) return 1;
  return lin->wq && (!strcmp(sfx, ".weight") || !strcmp(sfx, ".weight_scale") || !strcmp(sfx, ".input_scale"));
}

/* 1 when a linear of lm (loaded) or its KV cache reads name. */
static int lm_reads(const aqs_lm *lm, const char *name) {
  for (int l = 0; l < lm->cfg.num_layers; l++)
    for (int s = 0; s < AQS_LIN_COUNT; s++) {
      const char *kv = !lm->kv_fp8 ? NULL : s == AQS_LIN_K ? ".k_scale" : s == AQS_LIN_V ? ".v_scale" : NULL;
      if (aqs_served_reads(&lm->layers[l].lin[s], name, kv)) return 1;
    }
  return 0;
}

aqs_status aqs_lm_load_served_over(const aqs_lm *base, const aqs_ckpt *diff, aqs_lm **out, aqs_err *e) {
  *out = NULL;
  if (base->base || base->n_served_fp8 || base->kv_fp8)
    return aqs_errf(e, AQS_ERR_INVALID, "a served scheme is loaded over a BF16 model, not over another scheme");
  const char *const lm_prefixes[] = {aqs_qwen_lm_prefix(base->model->naming), "lm_head."};
  aqs_status cst = aqs_served_check_diff(diff, lm_prefixes, 2, e);
  if (cst) return cst;
  aqs_lm *lm = malloc(sizeof *lm);
  aqs_lm_layer *layers = malloc((size_t)base->cfg.num_layers * sizeof *layers);
  if (!lm || !layers) {
    free(lm);
    free(layers);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  *lm = *base;
  memcpy(layers, base->layers, (size_t)base->cfg.num_layers * sizeof *layers);
  for (int l = 0; l < base->cfg.num_layers; l++)
    for (int s = 0; s < AQS_LIN_COUNT; s++) layers[l].lin[s].w_fake = NULL;
  lm->layers = layers;
  lm->base = base;
  lm->weight_bytes = 0;
  aqs_status st = AQS_OK;
  for (int l = 0; st == AQS_OK && l < lm->cfg.num_layers; l++) st = aqs_lm_load_served_layer(lm, diff, l, e);
  /* vLLM runs every layer's KV cache in FP8 once the checkpoint says so (scale 1 where none is
   * stored); a checkpoint with scales for some layers only is refused, not half evaluated */
  for (int l = 0; st == AQS_OK && lm->kv_fp8 && l < lm->cfg.num_layers; l++)
    if (!(lm->layers[l].k_scale > 0.0f))
      st = aqs_errf(e, AQS_ERR_INVALID, "%s: layer %d has no %s.k_scale / v_scale while other layers do",
                    diff->dir, l, lm->layers[l].lin[AQS_LIN_K].module);
  /* a changed tensor no served linear reads (an FP8 lm_head, a module the config lacks) would
   * leave the source's BF16 tensor in its place: refused */
  for (size_t i = 0; st == AQS_OK && i < diff->ntensors; i++)
    if (read_by_lm(base, diff->tensors[i]->name) && !lm_reads(lm, diff->tensors[i]->name))
      st = aqs_errf(e, AQS_ERR_UNSUPPORTED, "%s: tensor %s (%s) is read by no served linear of the model",
                    diff->dir, diff->tensors[i]->name, aqs_dtype_name(diff->tensors[i]->dtype));
  if (st != AQS_OK) {
    aqs_lm_free(lm);
    return st;
  }
  *out = lm;
  return AQS_OK;
}
