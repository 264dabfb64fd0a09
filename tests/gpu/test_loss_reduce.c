/* tests/gpu/test_loss_reduce.c: CUDA cross-entropy (loss + gradient, ignored rows, in place),
 * log-softmax, KL divergence, eval's per-row KL + argmax, amax (sync and async; NaN/Inf propagation) and the AutoQuantize gradient score
 * (clamp at +-1e10) against the CPU twins; the sums are the same bits on repeated runs. */
#include "gpu_util.h"

static void test_cross_entropy(void **state) {
  (void)state;
  rng_seed(51);
  const int N = 37, V = 151936 / 8;
  int32_t targets[37];
  for (int i = 0; i < N; i++) targets[i] = (i * 4099) % V;
  targets[5] = -1; /* ignored row */
  mirror tm = mirror_new(targets, sizeof targets);
  for (int p = 0; p < 2; p++) {
    gpu_set_precision(p ? AQS_PREC_BF16 : AQS_PREC_F32);
    mirror logits = mirror_random_f32((size_t)N * V, 3.0f, p), dl = mirror_new(NULL, (size_t)N * V * 4);
    double loss[2];
    FOR_BOTH { be->ops->cross_entropy(be, P(dl), P(logits), P(tm), N, V, 1.0f / 36.0f, &loss[side]); }
    compare_scalar(p ? "cross_entropy loss (bf16 mode)" : "cross_entropy loss", loss[0], loss[1], 1e-6);
    compare_f32(p ? "cross_entropy dlogits bf16" : "cross_entropy dlogits", &dl, (size_t)N * V, p ? 8e-3 : 1e-5);
    /* in place, and without gradient */
    double loss2[2], loss3[2];
    FOR_BOTH {
      be->ops->cross_entropy(be, NULL, P(logits), P(tm), N, V, 1.0f, &loss3[side]);
      be->ops->cross_entropy(be, P(logits), P(logits), P(tm), N, V, 1.0f / 36.0f, &loss2[side]);
    }
    compare_scalar("cross_entropy loss, no gradient", loss3[0], loss3[1], 1e-6);
    compare_scalar("cross_entropy loss, in place", loss2[0], loss2[1], 1e-6);
    compare_f32("cross_entropy in place", &logits, (size_t)N * V, p ? 8e-3 : 1e-5);
    /* same bits twice on the GPU */
    double again;
    g_gpu->ops->cross_entropy(g_gpu, NULL, dl.gpu, tm.gpu, N, V, 1.0f, &loss[0]);
    g_gpu->ops->cross_entropy(g_gpu, NULL, dl.gpu, tm.gpu, N, V, 1.0f, &again);
    assert_memory_equal(&loss[0], &again, sizeof again);
    mirror_free(&logits);
    mirror_free(&dl);
  }
  mirror_free(&tm);
}

static void test_log_softmax_kl(void **state) {
  (void)state;
  gpu_set_precision(AQS_PREC_F32);
  rng_seed(52);
  const int N = 29, V = 5003;
  mirror ref = mirror_random_f32((size_t)N * V, 2.0f, 0), logits = mirror_random_f32((size_t)N * V, 2.0f, 0);
  mirror logp = mirror_new(NULL, (size_t)N * V * 4);
  FOR_BOTH { be->ops->log_softmax(be, P(logp), P(ref), N, V); }
  compare_f32("log_softmax", &logp, (size_t)N * V, 1e-6);
  double kl[2];
  FOR_BOTH { be->ops->kl_div(be, P(logp), P(logits), N, V, &kl[side]); }
  compare_scalar("kl_div", kl[0], kl[1], 1e-5);
  /* -Inf reference log-probabilities contribute 0 */
  float minf = -INFINITY;
  FOR_BOTH {
    for (int r = 0; r < N; r += 3) be->ops->copy_h2d(be, (float *)P(logp) + (size_t)r * V + 17, &minf, 4);
    be->ops->kl_div(be, P(logp), P(logits), N, V, &kl[side]);
  }
  compare_scalar("kl_div with -inf reference terms", kl[0], kl[1], 1e-5);
  assert_true(isfinite(kl[1]));
  /* KL of a distribution with itself is ~0 */
  FOR_BOTH { be->ops->log_softmax(be, P(logp), P(logits), N, V); }
  FOR_BOTH { be->ops->kl_div(be, P(logp), P(logits), N, V, &kl[side]); }
  printf("kl(p||p): cpu %.3g cuda %.3g\n", kl[0], kl[1]);
  assert_true(fabs(kl[1]) < 1e-3);
  /* log_softmax in place */
  FOR_BOTH { be->ops->log_softmax(be, P(ref), P(ref), N, V); }
  compare_f32("log_softmax in place", &ref, (size_t)N * V, 1e-6);
  mirror_free(&ref);
  mirror_free(&logits);
  mirror_free(&logp);
}

/* kl_argmax_rows: per-row KL as kl_div's terms (their sum is kl_div's, same bits on each side),
 * argmax the first index of the row maximum (ties and a -inf row included), identical on both. */
static void test_kl_argmax_rows(void **state) {
  (void)state;
  gpu_set_precision(AQS_PREC_F32);
  rng_seed(57);
  const int N = 41, V = 151936 / 4;
  mirror ref = mirror_random_f32((size_t)N * V, 2.0f, 0), logits = mirror_random_f32((size_t)N * V, 2.0f, 0);
  mirror logp = mirror_new(NULL, (size_t)N * V * 4);
  float big = 50.0f, *minf_row = malloc((size_t)V * sizeof(float));
  for (int v = 0; v < V; v++) minf_row[v] = -INFINITY;
  FOR_BOTH {
    be->ops->log_softmax(be, P(logp), P(ref), N, V);
    /* row 3: a tie at 7 and 9000 (7 wins); row 4: the max in the last column; row 5: all -inf */
    be->ops->copy_h2d(be, (float *)P(logits) + 3 * (size_t)V + 9000, &big, 4);
    be->ops->copy_h2d(be, (float *)P(logits) + 3 * (size_t)V + 7, &big, 4);
    be->ops->copy_h2d(be, (float *)P(logits) + 4 * (size_t)V + V - 1, &big, 4);
    be->ops->copy_h2d(be, (float *)P(logits) + 5 * (size_t)V, minf_row, (size_t)V * sizeof(float));
  }
  free(minf_row);
  double *kl[2], sum[2];
  int32_t *am[2];
  for (int side = 0; side < 2; side++) {
    kl[side] = malloc((size_t)N * sizeof(double));
    am[side] = malloc((size_t)N * sizeof(int32_t));
  }
  const int M = 5; /* rows 0..4 (row 5 has no finite logit: its KL is not a number) */
  FOR_BOTH {
    be->ops->kl_argmax_rows(be, P(logp), P(logits), N, V, kl[side], am[side]);
    be->ops->kl_div(be, P(logp), P(logits), M, V, &sum[side]);
    double row_sum = 0.0;
    for (int r = 0; r < M; r++) row_sum += kl[side][r];
    compare_scalar("kl_argmax_rows sum vs kl_div (same side)", sum[side], row_sum, 1e-12);
  }
  for (int r = 0; r < N; r++)
    if (r != 5) compare_scalar("kl_argmax_rows row KL", kl[0][r], kl[1][r], 1e-5);
  assert_memory_equal(am[0], am[1], (size_t)N * sizeof(int32_t));
  assert_int_equal(am[1][3], 7);
  assert_int_equal(am[1][4], V - 1);
  assert_int_equal(am[1][5], 0);
  printf("kl_argmax_rows: %d rows, argmax identical, row KL within 1e-5\n", N);
  for (int side = 0; side < 2; side++) {
    free(kl[side]);
    free(am[side]);
  }
  mirror_free(&ref);
  mirror_free(&logits);
  mirror_free(&logp);
}

static void test_amax(void **state) {
  (void)state;
  rng_seed(53);
  const size_t n = 3000017;
  mirror x = mirror_random_f32(n, 1.0f, 0), xb = mirror_random_bf16(n, 1.0f);
  float a[2];
  FOR_BOTH { be->ops->amax_f32(be, P(x), n, &a[side]); }
  compare_scalar("amax_f32", a[0], a[1], 0.0);
  /* the asynchronous form: three results into backend memory, read back in one copy, same bits */
  float async_res[2][3];
  FOR_BOTH {
    float *d;
    aqs_err e;
    assert_int_equal(be->ops->alloc(be, 3 * sizeof(float), (void **)&d, &e), AQS_OK);
    be->ops->amax_f32_async(be, P(x), n, d);
    be->ops->amax_f32_async(be, P(x), 1000, d + 1);
    be->ops->amax_f32_async(be, (float *)P(x) + 5, n - 5, d + 2);
    be->ops->copy_d2h(be, async_res[side], d, sizeof async_res[side]);
    assert_int_equal(be->ops->sync(be, &e), AQS_OK);
    be->ops->free(be, d);
  }
  assert_memory_equal(&async_res[1][0], &a[1], sizeof(float));
  assert_memory_equal(async_res[0], async_res[1], sizeof async_res[0]);
  printf("amax_f32_async: 3 results bit-exact with the CPU and with amax_f32\n");
  FOR_BOTH { be->ops->amax_bf16(be, P(xb), n, &a[side]); }
  compare_scalar("amax_bf16", a[0], a[1], 0.0);
  FOR_BOTH { be->ops->amax_f32(be, P(x), 0, &a[side]); }
  assert_true(a[0] == 0.0f && a[1] == 0.0f);
  /* one Inf then one NaN far into the buffer */
  float inf = -INFINITY, nan = NAN;
  FOR_BOTH { be->ops->copy_h2d(be, (float *)P(x) + 2999999, &inf, 4); }
  FOR_BOTH { be->ops->amax_f32(be, P(x), n, &a[side]); }
  assert_true(isinf(a[1]) && a[1] > 0 && isinf(a[0]));
  FOR_BOTH { be->ops->copy_h2d(be, (float *)P(x) + 12345, &nan, 4); }
  FOR_BOTH { be->ops->amax_f32(be, P(x), n, &a[side]); }
  assert_true(isnan(a[1]) && isnan(a[0]));
  uint16_t bnan = 0xffc1;
  FOR_BOTH { be->ops->copy_h2d(be, (uint16_t *)P(xb) + 7, &bnan, 2); }
  FOR_BOTH { be->ops->amax_bf16(be, P(xb), n, &a[side]); }
  assert_true(isnan(a[1]) && isnan(a[0]));
  /* a tensor whose largest |x| is subnormal: kept, not flushed to 0 (the .ftz forms of fmaxf and
   * fabsf under --use_fast_math flushed it), in the sync, async and BF16 forms */
  float sub[1001] = {0};
  sub[3] = 1e-40f;
  sub[500] = -3e-39f;
  sub[1000] = 5e-45f;
  uint16_t subb[9] = {0, 0x0001, 0x8023, 0x0004, 0, 0, 0, 0, 0}; /* BF16 subnormals; largest 0x23 */
  float sa[2], sas[2], sab[2];
  FOR_BOTH {
    float *d;
    aqs_err e;
    assert_int_equal(be->ops->alloc(be, (1001 + 16) * sizeof(float), (void **)&d, &e), AQS_OK);
    be->ops->copy_h2d(be, d, sub, sizeof sub);
    be->ops->copy_h2d(be, d + 1001, subb, sizeof subb);
    be->ops->amax_f32(be, d, 1001, &sa[side]);
    be->ops->amax_f32_async(be, d, 1001, d + 1001 + 5);
    be->ops->copy_d2h(be, &sas[side], d + 1001 + 5, 4);
    be->ops->amax_bf16(be, (const uint16_t *)(d + 1001), 9, &sab[side]);
    assert_int_equal(be->ops->sync(be, &e), AQS_OK);
    be->ops->free(be, d);
  }
  const float want = 3e-39f, wantb = 0x23 * 0x1p-133f;
  assert_memory_equal(&sa[0], &want, 4);
  assert_memory_equal(&sa[1], &want, 4);
  assert_memory_equal(&sas[1], &want, 4);
  assert_memory_equal(&sab[0], &wantb, 4);
  assert_memory_equal(&sab[1], &wantb, 4);
  printf("amax of subnormal tensors: %g (F32, sync and async) and %g (BF16) on both backends\n", sa[1], sab[1]);
  mirror_free(&x);
  mirror_free(&xb);
}

static void test_grad_score(void **state) {
  (void)state;
  rng_seed(54);
  const size_t n = 2000003;
  mirror g = mirror_random_f32(n, 1e-3f, 0), y = mirror_random_f32(n, 1.0f, 0), yq = mirror_random_f32(n, 1.0f, 0);
  double s[2];
  FOR_BOTH { be->ops->grad_score(be, P(g), P(y), P(yq), n, &s[side]); }
  compare_scalar("grad_score", s[0], s[1], 1e-9);
  double async_s[2];
  FOR_BOTH {
    double *d;
    aqs_err e;
    assert_int_equal(be->ops->alloc(be, sizeof(double), (void **)&d, &e), AQS_OK);
    be->ops->grad_score_async(be, P(g), P(y), P(yq), n, d);
    be->ops->copy_d2h(be, &async_s[side], d, sizeof(double));
    assert_int_equal(be->ops->sync(be, &e), AQS_OK);
    be->ops->free(be, d);
  }
  /* the asynchronous form: the same bits as the synchronous one on each backend */
  assert_memory_equal(&async_s[0], &s[0], sizeof(double));
  assert_memory_equal(&async_s[1], &s[1], sizeof(double));
  printf("grad_score_async: same bits as grad_score on both backends\n");
  double again;
  g_gpu->ops->grad_score(g_gpu, g.gpu, y.gpu, yq.gpu, n, &again);
  assert_memory_equal(&s[1], &again, sizeof again);
  /* a huge product is clamped at 1e10 (so contributes 1e20) */
  float big = 1e30f;
  FOR_BOTH { be->ops->copy_h2d(be, (float *)P(g) + 1000, &big, 4); }
  FOR_BOTH { be->ops->grad_score(be, P(g), P(y), P(yq), n, &s[side]); }
  compare_scalar("grad_score with a clamped term", s[0], s[1], 1e-9);
  assert_true(s[1] >= 1e20 && s[1] < 1.0001e20);
  mirror_free(&g);
  mirror_free(&y);
  mirror_free(&yq);
}

int main(void) {
  gpu_open_or_skip();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cross_entropy),
      cmocka_unit_test(test_log_softmax_kl),
      cmocka_unit_test(test_kl_argmax_rows),
      cmocka_unit_test(test_amax),
      cmocka_unit_test(test_grad_score),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  aqs_backend_close(g_cpu);
  aqs_backend_close(g_gpu);
  return rc;
}
