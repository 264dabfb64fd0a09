/* engine/export/fp8_cache.h: FP8 weight codes kept across the exports of one process, so that a
 * build's sweep of schemes quantizes and hashes each weight once (the first scheme that makes it
 * FP8) and later schemes reuse the codes. Keyed by the source tensor's SHA-256 and the FP8
 * reference (the weight scale is a function of the tensor's bytes); holds amax, scale, the codes
 * and their SHA-256, so a hit gives exactly the bytes a fresh quantization would.
 * Bounded by a byte budget: past it, codes are not kept (the exporter quantizes again).
 * It also remembers which source tensors were found free of NaN and Inf, so that a tensor copied
 * unchanged by every scheme is scanned (read) by the first export only.
 * Ownership: the cache owns every code buffer; entries live until aqs_fp8_cache_free.
 * Threads: every function may be called from any thread (one lock inside): the exports of a
 * sweep run at once. A key claimed by one thread (AQS_FP8_CLAIMED) is waited for by the others
 * until it is inserted or released, so each weight is quantized once however many exports need
 * it; a claim must therefore be settled without waiting on another claim (the exporter inserts
 * from the thread that hashes the codes). An entry's codes never change once inserted and may
 * be read by any thread until the cache is freed. */
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

typedef enum aqs_fp8_claim {
  AQS_FP8_HIT = 0,        /* *hit holds the entry */
  AQS_FP8_CLAIMED = 1,    /* *buf: n bytes for the codes, to insert or release */
  AQS_FP8_FULL = 2        /* no entry and no room (budget spent, memory short): quantize elsewhere */
} aqs_fp8_claim;

/* An empty cache holding at most max_bytes of codes (0: a quarter of physical memory).
 * AQS_ERR_NOMEM. */
aqs_status aqs_fp8_cache_new(uint64_t max_bytes, aqs_fp8_cache **out, aqs_err *e);
/* Frees every entry and c (NULL is a no-op). No claim may be outstanding. */
void aqs_fp8_cache_free(aqs_fp8_cache *c);
/* The codes of a weight (source, ref) of n codes: an entry (copied into *hit; counts a hit), or a
 * claim on the key with a buffer of n bytes counted against the budget (*buf, to fill and pass to
 * aqs_fp8_cache_insert, or to aqs_fp8_cache_release on failure), or FULL. While another thread
 * holds the key's claim, waits for it to be inserted (then a hit) or released (then ours). */
aqs_fp8_claim aqs_fp8_cache_claim(aqs_fp8_cache *c, const aqs_digest *source, int ref, uint64_t n,
                                  aqs_fp8_cached *hit, uint8_t **buf);
/* Whether (source, ref) has an entry or an outstanding claim, counting nothing, never waiting. */
int aqs_fp8_cache_has(aqs_fp8_cache *c, const aqs_digest *source, int ref);
/* Source tensors whose bytes were checked finite: mark (best effort: out of memory forgets it)
 * and ask. */
void aqs_fp8_cache_mark_finite(aqs_fp8_cache *c, const aqs_digest *source);
int aqs_fp8_cache_is_finite(aqs_fp8_cache *c, const aqs_digest *source);
/* Completes the claim of entry->codes (a buffer from aqs_fp8_cache_claim; the cache takes it;
 * the key and n are the claim's). Never fails: the claim reserved the room. */
void aqs_fp8_cache_insert(aqs_fp8_cache *c, const aqs_fp8_cached *entry);
/* Drops the claim of codes (its buffer is freed, its bytes count again). NULL is a no-op. */
void aqs_fp8_cache_release(aqs_fp8_cache *c, uint8_t *codes);
/* Counters: claims that hit, entries held, bytes of codes held or claimed. */
void aqs_fp8_cache_stats(aqs_fp8_cache *c, uint64_t *hits, uint64_t *entries, uint64_t *bytes);

#endif
