/* kernels/cpu/rmsnorm.c: Qwen2RMSNorm forward and backward (CPU reference), F32 statistics.
 * Forward rounding (BF16 mode) mirrors weight * (x * rsqrt(var + eps)).to(bf16). */
#include "kernels/cpu/cpu_common.h"

void cpu_rmsnorm_fwd(aqs_backend *be, float *out, float *rstd, const float *x, const aqs_bf16 *w,
                     int N, int C, float eps) {
#pragma omp parallel for schedule(static) if ((size_t)N * (size_t)C >= CPU_PAR_MIN)
  for (int r = 0; r < N; r++) {
    const float *xr = x + (size_t)r * (size_t)C;
    float *o = out + (size_t)r * (size_t)C;
    float ss = 0.0f;
    for (int c = 0; c < C; c++) ss += xr[c] * xr[c];
    float rs = 1.0f / sqrtf(ss / (float)C + eps);
    for (int c = 0; c < C; c++) o[c] = cpu_rnd(be, cpu_bf16_to_f32(w[c]) * cpu_rnd(be, xr[c] * rs));
    if (rstd) rstd[r] = rs;
  }
}

/* dx = rstd * (w*dout - xhat * mean(w*dout*xhat)), xhat = x * rstd. */
void cpu_rmsnorm_bwd(aqs_backend *be, float *dx, const float *dout, const float *x,
                     const float *rstd, const aqs_bf16 *w, int N, int C, int accumulate) {
#pragma omp parallel for schedule(static) if ((size_t)N * (size_t)C >= CPU_PAR_MIN)
  for (int r = 0; r < N; r++) {
    const float *xr = x + (size_t)r * (size_t)C;
    const float *dr = dout + (size_t)r * (size_t)C;
    float *o = dx + (size_t)r * (size_t)C;
    float rs = rstd[r];
    float dot = 0.0f;
    for (int c = 0; c < C; c++) dot += cpu_bf16_to_f32(w[c]) * dr[c] * xr[c] * rs;
    float mean = dot / (float)C;
    for (int c = 0; c < C; c++) {
      float g = rs * (cpu_bf16_to_f32(w[c]) * dr[c] - xr[c] * rs * mean);
      o[c] = accumulate ? cpu_rnd(be, o[c] + cpu_rnd(be, g)) : cpu_rnd(be, g);
    }
  }
}
