/* engine/tokenizer/bpe.c: the BPE merge loop (bpe.h). A word starts as one symbol per byte; a
 * min-heap of (rank, position) picks the lowest-ranked adjacent pair, leftmost on ties, exactly
 * the order of HF `tokenizers` Word::merge_all; stale heap entries are skipped when the pair at
 * their position no longer has their rank. Results of short words are cached. */
#include "engine/tokenizer/bpe.h"

#include <stdlib.h>
#include <string.h>

#define TOK_MERGE_EMPTY UINT64_MAX
#define TOK_CACHE_SLOTS 65536      /* power of two; cleared when half full */
#define TOK_CACHE_MAX_WORD 256     /* longer pre-tokens are not cached */

int tok_ids_append(aqs_token_ids *out, const int32_t *ids, size_t n) {
  if (n == 0) return 0; /* ids may be NULL then (an empty cached result) */
  if (out->len + n > out->cap) {
    size_t cap = out->cap ? out->cap : 64;
    while (cap < out->len + n) cap *= 2;
    int32_t *grown = realloc(out->ids, cap * sizeof *grown);
    if (!grown) return -1;
    out->ids = grown;
    out->cap = cap;
  }
  memcpy(out->ids + out->len, ids, n * sizeof *ids);
  out->len += n;
  return 0;
}

static uint64_t pair_hash(uint64_t pair) {
  pair ^= pair >> 33;
  pair *= 0xff51afd7ed558ccdull;
  pair ^= pair >> 33;
  return pair;
}

int tok_bpe_init(tok_bpe *bpe, size_t merge_capacity_hint) {
  memset(bpe, 0, sizeof *bpe);
  size_t slots = 1024;
  while (slots < merge_capacity_hint * 2) slots *= 2;
  bpe->merges = malloc(slots * sizeof *bpe->merges);
  bpe->cache = calloc(TOK_CACHE_SLOTS, sizeof *bpe->cache);
  if (!bpe->merges || !bpe->cache) return -1;
  for (size_t i = 0; i < slots; i++) bpe->merges[i].pair = TOK_MERGE_EMPTY;
  bpe->merge_slot_count = slots;
  bpe->cache_slot_count = TOK_CACHE_SLOTS;
  bpe->unk_id = -1;
  for (int b = 0; b < 256; b++) bpe->byte_id[b] = -1;
  return 0;
}

static int grow_merges(tok_bpe *bpe) {
  size_t count = bpe->merge_slot_count * 2;
  tok_merge_slot *slots = malloc(count * sizeof *slots);
  if (!slots) return -1;
  for (size_t i = 0; i < count; i++) slots[i].pair = TOK_MERGE_EMPTY;
  for (size_t i = 0; i < bpe->merge_slot_count; i++) {
    if (bpe->merges[i].pair == TOK_MERGE_EMPTY) continue;
    size_t j = pair_hash(bpe->merges[i].pair) & (count - 1);
    while (slots[j].pair != TOK_MERGE_EMPTY) j = (j + 1) & (count - 1);
    slots[j] = bpe->merges[i];
  }
  free(bpe->merges);
  bpe->merges = slots;
  bpe->merge_slot_count = count;
  return 0;
}

int tok_bpe_add_merge(tok_bpe *bpe, int32_t left, int32_t right, uint32_t rank, int32_t merged_id) {
  if ((bpe->merge_count + 1) * 2 > bpe->merge_slot_count && grow_merges(bpe) != 0) return -1;
  uint64_t pair = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
  size_t j = pair_hash(pair) & (bpe->merge_slot_count - 1);
  while (bpe->merges[j].pair != TOK_MERGE_EMPTY && bpe->merges[j].pair != pair)
    j = (j + 1) & (bpe->merge_slot_count - 1);
  if (bpe->merges[j].pair == TOK_MERGE_EMPTY) bpe->merge_count++;
  bpe->merges[j].pair = pair;
  bpe->merges[j].rank = rank;
  bpe->merges[j].merged_id = merged_id;
  return 0;
}

static const tok_merge_slot *find_merge(const tok_bpe *bpe, int32_t left, int32_t right) {
  uint64_t pair = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
  size_t j = pair_hash(pair) & (bpe->merge_slot_count - 1);
  for (;;) {
    const tok_merge_slot *s = &bpe->merges[j];
    if (s->pair == pair) return s;
    if (s->pair == TOK_MERGE_EMPTY) return NULL;
    j = (j + 1) & (bpe->merge_slot_count - 1);
  }
}

/* ---- min-heap of rank << 32 | position ---- */

static void heap_push(tok_bpe *bpe, uint64_t v) {
  size_t i = bpe->heap_len++;
  uint64_t *h = bpe->heap;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (h[parent] <= v) break;
    h[i] = h[parent];
    i = parent;
  }
  h[i] = v;
}

static uint64_t heap_pop(tok_bpe *bpe) {
  uint64_t *h = bpe->heap;
  uint64_t top = h[0];
  uint64_t last = h[--bpe->heap_len];
  size_t n = bpe->heap_len, i = 0;
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && h[child + 1] < h[child]) child++;
    if (h[child] >= last) break;
    h[i] = h[child];
    i = child;
  }
  if (n) h[i] = last;
  return top;
}

static void push_pair_if_mergeable(tok_bpe *bpe, int32_t left_pos) {
  const tok_symbol *sym = bpe->symbols;
  int32_t right_pos = sym[left_pos].next;
  if (right_pos < 0) return;
  const tok_merge_slot *m = find_merge(bpe, sym[left_pos].id, sym[right_pos].id);
  if (m) heap_push(bpe, (uint64_t)m->rank << 32 | (uint32_t)left_pos);
}

/* Builds the initial symbols of bytes[0..len); returns their count or -1 (out of memory). */
static long init_symbols(tok_bpe *bpe, const unsigned char *bytes, size_t len) {
  if (len > bpe->symbols_cap) {
    size_t cap = len < 64 ? 64 : len;
    tok_symbol *symbols = realloc(bpe->symbols, cap * sizeof *symbols);
    uint64_t *heap = realloc(bpe->heap, 2 * cap * sizeof *heap);
    if (symbols) bpe->symbols = symbols;
    if (heap) bpe->heap = heap;
    if (!symbols || !heap) return -1;
    bpe->symbols_cap = cap;
    bpe->heap_cap = 2 * cap;
  }
  tok_symbol *sym = bpe->symbols;
  long n = 0;
  for (size_t i = 0; i < len; i++) {
    int32_t id = bpe->byte_id[bytes[i]];
    if (id < 0) {
      if (bpe->unk_id < 0) continue; /* HF drops the byte when there is no unk token */
      if (bpe->fuse_unk && n > 0 && sym[n - 1].id == bpe->unk_id) {
        sym[n - 1].byte_len++;
        continue;
      }
      id = bpe->unk_id;
    }
    sym[n].id = id;
    sym[n].prev = (int32_t)n - 1;
    sym[n].next = (int32_t)n + 1;
    sym[n].byte_len = 1;
    n++;
  }
  if (n > 0) sym[n - 1].next = -1;
  return n;
}

/* Runs the merges over the symbols and appends the surviving ids. */
static int merge_and_emit(tok_bpe *bpe, long n, aqs_token_ids *out) {
  tok_symbol *sym = bpe->symbols;
  bpe->heap_len = 0;
  for (long i = 0; i + 1 < n; i++) push_pair_if_mergeable(bpe, (int32_t)i);
  while (bpe->heap_len > 0) {
    uint64_t top = heap_pop(bpe);
    uint32_t rank = (uint32_t)(top >> 32);
    int32_t pos = (int32_t)(uint32_t)top;
    if (sym[pos].byte_len == 0 || sym[pos].next < 0) continue;
    int32_t right = sym[pos].next;
    const tok_merge_slot *m = find_merge(bpe, sym[pos].id, sym[right].id);
    if (!m || m->rank != rank) continue; /* stale: the pair here changed since the push */
    sym[pos].id = m->merged_id;
    sym[pos].byte_len += sym[right].byte_len;
    sym[pos].next = sym[right].next;
    sym[right].byte_len = 0;
    if (sym[pos].next >= 0) sym[sym[pos].next].prev = pos;
    /* the heap never exceeds 2 * n: each merge removes one entry and pushes at most two */
    if (bpe->heap_len + 2 > bpe->heap_cap) {
      uint64_t *heap = realloc(bpe->heap, 2 * bpe->heap_cap * sizeof *heap);
      if (!heap) return -1;
      bpe->heap = heap;
      bpe->heap_cap *= 2;
    }
    if (sym[pos].prev >= 0) push_pair_if_mergeable(bpe, sym[pos].prev);
    push_pair_if_mergeable(bpe, pos);
  }
  for (long i = 0; i >= 0 && i < n; i = sym[i].next)
    if (tok_ids_append(out, &sym[i].id, 1) != 0) return -1;
  return 0;
}

/* Whole-word lookup for ignore_merges: the byte-level spelling of bytes in the vocab. */
static int32_t whole_word_id(tok_bpe *bpe, const unsigned char *bytes, size_t len) {
  if (len * 2 > bpe->spelling_cap) {
    char *spelling = realloc(bpe->spelling, len * 2);
    if (!spelling) return -1;
    bpe->spelling = spelling;
    bpe->spelling_cap = len * 2;
  }
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    int32_t cp = bpe->bytelevel->byte_cp[bytes[i]];
    if (cp < 0x80) {
      bpe->spelling[n++] = (char)cp;
    } else {
      bpe->spelling[n++] = (char)(0xC0 | (cp >> 6));
      bpe->spelling[n++] = (char)(0x80 | (cp & 0x3F));
    }
  }
  return tok_strmap_get(bpe->vocab, bpe->spelling, n);
}

static void cache_clear(tok_bpe *bpe) {
  memset(bpe->cache, 0, bpe->cache_slot_count * sizeof *bpe->cache);
  bpe->cache_used = 0;
  bpe->cache_keys_len = 0;
  bpe->cache_ids_len = 0;
}

static tok_cache_slot *cache_find(tok_bpe *bpe, const char *key, size_t len, uint64_t hash) {
  size_t j = hash & (bpe->cache_slot_count - 1);
  for (;;) {
    tok_cache_slot *s = &bpe->cache[j];
    if (!s->hash) return s;
    if (s->hash == hash && s->key_len == len && memcmp(bpe->cache_keys + s->key_offset, key, len) == 0)
      return s;
    j = (j + 1) & (bpe->cache_slot_count - 1);
  }
}

static int grow(void **buf, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : 65536;
  while (c < need) c *= 2;
  void *p = realloc(*buf, c * elem);
  if (!p) return -1;
  *buf = p;
  *cap = c;
  return 0;
}

/* Remembers that key -> out->ids[first..out->len). Failure to cache is not an error. */
static void cache_store(tok_bpe *bpe, tok_cache_slot *slot, uint64_t hash, const char *key,
                        size_t len, const aqs_token_ids *out, size_t first) {
  size_t n_ids = out->len - first;
  if (grow((void **)&bpe->cache_keys, &bpe->cache_keys_cap, bpe->cache_keys_len + len, 1) != 0 ||
      grow((void **)&bpe->cache_ids, &bpe->cache_ids_cap, bpe->cache_ids_len + n_ids,
           sizeof(int32_t)) != 0)
    return;
  memcpy(bpe->cache_keys + bpe->cache_keys_len, key, len);
  if (n_ids) /* a word may encode to no ids (bytes outside a vocabulary without byte tokens) */
    memcpy(bpe->cache_ids + bpe->cache_ids_len, out->ids + first, n_ids * sizeof(int32_t));
  slot->hash = hash;
  slot->key_offset = (uint32_t)bpe->cache_keys_len;
  slot->key_len = (uint32_t)len;
  slot->ids_offset = (uint32_t)bpe->cache_ids_len;
  slot->ids_len = (uint32_t)n_ids;
  bpe->cache_keys_len += len;
  bpe->cache_ids_len += n_ids;
  bpe->cache_used++;
}

int tok_bpe_encode_word(tok_bpe *bpe, const char *bytes, size_t len, aqs_token_ids *out) {
  const unsigned char *ub = (const unsigned char *)bytes;
  if (len == 0) return 0;
  if (len == 1 && bpe->byte_id[ub[0]] >= 0) return tok_ids_append(out, &bpe->byte_id[ub[0]], 1);
  int cacheable = len <= TOK_CACHE_MAX_WORD;
  uint64_t hash = 0;
  tok_cache_slot *slot = NULL;
  if (cacheable) {
    hash = tok_hash_bytes(bytes, len);
    slot = cache_find(bpe, bytes, len, hash);
    if (slot->hash) return tok_ids_append(out, bpe->cache_ids + slot->ids_offset, slot->ids_len);
  }
  size_t first = out->len;
  if (bpe->ignore_merges) {
    int32_t id = whole_word_id(bpe, ub, len);
    if (id >= 0) return tok_ids_append(out, &id, 1);
  }
  long n = init_symbols(bpe, ub, len);
  if (n < 0 || merge_and_emit(bpe, n, out) != 0) return -1;
  if (cacheable) {
    if ((bpe->cache_used + 1) * 2 > bpe->cache_slot_count) {
      cache_clear(bpe);
      slot = cache_find(bpe, bytes, len, hash);
    }
    cache_store(bpe, slot, hash, bytes, len, out, first);
  }
  return 0;
}

void tok_bpe_free(tok_bpe *bpe) {
  free(bpe->merges);
  free(bpe->cache);
  free(bpe->cache_keys);
  free(bpe->cache_ids);
  free(bpe->symbols);
  free(bpe->heap);
  free(bpe->spelling);
  memset(bpe, 0, sizeof *bpe);
}
