/* tests/unit/store/test_canon_json.c: canonical JSON vectors (key order by bytes, no white space,
 * integers, reals with %.17g, escapes, raw UTF-8) and the action key (a known-answer digest,
 * independence from input order and digest spelling, bad inputs). */
#include "store_testlib.h"

static void expect_canon(const char *input, const char *want) {
  json_error_t jerr;
  json_t *v = json_loads(input, JSON_DECODE_ANY, &jerr);
  if (!v) fail_msg("bad test JSON %s: %s", input, jerr.text);
  char *out = NULL;
  size_t len = 0;
  aqs_err err;
  aqs_err_clear(&err);
  ASSERT_OK(aqs_json_canonical(v, &out, &len, &err));
  assert_string_equal(out, want);
  assert_int_equal(len, strlen(want));
  free(out);
  json_decref(v);
}

static void test_vectors(void **state) {
  (void)state;
  /* Keys sorted bytewise at every level; white space dropped. */
  expect_canon("{ \"b\" : 1, \"a\" : { \"z\": [3, 2, 1], \"y\": null } , \"A\": true }",
               "{\"A\":true,\"a\":{\"y\":null,\"z\":[3,2,1]},\"b\":1}");
  /* Bytewise: "é" (C3 A9) sorts after "z"; a prefix sorts first. */
  expect_canon("{\"\xc3\xa9\": 1, \"z\": 2, \"zz\": 3, \"\": 0}",
               "{\"\":0,\"z\":2,\"zz\":3,\"\xc3\xa9\":1}");
  /* Integers in decimal; reals with %.17g. */
  expect_canon("[0, -12, 9007199254740993, 0.1, 1.0, -0.0, 1e300, 2.5e-8]",
               "[0,-12,9007199254740993,0.10000000000000001,1,-0,1.0000000000000001e+300,"
               "2.4999999999999999e-08]");
  /* Escapes: quote, backslash, short forms, other controls as \u00xx; '/' and UTF-8 stay raw. */
  expect_canon("\"q\\\" b\\\\ n\\n t\\t \\u0001 \\u001f / \\u00e9 \\u20ac \\ud83d\\ude00\"",
               "\"q\\\" b\\\\ n\\n t\\t \\u0001 \\u001f / \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  expect_canon("{}", "{}");
  expect_canon("[]", "[]");
  expect_canon("false", "false");
}

static void test_refusals(void **state) {
  (void)state;
  aqs_err err;
  aqs_err_clear(&err);
  char *out = NULL;
  json_t *bad = json_stringn_nocheck("\xff\xfe", 2);
  assert_int_equal(aqs_json_canonical(bad, &out, NULL, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "UTF-8"));
  assert_null(out);
  json_decref(bad);
  /* A bad key deep inside is refused too (NaN/Inf cannot occur: jansson never stores them). */
  json_t *obj = json_pack("{s:[{s:i}]}", "outer", "inner", 1);
  json_object_set_new_nocheck(json_array_get(json_object_get(obj, "outer"), 0), "\xc3(", json_true());
  assert_int_equal(aqs_json_canonical(obj, &out, NULL, &err), AQS_ERR_INVALID);
  assert_null(out);
  json_decref(obj);
}

static void test_action_key(void **state) {
  (void)state;
  aqs_err err;
  aqs_err_clear(&err);
  char a64[65], b64[65], model[80], calib[80];
  memset(a64, 'a', 64);
  memset(b64, 'B', 64); /* upper case: normalized to lower case in the document */
  a64[64] = b64[64] = '\0';
  snprintf(model, sizeof model, "sha256:%s", a64);
  snprintf(calib, sizeof calib, "%s", b64); /* bare hex: normalized to sha256:<hex> */
  json_t *inputs = json_pack("{s:s, s:s}", "model", model, "calib", calib);
  json_t *params = json_pack("{s:s, s:i, s:s}", "scope", "lm_only", "samples", 128, "algorithm",
                             "max");
  aqs_digest key;
  char *doc = NULL;
  ASSERT_OK(aqs_action_key("calibrate", "1", inputs, params, &key, &doc, &err));
  char want_doc[512];
  snprintf(want_doc, sizeof want_doc,
           "{\"inputs\":{\"calib\":\"sha256:%s\",\"model\":\"sha256:%s\"},\"params\":{\"algorithm\":"
           "\"max\",\"samples\":128,\"scope\":\"lm_only\"},\"stage\":\"calibrate\",\"stage_version\":"
           "\"1\"}",
           "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", a64);
  assert_string_equal(doc, want_doc);
  char hex[65];
  /* Known answer: sha256 of want_doc computed independently (Python hashlib). */
  assert_string_equal(aqs_digest_hex(&key, hex),
                      "9411b349e5a5b982c2caddefe7952757e3ca45a6f315608783b190c2a64e205c");
  free(doc);
  /* Same content in another insertion order: same key. A changed param: another key. */
  json_t *inputs2 = json_pack("{s:s, s:s}", "calib", calib, "model", model);
  json_t *params2 = json_pack("{s:s, s:s, s:i}", "algorithm", "max", "scope", "lm_only",
                              "samples", 128);
  aqs_digest key2;
  ASSERT_OK(aqs_action_key("calibrate", "1", inputs2, params2, &key2, NULL, &err));
  assert_true(aqs_digest_eq(&key, &key2));
  json_object_set_new(params2, "samples", json_integer(256));
  ASSERT_OK(aqs_action_key("calibrate", "1", inputs2, params2, &key2, NULL, &err));
  assert_false(aqs_digest_eq(&key, &key2));
  ASSERT_OK(aqs_action_key("calibrate", "2", inputs, params, &key2, NULL, &err));
  assert_false(aqs_digest_eq(&key, &key2));
  /* NULL inputs and params are {}. */
  ASSERT_OK(aqs_action_key("source", "1", NULL, NULL, &key2, &doc, &err));
  assert_string_equal(doc, "{\"inputs\":{},\"params\":{},\"stage\":\"source\",\"stage_version\":\"1\"}");
  free(doc);
  /* Bad inputs are refused, naming the input. */
  json_object_set_new(inputs2, "tokenizer", json_string("sha256:1234"));
  assert_int_equal(aqs_action_key("calibrate", "1", inputs2, params2, &key2, NULL, &err),
                   AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "tokenizer"));
  assert_int_equal(aqs_action_key("", "1", NULL, NULL, &key2, NULL, &err), AQS_ERR_INVALID);
  json_t *arr = json_array();
  assert_int_equal(aqs_action_key("x", "1", arr, NULL, &key2, NULL, &err), AQS_ERR_INVALID);
  json_decref(arr);
  json_decref(inputs);
  json_decref(params);
  json_decref(inputs2);
  json_decref(params2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vectors),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_action_key),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
