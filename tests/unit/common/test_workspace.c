/* tests/unit/common/test_workspace.c: .aqstore parsing and discovery: defaults, every key,
 * relative-path resolution, walking up from a subdirectory, the --store > $AQS_STORE > config
 * precedence, and malformed files rejected with file:line messages. */
#include "testutil.h"

#include "common/workspace.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fixture {
  char *dir;         /* realpath of a fresh temp dir: the workspace root */
  char config[4096]; /* dir/.aqstore */
} fixture;

static int setup(void **state) {
  fixture *fx = calloc(1, sizeof *fx);
  char *tmp = tu_mkdtemp("workspace");
  fx->dir = realpath(tmp, NULL);
  free(tmp);
  snprintf(fx->config, sizeof fx->config, "%s/.aqstore", fx->dir);
  unsetenv("AQS_STORE");
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fixture *fx = *state;
  tu_rm_rf(fx->dir);
  free(fx->dir);
  free(fx);
  unsetenv("AQS_STORE");
  return 0;
}

static void write_config(fixture *fx, const char *text) {
  tu_write_file(fx->config, text, strlen(text));
}

/* Parses text as fx's .aqstore; returns the status and leaves the message in err. */
static aqs_status parse_text(fixture *fx, const char *text, aqs_workspace *ws, aqs_err *err) {
  write_config(fx, text);
  assert_int_equal(aqs_workspace_init_defaults(ws, err), AQS_OK);
  return aqs_workspace_parse_file(ws, fx->config, err);
}

static void expect_error(fixture *fx, const char *text, int line, const char *fragment) {
  aqs_workspace ws;
  aqs_err err = {0};
  assert_int_equal(parse_text(fx, text, &ws, &err), AQS_ERR_INVALID);
  char prefix[4200];
  snprintf(prefix, sizeof prefix, "%s:%d: ", fx->config, line);
  if (strncmp(err.msg, prefix, strlen(prefix)) != 0 || !strstr(err.msg, fragment)) {
    fprintf(stderr, "message: %s\nwanted prefix: %s and fragment: %s\n", err.msg, prefix, fragment);
    fail();
  }
  aqs_workspace_free(&ws);
}

static void test_defaults_without_config(void **state) {
  fixture *fx = *state;
  char sub[4200];
  snprintf(sub, sizeof sub, "%s/a/b", fx->dir);
  char a[4200];
  snprintf(a, sizeof a, "%s/a", fx->dir);
  assert_int_equal(mkdir(a, 0755), 0);
  assert_int_equal(mkdir(sub, 0755), 0);
  /* No .aqstore in the temp tree; one might exist above /tmp on odd machines: only assert
   * the defaults when none is found. */
  char *found = aqs_workspace_find(sub);
  if (found) {
    free(found);
    skip();
  }
  char cwd[PATH_MAX];
  assert_non_null(getcwd(cwd, sizeof cwd));
  assert_int_equal(chdir(sub), 0);
  aqs_workspace ws;
  aqs_err err = {0};
  assert_int_equal(aqs_workspace_load(&ws, NULL, &err), AQS_OK);
  assert_int_equal(chdir(cwd), 0);
  assert_null(ws.config_path);
  char want[4300];
  snprintf(want, sizeof want, "%s/.aqs-cache", sub);
  assert_string_equal(ws.store_path, want);
  assert_int_equal(ws.store_origin, AQS_STORE_FROM_DEFAULT);
  assert_int_equal(ws.compression_level, 3);
  assert_int_equal(ws.size_limit_bytes, 0);
  assert_int_equal(ws.link_mode, AQS_LINK_REFLINK);
  assert_int_equal(ws.inline_threshold_bytes, 65536);
  assert_int_equal(ws.n_secondary_stores, 0);
  assert_null(ws.remote_url);
  assert_null(ws.model_path);
  assert_null(ws.recipes_path);
  aqs_workspace_free(&ws);
}

static void test_every_key(void **state) {
  fixture *fx = *state;
  aqs_workspace ws;
  aqs_err err = {0};
  aqs_status st = parse_text(fx,
      "; comment\n"
      "# another comment\n"
      "[store]\n"
      "path = cache            ; inline comment\n"
      "compression_level = 9\n"
      "size_limit = 10G\n"
      "link_mode = hardlink\n"
      "inline_threshold = 16KiB\n"
      "\n"
      "[secondary]\n"
      "stores = /srv/team-cache, ../other\n"
      "stores = ~/mine\n"
      "[remote]\n"
      "url = http://cache.example:9090\n"
      "[model]\n"
      "path = models/Qwen2.5-VL-3B\n"
      "[data]\n"
      "captions = data/captions.jsonl\n"
      "images = data/images.txt\n"
      "images_root = /data/coco\n"
      "[recipes]\n"
      "path = ./my-recipes/\n",
      &ws, &err);
  if (st != AQS_OK) fprintf(stderr, "%s\n", err.msg);
  assert_int_equal(st, AQS_OK);
  char want[4300];
  assert_string_equal(ws.config_path, fx->config);
  assert_string_equal(ws.root, fx->dir);
  snprintf(want, sizeof want, "%s/cache", fx->dir);
  assert_string_equal(ws.store_path, want);
  assert_int_equal(ws.store_origin, AQS_STORE_FROM_CONFIG);
  assert_int_equal(ws.compression_level, 9);
  assert_true(ws.size_limit_bytes == 10ull << 30);
  assert_int_equal(ws.link_mode, AQS_LINK_HARDLINK);
  assert_int_equal(ws.inline_threshold_bytes, 16384);
  assert_int_equal(ws.n_secondary_stores, 3);
  assert_string_equal(ws.secondary_stores[0], "/srv/team-cache");
  /* "../other" relative to the workspace root, cleaned lexically. */
  snprintf(want, sizeof want, "%s", fx->dir);
  *strrchr(want, '/') = '\0';
  strcat(want, "/other");
  assert_string_equal(ws.secondary_stores[1], want);
  const char *home = getenv("HOME");
  if (home && home[0]) {
    snprintf(want, sizeof want, "%s/mine", home);
    assert_string_equal(ws.secondary_stores[2], want);
  }
  assert_string_equal(ws.remote_url, "http://cache.example:9090");
  snprintf(want, sizeof want, "%s/models/Qwen2.5-VL-3B", fx->dir);
  assert_string_equal(ws.model_path, want);
  snprintf(want, sizeof want, "%s/data/captions.jsonl", fx->dir);
  assert_string_equal(ws.data_captions, want);
  snprintf(want, sizeof want, "%s/data/images.txt", fx->dir);
  assert_string_equal(ws.data_images, want);
  assert_string_equal(ws.data_images_root, "/data/coco");
  snprintf(want, sizeof want, "%s/my-recipes", fx->dir);
  assert_string_equal(ws.recipes_path, want);
  /* The raw lookup API returns what was written; get_path resolves it. */
  assert_string_equal(aqs_workspace_get(&ws, "store", "link_mode"), "hardlink");
  assert_string_equal(aqs_workspace_get(&ws, "model", "path"), "models/Qwen2.5-VL-3B");
  assert_null(aqs_workspace_get(&ws, "model", "nonexistent"));
  char *p = aqs_workspace_get_path(&ws, "data", "captions");
  snprintf(want, sizeof want, "%s/data/captions.jsonl", fx->dir);
  assert_string_equal(p, want);
  free(p);
  aqs_workspace_free(&ws);
}

static void test_example_file_parses(void **state) {
  (void)state;
  /* .aqstore.example documents every key with its default: it must parse and give defaults. */
  aqs_workspace ws;
  aqs_err err = {0};
  assert_int_equal(aqs_workspace_init_defaults(&ws, &err), AQS_OK);
  aqs_status st = aqs_workspace_parse_file(&ws, tu_src_path(".aqstore.example"), &err);
  if (st != AQS_OK) fprintf(stderr, "%s\n", err.msg);
  assert_int_equal(st, AQS_OK);
  assert_int_equal(ws.compression_level, 3);
  assert_int_equal(ws.size_limit_bytes, 0);
  assert_int_equal(ws.link_mode, AQS_LINK_REFLINK);
  assert_int_equal(ws.inline_threshold_bytes, 65536);
  const char *end = ws.store_path + strlen(ws.store_path) - strlen("/.aqs-cache");
  assert_string_equal(end, "/.aqs-cache");
  aqs_workspace_free(&ws);
}

static void test_walks_up_and_precedence(void **state) {
  fixture *fx = *state;
  write_config(fx, "[store]\npath = shared-cache\n");
  char deep[4200];
  snprintf(deep, sizeof deep, "%s/x", fx->dir);
  assert_int_equal(mkdir(deep, 0755), 0);
  snprintf(deep, sizeof deep, "%s/x/y", fx->dir);
  assert_int_equal(mkdir(deep, 0755), 0);

  char *found = aqs_workspace_find(deep);
  assert_string_equal(found, fx->config);
  free(found);

  aqs_workspace ws;
  aqs_err err = {0};
  char want[4300];
  assert_int_equal(aqs_workspace_load_from(&ws, deep, NULL, &err), AQS_OK);
  snprintf(want, sizeof want, "%s/shared-cache", fx->dir);
  assert_string_equal(ws.store_path, want);
  assert_int_equal(ws.store_origin, AQS_STORE_FROM_CONFIG);
  aqs_workspace_free(&ws);

  setenv("AQS_STORE", "/env/store", 1);
  assert_int_equal(aqs_workspace_load_from(&ws, deep, NULL, &err), AQS_OK);
  assert_string_equal(ws.store_path, "/env/store");
  assert_string_equal(aqs_store_origin_name(&ws), "$AQS_STORE");
  aqs_workspace_free(&ws);

  assert_int_equal(aqs_workspace_load_from(&ws, deep, "/flag//./x/../store/", &err), AQS_OK);
  assert_string_equal(ws.store_path, "/flag/store");
  assert_string_equal(aqs_store_origin_name(&ws), "--store");
  aqs_workspace_free(&ws);

  /* An empty $AQS_STORE counts as unset (ctest exports AQS_STORE=). */
  setenv("AQS_STORE", "", 1);
  assert_int_equal(aqs_workspace_load_from(&ws, deep, NULL, &err), AQS_OK);
  snprintf(want, sizeof want, "%s/shared-cache", fx->dir);
  assert_string_equal(ws.store_path, want);
  aqs_workspace_free(&ws);
}

static void test_default_store_follows_config_dir(void **state) {
  fixture *fx = *state;
  write_config(fx, "[model]\npath = m\n");
  aqs_workspace ws;
  aqs_err err = {0};
  assert_int_equal(aqs_workspace_load_from(&ws, fx->dir, NULL, &err), AQS_OK);
  char want[4300];
  snprintf(want, sizeof want, "%s/.aqs-cache", fx->dir);
  assert_string_equal(ws.store_path, want);
  assert_int_equal(ws.store_origin, AQS_STORE_FROM_DEFAULT);
  aqs_workspace_free(&ws);
}

static void test_paths_cleaned(void **state) {
  fixture *fx = *state;
  aqs_workspace ws;
  aqs_err err = {0};
  assert_int_equal(parse_text(fx, "[model]\npath = a/./b//../c/\n[recipes]\npath = /x/../../y/.\n"
                              "[data]\nimages = .\n", &ws, &err), AQS_OK);
  char want[4300];
  snprintf(want, sizeof want, "%s/a/c", fx->dir);
  assert_string_equal(ws.model_path, want);
  assert_string_equal(ws.recipes_path, "/y");
  assert_string_equal(ws.data_images, fx->dir);
  aqs_workspace_free(&ws);
}

static void test_malformed_files(void **state) {
  fixture *fx = *state;
  expect_error(fx, "[store]\npath = a\nthis line has no equals sign\n", 3, "malformed line");
  expect_error(fx, "[store\npath = a\n", 1, "malformed line");
  expect_error(fx, "[store]\n\n\ncolour = blue\n", 4, "unknown key 'colour' in section [store]");
  expect_error(fx, "[store]\npath = a\n[gpu]\nid = 0\n", 3, "unknown section [gpu]");
  /* An unknown section is an error even without keys (inih never reports it to the handler). */
  expect_error(fx, "[store]\npath = a\n\n  [gpu]\n", 4, "unknown section [gpu]");
  expect_error(fx, "[gpu]\n[store]\npath = a\n", 1, "unknown section [gpu]");
  expect_error(fx, "path = a\n", 1, "outside any [section]");
  expect_error(fx, "[store]\ncompression_level = fast\n", 2, "'fast' is not a zstd level");
  expect_error(fx, "[store]\ncompression_level = 0\n", 2, "compression_level");
  expect_error(fx, "[store]\nsize_limit = 10X\n", 2, "'10X' is not a size");
  expect_error(fx, "[store]\nsize_limit = -5\n", 2, "'-5' is not a size");
  expect_error(fx, "[store]\ninline_threshold = 99999999999999999999999\n", 2, "is not a size");
  expect_error(fx, "[store]\nlink_mode = symlink\n", 2, "'symlink' is not one of reflink");
  expect_error(fx, "[remote]\nurl = ftp://x\n", 2, "must start with http://");
  expect_error(fx, "[store]\npath =\n", 2, "empty path");
  expect_error(fx, "[store]\npath = a\n; c\npath = b\n", 4, "duplicate key 'path' in section [store] (first set on line 2)");
  expect_error(fx, "[secondary]\nstores = , ,\n", 2, "empty list");
  /* The first problem in the file wins, whichever kind it is. */
  expect_error(fx, "[store]\nbogus = 1\nno equals here\n", 2, "unknown key 'bogus'");
  expect_error(fx, "[store]\nno equals here\nbogus = 1\n", 2, "malformed line");
  /* Lines longer than inih's buffer are refused rather than silently split. */
  char longline[600];
  memset(longline, 'a', sizeof longline);
  memcpy(longline, "[model]\npath = ", 15);
  longline[sizeof longline - 2] = '\n';
  longline[sizeof longline - 1] = '\0';
  expect_error(fx, longline, 2, "line longer than");
}

/* A NUL byte inside a value is refused with its line (inih would cut the value at it), as are
 * special files and an over-limit .aqstore. */
static void test_hostile_bytes(void **state) {
  fixture *fx = *state;
  static const char text[] = "[store]\ncompression_level = 3\n[data]\ncaptions = a.txt\0junk\n";
  tu_write_file(fx->config, text, sizeof text - 1);
  aqs_workspace ws;
  aqs_err err = {0};
  assert_int_equal(aqs_workspace_init_defaults(&ws, &err), AQS_OK);
  assert_int_equal(aqs_workspace_parse_file(&ws, fx->config, &err), AQS_ERR_INVALID);
  char want[4400];
  snprintf(want, sizeof want, "%s:4: NUL byte in the line", fx->config);
  assert_non_null(strstr(err.msg, want));
  aqs_workspace_free(&ws);
  assert_int_equal(aqs_workspace_init_defaults(&ws, &err), AQS_OK);
  assert_int_equal(aqs_workspace_parse_file(&ws, "/dev/zero", &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "workspace config /dev/zero is not a regular file"));
  aqs_workspace_free(&ws);
}

static void test_unreadable_config(void **state) {
  fixture *fx = *state;
  aqs_workspace ws;
  aqs_err err = {0};
  assert_int_equal(aqs_workspace_init_defaults(&ws, &err), AQS_OK);
  char missing[4300];
  snprintf(missing, sizeof missing, "%s/nope.ini", fx->dir);
  assert_int_equal(aqs_workspace_parse_file(&ws, missing, &err), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, missing));
  aqs_workspace_free(&ws);

  /* A malformed .aqstore found by discovery fails the load with file:line. */
  write_config(fx, "[store]\nsize_limit = lots\n");
  assert_int_equal(aqs_workspace_load_from(&ws, fx->dir, NULL, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, ".aqstore:2: [store] size_limit: 'lots' is not a size"));
  assert_null(ws.store_path); /* freed on error */

  if (geteuid() != 0) {
    chmod(fx->config, 0);
    assert_int_equal(aqs_workspace_load_from(&ws, fx->dir, NULL, &err), AQS_ERR_IO);
    assert_non_null(strstr(err.msg, fx->config));
    assert_non_null(strstr(err.msg, "Permission denied"));
    chmod(fx->config, 0644);
  }
}

static void test_parse_size(void **state) {
  (void)state;
  uint64_t b;
  assert_int_equal(aqs_parse_size("0", &b), 0);
  assert_true(b == 0);
  assert_int_equal(aqs_parse_size("123", &b), 0);
  assert_true(b == 123);
  assert_int_equal(aqs_parse_size("64K", &b), 0);
  assert_true(b == 65536);
  assert_int_equal(aqs_parse_size("500M", &b), 0);
  assert_true(b == 500ull << 20);
  assert_int_equal(aqs_parse_size("10GiB", &b), 0);
  assert_true(b == 10ull << 30);
  assert_int_equal(aqs_parse_size("2TB", &b), 0);
  assert_true(b == 2ull << 40);
  assert_int_equal(aqs_parse_size("", &b), -1);
  assert_int_equal(aqs_parse_size("G", &b), -1);
  assert_int_equal(aqs_parse_size("1.5G", &b), -1);
  assert_int_equal(aqs_parse_size("20000000T", &b), -1); /* overflows 64 bits */
  assert_int_equal(aqs_link_mode_parse("copy"), AQS_LINK_COPY);
  assert_int_equal(aqs_link_mode_parse("Copy"), -1);
  assert_string_equal(aqs_link_mode_name(AQS_LINK_REFLINK), "reflink");
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_defaults_without_config, setup, teardown),
    cmocka_unit_test_setup_teardown(test_every_key, setup, teardown),
    cmocka_unit_test_setup_teardown(test_example_file_parses, setup, teardown),
    cmocka_unit_test_setup_teardown(test_walks_up_and_precedence, setup, teardown),
    cmocka_unit_test_setup_teardown(test_default_store_follows_config_dir, setup, teardown),
    cmocka_unit_test_setup_teardown(test_paths_cleaned, setup, teardown),
    cmocka_unit_test_setup_teardown(test_malformed_files, setup, teardown),
    cmocka_unit_test_setup_teardown(test_hostile_bytes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_unreadable_config, setup, teardown),
    cmocka_unit_test(test_parse_size),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
