/* engine/tokenizer/bytelevel.c: the byte <-> code point tables of bytelevel.h. Printable bytes
 * '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves; the other 68 bytes take U+0100,
 * U+0101, ... in increasing byte order (GPT-2's bytes_to_unicode). */
#include "engine/tokenizer/bytelevel.h"

#include "engine/tokenizer/utf8.h"

static int byte_is_printable(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

void tok_bytelevel_init(tok_bytelevel *bl) {
  for (int cp = 0; cp < TOK_BYTELEVEL_CP_END; cp++) bl->cp_byte[cp] = -1;
  int32_t next_extra = 0x100;
  for (int b = 0; b < 256; b++) {
    int32_t cp = byte_is_printable(b) ? b : next_extra++;
    bl->byte_cp[b] = cp;
    bl->cp_byte[cp] = (int16_t)b;
  }
}

long tok_bytelevel_unmap(const tok_bytelevel *bl, const char *s, size_t len, char *out) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  long n = 0;
  while (i < len) {
    int32_t cp;
    i += tok_utf8_next(p + i, len - i, &cp);
    if (cp >= TOK_BYTELEVEL_CP_END || bl->cp_byte[cp] < 0) return -1;
    out[n++] = (char)bl->cp_byte[cp];
  }
  return n;
}
