/* kernels/plan_cache.h: the eviction policy of the CUDA backend's cuBLASLt plan cache
 * (kernels/cuda/gemm_lt.cu): a bounded table mapping fixed-size keys to slot indices, least
 * recently used slot reused when full. Plain C without CUDA so the policy is unit-tested on any
 * machine. The caller owns what each slot stands for (releases it when a slot is reused).
 * Threads: none inside; the caller serializes every call on one cache (gemm_lt.cu holds a mutex). */
#ifndef AQS_KERNELS_PLAN_CACHE_H
#define AQS_KERNELS_PLAN_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct aqs_plan_cache {
  size_t key_size;
  int capacity;
  int used;             /* slots holding a key: 0..used-1 (filled in order until full) */
  unsigned char *keys;  /* capacity * key_size */
  uint64_t *last_use;   /* per slot: tick of its last lookup (0 = free after a drop) */
  uint64_t tick;
  uint64_t hits, misses, evictions; /* counters for tests and benchmarks */
} aqs_plan_cache;

/* Prepares an empty cache of capacity (>= 1) keys of key_size bytes. Keys compare bytewise:
 * zero their padding. AQS_ERR_NOMEM / AQS_ERR_INVALID (capacity < 1 or key_size 0). */
aqs_status aqs_plan_cache_init(aqs_plan_cache *c, size_t key_size, int capacity, aqs_err *e);
/* Frees the tables (the caller releases its slots' resources first); NULL-safe, idempotent. */
void aqs_plan_cache_free(aqs_plan_cache *c);

typedef enum aqs_plan_lookup {
  AQS_PLAN_HIT = 0,     /* key present in the returned slot */
  AQS_PLAN_NEW = 1,     /* key stored in a free slot: the caller builds the slot's plan */
  AQS_PLAN_EVICTED = 2  /* key stored in the least recently used slot, whose old plan the
                           caller must release before building the new one */
} aqs_plan_lookup;

/* Looks key up and marks its slot most recently used. Returns the slot (0..capacity-1) in *slot. */
aqs_plan_lookup aqs_plan_cache_get(aqs_plan_cache *c, const void *key, int *slot);
/* Forgets the key in slot (e.g. its plan could not be built); the slot becomes free. */
void aqs_plan_cache_drop(aqs_plan_cache *c, int slot);

#ifdef __cplusplus
}
#endif

#endif
