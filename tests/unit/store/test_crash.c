/* tests/unit/store/test_crash.c: children putting objects, actions and refs are SIGKILLed at 60
 * random points; after each kill the store opens (stale readers cleared), verify passes, every
 * visible object has exactly its bytes (nothing partial is ever indexed) and counters match the
 * records. At the end gc removes the orphaned tmp files. */
#include <signal.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "store_testlib.h"

#define KILLS 60
#define MAX_SIZE 300000

static size_t size_for(uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  switch (x % 4) {
  case 0: return (size_t)(x % 3000);             /* inline */
  case 1: return INLINE_MAX_TEST + (size_t)(x % 20000);
  default: return (size_t)(x % MAX_SIZE);
  }
}

/* Puts objects forever (until killed): object j of round r has bytes seeded by r * 100000 + j.
 * A byte goes to progress_fd after each object, so the parent can kill at points inside puts
 * however loaded the machine is. */
static void child_loop(const char *path, int round, int progress_fd) {
  aqs_store *s = NULL;
  aqs_err err;
  if (aqs_store_open(path, 0, &s, &err) != AQS_OK) _exit(3);
  uint8_t *buf = malloc(MAX_SIZE);
  for (int j = 0;; j++) {
    uint64_t seed = (uint64_t)round * 100000 + (uint64_t)j;
    size_t n = size_for(seed);
    tl_fill(buf, n, seed);
    aqs_put_opts o = {.compress = seed % 3 == 0 ? AQS_COMPRESS_RAW : AQS_COMPRESS_ZSTD};
    aqs_put_info info;
    if (aqs_put_mem(s, buf, n, &o, &info, &err) != AQS_OK) _exit(4);
    char *doc = NULL;
    aqs_digest key;
    json_t *params = json_pack("{s:I}", "seed", (json_int_t)seed);
    if (aqs_action_key("crash", "1", NULL, params, &key, &doc, &err) != AQS_OK ||
        aqs_action_put(s, doc, &info.digest, 0, NULL, &err) != AQS_OK ||
        aqs_ref_set(s, "latest", &info.digest, NULL, &err) != AQS_OK)
      _exit(5);
    if (write(progress_fd, "p", 1) != 1) _exit(6);
    free(doc);
    json_decref(params);
  }
}

typedef struct tally {
  uint64_t objects, bytes_logical, bytes_stored;
} tally;

static int count_object(const aqs_object_info *info, void *user) {
  tally *t = user;
  t->objects++;
  t->bytes_logical += info->size_bytes;
  t->bytes_stored += info->stored_bytes;
  return 0;
}

static void test_sigkill_during_puts(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("crash", &dir, 1 << 20);
  unsigned rng = (unsigned)time(NULL);
  printf("crash test seed %u\n", rng);
  aqs_err err;
  aqs_err_clear(&err);
  uint64_t last_objects = 0;
  int grew = 0;
  for (int round = 0; round < KILLS; round++) {
    int pipe_fds[2];
    assert_int_equal(pipe(pipe_fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      close(pipe_fds[0]);
      child_loop(path, round, pipe_fds[1]);
    }
    close(pipe_fds[1]);
    /* Wait for 0..2 completed objects, then kill at a random time inside the next ones. */
    int wait_for = rand_r(&rng) % 3;
    char c;
    for (int i = 0; i < wait_for && read(pipe_fds[0], &c, 1) == 1; i++) {}
    usleep((useconds_t)(rand_r(&rng) % 25000));
    kill(pid, SIGKILL);
    close(pipe_fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status)) fail_msg("round %d: child exited with %d", round, WEXITSTATUS(status));
    aqs_store *s = tl_open(path);
    aqs_verify_report r;
    aqs_status vst = aqs_verify(s, NULL, NULL, NULL, &r, &err);
    if (vst != AQS_OK) fail_msg("round %d: verify: %s", round, err.msg);
    assert_int_equal(r.corrupt + r.missing, 0);
    tally t = {0};
    ASSERT_OK(aqs_object_foreach(s, count_object, &t, &err));
    aqs_store_stats st;
    ASSERT_OK(aqs_store_stats_get(s, &st, &err));
    assert_int_equal(st.objects, t.objects);
    assert_int_equal(st.bytes_logical, t.bytes_logical);
    assert_int_equal(st.bytes_stored, t.bytes_stored);
    aqs_store_stats_free(&st);
    /* The ref always points at a complete object. */
    aqs_digest latest;
    if (aqs_ref_get(s, "latest", &latest, &err) == AQS_OK) assert_true(aqs_object_exists(s, &latest));
    if (t.objects > last_objects) grew++;
    last_objects = t.objects;
    aqs_store_close(s);
  }
  printf("%d of %d rounds added objects; %llu objects in the end\n", grew, KILLS,
         (unsigned long long)last_objects);
  assert_true(grew >= KILLS / 3); /* children did make progress between kills */
  /* Killed writers leave tmp files behind: gc with no grace removes them all. */
  aqs_store *s = tl_open(path);
  aqs_gc_opts opts = {.size_limit_bytes = -1, .orphan_grace_s = 0};
  aqs_gc_report gr;
  ASSERT_OK(aqs_gc(s, &opts, NULL, NULL, &gr, &err));
  char tmp_dir[4300];
  snprintf(tmp_dir, sizeof tmp_dir, "ls -A %s/tmp | wc -l", path);
  char *out = NULL;
  assert_int_equal(tu_run(tmp_dir, &out), 0);
  assert_int_equal(atoi(out), 0);
  free(out);
  aqs_verify_report r;
  ASSERT_OK(aqs_verify(s, NULL, NULL, NULL, &r, &err));
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sigkill_during_puts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
