/* engine/export/plan.h: a quantization plan: for each group id (engine/model/qwen_config.h:
 * "lm.<L>.qkv", "vis.<B>.down", "vis.merger.mlp.0", ...) the format it is exported in, "fp8" or
 * "bf16", plus optional per-group sensitivity scores and the candidate scope. JSON I/O.
 *
 * JSON form written by aqs_plan_to_json (canonical: groups in natural id order, compact):
 *   {"scope":"lm_only","groups":{"lm.0.qkv":"fp8","lm.0.o":"bf16",...},
 *    "scores":{"lm.0.qkv":0.0123,...}}
 * "scope" ("lm_only" | "all_layers") and "scores" are optional. On input a group value may
 * also be an object {"format":"fp8","score":0.0123}, and a bare object {"lm.0.qkv":"fp8",...}
 * (no "groups" key) is accepted as the groups map. A group absent from a plan is BF16.
 * Group ids are checked for syntax only (lm.<int>.{qkv,o,gate_up,down},
 * vis.<int>.{qkv,proj,gate_up,down}, vis.patch_embed, vis.merger.mlp.{0,2}); the exporter checks them against the model. */
#ifndef AQS_EXPORT_PLAN_H
#define AQS_EXPORT_PLAN_H

#include <stddef.h>

#include "common/err.h"

typedef enum aqs_format {
  AQS_FMT_BF16 = 0, /* "bf16": left unquantized (and listed in exclude_modules) */
  AQS_FMT_FP8 = 1   /* "fp8": E4M3 weight + weight_scale + input_scale */
} aqs_format;

typedef struct aqs_plan_entry {
  char *group;      /* "lm.0.qkv" */
  aqs_format format;
  int has_score;
  double score;     /* sensitivity score (meaningful when has_score) */
} aqs_plan_entry;

typedef struct aqs_plan {
  char scope[16];            /* "lm_only", "all_layers", or "" when unknown */
  size_t n;
  aqs_plan_entry *entries;   /* sorted by aqs_group_id_cmp, unique ids */
  size_t cap;
} aqs_plan;

/* "fp8" / "bf16" (static). */
const char *aqs_format_name(aqs_format f);
/* Parses "fp8" / "bf16" (case-sensitive); AQS_ERR_INVALID naming the string. */
aqs_status aqs_format_parse(const char *s, aqs_format *out, aqs_err *e);
/* 1 if id has the syntax of a group id (see above). */
int aqs_group_id_valid(const char *id);
/* Natural order: lm before vis, then numerically by layer/block, then kind in the order
 * qkv, o, proj, gate_up, down; vis.patch_embed before the vision blocks, vis.merger.mlp.0 and
 * vis.merger.mlp.2 after them. Total order over valid ids (strcmp
 * decides ties and invalid ids). */
int aqs_group_id_cmp(const char *a, const char *b);

/* New empty plan (scope ""). NULL on OOM. Free with aqs_plan_free (NULL is fine). */
aqs_plan *aqs_plan_new(void);
void aqs_plan_free(aqs_plan *p);
/* Sets group's format (adds it, keeping order, or replaces; an existing score is kept).
 * AQS_ERR_INVALID for a malformed id, AQS_ERR_NOMEM. */
aqs_status aqs_plan_set(aqs_plan *p, const char *group, aqs_format format, aqs_err *e);
/* Sets group's score; the group must already be in the plan (AQS_ERR_NOT_FOUND). */
aqs_status aqs_plan_set_score(aqs_plan *p, const char *group, double score, aqs_err *e);
/* Entry for group, NULL if absent. */
const aqs_plan_entry *aqs_plan_find(const aqs_plan *p, const char *group);
/* Format of group: the entry's, or BF16 when absent. */
aqs_format aqs_plan_format(const aqs_plan *p, const char *group);
/* Number of groups with format f. */
size_t aqs_plan_count(const aqs_plan *p, aqs_format f);

/* Parses JSON text (see above). source names the file in messages. Errors (AQS_ERR_INVALID,
 * naming source and the offending key/line): not JSON, not an object, a group value that is not
 * "fp8"/"bf16" or {"format":..}, a malformed group id, a non-numeric score, a score for a group
 * not in "groups", an unknown scope. Caller frees *out. */
aqs_status aqs_plan_parse(const char *json_text, size_t len, const char *source, aqs_plan **out,
                          aqs_err *e);
/* Reads and parses a plan file. AQS_ERR_NOT_FOUND / AQS_ERR_IO naming the path. */
aqs_status aqs_plan_load(const char *path, aqs_plan **out, aqs_err *e);
/* Canonical compact JSON (no trailing newline); caller frees. NULL on OOM. The same plan
 * always gives the same bytes. */
char *aqs_plan_to_json(const aqs_plan *p);
/* Writes aqs_plan_to_json + "\n" to path (tmp + rename). */
aqs_status aqs_plan_save(const aqs_plan *p, const char *path, aqs_err *e);

/* Groups whose format differs between a and b (absent = BF16), in natural order: the symmetric
 * difference of the two plans' FP8 sets. *ids_out is a malloc'd array of pointers into a's or
 * b's entries (valid while both plans live); free the array only. */
aqs_status aqs_plan_diff(const aqs_plan *a, const aqs_plan *b, const char ***ids_out,
                         size_t *n_out, aqs_err *e);

#endif
