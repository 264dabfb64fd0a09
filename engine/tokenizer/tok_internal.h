/* engine/tokenizer/tok_internal.h: the aqs_tokenizer struct, shared by load.c (tokenizer.json ->
 * struct) and tokenizer.c (encode / decode). Private to the tokenizer module. */
#ifndef AQS_TOKENIZER_INTERNAL_H
#define AQS_TOKENIZER_INTERNAL_H

#include "engine/tokenizer/added.h"
#include "engine/tokenizer/bpe.h"
#include "engine/tokenizer/bytelevel.h"
#include "engine/tokenizer/pretok.h"
#include "engine/tokenizer/strmap.h"
#include "engine/tokenizer/tokenizer.h"

enum { TOK_ID_ADDED = 1, TOK_ID_SPECIAL = 2 };

struct aqs_tokenizer {
  tok_strmap vocab;          /* BPE vocabulary: byte-level spelling -> id */
  size_t vocab_size;         /* max id + 1 over vocab and added tokens */
  const char **id_token;     /* id -> spelling (vocab arena or added content); NULL if unused */
  uint8_t *id_flags;         /* TOK_ID_* per id */
  tok_added_token *added;    /* in file order */
  size_t added_count;
  tok_added_matcher added_raw;        /* normalized=false: matched before NFC */
  tok_added_matcher added_normalized; /* normalized=true: matched after NFC */
  int nfc;                   /* normalizer: NFC (else none) */
  tok_pretok pretok;
  tok_bytelevel bytelevel;
  tok_bpe bpe;
};

#endif
