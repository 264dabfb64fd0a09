/* engine/model/synth_internal.h: pieces of the synthetic-model writer shared between its files
 * (PRNG fill, tokenizer writer, weight writer); not a public interface. */
#ifndef AQS_MODEL_SYNTH_INTERNAL_H
#define AQS_MODEL_SYNTH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/model/synth.h"

/* Number of regular (byte + merged) tokens of the synthetic tokenizer for cfg; the 22 Qwen
 * added tokens follow at ids [regular, regular + 22). */
int aqs_synth_regular_tokens(const aqs_qwen_config *cfg);

/* Writes tokenizer.json and tokenizer_config.json into dir. */
aqs_status aqs_synth_write_tokenizer(const char *dir, const aqs_qwen_config *cfg, aqs_err *e);

/* Writes the weights (model.safetensors or shards + index) for opts into opts->out_dir. */
aqs_status aqs_synth_write_weights(const aqs_synth_opts *opts, const aqs_qwen_model *model,
                                   aqs_err *e);

/* Writes text (NUL-terminated) to dir/name via tmp + rename. */
aqs_status aqs_synth_write_text(const char *dir, const char *name, const char *text, aqs_err *e);

#endif
