/* engine/stages/recipe.h: recipes: INI files (read with inih) that name every stage parameter
 * of a build. A recipe may `extends` another; the built-in ones (recipes/NAME.ini) are embedded in the
 * binary, workspace recipes (a directory of *.ini) may add to or shadow them.
 * Every key a recipe sets is validated: unknown key, bad value or an extends cycle is refused with
 * "<file>:<line>: <what>". */
#ifndef AQS_STAGES_RECIPE_H
#define AQS_STAGES_RECIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/compute/sensitivity.h"
#include "engine/model/qwen_config.h"

typedef enum { AQS_MODALITY_CAPTIONS = 0, AQS_MODALITY_IMAGES = 1 } aqs_modality;
/* Candidate groups inside the scope: all, MLP kinds, attention kinds, the vision tower's groups
 * (vis.*, "visual.*" in recipes) or the language model's (lm.*). */
typedef enum {
  AQS_CANDIDATES_ALL = 0,
  AQS_CANDIDATES_MLP = 1,
  AQS_CANDIDATES_ATTN = 2,
  AQS_CANDIDATES_VISUAL = 3,
  AQS_CANDIDATES_LM = 4
} aqs_candidates;
typedef enum {
  AQS_ORDER_LEAST_SENSITIVE_FIRST = 0,
  AQS_ORDER_MOST_SENSITIVE_FIRST = 1,
  AQS_ORDER_RANDOM = 2
} aqs_order;

#define AQS_RECIPE_NAME_MAX 64
#define AQS_RECIPE_TEXT_MAX 256

/* A fully resolved recipe: every field has a value (defaults filled, extends applied). */
typedef struct aqs_recipe {
  char name[AQS_RECIPE_NAME_MAX];
  char description[AQS_RECIPE_TEXT_MAX];
  /* [calib] */
  aqs_modality modality;
  int64_t calib_samples;   /* sequences used for amax calibration */
  int64_t max_len;         /* tokens per sequence, at most */
  int64_t seed;            /* caption/image sampling seed */
  char template_name[32];  /* "none" or "chat" */
  int64_t chunk_sequences; /* sequences per calib-set chunk (the unit of chunked stages) */
  /* [sensitivity] */
  aqs_sens_method method;  /* engine/compute/sensitivity.h */
  int64_t score_samples;   /* sequences used for scoring (a prefix of the calib set) */
  aqs_qwen_scope scope;    /* lm_only or all_layers (engine/model/qwen_config.h) */
  aqs_candidates candidates;
  char disabled[AQS_RECIPE_TEXT_MAX]; /* comma-separated fnmatch globs of module names kept BF16 */
  /* [slice] */
  bool budget_mode;        /* true: effective_bits is the target; false: coverage */
  double coverage;         /* fraction of candidate groups in FP8, 0..1 */
  double effective_bits;   /* target average bits over candidate-scope weights, 8..16 */
  aqs_order order;
  int64_t order_seed;      /* for AQS_ORDER_RANDOM */
  /* [export] */
  char export_format[32];  /* "modelopt_fp8" */
  bool kv_cache_fp8;       /* [export] kv_cache = fp8: FP8 KV cache scales (calibrate keeps K/V amax) */
  /* [eval] */
  int64_t eval_samples;    /* > 0: the build evaluates the checkpoint on that many held-out rows */
} aqs_recipe;

/* Where recipes come from: the built-ins plus, optionally, one workspace directory. */
typedef struct aqs_recipe_source {
  const char *workspace_dir; /* directory of NAME.ini files, or NULL */
} aqs_recipe_source;

/* Resolves recipe NAME: reads NAME.ini from the workspace dir (if present) else the built-in,
 * follows `extends` (cycle -> AQS_ERR_INVALID naming the file and line of the extends), validates
 * each key (unknown key / bad value -> AQS_ERR_INVALID "<file>:<line>: ..."), fills defaults.
 * Unknown NAME -> AQS_ERR_NOT_FOUND listing where it looked. */
aqs_status aqs_recipe_load(const aqs_recipe_source *src, const char *name, aqs_recipe *out, aqs_err *e);

/* Names of all recipes visible from src (built-ins and workspace), sorted, deduplicated.
 * *names_out is malloc'd (free each then the array). */
aqs_status aqs_recipe_list(const aqs_recipe_source *src, char ***names_out, size_t *n_out, aqs_err *e);

/* Text of a built-in recipe file, or NULL. */
const char *aqs_recipe_builtin_text(const char *name);

/* Canonical name of enum values, as written in recipes. */
const char *aqs_modality_name(aqs_modality m);
const char *aqs_candidates_name(aqs_candidates c);
const char *aqs_order_name(aqs_order o);

#endif
