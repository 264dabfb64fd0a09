/* engine/export/export.c: the ModelOpt FP8 exporter's main loop: validates the plan against the
 * model, derives per-group scales, then writes one safetensors shard per block (FP8 weights
 * quantized from the memory-mapped source, everything else copied), the index, and hands off to
 * export_meta.c for the JSON files and the aqs manifest (layout in export.h). */
#include "engine/export/export_internal.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <pthread.h>
#include <time.h>

#include "common/progress.h"
#include "engine/export/fp8_cache.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- shard layout ---- */

/* If name starts with prefix followed by "<int>.", returns the int, else -1. */
static long indexed_after(const char *name, const char *prefix) {
  size_t n = strlen(prefix);
  if (strncmp(name, prefix, n) != 0) return -1;
  const char *p = name + n;
  if (*p < '0' || *p > '9') return -1;
  char *end;
  long v = strtol(p, &end, 10);
  return *end == '.' ? v : -1;
}

const char *aqs_export_shard_name(const char *t, char *buf, size_t n) {
  static const char *const lm_prefixes[] = {"model.language_model.", "model."};
  static const char *const vis_prefixes[] = {"model.visual.", "visual."};
  long idx;
  for (int k = 0; k < 2; k++) {
    const char *v = vis_prefixes[k];
    size_t vl = strlen(v);
    if (strncmp(t, v, vl) != 0) continue;
    char blocks[64];
    snprintf(blocks, sizeof blocks, "%sblocks.", v);
    if ((idx = indexed_after(t, blocks)) >= 0)
      snprintf(buf, n, "model-visual-blocks-%03ld.safetensors", idx);
    else if (strncmp(t + vl, "merger.", 7) == 0)
      snprintf(buf, n, "model-visual-merger.safetensors");
    else if (strncmp(t + vl, "patch_embed.", 12) == 0)
      snprintf(buf, n, "model-visual-stem.safetensors");
    else
      snprintf(buf, n, "model-other.safetensors");
    return buf;
  }
  if (strncmp(t, "lm_head.", 8) == 0) {
    snprintf(buf, n, "model-head.safetensors");
    return buf;
  }
  for (int k = 0; k < 2; k++) {
    const char *l = lm_prefixes[k];
    size_t ll = strlen(l);
    if (strncmp(t, l, ll) != 0) continue;
    char layers[64];
    snprintf(layers, sizeof layers, "%slayers.", l);
    if ((idx = indexed_after(t, layers)) >= 0) {
      snprintf(buf, n, "model-layers-%03ld.safetensors", idx);
      return buf;
    }
    if (strncmp(t + ll, "embed_tokens.", 13) == 0) {
      snprintf(buf, n, "model-embed.safetensors");
      return buf;
    }
    if (strncmp(t + ll, "norm.", 5) == 0) {
      snprintf(buf, n, "model-head.safetensors");
      return buf;
    }
  }
  snprintf(buf, n, "model-other.safetensors");
  return buf;
}

/* ---- output directory and files ---- */

static aqs_status mkdir_p(const char *path, aqs_err *e) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
      return aqs_errno(e, AQS_ERR_IO, errno, "cannot create directory %s", buf);
    *p = '/';
  }
  if (mkdir(buf, 0777) != 0 && errno != EEXIST)
    return aqs_errno(e, AQS_ERR_IO, errno, "cannot create directory %s", buf);
  return AQS_OK;
}

static aqs_status prepare_out_dir(const char *dir, aqs_err *e) {
  DIR *d = opendir(dir);
  if (!d) {
    if (errno != ENOENT) return aqs_errno(e, AQS_ERR_IO, errno, "cannot open output directory %s", dir);
    return mkdir_p(dir, e);
  }
  struct dirent *de;
  int busy = 0;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) busy = 1;
  closedir(d);
  if (busy)
    return aqs_errf(e, AQS_ERR_INVALID, "output directory %s is not empty (export writes into an "
                    "empty or new directory)", dir);
  return AQS_OK;
}

aqs_status export_add_file(export_ctx *x, const char *name, aqs_export_file_kind kind,
                           const aqs_digest *digest, uint64_t bytes, aqs_err *e) {
  aqs_export_result *r = x->res;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", x->o->out_dir, name);
  aqs_export_file *grown = realloc(r->files, (r->nfiles + 1) * sizeof *grown);
  if (!grown) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory listing exported files");
  r->files = grown;
  aqs_export_file *f = &r->files[r->nfiles];
  memset(f, 0, sizeof *f);
  snprintf(f->name, sizeof f->name, "%s", name);
  f->kind = kind;
  if (digest) {
    f->digest = *digest;
    f->bytes = bytes;
  } else {
    double t0 = now_s();
    aqs_status st = aqs_sha256_file(path, &f->digest, &f->bytes, e);
    r->seconds_hash += now_s() - t0;
    if (st) return st;
  }
  r->nfiles++;
  /* A shard handed to a shard sink has no file for on_file to see. */
  if (x->o->on_file && !(kind == AQS_EXPORT_SHARD && x->o->shard_sink))
    return x->o->on_file(x->o->on_file_ctx, path, f, e);
  return AQS_OK;
}

aqs_status export_write_text(export_ctx *x, const char *name, const char *text,
                             aqs_export_file_kind kind, aqs_err *e) {
  char path[4096], tmp[4200];
  snprintf(path, sizeof path, "%s/%s", x->o->out_dir, name);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) return aqs_errno(e, AQS_ERR_IO, errno, "cannot create %s", tmp);
  size_t len = strlen(text);
  int ok = fwrite(text, 1, len, f) == len;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    int err = errno;
    remove(tmp);
    return aqs_errno(e, AQS_ERR_IO, err, "cannot write %s", path);
  }
  return export_add_file(x, name, kind, NULL, 0, e);
}

/* ---- plan, scope and scales ---- */

static aqs_status prepare_groups(export_ctx *x, aqs_err *e) {
  const aqs_plan *plan = x->o->plan;
  const aqs_qwen_model *m = x->model;
  for (size_t i = 0; i < plan->n; i++)
    if (!aqs_qwen_find_group(m, plan->entries[i].group))
      return aqs_errf(e, AQS_ERR_NOT_FOUND,
                      "plan group '%s' does not exist in model %s (%d layers, %d vision blocks)",
                      plan->entries[i].group, x->o->model_dir, m->cfg.text.num_layers,
                      m->cfg.vision.depth);
  if (plan->scope[0]) {
    aqs_status st = aqs_qwen_scope_parse(plan->scope, &x->scope, e);
    if (st) return st;
  } else {
    x->scope = AQS_SCOPE_LM_ONLY;
    for (size_t i = 0; i < plan->n; i++)
      if (strncmp(plan->entries[i].group, "vis.", 4) == 0) x->scope = AQS_SCOPE_ALL_LAYERS;
  }
  x->groups = calloc(m->ngroups ? m->ngroups : 1, sizeof *x->groups);
  if (!x->groups) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  for (size_t g = 0; g < m->ngroups; g++) {
    export_group_state *gs = &x->groups[g];
    gs->group = &m->groups[g];
    gs->format = aqs_plan_format(plan, gs->group->id);
    gs->in_scope = aqs_qwen_group_in_scope(gs->group, x->scope);
    if (gs->format != AQS_FMT_FP8) continue;
    if (!gs->in_scope)
      return aqs_errf(e, AQS_ERR_INVALID, "plan makes group '%s' fp8 but its scope is %s",
                      gs->group->id, aqs_qwen_scope_name(x->scope));
    float amax = 0.0f;
    for (int k = 0; k < gs->group->nmembers; k++) {
      const char *module = gs->group->members[k].module;
      const aqs_amax_entry *en = x->o->amax ? aqs_amax_find(x->o->amax, module) : NULL;
      if (!en)
        return aqs_errf(e, AQS_ERR_NOT_FOUND,
                        "amax table has no entry for module %s (group %s is fp8 in the plan)",
                        module, gs->group->id);
      if (!isfinite(en->input_amax) || en->input_amax < 0)
        return aqs_errf(e, AQS_ERR_NUMERIC, "input amax of module %s is %g", module,
                        (double)en->input_amax);
      if (en->input_amax > amax) amax = en->input_amax;
    }
    gs->input_amax = amax;
    aqs_status st = aqs_fp8_scale_from_amax(amax, &gs->input_scale, e);
    if (st) {
      if (e) aqs_err_prefix(e, "input scale of group %s", gs->group->id);
      return st;
    }
  }
  return AQS_OK;
}

/* The group state and member index of a ".weight" tensor, when its group is FP8. */
static export_group_state *fp8_member(export_ctx *x, const char *tensor, int *member) {
  size_t n = strlen(tensor);
  if (n < 8 || strcmp(tensor + n - 7, ".weight") != 0) return NULL;
  const aqs_qwen_group *g = aqs_qwen_group_of_module(x->model, tensor);
  if (!g) return NULL;
  export_group_state *gs = &x->groups[g - x->model->groups];
  if (gs->format != AQS_FMT_FP8) return NULL;
  for (int k = 0; k < g->nmembers; k++)
    if (strncmp(g->members[k].module, tensor, n - 7) == 0 && g->members[k].module[n - 7] == '\0') {
      *member = k;
      return gs;
    }
  return NULL;
}

/* ---- one shard ---- */

typedef struct out_tensor {
  char name[256];
  aqs_dtype dtype;
  int ndim;
  int64_t shape[AQS_ST_MAX_DIMS];
  const void *data;
  uint64_t nbytes;
  int is_scalar;          /* data is &scalar (re-pointed after sorting) */
  int hashed;             /* digest already known (from the caller's source digests) */
  float scalar;           /* storage for F32 scalars */
  aqs_digest digest;
  /* Codes quantized into a buffer of opts.fp8_cache, inserted once hashed (see settle_cache). */
  uint8_t *cache_codes;
  aqs_digest cache_source;
  float cache_amax, cache_scale;
} out_tensor;

static int out_tensor_cmp(const void *a, const void *b) {
  return strcmp(((const out_tensor *)a)->name, ((const out_tensor *)b)->name);
}

/* A per-tensor F32 scale: shape [] (ModelOpt) or [1] (compressed-tensors); same 4 bytes. */
static aqs_status add_scalar(out_tensor *o, const char *module, const char *suffix, float value,
                             aqs_export_format fmt) {
  snprintf(o->name, sizeof o->name, "%s.%s", module, suffix);
  o->dtype = AQS_DT_F32;
  o->ndim = fmt == AQS_EXPORT_COMPRESSED_TENSORS ? 1 : 0;
  o->shape[0] = 1;
  o->scalar = value;
  o->is_scalar = 1;
  o->data = &o->scalar;
  o->nbytes = 4;
  return AQS_OK;
}

/* FP8 KV cache: beside a language layer's self_attn.k_proj.weight (whatever its format), the
 * layer's k_scale / v_scale from the K/V cache amax: ModelOpt names them self_attn.k_proj.k_scale
 * / v_proj.v_scale, compressed-tensors self_attn.k_scale / v_scale. */
static aqs_status add_kv_scales(export_ctx *x, const char *tensor, out_tensor *outs, size_t *nout,
                                aqs_err *e) {
  const char *suffix = "self_attn.k_proj.weight";
  size_t n = strlen(tensor), ns = strlen(suffix);
  if (n <= ns || strcmp(tensor + n - ns, suffix) != 0 || strstr(tensor, "visual")) return AQS_OK;
  const int pre = (int)(n - ns);
  for (int v = 0; v < 2; v++) {
    char cache[200], module[200];
    snprintf(cache, sizeof cache, "%.*sself_attn.%s_cache", pre, tensor, v ? "v" : "k");
    if (x->o->format == AQS_EXPORT_COMPRESSED_TENSORS)
      snprintf(module, sizeof module, "%.*sself_attn", pre, tensor);
    else
      snprintf(module, sizeof module, "%.*sself_attn.%s_proj", pre, tensor, v ? "v" : "k");
    const aqs_amax_entry *en = x->o->amax ? aqs_amax_find(x->o->amax, cache) : NULL;
    if (!en)
      return aqs_errf(e, AQS_ERR_NOT_FOUND,
                      "amax table has no entry for %s (the FP8 KV cache needs the K/V amax of "
                      "every layer: recalibrate)", cache);
    float scale;
    aqs_status st = aqs_fp8_scale_from_amax(en->input_amax, &scale, e);
    if (st) return aqs_err_prefix(e, "%s", cache);
    add_scalar(&outs[(*nout)++], module, v ? "v_scale" : "k_scale", scale, x->o->format);
  }
  return AQS_OK;
}

static aqs_status quantize_weight(export_ctx *x, const aqs_st_tensor *t, export_group_state *gs,
                                  int member, uint8_t *arena, out_tensor *o, aqs_err *e) {
  float amax = t->dtype == AQS_DT_BF16 ? aqs_fp8_amax_bf16(t->data, t->numel)
             : t->dtype == AQS_DT_F32  ? aqs_fp8_amax_f32(t->data, t->numel)
                                       : -1.0f;
  if (amax < 0.0f)
    return aqs_errf(e, AQS_ERR_UNSUPPORTED, "weight %s is %s; FP8 export needs BF16 or F32",
                    t->name, aqs_dtype_name(t->dtype));
  if (isnan(amax) || isinf(amax))
    return aqs_errf(e, AQS_ERR_NUMERIC, "weight %s contains NaN or Inf (group %s)", t->name,
                    gs->group->id);
  float scale;
  aqs_status st = aqs_fp8_scale_from_amax(amax, &scale, e);
  if (st) {
    if (e) aqs_err_prefix(e, "weight %s", t->name);
    return st;
  }
  gs->weight_amax[member] = amax;
  gs->weight_scale[member] = scale;
  uint8_t *q = arena;
  if (t->dtype == AQS_DT_BF16)
    aqs_fp8_quantize_bf16(t->data, t->numel, scale, x->o->fp8_ref, q);
  else
    aqs_fp8_quantize_f32(t->data, t->numel, scale, x->o->fp8_ref, q);
  snprintf(o->name, sizeof o->name, "%s", t->name);
  o->dtype = AQS_DT_F8_E4M3;
  o->ndim = t->ndim;
  memcpy(o->shape, t->shape, sizeof o->shape);
  o->data = q;
  o->nbytes = t->numel;
  x->res->quantized_params += t->numel;
  return AQS_OK;
}

/* The output tensor of an FP8 weight whose codes the cache holds: no read, quantization or hash. */
static void reuse_codes(export_ctx *x, const aqs_st_tensor *t, export_group_state *gs, int member,
                        const aqs_fp8_cached *hit, out_tensor *o) {
  gs->weight_amax[member] = hit->amax;
  gs->weight_scale[member] = hit->scale;
  snprintf(o->name, sizeof o->name, "%s", t->name);
  o->dtype = AQS_DT_F8_E4M3;
  o->ndim = t->ndim;
  memcpy(o->shape, t->shape, sizeof o->shape);
  o->data = hit->codes;
  o->nbytes = hit->n;
  o->digest = hit->digest;
  o->hashed = 1;
  x->res->quantized_params += t->numel;
  x->res->reused_params += t->numel;
}

/* Quantizes FP8 weight t into o: into a cache buffer claimed for its source digest when that is
 * known and the cache has room (inserted once hashed, see settle_cache), else into arena
 * (*arena_used advances). Codes another export has claimed are waited for, not made twice. */
static aqs_status fp8_weight(export_ctx *x, uint8_t *arena, size_t *arena_used, const aqs_st_tensor *t,
                             export_group_state *gs, int member, out_tensor *o, aqs_err *e) {
  aqs_fp8_cache *cache = x->o->fp8_cache;
  aqs_digest src;
  int known = cache && x->o->source_tensor_digest &&
              x->o->source_tensor_digest(x->o->source_tensor_digest_ctx, t->name, &src) == 1;
  aqs_fp8_cached hit;
  uint8_t *buf = NULL;
  aqs_fp8_claim got = known ? aqs_fp8_cache_claim(cache, &src, (int)x->o->fp8_ref, (uint64_t)t->numel, &hit, &buf)
                            : AQS_FP8_FULL;
  if (got == AQS_FP8_HIT && hit.n == (uint64_t)t->numel) {
    reuse_codes(x, t, gs, member, &hit, o);
    return AQS_OK;
  }
  if (got != AQS_FP8_CLAIMED) buf = NULL;
  aqs_status st = quantize_weight(x, t, gs, member, buf ? buf : arena + *arena_used, o, e);
  if (!buf) {
    *arena_used += (size_t)t->numel;
  } else if (st) {
    aqs_fp8_cache_release(cache, buf);
  } else {
    o->cache_codes = buf;
    o->cache_source = src;
    o->cache_amax = gs->weight_amax[member];
    o->cache_scale = gs->weight_scale[member];
  }
  return st;
}

/* Hands the shard's freshly quantized cache buffers to the cache (keep: from the thread that hashed
 * them, so that no claim waits on a main thread) or back (on error). */
static void settle_cache(const export_ctx *x, out_tensor *outs, size_t nout, int keep) {
  for (size_t i = 0; i < nout; i++) {
    out_tensor *o = &outs[i];
    if (!o->cache_codes) continue;
    if (keep) {
      aqs_fp8_cached entry = {.source = o->cache_source, .ref = (int)x->o->fp8_ref, .amax = o->cache_amax,
                              .scale = o->cache_scale, .codes = o->cache_codes, .n = o->nbytes,
                              .digest = o->digest};
      aqs_fp8_cache_insert(x->o->fp8_cache, &entry);
    } else {
      aqs_fp8_cache_release(x->o->fp8_cache, o->cache_codes);
    }
    o->cache_codes = NULL;
  }
}

/* Whether the shard's preparation reads source tensor t: not when the build's cache answers
 * for it (FP8 codes already made, or a copied tensor already checked finite). */
static int reads_source(export_ctx *x, const aqs_st_tensor *t) {
  aqs_fp8_cache *cache = x->o->fp8_cache;
  aqs_digest src;
  int member;
  if (!cache || !x->o->source_tensor_digest ||
      x->o->source_tensor_digest(x->o->source_tensor_digest_ctx, t->name, &src) != 1)
    return 1;
  if (fp8_member(x, t->name, &member)) return !aqs_fp8_cache_has(cache, &src, (int)x->o->fp8_ref);
  return !aqs_fp8_cache_is_finite(cache, &src);
}

/* Maps the source pages of t in one call (they are read at least twice: amax/quantize or hash,
 * then write); page faults one by one cost more than the work in a VM. Best effort. */
static void populate(const aqs_st_tensor *t) {
#ifdef MADV_POPULATE_READ
  if (!t->data || t->nbytes < (1u << 20)) return;
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t start = (uintptr_t)t->data & ~(page - 1);
  uintptr_t end = (uintptr_t)t->data + t->nbytes;
  madvise((void *)start, end - start, MADV_POPULATE_READ);
#else
  (void)t;
#endif
}

/* SHA-256 of a shard just written, without reading its data back: the header from the file,
 * then the tensor bytes from memory (the writer lays them out back to back in this order). */
static aqs_status shard_file_digest(const char *path, const out_tensor *outs, size_t nout,
                                    aqs_digest *digest, uint64_t *bytes, aqs_err *e) {
  FILE *f = fopen(path, "rb");
  if (!f) return aqs_errno(e, AQS_ERR_IO, errno, "cannot reopen %s", path);
  uint8_t len_bytes[8];
  uint64_t header_len = 0;
  int ok = fread(len_bytes, 1, 8, f) == 8;
  for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | len_bytes[i];
  char *header = ok && header_len < AQS_ST_MAX_HEADER_BYTES ? malloc(header_len + 1) : NULL;
  ok = header && fread(header, 1, header_len, f) == header_len;
  struct stat sb;
  uint64_t total = 8 + header_len;
  for (size_t i = 0; i < nout; i++) total += outs[i].nbytes;
  ok = ok && fstat(fileno(f), &sb) == 0 && (uint64_t)sb.st_size == total;
  fclose(f);
  if (!ok) {
    free(header);
    return aqs_errf(e, AQS_ERR_IO, "%s: shard is not the expected %llu bytes after writing", path,
                    (unsigned long long)total);
  }
  aqs_sha256 *h = aqs_sha256_new();
  if (!h) {
    free(header);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory hashing %s", path);
  }
  aqs_sha256_update(h, len_bytes, 8);
  aqs_sha256_update(h, header, header_len);
  for (size_t i = 0; i < nout; i++) aqs_sha256_update(h, outs[i].data, outs[i].nbytes);
  aqs_sha256_final(h, digest);
  aqs_sha256_free(h);
  free(header);
  *bytes = total;
  return AQS_OK;
}

static json_t *shape_json(const out_tensor *o) {
  json_t *a = json_array();
  for (int d = 0; d < o->ndim; d++) json_array_append_new(a, json_integer(o->shape[d]));
  return a;
}

/* One shard in flight. The main thread prepares it (quantize, sort); a thread of its own then
 * hashes its fresh FP8 codes and writes (or stores) the shard and its file digest while the main
 * thread prepares the next shards, so CPU work and disk writes overlap. Slots are reused in turn;
 * each keeps its FP8 arena. */
typedef struct shard_job {
  export_ctx *x;
  char shard[128];
  char path[4096];
  const aqs_st_tensor *const *src;
  size_t nsrc;
  out_tensor *outs;
  size_t nout;
  uint8_t *arena;               /* FP8 codes of this shard; reused by the slot */
  size_t arena_bytes;
  aqs_digest file_digest;
  uint64_t file_bytes;
  double seconds_write, seconds_hash;
  aqs_status st;
  aqs_err err;
  pthread_t thread;
  int running;
} shard_job;

static aqs_status prepare_shard(export_ctx *x, shard_job *j, aqs_err *e) {
  aqs_status st = AQS_OK;
  free(j->outs);
  j->outs = calloc(3 * j->nsrc + 3, sizeof *j->outs); /* + k_scale, v_scale */
  j->nout = 0;
  if (!j->outs) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  double t0 = now_s();
  size_t arena_need = 0, arena_used = 0;
  for (size_t i = 0; i < j->nsrc; i++) {
    int member;
    if (fp8_member(x, j->src[i]->name, &member)) arena_need += j->src[i]->numel;
    if (reads_source(x, j->src[i])) populate(j->src[i]);
  }
  if (arena_need > j->arena_bytes) {
    free(j->arena);
    j->arena = malloc(arena_need);
    j->arena_bytes = j->arena ? arena_need : 0;
    if (!j->arena) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory for the FP8 codes of %s", j->shard);
  }
  out_tensor *outs = j->outs;
  for (size_t i = 0; i < j->nsrc && !st; i++) {
    const aqs_st_tensor *t = j->src[i];
    int member;
    export_group_state *gs = fp8_member(x, t->name, &member);
    if (x->o->kv_cache_fp8 && (st = add_kv_scales(x, t->name, outs, &j->nout, e))) break;
    if (gs) {
      char module[200];
      snprintf(module, sizeof module, "%.*s", (int)(strlen(t->name) - 7), t->name);
      st = fp8_weight(x, j->arena, &arena_used, t, gs, member, &outs[j->nout++], e);
      if (!st)
        add_scalar(&outs[j->nout++], module, "weight_scale", gs->weight_scale[member], x->o->format);
      if (!st) add_scalar(&outs[j->nout++], module, "input_scale", gs->input_scale, x->o->format);
    } else {
      /* Copied as is: still never a NaN or Inf into a checkpoint (vision and norms included);
       * scanned once per build (the cache remembers the source digests found finite). */
      out_tensor *o = &outs[j->nout++];
      if (x->o->source_tensor_digest)
        o->hashed = x->o->source_tensor_digest(x->o->source_tensor_digest_ctx, t->name, &o->digest) == 1;
      aqs_fp8_cache *cache = o->hashed ? x->o->fp8_cache : NULL;
      if (!cache || !aqs_fp8_cache_is_finite(cache, &o->digest)) {
        int64_t bad = aqs_first_nonfinite(t->dtype, t->data, t->numel);
        if (bad >= 0) {
          st = aqs_errf(e, AQS_ERR_NUMERIC, "tensor %s contains NaN or Inf (element %lld); refusing to export it",
                        t->name, (long long)bad);
          break;
        }
        if (cache) aqs_fp8_cache_mark_finite(cache, &o->digest);
      }
      snprintf(o->name, sizeof o->name, "%s", t->name);
      o->dtype = t->dtype;
      o->ndim = t->ndim;
      memcpy(o->shape, t->shape, sizeof o->shape);
      o->data = t->data;
      o->nbytes = t->nbytes;
    }
  }
  x->res->seconds_quantize += now_s() - t0;
  if (st) {
    settle_cache(x, outs, j->nout, 0);
    return st;
  }
  qsort(outs, j->nout, sizeof *outs, out_tensor_cmp);
  for (size_t i = 0; i < j->nout; i++)
    if (outs[i].is_scalar) outs[i].data = &outs[i].scalar;
  /* The new codes are hashed by the shard's own thread (hash_outs), not here: the main thread
   * goes on to the next shard; that thread hands them to the cache once hashed. */
  char shard[sizeof j->shard];
  memcpy(shard, j->shard, sizeof shard);
  snprintf(j->path, sizeof j->path, "%s/%s", x->o->out_dir, shard);
  return AQS_OK;
}

/* SHA-256 of the shard's tensors whose digest is not known yet (fresh FP8 codes), in the shard's
 * thread: several shards are in flight, so one stream each keeps the cores busy. */
static void hash_outs(shard_job *j) {
  double t0 = now_s();
  for (size_t i = 0; i < j->nout; i++)
    if (!j->outs[i].hashed) {
      aqs_sha256_buf(j->outs[i].data, j->outs[i].nbytes, &j->outs[i].digest);
      j->outs[i].hashed = 1;
    }
  settle_cache(j->x, j->outs, j->nout, 1); /* the codes are complete: other exports may use them */
  j->seconds_hash += now_s() - t0;
}

/* Writer thread body: the safetensors file, then its digest. Touches only the job. */
static void *write_shard_thread(void *arg) {
  shard_job *j = arg;
  aqs_st_writer *w = NULL;
  aqs_err *e = &j->err;
  aqs_status st;
  hash_outs(j);
  double t0 = now_s();
  if ((st = aqs_st_writer_open(j->path, &w, e))) goto done;
  if ((st = aqs_st_writer_set_meta(w, "format", "pt", e))) goto done;
  for (size_t i = 0; i < j->nout && !st; i++)
    st = aqs_st_writer_add(w, j->outs[i].name, j->outs[i].dtype, j->outs[i].ndim, j->outs[i].shape, e);
  if (!st) st = aqs_st_writer_begin_data(w, e);
  for (size_t i = 0; i < j->nout && !st; i++)
    st = aqs_st_writer_write(w, j->outs[i].data, j->outs[i].nbytes, e);
  if (st) goto done;
  st = aqs_st_writer_finish(w, e);
  w = NULL;
  j->seconds_write = now_s() - t0;
  if (st) goto done;
  t0 = now_s();
  st = shard_file_digest(j->path, j->outs, j->nout, &j->file_digest, &j->file_bytes, e);
  j->seconds_hash += now_s() - t0;
done:
  if (w) aqs_st_writer_abort(w);
  j->st = st;
  return NULL;
}

static aqs_status start_writer(shard_job *j, aqs_err *e) {
  aqs_err_clear(&j->err);
  j->st = AQS_OK;
  j->seconds_write = j->seconds_hash = 0;
  int rc = pthread_create(&j->thread, NULL, write_shard_thread, j);
  if (rc) return aqs_errno(e, AQS_ERR_INTERNAL, rc, "cannot start the writer thread for %s", j->shard);
  j->running = 1;
  return AQS_OK;
}

/* Sink mode: describes the prepared shard (header bytes as the writer would write them, tensors
 * in file order, bytes still in memory) to opts.shard_sink, which returns the file's digest. */
static aqs_status sink_shard_body(export_ctx *x, shard_job *j, aqs_err *e) {
  aqs_st_writer *w;
  const uint8_t *header = NULL;
  size_t header_bytes = 0;
  aqs_status st = aqs_st_writer_open_mem(j->shard, &w, e);
  if (st) return st;
  st = aqs_st_writer_set_meta(w, "format", "pt", e);
  for (size_t i = 0; i < j->nout && !st; i++)
    st = aqs_st_writer_add(w, j->outs[i].name, j->outs[i].dtype, j->outs[i].ndim, j->outs[i].shape, e);
  if (!st) st = aqs_st_writer_begin_data(w, e);
  if (!st) st = aqs_st_writer_header(w, &header, &header_bytes, e);
  aqs_export_shard_tensor *ts = calloc(j->nout + 1, sizeof *ts);
  if (!st && !ts) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  uint64_t file_bytes = header_bytes;
  for (size_t i = 0; !st && i < j->nout; i++) {
    ts[i] = (aqs_export_shard_tensor){j->outs[i].name, &j->outs[i].digest, j->outs[i].data, j->outs[i].nbytes};
    file_bytes += j->outs[i].nbytes;
  }
  double t0 = now_s();
  aqs_export_shard sh = {j->shard, header, header_bytes, j->nout, ts, file_bytes};
  if (!st) st = x->o->shard_sink(x->o->shard_sink_ctx, &sh, &j->file_digest, e);
  j->seconds_write = now_s() - t0;
  j->file_bytes = file_bytes;
  free(ts);
  aqs_st_writer_abort(w);
  return st;
}

/* Like write_shard_thread, in sink mode: the sink stores the shard while the main thread
 * prepares the next one (the job's bytes stay valid until finish_shard joins it). */
static void *sink_shard_thread(void *arg) {
  shard_job *j = arg;
  hash_outs(j);
  j->st = sink_shard_body(j->x, j, &j->err);
  return NULL;
}

static aqs_status start_sink(shard_job *j, aqs_err *e) {
  aqs_err_clear(&j->err);
  j->st = AQS_OK;
  j->seconds_write = j->seconds_hash = 0;
  int rc = pthread_create(&j->thread, NULL, sink_shard_thread, j);
  if (rc) return aqs_errno(e, AQS_ERR_INTERNAL, rc, "cannot start the sink thread for %s", j->shard);
  j->running = 1;
  return AQS_OK;
}

/* Joins j's writer and, if it succeeded, records its tensors and file (main thread). */
static aqs_status finish_shard(export_ctx *x, shard_job *j, aqs_progress *prog, aqs_err *e) {
  if (!j->running) return AQS_OK;
  pthread_join(j->thread, NULL);
  j->running = 0;
  x->res->seconds_write += j->seconds_write;
  x->res->seconds_hash += j->seconds_hash;
  if (j->st) {
    if (e) *e = j->err;
    return j->st;
  }
  for (size_t i = 0; i < j->nout; i++) {
    const out_tensor *o = &j->outs[i];
    char hex[AQS_DIGEST_STR_SIZE];
    json_t *tj = json_object();
    json_object_set_new(tj, "dtype", json_string(aqs_dtype_name(o->dtype)));
    json_object_set_new(tj, "shape", shape_json(o));
    json_object_set_new(tj, "sha256", json_string(aqs_digest_str(&o->digest, hex)));
    json_object_set_new(tj, "file", json_string(j->shard));
    json_object_set_new(x->tensors_json, o->name, tj);
    x->res->tensor_bytes += o->nbytes;
  }
  for (size_t i = 0; i < j->nsrc; i++) aqs_progress_add(prog, j->src[i]->nbytes); /* source bytes */
  return export_add_file(x, j->shard, AQS_EXPORT_SHARD, &j->file_digest, j->file_bytes, e);
}

/* ---- index ---- */

static aqs_status write_index(export_ctx *x, aqs_err *e) {
  size_t n = json_object_size(x->tensors_json), i = 0;
  const char **names = calloc(n + 1, sizeof *names), **files = calloc(n + 1, sizeof *files);
  if (!names || !files) {
    free(names);
    free(files);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  const char *key;
  json_t *val;
  json_object_foreach(x->tensors_json, key, val) {
    names[i] = key;
    files[i++] = json_string_value(json_object_get(val, "file"));
  }
  aqs_status st = aqs_st_write_index(x->o->out_dir, names, files, n, x->res->tensor_bytes, e);
  free(names);
  free(files);
  if (st) return st;
  return export_add_file(x, "model.safetensors.index.json", AQS_EXPORT_META, NULL, 0, e);
}

/* ---- effective bits ---- */

static void compute_summary(export_ctx *x) {
  double bits = 0, params = 0;
  aqs_export_result *r = x->res;
  r->n_groups = x->model->ngroups;
  for (size_t g = 0; g < x->model->ngroups; g++) {
    const export_group_state *gs = &x->groups[g];
    if (!gs->in_scope) continue;
    r->n_candidates++;
    double p = (double)gs->group->weight_params;
    params += p;
    if (gs->format == AQS_FMT_FP8) {
      r->n_fp8++;
      bits += 8.0 * p + 64.0 * gs->group->nmembers; /* weight_scale + input_scale per member */
    } else {
      bits += 16.0 * p;
    }
  }
  r->effective_bits = params > 0 ? bits / params : 16.0;
  snprintf(r->scope, sizeof r->scope, "%s", aqs_qwen_scope_name(x->scope));
}

/* ---- driver ---- */

static int shard_tensor_cmp(const void *a, const void *b) {
  const aqs_st_tensor *ta = *(const aqs_st_tensor *const *)a, *tb = *(const aqs_st_tensor *const *)b;
  char sa[128], sb[128];
  int c = strcmp(aqs_export_shard_name(ta->name, sa, sizeof sa),
                 aqs_export_shard_name(tb->name, sb, sizeof sb));
  return c ? c : strcmp(ta->name, tb->name);
}

/* Shards in flight at once: AQS_EXPORT_SLOTS, else one per core, 2 to 16 (each one hashes its
 * shard file in one sequential stream: a sweep's later exports are mostly that). */
static int export_slots(void) {
  const char *env = getenv("AQS_EXPORT_SLOTS");
  long n = env && *env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
  return n < 2 ? 2 : n > 16 ? 16 : (int)n;
}

static aqs_status write_shards(export_ctx *x, aqs_err *e) {
  size_t n = x->ckpt->ntensors;
  const aqs_st_tensor **order = malloc((n + 1) * sizeof *order);
  if (!order) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  if (n) memcpy(order, x->ckpt->tensors, n * sizeof *order);
  qsort(order, n, sizeof *order, shard_tensor_cmp);
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) total += order[i]->nbytes;
  aqs_progress *prog = x->o->progress ? aqs_progress_start("export", total, "B") : NULL;
  /* Shards in flight: the main thread prepares one while the others are written or stored and
   * hashed (each shard's file digest is one sequential SHA-256, so several run at once). Jobs
   * finish in shard order, so results and manifests do not depend on the number of slots. */
  int nslots = export_slots();
  shard_job *jobs = calloc((size_t)nslots, sizeof *jobs);
  if (!jobs) {
    free(order);
    if (prog) aqs_progress_finish(prog);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  aqs_status st = AQS_OK;
  int slot = 0;
  for (size_t i = 0; i < n && !st; slot = (slot + 1) % nslots) {
    shard_job *j = &jobs[slot];
    /* this slot holds the oldest shard in flight: record it before reusing the slot */
    if ((st = finish_shard(x, j, prog, e))) break;
    char other[128];
    j->x = x;
    aqs_export_shard_name(order[i]->name, j->shard, sizeof j->shard);
    size_t k = i + 1;
    while (k < n && strcmp(aqs_export_shard_name(order[k]->name, other, sizeof other), j->shard) == 0) k++;
    j->src = order + i;
    j->nsrc = k - i;
    i = k;
    st = prepare_shard(x, j, e);
    if (!st) {
      st = x->o->shard_sink ? start_sink(j, e) : start_writer(j, e);
      if (st) settle_cache(x, j->outs, j->nout, 0); /* no thread: its codes go back */
    }
  }
  for (int s = 0; s < nslots; s++) {
    aqs_status last = finish_shard(x, &jobs[(slot + s) % nslots], prog, st ? NULL : e);
    if (!st) st = last;
  }
  for (int s = 0; s < nslots; s++) {
    free(jobs[s].outs);
    free(jobs[s].arena);
  }
  free(jobs);
  if (prog) aqs_progress_finish(prog);
  free(order);
  return st;
}

aqs_status aqs_export_run(const aqs_export_opts *o, aqs_export_result *res, aqs_err *e) {
  aqs_export_result local;
  if (!res) res = &local;
  memset(res, 0, sizeof *res);
  double t_start = now_s();
  export_ctx x = {.o = o, .res = res};
  aqs_status st;
  if (!o->plan || !o->model_dir || !o->out_dir)
    return aqs_errf(e, AQS_ERR_INVALID, "export needs a model directory, a plan and an output directory");
  if ((st = aqs_qwen_model_open(o->model_dir, &x.model, &x.ckpt, e))) goto done;
  if ((st = prepare_groups(&x, e))) goto done;
  if ((st = prepare_out_dir(o->out_dir, e))) goto done;
  x.tensors_json = json_object();
  x.source_files_json = json_object();
  if ((st = write_shards(&x, e))) goto done;
  if ((st = write_index(&x, e))) goto done;
  compute_summary(&x);
  if ((st = export_write_configs(&x, e))) goto done;
  if ((st = export_copy_aux_files(&x, e))) goto done;
  res->seconds_total = now_s() - t_start; /* before the manifest: it holds no timings */
  if ((st = export_write_manifest(&x, e))) goto done;
  res->seconds_total = now_s() - t_start;
done:
  json_decref(x.tensors_json);
  json_decref(x.source_files_json);
  free(x.groups);
  if (x.ckpt) aqs_ckpt_close(x.ckpt);
  if (x.model) aqs_qwen_model_free(x.model);
  if (st || res == &local) aqs_export_result_free(res);
  return st;
}

void aqs_export_result_free(aqs_export_result *res) {
  if (!res) return;
  free(res->files);
  res->files = NULL;
  res->nfiles = 0;
}
