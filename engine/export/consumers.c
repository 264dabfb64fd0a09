/* engine/export/consumers.c: export format names and the consumer verdict rules of
 * consumers.h, applied module by module (sources and versions: docs/vision.md). */
#include "engine/export/consumers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const format_names[] = {"modelopt_fp8", "modelopt_mixed", "compressed_tensors"};

aqs_status aqs_export_format_parse(const char *text, aqs_export_format *out, aqs_err *e) {
  if (strcmp(text, "modelopt") == 0 || strcmp(text, "modelopt_fp8") == 0) *out = AQS_EXPORT_MODELOPT;
  else if (strcmp(text, "modelopt_mixed") == 0) *out = AQS_EXPORT_MODELOPT_MIXED;
  else if (strcmp(text, "compressed_tensors") == 0) *out = AQS_EXPORT_COMPRESSED_TENSORS;
  else
    return aqs_errf(e, AQS_ERR_INVALID,
                    "unknown export format \"%s\" (expected modelopt, modelopt_mixed or "
                    "compressed_tensors)", text);
  return AQS_OK;
}

const char *aqs_export_format_name(aqs_export_format f) {
  return (unsigned)f < 3 ? format_names[f] : "?";
}

static const char *const consumer_names[AQS_CONSUMER_COUNT] = {
  "vllm-modelopt", "vllm-modelopt_mixed", "vllm-compressed-tensors", "transformers"};

const char *aqs_consumer_name(aqs_consumer c) {
  return (unsigned)c < AQS_CONSUMER_COUNT ? consumer_names[c] : "?";
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int is_patch_embed(const char *m) { return ends_with(m, "patch_embed.proj"); }
static int is_visual(const char *m) { return strstr(m, "visual") != NULL; }

/* The fused vLLM layer a module is a shard of: its name up to the shard suffix and the fused
 * kind, or 0 when it is not fused (vision attn.qkv is one tensor already). */
static int fused_unit(const char *m, size_t *prefix_len, int *kind) {
  static const char *const qkv[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"};
  static const char *const gu[] = {"mlp.gate_proj", "mlp.up_proj"};
  for (int i = 0; i < 3; i++)
    if (ends_with(m, qkv[i])) {
      *prefix_len = strlen(m) - strlen(qkv[i]);
      *kind = 1;
      return 1;
    }
  for (int i = 0; i < 2; i++)
    if (ends_with(m, gu[i])) {
      *prefix_len = strlen(m) - strlen(gu[i]);
      *kind = 2;
      return 1;
    }
  return 0;
}

/* First module whose fused siblings are stored in another format, or -1. */
static long mixed_fused(const aqs_verdict_module *mods, size_t n) {
  for (size_t i = 0; i < n; i++) {
    size_t pi;
    int ki;
    if (!fused_unit(mods[i].module, &pi, &ki)) continue;
    for (size_t j = i + 1; j < n; j++) {
      size_t pj;
      int kj;
      if (fused_unit(mods[j].module, &pj, &kj) && ki == kj && pi == pj &&
          strncmp(mods[i].module, mods[j].module, pi) == 0 && mods[i].fp8 != mods[j].fp8)
        return (long)i;
    }
  }
  return -1;
}

static void add_rule(aqs_consumer_verdict *v, const char *id) {
  if (strstr(v->rules, id)) return;
  size_t n = strlen(v->rules);
  snprintf(v->rules + n, sizeof v->rules - n, "%s%s", n ? "," : "", id);
}

static void fail(aqs_consumer_verdict *v, const char *rule, const char *fmt, const char *module) {
  if (v->loads) snprintf(v->reason, sizeof v->reason, fmt, module);
  v->loads = 0;
  add_rule(v, rule);
}

/* vLLM: the loader that reads the format decides per module. */
static void vllm_verdict(aqs_consumer_verdict *v, const aqs_verdict_module *mods, size_t n) {
  long bad = mixed_fused(mods, n);
  if (bad >= 0)
    fail(v, "vllm.fused_same_scheme",
         "%s is a shard of a fused vLLM layer whose shards are stored in different formats",
         mods[bad].module);
  for (size_t i = 0; i < n; i++) {
    const aqs_verdict_module *m = &mods[i];
    v->run_as[i] = AQS_RUN_BF16;
    if (!m->fp8) {
      add_rule(v, "vllm.excluded");
      continue;
    }
    if (is_patch_embed(m->module)) {
      fail(v, "vllm.patch_embed_plain",
           "%s is FP8 but vLLM builds Qwen2.5-VL's patch embedding without quantization: its "
           "scales have no parameter to load into", m->module);
      continue;
    }
    if (v->consumer == AQS_CONSUMER_VLLM_MODELOPT && is_visual(m->module)) {
      fail(v, "vllm.visual_unquantized",
           "%s is FP8 but vLLM's modelopt loader builds every layer named 'visual' unquantized: "
           "its scales have no parameter to load into (export as modelopt_mixed or "
           "compressed_tensors)", m->module);
      continue;
    }
    if (v->consumer == AQS_CONSUMER_VLLM_MODELOPT_MIXED) add_rule(v, "vllm.quantized_layers");
    v->run_as[i] = AQS_RUN_FP8;
  }
}

static void transformers_verdict(aqs_consumer_verdict *v, const aqs_verdict_module *mods, size_t n,
                                 aqs_export_format fmt) {
  if (fmt == AQS_EXPORT_COMPRESSED_TENSORS) {
    add_rule(v, "transformers.compressed_tensors_package");
    snprintf(v->reason, sizeof v->reason,
             "needs the compressed-tensors Python package (ImportError without it)");
  } else {
    add_rule(v, "transformers.unknown_modelopt");
    snprintf(v->reason, sizeof v->reason,
             "transformers has no modelopt quantizer: it warns and loads FP8 weights as BF16 "
             "values without their scales");
  }
  for (size_t i = 0; i < n; i++) {
    const aqs_verdict_module *m = &mods[i];
    if (!m->fp8) v->run_as[i] = AQS_RUN_BF16;
    else if (fmt != AQS_EXPORT_COMPRESSED_TENSORS) v->run_as[i] = AQS_RUN_WRONG;
    else if (is_patch_embed(m->module)) {
      v->run_as[i] = AQS_RUN_WRONG;
      add_rule(v, "transformers.conv_not_targeted");
    } else v->run_as[i] = AQS_RUN_FP8;
  }
}

aqs_status aqs_consumer_verdicts(const aqs_verdict_module *mods, size_t n, aqs_export_format fmt,
                                 aqs_consumer_verdict out[AQS_CONSUMER_COUNT], aqs_err *e) {
  memset(out, 0, AQS_CONSUMER_COUNT * sizeof *out);
  int any_fp8 = 0;
  for (size_t i = 0; i < n; i++) any_fp8 |= mods[i].fp8;
  const aqs_consumer reader = fmt == AQS_EXPORT_MODELOPT         ? AQS_CONSUMER_VLLM_MODELOPT
                              : fmt == AQS_EXPORT_MODELOPT_MIXED ? AQS_CONSUMER_VLLM_MODELOPT_MIXED
                                                                 : AQS_CONSUMER_VLLM_COMPRESSED_TENSORS;
  for (int c = 0; c < AQS_CONSUMER_COUNT; c++) {
    aqs_consumer_verdict *v = &out[c];
    v->consumer = (aqs_consumer)c;
    /* a plain BF16 checkpoint has no quantization metadata: every consumer reads it */
    v->reads_format = !any_fp8 || c == (int)reader || c == AQS_CONSUMER_TRANSFORMERS;
    if (!v->reads_format) {
      snprintf(v->reason, sizeof v->reason, "vLLM reads a %s export with its %s loader",
               aqs_export_format_name(fmt), aqs_consumer_name(reader) + 5);
      continue;
    }
    v->loads = 1;
    v->run_as = calloc(n ? n : 1, sizeof *v->run_as);
    if (!v->run_as) {
      aqs_consumer_verdicts_free(out);
      return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
    }
    if (!any_fp8) {
      snprintf(v->reason, sizeof v->reason, "no FP8 module: a plain BF16 checkpoint");
    } else if (c == AQS_CONSUMER_TRANSFORMERS) {
      transformers_verdict(v, mods, n, fmt);
    } else {
      vllm_verdict(v, mods, n);
    }
    for (size_t i = 0; i < n; i++) {
      v->n_fp8 += v->run_as[i] == AQS_RUN_FP8;
      v->n_bf16 += v->run_as[i] == AQS_RUN_BF16;
      v->n_wrong += v->run_as[i] == AQS_RUN_WRONG;
    }
  }
  return AQS_OK;
}

void aqs_consumer_verdicts_free(aqs_consumer_verdict v[AQS_CONSUMER_COUNT]) {
  for (int c = 0; c < AQS_CONSUMER_COUNT; c++) {
    free(v[c].run_as);
    v[c].run_as = NULL;
  }
}

json_t *aqs_consumer_verdicts_json(const aqs_verdict_module *mods, size_t n,
                                   const aqs_consumer_verdict v[AQS_CONSUMER_COUNT]) {
  json_t *all = json_object();
  for (int c = 0; all && c < AQS_CONSUMER_COUNT; c++) {
    json_t *rules = json_array();
    char ids[sizeof v[c].rules];
    memcpy(ids, v[c].rules, sizeof ids);
    char *save = NULL;
    for (char *id = strtok_r(ids, ",", &save); id; id = strtok_r(NULL, ",", &save))
      json_array_append_new(rules, json_string(id));
    json_t *o = json_pack("{s:b, s:b, s:s, s:o}", "reads_format", v[c].reads_format, "loads",
                          v[c].reads_format && v[c].loads, "reason", v[c].reason, "rules", rules);
    if (o && v[c].reads_format && v[c].run_as) {
      json_t *lists[3] = {json_array(), json_array(), json_array()};
      for (size_t i = 0; i < n; i++)
        json_array_append_new(lists[v[c].run_as[i]], json_string(mods[i].module));
      json_object_set_new(o, "bf16", lists[AQS_RUN_BF16]);
      json_object_set_new(o, "fp8", lists[AQS_RUN_FP8]);
      json_object_set_new(o, "fp8_codes_as_bf16", lists[AQS_RUN_WRONG]);
    }
    if (!o) {
      json_decref(all);
      return NULL;
    }
    json_object_set_new(all, aqs_consumer_name((aqs_consumer)c), o);
  }
  return all;
}
