/* engine/export/export_meta.c: the exporter's JSON side: config.json with ModelOpt's
 * quantization_config, hf_quant_config.json, the exclude_modules list, the copied tokenizer /
 * processor files and aqs-manifest.json (field meanings in docs/checkpoint-format.md). */
#include "engine/export/export_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"

/* Files copied byte for byte from the source directory when present (the model card too: a
 * quantized checkpoint keeps its license and description). */
static const char *const aux_files[] = {
  "generation_config.json", "preprocessor_config.json", "video_preprocessor_config.json",
  "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
  "vocab.json", "merges.txt", "chat_template.json", "chat_template.jinja", "README.md", NULL};

static int str_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

json_t *export_exclude_modules(const export_ctx *x) {
  const aqs_qwen_model *m = x->model;
  size_t cap = 1 + m->ngroups * AQS_QWEN_GROUP_MAX_MEMBERS, n = 0;
  const char **names = malloc(cap * sizeof *names);
  json_t *arr = json_array();
  if (!names) return arr;
  names[n++] = "lm_head"; /* the LM head stays BF16 (default disabled pattern), tied or not */
  for (size_t g = 0; g < m->ngroups; g++)
    if (x->groups[g].format != AQS_FMT_FP8)
      for (int k = 0; k < m->groups[g].nmembers; k++) names[n++] = m->groups[g].members[k].module;
  qsort(names, n, sizeof *names, str_cmp);
  for (size_t i = 0; i < n; i++) json_array_append_new(arr, json_string(names[i]));
  free(names);
  return arr;
}

static json_t *producer_json(void) {
  return json_pack("{s:s, s:s}", "name", "modelopt", "version", AQS_EXPORT_MODELOPT_VERSION);
}

static char *dump(json_t *j, size_t flags) {
  char *text = json_dumps(j, flags | JSON_REAL_PRECISION(17));
  if (!text) return NULL;
  size_t len = strlen(text);
  char *with_nl = realloc(text, len + 2);
  if (!with_nl) {
    free(text);
    return NULL;
  }
  with_nl[len] = '\n';
  with_nl[len + 1] = '\0';
  return with_nl;
}

static aqs_status write_json(export_ctx *x, const char *name, json_t *j, size_t flags,
                             aqs_err *e) {
  char *text = dump(j, flags);
  if (!text) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory writing %s", name);
  aqs_status st = export_write_text(x, name, text, AQS_EXPORT_META, e);
  free(text);
  return st;
}


static void note_source_file(export_ctx *x, const char *name, const char *path) {
  if (x->o->source_digest) return;
  aqs_digest d;
  char hex[AQS_DIGEST_STR_SIZE];
  if (aqs_sha256_file(path, &d, NULL, NULL) == AQS_OK)
    json_object_set_new(x->source_files_json, name, json_string(aqs_digest_str(&d, hex)));
}

/* {module: {"quant_algo": "FP8"}} of every FP8 module (ModelOpt MIXED_PRECISION). */
static json_t *quantized_layers_json(const export_ctx *x) {
  json_t *q = json_object();
  for (size_t g = 0; g < x->model->ngroups; g++)
    if (x->groups[g].format == AQS_FMT_FP8)
      for (int k = 0; k < x->model->groups[g].nmembers; k++)
        json_object_set_new(q, x->model->groups[g].members[k].module,
                            json_pack("{s:s}", "quant_algo", "FP8"));
  return q;
}

/* ModelOpt forms: quant_algo FP8 (exclude list) or MIXED_PRECISION (plus quantized_layers). */
static aqs_status modelopt_configs(export_ctx *x, json_t *config, aqs_err *e) {
  const int mixed = x->o->format == AQS_EXPORT_MODELOPT_MIXED;
  const char *algo = mixed ? "MIXED_PRECISION" : "FP8";
  json_t *exclude = export_exclude_modules(x);
  json_t *fp8 = json_pack("{s:b, s:i, s:s}", "dynamic", 0, "num_bits", 8, "type", "float");
  json_t *group0 = json_pack("{s:O, s:O, s:[s]}", "input_activations", fp8, "weights", fp8,
                             "targets", "Linear");
  json_t *qc = json_pack("{s:{s:o}, s:O, s:s, s:o, s:s}", "config_groups", "group_0", group0,
                         "ignore", exclude, "quant_algo", algo, "producer", producer_json(),
                         "quant_method", "modelopt");
  if (x->o->kv_cache_fp8) json_object_set_new(qc, "kv_cache_quant_algo", json_string("FP8"));
  json_t *hf = json_pack("{s:o, s:{s:s, s:o, s:O}}", "producer", producer_json(), "quantization",
                         "quant_algo", algo, "kv_cache_quant_algo",
                         x->o->kv_cache_fp8 ? json_string("FP8") : json_null(),
                         "exclude_modules", exclude);
  if (mixed) {
    json_t *layers = quantized_layers_json(x);
    json_object_set(qc, "quantized_layers", layers);
    json_object_set_new(json_object_get(hf, "quantization"), "quantized_layers", layers);
  }
  json_object_set_new(config, "quantization_config", qc);
  aqs_status st = write_json(x, "hf_quant_config.json", hf, JSON_INDENT(4), e);
  json_decref(hf);
  json_decref(fp8);
  json_decref(exclude);
  return st;
}

/* compressed-tensors "float-quantized": one group of static per-tensor FP8 Linear weights and
 * inputs; the BF16 linears in "ignore". */
static void compressed_tensors_config(export_ctx *x, json_t *config) {
  json_t *args = json_pack("{s:i, s:s, s:s, s:b, s:b}", "num_bits", 8, "type", "float", "strategy",
                           "tensor", "symmetric", 1, "dynamic", 0);
  json_t *group0 = json_pack("{s:[s], s:O, s:O, s:n, s:s}", "targets", "Linear", "weights", args,
                             "input_activations", args, "output_activations", "format",
                             "float-quantized");
  json_t *qc = json_pack("{s:s, s:s, s:s, s:{s:o}, s:o, s:o}", "quant_method",
                         "compressed-tensors", "format", "float-quantized", "quantization_status",
                         "compressed", "config_groups", "group_0", group0, "ignore",
                         export_exclude_modules(x), "kv_cache_scheme",
                         x->o->kv_cache_fp8 ? json_deep_copy(args) : json_null());
  json_object_set_new(config, "quantization_config", qc);
  json_decref(args);
}

aqs_status export_write_configs(export_ctx *x, aqs_err *e) {
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", x->o->model_dir);
  char *text;
  size_t len;
  aqs_status st = aqs_file_read(path, NULL, &text, &len, e);
  if (st) return st;
  note_source_file(x, "config.json", path);
  json_error_t jerr;
  json_t *config = json_loadb(text, len, 0, &jerr);
  free(text);
  if (!json_is_object(config)) {
    json_decref(config);
    return aqs_errf(e, AQS_ERR_INVALID, "%s: line %d: not a JSON object: %s", path, jerr.line, jerr.text);
  }
  json_object_del(config, "quantization_config");
  if (x->res->n_fp8 > 0 || x->o->kv_cache_fp8) {
    if (x->o->format == AQS_EXPORT_COMPRESSED_TENSORS) compressed_tensors_config(x, config);
    else st = modelopt_configs(x, config, e);
  }
  if (!st) st = write_json(x, "config.json", config, JSON_INDENT(2), e);
  json_decref(config);
  return st;
}

/* The consumer verdicts of this export (consumers.h) over every group member. */
static json_t *consumers_json(const export_ctx *x) {
  size_t n = 0;
  for (size_t g = 0; g < x->model->ngroups; g++) n += (size_t)x->model->groups[g].nmembers;
  aqs_verdict_module *mods = calloc(n ? n : 1, sizeof *mods);
  if (!mods) return NULL;
  n = 0;
  for (size_t g = 0; g < x->model->ngroups; g++)
    for (int k = 0; k < x->model->groups[g].nmembers; k++)
      mods[n++] = (aqs_verdict_module){x->model->groups[g].members[k].module,
                                       x->groups[g].format == AQS_FMT_FP8};
  aqs_consumer_verdict v[AQS_CONSUMER_COUNT];
  aqs_err e;
  json_t *j = NULL;
  if (aqs_consumer_verdicts(mods, n, x->o->format, v, &e) == AQS_OK) {
    j = aqs_consumer_verdicts_json(mods, n, v);
    aqs_consumer_verdicts_free(v);
  }
  free(mods);
  return j;
}

aqs_status export_copy_aux_files(export_ctx *x, aqs_err *e) {
  for (int i = 0; aux_files[i]; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", x->o->model_dir, aux_files[i]);
    char *bytes;
    size_t len;
    aqs_status st = aqs_file_read(path, NULL, &bytes, &len, e);
    if (st == AQS_ERR_NOT_FOUND) {
      aqs_err_clear(e);
      continue;
    }
    if (st) return st;
    note_source_file(x, aux_files[i], path);
    char out[4096], tmp[4200];
    snprintf(out, sizeof out, "%s/%s", x->o->out_dir, aux_files[i]);
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(bytes, 1, len, f) == len;
    if (f) ok = (fclose(f) == 0) && ok;
    free(bytes);
    if (!ok || rename(tmp, out) != 0) {
      int err = errno;
      remove(tmp);
      return aqs_errno(e, AQS_ERR_IO, err, "cannot copy %s to %s", path, out);
    }
    if ((st = export_add_file(x, aux_files[i], AQS_EXPORT_COPIED, NULL, 0, e))) return st;
  }
  return AQS_OK;
}

static json_t *groups_json(const export_ctx *x) {
  json_t *arr = json_array();
  for (size_t g = 0; g < x->model->ngroups; g++) {
    const export_group_state *gs = &x->groups[g];
    const aqs_plan_entry *pe = aqs_plan_find(x->o->plan, gs->group->id);
    json_t *members = json_array();
    for (int k = 0; k < gs->group->nmembers; k++) {
      json_t *mj = json_pack("{s:s}", "module", gs->group->members[k].module);
      if (gs->format == AQS_FMT_FP8) {
        json_object_set_new(mj, "weight_amax", json_real(gs->weight_amax[k]));
        json_object_set_new(mj, "weight_scale", json_real(gs->weight_scale[k]));
      }
      json_array_append_new(members, mj);
    }
    json_t *gj = json_pack("{s:s, s:s, s:b, s:I, s:o}", "id", gs->group->id, "format",
                           aqs_format_name(gs->format), "candidate", gs->in_scope,
                           "weight_params", (json_int_t)gs->group->weight_params, "members", members);
    if (pe && pe->has_score) json_object_set_new(gj, "score", json_real(pe->score));
    if (gs->format == AQS_FMT_FP8) {
      json_object_set_new(gj, "input_amax", json_real(gs->input_amax));
      json_object_set_new(gj, "input_scale", json_real(gs->input_scale));
    }
    json_array_append_new(arr, gj);
  }
  return arr;
}

static aqs_status inputs_json(export_ctx *x, json_t **out, aqs_err *e) {
  char hex[AQS_DIGEST_STR_SIZE];
  aqs_digest d;
  json_t *inputs = json_object();
  if (x->o->source_digest) {
    json_object_set_new(inputs, "source", json_string(x->o->source_digest));
  } else {
    for (size_t i = 0; i < x->ckpt->nfiles; i++) {
      const char *p = x->ckpt->files[i]->path, *base = strrchr(p, '/');
      note_source_file(x, base ? base + 1 : p, p);
    }
    if (x->ckpt->index_path) note_source_file(x, "model.safetensors.index.json", x->ckpt->index_path);
    json_object_set(inputs, "source", x->source_files_json);
  }
  if (x->o->amax_digest) {
    json_object_set_new(inputs, "amax", json_string(x->o->amax_digest));
  } else if (x->o->amax) {
    char *amax_text = NULL;
    aqs_status st = aqs_amax_to_json(x->o->amax, &amax_text, e);
    if (st) {
      json_decref(inputs);
      return st;
    }
    aqs_sha256_buf(amax_text, strlen(amax_text), &d);
    free(amax_text);
    json_object_set_new(inputs, "amax", json_string(aqs_digest_str(&d, hex)));
  }
  char *plan_text = aqs_plan_to_json(x->o->plan);
  if (!plan_text) {
    json_decref(inputs);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  aqs_sha256_buf(plan_text, strlen(plan_text), &d);
  free(plan_text);
  json_object_set_new(inputs, "plan", json_string(aqs_digest_str(&d, hex)));
  *out = inputs;
  return AQS_OK;
}

aqs_status export_write_manifest(export_ctx *x, aqs_err *e) {
  const aqs_export_result *r = x->res;
  json_t *inputs = NULL;
  aqs_status st = inputs_json(x, &inputs, e);
  if (st) return st;
  char *plan_text = aqs_plan_to_json(x->o->plan);
  json_t *plan = plan_text ? json_loads(plan_text, 0, NULL) : NULL;
  free(plan_text);
  json_t *files = json_object();
  char hex[AQS_DIGEST_STR_SIZE];
  for (size_t i = 0; i < r->nfiles; i++)
    json_object_set_new(files, r->files[i].name,
                        json_pack("{s:s, s:I}", "sha256", aqs_digest_str(&r->files[i].digest, hex),
                                  "bytes", (json_int_t)r->files[i].bytes));
  json_t *m = json_pack(
      "{s:s, s:s, s:{s:s, s:s, s:s}, s:s, s:f, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:O, s:o}",
      "format", "aqs-export-1", "export_format", aqs_export_format_name(x->o->format), "fp8", "encoding",
      "float8_e4m3fn", "reference",
      x->o->fp8_ref == AQS_FP8_REF_TORCH_CPU ? "torch-cpu" : "torch-cuda", "scale",
      "per-tensor amax/448; input_scale shared by a group's members", "scope", r->scope,
      "effective_bits", r->effective_bits, "n_groups", (json_int_t)r->n_groups, "n_candidates",
      (json_int_t)r->n_candidates, "n_fp8", (json_int_t)r->n_fp8, "plan", plan ? plan : json_null(),
      "inputs", inputs, "groups", groups_json(x), "exclude_modules", export_exclude_modules(x),
      "tensors", x->tensors_json, "files", files);
  if (!m) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory building %s", AQS_EXPORT_MANIFEST);
  if (x->o->kv_cache_fp8) json_object_set_new(m, "kv_cache", json_string("fp8"));
  json_t *consumers = consumers_json(x);
  if (!consumers) {
    json_decref(m);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory building the consumer verdicts");
  }
  json_object_set_new(m, "consumers", consumers);
  st = write_json(x, AQS_EXPORT_MANIFEST, m, JSON_INDENT(1) | JSON_SORT_KEYS, e);
  json_decref(m);
  return st;
}
