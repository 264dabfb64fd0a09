/* tests/unit/tokenizer/test_golden_synth.c: engine/tokenizer equals HF `tokenizers` on the
 * synthetic checkpoints' small byte-level BPE tokenizer (a committed copy, "a b" merge strings,
 * 2048-token vocabulary: most text falls back to short merges and single bytes). */
#include "golden_check.h"

static void synth_matches_hf_golden(void **state) {
  (void)state;
  char tok[4096], golden[4096], corpus[4096];
  snprintf(tok, sizeof tok, "%s", tu_src_path("tests/fixtures/tokenizer/synth_small_tokenizer.json"));
  snprintf(golden, sizeof golden, "%s",
           tu_src_path("tests/fixtures/tokenizer/synth_small_golden.jsonl"));
  snprintf(corpus, sizeof corpus, "%s", tu_src_path("tests/fixtures/tokenizer/corpus.jsonl"));
  golden_counts c = golden_check_file(tok, golden, corpus);
  assert_int_equal(c.encode_cases, 427);
  assert_true(c.roundtrip_cases > 200);
  assert_int_equal(c.failures, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(synth_matches_hf_golden)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
