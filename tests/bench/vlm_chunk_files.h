/* tests/bench/vlm_chunk_files.h: reads one image+text calib chunk given as raw little-endian files
 * (the form tests/conformance/vision_conformance.py and tests/bench/image_bench.py write) for the
 * conformance and benchmark helpers vlm_dump and vlm_bench. Header-only: every .c under tests/bench
 * is its own program. Exits with a message on a missing or unreadable file. */
#ifndef AQS_BENCH_VLM_CHUNK_FILES_H
#define AQS_BENCH_VLM_CHUNK_FILES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/calib/calibset.h"

/* The whole of dir/name (malloc'd, caller frees); *n_bytes its size. */
static void *vlm_slurp(const char *dir, const char *name, size_t *n_bytes) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *p = malloc((size_t)n + 4);
  if (!p || fread(p, 1, (size_t)n, f) != (size_t)n) {
    fprintf(stderr, "cannot read %s\n", path);
    exit(1);
  }
  fclose(f);
  *n_bytes = (size_t)n;
  return p;
}

/* Fills *c from IN_DIR: lens.i32 (B), ids.i32 (N), grid.i32 (I x 3), img_seq.i32, img_start.i32
 * (I), patches.f32 (sum t*h*w, 1176). Free with vlm_chunk_files_free. */
static void vlm_chunk_files_read(const char *in, aqs_calib_chunk *c) {
  size_t nb;
  memset(c, 0, sizeof *c);
  c->seq_lens = vlm_slurp(in, "lens.i32", &nb);
  c->n_seqs = (int32_t)(nb / 4);
  c->token_ids = vlm_slurp(in, "ids.i32", &nb);
  c->n_tokens = (int64_t)(nb / 4);
  c->image_grid_thw = vlm_slurp(in, "grid.i32", &nb);
  c->n_images = (int32_t)(nb / 12);
  c->image_seq = vlm_slurp(in, "img_seq.i32", &nb);
  c->image_token_start = vlm_slurp(in, "img_start.i32", &nb);
  c->pixel_patches = vlm_slurp(in, "patches.f32", &nb);
  c->patch_dim = AQS_CALIB_PATCH_DIM;
  c->n_patches = (int64_t)(nb / 4 / AQS_CALIB_PATCH_DIM);
}

static void vlm_chunk_files_free(aqs_calib_chunk *c) {
  free((void *)c->seq_lens);
  free((void *)c->token_ids);
  free((void *)c->image_grid_thw);
  free((void *)c->image_seq);
  free((void *)c->image_token_start);
  free((void *)c->pixel_patches);
  memset(c, 0, sizeof *c);
}

#endif
