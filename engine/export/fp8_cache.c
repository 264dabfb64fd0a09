/* engine/export/fp8_cache.c: the exporter's cache of FP8 weight codes (see fp8_cache.h): a
 * growing array searched linearly (a model has a few hundred linears; a lookup is one memcmp
 * each, nothing next to quantizing a tensor). */
#include "engine/export/fp8_cache.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct aqs_fp8_cache {
  aqs_fp8_cached *entries;
  size_t n, cap, pending; /* pending: buffers handed out, each with a slot reserved in entries */
  uint64_t max_bytes, bytes; /* bytes: held plus handed out by alloc */
  uint64_t hits;
  aqs_digest *finite;     /* source tensors checked free of NaN and Inf */
  size_t n_finite, cap_finite;
};

aqs_status aqs_fp8_cache_new(uint64_t max_bytes, aqs_fp8_cache **out, aqs_err *e) {
  *out = calloc(1, sizeof **out);
  if (!*out) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory for the FP8 code cache");
  if (max_bytes == 0) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    max_bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page / 4 : (uint64_t)1 << 30;
  }
  (*out)->max_bytes = max_bytes;
  return AQS_OK;
}

void aqs_fp8_cache_free(aqs_fp8_cache *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n; i++) free((void *)c->entries[i].codes);
  free(c->entries);
  free(c->finite);
  free(c);
}

static aqs_fp8_cached *lookup(const aqs_fp8_cache *c, const aqs_digest *source, int ref) {
  for (size_t i = 0; i < c->n; i++)
    if (c->entries[i].ref == ref && memcmp(&c->entries[i].source, source, sizeof *source) == 0)
      return &c->entries[i];
  return NULL;
}

const aqs_fp8_cached *aqs_fp8_cache_find(aqs_fp8_cache *c, const aqs_digest *source, int ref) {
  aqs_fp8_cached *hit = lookup(c, source, ref);
  c->hits += hit != NULL;
  return hit;
}

int aqs_fp8_cache_has(const aqs_fp8_cache *c, const aqs_digest *source, int ref) {
  return lookup(c, source, ref) != NULL;
}

int aqs_fp8_cache_is_finite(const aqs_fp8_cache *c, const aqs_digest *source) {
  for (size_t i = 0; i < c->n_finite; i++)
    if (memcmp(&c->finite[i], source, sizeof *source) == 0) return 1;
  return 0;
}

void aqs_fp8_cache_mark_finite(aqs_fp8_cache *c, const aqs_digest *source) {
  if (aqs_fp8_cache_is_finite(c, source)) return;
  if (c->n_finite == c->cap_finite) {
    size_t cap = c->cap_finite ? 2 * c->cap_finite : 256;
    aqs_digest *grown = realloc(c->finite, cap * sizeof *grown);
    if (!grown) return;
    c->finite = grown;
    c->cap_finite = cap;
  }
  c->finite[c->n_finite++] = *source;
}

uint8_t *aqs_fp8_cache_alloc(aqs_fp8_cache *c, uint64_t n) {
  if (n == 0 || n > c->max_bytes - c->bytes) return NULL;
  if (c->n + c->pending == c->cap) { /* reserve the entry now so that insert cannot fail */
    size_t cap = c->cap ? 2 * c->cap : 64;
    aqs_fp8_cached *grown = realloc(c->entries, cap * sizeof *grown);
    if (!grown) return NULL;
    c->entries = grown;
    c->cap = cap;
  }
  uint8_t *p = malloc(n);
  if (!p) return NULL;
  c->bytes += n;
  c->pending++;
  return p;
}

void aqs_fp8_cache_release(aqs_fp8_cache *c, uint8_t *codes, uint64_t n) {
  if (!codes) return;
  free(codes);
  c->bytes -= n;
  c->pending--;
}

void aqs_fp8_cache_insert(aqs_fp8_cache *c, const aqs_fp8_cached *entry) {
  /* A key present already (two tensors with the same bytes) gets a second entry: the first one
   * answers lookups, and the exporter's output still points at these codes. */
  c->pending--;
  c->entries[c->n++] = *entry;
}

void aqs_fp8_cache_stats(const aqs_fp8_cache *c, uint64_t *hits, uint64_t *entries, uint64_t *bytes) {
  if (hits) *hits = c ? c->hits : 0;
  if (entries) *entries = c ? c->n : 0;
  if (bytes) *bytes = c ? c->bytes : 0;
}
