/* tests/unit/store/test_lease.c: action leases: a miss leases the action to one process; another
 * waits while the holder lives and gets the holder's result; a lease of a process that died is
 * taken over at once; a read-only handle takes no lease. */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store_testlib.h"

static char *make_key(aqs_digest *key, int n) {
  char *doc = NULL;
  aqs_err err;
  aqs_err_clear(&err);
  json_t *inputs = json_object(), *params = json_pack("{s:i}", "n", n);
  ASSERT_OK(aqs_action_key("leased", "1", inputs, params, key, &doc, &err));
  json_decref(inputs);
  json_decref(params);
  return doc;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void test_waits_for_live_holder(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("lease", &dir, 0);
  aqs_digest key;
  char *doc = make_key(&key, 1);
  int ready[2];
  assert_int_equal(pipe(ready), 0);
  pid_t pid = fork();
  if (pid == 0) { /* the holder: takes the lease, computes for 300 ms, records */
    aqs_store *s = tl_open(path);
    aqs_err err;
    aqs_err_clear(&err);
    if (aqs_action_claim(s, "leased", &key, NULL, &err) != AQS_ERR_NOT_FOUND) _exit(2);
    if (write(ready[1], "x", 1) != 1) _exit(3);
    usleep(300000);
    aqs_put_info pi;
    if (aqs_put_mem(s, "result", 6, NULL, &pi, &err) != AQS_OK) _exit(4);
    if (aqs_action_put(s, doc, &pi.digest, 0.3, NULL, &err) != AQS_OK) _exit(5);
    aqs_store_close(s);
    _exit(0);
  }
  char c;
  assert_int_equal(read(ready[0], &c, 1), 1);
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  aqs_action_info info;
  double t0 = now_s();
  ASSERT_OK(aqs_action_claim(s, "leased", &key, &info, &err));
  assert_true(now_s() - t0 > 0.1); /* it waited for the holder */
  aqs_digest want;
  aqs_sha256_buf("result", 6, &want);
  assert_true(aqs_digest_eq(&info.result, &want));
  aqs_action_info_free(&info);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_int_equal(WEXITSTATUS(status), 0);
  aqs_store_close(s);
  free(doc);
  tl_cleanup(dir, path);
}

static void test_dead_holder_taken_over(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("lease-dead", &dir, 0);
  aqs_digest key;
  char *doc = make_key(&key, 2);
  pid_t pid = fork();
  if (pid == 0) {
    aqs_store *s = tl_open(path);
    aqs_err err;
    aqs_err_clear(&err);
    if (aqs_action_claim(s, "leased", &key, NULL, &err) != AQS_ERR_NOT_FOUND) _exit(2);
    kill(getpid(), SIGKILL); /* dies holding the lease */
    _exit(3);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  double t0 = now_s();
  assert_int_equal(aqs_action_claim(s, "leased", &key, NULL, &err), AQS_ERR_NOT_FOUND);
  assert_true(now_s() - t0 < 2.0);
  /* Ours now: the same process claims it again at once; a release lets others in. */
  assert_int_equal(aqs_action_claim(s, "leased", &key, NULL, &err), AQS_ERR_NOT_FOUND);
  aqs_lease_release(s, &key);
  aqs_store_close(s);
  /* A read-only handle takes no lease and never waits. */
  ASSERT_OK(aqs_store_open(path, AQS_STORE_RDONLY, &s, &err));
  assert_int_equal(aqs_action_claim(s, "leased", &key, NULL, &err), AQS_ERR_NOT_FOUND);
  aqs_store_close(s);
  free(doc);
  tl_cleanup(dir, path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_waits_for_live_holder),
      cmocka_unit_test(test_dead_holder_taken_over),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
