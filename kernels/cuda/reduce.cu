/* kernels/cuda/reduce.cu: amax (calibration; NaN and Inf propagate so the caller can name the
 * layer) and the AutoQuantize gradient score sum of clamp(g*(y_q - y), +-1e10)^2 (the clamp in
 * F32, the square and the sum in double). One launch: a grid whose shape depends only on n writes
 * per-block partials and the last block to finish folds them in block order (same bits every run)
 * into mapped host memory. The BF16 amax folded into device memory (amax_bf16_async) needs no
 * partials: an atomic max per block on the bits. CPU twins: kernels/cpu/reduce.c, bf16_store.c. */
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"

#define RED_THREADS 256
#define RED_MAX_BLOCKS 1056 /* 8 blocks of 256 threads per SM on a 132-SM H100 */

/* max of |values| where any NaN wins: the operands are non-negative (or NaN with the sign cleared),
 * which order like their bits, NaN above +Inf. Integer compares and a cleared sign bit instead of
 * fmaxf/fabsf, which --use_fast_math compiles to .ftz forms that flush a subnormal amax to 0 (the
 * CPU twin and the fused BF16 amax keep it). */
__device__ __forceinline__ float amax_combine(float a, float b) {
  return __float_as_uint(a) >= __float_as_uint(b) ? a : b;
}
__device__ __forceinline__ float abs_nonneg(float v) { return __uint_as_float(__float_as_uint(v) & 0x7fffffffu); }
__device__ __forceinline__ float warp_amax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = amax_combine(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ float block_amax(float v) {
  __shared__ float scratch[32];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_amax(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < nwarps ? scratch[lane] : 0.0f;
  return warp_amax(t);
}
__device__ float block_amax2(float v) {
  __shared__ float scratch2[32];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_amax(v);
  if (lane == 0) scratch2[warp] = v;
  __syncthreads();
  float t = lane < nwarps ? scratch2[lane] : 0.0f;
  return warp_amax(t);
}
__device__ double block_sum_dbl2(double v) {
  __shared__ double scratch2[32];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum_d(v);
  if (lane == 0) scratch2[warp] = v;
  __syncthreads();
  double t = lane < nwarps ? scratch2[lane] : 0.0;
  return warp_sum_d(t);
}
__device__ double block_sum_dbl(double v) {
  __shared__ double scratch[32];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum_d(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  double t = lane < nwarps ? scratch[lane] : 0.0;
  return warp_sum_d(t);
}

template <typename T>
__device__ __forceinline__ float load_abs(const T *x, size_t i);
template <>
__device__ __forceinline__ float load_abs<float>(const float *x, size_t i) { return abs_nonneg(x[i]); }
template <>
__device__ __forceinline__ float load_abs<uint16_t>(const uint16_t *x, size_t i) {
  return abs_nonneg(bf16_bits_to_f32(x[i]));
}

template <typename T>
__global__ void amax_partial_kernel(float *partial, const T *x, size_t n, unsigned *counter, float *h_result) {
  float m = 0.0f;
  size_t i0 = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
  if (sizeof(T) == 4 && ((uintptr_t)x & 15u) == 0) { /* F32: 16-byte loads for the bulk */
    const float4 *x4 = (const float4 *)x;
    for (size_t i = i0; i < n / 4; i += stride) {
      float4 v = x4[i];
      m = amax_combine(m, amax_combine(amax_combine(abs_nonneg(v.x), abs_nonneg(v.y)), amax_combine(abs_nonneg(v.z), abs_nonneg(v.w))));
    }
    for (size_t i = n / 4 * 4 + i0; i < n; i += stride) m = amax_combine(m, load_abs<T>(x, i));
  } else {
    for (size_t i = i0; i < n; i += stride) m = amax_combine(m, load_abs<T>(x, i));
  }
  m = block_amax(m);
  if (threadIdx.x == 0) partial[blockIdx.x] = m;
  /* the last block to finish folds the partials in block order (deterministic) and writes the
   * result straight into mapped host memory: one launch and no copy per reduction */
  __shared__ bool is_last;
  if (threadIdx.x == 0) {
    __threadfence();
    is_last = atomicAdd(counter, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  float f = 0.0f;
  for (unsigned i = threadIdx.x; i < gridDim.x; i += blockDim.x) f = amax_combine(f, ((volatile float *)partial)[i]);
  f = block_amax2(f);
  if (threadIdx.x == 0) {
    *(volatile float *)h_result = f;
    *counter = 0;
  }
}
/* BF16 amax folded into *amax (amax_bf16_async): 8 elements per 16-byte load for the bulk when vec,
 * then the tail; an atomic per block on the bits (cuda_common.cuh block_fold_amax). */
__global__ void amax_bf16_fold_kernel(const uint16_t *x, size_t n, int vec, float *amax) {
  int m = 0;
  size_t i0 = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x, done = 0;
  if (vec) {
    const uint4 *x8 = (const uint4 *)x;
    for (size_t i = i0; i < n / 8; i += stride) {
      uint4 v = x8[i];
      uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int k = 0; k < 4; k++) m = max(m, max(abs_bits(bf16_lo(w[k])), abs_bits(bf16_hi(w[k]))));
    }
    done = n / 8 * 8;
  }
  for (size_t i = done + i0; i < n; i += stride) m = max(m, abs_bits(bf16_bits_to_f32(x[i])));
  block_fold_amax(m, amax);
}

__device__ __forceinline__ double score_term(float g, float y, float yq) {
  float t = g * (yq - y);
  if (t > 1e10f) t = 1e10f;
  else if (t < -1e10f) t = -1e10f;
  return (double)t * (double)t;
}

__global__ void grad_score_partial_kernel(double *partial, const float *g, const float *y, const float *y_q, size_t n,
                                          int vec, unsigned *counter, double *h_result) {
  double acc = 0.0;
  size_t i0 = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
  size_t done = 0;
  if (vec) { /* 16-byte loads for the bulk; the per-thread order is fixed by (n, grid): deterministic */
    const float4 *g4 = (const float4 *)g, *y4 = (const float4 *)y, *q4 = (const float4 *)y_q;
    for (size_t i = i0; i < n / 4; i += stride) {
      float4 a = g4[i], b = y4[i], c = q4[i];
      acc += score_term(a.x, b.x, c.x);
      acc += score_term(a.y, b.y, c.y);
      acc += score_term(a.z, b.z, c.z);
      acc += score_term(a.w, b.w, c.w);
    }
    done = n / 4 * 4;
  }
  for (size_t i = done + i0; i < n; i += stride) acc += score_term(g[i], y[i], y_q[i]);
  acc = block_sum_dbl(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
  __shared__ bool is_last;
  if (threadIdx.x == 0) {
    __threadfence();
    is_last = atomicAdd(counter, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  double f = 0.0;
  for (unsigned i = threadIdx.x; i < gridDim.x; i += blockDim.x) f += ((volatile double *)partial)[i];
  f = block_sum_dbl2(f);
  if (threadIdx.x == 0) {
    *(volatile double *)h_result = f;
    *counter = 0;
  }
}
/* Mapped pinned host words for the results: the last block writes there directly, so a
 * reduction is one launch plus the stream sync its host result needs anyway. */
static double *g_mapped_host, *g_mapped_dev;
static aqs_status mapped_result(aqs_err *e) {
  if (g_mapped_dev) return AQS_OK;
  void *h = NULL, *d = NULL;
  if (cudaHostAlloc(&h, 64, cudaHostAllocMapped) != cudaSuccess || cudaHostGetDevicePointer(&d, h, 0) != cudaSuccess) {
    cudaGetLastError();
    return aqs_errf(e, AQS_ERR_NOMEM, "cuda: allocating 64 bytes of mapped host memory for reduction results");
  }
  g_mapped_host = (double *)h;
  g_mapped_dev = (double *)d;
  return AQS_OK;
}
static aqs_status wait_result(aqs_err *e) {
  cudaError_t err = cudaStreamSynchronize((cudaStream_t)aqs_cuda_stream());
  if (err != cudaSuccess) return aqs_errf(e, AQS_ERR_INTERNAL, "cuda: reduction: %s", cudaGetErrorString(err));
  return AQS_OK;
}

static unsigned red_blocks(size_t n) {
  size_t b = (n + RED_THREADS - 1) / RED_THREADS;
  if (b > RED_MAX_BLOCKS) b = RED_MAX_BLOCKS;
  return b == 0 ? 1u : (unsigned)b;
}

/* ---- launchers ---- */
/* Scratch size for the launchers below, in bytes: partials, a spare slot, the block counter. */
extern "C" size_t aqs_cuda_reduce_scratch_bytes(void) { return (RED_MAX_BLOCKS + 2) * sizeof(double); }

/* d_scratch: aqs_cuda_reduce_scratch_bytes() bytes, zeroed once before first use (the kernels
 * leave their counter at zero). bf16 != 0: x holds BF16 bits. */
extern "C" aqs_status aqs_cuda_amax(const void *d_x, int bf16, size_t n, void *d_scratch, float *h_amax,
                                    aqs_err *e) {
  aqs_status st = mapped_result(e);
  if (st) return st;
  cudaStream_t s = (cudaStream_t)aqs_cuda_stream();
  float *partial = (float *)d_scratch;
  unsigned *counter = (unsigned *)((double *)d_scratch + RED_MAX_BLOCKS + 1);
  float *h_result = (float *)g_mapped_dev;
  unsigned blocks = red_blocks(n);
  if (bf16)
    amax_partial_kernel<uint16_t><<<blocks, RED_THREADS, 0, s>>>(partial, (const uint16_t *)d_x, n, counter, h_result);
  else
    amax_partial_kernel<float><<<blocks, RED_THREADS, 0, s>>>(partial, (const float *)d_x, n, counter, h_result);
  AQS_CUDA_LAUNCH_CHECK(e, "amax_partial_kernel");
  if ((st = wait_result(e))) return st;
  *h_amax = *(volatile float *)g_mapped_host;
  return AQS_OK;
}

/* The same reduction written to device memory d_amax, without waiting (stream-ordered). */
extern "C" aqs_status aqs_cuda_amax_async(const float *d_x, size_t n, void *d_scratch, float *d_amax, aqs_err *e) {
  cudaStream_t s = (cudaStream_t)aqs_cuda_stream();
  float *partial = (float *)d_scratch;
  unsigned *counter = (unsigned *)((double *)d_scratch + RED_MAX_BLOCKS + 1);
  amax_partial_kernel<float><<<red_blocks(n), RED_THREADS, 0, s>>>(partial, d_x, n, counter, d_amax);
  AQS_CUDA_LAUNCH_CHECK(e, "amax_partial_kernel");
  return AQS_OK;
}

/* max(*d_amax, max |x|) for BF16 x, stream-ordered, no scratch, no synchronization. */
extern "C" aqs_status aqs_cuda_amax_bf16_fold(const uint16_t *d_x, size_t n, float *d_amax, aqs_err *e) {
  if (n == 0 || !d_amax) return AQS_OK;
  int vec = ((uintptr_t)d_x & 15u) == 0;
  amax_bf16_fold_kernel<<<fold_grid(vec ? n / 8 + 1 : n, RED_THREADS), RED_THREADS, 0,
                          (cudaStream_t)aqs_cuda_stream()>>>(d_x, n, vec, d_amax);
  AQS_CUDA_LAUNCH_CHECK(e, "amax_bf16_fold_kernel");
  return AQS_OK;
}

/* The score sum written to device memory d_sum, without waiting (stream-ordered). */
extern "C" aqs_status aqs_cuda_grad_score_async(const float *d_g, const float *d_y, const float *d_yq, size_t n,
                                                void *d_scratch, double *d_sum, aqs_err *e) {
  cudaStream_t s = (cudaStream_t)aqs_cuda_stream();
  double *partial = (double *)d_scratch;
  unsigned *counter = (unsigned *)((double *)d_scratch + RED_MAX_BLOCKS + 1);
  int vec = ((((uintptr_t)d_g) | ((uintptr_t)d_y) | ((uintptr_t)d_yq)) & 15u) == 0;
  grad_score_partial_kernel<<<red_blocks(n), RED_THREADS, 0, s>>>(partial, d_g, d_y, d_yq, n, vec, counter, d_sum);
  AQS_CUDA_LAUNCH_CHECK(e, "grad_score_partial_kernel");
  return AQS_OK;
}

extern "C" aqs_status aqs_cuda_grad_score(const float *d_g, const float *d_y, const float *d_yq, size_t n,
                                          void *d_scratch, double *h_sum, aqs_err *e) {
  aqs_status st = mapped_result(e);
  if (st) return st;
  cudaStream_t s = (cudaStream_t)aqs_cuda_stream();
  double *partial = (double *)d_scratch;
  unsigned *counter = (unsigned *)((double *)d_scratch + RED_MAX_BLOCKS + 1);
  unsigned blocks = red_blocks(n);
  int vec = ((((uintptr_t)d_g) | ((uintptr_t)d_y) | ((uintptr_t)d_yq)) & 15u) == 0;
  grad_score_partial_kernel<<<blocks, RED_THREADS, 0, s>>>(partial, d_g, d_y, d_yq, n, vec, counter, g_mapped_dev);
  AQS_CUDA_LAUNCH_CHECK(e, "grad_score_partial_kernel");
  if ((st = wait_result(e))) return st;
  *h_sum = *(volatile double *)g_mapped_host;
  return AQS_OK;
}
