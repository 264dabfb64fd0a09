/* engine/tokenizer/pretok.c: Split / ByteLevel pre-tokenization (pretok.h). Each step cuts every
 * piece of the step before it: Isolated keeps both the regex matches and the text between them
 * as pieces, Removed keeps only the text between them. */
#include "engine/tokenizer/pretok.h"

#include <stdlib.h>
#include <string.h>

const char tok_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Unicode White_Space, the set Oniguruma's \s matches in Unicode mode. */
static const char white_space_ranges[] =
    "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}"
    "\\x{205f}\\x{3000}";

char *tok_translate_pattern(const char *pattern, size_t len, const char **why) {
  /* worst case: every character is an escape that expands to a whole class */
  char *out = malloc(len * (sizeof white_space_ranges + 4) + 1);
  size_t n = 0;
  if (!out) {
    *why = "out of memory";
    return NULL;
  }
  int in_class = 0;
  for (size_t i = 0; i < len; i++) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < len) {
      char e = pattern[++i];
      if (e == 's' || e == 'S') {
        if (e == 'S' && in_class) {
          free(out);
          *why = "\\S inside a character class is not supported";
          return NULL;
        }
        if (!in_class) out[n++] = '[';
        if (e == 'S') out[n++] = '^';
        memcpy(out + n, white_space_ranges, sizeof white_space_ranges - 1);
        n += sizeof white_space_ranges - 1;
        if (!in_class) out[n++] = ']';
      } else {
        out[n++] = c;
        out[n++] = e;
      }
      continue;
    }
    out[n++] = c;
    if (!in_class && c == '[') {
      in_class = 1;
      /* a ']' right after '[' or '[^' is a literal member */
      if (i + 1 < len && pattern[i + 1] == '^') out[n++] = pattern[++i];
      if (i + 1 < len && pattern[i + 1] == ']') out[n++] = pattern[++i];
    } else if (in_class && c == '[' && i + 1 < len && pattern[i + 1] == ':') {
      const char *end = memchr(pattern + i, ']', len - i); /* POSIX [:name:] inside a class */
      if (end) {
        size_t k = (size_t)(end - (pattern + i));
        memcpy(out + n, pattern + i + 1, k);
        n += k;
        i += k;
      }
    } else if (in_class && c == ']') {
      in_class = 0;
    }
  }
  out[n] = '\0';
  return out;
}

aqs_status tok_pretok_add_step(tok_pretok *pt, const char *pattern, size_t pattern_len, int literal,
                               tok_split_behavior behavior, int add_prefix_space,
                               const char *where, aqs_err *err) {
  if (pt->step_count == TOK_PRETOK_MAX_STEPS)
    return aqs_errf(err, AQS_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizer steps", where,
                    TOK_PRETOK_MAX_STEPS);
  tok_pretok_step *step = &pt->steps[pt->step_count];
  memset(step, 0, sizeof *step);
  step->behavior = behavior;
  step->add_prefix_space = add_prefix_space;
  if (pattern) {
    char *translated = NULL;
    if (!literal) {
      const char *why = NULL;
      translated = tok_translate_pattern(pattern, pattern_len, &why);
      if (!translated)
        return aqs_errf(err, AQS_ERR_UNSUPPORTED, "%s: pattern: %s", where, why);
    }
    int code;
    PCRE2_SIZE offset;
    /* PCRE2_LITERAL admits no UCP (nothing to classify in a literal anyway) */
    uint32_t options = PCRE2_UTF | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    step->regex = pcre2_compile((PCRE2_SPTR)(literal ? pattern : translated),
                                literal ? pattern_len : PCRE2_ZERO_TERMINATED, options, &code,
                                &offset, NULL);
    free(translated);
    if (!step->regex) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(code, msg, sizeof msg);
      return aqs_errf(err, AQS_ERR_INVALID, "%s: regex does not compile at offset %zu: %s", where,
                      (size_t)offset, (const char *)msg);
    }
    pcre2_jit_compile(step->regex, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    if (!pt->match_data) {
      pt->match_data = pcre2_match_data_create(1, NULL);
      pt->match_context = pcre2_match_context_create(NULL);
      pt->jit_stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
      if (!pt->match_data || !pt->match_context || !pt->jit_stack) {
        pcre2_code_free(step->regex);
        step->regex = NULL;
        return aqs_errf(err, AQS_ERR_NOMEM, "%s: out of memory for the regex matcher", where);
      }
      pcre2_jit_stack_assign(pt->match_context, NULL, pt->jit_stack);
    }
  }
  pt->step_count++;
  return AQS_OK;
}

static int run_step(tok_pretok *pt, int step_index, const char *s, size_t len, tok_piece_fn emit,
                    void *ctx);

/* Regex cut of one piece at one step; hands every kept part to the next step. */
static int split_piece(tok_pretok *pt, int step_index, const char *s, size_t len, tok_piece_fn emit,
                       void *ctx) {
  const tok_pretok_step *step = &pt->steps[step_index];
  size_t start = 0, last_end = 0;
  while (start < len) {
    int rc = pcre2_match(step->regex, (PCRE2_SPTR)s, len, start, PCRE2_NO_UTF_CHECK,
                         pt->match_data, pt->match_context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) return rc == PCRE2_ERROR_NOMEMORY ? -1 : -2;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(pt->match_data);
    size_t match_start = ov[0], match_end = ov[1];
    if (match_end == match_start) { /* empty match: no piece; step over one character */
      start = match_start + 1;
      while (start < len && ((unsigned char)s[start] & 0xC0) == 0x80) start++;
      continue;
    }
    int r;
    if (match_start > last_end &&
        (r = run_step(pt, step_index + 1, s + last_end, match_start - last_end, emit, ctx)) != 0)
      return r;
    if (step->behavior == TOK_SPLIT_ISOLATED &&
        (r = run_step(pt, step_index + 1, s + match_start, match_end - match_start, emit, ctx)) != 0)
      return r;
    last_end = start = match_end;
  }
  if (last_end < len) return run_step(pt, step_index + 1, s + last_end, len - last_end, emit, ctx);
  return 0;
}

static int run_step(tok_pretok *pt, int step_index, const char *s, size_t len, tok_piece_fn emit,
                    void *ctx) {
  if (len == 0) return 0;
  if (step_index == pt->step_count) return emit(ctx, s, len);
  const tok_pretok_step *step = &pt->steps[step_index];
  if (step->add_prefix_space && s[0] != ' ') {
    char *spaced = malloc(len + 1);
    if (!spaced) return -1;
    spaced[0] = ' ';
    memcpy(spaced + 1, s, len);
    int r = step->regex ? split_piece(pt, step_index, spaced, len + 1, emit, ctx)
                        : run_step(pt, step_index + 1, spaced, len + 1, emit, ctx);
    free(spaced);
    return r;
  }
  if (!step->regex) return run_step(pt, step_index + 1, s, len, emit, ctx);
  return split_piece(pt, step_index, s, len, emit, ctx);
}

int tok_pretok_run(tok_pretok *pt, const char *s, size_t len, tok_piece_fn emit, void *ctx) {
  return run_step(pt, 0, s, len, emit, ctx);
}

void tok_pretok_free(tok_pretok *pt) {
  for (int i = 0; i < pt->step_count; i++) pcre2_code_free(pt->steps[i].regex);
  pcre2_match_data_free(pt->match_data);
  pcre2_match_context_free(pt->match_context);
  pcre2_jit_stack_free(pt->jit_stack);
  memset(pt, 0, sizeof *pt);
}
