/* engine/model/qwen_config.h: the Qwen2.5-VL model description: config.json (transformers 4.x
 * flat layout and 5.x `text_config` layout), checkpoint tensor naming (both schemes), and the
 * quantization groups of DESIGN.md §2 with their members, parameter counts and scopes.
 *
 * Naming schemes (detected from the checkpoint's tensor names):
 *   AQS_NAMING_HF4:  model.embed_tokens, model.layers.<L>.*, model.norm, lm_head, visual.*
 *                    (the Qwen/Qwen2.5-VL-* hub checkpoints)
 *   AQS_NAMING_HF5:  model.language_model.{embed_tokens,layers.<L>.*,norm}, model.visual.*,
 *                    lm_head (what transformers >= 4.52 / 5.x save_pretrained writes)
 * With tie_word_embeddings, lm_head.weight may be absent (the embedding is used).
 *
 * Linear modules per language layer L (prefix P = "model.layers.<L>." or
 * "model.language_model.layers.<L>."):
 *   P self_attn.{q,k,v}_proj  (weight [out, hidden], bias [out])   q out = heads*head_dim,
 *                                                                  k/v out = kv_heads*head_dim
 *   P self_attn.o_proj        (weight [hidden, heads*head_dim], no bias)
 *   P mlp.{gate,up}_proj      (weight [intermediate, hidden], no bias)
 *   P mlp.down_proj           (weight [hidden, intermediate], no bias)
 *   P input_layernorm.weight, P post_attention_layernorm.weight  [hidden]
 * Vision block B (prefix V = "visual.blocks.<B>." or "model.visual.blocks.<B>."):
 *   V attn.qkv   (weight [3*vh, vh], bias)   V attn.proj (weight [vh, vh], bias)
 *   V mlp.{gate,up}_proj (weight [vi, vh], bias)   V mlp.down_proj (weight [vh, vi], bias)
 *   V norm1.weight, V norm2.weight [vh] (RMSNorm)
 * Vision stem/merger: patch_embed.proj.weight [vh, 3, temporal_patch, patch, patch] (no bias),
 *   merger.ln_q.weight [vh], merger.mlp.0 (weight [vh*m*m, vh*m*m], bias),
 *   merger.mlp.2 (weight [out_hidden, vh*m*m], bias)   with m = spatial_merge_size.
 *
 * Groups (stable ids; members are module names without ".weight", in checkpoint naming):
 *   lm.<L>.qkv = q_proj,k_proj,v_proj   lm.<L>.o = o_proj
 *   lm.<L>.gate_up = gate_proj,up_proj  lm.<L>.down = down_proj
 *   vis.<B>.qkv = attn.qkv  vis.<B>.proj = attn.proj  vis.<B>.gate_up = mlp.gate_proj,mlp.up_proj
 *   vis.<B>.down = mlp.down_proj        vis.patch_embed = patch_embed.proj (the Conv3d as a
 *   linear [vh, 3*temporal*patch*patch])   vis.merger.mlp.0 = merger.mlp.0
 *   vis.merger.mlp.2 = merger.mlp.2   (ModelOpt AutoQuantize groups only q/k/v and gate/up
 *   siblings; every other linear is its own group)
 * Order: all lm groups by layer (qkv, o, gate_up, down), then vis.patch_embed, the vision blocks
 * (qkv, proj, gate_up, down), then vis.merger.mlp.0, vis.merger.mlp.2. Scope lm_only = the lm.*
 * groups; all_layers = all of them. */
#ifndef AQS_MODEL_QWEN_CONFIG_H
#define AQS_MODEL_QWEN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/model/safetensors.h"

#define AQS_QWEN_MAX_FULLATT 64

typedef struct aqs_qwen_text_config {
  int hidden_size;              /* 2048 for 3B */
  int num_layers;               /* num_hidden_layers: 36 */
  int num_heads;                /* num_attention_heads: 16 */
  int num_kv_heads;             /* num_key_value_heads: 2 */
  int head_dim;                 /* hidden_size / num_heads unless config sets head_dim: 128 */
  int intermediate_size;        /* 11008 */
  int vocab_size;               /* 151936 */
  int max_position_embeddings;  /* 128000 */
  double rms_norm_eps;          /* 1e-6 */
  double rope_theta;            /* 1e6 */
  int mrope_section[3];         /* rope_scaling.mrope_section (t, h, w), sums to head_dim / 2 */
  int tie_word_embeddings;      /* 1 = lm_head shares embed_tokens */
} aqs_qwen_text_config;

typedef struct aqs_qwen_vision_config {
  int depth;                    /* 32 */
  int hidden_size;              /* 1280 */
  int num_heads;                /* 16 */
  int intermediate_size;        /* 3420 */
  int out_hidden_size;          /* 2048 (= text hidden_size) */
  int in_channels;              /* 3 (in_chans / in_channels) */
  int patch_size;               /* 14 */
  int spatial_merge_size;       /* 2 */
  int temporal_patch_size;      /* 2 */
  int window_size;              /* 112 (pixels) */
  int tokens_per_second;        /* 2 (video M-RoPE time scale) */
  int n_fullatt;                /* entries of fullatt_block_indexes */
  int fullatt_block_indexes[AQS_QWEN_MAX_FULLATT]; /* [7, 15, 23, 31] */
  double rms_norm_eps;          /* 1e-6 (vision norms; config rarely sets it) */
} aqs_qwen_vision_config;

typedef struct aqs_qwen_config {
  char model_type[32];          /* "qwen2_5_vl" */
  char architecture[64];        /* "Qwen2_5_VLForConditionalGeneration" */
  int layout;                   /* 4 = flat text fields, 5 = text_config object */
  aqs_qwen_text_config text;
  aqs_qwen_vision_config vision;
  int image_token_id;           /* <|image_pad|>: 151655 */
  int video_token_id;           /* <|video_pad|>: 151656 */
  int vision_start_token_id;    /* <|vision_start|>: 151652 */
  int vision_end_token_id;      /* <|vision_end|>: 151653 */
  int bos_token_id;             /* 151643, -1 if absent */
  int eos_token_id;             /* 151645, -1 if absent */
} aqs_qwen_config;

/* Parses config.json text. source names the file in messages. Accepts model_type "qwen2_5_vl"
 * (architectures Qwen2_5_VLForConditionalGeneration / Qwen2_5_VLModel); anything else is
 * AQS_ERR_UNSUPPORTED naming architectures and model_type. Missing required fields and
 * inconsistent values (hidden % heads, heads % kv_heads, mrope_section sum, vision out_hidden_size
 * != hidden_size, fullatt index >= depth) are AQS_ERR_INVALID naming the field. */
aqs_status aqs_qwen_config_parse(const char *json_text, size_t len, const char *source,
                                 aqs_qwen_config *out, aqs_err *e);
/* Reads and parses a config.json path, or <dir>/config.json when path is a directory. */
aqs_status aqs_qwen_config_load(const char *path, aqs_qwen_config *out, aqs_err *e);
/* Writes cfg as config.json text in the transformers 5.x layout (text_config + vision_config,
 * every field transformers needs to instantiate the model). Caller frees. NULL on OOM. */
char *aqs_qwen_config_to_json(const aqs_qwen_config *cfg);

typedef enum aqs_qwen_naming {
  AQS_NAMING_HF4 = 4,           /* model.layers.N / visual. */
  AQS_NAMING_HF5 = 5            /* model.language_model.layers.N / model.visual. */
} aqs_qwen_naming;

/* Prefixes for a naming scheme (static strings):
 *   lm:  "model." or "model.language_model."   (then "embed_tokens", "layers.<L>.", "norm")
 *   vis: "visual." or "model.visual." */
const char *aqs_qwen_lm_prefix(aqs_qwen_naming naming);
const char *aqs_qwen_vis_prefix(aqs_qwen_naming naming);
/* Full checkpoint name of a language-layer tensor: lm prefix + "layers.<layer>." + suffix,
 * e.g. suffix "self_attn.q_proj.weight". Returns snprintf's length (>= n means truncated). */
int aqs_qwen_lm_name(aqs_qwen_naming naming, int layer, const char *suffix, char *buf, size_t n);
/* Vision block tensor: vis prefix + "blocks.<block>." + suffix. */
int aqs_qwen_vis_name(aqs_qwen_naming naming, int block, const char *suffix, char *buf, size_t n);
/* Non-layer tensor: "embed_tokens.weight"/"norm.weight" get the lm prefix; "lm_head.weight" is
 * as is; "patch_embed.*"/"merger.*" get the vis prefix. Unknown suffixes are prefixed with lm. */
int aqs_qwen_global_name(aqs_qwen_naming naming, const char *suffix, char *buf, size_t n);

/* ---- expected tensors ---- */
typedef enum aqs_qwen_tower { AQS_TOWER_LM = 0, AQS_TOWER_VISION = 1 } aqs_qwen_tower;

typedef struct aqs_qwen_tensor_spec {
  char name[128];               /* checkpoint name */
  aqs_qwen_tower tower;
  int layer;                    /* L or B; -1 for embed/norm/lm_head/patch_embed/merger */
  int ndim;
  int64_t shape[5];
  int optional;                 /* 1 only for lm_head.weight when embeddings are tied */
} aqs_qwen_tensor_spec;

/* ---- groups ---- */
#define AQS_QWEN_GROUP_MAX_MEMBERS 3

typedef struct aqs_qwen_member {
  char module[128];             /* "model.language_model.layers.0.self_attn.q_proj" */
  int64_t out_features;         /* weight shape [out, in] */
  int64_t in_features;
  int has_bias;
} aqs_qwen_member;

typedef struct aqs_qwen_group {
  char id[32];                  /* "lm.0.qkv", "vis.31.down", "vis.merger.mlp.0" */
  aqs_qwen_tower tower;
  int layer;                    /* L or B; -1 for vis.patch_embed and the merger groups */
  char kind[12];                /* "qkv" "o" "gate_up" "down" "proj" "patch_embed" "merger.0"
                                   "merger.2" */
  int nmembers;
  aqs_qwen_member members[AQS_QWEN_GROUP_MAX_MEMBERS];
  uint64_t weight_params;       /* sum of out*in over members (what FP8 quantizes) */
  uint64_t bias_params;         /* sum of bias lengths (stay BF16) */
} aqs_qwen_group;

typedef enum aqs_qwen_scope {
  AQS_SCOPE_LM_ONLY = 0,        /* "lm_only" */
  AQS_SCOPE_ALL_LAYERS = 1      /* "all_layers" */
} aqs_qwen_scope;

/* "lm_only" / "all_layers" -> scope; AQS_ERR_INVALID naming the string otherwise. */
aqs_status aqs_qwen_scope_parse(const char *s, aqs_qwen_scope *out, aqs_err *e);
const char *aqs_qwen_scope_name(aqs_qwen_scope s);
/* 1 if g is a candidate in scope s. */
int aqs_qwen_group_in_scope(const aqs_qwen_group *g, aqs_qwen_scope s);

/* Default disabled patterns (fnmatch globs over module names, NULL-terminated):
 * "*lm_head*", "*embed_tokens*", "*norm*". Modules matching any stay BF16 (recipes add more, e.g.
 * "*patch_embed*"). */
extern const char *const aqs_qwen_default_disabled[];
/* 1 if module matches one of the NULL-terminated patterns (fnmatch, no flags). */
int aqs_qwen_module_disabled(const char *module, const char *const *patterns);

/* The whole description. */
typedef struct aqs_qwen_model {
  aqs_qwen_config cfg;
  aqs_qwen_naming naming;
  size_t ntensors;
  aqs_qwen_tensor_spec *tensors; /* every expected tensor: lm (embed, layers, norm, lm_head),
                                    then vision (patch_embed, blocks, merger) */
  size_t ngroups;
  aqs_qwen_group *groups;        /* in the order documented above */
  size_t n_lm_groups;            /* groups[0 .. n_lm_groups) are lm.*, the rest vis.* */
} aqs_qwen_model;

/* Derives tensors and groups from a config for one naming scheme (no checkpoint needed). */
aqs_status aqs_qwen_model_from_config(const aqs_qwen_config *cfg, aqs_qwen_naming naming,
                                      aqs_qwen_model **out, aqs_err *e);
/* Detects the naming scheme of a checkpoint from its tensor names (looks for
 * "model.language_model." / "model.visual." vs "model.layers." / "visual."). AQS_ERR_INVALID
 * when neither (or both) is present. */
aqs_status aqs_qwen_detect_naming(const aqs_ckpt *c, aqs_qwen_naming *out, aqs_err *e);
/* Checks that every non-optional expected tensor is in c with the expected shape.
 * AQS_ERR_NOT_FOUND naming the first missing tensor; AQS_ERR_MISMATCH naming the tensor, its
 * shape and the expected shape (and the config field it derives from); AQS_ERR_MISMATCH naming
 * num_hidden_layers (or vision depth) and a tensor of a layer beyond it. Other extra tensors are fine. */
aqs_status aqs_qwen_model_check(const aqs_qwen_model *m, const aqs_ckpt *c, aqs_err *e);
/* Loads <dir>/config.json, opens the checkpoint, detects naming, derives and checks.
 * On success *model_out and *ckpt_out (either may be NULL if not wanted) are owned by caller. */
aqs_status aqs_qwen_model_open(const char *dir, aqs_qwen_model **model_out, aqs_ckpt **ckpt_out,
                               aqs_err *e);
void aqs_qwen_model_free(aqs_qwen_model *m);

/* Group by id, NULL if absent. */
const aqs_qwen_group *aqs_qwen_find_group(const aqs_qwen_model *m, const char *id);
/* Group holding module (name with or without ".weight"), NULL if none (e.g. lm_head). */
const aqs_qwen_group *aqs_qwen_group_of_module(const aqs_qwen_model *m, const char *module);
/* Expected tensor spec by name, NULL if absent. */
const aqs_qwen_tensor_spec *aqs_qwen_find_tensor(const aqs_qwen_model *m, const char *name);

/* Sum of weight_params over groups in scope. */
uint64_t aqs_qwen_scope_weight_params(const aqs_qwen_model *m, aqs_qwen_scope s);

#endif
