/* engine/model/synth.h: deterministic synthetic Qwen2.5-VL checkpoints (the project's embedded
 * default model): presets tiny / small / 3b, weights from a counter-based PRNG keyed by
 * (seed, tensor name, element index), so output bytes depend only on preset, seed and outliers,
 * never on thread count. `aqs synth-model` is the CLI over aqs_synth_write. */
#ifndef AQS_MODEL_SYNTH_H
#define AQS_MODEL_SYNTH_H

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
 * channels (columns) scaled by factor; where the input of the group comes from a per-channel
 * scale (RMSNorm weight, or v_proj / up_proj output rows) that channel is divided by factor, so
 * the BF16 function is (nearly) unchanged while the per-tensor FP8 scale amax/448 grows by
 * ~factor and every other weight lands in E4M3's coarse low range. vis.merger's second linear
 * has no linear predecessor: its columns are scaled without compensation. */
typedef struct aqs_synth_outlier {
  char group_id[32];            /* "lm.1.down" */
  double factor;                /* > 1; 1000 .. 10000 makes the group clearly most sensitive */
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

/* Parses "lm.1.down:3000,vis.0.qkv:2000" into opts->outliers. AQS_ERR_INVALID naming the bad item. */
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
/* 64-bit FNV-1a of a string (the stream id of a tensor name). */
uint64_t aqs_synth_stream_id(const char *name);

#endif
