/* tests/unit/compute/lm_fixture.h: shared fixture of the compute tests: a synthetic tiny
 * checkpoint in a temp dir, a CPU backend, deterministic token batches. Header-only (static). */
#ifndef AQS_TEST_LM_FIXTURE_H
#define AQS_TEST_LM_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/compute/calibrate.h"
#include "engine/compute/sensitivity.h"
#include "engine/model/synth.h"
#include "kernels/backend.h"

/* Writes preset (seed 7) with the given outlier spec (NULL = none) into a fresh temp dir. */
static inline char *fx_synth(const char *preset, const char *outliers) {
  char *dir = tu_mkdtemp("compute");
  aqs_synth_opts o;
  memset(&o, 0, sizeof o);
  o.preset = preset;
  o.seed = 7;
  o.out_dir = dir;
  o.naming = AQS_NAMING_HF5;
  o.threads = 1;
  aqs_err e = {0};
  if (outliers && aqs_synth_parse_outliers(outliers, &o, &e) != AQS_OK) {
    fprintf(stderr, "outliers: %s\n", e.msg);
    abort();
  }
  if (aqs_synth_write(&o, &e) != AQS_OK) {
    fprintf(stderr, "synth: %s\n", e.msg);
    abort();
  }
  return dir;
}

/* Token batches: n_batches x n_seqs sequences of pseudo-random lengths in [4, 4 + len_spread)
 * and ids in [0, vocab). Host arrays owned by the fixture (static storage). */
typedef struct fx_batches {
  int n;
  aqs_token_batch b[8];
  int32_t ids[8][512];
  int32_t lens[8][16];
} fx_batches;

static inline void fx_make_batches(fx_batches *fb, int n_batches, int n_seqs, int len_spread,
                            int vocab, uint32_t seed) {
  memset(fb, 0, sizeof *fb);
  fb->n = n_batches;
  uint32_t s = seed * 2654435761u + 1;
  for (int bi = 0; bi < n_batches; bi++) {
    int off = 0;
    for (int q = 0; q < n_seqs; q++) {
      s = s * 1664525u + 1013904223u;
      int len = 4 + (int)((s >> 8) % (uint32_t)len_spread);
      fb->lens[bi][q] = len;
      for (int i = 0; i < len; i++) {
        s = s * 1664525u + 1013904223u;
        fb->ids[bi][off++] = (int32_t)((s >> 8) % (uint32_t)vocab);
      }
    }
    fb->b[bi].n_seqs = n_seqs;
    fb->b[bi].seq_lens = fb->lens[bi];
    fb->b[bi].token_ids = fb->ids[bi];
  }
}

/* Opens cpu + loads the model; aborts on failure. */
static inline aqs_lm *fx_load(const char *dir, aqs_backend **be_out, aqs_precision prec) {
  aqs_err e = {0};
  aqs_backend *be;
  aqs_lm *lm;
  if (aqs_backend_open("cpu", prec, &be, &e) != AQS_OK || aqs_lm_load(be, dir, &lm, &e) != AQS_OK) {
    fprintf(stderr, "load %s: %s\n", dir, e.msg);
    abort();
  }
  *be_out = be;
  return lm;
}

/* Calibrates over all batches and installs the table into lm. */
static inline void fx_calibrate(aqs_lm *lm, const fx_batches *fb, aqs_amax_table *out) {
  aqs_err e = {0};
  memset(out, 0, sizeof *out);
  for (int i = 0; i < fb->n; i++) {
    aqs_amax_table part = {0}, next = {0};
    const aqs_amax_table *parts[2] = {out, &part};
    if (aqs_calibrate_batch(lm, &fb->b[i], 0, &part, &e) != AQS_OK ||
        aqs_amax_reduce(parts, 2, &next, &e) != AQS_OK) {
      fprintf(stderr, "calibrate: %s\n", e.msg);
      abort();
    }
    aqs_amax_free(&part);
    aqs_amax_free(out);
    *out = next;
  }
  if (aqs_lm_set_amax(lm, out, &e) != AQS_OK) {
    fprintf(stderr, "set amax: %s\n", e.msg);
    abort();
  }
}

#endif
