/* engine/model/qwen_config_json.c: writes an aqs_qwen_config as a transformers 5.x config.json
 * (text_config + vision_config objects), with every field transformers reads to build
 * Qwen2_5_VLForConditionalGeneration. Used by `aqs synth-model`. */
#include "engine/model/qwen_config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static json_t *text_json(const aqs_qwen_config *c) {
  const aqs_qwen_text_config *t = &c->text;
  json_t *rope = json_pack("{s:s, s:[i,i,i], s:f}", "rope_type", "default", "mrope_section",
                           t->mrope_section[0], t->mrope_section[1], t->mrope_section[2],
                           "rope_theta", t->rope_theta);
  json_t *text = json_object();
  json_object_set_new(text, "model_type", json_string("qwen2_5_vl_text"));
  json_object_set_new(text, "vocab_size", json_integer(t->vocab_size));
  json_object_set_new(text, "hidden_size", json_integer(t->hidden_size));
  json_object_set_new(text, "intermediate_size", json_integer(t->intermediate_size));
  json_object_set_new(text, "num_hidden_layers", json_integer(t->num_layers));
  json_object_set_new(text, "num_attention_heads", json_integer(t->num_heads));
  json_object_set_new(text, "num_key_value_heads", json_integer(t->num_kv_heads));
  if (t->head_dim != t->hidden_size / t->num_heads)
    json_object_set_new(text, "head_dim", json_integer(t->head_dim));
  json_object_set_new(text, "hidden_act", json_string("silu"));
  json_object_set_new(text, "max_position_embeddings", json_integer(t->max_position_embeddings));
  json_object_set_new(text, "initializer_range", json_real(0.02));
  json_object_set_new(text, "rms_norm_eps", json_real(t->rms_norm_eps));
  json_object_set_new(text, "use_cache", json_true());
  json_object_set_new(text, "tie_word_embeddings", json_boolean(t->tie_word_embeddings));
  json_object_set_new(text, "use_sliding_window", json_false());
  json_object_set_new(text, "sliding_window", json_null());
  json_object_set_new(text, "max_window_layers", json_integer(t->num_layers));
  json_object_set_new(text, "attention_dropout", json_real(0.0));
  json_object_set_new(text, "rope_theta", json_real(t->rope_theta));
  json_object_set_new(text, "rope_parameters", rope);
  if (c->bos_token_id >= 0) json_object_set_new(text, "bos_token_id", json_integer(c->bos_token_id));
  if (c->eos_token_id >= 0) json_object_set_new(text, "eos_token_id", json_integer(c->eos_token_id));
  json_object_set_new(text, "dtype", json_string("bfloat16"));
  return text;
}

static json_t *vision_json(const aqs_qwen_config *c) {
  const aqs_qwen_vision_config *v = &c->vision;
  json_t *full = json_array();
  for (int i = 0; i < v->n_fullatt; i++)
    json_array_append_new(full, json_integer(v->fullatt_block_indexes[i]));
  json_t *vis = json_object();
  json_object_set_new(vis, "model_type", json_string("qwen2_5_vl"));
  json_object_set_new(vis, "depth", json_integer(v->depth));
  json_object_set_new(vis, "hidden_size", json_integer(v->hidden_size));
  json_object_set_new(vis, "hidden_act", json_string("silu"));
  json_object_set_new(vis, "intermediate_size", json_integer(v->intermediate_size));
  json_object_set_new(vis, "num_heads", json_integer(v->num_heads));
  json_object_set_new(vis, "in_channels", json_integer(v->in_channels));
  json_object_set_new(vis, "in_chans", json_integer(v->in_channels));
  json_object_set_new(vis, "patch_size", json_integer(v->patch_size));
  json_object_set_new(vis, "spatial_merge_size", json_integer(v->spatial_merge_size));
  json_object_set_new(vis, "spatial_patch_size", json_integer(v->patch_size));
  json_object_set_new(vis, "temporal_patch_size", json_integer(v->temporal_patch_size));
  json_object_set_new(vis, "tokens_per_second", json_integer(v->tokens_per_second));
  json_object_set_new(vis, "window_size", json_integer(v->window_size));
  json_object_set_new(vis, "out_hidden_size", json_integer(v->out_hidden_size));
  json_object_set_new(vis, "fullatt_block_indexes", full);
  json_object_set_new(vis, "initializer_range", json_real(0.02));
  json_object_set_new(vis, "dtype", json_string("bfloat16"));
  return vis;
}

char *aqs_qwen_config_to_json(const aqs_qwen_config *c) {
  json_t *root = json_object();
  if (!root) return NULL;
  json_object_set_new(root, "architectures", json_pack("[s]", "Qwen2_5_VLForConditionalGeneration"));
  json_object_set_new(root, "model_type", json_string("qwen2_5_vl"));
  json_object_set_new(root, "dtype", json_string("bfloat16"));
  json_object_set_new(root, "image_token_id", json_integer(c->image_token_id));
  json_object_set_new(root, "video_token_id", json_integer(c->video_token_id));
  json_object_set_new(root, "vision_start_token_id", json_integer(c->vision_start_token_id));
  json_object_set_new(root, "vision_end_token_id", json_integer(c->vision_end_token_id));
  if (c->bos_token_id >= 0) json_object_set_new(root, "bos_token_id", json_integer(c->bos_token_id));
  if (c->eos_token_id >= 0) json_object_set_new(root, "eos_token_id", json_integer(c->eos_token_id));
  json_object_set_new(root, "tie_word_embeddings", json_boolean(c->text.tie_word_embeddings));
  json_object_set_new(root, "text_config", text_json(c));
  json_object_set_new(root, "vision_config", vision_json(c));
  char *out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
  json_decref(root);
  if (!out) return NULL;
  size_t n = strlen(out);
  char *with_nl = realloc(out, n + 2);
  if (!with_nl) {
    free(out);
    return NULL;
  }
  with_nl[n] = '\n';
  with_nl[n + 1] = '\0';
  return with_nl;
}
