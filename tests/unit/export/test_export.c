/* tests/unit/export/test_export.c: ModelOpt FP8 export of a tiny synthetic model under the plans
 * none / half / all: re-reads every shard and checks dtypes, codes, scales, exclusions, that
 * untouched tensors are bit-identical to the source, the manifest, shard sharing between plans,
 * determinism, and each user-reachable error. */
#include "export_fixture.h"

#include <jansson.h>
#include <math.h>

#include "engine/export/diff.h"
#include "engine/model/safetensors.h"
#include "kernels/fp8.h"

static json_t *load_json(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return json_load_file(path, 0, NULL);
}

static int json_array_has(const json_t *arr, const char *s) {
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) if (strcmp(json_string_value(v), s) == 0) return 1;
  return 0;
}

static float scalar_f32(const aqs_st_tensor *t) {
  assert_int_equal(t->dtype, AQS_DT_F32);
  assert_int_equal(t->ndim, 0);
  float v;
  memcpy(&v, t->data, 4);
  return v;
}

/* Re-reads the export in dir and checks it tensor by tensor against the source and the plan. */
static void check_export(fx_model *fx, const aqs_plan *plan, const char *dir,
                         const aqs_export_result *res) {
  aqs_err e;
  aqs_ckpt *src = NULL, *out = NULL;
  fx_check(aqs_ckpt_open(fx->src, &src, &e), &e);
  fx_check(aqs_ckpt_open(dir, &out, &e), &e);
  assert_non_null(out->index_path);
  size_t expected_out = 0, n_fp8_weights = 0;
  for (size_t i = 0; i < src->ntensors; i++) {
    const aqs_st_tensor *s = src->tensors[i];
    const aqs_st_tensor *o = aqs_ckpt_find(out, s->name);
    assert_non_null(o);
    expected_out++;
    const aqs_qwen_group *g = aqs_qwen_group_of_module(fx->model, s->name);
    size_t len = strlen(s->name);
    int is_weight = len > 7 && strcmp(s->name + len - 7, ".weight") == 0;
    if (g && is_weight && aqs_plan_format(plan, g->id) == AQS_FMT_FP8) {
      n_fp8_weights++;
      expected_out += 2;
      assert_int_equal(o->dtype, AQS_DT_F8_E4M3);
      assert_int_equal(o->ndim, s->ndim);
      assert_memory_equal(o->shape, s->shape, sizeof s->shape[0] * (size_t)s->ndim);
      char name[300];
      snprintf(name, sizeof name, "%.*s.weight_scale", (int)(len - 7), s->name);
      const aqs_st_tensor *ws = aqs_ckpt_find(out, name);
      snprintf(name, sizeof name, "%.*s.input_scale", (int)(len - 7), s->name);
      const aqs_st_tensor *is = aqs_ckpt_find(out, name);
      assert_non_null(ws);
      assert_non_null(is);
      float want_ws = aqs_fp8_amax_bf16(s->data, s->numel) / 448.0f;
      assert_true(scalar_f32(ws) == want_ws);
      float in_amax = 0;
      for (int k = 0; k < g->nmembers; k++) {
        const aqs_amax_entry *en = aqs_amax_find(&fx->amax, g->members[k].module);
        if (en->input_amax > in_amax) in_amax = en->input_amax;
      }
      assert_true(scalar_f32(is) == in_amax / 448.0f);
      uint8_t *q = malloc(s->numel);
      aqs_fp8_quantize_bf16(s->data, s->numel, want_ws, AQS_FP8_REF_TORCH_CUDA, q);
      assert_memory_equal(q, o->data, s->numel);
      /* and the codes are a real quantization: dequantized within the E4M3 bound */
      for (uint64_t k = 0; k < s->numel; k += 17) {
        float x, w;
        uint16_t b = ((const uint16_t *)s->data)[k];
        uint32_t u = (uint32_t)b << 16;
        memcpy(&w, &u, 4);
        x = aqs_fp8_e4m3_to_f32(q[k]) * want_ws;
        assert_true(fabsf(x - w) <= 0.5f * aqs_fp8_e4m3_step(w / want_ws) * want_ws + fabsf(w) / 128);
      }
      free(q);
    } else {
      assert_int_equal(o->dtype, s->dtype);
      assert_int_equal(o->nbytes, s->nbytes);
      assert_memory_equal(o->data, s->data, s->nbytes);
    }
  }
  assert_int_equal(out->ntensors, expected_out);
  assert_int_equal(res->quantized_params > 0, n_fp8_weights > 0);

  /* exclusions, config and hf_quant_config */
  json_t *hf = load_json(dir, "hf_quant_config.json");
  json_t *cfg = load_json(dir, "config.json");
  assert_non_null(cfg);
  size_t n_fp8 = aqs_plan_count(plan, AQS_FMT_FP8);
  if (n_fp8 == 0) {
    assert_null(hf);
    assert_null(json_object_get(cfg, "quantization_config"));
  } else {
    assert_non_null(hf);
    assert_string_equal(json_string_value(json_object_get(json_object_get(hf, "producer"), "name")),
                        "modelopt");
    json_t *q = json_object_get(hf, "quantization");
    assert_string_equal(json_string_value(json_object_get(q, "quant_algo")), "FP8");
    assert_true(json_is_null(json_object_get(q, "kv_cache_quant_algo")));
    json_t *ex = json_object_get(q, "exclude_modules");
    assert_true(json_array_has(ex, "lm_head"));
    size_t expected_ex = 1;
    for (size_t gi = 0; gi < fx->model->ngroups; gi++) {
      const aqs_qwen_group *g = &fx->model->groups[gi];
      int fp8 = aqs_plan_format(plan, g->id) == AQS_FMT_FP8;
      for (int k = 0; k < g->nmembers; k++) {
        assert_int_equal(json_array_has(ex, g->members[k].module), !fp8);
        expected_ex += !fp8;
      }
    }
    assert_int_equal(json_array_size(ex), expected_ex);
    json_t *qc = json_object_get(cfg, "quantization_config");
    assert_string_equal(json_string_value(json_object_get(qc, "quant_method")), "modelopt");
    assert_string_equal(json_string_value(json_object_get(qc, "quant_algo")), "FP8");
    assert_true(json_equal(json_object_get(qc, "ignore"), ex));
    assert_string_equal(json_string_value(json_object_get(cfg, "model_type")), "qwen2_5_vl");
  }
  json_decref(hf);
  json_decref(cfg);

  /* manifest: per-tensor digests match the bytes; effective bits */
  json_t *m = load_json(dir, AQS_EXPORT_MANIFEST);
  assert_non_null(m);
  json_t *tensors = json_object_get(m, "tensors");
  assert_int_equal(json_object_size(tensors), out->ntensors);
  for (size_t i = 0; i < out->ntensors; i++) {
    const aqs_st_tensor *t = out->tensors[i];
    aqs_digest d;
    char hex[AQS_DIGEST_STR_SIZE];
    aqs_sha256_buf(t->data, t->nbytes, &d);
    json_t *tj = json_object_get(tensors, t->name);
    assert_non_null(tj);
    assert_string_equal(json_string_value(json_object_get(tj, "sha256")), aqs_digest_str(&d, hex));
  }
  double bits = 0, params = 0;
  for (size_t gi = 0; gi < fx->model->n_lm_groups; gi++) {
    const aqs_qwen_group *g = &fx->model->groups[gi];
    double p = (double)g->weight_params;
    params += p;
    bits += aqs_plan_format(plan, g->id) == AQS_FMT_FP8 ? 8 * p + 64 * g->nmembers : 16 * p;
  }
  assert_true(fabs(res->effective_bits - bits / params) < 1e-12);
  assert_true(fabs(json_real_value(json_object_get(m, "effective_bits")) - bits / params) < 1e-12);
  assert_int_equal(json_integer_value(json_object_get(m, "n_fp8")), n_fp8);
  assert_string_equal(json_string_value(json_object_get(m, "scope")), "lm_only");
  assert_int_equal(strncmp(json_string_value(json_object_get(json_object_get(m, "inputs"), "amax")),
                           "sha256:", 7), 0);
  assert_non_null(json_object_get(json_object_get(json_object_get(m, "inputs"), "source"),
                                  "model.safetensors"));
  json_decref(m);

  /* tokenizer copied byte for byte */
  char a[8300], b[8300];
  snprintf(a, sizeof a, "%s/tokenizer.json", fx->src);
  snprintf(b, sizeof b, "%s/tokenizer.json", dir);
  size_t la, lb;
  char *ta = tu_read_file(a, &la), *tb = tu_read_file(b, &lb);
  assert_non_null(ta);
  assert_non_null(tb);
  assert_int_equal(la, lb);
  assert_memory_equal(ta, tb, la);
  free(ta);
  free(tb);
  aqs_ckpt_close(src);
  aqs_ckpt_close(out);
}

static void run_plan(int (*pick)(size_t, size_t), const char *name) {
  fx_model *fx = fx_model_new(name);
  aqs_plan *plan = fx_plan(fx, pick);
  aqs_export_result res;
  const char *dir = fx_export(fx, plan, "out", &res);
  check_export(fx, plan, dir, &res);
  assert_int_equal(res.n_fp8, aqs_plan_count(plan, AQS_FMT_FP8));
  assert_int_equal(res.n_candidates, fx->model->n_lm_groups);
  /* one shard per language layer + embed + head + vision stem/blocks/merger */
  size_t shards = 0;
  for (size_t i = 0; i < res.nfiles; i++) shards += res.files[i].kind == AQS_EXPORT_SHARD;
  assert_int_equal(shards, (size_t)fx->model->cfg.text.num_layers + 2 + 2 +
                               (size_t)fx->model->cfg.vision.depth);
  assert_string_equal(res.files[res.nfiles - 1].name, AQS_EXPORT_MANIFEST);
  for (size_t i = 0; i < res.nfiles; i++) { /* reported digests are the files' digests */
    char path[8300];
    aqs_digest d;
    uint64_t bytes;
    aqs_err e;
    snprintf(path, sizeof path, "%s/%s", dir, res.files[i].name);
    fx_check(aqs_sha256_file(path, &d, &bytes, &e), &e);
    assert_true(aqs_digest_eq(&d, &res.files[i].digest));
    assert_int_equal(bytes, res.files[i].bytes);
  }
  aqs_export_result_free(&res);
  aqs_plan_free(plan);
  fx_model_free(fx);
}

static void test_plan_none(void **state) { (void)state; run_plan(fx_pick_none, "exp-none"); }
static void test_plan_half(void **state) { (void)state; run_plan(fx_pick_half, "exp-half"); }
static void test_plan_all(void **state) { (void)state; run_plan(fx_pick_all, "exp-all"); }

static const aqs_export_file *find_file(const aqs_export_result *r, const char *name) {
  for (size_t i = 0; i < r->nfiles; i++)
    if (strcmp(r->files[i].name, name) == 0) return &r->files[i];
  return NULL;
}

/* Same inputs -> same bytes; plans differing in one layer share every other shard. */
static void test_deterministic_and_shared_shards(void **state) {
  (void)state;
  fx_model *fx = fx_model_new("exp-share");
  aqs_plan *half = fx_plan(fx, fx_pick_half);
  aqs_plan *half2 = fx_plan(fx, fx_pick_half);
  aqs_plan_set(half2, "lm.3.o", AQS_FMT_FP8, NULL); /* lm.3.o is odd-indexed: bf16 in half */
  aqs_export_result r1, r2, r3;
  fx_export(fx, half, "a", &r1);
  fx_export(fx, half, "b", &r2);
  fx_export(fx, half2, "c", &r3);
  assert_int_equal(r1.nfiles, r2.nfiles);
  for (size_t i = 0; i < r1.nfiles; i++) {
    assert_string_equal(r1.files[i].name, r2.files[i].name);
    assert_true(aqs_digest_eq(&r1.files[i].digest, &r2.files[i].digest));
  }
  for (size_t i = 0; i < r1.nfiles; i++) {
    if (r1.files[i].kind != AQS_EXPORT_SHARD) continue;
    const aqs_export_file *other = find_file(&r3, r1.files[i].name);
    assert_non_null(other);
    int same = aqs_digest_eq(&r1.files[i].digest, &other->digest);
    assert_int_equal(same, strcmp(r1.files[i].name, "model-layers-003.safetensors") != 0);
  }
  aqs_export_result_free(&r1);
  aqs_export_result_free(&r2);
  aqs_export_result_free(&r3);
  aqs_plan_free(half);
  aqs_plan_free(half2);
  fx_model_free(fx);
}

static aqs_status try_export(fx_model *fx, const aqs_plan *plan, const aqs_amax_table *amax,
                             const char *name, aqs_err *e) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/%s", fx->root, name);
  aqs_export_opts o = {.model_dir = fx->src, .amax = amax, .plan = plan, .out_dir = dir};
  aqs_export_result res;
  aqs_err_clear(e);
  return aqs_export_run(&o, &res, e);
}

static void test_errors(void **state) {
  (void)state;
  fx_model *fx = fx_model_new("exp-err");
  aqs_err e;
  aqs_plan *p = fx_plan(fx, fx_pick_all);
  aqs_plan_set(p, "lm.99.qkv", AQS_FMT_FP8, NULL);
  assert_int_equal(try_export(fx, p, &fx->amax, "e1", &e), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "plan group 'lm.99.qkv' does not exist"));
  aqs_plan_free(p);

  p = fx_plan(fx, fx_pick_all);
  aqs_plan_set(p, "vis.0.qkv", AQS_FMT_FP8, NULL);
  assert_int_equal(try_export(fx, p, &fx->amax, "e2", &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "vis.0.qkv"));
  assert_non_null(strstr(e.msg, "lm_only"));
  aqs_plan_free(p);

  p = fx_plan(fx, fx_pick_all);
  aqs_amax_table partial = {0};
  aqs_amax_set(&partial, fx->model->groups[0].members[0].module, 1.0f, 1.0f, NULL);
  assert_int_equal(try_export(fx, p, &partial, "e3", &e), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "amax table has no entry for module"));
  assert_non_null(strstr(e.msg, fx->model->groups[0].members[1].module));
  aqs_amax_free(&partial);

  aqs_amax_table bad = {0};
  for (size_t i = 0; i < fx->amax.n; i++)
    aqs_amax_set(&bad, fx->amax.entries[i].module, NAN, 1.0f, NULL);
  assert_int_equal(try_export(fx, p, &bad, "e4", &e), AQS_ERR_NUMERIC);
  assert_non_null(strstr(e.msg, "input amax of module"));
  aqs_amax_free(&bad);

  char busy[4096];
  snprintf(busy, sizeof busy, "%s/e5", fx->root);
  char cmd[8300];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' && touch '%s/junk'", busy, busy);
  assert_int_equal(tu_run(cmd, NULL), 0);
  assert_int_equal(try_export(fx, p, &fx->amax, "e5", &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "is not empty"));

  aqs_export_opts o = {.model_dir = "/nonexistent/model", .amax = &fx->amax, .plan = p,
                       .out_dir = busy};
  aqs_err_clear(&e);
  assert_int_not_equal(aqs_export_run(&o, NULL, &e), AQS_OK);
  assert_non_null(strstr(e.msg, "/nonexistent/model"));
  aqs_plan_free(p);
  fx_model_free(fx);
}

/* A caller-supplied source digest table is used for copied tensors (and must be right). */
static int digest_from_source(void *ctx, const char *name, aqs_digest *out) {
  const aqs_st_tensor *t = aqs_ckpt_find(ctx, name);
  if (!t || strstr(name, "embed_tokens")) return 0; /* "unknown": the exporter hashes it */
  aqs_sha256_buf(t->data, t->nbytes, out);
  return 1;
}

static int digest_wrong(void *ctx, const char *name, aqs_digest *out) {
  (void)ctx, (void)name;
  memset(out, 0xAB, sizeof *out);
  return 1;
}

static void test_source_digest_callback(void **state) {
  (void)state;
  fx_model *fx = fx_model_new("exp-digests");
  aqs_plan *p = fx_plan(fx, fx_pick_half);
  aqs_ckpt *src;
  aqs_err e;
  fx_check(aqs_ckpt_open(fx->src, &src, &e), &e);
  aqs_export_result r1, r2, r3;
  fx_export(fx, p, "plain", &r1);
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/cb", fx->root);
  aqs_export_opts o = {.model_dir = fx->src, .amax = &fx->amax, .plan = p, .out_dir = dir,
                       .source_tensor_digest = digest_from_source, .source_tensor_digest_ctx = src};
  fx_check(aqs_export_run(&o, &r2, &e), &e);
  assert_int_equal(r1.nfiles, r2.nfiles);
  for (size_t i = 0; i < r1.nfiles; i++) /* identical bytes, manifest included */
    assert_true(aqs_digest_eq(&r1.files[i].digest, &r2.files[i].digest));
  snprintf(dir, sizeof dir, "%s/wrong", fx->root);
  o.out_dir = dir;
  o.source_tensor_digest = digest_wrong;
  fx_check(aqs_export_run(&o, &r3, &e), &e);
  const aqs_export_file *m1 = find_file(&r1, AQS_EXPORT_MANIFEST), *m3 = find_file(&r3, AQS_EXPORT_MANIFEST);
  assert_false(aqs_digest_eq(&m1->digest, &m3->digest)); /* the manifest records what it was told */
  aqs_diff_report dr; /* ... and aqs diff does not believe it */
  char plain[4200];
  snprintf(plain, sizeof plain, "%s/plain", fx->root);
  aqs_err_clear(&e);
  assert_int_equal(aqs_export_diff(plain, dir, 0, &dr, &e), AQS_ERR_MISMATCH);
  assert_non_null(strstr(e.msg, "but its manifest says"));
  aqs_diff_report_free(&dr);
  aqs_export_result_free(&r1);
  aqs_export_result_free(&r2);
  aqs_export_result_free(&r3);
  aqs_ckpt_close(src);
  aqs_plan_free(p);
  fx_model_free(fx);
}

static void test_all_layers_scope(void **state) {
  (void)state;
  fx_model *fx = fx_model_new("exp-vis");
  aqs_plan *p = aqs_plan_new();
  snprintf(p->scope, sizeof p->scope, "all_layers");
  for (size_t g = 0; g < fx->model->ngroups; g++)
    aqs_plan_set(p, fx->model->groups[g].id, AQS_FMT_FP8, NULL);
  aqs_export_result res;
  const char *dir = fx_export(fx, p, "vis", &res);
  assert_int_equal(res.n_candidates, fx->model->ngroups);
  assert_int_equal(res.n_fp8, fx->model->ngroups);
  assert_true(res.effective_bits > 8.0 && res.effective_bits < 8.1);
  aqs_ckpt *out;
  aqs_err e;
  fx_check(aqs_ckpt_open(dir, &out, &e), &e);
  char name[256];
  snprintf(name, sizeof name, "%s.weight", fx->model->groups[fx->model->ngroups - 1].members[0].module);
  assert_int_equal(aqs_ckpt_find(out, name)->dtype, AQS_DT_F8_E4M3); /* vis.merger.mlp.2 */
  aqs_ckpt_close(out);
  aqs_export_result_free(&res);
  aqs_plan_free(p);
  fx_model_free(fx);
}

static void test_shard_names(void **state) {
  (void)state;
  char b[128];
  assert_string_equal(aqs_export_shard_name("model.language_model.layers.7.mlp.down_proj.weight", b, sizeof b),
                      "model-layers-007.safetensors");
  assert_string_equal(aqs_export_shard_name("model.layers.12.input_layernorm.weight", b, sizeof b),
                      "model-layers-012.safetensors");
  assert_string_equal(aqs_export_shard_name("model.embed_tokens.weight", b, sizeof b), "model-embed.safetensors");
  assert_string_equal(aqs_export_shard_name("model.language_model.norm.weight", b, sizeof b), "model-head.safetensors");
  assert_string_equal(aqs_export_shard_name("lm_head.weight", b, sizeof b), "model-head.safetensors");
  assert_string_equal(aqs_export_shard_name("model.visual.blocks.31.attn.qkv.bias", b, sizeof b),
                      "model-visual-blocks-031.safetensors");
  assert_string_equal(aqs_export_shard_name("visual.merger.mlp.0.weight", b, sizeof b), "model-visual-merger.safetensors");
  assert_string_equal(aqs_export_shard_name("visual.patch_embed.proj.weight", b, sizeof b), "model-visual-stem.safetensors");
  assert_string_equal(aqs_export_shard_name("something.else", b, sizeof b), "model-other.safetensors");
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_shard_names),
    cmocka_unit_test(test_plan_none),
    cmocka_unit_test(test_plan_half),
    cmocka_unit_test(test_plan_all),
    cmocka_unit_test(test_deterministic_and_shared_shards),
    cmocka_unit_test(test_all_layers_scope),
    cmocka_unit_test(test_source_digest_callback),
    cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
