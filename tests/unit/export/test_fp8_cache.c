/* tests/unit/export/test_fp8_cache.c: the exporter's FP8 code cache (engine/export/fp8_cache.h):
 * entries found by (source digest, reference) only, the byte budget (claims refuse past it,
 * release gives it back), a key claimed twice by one thread, growth, and a claim held by one
 * thread making another wait for its codes (the exports of a sweep run at once). */
#include "testutil.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "engine/export/fp8_cache.h"

static aqs_digest digest_of(int v) {
  aqs_digest d;
  memset(&d, 0, sizeof d);
  memcpy(&d, &v, sizeof v);
  return d;
}

static aqs_fp8_cache *new_cache(uint64_t max_bytes) {
  aqs_fp8_cache *c = NULL;
  aqs_err e;
  assert_int_equal(aqs_fp8_cache_new(max_bytes, &c, &e), AQS_OK);
  return c;
}

static void put(aqs_fp8_cache *c, int src, int ref, uint64_t n, uint8_t fill) {
  aqs_digest d = digest_of(src);
  aqs_fp8_cached hit;
  uint8_t *codes = NULL;
  assert_int_equal(aqs_fp8_cache_claim(c, &d, ref, n, &hit, &codes), AQS_FP8_CLAIMED);
  memset(codes, fill, n);
  aqs_fp8_cached e = {.source = d, .ref = ref, .amax = (float)fill, .scale = fill / 448.0f,
                      .codes = codes, .n = n, .digest = digest_of(1000 + fill)};
  aqs_fp8_cache_insert(c, &e);
}

static void test_find_by_source_and_ref(void **state) {
  (void)state;
  aqs_fp8_cache *c = new_cache(1000);
  put(c, 1, 0, 100, 7);
  put(c, 2, 0, 100, 8);
  aqs_digest d1 = digest_of(1), d2 = digest_of(2), d3 = digest_of(3);
  aqs_fp8_cached h;
  uint8_t *buf = NULL;
  assert_int_equal(aqs_fp8_cache_claim(c, &d1, 0, 100, &h, &buf), AQS_FP8_HIT);
  assert_int_equal(h.n, 100);
  assert_int_equal(h.codes[99], 7);
  assert_true(h.amax == 7.0f);
  assert_true(aqs_digest_eq(&h.digest, &(aqs_digest){0}) == 0);
  assert_int_equal(aqs_fp8_cache_claim(c, &d2, 0, 100, &h, &buf), AQS_FP8_HIT);
  assert_int_equal(h.codes[0], 8);
  assert_false(aqs_fp8_cache_has(c, &d3, 0));
  assert_false(aqs_fp8_cache_has(c, &d1, 1)); /* another FP8 reference: other codes */
  assert_true(aqs_fp8_cache_has(c, &d1, 0));
  uint64_t hits, entries, bytes;
  aqs_fp8_cache_stats(c, &hits, &entries, &bytes);
  assert_int_equal(hits, 2);
  assert_int_equal(entries, 2);
  assert_int_equal(bytes, 200);
  aqs_fp8_cache_free(c);
}

static void test_budget(void **state) {
  (void)state;
  aqs_fp8_cache *c = new_cache(250);
  put(c, 1, 0, 100, 1);
  aqs_digest d2 = digest_of(2), d3 = digest_of(3);
  aqs_fp8_cached h;
  uint8_t *b = NULL, *b3 = NULL;
  assert_int_equal(aqs_fp8_cache_claim(c, &d2, 0, 100, &h, &b), AQS_FP8_CLAIMED);
  assert_true(aqs_fp8_cache_has(c, &d2, 0)); /* claimed counts: its source need not be read */
  assert_int_equal(aqs_fp8_cache_claim(c, &d3, 0, 51, &h, &b3), AQS_FP8_FULL); /* 200 held or claimed */
  aqs_fp8_cache_release(c, b);
  assert_false(aqs_fp8_cache_has(c, &d2, 0));
  assert_int_equal(aqs_fp8_cache_claim(c, &d3, 0, 150, &h, &b3), AQS_FP8_CLAIMED); /* released bytes count again */
  aqs_fp8_cache_release(c, b3);
  assert_int_equal(aqs_fp8_cache_claim(c, &d3, 0, 0, &h, &b3), AQS_FP8_FULL);
  uint64_t bytes, entries;
  aqs_fp8_cache_stats(c, NULL, &entries, &bytes);
  assert_int_equal(bytes, 100);
  assert_int_equal(entries, 1);
  aqs_fp8_cache_free(c);
}

/* Two tensors with the same bytes in one export: the second claim of a key its own thread holds
 * is FULL (never a wait on itself); once inserted, it is a hit. Many entries grow the table. */
static void test_same_key_twice_and_growth(void **state) {
  (void)state;
  aqs_fp8_cache *c = new_cache(1 << 20);
  aqs_digest d5 = digest_of(5);
  aqs_fp8_cached h;
  uint8_t *first = NULL, *second = NULL;
  assert_int_equal(aqs_fp8_cache_claim(c, &d5, 0, 10, &h, &first), AQS_FP8_CLAIMED);
  assert_int_equal(aqs_fp8_cache_claim(c, &d5, 0, 10, &h, &second), AQS_FP8_FULL);
  memset(first, 1, 10);
  aqs_fp8_cache_insert(c, &(aqs_fp8_cached){.source = d5, .codes = first, .n = 10});
  assert_int_equal(aqs_fp8_cache_claim(c, &d5, 0, 10, &h, &second), AQS_FP8_HIT);
  assert_ptr_equal(h.codes, first);
  for (int i = 100; i < 300; i++) put(c, i, 0, 16, (uint8_t)i);
  for (int i = 100; i < 300; i++) {
    aqs_digest d = digest_of(i);
    assert_int_equal(aqs_fp8_cache_claim(c, &d, 0, 16, &h, &second), AQS_FP8_HIT);
    assert_int_equal(h.codes[15], (uint8_t)i);
  }
  uint64_t entries;
  aqs_fp8_cache_stats(c, NULL, &entries, NULL);
  assert_int_equal(entries, 201);
  aqs_fp8_cache_free(c);
  aqs_fp8_cache_free(NULL);
}

typedef struct waiter {
  aqs_fp8_cache *c;
  aqs_fp8_claim got;
  aqs_fp8_cached hit;
} waiter;

static void *claim_in_thread(void *arg) {
  waiter *w = arg;
  aqs_digest d = digest_of(9);
  uint8_t *buf = NULL;
  w->got = aqs_fp8_cache_claim(w->c, &d, 0, 64, &w->hit, &buf);
  if (w->got == AQS_FP8_CLAIMED) aqs_fp8_cache_release(w->c, buf);
  return NULL;
}

/* Another thread's claim of a key held here waits until the codes are inserted, then hits them
 * (it never gets a claim of its own: the weight is quantized once); a released claim passes on. */
static void test_claim_waits_for_other_thread(void **state) {
  (void)state;
  aqs_fp8_cache *c = new_cache(1 << 20);
  aqs_digest d9 = digest_of(9);
  aqs_fp8_cached h;
  uint8_t *codes = NULL;
  assert_int_equal(aqs_fp8_cache_claim(c, &d9, 0, 64, &h, &codes), AQS_FP8_CLAIMED);
  waiter w = {.c = c, .got = -1};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, claim_in_thread, &w), 0);
  nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL); /* the other thread is waiting now */
  memset(codes, 0x3c, 64);
  aqs_fp8_cache_insert(c, &(aqs_fp8_cached){.source = d9, .amax = 2.0f, .codes = codes, .n = 64,
                                            .digest = digest_of(77)});
  pthread_join(t, NULL);
  assert_int_equal(w.got, AQS_FP8_HIT);
  assert_ptr_equal(w.hit.codes, codes);
  assert_true(w.hit.amax == 2.0f);
  aqs_digest d77 = digest_of(77);
  assert_true(aqs_digest_eq(&w.hit.digest, &d77));
  aqs_fp8_cache_free(c);

  c = new_cache(1 << 20);
  assert_int_equal(aqs_fp8_cache_claim(c, &d9, 0, 64, &h, &codes), AQS_FP8_CLAIMED);
  w = (waiter){.c = c, .got = -1};
  assert_int_equal(pthread_create(&t, NULL, claim_in_thread, &w), 0);
  nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  aqs_fp8_cache_release(c, codes); /* e.g. the weight held a NaN: the waiter tries itself */
  pthread_join(t, NULL);
  assert_int_equal(w.got, AQS_FP8_CLAIMED);
  aqs_fp8_cache_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_find_by_source_and_ref),
      cmocka_unit_test(test_budget),
      cmocka_unit_test(test_same_key_twice_and_growth),
      cmocka_unit_test(test_claim_waits_for_other_thread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
