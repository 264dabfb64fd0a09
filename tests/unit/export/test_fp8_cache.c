/* tests/unit/export/test_fp8_cache.c: the exporter's FP8 code cache (engine/export/fp8_cache.h):
 * entries found by (source digest, reference) only, the byte budget (alloc refuses past it,
 * release gives it back), a second entry for a key present already, and the counters. */
#include "testutil.h"

#include <string.h>

#include "engine/export/fp8_cache.h"

static aqs_digest digest_of(int v) {
  aqs_digest d;
  memset(&d, 0, sizeof d);
  memcpy(&d, &v, sizeof v);
  return d;
}

static void put(aqs_fp8_cache *c, int src, int ref, uint64_t n, uint8_t fill) {
  uint8_t *codes = aqs_fp8_cache_alloc(c, n);
  assert_non_null(codes);
  memset(codes, fill, n);
  aqs_fp8_cached e = {.source = digest_of(src), .ref = ref, .amax = (float)fill, .scale = fill / 448.0f,
                      .codes = codes, .n = n, .digest = digest_of(1000 + fill)};
  aqs_fp8_cache_insert(c, &e);
}

static void test_find_by_source_and_ref(void **state) {
  (void)state;
  aqs_fp8_cache *c;
  aqs_err e;
  assert_int_equal(aqs_fp8_cache_new(1000, &c, &e), AQS_OK);
  put(c, 1, 0, 100, 7);
  put(c, 2, 0, 100, 8);
  aqs_digest d1 = digest_of(1), d2 = digest_of(2), d3 = digest_of(3);
  const aqs_fp8_cached *h = aqs_fp8_cache_find(c, &d1, 0);
  assert_non_null(h);
  assert_int_equal(h->n, 100);
  assert_int_equal(h->codes[99], 7);
  assert_true(h->amax == 7.0f);
  h = aqs_fp8_cache_find(c, &d2, 0);
  assert_non_null(h);
  assert_int_equal(h->codes[0], 8);
  assert_null(aqs_fp8_cache_find(c, &d3, 0));
  assert_null(aqs_fp8_cache_find(c, &d1, 1)); /* another FP8 reference: other codes */
  uint64_t hits, entries, bytes;
  aqs_fp8_cache_stats(c, &hits, &entries, &bytes);
  assert_int_equal(hits, 2);
  assert_int_equal(entries, 2);
  assert_int_equal(bytes, 200);
  aqs_fp8_cache_free(c);
}

static void test_budget(void **state) {
  (void)state;
  aqs_fp8_cache *c;
  aqs_err e;
  assert_int_equal(aqs_fp8_cache_new(250, &c, &e), AQS_OK);
  put(c, 1, 0, 100, 1);
  uint8_t *b = aqs_fp8_cache_alloc(c, 100);
  assert_non_null(b);
  assert_null(aqs_fp8_cache_alloc(c, 51)); /* 200 held or handed out, 50 left */
  aqs_fp8_cache_release(c, b, 100);
  b = aqs_fp8_cache_alloc(c, 150); /* released bytes count again */
  assert_non_null(b);
  aqs_fp8_cache_release(c, b, 150);
  assert_null(aqs_fp8_cache_alloc(c, 0));
  uint64_t bytes;
  aqs_fp8_cache_stats(c, NULL, NULL, &bytes);
  assert_int_equal(bytes, 100);
  aqs_fp8_cache_free(c);
}

/* Two tensors with the same bytes: both buffers stay alive (the exporter points at each), the
 * first entry answers; many entries grow the table past its first capacity. */
static void test_duplicate_and_growth(void **state) {
  (void)state;
  aqs_fp8_cache *c;
  aqs_err e;
  assert_int_equal(aqs_fp8_cache_new(1 << 20, &c, &e), AQS_OK);
  put(c, 5, 0, 10, 1);
  put(c, 5, 0, 10, 2);
  aqs_digest d5 = digest_of(5);
  assert_int_equal(aqs_fp8_cache_find(c, &d5, 0)->codes[0], 1);
  for (int i = 100; i < 300; i++) put(c, i, 0, 16, (uint8_t)i);
  for (int i = 100; i < 300; i++) {
    aqs_digest d = digest_of(i);
    const aqs_fp8_cached *h = aqs_fp8_cache_find(c, &d, 0);
    assert_non_null(h);
    assert_int_equal(h->codes[15], (uint8_t)i);
  }
  uint64_t entries;
  aqs_fp8_cache_stats(c, NULL, &entries, NULL);
  assert_int_equal(entries, 202);
  aqs_fp8_cache_free(c);
  aqs_fp8_cache_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_find_by_source_and_ref),
      cmocka_unit_test(test_budget),
      cmocka_unit_test(test_duplicate_and_growth),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
