/* engine/compute/scores.h: sensitivity scores per quantization group (what the sensitivity
 * stage stores and slice reads), their chunk reduce and JSON form.
 *
 * JSON (keys sorted, deterministic; "groups" in model group order; "ranking" least sensitive
 * first, ties broken by group order):
 *   {"format": "aqs-scores-1", "method": "gradient", "scope": "lm_only", "precision": "f32",
 *    "backend": "cpu", "device": "...", "n_tokens": 512, "n_seqs": 8, "n_batches": 1,
 *    "groups": [{"id": "lm.0.qkv", "layer": 0, "kind": "qkv", "weight_params": 12288,
 *                "bias_params": 192, "params": 12480,
 *                "members": [{"module": "...q_proj", "score": 1.5e-9}, ...],
 *                "formats": {"fp8": {"score": 3.2e-9, "cost_bytes": 12696},
 *                            "bf16": {"score": 0, "cost_bytes": 24960}}}, ...],
 *    "ranking": ["lm.3.o", ...]}
 * Scores are sums over batches and elements (gradient: sum (G dY)^2; kl_div: sum over tokens of
 * KL(p_ref || p_quant)). cost_bytes: fp8 = weight_params + 2*bias_params + 8 per member (weight
 * and input scales, F32); bf16 = 2*(weight_params + bias_params). */
#ifndef AQS_COMPUTE_SCORES_H
#define AQS_COMPUTE_SCORES_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/model/qwen_config.h"

typedef struct aqs_group_score {
  char id[32];                  /* "lm.3.qkv" */
  int layer;
  char kind[12];
  int nmembers;
  char members[AQS_QWEN_GROUP_MAX_MEMBERS][128];
  double member_score[AQS_QWEN_GROUP_MAX_MEMBERS]; /* gradient: per module; kl_div: 0 */
  double score;                 /* fp8 score of the group (sum of members for gradient) */
  uint64_t weight_params, bias_params;
} aqs_group_score;

typedef struct aqs_scores {
  char method[16];              /* "gradient" | "kl_div" */
  char scope[16];               /* "lm_only" */
  char precision[8];            /* "f32" | "bf16" */
  char backend[16];             /* "cpu" | "cuda" */
  char device[160];             /* provenance only; "" omits it from the JSON, which stages
                                   do so that the stored bytes do not depend on the machine */
  int64_t n_tokens, n_seqs, n_batches;
  size_t ngroups;
  aqs_group_score *groups;      /* model group order */
} aqs_scores;

void aqs_scores_free(aqs_scores *s);
/* FP8 / BF16 parameter bytes of a group (see above). */
uint64_t aqs_group_cost_fp8(const aqs_group_score *g);
uint64_t aqs_group_cost_bf16(const aqs_group_score *g);
/* Indices of groups sorted by increasing score (ties: group order); caller frees. */
size_t *aqs_scores_ranking(const aqs_scores *s);

/* out = sum of parts[0..n) in that order (fixed order: same bits however the chunks were
 * computed). Parts must have the same method, scope, precision, backend and groups
 * (AQS_ERR_MISMATCH naming what differs). Provenance (device) is taken from parts[0]. */
aqs_status aqs_scores_reduce(const aqs_scores *const *parts, size_t n, aqs_scores *out,
                             aqs_err *e);

aqs_status aqs_scores_to_json(const aqs_scores *s, char **out, aqs_err *e);
aqs_status aqs_scores_from_json(const char *json, size_t len, const char *what, aqs_scores *out,
                                aqs_err *e);
aqs_status aqs_scores_save(const aqs_scores *s, const char *path, aqs_err *e);
aqs_status aqs_scores_load(const char *path, aqs_scores *out, aqs_err *e);

#endif
