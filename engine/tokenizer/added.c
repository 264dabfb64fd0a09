/* engine/tokenizer/added.c: added-token matching (added.h). Few tokens (26 for Qwen), so a
 * first-byte index and a longest-first scan replace Aho-Corasick with the same leftmost-longest
 * result. */
#include "engine/tokenizer/added.h"

#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer/utf8.h"

static int by_first_byte_then_longest(const void *a, const void *b) {
  const tok_added_token *x = *(const tok_added_token *const *)a;
  const tok_added_token *y = *(const tok_added_token *const *)b;
  unsigned char fx = (unsigned char)x->content[0], fy = (unsigned char)y->content[0];
  if (fx != fy) return fx < fy ? -1 : 1;
  if (x->len != y->len) return x->len > y->len ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

int tok_added_matcher_build(tok_added_matcher *m, const tok_added_token *tokens, size_t count,
                            int want_normalized) {
  memset(m, 0, sizeof *m);
  m->tokens = malloc((count ? count : 1) * sizeof *m->tokens);
  if (!m->tokens) return -1;
  for (size_t i = 0; i < count; i++)
    if (tokens[i].len > 0 && (int)tokens[i].normalized == want_normalized)
      m->tokens[m->count++] = &tokens[i];
  qsort(m->tokens, m->count, sizeof *m->tokens, by_first_byte_then_longest);
  size_t k = 0;
  for (int b = 0; b <= 256; b++) {
    while (b < 256 && k < m->count && (unsigned char)m->tokens[k]->content[0] < b) k++;
    m->first_index[b] = (uint32_t)(b == 256 ? m->count : k);
  }
  return 0;
}

/* Longest token matching at s[pos..len), or NULL. */
static const tok_added_token *longest_at(const tok_added_matcher *m, const char *s, size_t len,
                                         size_t pos) {
  unsigned char b = (unsigned char)s[pos];
  for (uint32_t i = m->first_index[b]; i < m->first_index[b + 1]; i++) {
    const tok_added_token *t = m->tokens[i];
    if (t->len <= len - pos && memcmp(s + pos, t->content, t->len) == 0) return t;
  }
  return NULL;
}

/* Code point ending at s[end) (valid UTF-8, end > 0). */
static int32_t cp_before(const char *s, size_t end, size_t *cp_start) {
  size_t i = end - 1;
  while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
  int32_t cp;
  tok_utf8_next((const unsigned char *)s + i, end - i, &cp);
  if (cp_start) *cp_start = i;
  return cp;
}

static int is_word_cp(int32_t cp) { return cp == '_' || tok_is_alnum(cp); }

int tok_added_split(const tok_added_matcher *m, const char *s, size_t len, tok_span_fn emit,
                    void *ctx) {
  size_t plain_start = 0, pos = 0;
  while (pos < len && m->count) {
    unsigned char b = (unsigned char)s[pos];
    const tok_added_token *t =
        m->first_index[b] < m->first_index[b + 1] ? longest_at(m, s, len, pos) : NULL;
    if (!t) {
      pos++;
      continue;
    }
    size_t start = pos, stop = pos + t->len;
    pos = stop; /* the matcher goes on after the match itself, as the Aho-Corasick iterator */
    if (start < plain_start) continue; /* swallowed by the previous token's rstrip */
    if (t->single_word) {
      int32_t cp;
      int word_before = start > 0 && is_word_cp(cp_before(s, start, NULL));
      int word_after = stop < len &&
                       (tok_utf8_next((const unsigned char *)s + stop, len - stop, &cp),
                        is_word_cp(cp));
      if (word_before || word_after) continue;
    }
    if (t->lstrip) {
      size_t cp_start;
      while (start > plain_start && tok_is_white_space(cp_before(s, start, &cp_start)))
        start = cp_start;
    }
    if (t->rstrip) {
      int32_t cp;
      size_t n;
      while (stop < len && (n = tok_utf8_next((const unsigned char *)s + stop, len - stop, &cp)) &&
             tok_is_white_space(cp))
        stop += n;
    }
    int r;
    if (start > plain_start) {
      tok_added_span plain = {plain_start, start, NULL};
      if ((r = emit(ctx, &plain)) != 0) return r;
    }
    tok_added_span added = {start, stop, t};
    if ((r = emit(ctx, &added)) != 0) return r;
    plain_start = stop;
  }
  if (plain_start < len) {
    tok_added_span plain = {plain_start, len, NULL};
    return emit(ctx, &plain);
  }
  return 0;
}

void tok_added_matcher_free(tok_added_matcher *m) {
  free(m->tokens);
  memset(m, 0, sizeof *m);
}

