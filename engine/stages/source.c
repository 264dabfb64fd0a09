/* engine/stages/source.c: the source stage (see source.h). */
#include "engine/stages/source.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/model/safetensors.h"
#include "engine/stages/stage.h"
#include "store/canon_json.h"

#define SOURCE_STAGE "source"
#define SOURCE_VERSION "1"

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

aqs_status aqs_source_inputs(aqs_store *s, const char *model_dir, json_t **inputs_out, aqs_err *e) {
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
  json_t *inputs = json_object();
  aqs_status st = AQS_OK;
  int has_config = 0;
  for (size_t i = 0; i < n; i++) {
    char path[4096], key[600], hex[AQS_DIGEST_STR_SIZE];
    snprintf(path, sizeof path, "%s/%s", model_dir, names[i]);
    aqs_digest dg;
    if (!st) st = aqs_hash_file_cached(s, path, &dg, NULL, e);
    if (!st) {
      snprintf(key, sizeof key, "file:%s", names[i]);
      json_object_set_new(inputs, key, json_string(aqs_digest_str(&dg, hex)));
    }
    has_config |= strcmp(names[i], "config.json") == 0;
    free(names[i]);
  }
  free(names);
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
#pragma omp parallel for schedule(dynamic, 1)
  for (long i = 0; i < n; i++) aqs_sha256_buf(c->tensors[i]->data, c->tensors[i]->nbytes, &out[i]);
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
    if (is_weights || stat(path, &sb) != 0 || (uint64_t)sb.st_size > AQS_SOURCE_SMALL_FILE_MAX) continue;
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

aqs_status aqs_stage_source(aqs_store *s, const char *model_dir, int dry_run, aqs_stage_outcome *out,
                            aqs_err *e) {
  memset(out, 0, sizeof *out);
  double t0 = aqs_stage_now_s();
  json_t *inputs;
  aqs_status st = aqs_source_inputs(s, model_dir, &inputs, e);
  if (st) return st;
  aqs_stage_ctx ctx;
  st = aqs_stage_lookup(s, SOURCE_STAGE, SOURCE_VERSION, inputs, NULL, &ctx, e);
  if (!st) {
    out->key = ctx.key;
    out->hit = ctx.hit;
    if (ctx.hit) {
      out->result = ctx.result;
    } else if (dry_run) {
      st = aqs_stage_miss_reason(s, SOURCE_STAGE, ctx.key_doc, out->reason, sizeof out->reason, e);
    } else {
      aqs_digest result;
      st = build_manifest(s, model_dir, inputs, &result, e);
      if (!st) st = aqs_stage_record(s, &ctx, &result, e);
      if (!st) out->result = result;
    }
  }
  aqs_stage_ctx_free(&ctx);
  json_decref(inputs);
  out->seconds = aqs_stage_now_s() - t0;
  return st;
}
