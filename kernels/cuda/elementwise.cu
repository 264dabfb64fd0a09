/* kernels/cuda/elementwise.cu: casts, BF16 rounding, residual add (also of a BF16 operand with a
 * fused amax: add_b), embedding gather, the linear layers' bias/rounding epilogue and the F32 ->
 * BF16 operand splits the cuBLASLt GEMMs consume. CPU twins: kernels/cpu/elementwise.c, the
 * bias/round parts of kernels/cpu/linear.c, kernels/cpu/bf16_store.c. */
#include "kernels/cuda/cuda_common.cuh"

#define GRID_STRIDE(i, n) \
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

static inline cudaStream_t stream(void) { return (cudaStream_t)aqs_cuda_stream(); }

__global__ void cast_bf16_to_f32_kernel(float *dst, const uint16_t *src, size_t n) {
  GRID_STRIDE(i, n) dst[i] = bf16_bits_to_f32(src[i]);
}
__global__ void cast_f32_to_bf16_kernel(uint16_t *dst, const float *src, size_t n) {
  GRID_STRIDE(i, n) dst[i] = f32_to_bf16_bits(src[i]);
}
__global__ void round_bf16_kernel(float *x, size_t n) {
  GRID_STRIDE(i, n) x[i] = round_bf16(x[i]);
}
/* The residual add of one element, IEEE without FTZ as the CPU's. */
__device__ __forceinline__ float add_one(float a, float b, int rnd) {
  float s = add_exact(a, b);
  return rnd ? round_bf16(s) : s;
}
__global__ void add_kernel(float *out, const float *a, const float *b, size_t n, int rnd) {
  GRID_STRIDE(i, n) out[i] = add_one(a[i], b[i], rnd);
}
/* out (N, C) = table[ids[r]]; one thread per 2 columns is not worth it: C is a few thousand. */
__global__ void embedding_kernel(float *out, const uint16_t *table, const int32_t *ids, int N, int C) {
  size_t total = (size_t)N * (size_t)C;
  GRID_STRIDE(i, total) {
    size_t r = i / (size_t)C, c = i % (size_t)C;
    out[i] = bf16_bits_to_f32(table[(size_t)ids[r] * (size_t)C + c]);
  }
}
/* y (N, M) = rnd(y + bias) (bias may be NULL: rounding only). */
__global__ void bias_round_kernel(float *y, const uint16_t *bias, size_t total, int M, int rnd) {
  GRID_STRIDE(i, total) {
    float v = y[i];
    if (bias) v += bf16_bits_to_f32(bias[i % (size_t)M]);
    y[i] = rnd ? round_bf16(v) : v;
  }
}
/* dst = round(dst + round(prod)) (BF16 accumulation of a product into a gradient). */
__global__ void accumulate_round_kernel(float *dst, const float *prod, size_t n) {
  GRID_STRIDE(i, n) dst[i] = round_bf16(dst[i] + round_bf16(prod[i]));
}
/* parts[p] = BF16 terms of x: x == parts[0] + parts[1] (+ parts[2]) up to F32 precision. */
__global__ void split_bf16_kernel(uint16_t *parts, const float *x, size_t n, int nparts) {
  GRID_STRIDE(i, n) {
    float rest = x[i];
    for (int p = 0; p < nparts; p++) {
      uint16_t b = f32_to_bf16_bits(rest);
      parts[(size_t)p * n + i] = b;
      rest = rest - bf16_bits_to_f32(b);
    }
  }
}

/* 4-wide versions (16-byte float loads) for the hot casts around every GEMM; n4 = n / 4. */
__global__ void cast_bf16_to_f32_x4_kernel(float4 *dst, const uint2 *src, size_t n4) {
  GRID_STRIDE(i, n4) {
    uint2 b = src[i];
    dst[i] = make_float4(__uint_as_float(b.x << 16), __uint_as_float(b.x & 0xffff0000u), __uint_as_float(b.y << 16),
                         __uint_as_float(b.y & 0xffff0000u));
  }
}
__global__ void f32_to_bf16_x4_kernel(uint2 *dst, const float4 *src, size_t n4) {
  GRID_STRIDE(i, n4) {
    float4 v = src[i];
    uint2 o;
    o.x = (uint32_t)f32_to_bf16_bits(v.x) | ((uint32_t)f32_to_bf16_bits(v.y) << 16);
    o.y = (uint32_t)f32_to_bf16_bits(v.z) | ((uint32_t)f32_to_bf16_bits(v.w) << 16);
    dst[i] = o;
  }
}
__global__ void add_x4_kernel(float4 *out, const float4 *a, const float4 *b, size_t n4, int rnd) {
  GRID_STRIDE(i, n4) {
    float4 x = a[i], y = b[i];
    out[i] = make_float4(add_one(x.x, y.x, rnd), add_one(x.y, y.y, rnd), add_one(x.z, y.z, rnd), add_one(x.w, y.w, rnd));
  }
}
/* BF16 storage (add_b): out (F32) = bf16(a + b), b BF16; 4 elements per thread (16-byte a/out,
 * 8-byte b loads) for the bulk when vec, the tail one per thread; out may alias a. Folds max |out|. */
__global__ void add_b_kernel(float *out, const float *a, const uint16_t *b, size_t n, int vec, float *amax) {
  int m = 0;
  size_t i0 = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x, done = 0;
  if (vec) {
    const float4 *a4 = (const float4 *)a;
    const uint2 *b4 = (const uint2 *)b;
    float4 *o4 = (float4 *)out;
    for (size_t i = i0; i < n / 4; i += stride) {
      float4 x = a4[i];
      uint2 y = b4[i];
      float4 s = make_float4(add_one(x.x, bf16_lo(y.x), 1), add_one(x.y, bf16_hi(y.x), 1), add_one(x.z, bf16_lo(y.y), 1),
                             add_one(x.w, bf16_hi(y.y), 1));
      o4[i] = s;
      m = max(m, max(max(abs_bits(s.x), abs_bits(s.y)), max(abs_bits(s.z), abs_bits(s.w))));
    }
    done = n / 4 * 4;
  }
  for (size_t i = done + i0; i < n; i += stride) {
    float s = add_one(a[i], bf16_bits_to_f32(b[i]), 1);
    out[i] = s;
    m = max(m, abs_bits(s));
  }
  if (amax) block_fold_amax(m, amax);
}

static int aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

#define LAUNCH(kernel, n, ...)                                                      \
  do {                                                                              \
    if ((n) == 0) return AQS_OK;                                                    \
    kernel<<<grid_for((n), 256), 256, 0, stream()>>>(__VA_ARGS__);                  \
    AQS_CUDA_LAUNCH_CHECK(e, #kernel);                                              \
    return AQS_OK;                                                                  \
  } while (0)

/* ---- launchers ---- */
extern "C" aqs_status aqs_cuda_cast_bf16_to_f32(float *d_dst, const uint16_t *d_src, size_t n, aqs_err *e) {
  if (n % 4 == 0 && aligned16(d_dst) && ((uintptr_t)d_src & 7u) == 0)
    LAUNCH(cast_bf16_to_f32_x4_kernel, n / 4, (float4 *)d_dst, (const uint2 *)d_src, n / 4);
  LAUNCH(cast_bf16_to_f32_kernel, n, d_dst, d_src, n);
}
extern "C" aqs_status aqs_cuda_cast_f32_to_bf16(uint16_t *d_dst, const float *d_src, size_t n, aqs_err *e) {
  if (n % 4 == 0 && aligned16(d_src) && ((uintptr_t)d_dst & 7u) == 0)
    LAUNCH(f32_to_bf16_x4_kernel, n / 4, (uint2 *)d_dst, (const float4 *)d_src, n / 4);
  LAUNCH(cast_f32_to_bf16_kernel, n, d_dst, d_src, n);
}
extern "C" aqs_status aqs_cuda_round_bf16(float *d_x, size_t n, aqs_err *e) {
  LAUNCH(round_bf16_kernel, n, d_x, n);
}
extern "C" aqs_status aqs_cuda_add(float *d_out, const float *d_a, const float *d_b, size_t n, int rnd,
                                   aqs_err *e) {
  if (n % 4 == 0 && aligned16(d_out) && aligned16(d_a) && aligned16(d_b))
    LAUNCH(add_x4_kernel, n / 4, (float4 *)d_out, (const float4 *)d_a, (const float4 *)d_b, n / 4, rnd);
  LAUNCH(add_kernel, n, d_out, d_a, d_b, n, rnd);
}
extern "C" aqs_status aqs_cuda_add_b(float *d_out, const float *d_a, const uint16_t *d_b, size_t n, float *d_amax,
                                     aqs_err *e) {
  if (n == 0) return AQS_OK;
  int vec = aligned16(d_out) && aligned16(d_a) && ((uintptr_t)d_b & 7u) == 0;
  add_b_kernel<<<fold_grid(vec ? n / 4 + 1 : n, 256), 256, 0, stream()>>>(d_out, d_a, d_b, n, vec, d_amax);
  AQS_CUDA_LAUNCH_CHECK(e, "add_b_kernel");
  return AQS_OK;
}
extern "C" aqs_status aqs_cuda_embedding(float *d_out, const uint16_t *d_table, const int32_t *d_ids, int N,
                                         int C, aqs_err *e) {
  size_t total = (size_t)N * (size_t)C;
  LAUNCH(embedding_kernel, total, d_out, d_table, d_ids, N, C);
}
extern "C" aqs_status aqs_cuda_bias_round(float *d_y, const uint16_t *d_bias, int N, int M, int rnd, aqs_err *e) {
  size_t total = (size_t)N * (size_t)M;
  if (!d_bias && !rnd) return AQS_OK;
  LAUNCH(bias_round_kernel, total, d_y, d_bias, total, M, rnd);
}
extern "C" aqs_status aqs_cuda_accumulate_round(float *d_dst, const float *d_prod, size_t n, aqs_err *e) {
  LAUNCH(accumulate_round_kernel, n, d_dst, d_prod, n);
}
extern "C" aqs_status aqs_cuda_split_bf16(uint16_t *d_parts, const float *d_x, size_t n, int nparts, aqs_err *e) {
  if (nparts == 1) return aqs_cuda_cast_f32_to_bf16(d_parts, d_x, n, e);
  LAUNCH(split_bf16_kernel, n, d_parts, d_x, n, nparts);
}
