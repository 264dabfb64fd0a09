/* store/canon_json.c: the canonical JSON encoder behind action keys (rules in canon_json.h).
 * Written here rather than using json_dumps(JSON_SORT_KEYS) because jansson appends ".0" to
 * integral reals and its escaping has changed between versions: keys must never change. */
#include "store/canon_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct out_buf {
  char *data;
  size_t len, cap;
  int oom;
} out_buf;

static void buf_put(out_buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static void buf_puts(out_buf *b, const char *s) { buf_put(b, s, strlen(s)); }

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid (overlongs, surrogates and
 * code points above U+10FFFF are invalid). */
static size_t utf8_seq_len(const unsigned char *s, size_t left) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F;
  else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F;
  else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07;
  else return 0;
  if (n > left) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

static int put_string(out_buf *b, const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  buf_put(b, "\"", 1);
  size_t i = 0;
  while (i < n) {
    unsigned char c = u[i];
    char esc[8];
    if (c == '"') buf_put(b, "\\\"", 2);
    else if (c == '\\') buf_put(b, "\\\\", 2);
    else if (c == '\b') buf_put(b, "\\b", 2);
    else if (c == '\f') buf_put(b, "\\f", 2);
    else if (c == '\n') buf_put(b, "\\n", 2);
    else if (c == '\r') buf_put(b, "\\r", 2);
    else if (c == '\t') buf_put(b, "\\t", 2);
    else if (c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      buf_put(b, esc, 6);
    } else {
      size_t len = utf8_seq_len(u + i, n - i);
      if (len == 0) return -1;
      buf_put(b, s + i, len);
      i += len;
      continue;
    }
    i++;
  }
  buf_put(b, "\"", 1);
  return 0;
}

typedef struct member {
  const char *key;
  size_t key_len;
  json_t *value;
} member;

static int member_cmp(const void *pa, const void *pb) {
  const member *a = pa, *b = pb;
  size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
  int c = memcmp(a->key, b->key, n);
  if (c) return c;
  return (a->key_len > b->key_len) - (a->key_len < b->key_len);
}

static aqs_status encode(out_buf *b, const json_t *v, aqs_err *err);

static aqs_status encode_object(out_buf *b, const json_t *v, aqs_err *err) {
  size_t n = json_object_size(v);
  member *members = calloc(n ? n : 1, sizeof *members);
  if (!members) return aqs_errf(err, AQS_ERR_NOMEM, "canonical JSON: out of memory");
  size_t i = 0;
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)v, key, value) {
    members[i].key = key;
    members[i].key_len = strlen(key);
    members[i].value = value;
    i++;
  }
  qsort(members, n, sizeof *members, member_cmp);
  buf_put(b, "{", 1);
  aqs_status st = AQS_OK;
  for (i = 0; i < n && st == AQS_OK; i++) {
    if (i) buf_put(b, ",", 1);
    if (put_string(b, members[i].key, members[i].key_len) != 0)
      st = aqs_errf(err, AQS_ERR_INVALID, "canonical JSON: key is not valid UTF-8");
    else {
      buf_put(b, ":", 1);
      st = encode(b, members[i].value, err);
    }
  }
  buf_put(b, "}", 1);
  free(members);
  return st;
}

static aqs_status encode_real(out_buf *b, double x, aqs_err *err) {
  if (!isfinite(x))
    return aqs_errf(err, AQS_ERR_INVALID, "canonical JSON: NaN or infinity is not JSON");
  char text[40];
  snprintf(text, sizeof text, "%.17g", x);
  for (char *p = text; *p; p++)
    if (*p == ',') *p = '.'; /* a locale with a decimal comma */
  buf_puts(b, text);
  return AQS_OK;
}

static aqs_status encode(out_buf *b, const json_t *v, aqs_err *err) {
  char text[32];
  switch (json_typeof(v)) {
  case JSON_OBJECT: return encode_object(b, v, err);
  case JSON_ARRAY: {
    buf_put(b, "[", 1);
    for (size_t i = 0; i < json_array_size(v); i++) {
      if (i) buf_put(b, ",", 1);
      aqs_status st = encode(b, json_array_get(v, i), err);
      if (st != AQS_OK) return st;
    }
    buf_put(b, "]", 1);
    return AQS_OK;
  }
  case JSON_STRING:
    if (put_string(b, json_string_value(v), json_string_length(v)) != 0)
      return aqs_errf(err, AQS_ERR_INVALID, "canonical JSON: string is not valid UTF-8");
    return AQS_OK;
  case JSON_INTEGER:
    snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
    buf_puts(b, text);
    return AQS_OK;
  case JSON_REAL: return encode_real(b, json_real_value(v), err);
  case JSON_TRUE: buf_puts(b, "true"); return AQS_OK;
  case JSON_FALSE: buf_puts(b, "false"); return AQS_OK;
  case JSON_NULL: buf_puts(b, "null"); return AQS_OK;
  }
  return aqs_errf(err, AQS_ERR_INVALID, "canonical JSON: unknown value type");
}

aqs_status aqs_json_canonical(const json_t *value, char **out, size_t *len_out, aqs_err *err) {
  *out = NULL;
  if (!value) return aqs_errf(err, AQS_ERR_INVALID, "canonical JSON: no value");
  out_buf b = {0};
  aqs_status st = encode(&b, value, err);
  if (st == AQS_OK && b.oom) st = aqs_errf(err, AQS_ERR_NOMEM, "canonical JSON: out of memory");
  if (st == AQS_OK && !b.data) buf_put(&b, "", 0);
  if (st != AQS_OK || b.oom) {
    free(b.data);
    return st != AQS_OK ? st : aqs_errf(err, AQS_ERR_NOMEM, "canonical JSON: out of memory");
  }
  *out = b.data;
  if (len_out) *len_out = b.len;
  return AQS_OK;
}

aqs_status aqs_action_key(const char *stage, const char *stage_version, const json_t *inputs,
                          const json_t *params, aqs_digest *key_out, char **key_doc_out,
                          aqs_err *err) {
  if (key_doc_out) *key_doc_out = NULL;
  if (!stage || !*stage) return aqs_errf(err, AQS_ERR_INVALID, "action key: empty stage name");
  if (inputs && !json_is_object(inputs))
    return aqs_errf(err, AQS_ERR_INVALID, "action key of %s: inputs must be a JSON object", stage);
  json_t *norm_inputs = json_object();
  json_t *doc = json_object();
  if (!norm_inputs || !doc) {
    json_decref(norm_inputs);
    json_decref(doc);
    return aqs_errf(err, AQS_ERR_NOMEM, "action key: out of memory");
  }
  aqs_status st = AQS_OK;
  const char *name;
  json_t *value;
  if (inputs) {
    json_object_foreach((json_t *)inputs, name, value) {
      aqs_digest d;
      char text[AQS_DIGEST_STR_SIZE];
      if (!json_is_string(value) || aqs_digest_parse(json_string_value(value), &d, NULL) != AQS_OK) {
        st = aqs_errf(err, AQS_ERR_INVALID,
                      "action key of %s: input '%s' is not a digest (want sha256:<64 hex>)",
                      stage, name);
        break;
      }
      json_object_set_new(norm_inputs, name, json_string(aqs_digest_str(&d, text)));
    }
  }
  json_t *jstage = json_string(stage), *jversion = json_string(stage_version ? stage_version : "");
  if (st == AQS_OK && (!jstage || !jversion))
    st = aqs_errf(err, AQS_ERR_INVALID, "action key: stage name or version is not valid UTF-8");
  if (st == AQS_OK) {
    json_object_set(doc, "inputs", norm_inputs);
    json_object_set_new(doc, "params", params ? json_deep_copy(params) : json_object());
    json_object_set(doc, "stage", jstage);
    json_object_set(doc, "stage_version", jversion);
    char *canon = NULL;
    size_t len = 0;
    st = aqs_json_canonical(doc, &canon, &len, err);
    if (st == AQS_OK) {
      aqs_sha256_buf(canon, len, key_out);
      if (key_doc_out) *key_doc_out = canon;
      else free(canon);
    } else {
      aqs_err_prefix(err, "action key of %s", stage);
    }
  }
  json_decref(jstage);
  json_decref(jversion);
  json_decref(norm_inputs);
  json_decref(doc);
  return st;
}
