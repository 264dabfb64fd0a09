/* kernels/cpu/fp8.c: the CPU FP8 E4M3 codec (see kernels/fp8.h for the exact semantics).
 * The scalar functions are the specification; the bulk BF16 path quantizes through a 65,536-entry
 * table built from them, so it is bit-identical and fast (one table lookup per element). */
#include "kernels/fp8.h"
#include "kernels/bf16.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this many elements the table costs more than it saves. */
#define FP8_TABLE_MIN_N 16384u
/* Elements per OpenMP chunk (large enough to amortize scheduling, small enough to balance). */
#define FP8_OMP_MIN_N (1u << 20)

static inline float bits_to_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}


static inline uint8_t nan_code_of(aqs_fp8_ref ref) {
  return ref == AQS_FP8_REF_TORCH_CPU ? 0xFF : AQS_FP8_E4M3_NAN_CODE;
}

aqs_status aqs_fp8_scale_from_amax(float amax, float *scale_out, aqs_err *e) {
  if (!(amax >= 0.0f) || isinf(amax))
    return aqs_errf(e, AQS_ERR_NUMERIC, "amax %g is not a finite non-negative number",
                    (double)amax);
  float scale = amax / AQS_FP8_E4M3_MAX;
  *scale_out = scale > 0.0f ? scale : 1.0f;
  return AQS_OK;
}

uint8_t aqs_fp8_e4m3_from_f32(float v, uint8_t nan_code) {
  uint32_t u = f32_to_bits(v);
  uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return nan_code;
  if (a >= 0x43e00000u) return sign | AQS_FP8_E4M3_MAX_CODE; /* |v| >= 448 or Inf: clamp */
  if (a < 0x3c800000u) {                                     /* |v| < 2^-6: subnormal grid */
    /* |v| * 512 is exact (power-of-two scaling of a value far from overflow); the default
     * rounding mode of nearbyintf is round-to-nearest-even. Result 0..8; 8 is 2^-6 (0x08). */
    return sign | (uint8_t)nearbyintf(bits_to_f32(a) * 512.0f);
  }
  uint32_t exponent = (a >> 23) - 127u + 7u; /* 1..15 */
  uint32_t mantissa = a & 0x7fffffu;
  uint32_t code = (exponent << 3) | (mantissa >> 20);
  uint32_t rest = mantissa & 0xfffffu; /* the 20 dropped bits */
  if (rest > 0x80000u || (rest == 0x80000u && (code & 1u))) code++; /* carries into exponent */
  return sign | (uint8_t)code;
}

float aqs_fp8_e4m3_to_f32(uint8_t code) {
  uint32_t exponent = (code >> 3) & 0xfu;
  uint32_t mantissa = code & 7u;
  float magnitude;
  if (exponent == 15u && mantissa == 7u) return NAN;
  if (exponent == 0u)
    magnitude = ldexpf((float)mantissa, -9);
  else
    magnitude = ldexpf((float)(8u + mantissa), (int)exponent - 7 - 3);
  return (code & 0x80u) ? -magnitude : magnitude;
}

float aqs_fp8_e4m3_step(float v) {
  float a = fabsf(v);
  if (!(a >= 0x1p-6f)) return 0x1p-9f;
  if (a >= AQS_FP8_E4M3_MAX) return 32.0f;
  int exp2;
  frexpf(a, &exp2); /* a = m * 2^exp2, m in [0.5, 1) */
  return ldexpf(1.0f, exp2 - 1 - 3);
}

/* The divisor torch really uses for BF16 inputs (see fp8.h). */
static float bf16_divisor(float scale, aqs_fp8_ref ref) {
  return ref == AQS_FP8_REF_TORCH_CUDA ? aqs_bf16_to_f32(aqs_f32_to_bf16(scale)) : scale;
}

static inline uint8_t quantize_one_bf16(uint16_t x, float divisor, uint8_t nan_code) {
  float v = aqs_bf16_to_f32(aqs_f32_to_bf16(aqs_bf16_to_f32(x) / divisor));
  return aqs_fp8_e4m3_from_f32(v, nan_code);
}

void aqs_fp8_quantize_bf16(const uint16_t *x, size_t n, float scale, aqs_fp8_ref ref,
                           uint8_t *q) {
  float divisor = bf16_divisor(scale, ref);
  uint8_t nan_code = nan_code_of(ref);
  if (n < FP8_TABLE_MIN_N) {
    for (size_t i = 0; i < n; i++) q[i] = quantize_one_bf16(x[i], divisor, nan_code);
    return;
  }
  uint8_t *table = malloc(65536);
  if (!table) { /* out of memory for 64 KiB: fall back to the scalar path */
    for (size_t i = 0; i < n; i++) q[i] = quantize_one_bf16(x[i], divisor, nan_code);
    return;
  }
#pragma omp parallel for schedule(static) if (n >= FP8_OMP_MIN_N)
  for (uint32_t b = 0; b < 65536u; b++) table[b] = quantize_one_bf16((uint16_t)b, divisor, nan_code);
#pragma omp parallel for schedule(static) if (n >= FP8_OMP_MIN_N)
  for (size_t i = 0; i < n; i++) q[i] = table[x[i]];
  free(table);
}

void aqs_fp8_quantize_f32(const float *x, size_t n, float scale, aqs_fp8_ref ref, uint8_t *q) {
  uint8_t nan_code = nan_code_of(ref);
#pragma omp parallel for schedule(static) if (n >= FP8_OMP_MIN_N)
  for (size_t i = 0; i < n; i++) q[i] = aqs_fp8_e4m3_from_f32(x[i] / scale, nan_code);
}

void aqs_fp8_dequantize(const uint8_t *q, size_t n, float scale, float *out) {
  float values[256];
  for (int c = 0; c < 256; c++) values[c] = aqs_fp8_e4m3_to_f32((uint8_t)c);
#pragma omp parallel for schedule(static) if (n >= FP8_OMP_MIN_N)
  for (size_t i = 0; i < n; i++) out[i] = values[q[i]] * scale;
}

float aqs_fp8_amax_bf16(const uint16_t *x, size_t n) {
  /* On BF16 bits with the sign cleared, the integer order is the order of |x|, and every NaN
   * (> 0x7f80) sorts above every number: one branch-free (vectorizable) max finds both. */
  uint16_t max_bits = 0;
#pragma omp parallel for simd schedule(static) reduction(max : max_bits) if (n >= FP8_OMP_MIN_N)
  for (size_t i = 0; i < n; i++) {
    uint16_t a = (uint16_t)(x[i] & 0x7fffu);
    max_bits = a > max_bits ? a : max_bits;
  }
  return max_bits > 0x7f80u ? NAN : aqs_bf16_to_f32(max_bits);
}

float aqs_fp8_amax_f32(const float *x, size_t n) {
  float max_abs = 0.0f;
  int saw_nan = 0;
#pragma omp parallel for schedule(static) reduction(max : max_abs) reduction(| : saw_nan) \
    if (n >= FP8_OMP_MIN_N)
  for (size_t i = 0; i < n; i++) {
    float a = fabsf(x[i]);
    if (isnan(a)) saw_nan |= 1;
    else if (a > max_abs) max_abs = a;
  }
  return saw_nan ? NAN : max_abs;
}
