/* tests/unit/model/test_dtype.c: dtype names, sizes and parsing, and the BF16 <-> F32
 * conversions (exhaustive BF16 round trip, round-to-nearest-even ties, NaN, overflow). */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "engine/model/dtype.h"

static float bits_to_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static void test_names_and_sizes(void **state) {
  (void)state;
  static const char *const names[] = {"BF16", "F16", "F32", "F8_E4M3", "F8_E5M2",
                                      "I32", "I64", "U8", "BOOL"};
  static const size_t sizes[] = {2, 2, 4, 1, 1, 4, 8, 1, 1};
  for (int i = 0; i < AQS_DT_COUNT; i++) {
    aqs_dtype dt;
    assert_int_equal(aqs_dtype_parse(names[i], &dt, NULL), AQS_OK);
    assert_int_equal(dt, i);
    assert_string_equal(aqs_dtype_name(dt), names[i]);
    assert_int_equal(aqs_dtype_size(dt), sizes[i]);
  }
  aqs_err e = {0};
  aqs_dtype dt;
  assert_int_equal(aqs_dtype_parse("bf16", &dt, &e), AQS_ERR_UNSUPPORTED); /* case-sensitive */
  assert_non_null(strstr(e.msg, "unknown dtype \"bf16\""));
  assert_int_equal(aqs_dtype_parse("F64", &dt, &e), AQS_ERR_UNSUPPORTED);
  assert_string_equal(aqs_dtype_name(AQS_DT_COUNT), "?");
  assert_int_equal(aqs_dtype_size(AQS_DT_COUNT), 0);
}

/* Every BF16 pattern survives BF16 -> F32 -> BF16 (signalling NaNs come back quieted). */
static void test_bf16_round_trip_exhaustive(void **state) {
  (void)state;
  for (uint32_t b = 0; b < 65536; b++) {
    float f = aqs_bf16_to_f32((uint16_t)b);
    uint16_t back = aqs_f32_to_bf16(f);
    int is_nan = (b & 0x7f80) == 0x7f80 && (b & 0x7f);
    uint16_t want = is_nan ? (uint16_t)(b | 0x40) : (uint16_t)b;
    if (back != want) fail_msg("bf16 0x%04x -> %g -> 0x%04x", b, (double)f, back);
  }
  uint16_t src[3] = {0x3f80, 0xc000, 0x0001};
  float mid[3];
  uint16_t out[3];
  aqs_bf16_to_f32_n(src, mid, 3);
  assert_true(mid[0] == 1.0f && mid[1] == -2.0f && mid[2] > 0);
  aqs_f32_to_bf16_n(mid, out, 3);
  assert_memory_equal(out, src, sizeof src);
}

static void test_f32_to_bf16_rounding(void **state) {
  (void)state;
  assert_int_equal(aqs_f32_to_bf16(bits_to_f32(0x3f808000)), 0x3f80); /* tie -> even (down) */
  assert_int_equal(aqs_f32_to_bf16(bits_to_f32(0x3f818000)), 0x3f82); /* tie -> even (up) */
  assert_int_equal(aqs_f32_to_bf16(bits_to_f32(0x3f808001)), 0x3f81); /* above half -> up */
  assert_int_equal(aqs_f32_to_bf16(bits_to_f32(0x3f807fff)), 0x3f80); /* below half -> down */
  assert_int_equal(aqs_f32_to_bf16(bits_to_f32(0xbf808001)), 0xbf81); /* sign symmetric */
  assert_int_equal(aqs_f32_to_bf16(bits_to_f32(0x7f7fffff)), 0x7f80); /* FLT_MAX -> +Inf */
  assert_int_equal(aqs_f32_to_bf16(INFINITY), 0x7f80);
  assert_int_equal(aqs_f32_to_bf16(-INFINITY), 0xff80);
  assert_int_equal(aqs_f32_to_bf16(bits_to_f32(0x7f800001)) & 0x7fc0, 0x7fc0); /* sNaN -> qNaN */
  assert_int_equal(aqs_f32_to_bf16(bits_to_f32(0xffc00000)), 0xffc0);         /* sign kept */
  assert_int_equal(aqs_f32_to_bf16(bits_to_f32(0x00008000)), 0x0000);         /* subnormal tie */
  assert_int_equal(aqs_f32_to_bf16(-0.0f), 0x8000);
}

/* NaN and Inf found at their index in BF16 / F16 / F32 arrays at odd (unaligned) offsets; large
 * finite values, subnormals and -0 are finite; other dtypes are never scanned. */
static void test_first_nonfinite(void **state) {
  (void)state;
  unsigned char buf[4 * 64 + 1];
  uint16_t bf[64], hf[64];
  float f[64];
  for (int i = 0; i < 64; i++) {
    f[i] = (i % 2 ? -1.0f : 1.0f) * (float)i * 1e30f;
    bf[i] = aqs_f32_to_bf16((float)i - 32.0f);
    hf[i] = (uint16_t)(0x3c00 + i); /* 1.0 .. in F16 */
  }
  bf[3] = 0x8000;                    /* -0 */
  bf[4] = 0x0001;                    /* subnormal */
  memcpy(buf + 1, bf, sizeof bf);
  assert_int_equal(aqs_first_nonfinite(AQS_DT_BF16, buf + 1, 64), -1);
  bf[40] = 0x7f80; /* +Inf */
  bf[50] = 0x7fc0; /* NaN */
  memcpy(buf + 1, bf, sizeof bf);
  assert_int_equal(aqs_first_nonfinite(AQS_DT_BF16, buf + 1, 64), 40);
  assert_int_equal(aqs_first_nonfinite(AQS_DT_BF16, buf + 1, 40), -1);
  memcpy(buf + 1, hf, sizeof hf);
  assert_int_equal(aqs_first_nonfinite(AQS_DT_F16, buf + 1, 64), -1);
  hf[7] = 0xfc00; /* -Inf */
  memcpy(buf + 1, hf, sizeof hf);
  assert_int_equal(aqs_first_nonfinite(AQS_DT_F16, buf + 1, 64), 7);
  memcpy(buf + 1, f, sizeof f);
  assert_int_equal(aqs_first_nonfinite(AQS_DT_F32, buf + 1, 64), -1);
  f[63] = NAN;
  memcpy(buf + 1, f, sizeof f);
  assert_int_equal(aqs_first_nonfinite(AQS_DT_F32, buf + 1, 64), 63);
  memset(buf, 0xff, sizeof buf);
  assert_int_equal(aqs_first_nonfinite(AQS_DT_I32, buf, 64), -1);
  assert_int_equal(aqs_first_nonfinite(AQS_DT_F8_E4M3, buf, 64), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_names_and_sizes),
    cmocka_unit_test(test_bf16_round_trip_exhaustive),
    cmocka_unit_test(test_f32_to_bf16_rounding),
    cmocka_unit_test(test_first_nonfinite),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
