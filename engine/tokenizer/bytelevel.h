/* engine/tokenizer/bytelevel.h: GPT-2's byte-level alphabet: each of the 256 byte values is shown
 * as one printable code point ('A' stays 'A', ' ' becomes 'Ġ' U+0120, '\n' becomes 'Ċ' U+010A),
 * so that BPE vocabularies are strings of printable characters. */
#ifndef AQS_TOKENIZER_BYTELEVEL_H
#define AQS_TOKENIZER_BYTELEVEL_H

#include <stddef.h>
#include <stdint.h>

#define TOK_BYTELEVEL_CP_END (0x100 + 68) /* code points of the alphabet are all below this */

typedef struct tok_bytelevel {
  int32_t byte_cp[256];                /* byte -> code point */
  int16_t cp_byte[TOK_BYTELEVEL_CP_END]; /* code point -> byte, -1 outside the alphabet */
} tok_bytelevel;

void tok_bytelevel_init(tok_bytelevel *bl);
/* Maps the byte-level spelling s[0..len) (valid UTF-8) back to bytes written at out (room for
 * len bytes). Returns the byte count, or -1 when a character of s is not in the alphabet. */
long tok_bytelevel_unmap(const tok_bytelevel *bl, const char *s, size_t len, char *out);

#endif
