/* kernels/cpu/swiglu.c: the SwiGLU MLP activation silu(gate) * up and its backward (CPU
 * reference). Rounding points mirror torch's act_fn(gate_proj(x)) * up_proj(x) in bf16. */
#include "kernels/cpu/cpu_common.h"

static inline float silu(float g) { return g / (1.0f + expf(-g)); }

void cpu_swiglu_fwd(aqs_backend *be, float *out, const float *gate, const float *up, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) out[i] = cpu_rnd(be, cpu_rnd(be, silu(gate[i])) * up[i]);
}

/* d silu(g)/dg = s * (1 + g * (1 - s)), s = sigmoid(g). */
void cpu_swiglu_bwd(aqs_backend *be, float *dgate, float *dup, const float *dout,
                    const float *gate, const float *up, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
  for (size_t i = 0; i < n; i++) {
    float g = gate[i], u = up[i], d = dout[i];
    float s = 1.0f / (1.0f + expf(-g));
    float act = cpu_rnd(be, g * s);
    float dact = cpu_rnd(be, d * u);
    float dg = dact * (s * (1.0f + g * (1.0f - s)));
    dup[i] = cpu_rnd(be, d * act);
    dgate[i] = cpu_rnd(be, dg);
  }
}
