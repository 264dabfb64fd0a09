/* engine/stages/eval_stage.h: the eval stage (DESIGN.md §2): a built checkpoint (or the BF16
 * source, name "bf16") run as it is served against the BF16 source on held-out captions
 * (engine/compute/eval.h gives the metrics). Cached as an action:
 *   inputs {checkpoint: export result (or source digest for bf16), source, eval_set: calib-set}
 *   params {first_seq, n_seqs, backend, precision}
 * result {"kind":"aqs-eval","version":1,"metrics":{...},"eval_set":{...},"backend","precision"}.
 * The eval set: the caption file's calib-set built with calibration's seed and settings for
 * calib_samples + samples rows; the rows after calibration's are held out (the sample order is
 * prefix-stable, engine/calib/calibset.h). With eval_captions (a separate file) its first
 * `samples` rows are used instead. Schemes calibrated on image+caption rows (recipe modality
 * images) are evaluated the same way on the held-out rows of the image JSONL: both towers run,
 * the scheme's FP8 vision linears as served, metrics on the caption tokens.
 * Threads: one call at a time per store handle. */
#ifndef AQS_STAGES_EVAL_STAGE_H
#define AQS_STAGES_EVAL_STAGE_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "common/workspace.h"
#include "engine/compute/eval.h"
#include "store/store.h"

#define AQS_EVAL_STAGE_NAME "eval"
#define AQS_EVAL_DEFAULT_SAMPLES 32
#define AQS_EVAL_BASELINE "bf16"

typedef struct aqs_eval_opts {
  aqs_store *store;
  const char *model_dir;         /* the BF16 source every name was built from (required) */
  const char *captions_path;     /* calibration's caption file (held-out rows are used) */
  const char *eval_captions;     /* or: a separate eval caption file (NULL = held out) */
  const char *images_path;       /* calibration's image+caption JSONL (image schemes) */
  const char *images_root;       /* its image root (NULL = the JSONL's directory) */
  int allow_outside_root;        /* image rows may leave images_root */
  int64_t samples;               /* eval sequences; 0 = AQS_EVAL_DEFAULT_SAMPLES */
  const char *backend;           /* "cpu" (default) or "cuda" */
  aqs_precision precision;       /* AQS_PREC_BF16: as served (default); F32 for reference work */
  const char *recipes_dir;       /* workspace recipes, for the baseline's calibration settings */
  int progress;
  int lookup_only;               /* aqs plan: the eval set is looked up, never built (a miss
                                    leaves it zero, so the eval action misses too) */
} aqs_eval_opts;

/* One evaluated name. */
typedef struct aqs_eval_row {
  char name[64];                 /* recipe name or "bf16" */
  int hit;                       /* 1: metrics came from the store */
  aqs_digest key, result;        /* action key, metrics document */
  aqs_digest checkpoint;
  aqs_eval_metrics m;
  double effective_bits;         /* 16 for bf16 */
  int64_t n_fp8, n_candidates;
  int kv_fp8;
  int eval_images;               /* 1: the eval set holds image+caption rows */
  uint64_t ckpt_bytes;           /* safetensors bytes of the checkpoint */
  uint64_t bf16_bytes;           /* the same for the BF16 source */
  char order[32];                /* the recipe's slice order ("least_sensitive_first", ...) */
  int has_sensitivity;           /* built names: the build's sensitivity stage result */
  aqs_digest sensitivity;
  double coverage;               /* recipe coverage (0..1), -1 in budget mode / bf16 */
  double seconds;
} aqs_eval_row;

/* Evaluates names[0..n) (each a built recipe, ref or build digest, or "bf16") into rows[0..n).
 * The eval set follows the first built name's calibration (seed, samples, max_len, template);
 * with only "bf16" the built-in lm_only recipe's. Errors: AQS_ERR_INVALID (image schemes and no
 * images_path: "pass --images FILE"), AQS_ERR_NOT_FOUND (no such build),
 * AQS_ERR_MISMATCH (a build of another source than model_dir), AQS_ERR_INVALID (no held-out
 * captions left: "captions.txt has 64 usable captions and calibration uses 64 of them; pass
 * --captions FILE"), compute errors. */
aqs_status aqs_eval_names(const aqs_eval_opts *o, const char *const *names, size_t n,
                          aqs_eval_row *rows, aqs_err *e);

/* ---- one eval set, several checkpoints (the build's eval stage, stage_eval.c) ---- */

/* The calibration settings the held-out rows are chosen against. */
typedef struct aqs_eval_calib {
  int64_t samples, seed, max_len, chunk;
  char template_name[32];
  int images;                    /* calibrated on image+caption rows */
} aqs_eval_calib;
struct aqs_recipe;
void aqs_eval_calib_of_recipe(const struct aqs_recipe *r, aqs_eval_calib *c);

typedef struct aqs_eval_session aqs_eval_session;
/* The source digest and the eval set (a cached calib-set) of c; o must outlive the session. */
aqs_status aqs_eval_session_open(const aqs_eval_opts *o, const aqs_eval_calib *c, aqs_eval_session **out,
                                 aqs_err *e);
/* The eval action's key parts for a checkpoint (new references). */
void aqs_eval_session_key(const aqs_eval_session *s, const aqs_digest *checkpoint, json_t **inputs,
                          json_t **params);
/* Computes checkpoint's metrics (the source digest = the BF16 baseline) and stores the result
 * document ({"kind":"aqs-eval", "metrics", "params"}) in *result. Loads the reference once. */
aqs_status aqs_eval_session_compute(aqs_eval_session *s, const aqs_digest *checkpoint, const char *name,
                                    const json_t *params, aqs_eval_metrics *m, aqs_digest *result, aqs_err *e);
void aqs_eval_session_close(aqs_eval_session *s);
/* Metrics of a stored result document. */
aqs_status aqs_eval_result_load(aqs_store *s, const aqs_digest *result, aqs_eval_metrics *m, aqs_err *e);

/* The source stage's result for o->model_dir (runs or reuses the source stage). */
aqs_status aqs_eval_source(const aqs_eval_opts *o, aqs_digest *out, aqs_err *e);

/* The rows as JSON (caller json_decref's). */
json_t *aqs_eval_rows_json(const aqs_eval_row *rows, size_t n);

/* Loads a cached metrics document into row->m (for reports). */
aqs_status aqs_eval_metrics_from_json(const json_t *doc, aqs_eval_metrics *m, aqs_err *e);

#endif
