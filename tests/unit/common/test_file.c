/* tests/unit/common/test_file.c: bounded, regular-only input files (common/file.h): a regular
 * file is read whole; a directory, a FIFO with no writer and /dev/zero are refused at once (no
 * hang, no unbounded read); a file over its kind's limit is refused naming the limit. */
#include "testutil.h"

#include "common/file.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_regular_read(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("file");
  char path[4200];
  snprintf(path, sizeof path, "%s/a.txt", dir);
  tu_write_file(path, "abc\0def", 7);
  char *data;
  size_t len;
  aqs_err err = {0};
  assert_int_equal(aqs_file_read_input(path, AQS_INPUT_CAPTIONS, &data, &len, &err), AQS_OK);
  assert_int_equal(len, 7);
  assert_memory_equal(data, "abc\0def", 8); /* NUL-terminated past len */
  free(data);
  snprintf(path, sizeof path, "%s/missing", dir);
  assert_int_equal(aqs_file_read_input(path, AQS_INPUT_TOKENIZER, &data, &len, &err), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "cannot open tokenizer"));
  tu_rm_rf(dir);
  free(dir);
}

static void test_special_files(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("file");
  char fifo[4200];
  snprintf(fifo, sizeof fifo, "%s/fifo", dir);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  char *data = NULL;
  aqs_err err = {0};
  /* Opening a FIFO without O_NONBLOCK would block here forever (no writer). */
  assert_int_equal(aqs_file_read_input(fifo, AQS_INPUT_CAPTIONS, &data, NULL, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "caption file"));
  assert_non_null(strstr(err.msg, "is not a regular file (a FIFO)"));
  assert_int_equal(aqs_file_read_input("/dev/zero", AQS_INPUT_TOKENS, &data, NULL, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "token file /dev/zero is not a regular file (a character device)"));
  assert_int_equal(aqs_file_read(dir, "plan", &data, NULL, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "is a directory"));
  int fd = 7;
  assert_int_equal(aqs_file_open_input(fifo, AQS_INPUT_HASHED, &fd, NULL, &err), AQS_ERR_INVALID);
  assert_int_equal(fd, -1);
  assert_null(data);
  tu_rm_rf(dir);
  free(dir);
}

static void test_limits(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("file");
  char path[4200];
  snprintf(path, sizeof path, "%s/recipe.ini", dir);
  const aqs_input_limit *lim = aqs_input_limit_of(AQS_INPUT_RECIPE);
  assert_string_equal(lim->what, "recipe");
  assert_int_equal(lim->max_bytes, 1 << 20);
  int fd = open(path, O_CREAT | O_WRONLY, 0644);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, (off_t)lim->max_bytes), 0); /* exactly the limit: accepted */
  char *data;
  size_t len;
  aqs_err err = {0};
  assert_int_equal(aqs_file_read_input(path, AQS_INPUT_RECIPE, &data, &len, &err), AQS_OK);
  assert_int_equal(len, lim->max_bytes);
  free(data);
  assert_int_equal(ftruncate(fd, (off_t)lim->max_bytes + 1), 0);
  close(fd);
  assert_int_equal(aqs_file_read_input(path, AQS_INPUT_RECIPE, &data, &len, &err), AQS_ERR_UNSUPPORTED);
  char want[4400];
  snprintf(want, sizeof want, "recipe %s is 1048577 bytes, over the recipe limit of 1048576 bytes", path);
  assert_string_equal(err.msg, want);
  /* Kinds without a limit (mapped or streamed files) accept it. */
  uint64_t size = 0;
  assert_int_equal(aqs_file_open_input(path, AQS_INPUT_MODEL, &fd, &size, &err), AQS_OK);
  assert_int_equal(size, lim->max_bytes + 1);
  assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  close(fd);
  tu_rm_rf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_regular_read),
      cmocka_unit_test(test_special_files),
      cmocka_unit_test(test_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
