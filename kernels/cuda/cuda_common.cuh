/* kernels/cuda/cuda_common.cuh: device helpers shared by the CUDA kernel files (BF16 <-> F32 with
 * the same rounding as engine/model/dtype.h, exact IEEE division immune to --use_fast_math,
 * deterministic block reductions) and the status macro the launchers use. CUDA-only, private. */
#ifndef AQS_KERNELS_CUDA_COMMON_CUH
#define AQS_KERNELS_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/launchers.h"

/* BF16 bits -> F32 (exact). */
__device__ __forceinline__ float bf16_bits_to_f32(uint16_t b) {
  return __uint_as_float(((uint32_t)b) << 16);
}

/* F32 -> BF16 bits, round to nearest even; NaN -> quiet NaN with its sign (as aqs_f32_to_bf16). */
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

/* Rounds an F32 through BF16 and back (the rounding point torch's bf16 tensors impose). */
__device__ __forceinline__ float round_bf16(float f) { return bf16_bits_to_f32(f32_to_bf16_bits(f)); }

/* IEEE round-to-nearest division without flush-to-zero: identical bits to the CPU's x / y whatever
 * nvcc flags (--use_fast_math turns '/' into an approximation and enables FTZ). */
__device__ __forceinline__ float div_exact(float x, float y) {
  float r;
  asm("div.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(x), "f"(y));
  return r;
}
/* IEEE round-to-nearest product without FTZ (never fused into an FMA). */
__device__ __forceinline__ float mul_exact(float x, float y) {
  float r;
  asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(x), "f"(y));
  return r;
}
/* IEEE round-to-nearest sum without FTZ (--use_fast_math flushes subnormal sums; the CPU does not). */
__device__ __forceinline__ float add_exact(float x, float y) {
  float r;
  asm("add.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(x), "f"(y));
  return r;
}

/* Two BF16 values packed in a 32-bit word (the lower address in the low half). */
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  return (uint32_t)f32_to_bf16_bits(lo) | ((uint32_t)f32_to_bf16_bits(hi) << 16);
}

/* ---- fused amax (kernels/ops.h BF16 activation storage) ----
 * |f| as a non-negative int: non-negative floats order like their bits and every NaN's bits exceed
 * +Inf's, so an integer max is the amax with NaN winning, and atomicMax on the bits of a float
 * holding a value >= +0 folds it in. The result does not depend on the order: deterministic. */
__device__ __forceinline__ int abs_bits(float f) { return (int)(__float_as_uint(f) & 0x7fffffffu); }
__device__ __forceinline__ int warp_max_int(int v) {
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
/* *amax = max(*amax, the block's largest bits): a block max, then one atomic. Every thread of the
 * block must call it (it synchronizes); amax is device memory (one float), not NULL. */
__device__ __forceinline__ void block_fold_amax(int bits, float *amax) {
  __shared__ int amax_scratch[32];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  bits = warp_max_int(bits);
  __syncthreads();
  if (lane == 0) amax_scratch[warp] = bits;
  __syncthreads();
  if (warp == 0) {
    int t = warp_max_int(lane < nwarps ? amax_scratch[lane] : 0);
    if (lane == 0 && t > 0) atomicMax((int *)amax, t);
  }
}
/* Grid for a grid-stride loop over n items of an amax-fusing kernel: capped so that the atomics
 * (one per block) stay few. */
static inline unsigned fold_grid(size_t n, unsigned threads) {
  size_t g = (n + threads - 1) / threads;
  if (g > 2048) g = 2048;
  return g == 0 ? 1u : (unsigned)g;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* Block-wide sum in a fixed order (same bits every run); every thread gets the result.
 * scratch: >= 32 floats of shared memory. blockDim.x must be a multiple of 32. */
__device__ __forceinline__ float block_sum(float v, float *scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < nwarps ? scratch[lane] : 0.0f;
  t = warp_sum(t);
  return t;
}
__device__ __forceinline__ float block_max(float v, float *scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < nwarps ? scratch[lane] : -INFINITY;
  return warp_max(t);
}

/* Grid size for n elements at 'threads' per block, capped for grid-stride loops. */
static inline unsigned grid_for(size_t n, unsigned threads) {
  size_t g = (n + threads - 1) / threads;
  if (g > 65535u * 16u) g = 65535u * 16u;
  return g == 0 ? 1u : (unsigned)g;
}

/* Converts the last launch's error into an aqs_status naming the kernel. */
#define AQS_CUDA_LAUNCH_CHECK(e, kernel_name)                                                   \
  do {                                                                                          \
    cudaError_t launch_err_ = cudaGetLastError();                                               \
    if (launch_err_ != cudaSuccess)                                                             \
      return aqs_errf((e), AQS_ERR_INTERNAL, "cuda: launching %s: %s", (kernel_name),          \
                      cudaGetErrorString(launch_err_));                                         \
  } while (0)

#endif
