/* tests/unit/export/test_consumers.c: one test per consumer verdict rule (engine/export/
 * consumers.h), then the three export formats of one plan: same FP8 codes and scale values,
 * the metadata each loader reads, the KV scale names, and the verdict in aqs-manifest.json. */
#include "testutil.h"

#include <jansson.h>
#include <unistd.h>

#include "engine/export/consumers.h"
#include "engine/export/export.h"
#include "export_fixture.h"

#define LM "model.language_model.layers.0."
#define VIS "model.visual."

/* A small module list: lm layer 0 (fused q/k/v, o, gate/up, down), vision block 0 and stem. */
typedef struct mods {
  aqs_verdict_module m[12];
  size_t n;
} mods;

static void mods_init(mods *s) {
  static const char *const names[] = {
    LM "self_attn.q_proj", LM "self_attn.k_proj", LM "self_attn.v_proj", LM "self_attn.o_proj",
    LM "mlp.gate_proj",    LM "mlp.up_proj",      LM "mlp.down_proj",    VIS "patch_embed.proj",
    VIS "blocks.0.attn.qkv", VIS "blocks.0.mlp.gate_proj", VIS "blocks.0.mlp.up_proj",
    VIS "merger.mlp.0"};
  s->n = 12;
  for (size_t i = 0; i < s->n; i++) s->m[i] = (aqs_verdict_module){names[i], 0};
}

static void set_fp8(mods *s, size_t from, size_t to) {
  for (size_t i = from; i < to; i++) s->m[i].fp8 = 1;
}

static void verdicts(const mods *s, aqs_export_format f, aqs_consumer_verdict v[AQS_CONSUMER_COUNT]) {
  aqs_err e = {0};
  assert_int_equal(aqs_consumer_verdicts(s->m, s->n, f, v, &e), AQS_OK);
}

static void expect_rule(const aqs_consumer_verdict *v, const char *rule) {
  if (!strstr(v->rules, rule)) fail_msg("%s: rules '%s' lack %s", aqs_consumer_name(v->consumer), v->rules, rule);
}

/* vllm.visual_unquantized: the modelopt loader fails on an FP8 vision module, not on LM ones. */
static void test_rule_visual_unquantized(void **state) {
  (void)state;
  mods s;
  mods_init(&s);
  set_fp8(&s, 0, 7); /* the whole language layer */
  aqs_consumer_verdict v[AQS_CONSUMER_COUNT];
  verdicts(&s, AQS_EXPORT_MODELOPT, v);
  assert_true(v[AQS_CONSUMER_VLLM_MODELOPT].reads_format && v[AQS_CONSUMER_VLLM_MODELOPT].loads);
  assert_int_equal(v[AQS_CONSUMER_VLLM_MODELOPT].n_fp8, 7);
  aqs_consumer_verdicts_free(v);
  s.m[8].fp8 = 1; /* vision qkv */
  verdicts(&s, AQS_EXPORT_MODELOPT, v);
  assert_false(v[AQS_CONSUMER_VLLM_MODELOPT].loads);
  expect_rule(&v[AQS_CONSUMER_VLLM_MODELOPT], "vllm.visual_unquantized");
  assert_non_null(strstr(v[AQS_CONSUMER_VLLM_MODELOPT].reason, VIS "blocks.0.attn.qkv"));
  /* the other vLLM loaders do not read a modelopt (FP8) export */
  assert_false(v[AQS_CONSUMER_VLLM_MODELOPT_MIXED].reads_format);
  assert_false(v[AQS_CONSUMER_VLLM_COMPRESSED_TENSORS].reads_format);
  aqs_consumer_verdicts_free(v);
}

/* vllm.patch_embed_plain: every vLLM loader fails on an FP8 patch embedding. */
static void test_rule_patch_embed_plain(void **state) {
  (void)state;
  mods s;
  mods_init(&s);
  s.m[7].fp8 = 1;
  for (int f = 0; f < 3; f++) {
    aqs_consumer_verdict v[AQS_CONSUMER_COUNT];
    verdicts(&s, (aqs_export_format)f, v);
    const aqs_consumer_verdict *r = &v[f]; /* the vLLM loader of format f */
    assert_true(r->reads_format);
    assert_false(r->loads);
    expect_rule(r, "vllm.patch_embed_plain");
    aqs_consumer_verdicts_free(v);
  }
}

/* vllm.excluded: BF16 modules run BF16 under every vLLM loader. */
static void test_rule_excluded(void **state) {
  (void)state;
  mods s;
  mods_init(&s);
  set_fp8(&s, 4, 6); /* gate/up only */
  for (int f = 0; f < 3; f++) {
    aqs_consumer_verdict v[AQS_CONSUMER_COUNT];
    verdicts(&s, (aqs_export_format)f, v);
    assert_true(v[f].loads);
    assert_int_equal(v[f].n_fp8, 2);
    assert_int_equal(v[f].n_bf16, 10);
    assert_int_equal(v[f].run_as[6], AQS_RUN_BF16);
    expect_rule(&v[f], "vllm.excluded");
    aqs_consumer_verdicts_free(v);
  }
}

/* vllm.quantized_layers: modelopt_mixed runs the listed vision modules FP8 and loads. */
static void test_rule_quantized_layers(void **state) {
  (void)state;
  mods s;
  mods_init(&s);
  set_fp8(&s, 8, 12); /* vision qkv, gate/up, merger.mlp.0 */
  aqs_consumer_verdict v[AQS_CONSUMER_COUNT];
  verdicts(&s, AQS_EXPORT_MODELOPT_MIXED, v);
  const aqs_consumer_verdict *r = &v[AQS_CONSUMER_VLLM_MODELOPT_MIXED];
  assert_true(r->loads);
  assert_int_equal(r->n_fp8, 4);
  assert_int_equal(r->run_as[11], AQS_RUN_FP8);
  expect_rule(r, "vllm.quantized_layers");
  aqs_consumer_verdicts_free(v);
  /* compressed-tensors: the same vision modules FP8 too */
  verdicts(&s, AQS_EXPORT_COMPRESSED_TENSORS, v);
  assert_true(v[AQS_CONSUMER_VLLM_COMPRESSED_TENSORS].loads);
  assert_int_equal(v[AQS_CONSUMER_VLLM_COMPRESSED_TENSORS].n_fp8, 4);
  aqs_consumer_verdicts_free(v);
}

/* vllm.fused_same_scheme: q FP8 with k/v BF16 cannot load in any vLLM loader. */
static void test_rule_fused_same_scheme(void **state) {
  (void)state;
  mods s;
  mods_init(&s);
  s.m[0].fp8 = 1;
  for (int f = 0; f < 3; f++) {
    aqs_consumer_verdict v[AQS_CONSUMER_COUNT];
    verdicts(&s, (aqs_export_format)f, v);
    assert_false(v[f].loads);
    expect_rule(&v[f], "vllm.fused_same_scheme");
    assert_non_null(strstr(v[f].reason, LM "self_attn.q_proj"));
    aqs_consumer_verdicts_free(v);
  }
  /* vision gate without up: the same */
  mods_init(&s);
  s.m[9].fp8 = 1;
  aqs_consumer_verdict v[AQS_CONSUMER_COUNT];
  verdicts(&s, AQS_EXPORT_COMPRESSED_TENSORS, v);
  assert_false(v[AQS_CONSUMER_VLLM_COMPRESSED_TENSORS].loads);
  aqs_consumer_verdicts_free(v);
}

/* transformers.unknown_modelopt: loads, but FP8 modules compute with their codes as BF16. */
static void test_rule_transformers_modelopt(void **state) {
  (void)state;
  mods s;
  mods_init(&s);
  set_fp8(&s, 0, 3);
  for (int f = 0; f < 2; f++) {
    aqs_consumer_verdict v[AQS_CONSUMER_COUNT];
    verdicts(&s, (aqs_export_format)f, v);
    const aqs_consumer_verdict *t = &v[AQS_CONSUMER_TRANSFORMERS];
    assert_true(t->reads_format && t->loads);
    assert_int_equal(t->n_wrong, 3);
    assert_int_equal(t->n_fp8, 0);
    expect_rule(t, "transformers.unknown_modelopt");
    aqs_consumer_verdicts_free(v);
  }
}

/* transformers.compressed_tensors_package + conv_not_targeted. */
static void test_rule_transformers_compressed(void **state) {
  (void)state;
  mods s;
  mods_init(&s);
  set_fp8(&s, 0, 3);
  s.m[7].fp8 = 1;
  aqs_consumer_verdict v[AQS_CONSUMER_COUNT];
  verdicts(&s, AQS_EXPORT_COMPRESSED_TENSORS, v);
  const aqs_consumer_verdict *t = &v[AQS_CONSUMER_TRANSFORMERS];
  assert_true(t->loads);
  assert_int_equal(t->n_fp8, 3);
  assert_int_equal(t->run_as[7], AQS_RUN_WRONG);
  expect_rule(t, "transformers.compressed_tensors_package");
  expect_rule(t, "transformers.conv_not_targeted");
  assert_non_null(strstr(t->reason, "compressed-tensors Python package"));
  aqs_consumer_verdicts_free(v);
}

/* No FP8 module: a plain BF16 checkpoint every consumer reads in BF16. */
static void test_plain_bf16(void **state) {
  (void)state;
  mods s;
  mods_init(&s);
  aqs_consumer_verdict v[AQS_CONSUMER_COUNT];
  verdicts(&s, AQS_EXPORT_MODELOPT, v);
  for (int c = 0; c < AQS_CONSUMER_COUNT; c++) {
    assert_true(v[c].reads_format && v[c].loads);
    assert_int_equal(v[c].n_bf16, s.n);
  }
  aqs_consumer_verdicts_free(v);
  aqs_export_format f;
  aqs_err e = {0};
  assert_int_equal(aqs_export_format_parse("modelopt", &f, &e), AQS_OK);
  assert_string_equal(aqs_export_format_name(f), "modelopt_fp8");
  assert_int_equal(aqs_export_format_parse("compressed_tensors", &f, &e), AQS_OK);
  assert_int_equal(f, AQS_EXPORT_COMPRESSED_TENSORS);
  assert_int_equal(aqs_export_format_parse("gguf", &f, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "unknown export format \"gguf\""));
}

/* ---- the three formats of one plan ---- */
static json_t *load_json(const char *dir, const char *name) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  json_error_t err;
  json_t *j = json_load_file(path, 0, &err);
  if (!j) fail_msg("%s: %s", path, err.text);
  return j;
}

static const char *export_fmt(fx_model *fx, const aqs_plan *p, const char *name, aqs_export_format f) {
  static char dirs[3][4096];
  char *dir = dirs[f];
  snprintf(dir, 4096, "%s/%s", fx->root, name);
  aqs_export_opts o = {.model_dir = fx->src, .amax = &fx->amax, .plan = p, .out_dir = dir, .format = f};
  aqs_err e;
  aqs_err_clear(&e);
  aqs_export_result res;
  fx_check(aqs_export_run(&o, &res, &e), &e);
  aqs_export_result_free(&res);
  return dir;
}

static void test_three_formats(void **state) {
  (void)state;
  fx_model *fx = fx_model_new("exp-fmt");
  aqs_plan *p = aqs_plan_new();
  snprintf(p->scope, sizeof p->scope, "all_layers");
  /* LM layer 0 q/k/v, vision block 0 qkv and merger.mlp.0 FP8 */
  aqs_plan_set(p, "lm.0.qkv", AQS_FMT_FP8, NULL);
  aqs_plan_set(p, "vis.0.qkv", AQS_FMT_FP8, NULL);
  aqs_plan_set(p, "vis.merger.mlp.0", AQS_FMT_FP8, NULL);
  const char *d[3];
  const char *names[3] = {"mo", "mixed", "ct"};
  for (int f = 0; f < 3; f++) d[f] = export_fmt(fx, p, names[f], (aqs_export_format)f);
  json_t *m[3];
  for (int f = 0; f < 3; f++) m[f] = load_json(d[f], AQS_EXPORT_MANIFEST);
  /* same FP8 codes and scale values: tensor digests agree */
  const char *tensors[] = {"model.visual.blocks.0.attn.qkv.weight",
                           "model.visual.blocks.0.attn.qkv.weight_scale",
                           "model.language_model.layers.0.self_attn.k_proj.input_scale"};
  for (int t = 0; t < 3; t++) {
    const char *d0 = json_string_value(json_object_get(json_object_get(json_object_get(m[0], "tensors"), tensors[t]), "sha256"));
    assert_non_null(d0);
    for (int f = 1; f < 3; f++)
      assert_string_equal(d0, json_string_value(json_object_get(json_object_get(json_object_get(m[f], "tensors"), tensors[t]), "sha256")));
  }
  assert_string_equal(json_string_value(json_object_get(m[0], "export_format")), "modelopt_fp8");
  assert_string_equal(json_string_value(json_object_get(m[2], "export_format")), "compressed_tensors");
  /* modelopt: vLLM's modelopt loader refuses the vision scales; transformers misreads FP8 */
  json_t *c0 = json_object_get(m[0], "consumers");
  assert_false(json_is_true(json_object_get(json_object_get(c0, "vllm-modelopt"), "loads")));
  assert_int_equal(json_array_size(json_object_get(json_object_get(c0, "transformers"), "fp8_codes_as_bf16")), 5);
  /* modelopt_mixed: quantized_layers lists the 5 FP8 modules, vLLM runs them FP8 */
  json_t *hf = load_json(d[1], "hf_quant_config.json");
  json_t *q = json_object_get(hf, "quantization");
  assert_string_equal(json_string_value(json_object_get(q, "quant_algo")), "MIXED_PRECISION");
  json_t *ql = json_object_get(q, "quantized_layers");
  assert_int_equal(json_object_size(ql), 5);
  assert_string_equal(json_string_value(json_object_get(json_object_get(ql, "model.visual.merger.mlp.0"), "quant_algo")), "FP8");
  json_t *c1 = json_object_get(json_object_get(m[1], "consumers"), "vllm-modelopt_mixed");
  assert_true(json_is_true(json_object_get(c1, "loads")));
  assert_int_equal(json_array_size(json_object_get(c1, "fp8")), 5);
  json_decref(hf);
  /* compressed-tensors: config.json metadata, no hf_quant_config.json, scales [1] */
  json_t *cfg = load_json(d[2], "config.json");
  json_t *qc = json_object_get(cfg, "quantization_config");
  assert_string_equal(json_string_value(json_object_get(qc, "quant_method")), "compressed-tensors");
  assert_string_equal(json_string_value(json_object_get(qc, "format")), "float-quantized");
  json_t *w = json_object_get(json_object_get(json_object_get(qc, "config_groups"), "group_0"), "weights");
  assert_string_equal(json_string_value(json_object_get(w, "strategy")), "tensor");
  assert_false(json_is_true(json_object_get(w, "dynamic")));
  json_t *ign = json_object_get(qc, "ignore");
  int has_head = 0, has_vis_proj = 0, has_q = 0;
  for (size_t i = 0; i < json_array_size(ign); i++) {
    const char *s = json_string_value(json_array_get(ign, i));
    has_head |= strcmp(s, "lm_head") == 0;
    has_vis_proj |= strcmp(s, "model.visual.blocks.0.attn.proj") == 0;
    has_q |= strcmp(s, "model.language_model.layers.0.self_attn.q_proj") == 0;
  }
  assert_true(has_head && has_vis_proj && !has_q);
  char path[4200];
  snprintf(path, sizeof path, "%s/hf_quant_config.json", d[2]);
  assert_int_equal(access(path, F_OK), -1);
  json_t *shape = json_object_get(json_object_get(json_object_get(m[2], "tensors"), tensors[1]), "shape");
  assert_int_equal(json_array_size(shape), 1);
  shape = json_object_get(json_object_get(json_object_get(m[0], "tensors"), tensors[1]), "shape");
  assert_int_equal(json_array_size(shape), 0);
  json_t *c2 = json_object_get(json_object_get(m[2], "consumers"), "vllm-compressed-tensors");
  assert_true(json_is_true(json_object_get(c2, "loads")));
  json_decref(cfg);
  for (int f = 0; f < 3; f++) json_decref(m[f]);
  aqs_plan_free(p);
  fx_model_free(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_rule_visual_unquantized),
    cmocka_unit_test(test_rule_patch_embed_plain),
    cmocka_unit_test(test_rule_excluded),
    cmocka_unit_test(test_rule_quantized_layers),
    cmocka_unit_test(test_rule_fused_same_scheme),
    cmocka_unit_test(test_rule_transformers_modelopt),
    cmocka_unit_test(test_rule_transformers_compressed),
    cmocka_unit_test(test_plain_bf16),
    cmocka_unit_test(test_three_formats),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
