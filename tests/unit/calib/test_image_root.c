/* tests/unit/calib/test_image_root.c: image row paths confined to the image root
 * (engine/calib/image_root.h): plain and inner-symlink rows resolve under the root; absolute
 * paths, '..' components (even ones that would come back inside) and symlinks leading out are
 * refused naming the path and the flag; a missing file resolves so it can be reported missing;
 * allow_outside follows everything. */
#include "testutil.h"

#include "engine/calib/image_root.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void expect_path(const char *root, const char *image, int allow, const char *want) {
  char *path = NULL;
  aqs_err err = {0};
  aqs_status st = aqs_image_row_path(root, image, allow, &path, &err);
  if (st != AQS_OK) fail_msg("'%s' under %s: %s", image, root, err.msg);
  assert_string_equal(path, want);
  free(path);
}

static void expect_refused(const char *root, const char *image, const char *needle) {
  char *path = (char *)"unset";
  aqs_err err = {0};
  assert_int_equal(aqs_image_row_path(root, image, 0, &path, &err), AQS_ERR_INVALID);
  assert_null(path);
  if (!strstr(err.msg, needle)) fail_msg("message '%s' lacks '%s'", err.msg, needle);
  assert_non_null(strstr(err.msg, "--allow-outside-root"));
}

static void test_containment(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("imgroot");
  char root[4200], p[4400], want[4400], outside[4400];
  snprintf(root, sizeof root, "%s/root", dir);
  snprintf(p, sizeof p, "%s/sub", root);
  assert_int_equal(mkdir(root, 0755), 0);
  assert_int_equal(mkdir(p, 0755), 0);
  snprintf(p, sizeof p, "%s/sub/a.png", root);
  tu_write_file(p, "x", 1);
  snprintf(outside, sizeof outside, "%s/secret.png", dir);
  tu_write_file(outside, "s", 1);
  snprintf(p, sizeof p, "%s/in.png", root);
  assert_int_equal(symlink("sub/a.png", p), 0);
  snprintf(p, sizeof p, "%s/out.png", root);
  assert_int_equal(symlink(outside, p), 0);
  snprintf(p, sizeof p, "%s/subdir_out", root);
  assert_int_equal(symlink(dir, p), 0);

  snprintf(want, sizeof want, "%s/sub/a.png", root);
  expect_path(root, "sub/a.png", 0, want);
  snprintf(want, sizeof want, "%s/in.png", root);
  expect_path(root, "in.png", 0, want);                 /* a symlink that stays inside */
  snprintf(want, sizeof want, "%s/..hidden.png", root);
  expect_path(root, "..hidden.png", 0, want);           /* '..' only as a whole component */
  snprintf(want, sizeof want, "%s/missing.png", root);
  expect_path(root, "missing.png", 0, want);            /* reported missing by the reader */

  expect_refused(root, outside, "is absolute");
  expect_refused(root, "../secret.png", "has a '..' component");
  expect_refused(root, "sub/../sub/a.png", "has a '..' component");
  expect_refused(root, "out.png", "outside the image root");
  expect_refused(root, "subdir_out/secret.png", "outside the image root");

  expect_path(root, outside, 1, outside);
  snprintf(want, sizeof want, "%s/out.png", root);
  expect_path(root, "out.png", 1, want);
  snprintf(want, sizeof want, "%s/../secret.png", root);
  expect_path(root, "../secret.png", 1, want);
  expect_path(NULL, "rel.png", 0, "rel.png");            /* no root: as written */
  tu_rm_rf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_containment)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
