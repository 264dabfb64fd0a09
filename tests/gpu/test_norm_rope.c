/* tests/gpu/test_norm_rope.c: CUDA RMSNorm (forward, backward with and without accumulation) and
 * M-RoPE (forward and adjoint, distinct positions per axis) against the CPU twins, F32 and BF16. */
#include "gpu_util.h"

static void run_rmsnorm(aqs_precision prec, int N, int C) {
  gpu_set_precision(prec);
  int bf16 = prec == AQS_PREC_BF16;
  double tol = bf16 ? 8e-3 : 2e-6;
  mirror x = mirror_random_f32((size_t)N * C, 2.0f, bf16);
  mirror w = mirror_random_bf16((size_t)C, 1.0f);
  mirror out = mirror_new(NULL, (size_t)N * C * 4), rstd = mirror_new(NULL, (size_t)N * 4);
  FOR_BOTH { be->ops->rmsnorm_fwd(be, P(out), P(rstd), P(x), P(w), N, C, 1e-6f); }
  compare_f32(bf16 ? "rmsnorm_fwd bf16" : "rmsnorm_fwd f32", &out, (size_t)N * C, tol);
  compare_f32("rmsnorm rstd", &rstd, (size_t)N, 1e-5);
  mirror dout = mirror_random_f32((size_t)N * C, 1e-3f, bf16);
  for (int acc = 0; acc < 2; acc++) {
    mirror dx = mirror_random_f32((size_t)N * C, 1e-3f, bf16);
    FOR_BOTH { be->ops->rmsnorm_bwd(be, P(dx), P(dout), P(x), P(rstd), P(w), N, C, acc); }
    compare_f32(acc ? "rmsnorm_bwd +acc" : "rmsnorm_bwd", &dx, (size_t)N * C, bf16 ? 8e-3 : 1e-5);
    mirror_free(&dx);
  }
  mirror_free(&x);
  mirror_free(&w);
  mirror_free(&out);
  mirror_free(&rstd);
  mirror_free(&dout);
}

static void test_rmsnorm(void **state) {
  (void)state;
  rng_seed(21);
  run_rmsnorm(AQS_PREC_F32, 67, 2048);
  run_rmsnorm(AQS_PREC_F32, 5, 100);
  run_rmsnorm(AQS_PREC_BF16, 67, 2048);
}

static void run_rope(aqs_precision prec, int N, int H, int D, const int sec[3], int distinct_axes) {
  gpu_set_precision(prec);
  int bf16 = prec == AQS_PREC_BF16;
  int32_t *pos = malloc((size_t)3 * N * sizeof *pos);
  for (int i = 0; i < N; i++)
    for (int a = 0; a < 3; a++) pos[(size_t)a * N + i] = distinct_axes ? (i * (a + 1) + 3 * a) % 700 : i % 300;
  mirror p = mirror_new(pos, (size_t)3 * N * sizeof *pos);
  mirror x = mirror_random_f32((size_t)N * H * D, 1.0f, bf16);
  FOR_BOTH { be->ops->rope_fwd(be, P(x), P(p), N, H, D, sec, 1e6f); }
  char what[80];
  snprintf(what, sizeof what, "rope_fwd %s D=%d%s", bf16 ? "bf16" : "f32", D, distinct_axes ? " 3-axis" : "");
  /* F32: cos/sin of the CPU's libm vs the GPU's double-rounded values may differ by an ulp. */
  compare_f32(what, &x, (size_t)N * H * D, bf16 ? 8e-3 : 1e-6);
  FOR_BOTH { be->ops->rope_bwd(be, P(x), P(p), N, H, D, sec, 1e6f); }
  snprintf(what, sizeof what, "rope_bwd %s D=%d", bf16 ? "bf16" : "f32", D);
  compare_f32(what, &x, (size_t)N * H * D, bf16 ? 1.6e-2 : 2e-6);
  mirror_free(&p);
  mirror_free(&x);
  free(pos);
}

static void test_rope(void **state) {
  (void)state;
  rng_seed(22);
  const int sec128[3] = {16, 24, 24}, sec16[3] = {2, 3, 3};
  run_rope(AQS_PREC_F32, 130, 4, 128, sec128, 0);
  run_rope(AQS_PREC_F32, 130, 2, 128, sec128, 1);
  run_rope(AQS_PREC_F32, 31, 3, 16, sec16, 1);
  run_rope(AQS_PREC_BF16, 130, 4, 128, sec128, 1);
}

/* The adjoint really is the transpose: <rope(x), y> == <x, rope_bwd(y)> on the GPU. */
static void test_rope_adjoint(void **state) {
  (void)state;
  gpu_set_precision(AQS_PREC_F32);
  rng_seed(23);
  const int N = 40, H = 2, D = 64, sec[3] = {8, 12, 12};
  size_t n = (size_t)N * H * D;
  int32_t pos[3 * 40];
  for (int i = 0; i < 3 * N; i++) pos[i] = (i * 7) % 97;
  mirror p = mirror_new(pos, sizeof pos);
  mirror x = mirror_random_f32(n, 1.0f, 0), y = mirror_random_f32(n, 1.0f, 0);
  float *hx = malloc(n * 4), *hy = malloc(n * 4), *rx = malloc(n * 4), *ry = malloc(n * 4);
  g_gpu->ops->copy_d2h(g_gpu, hx, x.gpu, n * 4);
  g_gpu->ops->copy_d2h(g_gpu, hy, y.gpu, n * 4);
  g_gpu->ops->rope_fwd(g_gpu, x.gpu, p.gpu, N, H, D, sec, 1e4f);
  g_gpu->ops->rope_bwd(g_gpu, y.gpu, p.gpu, N, H, D, sec, 1e4f);
  g_gpu->ops->copy_d2h(g_gpu, rx, x.gpu, n * 4);
  g_gpu->ops->copy_d2h(g_gpu, ry, y.gpu, n * 4);
  gpu_sync_ok();
  double lhs = 0, rhs = 0;
  for (size_t i = 0; i < n; i++) {
    lhs += (double)rx[i] * hy[i];
    rhs += (double)hx[i] * ry[i];
  }
  printf("rope adjoint: <Rx,y> %.9g <x,R^T y> %.9g\n", lhs, rhs);
  assert_true(fabs(lhs - rhs) <= 1e-4 * (fabs(lhs) + 1.0));
  free(hx);
  free(hy);
  free(rx);
  free(ry);
  mirror_free(&p);
  mirror_free(&x);
  mirror_free(&y);
}

int main(void) {
  gpu_open_or_skip();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rmsnorm),
      cmocka_unit_test(test_rope),
      cmocka_unit_test(test_rope_adjoint),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  aqs_backend_close(g_cpu);
  aqs_backend_close(g_gpu);
  return rc;
}
