/* tests/unit/compute/test_plan_cache.c: the policy of the CUDA backend's cuBLASLt plan cache
 * (kernels/plan_cache.h), without a GPU: hits, filling free slots, least-recently-used eviction,
 * dropped slots reused first, and a stream of 1,000 distinct token counts (varied captions) that
 * never holds more than the capacity while the shapes repeated within a batch keep hitting. */
#include "testutil.h"

#include <string.h>

#include "kernels/plan_cache.h"

typedef struct key {
  int kind, M, N, K;
} key;

static key k_of(int kind, int M, int N, int K) {
  key k;
  memset(&k, 0, sizeof k);
  k.kind = kind, k.M = M, k.N = N, k.K = K;
  return k;
}

static void test_hit_new_evict(void **state) {
  (void)state;
  aqs_plan_cache c;
  aqs_err e;
  assert_int_equal(aqs_plan_cache_init(&c, sizeof(key), 3, &e), AQS_OK);
  int s[5], again;
  key a = k_of(1, 10, 64, 64), b = k_of(1, 11, 64, 64), d = k_of(2, 10, 64, 64), f = k_of(3, 10, 64, 64);
  assert_int_equal(aqs_plan_cache_get(&c, &a, &s[0]), AQS_PLAN_NEW);
  assert_int_equal(aqs_plan_cache_get(&c, &b, &s[1]), AQS_PLAN_NEW);
  assert_int_equal(aqs_plan_cache_get(&c, &d, &s[2]), AQS_PLAN_NEW);
  assert_true(s[0] != s[1] && s[1] != s[2] && s[0] != s[2]);
  /* a used again: b is now the least recently used and goes first */
  assert_int_equal(aqs_plan_cache_get(&c, &a, &again), AQS_PLAN_HIT);
  assert_int_equal(again, s[0]);
  assert_int_equal(aqs_plan_cache_get(&c, &f, &s[3]), AQS_PLAN_EVICTED);
  assert_int_equal(s[3], s[1]);
  assert_int_equal(aqs_plan_cache_get(&c, &a, &again), AQS_PLAN_HIT);
  assert_int_equal(aqs_plan_cache_get(&c, &d, &again), AQS_PLAN_HIT);
  assert_int_equal(aqs_plan_cache_get(&c, &f, &again), AQS_PLAN_HIT);
  /* b comes back in the slot of a, now the least recently used */
  assert_int_equal(aqs_plan_cache_get(&c, &b, &s[4]), AQS_PLAN_EVICTED);
  assert_int_equal(s[4], s[0]);
  assert_int_equal(c.hits, 4);
  assert_int_equal(c.misses, 5);
  assert_int_equal(c.evictions, 2);
  aqs_plan_cache_free(&c);
  aqs_plan_cache_free(&c); /* idempotent */
}

static void test_drop_frees_slot(void **state) {
  (void)state;
  aqs_plan_cache c;
  aqs_err e;
  assert_int_equal(aqs_plan_cache_init(&c, sizeof(key), 2, &e), AQS_OK);
  key a = k_of(1, 1, 16, 16), b = k_of(1, 2, 16, 16), d = k_of(1, 3, 16, 16);
  int sa, sb, sd, x;
  aqs_plan_cache_get(&c, &a, &sa);
  aqs_plan_cache_get(&c, &b, &sb);
  aqs_plan_cache_drop(&c, sa); /* a's plan failed to build */
  /* d takes the dropped slot, not b's: no eviction */
  assert_int_equal(aqs_plan_cache_get(&c, &d, &sd), AQS_PLAN_NEW);
  assert_int_equal(sd, sa);
  assert_int_equal(aqs_plan_cache_get(&c, &b, &x), AQS_PLAN_HIT);
  /* a was forgotten: looking it up is a miss again */
  assert_int_not_equal(aqs_plan_cache_get(&c, &a, &x), AQS_PLAN_HIT);
  aqs_plan_cache_free(&c);
}

static void test_bad_init(void **state) {
  (void)state;
  aqs_plan_cache c;
  aqs_err e;
  assert_int_equal(aqs_plan_cache_init(&c, sizeof(key), 0, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "capacity 0"));
  aqs_plan_cache_free(&c);
}

/* Batches of varied token counts: each batch runs 200 GEMMs over 9 (kind, N, K) shapes at its own
 * M, like a model's layers. With a capacity of 256 the table never exceeds it, every shape after
 * its first use in a batch hits, and old M's are evicted. */
static void test_varied_batches_bounded(void **state) {
  (void)state;
  aqs_plan_cache c;
  aqs_err e;
  const int cap = 256, batches = 1000, calls = 200, shapes = 9;
  assert_int_equal(aqs_plan_cache_init(&c, sizeof(key), cap, &e), AQS_OK);
  uint64_t seed = 7;
  for (int b = 0; b < batches; b++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    int M = b * 3 + 1 + (int)((seed >> 33) % 3); /* distinct and growing: never seen before */
    for (int i = 0; i < calls; i++) {
      key k = k_of(1 + i % 3, M, 64 * (1 + i % shapes), 128);
      int slot;
      aqs_plan_lookup r = aqs_plan_cache_get(&c, &k, &slot);
      assert_true(slot >= 0 && slot < cap);
      if (i >= shapes) assert_int_equal(r, AQS_PLAN_HIT);
      assert_true(c.used <= cap);
    }
  }
  assert_int_equal(c.used, cap);
  assert_int_equal(c.misses, (uint64_t)batches * shapes);
  assert_int_equal(c.hits, (uint64_t)batches * (calls - shapes));
  assert_int_equal(c.evictions, (uint64_t)batches * shapes - cap);
  aqs_plan_cache_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hit_new_evict),
      cmocka_unit_test(test_drop_frees_slot),
      cmocka_unit_test(test_bad_init),
      cmocka_unit_test(test_varied_batches_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
