/* tests/unit/common/test_progress.c: the progress line: formatting of counts, byte sizes, rates,
 * percentages and ETA; non-tty mode prints only the final line; live mode redraws in place;
 * concurrent adds from several threads are all counted. */
#include "testutil.h"

#include "common/progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_format_counts(void **state) {
  (void)state;
  char buf[256];
  aqs_progress_format(buf, sizeof buf, "calibrate", 96, 128, "tok", 2.0, 0);
  assert_string_equal(buf, "calibrate  96/128 tok  75%  48.0 tok/s  ETA 1s");
  aqs_progress_format(buf, sizeof buf, "calibrate", 128, 128, "tok", 2.0, 1);
  assert_string_equal(buf, "calibrate  128/128 tok  100%  64.0 tok/s  in 2.0s");
  /* Unknown total: no percentage and no ETA. */
  aqs_progress_format(buf, sizeof buf, "score", 7, 0, "chunk", 2.0, 0);
  assert_string_equal(buf, "score  7 chunk  3.5 chunk/s");
  aqs_progress_format(buf, sizeof buf, "score", 7, 0, "chunk", 2.0, 1);
  assert_string_equal(buf, "score  7 chunk  3.5 chunk/s  in 2.0s");
  /* Large rates get k / M suffixes; long ETAs minutes and hours. */
  aqs_progress_format(buf, sizeof buf, "t", 50000, 1000000, "tok", 1.0, 0);
  assert_string_equal(buf, "t  50000/1000000 tok  5%  50.0k tok/s  ETA 19s");
  aqs_progress_format(buf, sizeof buf, "t", 10, 1000, "tok", 1.0, 0);
  assert_string_equal(buf, "t  10/1000 tok  1%  10.0 tok/s  ETA 1m39s");
  aqs_progress_format(buf, sizeof buf, "t", 1, 10000, "tok", 1.0, 0);
  assert_string_equal(buf, "t  1/10000 tok  0%  1.0 tok/s  ETA 2h46m");
  aqs_progress_format(buf, sizeof buf, "t", 3000000, 0, "tok", 1.0, 0);
  assert_string_equal(buf, "t  3000000 tok  3.0M tok/s");
  /* Nothing done yet: rate 0, ETA unknown. */
  aqs_progress_format(buf, sizeof buf, "t", 0, 10, "tok", 0.0, 0);
  assert_string_equal(buf, "t  0/10 tok  0%  0.0 tok/s  ETA ?");
}

static void test_format_bytes(void **state) {
  (void)state;
  char buf[256];
  aqs_progress_format(buf, sizeof buf, "hash", 512ull << 20, 1ull << 30, "B", 2.0, 0);
  assert_string_equal(buf, "hash  512.0 MiB/1.0 GiB  50%  256.0 MiB/s  ETA 2s");
  aqs_progress_format(buf, sizeof buf, "put", 100, 1000, "B", 1.0, 0);
  assert_string_equal(buf, "put  100 B/1000 B  10%  100 B/s  ETA 9s");
  aqs_progress_format(buf, sizeof buf, "put", 3ull << 40, 3ull << 40, "B", 1024.0, 1);
  assert_string_equal(buf, "put  3.0 TiB/3.0 TiB  100%  3.0 GiB/s  in 17m04s");
}

/* Reads back what a stream got (tmpfile). */
static char *slurp(FILE *f) {
  fflush(f);
  long n = ftell(f);
  rewind(f);
  char *s = calloc(1, (size_t)n + 1);
  assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
  return s;
}

static void test_non_tty_prints_final_line_only(void **state) {
  (void)state;
  FILE *f = tmpfile();
  aqs_progress *p = aqs_progress_start_on(f, 0, "export", 4, "shard");
  for (int i = 0; i < 4; i++) aqs_progress_add(p, 1);
  aqs_progress_finish(p);
  char *out = slurp(f);
  /* Exactly one line, the summary, with no terminal control characters. */
  assert_non_null(strstr(out, "export  4/4 shard  100%"));
  assert_non_null(strstr(out, " in "));
  assert_null(strchr(out, '\r'));
  assert_null(strchr(out, '\033'));
  assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
  free(out);
  fclose(f);
}

static void test_live_redraws_in_place(void **state) {
  (void)state;
  FILE *f = tmpfile();
  aqs_progress *p = aqs_progress_start_on(f, 1, "hash", 0, "B");
  aqs_progress_add(p, 1000); /* first add draws at once (no previous draw) */
  aqs_progress_finish(p);
  char *out = slurp(f);
  assert_true(out[0] == '\r');
  assert_non_null(strstr(out, "\033[K"));
  assert_non_null(strstr(out, "hash  1000 B"));
  assert_true(out[strlen(out) - 1] == '\n');
  free(out);
  fclose(f);
}

static void test_abort_and_null(void **state) {
  (void)state;
  /* NULL handles are no-ops (allocation failure or AQS_PROGRESS=never). */
  aqs_progress_add(NULL, 5);
  aqs_progress_set(NULL, 5);
  aqs_progress_set_total(NULL, 5);
  aqs_progress_finish(NULL);
  aqs_progress_abort(NULL);
  setenv("AQS_PROGRESS", "never", 1);
  assert_null(aqs_progress_start("x", 10, "tok"));
  unsetenv("AQS_PROGRESS");

  FILE *f = tmpfile();
  aqs_progress *p = aqs_progress_start_on(f, 0, "x", 10, "tok");
  aqs_progress_set(p, 3);
  aqs_progress_abort(p); /* non-tty abort prints nothing: the caller reports the error */
  char *out = slurp(f);
  assert_string_equal(out, "");
  free(out);
  fclose(f);
}

typedef struct adder_arg {
  aqs_progress *p;
  int n;
} adder_arg;

static void *adder(void *arg) {
  adder_arg *a = arg;
  for (int i = 0; i < a->n; i++) aqs_progress_add(a->p, 1);
  return NULL;
}

static void test_threads_all_counted(void **state) {
  (void)state;
  FILE *f = tmpfile();
  aqs_progress *p = aqs_progress_start_on(f, 1, "count", 0, "item");
  pthread_t th[4];
  adder_arg arg = {p, 50000};
  for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&th[i], NULL, adder, &arg), 0);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  aqs_progress_finish(p);
  char *out = slurp(f);
  assert_non_null(strstr(out, "count  200000 item"));
  free(out);
  fclose(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_format_counts),
    cmocka_unit_test(test_format_bytes),
    cmocka_unit_test(test_non_tty_prints_final_line_only),
    cmocka_unit_test(test_live_redraws_in_place),
    cmocka_unit_test(test_abort_and_null),
    cmocka_unit_test(test_threads_all_counted),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
