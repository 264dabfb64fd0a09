/* kernels/cuda/swiglu.cu: the SwiGLU MLP activation silu(gate) * up and its backward, elementwise.
 * exp is taken in double and rounded to F32 (close to glibc's expf; immune to --use_fast_math).
 * The forward also runs on BF16 storage with a fused amax (swiglu_fwd_b), silu from a table.
 * CPU twins: kernels/cpu/swiglu.c (same formulas and rounding points), bf16_store.c. */
#include <pthread.h>

#include "kernels/cuda/cuda_common.cuh"

__device__ __forceinline__ float exp_f32(float x) { return (float)exp((double)x); }

/* silu(g), rounded in BF16 mode; then the product with up, rounded in BF16 mode. */
__device__ __forceinline__ float silu_act(float g, int rnd) {
  float act = div_exact(g, 1.0f + exp_f32(-g));
  return rnd ? round_bf16(act) : act;
}
__device__ __forceinline__ float swiglu_out(float act, float u, int rnd) {
  float o = mul_exact(act, u);
  return rnd ? round_bf16(o) : o;
}
__device__ __forceinline__ float swiglu_one(float g, float u, int rnd) { return swiglu_out(silu_act(g, rnd), u, rnd); }

/* BF16 storage: a BF16 gate has 65536 values, so bf16(silu(gate)) is a table. The table holds the
 * gates with 2^-25 <= |g| < 96 (BF16 bits SILU_LO..SILU_LO+SILU_SPAN-1 of each sign), filled by
 * silu_act itself (the same bits by construction); other gates (tiny, large, Inf, NaN: rare) take
 * silu_act directly. 16 KB: each block of the kernel copies it into shared memory. */
#define SILU_LO 0x3300u   /* 2^-25 */
#define SILU_SPAN 0x0fc0u /* up to 0x42c0 = 96.0 */
__device__ __align__(16) uint16_t g_silu_table[2 * SILU_SPAN];

__global__ void silu_table_kernel(void) {
  for (unsigned k = blockIdx.x * blockDim.x + threadIdx.x; k < 2 * SILU_SPAN; k += gridDim.x * blockDim.x) {
    uint16_t bits = (uint16_t)(((k / SILU_SPAN) << 15) | (SILU_LO + k % SILU_SPAN));
    g_silu_table[k] = f32_to_bf16_bits(silu_act(bf16_bits_to_f32(bits), 1));
  }
}
__device__ __forceinline__ float silu_act_b(float g, const uint16_t *table) {
  uint32_t bits = __float_as_uint(g) >> 16, a = (bits & 0x7fffu) - SILU_LO;
  return a < SILU_SPAN ? bf16_bits_to_f32(table[a + (bits >> 15) * SILU_SPAN]) : silu_act(g, 1);
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

/* BF16 storage (swiglu_fwd_b, rnd always on): 8 elements per thread with 16-byte loads/stores for
 * the bulk when vec (all three pointers 16-byte aligned), the tail one per thread; out may alias
 * gate or up (each element is read before it is written, by the same thread). */
__global__ void swiglu_fwd_b_kernel(uint16_t *out, const uint16_t *gate, const uint16_t *up, size_t n, int vec,
                                    float *amax) {
  __shared__ __align__(16) uint16_t table[2 * SILU_SPAN];
  for (unsigned k = threadIdx.x; k < 2 * SILU_SPAN / 8; k += blockDim.x)
    ((uint4 *)table)[k] = ((const uint4 *)g_silu_table)[k];
  __syncthreads();
  int m = 0;
  size_t i0 = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x, done = 0;
  if (vec) {
    const uint4 *g8 = (const uint4 *)gate, *u8 = (const uint4 *)up;
    uint4 *o8 = (uint4 *)out;
    for (size_t i = i0; i < n / 8; i += stride) {
      uint4 g = g8[i], u = u8[i];
      uint32_t gw[4] = {g.x, g.y, g.z, g.w}, uw[4] = {u.x, u.y, u.z, u.w}, ow[4];
#pragma unroll
      for (int k = 0; k < 4; k++) {
        float lo = swiglu_out(silu_act_b(bf16_lo(gw[k]), table), bf16_lo(uw[k]), 1);
        float hi = swiglu_out(silu_act_b(bf16_hi(gw[k]), table), bf16_hi(uw[k]), 1);
        ow[k] = pack_bf16x2(lo, hi);
        m = max(m, max(abs_bits(lo), abs_bits(hi)));
      }
      o8[i] = make_uint4(ow[0], ow[1], ow[2], ow[3]);
    }
    done = n / 8 * 8;
  }
  for (size_t i = done + i0; i < n; i += stride) {
    float o = swiglu_out(silu_act_b(bf16_bits_to_f32(gate[i]), table), bf16_bits_to_f32(up[i]), 1);
    out[i] = f32_to_bf16_bits(o);
    m = max(m, abs_bits(o));
  }
  if (amax) block_fold_amax(m, amax);
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

/* The silu table is filled once per device (stream-ordered before its first use). */
static pthread_mutex_t g_silu_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char g_silu_ready[64];

extern "C" aqs_status aqs_cuda_swiglu_fwd_b(uint16_t *d_out, const uint16_t *d_gate, const uint16_t *d_up, size_t n,
                                            float *d_amax, aqs_err *e) {
  if (n == 0) return AQS_OK;
  cudaStream_t s = (cudaStream_t)aqs_cuda_stream();
  int dev = 0;
  cudaGetDevice(&dev);
  pthread_mutex_lock(&g_silu_lock);
  if (dev < 0 || dev >= 64 || !g_silu_ready[dev]) {
    silu_table_kernel<<<(2 * SILU_SPAN + 255) / 256, 256, 0, s>>>();
    if (cudaPeekAtLastError() == cudaSuccess && dev >= 0 && dev < 64) g_silu_ready[dev] = 1;
  }
  pthread_mutex_unlock(&g_silu_lock);
  AQS_CUDA_LAUNCH_CHECK(e, "silu_table_kernel");
  int vec = ((((uintptr_t)d_out) | ((uintptr_t)d_gate) | ((uintptr_t)d_up)) & 15u) == 0;
  unsigned grid = fold_grid(vec ? n / 8 + 1 : n, 256);
  if (grid > 1024) grid = 1024; /* one wave of 8 blocks per SM: the table copy stays a few % */
  swiglu_fwd_b_kernel<<<grid, 256, 0, s>>>(d_out, d_gate, d_up, n, vec, d_amax);
  AQS_CUDA_LAUNCH_CHECK(e, "swiglu_fwd_b_kernel");
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
