/* tests/unit/calib/test_stage.c: the calib-set stage end to end on a real store with the
 * synthetic tiny model's tokenizer and preprocessor config: caption and image+caption sets,
 * cache hits (also from another working directory with relative paths), shared chunk prefixes,
 * and every bad-input case naming the file and line. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/stages/calib_set.h"
#include "engine/calib/rows.h"
#include "engine/image/image.h"
#include "engine/image/qwen_vision.h"
#include "engine/model/synth.h"
#include "engine/tokenizer/tokenizer.h"
#include "store/store.h"

typedef struct fixture {
  char *dir;
  char model[2048], imgs[2048], tokenizer[4096], processor[4096], captions[4096], jsonl[4096];
  aqs_store *store;
} fixture;

static void copy_file(const char *from, const char *to) {
  size_t len;
  char *data = tu_read_file(from, &len);
  if (!data) fprintf(stderr, "missing %s\n", from);
  assert_non_null(data);
  tu_write_file(to, data, len);
  free(data);
}

static const char *const image_names[] = {"rgb_101x67.png", "jpeg420_131x97.jpg", "gray_61x43.png",
                                          "palette_133x71.png", "jpegprog_150x113.jpg",
                                          "rgba_75x119.png"};
#define N_IMAGES 6

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  f->dir = tu_mkdtemp("calib");
  aqs_err err = {0};
  snprintf(f->model, sizeof f->model, "%s/model", f->dir);
  aqs_synth_opts so = {.preset = "tiny", .seed = 1, .out_dir = f->model, .threads = 1};
  if (aqs_synth_write(&so, &err) != AQS_OK) {
    fprintf(stderr, "synth: %s\n", err.msg);
    return -1;
  }
  snprintf(f->tokenizer, sizeof f->tokenizer, "%s/tokenizer.json", f->model);
  snprintf(f->processor, sizeof f->processor, "%s/preprocessor_config.json", f->model);
  char store_path[4200];
  snprintf(store_path, sizeof store_path, "%s/store", f->dir);
  if (aqs_store_init(store_path, NULL, &err) || aqs_store_open(store_path, 0, &f->store, &err)) {
    fprintf(stderr, "store: %s\n", err.msg);
    return -1;
  }
  snprintf(f->captions, sizeof f->captions, "%s/captions.txt", f->dir);
  FILE *cf = fopen(f->captions, "w");
  for (int i = 0; i < 20; i++) fprintf(cf, "a photo of %d small cats on the table\n", i);
  fclose(cf);
  snprintf(f->imgs, sizeof f->imgs, "%s/imgs", f->dir);
  mkdir(f->imgs, 0755);
  snprintf(f->jsonl, sizeof f->jsonl, "%s/imgs/rows.jsonl", f->dir);
  FILE *jf = fopen(f->jsonl, "w");
  for (int i = 0; i < N_IMAGES; i++) {
    char to[4300];
    snprintf(to, sizeof to, "%s/%s", f->imgs, image_names[i]);
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/images/%s", image_names[i]);
    copy_file(tu_src_path(rel), to);
    fprintf(jf, "{\"image\": \"%s\", \"caption\": \"the picture number %d\"}\n", image_names[i], i);
  }
  fclose(jf);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  aqs_store_close(f->store);
  tu_rm_rf(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static aqs_calib_opts caption_opts(const fixture *f, int64_t samples, int32_t chunk) {
  aqs_calib_opts o = {0};
  o.captions_path = f->captions;
  o.tokenizer_path = f->tokenizer;
  o.samples = samples;
  o.seed = 3;
  o.max_len = 64;
  o.chunk_seqs = chunk;
  return o;
}

static void test_captions_build_then_hit(void **state) {
  fixture *f = *state;
  aqs_calib_opts o = caption_opts(f, 10, 4);
  aqs_calib_result r1, r2;
  aqs_err err = {0};
  aqs_status st = aqs_calib_build(f->store, &o, &r1, &err);
  if (st) fprintf(stderr, "%s\n", err.msg);
  assert_int_equal(st, AQS_OK);
  assert_false(r1.hit);
  assert_int_equal(r1.set.n_seqs, 10);
  assert_int_equal(r1.set.n_chunks, 3);
  assert_int_equal(r1.set.n_images, 0);
  assert_string_equal(r1.set.modality, "text");
  assert_int_equal(aqs_calib_build(f->store, &o, &r2, &err), AQS_OK);
  assert_true(r2.hit);
  assert_true(aqs_digest_eq(&r1.digest, &r2.digest));
  /* The first sequence decodes to the caption the seeded order picked first. */
  int64_t order[1];
  assert_int_equal(aqs_calib_sample_order(20, 1, 3, order, &err), AQS_OK);
  aqs_calib_chunk c;
  assert_int_equal(aqs_calib_chunk_load(f->store, &r2.set, 0, &c, &err), AQS_OK);
  assert_int_equal(c.n_seqs, 4);
  aqs_tokenizer *tok;
  assert_int_equal(aqs_tokenizer_load(f->tokenizer, &tok, &err), AQS_OK);
  char *text;
  assert_int_equal(aqs_tokenizer_decode(tok, c.token_ids, (size_t)c.seq_lens[0], 0, &text, NULL, &err), AQS_OK);
  char want[128];
  snprintf(want, sizeof want, "a photo of %lld small cats on the table", (long long)order[0]);
  assert_string_equal(text, want);
  free(text);
  aqs_tokenizer_free(tok);
  aqs_calib_chunk_free(&c);
  int64_t tokens = 0;
  for (int32_t i = 0; i < r2.set.n_chunks; i++) {
    assert_int_equal(aqs_calib_chunk_load(f->store, &r2.set, i, &c, &err), AQS_OK);
    assert_int_equal(c.first_seq, (int64_t)i * 4);
    tokens += c.n_tokens;
    aqs_calib_chunk_free(&c);
  }
  assert_int_equal(tokens, r2.set.n_tokens);
  /* Another seed is another key. */
  o.seed = 4;
  aqs_calib_result r3;
  assert_int_equal(aqs_calib_build(f->store, &o, &r3, &err), AQS_OK);
  assert_false(r3.hit);
  assert_false(aqs_digest_eq(&r1.digest, &r3.digest));
  aqs_calib_result_free(&r1);
  aqs_calib_result_free(&r2);
  aqs_calib_result_free(&r3);
}

/* 8 samples extend 4 samples: the first chunk is the same object. */
static void test_prefix_chunks_shared(void **state) {
  fixture *f = *state;
  aqs_calib_opts o4 = caption_opts(f, 4, 4), o8 = caption_opts(f, 8, 4);
  aqs_calib_result r4, r8;
  aqs_err err = {0};
  assert_int_equal(aqs_calib_build(f->store, &o4, &r4, &err), AQS_OK);
  assert_int_equal(aqs_calib_build(f->store, &o8, &r8, &err), AQS_OK);
  assert_int_equal(r4.set.n_chunks, 1);
  assert_int_equal(r8.set.n_chunks, 2);
  assert_string_equal(r4.set.chunk_digests[0], r8.set.chunk_digests[0]);
  assert_false(aqs_digest_eq(&r4.digest, &r8.digest));
  aqs_calib_result_free(&r4);
  aqs_calib_result_free(&r8);
}

static void test_lookup_only(void **state) {
  fixture *f = *state;
  aqs_calib_opts o = caption_opts(f, 5, 4);
  o.lookup_only = 1;
  aqs_calib_result r;
  aqs_err err = {0};
  assert_int_equal(aqs_calib_build(f->store, &o, &r, &err), AQS_OK);
  assert_false(r.hit);
  assert_non_null(r.key_doc);
  assert_non_null(strstr(r.key_doc, "\"samples\":5"));
  assert_int_equal(r.set.n_chunks, 0);
  aqs_calib_result_free(&r);
}

/* The chat template (captions.h) wraps image prompts too: <|im_start|>user\n<|vision_start|>... */
static void test_chat_template_images(void **state) {
  fixture *f = *state;
  aqs_calib_opts o = {0};
  o.images_jsonl = f->jsonl;
  o.tokenizer_path = f->tokenizer;
  o.processor_config = f->processor;
  o.samples = 2;
  o.max_len = 1024;
  o.template_name = "chat";
  aqs_calib_result r;
  aqs_err err = {0};
  assert_int_equal(aqs_calib_build(f->store, &o, &r, &err), AQS_OK);
  aqs_calib_chunk c;
  assert_int_equal(aqs_calib_chunk_load(f->store, &r.set, 0, &c, &err), AQS_OK);
  aqs_tokenizer *tok;
  assert_int_equal(aqs_tokenizer_load(f->tokenizer, &tok, &err), AQS_OK);
  assert_int_equal(c.token_ids[0], aqs_tokenizer_token_to_id(tok, "<|im_start|>"));
  int32_t start = c.image_token_start[0];
  assert_int_equal(c.token_ids[start - 1], r.set.vision_start_id);
  char *text;
  assert_int_equal(aqs_tokenizer_decode(tok, c.token_ids, (size_t)start - 1, 0, &text, NULL, &err), AQS_OK);
  assert_string_equal(text, "<|im_start|>user\n");
  free(text);
  assert_int_equal(c.token_ids[c.seq_lens[0] - 2], aqs_tokenizer_token_to_id(tok, "<|im_end|>"));
  o.template_name = "no placeholder";
  aqs_calib_result r2;
  assert_int_equal(aqs_calib_build(f->store, &o, &r2, &err), AQS_ERR_INVALID);
  aqs_tokenizer_free(tok);
  aqs_calib_chunk_free(&c);
  aqs_calib_result_free(&r);
}

static void write_text(const char *path, const char *text, size_t len) { tu_write_file(path, text, len); }

static void test_caption_bad_lines(void **state) {
  fixture *f = *state;
  char path[4200];
  snprintf(path, sizeof path, "%s/bad.txt", f->dir);
  static const char text[] = "one good caption\ntwo good caption\n\nthree good\nbad \xff\xfe utf8\nfour good\nfive good\n";
  write_text(path, text, sizeof text - 1);
  aqs_calib_opts o = caption_opts(f, 3, 4);
  o.captions_path = path;
  aqs_calib_result r;
  aqs_err err = {0};
  /* the blank line 3 is not a caption (skipped silently); the invalid UTF-8 of line 5 is an error */
  assert_int_equal(aqs_calib_build(f->store, &o, &r, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "bad.txt:5: invalid UTF-8"));
  assert_null(strstr(err.msg, "bad.txt:3"));
  o.skip_bad = 1;
  assert_int_equal(aqs_calib_build(f->store, &o, &r, &err), AQS_OK);
  assert_int_equal(r.set.n_skipped, 1);
  assert_non_null(strstr(r.first_bad, "bad.txt:5:"));
  aqs_calib_result_free(&r);
  /* blank lines alone never stop a build, with or without skip_bad */
  static const char blanks[] = "one good caption\n\n   \ntwo good caption\r\n\r\nthree\n";
  write_text(path, blanks, sizeof blanks - 1);
  o.skip_bad = 0;
  assert_int_equal(aqs_calib_build(f->store, &o, &r, &err), AQS_OK);
  assert_int_equal(r.set.n_seqs, 3);
  assert_int_equal(r.set.n_skipped, 0);
  aqs_calib_result_free(&r);
  o.skip_bad = 1;
  /* invalid UTF-8 is reported with its line and byte offset */
  static const char text2[] = "fine\nbad \xff utf8\n";
  write_text(path, text2, sizeof text2 - 1);
  o.skip_bad = 0;
  o.samples = 1;
  assert_int_equal(aqs_calib_build(f->store, &o, &r, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "bad.txt:2: invalid UTF-8 at byte 4"));
  /* an over-long line */
  size_t big = AQS_CALIB_MAX_LINE_BYTES + 10;
  char *long_text = malloc(big + 8);
  memcpy(long_text, "ok\n", 3);
  memset(long_text + 3, 'x', big);
  long_text[3 + big] = '\n';
  write_text(path, long_text, big + 4);
  free(long_text);
  assert_int_equal(aqs_calib_build(f->store, &o, &r, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "bad.txt:2: line too long"));
  /* fewer usable rows than samples: all of them are used, the key holds the real count (so
   * asking for exactly that many is a hit), and the note says so; a missing file */
  o.samples = 5;
  o.skip_bad = 1;
  assert_int_equal(aqs_calib_build(f->store, &o, &r, &err), AQS_OK);
  assert_int_equal(r.set.n_seqs, 1);
  assert_int_equal(r.samples_used, 1);
  assert_non_null(strstr(r.note, "has 1 usable row, fewer than the 5 samples asked for: the calib-set uses all 1"));
  aqs_digest five_key = r.key, five_set = r.digest;
  aqs_calib_result_free(&r);
  o.samples = 1;
  assert_int_equal(aqs_calib_build(f->store, &o, &r, &err), AQS_OK);
  assert_int_equal(r.hit, 1);
  assert_true(aqs_digest_eq(&r.key, &five_key));
  assert_true(aqs_digest_eq(&r.digest, &five_set));
  assert_string_equal(r.note, "");
  aqs_calib_result_free(&r);
  /* nothing usable at all is an error */
  write_text(path, "\n\n", 2);
  assert_int_equal(aqs_calib_build(f->store, &o, &r, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "no usable rows"));
  o.captions_path = "/nonexistent/captions.txt";
  assert_int_equal(aqs_calib_build(f->store, &o, &r, &err), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "/nonexistent/captions.txt"));
}

static aqs_calib_opts image_opts(const fixture *f, int64_t samples) {
  aqs_calib_opts o = {0};
  o.images_jsonl = f->jsonl;
  o.tokenizer_path = f->tokenizer;
  o.processor_config = f->processor;
  o.samples = samples;
  o.seed = 11;
  o.max_len = 1024;
  o.chunk_seqs = 2;
  return o;
}

static void test_images_build(void **state) {
  fixture *f = *state;
  aqs_calib_opts o = image_opts(f, 4);
  aqs_calib_result r;
  aqs_err err = {0};
  aqs_status st = aqs_calib_build(f->store, &o, &r, &err);
  if (st) fprintf(stderr, "%s\n", err.msg);
  assert_int_equal(st, AQS_OK);
  assert_false(r.hit);
  assert_string_equal(r.set.modality, "image+text");
  assert_int_equal(r.set.n_images, 4);
  assert_int_equal(r.set.n_chunks, 2);
  assert_int_equal(r.set.merge_size, 2);
  aqs_qwen_vision_cfg cfg;
  assert_int_equal(aqs_qwen_vision_cfg_load(f->processor, &cfg, &err), AQS_OK);
  int64_t order[4];
  assert_int_equal(aqs_calib_sample_order(N_IMAGES, 4, 11, order, &err), AQS_OK);
  for (int32_t ci = 0; ci < 2; ci++) {
    aqs_calib_chunk c;
    assert_int_equal(aqs_calib_chunk_load(f->store, &r.set, ci, &c, &err), AQS_OK);
    assert_int_equal(c.n_images, 2);
    for (int32_t i = 0; i < c.n_images; i++) {
      const int32_t *seq = c.token_ids + c.seq_offsets[c.image_seq[i]];
      int32_t start = c.image_token_start[i], n = c.image_n_tokens[i];
      const int32_t *g = c.image_grid_thw + 3 * i;
      assert_int_equal(n, g[0] * g[1] * g[2] / 4);
      assert_int_equal(seq[start - 1], r.set.vision_start_id);
      for (int32_t k = 0; k < n; k++) assert_int_equal(seq[start + k], r.set.image_pad_id);
      assert_int_equal(seq[start + n], r.set.vision_end_id);
      /* patches equal a direct preprocess of the sampled file */
      char path[4300];
      snprintf(path, sizeof path, "%s/%s", f->imgs, image_names[order[ci * 2 + i]]);
      aqs_image img;
      aqs_qwen_pixels px;
      assert_int_equal(aqs_image_load_file(path, 0, &img, &err), AQS_OK);
      assert_int_equal(aqs_qwen_preprocess(&img, &cfg, &px, NULL, &err), AQS_OK);
      assert_int_equal(px.grid_h, g[1]);
      assert_int_equal(px.grid_w, g[2]);
      assert_memory_equal(px.patches, c.pixel_patches + c.image_patch_offsets[i] * AQS_CALIB_PATCH_DIM,
                          (size_t)px.n_patches * AQS_CALIB_PATCH_DIM * sizeof(float));
      aqs_qwen_pixels_free(&px);
      aqs_image_free(&img);
    }
    aqs_calib_chunk_free(&c);
  }
  /* Same inputs from another working directory, with relative paths: a hit, same digest. */
  char cwd[4096];
  assert_non_null(getcwd(cwd, sizeof cwd));
  assert_int_equal(chdir(f->dir), 0);
  aqs_calib_opts rel = o;
  rel.images_jsonl = "imgs/rows.jsonl";
  rel.tokenizer_path = "model/tokenizer.json";
  rel.processor_config = "model/preprocessor_config.json";
  aqs_calib_result r2;
  st = aqs_calib_build(f->store, &rel, &r2, &err);
  assert_int_equal(chdir(cwd), 0);
  assert_int_equal(st, AQS_OK);
  assert_true(r2.hit);
  assert_true(aqs_digest_eq(&r.digest, &r2.digest));
  aqs_calib_result_free(&r2);
  /* An image the walk visits changes content: a miss and another digest. */
  char victim[4300];
  snprintf(victim, sizeof victim, "%s/%s", f->imgs, image_names[order[0]]);
  copy_file(tu_src_path("tests/fixtures/images/tiny_13x9.png"), victim);
  assert_int_equal(aqs_calib_build(f->store, &o, &r2, &err), AQS_OK);
  assert_false(r2.hit);
  assert_false(aqs_digest_eq(&r.digest, &r2.digest));
  char orig[256];
  snprintf(orig, sizeof orig, "tests/fixtures/images/%s", image_names[order[0]]);
  copy_file(tu_src_path(orig), victim); /* restore for the next test */
  aqs_calib_result_free(&r2);
  aqs_calib_result_free(&r);
}

/* Missing, truncated, empty and non-image files: errors naming the file; skipped with skip_bad. */
static void test_images_bad(void **state) {
  fixture *f = *state;
  char path[4300], jsonl[4300];
  size_t len;
  char *png = tu_read_file(tu_src_path("tests/fixtures/images/rgb_283x157.png"), &len);
  assert_non_null(png);
  snprintf(path, sizeof path, "%s/truncated.png", f->imgs);
  tu_write_file(path, png, len / 2);
  free(png);
  char *jpg = tu_read_file(tu_src_path("tests/fixtures/images/jpeg420_131x97.jpg"), &len);
  snprintf(path, sizeof path, "%s/truncated.jpg", f->imgs);
  tu_write_file(path, jpg, len / 3);
  free(jpg);
  snprintf(path, sizeof path, "%s/empty.png", f->imgs);
  tu_write_file(path, "", 0);
  snprintf(path, sizeof path, "%s/text.png", f->imgs);
  tu_write_file(path, "hello, not an image\n", 20);
  static const char *const bad[] = {"missing.png", "truncated.png", "truncated.jpg", "empty.png", "text.png"};
  static const char *const want[] = {"missing.png", "truncated.png: corrupt PNG",
                                     "truncated.jpg: corrupt JPEG", "empty.png: empty image file",
                                     "text.png: not a PNG or JPEG image"};
  for (int b = 0; b < 5; b++) {
    snprintf(jsonl, sizeof jsonl, "%s/bad%d.jsonl", f->imgs, b);
    FILE *jf = fopen(jsonl, "w");
    fprintf(jf, "{\"image\": \"%s\", \"caption\": \"bad one\"}\n", bad[b]);
    fclose(jf);
    aqs_calib_opts o = image_opts(f, 1);
    o.images_jsonl = jsonl;
    aqs_calib_result r;
    aqs_err err = {0};
    assert_int_not_equal(aqs_calib_build(f->store, &o, &r, &err), AQS_OK);
    if (!strstr(err.msg, want[b])) fprintf(stderr, "got: %s\n", err.msg);
    assert_non_null(strstr(err.msg, want[b]));
    assert_non_null(strstr(err.msg, ":1: ")); /* the JSONL line */
  }
  /* All five bad rows plus the good ones, skip_bad: every bad row the walk meets is counted. */
  snprintf(jsonl, sizeof jsonl, "%s/mixed.jsonl", f->imgs);
  FILE *jf = fopen(jsonl, "w");
  for (int b = 0; b < 5; b++) fprintf(jf, "{\"image\": \"%s\", \"caption\": \"bad\"}\n", bad[b]);
  fprintf(jf, "not json at all\n{\"image\": \"x.png\"}\n");
  for (int i = 0; i < 3; i++) fprintf(jf, "{\"image\": \"%s\", \"caption\": \"good %d\"}\n", image_names[i], i);
  fclose(jf);
  aqs_calib_opts o = image_opts(f, 3);
  o.images_jsonl = jsonl;
  aqs_calib_result r;
  aqs_err err = {0};
  assert_int_equal(aqs_calib_build(f->store, &o, &r, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "mixed.jsonl:6: invalid JSON"));
  o.skip_bad = 1;
  aqs_status st = aqs_calib_build(f->store, &o, &r, &err);
  if (st) fprintf(stderr, "%s\n", err.msg);
  assert_int_equal(st, AQS_OK);
  assert_int_equal(r.set.n_seqs, 3);
  assert_int_equal(r.set.n_images, 3);
  assert_int_equal(r.set.n_skipped, 7); /* 2 bad JSONL lines + 5 bad images */
  aqs_calib_result_free(&r);
  /* An image whose placeholder does not fit --max-len is a bad row naming the image. */
  o.skip_bad = 0;
  o.images_jsonl = f->jsonl;
  o.max_len = 8;
  o.samples = 1;
  assert_int_equal(aqs_calib_build(f->store, &o, &r, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "more than --max-len 8"));
  assert_non_null(strstr(err.msg, "rows.jsonl:"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_captions_build_then_hit),
    cmocka_unit_test(test_prefix_chunks_shared),
    cmocka_unit_test(test_lookup_only),
    cmocka_unit_test(test_caption_bad_lines),
    cmocka_unit_test(test_images_build),
    cmocka_unit_test(test_images_bad),
    cmocka_unit_test(test_chat_template_images),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
