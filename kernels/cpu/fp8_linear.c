/* kernels/cpu/fp8_linear.c: the CPU backend's FP8 fake-quant ops on top of the FP8 codec
 * (kernels/fp8.h, torch-CUDA reference semantics): quantize activations/weights and the
 * E4M3 x E4M3 GEMM with per-tensor scales applied to the F32 accumulator. */
#include <stdlib.h>

#include "kernels/cpu/cpu_common.h"
#include "kernels/fp8.h"

void cpu_quantize_fp8_f32(aqs_backend *be, uint8_t *q, const float *x, size_t n, float scale) {
  (void)be;
  aqs_fp8_quantize_f32(x, n, scale, AQS_FP8_REF_TORCH_CUDA, q);
}

void cpu_quantize_fp8_bf16(aqs_backend *be, uint8_t *q, const aqs_bf16 *x, size_t n,
                           float scale) {
  (void)be;
  aqs_fp8_quantize_bf16(x, n, scale, AQS_FP8_REF_TORCH_CUDA, q);
}

/* Unscaled E4M3 values of n codes into a new array (exact in F32). */
static float *decode(const uint8_t *q, size_t n) {
  float table[256];
  for (int c = 0; c < 256; c++) table[c] = aqs_fp8_e4m3_to_f32((uint8_t)c);
  float *f = malloc((n ? n : 1) * sizeof *f);
  if (!f) abort();
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) f[i] = table[q[i]];
  return f;
}

void cpu_linear_fp8(aqs_backend *be, float *y, const uint8_t *xq, float x_scale,
                    const uint8_t *wq, float w_scale, const aqs_bf16 *bias, int N, int K, int M) {
  if (N == 0 || M == 0) return;
  float *xf = decode(xq, (size_t)N * (size_t)K), *wf = decode(wq, (size_t)M * (size_t)K);
  cpu_sgemm_rows(1, N, M, K, x_scale * w_scale, xf, wf, 0.0f, y);
  free(xf);
  free(wf);
  cpu_bias_round(be, y, bias, N, M);
}

void cpu_dequantize_fp8(aqs_backend *be, float *out, const uint8_t *q, size_t n, float scale) {
  (void)be;
  aqs_fp8_dequantize(q, n, scale, out);
}
