/* engine/stages/build.h: resolving recipes into the stage graph of DESIGN.md §2 and running it:
 * source -> calib-set -> calibrate -> sensitivity -> slice -> export, each a cached action keyed
 * by its inputs' digests and canonical params; only misses run. Several recipes in one build
 * share every common stage. Each build (recipe, model, data) gets its own ref naming its build
 * record (engine/stages/build_names.h: recipe/<name>/<model16>-<data16>):
 *   {"kind":"aqs-build","version":1,"recipe":NAME,"recipe_params":{...},
 *    "stages":{"source":D,"calib-set":D,"calibrate":D,"sensitivity":D,"slice":D,"export":D},
 *    "summary":{"groups":n,"candidates":n,"fp8":n,"effective_bits":x},"children":[...]}
 * The export stage's result is a checkpoint tree (ckpt_store.h), materialized at the output dir. */
#ifndef AQS_STAGES_BUILD_H
#define AQS_STAGES_BUILD_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"
#include "common/workspace.h"
#include "engine/stages/recipe.h"
#include "engine/stages/stage.h"
#include "store/store.h"

#define AQS_BUILD_STAGES 6
extern const char *const aqs_build_stage_names[AQS_BUILD_STAGES];

typedef struct aqs_build_opts {
  aqs_store *store;
  const aqs_workspace *ws;       /* link mode, default paths; may be NULL */
  const char *model_dir;         /* source checkpoint (required) */
  const char *captions_path;     /* caption file for captions recipes */
  const char *images_path;       /* JSONL for images recipes */
  const char *images_root;
  int allow_outside_root;        /* image rows may leave images_root (--allow-outside-root) */
  const char *backend;           /* "cpu" (default) or "cuda" */
  const char *out_dir;           /* single recipe: where to materialize; NULL = default */
  const char *out_root;          /* default root for outputs: <workspace>/quantized */
  int dry_run;                   /* aqs plan: look up only, explain misses */
  int no_materialize;            /* build into the store only */
  int skip_family_check;
  int progress;                  /* progress bars on stderr */
  /* Test hook: corrupt one tensor of this recipe's export (family check must catch it). */
  const char *test_break_recipe;
} aqs_build_opts;

typedef struct aqs_build_report {
  char recipe[AQS_RECIPE_NAME_MAX];
  aqs_stage_outcome stages[AQS_BUILD_STAGES];
  int stage_done[AQS_BUILD_STAGES]; /* 1 where the stage was reached (plan stops at a miss) */
  aqs_digest build_record;          /* valid when !dry_run */
  size_t n_groups, n_candidates, n_fp8;
  double effective_bits;
  char out_dir[4096];               /* where it was materialized ("" if not) */
} aqs_build_report;

/* Builds (or plans, with dry_run) each recipe; reports[i] describes recipes[i].
 * After a family build (>= 2 recipes, not dry_run) checks pairwise that the checkpoints differ
 * exactly as their plans do (AQS_ERR_MISMATCH with the export diff's message otherwise). */
aqs_status aqs_build_recipes(const aqs_build_opts *opts, const aqs_recipe *recipes, size_t n,
                             aqs_build_report *reports, aqs_err *e);

/* Loads the build record a name reaches (aqs_build_resolve without a workspace scope: a recipe
 * name with one build, NAME@MODEL[+DATA], a ref name or a record digest). */
aqs_status aqs_build_record_load(aqs_store *s, const char *name, aqs_digest *record_out,
                                 json_t **doc_out, aqs_err *e);

/* The digest of stage `stage` in a build record document. */
aqs_status aqs_build_record_stage(const json_t *doc, const char *stage, aqs_digest *out, aqs_err *e);

/* The per-layer sensitivity report of a build record: Markdown (engine/stages/report.h) and the
 * scores JSON (per group: scores, costs, parameters; ranking). Both malloc'd; either may be NULL. */
aqs_status aqs_build_sensitivity_docs(aqs_store *s, const json_t *record, char **markdown, char **scores_json,
                                      aqs_err *e);


#endif
