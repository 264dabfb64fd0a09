/* tests/unit/stages/test_recipe_hostile.c: recipe files that are not plain text: a NUL byte in a
 * value ("coverage = 0.5\0junk" must not load as 0.5), an over-long line, a recipe that is a
 * directory or a FIFO; each an error naming the file (and line), never a hang. */
#include "testutil.h"

#include "engine/stages/recipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void expect_load_error(const char *dir, aqs_status code, const char *needle) {
  aqs_recipe_source src = {.workspace_dir = dir};
  aqs_recipe r;
  aqs_err e = {0};
  assert_int_equal(aqs_recipe_load(&src, "bad", &r, &e), code);
  char want[8192];
  snprintf(want, sizeof want, "%s/bad.ini%s", dir, needle);
  if (!strstr(e.msg, want)) fail_msg("message '%s' lacks '%s'", e.msg, want);
}

static void test_nul_in_value(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("recipe");
  char path[4200];
  snprintf(path, sizeof path, "%s/bad.ini", dir);
  static const char text[] = "[recipe]\nextends = lm_only\n\n[slice]\ncoverage = 0.5\0junk\n";
  tu_write_file(path, text, sizeof text - 1);
  expect_load_error(dir, AQS_ERR_INVALID, ":5: NUL byte in the line");
  /* The same text without the NUL loads (the refusal is about the byte, not the file). */
  tu_write_file(path, text, strlen(text));
  aqs_recipe_source src = {.workspace_dir = dir};
  aqs_recipe r;
  aqs_err e = {0};
  assert_int_equal(aqs_recipe_load(&src, "bad", &r, &e), AQS_OK);
  assert_true(r.coverage == 0.5);
  tu_rm_rf(dir);
  free(dir);
}

static void test_overlong_line(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("recipe");
  char path[4200], text[2100];
  snprintf(path, sizeof path, "%s/bad.ini", dir);
  int n = snprintf(text, sizeof text, "[recipe]\nextends = lm_only\ndescription = ");
  memset(text + n, 'x', sizeof text - (size_t)n - 2);
  text[sizeof text - 2] = '\n';
  text[sizeof text - 1] = '\0';
  tu_write_file(path, text, strlen(text));
  expect_load_error(dir, AQS_ERR_INVALID, ":3: line too long");
  tu_rm_rf(dir);
  free(dir);
}

static void test_special_files(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("recipe");
  char path[4200];
  snprintf(path, sizeof path, "%s/bad.ini", dir);
  assert_int_equal(mkfifo(path, 0600), 0);
  expect_load_error(dir, AQS_ERR_INVALID, " is not a regular file (a FIFO)");
  assert_int_equal(remove(path), 0);
  assert_int_equal(mkdir(path, 0755), 0);
  expect_load_error(dir, AQS_ERR_INVALID, " is a directory");
  tu_rm_rf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_nul_in_value),
      cmocka_unit_test(test_overlong_line),
      cmocka_unit_test(test_special_files),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
