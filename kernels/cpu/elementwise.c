/* kernels/cpu/elementwise.c: casts, residual add and embedding gather (CPU reference). */
#include "kernels/cpu/cpu_common.h"

void cpu_cast_bf16_to_f32(aqs_backend *be, float *dst, const aqs_bf16 *src, size_t n) {
  (void)be;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) dst[i] = cpu_bf16_to_f32(src[i]);
}

void cpu_cast_f32_to_bf16(aqs_backend *be, aqs_bf16 *dst, const float *src, size_t n) {
  (void)be;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) dst[i] = cpu_f32_to_bf16(src[i]);
}

void cpu_round_bf16_op(aqs_backend *be, float *x, size_t n) {
  (void)be;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) x[i] = cpu_round_bf16(x[i]);
}

void cpu_add(aqs_backend *be, float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) out[i] = cpu_rnd(be, a[i] + b[i]);
}

/* out (N, C) = table[ids] (table (V, C)). */
void cpu_embedding(aqs_backend *be, float *out, const aqs_bf16 *table, const int32_t *ids, int N,
                   int C) {
  (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * (size_t)C >= CPU_PAR_MIN)
  for (int i = 0; i < N; i++) {
    const aqs_bf16 *row = table + (size_t)ids[i] * (size_t)C;
    float *o = out + (size_t)i * (size_t)C;
    for (int c = 0; c < C; c++) o[c] = cpu_bf16_to_f32(row[c]);
  }
}
