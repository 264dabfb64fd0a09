/* engine/tokenizer/strmap.c: the string -> int32 hash map of strmap.h (linear probing, FNV-1a
 * style 64-bit hash, table kept at most half full). */
#include "engine/tokenizer/strmap.h"

#include <stdlib.h>
#include <string.h>

uint64_t tok_hash_bytes(const void *data, size_t len) {
  const unsigned char *p = data;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return h ? h : 1;
}

static int grow_slots(tok_strmap *m) {
  size_t new_count = m->slot_count ? m->slot_count * 2 : 1024;
  tok_strmap_slot *slots = calloc(new_count, sizeof *slots);
  if (!slots) return -1;
  for (size_t i = 0; i < m->slot_count; i++) {
    tok_strmap_slot s = m->slots[i];
    if (!s.hash) continue;
    size_t j = s.hash & (new_count - 1);
    while (slots[j].hash) j = (j + 1) & (new_count - 1);
    slots[j] = s;
  }
  free(m->slots);
  m->slots = slots;
  m->slot_count = new_count;
  return 0;
}

static tok_strmap_slot *find_slot(const tok_strmap *m, const char *key, size_t key_len,
                                  uint64_t hash) {
  size_t j = hash & (m->slot_count - 1);
  for (;;) {
    tok_strmap_slot *s = &m->slots[j];
    if (!s->hash) return s;
    if (s->hash == hash && s->key_len == key_len &&
        memcmp(m->arena + s->key_offset, key, key_len) == 0)
      return s;
    j = (j + 1) & (m->slot_count - 1);
  }
}

int tok_strmap_put(tok_strmap *m, const char *key, size_t key_len, int32_t value) {
  if ((m->used + 1) * 2 > m->slot_count && grow_slots(m) != 0) return -1;
  uint64_t hash = tok_hash_bytes(key, key_len);
  tok_strmap_slot *s = find_slot(m, key, key_len, hash);
  if (s->hash) {
    s->value = value;
    return 0;
  }
  if (m->arena_len + key_len + 1 > m->arena_cap) {
    size_t cap = m->arena_cap ? m->arena_cap : 65536;
    while (m->arena_len + key_len + 1 > cap) cap *= 2;
    if (cap > UINT32_MAX) return -1;
    char *arena = realloc(m->arena, cap);
    if (!arena) return -1;
    m->arena = arena;
    m->arena_cap = cap;
  }
  memcpy(m->arena + m->arena_len, key, key_len);
  m->arena[m->arena_len + key_len] = '\0';
  s->hash = hash;
  s->key_offset = (uint32_t)m->arena_len;
  s->key_len = (uint32_t)key_len;
  s->value = value;
  m->arena_len += key_len + 1;
  m->used++;
  return 0;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t key_len) {
  if (!m->slot_count) return -1;
  const tok_strmap_slot *s = find_slot(m, key, key_len, tok_hash_bytes(key, key_len));
  return s->hash ? s->value : -1;
}

void tok_strmap_free(tok_strmap *m) {
  free(m->slots);
  free(m->arena);
  memset(m, 0, sizeof *m);
}
