/* engine/stages/stage_chunks.c: chunk actions of the chunked stages as the compute loop's cache
 * (see stage_chunks.h). */
#include "engine/stages/stage_chunks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/stages/build.h"
#include "engine/stages/calib_set.h"
#include "engine/stages/chunk_workers.h"
#include "engine/stages/recipe.h"
#include "engine/stages/stage_env.h"
#include "engine/stages/token_input.h"
#include "kernels/backend.h"

json_t *aqs_stage_compute_params(aqs_stage_job *job) {
  return json_pack("{s:s, s:s, s:I}", "backend", aqs_stage_env_backend(job->env), "precision",
                   aqs_precision_name(AQS_PREC_F32), "max_len", (json_int_t)job->recipe->max_len);
}

static json_t *chunk_inputs(const aqs_chunk_cache *c, size_t i) {
  json_t *inputs = json_pack("{s:o, s:s}", "source", aqs_stage_jdigest(&c->job->in[0]), "chunk",
                             c->set.chunk_digests[i]);
  if (c->amax) json_object_set_new(inputs, "amax", aqs_stage_jdigest(c->amax));
  return inputs;
}

static aqs_status chunk_lookup(aqs_chunk_cache *c, size_t i, aqs_stage_ctx *ctx, aqs_err *e) {
  json_t *inputs = chunk_inputs(c, i);
  aqs_status st = aqs_stage_lookup(c->job->store, c->stage, c->version, inputs, c->params, ctx, e);
  json_decref(inputs);
  return st;
}

static aqs_status chunk_cached(void *ctx, size_t i, void *part, int *found, aqs_err *e) {
  aqs_chunk_cache *c = ctx;
  if (c->have_ctx) aqs_stage_ctx_free(&c->ctx);
  c->have_ctx = 0;
  aqs_status st = chunk_lookup(c, i, &c->ctx, e);
  if (st) return aqs_err_prefix(e, "%s of chunk %.19s", c->stage, c->set.chunk_digests[i]);
  c->have_ctx = 1;
  *found = c->ctx.hit && (!c->job->rebuild || (c->by_worker && c->by_worker[i]));
  if (!*found) return AQS_OK;
  char *text = NULL;
  size_t len = 0;
  st = aqs_stage_get_text(c->job->store, &c->ctx.result, &text, &len, e);
  if (!st) st = c->parse(text, len, c->set.chunk_digests[i], part, e);
  free(text);
  return st ? aqs_err_prefix(e, "%s of chunk %.19s", c->stage, c->set.chunk_digests[i]) : AQS_OK;
}

static aqs_status chunk_batch(void *ctx, size_t i, aqs_token_batch *batch, const aqs_lm **lm_out, aqs_err *e) {
  aqs_chunk_cache *c = ctx;
  aqs_lm *lm = NULL;
  aqs_status st = aqs_calib_chunk_load(c->job->store, &c->set, (int32_t)i, &c->chunk, e);
  if (!st && c->chunk.n_images > 0) {
    /* image+text chunk: both towers (the amax table sets the vision tower's too) */
    aqs_vision *vis = NULL;
    *batch = (aqs_token_batch){.n_seqs = c->chunk.n_seqs, .seq_lens = c->chunk.seq_lens,
                               .token_ids = c->chunk.token_ids, .image_chunk = &c->chunk};
    st = aqs_stage_env_vision(c->job->env, c->amax, &vis, e);
    batch->vision = vis;
  } else if (!st) {
    st = aqs_token_batch_of_chunk(&c->chunk, batch, e);
  }
  if (!st) st = c->amax ? aqs_stage_env_lm_amax(c->job->env, c->amax, &lm, e) : aqs_stage_env_lm(c->job->env, &lm, e);
  *lm_out = lm;
  return st ? aqs_err_prefix(e, "%s of chunk %.19s", c->stage, c->set.chunk_digests[i]) : AQS_OK;
}

static void chunk_batch_done(void *ctx, size_t i) {
  (void)i;
  aqs_calib_chunk_free(&((aqs_chunk_cache *)ctx)->chunk);
}

static aqs_status chunk_computed(void *ctx, size_t i, const void *part, aqs_err *e) {
  aqs_chunk_cache *c = ctx;
  char *text = NULL;
  aqs_digest d;
  aqs_status st = c->to_json(part, &text, e);
  if (!st) st = aqs_stage_put_text(c->job->store, text, &d, e);
  if (!st) st = aqs_stage_record(c->job->store, &c->ctx, &d, e);
  free(text);
  return st ? aqs_err_prefix(e, "%s of chunk %.19s", c->stage, c->set.chunk_digests[i]) : AQS_OK;
}

static int chunk_not_mine(void *ctx, size_t i) {
  const aqs_chunk_cache *c = ctx;
  return !aqs_chunk_worker_owns(c->job->env->o->worker, i);
}

int aqs_chunk_cache_is_worker(const aqs_chunk_cache *c) { return c->job->env->o->worker != NULL; }

aqs_status aqs_chunk_cache_open(aqs_chunk_cache *c, const aqs_digest *calib_set, json_t *params, int32_t n,
                                aqs_batch_loop *loop, aqs_err *e) {
  c->params = params;
  memset(&c->set, 0, sizeof c->set);
  memset(&c->chunk, 0, sizeof c->chunk);
  c->have_ctx = 0;
  aqs_status st = aqs_calib_set_load(c->job->store, calib_set, &c->set, e);
  if (st) return st;
  if (n < 0 || n > c->set.n_chunks) n = c->set.n_chunks;
  *loop = (aqs_batch_loop){.n = (size_t)n, .unit = "chunk", .ctx = c, .cached = chunk_cached,
                           .batch = chunk_batch, .batch_done = chunk_batch_done, .computed = chunk_computed,
                           .skip = aqs_chunk_cache_is_worker(c) ? chunk_not_mine : NULL};
  return AQS_OK;
}

void aqs_chunk_cache_close(aqs_chunk_cache *c) {
  if (c->have_ctx) aqs_stage_ctx_free(&c->ctx);
  c->have_ctx = 0;
  json_decref(c->params);
  c->params = NULL;
  aqs_calib_chunk_free(&c->chunk);
  aqs_calib_set_free(&c->set);
  free(c->by_worker);
  c->by_worker = NULL;
}

/* Whether chunk i's action is recorded (looked up without claiming it: the workers will). */
static int chunk_recorded(aqs_chunk_cache *c, size_t i) {
  json_t *inputs = chunk_inputs(c, i);
  aqs_digest key;
  char *doc = NULL;
  aqs_err ignore = {0};
  int hit = aqs_action_key(c->stage, c->version, inputs, c->params, &key, &doc, &ignore) == AQS_OK &&
            aqs_action_recorded(c->job->store, &key);
  free(doc);
  json_decref(inputs);
  return hit;
}

aqs_status aqs_chunk_cache_spread(aqs_chunk_cache *c, const aqs_batch_loop *loop, const char *stage,
                                  const aqs_digest *stage_key, aqs_err *e) {
  const aqs_build_opts *o = c->job->env->o;
  if (!o->devices || o->devices->n < 2 || o->worker || !o->argv || !c->job->store || loop->n < 2) return AQS_OK;
  size_t *missing = calloc(loop->n, sizeof *missing), n_missing = 0;
  if (!missing) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < loop->n; i++)
    if (c->job->rebuild || !chunk_recorded(c, i)) missing[n_missing++] = i;
  aqs_status st = AQS_OK;
  if (n_missing >= 2) {
    size_t workers = (size_t)o->devices->n < n_missing ? (size_t)o->devices->n : n_missing;
    if (o->progress) fprintf(stderr, "%s: %zu chunks on %zu workers\n", stage, n_missing, workers);
    aqs_chunk_spread s = {.stage = stage, .key = stage_key, .missing = missing, .n_missing = n_missing,
                          .devices = o->devices, .argv = o->argv};
    st = aqs_chunk_spread_run(&s, e);
    c->by_worker = st ? NULL : calloc(loop->n, 1);
    for (size_t k = 0; c->by_worker && k < n_missing; k++) c->by_worker[missing[k]] = 1;
  }
  free(missing);
  return st;
}
