/* engine/tokenizer/bpe.h: byte-level BPE model: merge table (pair of ids -> rank, merged id),
 * the merge loop of one pre-token (lowest rank first, leftmost on ties, as HF `tokenizers`) and a
 * cache of pre-token -> ids. Private to the tokenizer module. */
#ifndef AQS_TOKENIZER_BPE_H
#define AQS_TOKENIZER_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/tokenizer/bytelevel.h"
#include "engine/tokenizer/strmap.h"
#include "engine/tokenizer/tokenizer.h"

typedef struct tok_merge_slot {
  uint64_t pair; /* left id << 32 | right id; TOK_MERGE_EMPTY when free */
  uint32_t rank;
  int32_t merged_id;
} tok_merge_slot;

typedef struct tok_cache_slot {
  uint64_t hash; /* 0 = empty */
  uint32_t key_offset, key_len;
  uint32_t ids_offset, ids_len;
} tok_cache_slot;

typedef struct tok_symbol {
  int32_t id;
  int32_t prev, next; /* indices in the word, -1 at the ends */
  int32_t byte_len;   /* 0 once merged into its left neighbour */
} tok_symbol;

typedef struct tok_bpe {
  tok_merge_slot *merges;
  size_t merge_slot_count; /* power of two */
  size_t merge_count;
  int32_t byte_id[256]; /* id of the one-byte token of each byte, -1 if the vocab lacks it */
  int32_t unk_id;       /* -1: bytes without a token are dropped, as HF does without unk_token */
  int fuse_unk;
  int ignore_merges;            /* a pre-token that is a whole vocab entry is emitted as is */
  const tok_strmap *vocab;      /* borrowed, for ignore_merges */
  const tok_bytelevel *bytelevel; /* borrowed */
  /* cache of pre-token bytes -> ids; cleared when half full */
  tok_cache_slot *cache;
  size_t cache_slot_count, cache_used;
  char *cache_keys;
  size_t cache_keys_len, cache_keys_cap;
  int32_t *cache_ids;
  size_t cache_ids_len, cache_ids_cap;
  /* scratch of one merge run */
  tok_symbol *symbols;
  size_t symbols_cap;
  uint64_t *heap; /* rank << 32 | left symbol index, min-heap */
  size_t heap_len, heap_cap;
  char *spelling; /* byte-level spelling for ignore_merges */
  size_t spelling_cap;
} tok_bpe;

/* Both return 0, or -1 when out of memory. */
int tok_bpe_init(tok_bpe *bpe, size_t merge_capacity_hint);
/* Adds merge (left, right) -> merged_id at rank; a repeated pair keeps the last rank (as HF). */
int tok_bpe_add_merge(tok_bpe *bpe, int32_t left, int32_t right, uint32_t rank, int32_t merged_id);
/* Appends the ids of one pre-token (raw bytes, before byte-level mapping) to out. */
int tok_bpe_encode_word(tok_bpe *bpe, const char *bytes, size_t len, aqs_token_ids *out);
void tok_bpe_free(tok_bpe *bpe);

/* Appends n ids to out; 0 or -1 (out of memory). Shared by the tokenizer files. */
int tok_ids_append(aqs_token_ids *out, const int32_t *ids, size_t n);

#endif
