/* tests/unit/store/test_objects.c: object round trips (inline/file, zstd/raw, sizes 0, 1 and
 * around the inline threshold, memory and fd, views, raw paths), a 1 GiB sparse file streamed,
 * dedup + stats, manifests, unknown digests, abbreviations, map growth. */
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_testlib.h"

static void check_roundtrip(aqs_store *s, const uint8_t *data, size_t len, aqs_compress compress,
                            int via_fd, const char *dir) {
  aqs_err err;
  aqs_err_clear(&err);
  aqs_put_opts opts = {.compress = compress};
  aqs_put_info info;
  if (via_fd) {
    char path[4300];
    snprintf(path, sizeof path, "%s/input.bin", dir);
    tu_write_file(path, data, len);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ASSERT_OK(aqs_put_fd(s, fd, 0, AQS_TO_EOF, path, &opts, &info, &err));
    close(fd);
  } else {
    ASSERT_OK(aqs_put_mem(s, data, len, &opts, &info, &err));
  }
  aqs_digest want;
  aqs_sha256_buf(data, len, &want);
  assert_true(aqs_digest_eq(&want, &info.digest));
  assert_int_equal(info.size_bytes, len);
  aqs_object_kind expect_kind = compress == AQS_COMPRESS_RAW ? AQS_OBJ_FILE_RAW
                                : len <= INLINE_MAX_TEST   ? AQS_OBJ_INLINE_ZSTD
                                                           : AQS_OBJ_FILE_ZSTD;
  if (!info.deduped) assert_int_equal(info.kind, expect_kind);

  void *back = NULL;
  size_t back_len = 0;
  ASSERT_OK(aqs_get_mem(s, &info.digest, &back, &back_len, &err));
  assert_int_equal(back_len, len);
  assert_memory_equal(back, data, len);
  free(back);

  char out_path[4300];
  snprintf(out_path, sizeof out_path, "%s/output.bin", dir);
  int ofd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  uint64_t written = 0;
  ASSERT_OK(aqs_get_fd(s, &info.digest, ofd, &written, &err));
  close(ofd);
  assert_int_equal(written, len);
  size_t file_len = 0;
  char *file = tu_read_file(out_path, &file_len);
  assert_int_equal(file_len, len);
  assert_memory_equal(file, data, len);
  free(file);

  aqs_view view;
  ASSERT_OK(aqs_object_view(s, &info.digest, 1, &view, &err));
  assert_int_equal(view.size, len);
  assert_memory_equal(view.data, data, len);
  aqs_view_release(&view);

  char obj_path[4400];
  aqs_status st = aqs_object_path(s, &info.digest, obj_path, sizeof obj_path, &err);
  if (info.kind == AQS_OBJ_FILE_RAW) {
    assert_int_equal(st, AQS_OK);
    struct stat sb;
    assert_int_equal(stat(obj_path, &sb), 0);
    assert_int_equal(sb.st_size, len);
    assert_int_equal(sb.st_mode & 0777, 0444);
  } else {
    assert_int_equal(st, AQS_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "compressed"));
  }
}

static void test_roundtrips(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("objects", &dir, 0);
  aqs_store *s = tl_open(path);
  size_t sizes[] = {0, 1, INLINE_MAX_TEST - 1, INLINE_MAX_TEST, INLINE_MAX_TEST + 1, 3 << 20};
  uint8_t *buf = malloc(3 << 20);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (int compress = 0; compress < 2; compress++)
      for (int via_fd = 0; via_fd < 2; via_fd++) {
        tl_fill(buf, sizes[i], 1000 * i + 10 * (size_t)compress + (size_t)via_fd);
        check_roundtrip(s, buf, sizes[i], compress ? AQS_COMPRESS_RAW : AQS_COMPRESS_ZSTD, via_fd,
                        dir);
      }
  /* A byte range inside a file (a tensor inside a checkpoint). */
  aqs_err err;
  aqs_err_clear(&err);
  tl_fill(buf, 100000, 77);
  char in_path[4300];
  snprintf(in_path, sizeof in_path, "%s/range.bin", dir);
  tu_write_file(in_path, buf, 100000);
  int fd = open(in_path, O_RDONLY);
  aqs_put_info info;
  ASSERT_OK(aqs_put_fd(s, fd, 1234, 50000, in_path, NULL, &info, &err));
  aqs_digest want;
  aqs_sha256_buf(buf + 1234, 50000, &want);
  assert_true(aqs_digest_eq(&want, &info.digest));
  /* The same range put raw (kernel copy path), and raw from a pipe (read/write fallback). */
  aqs_put_opts raw_opts = {.compress = AQS_COMPRESS_RAW};
  ASSERT_OK(aqs_put_fd(s, fd, 4321, 60000, in_path, &raw_opts, &info, &err));
  aqs_sha256_buf(buf + 4321, 60000, &want);
  assert_true(aqs_digest_eq(&want, &info.digest));
  assert_int_equal(info.kind, AQS_OBJ_FILE_RAW);
  void *range_back = NULL;
  size_t range_len = 0;
  ASSERT_OK(aqs_get_mem(s, &info.digest, &range_back, &range_len, &err));
  assert_int_equal(range_len, 60000);
  assert_memory_equal(range_back, buf + 4321, 60000);
  free(range_back);
  int pipe_fds[2];
  assert_int_equal(pipe(pipe_fds), 0);
  assert_int_equal(write(pipe_fds[1], buf, 30000), 30000);
  close(pipe_fds[1]);
  aqs_put_info piped;
  ASSERT_OK(aqs_put_fd(s, pipe_fds[0], 0, AQS_TO_EOF, "pipe", &raw_opts, &piped, &err));
  close(pipe_fds[0]);
  aqs_sha256_buf(buf, 30000, &want);
  assert_true(aqs_digest_eq(&want, &piped.digest));
  assert_int_equal(piped.size_bytes, 30000);
  /* A range past the end of the file is an I/O error naming the file. */
  assert_int_equal(aqs_put_fd(s, fd, 99990, 50, in_path, NULL, &info, &err), AQS_ERR_IO);
  assert_non_null(strstr(err.msg, "range.bin"));
  close(fd);
  free(buf);
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

/* A 1 GiB sparse file goes through put and get streaming, without holding it in memory. */
static void test_sparse_1gib(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("sparse", &dir, 0);
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  char in_path[4300];
  snprintf(in_path, sizeof in_path, "%s/sparse.bin", dir);
  int fd = open(in_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  const uint64_t size = 1ull << 30;
  assert_int_equal(ftruncate(fd, (off_t)size), 0);
  assert_int_equal(pwrite(fd, "tail", 4, (off_t)(size - 4)), 4);
  aqs_put_info info;
  ASSERT_OK(aqs_put_fd(s, fd, 0, AQS_TO_EOF, in_path, NULL, &info, &err));
  assert_int_equal(info.size_bytes, size);
  assert_int_equal(info.kind, AQS_OBJ_FILE_ZSTD);
  assert_true(info.stored_bytes < (1u << 20)); /* zeros compress to almost nothing */
  /* The expected digest, from the streaming hasher over the same bytes held in one block. */
  uint8_t *zeros = calloc(1, 1 << 20);
  aqs_sha256 *h = aqs_sha256_new();
  for (uint64_t done = 0; done < size - (1 << 20); done += 1 << 20)
    aqs_sha256_update(h, zeros, 1 << 20);
  memcpy(zeros + (1 << 20) - 4, "tail", 4);
  aqs_sha256_update(h, zeros, 1 << 20);
  aqs_digest want;
  aqs_sha256_final(h, &want);
  aqs_sha256_free(h);
  free(zeros);
  assert_true(aqs_digest_eq(&want, &info.digest));
  close(fd);
  int null_fd = open("/dev/null", O_WRONLY);
  uint64_t written = 0;
  ASSERT_OK(aqs_get_fd(s, &info.digest, null_fd, &written, &err));
  close(null_fd);
  assert_int_equal(written, size);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  assert_true(ru.ru_maxrss < 400 * 1024); /* KiB: far below the 1 GiB object */
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

static void test_dedup_and_stats(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("dedup", &dir, 0);
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  uint8_t small[100], big[20000];
  tl_fill(small, sizeof small, 1);
  tl_fill(big, sizeof big, 2);
  aqs_put_info a, b, c, d;
  ASSERT_OK(aqs_put_mem(s, small, sizeof small, NULL, &a, &err));
  ASSERT_OK(aqs_put_mem(s, small, sizeof small, NULL, &b, &err));
  assert_false(a.deduped);
  assert_true(b.deduped);
  assert_true(aqs_digest_eq(&a.digest, &b.digest));
  ASSERT_OK(aqs_put_mem(s, big, sizeof big, NULL, &c, &err));
  ASSERT_OK(aqs_put_mem(s, big, sizeof big, NULL, &d, &err));
  assert_true(d.deduped);
  aqs_store_stats st;
  ASSERT_OK(aqs_store_stats_get(s, &st, &err));
  assert_int_equal(st.objects, 2);
  assert_int_equal(st.objects_inline, 1);
  assert_int_equal(st.objects_file_zstd, 1);
  assert_int_equal(st.puts, 2);
  assert_int_equal(st.dedups, 2);
  assert_int_equal(st.dedup_bytes, sizeof small + sizeof big);
  assert_int_equal(st.bytes_logical, sizeof small + sizeof big);
  assert_int_equal(st.bytes_stored, a.stored_bytes + c.stored_bytes);
  aqs_store_stats_free(&st);
  /* The same big bytes put raw convert the object to a raw (linkable) file. */
  aqs_put_opts raw = {.compress = AQS_COMPRESS_RAW};
  ASSERT_OK(aqs_put_mem(s, big, sizeof big, &raw, &d, &err));
  assert_false(d.deduped);
  assert_int_equal(d.kind, AQS_OBJ_FILE_RAW);
  char obj_path[4400];
  ASSERT_OK(aqs_object_path(s, &d.digest, obj_path, sizeof obj_path, &err));
  ASSERT_OK(aqs_store_stats_get(s, &st, &err));
  assert_int_equal(st.objects, 2);
  assert_int_equal(st.objects_file_zstd, 0);
  assert_int_equal(st.objects_file_raw, 1);
  assert_int_equal(st.bytes_stored, a.stored_bytes + sizeof big);
  aqs_store_stats_free(&st);
  /* A file put twice: the second is a stat-cache dedup. */
  char file[4300];
  snprintf(file, sizeof file, "%s/f.bin", dir);
  tu_write_file(file, big, 9000);
  ASSERT_OK(aqs_put_file(s, file, NULL, &a, &err));
  ASSERT_OK(aqs_put_file(s, file, NULL, &b, &err));
  assert_false(a.deduped);
  assert_true(b.deduped);
  void *data;
  size_t len;
  ASSERT_OK(aqs_get_mem(s, &a.digest, &data, &len, &err));
  free(data);
  aqs_store_close(s);
  /* Gets are flushed at close and visible to the next handle. */
  s = tl_open(path);
  ASSERT_OK(aqs_store_stats_get(s, &st, &err));
  assert_true(st.gets >= 1);
  assert_int_equal(st.objects, 3);
  aqs_store_stats_free(&st);
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

static void test_manifest(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("manifest", &dir, 0);
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  aqs_put_info c1, c2, m;
  ASSERT_OK(aqs_put_mem(s, "child one", 9, NULL, &c1, &err));
  ASSERT_OK(aqs_put_mem(s, "child two", 9, NULL, &c2, &err));
  char t1[AQS_DIGEST_STR_SIZE], t2[AQS_DIGEST_STR_SIZE], doc[512];
  snprintf(doc, sizeof doc, "{\"kind\":\"test\",\"children\":[\"%s\",\"%s\",\"%s\"]}",
           aqs_digest_str(&c1.digest, t1), aqs_digest_str(&c2.digest, t2), t1);
  aqs_put_opts mopts = {.manifest = 1};
  ASSERT_OK(aqs_put_mem(s, doc, strlen(doc), &mopts, &m, &err));
  aqs_digest *kids = NULL;
  size_t n = 0;
  ASSERT_OK(aqs_object_children(s, &m.digest, &kids, &n, &err));
  assert_int_equal(n, 2); /* the duplicate is listed once */
  assert_true(aqs_digest_eq(&kids[0], &c1.digest));
  assert_true(aqs_digest_eq(&kids[1], &c2.digest));
  free(kids);
  /* The same manifest from a file descriptor: parsed the same way, a dedup. */
  char mpath[4300];
  snprintf(mpath, sizeof mpath, "%s/manifest.json", dir);
  tu_write_file(mpath, doc, strlen(doc));
  int mfd = open(mpath, O_RDONLY);
  aqs_put_info m2;
  ASSERT_OK(aqs_put_fd(s, mfd, 0, AQS_TO_EOF, mpath, &mopts, &m2, &err));
  close(mfd);
  assert_true(m2.deduped);
  assert_true(aqs_digest_eq(&m.digest, &m2.digest));
  /* A manifest whose child is missing is refused, naming the child. */
  snprintf(doc, sizeof doc, "{\"children\":[\"sha256:%064d\"]}", 7);
  assert_int_equal(aqs_put_mem(s, doc, strlen(doc), &mopts, &m, &err), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "0000000000000007"));
  /* Not JSON, or no children array: invalid. */
  assert_int_equal(aqs_put_mem(s, "{oops", 5, &mopts, &m, &err), AQS_ERR_INVALID);
  assert_int_equal(aqs_put_mem(s, "{\"a\":1}", 7, &mopts, &m, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "children"));
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

static void test_unknown_and_abbrev(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("abbrev", &dir, 0);
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  /* Find two payloads whose digests share their first 4 hex digits, then put both. */
  char payload[64], first[64] = "";
  aqs_digest seen[4096], d;
  size_t n_seen = 0, other = SIZE_MAX;
  for (size_t i = 0; other == SIZE_MAX && i < 4096; i++) {
    snprintf(payload, sizeof payload, "payload %zu", i);
    aqs_sha256_buf(payload, strlen(payload), &d);
    for (size_t j = 0; j < n_seen; j++)
      if (aqs_digest_has_prefix(&seen[j], &d, 4)) {
        other = j;
        snprintf(first, sizeof first, "payload %zu", j);
        break;
      }
    seen[n_seen++] = d;
  }
  assert_true(other != SIZE_MAX);
  aqs_put_info a, b;
  ASSERT_OK(aqs_put_mem(s, first, strlen(first), NULL, &a, &err));
  ASSERT_OK(aqs_put_mem(s, payload, strlen(payload), NULL, &b, &err));
  char hex_a[65], hex_b[65], abbrev[80];
  aqs_digest_hex(&a.digest, hex_a);
  aqs_digest_hex(&b.digest, hex_b);
  snprintf(abbrev, sizeof abbrev, "sha256:%.4s", hex_a);
  aqs_digest out;
  assert_int_equal(aqs_store_resolve(s, abbrev, &out, &err), AQS_ERR_AMBIGUOUS);
  assert_non_null(strstr(err.msg, "ambiguous"));
  assert_non_null(strstr(err.msg, "2 matches"));
  /* Enough digits to tell them apart resolve uniquely. */
  int k = 4;
  while (hex_a[k] == hex_b[k]) k++;
  snprintf(abbrev, sizeof abbrev, "%.*s", k + 1, hex_b);
  ASSERT_OK(aqs_store_resolve(s, abbrev, &out, &err));
  assert_true(aqs_digest_eq(&out, &b.digest));
  assert_int_equal(aqs_store_resolve(s, "abc", &out, &err), AQS_ERR_INVALID);
  assert_int_equal(aqs_store_resolve(s, "zzzz", &out, &err), AQS_ERR_INVALID);
  /* Unknown digests: not found, with the digest in the message. */
  aqs_digest unknown;
  aqs_sha256_buf("never stored", 12, &unknown);
  char hex_u[65];
  aqs_digest_hex(&unknown, hex_u);
  snprintf(abbrev, sizeof abbrev, "%.12s", hex_u);
  assert_int_equal(aqs_store_resolve(s, abbrev, &out, &err), AQS_ERR_NOT_FOUND);
  void *data = NULL;
  size_t len = 0;
  assert_int_equal(aqs_get_mem(s, &unknown, &data, &len, &err), AQS_ERR_NOT_FOUND);
  assert_null(data);
  assert_non_null(strstr(err.msg, hex_u));
  assert_int_equal(aqs_object_stat(s, &unknown, NULL, &err), AQS_ERR_NOT_FOUND);
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

/* A 1 MiB map grows on MDB_MAP_FULL as inline objects pile up. */
static void test_map_growth(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("mapfull", &dir, 1 << 20);
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  uint8_t buf[INLINE_MAX_TEST];
  aqs_put_info info[400];
  for (int i = 0; i < 400; i++) { /* ~1.6 MB of incompressible inline objects */
    tl_fill(buf, sizeof buf, 5000 + (uint64_t)i);
    ASSERT_OK(aqs_put_mem(s, buf, sizeof buf, NULL, &info[i], &err));
    assert_int_equal(info[i].kind, AQS_OBJ_INLINE_ZSTD);
  }
  aqs_store_close(s);
  s = tl_open(path);
  for (int i = 0; i < 400; i += 37) {
    void *data;
    size_t len;
    ASSERT_OK(aqs_get_mem(s, &info[i].digest, &data, &len, &err));
    tl_fill(buf, sizeof buf, 5000 + (uint64_t)i);
    assert_memory_equal(data, buf, sizeof buf);
    free(data);
  }
  aqs_store_stats st;
  ASSERT_OK(aqs_store_stats_get(s, &st, &err));
  assert_int_equal(st.objects, 400);
  assert_true(st.index_bytes > (1 << 20));
  aqs_store_stats_free(&st);
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrips),       cmocka_unit_test(test_sparse_1gib),
      cmocka_unit_test(test_dedup_and_stats),  cmocka_unit_test(test_manifest),
      cmocka_unit_test(test_unknown_and_abbrev), cmocka_unit_test(test_map_growth),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
