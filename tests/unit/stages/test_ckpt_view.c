/* tests/unit/stages/test_ckpt_view.c: aqs_ckpt_view_open (engine/stages/ckpt_view.c) on
 * hand-written checkpoints stored beside a hand-written source: only the tensors that differ are
 * viewed, with their header's dtype/shape and their object's bytes; a checkpoint lacking a source
 * tensor is refused with the tensor named (a missing or damaged object: tests/integration/eval_store.sh). */
#include "unit/store/store_testlib.h"

#include <jansson.h>
#include <sys/stat.h>

#include "engine/stages/ckpt_store.h"
#include "engine/stages/ckpt_view.h"
#include "engine/stages/stage.h"

typedef struct fixture_tensor {
  const char *name, *dtype;
  int rows, cols;
  const void *data;
  size_t nbytes;
} fixture_tensor;

/* dir/model.safetensors holding t[0..n) in order. */
static void write_shard(const char *dir, const fixture_tensor *t, size_t n) {
  json_t *hdr = json_object();
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    json_object_set_new(hdr, t[i].name, json_pack("{s:s, s:[i,i], s:[I,I]}", "dtype", t[i].dtype, "shape", t[i].rows,
                                                  t[i].cols, "data_offsets", (json_int_t)off,
                                                  (json_int_t)(off + t[i].nbytes)));
    off += t[i].nbytes;
  }
  char *js = json_dumps(hdr, JSON_COMPACT);
  json_decref(hdr);
  uint64_t len = strlen(js);
  size_t total = 8 + len + off;
  uint8_t *buf = malloc(total);
  memcpy(buf, &len, 8);
  memcpy(buf + 8, js, len);
  off = 8 + len;
  for (size_t i = 0; i < n; i++) {
    memcpy(buf + off, t[i].data, t[i].nbytes);
    off += t[i].nbytes;
  }
  char path[4400];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  tu_write_file(path, buf, total);
  free(buf);
  free(js);
}

/* Stores a checkpoint directory of one shard; returns its manifest digest. */
static aqs_digest store_ckpt(aqs_store *s, const char *root, const char *tag, const fixture_tensor *t, size_t n) {
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/%s", root, tag);
  assert_int_equal(mkdir(dir, 0755), 0);
  write_shard(dir, t, n);
  aqs_digest d;
  aqs_err err = {0};
  ASSERT_OK(aqs_ckpt_ingest(s, dir, &d, NULL, &err));
  return d;
}

/* The source stage's model manifest ([name, dtype, bytes, digest] rows) for a stored checkpoint. */
static aqs_digest store_source(aqs_store *s, const aqs_digest *ckpt) {
  aqs_err err = {0};
  json_t *doc, *shard, *rows = json_array();
  ASSERT_OK(aqs_ckpt_load_manifest(s, ckpt, "aqs-checkpoint", &doc, &err));
  size_t i;
  json_t *f, *row;
  json_array_foreach(json_object_get(doc, "files"), i, f) {
    const char *type = json_string_value(json_object_get(f, "type"));
    if (!type || strcmp(type, "shard") != 0) continue;
    aqs_digest sd;
    ASSERT_OK(aqs_digest_parse(json_string_value(json_object_get(f, "digest")), &sd, &err));
    ASSERT_OK(aqs_ckpt_load_manifest(s, &sd, "aqs-shard", &shard, &err));
    size_t k;
    json_array_foreach(json_object_get(shard, "tensors"), k, row)
      json_array_append_new(rows, json_pack("[O, s, O, O]", json_array_get(row, 0), "BF16", json_array_get(row, 2),
                                            json_array_get(row, 1)));
    json_decref(shard);
  }
  json_decref(doc);
  json_t *model = json_pack("{s:s, s:i, s:o}", "kind", "aqs-model", "version", 1, "tensors", rows);
  aqs_digest d;
  ASSERT_OK(aqs_put_json(s, model, 0, &d, &err));
  json_decref(model);
  return d;
}

static const uint16_t a_bf16[4] = {0x3f80, 0x4000, 0x4040, 0x4080}, b_bf16[4] = {0x3f00, 0x3e80, 0xbf80, 0x4100};
static const uint8_t b_fp8[4] = {0x38, 0x30, 0xb8, 0x48};
static const float b_scale = 0.25f;

typedef struct env {
  char *dir, *path;
  aqs_store *s;
  aqs_digest source;
} env;

static int setup(void **state) {
  env *v = calloc(1, sizeof *v);
  v->path = tl_new_store("ckpt-view", &v->dir, 0);
  v->s = tl_open(v->path);
  const fixture_tensor src[] = {{"a.weight", "BF16", 2, 2, a_bf16, 8}, {"b.weight", "BF16", 2, 2, b_bf16, 8}};
  aqs_digest ck = store_ckpt(v->s, v->dir, "src", src, 2);
  v->source = store_source(v->s, &ck);
  *state = v;
  return 0;
}

static int teardown(void **state) {
  env *v = *state;
  aqs_store_close(v->s);
  tl_cleanup(v->dir, v->path);
  free(v);
  return 0;
}

/* b quantized: the view holds b.weight (F8_E4M3, its codes) and b.weight_scale, not a.weight. */
static void test_view_holds_only_changed_tensors(void **state) {
  env *v = *state;
  const fixture_tensor t[] = {{"a.weight", "BF16", 2, 2, a_bf16, 8},
                              {"b.weight", "F8_E4M3", 2, 2, b_fp8, 4},
                              {"b.weight_scale", "F32", 1, 1, &b_scale, 4}};
  aqs_digest ck = store_ckpt(v->s, v->dir, "fp8", t, 3);
  aqs_ckpt_view *view;
  aqs_err err = {0};
  ASSERT_OK(aqs_ckpt_view_open(v->s, &ck, &v->source, &view, &err));
  const aqs_ckpt *c = aqs_ckpt_view_ckpt(view);
  assert_int_equal(c->ntensors, 2);
  assert_null(aqs_ckpt_find(c, "a.weight"));
  const aqs_st_tensor *w = aqs_ckpt_find(c, "b.weight"), *sc = aqs_ckpt_find(c, "b.weight_scale");
  assert_non_null(w);
  assert_non_null(sc);
  assert_int_equal(w->dtype, AQS_DT_F8_E4M3);
  assert_int_equal(w->ndim, 2);
  assert_int_equal(w->shape[0], 2);
  assert_memory_equal(w->data, b_fp8, 4);
  float got;
  memcpy(&got, sc->data, 4);
  assert_true(got == b_scale);
  assert_int_equal(aqs_ckpt_view_bytes(view), 8);
  aqs_ckpt_view_close(view);
}

/* A checkpoint without a.weight: the view would serve the source's a.weight; refused, named. */
static void test_missing_source_tensor_is_refused(void **state) {
  env *v = *state;
  const fixture_tensor t[] = {{"b.weight", "F8_E4M3", 2, 2, b_fp8, 4}, {"b.weight_scale", "F32", 1, 1, &b_scale, 4}};
  aqs_digest ck = store_ckpt(v->s, v->dir, "lacks_a", t, 2);
  aqs_ckpt_view *view = (aqs_ckpt_view *)1;
  aqs_err err = {0};
  assert_int_equal(aqs_ckpt_view_open(v->s, &ck, &v->source, &view, &err), AQS_ERR_INVALID);
  assert_null(view);
  assert_non_null(strstr(err.msg, "lacks tensor a.weight of its BF16 source"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_view_holds_only_changed_tensors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_missing_source_tensor_is_refused, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
