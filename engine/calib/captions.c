/* engine/calib/captions.c: caption files -> validated captions -> sampled, templated, tokenized
 * sequences -> calib-set text chunks (captions.h). Validation collects every bad line so that one
 * error message can name them all. */
#include "engine/calib/captions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "engine/tokenizer/utf8.h"

#define LISTED_ISSUES_MAX 5 /* bad lines named in the error message */

const char *aqs_caption_problem_name(aqs_caption_problem p) {
  switch (p) {
  case AQS_CAPTION_INVALID_UTF8: return "invalid UTF-8";
  case AQS_CAPTION_EMPTY: return "empty";
  case AQS_CAPTION_TOO_LONG: return "too long";
  }
  return "?";
}

void aqs_captions_free(aqs_captions *caps) {
  if (!caps) return;
  for (int64_t i = 0; i < caps->n; i++) free(caps->items[i].text);
  free(caps->items);
  free(caps->issues);
  memset(caps, 0, sizeof *caps);
}

/* Appends one element of elem_size to *array (count *n, capacity *cap); 0 or -1. */
static int push(void **array, int64_t *n, int64_t *cap, size_t elem_size, const void *elem) {
  if (*n == *cap) {
    int64_t new_cap = *cap ? *cap * 2 : 256;
    void *grown = realloc(*array, (size_t)new_cap * elem_size);
    if (!grown) return -1;
    *array = grown;
    *cap = new_cap;
  }
  memcpy((char *)*array + (size_t)*n * elem_size, elem, elem_size);
  (*n)++;
  return 0;
}

static int only_white_space(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    int32_t cp;
    i += tok_utf8_next(p + i, len - i, &cp);
    if (!tok_is_white_space(cp)) return 0;
  }
  return 1;
}

/* Classifies one line (without its ending); 0 when it is a good caption. */
static aqs_caption_problem classify(const char *s, size_t len, size_t max_bytes, size_t *offset) {
  if (len > max_bytes) return AQS_CAPTION_TOO_LONG;
  const char *nul = memchr(s, '\0', len);
  if (!tok_utf8_valid(s, len, offset)) {
    if (nul && (size_t)(nul - s) < *offset) *offset = (size_t)(nul - s);
    return AQS_CAPTION_INVALID_UTF8;
  }
  if (nul) {
    *offset = (size_t)(nul - s);
    return AQS_CAPTION_INVALID_UTF8;
  }
  if (len == 0 || only_white_space(s, len)) return AQS_CAPTION_EMPTY;
  return 0;
}

static void describe_issue(const aqs_caption_issue *is, size_t max_bytes, char *buf, size_t size) {
  switch (is->problem) {
  case AQS_CAPTION_INVALID_UTF8:
    snprintf(buf, size, "invalid UTF-8 at byte %zu", is->byte_offset);
    break;
  case AQS_CAPTION_EMPTY:
    snprintf(buf, size, "empty line");
    break;
  case AQS_CAPTION_TOO_LONG:
    snprintf(buf, size, "line too long (%zu bytes, limit %zu)", is->line_bytes, max_bytes);
    break;
  }
}

/* The refusal listing the bad lines. */
static aqs_status refuse(const aqs_captions *caps, const char *source, size_t max_bytes,
                         aqs_err *err) {
  char msg[AQS_ERR_MSG_MAX] = "";
  size_t used = 0;
  for (int64_t i = 0; i < caps->n_issues && i < LISTED_ISSUES_MAX; i++) {
    char why[128];
    describe_issue(&caps->issues[i], max_bytes, why, sizeof why);
    int n = snprintf(msg + used, sizeof msg - used, "%s%.200s:%lld: %s", i ? "; " : "", source,
                     (long long)caps->issues[i].line, why);
    if (n < 0 || (size_t)n >= sizeof msg - used) break;
    used += (size_t)n;
  }
  return aqs_errf(err, AQS_ERR_INVALID, "%s (%lld bad line%s: %lld invalid UTF-8, %lld too long; --skip-bad "
                  "skips them)", msg, (long long)caps->n_issues, caps->n_issues == 1 ? "" : "s",
                  (long long)caps->n_invalid_utf8, (long long)caps->n_too_long);
}

aqs_status aqs_captions_parse(const char *data, size_t len, const char *source_name,
                              const aqs_caption_read_opts *opts, aqs_captions *out, aqs_err *err) {
  memset(out, 0, sizeof *out);
  const char *source = source_name ? source_name : "captions";
  size_t max_bytes = opts && opts->max_line_bytes ? opts->max_line_bytes
                                                  : AQS_CAPTION_DEFAULT_MAX_LINE_BYTES;
  int skip_bad = opts && opts->skip_bad;
  int64_t items_cap = 0, issues_cap = 0;
  size_t pos = 0;
  if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) pos = 3; /* BOM */
  while (pos < len) {
    const char *line = data + pos;
    const char *nl = memchr(line, '\n', len - pos);
    size_t line_len = nl ? (size_t)(nl - line) : len - pos;
    pos += line_len + (nl ? 1 : 0);
    if (line_len && line[line_len - 1] == '\r') line_len--;
    out->n_lines++;
    size_t offset = 0;
    aqs_caption_problem problem = classify(line, line_len, max_bytes, &offset);
    if (problem == AQS_CAPTION_EMPTY) { /* a blank line is not a caption: skipped, never an issue */
      out->n_empty++;
      continue;
    }
    if (problem) {
      aqs_caption_issue is = {out->n_lines, problem, offset, line_len};
      if (push((void **)&out->issues, &out->n_issues, &issues_cap, sizeof is, &is) != 0) goto nomem;
      out->n_invalid_utf8 += problem == AQS_CAPTION_INVALID_UTF8;
      out->n_too_long += problem == AQS_CAPTION_TOO_LONG;
      continue;
    }
    aqs_caption c = {out->n_lines, malloc(line_len + 1), line_len};
    if (!c.text) goto nomem;
    memcpy(c.text, line, line_len);
    c.text[line_len] = '\0';
    if (push((void **)&out->items, &out->n, &items_cap, sizeof c, &c) != 0) {
      free(c.text);
      goto nomem;
    }
  }
  if (out->n_issues && !skip_bad) {
    aqs_status st = refuse(out, source, max_bytes, err);
    aqs_captions_free(out);
    return st;
  }
  return AQS_OK;
nomem:
  aqs_captions_free(out);
  return aqs_errf(err, AQS_ERR_NOMEM, "%s: out of memory reading captions", source);
}

aqs_status aqs_captions_read(const char *path, const aqs_caption_read_opts *opts, aqs_captions *out,
                             aqs_err *err) {
  memset(out, 0, sizeof *out);
  char *data;
  size_t len;
  aqs_status st = aqs_file_read_input(path, AQS_INPUT_CAPTIONS, &data, &len, err);
  if (st) return st;
  st = aqs_captions_parse(data, len, path, opts, out, err);
  free(data);
  return st;
}

/* ---- templates ---- */

static const char chat_template[] = "<|im_start|>user\n{caption}<|im_end|>\n";
static const char chat_system_template[] =
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n{caption}<|im_end|>\n<|im_start|>assistant\n";
static const char placeholder[] = "{caption}";

aqs_status aqs_caption_template_resolve(const char *spec, const char **template_out, aqs_err *err) {
  if (!spec || strcmp(spec, "none") == 0) *template_out = placeholder;
  else if (strcmp(spec, "chat") == 0) *template_out = chat_template;
  else if (strcmp(spec, "chat-system") == 0) *template_out = chat_system_template;
  else {
    const char *first = strstr(spec, placeholder);
    if (!first || strstr(first + 1, placeholder))
      return aqs_errf(err, AQS_ERR_INVALID, "template '%.200s' is not none, chat or chat-system "
                      "and does not hold {caption} exactly once", spec);
    *template_out = spec;
  }
  return AQS_OK;
}

aqs_status aqs_caption_template_apply(const char *template_text, const char *caption,
                                      size_t caption_len, char **out, size_t *out_len, aqs_err *err) {
  const char *at = strstr(template_text, placeholder);
  if (!at) return aqs_errf(err, AQS_ERR_INVALID, "template has no {caption}");
  size_t before = (size_t)(at - template_text);
  const char *rest = at + strlen(placeholder);
  size_t after = strlen(rest);
  char *text = malloc(before + caption_len + after + 1);
  if (!text) return aqs_errf(err, AQS_ERR_NOMEM, "out of memory applying the template");
  memcpy(text, template_text, before);
  memcpy(text + before, caption, caption_len);
  memcpy(text + before + caption_len, rest, after + 1);
  *out = text;
  *out_len = before + caption_len + after;
  return AQS_OK;
}

/* ---- sequences ---- */

void aqs_caption_seqs_free(aqs_caption_seqs *seqs) {
  if (!seqs) return;
  free(seqs->seq_lens);
  free(seqs->seq_offsets);
  free(seqs->token_ids);
  free(seqs->source_line);
  memset(seqs, 0, sizeof *seqs);
}

aqs_status aqs_captions_to_seqs(const aqs_captions *caps, aqs_tokenizer *tok,
                                const aqs_caption_seq_opts *opts, aqs_caption_seqs *out,
                                aqs_err *err) {
  memset(out, 0, sizeof *out);
  const char *tmpl;
  aqs_status st = aqs_caption_template_resolve(opts->template_spec, &tmpl, err);
  if (st) return st;
  if (opts->samples < 0 || opts->samples > caps->n)
    return aqs_errf(err, AQS_ERR_INVALID, "asked for %lld samples; the caption file has %lld usable "
                    "captions", (long long)opts->samples, (long long)caps->n);
  if (opts->max_seq_len < 0)
    return aqs_errf(err, AQS_ERR_INVALID, "max sequence length %d is negative", opts->max_seq_len);
  int64_t n = opts->samples ? opts->samples : caps->n;
  int64_t *order = malloc(((size_t)n + 1) * sizeof *order);
  out->seq_lens = malloc(((size_t)n + 1) * sizeof *out->seq_lens);
  out->seq_offsets = calloc((size_t)n + 1, sizeof *out->seq_offsets);
  out->source_line = malloc(((size_t)n + 1) * sizeof *out->source_line);
  aqs_token_ids all = {0};
  if (!order || !out->seq_lens || !out->seq_offsets || !out->source_line) {
    st = aqs_errf(err, AQS_ERR_NOMEM, "out of memory for %lld sequences", (long long)n);
    goto done;
  }
  if ((st = aqs_calib_sample_order(caps->n, n, opts->seed, order, err))) goto done;
  for (int64_t s = 0; s < n; s++) {
    const aqs_caption *c = &caps->items[order[s]];
    char *text = NULL;
    size_t text_len = 0;
    if ((st = aqs_caption_template_apply(tmpl, c->text, c->len, &text, &text_len, err))) goto done;
    size_t before = all.len;
    st = aqs_tokenizer_encode(tok, text, text_len, &all, err);
    free(text);
    if (st) {
      aqs_err_prefix(err, "caption line %lld", (long long)c->line);
      goto done;
    }
    size_t seq_len = all.len - before;
    if (seq_len == 0) {
      st = aqs_errf(err, AQS_ERR_INVALID, "caption line %lld encodes to no tokens",
                    (long long)c->line);
      goto done;
    }
    if (opts->max_seq_len && seq_len > (size_t)opts->max_seq_len) {
      seq_len = (size_t)opts->max_seq_len;
      all.len = before + seq_len;
      out->n_truncated++;
    }
    out->seq_lens[s] = (int32_t)seq_len;
    out->seq_offsets[s + 1] = out->seq_offsets[s] + (int64_t)seq_len;
    out->source_line[s] = c->line;
    out->n_seqs = s + 1;
  }
  out->token_ids = all.ids;
  out->n_tokens = (int64_t)all.len;
  all.ids = NULL;
done:
  free(order);
  aqs_token_ids_free(&all);
  if (st) aqs_caption_seqs_free(out);
  return st;
}

aqs_status aqs_caption_seqs_chunk(const aqs_caption_seqs *seqs, int64_t first_seq, int32_t n_seqs,
                                  aqs_calib_chunk *chunk, aqs_err *err) {
  memset(chunk, 0, sizeof *chunk);
  if (first_seq < 0 || n_seqs < 1 || first_seq + n_seqs > seqs->n_seqs)
    return aqs_errf(err, AQS_ERR_INVALID, "chunk of sequences [%lld, %lld) is outside the %lld "
                    "sequences", (long long)first_seq, (long long)(first_seq + n_seqs),
                    (long long)seqs->n_seqs);
  int64_t start = seqs->seq_offsets[first_seq];
  int64_t n_tokens = seqs->seq_offsets[first_seq + n_seqs] - start;
  chunk->first_seq = first_seq;
  chunk->n_seqs = n_seqs;
  chunk->n_tokens = n_tokens;
  chunk->seq_lens = malloc((size_t)n_seqs * sizeof *chunk->seq_lens);
  chunk->seq_offsets = malloc(((size_t)n_seqs + 1) * sizeof *chunk->seq_offsets);
  chunk->token_ids = malloc(((size_t)n_tokens + 1) * sizeof *chunk->token_ids);
  chunk->image_patch_offsets = calloc(1, sizeof *chunk->image_patch_offsets);
  if (!chunk->seq_lens || !chunk->seq_offsets || !chunk->token_ids || !chunk->image_patch_offsets) {
    aqs_calib_chunk_free(chunk);
    return aqs_errf(err, AQS_ERR_NOMEM, "out of memory packing a chunk of %d sequences", n_seqs);
  }
  memcpy(chunk->seq_lens, seqs->seq_lens + first_seq, (size_t)n_seqs * sizeof *chunk->seq_lens);
  for (int32_t s = 0; s <= n_seqs; s++)
    chunk->seq_offsets[s] = seqs->seq_offsets[first_seq + s] - start;
  memcpy(chunk->token_ids, seqs->token_ids + start, (size_t)n_tokens * sizeof *chunk->token_ids);
  return AQS_OK;
}
