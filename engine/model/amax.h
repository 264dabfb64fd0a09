/* engine/model/amax.h: the amax table produced by calibration and read by sensitivity and the
 * exporter: module name -> input_amax (max |x| of the module's input over the calibration
 * tokens) and weight_amax (max |W|). FP8 per-tensor scale = amax / 448.
 *
 * JSON form (what the calibrate stage stores; keys sorted, deterministic bytes):
 *   {"format": "aqs-amax-1", "algorithm": "max", "n_tokens": 4096, "n_seqs": 8,
 *    "modules": {"model.language_model.layers.0.self_attn.q_proj":
 *                  {"input_amax": 3.25, "weight_amax": 0.0859375}, ...}}
 * Values are written with 17 significant digits, so F32 values round-trip bit for bit.
 * Tables are chunk-associative: reduce(a, b) takes the elementwise max and adds the counts. */
#ifndef AQS_MODEL_AMAX_H
#define AQS_MODEL_AMAX_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define AQS_AMAX_NAME_MAX 128

typedef struct aqs_amax_entry {
  char module[AQS_AMAX_NAME_MAX]; /* checkpoint module name without ".weight" */
  float input_amax;
  float weight_amax;
} aqs_amax_entry;

typedef struct aqs_amax_table {
  int64_t n_tokens;             /* calibration tokens seen */
  int64_t n_seqs;               /* calibration sequences seen */
  size_t n;
  aqs_amax_entry *entries;      /* sorted by module name (strcmp) after any aqs_amax_* call */
} aqs_amax_table;

/* Resets t to empty (entries freed). */
void aqs_amax_free(aqs_amax_table *t);
/* Entry for module (with or without a trailing ".weight"), NULL if absent. */
const aqs_amax_entry *aqs_amax_find(const aqs_amax_table *t, const char *module);
/* Sets (adds or replaces) module's amax values. AQS_ERR_NOMEM / AQS_ERR_INVALID (name too long). */
aqs_status aqs_amax_set(aqs_amax_table *t, const char *module, float input_amax,
                        float weight_amax, aqs_err *e);
/* out = elementwise max of parts[0..n) in that order (a module missing from some parts keeps the
 * max of the others); counts are summed. NaN in any part propagates. out must be empty. */
aqs_status aqs_amax_reduce(const aqs_amax_table *const *parts, size_t n, aqs_amax_table *out,
                           aqs_err *e);

/* Serializes to the JSON form above (malloc'd, NUL-terminated, trailing newline). */
aqs_status aqs_amax_to_json(const aqs_amax_table *t, char **out, aqs_err *e);
/* Parses the JSON form; `what` (file or digest) is named in errors. Non-finite or negative
 * values, a wrong "format" and missing fields are AQS_ERR_INVALID naming the module/field. */
aqs_status aqs_amax_from_json(const char *json, size_t len, const char *what,
                              aqs_amax_table *out, aqs_err *e);
/* File helpers (write: tmp + rename). */
aqs_status aqs_amax_save(const aqs_amax_table *t, const char *path, aqs_err *e);
aqs_status aqs_amax_load(const char *path, aqs_amax_table *out, aqs_err *e);

#endif
