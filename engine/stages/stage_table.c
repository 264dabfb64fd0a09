/* engine/stages/stage_table.c: the stage table: every stage of the build graph (DESIGN.md §2), in
 * graph order (each after the stages it reads). A stage is one file holding its aqs_stage_def
 * (stage.h); adding one is that file plus its line here. */
#include <stddef.h>
#include <string.h>

#include "engine/stages/stage.h"

extern const aqs_stage_def aqs_stage_source, aqs_stage_calib_set, aqs_stage_calibrate, aqs_stage_sensitivity,
    aqs_stage_slice, aqs_stage_export, aqs_stage_eval;

static const aqs_stage_def *const table[] = {
    &aqs_stage_source,      /* model files -> model manifest */
    &aqs_stage_calib_set,   /* dataset + tokenizer -> calib-set chunks */
    &aqs_stage_calibrate,   /* source, calib-set -> amax table */
    &aqs_stage_sensitivity, /* source, calib-set, calibrate -> scores */
    &aqs_stage_slice,       /* source, sensitivity -> plan */
    &aqs_stage_export,      /* source, calibrate, slice -> checkpoint tree */
    &aqs_stage_eval,        /* export (+ source, held-out captions) -> quality metrics; optional */
};

const aqs_stage_def *const *aqs_stage_table(size_t *n_out) {
  *n_out = sizeof table / sizeof table[0];
  return table;
}

int aqs_stage_index(const char *name) {
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (strcmp(table[i]->name, name) == 0) return (int)i;
  return -1;
}
