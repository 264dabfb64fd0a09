/* kernels/cuda/rmsnorm.cu: Qwen2RMSNorm forward and backward over (N, C) rows, F32 statistics,
 * one block per row (fixed reduction order: same bits every run); the forward also writes BF16
 * storage with a fused amax (rmsnorm_fwd_b). CPU twins: kernels/cpu/rmsnorm.c, bf16_store.c. */
#include "kernels/cuda/cuda_common.cuh"

#define RMS_THREADS 256

/* Output stores: F32 buffers, or BF16 storage (the value is a BF16 value already: exact). */
__device__ __forceinline__ void store_out(float *o, int c, float v) { o[c] = v; }
__device__ __forceinline__ void store_out(uint16_t *o, int c, float v) { o[c] = f32_to_bf16_bits(v); }

/* o[c] = w[c] * rnd(xc * rs), rounded in BF16 mode; returns its abs_bits for the amax. */
template <typename OutT>
__device__ __forceinline__ int rmsnorm_store(OutT *o, int c, float xc, float rs, const uint16_t *w, int rnd) {
  float h = xc * rs;
  if (rnd) h = round_bf16(h);
  float v = bf16_bits_to_f32(w[c]) * h;
  if (rnd) v = round_bf16(v);
  store_out(o, c, v);
  return abs_bits(v);
}

/* Rows of up to RMS_CACHE * RMS_THREADS columns stay in registers between the two passes, their loads
 * issued together (unrolled); the sum of squares keeps the order of the plain loop (thread t adds
 * columns t, t + 256, ... in turn), so the bits do not depend on the path. */
#define RMS_CACHE 16

/* out = w * rnd(x * rstd); rstd = 1/sqrt(mean(x^2) + eps). OutT uint16_t: BF16 storage (rnd set),
 * the same bits as the F32 output in BF16 mode; amax (may be NULL) folds max |out|. */
template <typename OutT>
__global__ void rmsnorm_fwd_kernel(OutT *out, float *rstd, const float *x, const uint16_t *w, int C, float eps,
                                   int rnd, float *amax) {
  __shared__ float scratch[32];
  const size_t row = blockIdx.x;
  const float *xr = x + row * (size_t)C;
  OutT *o = out + row * (size_t)C;
  const int cached = C <= RMS_CACHE * (int)blockDim.x;
  float xv[RMS_CACHE];
  float ss = 0.0f;
  if (cached) {
#pragma unroll
    for (int k = 0; k < RMS_CACHE; k++) {
      int c = threadIdx.x + k * blockDim.x;
      xv[k] = c < C ? xr[c] : 0.0f;
    }
#pragma unroll
    for (int k = 0; k < RMS_CACHE; k++)
      if (threadIdx.x + k * blockDim.x < C) ss += xv[k] * xv[k];
  } else {
    for (int c = threadIdx.x; c < C; c += blockDim.x) ss += xr[c] * xr[c];
  }
  ss = block_sum(ss, scratch);
  float rs = div_exact(1.0f, __fsqrt_rn(div_exact(ss, (float)C) + eps));
  int m = 0;
  if (cached) {
#pragma unroll
    for (int k = 0; k < RMS_CACHE; k++) {
      int c = threadIdx.x + k * blockDim.x;
      if (c < C) m = max(m, rmsnorm_store(o, c, xv[k], rs, w, rnd));
    }
  } else {
    for (int c = threadIdx.x; c < C; c += blockDim.x) m = max(m, rmsnorm_store(o, c, xr[c], rs, w, rnd));
  }
  if (rstd && threadIdx.x == 0) rstd[row] = rs;
  if (amax) block_fold_amax(m, amax);
}

/* dx (+)= rstd * (w*dout - xhat * mean(w*dout*xhat)), xhat = x * rstd. */
__global__ void rmsnorm_bwd_kernel(float *dx, const float *dout, const float *x, const float *rstd,
                                   const uint16_t *w, int C, int accumulate, int rnd) {
  __shared__ float scratch[32];
  const size_t row = blockIdx.x;
  const float *xr = x + row * (size_t)C, *dr = dout + row * (size_t)C;
  float *o = dx + row * (size_t)C;
  const float rs = rstd[row];
  float dot = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dot += bf16_bits_to_f32(w[c]) * dr[c] * xr[c] * rs;
  dot = block_sum(dot, scratch);
  const float mean = div_exact(dot, (float)C);
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float g = rs * (bf16_bits_to_f32(w[c]) * dr[c] - xr[c] * rs * mean);
    if (rnd) g = round_bf16(g);
    if (accumulate) {
      g = o[c] + g;
      if (rnd) g = round_bf16(g);
    }
    o[c] = g;
  }
}

/* ---- launchers ---- */
extern "C" aqs_status aqs_cuda_rmsnorm_fwd(float *d_out, float *d_rstd, const float *d_x, const uint16_t *d_w,
                                           int N, int C, float eps, int rnd, aqs_err *e) {
  if (N <= 0) return AQS_OK;
  rmsnorm_fwd_kernel<float>
      <<<N, RMS_THREADS, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_out, d_rstd, d_x, d_w, C, eps, rnd, NULL);
  AQS_CUDA_LAUNCH_CHECK(e, "rmsnorm_fwd_kernel");
  return AQS_OK;
}

extern "C" aqs_status aqs_cuda_rmsnorm_fwd_b(uint16_t *d_out, float *d_rstd, const float *d_x, const uint16_t *d_w,
                                             int N, int C, float eps, float *d_amax, aqs_err *e) {
  if (N <= 0) return AQS_OK;
  rmsnorm_fwd_kernel<uint16_t>
      <<<N, RMS_THREADS, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_out, d_rstd, d_x, d_w, C, eps, 1, d_amax);
  AQS_CUDA_LAUNCH_CHECK(e, "rmsnorm_fwd_kernel<bf16>");
  return AQS_OK;
}

extern "C" aqs_status aqs_cuda_rmsnorm_bwd(float *d_dx, const float *d_dout, const float *d_x, const float *d_rstd,
                                           const uint16_t *d_w, int N, int C, int accumulate, int rnd, aqs_err *e) {
  if (N <= 0) return AQS_OK;
  rmsnorm_bwd_kernel<<<N, RMS_THREADS, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_dx, d_dout, d_x, d_rstd, d_w, C,
                                                                              accumulate, rnd);
  AQS_CUDA_LAUNCH_CHECK(e, "rmsnorm_bwd_kernel");
  return AQS_OK;
}
