/* tests/unit/compute/test_bf16_ops.c: the CPU backend's BF16 activation storage ops (kernels/ops.h
 * rmsnorm_fwd_b, linear_b, rope_fwd_b, add_b, swiglu_fwd_b, amax_bf16_async, attention_fwd_b)
 * against their definition: the F32-buffer twin in AQS_PREC_BF16 on the upcast inputs, bit for bit, on odd sizes;
 * the fused amax equals the output's amax, folds into the value already there, NaN/Inf win. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/bf16.h"

static aqs_backend *be; /* cpu, F32 precision on purpose: the _b ops must ignore be->precision */

/* xorshift64; uniform in [-1, 1). */
static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static float urand(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float)((double)(rng_state >> 11) * 0x1p-52) - 1.0f;
}
static aqs_bf16 *rand_bf16(size_t n, float scale) {
  aqs_bf16 *b = malloc((n ? n : 1) * sizeof *b);
  for (size_t i = 0; i < n; i++) b[i] = aqs_f32_to_bf16(urand() * scale);
  return b;
}
static float *upcast(const aqs_bf16 *b, size_t n) {
  float *f = malloc((n ? n : 1) * sizeof *f);
  for (size_t i = 0; i < n; i++) f[i] = aqs_bf16_to_f32(b[i]);
  return f;
}
/* F32 values that are BF16 values (the residual stream in BF16 mode). */
static float *rand_f32_bf16(size_t n, float scale) {
  aqs_bf16 *b = rand_bf16(n, scale);
  float *f = upcast(b, n);
  free(b);
  return f;
}

/* The F32 twin's output (BF16 mode) must be the _b op's output, bit for bit. */
static void assert_bf16_equals_f32(const char *what, const aqs_bf16 *got, const float *want, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float g = aqs_bf16_to_f32(got[i]);
    if (memcmp(&g, &want[i], sizeof g) != 0) {
      print_error("%s: element %zu of %zu: _b op %.9g (0x%04x), F32 twin in BF16 mode %.9g\n", what, i, n, (double)g,
                  got[i], (double)want[i]);
      fail();
    }
  }
}
static float amax_of(const float *f, size_t n) {
  float m;
  be->ops->amax_f32(be, f, n, &m);
  return m;
}
static float amax_of_bf16(const aqs_bf16 *b, size_t n) {
  float m;
  be->ops->amax_bf16(be, b, n, &m);
  return m;
}
/* A fused amax that started at 0 holds exactly the output's amax. */
static void assert_amax(const char *what, float got, float want) {
  if (!(memcmp(&got, &want, sizeof got) == 0 || (isnan(got) && isnan(want)))) {
    print_error("%s: fused amax %.9g, amax of the output %.9g\n", what, (double)got, (double)want);
    fail();
  }
}

static void check_rmsnorm(int N, int C) {
  size_t n = (size_t)N * (size_t)C;
  float *x = rand_f32_bf16(n, 3.0f), *want = malloc(n * sizeof *want), *rstd_want = malloc((size_t)N * 4);
  float *rstd = malloc((size_t)N * 4);
  aqs_bf16 *w = rand_bf16((size_t)C, 1.5f), *out = malloc(n * sizeof *out);
  be->precision = AQS_PREC_BF16;
  be->ops->rmsnorm_fwd(be, want, rstd_want, x, w, N, C, 1e-6f);
  be->precision = AQS_PREC_F32;
  float amax = 0.0f;
  be->ops->rmsnorm_fwd_b(be, out, rstd, x, w, N, C, 1e-6f, &amax);
  assert_bf16_equals_f32("rmsnorm_fwd_b", out, want, n);
  assert_memory_equal(rstd, rstd_want, (size_t)N * 4);
  assert_amax("rmsnorm_fwd_b", amax, amax_of(want, n));
  memset(out, 0, n * sizeof *out);
  be->ops->rmsnorm_fwd_b(be, out, NULL, x, w, N, C, 1e-6f, NULL); /* rstd and amax optional */
  assert_bf16_equals_f32("rmsnorm_fwd_b (no rstd)", out, want, n);
  free(x); free(want); free(rstd_want); free(rstd); free(w); free(out);
}

static void test_rmsnorm_b(void **state) {
  (void)state;
  check_rmsnorm(1, 13);
  check_rmsnorm(7, 37);
  check_rmsnorm(33, 1001);
  check_rmsnorm(3, 2048);
}

static void check_linear(int N, int K, int M, int with_bias) {
  size_t xn = (size_t)N * (size_t)K, yn = (size_t)N * (size_t)M;
  aqs_bf16 *x = rand_bf16(xn, 2.0f), *w = rand_bf16((size_t)M * (size_t)K, 0.3f);
  aqs_bf16 *bias = with_bias ? rand_bf16((size_t)M, 1.0f) : NULL, *y = malloc(yn * sizeof *y);
  float *xf = upcast(x, xn), *want = malloc(yn * sizeof *want);
  be->precision = AQS_PREC_BF16;
  be->ops->linear(be, want, xf, w, bias, N, K, M);
  be->precision = AQS_PREC_F32;
  be->ops->linear_b(be, y, x, w, bias, N, K, M);
  assert_bf16_equals_f32(with_bias ? "linear_b (bias)" : "linear_b", y, want, yn);
  free(x); free(w); free(bias); free(y); free(xf); free(want);
}

static void test_linear_b(void **state) {
  (void)state;
  check_linear(5, 37, 19, 1);
  check_linear(5, 37, 19, 0);
  check_linear(1, 8, 3, 1);
  check_linear(67, 129, 45, 1); /* more than one CPU row block */
}

static void check_rope(int N, int H, int D, const int sec[3]) {
  size_t n = (size_t)N * (size_t)H * (size_t)D;
  int32_t *pos = malloc((size_t)3 * (size_t)N * sizeof *pos);
  for (int i = 0; i < N; i++)
    for (int a = 0; a < 3; a++) pos[(size_t)a * (size_t)N + (size_t)i] = (i * (a + 2) + 5 * a) % 211;
  aqs_bf16 *x = rand_bf16(n, 2.0f);
  float *want = upcast(x, n);
  be->precision = AQS_PREC_BF16;
  be->ops->rope_fwd(be, want, pos, N, H, D, sec, 1e6f);
  be->precision = AQS_PREC_F32;
  float amax = 0.0f;
  be->ops->rope_fwd_b(be, x, pos, N, H, D, sec, 1e6f, &amax);
  assert_bf16_equals_f32("rope_fwd_b", x, want, n);
  assert_amax("rope_fwd_b", amax, amax_of(want, n));
  free(pos); free(x); free(want);
}

static void test_rope_b(void **state) {
  (void)state;
  const int sec16[3] = {2, 3, 3}, sec128[3] = {16, 24, 24}, sec12[3] = {1, 2, 3};
  check_rope(9, 3, 16, sec16);
  check_rope(5, 2, 128, sec128);
  check_rope(1, 1, 12, sec12);
}

static void check_add(size_t n, int in_place) {
  float *a = rand_f32_bf16(n, 4.0f), *want = malloc(n * sizeof *want), *out = malloc(n * sizeof *out);
  aqs_bf16 *b = rand_bf16(n, 4.0f);
  float *bf = upcast(b, n);
  be->precision = AQS_PREC_BF16;
  be->ops->add(be, want, a, bf, n);
  be->precision = AQS_PREC_F32;
  float amax = 0.0f;
  float *dst = in_place ? a : out;
  be->ops->add_b(be, dst, a, b, n, &amax);
  assert_memory_equal(dst, want, n * sizeof *want);
  assert_amax("add_b", amax, amax_of(want, n));
  free(a); free(want); free(out); free(b); free(bf);
}

static void test_add_b(void **state) {
  (void)state;
  check_add(1001, 0);
  check_add(1001, 1);
  check_add(7, 1);
  /* not already BF16 values in a: the sum is still rounded once */
  float a[3] = {1.0f + 0x1p-20f, -3.0f, 0.0f}, out[3];
  aqs_bf16 b[3] = {aqs_f32_to_bf16(1.0f), aqs_f32_to_bf16(1.5f), aqs_f32_to_bf16(-0.25f)};
  be->ops->add_b(be, out, a, b, 3, NULL);
  assert_true(out[0] == 2.0f && out[1] == -1.5f && out[2] == -0.25f);
}

static void check_swiglu(size_t n, int alias) {
  aqs_bf16 *gate = rand_bf16(n, 6.0f), *up = rand_bf16(n, 2.0f), *out = malloc(n * sizeof *out);
  float *gf = upcast(gate, n), *uf = upcast(up, n), *want = malloc(n * sizeof *want);
  be->precision = AQS_PREC_BF16;
  be->ops->swiglu_fwd(be, want, gf, uf, n);
  be->precision = AQS_PREC_F32;
  aqs_bf16 *dst = alias == 1 ? gate : alias == 2 ? up : out;
  float amax = 0.0f;
  be->ops->swiglu_fwd_b(be, dst, gate, up, n, &amax);
  assert_bf16_equals_f32(alias ? "swiglu_fwd_b (in place)" : "swiglu_fwd_b", dst, want, n);
  assert_amax("swiglu_fwd_b", amax, amax_of(want, n));
  free(gate); free(up); free(out); free(gf); free(uf); free(want);
}

static void test_swiglu_b(void **state) {
  (void)state;
  check_swiglu(1003, 0);
  check_swiglu(1003, 1);
  check_swiglu(1003, 2);
  check_swiglu(5, 0);
}

/* amax_bf16_async folds into the value already there; NaN beats Inf beats finite. */
static void test_amax_fold(void **state) {
  (void)state;
  const size_t n = 999;
  aqs_bf16 *x = rand_bf16(n, 5.0f);
  x[500] = aqs_f32_to_bf16(-9.5f);
  float m = 0.0f;
  be->ops->amax_bf16_async(be, x, n, &m);
  assert_true(m == 9.5f);
  assert_amax("amax_bf16_async", m, amax_of_bf16(x, n));
  m = 100.0f; /* a larger value already there stays */
  be->ops->amax_bf16_async(be, x, n, &m);
  assert_true(m == 100.0f);
  m = 2.0f;
  be->ops->amax_bf16_async(be, x, n, &m);
  assert_true(m == 9.5f);
  m = 0.0f;
  be->ops->amax_bf16_async(be, x, 0, &m); /* empty: unchanged */
  assert_true(m == 0.0f);
  x[17] = aqs_f32_to_bf16(-INFINITY);
  m = 100.0f;
  be->ops->amax_bf16_async(be, x, n, &m);
  assert_true(isinf(m) && m > 0);
  x[300] = aqs_f32_to_bf16(NAN);
  be->ops->amax_bf16_async(be, x, n, &m); /* Inf already there, NaN in x: NaN */
  assert_true(isnan(m));
  x[300] = aqs_f32_to_bf16(1.0f);
  be->ops->amax_bf16_async(be, x, n, &m); /* NaN already there stays NaN */
  assert_true(isnan(m));
  m = INFINITY;
  x[17] = aqs_f32_to_bf16(1.0f);
  be->ops->amax_bf16_async(be, x, n, &m); /* Inf already there beats finite values */
  assert_true(isinf(m));
  free(x);
}

/* Non-finite outputs reach the fused amax of each op. */
static void test_fused_amax_nonfinite(void **state) {
  (void)state;
  const size_t n = 37;
  float *a = rand_f32_bf16(n, 1.0f), *out = malloc(n * sizeof *out);
  aqs_bf16 *b = rand_bf16(n, 1.0f), *ob = malloc(n * sizeof *ob);
  float m = 3.0f;
  a[5] = INFINITY;
  be->ops->add_b(be, out, a, b, n, &m);
  assert_true(isinf(out[5]) && isinf(m));
  a[6] = NAN;
  be->ops->add_b(be, out, a, b, n, &m);
  assert_true(isnan(out[6]) && isnan(m));
  /* swiglu: NaN gate -> NaN out and amax; a huge up overflows BF16 -> Inf */
  aqs_bf16 *gate = rand_bf16(n, 1.0f), *up = rand_bf16(n, 1.0f);
  gate[3] = aqs_f32_to_bf16(4.0f);
  up[3] = aqs_f32_to_bf16(3.0e38f);
  m = 0.0f;
  be->ops->swiglu_fwd_b(be, ob, gate, up, n, &m);
  assert_true(isinf(aqs_bf16_to_f32(ob[3])) && isinf(m));
  gate[9] = aqs_f32_to_bf16(NAN);
  m = 0.0f;
  be->ops->swiglu_fwd_b(be, ob, gate, up, n, &m);
  assert_true(isnan(aqs_bf16_to_f32(ob[9])) && isnan(m));
  /* rmsnorm: a NaN in a row makes that row NaN and the amax NaN */
  aqs_bf16 w[37];
  for (size_t i = 0; i < n; i++) w[i] = aqs_f32_to_bf16(1.0f);
  a[6] = 1.0f;
  a[5] = NAN;
  m = 0.0f;
  be->ops->rmsnorm_fwd_b(be, ob, NULL, a, w, 1, (int)n, 1e-6f, &m);
  assert_true(isnan(m));
  /* rope: an Inf input gives a non-finite rotation, which the amax reports */
  const int sec[3] = {1, 1, 0};
  int32_t pos[3] = {1, 1, 1};
  aqs_bf16 q[4] = {aqs_f32_to_bf16(INFINITY), aqs_f32_to_bf16(1.0f), aqs_f32_to_bf16(1.0f), aqs_f32_to_bf16(1.0f)};
  m = 0.0f;
  be->ops->rope_fwd_b(be, q, pos, 1, 1, 4, sec, 10000.0f, &m);
  assert_true(!isfinite(m));
  free(a); free(out); free(b); free(ob); free(gate); free(up);
}

/* attention_fwd_b: out and lse of attention_fwd in BF16 mode, on packed sequences on and around the
 * 64-token tile edges, GQA. */
static void check_attention(int B, const int *lens, int Hq, int Hkv, int D, float scale) {
  int32_t cu[16] = {0};
  int max_len = 0;
  for (int s = 0; s < B; s++) {
    cu[s + 1] = cu[s] + lens[s];
    if (lens[s] > max_len) max_len = lens[s];
  }
  const int N = cu[B];
  const size_t nq = (size_t)N * Hq * D, nk = (size_t)N * Hkv * D, nl = (size_t)N * Hq;
  aqs_bf16 *q = rand_bf16(nq, scale), *k = rand_bf16(nk, scale), *v = rand_bf16(nk, 1.0f);
  float *qf = upcast(q, nq), *kf = upcast(k, nk), *vf = upcast(v, nk);
  float *want = malloc(nq * sizeof *want), *want_lse = malloc(nl * 4), *lse = malloc(nl * 4);
  aqs_bf16 *out = malloc(nq * sizeof *out), *out2 = malloc(nq * sizeof *out2);
  be->precision = AQS_PREC_BF16;
  be->ops->attention_fwd(be, want, want_lse, qf, kf, vf, cu, B, max_len, N, Hq, Hkv, D);
  be->precision = AQS_PREC_F32;
  be->ops->attention_fwd_b(be, out, lse, q, k, v, cu, B, max_len, N, Hq, Hkv, D);
  be->ops->attention_fwd_b(be, out2, NULL, q, k, v, cu, B, max_len, N, Hq, Hkv, D);
  assert_bf16_equals_f32("attention_fwd_b", out, want, nq);
  assert_memory_equal(lse, want_lse, nl * 4);
  assert_memory_equal(out, out2, nq * sizeof *out); /* lse NULL: same out */
  free(q); free(k); free(v); free(qf); free(kf); free(vf);
  free(want); free(want_lse); free(lse); free(out); free(out2);
}

static void test_attention_b(void **state) {
  (void)state;
  const int mixed[8] = {1, 7, 63, 64, 65, 130, 33, 2};
  check_attention(8, mixed, 4, 2, 64, 2.0f);
  const int lm[3] = {65, 1, 40}; /* the 3b model's heads: 16 query, 2 kv, 128 wide */
  check_attention(3, lm, 16, 2, 128, 3.0f);
  const int vis[2] = {64, 17}; /* the vision tower's head_dim, one query head per kv head */
  check_attention(2, vis, 2, 2, 80, 2.0f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_rmsnorm_b), cmocka_unit_test(test_linear_b),
    cmocka_unit_test(test_rope_b),    cmocka_unit_test(test_add_b),
    cmocka_unit_test(test_swiglu_b),  cmocka_unit_test(test_amax_fold),
    cmocka_unit_test(test_fused_amax_nonfinite), cmocka_unit_test(test_attention_b),
  };
  aqs_err e = {0};
  if (aqs_backend_open("cpu", AQS_PREC_F32, &be, &e) != AQS_OK) {
    fprintf(stderr, "test_bf16_ops: %s\n", e.msg);
    return 1;
  }
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  aqs_backend_close(be);
  return rc;
}
