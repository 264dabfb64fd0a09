/* engine/tokenizer/strmap.h: open-addressing hash map from byte strings to int32 values, with the
 * keys copied into one arena. Used for the BPE vocabulary (token spelling -> id). Private to the
 * tokenizer module. */
#ifndef AQS_TOKENIZER_STRMAP_H
#define AQS_TOKENIZER_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct tok_strmap_slot {
  uint64_t hash;       /* 0 = empty slot */
  uint32_t key_offset; /* into arena */
  uint32_t key_len;
  int32_t value;
} tok_strmap_slot;

typedef struct tok_strmap {
  tok_strmap_slot *slots;
  size_t slot_count; /* power of two */
  size_t used;
  char *arena;
  size_t arena_len, arena_cap;
} tok_strmap;

uint64_t tok_hash_bytes(const void *data, size_t len);
/* Returns 0 on success, -1 on out of memory. An existing key gets its value replaced. */
int tok_strmap_put(tok_strmap *m, const char *key, size_t key_len, int32_t value);
/* Value of key, or -1 if absent. */
int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t key_len);
void tok_strmap_free(tok_strmap *m);

#endif
