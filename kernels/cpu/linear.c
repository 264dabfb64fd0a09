/* kernels/cpu/linear.c: linear layers on the CPU: y = x W^T + b and the input gradient
 * dx = dy W, via OpenBLAS sgemm on BF16 weights upcast to F32 (exact), F32 accumulation.
 * Rows are cut into fixed blocks of CPU_GEMM_ROWS, each one single-threaded sgemm call, spread
 * over OpenMP threads: the bits do not depend on the thread count. */
#include <stdlib.h>

#include "kernels/cpu/blas.h"
#include "kernels/cpu/cpu_common.h"

/* Upcasts w (n BF16) to a malloc'd F32 array; NULL on OOM. */
static float *upcast(const aqs_bf16 *w, size_t n) {
  float *f = malloc((n ? n : 1) * sizeof *f);
  if (!f) return NULL;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) f[i] = cpu_bf16_to_f32(w[i]);
  return f;
}

#define CPU_GEMM_ROWS 32

/* C (N, M) = alpha * A (N, K) @ op(B) + beta * C; op(B) = B^T with B (M, K) when trans_b, else
 * B (K, M). Deterministic for any thread count (see the file comment). */
void cpu_sgemm_rows(int trans_b, int N, int M, int K, float alpha, const float *A,
                    const float *B, float beta, float *C) {
  int nblocks = (N + CPU_GEMM_ROWS - 1) / CPU_GEMM_ROWS;
#pragma omp parallel for schedule(dynamic, 1) if ((size_t)N * (size_t)M * (size_t)K >= CPU_PAR_MIN * 512)
  for (int blk = 0; blk < nblocks; blk++) {
    int r0 = blk * CPU_GEMM_ROWS, rows = N - r0 < CPU_GEMM_ROWS ? N - r0 : CPU_GEMM_ROWS;
    aqs_blas_sgemm(trans_b, rows, M, K, alpha, A + (size_t)r0 * (size_t)K, K, B, trans_b ? K : M, beta,
                   C + (size_t)r0 * (size_t)M, M);
  }
}

/* Adds bias and rounds per precision: y (N, M). */
void cpu_bias_round(aqs_backend *be, float *y, const aqs_bf16 *bias, int N, int M) {
  if (!bias && be->precision != AQS_PREC_BF16) return;
#pragma omp parallel for schedule(static) if ((size_t)N * (size_t)M >= CPU_PAR_MIN)
  for (int r = 0; r < N; r++) {
    float *yr = y + (size_t)r * (size_t)M;
    for (int m = 0; m < M; m++) yr[m] = cpu_rnd(be, bias ? yr[m] + cpu_bf16_to_f32(bias[m]) : yr[m]);
  }
}

void cpu_linear(aqs_backend *be, float *y, const float *x, const aqs_bf16 *w,
                const aqs_bf16 *bias, int N, int K, int M) {
  if (N == 0 || M == 0) return;
  float *wf = upcast(w, (size_t)M * (size_t)K);
  if (!wf) abort(); /* the CPU backend treats scratch OOM as fatal (documented in docs) */
  cpu_sgemm_rows(1, N, M, K, 1.0f, x, wf, 0.0f, y);
  free(wf);
  cpu_bias_round(be, y, bias, N, M);
}

void cpu_linear_bwd_input(aqs_backend *be, float *dx, const float *dy, const aqs_bf16 *w, int N,
                          int K, int M, int accumulate) {
  if (N == 0 || K == 0) return;
  float *wf = upcast(w, (size_t)M * (size_t)K);
  float *prod = be->precision == AQS_PREC_BF16 && accumulate
                    ? malloc((size_t)N * (size_t)K * sizeof *prod)
                    : NULL;
  if (!wf || (be->precision == AQS_PREC_BF16 && accumulate && !prod)) abort();
  if (prod) {
    /* BF16: round the product, then the sum (autograd accumulating bf16 grads). */
    cpu_sgemm_rows(0, N, K, M, 1.0f, dy, wf, 0.0f, prod);
    size_t n = (size_t)N * (size_t)K;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) dx[i] = cpu_round_bf16(dx[i] + cpu_round_bf16(prod[i]));
    free(prod);
  } else {
    cpu_sgemm_rows(0, N, K, M, 1.0f, dy, wf, accumulate ? 1.0f : 0.0f, dx);
    if (be->precision == AQS_PREC_BF16) {
      size_t n = (size_t)N * (size_t)K;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
      for (size_t i = 0; i < n; i++) dx[i] = cpu_round_bf16(dx[i]);
    }
  }
  free(wf);
}
