/* kernels/cuda/fp8.cu: the FP8 E4M3 (e4m3fn) codec on the GPU, bit-exact twin of kernels/cpu/fp8.c
 * (see kernels/fp8.h for the semantics: true F32 division by the scale, BF16 inputs divided by the
 * BF16-rounded scale and re-rounded to BF16 under the torch-CUDA reference, RNE, saturation to
 * +-448, NaN -> 0x7F (0xFF under the torch-CPU reference)). Division and scaling use explicit
 * round-to-nearest PTX so --use_fast_math cannot change a bit. */
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"

/* v (already divided by the scale) -> E4M3 code; mirrors aqs_fp8_e4m3_from_f32. */
__device__ __forceinline__ uint8_t e4m3_from_f32(float v, uint8_t nan_code) {
  uint32_t u = __float_as_uint(v);
  uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return nan_code;
  if (a >= 0x43e00000u) return sign | 0x7Eu; /* |v| >= 448 or Inf */
  if (a < 0x3c800000u) {                     /* subnormal grid 2^-9: |v|*512 exact, RNE to 0..8 */
    float scaled = mul_exact(__uint_as_float(a), 512.0f);
    return sign | (uint8_t)__float2uint_rn(scaled);
  }
  uint32_t exponent = (a >> 23) - 127u + 7u;
  uint32_t mantissa = a & 0x7fffffu;
  uint32_t code = (exponent << 3) | (mantissa >> 20);
  uint32_t rest = mantissa & 0xfffffu;
  if (rest > 0x80000u || (rest == 0x80000u && (code & 1u))) code++;
  return sign | (uint8_t)code;
}

__device__ __forceinline__ float e4m3_to_f32(uint8_t code) {
  uint32_t exponent = (code >> 3) & 0xfu, mantissa = code & 7u;
  if (exponent == 15u && mantissa == 7u) return __uint_as_float(0x7fc00000u);
  float magnitude = exponent == 0u ? (float)mantissa * 0x1p-9f
                                   : __uint_as_float(((exponent + 120u) << 23) | (mantissa << 20));
  return (code & 0x80u) ? -magnitude : magnitude;
}

__global__ void quantize_f32_kernel(uint8_t *q, const float *x, size_t n, float scale, uint8_t nan_code) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    q[i] = e4m3_from_f32(div_exact(x[i], scale), nan_code);
}

/* divisor: the scale as torch uses it for BF16 inputs (BF16-rounded under the CUDA reference). */
__global__ void quantize_bf16_kernel(uint8_t *q, const uint16_t *x, size_t n, float divisor, uint8_t nan_code) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    float v = round_bf16(div_exact(bf16_bits_to_f32(x[i]), divisor));
    q[i] = e4m3_from_f32(v, nan_code);
  }
}

__global__ void dequantize_kernel(float *out, const uint8_t *q, size_t n, float scale) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] = mul_exact(e4m3_to_f32(q[i]), scale);
}

/* E4M3 codes -> BF16 bits of the same (unscaled) value: exact, E4M3 is a subset of BF16. */
__global__ void fp8_to_bf16_kernel(uint16_t *out, const uint8_t *q, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] = f32_to_bf16_bits(e4m3_to_f32(q[i]));
}

/* 8 BF16 inputs per thread (16-byte loads, 8-byte stores): the weight quantization of every
 * scoring batch streams the whole model through this kernel. n8 = n / 8. */
__global__ void quantize_bf16_x8_kernel(uint2 *q, const uint4 *x, size_t n8, float divisor, uint8_t nan_code) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8; i += (size_t)gridDim.x * blockDim.x) {
    uint4 v = x[i];
    uint32_t w[4] = {v.x, v.y, v.z, v.w};
    uint32_t out[2] = {0, 0};
#pragma unroll
    for (int k = 0; k < 8; k++) {
      uint16_t b = (uint16_t)(w[k >> 1] >> ((k & 1) * 16));
      float f = round_bf16(div_exact(bf16_bits_to_f32(b), divisor));
      out[k >> 2] |= (uint32_t)e4m3_from_f32(f, nan_code) << ((k & 3) * 8);
    }
    q[i] = make_uint2(out[0], out[1]);
  }
}

/* 4 F32 inputs per thread. n4 = n / 4. */
__global__ void quantize_f32_x4_kernel(uint32_t *q, const float4 *x, size_t n4, float scale, uint8_t nan_code) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
    float4 v = x[i];
    q[i] = (uint32_t)e4m3_from_f32(div_exact(v.x, scale), nan_code) |
           ((uint32_t)e4m3_from_f32(div_exact(v.y, scale), nan_code) << 8) |
           ((uint32_t)e4m3_from_f32(div_exact(v.z, scale), nan_code) << 16) |
           ((uint32_t)e4m3_from_f32(div_exact(v.w, scale), nan_code) << 24);
  }
}

/* ---- launchers ---- */
/* ref: 0 = torch on CUDA (aqs default), 1 = torch on CPU (kernels/fp8.h aqs_fp8_ref). */
extern "C" aqs_status aqs_cuda_quantize_fp8_f32(uint8_t *d_q, const float *d_x, size_t n, float scale, int ref,
                                                aqs_err *e) {
  if (n == 0) return AQS_OK;
  if (n % 4 == 0 && ((uintptr_t)d_x & 15u) == 0 && ((uintptr_t)d_q & 3u) == 0) {
    quantize_f32_x4_kernel<<<grid_for(n / 4, 256), 256, 0, (cudaStream_t)aqs_cuda_stream()>>>(
        (uint32_t *)d_q, (const float4 *)d_x, n / 4, scale, ref ? 0xFF : 0x7F);
    AQS_CUDA_LAUNCH_CHECK(e, "quantize_f32_x4_kernel");
    return AQS_OK;
  }
  quantize_f32_kernel<<<grid_for(n, 256), 256, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_q, d_x, n, scale,
                                                                                    ref ? 0xFF : 0x7F);
  AQS_CUDA_LAUNCH_CHECK(e, "quantize_f32_kernel");
  return AQS_OK;
}

extern "C" aqs_status aqs_cuda_quantize_fp8_bf16(uint8_t *d_q, const uint16_t *d_x, size_t n, float scale, int ref,
                                                 aqs_err *e) {
  if (n == 0) return AQS_OK;
  float divisor = scale;
  if (ref == 0) { /* round the F32 scale to BF16 on the host, RNE (finite positive scale) */
    uint32_t u;
    memcpy(&u, &scale, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&divisor, &u, sizeof u);
  }
  if (n % 8 == 0 && ((uintptr_t)d_x & 15u) == 0 && ((uintptr_t)d_q & 7u) == 0) {
    quantize_bf16_x8_kernel<<<grid_for(n / 8, 256), 256, 0, (cudaStream_t)aqs_cuda_stream()>>>(
        (uint2 *)d_q, (const uint4 *)d_x, n / 8, divisor, ref ? 0xFF : 0x7F);
    AQS_CUDA_LAUNCH_CHECK(e, "quantize_bf16_x8_kernel");
    return AQS_OK;
  }
  quantize_bf16_kernel<<<grid_for(n, 256), 256, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_q, d_x, n, divisor,
                                                                                     ref ? 0xFF : 0x7F);
  AQS_CUDA_LAUNCH_CHECK(e, "quantize_bf16_kernel");
  return AQS_OK;
}

extern "C" aqs_status aqs_cuda_dequantize_fp8(float *d_out, const uint8_t *d_q, size_t n, float scale, aqs_err *e) {
  if (n == 0) return AQS_OK;
  dequantize_kernel<<<grid_for(n, 256), 256, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_out, d_q, n, scale);
  AQS_CUDA_LAUNCH_CHECK(e, "dequantize_kernel");
  return AQS_OK;
}

extern "C" aqs_status aqs_cuda_fp8_to_bf16(uint16_t *d_out, const uint8_t *d_q, size_t n, aqs_err *e) {
  if (n == 0) return AQS_OK;
  fp8_to_bf16_kernel<<<grid_for(n, 256), 256, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_out, d_q, n);
  AQS_CUDA_LAUNCH_CHECK(e, "fp8_to_bf16_kernel");
  return AQS_OK;
}
