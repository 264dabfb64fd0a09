/* tests/unit/stages/test_token_input.c: token batches for calibrate/sensitivity from JSON lines
 * (split into batches of N sequences, errors naming file and line) and from an encoded calib
 * chunk (one batch, same tokens as the JSON lines spelling). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/calib/calibset.h"
#include "engine/stages/token_input.h"

static void test_jsonl_batches(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("tokens");
  char path[4096];
  snprintf(path, sizeof path, "%s/t.jsonl", dir);
  const char *text = "[1, 2, 3]\n\n[4, 5]\n[6]\n  [7, 8, 9, 10]\r\n[11, 12]\n";
  tu_write_file(path, text, strlen(text));
  aqs_token_batches tb = {0};
  aqs_err e = {0};
  assert_int_equal(aqs_token_batches_read(path, 2, &tb, &e), AQS_OK);
  assert_int_equal(tb.n, 3);
  assert_int_equal(tb.n_seqs, 5);
  assert_int_equal(tb.n_tokens, 12);
  assert_int_equal(tb.batches[0].n_seqs, 2);
  assert_int_equal(tb.batches[2].n_seqs, 1);
  assert_int_equal(tb.batches[1].seq_lens[1], 4);
  assert_int_equal(tb.batches[1].token_ids[0], 6);
  assert_int_equal(tb.batches[2].token_ids[1], 12);
  /* a second file appends batches; views stay valid */
  assert_int_equal(aqs_token_batches_read(path, 8, &tb, &e), AQS_OK);
  assert_int_equal(tb.n, 4);
  assert_int_equal(tb.batches[3].n_seqs, 5);
  assert_int_equal(tb.batches[0].token_ids[2], 3);
  assert_int_equal(tb.batches[3].token_ids[11], 12);
  aqs_token_batches_free(&tb);
  const char *bad = "[1, 2]\n[3, -4]\n";
  tu_write_file(path, bad, strlen(bad));
  assert_int_equal(aqs_token_batches_read(path, 2, &tb, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "t.jsonl:2: element 1 is not a token id"));
  aqs_token_batches_free(&tb);
  tu_write_file(path, "{}\n", 3);
  assert_int_equal(aqs_token_batches_read(path, 2, &tb, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "t.jsonl:1: expected a non-empty JSON array"));
  aqs_token_batches_free(&tb);
  tu_rm_rf(dir);
  free(dir);
}

static void test_calib_chunk(void **state) {
  (void)state;
  int32_t lens[3] = {2, 3, 1};
  int64_t offs[4] = {0, 2, 5, 6};
  int32_t ids[6] = {10, 11, 20, 21, 22, 30};
  aqs_calib_chunk c;
  memset(&c, 0, sizeof c);
  c.first_seq = 8;
  c.n_seqs = 3;
  c.seq_lens = lens;
  c.seq_offsets = offs;
  c.n_tokens = 6;
  c.token_ids = ids;
  int64_t img_off[1] = {0};
  c.image_patch_offsets = img_off;
  uint8_t *bytes;
  size_t len;
  aqs_err e = {0};
  assert_int_equal(aqs_calib_chunk_encode(&c, &bytes, &len, &e), AQS_OK);
  char *dir = tu_mkdtemp("tokens");
  char path[4096];
  snprintf(path, sizeof path, "%s/chunk.bin", dir);
  tu_write_file(path, bytes, len);
  free(bytes);
  aqs_token_batches tb = {0};
  assert_int_equal(aqs_token_batches_read(path, 2, &tb, &e), AQS_OK);
  assert_int_equal(tb.n, 1);
  assert_int_equal(tb.batches[0].n_seqs, 3);
  assert_memory_equal(tb.batches[0].seq_lens, lens, sizeof lens);
  assert_memory_equal(tb.batches[0].token_ids, ids, sizeof ids);
  aqs_token_batches_free(&tb);
  /* a truncated chunk is corrupt, named */
  tu_write_file(path, "AQSCALC1\x01\x02", 10);
  assert_int_equal(aqs_token_batches_read(path, 2, &tb, &e), AQS_ERR_CORRUPT);
  assert_non_null(strstr(e.msg, "chunk.bin"));
  aqs_token_batches_free(&tb);
  tu_rm_rf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_jsonl_batches),
    cmocka_unit_test(test_calib_chunk),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
