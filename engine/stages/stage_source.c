/* engine/stages/stage_source.c: the source stage: a Hugging Face checkpoint directory, by content.
 * Key: the digest of every file of the directory (through the store's stat-cache, so an unchanged
 * multi-GB checkpoint is not re-read). Result: the model manifest
 *   {"kind":"aqs-model","version":1,"files":{name: digest},"config":<config.json digest>,
 *    "tensors":[[name, dtype, [shape], digest], ...] (name order), "children":[small files]}
 * The small files (config, tokenizer, processor settings) are stored; tensor bytes are not (the
 * export stores what it writes), only their digests, hashed in parallel.
 * AQS_SOURCE_TIMING=1 prints both hashing passes on stderr (bytes, seconds, GB/s; the files pass
 * also its largest file alone: one sequential SHA-256 stream, which no core count shortens). */
#include "engine/stages/stage.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <omp.h>

#include "engine/model/safetensors.h"
#include "engine/stages/build.h"
#include "engine/stages/stage_env.h"
#include "store/canon_json.h"

/* Files at most this large are stored with the manifest (configs, tokenizers). */
#define SMALL_FILE_MAX (64u * 1024u * 1024u)

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int timing(void) {
  const char *env = getenv("AQS_SOURCE_TIMING");
  return env && *env && strcmp(env, "0") != 0;
}

static double gbps(uint64_t bytes, double s) { return s > 0 ? (double)bytes / s / 1e9 : 0.0; }

static aqs_status source_inputs(aqs_store *s, const char *model_dir, json_t **inputs_out, aqs_err *e) {
  DIR *d = opendir(model_dir);
  if (!d)
    return aqs_errno(e, errno == ENOENT ? AQS_ERR_NOT_FOUND : AQS_ERR_IO, errno, "model directory %s", model_dir);
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", model_dir, de->d_name);
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      names = realloc(names, cap * sizeof *names);
    }
    names[n++] = strdup(de->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof *names, cmp_str);
  /* The files are hashed in parallel (a checkpoint's weights are a few multi-GiB shards, each one
   * sequential SHA-256 stream); errors are reported in name order. */
  aqs_digest *dg = calloc(n + 1, sizeof *dg);
  aqs_status *sts = calloc(n + 1, sizeof *sts);
  aqs_err *errs = calloc(n + 1, sizeof *errs);
  uint64_t *bytes = calloc(n + 1, sizeof *bytes);
  double *secs = calloc(n + 1, sizeof *secs), t0 = aqs_stage_now_s();
  aqs_status st = dg && sts && errs && bytes && secs ? AQS_OK : aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  if (!st) {
#pragma omp parallel for schedule(dynamic, 1)
    for (long i = 0; i < (long)n; i++) {
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", model_dir, names[i]);
      double t = aqs_stage_now_s();
      sts[i] = aqs_hash_file_cached(s, path, &dg[i], &bytes[i], &errs[i]);
      secs[i] = aqs_stage_now_s() - t;
    }
  }
  if (!st && timing()) {
    uint64_t total = 0;
    size_t big = 0;
    for (size_t i = 0; i < n; i++) {
      total += bytes[i];
      if (bytes[i] > bytes[big]) big = i;
    }
    double wall = aqs_stage_now_s() - t0;
    fprintf(stderr, "source: files %zu, %llu bytes in %.2fs = %.2f GB/s on %d threads; largest %s %llu bytes in %.2fs = %.2f GB/s\n",
            n, (unsigned long long)total, wall, gbps(total, wall), omp_get_max_threads(), n ? names[big] : "-",
            (unsigned long long)(n ? bytes[big] : 0), n ? secs[big] : 0.0, n ? gbps(bytes[big], secs[big]) : 0.0);
  }
  free(bytes);
  free(secs);
  json_t *inputs = json_object();
  int has_config = 0;
  for (size_t i = 0; i < n; i++) {
    char key[600], hex[AQS_DIGEST_STR_SIZE];
    if (!st && sts[i]) {
      st = sts[i];
      if (e) *e = errs[i];
    }
    if (!st) {
      snprintf(key, sizeof key, "file:%s", names[i]);
      json_object_set_new(inputs, key, json_string(aqs_digest_str(&dg[i], hex)));
    }
    has_config |= strcmp(names[i], "config.json") == 0;
    free(names[i]);
  }
  free(names);
  free(dg);
  free(sts);
  free(errs);
  if (!st && !has_config) st = aqs_errf(e, AQS_ERR_NOT_FOUND, "%s/config.json: no such file (not a checkpoint directory?)", model_dir);
  if (st) {
    json_decref(inputs);
    return st;
  }
  *inputs_out = inputs;
  return AQS_OK;
}

/* Per-tensor digests of an open checkpoint, in parallel (tensors are independent). */
static void hash_tensors(const aqs_ckpt *c, aqs_digest *out) {
  long n = (long)c->ntensors;
  double t0 = aqs_stage_now_s();
  uint64_t total = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : total)
  for (long i = 0; i < n; i++) {
    aqs_sha256_buf(c->tensors[i]->data, c->tensors[i]->nbytes, &out[i]);
    total += c->tensors[i]->nbytes;
  }
  double wall = aqs_stage_now_s() - t0;
  if (timing())
    fprintf(stderr, "source: tensors %ld, %llu bytes in %.2fs = %.2f GB/s on %d threads (%.2f GB/s per thread)\n", n,
            (unsigned long long)total, wall, gbps(total, wall), omp_get_max_threads(),
            gbps(total, wall) / omp_get_max_threads());
}

static aqs_status build_manifest(aqs_store *s, const char *model_dir, const json_t *inputs, aqs_digest *out,
                                 aqs_err *e) {
  aqs_ckpt *c;
  aqs_status st = aqs_ckpt_open(model_dir, &c, e);
  if (st) return st;
  aqs_digest *digests = malloc((c->ntensors + 1) * sizeof *digests);
  if (!digests) {
    aqs_ckpt_close(c);
    return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", model_dir);
  }
  hash_tensors(c, digests);
  json_t *tensors = json_array();
  char hex[AQS_DIGEST_STR_SIZE];
  for (size_t i = 0; i < c->ntensors; i++) {
    const aqs_st_tensor *t = c->tensors[i];
    json_t *shape = json_array();
    for (int k = 0; k < t->ndim; k++) json_array_append_new(shape, json_integer(t->shape[k]));
    json_array_append_new(tensors, json_pack("[s s o s]", t->name, aqs_dtype_name(t->dtype), shape,
                                             aqs_digest_str(&digests[i], hex)));
  }
  free(digests);
  aqs_ckpt_close(c);
  /* Store the small files (configs, tokenizer) so exports can be rebuilt from the store alone. */
  json_t *files = json_object(), *children = json_array();
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)inputs, key, v) {
    const char *name = key + 5; /* "file:" */
    json_object_set(files, name, v);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", model_dir, name);
    struct stat sb;
    size_t len = strlen(name);
    int is_weights = len > 12 && strcmp(name + len - 12, ".safetensors") == 0;
    if (is_weights || stat(path, &sb) != 0 || (uint64_t)sb.st_size > SMALL_FILE_MAX) continue;
    aqs_put_opts opts = {.compress = AQS_COMPRESS_ZSTD};
    aqs_put_info info;
    if ((st = aqs_put_file(s, path, &opts, &info, e))) break;
    json_array_append_new(children, json_string(aqs_digest_str(&info.digest, hex)));
  }
  if (st) {
    json_decref(files);
    json_decref(children);
    json_decref(tensors);
    return st;
  }
  json_t *doc = json_pack("{s:s, s:i, s:o, s:O, s:o, s:o}", "kind", "aqs-model", "version", 1, "files", files,
                          "config", json_object_get(inputs, "file:config.json"), "tensors", tensors, "children",
                          children);
  st = aqs_put_json(s, doc, 1, out, e);
  json_decref(doc);
  return st;
}

/* job->state: the inputs object (file digests), kept for run(). */
static aqs_status source_key(aqs_stage_job *job, json_t **inputs, json_t **params, aqs_err *e) {
  *params = NULL;
  aqs_status st = source_inputs(job->store, job->env->o->model_dir, inputs, e);
  if (!st) job->state = json_incref(*inputs);
  return st;
}

static aqs_status source_run(aqs_stage_job *job, aqs_stage_ctx *ctx, aqs_digest *result, aqs_err *e) {
  (void)ctx;
  return build_manifest(job->store, job->env->o->model_dir, job->state, result, e);
}

static void source_release(aqs_stage_job *job) {
  json_decref(job->state);
  job->state = NULL;
}

const aqs_stage_def aqs_stage_source = {
    .name = "source",
    .version = "1",
    .inputs = {NULL},
    .recipe_keys = "",
    .key = source_key,
    .run = source_run,
    .release = source_release,
};
