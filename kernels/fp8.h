/* kernels/fp8.h: the CPU FP8 E4M3 (e4m3fn) codec: per-tensor scale from amax, quantize BF16/F32
 * to E4M3 codes, dequantize. This is the specification the CUDA twin must match bit for bit, and
 * what the exporter writes into checkpoints. Semantics measured with torch 2.11 (see docs/fp8.md,
 * tests/conformance/gen_fp8_vectors.py and the committed vectors fp8_vectors.bin.zst).
 *
 * E4M3fn: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no Inf; max +-448 (0x7E/0xFE);
 * NaN = 0x7F/0xFF; subnormal step 2^-9; min normal 2^-6.
 *
 * Reference expression: q = (x / scale).clamp(-448, 448).to(torch.float8_e4m3fn) with
 * scale a 0-dim float32 tensor on the same device as x (what ModelOpt's FP8 export runs):
 *   F32 x:  v = x / scale (IEEE float division), then E4M3 round-to-nearest-even.
 *   BF16 x: torch computes in the common dtype BF16. On CUDA the float32 scale is first rounded
 *           to BF16, then v = bf16_rne(float(x) / float(bf16(scale))), then E4M3 RNE of v
 *           (double rounding through BF16 is part of the reference). On CPU the scale is used
 *           at full float32 precision: v = bf16_rne(float(x) / scale).
 *   Both:   +-Inf and |v| >= 448 -> +-448 (the clamp); NaN -> 0x7F on CUDA (sign dropped),
 *           0xFF on CPU (torch's vectorized clamp returns a negative NaN).
 * AQS_FP8_REF_TORCH_CUDA is the default everywhere in aqs (it is what ModelOpt's export on a
 * GPU produces); AQS_FP8_REF_TORCH_CPU exists to document and test the CPU behaviour. */
#ifndef AQS_KERNELS_FP8_H
#define AQS_KERNELS_FP8_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define AQS_FP8_E4M3_MAX 448.0f
#define AQS_FP8_E4M3_MAX_CODE 0x7E
#define AQS_FP8_E4M3_NAN_CODE 0x7F

typedef enum aqs_fp8_ref {
  AQS_FP8_REF_TORCH_CUDA = 0, /* x and scale on a CUDA device (default, ModelOpt export) */
  AQS_FP8_REF_TORCH_CPU = 1   /* x and scale on the CPU */
} aqs_fp8_ref;

/* Per-tensor scale = amax / 448 (float32 division). amax == 0 (an all-zero tensor, or an input
 * that never fired) gives scale 1.0, as does an amax so small that amax / 448 underflows to 0:
 * zeros then quantize to zeros and dequantize exactly. Negative, NaN or Inf amax ->
 * AQS_ERR_NUMERIC ("amax <value> is not a finite non-negative number"). */
aqs_status aqs_fp8_scale_from_amax(float amax, float *scale_out, aqs_err *e);

/* One value already divided by the scale: E4M3 round-to-nearest-even with saturation to +-448
 * (the clamp), NaN -> nan_code (0x7F for CUDA, 0xFF for CPU). Exact for every float input. */
uint8_t aqs_fp8_e4m3_from_f32(float v, uint8_t nan_code);
/* Exact float value of an E4M3 code (NaN for 0x7F/0xFF). */
float aqs_fp8_e4m3_to_f32(uint8_t code);
/* Distance between adjacent E4M3 values around |v| (unscaled): 2^-9 below 2^-6, else
 * 2^(floor(log2|v|) - 3); for |v| >= 448 the last step (32). Used for error bounds. */
float aqs_fp8_e4m3_step(float v);

/* q[i] = E4M3 code of x[i] (BF16 bits) under scale, per ref (see above). n may be 0. Large n
 * runs on OpenMP threads with a 65,536-entry table built from the scalar reference, so the
 * result is the same bits as the scalar path. scale must be > 0 and finite. */
void aqs_fp8_quantize_bf16(const uint16_t *x, size_t n, float scale, aqs_fp8_ref ref,
                           uint8_t *q);
/* q[i] = E4M3 code of x[i] / scale (float32 division), per ref (NaN code only). */
void aqs_fp8_quantize_f32(const float *x, size_t n, float scale, aqs_fp8_ref ref, uint8_t *q);
/* out[i] = float(q[i]) * scale (float32 multiply, as torch q.float() * scale). */
void aqs_fp8_dequantize(const uint8_t *q, size_t n, float scale, float *out);

/* max |x[i]| over BF16 bits (0 for n == 0); NaN if any element is NaN. */
float aqs_fp8_amax_bf16(const uint16_t *x, size_t n);
/* max |x[i]| over floats (0 for n == 0); NaN if any element is NaN. */
float aqs_fp8_amax_f32(const float *x, size_t n);

#endif
