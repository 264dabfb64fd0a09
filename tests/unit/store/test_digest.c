/* tests/unit/store/test_digest.c: SHA-256 against published vectors (FIPS 180-2 / NIST examples),
 * streaming = one-shot over random splits, hex forms, parsing of full digests and abbreviations. */
#include <fcntl.h>
#include <unistd.h>

#include "store_testlib.h"

static void expect_hex(const void *data, size_t len, const char *hex) {
  aqs_digest d;
  char out[65];
  aqs_sha256_buf(data, len, &d);
  assert_string_equal(aqs_digest_hex(&d, out), hex);
}

static void test_published_vectors(void **state) {
  (void)state;
  expect_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  expect_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  expect_hex(m448, strlen(m448),
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
                     "klmnopqrlmnopqrsmnopqrstnopqrstu";
  expect_hex(m896, strlen(m896),
             "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  /* One million 'a', fed through the streaming hasher in uneven pieces. */
  char *a = malloc(1000000);
  memset(a, 'a', 1000000);
  aqs_sha256 *h = aqs_sha256_new();
  size_t done = 0, step = 1;
  while (done < 1000000) {
    size_t n = step < 1000000 - done ? step : 1000000 - done;
    aqs_sha256_update(h, a + done, n);
    done += n;
    step = step * 3 + 1;
  }
  aqs_digest d;
  char hex[65];
  aqs_sha256_final(h, &d);
  assert_string_equal(aqs_digest_hex(&d, hex),
                      "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  /* reset + reuse gives the empty digest. */
  aqs_sha256_reset(h);
  aqs_sha256_final(h, &d);
  assert_string_equal(aqs_digest_hex(&d, hex),
                      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  aqs_sha256_free(h);
  free(a);
}

static void test_fd_and_file(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("digest");
  char path[4300];
  snprintf(path, sizeof path, "%s/abc.txt", dir);
  tu_write_file(path, "xxabcyy", 7);
  aqs_err err;
  aqs_err_clear(&err);
  int fd = open(path, O_RDONLY);
  aqs_digest d;
  uint64_t n = 0;
  char hex[65];
  ASSERT_OK(aqs_sha256_fd(fd, 2, 3, path, &d, &n, &err));
  assert_int_equal(n, 3);
  assert_string_equal(aqs_digest_hex(&d, hex),
                      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert_int_equal(aqs_sha256_fd(fd, 5, 10, path, &d, &n, &err), AQS_ERR_IO);
  assert_non_null(strstr(err.msg, "end of file"));
  close(fd);
  ASSERT_OK(aqs_sha256_file(path, &d, &n, &err));
  assert_int_equal(n, 7);
  snprintf(path, sizeof path, "%s/missing", dir);
  assert_int_equal(aqs_sha256_file(path, &d, &n, &err), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "missing"));
  tu_rm_rf(dir);
  free(dir);
}

static void test_text_forms(void **state) {
  (void)state;
  aqs_digest d, back;
  aqs_sha256_buf("abc", 3, &d);
  char str[AQS_DIGEST_STR_SIZE], shrt[13];
  assert_string_equal(aqs_digest_str(&d, str),
                      "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert_string_equal(aqs_digest_short(&d, shrt), "ba7816bf8f01");
  aqs_err err;
  aqs_err_clear(&err);
  ASSERT_OK(aqs_digest_parse(str, &back, &err));
  assert_true(aqs_digest_eq(&d, &back));
  ASSERT_OK(aqs_digest_parse("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                             &back, &err));
  assert_true(aqs_digest_eq(&d, &back));
  /* Abbreviations are not full digests; junk is refused with the text quoted. */
  assert_int_equal(aqs_digest_parse("sha256:ba7816bf", &back, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "not a full digest"));
  assert_int_equal(aqs_digest_parse("sha256:xyz", &back, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "sha256:xyz"));
  char too_long[80];
  snprintf(too_long, sizeof too_long, "%s0", str);
  assert_int_equal(aqs_digest_parse(too_long, &back, &err), AQS_ERR_INVALID);
  /* Prefixes: odd lengths compare half bytes. */
  aqs_digest prefix;
  int n = 0;
  ASSERT_OK(aqs_digest_parse_prefix("sha256:ba781", &prefix, &n, &err));
  assert_int_equal(n, 5);
  assert_true(aqs_digest_has_prefix(&d, &prefix, n));
  ASSERT_OK(aqs_digest_parse_prefix("ba782", &prefix, &n, &err));
  assert_false(aqs_digest_has_prefix(&d, &prefix, n));
  assert_int_equal(aqs_digest_parse_prefix("ba7", &prefix, &n, &err), AQS_ERR_INVALID);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_published_vectors),
      cmocka_unit_test(test_fd_and_file),
      cmocka_unit_test(test_text_forms),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
