/* store/remote_response.c: validation of what a remote cache sends back (see remote_response.h).
 * Everything here treats the server's bytes as hostile: bounded sizes, JSON parsed with jansson,
 * digests re-computed, and a clear message for each way a body can be wrong. */
#include "store/remote_response.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define ACTION_RECORD_MAX_BYTES (16u << 20)
#define MANIFEST_PARSE_MAX_BYTES (64u << 20)
#define REF_KEY_PREFIX "aqs-ref:"

aqs_remote_class aqs_remote_classify(long http_status) {
  if (http_status >= 200 && http_status < 300) return AQS_REMOTE_OK;
  if (http_status == 404) return AQS_REMOTE_MISSING;
  if (http_status == 0 || http_status >= 500 || http_status == 408 || http_status == 429)
    return AQS_REMOTE_RETRY;
  if (http_status == 401 || http_status == 403) return AQS_REMOTE_AUTH;
  return AQS_REMOTE_REJECTED;
}

static json_t *load_object(const void *body, size_t len, size_t max, const char **why) {
  if (len > max) {
    *why = "it is too large";
    return NULL;
  }
  if (len == 0) {
    *why = "it is empty";
    return NULL;
  }
  json_error_t jerr;
  json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!doc) {
    *why = "it is not JSON";
    return NULL;
  }
  if (!json_is_object(doc)) {
    json_decref(doc);
    *why = "it is not a JSON object";
    return NULL;
  }
  return doc;
}

aqs_status aqs_remote_action_check(const aqs_digest *key, const void *body, size_t len,
                                   aqs_digest *result_out, aqs_err *err) {
  char key_short[AQS_DIGEST_SHORT_LEN + 1];
  aqs_digest_short(key, key_short);
  const char *why = NULL;
  json_t *doc = load_object(body, len, ACTION_RECORD_MAX_BYTES, &why);
  if (!doc) return aqs_errf(err, AQS_ERR_CORRUPT, "remote action record %s: %s", key_short, why);
  const char *result = json_string_value(json_object_get(doc, "result"));
  const char *stage = json_string_value(json_object_get(doc, "stage"));
  json_t *jdoc = json_object_get(doc, "key_doc");
  const char *key_doc = json_string_value(jdoc);
  aqs_digest parsed, got;
  if (!result || aqs_digest_parse(result, &parsed, NULL) != AQS_OK) why = "no valid \"result\" digest";
  else if (!stage) why = "no \"stage\"";
  else if (!key_doc) why = "no \"key_doc\"";
  else {
    aqs_sha256_buf(key_doc, json_string_length(jdoc), &got);
    if (!aqs_digest_eq(&got, key)) why = "its key document hashes to another key (stored under the wrong key or altered)";
  }
  json_decref(doc);
  if (why) return aqs_errf(err, AQS_ERR_CORRUPT, "remote action record %s: %s", key_short, why);
  if (result_out) *result_out = parsed;
  return AQS_OK;
}

void aqs_remote_ref_key(const char *name, aqs_digest *key) {
  memset(key, 0, sizeof *key);
  aqs_sha256 *h = aqs_sha256_new();
  if (!h) return;
  aqs_sha256_update(h, REF_KEY_PREFIX, strlen(REF_KEY_PREFIX));
  aqs_sha256_update(h, name, strlen(name));
  aqs_sha256_final(h, key);
  aqs_sha256_free(h);
}

char *aqs_remote_ref_encode(const char *name, const char *ref, const aqs_digest *target,
                            const aqs_digest *actions, size_t n_actions) {
  char text[AQS_DIGEST_STR_SIZE];
  json_t *list = json_array();
  for (size_t i = 0; list && i < n_actions; i++)
    json_array_append_new(list, json_string(aqs_digest_str(&actions[i], text)));
  json_t *doc = list ? json_pack("{s:s, s:s, s:s, s:s, s:o}", "kind", "aqs-ref", "name", name, "ref", ref,
                                 "target", aqs_digest_str(target, text), "actions", list)
                     : NULL;
  char *body = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(doc);
  return body;
}

void aqs_remote_ref_free(aqs_remote_ref *r) {
  if (!r) return;
  free(r->actions);
  memset(r, 0, sizeof *r);
}

/* A plausible ref name: 1..255 printable ASCII bytes without spaces (the store checks the rest). */
static int ref_name_ok(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > 255) return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] <= ' ' || s[i] > '~') return 0;
  return 1;
}

/* Parses an array of digest strings; 0 on success, -1 when an element is not a digest. */
static int parse_digest_array(const json_t *arr, aqs_digest *out) {
  for (size_t k = 0; k < json_array_size(arr); k++) {
    const char *s = json_string_value(json_array_get(arr, k));
    if (!s || aqs_digest_parse(s, &out[k], NULL) != AQS_OK) return -1;
  }
  return 0;
}

aqs_status aqs_remote_ref_check(const char *name, const void *body, size_t len, aqs_remote_ref *out,
                                aqs_err *err) {
  if (out) memset(out, 0, sizeof *out);
  const char *why = NULL;
  json_t *doc = load_object(body, len, ACTION_RECORD_MAX_BYTES, &why);
  if (!doc) return aqs_errf(err, AQS_ERR_CORRUPT, "remote ref %s: %s", name, why);
  const char *kind = json_string_value(json_object_get(doc, "kind"));
  const char *got_name = json_string_value(json_object_get(doc, "name"));
  const char *ref = json_string_value(json_object_get(doc, "ref"));
  const char *target = json_string_value(json_object_get(doc, "target"));
  json_t *actions = json_object_get(doc, "actions");
  size_t n = json_array_size(actions);
  aqs_digest parsed, *keys = n ? malloc(n * sizeof *keys) : NULL;
  if (n && !keys) why = "out of memory";
  else if (!kind || strcmp(kind, "aqs-ref") != 0) why = "not an aqs ref record";
  else if (!got_name || strcmp(got_name, name) != 0) why = "the record names another ref";
  else if (!ref_name_ok(ref)) why = "no valid \"ref\" name";
  else if (!target || aqs_digest_parse(target, &parsed, NULL) != AQS_OK) why = "no valid \"target\" digest";
  else if (!json_is_array(actions) || parse_digest_array(actions, keys) != 0) why = "no valid \"actions\" list";
  if (!why && out) {
    snprintf(out->ref, sizeof out->ref, "%s", ref);
    out->target = parsed;
    out->actions = keys;
    out->n_actions = n;
    keys = NULL;
  }
  json_decref(doc);
  free(keys);
  if (why) return aqs_errf(err, AQS_ERR_CORRUPT, "remote ref %s: %s", name, why);
  return AQS_OK;
}

int aqs_remote_manifest_children(const void *data, size_t len, aqs_digest **children, size_t *n) {
  *children = NULL;
  *n = 0;
  const char *p = data;
  size_t i = 0;
  while (i < len && (p[i] == ' ' || p[i] == '\n' || p[i] == '\t' || p[i] == '\r')) i++;
  if (i == len || p[i] != '{' || len > MANIFEST_PARSE_MAX_BYTES) return 0;
  json_t *doc = json_loadb(data, len, 0, NULL);
  json_t *arr = json_object_get(doc, "children");
  int manifest = json_is_array(arr);
  size_t count = manifest ? json_array_size(arr) : 0;
  aqs_digest *list = count ? malloc(count * sizeof *list) : NULL;
  if (count && !list) {
    json_decref(doc);
    return -1;
  }
  if (manifest && parse_digest_array(arr, list) != 0) manifest = 0;
  if (manifest) {
    *children = list;
    *n = count;
  } else {
    free(list);
  }
  json_decref(doc);
  return manifest;
}
