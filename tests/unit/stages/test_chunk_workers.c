/* tests/unit/stages/test_chunk_workers.c: --devices lists, and a worker's assignment
 * (AQS_CHUNK_WORKER) written by the build and read back by the worker: blocks of the missing
 * chunks that cover them once, written short enough for one environment string (Linux caps it at
 * 128 KiB) even for 50,000 chunks, and malformed lists refused. */
#include <stdlib.h>
#include <string.h>

#include "engine/stages/chunk_workers.h"
#include "testutil.h"

static void test_devices(void **state) {
  (void)state;
  aqs_devices d;
  aqs_err e = {0};
  assert_int_equal(aqs_devices_parse("0,0,3", &d, &e), AQS_OK);
  assert_int_equal(d.n, 3);
  assert_int_equal(d.is_cpu, 0);
  assert_int_equal(d.index[2], 3);
  assert_int_equal(aqs_devices_parse("cpu,cpu", &d, &e), AQS_OK);
  assert_int_equal(d.n, 2);
  assert_int_equal(d.is_cpu, 1);
  assert_int_equal(aqs_devices_parse("0,", &d, &e), AQS_ERR_INVALID);
  assert_int_equal(aqs_devices_parse("cpu,1", &d, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "mixes"));
}

/* Each of n workers' assignments read back as the worker does: disjoint, ascending, together
 * exactly missing[]; returns the longest value's length. */
static size_t round_trip(const size_t *missing, size_t n_missing, size_t n) {
  aqs_digest key;
  aqs_sha256_buf("stage", 5, &key);
  aqs_chunk_spread s = {.stage = "calibrate", .key = &key, .missing = missing, .n_missing = n_missing};
  size_t longest = 0, next = 0;
  for (size_t w = 0; w < n; w++) {
    char *value = aqs_chunk_assignment(&s, w, n);
    assert_non_null(value);
    if (strlen(value) > longest) longest = strlen(value);
    assert_int_equal(setenv("AQS_CHUNK_WORKER", value, 1), 0);
    free(value);
    aqs_chunk_worker cw;
    int found = 0;
    aqs_err e = {0};
    if (aqs_chunk_worker_from_env(&cw, &found, &e)) fail_msg("worker %zu: %s", w, e.msg);
    assert_true(found);
    assert_string_equal(cw.stage, "calibrate");
    assert_true(aqs_digest_eq(&cw.key, &key));
    for (size_t k = 0; k < cw.n_chunks; k++) {
      assert_true(next < n_missing);
      assert_int_equal(cw.chunks[k], missing[next++]);
      assert_true(aqs_chunk_worker_owns(&cw, missing[next - 1]));
    }
    aqs_chunk_worker_free(&cw);
  }
  assert_int_equal(next, n_missing);
  unsetenv("AQS_CHUNK_WORKER");
  return longest;
}

static void test_assignment(void **state) {
  (void)state;
  size_t n = 50000, *missing = malloc(n * sizeof *missing);
  for (size_t i = 0; i < n; i++) missing[i] = i;
  assert_true(round_trip(missing, n, 2) < 200); /* every chunk missing: one run per worker */
  assert_true(round_trip(missing, 7, 7) < 200); /* one chunk each (never more workers than chunks) */
  size_t gappy = 0; /* a resumed build: every third chunk recorded already */
  for (size_t i = 0; i < n; i++)
    if (i % 3) missing[gappy++] = i;
  assert_true(round_trip(missing, gappy, 2) < 128 * 1024);
  for (size_t i = 0; i < 100; i++) missing[i] = 7 * i; /* no runs at all */
  round_trip(missing, 100, 3);
  free(missing);
}

static void test_malformed(void **state) {
  (void)state;
  static const char *bad[] = {"calibrate:1", "calibrate:sha256:%s", "calibrate:sha256:%s:3,2",
                              "calibrate:sha256:%s:5-3", "calibrate:sha256:%s:1-", "calibrate:sha256:%s:0-4,4"};
  char hex[65], value[200];
  memset(hex, 'a', 64);
  hex[64] = '\0';
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    snprintf(value, sizeof value, bad[i], hex);
    assert_int_equal(setenv("AQS_CHUNK_WORKER", value, 1), 0);
    aqs_chunk_worker cw;
    int found = 1;
    aqs_err e = {0};
    if (aqs_chunk_worker_from_env(&cw, &found, &e) != AQS_ERR_INVALID) fail_msg("accepted '%s'", value);
    assert_false(found);
    assert_non_null(strstr(e.msg, "AQS_CHUNK_WORKER"));
  }
  unsetenv("AQS_CHUNK_WORKER");
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_devices), cmocka_unit_test(test_assignment),
                                     cmocka_unit_test(test_malformed)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
