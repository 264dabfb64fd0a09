/* kernels/cpu/bf16_store.c: the BF16 activation storage ops of kernels/ops.h (rmsnorm_fwd_b,
 * linear_b, rope_fwd_b, add_b, swiglu_fwd_b, amax_bf16_async, attention_fwd_b) as their definition
 * says: the F32 twin run in AQS_PREC_BF16 on exactly upcast inputs, the outputs stored as BF16,
 * plus the fused amax fold. Plain and slow on purpose (F32 temporaries): the specification the
 * CUDA kernels match. */
#include <stdlib.h>

#include "kernels/cpu/cpu_common.h"

/* A copy of be in BF16 precision: the F32 ops read only be->precision. */
static aqs_backend bf16_mode(const aqs_backend *be) {
  aqs_backend b = *be;
  b.precision = AQS_PREC_BF16;
  return b;
}

/* The CPU backend treats scratch OOM as fatal, as kernels/cpu/linear.c does. */
static float *scratch_f32(size_t n) {
  float *f = malloc((n ? n : 1) * sizeof *f);
  if (!f) abort();
  return f;
}
static float *upcast(const aqs_bf16 *x, size_t n) {
  float *f = scratch_f32(n);
  cpu_cast_bf16_to_f32(NULL, f, x, n);
  return f;
}

/* *amax = max(*amax, m): NaN wins over everything, then +Inf, then the larger finite value. */
static void amax_fold(float *amax, float m) {
  if (!amax || isnan(*amax)) return;
  if (isnan(m) || m > *amax) *amax = m;
}

/* Stores the BF16-valued f (n) as BF16 into out and folds its amax. */
static void store_bf16(aqs_bf16 *out, const float *f, size_t n, float *amax) {
  cpu_cast_f32_to_bf16(NULL, out, f, n);
  if (amax) {
    float m;
    cpu_amax_f32(NULL, f, n, &m);
    amax_fold(amax, m);
  }
}

void cpu_rmsnorm_fwd_b(aqs_backend *be, aqs_bf16 *out, float *rstd, const float *x,
                       const aqs_bf16 *w, int N, int C, float eps, float *amax) {
  aqs_backend b = bf16_mode(be);
  size_t n = (size_t)N * (size_t)C;
  float *f = scratch_f32(n);
  cpu_rmsnorm_fwd(&b, f, rstd, x, w, N, C, eps);
  store_bf16(out, f, n, amax);
  free(f);
}

void cpu_linear_b(aqs_backend *be, aqs_bf16 *y, const aqs_bf16 *x, const aqs_bf16 *w,
                  const aqs_bf16 *bias, int N, int K, int M) {
  if (N <= 0 || M <= 0) return;
  aqs_backend b = bf16_mode(be);
  float *xf = upcast(x, (size_t)N * (size_t)K), *yf = scratch_f32((size_t)N * (size_t)M);
  cpu_linear(&b, yf, xf, w, bias, N, K, M);
  store_bf16(y, yf, (size_t)N * (size_t)M, NULL);
  free(xf);
  free(yf);
}

void cpu_rope_fwd_b(aqs_backend *be, aqs_bf16 *x, const int32_t *pos, int N, int H, int D,
                    const int mrope_section[3], float theta, float *amax) {
  aqs_backend b = bf16_mode(be);
  size_t n = (size_t)N * (size_t)H * (size_t)D;
  float *f = upcast(x, n);
  cpu_rope_fwd(&b, f, pos, N, H, D, mrope_section, theta);
  store_bf16(x, f, n, amax);
  free(f);
}

void cpu_add_b(aqs_backend *be, float *out, const float *a, const aqs_bf16 *bv, size_t n,
               float *amax) {
  aqs_backend b = bf16_mode(be);
  float *f = upcast(bv, n);
  cpu_add(&b, out, a, f, n);
  free(f);
  if (amax) {
    float m;
    cpu_amax_f32(NULL, out, n, &m);
    amax_fold(amax, m);
  }
}

void cpu_swiglu_fwd_b(aqs_backend *be, aqs_bf16 *out, const aqs_bf16 *gate, const aqs_bf16 *up,
                      size_t n, float *amax) {
  aqs_backend b = bf16_mode(be);
  float *g = upcast(gate, n), *u = upcast(up, n);
  cpu_swiglu_fwd(&b, g, g, u, n); /* in place on the F32 copy of gate (elementwise) */
  store_bf16(out, g, n, amax);
  free(g);
  free(u);
}

void cpu_amax_bf16_async(aqs_backend *be, const aqs_bf16 *x, size_t n, float *amax) {
  float m;
  cpu_amax_bf16(be, x, n, &m);
  amax_fold(amax, m);
}

/* flash */
void cpu_attention_fwd_b(aqs_backend *be, aqs_bf16 *out, float *lse, const aqs_bf16 *q,
                         const aqs_bf16 *k, const aqs_bf16 *v, const int32_t *cu_seqlens, int B,
                         int max_seqlen, int N, int Hq, int Hkv, int D) {
  aqs_backend b = bf16_mode(be);
  const size_t nq = (size_t)N * (size_t)Hq * (size_t)D, nk = (size_t)N * (size_t)Hkv * (size_t)D;
  float *qf = upcast(q, nq), *kf = upcast(k, nk), *vf = upcast(v, nk), *of = scratch_f32(nq);
  cpu_attention_fwd(&b, of, lse, qf, kf, vf, cu_seqlens, B, max_seqlen, N, Hq, Hkv, D);
  store_bf16(out, of, nq, NULL);
  free(qf);
  free(kf);
  free(vf);
  free(of);
}
