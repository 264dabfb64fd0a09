/* kernels/cpu/rope.c: multimodal rotary position embedding (Qwen2.5-VL M-RoPE), forward and
 * adjoint, in place on (N, H, D) (CPU reference). cos/sin follow transformers: inv_freq in F32,
 * angle = pos * inv_freq in F32, column c uses frequency c mod D/2 and the axis of its section. */
#include <stdlib.h>

#include "kernels/cpu/cpu_common.h"

/* cos/sin (D/2 each) for token i: axis of frequency j from mrope_section, BF16-rounded in BF16
 * mode (torch casts cos/sin to the activation dtype). */
static void rope_table(const aqs_backend *be, const int32_t *pos, int N, int i, int D,
                       const int sec[3], float theta, float *cs, float *sn) {
  int half = D / 2;
  for (int j = 0; j < half; j++) {
    int axis = j < sec[0] ? 0 : (j < sec[0] + sec[1] ? 1 : 2);
    float inv_freq = 1.0f / powf(theta, (float)(2 * j) / (float)D);
    float angle = (float)pos[(size_t)axis * (size_t)N + (size_t)i] * inv_freq;
    cs[j] = cpu_rnd(be, cosf(angle));
    sn[j] = cpu_rnd(be, sinf(angle));
  }
}

void cpu_rope_fwd(aqs_backend *be, float *x, const int32_t *pos, int N, int H, int D,
                  const int mrope_section[3], float theta) {
  int half = D / 2;
#pragma omp parallel if ((size_t)N * (size_t)H * (size_t)D >= CPU_PAR_MIN)
  {
    float *cs = malloc((size_t)D * sizeof *cs), *sn = cs + half;
#pragma omp for schedule(static)
    for (int i = 0; i < N; i++) {
      rope_table(be, pos, N, i, D, mrope_section, theta, cs, sn);
      for (int h = 0; h < H; h++) {
        float *v = x + ((size_t)i * (size_t)H + (size_t)h) * (size_t)D;
        for (int j = 0; j < half; j++) {
          float a = v[j], b = v[j + half];
          /* out[j] = a*cos - b*sin ; out[j+half] = b*cos + a*sin */
          float lo = cpu_rnd(be, cpu_rnd(be, a * cs[j]) + cpu_rnd(be, -b * sn[j]));
          float hi = cpu_rnd(be, cpu_rnd(be, b * cs[j]) + cpu_rnd(be, a * sn[j]));
          v[j] = lo;
          v[j + half] = hi;
        }
      }
    }
    free(cs);
  }
}

/* Adjoint: dx[j] = dy[j]*cos + dy[j+half]*sin ; dx[j+half] = dy[j+half]*cos - dy[j]*sin. */
void cpu_rope_bwd(aqs_backend *be, float *dx, const int32_t *pos, int N, int H, int D,
                  const int mrope_section[3], float theta) {
  int half = D / 2;
#pragma omp parallel if ((size_t)N * (size_t)H * (size_t)D >= CPU_PAR_MIN)
  {
    float *cs = malloc((size_t)D * sizeof *cs), *sn = cs + half;
#pragma omp for schedule(static)
    for (int i = 0; i < N; i++) {
      rope_table(be, pos, N, i, D, mrope_section, theta, cs, sn);
      for (int h = 0; h < H; h++) {
        float *v = dx + ((size_t)i * (size_t)H + (size_t)h) * (size_t)D;
        for (int j = 0; j < half; j++) {
          float a = v[j], b = v[j + half];
          float lo = cpu_rnd(be, cpu_rnd(be, a * cs[j]) + cpu_rnd(be, b * sn[j]));
          float hi = cpu_rnd(be, cpu_rnd(be, b * cs[j]) + cpu_rnd(be, -a * sn[j]));
          v[j] = lo;
          v[j + half] = hi;
        }
      }
    }
    free(cs);
  }
}
