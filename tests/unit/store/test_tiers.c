/* tests/unit/store/test_tiers.c: the shared tiers without a network: validation of remote answers
 * (status classes, action and ref records, manifest recognition), a secondary store behind a
 * primary (probe mode copies nothing; fetch mode copies closures with their kinds and the action
 * record with its provenance; a damaged secondary object is refused), attach errors, and the
 * remote client's errors against a closed port. The HTTP paths run against nginx in
 * tests/integration/share_remote.sh. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/remote_response.h"
#include "store/tiers.h"
#include "store_testlib.h"

static void test_classify(void **state) {
  (void)state;
  assert_int_equal(aqs_remote_classify(200), AQS_REMOTE_OK);
  assert_int_equal(aqs_remote_classify(204), AQS_REMOTE_OK);
  assert_int_equal(aqs_remote_classify(404), AQS_REMOTE_MISSING);
  assert_int_equal(aqs_remote_classify(500), AQS_REMOTE_RETRY);
  assert_int_equal(aqs_remote_classify(503), AQS_REMOTE_RETRY);
  assert_int_equal(aqs_remote_classify(429), AQS_REMOTE_RETRY);
  assert_int_equal(aqs_remote_classify(0), AQS_REMOTE_RETRY);
  assert_int_equal(aqs_remote_classify(401), AQS_REMOTE_AUTH);
  assert_int_equal(aqs_remote_classify(403), AQS_REMOTE_AUTH);
  assert_int_equal(aqs_remote_classify(400), AQS_REMOTE_REJECTED);
  assert_int_equal(aqs_remote_classify(301), AQS_REMOTE_REJECTED);
}

static void test_action_check(void **state) {
  (void)state;
  aqs_err err;
  aqs_err_clear(&err);
  const char *key_doc = "{\"inputs\":{},\"params\":{},\"stage\":\"slice\",\"stage_version\":\"1\"}";
  aqs_digest key, result, got, other;
  aqs_sha256_buf(key_doc, strlen(key_doc), &key);
  aqs_sha256_buf("r", 1, &result);
  char rtext[AQS_DIGEST_STR_SIZE];
  json_t *rec = json_pack("{s:s, s:s, s:s}", "result", aqs_digest_str(&result, rtext), "stage", "slice",
                          "key_doc", key_doc);
  char *body = json_dumps(rec, JSON_COMPACT);
  ASSERT_OK(aqs_remote_action_check(&key, body, strlen(body), &got, &err));
  assert_true(aqs_digest_eq(&got, &result));
  aqs_sha256_buf("x", 1, &other);
  assert_int_equal(aqs_remote_action_check(&other, body, strlen(body), NULL, &err), AQS_ERR_CORRUPT);
  assert_non_null(strstr(err.msg, "hashes to another key"));
  char *version = strstr(body, "\\\"1\\\""); /* the key document's stage_version, damaged in transit */
  assert_non_null(version);
  version[2] = '2';
  assert_int_equal(aqs_remote_action_check(&key, body, strlen(body), NULL, &err), AQS_ERR_CORRUPT);
  assert_non_null(strstr(err.msg, "hashes to another key"));
  assert_int_equal(aqs_remote_action_check(&key, "", 0, NULL, &err), AQS_ERR_CORRUPT);
  assert_non_null(strstr(err.msg, "it is empty"));
  assert_int_equal(aqs_remote_action_check(&key, "[1]", 3, NULL, &err), AQS_ERR_CORRUPT);
  assert_non_null(strstr(err.msg, "not a JSON object"));
  json_object_del(rec, "result");
  free(body);
  body = json_dumps(rec, JSON_COMPACT);
  assert_int_equal(aqs_remote_action_check(&key, body, strlen(body), NULL, &err), AQS_ERR_CORRUPT);
  assert_non_null(strstr(err.msg, "no valid \"result\""));
  free(body);
  json_decref(rec);
}

static void test_ref_records(void **state) {
  (void)state;
  aqs_err err;
  aqs_err_clear(&err);
  aqs_digest target, actions[2], k1, k2;
  aqs_sha256_buf("t", 1, &target);
  aqs_sha256_buf("a", 1, &actions[0]);
  aqs_sha256_buf("b", 1, &actions[1]);
  /* The alias record recipe/top50 names the build's full ref. */
  char *body = aqs_remote_ref_encode("recipe/top50", "recipe/top50/0123456789abcdef-fedcba9876543210", &target,
                                     actions, 2);
  aqs_remote_ref rec;
  ASSERT_OK(aqs_remote_ref_check("recipe/top50", body, strlen(body), &rec, &err));
  assert_string_equal(rec.ref, "recipe/top50/0123456789abcdef-fedcba9876543210");
  assert_true(aqs_digest_eq(&rec.target, &target));
  assert_int_equal(rec.n_actions, 2);
  assert_true(aqs_digest_eq(&rec.actions[1], &actions[1]));
  aqs_remote_ref_free(&rec);
  assert_int_equal(aqs_remote_ref_check("recipe/top60", body, strlen(body), NULL, &err), AQS_ERR_CORRUPT);
  assert_non_null(strstr(err.msg, "names another ref"));
  free(body);
  body = aqs_remote_ref_encode("x", "a b", &target, NULL, 0);
  assert_int_equal(aqs_remote_ref_check("x", body, strlen(body), NULL, &err), AQS_ERR_CORRUPT);
  assert_non_null(strstr(err.msg, "no valid \"ref\" name"));
  free(body);
  assert_int_equal(aqs_remote_ref_check("x", "{\"kind\":\"other\"}", 16, NULL, &err), AQS_ERR_CORRUPT);
  assert_non_null(strstr(err.msg, "not an aqs ref record"));
  /* The key depends on the name only, and differs between names. */
  aqs_remote_ref_key("recipe/top50", &k1);
  aqs_remote_ref_key("recipe/top50", &k2);
  assert_true(aqs_digest_eq(&k1, &k2));
  aqs_remote_ref_key("recipe/top5", &k2);
  assert_false(aqs_digest_eq(&k1, &k2));
  aqs_digest want;
  aqs_sha256_buf("aqs-ref:recipe/top50", 20, &want);
  assert_true(aqs_digest_eq(&k1, &want));
}

static void test_manifest_recognition(void **state) {
  (void)state;
  aqs_digest *children = NULL, d;
  size_t n = 0;
  aqs_sha256_buf("c", 1, &d);
  char text[AQS_DIGEST_STR_SIZE], doc[256];
  snprintf(doc, sizeof doc, " {\"children\":[\"%s\",\"%s\"],\"kind\":\"x\"}", aqs_digest_str(&d, text), text);
  assert_int_equal(aqs_remote_manifest_children(doc, strlen(doc), &children, &n), 1);
  assert_int_equal(n, 2);
  assert_true(aqs_digest_eq(&children[0], &d));
  free(children);
  assert_int_equal(aqs_remote_manifest_children("{\"children\":[]}", 15, &children, &n), 1);
  assert_int_equal(n, 0);
  assert_int_equal(aqs_remote_manifest_children("{\"children\":[\"sha256:12\"]}", 26, &children, &n), 0);
  assert_int_equal(aqs_remote_manifest_children("{\"kids\":[]}", 11, &children, &n), 0);
  assert_int_equal(aqs_remote_manifest_children("\x00\x01raw", 5, &children, &n), 0);
  assert_null(children);
}

/* A secondary S holding a manifest (a raw child, a zstd child) and an action; a primary P. */
typedef struct two_stores {
  char *dir_p, *path_p, *dir_s, *path_s;
  aqs_store *p, *s;
  aqs_digest raw, small, manifest, key;
  char *key_doc;
} two_stores;

static void setup_two(two_stores *t) {
  aqs_err err;
  aqs_err_clear(&err);
  t->path_p = tl_new_store("tiers-p", &t->dir_p, 0);
  t->path_s = tl_new_store("tiers-s", &t->dir_s, 0);
  aqs_store *w = tl_open(t->path_s);
  uint8_t big[3 * INLINE_MAX_TEST];
  tl_fill(big, sizeof big, 7);
  aqs_put_info info;
  ASSERT_OK(aqs_put_mem(w, big, sizeof big, &(aqs_put_opts){.compress = AQS_COMPRESS_RAW}, &info, &err));
  t->raw = info.digest;
  ASSERT_OK(aqs_put_mem(w, "small bytes", 11, NULL, &info, &err));
  t->small = info.digest;
  char a[AQS_DIGEST_STR_SIZE], b[AQS_DIGEST_STR_SIZE], doc[300];
  snprintf(doc, sizeof doc, "{\"children\":[\"%s\",\"%s\"]}", aqs_digest_str(&t->raw, a), aqs_digest_str(&t->small, b));
  ASSERT_OK(aqs_put_mem(w, doc, strlen(doc), &(aqs_put_opts){.manifest = 1}, &info, &err));
  t->manifest = info.digest;
  json_t *params = json_pack("{s:i}", "n", 1);
  ASSERT_OK(aqs_action_key("export", "1", NULL, params, &t->key, &t->key_doc, &err));
  json_decref(params);
  ASSERT_OK(aqs_action_put(w, t->key_doc, &t->manifest, 4.5, NULL, &err));
  aqs_store_close(w);
  t->p = tl_open(t->path_p);
  ASSERT_OK(aqs_store_add_secondary(t->p, t->path_s, &err));
  t->s = tl_open(t->path_s);
}

static void teardown_two(two_stores *t) {
  aqs_store_close(t->p);
  aqs_store_close(t->s);
  free(t->key_doc);
  tl_cleanup(t->dir_p, t->path_p);
  tl_cleanup(t->dir_s, t->path_s);
}

static void test_secondary_probe(void **state) {
  (void)state;
  two_stores t;
  setup_two(&t);
  aqs_err err;
  aqs_err_clear(&err);
  aqs_store_set_tier_probe(t.p, 1);
  aqs_action_info info;
  ASSERT_OK(aqs_action_lookup(t.p, "export", &t.key, &info, &err));
  assert_true(aqs_digest_eq(&info.result, &t.manifest));
  char want[AQS_SOURCE_MAX];
  snprintf(want, sizeof want, "secondary %s", t.path_s);
  assert_string_equal(info.source, want);
  aqs_action_info_free(&info);
  assert_false(aqs_object_exists(t.p, &t.manifest)); /* probe copies nothing */
  void *data = NULL;
  size_t len = 0;
  ASSERT_OK(aqs_get_mem(t.p, &t.small, &data, &len, &err)); /* read straight from the secondary */
  assert_int_equal(len, 11);
  assert_memory_equal(data, "small bytes", 11);
  free(data);
  assert_false(aqs_object_exists(t.p, &t.small));
  char source[AQS_SOURCE_MAX];
  ASSERT_OK(aqs_tiers_action_source(t.p, &t.key, source, sizeof source, &err));
  assert_string_equal(source, want);
  teardown_two(&t);
}

static void test_secondary_fetch(void **state) {
  (void)state;
  two_stores t;
  setup_two(&t);
  aqs_err err;
  aqs_err_clear(&err);
  aqs_action_info orig, info;
  ASSERT_OK(aqs_action_lookup(t.s, "export", &t.key, &orig, &err));
  ASSERT_OK(aqs_action_lookup(t.p, "export", &t.key, &info, &err));
  assert_true(aqs_object_exists(t.p, &t.manifest) && aqs_object_exists(t.p, &t.raw) &&
              aqs_object_exists(t.p, &t.small));
  aqs_object_info oi;
  ASSERT_OK(aqs_object_stat(t.p, &t.raw, &oi, &err));
  assert_int_equal(oi.kind, AQS_OBJ_FILE_RAW); /* linkable, as in the secondary */
  ASSERT_OK(aqs_object_stat(t.p, &t.manifest, &oi, &err));
  assert_true(oi.manifest);
  aqs_digest *children = NULL;
  size_t n = 0;
  ASSERT_OK(aqs_object_children(t.p, &t.manifest, &children, &n, &err));
  assert_int_equal(n, 2);
  free(children);
  aqs_action_info_free(&info);
  /* Now a local hit with the original provenance. */
  ASSERT_OK(aqs_action_lookup(t.p, "export", &t.key, &info, &err));
  assert_string_equal(info.source, "");
  assert_true(info.created_ns == orig.created_ns && info.wall_seconds == 4.5);
  assert_string_equal(info.host, orig.host);
  aqs_action_info_free(&info);
  aqs_action_info_free(&orig);
  aqs_verify_report rep;
  ASSERT_OK(aqs_verify(t.p, NULL, NULL, NULL, &rep, &err));
  assert_int_equal(rep.checked, 3);
  char source[AQS_SOURCE_MAX];
  ASSERT_OK(aqs_tiers_action_source(t.p, &t.key, source, sizeof source, &err));
  assert_string_equal(source, "");
  teardown_two(&t);
}

static void keep_warning(const char *msg, void *user) { snprintf(user, AQS_ERR_MSG_MAX + 256, "%s", msg); }

/* A damaged object in the secondary is never copied: the lookup misses (with a warning) and a
 * direct read fails CORRUPT naming the secondary. */
static void test_secondary_damaged(void **state) {
  (void)state;
  two_stores t;
  setup_two(&t);
  aqs_err err;
  aqs_err_clear(&err);
  char path[4400];
  ASSERT_OK(aqs_object_path(t.s, &t.raw, path, sizeof path, &err));
  chmod(path, 0644);
  FILE *f = fopen(path, "r+b");
  fseek(f, 10, SEEK_SET);
  fputc(0xAB, f);
  fclose(f);
  char warned[AQS_ERR_MSG_MAX + 256] = "";
  aqs_store_set_tier_warn(t.p, keep_warning, warned);
  aqs_action_info info;
  assert_int_equal(aqs_action_lookup(t.p, "export", &t.key, &info, &err), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(warned, "is corrupt"));
  assert_false(aqs_object_exists(t.p, &t.raw));
  assert_false(aqs_object_exists(t.p, &t.manifest));
  void *data = NULL;
  size_t len = 0;
  assert_int_equal(aqs_get_mem(t.p, &t.raw, &data, &len, &err), AQS_ERR_CORRUPT);
  assert_non_null(strstr(err.msg, "copying from secondary"));
  assert_false(aqs_object_exists(t.p, &t.raw));
  teardown_two(&t);
}

static void test_attach_errors(void **state) {
  (void)state;
  char *dir;
  char *path = tl_new_store("tiers-attach", &dir, 0);
  aqs_store *s = tl_open(path);
  aqs_err err;
  aqs_err_clear(&err);
  char missing[4300];
  snprintf(missing, sizeof missing, "%s/nothing-here", dir);
  assert_int_equal(aqs_store_add_secondary(s, missing, &err), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "secondary store"));
  assert_non_null(strstr(err.msg, "not found"));
  assert_int_equal(aqs_store_add_secondary(s, path, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "is the primary store itself"));
  aqs_remote *r = NULL;
  assert_int_equal(aqs_remote_open(&(aqs_remote_opts){.url = "ftp://x"}, &r, &err), AQS_ERR_INVALID);
  assert_int_equal(aqs_tiers_push(s, "x", NULL, &(aqs_digest){{0}}, NULL, &err), AQS_ERR_UNSUPPORTED);
  assert_non_null(strstr(err.msg, "no remote configured"));
  aqs_store_close(s);
  tl_cleanup(dir, path);
}

/* A port nothing listens on: every try fails to connect; the error names the URL and the tries. */
static void test_remote_unreachable(void **state) {
  (void)state;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof addr;
  assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
  getsockname(fd, (struct sockaddr *)&addr, &alen);
  close(fd); /* the port is now free and closed */
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/c/", ntohs(addr.sin_port));
  aqs_remote *r = NULL;
  aqs_err err;
  aqs_err_clear(&err);
  ASSERT_OK(aqs_remote_open(&(aqs_remote_opts){.url = url, .token = "hidden-token", .attempts = 2, .timeout_s = 1,
                                                .backoff_ms = 1},
                            &r, &err));
  url[strlen(url) - 1] = '\0';
  assert_string_equal(aqs_remote_url(r), url);
  aqs_digest d;
  aqs_sha256_buf("x", 1, &d);
  int present = 1;
  assert_int_equal(aqs_remote_cas_has(r, &d, &present, &err), AQS_ERR_IO);
  assert_false(present);
  assert_non_null(strstr(err.msg, "remote HEAD http://127.0.0.1:"));
  assert_non_null(strstr(err.msg, "(after 2 tries)"));
  assert_null(strstr(err.msg, "hidden-token"));
  aqs_remote_stats st;
  aqs_remote_get_stats(r, &st);
  assert_int_equal(st.requests, 2);
  assert_int_equal(st.retries, 1);
  aqs_remote_close(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_classify),          cmocka_unit_test(test_action_check),
      cmocka_unit_test(test_ref_records),       cmocka_unit_test(test_manifest_recognition),
      cmocka_unit_test(test_secondary_probe),   cmocka_unit_test(test_secondary_fetch),
      cmocka_unit_test(test_secondary_damaged), cmocka_unit_test(test_attach_errors),
      cmocka_unit_test(test_remote_unreachable),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
