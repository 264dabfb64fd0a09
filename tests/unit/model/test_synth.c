/* tests/unit/model/test_synth.c: synthetic checkpoints: byte determinism (seed, thread count),
 * loadability through aqs_qwen_model_open in both namings, weight statistics, sharding, the
 * tokenizer files, planted outliers (exact placement, compensation, FP8 sensitivity) and the
 * `aqs synth-model` command line. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/model/qwen_config.h"
#include "engine/model/synth.h"
#include "kernels/fp8.h"

static char *root;

static int setup(void **state) {
  (void)state;
  root = tu_mkdtemp("synth");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_rm_rf(root);
  free(root);
  return 0;
}

static const char *sub(const char *name) {
  static char buf[4][4096];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", root, name);
  return buf[k];
}

static void synth(const char *preset, uint64_t seed, const char *dir, int threads,
                  const char *outliers, aqs_qwen_naming naming, uint64_t shard_bytes) {
  aqs_synth_opts o = {.preset = preset, .seed = seed, .out_dir = dir, .threads = threads,
                      .naming = naming, .shard_max_bytes = shard_bytes};
  aqs_err e = {0};
  if (outliers && aqs_synth_parse_outliers(outliers, &o, &e)) fail_msg("%s", e.msg);
  if (aqs_synth_write(&o, &e)) fail_msg("%s", e.msg);
}

static int same_file(const char *a, const char *b) {
  size_t na, nb;
  char *x = tu_read_file(a, &na), *y = tu_read_file(b, &nb);
  int same = x && y && na == nb && memcmp(x, y, na) == 0;
  free(x);
  free(y);
  return same;
}

static void test_prng(void **state) {
  (void)state;
  enum { N = 100001 };
  float *buf = malloc(N * sizeof *buf);
  aqs_synth_normal_fill(9, 77, 3, buf, N); /* odd start exercises the unpaired head */
  double sum = 0, sq = 0;
  for (int i = 0; i < N; i++) {
    assert_true(buf[i] == aqs_synth_normal(9, 77, 3 + (uint64_t)i));
    sum += buf[i];
    sq += (double)buf[i] * buf[i];
  }
  assert_true(fabs(sum / N) < 0.01);
  assert_true(fabs(sq / N - 1.0) < 0.02);
  assert_true(aqs_synth_normal(9, 77, 5) != aqs_synth_normal(10, 77, 5));
  assert_true(aqs_synth_normal(9, 77, 5) != aqs_synth_normal(9, 78, 5));
  free(buf);
}

static const char *const files[] = {"config.json", "generation_config.json",
                                    "preprocessor_config.json", "tokenizer.json",
                                    "tokenizer_config.json", "model.safetensors", NULL};

static void test_determinism(void **state) {
  (void)state;
  synth("tiny", 3, sub("a"), 1, NULL, AQS_NAMING_HF5, 0);
  synth("tiny", 3, sub("b"), 3, NULL, AQS_NAMING_HF5, 0);
  synth("tiny", 4, sub("c"), 2, NULL, AQS_NAMING_HF5, 0);
  char pa[4200], pb[4200], pc[4200];
  for (int i = 0; files[i]; i++) {
    snprintf(pa, sizeof pa, "%s/%s", sub("a"), files[i]);
    snprintf(pb, sizeof pb, "%s/%s", sub("b"), files[i]);
    snprintf(pc, sizeof pc, "%s/%s", sub("c"), files[i]);
    if (!same_file(pa, pb)) fail_msg("%s differs between runs with 1 and 3 threads", files[i]);
    /* Another seed changes the weights only. */
    assert_int_equal(same_file(pa, pc), strcmp(files[i], "model.safetensors") != 0);
  }
  /* Re-running into the same directory replaces the files with identical bytes. */
  synth("tiny", 3, sub("a"), 2, NULL, AQS_NAMING_HF5, 0);
  snprintf(pa, sizeof pa, "%s/model.safetensors", sub("a"));
  snprintf(pb, sizeof pb, "%s/model.safetensors", sub("b"));
  assert_true(same_file(pa, pb));
}

static double tensor_std(const aqs_st_tensor *t) {
  const uint16_t *p = t->data;
  double sq = 0;
  for (uint64_t i = 0; i < t->numel; i++) sq += (double)aqs_bf16_to_f32(p[i]) * aqs_bf16_to_f32(p[i]);
  return sqrt(sq / (double)t->numel);
}

static void test_open_and_statistics(void **state) {
  (void)state;
  synth("tiny", 0, sub("t5"), 0, NULL, AQS_NAMING_HF5, 0);
  synth("tiny", 0, sub("t4"), 0, NULL, AQS_NAMING_HF4, 0);
  aqs_qwen_model *m;
  aqs_ckpt *c;
  aqs_err e = {0};
  if (aqs_qwen_model_open(sub("t5"), &m, &c, &e)) fail_msg("%s", e.msg);
  assert_int_equal(m->naming, AQS_NAMING_HF5);
  assert_int_equal(m->cfg.layout, 5);
  aqs_qwen_config want;
  assert_int_equal(aqs_synth_preset("tiny", &want, &e), AQS_OK);
  assert_memory_equal(&m->cfg.text, &want.text, sizeof want.text);
  assert_int_equal(c->ntensors, m->ntensors - 1); /* tied lm_head not written */
  assert_null(aqs_ckpt_find(c, "lm_head.weight"));
  const aqs_st_tensor *t = aqs_ckpt_find(c, "model.language_model.layers.2.mlp.down_proj.weight");
  assert_non_null(t);
  assert_int_equal(t->dtype, AQS_DT_BF16);
  double want_std = 0.02 * sqrt(2048.0 / 128.0); /* fan-in = intermediate 128 */
  assert_true(fabs(tensor_std(t) - want_std) < 0.08 * want_std);
  t = aqs_ckpt_find(c, "model.language_model.layers.0.self_attn.q_proj.bias");
  assert_true(fabs(tensor_std(t) - 0.02) < 0.3 * 0.02); /* only 64 samples */
  t = aqs_ckpt_find(c, "model.visual.blocks.1.norm2.weight");
  for (uint64_t i = 0; i < t->numel; i++) assert_int_equal(((const uint16_t *)t->data)[i], 0x3f80);
  t = aqs_ckpt_find(c, "model.visual.patch_embed.proj.weight");
  assert_int_equal(t->ndim, 5);
  aqs_qwen_model_free(m);
  /* The hf4 naming holds the same values under the old names (tensor by tensor). */
  aqs_ckpt *c4;
  aqs_qwen_model *m4;
  if (aqs_qwen_model_open(sub("t4"), &m4, &c4, &e)) fail_msg("%s", e.msg);
  assert_int_equal(m4->naming, AQS_NAMING_HF4);
  const aqs_st_tensor *a = aqs_ckpt_find(c, "model.language_model.layers.3.self_attn.o_proj.weight");
  const aqs_st_tensor *b = aqs_ckpt_find(c4, "model.layers.3.self_attn.o_proj.weight");
  assert_non_null(b);
  assert_int_equal(a->nbytes, b->nbytes);
  assert_memory_equal(a->data, b->data, a->nbytes); /* values follow the hf5 name */
  assert_non_null(aqs_ckpt_find(c4, "visual.merger.mlp.2.bias"));
  aqs_ckpt_close(c4);
  aqs_qwen_model_free(m4);
  aqs_ckpt_close(c);
}

static void test_shards(void **state) {
  (void)state;
  synth("small", 1, sub("one"), 0, NULL, AQS_NAMING_HF5, 0);
  synth("small", 1, sub("many"), 0, NULL, AQS_NAMING_HF5, 4u << 20);
  aqs_qwen_model *m;
  aqs_ckpt *one, *many;
  aqs_err e = {0};
  if (aqs_qwen_model_open(sub("one"), &m, &one, &e)) fail_msg("%s", e.msg);
  aqs_qwen_model_free(m);
  if (aqs_qwen_model_open(sub("many"), &m, &many, &e)) fail_msg("%s", e.msg);
  assert_int_equal(one->nfiles, 1);
  assert_true(many->nfiles >= 3);
  assert_non_null(many->index_path);
  assert_non_null(strstr(many->files[0]->path, "model-00001-of-0000"));
  assert_non_null(aqs_ckpt_find(many, "lm_head.weight")); /* small: untied head */
  assert_int_equal(one->ntensors, many->ntensors);
  for (size_t i = 0; i < one->ntensors; i++) {
    const aqs_st_tensor *x = one->tensors[i], *y = many->tensors[i];
    assert_string_equal(x->name, y->name);
    assert_int_equal(x->nbytes, y->nbytes);
    if (memcmp(x->data, y->data, x->nbytes)) fail_msg("%s differs across shard layouts", x->name);
  }
  aqs_ckpt_close(one);
  aqs_ckpt_close(many);
  aqs_qwen_model_free(m);
  /* A later single-file run into the sharded directory removes the stale shards. */
  synth("small", 1, sub("many"), 0, NULL, AQS_NAMING_HF5, 0);
  assert_int_equal(aqs_ckpt_open(sub("many"), &many, &e), AQS_OK);
  assert_int_equal(many->nfiles, 1);
  aqs_ckpt_close(many);
}

static void test_tokenizer_files(void **state) {
  (void)state;
  synth("tiny", 0, sub("tok"), 0, NULL, AQS_NAMING_HF5, 0);
  aqs_qwen_config c;
  aqs_err e = {0};
  assert_int_equal(aqs_qwen_config_load(sub("tok"), &c, &e), AQS_OK);
  char p[4200];
  snprintf(p, sizeof p, "%s/tokenizer.json", sub("tok"));
  json_error_t jerr;
  json_t *tok = json_load_file(p, 0, &jerr);
  assert_non_null(tok);
  json_t *model = json_object_get(tok, "model");
  assert_string_equal(json_string_value(json_object_get(model, "type")), "BPE");
  json_t *vocab = json_object_get(model, "vocab");
  json_t *merges = json_object_get(model, "merges");
  int regular = c.bos_token_id;
  assert_int_equal(json_object_size(vocab), (size_t)regular);
  assert_int_equal(json_array_size(merges), (size_t)(regular - 256));
  assert_int_equal(json_integer_value(json_object_get(vocab, "\xc4\xa0")), /* "Ġ" = byte ' ' */
                   json_integer_value(json_object_get(vocab, "\xc4\xa0")));
  assert_non_null(json_object_get(vocab, "\xc4\xa0the"));
  /* Each merge "A B": A, B and AB exist, AB has a larger id than both parts. */
  size_t i;
  json_t *mj;
  json_array_foreach(merges, i, mj) {
    const char *s = json_string_value(mj);
    const char *sp = strchr(s, ' ');
    assert_non_null(sp);
    char left[256], joined[512];
    snprintf(left, sizeof left, "%.*s", (int)(sp - s), s);
    snprintf(joined, sizeof joined, "%s%s", left, sp + 1);
    json_t *l = json_object_get(vocab, left), *r = json_object_get(vocab, sp + 1);
    json_t *j = json_object_get(vocab, joined);
    if (!l || !r || !j) fail_msg("merge %zu \"%s\" has a missing part", i, s);
    assert_true(json_integer_value(j) > json_integer_value(l));
    assert_true(json_integer_value(j) > json_integer_value(r));
  }
  json_t *added = json_object_get(tok, "added_tokens");
  assert_int_equal(json_array_size(added), 22);
  json_t *pad = json_array_get(added, 12);
  assert_string_equal(json_string_value(json_object_get(pad, "content")), "<|image_pad|>");
  assert_int_equal(json_integer_value(json_object_get(pad, "id")), c.image_token_id);
  json_t *last = json_array_get(added, 21);
  assert_true(json_integer_value(json_object_get(last, "id")) < c.text.vocab_size);
  json_decref(tok);
  snprintf(p, sizeof p, "%s/tokenizer_config.json", sub("tok"));
  json_t *tc = json_load_file(p, 0, &jerr);
  assert_string_equal(json_string_value(json_object_get(tc, "eos_token")), "<|im_end|>");
  assert_non_null(strstr(json_string_value(json_object_get(tc, "chat_template")), "<|image_pad|>"));
  json_decref(tc);
  snprintf(p, sizeof p, "%s/preprocessor_config.json", sub("tok"));
  json_t *pp = json_load_file(p, 0, &jerr);
  assert_int_equal(json_integer_value(json_object_get(pp, "patch_size")), 14);
  assert_int_equal(json_integer_value(json_object_get(pp, "merge_size")), 2);
  assert_int_equal(json_integer_value(json_object_get(pp, "max_pixels")), 64 * 28 * 28);
  json_decref(pp);
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* Relative RMS FP8 error (per-tensor scale amax / 448) of a BF16 weight [out, in] over its
 * ordinary columns: columns whose max exceeds 100x the median column max are planted outlier
 * channels, whose inputs the generator scaled down by the same factor, so their own error does
 * not reach the output. */
static double fp8_rel_error(const aqs_st_tensor *t) {
  const uint16_t *w = t->data;
  int64_t rows = t->shape[0], cols = t->shape[1];
  float amax = aqs_fp8_amax_bf16(w, t->numel), scale;
  assert_int_equal(aqs_fp8_scale_from_amax(amax, &scale, NULL), AQS_OK);
  uint8_t *q = malloc(t->numel);
  float *d = malloc(t->numel * sizeof *d);
  float *col_max = calloc((size_t)cols, sizeof *col_max), *sorted = malloc((size_t)cols * sizeof *sorted);
  aqs_fp8_quantize_bf16(w, t->numel, scale, AQS_FP8_REF_TORCH_CUDA, q);
  aqs_fp8_dequantize(q, t->numel, scale, d);
  for (int64_t i = 0; i < rows * cols; i++)
    col_max[i % cols] = fmaxf(col_max[i % cols], fabsf(aqs_bf16_to_f32(w[i])));
  memcpy(sorted, col_max, (size_t)cols * sizeof *sorted);
  qsort(sorted, (size_t)cols, sizeof *sorted, cmp_float);
  float median = sorted[cols / 2];
  double err = 0, ref = 0;
  for (int64_t i = 0; i < rows * cols; i++) {
    if (col_max[i % cols] > 100 * median) continue;
    double x = aqs_bf16_to_f32(w[i]);
    err += (d[i] - x) * (d[i] - x);
    ref += x * x;
  }
  free(q);
  free(d);
  free(col_max);
  free(sorted);
  return sqrt(err / ref);
}

static void test_outliers(void **state) {
  (void)state;
  synth("tiny", 5, sub("plain"), 0, NULL, AQS_NAMING_HF5, 0);
  synth("tiny", 5, sub("out"), 0, "lm.1.down:1e5,vis.0.proj:1e5,lm.2.o:1e5", AQS_NAMING_HF5, 0);
  aqs_qwen_model *m;
  aqs_ckpt *plain, *out;
  aqs_err e = {0};
  if (aqs_qwen_model_open(sub("plain"), NULL, &plain, &e)) fail_msg("%s", e.msg);
  if (aqs_qwen_model_open(sub("out"), &m, &out, &e)) fail_msg("%s", e.msg);
  /* Untouched tensors are bit-identical; touched ones change only in planted rows / columns. */
  const char *touched[] = {"model.language_model.layers.1.mlp.down_proj.weight",
                           "model.language_model.layers.1.mlp.up_proj.weight",
                           "model.language_model.layers.2.self_attn.o_proj.weight",
                           "model.language_model.layers.2.self_attn.v_proj.weight",
                           "model.language_model.layers.2.self_attn.v_proj.bias",
                           "model.visual.blocks.0.attn.proj.weight",
                           "model.visual.blocks.0.attn.qkv.weight",
                           "model.visual.blocks.0.attn.qkv.bias", NULL};
  for (size_t i = 0; i < plain->ntensors; i++) {
    const aqs_st_tensor *a = plain->tensors[i], *b = out->tensors[i];
    int is_touched = 0;
    for (int k = 0; touched[k]; k++) is_touched |= strcmp(a->name, touched[k]) == 0;
    assert_int_equal(memcmp(a->data, b->data, a->nbytes) != 0, is_touched);
  }
  /* down_proj [64, 128]: exactly 4 columns scaled by 1e5; up_proj [128, 64]: the same 4 rows
   * zeroed (dead channels). */
  const aqs_st_tensor *dp = aqs_ckpt_find(plain, "model.language_model.layers.1.mlp.down_proj.weight");
  const aqs_st_tensor *dq = aqs_ckpt_find(out, "model.language_model.layers.1.mlp.down_proj.weight");
  const aqs_st_tensor *up = aqs_ckpt_find(plain, "model.language_model.layers.1.mlp.up_proj.weight");
  const aqs_st_tensor *uq = aqs_ckpt_find(out, "model.language_model.layers.1.mlp.up_proj.weight");
  int cols = 0;
  for (int col = 0; col < 128; col++) {
    int scaled = 0;
    for (int row = 0; row < 64; row++) {
      float x = aqs_bf16_to_f32(((const uint16_t *)dp->data)[row * 128 + col]);
      float y = aqs_bf16_to_f32(((const uint16_t *)dq->data)[row * 128 + col]);
      if (x != y) {
        assert_true(fabsf(y / x - 1e5f) < 1e5f * 0.01f);
        scaled++;
      }
    }
    assert_true(scaled == 0 || scaled == 64);
    if (scaled) {
      cols++;
      for (int k = 0; k < 64; k++) {
        assert_true(aqs_bf16_to_f32(((const uint16_t *)up->data)[col * 64 + k]) != 0.0f);
        assert_true(aqs_bf16_to_f32(((const uint16_t *)uq->data)[col * 64 + k]) == 0.0f);
      }
    }
  }
  assert_int_equal(cols, AQS_SYNTH_OUTLIER_CHANNELS);
  /* FP8 sensitivity: the planted groups' weights quantize far worse than every other group. */
  double worst_plain = 0, best_planted = 1e9;
  for (size_t g = 0; g < m->ngroups; g++) {
    int planted = !strcmp(m->groups[g].id, "lm.1.down") || !strcmp(m->groups[g].id, "vis.0.proj") ||
                  !strcmp(m->groups[g].id, "lm.2.o");
    char name[200];
    snprintf(name, sizeof name, "%s.weight", m->groups[g].members[0].module);
    double err = fp8_rel_error(aqs_ckpt_find(out, name));
    if (getenv("AQS_TEST_VERBOSE")) printf("%s %.4f\n", m->groups[g].id, err);
    if (planted) best_planted = fmin(best_planted, err);
    else worst_plain = fmax(worst_plain, err);
  }
  assert_true(worst_plain < 0.05);
  assert_true(best_planted > 0.2);
  aqs_qwen_model_free(m);
  aqs_ckpt_close(plain);
  aqs_ckpt_close(out);
}

static void test_errors(void **state) {
  (void)state;
  aqs_synth_opts o = {.preset = "tiny", .out_dir = sub("err")};
  aqs_err e = {0};
  const char *bad[] = {"lm.1.down", "lm.1.down:0.5", ":5", "lm.1.down:abc", "lm.1.down:inf", NULL};
  for (int i = 0; bad[i]; i++) {
    o.noutliers = 0;
    assert_int_equal(aqs_synth_parse_outliers(bad[i], &o, &e), AQS_ERR_INVALID);
    assert_non_null(strstr(e.msg, "expected GROUP:FACTOR"));
  }
  o.noutliers = 0;
  assert_int_equal(aqs_synth_parse_outliers("lm.9.qkv:1e5", &o, &e), AQS_OK);
  assert_int_equal(aqs_synth_write(&o, &e), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "outlier group \"lm.9.qkv\" does not exist in preset tiny"));
  assert_int_equal(access(sub("err"), F_OK), -1); /* checked before anything is written */
  o.preset = "7b";
  assert_int_equal(aqs_synth_write(&o, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "unknown preset \"7b\""));
}

static void test_cli(void **state) {
  (void)state;
  if (access(tu_aqs_bin(), X_OK) != 0) fail_msg("aqs binary %s not found (AQS_BIN)", tu_aqs_bin());
  char cmd[8400], *out = NULL;
  snprintf(cmd, sizeof cmd, "%s synth-model --help", tu_aqs_bin());
  assert_int_equal(tu_run(cmd, &out), 0);
  assert_non_null(strstr(out, "usage: aqs synth-model"));
  free(out);
  snprintf(cmd, sizeof cmd, "%s synth-model --preset huge --out %s", tu_aqs_bin(), sub("cli"));
  assert_int_equal(tu_run(cmd, &out), 2);
  assert_non_null(strstr(out, "unknown preset \"huge\""));
  free(out);
  snprintf(cmd, sizeof cmd, "%s synth-model --preset tiny", tu_aqs_bin());
  assert_int_equal(tu_run(cmd, &out), 2);
  assert_non_null(strstr(out, "--out is required"));
  free(out);
  snprintf(cmd, sizeof cmd, "%s synth-model --preset tiny --out %s --outliers lm.4.qkv:1e5",
           tu_aqs_bin(), sub("cli"));
  assert_int_equal(tu_run(cmd, &out), 1);
  assert_non_null(strstr(out, "outlier group \"lm.4.qkv\" does not exist"));
  free(out);
  snprintf(cmd, sizeof cmd, "AQS_PROGRESS=never %s synth-model --preset tiny --seed 3 --out %s --json",
           tu_aqs_bin(), sub("cli"));
  assert_int_equal(tu_run(cmd, &out), 0);
  json_error_t jerr;
  json_t *doc = json_loads(out, 0, &jerr);
  if (!doc) fail_msg("not JSON: %s", out);
  assert_int_equal(json_integer_value(json_object_get(doc, "groups")), 27);
  assert_int_equal(json_integer_value(json_object_get(doc, "seed")), 3);
  json_decref(doc);
  free(out);
  /* The CLI writes the same bytes as the library. */
  synth("tiny", 3, sub("lib"), 0, NULL, AQS_NAMING_HF5, 0);
  char a[4200], b[4200];
  snprintf(a, sizeof a, "%s/model.safetensors", sub("cli"));
  snprintf(b, sizeof b, "%s/model.safetensors", sub("lib"));
  assert_true(same_file(a, b));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_prng),
    cmocka_unit_test(test_determinism),
    cmocka_unit_test(test_open_and_statistics),
    cmocka_unit_test(test_shards),
    cmocka_unit_test(test_tokenizer_files),
    cmocka_unit_test(test_outliers),
    cmocka_unit_test(test_errors),
    cmocka_unit_test(test_cli),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
