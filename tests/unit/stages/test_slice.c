/* tests/unit/stages/test_slice.c: coverage counts and orders, and the exactness of the
 * effective-bits search against brute force over every subset of small random instances. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/stages/slice.h"

static void test_coverage_count(void **state) {
  (void)state;
  assert_int_equal(aqs_slice_coverage_count(0.5, 144), 72);
  assert_int_equal(aqs_slice_coverage_count(0.3, 5), 2);   /* 1.5 rounds half up */
  assert_int_equal(aqs_slice_coverage_count(0.1, 16), 2);  /* 1.6 */
  assert_int_equal(aqs_slice_coverage_count(0.1, 15), 2);  /* 1.5 rounds half up */
  assert_int_equal(aqs_slice_coverage_count(0.1, 14), 1);  /* 1.4 */
  assert_int_equal(aqs_slice_coverage_count(1.0, 144), 144);
  assert_int_equal(aqs_slice_coverage_count(0.0, 144), 0);
}

#define N 8
static char ids[N][24];
static aqs_slice_group make_groups(aqs_slice_group *g) {
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof ids[i], "lm.%d.down", i);
    g[i] = (aqs_slice_group){.id = ids[i], .score = (double)((i * 5) % N), .weight_params = 1000,
                             .bias_params = 0, .n_modules = 1, .candidate = i != 3};
  }
  return g[0];
}

static void test_orders(void **state) {
  (void)state;
  aqs_slice_group g[N];
  make_groups(g);
  bool fp8[N];
  aqs_slice_result res;
  aqs_err e = {0};
  aqs_slice_params p = {.coverage = 0.5, .order = AQS_ORDER_LEAST_SENSITIVE_FIRST};
  assert_int_equal(aqs_slice_decide(g, N, &p, fp8, &res, &e), AQS_OK);
  assert_int_equal(res.n_candidates, 7);
  assert_int_equal(res.n_fp8, 4); /* round-half-up(3.5) */
  /* scores: i -> (5i mod 8): 0:0 1:5 2:2 3:7(not cand) 4:4 5:1 6:6 7:3 ; least four: 0,5,2,7 */
  bool want_least[N] = {1, 0, 1, 0, 0, 1, 0, 1};
  assert_memory_equal(fp8, want_least, sizeof fp8);
  p.order = AQS_ORDER_MOST_SENSITIVE_FIRST;
  assert_int_equal(aqs_slice_decide(g, N, &p, fp8, &res, &e), AQS_OK);
  bool want_most[N] = {0, 1, 0, 0, 1, 0, 1, 1}; /* 6,5,4,3 -> groups 6,1,4,7 */
  assert_memory_equal(fp8, want_most, sizeof fp8);
  p.order = AQS_ORDER_RANDOM;
  p.order_seed = 42;
  bool r1[N], r2[N];
  assert_int_equal(aqs_slice_decide(g, N, &p, r1, &res, &e), AQS_OK);
  assert_int_equal(aqs_slice_decide(g, N, &p, r2, &res, &e), AQS_OK);
  assert_memory_equal(r1, r2, sizeof r1);
  assert_false(r1[3]);
  assert_int_equal(res.n_fp8, 4);
  int differs = 0;
  for (uint64_t seed = 1; seed < 20; seed++) {
    p.order_seed = seed;
    assert_int_equal(aqs_slice_decide(g, N, &p, r2, &res, &e), AQS_OK);
    differs += memcmp(r1, r2, sizeof r1) != 0;
  }
  assert_true(differs > 0);
}

static void test_effective_bits_reported(void **state) {
  (void)state;
  aqs_slice_group g[2] = {
      {.id = "a", .score = 1, .weight_params = 1000, .bias_params = 10, .n_modules = 1, .candidate = true},
      {.id = "b", .score = 2, .weight_params = 3000, .bias_params = 0, .n_modules = 2, .candidate = true}};
  bool fp8[2];
  aqs_slice_result res;
  aqs_err e = {0};
  aqs_slice_params p = {.coverage = 1.0};
  assert_int_equal(aqs_slice_decide(g, 2, &p, fp8, &res, &e), AQS_OK);
  double want = (1000.0 * 8 + 10 * 16 + 64 + 3000.0 * 8 + 128) / 4010.0;
  assert_true(fabs(res.effective_bits - want) < 1e-12);
  p.coverage = 0.0;
  assert_int_equal(aqs_slice_decide(g, 2, &p, fp8, &res, &e), AQS_OK);
  assert_true(res.effective_bits == 16.0);
}

static uint64_t rng_state = 12345;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void test_budget_exact_vs_brute_force(void **state) {
  (void)state;
  static const int64_t sizes[3] = {4096, 11008, 2048};
  char names[14][16];
  for (int trial = 0; trial < 200; trial++) {
    int n = 4 + (int)(rnd() % 11);
    aqs_slice_group g[14];
    for (int i = 0; i < n; i++) {
      snprintf(names[i], sizeof names[i], "g%02d", i);
      g[i] = (aqs_slice_group){.id = names[i], .score = (double)(rnd() % 1000) / 7.0,
                               .weight_params = sizes[rnd() % 3], .bias_params = (int64_t)(rnd() % 3) * 8,
                               .n_modules = 1 + (int)(rnd() % 3), .candidate = rnd() % 5 != 0};
    }
    double target = 8.5 + (double)(rnd() % 70) / 10.0;
    int64_t params = 0;
    for (int i = 0; i < n; i++) params += g[i].weight_params + g[i].bias_params;
    /* brute force */
    double best = INFINITY;
    int feasible = 0;
    for (uint32_t mask = 0; mask < (1u << n); mask++) {
      int64_t bits = 0;
      double score = 0;
      int ok = 1;
      for (int i = 0; i < n; i++) {
        int q = (mask >> i) & 1;
        if (q && !g[i].candidate) ok = 0;
        bits += aqs_slice_group_bits(&g[i], q);
        if (q) score += g[i].score;
      }
      if (ok && (double)bits <= target * (double)params + 1e-6) {
        feasible = 1;
        if (score < best) best = score;
      }
    }
    bool fp8[14];
    aqs_slice_result res;
    aqs_err e = {0};
    aqs_slice_params p = {.budget_mode = true, .effective_bits = target};
    aqs_status st = aqs_slice_decide(g, (size_t)n, &p, fp8, &res, &e);
    if (!feasible) {
      assert_int_equal(st, AQS_ERR_INVALID);
      assert_non_null(strstr(e.msg, "out of reach"));
      continue;
    }
    assert_int_equal(st, AQS_OK);
    assert_true(res.effective_bits <= target + 1e-9);
    if (fabs(res.fp8_score_sum - best) > 1e-6 * (1 + best))
      fail_msg("trial %d: search found %.6f, brute force %.6f", trial, res.fp8_score_sum, best);
    for (int i = 0; i < n; i++)
      if (fp8[i]) assert_true(g[i].candidate);
  }
}

static void test_non_finite_score_refused(void **state) {
  (void)state;
  aqs_slice_group g[1] = {{.id = "lm.0.qkv", .score = NAN, .weight_params = 10, .n_modules = 3, .candidate = true}};
  bool fp8[1];
  aqs_slice_result res;
  aqs_err e = {0};
  aqs_slice_params p = {.coverage = 1.0};
  assert_int_equal(aqs_slice_decide(g, 1, &p, fp8, &res, &e), AQS_ERR_NUMERIC);
  assert_non_null(strstr(e.msg, "lm.0.qkv"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_coverage_count),
      cmocka_unit_test(test_orders),
      cmocka_unit_test(test_effective_bits_reported),
      cmocka_unit_test(test_budget_exact_vs_brute_force),
      cmocka_unit_test(test_non_finite_score_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
