/* tests/unit/store/test_concurrency.c: 8 processes put overlapping objects, actions and refs into
 * one store at once (with a 1 MiB map, so they also grow it under each other); afterwards every
 * object reads back, counts are exact and verify passes. Then 4 threads share one handle. */
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store_testlib.h"

#define N_PROCS 8
#define PER_PROC 40
#define N_DISTINCT 100

/* Object idx: sizes cycle through inline, zstd file and raw file. */
static size_t object_size(int idx) { return idx % 3 == 0 ? 200 + (size_t)idx : 6000 + 97 * (size_t)idx; }

static void object_bytes(int idx, uint8_t *buf) { tl_fill(buf, object_size(idx), 7000 + (uint64_t)idx); }

static aqs_put_opts object_opts(int idx) {
  aqs_put_opts o = {.compress = idx % 3 == 2 ? AQS_COMPRESS_RAW : AQS_COMPRESS_ZSTD};
  return o;
}

static int child_work(const char *path, int child) {
  aqs_store *s = NULL;
  aqs_err err;
  aqs_err_clear(&err);
  if (aqs_store_open(path, 0, &s, &err) != AQS_OK) {
    fprintf(stderr, "child %d: %s\n", child, err.msg);
    return 1;
  }
  uint8_t *buf = malloc(20000);
  int rc = 0;
  for (int i = 0; i < PER_PROC && !rc; i++) {
    int idx = (child * 20 + i) % N_DISTINCT;
    object_bytes(idx, buf);
    aqs_put_opts o = object_opts(idx);
    aqs_put_info info;
    json_t *params = json_pack("{s:i}", "idx", idx);
    char *doc = NULL;
    aqs_digest key;
    char ref[32];
    snprintf(ref, sizeof ref, "r%d", idx % 5);
    if (aqs_put_mem(s, buf, object_size(idx), &o, &info, &err) != AQS_OK ||
        aqs_action_key("conc", "1", NULL, params, &key, &doc, &err) != AQS_OK ||
        aqs_action_put(s, doc, &info.digest, 0.1, NULL, &err) != AQS_OK ||
        aqs_ref_set(s, ref, &info.digest, "conc", &err) != AQS_OK ||
        aqs_action_lookup(s, "conc", &key, NULL, &err) != AQS_OK) {
      fprintf(stderr, "child %d idx %d: %s\n", child, idx, err.msg);
      rc = 1;
    }
    free(doc);
    json_decref(params);
  }
  free(buf);
  aqs_store_close(s);
  return rc;
}

static void test_processes(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("conc", &dir, 1 << 20);
  pid_t pids[N_PROCS];
  for (int c = 0; c < N_PROCS; c++) {
    pids[c] = fork();
    assert_true(pids[c] >= 0);
    if (pids[c] == 0) _exit(child_work(path, c));
  }
  for (int c = 0; c < N_PROCS; c++) {
    int status = 0;
    assert_int_equal(waitpid(pids[c], &status, 0), pids[c]);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
  }
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  uint8_t *buf = malloc(20000);
  for (int idx = 0; idx < N_DISTINCT; idx++) {
    object_bytes(idx, buf);
    aqs_digest d;
    aqs_sha256_buf(buf, object_size(idx), &d);
    void *data = NULL;
    size_t len = 0;
    ASSERT_OK(aqs_get_mem(s, &d, &data, &len, &err));
    assert_int_equal(len, object_size(idx));
    assert_memory_equal(data, buf, len);
    free(data);
    json_t *params = json_pack("{s:i}", "idx", idx);
    aqs_digest key;
    aqs_action_info info;
    ASSERT_OK(aqs_action_key("conc", "1", NULL, params, &key, NULL, &err));
    ASSERT_OK(aqs_action_lookup(s, "conc", &key, &info, &err));
    assert_true(aqs_digest_eq(&info.result, &d));
    aqs_action_info_free(&info);
    json_decref(params);
  }
  free(buf);
  aqs_store_stats st;
  ASSERT_OK(aqs_store_stats_get(s, &st, &err));
  assert_int_equal(st.objects, N_DISTINCT);
  assert_int_equal(st.puts, N_DISTINCT);
  assert_int_equal(st.dedups, N_PROCS * PER_PROC - N_DISTINCT);
  assert_int_equal(st.actions, N_DISTINCT);
  assert_int_equal(st.refs, 5);
  assert_int_equal(st.n_stages, 1);
  assert_int_equal(st.stages[0].hits, N_PROCS * PER_PROC + N_DISTINCT);
  aqs_store_stats_free(&st);
  aqs_verify_report r;
  ASSERT_OK(aqs_verify(s, NULL, NULL, NULL, &r, &err));
  assert_int_equal(r.ok, N_DISTINCT);
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

typedef struct thread_arg {
  aqs_store *s;
  int first;
  int failures;
} thread_arg;

static void *thread_work(void *p) {
  thread_arg *a = p;
  uint8_t *buf = malloc(20000);
  aqs_err err;
  for (int i = 0; i < 30; i++) {
    int idx = (a->first + i) % 60;
    object_bytes(idx, buf);
    aqs_put_opts o = object_opts(idx);
    aqs_put_info info;
    void *data = NULL;
    size_t len = 0;
    if (aqs_put_mem(a->s, buf, object_size(idx), &o, &info, &err) != AQS_OK ||
        aqs_get_mem(a->s, &info.digest, &data, &len, &err) != AQS_OK ||
        len != object_size(idx) || memcmp(data, buf, len) != 0)
      a->failures++;
    free(data);
  }
  free(buf);
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("threads", &dir, 1 << 20);
  aqs_store *s = tl_open(path);
  pthread_t threads[4];
  thread_arg args[4];
  for (int t = 0; t < 4; t++) {
    args[t] = (thread_arg){s, t * 15, 0};
    pthread_create(&threads[t], NULL, thread_work, &args[t]);
  }
  for (int t = 0; t < 4; t++) {
    pthread_join(threads[t], NULL);
    assert_int_equal(args[t].failures, 0);
  }
  aqs_err err;
  aqs_err_clear(&err);
  aqs_store_stats st;
  ASSERT_OK(aqs_store_stats_get(s, &st, &err));
  assert_int_equal(st.objects, 60);
  assert_int_equal(st.puts + st.dedups, 120);
  assert_int_equal(st.gets, 120);
  aqs_store_stats_free(&st);
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_processes),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
