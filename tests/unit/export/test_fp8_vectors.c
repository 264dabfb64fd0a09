/* tests/unit/export/test_fp8_vectors.c: the CPU FP8 codec against the torch-generated vectors
 * (tests/conformance/fp8_vectors.bin.zst, layout in gen_fp8_vectors.py): every BF16 bit
 * pattern at 8 scales, bit-exact for the CUDA and CPU references, F32 inputs, decoding, and the
 * dequantization error bound. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "kernels/fp8.h"

typedef struct vec_section {
  uint32_t variant, input_kind, n, out_width;
  float scale;
  const float *inputs; /* input_kind 1 */
  const uint8_t *outputs;
} vec_section;

typedef struct vec_file {
  uint8_t *bytes;
  size_t nsections;
  vec_section sections[64];
} vec_file;

static vec_file *load_vectors(void) {
  size_t zlen = 0;
  char *z = tu_read_file(tu_src_path("tests/conformance/fp8_vectors.bin.zst"), &zlen);
  assert_non_null(z);
  unsigned long long raw_len = ZSTD_getFrameContentSize(z, zlen);
  assert_true(raw_len != ZSTD_CONTENTSIZE_ERROR && raw_len != ZSTD_CONTENTSIZE_UNKNOWN);
  vec_file *vf = calloc(1, sizeof *vf);
  vf->bytes = malloc(raw_len);
  size_t got = ZSTD_decompress(vf->bytes, raw_len, z, zlen);
  assert_false(ZSTD_isError(got));
  assert_int_equal(got, raw_len);
  free(z);
  assert_memory_equal(vf->bytes, "AQSFP8V1", 8);
  uint32_t count;
  memcpy(&count, vf->bytes + 8, 4);
  assert_true(count <= 64);
  size_t off = 12;
  for (uint32_t i = 0; i < count; i++) {
    vec_section *s = &vf->sections[i];
    uint32_t head[5];
    memcpy(head, vf->bytes + off, sizeof head);
    off += sizeof head;
    s->variant = head[0];
    s->input_kind = head[1];
    memcpy(&s->scale, &head[2], 4);
    s->n = head[3];
    s->out_width = head[4];
    if (s->input_kind == 1) { /* copied: the file gives no alignment guarantee */
      float *inputs = malloc(4u * s->n);
      memcpy(inputs, vf->bytes + off, 4u * s->n);
      s->inputs = inputs;
      off += 4u * s->n;
    }
    s->outputs = vf->bytes + off;
    off += (size_t)s->n * s->out_width;
    assert_true(off <= got);
  }
  assert_int_equal(off, got);
  vf->nsections = count;
  return vf;
}

static void free_vectors(vec_file *vf) {
  for (size_t i = 0; i < vf->nsections; i++) free((void *)vf->sections[i].inputs);
  free(vf->bytes);
  free(vf);
}

static uint16_t all_bf16[65536];

static void fill_all_bf16(void) {
  for (uint32_t i = 0; i < 65536u; i++) all_bf16[i] = (uint16_t)i;
}

/* Compares codes and prints the first mismatch so a failure says which input broke. */
static void expect_codes(const vec_section *s, const uint8_t *got, const char *what) {
  for (uint32_t i = 0; i < s->n; i++) {
    /* torch on the CPU returns 0x7F or 0xFF for a NaN depending on whether the element went
     * through its vectorized or scalar clamp (its position in the array): either is a NaN. */
    if (s->variant == 4 && isnan(s->inputs[i]) && (got[i] == 0x7f || got[i] == 0xff)) continue;
    if (got[i] != s->outputs[i]) {
      float in = s->input_kind == 1 ? s->inputs[i] : 0.0f;
      fprintf(stderr, "%s: variant %u scale %a input #%u (bf16 0x%04x / f32 %a): torch 0x%02x, aqs 0x%02x\n",
              what, s->variant, (double)s->scale, i, i, (double)in, s->outputs[i], got[i]);
      fail();
    }
  }
}

static void test_bf16_bit_exact(void **state) {
  (void)state;
  vec_file *vf = load_vectors();
  fill_all_bf16();
  uint8_t *got = malloc(65536);
  int checked_cuda = 0, checked_cpu = 0;
  for (size_t k = 0; k < vf->nsections; k++) {
    const vec_section *s = &vf->sections[k];
    if (s->input_kind != 0 || (s->variant != 0 && s->variant != 1)) continue;
    assert_int_equal(s->n, 65536);
    aqs_fp8_ref ref = s->variant == 0 ? AQS_FP8_REF_TORCH_CUDA : AQS_FP8_REF_TORCH_CPU;
    /* bulk (table) path */
    memset(got, 0xAA, 65536);
    aqs_fp8_quantize_bf16(all_bf16, 65536, s->scale, ref, got);
    expect_codes(s, got, "bf16 bulk");
    /* scalar path: chunks below the table threshold */
    memset(got, 0xAA, 65536);
    for (size_t off = 0; off < 65536; off += 1000)
      aqs_fp8_quantize_bf16(all_bf16 + off, off + 1000 <= 65536 ? 1000 : 65536 - off, s->scale,
                            ref, got + off);
    expect_codes(s, got, "bf16 scalar");
    if (s->variant == 0) checked_cuda++; else checked_cpu++;
  }
  assert_int_equal(checked_cuda, 8);
  assert_int_equal(checked_cpu, 8);
  free(got);
  free_vectors(vf);
}

static void test_f32_bit_exact(void **state) {
  (void)state;
  vec_file *vf = load_vectors();
  int checked = 0;
  for (size_t k = 0; k < vf->nsections; k++) {
    const vec_section *s = &vf->sections[k];
    if (s->input_kind != 1) continue;
    aqs_fp8_ref ref = s->variant == 3 ? AQS_FP8_REF_TORCH_CUDA : AQS_FP8_REF_TORCH_CPU;
    uint8_t *got = malloc(s->n);
    aqs_fp8_quantize_f32(s->inputs, s->n, s->scale, ref, got);
    expect_codes(s, got, "f32");
    free(got);
    checked++;
  }
  assert_int_equal(checked, 16);
  free_vectors(vf);
}

static void test_decode_table(void **state) {
  (void)state;
  vec_file *vf = load_vectors();
  int found = 0;
  for (size_t k = 0; k < vf->nsections; k++) {
    const vec_section *s = &vf->sections[k];
    if (s->variant != 6) continue;
    assert_int_equal(s->n, 256);
    for (int c = 0; c < 256; c++) {
      float want;
      memcpy(&want, s->outputs + 4 * c, 4);
      float got = aqs_fp8_e4m3_to_f32((uint8_t)c);
      if (isnan(want)) {
        assert_true(isnan(got));
        assert_true((c & 0x7f) == 0x7f);
      } else {
        assert_memory_equal(&got, &want, 4);
      }
    }
    found = 1;
  }
  assert_true(found);
  free_vectors(vf);
}

/* Dequantized error within the E4M3 rounding bound at every BF16 value inside the range:
 * F32 path <= half a step exactly; the BF16 path adds the BF16 roundings torch performs
 * (quotient, and on CUDA the scale; each <= 2^-8 relative): <= half a step + |x| * 2^-7 (+ the f32 rounding of the
 * final multiply). */
static void test_dequant_error_bound(void **state) {
  (void)state;
  static const float amaxes[] = {448.0f, 1.0f, 0.0123f, 3.5f, 1000.0f, 1e-4f};
  fill_all_bf16();
  uint8_t *q = malloc(65536);
  float *deq = malloc(65536 * sizeof(float));
  for (size_t a = 0; a < sizeof amaxes / sizeof amaxes[0]; a++) {
    float scale;
    assert_int_equal(aqs_fp8_scale_from_amax(amaxes[a], &scale, NULL), AQS_OK);
    for (int ref = 0; ref < 2; ref++) {
      aqs_fp8_quantize_bf16(all_bf16, 65536, scale, (aqs_fp8_ref)ref, q);
      aqs_fp8_dequantize(q, 65536, scale, deq);
      size_t checked = 0;
      for (uint32_t b = 0; b < 65536u; b++) {
        uint32_t u = b << 16;
        float x;
        memcpy(&x, &u, 4);
        if (!isfinite(x) || fabsf(x) > amaxes[a]) continue;
        double bound = 0.5 * aqs_fp8_e4m3_step(x / scale) * scale + fabs(x) * 0x1p-7 * 1.01 +
                       fabs((double)deq[b]) * 0x1p-24 + 1e-45;
        double err = fabs((double)deq[b] - (double)x);
        if (err > bound) {
          fprintf(stderr, "bf16 x=%a scale=%a ref=%d: deq %a err %g > bound %g\n", (double)x,
                  (double)scale, ref, (double)deq[b], err, bound);
          fail();
        }
        checked++;
      }
      assert_true(checked > 1000);
    }
    /* F32 path: strictly half a step (plus the f32 rounding of the final multiply) */
    for (uint32_t b = 0; b < 65536u; b += 7) {
      uint32_t u = (b << 16) | (b * 2654435761u >> 16);
      float x;
      memcpy(&x, &u, 4);
      if (!isfinite(x) || fabsf(x) > amaxes[a]) continue;
      uint8_t code;
      float back;
      aqs_fp8_quantize_f32(&x, 1, scale, AQS_FP8_REF_TORCH_CUDA, &code);
      aqs_fp8_dequantize(&code, 1, scale, &back);
      double v = (double)x / scale;
      double bound_unscaled = 0.5 * aqs_fp8_e4m3_step((float)v) * (1 + 0x1p-20) + 0x1p-140;
      assert_true(fabs((double)aqs_fp8_e4m3_to_f32(code) - (double)(x / scale)) <= bound_unscaled);
      assert_true(fabs((double)back - x) <= bound_unscaled * scale * (1 + 0x1p-20) + 1e-45);
    }
  }
  free(q);
  free(deq);
}

static void test_scale_from_amax(void **state) {
  (void)state;
  float s = -1;
  aqs_err e;
  aqs_err_clear(&e);
  assert_int_equal(aqs_fp8_scale_from_amax(0.0f, &s, &e), AQS_OK);
  assert_true(s == 1.0f);
  assert_int_equal(aqs_fp8_scale_from_amax(448.0f, &s, &e), AQS_OK);
  assert_true(s == 1.0f);
  assert_int_equal(aqs_fp8_scale_from_amax(1.0f, &s, &e), AQS_OK);
  assert_true(s == 1.0f / 448.0f);
  assert_int_equal(aqs_fp8_scale_from_amax(1e-45f, &s, &e), AQS_OK); /* underflows: 1.0 */
  assert_true(s == 1.0f);
  assert_int_equal(aqs_fp8_scale_from_amax(NAN, &s, &e), AQS_ERR_NUMERIC);
  assert_non_null(strstr(e.msg, "not a finite non-negative"));
  assert_int_equal(aqs_fp8_scale_from_amax(-2.0f, &s, &e), AQS_ERR_NUMERIC);
  assert_int_equal(aqs_fp8_scale_from_amax(INFINITY, &s, &e), AQS_ERR_NUMERIC);
}

static void test_special_values(void **state) {
  (void)state;
  assert_int_equal(aqs_fp8_e4m3_from_f32(448.0f, 0x7f), 0x7e);
  assert_int_equal(aqs_fp8_e4m3_from_f32(-1e9f, 0x7f), 0xfe);
  assert_int_equal(aqs_fp8_e4m3_from_f32(INFINITY, 0x7f), 0x7e);
  assert_int_equal(aqs_fp8_e4m3_from_f32(-0.0f, 0x7f), 0x80);
  assert_int_equal(aqs_fp8_e4m3_from_f32(NAN, 0x7f), 0x7f);
  assert_int_equal(aqs_fp8_e4m3_from_f32(1.0f, 0x7f), 0x38);
  assert_int_equal(aqs_fp8_e4m3_from_f32(0x1p-9f, 0x7f), 0x01);       /* min subnormal */
  assert_int_equal(aqs_fp8_e4m3_from_f32(0x1p-10f, 0x7f), 0x00);      /* tie -> even (0) */
  assert_int_equal(aqs_fp8_e4m3_from_f32(0x1.8p-9f, 0x7f), 0x02);     /* tie -> even (2) */
  assert_int_equal(aqs_fp8_e4m3_from_f32(1.0625f, 0x7f), 0x38);       /* tie between 1, 1.125 */
  assert_int_equal(aqs_fp8_e4m3_from_f32(1.1875f, 0x7f), 0x3a);       /* tie -> 1.25 (even) */
  uint16_t x[3] = {0x3f80, 0x7fc0, 0xffc0}; /* 1.0, NaN, -NaN */
  uint8_t q[3];
  aqs_fp8_quantize_bf16(x, 3, 1.0f, AQS_FP8_REF_TORCH_CUDA, q);
  assert_int_equal(q[0], 0x38);
  assert_int_equal(q[1], 0x7f);
  assert_int_equal(q[2], 0x7f);
  aqs_fp8_quantize_bf16(x, 3, 1.0f, AQS_FP8_REF_TORCH_CPU, q);
  assert_int_equal(q[1], 0xff);
  assert_true(isnan(aqs_fp8_amax_bf16(x, 3)));
  assert_true(aqs_fp8_amax_bf16(x, 1) == 1.0f);
  uint16_t y[4] = {0x3f80, 0xc040, 0x0000, 0x8000}; /* 1, -3, 0, -0 */
  assert_true(aqs_fp8_amax_bf16(y, 4) == 3.0f);
  assert_true(aqs_fp8_amax_bf16(y, 0) == 0.0f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_bf16_bit_exact),
    cmocka_unit_test(test_f32_bit_exact),
    cmocka_unit_test(test_decode_table),
    cmocka_unit_test(test_dequant_error_bound),
    cmocka_unit_test(test_scale_from_amax),
    cmocka_unit_test(test_special_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
