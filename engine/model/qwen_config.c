/* engine/model/qwen_config.c: parses a Qwen2.5-VL config.json in either transformers layout
 * (4.x: text fields at the top level; 5.x: a `text_config` object) into aqs_qwen_config, checking
 * the architecture and the consistency of the shapes the forward pass depends on. */
#include "common/file.h"
#include "engine/model/qwen_config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Looks key up in the first object that has it (text_config, then the root). */
static json_t *lookup(json_t *primary, json_t *fallback, const char *key) {
  json_t *v = primary ? json_object_get(primary, key) : NULL;
  if (!v && fallback) v = json_object_get(fallback, key);
  return v;
}

static aqs_status get_int(json_t *obj, json_t *fallback, const char *key, const char *where,
                          int required, int dflt, int *out, const char *src, aqs_err *e) {
  json_t *v = lookup(obj, fallback, key);
  if (!v || json_is_null(v)) {
    if (required)
      return aqs_errf(e, AQS_ERR_INVALID, "%s: missing required field %s%s", src, where, key);
    *out = dflt;
    return AQS_OK;
  }
  if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > 0x7fffffff)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: field %s%s is not a valid integer", src, where, key);
  *out = (int)json_integer_value(v);
  return AQS_OK;
}

static aqs_status get_real(json_t *obj, json_t *fallback, const char *key, const char *where,
                           double dflt, double *out, const char *src, aqs_err *e) {
  json_t *v = lookup(obj, fallback, key);
  if (!v || json_is_null(v)) {
    *out = dflt;
    return AQS_OK;
  }
  if (!json_is_number(v))
    return aqs_errf(e, AQS_ERR_INVALID, "%s: field %s%s is not a number", src, where, key);
  *out = json_number_value(v);
  return AQS_OK;
}

/* Builds the "architectures [..], model_type ..." phrase for the unsupported-model error. */
static void describe_arch(json_t *root, char *buf, size_t n) {
  json_t *archs = json_object_get(root, "architectures");
  json_t *mt = json_object_get(root, "model_type");
  char *archs_text = archs ? json_dumps(archs, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  snprintf(buf, n, "architectures %s, model_type \"%s\"", archs_text ? archs_text : "(absent)",
           json_is_string(mt) ? json_string_value(mt) : "(absent)");
  free(archs_text);
}

static aqs_status check_arch(json_t *root, aqs_qwen_config *out, const char *src, aqs_err *e) {
  static const char *const known_archs[] = {"Qwen2_5_VLForConditionalGeneration",
                                            "Qwen2_5_VLModel", NULL};
  json_t *mt = json_object_get(root, "model_type");
  json_t *archs = json_object_get(root, "architectures");
  int ok = json_is_string(mt) && strcmp(json_string_value(mt), "qwen2_5_vl") == 0;
  const char *arch = NULL;
  if (ok && archs) {
    ok = 0;
    size_t i;
    json_t *a;
    json_array_foreach(archs, i, a) {
      for (int k = 0; json_is_string(a) && known_archs[k]; k++)
        if (strcmp(json_string_value(a), known_archs[k]) == 0) {
          ok = 1;
          arch = known_archs[k];
        }
    }
  }
  if (!ok) {
    char what[512];
    describe_arch(root, what, sizeof what);
    return aqs_errf(e, AQS_ERR_UNSUPPORTED,
                    "%s: unsupported model (%s); aqs supports model_type \"qwen2_5_vl\" "
                    "(Qwen2_5_VLForConditionalGeneration)",
                    src, what);
  }
  snprintf(out->model_type, sizeof out->model_type, "qwen2_5_vl");
  snprintf(out->architecture, sizeof out->architecture, "%s",
           arch ? arch : "Qwen2_5_VLForConditionalGeneration");
  return AQS_OK;
}

/* rope_theta and mrope_section live in rope_scaling (4.x), rope_parameters (5.x) or the text
 * object itself (rope_theta in 4.x). */
static aqs_status parse_rope(json_t *text, json_t *root, aqs_qwen_text_config *t, const char *w,
                             const char *src, aqs_err *e) {
  json_t *rp = lookup(text, root, "rope_parameters");
  json_t *rs = lookup(text, root, "rope_scaling");
  json_t *holder = json_is_object(rp) ? rp : (json_is_object(rs) ? rs : NULL);
  aqs_status st = get_real(text, root, "rope_theta", w, 1000000.0, &t->rope_theta, src, e);
  if (!st && holder && json_object_get(holder, "rope_theta"))
    st = get_real(holder, NULL, "rope_theta", "rope_parameters.", 0, &t->rope_theta, src, e);
  if (st) return st;
  json_t *sec = holder ? json_object_get(holder, "mrope_section") : NULL;
  if (!json_is_array(sec) || json_array_size(sec) != 3)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s: missing %srope_scaling.mrope_section (or rope_parameters.mrope_section) "
                    "as an array of 3 integers",
                    src, w);
  int sum = 0;
  for (int i = 0; i < 3; i++) {
    json_t *v = json_array_get(sec, (size_t)i);
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > 4096)
      return aqs_errf(e, AQS_ERR_INVALID, "%s: mrope_section[%d] is not a positive integer", src, i);
    t->mrope_section[i] = (int)json_integer_value(v);
    sum += t->mrope_section[i];
  }
  if (sum * 2 != t->head_dim)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s: mrope_section [%d, %d, %d] sums to %d but head_dim / 2 is %d", src,
                    t->mrope_section[0], t->mrope_section[1], t->mrope_section[2], sum,
                    t->head_dim / 2);
  return AQS_OK;
}

static aqs_status parse_text(json_t *text, json_t *root, aqs_qwen_config *c, const char *src,
                             aqs_err *e) {
  const char *w = text ? "text_config." : "";
  json_t *fb = text ? root : NULL; /* 5.x: fall back to the root for fields written there */
  json_t *obj = text ? text : root;
  aqs_qwen_text_config *t = &c->text;
  aqs_status st = AQS_OK;
  if (!st) st = get_int(obj, fb, "hidden_size", w, 1, 0, &t->hidden_size, src, e);
  if (!st) st = get_int(obj, fb, "num_hidden_layers", w, 1, 0, &t->num_layers, src, e);
  if (!st) st = get_int(obj, fb, "num_attention_heads", w, 1, 0, &t->num_heads, src, e);
  if (!st) st = get_int(obj, fb, "num_key_value_heads", w, 0, t->num_heads, &t->num_kv_heads, src, e);
  if (!st) st = get_int(obj, fb, "intermediate_size", w, 1, 0, &t->intermediate_size, src, e);
  if (!st) st = get_int(obj, fb, "vocab_size", w, 1, 0, &t->vocab_size, src, e);
  if (!st) st = get_int(obj, fb, "max_position_embeddings", w, 0, 32768, &t->max_position_embeddings, src, e);
  if (!st) st = get_real(obj, fb, "rms_norm_eps", w, 1e-6, &t->rms_norm_eps, src, e);
  if (st) return st;
  if (t->hidden_size <= 0 || t->num_layers <= 0 || t->num_heads <= 0 || t->num_kv_heads <= 0 ||
      t->intermediate_size <= 0 || t->vocab_size <= 0)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s: %shidden_size, num_hidden_layers, num_attention_heads, "
                    "num_key_value_heads, intermediate_size and vocab_size must be positive",
                    src, w);
  if (t->num_heads % t->num_kv_heads != 0)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s: %snum_attention_heads %d is not a multiple of num_key_value_heads %d", src,
                    w, t->num_heads, t->num_kv_heads);
  int dflt_head_dim = t->hidden_size / t->num_heads;
  st = get_int(obj, fb, "head_dim", w, 0, dflt_head_dim, &t->head_dim, src, e);
  if (st) return st;
  if (t->hidden_size % t->num_heads != 0 && !lookup(obj, fb, "head_dim"))
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s: %shidden_size %d is not a multiple of num_attention_heads %d", src, w,
                    t->hidden_size, t->num_heads);
  if (t->head_dim <= 0 || t->head_dim % 2)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: %shead_dim %d must be positive and even", src, w,
                    t->head_dim);
  json_t *tie = lookup(obj, fb, "tie_word_embeddings");
  t->tie_word_embeddings = tie ? json_is_true(tie) : 0;
  if (text && json_object_get(root, "tie_word_embeddings"))
    t->tie_word_embeddings = json_is_true(json_object_get(root, "tie_word_embeddings"));
  return parse_rope(obj, fb, t, w, src, e);
}

static aqs_status parse_vision(json_t *vis, aqs_qwen_config *c, const char *src, aqs_err *e) {
  const char *w = "vision_config.";
  if (!json_is_object(vis))
    return aqs_errf(e, AQS_ERR_INVALID, "%s: missing required object vision_config", src);
  aqs_qwen_vision_config *v = &c->vision;
  aqs_status st = AQS_OK;
  if (!st) st = get_int(vis, NULL, "depth", w, 1, 0, &v->depth, src, e);
  if (!st) st = get_int(vis, NULL, "hidden_size", w, 1, 0, &v->hidden_size, src, e);
  if (!st) st = get_int(vis, NULL, "num_heads", w, 1, 0, &v->num_heads, src, e);
  if (!st) st = get_int(vis, NULL, "intermediate_size", w, 1, 0, &v->intermediate_size, src, e);
  if (!st) st = get_int(vis, NULL, "out_hidden_size", w, 1, 0, &v->out_hidden_size, src, e);
  if (!st) st = get_int(vis, NULL, "in_channels", w, 0, -2, &v->in_channels, src, e);
  if (!st && v->in_channels == -2) st = get_int(vis, NULL, "in_chans", w, 0, 3, &v->in_channels, src, e);
  if (!st) st = get_int(vis, NULL, "patch_size", w, 0, 14, &v->patch_size, src, e);
  if (!st) st = get_int(vis, NULL, "spatial_merge_size", w, 0, 2, &v->spatial_merge_size, src, e);
  if (!st) st = get_int(vis, NULL, "temporal_patch_size", w, 0, 2, &v->temporal_patch_size, src, e);
  if (!st) st = get_int(vis, NULL, "window_size", w, 0, 112, &v->window_size, src, e);
  if (!st) st = get_int(vis, NULL, "tokens_per_second", w, 0, 2, &v->tokens_per_second, src, e);
  if (!st) st = get_real(vis, NULL, "rms_norm_eps", w, 1e-6, &v->rms_norm_eps, src, e);
  if (st) return st;
  if (v->depth <= 0 || v->hidden_size <= 0 || v->num_heads <= 0 || v->intermediate_size <= 0 ||
      v->in_channels <= 0 || v->patch_size <= 0 || v->spatial_merge_size <= 0 ||
      v->temporal_patch_size <= 0)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: vision_config sizes must be positive", src);
  if (v->hidden_size % v->num_heads != 0)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s: vision_config.hidden_size %d is not a multiple of num_heads %d", src,
                    v->hidden_size, v->num_heads);
  if (v->out_hidden_size != c->text.hidden_size)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s: vision_config.out_hidden_size %d differs from the text hidden_size %d",
                    src, v->out_hidden_size, c->text.hidden_size);
  json_t *full = json_object_get(vis, "fullatt_block_indexes");
  if (full && !json_is_array(full))
    return aqs_errf(e, AQS_ERR_INVALID, "%s: vision_config.fullatt_block_indexes is not an array", src);
  size_t i;
  json_t *idx;
  json_array_foreach(full, i, idx) {
    if (i >= AQS_QWEN_MAX_FULLATT)
      return aqs_errf(e, AQS_ERR_INVALID, "%s: more than %d fullatt_block_indexes", src,
                      AQS_QWEN_MAX_FULLATT);
    if (!json_is_integer(idx) || json_integer_value(idx) < 0 || json_integer_value(idx) >= v->depth)
      return aqs_errf(e, AQS_ERR_INVALID,
                      "%s: vision_config.fullatt_block_indexes[%zu] is not a block index < depth %d",
                      src, i, v->depth);
    v->fullatt_block_indexes[v->n_fullatt++] = (int)json_integer_value(idx);
  }
  return AQS_OK;
}

aqs_status aqs_qwen_config_parse(const char *json_text, size_t len, const char *source,
                                 aqs_qwen_config *out, aqs_err *e) {
  memset(out, 0, sizeof *out);
  json_error_t jerr;
  json_t *root = json_loadb(json_text, len, 0, &jerr);
  if (!root)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: line %d: %s", source, jerr.line, jerr.text);
  aqs_status st = AQS_OK;
  if (!json_is_object(root)) {
    st = aqs_errf(e, AQS_ERR_INVALID, "%s: not a JSON object", source);
    goto done;
  }
  st = check_arch(root, out, source, e);
  if (st) goto done;
  json_t *text = json_object_get(root, "text_config");
  if (text && !json_is_object(text)) {
    st = aqs_errf(e, AQS_ERR_INVALID, "%s: text_config is not an object", source);
    goto done;
  }
  out->layout = text ? 5 : 4;
  st = parse_text(text, root, out, source, e);
  if (!st) st = parse_vision(json_object_get(root, "vision_config"), out, source, e);
  /* Token ids: top level (both layouts), else text_config. */
  if (!st) st = get_int(root, text, "image_token_id", "", 0, 151655, &out->image_token_id, source, e);
  if (!st) st = get_int(root, text, "video_token_id", "", 0, 151656, &out->video_token_id, source, e);
  if (!st) st = get_int(root, text, "vision_start_token_id", "", 0, 151652, &out->vision_start_token_id, source, e);
  if (!st) st = get_int(root, text, "vision_end_token_id", "", 0, 151653, &out->vision_end_token_id, source, e);
  if (!st) st = get_int(root, text, "bos_token_id", "", 0, -1, &out->bos_token_id, source, e);
  if (!st) st = get_int(root, text, "eos_token_id", "", 0, -1, &out->eos_token_id, source, e);
  if (st) goto done;
  const int ids[] = {out->image_token_id, out->video_token_id, out->vision_start_token_id,
                     out->vision_end_token_id};
  const char *names[] = {"image_token_id", "video_token_id", "vision_start_token_id",
                         "vision_end_token_id"};
  for (int i = 0; i < 4; i++)
    if (ids[i] < 0 || ids[i] >= out->text.vocab_size) {
      st = aqs_errf(e, AQS_ERR_INVALID, "%s: %s %d is outside the vocabulary (vocab_size %d)",
                    source, names[i], ids[i], out->text.vocab_size);
      break;
    }
done:
  json_decref(root);
  return st;
}

aqs_status aqs_qwen_config_load(const char *path, aqs_qwen_config *out, aqs_err *e) {
  char *file = NULL;
  struct stat sb;
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    if (asprintf(&file, "%s/config.json", path) < 0) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  } else if (!(file = strdup(path))) {
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  char *buf = NULL;
  size_t len = 0;
  aqs_status st = aqs_file_read_input(file, AQS_INPUT_CONFIG, &buf, &len, e);
  if (!st) st = aqs_qwen_config_parse(buf, len, file, out, e);
  free(buf);
  free(file);
  return st;
}
