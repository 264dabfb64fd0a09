/* engine/stages/stage.h: the stage protocol (DESIGN.md §2). A stage is one file in engine/stages/
 * holding one aqs_stage_def: its name and version, the stages whose results it reads, the recipe
 * keys its key depends on, how it computes its key, how it runs a miss and what it records. The
 * table of all stages (stage_table.c, in graph order) is what build, plan, show and --rebuild
 * walk. Running a stage is a cached action: the key is the digest of the canonical
 * {stage, stage_version, inputs, params} document (store/canon_json.h); a hit returns the stored
 * result digest, a miss is run and recorded. For `aqs plan`, a miss is explained against the
 * nearest cached action of the same stage.
 * Errors: every function returns an aqs_status and fills *e (common/err.h); nothing is left
 * recorded for a stage whose run failed. Threads: a job and its env belong to one thread; the
 * store may be shared (store/store.h). Ownership: each struct says who frees what. */
#ifndef AQS_STAGES_STAGE_H
#define AQS_STAGES_STAGE_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"
#include "store/store.h"

/* One stage run in progress. Fill with aqs_stage_lookup, finish with aqs_stage_record (on a miss),
 * release with aqs_stage_ctx_free. */
typedef struct aqs_stage_ctx {
  const char *stage;        /* static name: "source", "calib-set", "calibrate", ... */
  aqs_digest key;
  char *key_doc;            /* canonical key document (owned) */
  int hit;                  /* 1: result is valid and came from the store */
  aqs_digest result;
  double start_s;           /* monotonic clock at lookup, for the wall time of a miss */
  aqs_store *store;         /* on a miss: the store whose lease this process holds */
  int leased;               /* 1: the action's lease is ours until recorded or freed */
} aqs_stage_ctx;

/* What happened to one stage of a build (for reports, aqs plan and --json). */
typedef struct aqs_stage_outcome {
  int hit;                  /* 1 = reused from the store */
  aqs_digest key;
  aqs_digest result;
  double seconds;           /* time spent in this stage (lookup included) */
  char reason[512];         /* for a miss: why (filled by callers that ask, e.g. aqs plan) */
  int done;                 /* 1 = reached (a plan stops at a miss) */
  int has_result;           /* 1 = result is valid (a hit, or a miss that ran) */
  int forced;               /* 1 = computed because of --rebuild although cached */
  char blocked_by[32];      /* not reached: the stage that missed first upstream */
} aqs_stage_outcome;

/* Computes the action key of (stage, version, inputs, params) and looks it up (counting a lookup
 * and a hit or miss under the stage's name). A miss is not an error: ctx->hit = 0.
 * inputs: object name -> "sha256:<hex>"; params: any JSON (both borrowed, may be NULL).
 * store may be NULL (key only; always a miss). On a miss in a writable store the action is leased
 * to this process (aqs_action_claim): a concurrent builder computing it is waited for and its
 * result becomes a hit; aqs_stage_record or aqs_stage_ctx_free drops the lease.
 * Errors: AQS_ERR_INVALID (bad inputs), AQS_ERR_IO. */
aqs_status aqs_stage_lookup(aqs_store *store, const char *stage, const char *version,
                            const json_t *inputs, const json_t *params, aqs_stage_ctx *ctx,
                            aqs_err *e);

/* Records a miss's result (already put in the store) under ctx's key, with the wall time since
 * the lookup as provenance; sets ctx->result and ctx->hit stays 0. A record for the same key
 * (a --rebuild, or another process that raced us) is replaced. store NULL: sets ctx->result only.
 * Errors: AQS_ERR_IO (also for a read-only store), prefixed "recording stage <name>". */
aqs_status aqs_stage_record(aqs_store *store, aqs_stage_ctx *ctx, const aqs_digest *result, aqs_err *e);

/* Frees ctx's key document (ctx itself is the caller's). NULL is a no-op. */
void aqs_stage_ctx_free(aqs_stage_ctx *ctx);

/* Why key_doc (a canonical key document of `stage`) is not cached: compares it with every cached
 * action of that stage and describes the differences from the nearest one (fewest differing
 * fields, newest first on ties), e.g. "params.seed 0 -> 1" or "inputs.calib_set sha256:1a2b3c4d5e6f
 * -> sha256:...". "never built" when the stage has no cached action. Writes into buf (truncated
 * with "..." when long). Errors: AQS_ERR_IO. */
aqs_status aqs_stage_miss_reason(aqs_store *store, const char *stage, const char *key_doc,
                                 char *buf, size_t buf_len, aqs_err *e);

/* Puts doc's canonical JSON (store/canon_json.h) as a zstd object; manifest = 1 marks it as a
 * manifest whose "children" the store records. doc is borrowed. Errors: those of aqs_put_mem
 * and AQS_ERR_INVALID (a document canon_json refuses). */
aqs_status aqs_put_json(aqs_store *store, const json_t *doc, int manifest, aqs_digest *out, aqs_err *e);

/* Monotonic seconds, for timing stages. */
double aqs_stage_now_s(void);

/* ---- the protocol ---- */

#define AQS_STAGE_MAX_INPUTS 4
#define AQS_STAGE_MAX 16

struct aqs_recipe;
struct aqs_stage_env;     /* the build's shared state (stage_env.h); NULL outside a build */
struct aqs_build_report;  /* build.h */

/* One stage of one recipe, as its functions see it. Filled by the caller (build.c walks the
 * table; a plumbing command may run one stage alone), released with def->release. */
typedef struct aqs_stage_job {
  aqs_store *store;
  struct aqs_stage_env *env;
  const struct aqs_recipe *recipe;
  aqs_digest in[AQS_STAGE_MAX_INPUTS]; /* results of def->inputs, in that order */
  int rebuild;                         /* compute even on a hit (chunk actions too) */
  int no_record;                       /* set by key(): the run's result is not recorded */
  struct aqs_build_report *report;     /* where record() writes its summary; may be NULL */
  void *state;                         /* the stage's own, from key() to run(); def->release frees */
  int pooled;                          /* run on a thread beside the same stage of other recipes
                                          (def->concurrent): no progress bar of its own */
  char diag[256];                      /* a line for stderr the build prints after the stage, in
                                          recipe order (export: AQS_EXPORT_TIMING); "" = none */
} aqs_stage_job;

typedef struct aqs_stage_def {
  const char *name;     /* in key documents, build records, plan output, --rebuild */
  const char *version;  /* bump when the result bytes would change for the same key */
  const char *inputs[AQS_STAGE_MAX_INPUTS + 1]; /* stages whose results it reads (NULL-ended) */
  const char *recipe_keys; /* space-separated "section.key" its key depends on (recipe_keys.c) */
  /* The key document's parts: new references (params may be NULL). May set job->state. */
  aqs_status (*key)(aqs_stage_job *job, json_t **inputs, json_t **params, aqs_err *e);
  /* Computes a miss and stores the result (its digest in *result); ctx is the lookup. */
  aqs_status (*run)(aqs_stage_job *job, aqs_stage_ctx *ctx, aqs_digest *result, aqs_err *e);
  /* Optional: after a hit or a run, adds what the stage records to job->report (slice: the
   * summary), from the stored result only: a hit computes nothing. */
  aqs_status (*record)(aqs_stage_job *job, const aqs_digest *result, aqs_err *e);
  /* Optional: frees job->state. */
  void (*release)(aqs_stage_job *job);
  /* Optional: 0 when this recipe's build skips the stage (eval: only with an [eval] section or
   * aqs build --eval); a skipped stage is not in the build's report or record. */
  int (*wanted)(const aqs_stage_job *job);
  /* 1: a build of several recipes may run this stage of its later recipes at once, on threads
   * (build_pool.c), after the first recipe's: run() then touches only its job, the store and
   * the env's thread-safe parts (stage_env.h), and its results must not depend on the order. */
  int concurrent;
} aqs_stage_def;

/* Runs def for job: key, lookup; a hit (unless job->rebuild) gives the stored result; else with
 * lookup_only the miss is explained in out->reason, otherwise def->run computes it and the
 * action is recorded. Then def->record on the result. Calls def->release before returning. */
aqs_status aqs_stage_exec(const aqs_stage_def *def, aqs_stage_job *job, int lookup_only, aqs_stage_outcome *out,
                          aqs_err *e);

/* The stage table in graph order (every stage after its inputs); *n_out = its length. Static:
 * never freed, safe from any thread. */
const aqs_stage_def *const *aqs_stage_table(size_t *n_out);
/* Index of a stage in the table, or -1. */
int aqs_stage_index(const char *name);

/* Result text helpers of stage files: put a NUL-terminated text as a zstd object / get an object
 * as malloc'd NUL-terminated text (*len without the NUL; the caller frees). Errors: those of
 * aqs_put_mem / aqs_get_mem, AQS_ERR_NOMEM. jdigest: a new JSON string "sha256:<hex>". */
aqs_status aqs_stage_put_text(aqs_store *s, const char *text, aqs_digest *out, aqs_err *e);
aqs_status aqs_stage_get_text(aqs_store *s, const aqs_digest *d, char **text, size_t *len, aqs_err *e);
json_t *aqs_stage_jdigest(const aqs_digest *d);

#endif
