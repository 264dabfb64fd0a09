/* kernels/plan_cache.c: bounded key -> slot table with least-recently-used reuse (policy of the
 * cuBLASLt plan cache; see plan_cache.h). A linear scan: the capacity is a few hundred keys and a
 * lookup costs far less than the GEMM it precedes. */
#include "kernels/plan_cache.h"

#include <stdlib.h>
#include <string.h>

aqs_status aqs_plan_cache_init(aqs_plan_cache *c, size_t key_size, int capacity, aqs_err *e) {
  memset(c, 0, sizeof *c);
  if (capacity < 1 || key_size == 0)
    return aqs_errf(e, AQS_ERR_INVALID, "plan cache: capacity %d / key size %zu must be positive", capacity, key_size);
  c->keys = calloc((size_t)capacity, key_size);
  c->last_use = calloc((size_t)capacity, sizeof *c->last_use);
  if (!c->keys || !c->last_use) {
    aqs_plan_cache_free(c);
    return aqs_errf(e, AQS_ERR_NOMEM, "plan cache: out of memory for %d keys", capacity);
  }
  c->key_size = key_size;
  c->capacity = capacity;
  return AQS_OK;
}

void aqs_plan_cache_free(aqs_plan_cache *c) {
  if (!c) return;
  free(c->keys);
  free(c->last_use);
  memset(c, 0, sizeof *c);
}

aqs_plan_lookup aqs_plan_cache_get(aqs_plan_cache *c, const void *key, int *slot) {
  c->tick++;
  int free_slot = -1, lru = 0;
  for (int i = 0; i < c->used; i++) {
    if (c->last_use[i] == 0) {
      if (free_slot < 0) free_slot = i;
      continue;
    }
    if (memcmp(c->keys + (size_t)i * c->key_size, key, c->key_size) == 0) {
      c->last_use[i] = c->tick;
      c->hits++;
      *slot = i;
      return AQS_PLAN_HIT;
    }
    if (c->last_use[i] < c->last_use[lru] || c->last_use[lru] == 0) lru = i;
  }
  c->misses++;
  aqs_plan_lookup kind = AQS_PLAN_NEW;
  if (free_slot < 0 && c->used < c->capacity) {
    free_slot = c->used++;
  } else if (free_slot < 0) {
    free_slot = lru;
    kind = AQS_PLAN_EVICTED;
    c->evictions++;
  }
  memcpy(c->keys + (size_t)free_slot * c->key_size, key, c->key_size);
  c->last_use[free_slot] = c->tick;
  *slot = free_slot;
  return kind;
}

void aqs_plan_cache_drop(aqs_plan_cache *c, int slot) {
  if (slot >= 0 && slot < c->used) c->last_use[slot] = 0;
}
