/* kernels/bf16.h: the one definition of BF16 <-> F32 bit conversion, for host code anywhere
 * (CPU kernels, model loading, export, diff). BF16 is the top half of an IEEE float32; rounding
 * is torch's .to(torch.bfloat16). Pure functions: thread-safe, no errors. */
#ifndef AQS_KERNELS_BF16_H
#define AQS_KERNELS_BF16_H

#include <stdint.h>
#include <string.h>

/* BF16 bits -> F32 (exact). */
static inline float aqs_bf16_to_f32(uint16_t bf16_bits) {
  uint32_t u = (uint32_t)bf16_bits << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* F32 -> BF16 bits, round to nearest even; NaN stays a quiet NaN with its sign, +-Inf stays Inf,
 * values that round past the BF16 maximum become Inf. */
static inline uint16_t aqs_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

#endif
