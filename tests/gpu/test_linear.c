/* tests/gpu/test_linear.c: CUDA linear layers (cuBLASLt) against the CPU twin: y = x W^T + b in
 * F32 and BF16 modes, the input gradient with and without accumulation, the FP8 E4M3 GEMM with
 * per-tensor scales (tensor-core shapes and the odd ones decoded to BF16); plus the out-of-memory
 * error a user can reach. */
#include "gpu_util.h"

static void run_linear(aqs_precision prec, int N, int K, int M, int with_bias, double tol) {
  gpu_set_precision(prec);
  int bf16 = prec == AQS_PREC_BF16;
  mirror x = mirror_random_f32((size_t)N * K, 1.0f, bf16);
  mirror w = mirror_random_bf16((size_t)M * K, 0.05f);
  mirror b = mirror_random_bf16((size_t)M, 0.5f);
  mirror y = mirror_new(NULL, (size_t)N * M * sizeof(float));
  FOR_BOTH { be->ops->linear(be, P(y), P(x), P(w), with_bias ? P(b) : NULL, N, K, M); }
  char what[96];
  snprintf(what, sizeof what, "linear %s N=%d K=%d M=%d%s", bf16 ? "bf16" : "f32", N, K, M, with_bias ? " +bias" : "");
  compare_f32(what, &y, (size_t)N * M, tol);
  mirror_free(&x);
  mirror_free(&w);
  mirror_free(&b);
  mirror_free(&y);
}

static void test_linear_f32(void **state) {
  (void)state;
  rng_seed(1);
  run_linear(AQS_PREC_F32, 77, 256, 96, 1, 1e-5);
  run_linear(AQS_PREC_F32, 64, 200, 72, 0, 1e-5);
  run_linear(AQS_PREC_F32, 1, 2048, 256, 1, 1e-5);
}

static void test_linear_bf16(void **state) {
  (void)state;
  rng_seed(2);
  run_linear(AQS_PREC_BF16, 77, 256, 96, 1, 8e-3);
  run_linear(AQS_PREC_BF16, 130, 512, 160, 0, 8e-3);
}

static void run_bwd(aqs_precision prec, int N, int K, int M, int accumulate, double tol) {
  gpu_set_precision(prec);
  int bf16 = prec == AQS_PREC_BF16;
  mirror dy = mirror_random_f32((size_t)N * M, 1e-3f, bf16);
  mirror w = mirror_random_bf16((size_t)M * K, 0.05f);
  mirror dx = mirror_random_f32((size_t)N * K, 1e-4f, bf16);
  FOR_BOTH { be->ops->linear_bwd_input(be, P(dx), P(dy), P(w), N, K, M, accumulate); }
  char what[96];
  snprintf(what, sizeof what, "linear_bwd_input %s N=%d K=%d M=%d%s", bf16 ? "bf16" : "f32", N, K, M,
           accumulate ? " +acc" : "");
  compare_f32(what, &dx, (size_t)N * K, tol);
  mirror_free(&dy);
  mirror_free(&w);
  mirror_free(&dx);
}

static void test_linear_bwd_input(void **state) {
  (void)state;
  rng_seed(3);
  run_bwd(AQS_PREC_F32, 77, 256, 96, 0, 1e-5);
  run_bwd(AQS_PREC_F32, 77, 256, 96, 1, 1e-5);
  run_bwd(AQS_PREC_BF16, 50, 128, 320, 0, 8e-3);
  run_bwd(AQS_PREC_BF16, 50, 128, 320, 1, 8e-3);
}

/* One FP8 fake-quant linear, CUDA against the CPU twin: codes byte-equal, outputs within tol. */
static void run_linear_fp8(aqs_precision prec, int N, int K, int M) {
  gpu_set_precision(prec);
  mirror x = mirror_random_f32((size_t)N * K, 1.0f, 1);
  mirror w = mirror_random_bf16((size_t)M * K, 0.05f);
  mirror b = mirror_random_bf16((size_t)M, 0.5f);
  mirror xq = mirror_new(NULL, (size_t)N * K), wq = mirror_new(NULL, (size_t)M * K);
  mirror y = mirror_new(NULL, (size_t)N * M * sizeof(float));
  const float x_scale = 4.5f / 448.0f, w_scale = 0.21f / 448.0f;
  FOR_BOTH {
    be->ops->quantize_fp8_f32(be, P(xq), P(x), (size_t)N * K, x_scale);
    be->ops->quantize_fp8_bf16(be, P(wq), P(w), (size_t)M * K, w_scale);
    be->ops->linear_fp8(be, P(y), P(xq), x_scale, P(wq), w_scale, P(b), N, K, M);
  }
  char what[96];
  int bf16 = prec == AQS_PREC_BF16;
  snprintf(what, sizeof what, "linear_fp8 %s N=%d K=%d M=%d +bias", bf16 ? "bf16" : "f32", N, K, M);
  compare_bytes("fp8 activations", &xq, (size_t)N * K);
  compare_bytes("fp8 weights", &wq, (size_t)M * K);
  compare_f32(what, &y, (size_t)N * M, bf16 ? 8e-3 : 1e-5);
  mirror_free(&x);
  mirror_free(&w);
  mirror_free(&b);
  mirror_free(&xq);
  mirror_free(&wq);
  mirror_free(&y);
}

static void test_linear_fp8(void **state) {
  (void)state;
  rng_seed(4);
  run_linear_fp8(AQS_PREC_F32, 93, 256, 112);
  run_linear_fp8(AQS_PREC_BF16, 93, 256, 112); /* FP8 tensor cores */
}

/* Shapes the FP8 tensor cores refuse (in or out features not a multiple of 16) decode to BF16 in
 * BF16 mode too: the vision MLPs (small 64 <-> 172, 3B 1280 <-> 3420), the patch embedding's 1176,
 * a tiny odd layer, odd token counts. */
static void test_linear_fp8_odd_shapes(void **state) {
  (void)state;
  rng_seed(11);
  static const int shapes[][3] = {{37, 64, 172}, {37, 172, 64}, {29, 1280, 3420}, {29, 3420, 1280},
                                  {33, 1176, 80}, {8, 40, 64}, {5, 24, 9}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    run_linear_fp8(AQS_PREC_BF16, shapes[i][0], shapes[i][1], shapes[i][2]);
    run_linear_fp8(AQS_PREC_F32, shapes[i][0], shapes[i][1], shapes[i][2]);
  }
}

/* Determinism: the same GEMM twice gives the same bits. */
static void test_linear_deterministic(void **state) {
  (void)state;
  gpu_set_precision(AQS_PREC_F32);
  rng_seed(9);
  const int N = 256, K = 1024, M = 512;
  mirror x = mirror_random_f32((size_t)N * K, 1.0f, 0);
  mirror w = mirror_random_bf16((size_t)M * K, 0.05f);
  size_t bytes = (size_t)N * M * sizeof(float);
  float *a = malloc(bytes), *b = malloc(bytes);
  void *y;
  aqs_err e;
  assert_int_equal(g_gpu->ops->alloc(g_gpu, bytes, &y, &e), AQS_OK);
  g_gpu->ops->linear(g_gpu, y, x.gpu, w.gpu, NULL, N, K, M);
  g_gpu->ops->copy_d2h(g_gpu, a, y, bytes);
  g_gpu->ops->linear(g_gpu, y, x.gpu, w.gpu, NULL, N, K, M);
  g_gpu->ops->copy_d2h(g_gpu, b, y, bytes);
  gpu_sync_ok();
  assert_memory_equal(a, b, bytes);
  g_gpu->ops->free(g_gpu, y);
  free(a);
  free(b);
  mirror_free(&x);
  mirror_free(&w);
}

/* The backend reuses the BF16 split of a linear's input across consecutive linears (q/k/v):
 * results must follow the input when it changes in between (through any op). */
static void test_shared_input_split(void **state) {
  (void)state;
  rng_seed(10);
  const int N = 40, K = 128, M = 64;
  for (int p = 0; p < 2; p++) {
    gpu_set_precision(p ? AQS_PREC_BF16 : AQS_PREC_F32);
    mirror x = mirror_random_f32((size_t)N * K, 1.0f, p), b = mirror_random_f32((size_t)N * K, 1.0f, p);
    mirror w1 = mirror_random_bf16((size_t)M * K, 0.05f), w2 = mirror_random_bf16((size_t)M * K, 0.05f);
    mirror y1 = mirror_new(NULL, (size_t)N * M * 4), y2 = mirror_new(NULL, (size_t)N * M * 4);
    FOR_BOTH {
      be->ops->linear(be, P(y1), P(x), P(w1), NULL, N, K, M);
      be->ops->linear(be, P(y2), P(x), P(w2), NULL, N, K, M); /* same input: split reused */
    }
    compare_f32("linear, shared input (1st)", &y1, (size_t)N * M, p ? 8e-3 : 1e-5);
    compare_f32("linear, shared input (2nd)", &y2, (size_t)N * M, p ? 8e-3 : 1e-5);
    FOR_BOTH {
      be->ops->add(be, P(x), P(x), P(b), (size_t)N * K); /* x changes in place */
      be->ops->linear(be, P(y1), P(x), P(w1), NULL, N, K, M);
    }
    compare_f32("linear after the input changed (add)", &y1, (size_t)N * M, p ? 8e-3 : 1e-5);
    float *h = malloc((size_t)N * K * 4);
    for (int i = 0; i < N * K; i++) h[i] = round_to_bf16(rng_normal());
    FOR_BOTH {
      be->ops->copy_h2d(be, P(x), h, (size_t)N * K * 4);
      be->ops->linear(be, P(y2), P(x), P(w2), NULL, N, K, M);
    }
    compare_f32("linear after the input changed (h2d)", &y2, (size_t)N * M, p ? 8e-3 : 1e-5);
    free(h);
    mirror_free(&x);
    mirror_free(&b);
    mirror_free(&w1);
    mirror_free(&w2);
    mirror_free(&y1);
    mirror_free(&y2);
  }
}

/* Asking for more memory than the GPU has: AQS_ERR_NOMEM naming the size and what to reduce. */
static void test_out_of_memory_message(void **state) {
  (void)state;
  void *p = NULL;
  aqs_err e;
  aqs_err_clear(&e);
  assert_int_equal(g_gpu->ops->sync(g_gpu, &e), AQS_OK);
  size_t huge = (size_t)1 << 50; /* 1 PiB */
  aqs_status st = g_gpu->ops->alloc(g_gpu, huge, &p, &e);
  printf("OOM message: %s\n", e.msg);
  assert_int_equal(st, AQS_ERR_NOMEM);
  assert_null(p);
  assert_non_null(strstr(e.msg, "out of GPU memory allocating 1073741824.0 MiB"));
  assert_non_null(strstr(e.msg, "reduce the batch size"));
  /* the backend still works afterwards */
  assert_int_equal(g_gpu->ops->alloc(g_gpu, 4096, &p, &e), AQS_OK);
  g_gpu->ops->free(g_gpu, p);
}

int main(void) {
  gpu_open_or_skip();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_linear_f32),
      cmocka_unit_test(test_linear_bf16),
      cmocka_unit_test(test_linear_bwd_input),
      cmocka_unit_test(test_linear_fp8),
      cmocka_unit_test(test_linear_fp8_odd_shapes),
      cmocka_unit_test(test_linear_deterministic),
      cmocka_unit_test(test_shared_input_split),
      cmocka_unit_test(test_out_of_memory_message),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  aqs_backend_close(g_cpu);
  aqs_backend_close(g_gpu);
  return rc;
}
