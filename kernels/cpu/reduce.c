/* kernels/cpu/reduce.c: amax (calibration) and the AutoQuantize gradient score reduction
 * (CPU reference). Sums use fixed CPU_SUM_BLOCK blocks added in block order: the bits do not
 * depend on the number of threads. */
#include <stdlib.h>

#include "kernels/cpu/cpu_common.h"

void cpu_amax_f32(aqs_backend *be, const float *x, size_t n, float *amax) {
  (void)be;
  float m = 0.0f;
  int has_nan = 0;
#pragma omp parallel for schedule(static) reduction(max : m) reduction(| : has_nan) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) {
    if (isnan(x[i])) has_nan = 1;
    else if (fabsf(x[i]) > m) m = fabsf(x[i]);
  }
  *amax = has_nan ? NAN : m;
}

void cpu_amax_bf16(aqs_backend *be, const aqs_bf16 *x, size_t n, float *amax) {
  (void)be;
  float m = 0.0f;
  int has_nan = 0;
#pragma omp parallel for schedule(static) reduction(max : m) reduction(| : has_nan) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) {
    float f = cpu_bf16_to_f32(x[i]);
    if (isnan(f)) has_nan = 1;
    else if (fabsf(f) > m) m = fabsf(f);
  }
  *amax = has_nan ? NAN : m;
}

void cpu_grad_score(aqs_backend *be, const float *g, const float *y, const float *y_q, size_t n,
                    double *sum) {
  (void)be;
  size_t nblocks = (n + CPU_SUM_BLOCK - 1) / CPU_SUM_BLOCK;
  double *part = malloc((nblocks ? nblocks : 1) * sizeof *part);
  if (!part) abort();
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t b = 0; b < nblocks; b++) {
    size_t lo = b * CPU_SUM_BLOCK, hi = lo + CPU_SUM_BLOCK < n ? lo + CPU_SUM_BLOCK : n;
    double acc = 0.0;
    for (size_t i = lo; i < hi; i++) {
      float t = g[i] * (y_q[i] - y[i]);
      if (t > 1e10f) t = 1e10f;
      else if (t < -1e10f) t = -1e10f;
      acc += (double)t * (double)t;
    }
    part[b] = acc;
  }
  double s = 0.0;
  for (size_t b = 0; b < nblocks; b++) s += part[b];
  free(part);
  *sum = s;
}
