/* kernels/cuda/gelu.cu: the exact (erf) GELU of the vision patch merger and its backward,
 * elementwise. erf and exp are taken in double and rounded to F32 (within an ulp of glibc's
 * erff/expf; immune to --use_fast_math). CPU twin: kernels/cpu/gelu.c. */
#include "kernels/cuda/cuda_common.cuh"

#define GELU_INV_SQRT2 0.70710678118654752440f
#define GELU_INV_SQRT_2PI 0.39894228040143267794f

__device__ __forceinline__ float gelu_cdf(float v) {
  return mul_exact(0.5f, 1.0f + (float)erf((double)mul_exact(v, GELU_INV_SQRT2)));
}

__global__ void gelu_fwd_kernel(float *out, const float *x, size_t n, int rnd) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    float v = x[i];
    float o = mul_exact(mul_exact(v, 0.5f), 1.0f + (float)erf((double)mul_exact(v, GELU_INV_SQRT2)));
    out[i] = rnd ? round_bf16(o) : o;
  }
}

/* dx = dout * (Phi(x) + x * phi(x)) */
__global__ void gelu_bwd_kernel(float *dx, const float *dout, const float *x, size_t n, int rnd) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    float v = x[i];
    float pdf = mul_exact(GELU_INV_SQRT_2PI, (float)exp((double)mul_exact(mul_exact(-0.5f, v), v)));
    float d = mul_exact(dout[i], gelu_cdf(v) + mul_exact(v, pdf));
    dx[i] = rnd ? round_bf16(d) : d;
  }
}

extern "C" aqs_status aqs_cuda_gelu(float *d_out, const float *d_dout, const float *d_x, size_t n, int rnd,
                                    int backward, aqs_err *e) {
  if (n == 0) return AQS_OK;
  if (backward)
    gelu_bwd_kernel<<<grid_for(n, 256), 256, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_out, d_dout, d_x, n, rnd);
  else
    gelu_fwd_kernel<<<grid_for(n, 256), 256, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_out, d_x, n, rnd);
  AQS_CUDA_LAUNCH_CHECK(e, backward ? "gelu_bwd_kernel" : "gelu_fwd_kernel");
  return AQS_OK;
}
