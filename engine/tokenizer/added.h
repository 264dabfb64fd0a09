/* engine/tokenizer/added.h: added tokens ("<|im_start|>", "<|image_pad|>", ...) and their
 * leftmost-longest matcher, with HF's lstrip / rstrip / single_word rules. Private to the
 * tokenizer module. */
#ifndef AQS_TOKENIZER_ADDED_H
#define AQS_TOKENIZER_ADDED_H

#include <stddef.h>
#include <stdint.h>

typedef struct tok_added_token {
  char *content; /* malloc'd, NUL-terminated */
  size_t len;
  int32_t id;
  unsigned special : 1, lstrip : 1, rstrip : 1, single_word : 1, normalized : 1;
} tok_added_token;

/* One set of tokens to match (those matched on raw text, or those matched after normalization). */
typedef struct tok_added_matcher {
  const tok_added_token **tokens; /* sorted by first byte, then longest first */
  size_t count;
  uint32_t first_index[257]; /* tokens with first byte b are [first_index[b], first_index[b+1]) */
} tok_added_matcher;

/* Builds a matcher over the tokens whose normalized flag equals want_normalized; 0 or -1 (out of
 * memory). The tokens array must outlive the matcher. */
int tok_added_matcher_build(tok_added_matcher *m, const tok_added_token *tokens, size_t count,
                            int want_normalized);

/* One piece of text after added-token matching: token == NULL for plain text. */
typedef struct tok_added_span {
  size_t start, end;
  const tok_added_token *token;
} tok_added_span;

/* Cuts s[0..len) into plain and added-token spans as HF AddedVocabulary::find_matches does:
 * leftmost-longest matches, a single_word token only between non-word characters, lstrip / rstrip
 * widening the token's span over neighbouring white space. Calls emit in order; returns 0, the
 * callback's non-zero value, or -1. */
typedef int (*tok_span_fn)(void *ctx, const tok_added_span *span);
int tok_added_split(const tok_added_matcher *m, const char *s, size_t len, tok_span_fn emit,
                    void *ctx);

void tok_added_matcher_free(tok_added_matcher *m);

#endif
