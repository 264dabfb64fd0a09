/* engine/stages/slice.h: the slice stage's decision: which candidate groups go to FP8, from their
 * sensitivity scores, by coverage (top-k in a chosen order) or by an effective-bits budget (the
 * AutoQuantize search: least total score whose weight size meets the budget, solved exactly).
 * Pure computation: no store, no files. */
#ifndef AQS_STAGES_SLICE_H
#define AQS_STAGES_SLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"
#include "engine/stages/recipe.h"

/* One group of the scope, as the slice sees it. */
typedef struct aqs_slice_group {
  const char *id;        /* "lm.3.qkv"; ties in score are broken by id, bytewise */
  double score;          /* FP8 sensitivity: higher = more harmful to quantize */
  int64_t weight_params; /* elements of the members' .weight tensors (quantizable) */
  int64_t bias_params;   /* elements of the members' biases (always BF16) */
  int n_modules;         /* member linears: each FP8 one stores weight_scale + input_scale (F32) */
  bool candidate;        /* in scope, not disabled, passes the recipe's candidates filter */
} aqs_slice_group;

typedef struct aqs_slice_params {
  bool budget_mode;      /* false: coverage; true: effective_bits */
  double coverage;       /* 0..1 */
  double effective_bits; /* 8..16 */
  aqs_order order;       /* coverage mode only */
  uint64_t order_seed;   /* AQS_ORDER_RANDOM */
} aqs_slice_params;

typedef struct aqs_slice_result {
  size_t n_groups;       /* groups of the scope */
  size_t n_candidates;
  size_t n_fp8;
  double effective_bits; /* over every weight and bias of the scope's groups, scales counted */
  double fp8_score_sum;  /* Σ score of the FP8 groups */
} aqs_slice_result;

/* k = round-half-up(coverage × n_candidates), robust to binary fractions (0.3 × 5 = 2). */
size_t aqs_slice_coverage_count(double coverage, size_t n_candidates);

/* Bits the group occupies in FP8 or BF16 (scales counted). */
int64_t aqs_slice_group_bits(const aqs_slice_group *g, bool fp8);

/* The result of a given decision fp8[0..n): counts and effective bits (what a cached plan
 * reports without deciding again). */
void aqs_slice_summarize(const aqs_slice_group *groups, size_t n, const bool *fp8, aqs_slice_result *res);

/* Decides fp8_out[i] for each of the n groups (false for non-candidates).
 * Coverage: the first k candidates in the order. Budget: the candidate set of least total score
 * with effective bits <= target; AQS_ERR_INVALID naming the reachable minimum when the target is
 * below what all-candidates-FP8 gives. Deterministic. */
aqs_status aqs_slice_decide(const aqs_slice_group *groups, size_t n, const aqs_slice_params *p,
                            bool *fp8_out, aqs_slice_result *res, aqs_err *e);

/* The slice stage's key params for recipe r (new reference): scope, candidates, disabled, mode,
 * and coverage + order [+ order_seed] or effective_bits. Also the build record's slice part. */
json_t *aqs_slice_params_json(const aqs_recipe *r);

#endif
