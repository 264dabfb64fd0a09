/* engine/stages/source.h: the source stage: a Hugging Face checkpoint directory, by content.
 * Key: the digest of every file of the directory (through the store's stat-cache, so an unchanged
 * multi-GB checkpoint is not re-read). Result: the model manifest
 *   {"kind":"aqs-model","version":1,"files":{name: digest},"config":<config.json digest>,
 *    "tensors":[[name, dtype, [shape], digest], ...] (name order), "children":[small files]}
 * The small files (config, tokenizer, processor settings) are stored; tensor bytes are not (the
 * export stores what it writes), only their digests, hashed in parallel. */
#ifndef AQS_STAGES_SOURCE_H
#define AQS_STAGES_SOURCE_H

#include <jansson.h>

#include "common/err.h"
#include "engine/stages/stage.h"
#include "store/store.h"

/* Files at most this large are stored with the manifest (configs, tokenizers). */
#define AQS_SOURCE_SMALL_FILE_MAX (64u * 1024u * 1024u)


/* Inputs of the source stage for model_dir: {"file:<name>": digest} (caller json_decref's). */
aqs_status aqs_source_inputs(aqs_store *s, const char *model_dir, json_t **inputs_out, aqs_err *e);

/* Runs (or reuses) the source stage. dry_run: look up only (a miss computes nothing). */
aqs_status aqs_stage_source(aqs_store *s, const char *model_dir, int dry_run, aqs_stage_outcome *out,
                            aqs_err *e);

#endif
