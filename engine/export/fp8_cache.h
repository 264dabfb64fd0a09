/* engine/export/fp8_cache.h: FP8 weight codes kept across the exports of one process, so that a
 * build's sweep of schemes quantizes and hashes each weight once (the first scheme that makes it
 * FP8) and later schemes reuse the codes. Keyed by the source tensor's SHA-256 and the FP8
 * reference (the weight scale is a function of the tensor's bytes); holds amax, scale, the codes
 * and their SHA-256, so a hit gives exactly the bytes a fresh quantization would.
 * Bounded by a byte budget: past it, codes are not kept (the exporter quantizes again).
 * It also remembers which source tensors were found free of NaN and Inf, so that a tensor copied
 * unchanged by every scheme is scanned (read) by the first export only.
 * Ownership: the cache owns every code buffer; entries live until aqs_fp8_cache_free.
 * Threads: find/alloc/insert/release from one thread at a time (the exporter's main thread); an
 * entry's codes never change once inserted and may be read by any thread until the cache is freed. */
#ifndef AQS_EXPORT_FP8_CACHE_H
#define AQS_EXPORT_FP8_CACHE_H

#include <stdint.h>

#include "common/err.h"
#include "store/digest.h"

typedef struct aqs_fp8_cache aqs_fp8_cache;

typedef struct aqs_fp8_cached {
  aqs_digest source;      /* key: SHA-256 of the source tensor's bytes */
  int ref;                /* key: aqs_fp8_ref used */
  float amax, scale;      /* the weight's amax and per-tensor scale */
  const uint8_t *codes;   /* n E4M3 codes */
  uint64_t n;
  aqs_digest digest;      /* SHA-256 of the codes */
} aqs_fp8_cached;

/* An empty cache holding at most max_bytes of codes (0: a quarter of physical memory).
 * AQS_ERR_NOMEM. */
aqs_status aqs_fp8_cache_new(uint64_t max_bytes, aqs_fp8_cache **out, aqs_err *e);
/* Frees every entry and c (NULL is a no-op). */
void aqs_fp8_cache_free(aqs_fp8_cache *c);
/* The entry for (source, ref), or NULL (counts a hit). */
const aqs_fp8_cached *aqs_fp8_cache_find(aqs_fp8_cache *c, const aqs_digest *source, int ref);
/* Whether (source, ref) has an entry, counting nothing. */
int aqs_fp8_cache_has(const aqs_fp8_cache *c, const aqs_digest *source, int ref);
/* Source tensors whose bytes were checked finite: mark (best effort: out of memory forgets it)
 * and ask. */
void aqs_fp8_cache_mark_finite(aqs_fp8_cache *c, const aqs_digest *source);
int aqs_fp8_cache_is_finite(const aqs_fp8_cache *c, const aqs_digest *source);
/* A buffer of n bytes counted against the budget, for codes about to be inserted; NULL when the
 * budget is spent or memory is short (the caller quantizes into its own memory instead). */
uint8_t *aqs_fp8_cache_alloc(aqs_fp8_cache *c, uint64_t n);
/* Returns a buffer from aqs_fp8_cache_alloc that will not be inserted. */
void aqs_fp8_cache_release(aqs_fp8_cache *c, uint8_t *codes, uint64_t n);
/* Adds entry (entry->codes from aqs_fp8_cache_alloc; the cache takes the buffer). Never fails:
 * alloc reserved the room. */
void aqs_fp8_cache_insert(aqs_fp8_cache *c, const aqs_fp8_cached *entry);
/* Counters: lookups that hit, entries held, bytes of codes held. */
void aqs_fp8_cache_stats(const aqs_fp8_cache *c, uint64_t *hits, uint64_t *entries, uint64_t *bytes);

#endif
