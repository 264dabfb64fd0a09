/* engine/export/export.h: writes a ModelOpt-format Hugging Face FP8 checkpoint (what vLLM loads
 * with quantization="modelopt") from a source Qwen2.5-VL checkpoint, an amax table and a plan.
 * docs/checkpoint-format.md describes every file and field; this header is the API.
 *
 * Output directory (every byte a function of the inputs only: no clocks, paths or thread counts):
 *   model-embed.safetensors             embed_tokens
 *   model-layers-<LLL>.safetensors      language layer L (all its tensors), L zero-padded to 3
 *   model-head.safetensors              final norm + lm_head (lm_head absent when tied)
 *   model-visual-stem.safetensors       patch_embed
 *   model-visual-blocks-<BBB>.safetensors  vision block B
 *   model-visual-merger.safetensors     merger
 *   model-other.safetensors             any tensor none of the above claims (if any)
 *   model.safetensors.index.json, config.json (+ quantization_config), hf_quant_config.json,
 *   tokenizer / processor / generation files copied byte for byte, aqs-manifest.json.
 * Tensors inside a shard are sorted by name. A module of an FP8 group is written as
 *   <module>.weight F8_E4M3 (same shape), <module>.weight_scale F32 [] = max|W| / 448,
 *   <module>.input_scale F32 [] = max over the group's members of input_amax, / 448,
 * its bias and every other tensor are copied bit for bit from the (memory-mapped) source.
 * So two plans that agree on a block produce byte-identical shards for it. A plan without any
 * FP8 group gives a plain BF16 checkpoint (no quantization_config, no hf_quant_config.json). */
#ifndef AQS_EXPORT_EXPORT_H
#define AQS_EXPORT_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/export/consumers.h"
#include "engine/export/plan.h"
#include "engine/model/amax.h"
#include "kernels/fp8.h"
#include "store/digest.h"

#define AQS_EXPORT_MANIFEST "aqs-manifest.json"
/* aqs-manifest.json "export_format" is aqs_export_format_name(opts.format) ("modelopt_fp8" for
 * the default); its "consumers" object holds the consumer verdicts (consumers.h). */
/* The ModelOpt release whose HF FP8 format (hf_quant_config.json "producer") we write. */
#define AQS_EXPORT_MODELOPT_VERSION "0.39.0"

typedef enum aqs_export_file_kind {
  AQS_EXPORT_SHARD = 0,  /* a .safetensors shard */
  AQS_EXPORT_META = 1,   /* index, config.json, hf_quant_config.json, aqs-manifest.json */
  AQS_EXPORT_COPIED = 2  /* tokenizer / processor / generation file copied from the source */
} aqs_export_file_kind;

typedef struct aqs_export_file {
  char name[128];        /* file name inside out_dir */
  aqs_export_file_kind kind;
  aqs_digest digest;     /* SHA-256 of the file's bytes */
  uint64_t bytes;
} aqs_export_file;

/* One finished shard handed to aqs_export_opts.shard_sink instead of being written. */
typedef struct aqs_export_shard_tensor {
  const char *name;
  const aqs_digest *digest;      /* SHA-256 of the tensor's bytes */
  const void *data;              /* the bytes; valid during the call only */
  uint64_t nbytes;
} aqs_export_shard_tensor;

typedef struct aqs_export_shard {
  const char *name;              /* "model-layers-003.safetensors" */
  const uint8_t *header;         /* the file's first header_bytes bytes (length + JSON + padding) */
  size_t header_bytes;
  size_t ntensors;
  const aqs_export_shard_tensor *tensors; /* in file order, back to back after the header */
  uint64_t file_bytes;
} aqs_export_shard;

typedef struct aqs_export_opts {
  const char *model_dir;         /* source checkpoint directory (config.json + safetensors) */
  const aqs_amax_table *amax;    /* input_amax per module; required for every FP8 group member */
  const aqs_plan *plan;          /* group -> fp8 | bf16; groups absent are BF16 */
  /* 1: FP8 KV cache. Each language layer's shard gets <layer>.self_attn.k_proj.k_scale and
   * .v_proj.v_scale (F32 [] = amax / 448 of the table's "<layer>.self_attn.k_cache" / "v_cache"
   * entries: K after RoPE, V), the names ModelOpt's HF export writes and vLLM's loader remaps to
   * attn.k_scale / attn.v_scale; hf_quant_config.json and config.json say
   * kv_cache_quant_algo "FP8". A missing entry is AQS_ERR_NOT_FOUND naming it. */
  int kv_cache_fp8;
  /* Metadata form (engine/export/consumers.h); the FP8 codes and scale values are the same in
   * all three. modelopt: as above. modelopt_mixed: quant_algo "MIXED_PRECISION" with
   * "quantized_layers" {module: {"quant_algo": "FP8"}} in hf_quant_config.json and config.json.
   * compressed_tensors: config.json quantization_config {"quant_method": "compressed-tensors",
   * "format": "float-quantized", one config group targeting Linear with static per-tensor FP8
   * weights and inputs, "ignore": the BF16 linears}; no hf_quant_config.json; weight_scale and
   * input_scale are F32 [1] (not []); KV scales are <layer>.self_attn.k_scale / v_scale. */
  aqs_export_format format;
  const char *out_dir;           /* created (with parents) if missing; must be empty if present */
  aqs_fp8_ref fp8_ref;           /* AQS_FP8_REF_TORCH_CUDA (0) unless testing */
  /* Digests recorded in the manifest's "inputs" (strings "sha256:<hex>"). NULL = computed here:
   * source = per-file digests of the source directory's files that were read, amax = digest of
   * aqs_amax_to_json(amax), plan = digest of aqs_plan_to_json(plan) (always computed). */
  const char *source_digest;
  const char *amax_digest;
  /* Optional: the SHA-256 of a source tensor's bytes when the caller already has it (the source
   * stage hashed every tensor). Returns 1 and fills *out when known, 0 otherwise. Tensors copied
   * unchanged then need no hashing here (a wrong digest is caught by aqs diff's manifest check). */
  int (*source_tensor_digest)(void *ctx, const char *tensor_name, aqs_digest *out);
  void *source_tensor_digest_ctx;
  /* Optional (NULL = quantize every FP8 weight): FP8 codes shared by the exports of one process
   * (engine/export/fp8_cache.h), used for weights whose source digest source_tensor_digest
   * knows: a weight another export quantized is neither read, quantized nor hashed again. */
  struct aqs_fp8_cache *fp8_cache;
  int progress;                  /* 1 = progress on stderr */
  /* Called after each file is complete in out_dir (optional); a non-OK return aborts. */
  aqs_status (*on_file)(void *ctx, const char *path, const aqs_export_file *file, aqs_err *e);
  void *on_file_ctx;
  /* Optional: shards go to this sink instead of to files (the build stores tensors directly):
   * no shard file is written in out_dir and on_file is not called for shards. The sink returns
   * the SHA-256 of the file the shard describes (header then tensors), which the result and
   * aqs-manifest.json record exactly as if the file had been written. */
  aqs_status (*shard_sink)(void *ctx, const aqs_export_shard *shard, aqs_digest *file_digest, aqs_err *e);
  void *shard_sink_ctx;
} aqs_export_opts;

typedef struct aqs_export_result {
  size_t nfiles;
  aqs_export_file *files;        /* in the order written; aqs-manifest.json last */
  size_t n_groups, n_candidates, n_fp8;
  char scope[16];                /* "lm_only" | "all_layers" (plan's, or inferred) */
  double effective_bits;         /* over all candidate-scope weights, scales counted */
  uint64_t tensor_bytes;         /* sum of tensor bytes written */
  uint64_t quantized_params;     /* elements quantized to FP8 */
  uint64_t reused_params;        /* of those, taken from opts.fp8_cache (not quantized again) */
  /* Busy seconds per activity. A writer thread writes shard N (and hashes the file) while the
   * main thread quantizes and hashes shard N+1, so these may add up to more than the total. */
  double seconds_quantize;       /* amax + E4M3 conversion of FP8 weights */
  double seconds_hash;           /* per-tensor and per-file SHA-256 */
  double seconds_write;          /* safetensors writes (incl. fsync) */
  double seconds_total;          /* wall time of aqs_export_run */
} aqs_export_result;

/* Runs the export. Errors (AQS_ERR_*, message naming the file / group / module):
 *   NOT_FOUND   model dir or a file in it; a plan group that the model does not have; a module
 *               of an FP8 group missing from the amax table
 *   INVALID     out_dir exists and is not empty; a vision group FP8 in an lm_only plan
 *   UNSUPPORTED a weight of an FP8 group that is neither BF16 nor F32
 *   NUMERIC     NaN/Inf in a weight of an FP8 group or in an amax
 *   IO          write failures (the partial out_dir is left for inspection)
 * res is filled on success (free with aqs_export_result_free); may be NULL. */
aqs_status aqs_export_run(const aqs_export_opts *o, aqs_export_result *res, aqs_err *e);
void aqs_export_result_free(aqs_export_result *res);

/* Shard file name for a tensor (see the layout above), from its checkpoint name in either naming
 * scheme. Writes at most n bytes into buf; returns buf. */
const char *aqs_export_shard_name(const char *tensor_name, char *buf, size_t n);

#endif
