/* tests/unit/tokenizer/test_tokenizer.c: engine/tokenizer beyond the HF goldens: every load error a
 * user can reach (with the file / JSON path in the message), invalid UTF-8 and unknown ids, and the
 * tokenizer.json features the Qwen file does not use (merge order on tiny vocabularies, lstrip /
 * rstrip / single_word and normalized added tokens, Removed splits, GPT-2 ByteLevel with
 * add_prefix_space, ignore_merges, unk tokens), checked against hand-derived HF results. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer/pretok.h"
#include "engine/tokenizer/tokenizer.h"
#include "testutil.h"

/* Qwen's split regex, as it appears inside a JSON string. */
#define QWEN_REGEX_JSON                                                                             \
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| "                 \
  "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"
#define QWEN_PRETOK                                                                                 \
  "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"" \
  QWEN_REGEX_JSON "\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", " \
  "\"add_prefix_space\": false, \"use_regex\": false}]}"

/* A tokenizer.json from its parts (each a JSON value as text). */
static aqs_tokenizer *make_tok(const char *vocab, const char *merges, const char *added,
                               const char *pretok, const char *model_extra) {
  char *json = malloc(16384);
  assert_non_null(json);
  snprintf(json, 16384,
           "{\"version\": \"1.0\", \"added_tokens\": %s, \"normalizer\": {\"type\": \"NFC\"}, "
           "\"pre_tokenizer\": %s, \"post_processor\": null, \"decoder\": {\"type\": "
           "\"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"dropout\": null%s, \"vocab\": %s, "
           "\"merges\": %s}}",
           added ? added : "[]", pretok ? pretok : QWEN_PRETOK, model_extra ? model_extra : "",
           vocab, merges ? merges : "[]");
  aqs_err err = {0};
  aqs_tokenizer *tok = NULL;
  if (aqs_tokenizer_load_json(json, strlen(json), "mini.json", &tok, &err) != AQS_OK)
    fail_msg("mini tokenizer: %s", err.msg);
  free(json);
  return tok;
}

/* Load of json text must fail with code, the message holding needle. */
static void expect_load_error(const char *json, aqs_status code, const char *needle) {
  aqs_err err = {0};
  aqs_tokenizer *tok = (aqs_tokenizer *)1;
  aqs_status st = aqs_tokenizer_load_json(json, strlen(json), "bad.json", &tok, &err);
  if (st != code || !strstr(err.msg, needle))
    fail_msg("expected %s with '%s', got %s: %s", aqs_status_name(code), needle,
             aqs_status_name(st), err.msg);
  assert_null(tok);
}

/* encode(text) must give exactly the ids expected[0..n). */
static void expect_ids(aqs_tokenizer *tok, const char *text, const int32_t *expected, size_t n) {
  aqs_token_ids ids = {0};
  aqs_err err = {0};
  if (aqs_tokenizer_encode(tok, text, strlen(text), &ids, &err) != AQS_OK)
    fail_msg("encode '%s': %s", text, err.msg);
  int same = ids.len == n && memcmp(ids.ids, expected, n * sizeof *expected) == 0;
  if (!same) {
    fprintf(stderr, "encode '%s' gave", text);
    for (size_t i = 0; i < ids.len; i++) fprintf(stderr, " %d", ids.ids[i]);
    fprintf(stderr, "\n");
  }
  assert_true(same);
  aqs_token_ids_free(&ids);
}

#define EXPECT_IDS(tok, text, ...)                                                                  \
  do {                                                                                              \
    const int32_t want_[] = {__VA_ARGS__};                                                          \
    expect_ids(tok, text, want_, sizeof want_ / sizeof want_[0]);                                   \
  } while (0)

static void load_errors_name_file_and_json_path(void **state) {
  (void)state;
  aqs_err err = {0};
  aqs_tokenizer *tok = NULL;
  assert_int_equal(aqs_tokenizer_load("/nonexistent/tokenizer.json", &tok, &err), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "/nonexistent/tokenizer.json"));
  expect_load_error("{\"model\": ", AQS_ERR_INVALID, "bad.json: line 1");
  expect_load_error("[]", AQS_ERR_INVALID, "not a JSON object");
  expect_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", AQS_ERR_UNSUPPORTED,
                    "model.type: 'WordPiece'");
  expect_load_error("{\"normalizer\": {\"type\": \"Lowercase\"}, \"model\": {\"type\": \"BPE\", "
                    "\"vocab\": {}, \"merges\": []}}",
                    AQS_ERR_UNSUPPORTED, "normalizer: normalizer type 'Lowercase'");
  expect_load_error("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
                    "\"Split\", \"pattern\": {\"Regex\": \"(ab\"}, \"behavior\": \"Isolated\"}]}, "
                    "\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}",
                    AQS_ERR_INVALID, "pre_tokenizer.pretokenizers[0].pattern: regex does not compile");
  expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, "
                    "\"behavior\": \"MergedWithPrevious\"}, \"model\": {\"type\": \"BPE\", "
                    "\"vocab\": {}, \"merges\": []}}",
                    AQS_ERR_UNSUPPORTED, "behavior: 'MergedWithPrevious'");
  expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, "
                    "\"behavior\": \"Isolated\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {}, "
                    "\"merges\": []}}",
                    AQS_ERR_UNSUPPORTED, "no ByteLevel step");
  expect_load_error("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", "
                    "\"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\", \"a c\"]}}",
                    AQS_ERR_INVALID, "model.merges[0]: 'a' + 'b': the merged token is not in");
  expect_load_error("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", "
                    "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\", \"x b\"]}}",
                    AQS_ERR_INVALID, "model.merges[1]: 'x' + 'b': left part is not in the vocabulary");
  expect_load_error("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", "
                    "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [[\"a\", \"y\"]]}}",
                    AQS_ERR_INVALID, "model.merges[0]: 'a' + 'y': right part is not in the vocabulary");
  /* Two spellings for one id: decoding id 1 would be ambiguous. */
  expect_load_error("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", "
                    "\"vocab\": {\"a\": 0, \"b\": 1, \"c\": 1}, \"merges\": []}}",
                    AQS_ERR_INVALID, "model.vocab: id 1 is given to both \"b\" and \"c\"");
  expect_load_error("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", "
                    "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\", \"abc\"]}}",
                    AQS_ERR_INVALID, "model.merges[1]: expected \"a b\"");
  expect_load_error("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": "
                    "\"WordPiece\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}",
                    AQS_ERR_UNSUPPORTED, "decoder: type 'WordPiece'");
  expect_load_error("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", "
                    "\"vocab\": {\"a\": -3}, \"merges\": []}}",
                    AQS_ERR_INVALID, "model.vocab[\"a\"]: id must be an integer");
  expect_load_error("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", "
                    "\"vocab\": {}, \"merges\": [], \"continuing_subword_prefix\": \"##\"}}",
                    AQS_ERR_UNSUPPORTED, "model.continuing_subword_prefix");
}

static void merges_apply_lowest_rank_first_leftmost_on_ties(void **state) {
  (void)state;
  const char *vocab = "{\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"bc\": 4, \"abc\": 5, \"aa\": 6}";
  /* (b,c) outranks (a,b): "abc" = a + bc, then (a,bc) is not a merge here */
  aqs_tokenizer *tok = make_tok(vocab, "[\"b c\", \"a b\"]", NULL, NULL, NULL);
  EXPECT_IDS(tok, "abc", 0, 4);
  EXPECT_IDS(tok, "abab", 3, 3);
  aqs_tokenizer_free(tok);
  /* (a,b) first, then (ab,c); pairs given as ["a", "b"] arrays (the newer file format) */
  tok = make_tok(vocab, "[[\"a\", \"b\"], [\"b\", \"c\"], [\"ab\", \"c\"]]", NULL, NULL, NULL);
  EXPECT_IDS(tok, "abc", 5);
  EXPECT_IDS(tok, "bcabc", 4, 5);
  aqs_tokenizer_free(tok);
  /* equal pairs: the leftmost merges first, so "aaa" is aa + a, never a + aa */
  tok = make_tok(vocab, "[\"a a\"]", NULL, NULL, NULL);
  EXPECT_IDS(tok, "aaa", 6, 0);
  EXPECT_IDS(tok, "aaaaa", 6, 6, 0);
  /* bytes without a token and no unk_token are dropped, as HF does (their neighbours then meet) */
  EXPECT_IDS(tok, "axa", 6);
  aqs_tokenizer_free(tok);
}

static void added_tokens_lstrip_rstrip_single_word(void **state) {
  (void)state;
  const char *vocab = "{\"a\": 0, \"b\": 1, \"\\u0120\": 2, \"<\": 3, \"x\": 4, \">\": 5}";
  const char *added =
      "[{\"id\": 10, \"content\": \"<x>\", \"lstrip\": true, \"rstrip\": false, \"single_word\": "
      "false, \"normalized\": false, \"special\": true}, {\"id\": 11, \"content\": \"<y>\", "
      "\"lstrip\": false, \"rstrip\": true, \"single_word\": false, \"normalized\": false, "
      "\"special\": false}, {\"id\": 12, \"content\": \"ab\", \"single_word\": true, \"normalized\": "
      "false, \"special\": false}, {\"id\": 13, \"content\": \"<x>>\", \"normalized\": false, "
      "\"special\": false}]";
  aqs_tokenizer *tok = make_tok(vocab, "[]", added, NULL, NULL);
  EXPECT_IDS(tok, "a  <x>b", 0, 10, 1);    /* lstrip takes the spaces before <x> */
  EXPECT_IDS(tok, "a <y>  b", 0, 2, 11, 1); /* rstrip takes the spaces after <y> */
  EXPECT_IDS(tok, "b ab b", 1, 2, 12, 2, 1); /* single word: matched between spaces */
  EXPECT_IDS(tok, "bab", 1, 0, 1);          /* ... and not inside a word */
  EXPECT_IDS(tok, "<x>>", 13);              /* leftmost-longest */
  EXPECT_IDS(tok, "<x", 3, 4);
  assert_int_equal(aqs_tokenizer_token_to_id(tok, "<x>"), 10);
  assert_true(aqs_tokenizer_is_special(tok, 10));
  assert_false(aqs_tokenizer_is_special(tok, 11));
  assert_false(aqs_tokenizer_is_special(tok, 0));
  assert_int_equal(aqs_tokenizer_vocab_size(tok), 14);
  assert_null(aqs_tokenizer_id_to_token(tok, 7)); /* a hole in the ids */
  assert_string_equal(aqs_tokenizer_id_to_token(tok, 2), "\xC4\xA0");
  /* decode: added tokens as their content; SKIP_SPECIAL drops <x> only */
  const int32_t ids[] = {0, 10, 11, 2, 1};
  char *text = NULL;
  size_t len = 0;
  aqs_err err = {0};
  assert_int_equal(aqs_tokenizer_decode(tok, ids, 5, 0, &text, &len, &err), AQS_OK);
  assert_string_equal(text, "a<x><y> b");
  assert_int_equal(len, 9);
  free(text);
  assert_int_equal(aqs_tokenizer_decode(tok, ids, 5, AQS_DECODE_SKIP_SPECIAL, &text, NULL, &err),
                   AQS_OK);
  assert_string_equal(text, "a<y> b");
  free(text);
  aqs_tokenizer_free(tok);
}

static void normalized_added_token_matches_after_nfc(void **state) {
  (void)state;
  /* "é" as an added token with normalized=true matches "e" + U+0301 once NFC composed it */
  const char *vocab = "{\"e\": 0, \"\\u00cc\": 1, \"\\u0123\": 2}";
  const char *added = "[{\"id\": 5, \"content\": \"e\\u0301\", \"normalized\": true, \"special\": "
                      "false}]";
  aqs_tokenizer *tok = make_tok(vocab, "[]", added, NULL, NULL);
  EXPECT_IDS(tok, "e\xCC\x81", 5);
  EXPECT_IDS(tok, "\xC3\xA9", 5);
  EXPECT_IDS(tok, "ee\xCC\x81", 0, 5);
  aqs_tokenizer_free(tok);
}

static void bytelevel_regex_prefix_space_ignore_merges_unk(void **state) {
  (void)state;
  const char *vocab = "{\"\\u0120hello\": 0, \"\\u0120world\": 1, \"\\u0120\": 2, \"h\": 3, "
                      "\"i\": 4, \"<unk>\": 5, \"hi\": 6}";
  const char *gpt2 = "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}";
  aqs_tokenizer *tok = make_tok(vocab, "[\"h i\"]", NULL, gpt2,
                                ", \"ignore_merges\": true, \"unk_token\": \"<unk>\"");
  EXPECT_IDS(tok, "hello world", 0, 1);   /* prefix space, whole-word hits without merges */
  EXPECT_IDS(tok, " hi", 2, 6);           /* "Ġhi" is no entry: merged from bytes */
  EXPECT_IDS(tok, "hz", 2, 3, 5);         /* z has no token: unk */
  aqs_tokenizer_free(tok);
  tok = make_tok(vocab, "[]", NULL, gpt2, ", \"unk_token\": \"<unk>\", \"fuse_unk\": true");
  EXPECT_IDS(tok, "hzzz", 2, 3, 5);       /* fused unks */
  aqs_tokenizer_free(tok);
  /* No unk token: a pre-token made only of bytes outside the vocabulary gives no ids, and that
   * empty result is cached (found by fuzz_tokenizer: UBSan flagged the empty cache copy). */
  tok = make_tok(vocab, "[\"h i\"]", NULL, gpt2, ", \"ignore_merges\": true");
  EXPECT_IDS(tok, "hello\n", 0);
  EXPECT_IDS(tok, "hello\n", 0);          /* second time from the cache */
  aqs_tokenizer_free(tok);
  /* Split with behavior Removed drops the matches; ByteLevel without regex keeps pieces whole */
  const char *removed = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
                        "\"pattern\": {\"String\": \"-\"}, \"behavior\": \"Removed\"}, {\"type\": "
                        "\"ByteLevel\", \"use_regex\": false}]}";
  tok = make_tok(vocab, "[\"h i\"]", NULL, removed, NULL);
  EXPECT_IDS(tok, "hi-h-i", 6, 3, 4);
  aqs_tokenizer_free(tok);
}

static void encode_rejects_invalid_utf8_and_decode_unknown_ids(void **state) {
  (void)state;
  aqs_tokenizer *tok = make_tok("{\"a\": 0, \"\\u00c3\": 1, \"\\u00a9\": 2}", "[]", NULL, NULL, NULL);
  aqs_token_ids ids = {0};
  aqs_err err = {0};
  EXPECT_IDS(tok, "a", 0);
  assert_int_equal(aqs_tokenizer_encode(tok, "a", 1, &ids, &err), AQS_OK);
  assert_int_equal(aqs_tokenizer_encode(tok, "aa\xC3(", 4, &ids, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "not valid UTF-8 at byte 2"));
  assert_int_equal(ids.len, 1); /* unchanged on error */
  static const char *const invalid[] = {"\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xFF",
                                        "\xE2\x82"};
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
    assert_int_equal(aqs_tokenizer_encode(tok, invalid[i], strlen(invalid[i]), &ids, &err),
                     AQS_ERR_INVALID);
  aqs_token_ids_free(&ids);
  const int32_t bad[] = {0, 0, 99};
  char *text = (char *)1;
  assert_int_equal(aqs_tokenizer_decode(tok, bad, 3, 0, &text, NULL, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "token id 99 (index 2)"));
  assert_null(text);
  /* a lone lead byte decodes to U+FFFD, the full pair to the character */
  const int32_t partial[] = {0, 1, 0}, whole[] = {1, 2};
  assert_int_equal(aqs_tokenizer_decode(tok, partial, 3, 0, &text, NULL, &err), AQS_OK);
  assert_string_equal(text, "a\xEF\xBF\xBD" "a");
  free(text);
  assert_int_equal(aqs_tokenizer_decode(tok, whole, 2, 0, &text, NULL, &err), AQS_OK);
  assert_string_equal(text, "\xC3\xA9");
  free(text);
  assert_int_equal(aqs_tokenizer_decode(tok, NULL, 0, 0, &text, NULL, &err), AQS_OK);
  assert_string_equal(text, "");
  free(text);
  aqs_tokenizer_free(tok);
}

static void pattern_translation_spells_out_white_space(void **state) {
  (void)state;
  const char *why = NULL;
  const char *pattern = "\\s+(?!\\S)|[^\\s\\p{L}]|\\\\s";
  char *t = tok_translate_pattern(pattern, strlen(pattern), &why);
  assert_non_null(t);
  /* \s outside a class becomes a class; inside one, its ranges; an escaped backslash stays */
  assert_non_null(strstr(t, "[\\t-\\r\\x{20}\\x{85}"));
  assert_non_null(strstr(t, "(?![^\\t-\\r"));
  assert_non_null(strstr(t, "[^\\t-\\r\\x{20}"));
  assert_non_null(strstr(t, "\\p{L}]|\\\\s"));
  assert_null(strstr(t, "180e"));
  free(t);
  assert_null(tok_translate_pattern("[\\S]", 4, &why));
  assert_non_null(strstr(why, "\\S inside a character class"));
}

static void synth_fixture_lookups(void **state) {
  (void)state;
  aqs_err err = {0};
  aqs_tokenizer *tok = NULL;
  assert_int_equal(aqs_tokenizer_load(tu_src_path("tests/fixtures/tokenizer/synth_small_tokenizer.json"),
                                      &tok, &err), AQS_OK);
  int32_t im_start = aqs_tokenizer_token_to_id(tok, "<|im_start|>");
  assert_true(im_start > 255);
  assert_true(aqs_tokenizer_is_special(tok, im_start));
  assert_string_equal(aqs_tokenizer_id_to_token(tok, im_start), "<|im_start|>");
  assert_int_equal(aqs_tokenizer_token_to_id(tok, "no such token"), -1);
  assert_true(aqs_tokenizer_vocab_size(tok) > (size_t)im_start);
  assert_null(aqs_tokenizer_id_to_token(tok, -1));
  assert_null(aqs_tokenizer_id_to_token(tok, (int32_t)aqs_tokenizer_vocab_size(tok)));
  aqs_tokenizer_free(tok);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(load_errors_name_file_and_json_path),
      cmocka_unit_test(merges_apply_lowest_rank_first_leftmost_on_ties),
      cmocka_unit_test(added_tokens_lstrip_rstrip_single_word),
      cmocka_unit_test(normalized_added_token_matches_after_nfc),
      cmocka_unit_test(bytelevel_regex_prefix_space_ignore_merges_unk),
      cmocka_unit_test(encode_rejects_invalid_utf8_and_decode_unknown_ids),
      cmocka_unit_test(pattern_translation_spells_out_white_space),
      cmocka_unit_test(synth_fixture_lookups),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
