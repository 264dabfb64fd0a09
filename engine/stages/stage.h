/* engine/stages/stage.h: running a stage as a cached action (DESIGN.md §2): the key is the digest
 * of the canonical {stage, stage_version, inputs, params} document (store/canon_json.h); a hit
 * returns the stored result digest, a miss is run by the caller and recorded. For `aqs plan`, a
 * miss is explained against the nearest cached action of the same stage. */
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
 * the lookup as provenance; sets ctx->result and ctx->hit stays 0. */
aqs_status aqs_stage_record(aqs_store *store, aqs_stage_ctx *ctx, const aqs_digest *result, aqs_err *e);

void aqs_stage_ctx_free(aqs_stage_ctx *ctx);

/* Why key_doc (a canonical key document of `stage`) is not cached: compares it with every cached
 * action of that stage and describes the differences from the nearest one (fewest differing
 * fields, newest first on ties), e.g. "params.seed 0 -> 1" or "inputs.calib_set sha256:1a2b3c4d5e6f
 * -> sha256:...". "never built" when the stage has no cached action. Writes into buf (truncated
 * with "..." when long). Errors: AQS_ERR_IO. */
aqs_status aqs_stage_miss_reason(aqs_store *store, const char *stage, const char *key_doc,
                                 char *buf, size_t buf_len, aqs_err *e);

/* Puts doc's canonical JSON (store/canon_json.h) as a zstd object; manifest = 1 marks it as a
 * manifest whose "children" the store records. */
aqs_status aqs_put_json(aqs_store *store, const json_t *doc, int manifest, aqs_digest *out, aqs_err *e);

/* Monotonic seconds, for timing stages. */
double aqs_stage_now_s(void);

#endif
