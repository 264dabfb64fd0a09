/* engine/stages/quality_report.h: `aqs report`: the quality of a family of schemes as report.md
 * plus PNG figures drawn by engine/plot: the sensitivity heat map (layers x group kind, log
 * colour, the most sensitive groups outlined), KL and perplexity against effective bits for the
 * sensitivity order beside the most_sensitive_first / random controls, and checkpoint sizes
 * against BF16 with the bytes the store holds for the whole family. Every number comes from
 * cached eval actions (engine/stages/eval_stage.h): a second report computes nothing. */
#ifndef AQS_STAGES_QUALITY_REPORT_H
#define AQS_STAGES_QUALITY_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/stages/eval_stage.h"

#define AQS_REPORT_FIGURES 4
extern const char *const aqs_report_figure_names[AQS_REPORT_FIGURES];

typedef struct aqs_report_result {
  char markdown_path[4200];
  size_t n_rows;
  size_t n_evaluated;            /* eval actions computed by this call (0 when all cached) */
  uint64_t family_logical_bytes; /* sum of the built checkpoints' safetensors bytes */
  uint64_t family_stored_bytes;  /* distinct tensor bytes the store holds for them */
  char most_sensitive[512];      /* the groups outlined in the heat map, most sensitive first */
} aqs_report_result;

/* Evaluates names (n == 0: every build of the model's recipes in the store, newest per recipe,
 * plus "bf16") and writes out_dir/report.md and the figures (out_dir is created; existing files
 * of those names are replaced). Errors: those of aqs_eval_names; AQS_ERR_NOT_FOUND when n == 0
 * and the store holds no build of this model; AQS_ERR_IO naming the file. */
aqs_status aqs_quality_report(const aqs_eval_opts *o, const char *const *names, size_t n, const char *out_dir,
                              aqs_report_result *res, aqs_err *e);

#endif
