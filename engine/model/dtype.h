/* engine/model/dtype.h: the tensor element types a safetensors file may hold, their names and
 * sizes, and the BF16 <-> F32 conversions every module uses (BF16 = top 16 bits of an F32).
 * Header-only conversions so hot loops inline them. */
#ifndef AQS_MODEL_DTYPE_H
#define AQS_MODEL_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/err.h"
#include "kernels/bf16.h"

/* Known element types; the names are the safetensors header spellings. */
typedef enum aqs_dtype {
  AQS_DT_BF16 = 0, /* "BF16"    2 bytes */
  AQS_DT_F16,      /* "F16"     2 bytes */
  AQS_DT_F32,      /* "F32"     4 bytes */
  AQS_DT_F8_E4M3,  /* "F8_E4M3" 1 byte (torch.float8_e4m3fn) */
  AQS_DT_F8_E5M2,  /* "F8_E5M2" 1 byte */
  AQS_DT_I32,      /* "I32"     4 bytes */
  AQS_DT_I64,      /* "I64"     8 bytes */
  AQS_DT_U8,       /* "U8"      1 byte */
  AQS_DT_BOOL,     /* "BOOL"    1 byte */
  AQS_DT_COUNT
} aqs_dtype;

/* Header spelling of dt ("BF16"); "?" for an out-of-range value. */
const char *aqs_dtype_name(aqs_dtype dt);
/* Bytes per element of dt; 0 for an out-of-range value. */
size_t aqs_dtype_size(aqs_dtype dt);
/* Parses a header spelling (exact, case-sensitive). AQS_ERR_UNSUPPORTED naming the string when
 * unknown (e.g. "F64", "I16", "C64" are valid safetensors dtypes that aqs does not handle). */
aqs_status aqs_dtype_parse(const char *name, aqs_dtype *out, aqs_err *e);

/* aqs_bf16_to_f32 / aqs_f32_to_bf16: kernels/bf16.h (one definition for all host code). */

/* Index of the first NaN or Inf among n elements of a BF16, F16 or F32 array (any alignment), or
 * -1 when all are finite or dt is not one of those. Reads every element (bit tests, no FP). */
int64_t aqs_first_nonfinite(aqs_dtype dt, const void *data, size_t n);

/* Array forms: n elements, src and dst must not overlap. */
void aqs_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n);
void aqs_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n);

#endif
