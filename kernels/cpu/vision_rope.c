/* kernels/cpu/vision_rope.c: the vision tower's 2-D rotary embedding (Qwen2.5-VL
 * VisionRotaryEmbedding(head_dim/2) indexed by patch row and column), forward and adjoint, in
 * place on (N, H, D) (CPU reference). All math in F32, one rounding at the end in BF16 mode. */
#include <stdlib.h>

#include "kernels/cpu/cpu_common.h"

/* cos/sin (D/2 each) of token i: the first D/4 frequencies rotate by the row, the rest by the
 * column; inv_freq has D/4 entries over an embedding of dimension D/2. */
static void vision_rope_table(const int32_t *pos, int N, int i, int D, float theta, float *cs,
                              float *sn) {
  const int quarter = D / 4;
  for (int f = 0; f < 2 * quarter; f++) {
    int j = f < quarter ? f : f - quarter;
    float inv_freq = 1.0f / powf(theta, (float)(2 * j) / (float)(D / 2));
    int32_t p = pos[(size_t)(f < quarter ? 0 : 1) * (size_t)N + (size_t)i];
    float angle = (float)p * inv_freq;
    cs[f] = cosf(angle);
    sn[f] = sinf(angle);
  }
}

/* sign = +1: out[f] = a*cos - b*sin, out[f+half] = b*cos + a*sin (forward);
 * sign = -1: the transpose (backward). */
static void vision_rope(aqs_backend *be, float *x, const int32_t *pos, int N, int H, int D,
                        float theta, float sign) {
  const int half = D / 2;
#pragma omp parallel if ((size_t)N * (size_t)H * (size_t)D >= CPU_PAR_MIN)
  {
    float *cs = malloc((size_t)D * sizeof *cs), *sn = cs + half;
#pragma omp for schedule(static)
    for (int i = 0; i < N; i++) {
      vision_rope_table(pos, N, i, D, theta, cs, sn);
      for (int h = 0; h < H; h++) {
        float *v = x + ((size_t)i * (size_t)H + (size_t)h) * (size_t)D;
        for (int f = 0; f < half; f++) {
          float a = v[f], b = v[f + half], s = sign * sn[f];
          float lo = a * cs[f] + (-b) * s;
          float hi = b * cs[f] + a * s;
          v[f] = cpu_rnd(be, lo);
          v[f + half] = cpu_rnd(be, hi);
        }
      }
    }
    free(cs);
  }
}

void cpu_vision_rope_fwd(aqs_backend *be, float *x, const int32_t *pos, int N, int H, int D,
                         float theta) {
  vision_rope(be, x, pos, N, H, D, theta, 1.0f);
}

void cpu_vision_rope_bwd(aqs_backend *be, float *dx, const int32_t *pos, int N, int H, int D,
                         float theta) {
  vision_rope(be, dx, pos, N, H, D, theta, -1.0f);
}
