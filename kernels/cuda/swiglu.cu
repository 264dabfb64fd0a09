/* kernels/cuda/swiglu.cu: the SwiGLU MLP activation silu(gate) * up and its backward, elementwise.
 * exp is taken in double and rounded to F32 (close to glibc's expf; immune to --use_fast_math).
 * CPU twin: kernels/cpu/swiglu.c (same formulas and rounding points). */
#include "kernels/cuda/cuda_common.cuh"

__device__ __forceinline__ float exp_f32(float x) { return (float)exp((double)x); }

__device__ __forceinline__ float swiglu_one(float g, float u, int rnd) {
  float act = div_exact(g, 1.0f + exp_f32(-g));
  if (rnd) act = round_bf16(act);
  float o = mul_exact(act, u);
  return rnd ? round_bf16(o) : o;
}

__global__ void swiglu_fwd_kernel(float *out, const float *gate, const float *up, size_t n, int rnd) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] = swiglu_one(gate[i], up[i], rnd);
}

/* 4 elements per thread (16-byte loads/stores); n4 = n / 4. */
__global__ void swiglu_fwd_x4_kernel(float4 *out, const float4 *gate, const float4 *up, size_t n4, int rnd) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
    float4 g = gate[i], u = up[i];
    out[i] = make_float4(swiglu_one(g.x, u.x, rnd), swiglu_one(g.y, u.y, rnd), swiglu_one(g.z, u.z, rnd),
                         swiglu_one(g.w, u.w, rnd));
  }
}

/* dgate = dout*up*silu'(gate), dup = dout*silu(gate); silu'(g) = s*(1 + g*(1-s)), s = sigmoid(g). */
__global__ void swiglu_bwd_kernel(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                  size_t n, int rnd) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    float g = gate[i], u = up[i], d = dout[i];
    float s = div_exact(1.0f, 1.0f + exp_f32(-g));
    float act = mul_exact(g, s);
    float dact = mul_exact(d, u);
    if (rnd) {
      act = round_bf16(act);
      dact = round_bf16(dact);
    }
    float dsilu = mul_exact(s, 1.0f + mul_exact(g, 1.0f - s));
    float dg = mul_exact(dact, dsilu);
    float du = mul_exact(d, act);
    dup[i] = rnd ? round_bf16(du) : du;
    dgate[i] = rnd ? round_bf16(dg) : dg;
  }
}

/* ---- launchers ---- */
extern "C" aqs_status aqs_cuda_swiglu_fwd(float *d_out, const float *d_gate, const float *d_up, size_t n, int rnd,
                                          aqs_err *e) {
  if (n == 0) return AQS_OK;
  if (n % 4 == 0 && ((((uintptr_t)d_out) | ((uintptr_t)d_gate) | ((uintptr_t)d_up)) & 15u) == 0) {
    swiglu_fwd_x4_kernel<<<grid_for(n / 4, 256), 256, 0, (cudaStream_t)aqs_cuda_stream()>>>(
        (float4 *)d_out, (const float4 *)d_gate, (const float4 *)d_up, n / 4, rnd);
    AQS_CUDA_LAUNCH_CHECK(e, "swiglu_fwd_x4_kernel");
    return AQS_OK;
  }
  swiglu_fwd_kernel<<<grid_for(n, 256), 256, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_out, d_gate, d_up, n, rnd);
  AQS_CUDA_LAUNCH_CHECK(e, "swiglu_fwd_kernel");
  return AQS_OK;
}

extern "C" aqs_status aqs_cuda_swiglu_bwd(float *d_dgate, float *d_dup, const float *d_dout, const float *d_gate,
                                          const float *d_up, size_t n, int rnd, aqs_err *e) {
  if (n == 0) return AQS_OK;
  swiglu_bwd_kernel<<<grid_for(n, 256), 256, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_dgate, d_dup, d_dout, d_gate,
                                                                                    d_up, n, rnd);
  AQS_CUDA_LAUNCH_CHECK(e, "swiglu_bwd_kernel");
  return AQS_OK;
}
