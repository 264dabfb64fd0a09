/* engine/model/dtype.c: dtype names, sizes and parsing, plus the array forms of the BF16 <-> F32
 * conversions declared in dtype.h. */
#include "engine/model/dtype.h"

#include <string.h>

static const struct {
  const char *name;
  size_t size;
} dtype_table[AQS_DT_COUNT] = {
  [AQS_DT_BF16] = {"BF16", 2},   [AQS_DT_F16] = {"F16", 2},         [AQS_DT_F32] = {"F32", 4},
  [AQS_DT_F8_E4M3] = {"F8_E4M3", 1}, [AQS_DT_F8_E5M2] = {"F8_E5M2", 1},
  [AQS_DT_I32] = {"I32", 4},     [AQS_DT_I64] = {"I64", 8},         [AQS_DT_U8] = {"U8", 1},
  [AQS_DT_BOOL] = {"BOOL", 1},
};

const char *aqs_dtype_name(aqs_dtype dt) {
  return ((unsigned)dt < AQS_DT_COUNT) ? dtype_table[dt].name : "?";
}

size_t aqs_dtype_size(aqs_dtype dt) {
  return ((unsigned)dt < AQS_DT_COUNT) ? dtype_table[dt].size : 0;
}

aqs_status aqs_dtype_parse(const char *name, aqs_dtype *out, aqs_err *e) {
  for (int i = 0; i < AQS_DT_COUNT; i++)
    if (strcmp(name, dtype_table[i].name) == 0) {
      *out = (aqs_dtype)i;
      return AQS_OK;
    }
  return aqs_errf(e, AQS_ERR_UNSUPPORTED,
                  "unknown dtype \"%s\" (supported: BF16 F16 F32 F8_E4M3 F8_E5M2 I32 I64 U8 BOOL)",
                  name);
}

void aqs_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = aqs_bf16_to_f32(src[i]);
}

void aqs_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = aqs_f32_to_bf16(src[i]);
}

int64_t aqs_first_nonfinite(aqs_dtype dt, const void *data, size_t n) {
  const unsigned char *p = data;
  if (dt == AQS_DT_BF16 || dt == AQS_DT_F16) {
    uint16_t exp_mask = dt == AQS_DT_BF16 ? 0x7f80u : 0x7c00u; /* all-ones exponent: Inf or NaN */
    for (size_t i = 0; i < n; i++) {
      uint16_t v;
      memcpy(&v, p + 2 * i, sizeof v);
      if ((v & exp_mask) == exp_mask) return (int64_t)i;
    }
  } else if (dt == AQS_DT_F32) {
    for (size_t i = 0; i < n; i++) {
      uint32_t v;
      memcpy(&v, p + 4 * i, sizeof v);
      if ((v & 0x7f800000u) == 0x7f800000u) return (int64_t)i;
    }
  }
  return -1;
}
