/* tests/gpu/test_fp8_codec.c: the CUDA FP8 E4M3 codec is bit-exact with the CPU codec
 * (kernels/fp8.h): all 65,536 BF16 patterns at several scales under both torch references, F32
 * inputs including specials and rounding ties, dequantization, and the ops-table entry points. */
#include "gpu_util.h"

#include "kernels/fp8.h"

static const float kScales[] = {1.0f, 0.5f, 3.0f / 448.0f, 1.0f / 448.0f, 0.0173f, 1e-5f,
                                117.3f, 2.5e-3f / 448.0f, 1e-38f};

static void check_codes(const char *what, const uint8_t *cpu, const uint8_t *gpu, size_t n, const float *inputs,
                        const uint16_t *bf16_inputs, float scale) {
  for (size_t i = 0; i < n; i++)
    if (cpu[i] != gpu[i]) {
      if (bf16_inputs)
        fail_msg("%s: scale %g: bf16 0x%04x -> cpu 0x%02x cuda 0x%02x", what, (double)scale, bf16_inputs[i], cpu[i],
                 gpu[i]);
      else
        fail_msg("%s: scale %g: x %.9g -> cpu 0x%02x cuda 0x%02x", what, (double)scale, (double)inputs[i], cpu[i],
                 gpu[i]);
    }
}

/* Every BF16 bit pattern (NaNs, Infs, subnormals included) at every scale, both references. */
static void test_all_bf16_patterns(void **state) {
  (void)state;
  const size_t n = 65536;
  uint16_t *x = malloc(n * sizeof *x);
  uint8_t *qc = malloc(n), *qg = malloc(n);
  for (size_t i = 0; i < n; i++) x[i] = (uint16_t)i;
  void *dx, *dq;
  aqs_err e;
  assert_int_equal(aqs_cuda_malloc(&dx, n * 2, "test", &e), AQS_OK);
  assert_int_equal(aqs_cuda_malloc(&dq, n, "test", &e), AQS_OK);
  assert_int_equal(aqs_cuda_copy_h2d(dx, x, n * 2, &e), AQS_OK);
  size_t checked = 0;
  for (size_t s = 0; s < sizeof kScales / sizeof kScales[0]; s++) {
    for (int ref = 0; ref < 2; ref++) {
      aqs_fp8_quantize_bf16(x, n, kScales[s], (aqs_fp8_ref)ref, qc);
      assert_int_equal(aqs_cuda_quantize_fp8_bf16(dq, dx, n, kScales[s], ref, &e), AQS_OK);
      assert_int_equal(aqs_cuda_copy_d2h(qg, dq, n, &e), AQS_OK);
      check_codes(ref ? "bf16 (torch-cpu ref)" : "bf16 (torch-cuda ref)", qc, qg, n, NULL, x, kScales[s]);
      checked += n;
    }
  }
  printf("bf16 -> e4m3: %zu codes bit-exact (65536 patterns x %zu scales x 2 references)\n", checked,
         sizeof kScales / sizeof kScales[0]);
  aqs_cuda_free(dx);
  aqs_cuda_free(dq);
  free(x);
  free(qc);
  free(qg);
}

/* F32 inputs: random over many magnitudes, every E4M3 value and the midpoints between neighbours
 * (ties), +-0, +-Inf, NaN, values around 448 and the subnormal border; then dequantization. */
static void test_f32_and_dequant(void **state) {
  (void)state;
  size_t n = 0, cap = 1 << 20;
  float *x = malloc(cap * sizeof *x);
  rng_seed(11);
  for (int i = 0; i < 600000; i++) x[n++] = rng_normal() * powf(2.0f, rng_uniform(-30.0f, 12.0f));
  for (int c = 0; c < 256; c++) {
    float v = aqs_fp8_e4m3_to_f32((uint8_t)c), w = aqs_fp8_e4m3_to_f32((uint8_t)(c + 1));
    x[n++] = v;
    if (isfinite(v) && isfinite(w) && (c & 0x7f) < 0x7e) x[n++] = v + (w - v) * 0.5f; /* exact midpoint */
    x[n++] = nextafterf(v, INFINITY);
    x[n++] = nextafterf(v, -INFINITY);
  }
  const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 448.0f, 464.0f, 463.99f, 480.0f, 1e30f,
                            -1e30f, 0x1p-6f, 0x1p-9f, 0x1p-10f, 0x1.8p-10f, 1e-45f, -1e-45f, 1e-39f};
  for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) x[n++] = specials[i];
  uint8_t *qc = malloc(n), *qg = malloc(n);
  float *dc = malloc(n * sizeof *dc), *dg = malloc(n * sizeof *dg);
  void *dx, *dq, *dd;
  aqs_err e;
  assert_int_equal(aqs_cuda_malloc(&dx, n * 4, "test", &e), AQS_OK);
  assert_int_equal(aqs_cuda_malloc(&dq, n, "test", &e), AQS_OK);
  assert_int_equal(aqs_cuda_malloc(&dd, n * 4, "test", &e), AQS_OK);
  assert_int_equal(aqs_cuda_copy_h2d(dx, x, n * 4, &e), AQS_OK);
  for (size_t s = 0; s < sizeof kScales / sizeof kScales[0]; s++) {
    for (int ref = 0; ref < 2; ref++) {
      aqs_fp8_quantize_f32(x, n, kScales[s], (aqs_fp8_ref)ref, qc);
      assert_int_equal(aqs_cuda_quantize_fp8_f32(dq, dx, n, kScales[s], ref, &e), AQS_OK);
      assert_int_equal(aqs_cuda_copy_d2h(qg, dq, n, &e), AQS_OK);
      check_codes(ref ? "f32 (torch-cpu ref)" : "f32 (torch-cuda ref)", qc, qg, n, x, NULL, kScales[s]);
    }
    aqs_fp8_dequantize(qc, n, kScales[s], dc);
    assert_int_equal(aqs_cuda_dequantize_fp8(dd, dq, n, kScales[s], &e), AQS_OK);
    assert_int_equal(aqs_cuda_copy_d2h(dg, dd, n * 4, &e), AQS_OK);
    for (size_t i = 0; i < n; i++)
      if (memcmp(&dc[i], &dg[i], 4) != 0 && !(isnan(dc[i]) && isnan(dg[i])))
        fail_msg("dequant: scale %g code 0x%02x: cpu %.9g cuda %.9g", (double)kScales[s], qc[i], (double)dc[i],
                 (double)dg[i]);
  }
  printf("f32 -> e4m3 and back: %zu values x %zu scales bit-exact\n", n, sizeof kScales / sizeof kScales[0]);
  aqs_cuda_free(dx);
  aqs_cuda_free(dq);
  aqs_cuda_free(dd);
  free(x);
  free(qc);
  free(qg);
  free(dc);
  free(dg);
}

/* The ops-table entry points (what the model code calls) agree with the CPU backend's. */
static void test_ops_entry_points(void **state) {
  (void)state;
  const size_t n = 100003;
  rng_seed(5);
  mirror xf = mirror_random_f32(n, 3.0f, 0);
  mirror xb = mirror_random_bf16(n, 3.0f);
  mirror q = mirror_new(NULL, n);
  FOR_BOTH { be->ops->quantize_fp8_f32(be, P(q), P(xf), n, 0.0213f); }
  compare_bytes("ops quantize_fp8_f32", &q, n);
  FOR_BOTH { be->ops->quantize_fp8_bf16(be, P(q), P(xb), n, 0.0213f); }
  compare_bytes("ops quantize_fp8_bf16", &q, n);
  mirror d = mirror_new(NULL, n * sizeof(float));
  FOR_BOTH { be->ops->quantize_fp8_f32(be, P(q), P(xf), n, 0.0213f); }
  FOR_BOTH { be->ops->dequantize_fp8(be, P(d), P(q), n, 0.0213f); }
  compare_bytes("ops dequantize_fp8 (FP8 KV cache)", &d, n * sizeof(float));
  mirror_free(&d);
  mirror_free(&xf);
  mirror_free(&xb);
  mirror_free(&q);
}

int main(void) {
  gpu_open_or_skip();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_all_bf16_patterns),
      cmocka_unit_test(test_f32_and_dequant),
      cmocka_unit_test(test_ops_entry_points),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  aqs_backend_close(g_cpu);
  aqs_backend_close(g_gpu);
  return rc;
}
