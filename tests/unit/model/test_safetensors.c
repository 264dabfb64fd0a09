/* tests/unit/model/test_safetensors.c: the safetensors writer and reader: round trips of every
 * dtype, byte-exact determinism, each header defect's own error, truncation at every length,
 * sharded checkpoints with an index, and the fixtures written by Python `safetensors`. */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/model/safetensors.h"

static char *tmpdir;

static int setup(void **state) {
  (void)state;
  tmpdir = tu_mkdtemp("st");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_rm_rf(tmpdir);
  free(tmpdir);
  return 0;
}

static const char *tmp_path(const char *name) {
  static char buf[2][4096];
  static int k;
  k ^= 1;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
  return buf[k];
}

/* Writes <u64 len><header><data> with no padding (defects need exact control). */
static void write_raw(const char *path, const char *header, const void *data, size_t data_len) {
  size_t hl = strlen(header);
  uint8_t *buf = malloc(8 + hl + data_len + 1);
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
  memcpy(buf + 8, header, hl);
  if (data_len) memcpy(buf + 8 + hl, data, data_len);
  tu_write_file(path, buf, 8 + hl + data_len);
  free(buf);
}

static void expect_open_error(const char *header, size_t data_len, aqs_status code,
                              const char *needle, const char *needle2) {
  uint8_t zeros[64] = {0};
  assert_true(data_len <= sizeof zeros);
  const char *path = tmp_path("bad.safetensors");
  write_raw(path, header, zeros, data_len);
  aqs_st_file *f = (aqs_st_file *)0x1;
  aqs_err e = {0};
  aqs_status st = aqs_st_open(path, &f, &e);
  if (st != code || !strstr(e.msg, needle) || (needle2 && !strstr(e.msg, needle2)) ||
      !strstr(e.msg, path))
    fail_msg("header %s: got status %d, message \"%s\"; wanted %d with \"%s\"", header, st, e.msg,
             code, needle);
  assert_null(f);
}

/* ---- round trip ---- */

typedef struct sample {
  const char *name;
  aqs_dtype dtype;
  int ndim;
  int64_t shape[3];
} sample;

static const sample samples[] = {
  {"a.bf16", AQS_DT_BF16, 2, {3, 5}},   {"b.f16", AQS_DT_F16, 1, {7}},
  {"c.f32", AQS_DT_F32, 3, {2, 1, 3}},  {"d.e4m3", AQS_DT_F8_E4M3, 1, {9}},
  {"e.e5m2", AQS_DT_F8_E5M2, 2, {1, 3}}, {"f.i32", AQS_DT_I32, 1, {4}},
  {"g.i64", AQS_DT_I64, 2, {2, 2}},     {"h.u8", AQS_DT_U8, 1, {5}},
  {"i.bool", AQS_DT_BOOL, 1, {3}},      {"j.scalar", AQS_DT_F32, 0, {0}},
  {"k.empty", AQS_DT_BF16, 2, {0, 4}},
};
#define NSAMPLES (sizeof samples / sizeof samples[0])

static size_t sample_bytes(const sample *s) {
  size_t n = 1;
  for (int d = 0; d < s->ndim; d++) n *= (size_t)s->shape[d];
  return n * aqs_dtype_size(s->dtype);
}

static void sample_data(size_t k, uint8_t *out, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = (uint8_t)(k * 31 + i * 7 + 1);
}

static void write_samples(const char *path) {
  aqs_st_write_item items[NSAMPLES];
  uint8_t *data[NSAMPLES];
  for (size_t k = 0; k < NSAMPLES; k++) {
    size_t n = sample_bytes(&samples[k]);
    data[k] = malloc(n ? n : 1);
    sample_data(k, data[k], n);
    items[k] = (aqs_st_write_item){samples[k].name, samples[k].dtype, samples[k].ndim,
                                   samples[k].shape, data[k]};
  }
  const char *meta[] = {"format", "pt", "note", "ünïcode ok", NULL};
  aqs_err e = {0};
  aqs_status st = aqs_st_write_file(path, items, NSAMPLES, meta, &e);
  if (st) fail_msg("%s", e.msg);
  for (size_t k = 0; k < NSAMPLES; k++) free(data[k]);
}

static void test_round_trip(void **state) {
  (void)state;
  const char *path = tmp_path("rt.safetensors");
  write_samples(path);
  aqs_st_file *f;
  aqs_err e = {0};
  assert_int_equal(aqs_st_open(path, &f, &e), AQS_OK);
  assert_int_equal(f->ntensors, NSAMPLES);
  assert_int_equal(f->data_start % 8, 0);
  assert_string_equal(aqs_st_meta(f, "format"), "pt");
  assert_string_equal(aqs_st_meta(f, "note"), "ünïcode ok");
  assert_null(aqs_st_meta(f, "absent"));
  for (size_t k = 0; k < NSAMPLES; k++) {
    const aqs_st_tensor *t = aqs_st_find(f, samples[k].name);
    assert_non_null(t);
    assert_int_equal(t->dtype, samples[k].dtype);
    assert_int_equal(t->ndim, samples[k].ndim);
    for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], samples[k].shape[d]);
    size_t n = sample_bytes(&samples[k]);
    assert_int_equal(t->nbytes, n);
    uint8_t want[64];
    sample_data(k, want, n);
    if (n) assert_memory_equal(t->data, want, n);
    else assert_null(t->data);
  }
  assert_int_equal(aqs_st_find(f, "j.scalar")->numel, 1);
  assert_int_equal(aqs_st_find(f, "k.empty")->numel, 0);
  assert_null(aqs_st_find(f, "missing"));
  /* Header is JSON padded with spaces up to the 8-aligned data area. */
  assert_int_equal(f->map[8], '{');
  assert_int_equal(f->map[f->data_start - 1] == ' ' || f->map[f->data_start - 1] == '}', 1);
  aqs_st_close(f);
}

static void test_deterministic_bytes(void **state) {
  (void)state;
  write_samples(tmp_path("d1.safetensors"));
  write_samples(tmp_path("d2.safetensors"));
  size_t n1, n2;
  char *a = tu_read_file(tmp_path("d1.safetensors"), &n1);
  char *b = tu_read_file(tmp_path("d2.safetensors"), &n2);
  assert_int_equal(n1, n2);
  assert_memory_equal(a, b, n1);
  free(a);
  free(b);
}

static void test_streaming_writer_errors(void **state) {
  (void)state;
  aqs_err e = {0};
  aqs_st_writer *w;
  const char *path = tmp_path("stream.safetensors");
  int64_t shape[1] = {4};
  assert_int_equal(aqs_st_writer_open(path, &w, &e), AQS_OK);
  assert_int_equal(aqs_st_writer_add(w, "x", AQS_DT_F32, 1, shape, &e), AQS_OK);
  assert_int_equal(aqs_st_writer_add(w, "x", AQS_DT_F32, 1, shape, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "\"x\" used twice"));
  assert_int_equal(aqs_st_writer_add(w, "y", AQS_DT_U8, 1, shape, &e), AQS_OK);
  assert_int_equal(aqs_st_writer_data_bytes(w), 20);
  float xs[4] = {1, 2, 3, 4};
  assert_int_equal(aqs_st_writer_write(w, xs, 3, &e), AQS_OK); /* odd chunking is fine */
  assert_int_equal(aqs_st_writer_write(w, (uint8_t *)xs + 3, 13, &e), AQS_OK);
  assert_int_equal(aqs_st_writer_write(w, xs, 8, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "past the declared 20"));
  assert_int_equal(aqs_st_writer_finish(w, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "16 of 20 declared data bytes"));
  assert_int_equal(access(path, F_OK), -1); /* nothing renamed into place, tmp removed */
  char *out;
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp || true", tmpdir);
  tu_run(cmd, &out);
  assert_int_equal(atoi(out), 0);
  free(out);
}

/* ---- header defects: one message each ---- */

static void test_defects_length(void **state) {
  (void)state;
  const char *path = tmp_path("short.safetensors");
  tu_write_file(path, "\x02\x00\x00", 3);
  aqs_st_file *f;
  aqs_err e = {0};
  assert_int_equal(aqs_st_open(path, &f, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "too short for the 8-byte header length"));
  uint8_t big[16] = {0, 0, 0, 0x10, 0, 0, 0, 0, '{', '}'}; /* 256 MiB header */
  tu_write_file(path, big, 10);
  assert_int_equal(aqs_st_open(path, &f, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "exceeds the 104857600-byte limit"));
  uint8_t past[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
  tu_write_file(path, past, 10);
  assert_int_equal(aqs_st_open(path, &f, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "header length 100 extends past end of file (10 bytes"));
  uint8_t zero[8] = {0};
  tu_write_file(path, zero, 8);
  assert_int_equal(aqs_st_open(path, &f, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "too small for a JSON object"));
  assert_int_equal(aqs_st_open(tmp_path("nope.safetensors"), &f, &e), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "nope.safetensors"));
}

static void test_defects_json(void **state) {
  (void)state;
  expect_open_error("{\"a\xff\": 1}", 0, AQS_ERR_INVALID, "not valid UTF-8", NULL);
  expect_open_error("{\"a\": [1,}", 0, AQS_ERR_INVALID, "not valid JSON", NULL);
  expect_open_error("[1, 2]", 0, AQS_ERR_INVALID, "header is not a JSON object", NULL);
  expect_open_error("{\"__metadata__\": [1]}", 0, AQS_ERR_INVALID, "__metadata__ is not a JSON object", NULL);
  expect_open_error("{\"__metadata__\": {\"k\": 3}}", 0, AQS_ERR_INVALID,
                    "__metadata__ value of \"k\" is not a string", NULL);
  expect_open_error("{\"t\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    " \"t\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                    8, AQS_ERR_INVALID, "duplicate tensor name", NULL);
}

static void test_defects_entries(void **state) {
  (void)state;
  expect_open_error("{\"w\": 5}", 0, AQS_ERR_INVALID, "tensor \"w\": header entry is not an object", NULL);
  expect_open_error("{\"w\": {\"shape\":[1],\"data_offsets\":[0,4]}}", 4, AQS_ERR_INVALID,
                    "tensor \"w\": missing or non-string \"dtype\"", NULL);
  expect_open_error("{\"w\": {\"dtype\":\"F32\",\"shape\":7,\"data_offsets\":[0,4]}}", 4,
                    AQS_ERR_INVALID, "tensor \"w\": missing or non-array \"shape\"", NULL);
  expect_open_error("{\"w\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
                    AQS_ERR_INVALID, "tensor \"w\": \"data_offsets\" must be an array", NULL);
  expect_open_error("{\"w\": {\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
                    AQS_ERR_UNSUPPORTED, "tensor \"w\"", "unknown dtype \"F64\"");
  expect_open_error("{\"w\": {\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                    AQS_ERR_INVALID, "tensor \"w\": shape[0] is not a non-negative integer", NULL);
  expect_open_error("{\"w\": {\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
                    AQS_ERR_INVALID, "shape[0] is not a non-negative integer", NULL);
  expect_open_error("{\"w\": {\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
                    1, AQS_ERR_INVALID, "tensor \"w\": 9 dimensions (at most 8)", NULL);
  expect_open_error("{\"w\": {\"dtype\":\"I64\",\"shape\":[4294967296,4294967296],"
                    "\"data_offsets\":[0,8]}}",
                    8, AQS_ERR_INVALID, "tensor \"w\": element count overflows", NULL);
  expect_open_error("{\"w\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
                    AQS_ERR_INVALID, "data_offsets are not non-negative integers", NULL);
  expect_open_error("{\"w\": {\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4,
                    AQS_ERR_INVALID, "tensor \"w\": data_offsets begin 4 > end 0", NULL);
  expect_open_error("{\"w\": {\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,6]}}", 8,
                    AQS_ERR_INVALID, "tensor \"w\": shape x BF16 size is 8 bytes but data_offsets span 6", NULL);
  expect_open_error("{\"w\": {\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12,
                    AQS_ERR_INVALID, "tensor \"w\": data_offsets [0, 16] extend past end of data (12 bytes", NULL);
  expect_open_error("{\"a\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    " \"b\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                    12, AQS_ERR_INVALID, "tensors \"a\" and \"b\" overlap", NULL);
}

/* Every prefix of a valid file fails cleanly (run under ASan in CI: no out-of-bounds read). */
static void test_truncated_every_length(void **state) {
  (void)state;
  const char *path = tmp_path("full.safetensors");
  write_samples(path);
  size_t n;
  char *bytes = tu_read_file(path, &n);
  const char *cut = tmp_path("cut.safetensors");
  for (size_t len = 0; len < n; len++) {
    tu_write_file(cut, bytes, len);
    aqs_st_file *f;
    aqs_err e = {0};
    aqs_status st = aqs_st_open(cut, &f, &e);
    if (st != AQS_ERR_INVALID) fail_msg("length %zu of %zu: status %d (%s)", len, n, st, e.msg);
  }
  free(bytes);
}

/* ---- sharded checkpoints ---- */

/* One F32 [2] tensor {value, -value} per name (NULL-terminated names). */
static void write_some(const char *path, const char *const *names, float value) {
  int64_t shape[1] = {2};
  float data[2] = {value, -value};
  aqs_st_write_item it[4];
  size_t n = 0;
  for (; names[n]; n++) it[n] = (aqs_st_write_item){names[n], AQS_DT_F32, 1, shape, data};
  aqs_err e = {0};
  assert_int_equal(aqs_st_write_file(path, it, n, NULL, &e), AQS_OK);
}

static void write_one(const char *path, const char *name, float value) {
  const char *names[] = {name, NULL};
  write_some(path, names, value);
}

static void test_sharded_checkpoint(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("ckpt");
  char p[4200];
  snprintf(p, sizeof p, "%s/s-1.safetensors", dir);
  const char *first[] = {"layer.b", "layer.c", NULL};
  write_some(p, first, 2.0f);
  snprintf(p, sizeof p, "%s/s-2.safetensors", dir);
  write_one(p, "layer.a", 1.0f);
  const char *names[] = {"layer.b", "layer.a", "layer.c"};
  const char *shards[] = {"s-1.safetensors", "s-2.safetensors", "s-1.safetensors"};
  aqs_err e = {0};
  assert_int_equal(aqs_st_write_index(dir, names, shards, 3, 24, &e), AQS_OK);
  aqs_ckpt *c;
  assert_int_equal(aqs_ckpt_open(dir, &c, &e), AQS_OK);
  assert_int_equal(c->nfiles, 2);
  assert_int_equal(c->ntensors, 3);
  assert_string_equal(c->tensors[0]->name, "layer.a"); /* name order */
  const aqs_st_tensor *t;
  assert_int_equal(aqs_ckpt_get(c, "layer.b", &t, &e), AQS_OK);
  assert_true(((const float *)t->data)[0] == 2.0f);
  assert_non_null(strstr(t->file->path, "s-1.safetensors"));
  assert_int_equal(aqs_ckpt_get(c, "layer.z", &t, &e), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "tensor \"layer.z\" not found in checkpoint"));
  aqs_ckpt_close(c);
  /* The index must agree with the shards. */
  const char *wrong[] = {"s-2.safetensors", "s-2.safetensors"};
  assert_int_equal(aqs_st_write_index(dir, names, wrong, 2, 16, &e), AQS_OK);
  assert_int_equal(aqs_ckpt_open(dir, &c, &e), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "tensor \"layer.b\" is listed for s-2.safetensors but not found there"));
  assert_int_equal(aqs_st_write_index(dir, names, shards, 2, 16, &e), AQS_OK);
  assert_int_equal(aqs_ckpt_open(dir, &c, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "tensor \"layer.c\" in"));
  assert_non_null(strstr(e.msg, "is not listed in the index"));
  const char *gone[] = {"s-1.safetensors", "s-9.safetensors"};
  assert_int_equal(aqs_st_write_index(dir, names, gone, 2, 16, &e), AQS_OK);
  assert_int_equal(aqs_ckpt_open(dir, &c, &e), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "s-9.safetensors"));
  const char *escape[] = {"s-1.safetensors", "../s-2.safetensors"};
  assert_int_equal(aqs_st_write_index(dir, names, escape, 2, 16, &e), AQS_OK);
  assert_int_equal(aqs_ckpt_open(dir, &c, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "not a file in the same directory"));
  /* No index: every *.safetensors is opened; the same name twice is an error naming both. */
  snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
  unlink(p);
  assert_int_equal(aqs_ckpt_open(dir, &c, &e), AQS_OK);
  assert_int_equal(c->ntensors, 3);
  aqs_ckpt_close(c);
  snprintf(p, sizeof p, "%s/s-3.safetensors", dir);
  write_one(p, "layer.a", 3.0f);
  assert_int_equal(aqs_ckpt_open(dir, &c, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "tensor \"layer.a\" is in both"));
  assert_non_null(strstr(e.msg, "s-3.safetensors"));
  /* A single file by path. */
  assert_int_equal(aqs_ckpt_open(p, &c, &e), AQS_OK);
  assert_int_equal(c->nfiles, 1);
  assert_null(c->index_path);
  aqs_ckpt_close(c);
  tu_rm_rf(dir);
  free(dir);
}

/* ---- files written by Python safetensors (tests/conformance/gen_safetensors_fixtures.py) ---- */

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

static void check_fixture_file(const char *dir, const char *file, json_t *tensors, aqs_ckpt *c) {
  const char *name;
  json_t *want;
  json_object_foreach(tensors, name, want) {
    const aqs_st_tensor *t = aqs_ckpt_find(c, name);
    if (!t) fail_msg("%s/%s: tensor %s missing", dir, file, name);
    assert_string_equal(aqs_dtype_name(t->dtype), json_string_value(json_object_get(want, "dtype")));
    json_t *shape = json_object_get(want, "shape");
    assert_int_equal((size_t)t->ndim, json_array_size(shape));
    for (int d = 0; d < t->ndim; d++)
      assert_int_equal(t->shape[d], json_integer_value(json_array_get(shape, (size_t)d)));
    const char *hex = json_string_value(json_object_get(want, "hex"));
    assert_int_equal(strlen(hex), 2 * t->nbytes);
    const uint8_t *bytes = t->data;
    for (uint64_t i = 0; i < t->nbytes; i++)
      if (bytes[i] != (uint8_t)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1])))
        fail_msg("%s: tensor %s byte %llu differs", file, name, (unsigned long long)i);
  }
}

static void test_python_fixtures(void **state) {
  (void)state;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", tu_src_path("tests/fixtures/safetensors"));
  char expected_path[4200];
  snprintf(expected_path, sizeof expected_path, "%s/expected.json", dir);
  json_error_t jerr;
  json_t *expected = json_load_file(expected_path, 0, &jerr);
  if (!expected) fail_msg("%s: %s", expected_path, jerr.text);
  size_t checked = 0;
  const char *file;
  json_t *spec;
  json_object_foreach(json_object_get(expected, "files"), file, spec) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    aqs_ckpt *c;
    aqs_err e = {0};
    if (aqs_ckpt_open(path, &c, &e)) fail_msg("%s", e.msg);
    assert_int_equal(c->ntensors, json_object_size(json_object_get(spec, "tensors")));
    check_fixture_file(dir, file, json_object_get(spec, "tensors"), c);
    json_t *meta = json_object_get(spec, "metadata");
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
      const char *got = aqs_st_meta(c->files[0], k);
      assert_non_null(got);
      assert_string_equal(got, json_string_value(v));
    }
    checked += c->ntensors;
    aqs_ckpt_close(c);
  }
  assert_true(checked >= 10);
  json_decref(expected);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_round_trip),
    cmocka_unit_test(test_deterministic_bytes),
    cmocka_unit_test(test_streaming_writer_errors),
    cmocka_unit_test(test_defects_length),
    cmocka_unit_test(test_defects_json),
    cmocka_unit_test(test_defects_entries),
    cmocka_unit_test(test_truncated_every_length),
    cmocka_unit_test(test_sharded_checkpoint),
    cmocka_unit_test(test_python_fixtures),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
