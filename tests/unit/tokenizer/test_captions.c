/* tests/unit/tokenizer/test_captions.c: engine/calib/captions: caption file validation (each bad
 * line named by its number, --skip-bad counting), seeded sampling (deterministic, prefix-stable),
 * templates, max length, and packing into calib-set chunks that pass aqs_calib_chunk_check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/calib/captions.h"
#include "testutil.h"

static aqs_tokenizer *synth_tokenizer(void) {
  aqs_err err = {0};
  aqs_tokenizer *tok = NULL;
  if (aqs_tokenizer_load(tu_src_path("tests/fixtures/tokenizer/synth_small_tokenizer.json"), &tok,
                         &err) != AQS_OK)
    fail_msg("%s", err.msg);
  return tok;
}

static void parse_ok(const char *data, size_t len, aqs_captions *caps) {
  aqs_err err = {0};
  if (aqs_captions_parse(data, len, "caps.txt", NULL, caps, &err) != AQS_OK)
    fail_msg("%s", err.msg);
}

static void lines_crlf_bom_and_last_line(void **state) {
  (void)state;
  static const char data[] = "\xEF\xBB\xBF" "A dog.\r\nTwo cats \n  indented caption\nlast";
  aqs_captions caps;
  parse_ok(data, sizeof data - 1, &caps);
  assert_int_equal(caps.n, 4);
  assert_int_equal(caps.n_lines, 4);
  assert_int_equal(caps.n_issues, 0);
  assert_string_equal(caps.items[0].text, "A dog.");
  assert_string_equal(caps.items[1].text, "Two cats "); /* kept byte for byte */
  assert_string_equal(caps.items[2].text, "  indented caption");
  assert_string_equal(caps.items[3].text, "last");
  assert_int_equal(caps.items[3].line, 4);
  assert_int_equal(caps.items[3].len, 4);
  aqs_captions_free(&caps);
}

/* line 2 empty, 4 invalid UTF-8 at byte 2, 5 too long, 6 white space only, 7 a NUL at byte 1 (2 and 6 are
 * blank: not captions, skipped without a word) */
static const char bad_data[] = "good one\n\ngood two\nab\xC3(\n0123456789AB\n \t\xE3\x80\x80\nx\0y\n"
                               "good three\n";

static void bad_lines_refused_with_their_numbers(void **state) {
  (void)state;
  aqs_caption_read_opts opts = {.max_line_bytes = 10, .skip_bad = 0};
  aqs_captions caps;
  aqs_err err = {0};
  assert_int_equal(aqs_captions_parse(bad_data, sizeof bad_data - 1, "caps.txt", &opts, &caps, &err),
                   AQS_ERR_INVALID);
  /* blank lines (2: empty, 6: white space only) are not captions: skipped, never reported */
  assert_null(strstr(err.msg, "caps.txt:2:"));
  assert_null(strstr(err.msg, "caps.txt:6:"));
  assert_non_null(strstr(err.msg, "caps.txt:4: invalid UTF-8 at byte 2"));
  assert_non_null(strstr(err.msg, "caps.txt:5: line too long (12 bytes, limit 10)"));
  assert_non_null(strstr(err.msg, "caps.txt:7: invalid UTF-8 at byte 1"));
  assert_non_null(strstr(err.msg, "3 bad lines: 2 invalid UTF-8, 1 too long"));
  assert_non_null(strstr(err.msg, "--skip-bad"));
  assert_int_equal(caps.n, 0);
  assert_null(caps.items);
}

static void skip_bad_skips_and_counts(void **state) {
  (void)state;
  aqs_caption_read_opts opts = {.max_line_bytes = 10, .skip_bad = 1};
  aqs_captions caps;
  aqs_err err = {0};
  assert_int_equal(aqs_captions_parse(bad_data, sizeof bad_data - 1, "caps.txt", &opts, &caps, &err),
                   AQS_OK);
  assert_int_equal(caps.n, 3);
  assert_int_equal(caps.n_lines, 8);
  assert_string_equal(caps.items[2].text, "good three");
  assert_int_equal(caps.items[2].line, 8);
  assert_int_equal(caps.n_issues, 3);
  assert_int_equal(caps.n_invalid_utf8, 2);
  assert_int_equal(caps.n_empty, 2); /* counted, not issues */
  assert_int_equal(caps.n_too_long, 1);
  static const int64_t lines[] = {4, 5, 7};
  static const aqs_caption_problem problems[] = {AQS_CAPTION_INVALID_UTF8, AQS_CAPTION_TOO_LONG,
                                                 AQS_CAPTION_INVALID_UTF8};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(caps.issues[i].line, lines[i]);
    assert_int_equal(caps.issues[i].problem, problems[i]);
  }
  assert_int_equal(caps.issues[0].byte_offset, 2);
  assert_int_equal(caps.issues[1].line_bytes, 12);
  assert_string_equal(aqs_caption_problem_name(caps.issues[1].problem), "too long");
  aqs_captions_free(&caps);
}

static void read_file_and_missing_file(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("captions");
  char path[4200];
  snprintf(path, sizeof path, "%s/caps.txt", dir);
  tu_write_file(path, "one\ntwo\n", 8);
  aqs_captions caps;
  aqs_err err = {0};
  assert_int_equal(aqs_captions_read(path, NULL, &caps, &err), AQS_OK);
  assert_int_equal(caps.n, 2);
  aqs_captions_free(&caps);
  tu_write_file(path, "one\n\xFF\n", 6);
  assert_int_equal(aqs_captions_read(path, NULL, &caps, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "caps.txt:2: invalid UTF-8 at byte 0"));
  snprintf(path, sizeof path, "%s/missing.txt", dir);
  assert_int_equal(aqs_captions_read(path, NULL, &caps, &err), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, path));
  tu_rm_rf(dir);
  free(dir);
}

/* n captions "caption number <i>" */
static void numbered_captions(int n, aqs_captions *caps) {
  size_t cap = (size_t)n * 32 + 1, len = 0;
  char *data = malloc(cap);
  for (int i = 0; i < n; i++) len += (size_t)snprintf(data + len, cap - len, "caption number %d\n", i);
  parse_ok(data, len, caps);
  free(data);
}

static void sampling_is_deterministic_and_prefix_stable(void **state) {
  (void)state;
  aqs_tokenizer *tok = synth_tokenizer();
  aqs_captions caps;
  numbered_captions(50, &caps);
  aqs_caption_seq_opts opts = {.samples = 12, .seed = 42};
  aqs_caption_seqs a, b, c, d;
  aqs_err err = {0};
  assert_int_equal(aqs_captions_to_seqs(&caps, tok, &opts, &a, &err), AQS_OK);
  assert_int_equal(aqs_captions_to_seqs(&caps, tok, &opts, &b, &err), AQS_OK);
  assert_int_equal(a.n_seqs, 12);
  assert_int_equal(a.n_tokens, b.n_tokens);
  assert_memory_equal(a.token_ids, b.token_ids, (size_t)a.n_tokens * sizeof(int32_t));
  assert_memory_equal(a.source_line, b.source_line, 12 * sizeof(int64_t));
  /* 24 samples of the same seed start with the same 12 */
  opts.samples = 24;
  assert_int_equal(aqs_captions_to_seqs(&caps, tok, &opts, &c, &err), AQS_OK);
  assert_memory_equal(c.source_line, a.source_line, 12 * sizeof(int64_t));
  assert_memory_equal(c.token_ids, a.token_ids, (size_t)a.n_tokens * sizeof(int32_t));
  /* distinct captions, and another seed gives another order */
  for (int i = 0; i < 24; i++)
    for (int j = 0; j < i; j++) assert_int_not_equal(c.source_line[i], c.source_line[j]);
  opts.samples = 12;
  opts.seed = 43;
  assert_int_equal(aqs_captions_to_seqs(&caps, tok, &opts, &d, &err), AQS_OK);
  assert_memory_not_equal(d.source_line, a.source_line, 12 * sizeof(int64_t));
  /* each sequence is exactly the encoding of its caption */
  for (int s = 0; s < 12; s++) {
    const aqs_caption *cap = &caps.items[a.source_line[s] - 1];
    aqs_token_ids ids = {0};
    assert_int_equal(aqs_tokenizer_encode(tok, cap->text, cap->len, &ids, &err), AQS_OK);
    assert_int_equal(ids.len, a.seq_lens[s]);
    assert_memory_equal(ids.ids, a.token_ids + a.seq_offsets[s], ids.len * sizeof(int32_t));
    aqs_token_ids_free(&ids);
  }
  aqs_caption_seqs_free(&b);
  opts.samples = 51;
  assert_int_equal(aqs_captions_to_seqs(&caps, tok, &opts, &b, &err),
                   AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "asked for 51 samples; the caption file has 50 usable"));
  aqs_caption_seqs_free(&a);
  aqs_caption_seqs_free(&c);
  aqs_caption_seqs_free(&d);
  aqs_captions_free(&caps);
  aqs_tokenizer_free(tok);
}

static void templates_and_max_length(void **state) {
  (void)state;
  aqs_tokenizer *tok = synth_tokenizer();
  aqs_captions caps;
  static const char data[] = "A very long caption about a small dog running in the park.\nHi\n";
  parse_ok(data, sizeof data - 1, &caps);
  aqs_caption_seq_opts opts = {.samples = 0, .seed = 1, .template_spec = "chat"};
  aqs_caption_seqs seqs;
  aqs_err err = {0};
  assert_int_equal(aqs_captions_to_seqs(&caps, tok, &opts, &seqs, &err), AQS_OK);
  assert_int_equal(seqs.n_seqs, 2); /* samples 0 = all */
  int32_t im_start = aqs_tokenizer_token_to_id(tok, "<|im_start|>");
  int32_t im_end = aqs_tokenizer_token_to_id(tok, "<|im_end|>");
  for (int s = 0; s < 2; s++) {
    const int32_t *ids = seqs.token_ids + seqs.seq_offsets[s];
    assert_int_equal(ids[0], im_start);
    assert_int_equal(ids[seqs.seq_lens[s] - 2], im_end); /* then "\n" */
    const aqs_caption *c = &caps.items[seqs.source_line[s] - 1];
    char *text = NULL;
    assert_int_equal(aqs_tokenizer_decode(tok, ids, (size_t)seqs.seq_lens[s], 0, &text, NULL, &err),
                     AQS_OK);
    char want[256];
    snprintf(want, sizeof want, "<|im_start|>user\n%s<|im_end|>\n", c->text);
    assert_string_equal(text, want);
    free(text);
  }
  aqs_caption_seqs_free(&seqs);
  /* max length cuts the long one only */
  opts.template_spec = NULL;
  opts.max_seq_len = 5;
  assert_int_equal(aqs_captions_to_seqs(&caps, tok, &opts, &seqs, &err), AQS_OK);
  assert_int_equal(seqs.n_truncated, 1);
  for (int s = 0; s < 2; s++) assert_true(seqs.seq_lens[s] <= 5 && seqs.seq_lens[s] >= 1);
  assert_int_equal(seqs.n_tokens, seqs.seq_lens[0] + seqs.seq_lens[1]);
  aqs_caption_seqs_free(&seqs);
  /* named and custom templates */
  const char *t = NULL;
  assert_int_equal(aqs_caption_template_resolve("chat-system", &t, &err), AQS_OK);
  assert_non_null(strstr(t, "You are a helpful assistant.<|im_end|>\n<|im_start|>user\n{caption}"));
  assert_int_equal(aqs_caption_template_resolve("Describe: {caption}", &t, &err), AQS_OK);
  char *applied = NULL;
  size_t applied_len = 0;
  assert_int_equal(aqs_caption_template_apply(t, "a cat", 5, &applied, &applied_len, &err), AQS_OK);
  assert_string_equal(applied, "Describe: a cat");
  assert_int_equal(applied_len, 15);
  free(applied);
  assert_int_equal(aqs_caption_template_resolve("chatty", &t, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "template 'chatty'"));
  assert_int_equal(aqs_caption_template_resolve("{caption}{caption}", &t, &err), AQS_ERR_INVALID);
  opts.template_spec = "no placeholder";
  assert_int_equal(aqs_captions_to_seqs(&caps, tok, &opts, &seqs, &err), AQS_ERR_INVALID);
  aqs_captions_free(&caps);
  aqs_tokenizer_free(tok);
}

static void chunks_pass_the_calibset_checks(void **state) {
  (void)state;
  aqs_tokenizer *tok = synth_tokenizer();
  aqs_captions caps;
  numbered_captions(20, &caps);
  aqs_caption_seq_opts opts = {.samples = 20, .seed = 7, .template_spec = "chat"};
  aqs_caption_seqs seqs;
  aqs_err err = {0};
  assert_int_equal(aqs_captions_to_seqs(&caps, tok, &opts, &seqs, &err), AQS_OK);
  int64_t tokens = 0;
  for (int64_t first = 0; first < seqs.n_seqs; first += 8) {
    int32_t n = (int32_t)(seqs.n_seqs - first < 8 ? seqs.n_seqs - first : 8);
    aqs_calib_chunk chunk, back;
    assert_int_equal(aqs_caption_seqs_chunk(&seqs, first, n, &chunk, &err), AQS_OK);
    if (aqs_calib_chunk_check(&chunk, &err) != AQS_OK) fail_msg("%s", err.msg);
    assert_int_equal(chunk.first_seq, first);
    assert_int_equal(chunk.n_images, 0);
    assert_memory_equal(chunk.token_ids, seqs.token_ids + seqs.seq_offsets[first],
                        (size_t)chunk.n_tokens * sizeof(int32_t));
    uint8_t *bytes = NULL;
    size_t len = 0;
    assert_int_equal(aqs_calib_chunk_encode(&chunk, &bytes, &len, &err), AQS_OK);
    assert_int_equal(aqs_calib_chunk_decode(bytes, len, "chunk", &back, &err), AQS_OK);
    assert_int_equal(back.n_tokens, chunk.n_tokens);
    assert_memory_equal(back.seq_lens, chunk.seq_lens, (size_t)n * sizeof(int32_t));
    tokens += chunk.n_tokens;
    free(bytes);
    aqs_calib_chunk_free(&chunk);
    aqs_calib_chunk_free(&back);
  }
  assert_int_equal(tokens, seqs.n_tokens);
  aqs_calib_chunk chunk;
  assert_int_equal(aqs_caption_seqs_chunk(&seqs, 16, 8, &chunk, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "[16, 24) is outside the 20 sequences"));
  aqs_caption_seqs_free(&seqs);
  aqs_captions_free(&caps);
  aqs_tokenizer_free(tok);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(lines_crlf_bom_and_last_line),
      cmocka_unit_test(bad_lines_refused_with_their_numbers),
      cmocka_unit_test(skip_bad_skips_and_counts),
      cmocka_unit_test(read_file_and_missing_file),
      cmocka_unit_test(sampling_is_deterministic_and_prefix_stable),
      cmocka_unit_test(templates_and_max_length),
      cmocka_unit_test(chunks_pass_the_calibset_checks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
