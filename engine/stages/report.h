/* engine/stages/report.h: the per-layer sensitivity report of a build, as Markdown: one row per
 * layer, one column per group kind, each cell the group's FP8 score and its decision, then the
 * ranking (least sensitive first). Written beside each checkout and by `aqs show --markdown`. */
#ifndef AQS_STAGES_REPORT_H
#define AQS_STAGES_REPORT_H

#include "common/err.h"
#include "engine/compute/scores.h"
#include "engine/export/plan.h"

/* Markdown text (malloc'd) for recipe's scores and plan; NULL on out-of-memory. */
char *aqs_sensitivity_markdown(const char *recipe, const aqs_scores *scores, const aqs_plan *plan);

#endif
