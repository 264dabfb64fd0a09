/* engine/model/qwen_model.c: derives from a Qwen2.5-VL config the full list of expected checkpoint
 * tensors (names in one naming scheme, shapes) and the quantization groups (DESIGN.md §2), and
 * checks a checkpoint against them. The naming/prefix helpers live here too. */
#include "common/path.h"
#include "engine/model/qwen_config.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const aqs_qwen_default_disabled[] = {"*lm_head*", "*embed_tokens*", "*norm*", NULL};

const char *aqs_qwen_lm_prefix(aqs_qwen_naming naming) {
  return naming == AQS_NAMING_HF4 ? "model." : "model.language_model.";
}

const char *aqs_qwen_vis_prefix(aqs_qwen_naming naming) {
  return naming == AQS_NAMING_HF4 ? "visual." : "model.visual.";
}

int aqs_qwen_lm_name(aqs_qwen_naming naming, int layer, const char *suffix, char *buf, size_t n) {
  return snprintf(buf, n, "%slayers.%d.%s", aqs_qwen_lm_prefix(naming), layer, suffix);
}

int aqs_qwen_vis_name(aqs_qwen_naming naming, int block, const char *suffix, char *buf, size_t n) {
  return snprintf(buf, n, "%sblocks.%d.%s", aqs_qwen_vis_prefix(naming), block, suffix);
}

int aqs_qwen_global_name(aqs_qwen_naming naming, const char *suffix, char *buf, size_t n) {
  if (strncmp(suffix, "lm_head", 7) == 0) return snprintf(buf, n, "%s", suffix);
  if (strncmp(suffix, "patch_embed", 11) == 0 || strncmp(suffix, "merger", 6) == 0)
    return snprintf(buf, n, "%s%s", aqs_qwen_vis_prefix(naming), suffix);
  return snprintf(buf, n, "%s%s", aqs_qwen_lm_prefix(naming), suffix);
}

aqs_status aqs_qwen_scope_parse(const char *s, aqs_qwen_scope *out, aqs_err *e) {
  if (strcmp(s, "lm_only") == 0) *out = AQS_SCOPE_LM_ONLY;
  else if (strcmp(s, "all_layers") == 0) *out = AQS_SCOPE_ALL_LAYERS;
  else return aqs_errf(e, AQS_ERR_INVALID, "unknown scope \"%s\" (expected lm_only or all_layers)", s);
  return AQS_OK;
}

const char *aqs_qwen_scope_name(aqs_qwen_scope s) {
  return s == AQS_SCOPE_LM_ONLY ? "lm_only" : "all_layers";
}

int aqs_qwen_group_in_scope(const aqs_qwen_group *g, aqs_qwen_scope s) {
  return s == AQS_SCOPE_ALL_LAYERS || g->tower == AQS_TOWER_LM;
}

int aqs_qwen_module_disabled(const char *module, const char *const *patterns) {
  for (size_t i = 0; patterns && patterns[i]; i++)
    if (fnmatch(patterns[i], module, 0) == 0) return 1;
  return 0;
}

/* ---- building the description ---- */

typedef struct builder {
  aqs_qwen_model *m;
  size_t cap_tensors, cap_groups;
  int oom;
} builder;

static void add_tensor(builder *b, const char *name, aqs_qwen_tower tower, int layer, int ndim,
                       const int64_t *shape, int optional) {
  aqs_qwen_model *m = b->m;
  if (m->ntensors == b->cap_tensors) {
    size_t cap = b->cap_tensors ? 2 * b->cap_tensors : 64;
    aqs_qwen_tensor_spec *grown = realloc(m->tensors, cap * sizeof *grown);
    if (!grown) {
      b->oom = 1;
      return;
    }
    m->tensors = grown;
    b->cap_tensors = cap;
  }
  aqs_qwen_tensor_spec *t = &m->tensors[m->ntensors++];
  memset(t, 0, sizeof *t);
  /* Names come from fixed prefixes and small indices: far below the limit. */
  size_t len = strnlen(name, sizeof t->name - 1);
  memcpy(t->name, name, len);
  t->name[len] = '\0';
  t->tower = tower;
  t->layer = layer;
  t->ndim = ndim;
  memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  t->optional = optional;
}

/* Adds module.weight [out, in] and, if has_bias, module.bias [out]. */
static void add_linear(builder *b, const char *module, aqs_qwen_tower tower, int layer,
                       int64_t out_f, int64_t in_f, int has_bias) {
  char name[160];
  int64_t w[2] = {out_f, in_f};
  snprintf(name, sizeof name, "%s.weight", module);
  add_tensor(b, name, tower, layer, 2, w, 0);
  if (has_bias) {
    snprintf(name, sizeof name, "%s.bias", module);
    add_tensor(b, name, tower, layer, 1, &out_f, 0);
  }
}

static void add_vector(builder *b, const char *name, aqs_qwen_tower tower, int layer, int64_t n) {
  add_tensor(b, name, tower, layer, 1, &n, 0);
}

/* One member description: module suffix (after the layer/block prefix), shape, bias. */
typedef struct member_def {
  const char *suffix;
  int64_t out_f, in_f;
  int has_bias;
} member_def;

static aqs_qwen_group *new_group(builder *b, aqs_qwen_tower tower, int layer, const char *kind) {
  aqs_qwen_model *m = b->m;
  if (m->ngroups == b->cap_groups) {
    size_t cap = b->cap_groups ? 2 * b->cap_groups : 64;
    aqs_qwen_group *grown = realloc(m->groups, cap * sizeof *grown);
    if (!grown) {
      b->oom = 1;
      return NULL;
    }
    m->groups = grown;
    b->cap_groups = cap;
  }
  aqs_qwen_group *g = &m->groups[m->ngroups++];
  memset(g, 0, sizeof *g);
  g->tower = tower;
  g->layer = layer;
  snprintf(g->kind, sizeof g->kind, "%s", kind);
  /* stem and merger groups: vis.patch_embed, vis.merger.mlp.0, vis.merger.mlp.2 */
  if (layer < 0 && strncmp(kind, "merger.", 7) == 0)
    snprintf(g->id, sizeof g->id, "vis.merger.mlp.%s", kind + 7);
  else if (layer < 0) snprintf(g->id, sizeof g->id, "vis.%s", kind);
  else snprintf(g->id, sizeof g->id, "%s.%d.%s", tower == AQS_TOWER_LM ? "lm" : "vis", layer, kind);
  return g;
}

/* A group whose members are prefix + defs[i].suffix; also registers their tensors. */
static void add_group(builder *b, aqs_qwen_tower tower, int layer, const char *kind,
                      const char *prefix, const member_def *defs, int ndefs) {
  aqs_qwen_group *g = new_group(b, tower, layer, kind);
  if (!g) return;
  for (int i = 0; i < ndefs; i++) {
    aqs_qwen_member *mem = &g->members[g->nmembers++];
    if (aqs_path_fmt(mem->module, sizeof mem->module, "%s%s", prefix, defs[i].suffix) != 0) b->oom = 1;
    mem->out_features = defs[i].out_f;
    mem->in_features = defs[i].in_f;
    mem->has_bias = defs[i].has_bias;
    g->weight_params += (uint64_t)defs[i].out_f * (uint64_t)defs[i].in_f;
    g->bias_params += defs[i].has_bias ? (uint64_t)defs[i].out_f : 0;
  }
}

static void build_lm(builder *b) {
  const aqs_qwen_config *c = &b->m->cfg;
  const aqs_qwen_text_config *t = &c->text;
  aqs_qwen_naming nm = b->m->naming;
  int64_t h = t->hidden_size, q = (int64_t)t->num_heads * t->head_dim;
  int64_t kv = (int64_t)t->num_kv_heads * t->head_dim, inter = t->intermediate_size;
  char name[160], prefix[128];
  int64_t emb[2] = {t->vocab_size, h};
  aqs_qwen_global_name(nm, "embed_tokens.weight", name, sizeof name);
  add_tensor(b, name, AQS_TOWER_LM, -1, 2, emb, 0);
  for (int L = 0; L < t->num_layers; L++) {
    aqs_qwen_lm_name(nm, L, "", prefix, sizeof prefix);
    member_def qkv[] = {{"self_attn.q_proj", q, h, 1}, {"self_attn.k_proj", kv, h, 1},
                        {"self_attn.v_proj", kv, h, 1}};
    member_def o[] = {{"self_attn.o_proj", h, q, 0}};
    member_def gate_up[] = {{"mlp.gate_proj", inter, h, 0}, {"mlp.up_proj", inter, h, 0}};
    member_def down[] = {{"mlp.down_proj", h, inter, 0}};
    add_group(b, AQS_TOWER_LM, L, "qkv", prefix, qkv, 3);
    add_group(b, AQS_TOWER_LM, L, "o", prefix, o, 1);
    add_group(b, AQS_TOWER_LM, L, "gate_up", prefix, gate_up, 2);
    add_group(b, AQS_TOWER_LM, L, "down", prefix, down, 1);
    aqs_qwen_lm_name(nm, L, "input_layernorm.weight", name, sizeof name);
    add_vector(b, name, AQS_TOWER_LM, L, h);
    for (size_t g = b->m->ngroups - 4; g < b->m->ngroups; g++)
      for (int i = 0; i < b->m->groups[g].nmembers; i++) {
        const aqs_qwen_member *mem = &b->m->groups[g].members[i];
        add_linear(b, mem->module, AQS_TOWER_LM, L, mem->out_features, mem->in_features,
                   mem->has_bias);
      }
    aqs_qwen_lm_name(nm, L, "post_attention_layernorm.weight", name, sizeof name);
    add_vector(b, name, AQS_TOWER_LM, L, h);
  }
  aqs_qwen_global_name(nm, "norm.weight", name, sizeof name);
  add_vector(b, name, AQS_TOWER_LM, -1, h);
  add_tensor(b, "lm_head.weight", AQS_TOWER_LM, -1, 2, emb, t->tie_word_embeddings);
  b->m->n_lm_groups = b->m->ngroups;
}

static void build_vision(builder *b) {
  const aqs_qwen_vision_config *v = &b->m->cfg.vision;
  aqs_qwen_naming nm = b->m->naming;
  int64_t vh = v->hidden_size, vi = v->intermediate_size;
  int64_t merged = vh * v->spatial_merge_size * v->spatial_merge_size;
  char name[160], prefix[128];
  int64_t patch[5] = {vh, v->in_channels, v->temporal_patch_size, v->patch_size, v->patch_size};
  aqs_qwen_global_name(nm, "patch_embed.proj.weight", name, sizeof name);
  add_tensor(b, name, AQS_TOWER_VISION, -1, 5, patch, 0);
  /* the Conv3d over (channel, temporal, row, column) patches is a linear of the flattened patch */
  snprintf(prefix, sizeof prefix, "%s", aqs_qwen_vis_prefix(nm));
  member_def stem[] = {{"patch_embed.proj", vh,
                        (int64_t)v->in_channels * v->temporal_patch_size * v->patch_size * v->patch_size, 0}};
  add_group(b, AQS_TOWER_VISION, -1, "patch_embed", prefix, stem, 1);
  for (int B = 0; B < v->depth; B++) {
    aqs_qwen_vis_name(nm, B, "", prefix, sizeof prefix);
    member_def qkv[] = {{"attn.qkv", 3 * vh, vh, 1}};
    member_def proj[] = {{"attn.proj", vh, vh, 1}};
    member_def gate_up[] = {{"mlp.gate_proj", vi, vh, 1}, {"mlp.up_proj", vi, vh, 1}};
    member_def down[] = {{"mlp.down_proj", vh, vi, 1}};
    add_group(b, AQS_TOWER_VISION, B, "qkv", prefix, qkv, 1);
    add_group(b, AQS_TOWER_VISION, B, "proj", prefix, proj, 1);
    add_group(b, AQS_TOWER_VISION, B, "gate_up", prefix, gate_up, 2);
    add_group(b, AQS_TOWER_VISION, B, "down", prefix, down, 1);
    aqs_qwen_vis_name(nm, B, "norm1.weight", name, sizeof name);
    add_vector(b, name, AQS_TOWER_VISION, B, vh);
    aqs_qwen_vis_name(nm, B, "norm2.weight", name, sizeof name);
    add_vector(b, name, AQS_TOWER_VISION, B, vh);
    for (size_t g = b->m->ngroups - 4; g < b->m->ngroups; g++)
      for (int i = 0; i < b->m->groups[g].nmembers; i++) {
        const aqs_qwen_member *mem = &b->m->groups[g].members[i];
        add_linear(b, mem->module, AQS_TOWER_VISION, B, mem->out_features, mem->in_features,
                   mem->has_bias);
      }
  }
  aqs_qwen_global_name(nm, "merger.", prefix, sizeof prefix);
  /* ModelOpt groups only q/k/v and gate/up: the merger's two linears are one group each */
  member_def mlp0[] = {{"mlp.0", merged, merged, 1}}, mlp2[] = {{"mlp.2", v->out_hidden_size, merged, 1}};
  add_group(b, AQS_TOWER_VISION, -1, "merger.0", prefix, mlp0, 1);
  add_group(b, AQS_TOWER_VISION, -1, "merger.2", prefix, mlp2, 1);
  aqs_qwen_global_name(nm, "merger.ln_q.weight", name, sizeof name);
  add_vector(b, name, AQS_TOWER_VISION, -1, vh);
  for (size_t gi = b->m->ngroups - 2; gi < b->m->ngroups; gi++) {
    const aqs_qwen_member *mem = &b->m->groups[gi].members[0];
    add_linear(b, mem->module, AQS_TOWER_VISION, -1, mem->out_features, mem->in_features, 1);
  }
}

aqs_status aqs_qwen_model_from_config(const aqs_qwen_config *cfg, aqs_qwen_naming naming,
                                      aqs_qwen_model **out, aqs_err *e) {
  *out = NULL;
  if (naming != AQS_NAMING_HF4 && naming != AQS_NAMING_HF5)
    return aqs_errf(e, AQS_ERR_INVALID, "unknown tensor naming scheme %d", (int)naming);
  builder b = {0};
  b.m = calloc(1, sizeof *b.m);
  if (!b.m) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory describing the model");
  b.m->cfg = *cfg;
  b.m->naming = naming;
  build_lm(&b);
  build_vision(&b);
  if (b.oom) {
    aqs_qwen_model_free(b.m);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory describing the model");
  }
  *out = b.m;
  return AQS_OK;
}

void aqs_qwen_model_free(aqs_qwen_model *m) {
  if (!m) return;
  free(m->tensors);
  free(m->groups);
  free(m);
}

/* ---- lookups ---- */

const aqs_qwen_group *aqs_qwen_find_group(const aqs_qwen_model *m, const char *id) {
  for (size_t i = 0; i < m->ngroups; i++)
    if (strcmp(m->groups[i].id, id) == 0) return &m->groups[i];
  return NULL;
}

const aqs_qwen_group *aqs_qwen_group_of_module(const aqs_qwen_model *m, const char *module) {
  size_t n = strlen(module);
  if (n > 7 && strcmp(module + n - 7, ".weight") == 0) n -= 7;
  for (size_t i = 0; i < m->ngroups; i++)
    for (int k = 0; k < m->groups[i].nmembers; k++) {
      const char *mod = m->groups[i].members[k].module;
      if (strlen(mod) == n && strncmp(mod, module, n) == 0) return &m->groups[i];
    }
  return NULL;
}

const aqs_qwen_tensor_spec *aqs_qwen_find_tensor(const aqs_qwen_model *m, const char *name) {
  for (size_t i = 0; i < m->ntensors; i++)
    if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
  return NULL;
}

uint64_t aqs_qwen_scope_weight_params(const aqs_qwen_model *m, aqs_qwen_scope s) {
  uint64_t total = 0;
  for (size_t i = 0; i < m->ngroups; i++)
    if (aqs_qwen_group_in_scope(&m->groups[i], s)) total += m->groups[i].weight_params;
  return total;
}

/* ---- checkpoint checks ---- */

static int starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

aqs_status aqs_qwen_detect_naming(const aqs_ckpt *c, aqs_qwen_naming *out, aqs_err *e) {
  int hf4 = 0, hf5 = 0;
  for (size_t i = 0; i < c->ntensors; i++) {
    const char *n = c->tensors[i]->name;
    if (starts_with(n, "model.language_model.") || starts_with(n, "model.visual.")) hf5 = 1;
    else if (starts_with(n, "model.layers.") || starts_with(n, "model.embed_tokens.") ||
             starts_with(n, "visual.")) hf4 = 1;
  }
  if (hf4 && hf5)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s: tensor names mix both naming schemes (model.layers.* / visual.* and "
                    "model.language_model.* / model.visual.*)",
                    c->dir);
  if (!hf4 && !hf5)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s: no Qwen2.5-VL tensor names found (expected model.layers.* or "
                    "model.language_model.layers.*)",
                    c->dir);
  *out = hf5 ? AQS_NAMING_HF5 : AQS_NAMING_HF4;
  return AQS_OK;
}

static void shape_text(int ndim, const int64_t *shape, char *buf, size_t n) {
  size_t used = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < ndim && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (used < n) snprintf(buf + used, n - used, "]");
}

/* An FP8 weight of an exported checkpoint (<module>.weight F8_E4M3 beside its .weight_scale):
 * what the eval stage loads to run a scheme as it is served. */
static int is_exported_fp8(const aqs_ckpt *c, const aqs_st_tensor *t) {
  size_t n = strlen(t->name);
  if (t->dtype != AQS_DT_F8_E4M3 || n < 7 || strcmp(t->name + n - 7, ".weight") != 0) return 0;
  char scale[512];
  if (n + 7 >= sizeof scale) return 0;
  snprintf(scale, sizeof scale, "%s_scale", t->name);
  return aqs_ckpt_find(c, scale) != NULL;
}

/* The layer index after prefix ("…layers.7.…" -> 7), or -1 when name does not start so. */
static long index_after(const char *name, const char *prefix) {
  size_t n = strlen(prefix);
  if (strncmp(name, prefix, n) != 0 || name[n] < '0' || name[n] > '9') return -1;
  return strtol(name + n, NULL, 10);
}

/* A checkpoint tensor of a layer or block that config.json does not have: an error naming both
 * (the extra layers would otherwise be carried into every export silently). */
static aqs_status check_extra_layers(const aqs_qwen_model *m, const aqs_ckpt *c, aqs_err *e) {
  char lm[96], vis[96];
  snprintf(lm, sizeof lm, "%slayers.", aqs_qwen_lm_prefix(m->naming));
  snprintf(vis, sizeof vis, "%sblocks.", aqs_qwen_vis_prefix(m->naming));
  for (size_t i = 0; i < c->ntensors; i++) {
    const char *name = c->tensors[i]->name;
    long L = index_after(name, lm), B = index_after(name, vis);
    if (L >= m->cfg.text.num_layers)
      return aqs_errf(e, AQS_ERR_MISMATCH,
                      "%s: config.json has num_hidden_layers = %d (layers 0..%d) but the checkpoint has tensor "
                      "\"%s\" of layer %ld", c->dir, m->cfg.text.num_layers, m->cfg.text.num_layers - 1, name, L);
    if (B >= m->cfg.vision.depth)
      return aqs_errf(e, AQS_ERR_MISMATCH,
                      "%s: config.json has vision_config.depth = %d (blocks 0..%d) but the checkpoint has tensor "
                      "\"%s\" of block %ld", c->dir, m->cfg.vision.depth, m->cfg.vision.depth - 1, name, B);
  }
  return AQS_OK;
}

aqs_status aqs_qwen_model_check(const aqs_qwen_model *m, const aqs_ckpt *c, aqs_err *e) {
  aqs_status st = check_extra_layers(m, c, e);
  if (st) return st;
  for (size_t i = 0; i < m->ntensors; i++) {
    const aqs_qwen_tensor_spec *s = &m->tensors[i];
    const aqs_st_tensor *t = aqs_ckpt_find(c, s->name);
    if (!t) {
      if (s->optional) continue;
      return aqs_errf(e, AQS_ERR_NOT_FOUND,
                      "%s: tensor \"%s\" required by config.json is missing from the checkpoint",
                      c->dir, s->name);
    }
    int same = t->ndim == s->ndim;
    for (int d = 0; same && d < s->ndim; d++) same = t->shape[d] == s->shape[d];
    if (!same) {
      char got[96], want[96];
      shape_text(t->ndim, t->shape, got, sizeof got);
      shape_text(s->ndim, s->shape, want, sizeof want);
      return aqs_errf(e, AQS_ERR_MISMATCH,
                      "%s: tensor \"%s\" has shape %s but config.json implies %s", t->file->path,
                      s->name, got, want);
    }
    if (t->dtype != AQS_DT_BF16 && t->dtype != AQS_DT_F16 && t->dtype != AQS_DT_F32 &&
        !is_exported_fp8(c, t))
      return aqs_errf(e, AQS_ERR_UNSUPPORTED,
                      "%s: tensor \"%s\" has dtype %s; a source checkpoint must be BF16, F16 or F32",
                      t->file->path, s->name, aqs_dtype_name(t->dtype));
  }
  return AQS_OK;
}

aqs_status aqs_qwen_model_open(const char *dir, aqs_qwen_model **model_out, aqs_ckpt **ckpt_out,
                               aqs_err *e) {
  if (model_out) *model_out = NULL;
  if (ckpt_out) *ckpt_out = NULL;
  aqs_qwen_config cfg;
  aqs_status st = aqs_qwen_config_load(dir, &cfg, e);
  if (st) return st;
  aqs_ckpt *c = NULL;
  st = aqs_ckpt_open(dir, &c, e);
  if (st) return st;
  aqs_qwen_naming naming;
  aqs_qwen_model *m = NULL;
  st = aqs_qwen_detect_naming(c, &naming, e);
  if (!st) st = aqs_qwen_model_from_config(&cfg, naming, &m, e);
  if (!st) st = aqs_qwen_model_check(m, c, e);
  if (st || !model_out) aqs_qwen_model_free(m);
  else *model_out = m;
  if (st || !ckpt_out) aqs_ckpt_close(c);
  else *ckpt_out = c;
  return st;
}
