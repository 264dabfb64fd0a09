/* engine/tokenizer/utf8.h: UTF-8 helpers of the tokenizer module: strict validation (used by the
 * caption reader too), lossy decoding as Rust's String::from_utf8_lossy, Unicode predicates and
 * NFC normalization (utf8proc). */
#ifndef AQS_TOKENIZER_UTF8_H
#define AQS_TOKENIZER_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* 1 if s[0..len) is valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF),
 * else 0 and *bad_offset (may be NULL) gets the byte offset of the first invalid sequence. */
int tok_utf8_valid(const char *s, size_t len, size_t *bad_offset);

/* Decodes one code point of VALID UTF-8 at s (len > 0); returns its byte length. */
size_t tok_utf8_next(const unsigned char *s, size_t len, int32_t *cp);

/* Byte length of the valid UTF-8 sequence starting at s[0..len), or 0 if s starts with an
 * invalid or truncated sequence; for an invalid one, *invalid_len gets the length of its maximal
 * invalid prefix (the bytes one U+FFFD replaces, as Rust and the Unicode standard do). */
size_t tok_utf8_check1(const unsigned char *s, size_t len, size_t *invalid_len);

/* Writes the UTF-8 form of cp (<= U+10FFFF) to out (4 bytes room); returns its length. */
size_t tok_utf8_encode(int32_t cp, char *out);

/* Unicode White_Space property (Rust char::is_whitespace, Oniguruma \s). */
int tok_is_white_space(int32_t cp);
/* Letter or number general category (Rust char::is_alphanumeric, approximately). */
int tok_is_alnum(int32_t cp);

/* NFC of valid UTF-8 s[0..len). Returns 0 with *out = NULL when s is already NFC by a quick
 * check (all code points below U+0300), 0 with *out malloc'd (length *out_len) otherwise,
 * -1 on failure (out of memory). */
int tok_nfc(const char *s, size_t len, char **out, size_t *out_len);

#endif
