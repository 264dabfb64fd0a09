/* engine/export/fp8_cache.c: the exporter's cache of FP8 weight codes (see fp8_cache.h): a
 * growing array searched linearly (a model has a few hundred linears; a lookup is one memcmp
 * each, nothing next to quantizing a tensor), under one mutex; a claimed key is a slot not yet
 * ready, and a condition variable wakes the threads waiting for it. */
#include "engine/export/fp8_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct slot {
  aqs_fp8_cached e;
  int ready;              /* 0: claimed, codes being made */
  pthread_t claimant;     /* the thread that claimed it */
} slot;

struct aqs_fp8_cache {
  pthread_mutex_t lock;
  pthread_cond_t settled; /* a claim was inserted or released */
  slot *slots;
  size_t n, cap;
  uint64_t max_bytes, bytes; /* bytes: held plus claimed */
  uint64_t hits, ready;
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
  pthread_mutex_init(&(*out)->lock, NULL);
  pthread_cond_init(&(*out)->settled, NULL);
  return AQS_OK;
}

void aqs_fp8_cache_free(aqs_fp8_cache *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n; i++) free((void *)c->slots[i].e.codes);
  free(c->slots);
  free(c->finite);
  pthread_cond_destroy(&c->settled);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

static slot *lookup(const aqs_fp8_cache *c, const aqs_digest *source, int ref) {
  for (size_t i = 0; i < c->n; i++)
    if (c->slots[i].e.ref == ref && memcmp(&c->slots[i].e.source, source, sizeof *source) == 0)
      return &c->slots[i];
  return NULL;
}

static slot *slot_of_codes(const aqs_fp8_cache *c, const uint8_t *codes) {
  for (size_t i = 0; i < c->n; i++)
    if (c->slots[i].e.codes == codes) return &c->slots[i];
  return NULL;
}

/* A claimed slot for (source, ref) with a buffer of n bytes, or NULL when there is no room. */
static slot *claim_slot(aqs_fp8_cache *c, const aqs_digest *source, int ref, uint64_t n) {
  if (n == 0 || n > c->max_bytes - c->bytes) return NULL;
  if (c->n == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 64;
    slot *grown = realloc(c->slots, cap * sizeof *grown);
    if (!grown) return NULL;
    c->slots = grown;
    c->cap = cap;
  }
  uint8_t *p = malloc(n);
  if (!p) return NULL;
  c->bytes += n;
  slot *s = &c->slots[c->n++];
  *s = (slot){.e = {.source = *source, .ref = ref, .codes = p, .n = n}, .claimant = pthread_self()};
  return s;
}

aqs_fp8_claim aqs_fp8_cache_claim(aqs_fp8_cache *c, const aqs_digest *source, int ref, uint64_t n,
                                  aqs_fp8_cached *hit, uint8_t **buf) {
  aqs_fp8_claim r = AQS_FP8_FULL;
  pthread_mutex_lock(&c->lock);
  slot *s;
  /* A key this thread claimed itself (two tensors with the same bytes) is not waited for: the
   * claim settles only later, after this thread hands it on. */
  while ((s = lookup(c, source, ref)) && !s->ready && !pthread_equal(s->claimant, pthread_self()))
    pthread_cond_wait(&c->settled, &c->lock);
  if (s && !s->ready) {
    s = NULL; /* FULL: the caller quantizes into its own memory */
  } else if (s) {
    *hit = s->e;
    c->hits++;
    r = AQS_FP8_HIT;
  } else if ((s = claim_slot(c, source, ref, n))) {
    *buf = (uint8_t *)s->e.codes;
    r = AQS_FP8_CLAIMED;
  }
  pthread_mutex_unlock(&c->lock);
  return r;
}

int aqs_fp8_cache_has(aqs_fp8_cache *c, const aqs_digest *source, int ref) {
  pthread_mutex_lock(&c->lock);
  int has = lookup(c, source, ref) != NULL;
  pthread_mutex_unlock(&c->lock);
  return has;
}

static int finite_locked(const aqs_fp8_cache *c, const aqs_digest *source) {
  for (size_t i = 0; i < c->n_finite; i++)
    if (memcmp(&c->finite[i], source, sizeof *source) == 0) return 1;
  return 0;
}

int aqs_fp8_cache_is_finite(aqs_fp8_cache *c, const aqs_digest *source) {
  pthread_mutex_lock(&c->lock);
  int finite = finite_locked(c, source);
  pthread_mutex_unlock(&c->lock);
  return finite;
}

void aqs_fp8_cache_mark_finite(aqs_fp8_cache *c, const aqs_digest *source) {
  pthread_mutex_lock(&c->lock);
  if (!finite_locked(c, source)) {
    if (c->n_finite == c->cap_finite) {
      size_t cap = c->cap_finite ? 2 * c->cap_finite : 256;
      aqs_digest *grown = realloc(c->finite, cap * sizeof *grown);
      if (grown) {
        c->finite = grown;
        c->cap_finite = cap;
      }
    }
    if (c->n_finite < c->cap_finite) c->finite[c->n_finite++] = *source;
  }
  pthread_mutex_unlock(&c->lock);
}

void aqs_fp8_cache_insert(aqs_fp8_cache *c, const aqs_fp8_cached *entry) {
  pthread_mutex_lock(&c->lock);
  slot *s = slot_of_codes(c, entry->codes);
  if (s) {
    s->e.amax = entry->amax;
    s->e.scale = entry->scale;
    s->e.digest = entry->digest;
    s->ready = 1;
    c->ready++;
  }
  pthread_cond_broadcast(&c->settled);
  pthread_mutex_unlock(&c->lock);
}

void aqs_fp8_cache_release(aqs_fp8_cache *c, uint8_t *codes) {
  if (!codes) return;
  pthread_mutex_lock(&c->lock);
  slot *s = slot_of_codes(c, codes);
  if (s && !s->ready) {
    c->bytes -= s->e.n;
    *s = c->slots[--c->n]; /* order does not matter: a key has one slot at most */
    free(codes);
  }
  pthread_cond_broadcast(&c->settled);
  pthread_mutex_unlock(&c->lock);
}

void aqs_fp8_cache_stats(aqs_fp8_cache *c, uint64_t *hits, uint64_t *entries, uint64_t *bytes) {
  if (c) pthread_mutex_lock(&c->lock);
  if (hits) *hits = c ? c->hits : 0;
  if (entries) *entries = c ? c->ready : 0;
  if (bytes) *bytes = c ? c->bytes : 0;
  if (c) pthread_mutex_unlock(&c->lock);
}
