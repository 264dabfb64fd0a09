/* tests/unit/model/test_qwen_config.c: Qwen2.5-VL config.json parsing (transformers 4.x flat and
 * 5.x text_config layouts, error messages), tensor naming in both schemes, and group derivation
 * for the tiny and 3b presets with counts and parameter totals computed here from the shapes. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model/qwen_config.h"
#include "engine/model/safetensors.h"
#include "engine/model/synth.h"

/* The Qwen/Qwen2.5-VL-3B-Instruct hub config (transformers 4.x layout), abridged to the fields
 * that matter plus a few it carries that aqs ignores. */
static const char hub_3b_config[] =
    "{\"architectures\": [\"Qwen2_5_VLForConditionalGeneration\"], \"attention_dropout\": 0.0,"
    " \"bos_token_id\": 151643, \"eos_token_id\": 151645, \"vision_start_token_id\": 151652,"
    " \"vision_end_token_id\": 151653, \"vision_token_id\": 151654, \"image_token_id\": 151655,"
    " \"video_token_id\": 151656, \"hidden_act\": \"silu\", \"hidden_size\": 2048,"
    " \"initializer_range\": 0.02, \"intermediate_size\": 11008, \"max_position_embeddings\": 128000,"
    " \"max_window_layers\": 70, \"model_type\": \"qwen2_5_vl\", \"num_attention_heads\": 16,"
    " \"num_hidden_layers\": 36, \"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-06,"
    " \"rope_theta\": 1000000.0, \"sliding_window\": 32768, \"tie_word_embeddings\": true,"
    " \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.41.2\", \"use_cache\": true,"
    " \"use_sliding_window\": false,"
    " \"vision_config\": {\"depth\": 32, \"hidden_act\": \"silu\", \"hidden_size\": 1280,"
    "   \"intermediate_size\": 3420, \"num_heads\": 16, \"in_chans\": 3, \"out_hidden_size\": 2048,"
    "   \"patch_size\": 14, \"spatial_merge_size\": 2, \"spatial_patch_size\": 14,"
    "   \"window_size\": 112, \"fullatt_block_indexes\": [7, 15, 23, 31], \"tokens_per_second\": 2,"
    "   \"temporal_patch_size\": 2},"
    " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [16, 24, 24]},"
    " \"vocab_size\": 151936}";

static void assert_3b_shapes(const aqs_qwen_config *c) {
  assert_int_equal(c->text.hidden_size, 2048);
  assert_int_equal(c->text.num_layers, 36);
  assert_int_equal(c->text.num_heads, 16);
  assert_int_equal(c->text.num_kv_heads, 2);
  assert_int_equal(c->text.head_dim, 128);
  assert_int_equal(c->text.intermediate_size, 11008);
  assert_int_equal(c->text.vocab_size, 151936);
  assert_int_equal(c->text.max_position_embeddings, 128000);
  assert_true(c->text.rms_norm_eps == 1e-6);
  assert_true(c->text.rope_theta == 1e6);
  assert_int_equal(c->text.mrope_section[0], 16);
  assert_int_equal(c->text.mrope_section[1], 24);
  assert_int_equal(c->text.mrope_section[2], 24);
  assert_int_equal(c->text.tie_word_embeddings, 1);
  assert_int_equal(c->vision.depth, 32);
  assert_int_equal(c->vision.hidden_size, 1280);
  assert_int_equal(c->vision.num_heads, 16);
  assert_int_equal(c->vision.intermediate_size, 3420);
  assert_int_equal(c->vision.out_hidden_size, 2048);
  assert_int_equal(c->vision.in_channels, 3);
  assert_int_equal(c->vision.patch_size, 14);
  assert_int_equal(c->vision.spatial_merge_size, 2);
  assert_int_equal(c->vision.temporal_patch_size, 2);
  assert_int_equal(c->vision.window_size, 112);
  assert_int_equal(c->vision.n_fullatt, 4);
  assert_int_equal(c->vision.fullatt_block_indexes[3], 31);
}

static void test_parse_hub_4x_layout(void **state) {
  (void)state;
  aqs_qwen_config c;
  aqs_err e = {0};
  aqs_status st = aqs_qwen_config_parse(hub_3b_config, strlen(hub_3b_config), "hub.json", &c, &e);
  if (st) fail_msg("%s", e.msg);
  assert_int_equal(c.layout, 4);
  assert_string_equal(c.model_type, "qwen2_5_vl");
  assert_3b_shapes(&c);
  assert_int_equal(c.image_token_id, 151655);
  assert_int_equal(c.video_token_id, 151656);
  assert_int_equal(c.vision_start_token_id, 151652);
  assert_int_equal(c.vision_end_token_id, 151653);
  assert_int_equal(c.bos_token_id, 151643);
  assert_int_equal(c.eos_token_id, 151645);
}

/* The 5.x writer's output parses back to the same config (both 3b and tiny). */
static void test_5x_layout_round_trip(void **state) {
  (void)state;
  const char *presets[] = {"3b", "tiny", "small"};
  for (int i = 0; i < 3; i++) {
    aqs_qwen_config want, got;
    aqs_err e = {0};
    assert_int_equal(aqs_synth_preset(presets[i], &want, &e), AQS_OK);
    char *text = aqs_qwen_config_to_json(&want);
    assert_non_null(strstr(text, "\"text_config\""));
    assert_non_null(strstr(text, "\"rope_parameters\""));
    aqs_status st = aqs_qwen_config_parse(text, strlen(text), "written.json", &got, &e);
    if (st) fail_msg("%s: %s", presets[i], e.msg);
    free(text);
    assert_int_equal(got.layout, 5);
    assert_memory_equal(&got.text, &want.text, sizeof got.text);
    assert_memory_equal(&got.vision, &want.vision, sizeof got.vision);
    assert_int_equal(got.image_token_id, want.image_token_id);
    assert_int_equal(got.eos_token_id, want.eos_token_id);
    if (i == 0) assert_3b_shapes(&got);
  }
}

/* Hand-written 5.x config: text fields only inside text_config, rope in rope_parameters. */
static void test_parse_5x_nested(void **state) {
  (void)state;
  const char *cfg =
      "{\"architectures\": [\"Qwen2_5_VLForConditionalGeneration\"], \"model_type\": \"qwen2_5_vl\","
      " \"image_token_id\": 20, \"video_token_id\": 21, \"vision_start_token_id\": 22,"
      " \"vision_end_token_id\": 23,"
      " \"text_config\": {\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
      "   \"num_key_value_heads\": 1, \"intermediate_size\": 96, \"vocab_size\": 100,"
      "   \"rms_norm_eps\": 1e-05, \"tie_word_embeddings\": false,"
      "   \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 5000.0,"
      "                         \"mrope_section\": [2, 3, 3]}},"
      " \"vision_config\": {\"depth\": 3, \"hidden_size\": 32, \"num_heads\": 2,"
      "   \"intermediate_size\": 40, \"out_hidden_size\": 64, \"fullatt_block_indexes\": [2]}}";
  aqs_qwen_config c;
  aqs_err e = {0};
  aqs_status st = aqs_qwen_config_parse(cfg, strlen(cfg), "nested.json", &c, &e);
  if (st) fail_msg("%s", e.msg);
  assert_int_equal(c.layout, 5);
  assert_int_equal(c.text.num_kv_heads, 1);
  assert_int_equal(c.text.head_dim, 16);
  assert_true(c.text.rope_theta == 5000.0);
  assert_true(c.text.rms_norm_eps == 1e-5);
  assert_int_equal(c.text.tie_word_embeddings, 0);
  assert_int_equal(c.text.max_position_embeddings, 32768); /* default */
  assert_int_equal(c.vision.patch_size, 14);               /* defaults */
  assert_int_equal(c.vision.in_channels, 3);
  assert_int_equal(c.image_token_id, 20);
  assert_int_equal(c.bos_token_id, -1);
}

static void expect_config_error(const char *from, const char *to, aqs_status code,
                                const char *needle) {
  /* hub config with one substring replaced */
  const char *at = strstr(hub_3b_config, from);
  assert_non_null(at);
  char buf[8192];
  snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - hub_3b_config), hub_3b_config, to,
           at + strlen(from));
  aqs_qwen_config c;
  aqs_err e = {0};
  aqs_status st = aqs_qwen_config_parse(buf, strlen(buf), "cfg.json", &c, &e);
  if (st != code || !strstr(e.msg, needle) || !strstr(e.msg, "cfg.json"))
    fail_msg("replacing %s: got %d \"%s\", wanted %d with \"%s\"", from, st, e.msg, code, needle);
}

static void test_config_errors(void **state) {
  (void)state;
  expect_config_error("\"model_type\": \"qwen2_5_vl\"", "\"model_type\": \"llama\"",
                      AQS_ERR_UNSUPPORTED, "model_type \"llama\"");
  expect_config_error("[\"Qwen2_5_VLForConditionalGeneration\"]", "[\"LlamaForCausalLM\"]",
                      AQS_ERR_UNSUPPORTED, "architectures [\"LlamaForCausalLM\"]");
  expect_config_error("\"hidden_size\": 2048,", "", AQS_ERR_INVALID,
                      "missing required field hidden_size");
  expect_config_error("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", AQS_ERR_INVALID,
                      "num_attention_heads 16 is not a multiple of num_key_value_heads 3");
  expect_config_error("[16, 24, 24]", "[16, 24, 23]", AQS_ERR_INVALID,
                      "mrope_section [16, 24, 23] sums to 63 but head_dim / 2 is 64");
  expect_config_error("\"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [16, 24, 24]},", "",
                      AQS_ERR_INVALID, "mrope_section");
  expect_config_error("\"out_hidden_size\": 2048", "\"out_hidden_size\": 3584", AQS_ERR_INVALID,
                      "vision_config.out_hidden_size 3584 differs from the text hidden_size 2048");
  expect_config_error("[7, 15, 23, 31]", "[7, 15, 23, 32]", AQS_ERR_INVALID,
                      "fullatt_block_indexes[3] is not a block index < depth 32");
  expect_config_error("\"depth\": 32,", "", AQS_ERR_INVALID, "missing required field vision_config.depth");
  expect_config_error("\"image_token_id\": 151655", "\"image_token_id\": 200000", AQS_ERR_INVALID,
                      "image_token_id 200000 is outside the vocabulary");
  expect_config_error("\"hidden_size\": 2048,", "\"hidden_size\": \"big\",", AQS_ERR_INVALID,
                      "field hidden_size is not a valid integer");
  aqs_qwen_config c;
  aqs_err e = {0};
  assert_int_equal(aqs_qwen_config_parse("{\"a\": ", 6, "trunc.json", &c, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "trunc.json: line 1"));
  assert_int_equal(aqs_qwen_config_load("/nonexistent/dir", &c, &e), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "/nonexistent/dir"));
}

static void test_naming(void **state) {
  (void)state;
  char buf[160];
  aqs_qwen_lm_name(AQS_NAMING_HF4, 3, "self_attn.q_proj.weight", buf, sizeof buf);
  assert_string_equal(buf, "model.layers.3.self_attn.q_proj.weight");
  aqs_qwen_lm_name(AQS_NAMING_HF5, 3, "mlp.down_proj.weight", buf, sizeof buf);
  assert_string_equal(buf, "model.language_model.layers.3.mlp.down_proj.weight");
  aqs_qwen_vis_name(AQS_NAMING_HF4, 0, "attn.qkv.bias", buf, sizeof buf);
  assert_string_equal(buf, "visual.blocks.0.attn.qkv.bias");
  aqs_qwen_vis_name(AQS_NAMING_HF5, 31, "mlp.gate_proj.weight", buf, sizeof buf);
  assert_string_equal(buf, "model.visual.blocks.31.mlp.gate_proj.weight");
  aqs_qwen_global_name(AQS_NAMING_HF5, "embed_tokens.weight", buf, sizeof buf);
  assert_string_equal(buf, "model.language_model.embed_tokens.weight");
  aqs_qwen_global_name(AQS_NAMING_HF4, "norm.weight", buf, sizeof buf);
  assert_string_equal(buf, "model.norm.weight");
  aqs_qwen_global_name(AQS_NAMING_HF5, "lm_head.weight", buf, sizeof buf);
  assert_string_equal(buf, "lm_head.weight");
  aqs_qwen_global_name(AQS_NAMING_HF5, "merger.mlp.2.bias", buf, sizeof buf);
  assert_string_equal(buf, "model.visual.merger.mlp.2.bias");
  aqs_qwen_global_name(AQS_NAMING_HF4, "patch_embed.proj.weight", buf, sizeof buf);
  assert_string_equal(buf, "visual.patch_embed.proj.weight");
  aqs_qwen_scope s;
  assert_int_equal(aqs_qwen_scope_parse("all_layers", &s, NULL), AQS_OK);
  assert_int_equal(s, AQS_SCOPE_ALL_LAYERS);
  aqs_err e = {0};
  assert_int_equal(aqs_qwen_scope_parse("vision", &s, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "unknown scope \"vision\""));
  assert_true(aqs_qwen_module_disabled("lm_head", aqs_qwen_default_disabled));
  assert_true(aqs_qwen_module_disabled("model.language_model.embed_tokens", aqs_qwen_default_disabled));
  assert_true(aqs_qwen_module_disabled("model.layers.0.input_layernorm", aqs_qwen_default_disabled));
  assert_false(aqs_qwen_module_disabled("visual.patch_embed.proj", aqs_qwen_default_disabled));
  assert_false(aqs_qwen_module_disabled("model.layers.0.mlp.down_proj", aqs_qwen_default_disabled));
}

/* Independent expectation of group counts and weight parameters for a text/vision shape. */
typedef struct shape_numbers {
  int L, H, KV, hd, hidden, inter, B, vh, vi, m, out;
} shape_numbers;

static void check_groups(const aqs_qwen_model *m, const shape_numbers *s) {
  uint64_t qkv = (uint64_t)s->hidden * (uint64_t)(s->H + 2 * s->KV) * (uint64_t)s->hd;
  uint64_t o = (uint64_t)s->hidden * (uint64_t)s->H * (uint64_t)s->hd;
  uint64_t gate_up = 2ull * (uint64_t)s->inter * (uint64_t)s->hidden;
  uint64_t down = (uint64_t)s->inter * (uint64_t)s->hidden;
  uint64_t lm_total = (uint64_t)s->L * (qkv + o + gate_up + down);
  uint64_t vqkv = 3ull * (uint64_t)s->vh * (uint64_t)s->vh, vproj = (uint64_t)s->vh * (uint64_t)s->vh;
  uint64_t vgu = 2ull * (uint64_t)s->vi * (uint64_t)s->vh, vdown = (uint64_t)s->vi * (uint64_t)s->vh;
  uint64_t merged = (uint64_t)s->vh * (uint64_t)(s->m * s->m);
  uint64_t merger = merged * merged + (uint64_t)s->out * merged;
  uint64_t patch = (uint64_t)s->vh * 3u * 2u * 14u * 14u;
  uint64_t vis_total = (uint64_t)s->B * (vqkv + vproj + vgu + vdown) + merger + patch;
  assert_int_equal(m->ngroups, (size_t)(4 * s->L + 4 * s->B + 3));
  assert_int_equal(m->n_lm_groups, (size_t)(4 * s->L));
  assert_int_equal(aqs_qwen_scope_weight_params(m, AQS_SCOPE_LM_ONLY), lm_total);
  assert_int_equal(aqs_qwen_scope_weight_params(m, AQS_SCOPE_ALL_LAYERS), lm_total + vis_total);
  const aqs_qwen_group *g = aqs_qwen_find_group(m, "lm.0.qkv");
  assert_non_null(g);
  assert_int_equal(g->nmembers, 3);
  assert_int_equal(g->weight_params, qkv);
  assert_int_equal(g->bias_params, (uint64_t)(s->H + 2 * s->KV) * (uint64_t)s->hd);
  assert_int_equal(aqs_qwen_find_group(m, "lm.0.o")->weight_params, o);
  assert_int_equal(aqs_qwen_find_group(m, "lm.0.o")->bias_params, 0);
  assert_int_equal(aqs_qwen_find_group(m, "lm.0.gate_up")->weight_params, gate_up);
  assert_int_equal(aqs_qwen_find_group(m, "lm.0.down")->weight_params, down);
  char id[32];
  snprintf(id, sizeof id, "vis.%d.gate_up", s->B - 1);
  g = aqs_qwen_find_group(m, id);
  assert_non_null(g);
  assert_int_equal(g->weight_params, vgu);
  assert_int_equal(g->bias_params, 2ull * (uint64_t)s->vi);
  assert_int_equal(aqs_qwen_find_group(m, "vis.0.qkv")->weight_params, vqkv);
  assert_int_equal(aqs_qwen_find_group(m, "vis.0.proj")->weight_params, vproj);
  assert_int_equal(aqs_qwen_find_group(m, "vis.0.down")->weight_params, vdown);
  g = aqs_qwen_find_group(m, "vis.merger.mlp.0");
  assert_non_null(g);
  assert_int_equal(g->layer, -1);
  assert_int_equal(g->nmembers, 1);
  assert_int_equal(g->weight_params + aqs_qwen_find_group(m, "vis.merger.mlp.2")->weight_params,
                   merger);
  g = aqs_qwen_find_group(m, "vis.patch_embed");
  assert_non_null(g);
  assert_int_equal(g->members[0].in_features, 1176);
  assert_int_equal(g->weight_params, patch);
  assert_int_equal(g->bias_params, 0);
  snprintf(id, sizeof id, "lm.%d.qkv", s->L);
  assert_null(aqs_qwen_find_group(m, id));
  /* Scopes: lm_only holds exactly the lm.* groups. */
  size_t in_lm = 0;
  for (size_t i = 0; i < m->ngroups; i++) {
    int is_lm = strncmp(m->groups[i].id, "lm.", 3) == 0;
    assert_int_equal(aqs_qwen_group_in_scope(&m->groups[i], AQS_SCOPE_LM_ONLY), is_lm);
    assert_true(aqs_qwen_group_in_scope(&m->groups[i], AQS_SCOPE_ALL_LAYERS));
    in_lm += (size_t)is_lm;
    for (int k = 0; k < m->groups[i].nmembers; k++)
      assert_false(aqs_qwen_module_disabled(m->groups[i].members[k].module, aqs_qwen_default_disabled));
  }
  assert_int_equal(in_lm, (size_t)(4 * s->L));
}

static void test_groups_3b(void **state) {
  (void)state;
  aqs_qwen_config c;
  aqs_err e = {0};
  assert_int_equal(aqs_qwen_config_parse(hub_3b_config, strlen(hub_3b_config), "hub", &c, &e), AQS_OK);
  aqs_qwen_model *m;
  assert_int_equal(aqs_qwen_model_from_config(&c, AQS_NAMING_HF4, &m, &e), AQS_OK);
  shape_numbers s = {36, 16, 2, 128, 2048, 11008, 32, 1280, 3420, 2, 2048};
  check_groups(m, &s);
  /* Written out for the record: 144 lm groups, 2,774,532,096 lm weights; 275 groups and
   * 3,442,702,336 weights in all_layers (patch_embed 1280 x 1176 = 1,505,280 of them). */
  assert_int_equal(aqs_qwen_scope_weight_params(m, AQS_SCOPE_LM_ONLY), 2774532096ull);
  assert_int_equal(aqs_qwen_scope_weight_params(m, AQS_SCOPE_ALL_LAYERS), 3442702336ull);
  const aqs_qwen_group *g = aqs_qwen_find_group(m, "lm.35.qkv");
  assert_string_equal(g->members[0].module, "model.layers.35.self_attn.q_proj");
  assert_string_equal(g->members[2].module, "model.layers.35.self_attn.v_proj");
  assert_int_equal(g->members[1].out_features, 256);
  assert_string_equal(aqs_qwen_find_group(m, "vis.merger.mlp.0")->members[0].module,
                      "visual.merger.mlp.0");
  assert_string_equal(aqs_qwen_find_group(m, "vis.merger.mlp.2")->members[0].module,
                      "visual.merger.mlp.2");
  assert_string_equal(aqs_qwen_find_group(m, "vis.patch_embed")->members[0].module,
                      "visual.patch_embed.proj");
  assert_ptr_equal(aqs_qwen_group_of_module(m, "model.layers.7.mlp.up_proj.weight"),
                   aqs_qwen_find_group(m, "lm.7.gate_up"));
  assert_ptr_equal(aqs_qwen_group_of_module(m, "visual.blocks.4.attn.proj"),
                   aqs_qwen_find_group(m, "vis.4.proj"));
  assert_null(aqs_qwen_group_of_module(m, "lm_head.weight"));
  assert_null(aqs_qwen_group_of_module(m, "model.layers.7.mlp.up_proj.weightx"));
  /* Tensor specs: tied head optional; 36 layers x 12 + embed + norm + head; vision 32 x 12 +
   * patch_embed + merger (ln_q + 2 linears x 2). */
  assert_int_equal(m->ntensors, 36 * 12 + 3 + 32 * 12 + 1 + 5);
  const aqs_qwen_tensor_spec *t = aqs_qwen_find_tensor(m, "lm_head.weight");
  assert_non_null(t);
  assert_int_equal(t->optional, 1);
  t = aqs_qwen_find_tensor(m, "visual.patch_embed.proj.weight");
  assert_int_equal(t->ndim, 5);
  assert_int_equal(t->shape[0], 1280);
  assert_int_equal(t->shape[4], 14);
  t = aqs_qwen_find_tensor(m, "model.embed_tokens.weight");
  assert_int_equal(t->shape[0], 151936);
  aqs_qwen_model_free(m);
}

static void test_groups_tiny(void **state) {
  (void)state;
  aqs_qwen_config c;
  aqs_err e = {0};
  assert_int_equal(aqs_synth_preset("tiny", &c, &e), AQS_OK);
  aqs_qwen_model *m;
  assert_int_equal(aqs_qwen_model_from_config(&c, AQS_NAMING_HF5, &m, &e), AQS_OK);
  shape_numbers s = {4, 4, 2, 16, 64, 128, 2, 32, 64, 2, 64};
  check_groups(m, &s);
  /* Order: lm groups by layer (qkv, o, gate_up, down), then the patch embedding, the vision
   * blocks, then the merger's two linears. */
  assert_string_equal(m->groups[0].id, "lm.0.qkv");
  assert_string_equal(m->groups[1].id, "lm.0.o");
  assert_string_equal(m->groups[2].id, "lm.0.gate_up");
  assert_string_equal(m->groups[3].id, "lm.0.down");
  assert_string_equal(m->groups[16].id, "vis.patch_embed");
  assert_string_equal(m->groups[17].id, "vis.0.qkv");
  assert_string_equal(m->groups[m->ngroups - 2].id, "vis.merger.mlp.0");
  assert_string_equal(m->groups[m->ngroups - 1].id, "vis.merger.mlp.2");
  assert_string_equal(m->groups[17].members[0].module, "model.visual.blocks.0.attn.qkv");
  assert_string_equal(m->groups[4].members[1].module, "model.language_model.layers.1.self_attn.k_proj");
  aqs_qwen_model_free(m);
}

/* Writes dir/config.json from preset with one text field changed, plus the given tensors. */
static void write_model(const char *dir, const aqs_qwen_config *cfg, const aqs_qwen_model *m,
                        const char *skip, const char *rename_from, const char *rename_to) {
  char path[4200];
  char *json = aqs_qwen_config_to_json(cfg);
  snprintf(path, sizeof path, "%s/config.json", dir);
  tu_write_file(path, json, strlen(json));
  free(json);
  aqs_st_write_item *items = calloc(m->ntensors, sizeof *items);
  static uint16_t zeros[1 << 16];
  size_t n = 0;
  for (size_t i = 0; i < m->ntensors; i++) {
    const aqs_qwen_tensor_spec *t = &m->tensors[i];
    if (t->optional || (skip && strcmp(t->name, skip) == 0)) continue;
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) numel *= (uint64_t)t->shape[d];
    assert_true(numel <= (1u << 16));
    const char *name = rename_from && strcmp(t->name, rename_from) == 0 ? rename_to : t->name;
    items[n++] = (aqs_st_write_item){name, AQS_DT_BF16, t->ndim, t->shape, zeros};
  }
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  aqs_err e = {0};
  if (aqs_st_write_file(path, items, n, NULL, &e)) fail_msg("%s", e.msg);
  free(items);
}

static void test_model_check(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("qcheck");
  aqs_qwen_config cfg;
  aqs_err e = {0};
  assert_int_equal(aqs_synth_preset("tiny", &cfg, &e), AQS_OK);
  aqs_qwen_model *m, *m4;
  assert_int_equal(aqs_qwen_model_from_config(&cfg, AQS_NAMING_HF5, &m, &e), AQS_OK);
  assert_int_equal(aqs_qwen_model_from_config(&cfg, AQS_NAMING_HF4, &m4, &e), AQS_OK);
  /* A consistent checkpoint opens; groups come with it. */
  write_model(dir, &cfg, m, NULL, NULL, NULL);
  aqs_qwen_model *got;
  aqs_ckpt *c;
  if (aqs_qwen_model_open(dir, &got, &c, &e)) fail_msg("%s", e.msg);
  assert_int_equal(got->ngroups, 27);
  aqs_qwen_model_free(got);
  aqs_ckpt_close(c);
  /* Config says intermediate 136, tensors have 128: error names the first tensor and both shapes. */
  aqs_qwen_config wider = cfg;
  wider.text.intermediate_size = 136;
  char *json = aqs_qwen_config_to_json(&wider);
  char path[4200];
  snprintf(path, sizeof path, "%s/config.json", dir);
  tu_write_file(path, json, strlen(json));
  free(json);
  assert_int_equal(aqs_qwen_model_open(dir, &got, &c, &e), AQS_ERR_MISMATCH);
  assert_non_null(strstr(e.msg, "tensor \"model.language_model.layers.0.mlp.gate_proj.weight\" "
                                "has shape [128, 64] but config.json implies [136, 64]"));
  assert_null(got);
  assert_null(c);
  /* A tensor missing from the checkpoint. */
  write_model(dir, &cfg, m, "model.visual.blocks.1.attn.proj.bias", NULL, NULL);
  assert_int_equal(aqs_qwen_model_open(dir, &got, NULL, &e), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "tensor \"model.visual.blocks.1.attn.proj.bias\" required by "
                                "config.json is missing"));
  /* Naming: hf4 tensors are detected; a mix of both schemes is refused. */
  write_model(dir, &cfg, m4, NULL, NULL, NULL);
  if (aqs_qwen_model_open(dir, &got, NULL, &e)) fail_msg("%s", e.msg);
  assert_int_equal(got->naming, AQS_NAMING_HF4);
  assert_string_equal(got->groups[0].members[0].module, "model.layers.0.self_attn.q_proj");
  aqs_qwen_model_free(got);
  write_model(dir, &cfg, m4, NULL, "visual.merger.ln_q.weight", "model.visual.merger.ln_q.weight");
  assert_int_equal(aqs_qwen_model_open(dir, &got, NULL, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "mix both naming schemes"));
  /* An unknown architecture is refused before the weights are read. */
  snprintf(path, sizeof path, "%s/config.json", dir);
  const char *llama = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\"}";
  tu_write_file(path, llama, strlen(llama));
  assert_int_equal(aqs_qwen_model_open(dir, &got, NULL, &e), AQS_ERR_UNSUPPORTED);
  assert_non_null(strstr(e.msg, "architectures [\"LlamaForCausalLM\"], model_type \"llama\""));
  aqs_qwen_model_free(m);
  aqs_qwen_model_free(m4);
  tu_rm_rf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_parse_hub_4x_layout),
    cmocka_unit_test(test_5x_layout_round_trip),
    cmocka_unit_test(test_parse_5x_nested),
    cmocka_unit_test(test_config_errors),
    cmocka_unit_test(test_naming),
    cmocka_unit_test(test_groups_3b),
    cmocka_unit_test(test_groups_tiny),
    cmocka_unit_test(test_model_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
