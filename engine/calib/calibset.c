/* engine/calib/calibset.c: chunk invariants, the binary chunk encoding, the manifest's canonical
 * JSON and the prefix-stable sample order (see calibset.h). Chunk bytes (little-endian):
 *   "AQSCALC1" | i32 n_seqs, n_images, patch_dim, 0 | i64 n_tokens, n_patches |
 *   i32 seq_lens[n_seqs] | i32 token_ids[n_tokens] |
 *   per image i32 {seq, token_start, n_tokens, grid_t, grid_h, grid_w} | f32 patches[n_patches*patch_dim] */
#include "engine/calib/calibset.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "store/canon_json.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "calib chunk encoding assumes a little-endian host"
#endif

#define CHUNK_MAGIC "AQSCALC1"
#define CHUNK_HEADER_BYTES (8 + 4 * 4 + 2 * 8)
#define IMAGE_RECORD_I32 6

void aqs_calib_chunk_free(aqs_calib_chunk *c) {
  if (!c) return;
  free(c->seq_lens);
  free(c->seq_offsets);
  free(c->token_ids);
  free(c->image_seq);
  free(c->image_token_start);
  free(c->image_n_tokens);
  free(c->image_grid_thw);
  free(c->image_patch_offsets);
  free(c->pixel_patches);
  memset(c, 0, sizeof *c);
}

void aqs_calib_set_free(aqs_calib_set *s) {
  if (!s) return;
  free(s->chunk_digests);
  memset(s, 0, sizeof *s);
}

aqs_status aqs_calib_chunk_check(const aqs_calib_chunk *c, aqs_err *err) {
  if (c->n_seqs < 0 || c->n_images < 0 || c->n_tokens < 0 || c->n_patches < 0)
    return aqs_errf(err, AQS_ERR_INVALID, "calib chunk: negative count");
  if (c->seq_offsets[0] != 0)
    return aqs_errf(err, AQS_ERR_INVALID, "calib chunk: seq_offsets[0] = %lld, not 0",
                    (long long)c->seq_offsets[0]);
  for (int32_t s = 0; s < c->n_seqs; s++) {
    if (c->seq_lens[s] < 1)
      return aqs_errf(err, AQS_ERR_INVALID, "calib chunk: sequence %d is empty", s);
    if (c->seq_offsets[s + 1] != c->seq_offsets[s] + c->seq_lens[s])
      return aqs_errf(err, AQS_ERR_INVALID, "calib chunk: seq_offsets[%d] is not a prefix sum", s + 1);
  }
  if (c->seq_offsets[c->n_seqs] != c->n_tokens)
    return aqs_errf(err, AQS_ERR_INVALID, "calib chunk: %lld tokens but offsets end at %lld",
                    (long long)c->n_tokens, (long long)c->seq_offsets[c->n_seqs]);
  if (c->n_images == 0) {
    if (c->n_patches != 0)
      return aqs_errf(err, AQS_ERR_INVALID, "calib chunk: patches without images");
    return AQS_OK;
  }
  if (c->patch_dim != AQS_CALIB_PATCH_DIM)
    return aqs_errf(err, AQS_ERR_INVALID, "calib chunk: patch_dim %d, expected %d", c->patch_dim,
                    AQS_CALIB_PATCH_DIM);
  if (c->image_patch_offsets[0] != 0)
    return aqs_errf(err, AQS_ERR_INVALID, "calib chunk: image_patch_offsets[0] is not 0");
  for (int32_t i = 0; i < c->n_images; i++) {
    const int32_t *g = c->image_grid_thw + 3 * i;
    if (g[0] < 1 || g[1] < 1 || g[2] < 1)
      return aqs_errf(err, AQS_ERR_INVALID, "calib chunk: image %d has grid %dx%dx%d", i, g[0],
                      g[1], g[2]);
    int64_t patches = (int64_t)g[0] * g[1] * g[2];
    if (c->image_patch_offsets[i + 1] - c->image_patch_offsets[i] != patches)
      return aqs_errf(err, AQS_ERR_INVALID, "calib chunk: image %d has %lld patch rows, grid says %lld",
                      i, (long long)(c->image_patch_offsets[i + 1] - c->image_patch_offsets[i]),
                      (long long)patches);
    int32_t s = c->image_seq[i];
    if (s < 0 || s >= c->n_seqs)
      return aqs_errf(err, AQS_ERR_INVALID, "calib chunk: image %d names sequence %d of %d", i, s,
                      c->n_seqs);
    if (c->image_n_tokens[i] < 1 || c->image_token_start[i] < 0 ||
        (int64_t)c->image_token_start[i] + c->image_n_tokens[i] > c->seq_lens[s])
      return aqs_errf(err, AQS_ERR_INVALID,
                      "calib chunk: image %d tokens [%d, +%d) outside sequence %d (length %d)", i,
                      c->image_token_start[i], c->image_n_tokens[i], s, c->seq_lens[s]);
  }
  if (c->image_patch_offsets[c->n_images] != c->n_patches)
    return aqs_errf(err, AQS_ERR_INVALID, "calib chunk: %lld patches but offsets end at %lld",
                    (long long)c->n_patches, (long long)c->image_patch_offsets[c->n_images]);
  return AQS_OK;
}

/* Appends n bytes to a pre-sized buffer. */
static uint8_t *put_bytes(uint8_t *p, const void *src, size_t n) {
  if (n) memcpy(p, src, n);
  return p + n;
}

aqs_status aqs_calib_chunk_encode(const aqs_calib_chunk *c, uint8_t **out, size_t *out_len,
                                  aqs_err *err) {
  *out = NULL;
  *out_len = 0;
  aqs_status st = aqs_calib_chunk_check(c, err);
  if (st != AQS_OK) return st;
  int32_t patch_dim = c->n_images ? c->patch_dim : 0;
  size_t len = CHUNK_HEADER_BYTES + (size_t)c->n_seqs * 4 + (size_t)c->n_tokens * 4 +
               (size_t)c->n_images * IMAGE_RECORD_I32 * 4 +
               (size_t)c->n_patches * (size_t)patch_dim * 4;
  uint8_t *buf = malloc(len), *p = buf;
  if (!buf) return aqs_errf(err, AQS_ERR_NOMEM, "calib chunk: out of memory (%zu bytes)", len);
  int32_t head32[4] = {c->n_seqs, c->n_images, patch_dim, 0};
  int64_t head64[2] = {c->n_tokens, c->n_patches};
  p = put_bytes(p, CHUNK_MAGIC, 8);
  p = put_bytes(p, head32, sizeof head32);
  p = put_bytes(p, head64, sizeof head64);
  p = put_bytes(p, c->seq_lens, (size_t)c->n_seqs * 4);
  p = put_bytes(p, c->token_ids, (size_t)c->n_tokens * 4);
  for (int32_t i = 0; i < c->n_images; i++) {
    int32_t rec[IMAGE_RECORD_I32] = {c->image_seq[i], c->image_token_start[i], c->image_n_tokens[i],
                                     c->image_grid_thw[3 * i], c->image_grid_thw[3 * i + 1],
                                     c->image_grid_thw[3 * i + 2]};
    p = put_bytes(p, rec, sizeof rec);
  }
  p = put_bytes(p, c->pixel_patches, (size_t)c->n_patches * (size_t)patch_dim * 4);
  if ((size_t)(p - buf) != len) {
    free(buf);
    return aqs_errf(err, AQS_ERR_INTERNAL, "calib chunk: encoded size mismatch");
  }
  *out = buf;
  *out_len = len;
  return AQS_OK;
}

/* Allocates zeroed arrays for the given counts; AQS_ERR_NOMEM on failure. */
static aqs_status chunk_alloc(aqs_calib_chunk *c, aqs_err *err) {
  c->seq_lens = calloc((size_t)c->n_seqs + 1, sizeof *c->seq_lens);
  c->seq_offsets = calloc((size_t)c->n_seqs + 1, sizeof *c->seq_offsets);
  c->token_ids = calloc((size_t)c->n_tokens + 1, sizeof *c->token_ids);
  c->image_seq = calloc((size_t)c->n_images + 1, sizeof *c->image_seq);
  c->image_token_start = calloc((size_t)c->n_images + 1, sizeof *c->image_token_start);
  c->image_n_tokens = calloc((size_t)c->n_images + 1, sizeof *c->image_n_tokens);
  c->image_grid_thw = calloc((size_t)c->n_images * 3 + 1, sizeof *c->image_grid_thw);
  c->image_patch_offsets = calloc((size_t)c->n_images + 1, sizeof *c->image_patch_offsets);
  c->pixel_patches = calloc((size_t)c->n_patches * (size_t)c->patch_dim + 1, sizeof *c->pixel_patches);
  if (!c->seq_lens || !c->seq_offsets || !c->token_ids || !c->image_seq || !c->image_token_start ||
      !c->image_n_tokens || !c->image_grid_thw || !c->image_patch_offsets || !c->pixel_patches) {
    aqs_calib_chunk_free(c);
    return aqs_errf(err, AQS_ERR_NOMEM, "calib chunk: out of memory");
  }
  return AQS_OK;
}

aqs_status aqs_calib_chunk_decode(const uint8_t *bytes, size_t len, const char *what,
                                  aqs_calib_chunk *c, aqs_err *err) {
  memset(c, 0, sizeof *c);
  if (!what) what = "calib chunk";
  if (len < CHUNK_HEADER_BYTES || memcmp(bytes, CHUNK_MAGIC, 8) != 0)
    return aqs_errf(err, AQS_ERR_CORRUPT, "%s: not a calib chunk (bad magic or %zu bytes)", what, len);
  int32_t head32[4];
  int64_t head64[2];
  memcpy(head32, bytes + 8, sizeof head32);
  memcpy(head64, bytes + 8 + sizeof head32, sizeof head64);
  int32_t n_seqs = head32[0], n_images = head32[1], patch_dim = head32[2];
  int64_t n_tokens = head64[0], n_patches = head64[1];
  if (n_seqs < 0 || n_images < 0 || patch_dim < 0 || head32[3] != 0 || n_tokens < 0 ||
      n_patches < 0 || (n_images == 0 && (patch_dim != 0 || n_patches != 0)) ||
      (n_images > 0 && patch_dim != AQS_CALIB_PATCH_DIM))
    return aqs_errf(err, AQS_ERR_CORRUPT, "%s: inconsistent calib chunk header", what);
  /* Size check in 64-bit arithmetic before any allocation (counts are bounded by len). */
  uint64_t body = (uint64_t)n_seqs * 4 + (uint64_t)n_images * IMAGE_RECORD_I32 * 4;
  if ((uint64_t)n_tokens > len || (uint64_t)n_patches > len)
    return aqs_errf(err, AQS_ERR_CORRUPT, "%s: calib chunk is truncated", what);
  body += (uint64_t)n_tokens * 4 + (uint64_t)n_patches * (uint64_t)patch_dim * 4;
  if (body != len - CHUNK_HEADER_BYTES)
    return aqs_errf(err, AQS_ERR_CORRUPT, "%s: calib chunk has %zu bytes, header implies %llu",
                    what, len, (unsigned long long)(body + CHUNK_HEADER_BYTES));
  c->n_seqs = n_seqs;
  c->n_images = n_images;
  c->patch_dim = patch_dim;
  c->n_tokens = n_tokens;
  c->n_patches = n_patches;
  aqs_status st = chunk_alloc(c, err);
  if (st != AQS_OK) return st;
  const uint8_t *p = bytes + CHUNK_HEADER_BYTES;
  memcpy(c->seq_lens, p, (size_t)n_seqs * 4);
  p += (size_t)n_seqs * 4;
  memcpy(c->token_ids, p, (size_t)n_tokens * 4);
  p += (size_t)n_tokens * 4;
  for (int32_t s = 0; s < n_seqs; s++) c->seq_offsets[s + 1] = c->seq_offsets[s] + c->seq_lens[s];
  for (int32_t i = 0; i < n_images; i++, p += IMAGE_RECORD_I32 * 4) {
    int32_t rec[IMAGE_RECORD_I32];
    memcpy(rec, p, sizeof rec);
    c->image_seq[i] = rec[0];
    c->image_token_start[i] = rec[1];
    c->image_n_tokens[i] = rec[2];
    memcpy(c->image_grid_thw + 3 * i, rec + 3, 3 * sizeof(int32_t));
    /* grid = t * h * w, checked against n_patches factor by factor (the product of three int32
     * may overflow 64 bits) */
    int64_t grid = rec[3];
    if (rec[4] >= 1 && grid >= 1 && grid <= n_patches / rec[4]) grid *= rec[4];
    else grid = -1;
    if (rec[5] >= 1 && grid >= 1 && grid <= n_patches / rec[5]) grid *= rec[5];
    else grid = -1;
    if (grid < 1 || grid > n_patches) {
      aqs_calib_chunk_free(c);
      return aqs_errf(err, AQS_ERR_CORRUPT, "%s: image %d has an impossible grid", what, i);
    }
    c->image_patch_offsets[i + 1] = c->image_patch_offsets[i] + grid;
  }
  memcpy(c->pixel_patches, p, (size_t)n_patches * (size_t)patch_dim * 4);
  st = aqs_calib_chunk_check(c, err);
  if (st != AQS_OK) {
    aqs_err_prefix(err, "%s", what);
    err->code = AQS_ERR_CORRUPT;
    aqs_calib_chunk_free(c);
    return AQS_ERR_CORRUPT;
  }
  return AQS_OK;
}

#define SET_FORMAT "aqs-calib-set/1"

aqs_status aqs_calib_set_to_json(const aqs_calib_set *s, char **out, aqs_err *err) {
  *out = NULL;
  json_t *children = json_array();
  for (int32_t i = 0; i < s->n_chunks; i++) json_array_append_new(children, json_string(s->chunk_digests[i]));
  json_t *doc = json_pack(
      "{s:s,s:s,s:o,s:I,s:I,s:I,s:I,s:i,s:i,s:{s:i,s:i,s:i},s:{s:i,s:i,s:i}}", "format", SET_FORMAT,
      "modality", s->modality, "children", children, "n_seqs", (json_int_t)s->n_seqs, "n_tokens",
      (json_int_t)s->n_tokens, "n_images", (json_int_t)s->n_images, "n_skipped",
      (json_int_t)s->n_skipped, "chunk_seqs", s->chunk_seqs, "max_seq_len", s->max_seq_len,
      "special_ids", "image_pad", s->image_pad_id, "vision_start", s->vision_start_id, "vision_end",
      s->vision_end_id, "vision", "patch_size", s->patch_size, "temporal_patch_size",
      s->temporal_patch_size, "merge_size", s->merge_size);
  if (!doc) return aqs_errf(err, AQS_ERR_NOMEM, "calib set: cannot build manifest JSON");
  aqs_status st = aqs_json_canonical(doc, out, NULL, err);
  json_decref(doc);
  return st;
}

static aqs_status get_int(json_t *obj, const char *key, int64_t lo, int64_t hi, int64_t *out,
                          const char *what, aqs_err *err) {
  json_t *v = json_object_get(obj, key);
  if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
    return aqs_errf(err, AQS_ERR_CORRUPT, "%s: calib-set manifest: bad or missing \"%s\"", what, key);
  *out = json_integer_value(v);
  return AQS_OK;
}

aqs_status aqs_calib_set_from_json(const char *json, size_t len, const char *what,
                                   aqs_calib_set *s, aqs_err *err) {
  memset(s, 0, sizeof *s);
  if (!what) what = "calib set";
  json_error_t jerr;
  json_t *doc = json_loadb(json, len, 0, &jerr);
  if (!doc) return aqs_errf(err, AQS_ERR_CORRUPT, "%s: calib-set manifest is not JSON: %s", what, jerr.text);
  aqs_status st = AQS_OK;
  const char *format = json_string_value(json_object_get(doc, "format"));
  const char *modality = json_string_value(json_object_get(doc, "modality"));
  json_t *children = json_object_get(doc, "children");
  json_t *special = json_object_get(doc, "special_ids"), *vision = json_object_get(doc, "vision");
  if (!format || strcmp(format, SET_FORMAT) != 0 || !modality ||
      (strcmp(modality, "text") != 0 && strcmp(modality, "image+text") != 0) ||
      !json_is_array(children) || !json_is_object(special) || !json_is_object(vision)) {
    st = aqs_errf(err, AQS_ERR_CORRUPT, "%s: not an %s manifest", what, SET_FORMAT);
    goto done;
  }
  snprintf(s->modality, sizeof s->modality, "%s", modality);
  int64_t v[12];
  if ((st = get_int(doc, "n_seqs", 0, INT64_MAX, &v[0], what, err)) ||
      (st = get_int(doc, "n_tokens", 0, INT64_MAX, &v[1], what, err)) ||
      (st = get_int(doc, "n_images", 0, INT64_MAX, &v[2], what, err)) ||
      (st = get_int(doc, "n_skipped", 0, INT64_MAX, &v[3], what, err)) ||
      (st = get_int(doc, "chunk_seqs", 1, INT32_MAX, &v[4], what, err)) ||
      (st = get_int(doc, "max_seq_len", 1, INT32_MAX, &v[5], what, err)) ||
      (st = get_int(special, "image_pad", -1, INT32_MAX, &v[6], what, err)) ||
      (st = get_int(special, "vision_start", -1, INT32_MAX, &v[7], what, err)) ||
      (st = get_int(special, "vision_end", -1, INT32_MAX, &v[8], what, err)) ||
      (st = get_int(vision, "patch_size", 0, 4096, &v[9], what, err)) ||
      (st = get_int(vision, "temporal_patch_size", 0, 64, &v[10], what, err)) ||
      (st = get_int(vision, "merge_size", 0, 64, &v[11], what, err)))
    goto done;
  s->n_seqs = v[0];
  s->n_tokens = v[1];
  s->n_images = v[2];
  s->n_skipped = v[3];
  s->chunk_seqs = (int32_t)v[4];
  s->max_seq_len = (int32_t)v[5];
  s->image_pad_id = (int32_t)v[6];
  s->vision_start_id = (int32_t)v[7];
  s->vision_end_id = (int32_t)v[8];
  s->patch_size = (int32_t)v[9];
  s->temporal_patch_size = (int32_t)v[10];
  s->merge_size = (int32_t)v[11];
  size_t n = json_array_size(children);
  if ((int64_t)n != (s->n_seqs + s->chunk_seqs - 1) / s->chunk_seqs) {
    st = aqs_errf(err, AQS_ERR_CORRUPT, "%s: %zu chunks for %lld sequences of %d per chunk", what,
                  n, (long long)s->n_seqs, s->chunk_seqs);
    goto done;
  }
  s->n_chunks = (int32_t)n;
  s->chunk_digests = calloc(n + 1, sizeof *s->chunk_digests);
  if (!s->chunk_digests) {
    st = aqs_errf(err, AQS_ERR_NOMEM, "%s: out of memory", what);
    goto done;
  }
  for (size_t i = 0; i < n; i++) {
    const char *d = json_string_value(json_array_get(children, i));
    if (!d || strlen(d) != AQS_CALIB_DIGEST_LEN - 1 || strncmp(d, "sha256:", 7) != 0) {
      st = aqs_errf(err, AQS_ERR_CORRUPT, "%s: chunk %zu is not a digest", what, i);
      goto done;
    }
    memcpy(s->chunk_digests[i], d, AQS_CALIB_DIGEST_LEN);
  }
done:
  json_decref(doc);
  if (st != AQS_OK) aqs_calib_set_free(s);
  return st;
}

/* splitmix64: tiny, well-mixed, and fixed forever (the order is part of every digest). */
static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

/* Uniform integer in [0, bound) by rejection (no modulo bias). */
static uint64_t uniform_below(uint64_t *state, uint64_t bound) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t r;
  do r = splitmix64(state);
  while (r >= limit);
  return r % bound;
}

aqs_status aqs_calib_sample_order(int64_t n_total, int64_t n_samples, uint64_t seed, int64_t *out,
                                  aqs_err *err) {
  if (n_total < 0 || n_samples < 0 || n_samples > n_total)
    return aqs_errf(err, AQS_ERR_INVALID, "cannot sample %lld of %lld items", (long long)n_samples,
                    (long long)n_total);
  int64_t *perm = malloc(((size_t)n_total + 1) * sizeof *perm);
  if (!perm) return aqs_errf(err, AQS_ERR_NOMEM, "sample order: out of memory for %lld items", (long long)n_total);
  for (int64_t i = 0; i < n_total; i++) perm[i] = i;
  uint64_t state = seed;
  /* Forward Fisher-Yates: position i is final after step i, so any prefix is stable. */
  for (int64_t i = 0; i < n_samples; i++) {
    int64_t j = i + (int64_t)uniform_below(&state, (uint64_t)(n_total - i));
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
    out[i] = perm[i];
  }
  free(perm);
  return AQS_OK;
}
