/* tests/unit/store/test_integrity.c: the store's own integrity: a damaged, truncated, emptied or
 * lost index gives a clear error (never a crash) and `reindex` restores objects, actions and refs
 * from objects/ and the journal; damaged objects are quarantined by the read that finds them, a
 * dedup never lands on damaged bytes, and an action whose result reaches a damaged object misses. */
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store_testlib.h"

static void flip_file_byte(const char *file, off_t at) {
  chmod(file, 0644);
  int fd = open(file, O_RDWR);
  assert_true(fd >= 0);
  uint8_t c;
  assert_int_equal(pread(fd, &c, 1, at), 1);
  c ^= 0x10;
  assert_int_equal(pwrite(fd, &c, 1, at), 1);
  close(fd);
  chmod(file, 0444);
}

typedef struct notices {
  int count;
  char last[1200];
} notices;

static void on_notice(const char *msg, void *user) {
  notices *n = user;
  n->count++;
  snprintf(n->last, sizeof n->last, "%s", msg);
}

/* A store with: raw blob, inline blob, a manifest listing both, an action whose result is the
 * manifest, and a ref to it. */
typedef struct fixture {
  char *dir, *path;
  uint8_t raw_bytes[20000], small_bytes[300];
  aqs_put_info raw, small, manifest;
  aqs_digest action_key;
  char *key_doc;
} fixture;

static void make_fixture(fixture *f) {
  f->path = tl_new_store("integrity", &f->dir, 0);
  aqs_store *s = tl_open(f->path);
  aqs_err err;
  aqs_err_clear(&err);
  tl_fill(f->raw_bytes, sizeof f->raw_bytes, 1);
  tl_fill(f->small_bytes, sizeof f->small_bytes, 2);
  aqs_put_opts raw = {.compress = AQS_COMPRESS_RAW}, man = {.manifest = 1};
  ASSERT_OK(aqs_put_mem(s, f->raw_bytes, sizeof f->raw_bytes, &raw, &f->raw, &err));
  ASSERT_OK(aqs_put_mem(s, f->small_bytes, sizeof f->small_bytes, NULL, &f->small, &err));
  char a[AQS_DIGEST_STR_SIZE], b[AQS_DIGEST_STR_SIZE], doc[300];
  snprintf(doc, sizeof doc, "{\"children\": [\"%s\", \"%s\"]}", aqs_digest_str(&f->raw.digest, a),
           aqs_digest_str(&f->small.digest, b));
  ASSERT_OK(aqs_put_mem(s, doc, strlen(doc), &man, &f->manifest, &err));
  json_t *inputs = json_pack("{s:s}", "x", a), *params = json_pack("{s:i}", "n", 1);
  ASSERT_OK(aqs_action_key("demo", "1", inputs, params, &f->action_key, &f->key_doc, &err));
  json_decref(inputs);
  json_decref(params);
  ASSERT_OK(aqs_action_put(s, f->key_doc, &f->manifest.digest, 0.5, NULL, &err));
  ASSERT_OK(aqs_ref_set(s, "builds/demo", &f->manifest.digest, "test", &err));
  aqs_store_close(s);
}

static void free_fixture(fixture *f) {
  free(f->key_doc);
  tl_cleanup(f->dir, f->path);
}

static void raw_file(const fixture *f, char *out, size_t cap) {
  char hex[AQS_DIGEST_HEX_LEN + 1];
  aqs_digest_hex(&f->raw.digest, hex);
  snprintf(out, cap, "%s/objects/%.2s/%s", f->path, hex, hex + 2);
}

static void index_file(const fixture *f, char *out, size_t cap) {
  snprintf(out, cap, "%s/index/data.mdb", f->path);
}

static void expect_open_error(const char *path, const char *needle) {
  aqs_store *s = NULL;
  aqs_err err;
  aqs_err_clear(&err);
  assert_int_equal(aqs_store_open(path, 0, &s, &err), AQS_ERR_CORRUPT);
  assert_null(s);
  if (!strstr(err.msg, needle)) fail_msg("'%s' not in: %s", needle, err.msg);
  assert_non_null(strstr(err.msg, "aqs verify --reindex"));
  assert_non_null(strstr(err.msg, path));
  aqs_err_clear(&err);
  assert_int_equal(aqs_store_open(path, AQS_STORE_RDONLY, &s, &err), AQS_ERR_CORRUPT);
}

static void test_truncated_index(void **state) {
  (void)state;
  fixture f;
  make_fixture(&f);
  char file[4400], copy[4500], cmd[9200];
  index_file(&f, file, sizeof file);
  snprintf(copy, sizeof copy, "%s.orig", file);
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", file, copy);
  assert_int_equal(system(cmd), 0);
  struct stat sb;
  assert_int_equal(stat(file, &sb), 0);
  /* Every page boundary from a single page up to one page short (SIGBUS before): a cut through
   * the meta pages is "damaged", through the pages a tree reaches "truncated"; a cut that only
   * drops free pages leaves an intact store (see test_index_shorter_than_last_page). */
  int cut_trees = 0, intact = 0;
  for (off_t size = 4096; size < sb.st_size; size += 4096) {
    assert_int_equal(truncate(file, size), 0);
    aqs_store *s = NULL;
    aqs_err err;
    aqs_err_clear(&err);
    if (size >= 8192 && aqs_store_open(f.path, 0, &s, &err) == AQS_OK) {
      aqs_digest d;
      ASSERT_OK(aqs_ref_get(s, "builds/demo", &d, &err));
      aqs_action_info info;
      ASSERT_OK(aqs_action_lookup(s, "demo", &f.action_key, &info, &err));
      aqs_action_info_free(&info);
      aqs_verify_report vr;
      ASSERT_OK(aqs_verify(s, NULL, NULL, NULL, &vr, &err));
      aqs_store_close(s);
      intact++;
    } else {
      expect_open_error(f.path, size < 8192 ? "damaged" : "truncated");
      cut_trees += size >= 8192;
    }
    /* restore for the next size */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", copy, file);
    assert_int_equal(system(cmd), 0);
  }
  printf("truncated index: %d cuts through tree pages detected, %d cuts of free pages only opened intact\n",
         cut_trees, intact);
  assert_true(cut_trees > 0);
  unlink(copy);
  free_fixture(&f);
}

/* LMDB does not write pages a transaction allocated and freed again (they join the free list
 * unwritten), so after a large deletion such as a gc the file can end before the meta pages' last
 * page (seen on a 3b store: "needs 613 pages, the file holds 610"). Such a store is intact: it
 * opens, reads, writes and verifies. Made here by raising both metas' last page past the end. */
static void test_index_shorter_than_last_page(void **state) {
  (void)state;
  fixture f;
  make_fixture(&f);
  char file[4400];
  index_file(&f, file, sizeof file);
  int fd = open(file, O_RDWR);
  assert_true(fd >= 0);
  struct stat sb;
  assert_int_equal(fstat(fd, &sb), 0);
  for (int i = 0; i < 2; i++) { /* MDB_meta.mm_last_pg: page header 16 + 120 bytes in */
    uint64_t last = (uint64_t)sb.st_size / 4096 + 2;
    assert_int_equal(pwrite(fd, &last, 8, (off_t)i * 4096 + 136), 8);
  }
  close(fd);
  aqs_err err;
  aqs_err_clear(&err);
  aqs_store *s = tl_open(f.path);
  aqs_digest d;
  ASSERT_OK(aqs_ref_get(s, "builds/demo", &d, &err));
  assert_true(aqs_digest_eq(&d, &f.manifest.digest));
  void *data = NULL;
  size_t len = 0;
  ASSERT_OK(aqs_get_mem(s, &f.small.digest, &data, &len, &err));
  assert_memory_equal(data, f.small_bytes, sizeof f.small_bytes);
  free(data);
  uint8_t more[500];
  tl_fill(more, sizeof more, 9);
  aqs_put_info put;
  ASSERT_OK(aqs_put_mem(s, more, sizeof more, NULL, &put, &err)); /* a write: new pages past the end */
  aqs_verify_report vr;
  ASSERT_OK(aqs_verify(s, NULL, NULL, NULL, &vr, &err));
  aqs_store_close(s);
  s = tl_open(f.path); /* and again after that commit */
  ASSERT_OK(aqs_get_mem(s, &put.digest, &data, &len, &err));
  assert_memory_equal(data, more, sizeof more);
  free(data);
  aqs_store_close(s);
  free_fixture(&f);
}

static void test_damaged_pages(void **state) {
  (void)state;
  fixture f;
  make_fixture(&f);
  char file[4400], copy[4500];
  index_file(&f, file, sizeof file);
  snprintf(copy, sizeof copy, "%s.orig", file);
  struct stat sb;
  assert_int_equal(stat(file, &sb), 0);
  assert_int_equal(link(file, copy), 0);
  int detected = 0, pages = (int)(sb.st_size / 4096);
  uint8_t page[4096];
  for (int p = 0; p < pages; p++) {
    /* zero page p, then random bytes in page p */
    for (int kind = 0; kind < 2; kind++) {
      unlink(file);
      char cmd[9200];
      snprintf(cmd, sizeof cmd, "cp '%s' '%s'", copy, file);
      assert_int_equal(system(cmd), 0);
      if (kind == 0) memset(page, 0, sizeof page);
      else tl_fill(page, sizeof page, (uint64_t)p + 100);
      int fd = open(file, O_RDWR);
      assert_int_equal(pwrite(fd, page, sizeof page, (off_t)p * 4096), (ssize_t)sizeof page);
      close(fd);
      aqs_store *s = NULL;
      aqs_err err;
      aqs_err_clear(&err);
      aqs_status st = aqs_store_open(f.path, AQS_STORE_RDONLY, &s, &err);
      if (st == AQS_OK) { /* a free or unused page: the store must still read right */
        aqs_digest d;
        aqs_status rs = aqs_ref_get(s, "builds/demo", &d, &err);
        assert_true(rs == AQS_OK || rs == AQS_ERR_NOT_FOUND);
        aqs_store_close(s);
      } else {
        assert_int_equal(st, AQS_ERR_CORRUPT);
        assert_non_null(strstr(err.msg, "aqs verify --reindex"));
        detected++;
      }
    }
  }
  /* The meta pages and the pages holding live records are always caught. */
  assert_true(detected >= 4);
  free_fixture(&f);
}

static void test_lost_index_and_reindex(void **state) {
  (void)state;
  for (int how = 0; how < 3; how++) { /* deleted, emptied, damaged */
    fixture f;
    make_fixture(&f);
    char file[4400];
    index_file(&f, file, sizeof file);
    if (how == 0) assert_int_equal(unlink(file), 0);
    if (how == 1) assert_int_equal(truncate(file, 0), 0);
    if (how == 2) assert_int_equal(truncate(file, 3 * 4096), 0);
    expect_open_error(f.path, how == 2 ? "damaged" : "lost");
    aqs_err err;
    aqs_err_clear(&err);
    aqs_reindex_report r;
    ASSERT_OK(aqs_store_reindex(f.path, &r, &err));
    assert_int_equal(r.files_scanned, 1);
    assert_int_equal(r.objects, 3);
    assert_int_equal(r.inline_objects, 2);
    assert_int_equal(r.actions, 1);
    assert_int_equal(r.refs, 1);
    aqs_store *s = tl_open(f.path);
    aqs_digest d;
    ASSERT_OK(aqs_ref_get(s, "builds/demo", &d, &err));
    assert_true(aqs_digest_eq(&d, &f.manifest.digest));
    aqs_action_info info;
    ASSERT_OK(aqs_action_lookup(s, "demo", &f.action_key, &info, &err));
    assert_true(aqs_digest_eq(&info.result, &f.manifest.digest));
    aqs_action_info_free(&info);
    void *data = NULL;
    size_t len = 0;
    ASSERT_OK(aqs_get_mem(s, &f.small.digest, &data, &len, &err));
    assert_memory_equal(data, f.small_bytes, sizeof f.small_bytes);
    free(data);
    aqs_digest *children = NULL;
    size_t n = 0;
    ASSERT_OK(aqs_object_children(s, &f.manifest.digest, &children, &n, &err));
    assert_int_equal(n, 2);
    free(children);
    aqs_verify_report vr;
    ASSERT_OK(aqs_verify(s, NULL, NULL, NULL, &vr, &err));
    assert_int_equal(vr.ok, 3);
    aqs_store_close(s);
    free_fixture(&f);
  }
}

static void test_reindex_skips_damaged_journal(void **state) {
  (void)state;
  fixture f;
  make_fixture(&f);
  char journal[4400], file[4400];
  snprintf(journal, sizeof journal, "%s/journal", f.path);
  index_file(&f, file, sizeof file);
  /* The last record is the ref: damage it. */
  struct stat sb;
  assert_int_equal(stat(journal, &sb), 0);
  flip_file_byte(journal, sb.st_size - 40);
  assert_int_equal(unlink(file), 0);
  aqs_err err;
  aqs_err_clear(&err);
  aqs_reindex_report r;
  ASSERT_OK(aqs_store_reindex(f.path, &r, &err));
  assert_int_equal(r.journal_damaged, 1);
  assert_int_equal(r.refs, 0);
  assert_int_equal(r.actions, 1);
  free_fixture(&f);
}

static void test_read_quarantines(void **state) {
  (void)state;
  fixture f;
  make_fixture(&f);
  char file[4400];
  raw_file(&f, file, sizeof file);
  aqs_store *s = tl_open(f.path);
  notices n = {0};
  aqs_store_set_notice(s, on_notice, &n);
  aqs_err err;
  aqs_err_clear(&err);
  ASSERT_OK(aqs_object_check(s, &f.raw.digest, &err));
  assert_int_equal(n.count, 0);
  flip_file_byte(file, 777);
  /* The stamp no longer matches (mtime/ctime changed): the check hashes, finds it, quarantines. */
  assert_int_equal(aqs_object_check(s, &f.raw.digest, &err), AQS_ERR_CORRUPT);
  assert_int_equal(n.count, 1);
  char hex[AQS_DIGEST_STR_SIZE];
  assert_non_null(strstr(n.last, aqs_digest_str(&f.raw.digest, hex)));
  assert_non_null(strstr(n.last, "repaired"));
  assert_int_equal(aqs_object_stat(s, &f.raw.digest, NULL, &err), AQS_ERR_NOT_FOUND);
  char q[4400];
  snprintf(q, sizeof q, "%s/quarantine/%s", f.path, hex + 7);
  assert_int_equal(access(q, F_OK), 0);
  /* The action whose result reaches it now misses; putting the bytes again repairs it. */
  aqs_action_info info;
  assert_int_equal(aqs_action_lookup(s, "demo", &f.action_key, &info, &err), AQS_ERR_NOT_FOUND);
  aqs_put_opts raw = {.compress = AQS_COMPRESS_RAW};
  aqs_put_info pi;
  ASSERT_OK(aqs_put_mem(s, f.raw_bytes, sizeof f.raw_bytes, &raw, &pi, &err));
  assert_false(pi.deduped);
  aqs_store_close(s);
  free_fixture(&f);
}

static void test_lookup_misses_on_damage(void **state) {
  (void)state;
  fixture f;
  make_fixture(&f);
  char file[4400];
  raw_file(&f, file, sizeof file);
  flip_file_byte(file, 5);
  aqs_err err;
  aqs_err_clear(&err);
  /* Read-only: a miss, nothing moved. */
  aqs_store *s = NULL;
  ASSERT_OK(aqs_store_open(f.path, AQS_STORE_RDONLY, &s, &err));
  aqs_action_info info;
  assert_int_equal(aqs_action_lookup(s, "demo", &f.action_key, &info, &err), AQS_ERR_NOT_FOUND);
  assert_int_equal(access(file, F_OK), 0);
  aqs_store_close(s);
  /* Writable: a miss, and the damaged child is quarantined. */
  s = tl_open(f.path);
  assert_int_equal(aqs_action_lookup(s, "demo", &f.action_key, &info, &err), AQS_ERR_NOT_FOUND);
  assert_int_equal(access(file, F_OK), -1);
  aqs_store_close(s);
  free_fixture(&f);
}

static void test_dedup_repairs_damaged_object(void **state) {
  (void)state;
  fixture f;
  make_fixture(&f);
  char file[4400];
  raw_file(&f, file, sizeof file);
  flip_file_byte(file, 100);
  aqs_store *s = tl_open(f.path);
  aqs_err err;
  aqs_err_clear(&err);
  aqs_put_opts raw = {.compress = AQS_COMPRESS_RAW};
  aqs_put_info pi;
  ASSERT_OK(aqs_put_mem(s, f.raw_bytes, sizeof f.raw_bytes, &raw, &pi, &err));
  assert_false(pi.deduped);
  void *data = NULL;
  size_t len = 0;
  ASSERT_OK(aqs_get_mem(s, &f.raw.digest, &data, &len, &err));
  assert_memory_equal(data, f.raw_bytes, sizeof f.raw_bytes);
  free(data);
  aqs_store_close(s);
  free_fixture(&f);
}

static void test_unindexed_files_reported(void **state) {
  (void)state;
  fixture f;
  make_fixture(&f);
  /* An object file the index does not know, older than the in-flight grace. */
  uint8_t bytes[9000];
  tl_fill(bytes, sizeof bytes, 77);
  aqs_digest d;
  aqs_sha256_buf(bytes, sizeof bytes, &d);
  char hex[AQS_DIGEST_HEX_LEN + 1], dir[4400], file[4500];
  aqs_digest_hex(&d, hex);
  snprintf(dir, sizeof dir, "%s/objects/%.2s", f.path, hex);
  mkdir(dir, 0755);
  snprintf(file, sizeof file, "%s/%s", dir, hex + 2);
  FILE *out = fopen(file, "wb");
  assert_non_null(out);
  assert_int_equal(fwrite(bytes, 1, sizeof bytes, out), sizeof bytes);
  fclose(out);
  aqs_store *s = tl_open(f.path);
  aqs_err err;
  aqs_err_clear(&err);
  aqs_verify_report r;
  ASSERT_OK(aqs_verify(s, NULL, NULL, NULL, &r, &err)); /* fresh: could be a put in flight */
  assert_int_equal(r.unindexed, 0);
  struct timespec old[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
  assert_int_equal(utimensat(AT_FDCWD, file, old, 0), 0);
  assert_int_equal(aqs_verify(s, NULL, NULL, NULL, &r, &err), AQS_ERR_CORRUPT);
  assert_int_equal(r.unindexed, 1);
  assert_non_null(strstr(err.msg, "--reindex"));
  aqs_store_close(s);
  aqs_reindex_report rr;
  ASSERT_OK(aqs_store_reindex(f.path, &rr, &err));
  assert_int_equal(rr.objects, 4);
  free_fixture(&f);
}

static void test_gc_compacts_journal(void **state) {
  (void)state;
  fixture f;
  make_fixture(&f);
  aqs_store *s = tl_open(f.path);
  aqs_err err;
  aqs_err_clear(&err);
  /* 50 unpinned inline objects, then gc evicts them all. */
  uint8_t junk[1000];
  aqs_put_info last;
  for (int i = 0; i < 50; i++) {
    tl_fill(junk, sizeof junk, 1000 + (uint64_t)i);
    ASSERT_OK(aqs_put_mem(s, junk, sizeof junk, NULL, &last, &err));
  }
  char journal[4400], file[4400];
  snprintf(journal, sizeof journal, "%s/journal", f.path);
  struct stat before, after;
  assert_int_equal(stat(journal, &before), 0);
  aqs_gc_opts go = {.size_limit_bytes = 0, .orphan_grace_s = -1};
  aqs_gc_report gr;
  ASSERT_OK(aqs_gc(s, &go, NULL, NULL, &gr, &err));
  assert_int_equal(gr.evicted_objects, 50);
  assert_int_equal(stat(journal, &after), 0);
  assert_true(after.st_size < before.st_size / 2);
  aqs_store_close(s);
  /* The compacted journal still restores what is pinned, and not what gc evicted. */
  index_file(&f, file, sizeof file);
  assert_int_equal(unlink(file), 0);
  aqs_reindex_report r;
  ASSERT_OK(aqs_store_reindex(f.path, &r, &err));
  assert_int_equal(r.objects, 3);
  assert_int_equal(r.actions, 1);
  assert_int_equal(r.refs, 1);
  s = tl_open(f.path);
  assert_int_equal(aqs_object_stat(s, &last.digest, NULL, &err), AQS_ERR_NOT_FOUND);
  aqs_store_close(s);
  free_fixture(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_truncated_index),
      cmocka_unit_test(test_index_shorter_than_last_page),
      cmocka_unit_test(test_damaged_pages),
      cmocka_unit_test(test_lost_index_and_reindex),
      cmocka_unit_test(test_reindex_skips_damaged_journal),
      cmocka_unit_test(test_read_quarantines),
      cmocka_unit_test(test_lookup_misses_on_damage),
      cmocka_unit_test(test_dedup_repairs_damaged_object),
      cmocka_unit_test(test_unindexed_files_reported),
      cmocka_unit_test(test_gc_compacts_journal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
