/* kernels/cuda/vision_rope.cu: the vision tower's 2-D rotary embedding, forward and adjoint, in
 * place on (N, H, D), one thread per (token, head, column pair). F32 math (cos/sin in double
 * rounded to F32), one BF16 rounding at the end in BF16 mode. CPU twin: kernels/cpu/vision_rope.c. */
#include "kernels/cuda/cuda_common.cuh"

/* pos (2, N): row, column. sign = +1 forward, -1 adjoint. */
__global__ void vision_rope_kernel(float *x, const int32_t *pos, int N, int H, int D, float theta, float sign,
                                   int rnd) {
  const int half = D / 2, quarter = D / 4;
  const size_t total = (size_t)N * (size_t)H * (size_t)half;
  for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
    int f = (int)(t % (size_t)half);
    size_t ih = t / (size_t)half;
    int i = (int)(ih / (size_t)H);
    int j = f < quarter ? f : f - quarter;
    /* the CPU twin's powf(theta, 2j / (D/2)), in double rounded to F32 */
    float inv_freq = div_exact(1.0f, (float)pow((double)theta, (double)div_exact((float)(2 * j), (float)half)));
    float angle = mul_exact((float)pos[(size_t)(f < quarter ? 0 : 1) * (size_t)N + (size_t)i], inv_freq);
    float cs = (float)cos((double)angle), sn = mul_exact(sign, (float)sin((double)angle));
    float *v = x + ih * (size_t)D;
    float a = v[f], b = v[f + half];
    float lo = mul_exact(a, cs) + mul_exact(-b, sn);
    float hi = mul_exact(b, cs) + mul_exact(a, sn);
    v[f] = rnd ? round_bf16(lo) : lo;
    v[f + half] = rnd ? round_bf16(hi) : hi;
  }
}

extern "C" aqs_status aqs_cuda_vision_rope(float *d_x, const int32_t *d_pos, int N, int H, int D, float theta,
                                           int rnd, int backward, aqs_err *e) {
  size_t total = (size_t)N * (size_t)H * (size_t)(D / 2);
  if (total == 0) return AQS_OK;
  vision_rope_kernel<<<grid_for(total, 256), 256, 0, (cudaStream_t)aqs_cuda_stream()>>>(
      d_x, d_pos, N, H, D, theta, backward ? -1.0f : 1.0f, rnd);
  AQS_CUDA_LAUNCH_CHECK(e, "vision_rope_kernel");
  return AQS_OK;
}
