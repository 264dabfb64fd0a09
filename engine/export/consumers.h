/* engine/export/consumers.h: the export metadata formats and, for each export, the consumer
 * verdict: what vLLM's modelopt, modelopt_mixed and compressed-tensors loaders and transformers
 * would do with it (which linear modules run FP8, which BF16, which load their FP8 codes as if
 * they were BF16 weights, and whether loading fails). The rules are derived from those loaders'
 * source; docs/vision.md cites file and version for each rule id below.
 *
 * Rules (ids appear in the verdict's "rules" list when they decide something):
 *   vllm.visual_unquantized   vLLM modelopt (FP8) loader: every layer whose name contains
 *                             "visual" is built unquantized; an FP8 vision module's scales have
 *                             nothing to load into: loading fails.
 *   vllm.patch_embed_plain    every vLLM loader: Qwen2.5-VL's patch_embed.proj is built without a
 *                             quantization config: an FP8 patch embedding fails to load.
 *   vllm.excluded             modelopt / modelopt_mixed exclude_modules, compressed-tensors
 *                             ignore: listed modules run BF16.
 *   vllm.quantized_layers     modelopt_mixed: a module runs FP8 exactly when quantized_layers
 *                             lists it with quant_algo FP8 (vision included).
 *   vllm.fused_same_scheme    q/k/v and gate/up are fused in vLLM: shards of one fused layer with
 *                             different formats fail to load.
 *   transformers.unknown_modelopt  transformers has no "modelopt" quantizer: it warns, skips
 *                             quantization and loads FP8 weights as BF16 values without their
 *                             scales (the model loads, those modules compute wrong outputs).
 *   transformers.compressed_tensors_package  the compressed-tensors quantizer needs the
 *                             compressed-tensors Python package (ImportError without it).
 *   transformers.conv_not_targeted  compressed-tensors targets Linear modules; Qwen2.5-VL's
 *                             patch_embed.proj is a Conv3d: an FP8 patch embedding is loaded as
 *                             BF16 codes.
 * Threads: pure functions. */
#ifndef AQS_EXPORT_CONSUMERS_H
#define AQS_EXPORT_CONSUMERS_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"

typedef enum aqs_export_format {
  AQS_EXPORT_MODELOPT = 0,       /* "modelopt" (recipe spelling also "modelopt_fp8"): quant_algo FP8 */
  AQS_EXPORT_MODELOPT_MIXED = 1, /* "modelopt_mixed": quant_algo MIXED_PRECISION + quantized_layers */
  AQS_EXPORT_COMPRESSED_TENSORS = 2 /* "compressed_tensors": float-quantized, per-tensor static */
} aqs_export_format;

/* "modelopt" | "modelopt_fp8" | "modelopt_mixed" | "compressed_tensors"; AQS_ERR_INVALID naming
 * the text and the choices otherwise. */
aqs_status aqs_export_format_parse(const char *text, aqs_export_format *out, aqs_err *e);
/* Canonical name: "modelopt_fp8", "modelopt_mixed", "compressed_tensors" (static). */
const char *aqs_export_format_name(aqs_export_format f);

typedef enum aqs_consumer {
  AQS_CONSUMER_VLLM_MODELOPT = 0,
  AQS_CONSUMER_VLLM_MODELOPT_MIXED,
  AQS_CONSUMER_VLLM_COMPRESSED_TENSORS,
  AQS_CONSUMER_TRANSFORMERS,
  AQS_CONSUMER_COUNT
} aqs_consumer;

/* "vllm-modelopt", "vllm-modelopt_mixed", "vllm-compressed-tensors", "transformers". */
const char *aqs_consumer_name(aqs_consumer c);

/* One linear module of the checkpoint and how the export stores it. */
typedef struct aqs_verdict_module {
  const char *module;  /* checkpoint module name ("model.visual.blocks.0.attn.qkv") */
  int fp8;             /* 1: FP8 weight + scales in the checkpoint; 0: BF16 */
} aqs_verdict_module;

typedef enum aqs_run_as {
  AQS_RUN_BF16 = 0,    /* loaded and run in BF16 */
  AQS_RUN_FP8 = 1,     /* loaded with its scales, run FP8 */
  AQS_RUN_WRONG = 2    /* FP8 codes loaded as BF16 values (no scales): wrong outputs */
} aqs_run_as;

typedef struct aqs_consumer_verdict {
  aqs_consumer consumer;
  int reads_format;    /* 1 when this consumer reads the export's metadata format (vLLM picks
                          its loader from it; transformers reads them all) */
  int loads;           /* 1 when loading succeeds (meaningful when reads_format) */
  char reason[512];    /* why loading fails, or a caveat; "" if none */
  size_t n_fp8, n_bf16, n_wrong;
  aqs_run_as *run_as;  /* (n modules) parallel to the input; NULL when !reads_format */
  char rules[256];     /* comma-separated ids of the rules that decided something */
} aqs_consumer_verdict;

/* Verdicts of every consumer for modules[0..n) exported in format fmt (any_fp8 == 0: a plain
 * BF16 checkpoint without quantization metadata, which every consumer loads in BF16).
 * out[AQS_CONSUMER_COUNT] is filled; free with aqs_consumer_verdicts_free. AQS_ERR_NOMEM only. */
aqs_status aqs_consumer_verdicts(const aqs_verdict_module *modules, size_t n, aqs_export_format fmt,
                                 aqs_consumer_verdict out[AQS_CONSUMER_COUNT], aqs_err *e);
void aqs_consumer_verdicts_free(aqs_consumer_verdict v[AQS_CONSUMER_COUNT]);

/* The verdicts as the manifest's "consumers" object: {name: {"reads_format": bool, "loads": bool,
 * "reason": str, "rules": [ids], "fp8": [modules], "bf16": [modules], "fp8_codes_as_bf16":
 * [modules]}} (module lists in input order; omitted for consumers that do not read the format).
 * New reference; NULL on OOM. */
json_t *aqs_consumer_verdicts_json(const aqs_verdict_module *modules, size_t n,
                                   const aqs_consumer_verdict v[AQS_CONSUMER_COUNT]);

#endif
