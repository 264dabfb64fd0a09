/* tests/unit/stages/test_recipe.c: recipe loading: built-ins, extends, workspace shadowing, and
 * each refusal (unknown key, bad value, extends cycle, unknown recipe) with its file and line. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/stages/recipe.h"

static void test_builtin_top50(void **state) {
  (void)state;
  aqs_recipe r;
  aqs_err e = {0};
  assert_int_equal(aqs_recipe_load(NULL, "top50", &r, &e), AQS_OK);
  assert_string_equal(r.name, "top50");
  assert_false(r.budget_mode);
  assert_true(r.coverage == 0.5);
  assert_int_equal(r.calib_samples, 512);
  assert_int_equal(r.score_samples, 128);
  assert_int_equal(r.max_len, 512);
  assert_int_equal(r.method, AQS_SENS_GRADIENT);
  assert_int_equal(r.scope, AQS_SCOPE_LM_ONLY);
  assert_int_equal(r.order, AQS_ORDER_LEAST_SENSITIVE_FIRST);
}

static void test_builtin_family(void **state) {
  (void)state;
  aqs_recipe r;
  aqs_err e = {0};
  for (int x = 10; x <= 100; x += 10) {
    char name[16];
    snprintf(name, sizeof name, "top%d", x);
    assert_int_equal(aqs_recipe_load(NULL, name, &r, &e), AQS_OK);
    assert_true(r.coverage > x / 100.0 - 1e-12 && r.coverage < x / 100.0 + 1e-12);
  }
  assert_int_equal(aqs_recipe_load(NULL, "eb11", &r, &e), AQS_OK);
  assert_true(r.budget_mode);
  assert_true(r.effective_bits == 11.0);
  assert_int_equal(aqs_recipe_load(NULL, "top50_kl", &r, &e), AQS_OK);
  assert_int_equal(r.method, AQS_SENS_KL_DIV);
  assert_true(r.coverage == 0.5);
  assert_int_equal(aqs_recipe_load(NULL, "top50_random", &r, &e), AQS_OK);
  assert_int_equal(r.order, AQS_ORDER_RANDOM);
  assert_int_equal(r.order_seed, 1);
  assert_int_equal(aqs_recipe_load(NULL, "mlp_only_top50", &r, &e), AQS_OK);
  assert_int_equal(r.candidates, AQS_CANDIDATES_MLP);
  assert_int_equal(aqs_recipe_load(NULL, "all_layers", &r, &e), AQS_OK);
  assert_int_equal(r.scope, AQS_SCOPE_ALL_LAYERS);
}

static char *write_recipe(const char *dir, const char *name, const char *text) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.ini", dir, name);
  tu_write_file(path, text, strlen(text));
  return NULL;
}

static void test_workspace_extends_and_shadow(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("recipe");
  write_recipe(dir, "mine", "[recipe]\nextends = top30\n[calib]\nseed = 7\n");
  write_recipe(dir, "top30", "[recipe]\nextends = lm_only\n[slice]\ncoverage = 0.33\n");
  aqs_recipe_source src = {.workspace_dir = dir};
  aqs_recipe r;
  aqs_err e = {0};
  assert_int_equal(aqs_recipe_load(&src, "mine", &r, &e), AQS_OK);
  assert_int_equal(r.seed, 7);
  assert_true(r.coverage == 0.33); /* the workspace top30 shadows the built-in */
  char **names;
  size_t n;
  assert_int_equal(aqs_recipe_list(&src, &names, &n, &e), AQS_OK);
  int found_mine = 0, top30 = 0;
  for (size_t i = 0; i < n; i++) {
    found_mine += strcmp(names[i], "mine") == 0;
    top30 += strcmp(names[i], "top30") == 0;
    if (i) assert_true(strcmp(names[i - 1], names[i]) < 0);
  }
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  assert_int_equal(found_mine, 1);
  assert_int_equal(top30, 1);
  tu_rm_rf(dir);
  free(dir);
}

static void expect_error(const char *text, const char *needle) {
  char *dir = tu_mkdtemp("recipe");
  write_recipe(dir, "bad", text);
  aqs_recipe_source src = {.workspace_dir = dir};
  aqs_recipe r;
  aqs_err e = {0};
  assert_int_equal(aqs_recipe_load(&src, "bad", &r, &e), AQS_ERR_INVALID);
  char want[8192];
  snprintf(want, sizeof want, "%s/bad.ini:%s", dir, needle);
  if (!strstr(e.msg, want)) fail_msg("message '%s' lacks '%s'", e.msg, want);
  tu_rm_rf(dir);
  free(dir);
}

static void test_refusals_name_file_and_line(void **state) {
  (void)state;
  expect_error("[recipe]\nextends = lm_only\n\n[slice]\ncoverag = 0.5\n", "5: unknown key 'coverag' in section [slice]");
  expect_error("[recipe]\nextends = lm_only\n[slice]\ncoverage = 1.5\n", "4: bad value '1.5' for [slice] coverage");
  expect_error("[calib]\nsamples = many\n", "2: bad value 'many' for [calib] samples");
  expect_error("[sensitivity]\nmethod = hessian\n", "2: bad value 'hessian'");
  expect_error("; comment\n[recipe]\nextends = bad\n", "3: extends cycle");
  expect_error("[recipe\nfoo\n", "1: malformed line");
}

static void test_cycle_across_files(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("recipe");
  write_recipe(dir, "a", "[recipe]\nextends = b\n");
  write_recipe(dir, "b", "[slice]\ncoverage = 0.2\n[recipe]\nextends = a\n");
  aqs_recipe_source src = {.workspace_dir = dir};
  aqs_recipe r;
  aqs_err e = {0};
  assert_int_equal(aqs_recipe_load(&src, "a", &r, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "/b.ini:4: extends cycle"));
  tu_rm_rf(dir);
  free(dir);
}

static void test_unknown_recipe(void **state) {
  (void)state;
  aqs_recipe r;
  aqs_err e = {0};
  assert_int_equal(aqs_recipe_load(NULL, "top55", &r, &e), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "no recipe 'top55'"));
  assert_int_equal(aqs_recipe_load(NULL, "../etc/passwd", &r, &e), AQS_ERR_INVALID);
  char *dir = tu_mkdtemp("recipe");
  write_recipe(dir, "child", "[recipe]\nextends = nosuch\n");
  aqs_recipe_source src = {.workspace_dir = dir};
  assert_int_equal(aqs_recipe_load(&src, "child", &r, &e), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "child.ini:2: extends nosuch: no recipe 'nosuch'"));
  tu_rm_rf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_builtin_top50),
      cmocka_unit_test(test_builtin_family),
      cmocka_unit_test(test_workspace_extends_and_shadow),
      cmocka_unit_test(test_refusals_name_file_and_line),
      cmocka_unit_test(test_cycle_across_files),
      cmocka_unit_test(test_unknown_recipe),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
