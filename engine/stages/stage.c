/* engine/stages/stage.c: cached stage actions and the explanation of misses (see stage.h). */
#include "engine/stages/stage.h"

#include "engine/stages/build.h"
#include "engine/stages/chunk_workers.h"
#include "engine/stages/stage_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double aqs_stage_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

aqs_status aqs_put_json(aqs_store *store, const json_t *doc, int manifest, aqs_digest *out, aqs_err *e) {
  char *text;
  size_t len;
  aqs_status st = aqs_json_canonical(doc, &text, &len, e);
  if (st) return st;
  aqs_put_opts opts = {.compress = AQS_COMPRESS_ZSTD, .manifest = manifest};
  aqs_put_info info;
  st = aqs_put_mem(store, text, len, &opts, &info, e);
  free(text);
  if (!st) *out = info.digest;
  return st;
}

aqs_status aqs_stage_lookup(aqs_store *store, const char *stage, const char *version,
                            const json_t *inputs, const json_t *params, aqs_stage_ctx *ctx,
                            aqs_err *e) {
  memset(ctx, 0, sizeof *ctx);
  ctx->stage = stage;
  ctx->start_s = aqs_stage_now_s();
  aqs_status st = aqs_action_key(stage, version, inputs, params, &ctx->key, &ctx->key_doc, e);
  if (st) return aqs_err_prefix(e, "stage %s", stage);
  if (!store) return AQS_OK;
  aqs_action_info info;
  aqs_err miss = {0};
  st = aqs_action_lookup(store, stage, &ctx->key, &info, &miss);
  if (st == AQS_ERR_NOT_FOUND) {
    /* One builder computes an action; concurrent ones wait for it and reuse the result. */
    st = aqs_action_claim(store, stage, &ctx->key, &info, &miss);
    if (st == AQS_ERR_NOT_FOUND) {
      ctx->store = store;
      ctx->leased = !aqs_store_is_rdonly(store);
      return AQS_OK;
    }
  }
  if (st) {
    aqs_stage_ctx_free(ctx); /* the caller sees an error and frees nothing */
    return aqs_errf(e, st, "stage %s: %s", stage, miss.msg);
  }
  ctx->hit = 1;
  ctx->result = info.result;
  aqs_action_info_free(&info);
  return AQS_OK;
}

aqs_status aqs_stage_record(aqs_store *store, aqs_stage_ctx *ctx, const aqs_digest *result, aqs_err *e) {
  ctx->result = *result;
  if (!store) return AQS_OK;
  double wall = aqs_stage_now_s() - ctx->start_s;
  aqs_status st = aqs_action_put(store, ctx->key_doc, result, wall, NULL, e);
  if (!st) ctx->leased = 0; /* the put dropped it */
  return st ? aqs_err_prefix(e, "recording stage %s", ctx->stage) : AQS_OK;
}

void aqs_stage_ctx_free(aqs_stage_ctx *ctx) {
  if (!ctx) return;
  if (ctx->leased) aqs_lease_release(ctx->store, &ctx->key); /* a miss that was not recorded */
  ctx->leased = 0;
  free(ctx->key_doc);
  ctx->key_doc = NULL;
}

/* ---- differences between key documents ---- */

typedef struct diff_buf {
  char *text;
  size_t len, cap;
  int count;
} diff_buf;

static void diff_append(diff_buf *d, const char *s) {
  size_t n = strlen(s);
  if (d->len + n + 1 > d->cap) {
    size_t cap = (d->len + n + 1) * 2;
    char *t = realloc(d->text, cap);
    if (!t) return;
    d->text = t;
    d->cap = cap;
  }
  memcpy(d->text + d->len, s, n + 1);
  d->len += n;
}

/* Short rendering of a JSON value for messages: digests shortened to 12 hex digits. */
static void render(const json_t *v, char *out, size_t n) {
  if (!v) {
    snprintf(out, n, "(absent)");
    return;
  }
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    if (strncmp(s, "sha256:", 7) == 0 && strlen(s) == 71)
      snprintf(out, n, "sha256:%.12s", s + 7);
    else
      snprintf(out, n, "%s", s);
    return;
  }
  if (json_is_real(v)) { /* keys hold reals at %.17g; people read 0.9, not 0.90000000000000002 */
    snprintf(out, n, "%.10g", json_real_value(v));
    return;
  }
  char *dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
  snprintf(out, n, "%s", dump ? dump : "?");
  if (strlen(out) + 1 >= n && n > 4) memcpy(out + n - 4, "...", 4);
  free(dump);
}

/* Records every leaf where a and b differ, under path. */
static void diff_json(const char *path, const json_t *a, const json_t *b, diff_buf *d) {
  if (a && b && json_is_object(a) && json_is_object(b)) {
    const char *k;
    json_t *va;
    json_object_foreach((json_t *)a, k, va) {
      char sub[512];
      snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", k);
      diff_json(sub, va, json_object_get(b, k), d);
    }
    json_t *vb;
    json_object_foreach((json_t *)b, k, vb) {
      if (json_object_get(a, k)) continue;
      char sub[512];
      snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", k);
      diff_json(sub, NULL, vb, d);
    }
    return;
  }
  if (a && b && json_equal((json_t *)a, (json_t *)b)) return;
  /* Integers and reals of equal value are equal keys in spirit, but not in bytes: report them. */
  char ra[160], rb[160], line[600];
  render(b, ra, sizeof ra); /* b = the cached (old) value */
  render(a, rb, sizeof rb); /* a = the wanted (new) value */
  snprintf(line, sizeof line, "%s%s %s -> %s", d->count ? "; " : "", path, ra, rb);
  diff_append(d, line);
  d->count++;
}

typedef struct nearest_ctx {
  json_t *wanted;
  int best_count;
  int64_t best_ns;
  char *best_text;
  int seen;
} nearest_ctx;

static int consider_action(const aqs_action_info *info, void *user) {
  nearest_ctx *nc = user;
  nc->seen++;
  json_t *doc = json_loads(info->key_doc ? info->key_doc : "{}", 0, NULL);
  if (!doc) return 0;
  diff_buf d = {0};
  json_t *wanted_sub = json_deep_copy(nc->wanted);
  /* Only inputs, params and stage_version can differ within one stage. */
  const char *parts[] = {"stage_version", "inputs", "params"};
  for (int i = 0; i < 3; i++)
    diff_json(parts[i], json_object_get(wanted_sub, parts[i]), json_object_get(doc, parts[i]), &d);
  json_decref(wanted_sub);
  json_decref(doc);
  if (nc->best_count < 0 || d.count < nc->best_count ||
      (d.count == nc->best_count && info->created_ns > nc->best_ns)) {
    free(nc->best_text);
    nc->best_text = d.text;
    nc->best_count = d.count;
    nc->best_ns = info->created_ns;
  } else {
    free(d.text);
  }
  return 0;
}

aqs_status aqs_stage_miss_reason(aqs_store *store, const char *stage, const char *key_doc,
                                 char *buf, size_t buf_len, aqs_err *e) {
  nearest_ctx nc = {.best_count = -1};
  nc.wanted = json_loads(key_doc, 0, NULL);
  if (!nc.wanted) return aqs_errf(e, AQS_ERR_INTERNAL, "stage %s: unreadable key document", stage);
  aqs_status st = store ? aqs_action_foreach(store, stage, consider_action, &nc, e) : AQS_OK;
  json_decref(nc.wanted);
  if (st) {
    free(nc.best_text);
    return st;
  }
  if (nc.seen == 0)
    snprintf(buf, buf_len, "never built");
  else if (nc.best_count == 0 || !nc.best_text)
    snprintf(buf, buf_len, "cached result was evicted");
  else
    snprintf(buf, buf_len, "%s", nc.best_text);
  if (strlen(buf) + 1 >= buf_len && buf_len > 4) memcpy(buf + buf_len - 4, "...", 4);
  free(nc.best_text);
  return AQS_OK;
}

/* ---- the protocol ---- */

json_t *aqs_stage_jdigest(const aqs_digest *d) {
  char hex[AQS_DIGEST_STR_SIZE];
  return json_string(aqs_digest_str(d, hex));
}

aqs_status aqs_stage_put_text(aqs_store *s, const char *text, aqs_digest *out, aqs_err *e) {
  aqs_put_opts opts = {.compress = AQS_COMPRESS_ZSTD};
  aqs_put_info info;
  aqs_status st = aqs_put_mem(s, text, strlen(text), &opts, &info, e);
  if (!st) *out = info.digest;
  return st;
}

aqs_status aqs_stage_get_text(aqs_store *s, const aqs_digest *d, char **text, size_t *len, aqs_err *e) {
  *text = NULL;
  *len = 0;
  void *bytes;
  aqs_status st = aqs_get_mem(s, d, &bytes, len, e);
  if (st) return st;
  char *t = realloc(bytes, *len + 1);
  if (!t) {
    free(bytes);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  t[*len] = '\0';
  *text = t;
  return AQS_OK;
}

/* A chunk worker (chunk_workers.h) walks the graph without claiming anything: its target stage runs
 * (computing only the worker's chunks) and every other stage must already be recorded. */
static aqs_status worker_exec(const aqs_stage_def *def, aqs_stage_job *job, aqs_chunk_worker *w, const json_t *inputs,
                              const json_t *params, aqs_stage_outcome *out, aqs_err *e) {
  char *doc = NULL;
  aqs_status st = aqs_action_key(def->name, def->version, inputs, params, &out->key, &doc, e);
  free(doc);
  if (st) return st;
  if (strcmp(def->name, w->stage) == 0 && aqs_digest_eq(&out->key, &w->key)) {
    aqs_stage_ctx ctx = {.stage = def->name, .key = out->key, .start_s = aqs_stage_now_s()};
    aqs_digest unused;
    st = def->run(job, &ctx, &unused, e);
    if (!st) w->done = 1;
    return st;
  }
  aqs_action_info info;
  aqs_err miss = {0};
  st = aqs_action_lookup(job->store, def->name, &out->key, &info, &miss);
  if (st == AQS_ERR_NOT_FOUND)
    return aqs_errf(e, AQS_ERR_INTERNAL, "chunk worker: stage %s is not recorded before the %s chunks", def->name,
                    w->stage);
  if (st) return aqs_errf(e, st, "stage %s: %s", def->name, miss.msg);
  out->hit = out->has_result = 1;
  out->result = info.result;
  aqs_action_info_free(&info);
  return def->record ? def->record(job, &out->result, e) : AQS_OK;
}

aqs_status aqs_stage_exec(const aqs_stage_def *def, aqs_stage_job *job, int lookup_only, aqs_stage_outcome *out,
                          aqs_err *e) {
  double t0 = aqs_stage_now_s();
  json_t *inputs = NULL, *params = NULL;
  aqs_stage_ctx ctx = {0};
  aqs_status st = def->key(job, &inputs, &params, e);
  aqs_chunk_worker *w = job->env && job->env->o ? job->env->o->worker : NULL;
  if (!st && w) {
    st = worker_exec(def, job, w, inputs, params, out, e);
    json_decref(inputs);
    json_decref(params);
    if (def->release) def->release(job);
    out->seconds = aqs_stage_now_s() - t0;
    return st;
  }
  if (!st) st = aqs_stage_lookup(job->store, def->name, def->version, inputs, params, &ctx, e);
  json_decref(inputs);
  json_decref(params);
  if (!st) {
    out->key = ctx.key;
    out->hit = ctx.hit && !job->rebuild;
    out->forced = ctx.hit && job->rebuild;
    if (out->hit) {
      out->result = ctx.result;
      out->has_result = 1;
    } else if (lookup_only) {
      if (ctx.hit) snprintf(out->reason, sizeof out->reason, "--rebuild %s", def->name);
      else st = aqs_stage_miss_reason(job->store, def->name, ctx.key_doc, out->reason, sizeof out->reason, e);
    } else {
      aqs_digest result;
      st = def->run(job, &ctx, &result, e);
      if (!st && !job->no_record) st = aqs_stage_record(job->store, &ctx, &result, e);
      if (!st) out->result = result;
      out->has_result = !st;
    }
    if (!st && out->has_result && def->record) st = def->record(job, &out->result, e);
  }
  aqs_stage_ctx_free(&ctx);
  if (def->release) def->release(job);
  out->seconds = aqs_stage_now_s() - t0;
  return st;
}
