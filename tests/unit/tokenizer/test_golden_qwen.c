/* tests/unit/tokenizer/test_golden_qwen.c: engine/tokenizer equals HF `tokenizers` 0.23 token for
 * token on the real Qwen tokenizer (../shared/fixtures/qwen-tokenizer/) over the committed corpus;
 * skipped (exit 77) with a message naming the file when the shared fixture is absent. */
#include "golden_check.h"

static const char *qwen_tokenizer_path;

static void qwen_matches_hf_golden(void **state) {
  (void)state;
  char golden[4096], corpus[4096];
  snprintf(golden, sizeof golden, "%s", tu_src_path("tests/fixtures/tokenizer/qwen_golden.jsonl"));
  snprintf(corpus, sizeof corpus, "%s", tu_src_path("tests/fixtures/tokenizer/corpus.jsonl"));
  golden_counts c = golden_check_file(qwen_tokenizer_path, golden, corpus);
  assert_int_equal(c.encode_cases, 427);
  assert_true(c.roundtrip_cases > 200);
  assert_int_equal(c.failures, 0);
}

int main(void) {
  const char *path = tu_shared_path("fixtures/qwen-tokenizer/tokenizer.json");
  if (!path) return AQS_TEST_SKIP;
  static char path_copy[4096];
  snprintf(path_copy, sizeof path_copy, "%s", path);
  qwen_tokenizer_path = path_copy;
  const struct CMUnitTest tests[] = {cmocka_unit_test(qwen_matches_hf_golden)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
