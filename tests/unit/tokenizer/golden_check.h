/* tests/unit/tokenizer/golden_check.h: shared body of the golden tests: loads a golden JSONL file
 * written by tests/conformance/gen_tokenizer_golden.py (HF `tokenizers` on the GPU machine) and
 * checks engine/tokenizer against every case: encode ids, decode (with and without special
 * tokens, and of the ids minus the first, which splits characters), decode(encode(x)) == x for NFC
 * text, and the random-id decode-only cases. Included by test_golden_*.c only. */
#ifndef AQS_TEST_TOKENIZER_GOLDEN_CHECK_H
#define AQS_TEST_TOKENIZER_GOLDEN_CHECK_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer/tokenizer.h"
#include "store/digest.h"
#include "testutil.h"

typedef struct golden_counts {
  size_t encode_cases, decode_cases, roundtrip_cases, failures;
} golden_counts;

/* Reads json array of ints into ids (cleared first). */
static void golden_ids(json_t *array, aqs_token_ids *ids) {
  ids->len = 0;
  size_t i;
  json_t *v;
  json_array_foreach(array, i, v) {
    int32_t id = (int32_t)json_integer_value(v);
    if (ids->len == ids->cap) {
      ids->cap = ids->cap ? ids->cap * 2 : 256;
      ids->ids = realloc(ids->ids, ids->cap * sizeof *ids->ids);
      assert_non_null(ids->ids);
    }
    ids->ids[ids->len++] = id;
  }
}

static int golden_fail(golden_counts *c, size_t line, const char *what) {
  if (c->failures++ < 10) fprintf(stderr, "golden line %zu: %s\n", line, what);
  return 1;
}

/* decode(ids[from..]) must equal json string `expected`. */
static void golden_check_decode(const aqs_tokenizer *tok, const aqs_token_ids *ids, size_t from,
                                int flags, json_t *expected, size_t line, const char *what,
                                golden_counts *c) {
  if (!json_is_string(expected)) return;
  char *text = NULL;
  size_t len = 0;
  aqs_err err = {0};
  size_t n = ids->len > from ? ids->len - from : 0;
  if (aqs_tokenizer_decode(tok, ids->ids + (ids->len > from ? from : 0), n, flags, &text, &len,
                           &err) != AQS_OK) {
    golden_fail(c, line, err.msg);
    return;
  }
  c->decode_cases++;
  if (len != json_string_length(expected) || memcmp(text, json_string_value(expected), len) != 0)
    golden_fail(c, line, what);
  free(text);
}

/* Checks the tokenizer at tok_path against the golden file; returns the counts. The golden's
 * header must name the same tokenizer digest and the corpus must still match the golden texts. */
static golden_counts golden_check_file(const char *tok_path, const char *golden_path,
                                       const char *corpus_path) {
  golden_counts counts = {0};
  aqs_err err = {0};
  aqs_tokenizer *tok = NULL;
  if (aqs_tokenizer_load(tok_path, &tok, &err) != AQS_OK) fail_msg("load: %s", err.msg);

  FILE *golden = fopen(golden_path, "r");
  assert_non_null(golden);
  FILE *corpus = corpus_path ? fopen(corpus_path, "r") : NULL;
  char *line = NULL, *corpus_line = NULL;
  size_t cap = 0, corpus_cap = 0, line_no = 0;
  aqs_token_ids ids = {0}, expected = {0};
  json_error_t jerr;
  while (getline(&line, &cap, golden) > 0) {
    line_no++;
    json_t *row = json_loads(line, JSON_ALLOW_NUL, &jerr);
    if (!row) fail_msg("%s:%zu: %s", golden_path, line_no, jerr.text);
    if (line_no == 1) { /* header: the tokenizer must be the one the golden was made with */
      aqs_digest d;
      char hex[AQS_DIGEST_STR_SIZE];
      if (aqs_sha256_file(tok_path, &d, NULL, &err) != AQS_OK) fail_msg("%s", err.msg);
      aqs_digest_str(&d, hex);
      const char *want = json_string_value(json_object_get(row, "tokenizer_sha256"));
      assert_non_null(want);
      if (strcmp(hex + strlen(AQS_DIGEST_PREFIX), want) != 0)
        fail_msg("%s is not the tokenizer %s was generated from (sha256 %s, golden says %s)",
                 tok_path, golden_path, hex, want);
      json_decref(row);
      continue;
    }
    json_t *text = json_object_get(row, "text");
    golden_ids(json_object_get(row, "ids"), &expected);
    if (json_is_string(text)) {
      if (corpus) { /* a corpus edit without regenerating the golden is caught here */
        assert_true(getline(&corpus_line, &corpus_cap, corpus) > 0);
        json_t *ct = json_loads(corpus_line, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        assert_non_null(ct);
        if (!json_equal(ct, text)) fail_msg("corpus line %zu differs from golden line %zu: "
                                            "regenerate the golden", line_no - 1, line_no);
        json_decref(ct);
      }
      ids.len = 0;
      counts.encode_cases++;
      if (aqs_tokenizer_encode(tok, json_string_value(text), json_string_length(text), &ids,
                               &err) != AQS_OK) {
        golden_fail(&counts, line_no, err.msg);
      } else if (ids.len != expected.len ||
                 memcmp(ids.ids, expected.ids, ids.len * sizeof *ids.ids) != 0) {
        char msg[256];
        size_t k = 0;
        while (k < ids.len && k < expected.len && ids.ids[k] == expected.ids[k]) k++;
        snprintf(msg, sizeof msg, "encode: %zu ids, HF %zu; first difference at %zu", ids.len,
                 expected.len, k);
        golden_fail(&counts, line_no, msg);
      }
      golden_check_decode(tok, &expected, 0, AQS_DECODE_SKIP_SPECIAL,
                          json_object_get(row, "decoded_skip_special"), line_no,
                          "decode (skip special)", &counts);
      golden_check_decode(tok, &expected, 1, 0, json_object_get(row, "decoded_drop_first"),
                          line_no, "decode of ids[1:]", &counts);
      if (json_is_true(json_object_get(row, "is_nfc"))) { /* decode(encode(x)) == x */
        counts.roundtrip_cases++;
        golden_check_decode(tok, &ids, 0, 0, text, line_no, "decode(encode(x)) != x", &counts);
      }
    }
    golden_check_decode(tok, &expected, 0, 0, json_object_get(row, "decoded"), line_no, "decode",
                        &counts);
    json_decref(row);
  }
  if (corpus) {
    assert_true(getline(&corpus_line, &corpus_cap, corpus) <= 0); /* no corpus line left over */
    fclose(corpus);
  }
  fclose(golden);
  free(line);
  free(corpus_line);
  aqs_token_ids_free(&ids);
  aqs_token_ids_free(&expected);
  aqs_tokenizer_free(tok);
  fprintf(stderr, "%s: %zu encode cases, %zu decodes, %zu round trips, %zu failures\n",
          golden_path, counts.encode_cases, counts.decode_cases, counts.roundtrip_cases,
          counts.failures);
  return counts;
}

#endif
