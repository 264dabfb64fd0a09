/* engine/model/synth_presets.c: the synthetic model presets (tiny, small, 3b shapes), the
 * `--outliers` spec parser and the counter-based PRNG the weights are drawn from. */
#include "engine/model/synth_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Token ids of the synthetic tokenizer: regular tokens [0, R), then Qwen's 22 added tokens. */
static void set_token_ids(aqs_qwen_config *c, int regular) {
  c->bos_token_id = regular + 0;          /* <|endoftext|> */
  c->eos_token_id = regular + 2;          /* <|im_end|> */
  c->vision_start_token_id = regular + 9; /* <|vision_start|> */
  c->vision_end_token_id = regular + 10;  /* <|vision_end|> */
  c->image_token_id = regular + 12;       /* <|image_pad|> */
  c->video_token_id = regular + 13;       /* <|video_pad|> */
}

static void set_text(aqs_qwen_text_config *t, int hidden, int layers, int heads, int kv,
                     int inter, int vocab, int tie) {
  t->hidden_size = hidden;
  t->num_layers = layers;
  t->num_heads = heads;
  t->num_kv_heads = kv;
  t->head_dim = hidden / heads;
  t->intermediate_size = inter;
  t->vocab_size = vocab;
  t->tie_word_embeddings = tie;
  t->rms_norm_eps = 1e-6;
  t->rope_theta = 1000000.0;
  int half = t->head_dim / 2; /* Qwen's split 16/24/24 of 64, scaled: t = 1/4, h = w = 3/8 */
  t->mrope_section[0] = half / 4;
  t->mrope_section[1] = (half - half / 4) / 2;
  t->mrope_section[2] = half - t->mrope_section[0] - t->mrope_section[1];
}

static void set_vision(aqs_qwen_vision_config *v, int depth, int hidden, int heads, int inter,
                       int out_hidden) {
  v->depth = depth;
  v->hidden_size = hidden;
  v->num_heads = heads;
  v->intermediate_size = inter;
  v->out_hidden_size = out_hidden;
  v->in_channels = 3;
  v->patch_size = 14;
  v->spatial_merge_size = 2;
  v->temporal_patch_size = 2;
  v->window_size = 112;
  v->tokens_per_second = 2;
  v->rms_norm_eps = 1e-6;
  /* Full attention every 8th block (7, 15, 23, 31 for depth 32); every 2nd for shallow towers. */
  int every = depth >= 16 ? 8 : 2;
  v->n_fullatt = 0;
  for (int b = every - 1; b < depth && v->n_fullatt < AQS_QWEN_MAX_FULLATT; b += every)
    v->fullatt_block_indexes[v->n_fullatt++] = b;
}

aqs_status aqs_synth_preset(const char *preset, aqs_qwen_config *c, aqs_err *e) {
  memset(c, 0, sizeof *c);
  snprintf(c->model_type, sizeof c->model_type, "qwen2_5_vl");
  snprintf(c->architecture, sizeof c->architecture, "Qwen2_5_VLForConditionalGeneration");
  c->layout = 5;
  if (strcmp(preset, "tiny") == 0) {
    set_text(&c->text, 64, 4, 4, 2, 128, 640, 1);
    c->text.max_position_embeddings = 4096;
    set_vision(&c->vision, 2, 32, 2, 64, 64);
    set_token_ids(c, 640 - 32);
  } else if (strcmp(preset, "small") == 0) {
    set_text(&c->text, 256, 8, 4, 2, 688, 2048, 0);
    c->text.max_position_embeddings = 8192;
    set_vision(&c->vision, 4, 64, 4, 172, 256);
    set_token_ids(c, 2048 - 32);
  } else if (strcmp(preset, "3b") == 0) {
    set_text(&c->text, 2048, 36, 16, 2, 11008, 151936, 1);
    c->text.max_position_embeddings = 128000;
    set_vision(&c->vision, 32, 1280, 16, 3420, 2048);
    set_token_ids(c, 151643);
  } else {
    return aqs_errf(e, AQS_ERR_INVALID, "unknown preset \"%s\" (expected tiny, small or 3b)",
                    preset);
  }
  return AQS_OK;
}

aqs_status aqs_synth_parse_outliers(const char *spec, aqs_synth_opts *opts, aqs_err *e) {
  char *copy = strdup(spec), *save = NULL;
  if (!copy) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  aqs_status st = AQS_OK;
  for (char *item = strtok_r(copy, ",", &save); item && !st; item = strtok_r(NULL, ",", &save)) {
    char *colon = strrchr(item, ':');
    char *end = NULL;
    double factor = colon ? strtod(colon + 1, &end) : 0;
    if (!colon || colon == item || !end || *end || end == colon + 1 || !(factor > 1.0) ||
        !isfinite(factor) || (size_t)(colon - item) >= sizeof opts->outliers[0].group_id)
      st = aqs_errf(e, AQS_ERR_INVALID,
                    "bad outlier \"%s\" (expected GROUP:FACTOR with FACTOR > 1, e.g. lm.1.down:1e5)",
                    item);
    else if (opts->noutliers >= AQS_SYNTH_MAX_OUTLIERS)
      st = aqs_errf(e, AQS_ERR_INVALID, "more than %d outlier groups", AQS_SYNTH_MAX_OUTLIERS);
    else {
      aqs_synth_outlier *o = &opts->outliers[opts->noutliers++];
      snprintf(o->group_id, sizeof o->group_id, "%.*s", (int)(colon - item), item);
      o->factor = factor;
    }
  }
  free(copy);
  return st;
}

/* splitmix64's finalizer: a bijective 64-bit mixer. */
static inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

uint64_t aqs_synth_stream_id(const char *name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
    h ^= *p;
    h *= 0x100000001b3ull;
  }
  return h;
}

/* Key of a (seed, stream) pair; the pair index is then added in golden-ratio steps. */
static inline uint64_t stream_key(uint64_t seed, uint64_t stream) {
  return mix64(mix64(seed ^ 0x6a09e667f3bcc909ull) ^ stream);
}

/* Box-Muller on 24-bit uniforms in (0, 1): both outputs of pair p. */
static inline void normal_pair(uint64_t key, uint64_t pair, float *z0, float *z1) {
  uint64_t r = mix64(key + (pair + 1) * 0x9e3779b97f4a7c15ull);
  float u1 = ((float)(r >> 40) + 0.5f) * (1.0f / 16777216.0f);
  float u2 = ((float)((r >> 16) & 0xffffffu) + 0.5f) * (1.0f / 16777216.0f);
  float radius = sqrtf(-2.0f * logf(u1));
  float s, c;
  sincosf(6.28318530718f * u2, &s, &c);
  *z0 = radius * c;
  *z1 = radius * s;
}

float aqs_synth_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  float z0, z1;
  normal_pair(stream_key(seed, stream), index >> 1, &z0, &z1);
  return (index & 1) ? z1 : z0;
}

void aqs_synth_normal_fill(uint64_t seed, uint64_t stream, uint64_t first, float *out, size_t n) {
  uint64_t key = stream_key(seed, stream);
  size_t i = 0;
  float z0, z1;
  if (n && (first & 1)) {
    normal_pair(key, first >> 1, &z0, &z1);
    out[i++] = z1;
  }
  for (; i + 1 < n; i += 2) {
    normal_pair(key, (first + i) >> 1, &z0, &z1);
    out[i] = z0;
    out[i + 1] = z1;
  }
  if (i < n) {
    normal_pair(key, (first + i) >> 1, &z0, &z1);
    out[i] = z0;
  }
}
