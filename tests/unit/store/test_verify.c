/* tests/unit/store/test_verify.c: corruption. A flipped byte in a raw file, a zstd file and an
 * inline record, and a deleted object file: verify names each digest and fails, reads through
 * the API fail (never wrong bytes), sampling checks N objects, quarantine moves them aside and
 * a new put of the right bytes repairs the store. */
#include <fcntl.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_testlib.h"

typedef struct bad_list {
  char text[8][AQS_DIGEST_STR_SIZE];
  aqs_status code[8];
  int n;
} bad_list;

static void note_bad(const aqs_digest *d, aqs_status code, const char *msg, void *user) {
  bad_list *b = user;
  char text[AQS_DIGEST_STR_SIZE];
  aqs_digest_str(d, text);
  assert_non_null(strstr(msg, text)); /* the message names the digest */
  if (b->n < 8) {
    memcpy(b->text[b->n], text, sizeof text);
    b->code[b->n++] = code;
  }
}

static int listed(const bad_list *b, const aqs_digest *d, aqs_status code) {
  char text[AQS_DIGEST_STR_SIZE];
  aqs_digest_str(d, text);
  for (int i = 0; i < b->n; i++)
    if (!strcmp(b->text[i], text)) return b->code[i] == code;
  return 0;
}

typedef struct progress_seen {
  int calls;
  uint64_t last_done, last_total, last_bytes, bytes_total;
} progress_seen;

static void on_progress(uint64_t done, uint64_t total, uint64_t bytes_done, uint64_t bytes_total,
                        void *user) {
  progress_seen *p = user;
  assert_true(done >= p->last_done && done <= total);
  p->calls++;
  p->last_done = done;
  p->last_total = total;
  p->last_bytes = bytes_done;
  p->bytes_total = bytes_total;
}

static void flip_byte(const char *file, off_t at) {
  chmod(file, 0644);
  int fd = open(file, O_RDWR);
  assert_true(fd >= 0);
  uint8_t c;
  assert_int_equal(pread(fd, &c, 1, at), 1);
  c ^= 0x40;
  assert_int_equal(pwrite(fd, &c, 1, at), 1);
  close(fd);
}

/* Flips a byte inside an inline object's zstd frame, through LMDB directly (store closed). */
static void flip_inline(const char *store_path, const aqs_digest *d) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  char index[4300];
  snprintf(index, sizeof index, "%s/index", store_path);
  assert_int_equal(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 16);
  mdb_env_set_mapsize(env, 1ull << 30);
  assert_int_equal(mdb_env_open(env, index, 0, 0644), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
  assert_int_equal(mdb_dbi_open(txn, "obj", 0, &dbi), 0);
  MDB_val k = {AQS_DIGEST_BYTES, (void *)d->bytes}, v;
  assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
  uint8_t *copy = malloc(v.mv_size);
  memcpy(copy, v.mv_data, v.mv_size);
  copy[v.mv_size - 6] ^= 0x01; /* inside the frame (32-byte record header first) */
  MDB_val nv = {v.mv_size, copy};
  assert_int_equal(mdb_put(txn, dbi, &k, &nv, 0), 0);
  assert_int_equal(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
  free(copy);
}

static void test_corruption(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("verify", &dir, 0);
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  uint8_t raw_bytes[50000], zst_bytes[50000], inl_bytes[3000], gone_bytes[20000], ok_bytes[100];
  tl_fill(raw_bytes, sizeof raw_bytes, 1);
  memset(zst_bytes, 'z', sizeof zst_bytes);
  tl_fill(zst_bytes, 1000, 2);
  memset(inl_bytes, 'i', sizeof inl_bytes);
  tl_fill(gone_bytes, sizeof gone_bytes, 3);
  tl_fill(ok_bytes, sizeof ok_bytes, 4);
  aqs_put_info raw, zst, inl, gone, good;
  aqs_put_opts raw_opts = {.compress = AQS_COMPRESS_RAW};
  ASSERT_OK(aqs_put_mem(s, raw_bytes, sizeof raw_bytes, &raw_opts, &raw, &err));
  ASSERT_OK(aqs_put_mem(s, zst_bytes, sizeof zst_bytes, NULL, &zst, &err));
  ASSERT_OK(aqs_put_mem(s, inl_bytes, sizeof inl_bytes, NULL, &inl, &err));
  ASSERT_OK(aqs_put_mem(s, gone_bytes, sizeof gone_bytes, &raw_opts, &gone, &err));
  ASSERT_OK(aqs_put_mem(s, ok_bytes, sizeof ok_bytes, NULL, &good, &err));
  assert_int_equal(zst.kind, AQS_OBJ_FILE_ZSTD);
  assert_int_equal(inl.kind, AQS_OBJ_INLINE_ZSTD);
  aqs_verify_report r;
  progress_seen seen = {0};
  aqs_verify_opts with_progress = {.progress = on_progress, .progress_user = &seen};
  ASSERT_OK(aqs_verify(s, &with_progress, NULL, NULL, &r, &err));
  assert_int_equal(r.ok, 5);
  assert_int_equal(r.bytes_checked, 50000 + 50000 + 3000 + 20000 + 100);
  assert_int_equal(seen.calls, 5);
  assert_int_equal(seen.last_done, 5);
  assert_int_equal(seen.last_total, 5);
  assert_int_equal(seen.last_bytes, seen.bytes_total);
  assert_int_equal(seen.bytes_total, r.bytes_checked);
  aqs_store_close(s);

  char file[4400], hex[65];
  ASSERT_OK(aqs_store_open(path, 0, &s, &err));
  ASSERT_OK(aqs_object_path(s, &raw.digest, file, sizeof file, &err));
  flip_byte(file, 25000);
  aqs_digest_hex(&zst.digest, hex);
  snprintf(file, sizeof file, "%s/objects/%.2s/%s.zst", path, hex, hex + 2);
  flip_byte(file, (off_t)zst.stored_bytes / 2);
  ASSERT_OK(aqs_object_path(s, &gone.digest, file, sizeof file, &err));
  assert_int_equal(unlink(file), 0);
  aqs_store_close(s);
  flip_inline(path, &inl.digest);
  /* Read-only first: reads fail and leave everything in place (a writable handle would
   * quarantine what it finds damaged: test_read_quarantines). */
  ASSERT_OK(aqs_store_open(path, AQS_STORE_RDONLY, &s, &err));

  /* Reads fail clearly and hand back nothing. */
  aqs_digest bad[4] = {raw.digest, zst.digest, inl.digest, gone.digest};
  for (int i = 0; i < 4; i++) {
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(aqs_get_mem(s, &bad[i], &data, &len, &err), AQS_ERR_CORRUPT);
    assert_null(data);
    char text[AQS_DIGEST_STR_SIZE];
    assert_non_null(strstr(err.msg, aqs_digest_str(&bad[i], text)));
    assert_non_null(strstr(err.msg, "corrupt"));
  }
  aqs_view view;
  assert_int_equal(aqs_object_view(s, &raw.digest, 1, &view, &err), AQS_ERR_CORRUPT);
  assert_null(view.data);
  int null_fd = open("/dev/null", O_WRONLY);
  assert_int_equal(aqs_get_fd(s, &zst.digest, null_fd, NULL, &err), AQS_ERR_CORRUPT);
  close(null_fd);

  /* Verify (sampled first, then all) reports each bad digest and fails. */
  aqs_verify_opts vo = {.sample = 2, .seed = 42};
  aqs_verify(s, &vo, NULL, NULL, &r, &err);
  assert_int_equal(r.checked, 2);
  bad_list b = {0};
  assert_int_equal(aqs_verify(s, NULL, note_bad, &b, &r, &err), AQS_ERR_CORRUPT);
  assert_int_equal(r.checked, 5);
  assert_int_equal(r.ok, 1);
  assert_int_equal(r.corrupt, 3);
  assert_int_equal(r.missing, 1);
  assert_true(listed(&b, &raw.digest, AQS_ERR_CORRUPT));
  assert_true(listed(&b, &zst.digest, AQS_ERR_CORRUPT));
  assert_true(listed(&b, &inl.digest, AQS_ERR_CORRUPT));
  assert_true(listed(&b, &gone.digest, AQS_ERR_NOT_FOUND));
  assert_non_null(strstr(err.msg, "4 bad object(s)"));

  /* Quarantine: bad objects leave the index; their bytes go to quarantine/. */
  aqs_store_close(s);
  s = tl_open(path);
  vo.sample = 0;
  vo.quarantine = 1;
  assert_int_equal(aqs_verify(s, &vo, NULL, NULL, &r, &err), AQS_ERR_CORRUPT);
  assert_int_equal(r.quarantined, 4);
  aqs_digest_hex(&raw.digest, hex);
  snprintf(file, sizeof file, "%s/quarantine/%s", path, hex);
  assert_int_equal(access(file, F_OK), 0);
  void *data = NULL;
  size_t len;
  assert_int_equal(aqs_get_mem(s, &raw.digest, &data, &len, &err), AQS_ERR_NOT_FOUND);
  ASSERT_OK(aqs_verify(s, NULL, NULL, NULL, &r, &err));
  assert_int_equal(r.ok, 1);
  /* Putting the right bytes again repairs. */
  ASSERT_OK(aqs_put_mem(s, raw_bytes, sizeof raw_bytes, &raw_opts, &raw, &err));
  assert_false(raw.deduped);
  ASSERT_OK(aqs_get_mem(s, &raw.digest, &data, &len, &err));
  assert_memory_equal(data, raw_bytes, sizeof raw_bytes);
  free(data);
  aqs_store_stats st;
  ASSERT_OK(aqs_store_stats_get(s, &st, &err));
  assert_int_equal(st.corrupt_found, 4);
  assert_int_equal(st.objects, 2);
  aqs_store_stats_free(&st);
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

/* A raw object whose file vanished (interrupted gc, manual deletion) is re-placed by a new put. */
static void test_missing_file_repaired_by_put(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("repair", &dir, 0);
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  uint8_t buf[9000];
  tl_fill(buf, sizeof buf, 9);
  aqs_put_info info;
  aqs_put_opts raw = {.compress = AQS_COMPRESS_RAW};
  ASSERT_OK(aqs_put_mem(s, buf, sizeof buf, &raw, &info, &err));
  char file[4400];
  ASSERT_OK(aqs_object_path(s, &info.digest, file, sizeof file, &err));
  unlink(file);
  ASSERT_OK(aqs_put_mem(s, buf, sizeof buf, &raw, &info, &err));
  assert_int_equal(access(file, F_OK), 0);
  aqs_verify_report r;
  ASSERT_OK(aqs_verify(s, NULL, NULL, NULL, &r, &err));
  aqs_store_stats st;
  ASSERT_OK(aqs_store_stats_get(s, &st, &err));
  assert_int_equal(st.objects, 1);
  assert_int_equal(st.bytes_stored, sizeof buf);
  aqs_store_stats_free(&st);
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_corruption),
      cmocka_unit_test(test_missing_file_repaired_by_put),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
