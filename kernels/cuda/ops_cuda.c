/* kernels/cuda/ops_cuda.c: the CUDA backend's kernels/ops.h table, mapping each op onto the
 * launchers of the kernels/cuda .cu files (launchers.h), plus the backend-owned scratch buffers
 * (GEMM operand splits, reduction partials, RoPE frequency table) and the sticky first error.
 * Linear layers: cuBLASLt BF16 GEMMs on BF16 operands. In BF16 mode activations are already BF16
 * values (every op rounds its outputs), so one GEMM is exact; in F32 mode the F32 operand is split
 * into AQS_CUDA_F32_SPLITS BF16 terms (3 = exact for normal floats) and the GEMMs accumulate in F32.
 * The BF16 storage ops (*_b) need neither splits nor casts nor scratch: their operands are BF16
 * (attention_fwd_b excepted for shapes the tensor-core attention does not take: F32 copies). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cuda/launchers.h"
#include "kernels/ops.h"

typedef struct cuda_state {
  int failed;
  aqs_err first_err;
  void *scratch; /* GEMM operand splits and products, grown on demand */
  size_t scratch_bytes;
  void *scratch2;
  size_t scratch2_bytes;
  void *scratch_out; /* BF16 GEMM outputs (BF16 mode), expanded to F32 by a cast */
  size_t scratch_out_bytes;
  void *reduce_scratch;
  double *rows; /* per-row doubles for the losses (N + 1) */
  size_t rows_cap;
  float *inv_freq; /* RoPE inv_freq (D/2) for inv_freq_D / inv_freq_theta */
  int inv_freq_D;
  float inv_freq_theta;
  int f32_splits;
  /* The BF16 split of the last linear input stays valid in scratch until any op other than a
   * linear or a read-only reduction runs: q/k/v (and gate/up) share one split. */
  const float *split_src;
  size_t split_n;
  int split_nparts;
} cuda_state;

static cuda_state *state_of(aqs_backend *be) { return (cuda_state *)be->impl; }
/* Forgets the cached linear-input split (every op that may write memory calls this). */
static void invalidate_split(aqs_backend *be) { state_of(be)->split_src = NULL; }
static int rnd_of(const aqs_backend *be) { return be->precision == AQS_PREC_BF16; }

/* Records the first failure; later ops keep running (their results are discarded by the caller). */
static void note(aqs_backend *be, aqs_status st, const aqs_err *err) {
  cuda_state *s = state_of(be);
  if (st == AQS_OK || s->failed) return;
  s->failed = 1;
  s->first_err = *err;
}
#define NOTE(call)              \
  do {                          \
    aqs_err err_;               \
    aqs_err_clear(&err_);       \
    aqs_status st_ = (call);    \
    note(be, st_, &err_);       \
  } while (0)

/* Ensures *buf holds at least bytes (old contents are not kept). */
static aqs_status grow(void **buf, size_t *cap, size_t bytes, const char *what, aqs_err *e) {
  if (*cap >= bytes) return AQS_OK;
  aqs_cuda_free(*buf);
  *buf = NULL;
  *cap = 0;
  size_t want = bytes + bytes / 4; /* headroom: shapes vary a little between calls */
  aqs_status st = aqs_cuda_malloc(buf, want, what, e);
  if (st == AQS_OK) *cap = want;
  return st;
}

/* ---- memory and control ---- */
static aqs_status c_alloc(aqs_backend *be, size_t bytes, void **out, aqs_err *e) {
  (void)be;
  return aqs_cuda_malloc(out, bytes ? bytes : 1, "a compute buffer", e);
}
static void c_free(aqs_backend *be, void *ptr) {
  invalidate_split(be);
  (void)be;
  aqs_cuda_free(ptr);
}
static void c_copy_h2d(aqs_backend *be, void *dst, const void *src, size_t bytes) {
  invalidate_split(be);
  NOTE(aqs_cuda_copy_h2d(dst, src, bytes, &err_));
}
static void c_copy_d2h(aqs_backend *be, void *dst, const void *src, size_t bytes) {
  NOTE(aqs_cuda_copy_d2h(dst, src, bytes, &err_));
}
static void c_copy_d2d(aqs_backend *be, void *dst, const void *src, size_t bytes) {
  invalidate_split(be);
  NOTE(aqs_cuda_copy_d2d(dst, src, bytes, &err_));
}
static void c_zero(aqs_backend *be, void *ptr, size_t bytes) { NOTE(aqs_cuda_memset0(ptr, bytes, &err_)); }

static aqs_status c_sync(aqs_backend *be, aqs_err *e) {
  invalidate_split(be);
  cuda_state *s = state_of(be);
  aqs_err sync_err;
  aqs_err_clear(&sync_err);
  aqs_status st = aqs_cuda_sync(&sync_err);
  if (s->failed) {
    if (e) *e = s->first_err;
    st = s->first_err.code;
    s->failed = 0;
    return st;
  }
  if (st && e) *e = sync_err;
  return st;
}

static void c_mem_stats(aqs_backend *be, size_t *in_use, size_t *peak) {
  (void)be;
  if (in_use) *in_use = aqs_cuda_bytes_in_use();
  if (peak) *peak = aqs_cuda_peak_bytes();
}

static void c_close(aqs_backend *be) {
  if (!be) return;
  cuda_state *s = state_of(be);
  aqs_cuda_free(s->scratch);
  aqs_cuda_free(s->scratch2);
  aqs_cuda_free(s->scratch_out);
  aqs_cuda_free(s->reduce_scratch);
  aqs_cuda_free(s->rows);
  aqs_cuda_free(s->inv_freq);
  aqs_cuda_sync(NULL);
  free(s);
  free(be);
}

/* ---- casts and elementwise ---- */
static void c_cast_bf16_to_f32(aqs_backend *be, float *dst, const aqs_bf16 *src, size_t n) {
  invalidate_split(be);
  NOTE(aqs_cuda_cast_bf16_to_f32(dst, src, n, &err_));
}
static void c_cast_f32_to_bf16(aqs_backend *be, aqs_bf16 *dst, const float *src, size_t n) {
  invalidate_split(be);
  NOTE(aqs_cuda_cast_f32_to_bf16(dst, src, n, &err_));
}
static void c_round_bf16(aqs_backend *be, float *x, size_t n) { NOTE(aqs_cuda_round_bf16(x, n, &err_)); }
static void c_add(aqs_backend *be, float *out, const float *a, const float *b, size_t n) {
  invalidate_split(be);
  NOTE(aqs_cuda_add(out, a, b, n, rnd_of(be), &err_));
}
static void c_embedding(aqs_backend *be, float *out, const aqs_bf16 *table, const int32_t *ids, int N, int C) {
  invalidate_split(be);
  NOTE(aqs_cuda_embedding(out, table, ids, N, C, &err_));
}

/* ---- RMSNorm ---- */
static void c_rmsnorm_fwd(aqs_backend *be, float *out, float *rstd, const float *x, const aqs_bf16 *w, int N, int C,
                          float eps) {
  invalidate_split(be);
  NOTE(aqs_cuda_rmsnorm_fwd(out, rstd, x, w, N, C, eps, rnd_of(be), &err_));
}
static void c_rmsnorm_bwd(aqs_backend *be, float *dx, const float *dout, const float *x, const float *rstd,
                          const aqs_bf16 *w, int N, int C, int accumulate) {
  invalidate_split(be);
  NOTE(aqs_cuda_rmsnorm_bwd(dx, dout, x, rstd, w, N, C, accumulate, rnd_of(be), &err_));
}

/* ---- linear layers ---- */
static int splits_of(aqs_backend *be) { return rnd_of(be) ? 1 : state_of(be)->f32_splits; }

/* Splits x (n floats) into BF16 parts in scratch; returns the parts or NULL after noting an error. */
static uint16_t *split_operand(aqs_backend *be, const float *x, size_t n, int nparts) {
  cuda_state *s = state_of(be);
  if (s->split_src == x && s->split_n == n && s->split_nparts == nparts) return (uint16_t *)s->scratch;
  s->split_src = NULL;
  aqs_err err;
  aqs_status st = grow(&s->scratch, &s->scratch_bytes, (size_t)nparts * n * sizeof(uint16_t),
                       "the BF16 GEMM operand (reduce the tokens per step)", &err);
  if (st == AQS_OK) st = aqs_cuda_split_bf16((uint16_t *)s->scratch, x, n, nparts, &err);
  note(be, st, &err);
  if (st == AQS_OK) {
    s->split_src = x;
    s->split_n = n;
    s->split_nparts = nparts;
  }
  return st == AQS_OK ? (uint16_t *)s->scratch : NULL;
}

/* BF16 mode: the GEMM writes BF16 (bias added to the F32 accumulator in the epilogue, rounded
 * once: torch's bf16 linear) into scratch_out, then one cast expands it into y. That moves 8 bytes
 * per output element instead of 12 for an F32 output plus a rounding pass. Returns the BF16
 * buffer or NULL after noting an error. */
static uint16_t *bf16_out_scratch(aqs_backend *be, size_t n) {
  cuda_state *s = state_of(be);
  aqs_err err;
  aqs_status st = grow(&s->scratch_out, &s->scratch_out_bytes, n * sizeof(uint16_t),
                       "the BF16 GEMM output (reduce the tokens per step)", &err);
  note(be, st, &err);
  return st == AQS_OK ? (uint16_t *)s->scratch_out : NULL;
}

static void c_linear(aqs_backend *be, float *y, const float *x, const aqs_bf16 *w, const aqs_bf16 *bias, int N,
                     int K, int M) {
  if (N <= 0 || M <= 0) return;
  int nparts = splits_of(be);
  size_t xn = (size_t)N * (size_t)K, yn = (size_t)N * (size_t)M;
  uint16_t *parts = split_operand(be, x, xn, nparts);
  if (!parts) return;
  /* y must not alias x (ops.h); if it does anyway, the cached split of x is stale afterwards */
  if ((const char *)y < (const char *)(x + xn) && (const char *)x < (const char *)(y + yn)) invalidate_split(be);
  if (rnd_of(be)) {
    uint16_t *yb = bf16_out_scratch(be, yn);
    if (!yb) return;
    NOTE(aqs_cuda_gemm_bf16(parts, w, bias, yb, 0, 0, N, M, K, &err_));
    NOTE(aqs_cuda_cast_bf16_to_f32(y, yb, yn, &err_));
    return;
  }
  for (int p = 0; p < nparts; p++)
    NOTE(aqs_cuda_gemm_bf16(parts + (size_t)p * xn, w, NULL, y, 1, p > 0, N, M, K, &err_));
  NOTE(aqs_cuda_bias_round(y, bias, N, M, 0, &err_));
}

static void c_linear_bwd_input(aqs_backend *be, float *dx, const float *dy, const aqs_bf16 *w, int N, int K, int M,
                               int accumulate) {
  invalidate_split(be);
  if (N <= 0 || K <= 0) return;
  cuda_state *s = state_of(be);
  int nparts = splits_of(be);
  size_t dyn = (size_t)N * (size_t)M, dxn = (size_t)N * (size_t)K;
  uint16_t *parts = split_operand(be, dy, dyn, nparts);
  if (!parts) return;
  if (rnd_of(be) && accumulate) { /* BF16: round the product, then the sum */
    aqs_err err;
    aqs_status st = grow(&s->scratch2, &s->scratch2_bytes, dxn * sizeof(float),
                         "the input-gradient product (reduce the tokens per step)", &err);
    note(be, st, &err);
    if (st) return;
    NOTE(aqs_cuda_gemm_bf16_nn(parts, w, s->scratch2, 1, 0, N, K, M, &err_));
    NOTE(aqs_cuda_accumulate_round(dx, (const float *)s->scratch2, dxn, &err_));
    return;
  }
  for (int p = 0; p < nparts; p++)
    NOTE(aqs_cuda_gemm_bf16_nn(parts + (size_t)p * dyn, w, dx, 1, accumulate || p > 0, N, K, M, &err_));
  if (rnd_of(be)) NOTE(aqs_cuda_round_bf16(dx, dxn, &err_));
}

static void c_quantize_fp8_f32(aqs_backend *be, uint8_t *q, const float *x, size_t n, float scale) {
  invalidate_split(be);
  NOTE(aqs_cuda_quantize_fp8_f32(q, x, n, scale, 0, &err_));
}
static void c_quantize_fp8_bf16(aqs_backend *be, uint8_t *q, const aqs_bf16 *x, size_t n, float scale) {
  invalidate_split(be);
  NOTE(aqs_cuda_quantize_fp8_bf16(q, x, n, scale, 0, &err_));
}
static void c_linear_fp8(aqs_backend *be, float *y, const uint8_t *xq, float x_scale, const uint8_t *wq,
                         float w_scale, const aqs_bf16 *bias, int N, int K, int M) {
  invalidate_split(be);
  if (N <= 0 || M <= 0) return;
  size_t yn = (size_t)N * (size_t)M;
  if (rnd_of(be) && aqs_cuda_gemm_fp8_shape_ok(M, K)) {
    uint16_t *yb = bf16_out_scratch(be, yn);
    if (!yb) return;
    NOTE(aqs_cuda_gemm_fp8(xq, wq, x_scale, w_scale, bias, yb, 0, N, M, K, &err_));
    NOTE(aqs_cuda_cast_bf16_to_f32(y, yb, yn, &err_));
    return;
  }
  /* F32 mode (the reference), and BF16 mode on shapes the FP8 tensor cores refuse (in or out
   * features not a multiple of 16: the vision MLP's 172 / 3420, the patch embedding's 1176):
   * decode the codes to BF16 (exact) and run a BF16 GEMM, whose products are exact and
   * accumulation F32, with alpha = x_scale * w_scale as the CPU twin; BF16 mode then rounds once
   * after the bias, as the FP8 GEMM's BF16 output does. (Hopper's FP8 tensor cores do not
   * accumulate in full F32, about 2^-11 relative, so F32 mode always takes this path.) */
  cuda_state *s = state_of(be);
  size_t xn = (size_t)N * (size_t)K, wn = (size_t)M * (size_t)K, w_off = (xn + 127) & ~(size_t)127;
  aqs_err err;
  aqs_status st = grow(&s->scratch, &s->scratch_bytes, (w_off + wn) * sizeof(uint16_t),
                       "the FP8 GEMM operands (reduce the tokens per step)", &err);
  note(be, st, &err);
  if (st) return;
  uint16_t *xb = (uint16_t *)s->scratch, *wb = xb + w_off; /* 256-byte aligned operands */
  NOTE(aqs_cuda_fp8_to_bf16(xb, xq, xn, &err_));
  NOTE(aqs_cuda_fp8_to_bf16(wb, wq, wn, &err_));
  NOTE(aqs_cuda_gemm_bf16_alpha(xb, wb, x_scale * w_scale, y, N, M, K, &err_));
  NOTE(aqs_cuda_bias_round(y, bias, N, M, rnd_of(be), &err_));
}

static void c_dequantize_fp8(aqs_backend *be, float *out, const uint8_t *q, size_t n, float scale) {
  invalidate_split(be);
  NOTE(aqs_cuda_dequantize_fp8(out, q, n, scale, &err_));
}

/* ---- RoPE ---- */
/* inv_freq[j] = 1 / theta^(2j/D), computed on the host with the CPU twin's expression. */
static const float *inv_freq_table(aqs_backend *be, int D, float theta) {
  cuda_state *s = state_of(be);
  if (s->inv_freq && s->inv_freq_D == D && s->inv_freq_theta == theta) return s->inv_freq;
  aqs_cuda_free(s->inv_freq);
  s->inv_freq = NULL;
  int half = D / 2;
  float *h = malloc((size_t)(half > 0 ? half : 1) * sizeof *h);
  aqs_err err;
  if (!h) {
    note(be, aqs_errf(&err, AQS_ERR_NOMEM, "cuda rope: out of host memory"), &err);
    return NULL;
  }
  for (int j = 0; j < half; j++) h[j] = 1.0f / powf(theta, (float)(2 * j) / (float)D);
  void *d = NULL;
  aqs_status st = aqs_cuda_malloc(&d, (size_t)(half > 0 ? half : 1) * sizeof *h, "the RoPE frequency table", &err);
  if (st == AQS_OK) st = aqs_cuda_copy_h2d(d, h, (size_t)half * sizeof *h, &err);
  free(h);
  note(be, st, &err);
  if (st) {
    aqs_cuda_free(d);
    return NULL;
  }
  s->inv_freq = d;
  s->inv_freq_D = D;
  s->inv_freq_theta = theta;
  return s->inv_freq;
}

static void c_rope_fwd(aqs_backend *be, float *x, const int32_t *pos, int N, int H, int D, const int mrope_section[3],
                       float theta) {
  invalidate_split(be);
  const float *f = inv_freq_table(be, D, theta);
  if (f) NOTE(aqs_cuda_rope(x, pos, f, N, H, D, mrope_section, rnd_of(be), 0, &err_));
}
static void c_rope_bwd(aqs_backend *be, float *dx, const int32_t *pos, int N, int H, int D, const int mrope_section[3],
                       float theta) {
  invalidate_split(be);
  const float *f = inv_freq_table(be, D, theta);
  if (f) NOTE(aqs_cuda_rope(dx, pos, f, N, H, D, mrope_section, rnd_of(be), 1, &err_));
}

/* ---- attention ---- */
static void c_attention_fwd(aqs_backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                            const int32_t *cu_seqlens, int B, int max_seqlen, int N, int Hq, int Hkv, int D) {
  invalidate_split(be);
  NOTE(aqs_cuda_attention_fwd(out, lse, q, k, v, cu_seqlens, B, max_seqlen, N, Hq, Hkv, D, rnd_of(be), &err_));
}
static void c_attention_bwd(aqs_backend *be, float *dq, float *dk, float *dv, const float *dout, const float *out,
                            const float *lse, const float *q, const float *k, const float *v,
                            const int32_t *cu_seqlens, int B, int max_seqlen, int N, int Hq, int Hkv, int D) {
  invalidate_split(be);
  cuda_state *s = state_of(be);
  aqs_err err;
  aqs_status st = grow(&s->scratch2, &s->scratch2_bytes, aqs_cuda_attention_bwd_scratch_bytes(N, Hq, D),
                       "the attention backward scratch (reduce the tokens per step)", &err);
  note(be, st, &err);
  if (st) return;
  NOTE(aqs_cuda_attention_bwd(dq, dk, dv, s->scratch2, dout, out, lse, q, k, v, cu_seqlens, B, max_seqlen, N,
                              Hq, Hkv, D, rnd_of(be), &err_));
}

/* ---- SwiGLU ---- */
static void c_swiglu_fwd(aqs_backend *be, float *out, const float *gate, const float *up, size_t n) {
  invalidate_split(be);
  NOTE(aqs_cuda_swiglu_fwd(out, gate, up, n, rnd_of(be), &err_));
}
static void c_swiglu_bwd(aqs_backend *be, float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, size_t n) {
  invalidate_split(be);
  NOTE(aqs_cuda_swiglu_bwd(dgate, dup, dout, gate, up, n, rnd_of(be), &err_));
}

/* ---- vision tower ---- */
static void c_gather_rows(aqs_backend *be, float *dst, const float *src, const int32_t *idx, int n, int width) {
  invalidate_split(be);
  NOTE(aqs_cuda_gather_rows(dst, src, idx, n, width, 0, &err_));
}
static void c_scatter_rows(aqs_backend *be, float *dst, const float *src, const int32_t *idx, int n, int width) {
  invalidate_split(be);
  NOTE(aqs_cuda_gather_rows(dst, src, idx, n, width, 1, &err_));
}
static void c_gelu_fwd(aqs_backend *be, float *out, const float *x, size_t n) {
  invalidate_split(be);
  NOTE(aqs_cuda_gelu(out, NULL, x, n, rnd_of(be), 0, &err_));
}
static void c_gelu_bwd(aqs_backend *be, float *dx, const float *dout, const float *x, size_t n) {
  invalidate_split(be);
  NOTE(aqs_cuda_gelu(dx, dout, x, n, rnd_of(be), 1, &err_));
}
static void c_vision_rope_fwd(aqs_backend *be, float *x, const int32_t *pos, int N, int H, int D, float theta) {
  invalidate_split(be);
  NOTE(aqs_cuda_vision_rope(x, pos, N, H, D, theta, rnd_of(be), 0, &err_));
}
static void c_vision_rope_bwd(aqs_backend *be, float *dx, const int32_t *pos, int N, int H, int D, float theta) {
  invalidate_split(be);
  NOTE(aqs_cuda_vision_rope(dx, pos, N, H, D, theta, rnd_of(be), 1, &err_));
}
static void c_attention_full_fwd(aqs_backend *be, float *out, float *lse, const float *q, const float *k,
                                 const float *v, const int32_t *cu_seqlens, int B, int max_seqlen, int N, int H,
                                 int D) {
  invalidate_split(be);
  NOTE(aqs_cuda_attention_full_fwd(out, lse, q, k, v, cu_seqlens, B, max_seqlen, N, H, D, rnd_of(be), &err_));
}
static void c_attention_full_bwd(aqs_backend *be, float *dq, float *dk, float *dv, const float *dout,
                                 const float *out, const float *lse, const float *q, const float *k, const float *v,
                                 const int32_t *cu_seqlens, int B, int max_seqlen, int N, int H, int D) {
  invalidate_split(be);
  cuda_state *s = state_of(be);
  aqs_err err;
  aqs_status st = grow(&s->scratch2, &s->scratch2_bytes, aqs_cuda_attention_full_bwd_scratch_bytes(N, H),
                       "the vision attention backward scratch (reduce the images per step)", &err);
  note(be, st, &err);
  if (st) return;
  NOTE(aqs_cuda_attention_full_bwd(dq, dk, dv, s->scratch2, dout, out, lse, q, k, v, cu_seqlens, B, max_seqlen,
                                   N, H, D, rnd_of(be), &err_));
}

/* ---- losses ---- */
static double *rows_scratch(aqs_backend *be, int N) {
  cuda_state *s = state_of(be);
  aqs_err err;
  aqs_status st = grow((void **)&s->rows, &s->rows_cap, ((size_t)N + 1) * sizeof(double), "loss row sums", &err);
  note(be, st, &err);
  return st == AQS_OK ? s->rows : NULL;
}
static void c_cross_entropy(aqs_backend *be, float *dlogits, const float *logits, const int32_t *targets, int N,
                            int V, float grad_scale, double *loss_sum_host) {
  invalidate_split(be);
  *loss_sum_host = NAN;
  double *rows = rows_scratch(be, N);
  if (rows)
    NOTE(aqs_cuda_cross_entropy(dlogits, logits, targets, N, V, grad_scale, rnd_of(be), rows, loss_sum_host, &err_));
}
static void c_log_softmax(aqs_backend *be, float *out, const float *logits, int N, int V) {
  invalidate_split(be);
  NOTE(aqs_cuda_log_softmax(out, logits, N, V, &err_));
}
static void c_kl_div(aqs_backend *be, const float *logp_ref, const float *logits, int N, int V, double *kl_sum_host) {
  *kl_sum_host = NAN;
  double *rows = rows_scratch(be, N);
  if (rows) NOTE(aqs_cuda_kl_div(logp_ref, logits, N, V, rows, kl_sum_host, &err_));
}
static void c_kl_argmax_rows(aqs_backend *be, const float *logp_ref, const float *logits, int N, int V,
                             double *row_kl_host, int32_t *argmax_host) {
  double *rows = rows_scratch(be, 2 * N);
  if (rows) NOTE(aqs_cuda_kl_argmax_rows(logp_ref, logits, N, V, rows, row_kl_host, argmax_host, &err_));
}

/* ---- reductions ---- */
static void *reduce_scratch(aqs_backend *be) {
  cuda_state *s = state_of(be);
  if (!s->reduce_scratch) {
    aqs_err err;
    aqs_status st = aqs_cuda_malloc(&s->reduce_scratch, aqs_cuda_reduce_scratch_bytes(), "reduction partials", &err);
    if (st == AQS_OK) st = aqs_cuda_memset0(s->reduce_scratch, aqs_cuda_reduce_scratch_bytes(), &err);
    note(be, st, &err);
    if (st) {
      aqs_cuda_free(s->reduce_scratch);
      s->reduce_scratch = NULL;
    }
  }
  return s->reduce_scratch;
}
static void c_amax_f32(aqs_backend *be, const float *x, size_t n, float *amax_host) {
  *amax_host = NAN;
  void *scratch = reduce_scratch(be);
  if (scratch) NOTE(aqs_cuda_amax(x, 0, n, scratch, amax_host, &err_));
}
static void c_amax_bf16(aqs_backend *be, const aqs_bf16 *x, size_t n, float *amax_host) {
  *amax_host = NAN;
  void *scratch = reduce_scratch(be);
  if (scratch) NOTE(aqs_cuda_amax(x, 1, n, scratch, amax_host, &err_));
}
static void c_amax_f32_async(aqs_backend *be, const float *x, size_t n, float *out) {
  void *scratch = reduce_scratch(be);
  if (scratch) NOTE(aqs_cuda_amax_async(x, n, scratch, out, &err_));
}
static void c_grad_score_async(aqs_backend *be, const float *g, const float *y, const float *y_q, size_t n,
                               double *out) {
  void *scratch = reduce_scratch(be);
  if (scratch) NOTE(aqs_cuda_grad_score_async(g, y, y_q, n, scratch, out, &err_));
}
static void c_grad_score(aqs_backend *be, const float *g, const float *y, const float *y_q, size_t n,
                         double *sum_host) {
  *sum_host = NAN;
  void *scratch = reduce_scratch(be);
  if (scratch) NOTE(aqs_cuda_grad_score(g, y, y_q, n, scratch, sum_host, &err_));
}

/* ---- BF16 activation storage (bf16ops): kernels/ops.h *_b, no casts, no scratch ---- */
static void c_rmsnorm_fwd_b(aqs_backend *be, aqs_bf16 *out, float *rstd, const float *x, const aqs_bf16 *w, int N,
                            int C, float eps, float *amax) {
  invalidate_split(be);
  NOTE(aqs_cuda_rmsnorm_fwd_b(out, rstd, x, w, N, C, eps, amax, &err_));
}
/* One BF16 GEMM: BF16 x in, bias added to the F32 accumulator, rounded once into BF16 y. */
static void c_linear_b(aqs_backend *be, aqs_bf16 *y, const aqs_bf16 *x, const aqs_bf16 *w, const aqs_bf16 *bias,
                       int N, int K, int M) {
  invalidate_split(be);
  if (N <= 0 || M <= 0) return;
  NOTE(aqs_cuda_gemm_bf16(x, w, bias, y, 0, 0, N, M, K, &err_));
}
static void c_rope_fwd_b(aqs_backend *be, aqs_bf16 *x, const int32_t *pos, int N, int H, int D,
                         const int mrope_section[3], float theta, float *amax) {
  invalidate_split(be);
  const float *f = inv_freq_table(be, D, theta);
  if (f) NOTE(aqs_cuda_rope_fwd_b(x, pos, f, N, H, D, mrope_section, amax, &err_));
}
static void c_add_b(aqs_backend *be, float *out, const float *a, const aqs_bf16 *b, size_t n, float *amax) {
  invalidate_split(be);
  NOTE(aqs_cuda_add_b(out, a, b, n, amax, &err_));
}
static void c_swiglu_fwd_b(aqs_backend *be, aqs_bf16 *out, const aqs_bf16 *gate, const aqs_bf16 *up, size_t n,
                           float *amax) {
  invalidate_split(be);
  NOTE(aqs_cuda_swiglu_fwd_b(out, gate, up, n, amax, &err_));
}
static void c_amax_bf16_async(aqs_backend *be, const aqs_bf16 *x, size_t n, float *amax) {
  invalidate_split(be);
  NOTE(aqs_cuda_amax_bf16_fold(x, n, amax, &err_));
}

/* ---- flash: attention on BF16 activations ---- */
static void c_attention_fwd_b(aqs_backend *be, aqs_bf16 *out, float *lse, const aqs_bf16 *q, const aqs_bf16 *k,
                              const aqs_bf16 *v, const int32_t *cu_seqlens, int B, int max_seqlen, int N, int Hq,
                              int Hkv, int D) {
  invalidate_split(be);
  cuda_state *s = state_of(be);
  size_t bytes = aqs_cuda_attention_fwd_b_scratch_bytes(out, lse, q, k, v, B, max_seqlen, N, Hq, Hkv, D);
  if (bytes) {
    aqs_err err;
    aqs_status st = grow(&s->scratch2, &s->scratch2_bytes, bytes,
                         "the attention F32 copies of q, k, v (reduce the tokens per step)", &err);
    note(be, st, &err);
    if (st) return;
  }
  NOTE(aqs_cuda_attention_fwd_b(out, lse, q, k, v, cu_seqlens, B, max_seqlen, N, Hq, Hkv, D, 1, s->scratch2, &err_));
}

static const aqs_ops aqs_cuda_ops = {
  .alloc = c_alloc,
  .free = c_free,
  .copy_h2d = c_copy_h2d,
  .copy_d2h = c_copy_d2h,
  .copy_d2d = c_copy_d2d,
  .zero = c_zero,
  .sync = c_sync,
  .mem_stats = c_mem_stats,
  .close = c_close,
  .cast_bf16_to_f32 = c_cast_bf16_to_f32,
  .cast_f32_to_bf16 = c_cast_f32_to_bf16,
  .round_bf16 = c_round_bf16,
  .add = c_add,
  .embedding = c_embedding,
  .rmsnorm_fwd = c_rmsnorm_fwd,
  .rmsnorm_bwd = c_rmsnorm_bwd,
  .linear = c_linear,
  .linear_bwd_input = c_linear_bwd_input,
  .quantize_fp8_f32 = c_quantize_fp8_f32,
  .quantize_fp8_bf16 = c_quantize_fp8_bf16,
  .linear_fp8 = c_linear_fp8,
  .dequantize_fp8 = c_dequantize_fp8,
  .rope_fwd = c_rope_fwd,
  .rope_bwd = c_rope_bwd,
  .attention_fwd = c_attention_fwd,
  .attention_bwd = c_attention_bwd,
  .swiglu_fwd = c_swiglu_fwd,
  .swiglu_bwd = c_swiglu_bwd,
  .gather_rows = c_gather_rows,
  .scatter_rows = c_scatter_rows,
  .gelu_fwd = c_gelu_fwd,
  .gelu_bwd = c_gelu_bwd,
  .vision_rope_fwd = c_vision_rope_fwd,
  .vision_rope_bwd = c_vision_rope_bwd,
  .attention_full_fwd = c_attention_full_fwd,
  .attention_full_bwd = c_attention_full_bwd,
  .cross_entropy = c_cross_entropy,
  .log_softmax = c_log_softmax,
  .kl_div = c_kl_div,
  .kl_argmax_rows = c_kl_argmax_rows,
  .amax_f32 = c_amax_f32,
  .amax_f32_async = c_amax_f32_async,
  .amax_bf16 = c_amax_bf16,
  .grad_score = c_grad_score,
  .grad_score_async = c_grad_score_async,
  .rmsnorm_fwd_b = c_rmsnorm_fwd_b, /* bf16ops */
  .linear_b = c_linear_b,
  .rope_fwd_b = c_rope_fwd_b,
  .add_b = c_add_b,
  .swiglu_fwd_b = c_swiglu_fwd_b,
  .amax_bf16_async = c_amax_bf16_async,
  /* flash */
  .attention_fwd_b = c_attention_fwd_b,
};

aqs_status aqs_backend_cuda_open(aqs_backend **out, aqs_err *e) {
  *out = NULL;
  const char *dev_env = getenv("AQS_CUDA_DEVICE");
  aqs_status st = aqs_cuda_init(dev_env ? atoi(dev_env) : 0, e);
  if (st) return st;
  aqs_backend *be = calloc(1, sizeof *be);
  cuda_state *s = calloc(1, sizeof *s);
  if (!be || !s) {
    free(be);
    free(s);
    return aqs_errf(e, AQS_ERR_NOMEM, "cuda: out of host memory opening the backend");
  }
  const char *splits_env = getenv("AQS_CUDA_F32_SPLITS");
  s->f32_splits = splits_env ? atoi(splits_env) : 3;
  if (s->f32_splits < 1 || s->f32_splits > 3) s->f32_splits = 3;
  be->ops = &aqs_cuda_ops;
  be->name = "cuda";
  snprintf(be->device, sizeof be->device, "%s", aqs_cuda_device_desc());
  be->precision = AQS_PREC_F32;
  be->impl = s;
  *out = be;
  return AQS_OK;
}
