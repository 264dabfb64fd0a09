/* engine/model/synth.h: deterministic synthetic Qwen2.5-VL checkpoints (the project's embedded
 * default model): presets tiny / small / 3b, weights from a counter-based PRNG keyed by
 * (seed, tensor name in the hf5 scheme, element index), so output bytes depend only on preset,
 * seed, outliers and naming (both namings hold the same values), never on thread count. `aqs synth-model` is the CLI over aqs_synth_write. */
#ifndef AQS_MODEL_SYNTH_H
#define AQS_MODEL_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/model/qwen_config.h"

/* Fills cfg with the preset's shapes: "tiny" (CI: hidden 64, 4 layers, vocab 640, vision depth 2,
 * hidden 32), "small" (hidden 256, 8 layers, vocab 2048, vision depth 4, hidden 64) or "3b" (the
 * real Qwen2.5-VL-3B shapes). Token ids in cfg (image/video/vision_start/end, bos, eos) are those
 * of the synthetic tokenizer for that vocab size. AQS_ERR_INVALID naming an unknown preset. */
aqs_status aqs_synth_preset(const char *preset, aqs_qwen_config *cfg, aqs_err *e);

#define AQS_SYNTH_MAX_OUTLIERS 64

/* One planted outlier: every weight of the group's members gets AQS_SYNTH_OUTLIER_CHANNELS input
 * channels (columns) multiplied by factor, inflating the per-tensor FP8 scale amax/448 by
 * ~factor. The BF16 model stays sane because those input channels are neutralised upstream:
 *   qkv, gate_up (lm and vis), vis.merger.mlp.0: the RMSNorm weight of the channel (input_layernorm /
 *     post_attention_layernorm, norm1 / norm2, merger.ln_q) is divided by factor: the BF16
 *     function is unchanged up to BF16 rounding;
 *   lm o, vis proj: the v rows producing the channel (v_proj / the v third of attn.qkv, weight
 *     and bias) are zeroed; lm down, vis down: the up_proj rows (and bias) are zeroed. These
 *     are "dead" channels: dividing a linear's rows by factor instead would make that producer
 *     group FP8-sensitive too (its tiny rows flush to zero), zeros quantize exactly.
 * Because E4M3 is floating point, the ordinary weights only lose precision once they fall below
 * its normal range (2^-6 of the scaled max): measured relative RMS error of the ordinary weights
 * 2.7 % at factor <= 3000, 5 % at 1e4, 15 % at 3e4, 50 % at 1e5. Use >= 3e4 (1e5 recommended) to
 * make a group clearly the most FP8-sensitive. vis.merger.mlp.2 and vis.patch_embed take no
 * outliers (AQS_ERR_UNSUPPORTED). */
typedef struct aqs_synth_outlier {
  char group_id[32];            /* "lm.1.down" */
  double factor;                /* > 1; see above: 1e5 makes the group clearly most sensitive */
} aqs_synth_outlier;

#define AQS_SYNTH_OUTLIER_CHANNELS 4

typedef struct aqs_synth_opts {
  const char *preset;           /* "tiny" | "small" | "3b" */
  uint64_t seed;
  const char *out_dir;          /* created if missing; existing files of ours are replaced */
  aqs_qwen_naming naming;       /* tensor naming; AQS_NAMING_HF5 unless asked otherwise */
  int noutliers;
  aqs_synth_outlier outliers[AQS_SYNTH_MAX_OUTLIERS];
  int threads;                  /* 0 = number of online CPUs */
  int progress;                 /* 1 = progress on stderr */
  uint64_t shard_max_bytes;     /* 0 = default (2 GiB for 3b; one file below that) */
} aqs_synth_opts;

/* Parses "lm.1.down:1e5,vis.0.qkv:3e4" into opts->outliers. AQS_ERR_INVALID naming the bad item. */
aqs_status aqs_synth_parse_outliers(const char *spec, aqs_synth_opts *opts, aqs_err *e);

/* Writes config.json (5.x layout), generation_config.json, model.safetensors (or shards +
 * model.safetensors.index.json), preprocessor_config.json, tokenizer.json, tokenizer_config.json
 * into opts->out_dir. Outlier group ids are checked against the preset (AQS_ERR_NOT_FOUND naming
 * the id). Weights: linears normal(0, 0.02), biases normal(0, 0.02), embeddings normal(0, 0.02),
 * norms 1.0, patch_embed normal(0, 0.02); all BF16. */
aqs_status aqs_synth_write(const aqs_synth_opts *opts, aqs_err *e);

/* The PRNG (exposed for tests): standard normal for (seed, stream, index), stream being a 64-bit
 * hash of the tensor name. Pure function; Box-Muller over a counter-based 64-bit mixer. */
float aqs_synth_normal(uint64_t seed, uint64_t stream, uint64_t index);
/* out[i] = aqs_synth_normal(seed, stream, first + i) for i < n (two normals per hash). */
void aqs_synth_normal_fill(uint64_t seed, uint64_t stream, uint64_t first, float *out, size_t n);
/* 64-bit FNV-1a of a string (the stream id of a tensor name). */
uint64_t aqs_synth_stream_id(const char *name);

#endif
