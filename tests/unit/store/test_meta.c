/* tests/unit/store/test_meta.c: actions (put, lookup with per-stage hit/miss counters, iteration,
 * provenance), refs and their reflog, the stat-cache, and opening errors: missing store,
 * malformed aqs.conf (line number), network filesystem refusal (injected), shared init, and the
 * index descriptors being close-on-exec. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/version.h"
#include "store_testlib.h"

typedef struct found_actions {
  int n;
  char last_doc[512];
} found_actions;

static int count_action(const aqs_action_info *info, void *user) {
  found_actions *f = user;
  f->n++;
  snprintf(f->last_doc, sizeof f->last_doc, "%s", info->key_doc);
  return 0;
}

static void test_actions(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("actions", &dir, 0);
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  aqs_put_info result;
  ASSERT_OK(aqs_put_mem(s, "{\"children\":[]}", 15, &(aqs_put_opts){.manifest = 1}, &result, &err));
  json_t *params = json_pack("{s:i}", "samples", 128);
  aqs_digest key, key_back, other;
  char *doc = NULL;
  ASSERT_OK(aqs_action_key("calibrate", "3", NULL, params, &key, &doc, &err));
  aqs_action_info info;
  assert_int_equal(aqs_action_lookup(s, "calibrate", &key, &info, &err), AQS_ERR_NOT_FOUND);
  ASSERT_OK(aqs_action_put(s, doc, &result.digest, 1.25, &key_back, &err));
  assert_true(aqs_digest_eq(&key, &key_back));
  ASSERT_OK(aqs_action_lookup(s, "calibrate", &key, &info, &err));
  assert_true(aqs_digest_eq(&info.result, &result.digest));
  assert_string_equal(info.stage, "calibrate");
  assert_string_equal(info.stage_version, "3");
  assert_string_equal(info.aqs_version, AQS_VERSION);
  assert_string_equal(info.key_doc, doc);
  assert_true(info.wall_seconds == 1.25);
  assert_true(info.host[0] && info.user[0]);
  assert_int_equal(strlen(info.created_at), 20); /* 2026-11-24T07:10:00Z */
  assert_true(llabs((long long)(info.created_ns / 1000000000) - (long long)time(NULL)) < 60);
  aqs_action_info_free(&info);
  /* A second stage and a miss. */
  ASSERT_OK(aqs_action_key("slice", "1", NULL, params, &other, NULL, &err));
  assert_int_equal(aqs_action_lookup(s, "slice", &other, NULL, &err), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "slice"));
  char *doc2 = NULL;
  json_object_set_new(params, "samples", json_integer(256));
  ASSERT_OK(aqs_action_key("calibrate", "3", NULL, params, &other, &doc2, &err));
  ASSERT_OK(aqs_action_put(s, doc2, &result.digest, 2.0, NULL, &err));
  found_actions f = {0};
  ASSERT_OK(aqs_action_foreach(s, "calibrate", count_action, &f, &err));
  assert_int_equal(f.n, 2);
  f.n = 0;
  ASSERT_OK(aqs_action_foreach(s, "slice", count_action, &f, &err));
  assert_int_equal(f.n, 0);
  aqs_store_stats st;
  ASSERT_OK(aqs_store_stats_get(s, &st, &err));
  assert_int_equal(st.actions, 2);
  assert_int_equal(st.n_stages, 2);
  assert_string_equal(st.stages[0].stage, "calibrate");
  assert_int_equal(st.stages[0].lookups, 2);
  assert_int_equal(st.stages[0].hits, 1);
  assert_int_equal(st.stages[0].misses, 1);
  assert_string_equal(st.stages[1].stage, "slice");
  assert_int_equal(st.stages[1].misses, 1);
  aqs_store_stats_free(&st);
  /* Refusals: a result that is not stored; a document that is not canonical. */
  aqs_digest missing;
  aqs_sha256_buf("nope", 4, &missing);
  assert_int_equal(aqs_action_put(s, doc, &missing, 0, NULL, &err), AQS_ERR_NOT_FOUND);
  assert_int_equal(aqs_action_put(s, "{\"stage\": \"x\"}", &result.digest, 0, NULL, &err),
                   AQS_ERR_INVALID);
  ASSERT_OK(aqs_action_delete(s, &key, &err));
  assert_int_equal(aqs_action_lookup(s, "calibrate", &key, NULL, &err), AQS_ERR_NOT_FOUND);
  free(doc);
  free(doc2);
  json_decref(params);
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

static int collect_log(const aqs_reflog_entry *e, void *user) {
  aqs_reflog_entry *out = user;
  int i = 0;
  while (out[i].time_ns) i++;
  out[i] = *e;
  return 0;
}

static int count_ref(const char *name, const aqs_digest *d, void *user) {
  (void)name;
  (void)d;
  (*(int *)user)++;
  return 0;
}

static void test_refs(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("refs", &dir, 0);
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  aqs_put_info a, b;
  ASSERT_OK(aqs_put_mem(s, "A", 1, NULL, &a, &err));
  ASSERT_OK(aqs_put_mem(s, "B", 1, NULL, &b, &err));
  ASSERT_OK(aqs_ref_set(s, "ckpt/top50", &a.digest, "first", &err));
  ASSERT_OK(aqs_ref_set(s, "ckpt/top50", &b.digest, "second", &err));
  aqs_digest got;
  ASSERT_OK(aqs_ref_get(s, "ckpt/top50", &got, &err));
  assert_true(aqs_digest_eq(&got, &b.digest));
  aqs_reflog_entry log[AQS_REFLOG_KEEP + 2];
  memset(log, 0, sizeof log);
  ASSERT_OK(aqs_ref_log(s, "ckpt/top50", collect_log, log, &err));
  assert_string_equal(log[0].message, "second"); /* newest first */
  assert_true(log[0].has_old && aqs_digest_eq(&log[0].old_target, &a.digest));
  assert_true(aqs_digest_eq(&log[0].new_target, &b.digest));
  assert_string_equal(log[1].message, "first");
  assert_false(log[1].has_old);
  assert_int_equal(log[2].time_ns, 0);
  /* The reflog keeps the last AQS_REFLOG_KEEP changes. */
  for (int i = 0; i < AQS_REFLOG_KEEP + 5; i++)
    ASSERT_OK(aqs_ref_set(s, "ckpt/top50", i % 2 ? &a.digest : &b.digest, "flip", &err));
  memset(log, 0, sizeof log);
  ASSERT_OK(aqs_ref_log(s, "ckpt/top50", collect_log, log, &err));
  int n = 0;
  while (n < AQS_REFLOG_KEEP + 2 && log[n].time_ns) n++;
  assert_int_equal(n, AQS_REFLOG_KEEP);
  ASSERT_OK(aqs_ref_set(s, "other", &a.digest, NULL, &err));
  int refs = 0;
  ASSERT_OK(aqs_ref_foreach(s, count_ref, &refs, &err));
  assert_int_equal(refs, 2);
  ASSERT_OK(aqs_ref_delete(s, "other", "bye", &err));
  assert_int_equal(aqs_ref_get(s, "other", &got, &err), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "other"));
  memset(log, 0, sizeof log);
  ASSERT_OK(aqs_ref_log(s, "other", collect_log, log, &err));
  assert_false(log[0].has_new);
  assert_string_equal(log[0].message, "bye");
  /* Bad names and missing targets. */
  assert_int_equal(aqs_ref_set(s, "has space", &a.digest, NULL, &err), AQS_ERR_INVALID);
  assert_int_equal(aqs_ref_set(s, "-dash", &a.digest, NULL, &err), AQS_ERR_INVALID);
  aqs_digest missing;
  aqs_sha256_buf("nope", 4, &missing);
  assert_int_equal(aqs_ref_set(s, "x", &missing, NULL, &err), AQS_ERR_NOT_FOUND);
  assert_int_equal(aqs_ref_delete(s, "never", NULL, &err), AQS_ERR_NOT_FOUND);
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

static void test_stat_cache(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("statc", &dir, 0);
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  char file[4300];
  snprintf(file, sizeof file, "%s/weights.bin", dir);
  tu_write_file(file, "original", 8);
  struct stat sb;
  stat(file, &sb);
  aqs_digest d1, d2, orig;
  aqs_sha256_buf("original", 8, &orig);
  uint64_t size = 0;
  ASSERT_OK(aqs_hash_file_cached(s, file, &d1, &size, &err));
  assert_true(aqs_digest_eq(&d1, &orig));
  assert_int_equal(size, 8);
  /* Same size, same mtime, same inode: the cached digest is returned without reading. */
  int fd = open(file, O_WRONLY);
  assert_int_equal(pwrite(fd, "ORIGINAL", 8, 0), 8);
  close(fd);
  struct timespec times[2] = {sb.st_atim, sb.st_mtim};
  assert_int_equal(utimensat(AT_FDCWD, file, times, 0), 0);
  ASSERT_OK(aqs_hash_file_cached(s, file, &d2, NULL, &err));
  assert_true(aqs_digest_eq(&d2, &orig));
  /* A new mtime is noticed and the file re-hashed. */
  times[1].tv_sec += 5;
  assert_int_equal(utimensat(AT_FDCWD, file, times, 0), 0);
  ASSERT_OK(aqs_hash_file_cached(s, file, &d2, NULL, &err));
  aqs_sha256_buf("ORIGINAL", 8, &orig);
  assert_true(aqs_digest_eq(&d2, &orig));
  /* Without a store it just hashes; missing files name the path. */
  ASSERT_OK(aqs_hash_file_cached(NULL, file, &d2, NULL, &err));
  assert_true(aqs_digest_eq(&d2, &orig));
  snprintf(file, sizeof file, "%s/nope.bin", dir);
  assert_int_equal(aqs_hash_file_cached(s, file, &d2, NULL, &err), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "nope.bin"));
  aqs_put_info info;
  assert_int_equal(aqs_put_file(s, file, NULL, &info, &err), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "nope.bin"));
  aqs_store_stats st;
  ASSERT_OK(aqs_store_stats_get(s, &st, &err));
  assert_int_equal(st.statcache_entries, 1);
  aqs_store_stats_free(&st);
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

static void test_open_errors(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("openerr", &dir, 0);
  aqs_err err;
  aqs_err_clear(&err);
  aqs_store *s = NULL;
  char other[4300];
  snprintf(other, sizeof other, "%s/not-a-store", dir);
  assert_int_equal(aqs_store_open(other, 0, &s, &err), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "not-a-store"));
  assert_non_null(strstr(err.msg, "aqs init"));
  assert_null(s);
  /* init twice is refused. */
  assert_int_equal(aqs_store_init(path, NULL, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "already"));
  /* A network filesystem is refused at open and at init, pointing to the remote tier. */
  setenv("AQS_TEST_FSTYPE", "nfs", 1);
  assert_int_equal(aqs_store_open(path, 0, &s, &err), AQS_ERR_UNSUPPORTED);
  assert_non_null(strstr(err.msg, "network filesystem (NFS)"));
  assert_non_null(strstr(err.msg, "remote"));
  setenv("AQS_TEST_FSTYPE", "cifs", 1);
  assert_int_equal(aqs_store_init(other, NULL, &err), AQS_ERR_UNSUPPORTED);
  assert_non_null(strstr(err.msg, "SMB") ? strstr(err.msg, "SMB") : strstr(err.msg, "CIFS"));
  unsetenv("AQS_TEST_FSTYPE");
  /* A malformed aqs.conf: the message names the file and line. */
  char conf[4300];
  snprintf(conf, sizeof conf, "%s/aqs.conf", path);
  const char *bad = "[store]\nformat = 1\nzstd_level = eleven\n";
  tu_write_file(conf, bad, strlen(bad));
  assert_int_equal(aqs_store_open(path, 0, &s, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "aqs.conf:3"));
  assert_non_null(strstr(err.msg, "zstd_level"));
  const char *unknown = "[store]\nformat = 1\n\nsize_limt = 10G\n";
  tu_write_file(conf, unknown, strlen(unknown));
  assert_int_equal(aqs_store_open(path, 0, &s, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "aqs.conf:4"));
  const char *good = "[store]\nformat = 1\nsize_limit = 10G\n";
  tu_write_file(conf, good, strlen(good));
  ASSERT_OK(aqs_store_open(path, 0, &s, &err));
  assert_int_equal(aqs_store_get_config(s)->size_limit_bytes, 10ull << 30);
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

static void test_shared_init(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("shared");
  char path[4300];
  snprintf(path, sizeof path, "%s/team-store", dir);
  aqs_store_config cfg;
  aqs_store_config_defaults(&cfg);
  cfg.shared = 1;
  aqs_err err;
  aqs_err_clear(&err);
  mode_t old = umask(022);
  ASSERT_OK(aqs_store_init(path, &cfg, &err));
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 07777, 02775);
  char sub[4400];
  snprintf(sub, sizeof sub, "%s/objects", path);
  assert_int_equal(stat(sub, &sb), 0);
  assert_int_equal(sb.st_mode & 07777, 02775);
  snprintf(sub, sizeof sub, "%s/aqs.conf", path);
  size_t len;
  char *conf = tu_read_file(sub, &len);
  assert_non_null(strstr(conf, "shared = true"));
  assert_non_null(strstr(conf, "umask = 0002"));
  free(conf);
  /* Objects written through a shared store get group-writable fan-out directories. */
  aqs_store *s = NULL;
  ASSERT_OK(aqs_store_open(path, 0, &s, &err));
  aqs_put_info info;
  uint8_t buf[10000];
  tl_fill(buf, sizeof buf, 3);
  ASSERT_OK(aqs_put_mem(s, buf, sizeof buf, &(aqs_put_opts){.compress = AQS_COMPRESS_RAW}, &info,
                        &err));
  char obj[4400];
  ASSERT_OK(aqs_object_path(s, &info.digest, obj, sizeof obj, &err));
  *strrchr(obj, '/') = '\0';
  assert_int_equal(stat(obj, &sb), 0);
  assert_int_equal(sb.st_mode & 07777, 02775);
  snprintf(sub, sizeof sub, "%s/index/data.mdb", path);
  assert_int_equal(stat(sub, &sb), 0);
  assert_true(sb.st_mode & 0020); /* group-writable index */
  aqs_store_close(s);
  umask(old);
  tu_rm_rf(dir);
  free(dir);
}

/* Every descriptor the store holds on its index is close-on-exec (LMDB opens data.mdb without it):
 * a program the build starts (a chunk worker) must not inherit them. */
static void test_index_fds_cloexec(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("cloexec", &dir, 0);
  aqs_store *s = tl_open(path);
  DIR *fds = opendir("/proc/self/fd");
  assert_non_null(fds);
  int n_index = 0;
  for (struct dirent *d; (d = readdir(fds));) {
    char link[300], target[4400];
    snprintf(link, sizeof link, "/proc/self/fd/%s", d->d_name);
    ssize_t len = readlink(link, target, sizeof target - 1);
    if (len <= 0) continue;
    target[len] = '\0';
    if (!strstr(target, "/store/index/")) continue;
    n_index++;
    int flags = fcntl(atoi(d->d_name), F_GETFD);
    if (flags < 0 || !(flags & FD_CLOEXEC)) fail_msg("fd %s -> %s is not close-on-exec", d->d_name, target);
  }
  closedir(fds);
  assert_true(n_index >= 2); /* data.mdb and lock.mdb at least */
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_actions),     cmocka_unit_test(test_refs),
      cmocka_unit_test(test_stat_cache),  cmocka_unit_test(test_open_errors),
      cmocka_unit_test(test_shared_init), cmocka_unit_test(test_index_fds_cloexec),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
