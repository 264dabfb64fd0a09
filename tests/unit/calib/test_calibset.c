/* tests/unit/calib/test_calibset.c: the calib chunk encoding (round trip, determinism, every
 * corruption refused), the manifest JSON, and the prefix-stable sample order. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/calib/calibset.h"

/* A chunk of 3 sequences; with_image puts a 1x2x4 image (8 patches, 2 tokens) in sequence 1. */
static void make_chunk(aqs_calib_chunk *c, int with_image) {
  memset(c, 0, sizeof *c);
  static const int32_t lens[3] = {4, 7, 2};
  c->n_seqs = 3;
  c->seq_lens = malloc(3 * sizeof(int32_t));
  c->seq_offsets = malloc(4 * sizeof(int64_t));
  memcpy(c->seq_lens, lens, sizeof lens);
  c->seq_offsets[0] = 0;
  for (int s = 0; s < 3; s++) c->seq_offsets[s + 1] = c->seq_offsets[s] + lens[s];
  c->n_tokens = c->seq_offsets[3];
  c->token_ids = malloc((size_t)c->n_tokens * sizeof(int32_t));
  for (int64_t i = 0; i < c->n_tokens; i++) c->token_ids[i] = (int32_t)(1000 + i * 7);
  c->image_patch_offsets = calloc(2, sizeof(int64_t));
  if (!with_image) return;
  c->n_images = 1;
  c->image_seq = malloc(sizeof(int32_t));
  c->image_token_start = malloc(sizeof(int32_t));
  c->image_n_tokens = malloc(sizeof(int32_t));
  c->image_grid_thw = malloc(3 * sizeof(int32_t));
  c->image_seq[0] = 1;
  c->image_token_start[0] = 1;
  c->image_n_tokens[0] = 2;
  c->image_grid_thw[0] = 1;
  c->image_grid_thw[1] = 2;
  c->image_grid_thw[2] = 4;
  c->image_patch_offsets[1] = 8;
  c->n_patches = 8;
  c->patch_dim = AQS_CALIB_PATCH_DIM;
  c->pixel_patches = malloc(8 * AQS_CALIB_PATCH_DIM * sizeof(float));
  for (int i = 0; i < 8 * AQS_CALIB_PATCH_DIM; i++) c->pixel_patches[i] = (float)i * 0.25f - 3.0f;
}

static void assert_chunks_equal(const aqs_calib_chunk *a, const aqs_calib_chunk *b) {
  assert_int_equal(a->n_seqs, b->n_seqs);
  assert_int_equal(a->n_tokens, b->n_tokens);
  assert_memory_equal(a->seq_lens, b->seq_lens, (size_t)a->n_seqs * 4);
  assert_memory_equal(a->seq_offsets, b->seq_offsets, ((size_t)a->n_seqs + 1) * 8);
  assert_memory_equal(a->token_ids, b->token_ids, (size_t)a->n_tokens * 4);
  assert_int_equal(a->n_images, b->n_images);
  assert_int_equal(a->n_patches, b->n_patches);
  if (!a->n_images) return;
  assert_memory_equal(a->image_grid_thw, b->image_grid_thw, (size_t)a->n_images * 12);
  assert_memory_equal(a->image_token_start, b->image_token_start, (size_t)a->n_images * 4);
  assert_memory_equal(a->image_patch_offsets, b->image_patch_offsets, ((size_t)a->n_images + 1) * 8);
  assert_memory_equal(a->pixel_patches, b->pixel_patches, (size_t)a->n_patches * AQS_CALIB_PATCH_DIM * 4);
}

static void test_roundtrip(void **state) {
  (void)state;
  for (int with_image = 0; with_image < 2; with_image++) {
    aqs_calib_chunk c, d;
    make_chunk(&c, with_image);
    uint8_t *bytes, *bytes2;
    size_t len, len2;
    aqs_err err = {0};
    assert_int_equal(aqs_calib_chunk_encode(&c, &bytes, &len, &err), AQS_OK);
    assert_int_equal(aqs_calib_chunk_decode(bytes, len, "t", &d, &err), AQS_OK);
    assert_chunks_equal(&c, &d);
    /* deterministic: re-encoding the decoded chunk gives the same bytes */
    assert_int_equal(aqs_calib_chunk_encode(&d, &bytes2, &len2, &err), AQS_OK);
    assert_int_equal(len, len2);
    assert_memory_equal(bytes, bytes2, len);
    assert_int_equal(len, 40 + 3 * 4 + 13 * 4 + (size_t)with_image * (24 + 8 * 1176 * 4));
    free(bytes);
    free(bytes2);
    aqs_calib_chunk_free(&c);
    aqs_calib_chunk_free(&d);
  }
}

/* Every truncation and a set of header/record corruptions are refused with AQS_ERR_CORRUPT. */
static void test_decode_rejects_corruption(void **state) {
  (void)state;
  aqs_calib_chunk c, d;
  make_chunk(&c, 1);
  uint8_t *bytes;
  size_t len;
  aqs_err err = {0};
  assert_int_equal(aqs_calib_chunk_encode(&c, &bytes, &len, &err), AQS_OK);
  for (size_t cut = 0; cut < len; cut += (cut < 200 ? 1 : 997)) {
    assert_int_equal(aqs_calib_chunk_decode(bytes, cut, "sha256:abc", &d, &err), AQS_ERR_CORRUPT);
    assert_non_null(strstr(err.msg, "sha256:abc"));
  }
  uint8_t *bad = malloc(len);
  /* offsets: magic 0, n_seqs 8, n_images 12, patch_dim 16, pad 20, n_tokens 24, n_patches 32,
   * seq_lens 40.., tokens 52.., image record 104.. (seq, start, ntok, t, h, w) */
  static const size_t fields[] = {0, 8, 12, 16, 20, 24, 32, 40, 104, 108, 112, 116, 120};
  for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
    memcpy(bad, bytes, len);
    bad[fields[f]] ^= 0x41;
    aqs_status st = aqs_calib_chunk_decode(bad, len, "x", &d, &err);
    if (st == AQS_OK) fprintf(stderr, "corruption at byte %zu accepted\n", fields[f]);
    assert_int_equal(st, AQS_ERR_CORRUPT);
  }
  /* an image grid whose t * h * w overflows 64 bits (found by the fuzzer: UBSan) is impossible */
  memcpy(bad, bytes, len);
  const int32_t huge = INT32_MAX;
  for (int k = 0; k < 3; k++) memcpy(bad + 116 + 4 * k, &huge, 4);
  assert_int_equal(aqs_calib_chunk_decode(bad, len, "x", &d, &err), AQS_ERR_CORRUPT);
  assert_non_null(strstr(err.msg, "image 0 has an impossible grid"));
  free(bad);
  free(bytes);
  aqs_calib_chunk_free(&c);
}

static void test_check_names_violation(void **state) {
  (void)state;
  aqs_calib_chunk c;
  make_chunk(&c, 1);
  aqs_err err = {0};
  c.image_token_start[0] = 6; /* 6 + 2 > 7 tokens of sequence 1 */
  assert_int_equal(aqs_calib_chunk_check(&c, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "outside sequence 1"));
  uint8_t *bytes;
  size_t len;
  assert_int_equal(aqs_calib_chunk_encode(&c, &bytes, &len, &err), AQS_ERR_INVALID);
  aqs_calib_chunk_free(&c);
}

static void test_manifest_json(void **state) {
  (void)state;
  aqs_calib_set s = {0}, t;
  snprintf(s.modality, sizeof s.modality, "image+text");
  s.n_seqs = 10;
  s.n_tokens = 1234;
  s.n_images = 10;
  s.n_skipped = 2;
  s.chunk_seqs = 4;
  s.max_seq_len = 512;
  s.image_pad_id = 151655;
  s.vision_start_id = 151652;
  s.vision_end_id = 151653;
  s.patch_size = 14;
  s.temporal_patch_size = 2;
  s.merge_size = 2;
  s.n_chunks = 3;
  s.chunk_digests = calloc(3, sizeof *s.chunk_digests);
  for (int i = 0; i < 3; i++) {
    snprintf(s.chunk_digests[i], AQS_CALIB_DIGEST_LEN, "sha256:");
    memset(s.chunk_digests[i] + 7, 'a' + i, 64);
  }
  char *json;
  aqs_err err = {0};
  assert_int_equal(aqs_calib_set_to_json(&s, &json, &err), AQS_OK);
  assert_non_null(strstr(json, "\"children\":[\"sha256:aaaa"));
  assert_int_equal(aqs_calib_set_from_json(json, strlen(json), "m", &t, &err), AQS_OK);
  assert_string_equal(t.modality, "image+text");
  assert_int_equal(t.n_seqs, 10);
  assert_int_equal(t.n_tokens, 1234);
  assert_int_equal(t.n_skipped, 2);
  assert_int_equal(t.image_pad_id, 151655);
  assert_int_equal(t.merge_size, 2);
  assert_int_equal(t.n_chunks, 3);
  assert_string_equal(t.chunk_digests[2], s.chunk_digests[2]);
  /* chunk count must match n_seqs / chunk_seqs */
  s.n_seqs = 20;
  char *bad_json;
  assert_int_equal(aqs_calib_set_to_json(&s, &bad_json, &err), AQS_OK);
  aqs_calib_set u;
  assert_int_equal(aqs_calib_set_from_json(bad_json, strlen(bad_json), "m2", &u, &err), AQS_ERR_CORRUPT);
  assert_non_null(strstr(err.msg, "m2"));
  assert_int_equal(aqs_calib_set_from_json("{\"format\":1}", 12, "m3", &u, &err), AQS_ERR_CORRUPT);
  free(json);
  free(bad_json);
  aqs_calib_set_free(&s);
  aqs_calib_set_free(&t);
}

static void test_sample_order(void **state) {
  (void)state;
  enum { N = 1000 };
  int64_t a[N], b[300], c[N];
  aqs_err err = {0};
  assert_int_equal(aqs_calib_sample_order(N, N, 7, a, &err), AQS_OK);
  assert_int_equal(aqs_calib_sample_order(N, 300, 7, b, &err), AQS_OK);
  assert_memory_equal(a, b, sizeof b); /* prefix-stable */
  char seen[N] = {0};
  for (int i = 0; i < N; i++) {
    assert_true(a[i] >= 0 && a[i] < N);
    assert_false(seen[a[i]]);
    seen[a[i]] = 1;
  }
  assert_int_equal(aqs_calib_sample_order(N, N, 8, c, &err), AQS_OK);
  int same = 0;
  for (int i = 0; i < N; i++) same += a[i] == c[i];
  assert_true(same < 20); /* another seed, another order */
  /* pinned: the order is part of every calib-set digest and must never change */
  int64_t pin[5];
  assert_int_equal(aqs_calib_sample_order(10, 5, 0, pin, &err), AQS_OK);
  printf("order(10, seed 0): %lld %lld %lld %lld %lld\n", (long long)pin[0], (long long)pin[1],
         (long long)pin[2], (long long)pin[3], (long long)pin[4]);
  static const int64_t want[5] = {5, 1, 9, 7, 0};
  assert_memory_equal(pin, want, sizeof want);
  assert_int_equal(aqs_calib_sample_order(3, 4, 0, pin, &err), AQS_ERR_INVALID);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_roundtrip),
    cmocka_unit_test(test_decode_rejects_corruption),
    cmocka_unit_test(test_check_names_violation),
    cmocka_unit_test(test_manifest_json),
    cmocka_unit_test(test_sample_order),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
