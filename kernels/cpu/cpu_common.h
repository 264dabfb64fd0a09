/* kernels/cpu/cpu_common.h: helpers shared by the CPU backend's op files (BF16 bit conversions,
 * precision-dependent rounding, the deterministic blocked double sum) and the op table entries
 * each file defines. Private to kernels/cpu. */
#ifndef AQS_KERNELS_CPU_COMMON_H
#define AQS_KERNELS_CPU_COMMON_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/bf16.h"
#include "kernels/ops.h"

/* The CPU kernels' short names for kernels/bf16.h (RNE, torch's .to(bfloat16)). */
static inline float cpu_bf16_to_f32(aqs_bf16 b) { return aqs_bf16_to_f32(b); }
static inline aqs_bf16 cpu_f32_to_bf16(float f) { return aqs_f32_to_bf16(f); }

static inline float cpu_round_bf16(float f) { return cpu_bf16_to_f32(cpu_f32_to_bf16(f)); }

/* Rounds to BF16 only in BF16 precision mode. */
static inline float cpu_rnd(const aqs_backend *be, float f) {
  return be->precision == AQS_PREC_BF16 ? cpu_round_bf16(f) : f;
}

/* Elements per block of the deterministic reductions: partial sums per fixed block, then the
 * partials summed in block order, so the result does not depend on the thread count. */
#define CPU_SUM_BLOCK 4096

/* Loops over fewer elements than this run on the calling thread: forking OpenMP threads costs
 * more than the work (and much more on an oversubscribed machine). Results do not depend on it. */
#define CPU_PAR_MIN ((size_t)1 << 18)

/* Op implementations (one group per file). */
/* memory.c */
aqs_status cpu_alloc(aqs_backend *be, size_t bytes, void **out, aqs_err *e);
void cpu_free(aqs_backend *be, void *ptr);
void cpu_copy_h2d(aqs_backend *be, void *dst, const void *src, size_t bytes);
void cpu_copy_d2h(aqs_backend *be, void *dst, const void *src, size_t bytes);
void cpu_copy_d2d(aqs_backend *be, void *dst, const void *src, size_t bytes);
void cpu_zero(aqs_backend *be, void *ptr, size_t bytes);
aqs_status cpu_sync(aqs_backend *be, aqs_err *e);
void cpu_mem_stats(aqs_backend *be, size_t *in_use, size_t *peak);
void cpu_close(aqs_backend *be);
/* elementwise.c */
void cpu_cast_bf16_to_f32(aqs_backend *be, float *dst, const aqs_bf16 *src, size_t n);
void cpu_cast_f32_to_bf16(aqs_backend *be, aqs_bf16 *dst, const float *src, size_t n);
void cpu_round_bf16_op(aqs_backend *be, float *x, size_t n);
void cpu_add(aqs_backend *be, float *out, const float *a, const float *b, size_t n);
void cpu_embedding(aqs_backend *be, float *out, const aqs_bf16 *table, const int32_t *ids, int N,
                   int C);
/* swiglu.c */
void cpu_swiglu_fwd(aqs_backend *be, float *out, const float *gate, const float *up, size_t n);
void cpu_swiglu_bwd(aqs_backend *be, float *dgate, float *dup, const float *dout,
                    const float *gate, const float *up, size_t n);
/* rmsnorm.c */
void cpu_rmsnorm_fwd(aqs_backend *be, float *out, float *rstd, const float *x, const aqs_bf16 *w,
                     int N, int C, float eps);
void cpu_rmsnorm_bwd(aqs_backend *be, float *dx, const float *dout, const float *x,
                     const float *rstd, const aqs_bf16 *w, int N, int C, int accumulate);
/* linear.c */
void cpu_sgemm_rows(int trans_b, int N, int M, int K, float alpha, const float *A,
                    const float *B, float beta, float *C);
/* Adds bias (may be NULL) to y (N, M) and rounds per precision. */
void cpu_bias_round(aqs_backend *be, float *y, const aqs_bf16 *bias, int N, int M);
void cpu_linear(aqs_backend *be, float *y, const float *x, const aqs_bf16 *w,
                const aqs_bf16 *bias, int N, int K, int M);
void cpu_linear_bwd_input(aqs_backend *be, float *dx, const float *dy, const aqs_bf16 *w, int N,
                          int K, int M, int accumulate);
void cpu_quantize_fp8_f32(aqs_backend *be, uint8_t *q, const float *x, size_t n, float scale);
void cpu_quantize_fp8_bf16(aqs_backend *be, uint8_t *q, const aqs_bf16 *x, size_t n,
                           float scale);
void cpu_dequantize_fp8(aqs_backend *be, float *out, const uint8_t *q, size_t n, float scale);
void cpu_linear_fp8(aqs_backend *be, float *y, const uint8_t *xq, float x_scale,
                    const uint8_t *wq, float w_scale, const aqs_bf16 *bias, int N, int K, int M);
/* rope.c */
void cpu_rope_fwd(aqs_backend *be, float *x, const int32_t *pos, int N, int H, int D,
                  const int mrope_section[3], float theta);
void cpu_rope_bwd(aqs_backend *be, float *dx, const int32_t *pos, int N, int H, int D,
                  const int mrope_section[3], float theta);
/* attention.c */
void cpu_attention_fwd(aqs_backend *be, float *out, float *lse, const float *q, const float *k,
                       const float *v, const int32_t *cu_seqlens, int B, int max_seqlen, int N,
                       int Hq, int Hkv, int D);
void cpu_attention_bwd(aqs_backend *be, float *dq, float *dk, float *dv, const float *dout,
                       const float *out, const float *lse, const float *q, const float *k,
                       const float *v, const int32_t *cu_seqlens, int B, int max_seqlen, int N,
                       int Hq, int Hkv, int D);
/* attention.c (bidirectional) */
void cpu_attention_full_fwd(aqs_backend *be, float *out, float *lse, const float *q,
                            const float *k, const float *v, const int32_t *cu_seqlens, int B,
                            int max_seqlen, int N, int H, int D);
void cpu_attention_full_bwd(aqs_backend *be, float *dq, float *dk, float *dv, const float *dout,
                            const float *out, const float *lse, const float *q, const float *k,
                            const float *v, const int32_t *cu_seqlens, int B, int max_seqlen,
                            int N, int H, int D);
/* gather.c */
void cpu_gather_rows(aqs_backend *be, float *dst, const float *src, const int32_t *idx, int n,
                     int width);
void cpu_scatter_rows(aqs_backend *be, float *dst, const float *src, const int32_t *idx, int n,
                      int width);
/* gelu.c */
void cpu_gelu_fwd(aqs_backend *be, float *out, const float *x, size_t n);
void cpu_gelu_bwd(aqs_backend *be, float *dx, const float *dout, const float *x, size_t n);
/* vision_rope.c */
void cpu_vision_rope_fwd(aqs_backend *be, float *x, const int32_t *pos, int N, int H, int D,
                         float theta);
void cpu_vision_rope_bwd(aqs_backend *be, float *dx, const int32_t *pos, int N, int H, int D,
                         float theta);
/* loss.c */
void cpu_cross_entropy(aqs_backend *be, float *dlogits, const float *logits,
                       const int32_t *targets, int N, int V, float grad_scale, double *loss_sum);
void cpu_log_softmax(aqs_backend *be, float *out, const float *logits, int N, int V);
void cpu_kl_div(aqs_backend *be, const float *logp_ref, const float *logits, int N, int V,
                double *kl_sum);
void cpu_kl_argmax_rows(aqs_backend *be, const float *logp_ref, const float *logits, int N, int V,
                        double *row_kl, int32_t *argmax);
/* reduce.c */
void cpu_amax_f32(aqs_backend *be, const float *x, size_t n, float *amax);
void cpu_amax_bf16(aqs_backend *be, const aqs_bf16 *x, size_t n, float *amax);
void cpu_grad_score(aqs_backend *be, const float *g, const float *y, const float *y_q, size_t n,
                    double *sum);
/* bf16_store.c (BF16 activation storage: the F32 twins in BF16 mode, outputs stored as BF16) */
void cpu_rmsnorm_fwd_b(aqs_backend *be, aqs_bf16 *out, float *rstd, const float *x,
                       const aqs_bf16 *w, int N, int C, float eps, float *amax);
void cpu_linear_b(aqs_backend *be, aqs_bf16 *y, const aqs_bf16 *x, const aqs_bf16 *w,
                  const aqs_bf16 *bias, int N, int K, int M);
void cpu_rope_fwd_b(aqs_backend *be, aqs_bf16 *x, const int32_t *pos, int N, int H, int D,
                    const int mrope_section[3], float theta, float *amax);
void cpu_add_b(aqs_backend *be, float *out, const float *a, const aqs_bf16 *b, size_t n,
               float *amax);
void cpu_swiglu_fwd_b(aqs_backend *be, aqs_bf16 *out, const aqs_bf16 *gate, const aqs_bf16 *up,
                      size_t n, float *amax);
void cpu_amax_bf16_async(aqs_backend *be, const aqs_bf16 *x, size_t n, float *amax);

/* bf16_store.c (flash) */
void cpu_attention_fwd_b(aqs_backend *be, aqs_bf16 *out, float *lse, const aqs_bf16 *q,
                         const aqs_bf16 *k, const aqs_bf16 *v, const int32_t *cu_seqlens, int B,
                         int max_seqlen, int N, int Hq, int Hkv, int D);

#endif
