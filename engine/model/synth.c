/* engine/model/synth.c: aqs_synth_write, the synthetic checkpoint writer: config.json (5.x
 * layout), generation_config.json, preprocessor_config.json, tokenizer files and the weights,
 * each written by tmp + rename into the output directory. */
#include "engine/model/synth_internal.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

aqs_status aqs_synth_write_text(const char *dir, const char *name, const char *text, aqs_err *e) {
  char *path = NULL, *tmp = NULL;
  if (asprintf(&path, "%s/%s", dir, name) < 0) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0) {
    free(path);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  aqs_status st = AQS_OK;
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    st = aqs_errno(e, AQS_ERR_IO, errno, "%s: create", tmp);
  } else {
    size_t len = strlen(text);
    int bad = fwrite(text, 1, len, f) != len;
    bad |= fclose(f) != 0;
    if (bad) st = aqs_errno(e, AQS_ERR_IO, errno, "%s: write", tmp);
    else if (rename(tmp, path) != 0) st = aqs_errno(e, AQS_ERR_IO, errno, "rename %s -> %s", tmp, path);
    if (st) unlink(tmp);
  }
  free(tmp);
  free(path);
  return st;
}

static aqs_status write_json(const char *dir, const char *name, json_t *root, aqs_err *e) {
  if (!root) return aqs_errf(e, AQS_ERR_NOMEM, "%s/%s: out of memory", dir, name);
  char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
  json_decref(root);
  if (!text) return aqs_errf(e, AQS_ERR_NOMEM, "%s/%s: out of memory", dir, name);
  size_t n = strlen(text);
  char *with_nl = realloc(text, n + 2);
  if (!with_nl) {
    free(text);
    return aqs_errf(e, AQS_ERR_NOMEM, "%s/%s: out of memory", dir, name);
  }
  with_nl[n] = '\n';
  with_nl[n + 1] = 0;
  aqs_status st = aqs_synth_write_text(dir, name, with_nl, e);
  free(with_nl);
  return st;
}

/* Qwen2-VL image processor settings. max_pixels is capped for the small presets so calibration
 * images stay a few dozen vision tokens. */
static json_t *preprocessor_json(const char *preset, const aqs_qwen_config *c) {
  int64_t unit = (int64_t)c->vision.patch_size * c->vision.spatial_merge_size; /* 28 */
  int64_t min_pixels = 4 * unit * unit;                                          /* 3136 */
  int64_t max_pixels = strcmp(preset, "tiny") == 0    ? 64 * unit * unit
                       : strcmp(preset, "small") == 0 ? 256 * unit * unit
                                                      : 16384 * unit * unit; /* 12845056 */
  return json_pack("{s:I, s:I, s:i, s:i, s:i, s:[f,f,f], s:[f,f,f], s:s, s:s, s:b, s:b, s:f, "
                   "s:b, s:b, s:i, s:{s:I, s:I}}",
                   "min_pixels", (json_int_t)min_pixels, "max_pixels", (json_int_t)max_pixels,
                   "patch_size", c->vision.patch_size, "temporal_patch_size",
                   c->vision.temporal_patch_size, "merge_size", c->vision.spatial_merge_size,
                   "image_mean", 0.48145466, 0.4578275, 0.40821073, "image_std", 0.26862954,
                   0.26130258, 0.27577711, "image_processor_type", "Qwen2VLImageProcessor",
                   "processor_class", "Qwen2_5_VLProcessor", "do_resize", 1, "do_rescale", 1,
                   "rescale_factor", 1.0 / 255.0, "do_normalize", 1, "do_convert_rgb", 1,
                   "resample", 3, "size", "shortest_edge", (json_int_t)min_pixels, "longest_edge",
                   (json_int_t)max_pixels);
}

static json_t *generation_json(const aqs_qwen_config *c) {
  return json_pack("{s:i, s:[i,i], s:i, s:b}", "bos_token_id", c->bos_token_id, "eos_token_id",
                   c->eos_token_id, c->bos_token_id, "pad_token_id", c->bos_token_id, "do_sample", 0);
}

/* Removes weight files a previous run may have left (a different shard count would otherwise
 * leave stale shards beside the new ones). */
static aqs_status remove_old_weights(const char *dir, aqs_err *e) {
  DIR *d = opendir(dir);
  if (!d) return aqs_errno(e, AQS_ERR_IO, errno, "%s", dir);
  struct dirent *de;
  aqs_status st = AQS_OK;
  while ((de = readdir(d)) && !st) {
    size_t n = strlen(de->d_name);
    int weights = strncmp(de->d_name, "model", 5) == 0 &&
                  ((n > 12 && strcmp(de->d_name + n - 12, ".safetensors") == 0) ||
                   strcmp(de->d_name, "model.safetensors.index.json") == 0);
    if (!weights) continue;
    char *path = NULL;
    if (asprintf(&path, "%s/%s", dir, de->d_name) < 0) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
    else if (unlink(path) != 0) st = aqs_errno(e, AQS_ERR_IO, errno, "%s: unlink", path);
    free(path);
  }
  closedir(d);
  return st;
}

static aqs_status make_dir(const char *dir, aqs_err *e) {
  if (mkdir(dir, 0755) == 0 || errno == EEXIST) {
    struct stat sb;
    if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)) return AQS_OK;
    return aqs_errf(e, AQS_ERR_INVALID, "%s: exists and is not a directory", dir);
  }
  return aqs_errno(e, AQS_ERR_IO, errno, "%s: mkdir", dir);
}

aqs_status aqs_synth_write(const aqs_synth_opts *opts, aqs_err *e) {
  aqs_qwen_config cfg;
  aqs_status st = aqs_synth_preset(opts->preset, &cfg, e);
  if (st) return st;
  aqs_qwen_model *model = NULL;
  aqs_qwen_naming naming = opts->naming ? opts->naming : AQS_NAMING_HF5;
  st = aqs_qwen_model_from_config(&cfg, naming, &model, e);
  if (st) return st;
  for (int k = 0; k < opts->noutliers && !st; k++)
    if (!aqs_qwen_find_group(model, opts->outliers[k].group_id))
      st = aqs_errf(e, AQS_ERR_NOT_FOUND,
                    "outlier group \"%s\" does not exist in preset %s (ids look like lm.0.qkv, "
                    "lm.3.down, vis.1.proj, vis.merger.mlp.0)",
                    opts->outliers[k].group_id, opts->preset);
    else if (strcmp(aqs_qwen_find_group(model, opts->outliers[k].group_id)->kind, "merger.2") == 0 ||
             strcmp(aqs_qwen_find_group(model, opts->outliers[k].group_id)->kind, "patch_embed") == 0)
      st = aqs_errf(e, AQS_ERR_UNSUPPORTED,
                    "outlier group \"%s\": outliers can only be planted where an upstream norm or "
                    "producer compensates them (not in vis.patch_embed or vis.merger.mlp.2)",
                    opts->outliers[k].group_id);
  if (!st) st = make_dir(opts->out_dir, e);
  if (!st) {
    char *config = aqs_qwen_config_to_json(&cfg);
    st = config ? aqs_synth_write_text(opts->out_dir, "config.json", config, e)
                : aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
    free(config);
  }
  if (!st) st = write_json(opts->out_dir, "generation_config.json", generation_json(&cfg), e);
  if (!st)
    st = write_json(opts->out_dir, "preprocessor_config.json", preprocessor_json(opts->preset, &cfg), e);
  if (!st) st = aqs_synth_write_tokenizer(opts->out_dir, &cfg, e);
  if (!st) st = remove_old_weights(opts->out_dir, e);
  if (!st) st = aqs_synth_write_weights(opts, model, e);
  aqs_qwen_model_free(model);
  return st;
}
