/* engine/calib/calibset.h: the calibration set as the compute engine consumes it.
 * A calib set is a small manifest (canonical JSON) listing fixed-size chunks of sequences; each
 * chunk is one binary object in the store with its own digest (DESIGN.md "Chunked stages"). */
#ifndef AQS_CALIB_CALIBSET_H
#define AQS_CALIB_CALIBSET_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Qwen2-VL vision patch geometry: one row of pixel_patches holds
 * channel(3) x temporal(2) x patch_h(14) x patch_w(14) floats, in the processor's order
 * (channel slowest, then temporal, then row, then column). */
#define AQS_CALIB_PATCH_DIM (3 * 2 * 14 * 14)

/* One chunk: sequences [first_seq, first_seq + n_seqs) of the calib set, packed.
 *
 * Text: token_ids holds all sequences back to back; sequence s is
 *   token_ids[seq_offsets[s] .. seq_offsets[s] + seq_lens[s]).
 * Images (image+text sets; n_images == 0 for text sets): image i belongs to sequence image_seq[i],
 *   its <|image_pad|> tokens are positions image_token_start[i] .. + image_n_tokens[i] - 1 of that
 *   sequence (positions relative to the sequence start; preceded by <|vision_start|>, followed by
 *   <|vision_end|>); image_n_tokens[i] = t*h*w / merge_size^2 with (t,h,w) = image_grid_thw[3*i..].
 *   Its patches are rows image_patch_offsets[i] .. image_patch_offsets[i+1]-1 of pixel_patches
 *   (t*h*w rows, in the processor's order: t, then h/merge, w/merge blocks, then merge rows/cols,
 *   exactly as transformers' Qwen2VLImageProcessor flattens them).
 * All arrays are owned by the chunk and freed by aqs_calib_chunk_free. */
typedef struct aqs_calib_chunk {
  int64_t first_seq;          /* index of the chunk's first sequence in the whole set (filled by
                                 the loader from the manifest; not part of the chunk's bytes) */
  int32_t n_seqs;
  int32_t *seq_lens;          /* (n_seqs) tokens per sequence, each >= 1 */
  int64_t *seq_offsets;       /* (n_seqs + 1) prefix sums of seq_lens; seq_offsets[n_seqs] = n_tokens */
  int64_t n_tokens;
  int32_t *token_ids;         /* (n_tokens) */

  int32_t n_images;
  int32_t *image_seq;         /* (n_images) sequence index within the chunk (0-based) */
  int32_t *image_token_start; /* (n_images) position of the first <|image_pad|> in its sequence */
  int32_t *image_n_tokens;    /* (n_images) number of <|image_pad|> tokens */
  int32_t *image_grid_thw;    /* (n_images, 3) grid_t, grid_h, grid_w in patches */
  int64_t *image_patch_offsets; /* (n_images + 1) prefix sums of t*h*w */
  int64_t n_patches;
  int32_t patch_dim;          /* AQS_CALIB_PATCH_DIM for image chunks, 0 for text chunks */
  float *pixel_patches;       /* (n_patches, patch_dim) F32, normalized */
} aqs_calib_chunk;

/* Digest strings as the store writes them: "sha256:" + 64 hex + NUL. */
#define AQS_CALIB_DIGEST_LEN 72

/* The calib-set manifest: what the stage output object holds (serialized as canonical JSON, put in
 * the store as a manifest object whose "children" are the chunk digests in order). */
typedef struct aqs_calib_set {
  char modality[16];          /* "text" or "image+text" */
  int64_t n_seqs;             /* samples kept (after skipping bad ones) */
  int64_t n_tokens;           /* total tokens over all chunks */
  int64_t n_images;           /* total images over all chunks */
  int64_t n_skipped;          /* bad rows skipped under --skip-bad */
  int32_t chunk_seqs;         /* sequences per chunk (the last chunk may hold fewer) */
  int32_t max_seq_len;        /* sequences were truncated to this many tokens */
  /* Special token ids used in image prompts (-1 for text sets). */
  int32_t image_pad_id, vision_start_id, vision_end_id;
  /* Vision geometry of the processor (0 for text sets). */
  int32_t patch_size, temporal_patch_size, merge_size;
  int32_t n_chunks;
  char (*chunk_digests)[AQS_CALIB_DIGEST_LEN]; /* (n_chunks) "sha256:<hex>" of each chunk object */
} aqs_calib_set;

/* Sequences per chunk unless the caller chooses otherwise. Fixed so that a set of 256 samples
 * shares its first chunks with a set of 128 samples built from the same inputs. */
#define AQS_CALIB_DEFAULT_CHUNK_SEQS 8

/* Frees every array of c and zeroes it (c itself is not freed). NULL-safe. */
void aqs_calib_chunk_free(aqs_calib_chunk *c);
void aqs_calib_set_free(aqs_calib_set *s);

/* Checks the chunk's internal invariants (offsets are prefix sums, image tokens lie inside their
 * sequence, patch counts = t*h*w, ...). Returns AQS_ERR_INVALID naming the first violation. */
aqs_status aqs_calib_chunk_check(const aqs_calib_chunk *c, aqs_err *err);

/* Binary chunk encoding (little-endian, versioned magic "AQSCALC1"); deterministic: equal chunks
 * give equal bytes, hence equal digests. On success *out is malloc'd (caller frees). */
aqs_status aqs_calib_chunk_encode(const aqs_calib_chunk *c, uint8_t **out, size_t *out_len,
                                  aqs_err *err);
/* Decodes bytes written by aqs_calib_chunk_encode into *c (caller frees with
 * aqs_calib_chunk_free). Any truncation or inconsistency gives AQS_ERR_CORRUPT; `what` (a digest
 * or file name, may be NULL) is named in the message. */
aqs_status aqs_calib_chunk_decode(const uint8_t *bytes, size_t len, const char *what,
                                  aqs_calib_chunk *c, aqs_err *err);

/* Manifest as canonical JSON text (sorted keys, no spaces); *out malloc'd NUL-terminated. */
aqs_status aqs_calib_set_to_json(const aqs_calib_set *s, char **out, aqs_err *err);
/* Parses a manifest written by aqs_calib_set_to_json; `what` names the source in errors. */
aqs_status aqs_calib_set_from_json(const char *json, size_t len, const char *what,
                                   aqs_calib_set *s, aqs_err *err);

/* Deterministic, prefix-stable sample order: fills out[0..n_samples) with distinct indices in
 * [0, n_total) such that the first k indices for n_samples = a are the same as for any
 * n_samples = b >= k (a seeded Fisher-Yates shuffle of 0..n_total-1, truncated). This is what
 * makes "128 samples" a prefix of "256 samples" and lets them share chunks. n_samples must be
 * <= n_total. The PRNG is splitmix64 seeded with `seed`; the order is part of the on-disk
 * contract (changing it changes every calib-set digest). */
aqs_status aqs_calib_sample_order(int64_t n_total, int64_t n_samples, uint64_t seed, int64_t *out,
                                  aqs_err *err);

#endif
