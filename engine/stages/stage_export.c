/* engine/stages/stage_export.c: the export stage: the FP8 checkpoint of (source, amax, plan) as a
 * checkpoint tree in the store (ckpt_store.h): shards go into the store straight from the
 * exporter's memory, other files through a staging directory the store makes (and removes).
 * An export file hook (aqs_build_opts.export_hook, for tests) makes the exporter write files,
 * shows each one to the hook before it is stored, and keeps the result out of the action cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/path.h"
#include "engine/export/export.h"
#include "engine/export/fp8_cache.h"
#include "engine/stages/build.h"
#include "engine/stages/ckpt_store.h"
#include "engine/stages/recipe.h"
#include "engine/stages/stage.h"
#include "engine/stages/stage_env.h"

#define VERSION "1"

static int hooked(const aqs_stage_job *job) {
  const aqs_build_opts *o = job->env->o;
  return o->export_hook && o->export_hook_recipe && strcmp(o->export_hook_recipe, job->recipe->name) == 0;
}

static aqs_status export_key(aqs_stage_job *job, json_t **inputs, json_t **params, aqs_err *e) {
  (void)e;
  *inputs = json_pack("{s:o, s:o, s:o}", "source", aqs_stage_jdigest(&job->in[0]), "amax",
                      aqs_stage_jdigest(&job->in[1]), "plan", aqs_stage_jdigest(&job->in[2]));
  *params = json_pack("{s:s, s:s}", "format", job->recipe->export_format, "layout", "block");
  if (job->recipe->kv_cache_fp8) json_object_set_new(*params, "kv_cache", json_string("fp8"));
  if (hooked(job)) job->rebuild = job->no_record = 1;
  return AQS_OK;
}

/* Source tensor digests from the source stage's manifest ("tensors" in name order), so the
 * exporter need not hash tensors it copies unchanged. */
static int source_digest_of(void *ctx, const char *name, aqs_digest *out) {
  const json_t *tensors = ctx;
  size_t lo = 0, hi = json_array_size(tensors);
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    const json_t *t = json_array_get(tensors, mid);
    int c = strcmp(json_string_value(json_array_get(t, 0)), name);
    if (c == 0) return aqs_digest_parse(json_string_value(json_array_get(t, 3)), out, NULL) == AQS_OK;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return 0;
}

typedef struct export_sink {
  aqs_ckpt_builder *builder;
  const aqs_build_opts *hook; /* options holding the file hook, or NULL */
} export_sink;

/* Shards go straight into the store from the exporter's memory: no shard file is written. */
static aqs_status sink_shard(void *ctx, const aqs_export_shard *shard, aqs_digest *file_digest, aqs_err *e) {
  export_sink *sink = ctx;
  aqs_ckpt_mem_tensor *t = calloc(shard->ntensors + 1, sizeof *t);
  if (!t) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < shard->ntensors; i++)
    t[i] = (aqs_ckpt_mem_tensor){shard->tensors[i].name, shard->tensors[i].digest, shard->tensors[i].data,
                                 shard->tensors[i].nbytes};
  aqs_status st = aqs_ckpt_builder_add_shard_mem(sink->builder, shard->name, shard->header, shard->header_bytes, t,
                                                 shard->ntensors, file_digest, e);
  free(t);
  return st;
}

static aqs_status sink_file(void *ctx, const char *path, const aqs_export_file *file, aqs_err *e) {
  export_sink *sink = ctx;
  aqs_status st = AQS_OK;
  if (sink->hook) st = sink->hook->export_hook(sink->hook->export_hook_ctx, file->name, path, e);
  if (!st) st = aqs_ckpt_builder_add(sink->builder, path, file->name, e);
  unlink(path);
  return st;
}

static aqs_status export_run(aqs_stage_job *job, aqs_stage_ctx *ctx, aqs_digest *result, aqs_err *e) {
  (void)ctx;
  const aqs_build_opts *o = job->env->o;
  const aqs_digest *source = &job->in[0], *amax = &job->in[1];
  aqs_plan *plan = NULL;
  aqs_amax_table t = {0};
  char staging[AQS_PATH_MAX], outdir[AQS_PATH_MAX + 8], amax_str[AQS_DIGEST_STR_SIZE],
      source_str[AQS_DIGEST_STR_SIZE];
  aqs_status st = aqs_build_load_plan(job->store, &job->in[2], &plan, e);
  if (!st) st = aqs_build_load_amax(job->store, amax, &t, e);
  if (!st) st = aqs_store_mkdtemp(job->store, "export", staging, sizeof staging, e);
  if (!st) {
    snprintf(outdir, sizeof outdir, "%s/ckpt", staging);
    /* Each file goes into the store as soon as the exporter finishes it and is then removed,
     * so staging never holds more than the shards in flight. */
    export_sink sink = {.hook = hooked(job) ? o : NULL};
    json_t *source_doc = NULL;
    st = aqs_ckpt_load_manifest(job->store, source, "aqs-model", &source_doc, e);
    if (!st) st = aqs_ckpt_builder_new(job->store, &sink.builder, e);
    aqs_fp8_cache *fp8 = NULL;
    if (!st) st = aqs_stage_env_fp8(job->env, &fp8, e);
    aqs_export_format format = AQS_EXPORT_MODELOPT;
    if (!st) st = aqs_export_format_parse(job->recipe->export_format, &format, e);
    aqs_export_opts eo = {.model_dir = o->model_dir, .format = format, .amax = &t, .plan = plan, .out_dir = outdir,
                          .source_digest = aqs_digest_str(source, source_str), .amax_digest = aqs_digest_str(amax, amax_str),
                          .kv_cache_fp8 = job->recipe->kv_cache_fp8, .progress = o->progress && !job->pooled, .on_file = sink_file, .on_file_ctx = &sink,
                          .source_tensor_digest = source_digest_of,
                          .source_tensor_digest_ctx = json_object_get(source_doc, "tensors"),
                          .shard_sink = sink.hook ? NULL : sink_shard, .shard_sink_ctx = &sink,
                          .fp8_cache = fp8};
    aqs_export_result res;
    if (!st) st = aqs_export_run(&eo, &res, e);
    if (!st && getenv("AQS_EXPORT_TIMING"))
      snprintf(job->diag, sizeof job->diag, "export %s: quantize %.2fs hash %.2fs sink %.2fs total %.2fs; FP8 params %llu, %llu reused",
              job->recipe->name, res.seconds_quantize, res.seconds_hash, res.seconds_write, res.seconds_total,
              (unsigned long long)res.quantized_params, (unsigned long long)res.reused_params);
    if (!st) aqs_export_result_free(&res);
    if (!st) {
      st = aqs_ckpt_builder_finish(sink.builder, result, NULL, e);
      sink.builder = NULL;
    }
    aqs_ckpt_builder_free(sink.builder);
    json_decref(source_doc);
    aqs_rm_flat_dir(outdir);
    rmdir(staging);
  }
  aqs_amax_free(&t);
  aqs_plan_free(plan);
  return st;
}

const aqs_stage_def aqs_stage_export = {
    .name = "export",
    .version = VERSION,
    .inputs = {"source", "calibrate", "slice", NULL},
    .recipe_keys = "export.format export.kv_cache",
    .key = export_key,
    .run = export_run,
    .concurrent = 1,
};
