/* tests/unit/export/test_plan.c: plans: group id syntax and natural order, set/find/count,
 * canonical JSON round trip (same bytes), the accepted input forms, every parse error, and the
 * symmetric difference of two plans. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/export/plan.h"

static aqs_plan *parse_ok(const char *text) {
  aqs_plan *p = NULL;
  aqs_err e;
  aqs_err_clear(&e);
  aqs_status st = aqs_plan_parse(text, strlen(text), "test.json", &p, &e);
  if (st) fprintf(stderr, "parse failed: %s\n", e.msg);
  assert_int_equal(st, AQS_OK);
  return p;
}

static void expect_parse_error(const char *text, const char *needle) {
  aqs_plan *p = NULL;
  aqs_err e;
  aqs_err_clear(&e);
  assert_int_equal(aqs_plan_parse(text, strlen(text), "bad.json", &p, &e), AQS_ERR_INVALID);
  assert_null(p);
  if (!strstr(e.msg, needle)) fprintf(stderr, "message '%s' lacks '%s'\n", e.msg, needle);
  assert_non_null(strstr(e.msg, needle));
  assert_non_null(strstr(e.msg, "bad.json"));
}

static void test_group_ids(void **state) {
  (void)state;
  assert_true(aqs_group_id_valid("lm.0.qkv"));
  assert_true(aqs_group_id_valid("lm.35.down"));
  assert_true(aqs_group_id_valid("vis.31.proj"));
  assert_true(aqs_group_id_valid("vis.merger.mlp.0"));
  assert_true(aqs_group_id_valid("vis.merger.mlp.2"));
  assert_true(aqs_group_id_valid("vis.patch_embed"));
  assert_false(aqs_group_id_valid("vis.merger"));
  assert_false(aqs_group_id_valid("vis.merger.mlp.1"));
  assert_false(aqs_group_id_valid("lm.0.proj"));   /* proj is a vision kind */
  assert_false(aqs_group_id_valid("vis.0.o"));
  assert_false(aqs_group_id_valid("lm.01.qkv"));   /* one spelling per group */
  assert_false(aqs_group_id_valid("lm.x.qkv"));
  assert_false(aqs_group_id_valid("lm_head"));
  assert_false(aqs_group_id_valid(""));
  assert_true(aqs_group_id_cmp("lm.2.down", "lm.10.qkv") < 0);
  assert_true(aqs_group_id_cmp("lm.2.qkv", "lm.2.o") < 0);
  assert_true(aqs_group_id_cmp("lm.2.o", "lm.2.gate_up") < 0);
  assert_true(aqs_group_id_cmp("lm.2.gate_up", "lm.2.down") < 0);
  assert_true(aqs_group_id_cmp("lm.35.down", "vis.0.qkv") < 0);
  assert_true(aqs_group_id_cmp("vis.31.down", "vis.merger.mlp.0") < 0);
  assert_true(aqs_group_id_cmp("vis.merger.mlp.0", "vis.merger.mlp.2") < 0);
  assert_true(aqs_group_id_cmp("vis.merger.mlp.2", "vis.0.qkv") > 0);
  assert_true(aqs_group_id_cmp("vis.patch_embed", "vis.0.qkv") < 0);
  assert_true(aqs_group_id_cmp("lm.35.down", "vis.patch_embed") < 0);
  assert_true(aqs_group_id_cmp("vis.patch_embed", "vis.merger.mlp.0") < 0);
  assert_int_equal(aqs_group_id_cmp("vis.merger.mlp.2", "vis.merger.mlp.2"), 0);
}

static void test_set_find_count_roundtrip(void **state) {
  (void)state;
  aqs_plan *p = aqs_plan_new();
  aqs_err e;
  assert_int_equal(aqs_plan_set(p, "lm.10.qkv", AQS_FMT_FP8, &e), AQS_OK);
  assert_int_equal(aqs_plan_set(p, "lm.2.down", AQS_FMT_BF16, &e), AQS_OK);
  assert_int_equal(aqs_plan_set(p, "lm.2.qkv", AQS_FMT_FP8, &e), AQS_OK);
  assert_int_equal(aqs_plan_set(p, "lm.2.qkv", AQS_FMT_BF16, &e), AQS_OK); /* replace */
  assert_int_equal(aqs_plan_set_score(p, "lm.10.qkv", 0.25, &e), AQS_OK);
  assert_int_equal(aqs_plan_set(p, "bogus", AQS_FMT_FP8, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "malformed group id 'bogus'"));
  assert_int_equal(aqs_plan_set_score(p, "lm.3.o", 1.0, &e), AQS_ERR_NOT_FOUND);
  assert_int_equal(p->n, 3);
  assert_string_equal(p->entries[0].group, "lm.2.qkv");
  assert_string_equal(p->entries[1].group, "lm.2.down");
  assert_string_equal(p->entries[2].group, "lm.10.qkv");
  assert_int_equal(aqs_plan_count(p, AQS_FMT_FP8), 1);
  assert_int_equal(aqs_plan_format(p, "lm.99.o"), AQS_FMT_BF16);
  snprintf(p->scope, sizeof p->scope, "lm_only");
  char *json = aqs_plan_to_json(p);
  assert_string_equal(json, "{\"scope\":\"lm_only\",\"groups\":{\"lm.2.qkv\":\"bf16\",\"lm.2.down\":"
                            "\"bf16\",\"lm.10.qkv\":\"fp8\"},\"scores\":{\"lm.10.qkv\":0.25}}");
  aqs_plan *q = parse_ok(json);
  char *json2 = aqs_plan_to_json(q);
  assert_string_equal(json, json2);
  assert_true(aqs_plan_find(q, "lm.10.qkv")->has_score);

  char *dir = tu_mkdtemp("plan");
  char path[4200];
  snprintf(path, sizeof path, "%s/p.json", dir);
  assert_int_equal(aqs_plan_save(q, path, &e), AQS_OK);
  aqs_plan *r = NULL;
  assert_int_equal(aqs_plan_load(path, &r, &e), AQS_OK);
  char *json3 = aqs_plan_to_json(r);
  assert_string_equal(json, json3);
  snprintf(path, sizeof path, "%s/missing.json", dir);
  assert_int_equal(aqs_plan_load(path, &r, &e), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "missing.json"));
  tu_rm_rf(dir);
  free(dir);
  free(json);
  free(json2);
  free(json3);
  aqs_plan_free(p);
  aqs_plan_free(q);
  aqs_plan_free(r);
}

static void test_input_forms(void **state) {
  (void)state;
  aqs_plan *p = parse_ok("{\"lm.0.qkv\":\"fp8\",\"lm.0.o\":{\"format\":\"bf16\",\"score\":3}}");
  assert_int_equal(p->n, 2);
  assert_int_equal(aqs_plan_format(p, "lm.0.qkv"), AQS_FMT_FP8);
  assert_true(aqs_plan_find(p, "lm.0.o")->has_score);
  assert_string_equal(p->scope, "");
  aqs_plan_free(p);
  p = parse_ok("{\"scope\":\"all_layers\",\"groups\":{\"vis.merger.mlp.0\":\"fp8\"}}");
  assert_string_equal(p->scope, "all_layers");
  aqs_plan_free(p);
}

static void test_parse_errors(void **state) {
  (void)state;
  expect_parse_error("{\"groups\":", "not valid JSON");
  expect_parse_error("[1,2]", "must be a JSON object");
  expect_parse_error("{\"groups\":{\"lm.0.qkv\":\"int4\"}}", "unknown format 'int4'");
  expect_parse_error("{\"groups\":{\"lm.0.qkv\":7}}", "group 'lm.0.qkv'");
  expect_parse_error("{\"groups\":{\"layer0\":\"fp8\"}}", "malformed group id 'layer0'");
  expect_parse_error("{\"groups\":{\"lm.0.qkv\":\"fp8\"},\"scope\":\"everything\"}", "scope must be");
  expect_parse_error("{\"groups\":{\"lm.0.qkv\":\"fp8\"},\"scores\":{\"lm.0.qkv\":\"high\"}}",
                     "score of 'lm.0.qkv' is not a number");
  expect_parse_error("{\"groups\":{\"lm.0.qkv\":\"fp8\"},\"scores\":{\"lm.1.qkv\":1}}",
                     "not in the plan");
  expect_parse_error("{\"groups\":{},\"colour\":1}", "unknown key 'colour'");
  expect_parse_error("{\"groups\":{\"lm.0.qkv\":\"fp8\",\"lm.0.qkv\":\"bf16\"}}", "not valid JSON");
}

static void test_symmetric_difference(void **state) {
  (void)state;
  aqs_plan *a = parse_ok("{\"groups\":{\"lm.0.qkv\":\"fp8\",\"lm.0.o\":\"bf16\",\"lm.1.down\":\"fp8\"}}");
  aqs_plan *b = parse_ok("{\"groups\":{\"lm.0.qkv\":\"fp8\",\"lm.0.o\":\"fp8\",\"lm.2.o\":\"bf16\",\"vis.merger.mlp.2\":\"fp8\"}}");
  const char **ids;
  size_t n;
  assert_int_equal(aqs_plan_diff(a, b, &ids, &n, NULL), AQS_OK);
  assert_int_equal(n, 3);
  assert_string_equal(ids[0], "lm.0.o");
  assert_string_equal(ids[1], "lm.1.down"); /* fp8 in a, absent (= bf16) in b */
  assert_string_equal(ids[2], "vis.merger.mlp.2");
  free(ids);
  assert_int_equal(aqs_plan_diff(a, a, &ids, &n, NULL), AQS_OK);
  assert_int_equal(n, 0);
  free(ids);
  aqs_plan_free(a);
  aqs_plan_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_group_ids),
    cmocka_unit_test(test_set_find_count_roundtrip),
    cmocka_unit_test(test_input_forms),
    cmocka_unit_test(test_parse_errors),
    cmocka_unit_test(test_symmetric_difference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
