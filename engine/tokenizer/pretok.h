/* engine/tokenizer/pretok.h: pre-tokenization: the chain of Split (regex from the tokenizer.json,
 * compiled with PCRE2 in UTF + UCP mode with JIT) and ByteLevel steps that cuts normalized text
 * into the pieces BPE encodes one by one. Private to the tokenizer module. */
#ifndef AQS_TOKENIZER_PRETOK_H
#define AQS_TOKENIZER_PRETOK_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>

#include "common/err.h"

#define TOK_PRETOK_MAX_STEPS 8

typedef enum tok_split_behavior { TOK_SPLIT_ISOLATED, TOK_SPLIT_REMOVED } tok_split_behavior;

typedef struct tok_pretok_step {
  pcre2_code *regex;          /* NULL: no split at this step */
  tok_split_behavior behavior;
  int add_prefix_space;       /* ByteLevel: prepend ' ' to a piece that does not start with one */
} tok_pretok_step;

typedef struct tok_pretok {
  tok_pretok_step steps[TOK_PRETOK_MAX_STEPS];
  int step_count;
  pcre2_match_data *match_data;
  pcre2_match_context *match_context;
  pcre2_jit_stack *jit_stack;
} tok_pretok;

/* The regex GPT-2's ByteLevel pre-tokenizer uses when use_regex is true. */
extern const char tok_gpt2_pattern[];

/* Translates a pattern written for Oniguruma (what HF `tokenizers` compiles) to PCRE2 syntax where
 * the two differ for us: \s and \S become explicit Unicode White_Space classes (PCRE2 also counts
 * U+180E as \s; Oniguruma does not). Returns a malloc'd string, or NULL with *why set. */
char *tok_translate_pattern(const char *pattern, size_t len, const char **why);

/* Adds a step; pattern NULL means none. literal: the pattern is a plain string. Errors name
 * where (the JSON path given) and PCRE2's message with its offset. */
aqs_status tok_pretok_add_step(tok_pretok *pt, const char *pattern, size_t pattern_len, int literal,
                               tok_split_behavior behavior, int add_prefix_space,
                               const char *where, aqs_err *err);

/* Receives each final piece. Returns 0 to go on, non-zero to stop (returned by tok_pretok_run). */
typedef int (*tok_piece_fn)(void *ctx, const char *piece, size_t len);

/* Cuts s[0..len) (valid UTF-8) and calls emit for each non-empty piece in order. Returns 0, the
 * callback's non-zero value, or -1 (out of memory) / -2 (regex match error). */
int tok_pretok_run(tok_pretok *pt, const char *s, size_t len, tok_piece_fn emit, void *ctx);

void tok_pretok_free(tok_pretok *pt);

#endif
