/* engine/tokenizer/tokenizer.c: encode and decode (tokenizer.h). Encode = added tokens split out
 * of the raw text, NFC of each plain span, added tokens marked normalized split out of that,
 * pre-tokenization, BPE of each piece; decode = byte-level unmapping + lossy UTF-8. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer/tok_internal.h"
#include "engine/tokenizer/utf8.h"

void aqs_token_ids_free(aqs_token_ids *ids) {
  if (!ids) return;
  free(ids->ids);
  ids->ids = NULL;
  ids->len = ids->cap = 0;
}

void aqs_tokenizer_free(aqs_tokenizer *tok) {
  if (!tok) return;
  tok_strmap_free(&tok->vocab);
  free(tok->id_token);
  free(tok->id_flags);
  for (size_t i = 0; i < tok->added_count; i++) free(tok->added[i].content);
  free(tok->added);
  tok_added_matcher_free(&tok->added_raw);
  tok_added_matcher_free(&tok->added_normalized);
  tok_pretok_free(&tok->pretok);
  tok_bpe_free(&tok->bpe);
  free(tok);
}

/* ---- encode ---- */

typedef struct encode_ctx {
  aqs_tokenizer *tok;
  const char *text; /* the text the current spans index into */
  aqs_token_ids *out;
  int pretok_error; /* -1 out of memory, -2 regex error */
} encode_ctx;

static int emit_piece(void *ctx, const char *piece, size_t len) {
  encode_ctx *ec = ctx;
  return tok_bpe_encode_word(&ec->tok->bpe, piece, len, ec->out) == 0 ? 0 : -1;
}

static int encode_plain(encode_ctx *ec, const char *s, size_t len) {
  int r = tok_pretok_run(&ec->tok->pretok, s, len, emit_piece, ec);
  if (r != 0) ec->pretok_error = r;
  return r;
}

static int emit_added_id(encode_ctx *ec, const tok_added_token *t) {
  return tok_ids_append(ec->out, &t->id, 1);
}

/* Spans of the normalized text of one raw plain span. */
static int on_normalized_span(void *ctx, const tok_added_span *span) {
  encode_ctx *ec = ctx;
  if (span->token) return emit_added_id(ec, span->token);
  return encode_plain(ec, ec->text + span->start, span->end - span->start);
}

/* Spans of the raw text. */
static int on_raw_span(void *ctx, const tok_added_span *span) {
  encode_ctx *ec = ctx;
  if (span->token) return emit_added_id(ec, span->token);
  const char *s = ec->text + span->start;
  size_t len = span->end - span->start;
  char *normalized = NULL;
  if (ec->tok->nfc && tok_nfc(s, len, &normalized, &len) != 0) return -1;
  if (normalized) s = normalized;
  int r;
  if (ec->tok->added_normalized.count) {
    encode_ctx inner = *ec;
    inner.text = s;
    r = tok_added_split(&ec->tok->added_normalized, s, len, on_normalized_span, &inner);
    ec->pretok_error = inner.pretok_error;
  } else {
    r = encode_plain(ec, s, len);
  }
  free(normalized);
  return r;
}

aqs_status aqs_tokenizer_encode(aqs_tokenizer *tok, const char *text, size_t len, aqs_token_ids *out,
                                aqs_err *err) {
  size_t bad_offset;
  if (!tok_utf8_valid(text, len, &bad_offset))
    return aqs_errf(err, AQS_ERR_INVALID, "text is not valid UTF-8 at byte %zu", bad_offset);
  size_t len_before = out->len;
  encode_ctx ec = {tok, text, out, 0};
  int r = tok_added_split(&tok->added_raw, text, len, on_raw_span, &ec);
  if (r == 0) return AQS_OK;
  out->len = len_before;
  if (ec.pretok_error == -2)
    return aqs_errf(err, AQS_ERR_INTERNAL, "pre-tokenizer regex failed to match (text of %zu "
                    "bytes)", len);
  return aqs_errf(err, AQS_ERR_NOMEM, "out of memory encoding %zu bytes", len);
}

/* ---- decode ---- */

typedef struct byte_buf {
  char *data;
  size_t len, cap;
} byte_buf;

static int buf_reserve(byte_buf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) cap *= 2;
  char *grown = realloc(b->data, cap);
  if (!grown) return -1;
  b->data = grown;
  b->cap = cap;
  return 0;
}

/* Bytes of one token: its spelling mapped back through the byte-level alphabet, or the spelling
 * as is when a character is outside the alphabet (HF's ByteLevel decoder does the same). */
static int append_token_bytes(const aqs_tokenizer *tok, const char *spelling, byte_buf *b) {
  size_t n = strlen(spelling);
  if (buf_reserve(b, n) != 0) return -1;
  long mapped = tok_bytelevel_unmap(&tok->bytelevel, spelling, n, b->data + b->len);
  if (mapped >= 0) {
    b->len += (size_t)mapped;
  } else {
    memcpy(b->data + b->len, spelling, n);
    b->len += n;
  }
  return 0;
}

/* Replaces each maximal invalid UTF-8 part of raw by U+FFFD (Rust's String::from_utf8_lossy). */
static int lossy_utf8(const byte_buf *raw, byte_buf *out) {
  const unsigned char *p = (const unsigned char *)raw->data;
  size_t i = 0;
  if (buf_reserve(out, raw->len) != 0) return -1;
  while (i < raw->len) {
    size_t invalid_len = 0;
    size_t n = p[i] < 0x80 ? 1 : tok_utf8_check1(p + i, raw->len - i, &invalid_len);
    if (n) {
      if (buf_reserve(out, n) != 0) return -1;
      memcpy(out->data + out->len, p + i, n);
      out->len += n;
      i += n;
    } else {
      if (buf_reserve(out, 3) != 0) return -1;
      memcpy(out->data + out->len, "\xEF\xBF\xBD", 3);
      out->len += 3;
      i += invalid_len;
    }
  }
  return 0;
}

aqs_status aqs_tokenizer_decode(const aqs_tokenizer *tok, const int32_t *ids, size_t n, int flags,
                                char **text_out, size_t *len_out, aqs_err *err) {
  *text_out = NULL;
  byte_buf raw = {0}, text = {0};
  for (size_t i = 0; i < n; i++) {
    int32_t id = ids[i];
    if (id < 0 || (size_t)id >= tok->vocab_size || !tok->id_token[id]) {
      free(raw.data);
      return aqs_errf(err, AQS_ERR_INVALID, "token id %d (index %zu) is not in the vocabulary "
                      "(size %zu)", id, i, tok->vocab_size);
    }
    if ((flags & AQS_DECODE_SKIP_SPECIAL) && (tok->id_flags[id] & TOK_ID_SPECIAL)) continue;
    if (append_token_bytes(tok, tok->id_token[id], &raw) != 0) goto nomem;
  }
  if (lossy_utf8(&raw, &text) != 0 || buf_reserve(&text, 0) != 0) goto nomem;
  free(raw.data);
  text.data[text.len] = '\0';
  *text_out = text.data;
  if (len_out) *len_out = text.len;
  return AQS_OK;
nomem:
  free(raw.data);
  free(text.data);
  return aqs_errf(err, AQS_ERR_NOMEM, "out of memory decoding %zu ids", n);
}

/* ---- lookups ---- */

int32_t aqs_tokenizer_token_to_id(const aqs_tokenizer *tok, const char *token) {
  for (size_t i = 0; i < tok->added_count; i++)
    if (strcmp(tok->added[i].content, token) == 0) return tok->added[i].id;
  return tok_strmap_get(&tok->vocab, token, strlen(token));
}

const char *aqs_tokenizer_id_to_token(const aqs_tokenizer *tok, int32_t id) {
  if (id < 0 || (size_t)id >= tok->vocab_size) return NULL;
  return tok->id_token[id];
}

size_t aqs_tokenizer_vocab_size(const aqs_tokenizer *tok) { return tok->vocab_size; }

int aqs_tokenizer_is_special(const aqs_tokenizer *tok, int32_t id) {
  if (id < 0 || (size_t)id >= tok->vocab_size) return 0;
  return (tok->id_flags[id] & TOK_ID_SPECIAL) != 0;
}
