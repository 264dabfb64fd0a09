/* kernels/cpu/gelu.c: the exact (erf) GELU of the vision patch merger (torch nn.GELU()) and its
 * backward (CPU reference). F32 math; BF16 mode rounds the output as torch does on bf16 tensors. */
#include "kernels/cpu/cpu_common.h"

#define GELU_INV_SQRT2 0.70710678118654752440f
#define GELU_INV_SQRT_2PI 0.39894228040143267794f

void cpu_gelu_fwd(aqs_backend *be, float *out, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    out[i] = cpu_rnd(be, v * 0.5f * (1.0f + erff(v * GELU_INV_SQRT2)));
  }
}

/* gelu'(x) = Phi(x) + x * phi(x), Phi the normal CDF, phi its density. */
void cpu_gelu_bwd(aqs_backend *be, float *dx, const float *dout, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    float cdf = 0.5f * (1.0f + erff(v * GELU_INV_SQRT2));
    float pdf = GELU_INV_SQRT_2PI * expf(-0.5f * v * v);
    dx[i] = cpu_rnd(be, dout[i] * (cdf + v * pdf));
  }
}
