/* engine/export/export_internal.h: state shared by the exporter's files (export.c runs the
 * shards, export_meta.c writes config.json / hf_quant_config.json / the aqs manifest and copies
 * the tokenizer files). Not a public interface. */
#ifndef AQS_EXPORT_INTERNAL_H
#define AQS_EXPORT_INTERNAL_H

#include <jansson.h>
#include <stdint.h>

#include "engine/export/export.h"
#include "engine/model/qwen_config.h"
#include "engine/model/safetensors.h"

/* Per-group export decisions and scales. */
typedef struct export_group_state {
  const aqs_qwen_group *group;
  aqs_format format;
  int in_scope;
  float input_amax;             /* max over members (FP8 groups) */
  float input_scale;
  float weight_amax[AQS_QWEN_GROUP_MAX_MEMBERS];
  float weight_scale[AQS_QWEN_GROUP_MAX_MEMBERS];
} export_group_state;

typedef struct export_ctx {
  const aqs_export_opts *o;
  aqs_qwen_model *model;
  aqs_ckpt *ckpt;
  export_group_state *groups;   /* parallel to model->groups */
  aqs_qwen_scope scope;
  json_t *tensors_json;         /* manifest "tensors": name -> {dtype, shape, sha256, file} */
  json_t *source_files_json;    /* manifest "inputs.source": file -> digest (computed case) */
  aqs_export_result *res;
} export_ctx;

/* Appends a finished file to res and calls on_file. digest/bytes: known values, or NULL to hash
 * the file from disk. */
aqs_status export_add_file(export_ctx *x, const char *name, aqs_export_file_kind kind,
                           const aqs_digest *digest, uint64_t bytes, aqs_err *e);
/* Writes text to out_dir/name (tmp + rename) and records it. */
aqs_status export_write_text(export_ctx *x, const char *name, const char *text,
                             aqs_export_file_kind kind, aqs_err *e);

/* export_meta.c */
aqs_status export_write_configs(export_ctx *x, aqs_err *e);
aqs_status export_copy_aux_files(export_ctx *x, aqs_err *e);
aqs_status export_write_manifest(export_ctx *x, aqs_err *e);
/* Sorted (strcmp) list of linear modules left BF16, as a new JSON array. */
json_t *export_exclude_modules(const export_ctx *x);

#endif
