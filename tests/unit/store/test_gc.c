/* tests/unit/store/test_gc.c: gc keeps what refs reach through manifest children, evicts the
 * least recently used of the rest down to the limit (manifests go with their evicted children,
 * actions with their results), dry-run changes nothing, orphans are removed, verify passes. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_testlib.h"

#define BLOB 10000

typedef struct victims {
  aqs_digest d[16];
  int n;
} victims;

static void note_victim(const aqs_object_info *info, void *user) {
  victims *v = user;
  if (v->n < 16) v->d[v->n++] = info->digest;
}

static aqs_put_info put_blob(aqs_store *s, uint64_t seed) {
  uint8_t buf[BLOB];
  tl_fill(buf, sizeof buf, seed);
  aqs_put_info info;
  aqs_err err;
  aqs_err_clear(&err);
  ASSERT_OK(aqs_put_mem(s, buf, sizeof buf, &(aqs_put_opts){.compress = AQS_COMPRESS_RAW}, &info,
                        &err));
  return info;
}

static aqs_put_info put_manifest(aqs_store *s, const aqs_digest *kids, int n) {
  char doc[1024] = "{\"children\":[";
  for (int i = 0; i < n; i++) {
    char t[AQS_DIGEST_STR_SIZE + 4];
    char d[AQS_DIGEST_STR_SIZE];
    snprintf(t, sizeof t, "%s\"%s\"", i ? "," : "", aqs_digest_str(&kids[i], d));
    strcat(doc, t);
  }
  strcat(doc, "]}");
  aqs_put_info info;
  aqs_err err;
  aqs_err_clear(&err);
  ASSERT_OK(aqs_put_mem(s, doc, strlen(doc), &(aqs_put_opts){.manifest = 1}, &info, &err));
  return info;
}

static void test_gc_lru_and_pins(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("gc", &dir, 0);
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  aqs_put_info c1 = put_blob(s, 1), c2 = put_blob(s, 2);
  aqs_digest kids[2] = {c1.digest, c2.digest};
  aqs_put_info m = put_manifest(s, kids, 2);
  ASSERT_OK(aqs_ref_set(s, "keep", &m.digest, NULL, &err));
  aqs_put_info u[6];
  for (int i = 1; i <= 5; i++) u[i] = put_blob(s, 100 + (uint64_t)i);
  aqs_put_info p = put_manifest(s, &u[1].digest, 1); /* unpinned manifest over u1 */
  /* An action whose result is p, and a read that makes u2 the most recently used. */
  char *doc = NULL;
  aqs_digest key;
  ASSERT_OK(aqs_action_key("export", "1", NULL, NULL, &key, &doc, &err));
  ASSERT_OK(aqs_action_put(s, doc, &p.digest, 0.5, NULL, &err));
  free(doc);
  void *data;
  size_t len;
  ASSERT_OK(aqs_get_mem(s, &u[2].digest, &data, &len, &err));
  free(data);
  ASSERT_OK(aqs_store_flush(s, &err));

  uint64_t pinned = c1.stored_bytes + c2.stored_bytes + m.stored_bytes;
  aqs_gc_opts opts = {.size_limit_bytes = (int64_t)(pinned + 25000), .dry_run = 1,
                      .orphan_grace_s = -1};
  victims v = {0};
  aqs_gc_report r;
  ASSERT_OK(aqs_gc(s, &opts, note_victim, &v, &r, &err));
  /* LRU: u1 (with the manifest p that lists it), then u3, u4; u5 and u2 (read last) stay. */
  assert_int_equal(v.n, 4);
  assert_true(aqs_digest_eq(&v.d[0], &u[1].digest));
  assert_true(aqs_digest_eq(&v.d[1], &p.digest));
  assert_true(aqs_digest_eq(&v.d[2], &u[3].digest));
  assert_true(aqs_digest_eq(&v.d[3], &u[4].digest));
  assert_int_equal(r.pinned_objects, 3);
  assert_int_equal(r.pinned_bytes, pinned);
  assert_true(r.bytes_after <= pinned + 25000);
  assert_true(aqs_object_exists(s, &u[1].digest)); /* dry run: nothing removed */

  opts.dry_run = 0;
  v.n = 0;
  ASSERT_OK(aqs_gc(s, &opts, note_victim, &v, &r, &err));
  assert_int_equal(v.n, 4);
  assert_int_equal(r.evicted_objects, 4);
  assert_int_equal(r.actions_removed, 1);
  assert_false(aqs_object_exists(s, &u[1].digest));
  assert_false(aqs_object_exists(s, &p.digest));
  assert_false(aqs_object_exists(s, &u[3].digest));
  assert_true(aqs_object_exists(s, &u[2].digest));
  assert_true(aqs_object_exists(s, &u[5].digest));
  assert_true(aqs_object_exists(s, &c1.digest) && aqs_object_exists(s, &c2.digest));
  assert_int_equal(aqs_action_lookup(s, "export", &key, NULL, &err), AQS_ERR_NOT_FOUND);
  char hex[65], file[4400];
  aqs_digest_hex(&u[3].digest, hex);
  snprintf(file, sizeof file, "%s/objects/%.2s/%s", path, hex, hex + 2);
  assert_int_not_equal(access(file, F_OK), 0); /* the file went with the record */
  aqs_store_stats st;
  ASSERT_OK(aqs_store_stats_get(s, &st, &err));
  assert_int_equal(st.objects, 5);
  assert_int_equal(st.bytes_stored, r.bytes_after);
  assert_int_equal(st.evictions, 4);
  aqs_store_stats_free(&st);

  /* Limit 0: everything unpinned goes; the pinned tree stays and verifies. */
  opts.size_limit_bytes = 0;
  ASSERT_OK(aqs_gc(s, &opts, NULL, NULL, &r, &err));
  assert_int_equal(r.evicted_objects, 2);
  ASSERT_OK(aqs_store_stats_get(s, &st, &err));
  assert_int_equal(st.objects, 3);
  aqs_store_stats_free(&st);
  aqs_verify_report vr;
  ASSERT_OK(aqs_verify(s, NULL, NULL, NULL, &vr, &err));
  assert_int_equal(vr.ok, 3);
  /* Without a limit (none configured) gc evicts nothing. */
  put_blob(s, 999);
  opts.size_limit_bytes = -1;
  ASSERT_OK(aqs_gc(s, &opts, NULL, NULL, &r, &err));
  assert_int_equal(r.evicted_objects, 0);
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

static void test_gc_orphans(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("gcorphan", &dir, 0);
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  aqs_put_info kept = put_blob(s, 5);
  char tmp_file[4400], stray[4600], stray_dir[4400];
  snprintf(tmp_file, sizeof tmp_file, "%s/tmp/put-1-abcdef", path);
  tu_write_file(tmp_file, "partial", 7);
  snprintf(stray_dir, sizeof stray_dir, "%s/objects/ff", path);
  mkdir(stray_dir, 0755);
  snprintf(stray, sizeof stray, "%s/%062d", stray_dir, 0);
  tu_write_file(stray, "unindexed", 9);
  aqs_gc_opts opts = {.size_limit_bytes = -1, .orphan_grace_s = 3600};
  aqs_gc_report r;
  ASSERT_OK(aqs_gc(s, &opts, NULL, NULL, &r, &err));
  assert_int_equal(r.orphan_files_removed, 0); /* young files may be writes in flight */
  opts.orphan_grace_s = 0;
  opts.dry_run = 1;
  ASSERT_OK(aqs_gc(s, &opts, NULL, NULL, &r, &err));
  assert_int_equal(r.orphan_files_removed, 2);
  assert_int_equal(access(tmp_file, F_OK), 0);
  opts.dry_run = 0;
  ASSERT_OK(aqs_gc(s, &opts, NULL, NULL, &r, &err));
  assert_int_equal(r.orphan_files_removed, 2);
  assert_int_not_equal(access(tmp_file, F_OK), 0);
  assert_int_not_equal(access(stray, F_OK), 0);
  char conf[4400];
  snprintf(conf, sizeof conf, "%s/aqs.conf", path);
  assert_int_equal(access(conf, F_OK), 0); /* the orphan scan never leaves objects/ ("..") */
  void *data;
  size_t len;
  ASSERT_OK(aqs_get_mem(s, &kept.digest, &data, &len, &err)); /* indexed files stay */
  free(data);
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gc_lru_and_pins),
      cmocka_unit_test(test_gc_orphans),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
