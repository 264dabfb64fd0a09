/* engine/model/synth_weights.c: streams the synthetic model's BF16 weights into safetensors
 * shards. Worker threads fill fixed-size blocks of each shard's data area (any block can be
 * computed independently, since every element is a pure function of seed, tensor name and
 * index) while the calling thread writes finished blocks in order: bytes do not depend on the
 * thread count. Planted outliers are per-row / per-column multipliers (see synth.h). */
#include "engine/model/synth_internal.h"

#include "common/progress.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK_BYTES (8u << 20)
#define SLOTS_PER_THREAD 2

typedef struct wt_mod {
  int axis;                 /* 0: a row (leading dim), 1: a column (last dim; 1-D: the element) */
  int64_t index;
  float factor;
} wt_mod;

typedef struct wt_plan {
  const aqs_qwen_tensor_spec *spec;
  int ones;                 /* 1: all 1.0 (norm weights), 0: normal(0, std) */
  float std;
  int64_t rows, cols;       /* 2-D view: rows = shape[0] (1 for 1-D), cols = the rest */
  uint64_t stream;
  uint64_t data_offset;     /* in its shard's data area */
  int shard;
  int nmods, cap_mods;
  wt_mod *mods;
} wt_plan;

typedef struct job {
  const aqs_synth_opts *opts;
  wt_plan *plans;
  size_t nplans;
  size_t first, last;       /* plans of the current shard: [first, last) */
  uint64_t shard_bytes;
  uint64_t nblocks;
  int nslots;
  uint8_t **slot_buf;
  uint64_t *slot_block;     /* block the slot may hold next */
  int *slot_ready;
  uint64_t next_block;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;
} job;

/* ---- plan ---- */

static float linear_std(int64_t fan_in) { return 0.02f * sqrtf(2048.0f / (float)fan_in); }

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* stream_name: the tensor's name in the hf5 scheme, so both namings hold the same values. */
static void plan_tensor(wt_plan *p, const aqs_qwen_tensor_spec *s, const char *stream_name) {
  memset(p, 0, sizeof *p);
  p->spec = s;
  p->stream = aqs_synth_stream_id(stream_name);
  p->rows = s->ndim == 1 ? 1 : s->shape[0];
  p->cols = 1;
  for (int d = s->ndim == 1 ? 0 : 1; d < s->ndim; d++) p->cols *= s->shape[d];
  if (strstr(s->name, "norm") || strstr(s->name, "ln_q")) p->ones = 1;
  else if (ends_with(s->name, ".bias")) p->std = 0.02f;
  else p->std = linear_std(p->cols); /* weights [out, in...]: fan-in; embeddings: hidden */
}

static int add_mod(wt_plan *plans, size_t n, const char *name, int axis, int64_t index, float f) {
  for (size_t i = 0; i < n; i++) {
    wt_plan *p = &plans[i];
    if (strcmp(p->spec->name, name) != 0) continue;
    if (p->nmods == p->cap_mods) {
      int cap = p->cap_mods ? 2 * p->cap_mods : 8;
      wt_mod *grown = realloc(p->mods, (size_t)cap * sizeof *grown);
      if (!grown) return -1;
      p->mods = grown;
      p->cap_mods = cap;
    }
    p->mods[p->nmods++] = (wt_mod){axis, index, f};
    return 0;
  }
  return -1;
}

/* AQS_SYNTH_OUTLIER_CHANNELS distinct channels in [0, n) for group id, drawn from hashes of
 * "outlier:<id>:<i>" mixed with the seed. */
static void pick_channels(uint64_t seed, const char *id, int64_t n, int64_t *out) {
  int k = 0;
  for (uint64_t i = 0; k < AQS_SYNTH_OUTLIER_CHANNELS && k < n; i++) {
    char key[80];
    snprintf(key, sizeof key, "outlier:%s:%llu", id, (unsigned long long)i);
    uint64_t h = aqs_synth_stream_id(key) ^ (seed * 0x9e3779b97f4a7c15ull);
    h ^= h >> 29;
    int64_t c = (int64_t)(h % (uint64_t)n);
    int dup = 0;
    for (int j = 0; j < k; j++) dup |= out[j] == c;
    if (!dup) out[k++] = c;
  }
}

/* Name of member m of group g + suffix ("weight"/"bias"). */
static const char *member_tensor(const aqs_qwen_group *g, int m, const char *suffix, char *buf,
                                 size_t n) {
  snprintf(buf, n, "%s.%s", g->members[m].module, suffix);
  return buf;
}

/* Registers the multipliers of one outlier group (see synth.h for the compensation rules). */
static int plant_outlier(wt_plan *plans, size_t n, const aqs_qwen_model *model,
                         const aqs_qwen_group *g, float F, uint64_t seed) {
  const aqs_qwen_config *c = &model->cfg;
  char a[192], b[192];
  int64_t ch[AQS_SYNTH_OUTLIER_CHANNELS];
  int rc = 0;
  int lm = g->tower == AQS_TOWER_LM;
  const char *kind = g->kind;
  if (strcmp(kind, "qkv") == 0 || strcmp(kind, "gate_up") == 0) {
    pick_channels(seed, g->id, g->members[0].in_features, ch);
    const char *norm = lm ? (strcmp(kind, "qkv") == 0 ? "input_layernorm.weight"
                                                      : "post_attention_layernorm.weight")
                          : (strcmp(kind, "qkv") == 0 ? "norm1.weight" : "norm2.weight");
    if (lm) aqs_qwen_lm_name(model->naming, g->layer, norm, b, sizeof b);
    else aqs_qwen_vis_name(model->naming, g->layer, norm, b, sizeof b);
    for (int k = 0; k < AQS_SYNTH_OUTLIER_CHANNELS; k++) {
      for (int m = 0; m < g->nmembers; m++)
        rc |= add_mod(plans, n, member_tensor(g, m, "weight", a, sizeof a), 1, ch[k], F);
      rc |= add_mod(plans, n, b, 1, ch[k], 1.0f / F);
    }
  } else if (strcmp(kind, "o") == 0) {
    /* o_proj input = attention output; channel (head h, dim d) comes from v_proj row
     * kv(h) * head_dim + d, shared by the heads/kv_heads query heads of that kv head. That row
     * is zeroed (a dead channel) rather than divided by F: a row of tiny weights would make
     * the producer group (qkv) FP8-sensitive too, zeros quantize exactly. */
    int hd = c->text.head_dim, per_kv = c->text.num_heads / c->text.num_kv_heads;
    pick_channels(seed, g->id, (int64_t)c->text.num_kv_heads * hd, ch);
    for (int k = 0; k < AQS_SYNTH_OUTLIER_CHANNELS; k++) {
      int64_t kvh = ch[k] / hd, d = ch[k] % hd;
      aqs_qwen_lm_name(model->naming, g->layer, "self_attn.v_proj.weight", a, sizeof a);
      rc |= add_mod(plans, n, a, 0, ch[k], 0.0f);
      aqs_qwen_lm_name(model->naming, g->layer, "self_attn.v_proj.bias", a, sizeof a);
      rc |= add_mod(plans, n, a, 1, ch[k], 0.0f);
      for (int h = (int)kvh * per_kv; h < (int)(kvh + 1) * per_kv; h++)
        rc |= add_mod(plans, n, member_tensor(g, 0, "weight", a, sizeof a), 1, (int64_t)h * hd + d, F);
    }
  } else if (strcmp(kind, "down") == 0) {
    pick_channels(seed, g->id, g->members[0].in_features, ch);
    for (int k = 0; k < AQS_SYNTH_OUTLIER_CHANNELS; k++) {
      if (lm) aqs_qwen_lm_name(model->naming, g->layer, "mlp.up_proj.weight", a, sizeof a);
      else aqs_qwen_vis_name(model->naming, g->layer, "mlp.up_proj.weight", a, sizeof a);
      rc |= add_mod(plans, n, a, 0, ch[k], 0.0f);
      if (!lm) {
        aqs_qwen_vis_name(model->naming, g->layer, "mlp.up_proj.bias", a, sizeof a);
        rc |= add_mod(plans, n, a, 1, ch[k], 0.0f);
      }
      rc |= add_mod(plans, n, member_tensor(g, 0, "weight", a, sizeof a), 1, ch[k], F);
    }
  } else if (strcmp(kind, "proj") == 0) {
    int64_t vh = c->vision.hidden_size;
    pick_channels(seed, g->id, vh, ch);
    for (int k = 0; k < AQS_SYNTH_OUTLIER_CHANNELS; k++) {
      aqs_qwen_vis_name(model->naming, g->layer, "attn.qkv.weight", a, sizeof a);
      rc |= add_mod(plans, n, a, 0, 2 * vh + ch[k], 0.0f);
      aqs_qwen_vis_name(model->naming, g->layer, "attn.qkv.bias", a, sizeof a);
      rc |= add_mod(plans, n, a, 1, 2 * vh + ch[k], 0.0f);
      rc |= add_mod(plans, n, member_tensor(g, 0, "weight", a, sizeof a), 1, ch[k], F);
    }
  } else if (strcmp(kind, "merger.0") == 0) {
    int64_t vh = c->vision.hidden_size;
    int64_t m2 = (int64_t)c->vision.spatial_merge_size * c->vision.spatial_merge_size;
    pick_channels(seed, g->id, vh, ch);
    aqs_qwen_global_name(model->naming, "merger.ln_q.weight", b, sizeof b);
    for (int k = 0; k < AQS_SYNTH_OUTLIER_CHANNELS; k++) {
      rc |= add_mod(plans, n, b, 1, ch[k], 1.0f / F);
      for (int64_t p = 0; p < m2; p++)
        rc |= add_mod(plans, n, member_tensor(g, 0, "weight", a, sizeof a), 1, p * vh + ch[k], F);
    }
  }
  return rc;
}

/* ---- block filling ---- */

static void apply_mods(const wt_plan *p, uint64_t e0, float *vals, size_t n) {
  uint64_t e1 = e0 + n, cols = (uint64_t)p->cols;
  for (int i = 0; i < p->nmods; i++) {
    const wt_mod *m = &p->mods[i];
    if (m->axis == 0) {
      uint64_t r0 = (uint64_t)m->index * cols, r1 = r0 + cols;
      uint64_t lo = r0 > e0 ? r0 : e0, hi = r1 < e1 ? r1 : e1;
      for (uint64_t e = lo; e < hi; e++) vals[e - e0] *= m->factor;
    } else {
      for (uint64_t r = e0 / cols; r * cols < e1; r++) {
        uint64_t e = r * cols + (uint64_t)m->index;
        if (e >= e0 && e < e1) vals[e - e0] *= m->factor;
      }
    }
  }
}

/* Fills elements [e0, e0 + n) of plan p as BF16 into out, using tmp (n floats). */
static void fill_range(const job *j, const wt_plan *p, uint64_t e0, size_t n, uint16_t *out,
                       float *tmp) {
  if (p->ones) {
    for (size_t i = 0; i < n; i++) tmp[i] = 1.0f;
  } else {
    aqs_synth_normal_fill(j->opts->seed, p->stream, e0, tmp, n);
    for (size_t i = 0; i < n; i++) tmp[i] *= p->std;
  }
  if (p->nmods) apply_mods(p, e0, tmp, n);
  aqs_f32_to_bf16_n(tmp, out, n);
}

static void fill_block(const job *j, uint64_t block, uint8_t *buf, float *tmp) {
  uint64_t b0 = block * BLOCK_BYTES;
  uint64_t b1 = b0 + BLOCK_BYTES < j->shard_bytes ? b0 + BLOCK_BYTES : j->shard_bytes;
  for (size_t i = j->first; i < j->last; i++) {
    const wt_plan *p = &j->plans[i];
    uint64_t t0 = p->data_offset, t1 = t0 + (uint64_t)p->rows * (uint64_t)p->cols * 2;
    if (t1 <= b0 || t0 >= b1) continue;
    uint64_t lo = t0 > b0 ? t0 : b0, hi = t1 < b1 ? t1 : b1;
    fill_range(j, p, (lo - t0) / 2, (size_t)((hi - lo) / 2), (uint16_t *)(buf + (lo - b0)), tmp);
  }
}

static void *worker(void *arg) {
  job *j = arg;
  float *tmp = malloc(BLOCK_BYTES / 2 * sizeof(float));
  for (;;) {
    pthread_mutex_lock(&j->mu);
    if (!tmp) j->stop = 1;
    uint64_t b = j->next_block;
    if (j->stop || b >= j->nblocks) {
      pthread_mutex_unlock(&j->mu);
      break;
    }
    j->next_block++;
    int slot = (int)(b % (uint64_t)j->nslots);
    while (j->slot_block[slot] != b && !j->stop) pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    if (j->stop) break;
    fill_block(j, b, j->slot_buf[slot], tmp);
    pthread_mutex_lock(&j->mu);
    j->slot_ready[slot] = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
  }
  free(tmp);
  return NULL;
}

/* ---- shards ---- */

/* Writes plans [first, last) as shard file path. */
static aqs_status write_shard(job *j, const char *path, int threads, aqs_progress *pr,
                              aqs_err *e) {
  aqs_st_writer *w;
  aqs_status st = aqs_st_writer_open(path, &w, e);
  if (st) return st;
  st = aqs_st_writer_set_meta(w, "format", "pt", e);
  for (size_t i = j->first; i < j->last && !st; i++) {
    const aqs_qwen_tensor_spec *s = j->plans[i].spec;
    j->plans[i].data_offset = aqs_st_writer_data_bytes(w);
    st = aqs_st_writer_add(w, s->name, AQS_DT_BF16, s->ndim, s->shape, e);
  }
  if (!st) st = aqs_st_writer_begin_data(w, e);
  if (st) {
    aqs_st_writer_abort(w);
    return st;
  }
  j->shard_bytes = aqs_st_writer_data_bytes(w);
  j->nblocks = (j->shard_bytes + BLOCK_BYTES - 1) / BLOCK_BYTES;
  j->next_block = 0;
  j->stop = 0;
  for (int s = 0; s < j->nslots; s++) {
    j->slot_block[s] = (uint64_t)s;
    j->slot_ready[s] = 0;
  }
  pthread_t *tids = calloc((size_t)threads, sizeof *tids);
  int started = 0;
  for (int t = 0; tids && t < threads; t++)
    if (pthread_create(&tids[t], NULL, worker, j) == 0) started++;
  if (!started) st = aqs_errf(e, AQS_ERR_NOMEM, "%s: cannot start worker threads", path);
  for (uint64_t b = 0; b < j->nblocks && !st; b++) {
    int slot = (int)(b % (uint64_t)j->nslots);
    pthread_mutex_lock(&j->mu);
    while (!j->slot_ready[slot] && !j->stop) pthread_cond_wait(&j->cv, &j->mu);
    int stopped = j->stop;
    pthread_mutex_unlock(&j->mu);
    if (stopped) {
      st = aqs_errf(e, AQS_ERR_NOMEM, "%s: worker out of memory", path);
      break;
    }
    uint64_t len = b + 1 < j->nblocks ? BLOCK_BYTES : j->shard_bytes - b * BLOCK_BYTES;
    st = aqs_st_writer_write(w, j->slot_buf[slot], (size_t)len, e);
    pthread_mutex_lock(&j->mu);
    j->slot_ready[slot] = 0;
    j->slot_block[slot] = b + (uint64_t)j->nslots;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    aqs_progress_add(pr, len);
  }
  pthread_mutex_lock(&j->mu);
  j->stop = 1;
  pthread_cond_broadcast(&j->cv);
  pthread_mutex_unlock(&j->mu);
  for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
  free(tids);
  if (st) {
    aqs_st_writer_abort(w);
    return st;
  }
  return aqs_st_writer_finish(w, e);
}

static aqs_status build_plans(const aqs_synth_opts *opts, const aqs_qwen_model *model,
                              wt_plan **plans_out, size_t *n_out, aqs_err *e) {
  aqs_qwen_model *canonical = NULL; /* same tensor order, hf5 names */
  aqs_status st = aqs_qwen_model_from_config(&model->cfg, AQS_NAMING_HF5, &canonical, e);
  if (st) return st;
  wt_plan *plans = calloc(model->ntensors, sizeof *plans);
  if (!plans) {
    aqs_qwen_model_free(canonical);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory planning the weights");
  }
  size_t n = 0;
  for (size_t i = 0; i < model->ntensors; i++)
    if (!model->tensors[i].optional)
      plan_tensor(&plans[n++], &model->tensors[i], canonical->tensors[i].name);
  aqs_qwen_model_free(canonical);
  for (int k = 0; k < opts->noutliers && !st; k++) {
    const aqs_qwen_group *g = aqs_qwen_find_group(model, opts->outliers[k].group_id);
    if (!g)
      st = aqs_errf(e, AQS_ERR_NOT_FOUND,
                    "outlier group \"%s\" does not exist in preset %s (ids look like lm.0.qkv, "
                    "lm.3.down, vis.1.proj, vis.merger.mlp.0)",
                    opts->outliers[k].group_id, opts->preset);
    else if (plant_outlier(plans, n, model, g, (float)opts->outliers[k].factor, opts->seed))
      st = aqs_errf(e, AQS_ERR_INTERNAL, "planting outliers in %s failed", g->id);
  }
  if (st) {
    for (size_t i = 0; i < n; i++) free(plans[i].mods);
    free(plans);
    return st;
  }
  *plans_out = plans;
  *n_out = n;
  return AQS_OK;
}

aqs_status aqs_synth_write_weights(const aqs_synth_opts *opts, const aqs_qwen_model *model,
                                   aqs_err *e) {
  wt_plan *plans = NULL;
  size_t n = 0;
  aqs_status st = build_plans(opts, model, &plans, &n, e);
  if (st) return st;
  uint64_t max_shard = opts->shard_max_bytes ? opts->shard_max_bytes : (4ull << 30);
  int nshards = 1;
  uint64_t cur = 0, total = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t bytes = (uint64_t)plans[i].rows * (uint64_t)plans[i].cols * 2;
    if (cur > 0 && cur + bytes > max_shard) {
      nshards++;
      cur = 0;
    }
    plans[i].shard = nshards - 1;
    cur += bytes;
    total += bytes;
  }
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int threads = opts->threads > 0 ? opts->threads : (cpus > 0 ? (int)cpus : 1);
  job j = {.opts = opts, .plans = plans, .nplans = n, .nslots = SLOTS_PER_THREAD * threads};
  pthread_mutex_init(&j.mu, NULL);
  pthread_cond_init(&j.cv, NULL);
  j.slot_buf = calloc((size_t)j.nslots, sizeof *j.slot_buf);
  j.slot_block = calloc((size_t)j.nslots, sizeof *j.slot_block);
  j.slot_ready = calloc((size_t)j.nslots, sizeof *j.slot_ready);
  int ok = j.slot_buf && j.slot_block && j.slot_ready;
  for (int s = 0; ok && s < j.nslots; s++) ok = (j.slot_buf[s] = malloc(BLOCK_BYTES)) != NULL;
  if (!ok) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory for %d write buffers", j.nslots);
  aqs_progress *pr = opts->progress ? aqs_progress_start("synth-model", total, "B") : NULL;
  char **shard_names = calloc((size_t)nshards, sizeof *shard_names);
  if (!st && !shard_names) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  size_t first = 0;
  for (int s = 0; s < nshards && !st; s++) {
    size_t last = first;
    while (last < n && plans[last].shard == s) last++;
    if (nshards == 1) shard_names[s] = strdup("model.safetensors");
    else if (asprintf(&shard_names[s], "model-%05d-of-%05d.safetensors", s + 1, nshards) < 0)
      shard_names[s] = NULL;
    char *path = NULL;
    if (!shard_names[s] || asprintf(&path, "%s/%s", opts->out_dir, shard_names[s]) < 0) {
      st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
      break;
    }
    j.first = first;
    j.last = last;
    st = write_shard(&j, path, threads, pr, e);
    free(path);
    first = last;
  }
  if (st) aqs_progress_abort(pr);
  else aqs_progress_finish(pr);
  if (!st && nshards > 1) {
    const char **tnames = calloc(n, sizeof *tnames), **snames = calloc(n, sizeof *snames);
    if (!tnames || !snames) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < n; i++) {
      tnames[i] = plans[i].spec->name;
      snames[i] = shard_names[plans[i].shard];
    }
    if (!st) st = aqs_st_write_index(opts->out_dir, tnames, snames, n, total, e);
    free(tnames);
    free(snames);
  }
  for (int s = 0; shard_names && s < nshards; s++) free(shard_names[s]);
  free(shard_names);
  for (int s = 0; j.slot_buf && s < j.nslots; s++) free(j.slot_buf[s]);
  free(j.slot_buf);
  free(j.slot_block);
  free(j.slot_ready);
  pthread_mutex_destroy(&j.mu);
  pthread_cond_destroy(&j.cv);
  for (size_t i = 0; i < n; i++) free(plans[i].mods);
  free(plans);
  return st;
}
