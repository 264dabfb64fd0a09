/* engine/stages/build.h: resolving recipes into the stage graph and running it. The graph is the
 * stage table (stage.h, stage_table.c): build.c walks it in order, giving each stage the results
 * of its inputs; each stage is a cached action keyed by its inputs' digests and canonical
 * params, and only misses run. Several recipes in one build share every common stage. Each build
 * (recipe, model, data) gets its own ref naming its build record (engine/stages/build_names.h:
 * recipe/<name>/<model16>-<data16>):
 *   {"kind":"aqs-build","version":1,"recipe":NAME,"recipe_params":{...},
 *    "stages":{<stage>: D, ...every stage of the table...},
 *    "summary":{"groups":n,"candidates":n,"fp8":n,"effective_bits":x},"children":[...]}
 * Checking out, reports beside a checkout and the choice of output directory are the caller's
 * (cli/build_cli.c): the engine builds into the store only.
 * Errors: aqs_status + *e naming the recipe, stage, file or line at fault. Ownership: reports
 * are the caller's (plain structs); JSON documents returned are the caller's (json_decref).
 * Threads: one build per thread; several processes may build into one store at once. */
#ifndef AQS_STAGES_BUILD_H
#define AQS_STAGES_BUILD_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"
#include "engine/compute/scores.h"
#include "engine/export/plan.h"
#include "engine/model/amax.h"
#include "engine/stages/recipe.h"
#include "engine/stages/stage.h"
#include "store/store.h"

typedef struct aqs_build_opts {
  aqs_store *store;
  const char *model_dir;         /* source checkpoint (required) */
  const char *captions_path;     /* caption file for captions recipes */
  const char *images_path;       /* JSONL for images recipes */
  const char *images_root;
  int allow_outside_root;        /* image rows may leave images_root (--allow-outside-root) */
  const char *backend;           /* "cpu" (default) or "cuda" */
  int dry_run;                   /* aqs plan: look up only, explain misses */
  int skip_family_check;
  int skip_bad;                  /* calib-set: skip bad dataset rows instead of failing */
  int progress;                  /* progress bars on stderr */
  int eval;                      /* run the eval stage for every recipe (aqs build --eval) */
  /* --rebuild: stages computed even when cached (their chunk actions too); "all" = every one. */
  const char *const *rebuild;
  size_t n_rebuild;
  /* Hook for tests: each file the export of recipe export_hook_recipe writes is shown to
   * export_hook (which may change it) before it is stored; that export is always computed and
   * never recorded as the stage's result. */
  const char *export_hook_recipe;
  aqs_status (*export_hook)(void *ctx, const char *file_name, const char *path, aqs_err *e);
  void *export_hook_ctx;
  /* --devices (engine/stages/chunk_workers.h): with two entries or more, the chunks a chunked
   * stage misses are computed by one worker process per entry, each running argv again. */
  const struct aqs_devices *devices;
  char *const *argv;             /* this build's command line, NULL-terminated */
  /* Set in a chunk worker (AQS_CHUNK_WORKER): every stage before its target must hit; it computes
   * its chunks of the target, then the build stops (nothing recorded, checked or checked out). */
  struct aqs_chunk_worker *worker;
  /* The graph to walk; NULL = aqs_stage_table(). */
  const aqs_stage_def *const *table;
  size_t n_table;
} aqs_build_opts;

typedef struct aqs_build_report {
  char recipe[AQS_RECIPE_NAME_MAX];
  size_t n_stages;                           /* stages of the table walked */
  const char *stage_names[AQS_STAGE_MAX];
  aqs_stage_outcome stages[AQS_STAGE_MAX];   /* .done = 0 where a plan stopped (.blocked_by) */
  aqs_digest build_record;                   /* valid when !dry_run */
  size_t n_groups, n_candidates, n_fp8;      /* recorded by the slice stage */
  double effective_bits;
  char calib_note[512];                      /* "" or: the data has fewer usable rows than the
                                                calib samples asked for, so the set uses them all */
} aqs_build_report;

/* Builds (or plans, with dry_run) each recipe; reports[i] describes recipes[i].
 * After a family build (>= 2 recipes, not dry_run) checks pairwise that the checkpoints differ
 * exactly as their plans do (AQS_ERR_MISMATCH with the export diff's message otherwise).
 * A --rebuild name that is no stage of the table is AQS_ERR_INVALID. */
aqs_status aqs_build_recipes(const aqs_build_opts *opts, const aqs_recipe *recipes, size_t n,
                             aqs_build_report *reports, aqs_err *e);

/* Runs one stage of the table outside a walk (as a build does; opts->dry_run = look up only):
 * in[] are the results of its inputs, r its recipe (NULL for stages that read none, e.g.
 * "source"). AQS_ERR_INVALID for a name that is no stage. */
aqs_status aqs_build_run_stage(const aqs_build_opts *opts, const char *stage, const aqs_recipe *r,
                               const aqs_digest *in, aqs_stage_outcome *out, aqs_err *e);

/* The result of stage `stage` in a report, or NULL when the stage is not there or has none. */
const aqs_digest *aqs_build_report_result(const aqs_build_report *r, const char *stage);

/* ---- build records (build_record.c) ---- */

/* Records the build of r (its report filled by a build) and moves the build's ref
 * (build_names.h) to it, unless it already names it. */
aqs_status aqs_build_record_put(aqs_store *s, const aqs_recipe *r, aqs_build_report *rep, aqs_err *e);

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

/* A stored plan (the slice stage's result). */
aqs_status aqs_build_load_plan(aqs_store *s, const aqs_digest *d, aqs_plan **plan, aqs_err *e);
/* Stored scores (the sensitivity stage's result) into *sc (aqs_scores_free). */
aqs_status aqs_build_load_scores(aqs_store *s, const aqs_digest *d, aqs_scores *sc, aqs_err *e);
/* A stored amax table (the calibrate stage's result) into *t (aqs_amax_free). */
aqs_status aqs_build_load_amax(aqs_store *s, const aqs_digest *d, aqs_amax_table *t, aqs_err *e);

#endif
