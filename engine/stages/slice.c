/* engine/stages/slice.c: coverage and effective-bits selection of FP8 groups (see slice.h).
 * The budget search is exact: candidates with the same size saving are interchangeable except
 * for their scores, so within such a bucket only "the k least sensitive" choices matter; a
 * Pareto frontier (saving up, score down) over buckets then finds the optimum. */
#include "engine/stages/slice.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t aqs_slice_coverage_count(double coverage, size_t n_candidates) {
  double x = coverage * (double)n_candidates;
  size_t k = (size_t)floor(x + 0.5 + 1e-9);
  return k > n_candidates ? n_candidates : k;
}

int64_t aqs_slice_group_bits(const aqs_slice_group *g, bool fp8) {
  if (!fp8) return (g->weight_params + g->bias_params) * 16;
  return g->weight_params * 8 + g->bias_params * 16 + (int64_t)g->n_modules * 2 * 32;
}

static const aqs_slice_group *sort_groups; /* qsort context (single-threaded use) */

static int by_score_then_id(const void *a, const void *b) {
  const aqs_slice_group *ga = &sort_groups[*(const size_t *)a], *gb = &sort_groups[*(const size_t *)b];
  if (ga->score < gb->score) return -1;
  if (ga->score > gb->score) return 1;
  return strcmp(ga->id, gb->id);
}

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* idx[0..m) = candidate indices in the recipe's order. */
static void order_candidates(const aqs_slice_group *g, size_t *idx, size_t m, aqs_order order, uint64_t seed) {
  sort_groups = g;
  qsort(idx, m, sizeof *idx, by_score_then_id);
  if (order == AQS_ORDER_MOST_SENSITIVE_FIRST) {
    for (size_t i = 0; i < m / 2; i++) {
      size_t t = idx[i];
      idx[i] = idx[m - 1 - i];
      idx[m - 1 - i] = t;
    }
  } else if (order == AQS_ORDER_RANDOM) {
    /* Fisher-Yates over the id-sorted list, so the result depends on the seed only. */
    uint64_t s = seed;
    for (size_t i = m; i > 1; i--) {
      size_t j = (size_t)(splitmix64(&s) % i);
      size_t t = idx[i - 1];
      idx[i - 1] = idx[j];
      idx[j] = t;
    }
  }
}

typedef struct frontier_point {
  int64_t saving; /* bits saved against all-BF16 */
  double score;
  int32_t prev;   /* index in the previous layer */
  int32_t k;      /* groups taken from this layer's bucket */
} frontier_point;

static int by_saving_desc(const void *a, const void *b) {
  const frontier_point *x = a, *y = b;
  if (x->saving != y->saving) return x->saving > y->saving ? -1 : 1;
  if (x->score != y->score) return x->score < y->score ? -1 : 1;
  return 0;
}

/* Budget mode: minimum Σ score over candidate sets with Σ saving >= need. */
static aqs_status decide_budget(const aqs_slice_group *g, size_t *idx, size_t m, int64_t need,
                                bool *fp8_out, aqs_err *e) {
  /* Buckets of equal saving, each sorted by score (idx is sorted by score then id already). */
  size_t *bucket_of = malloc((m + 1) * sizeof *bucket_of);
  int64_t *bucket_saving = malloc((m + 1) * sizeof *bucket_saving);
  size_t n_buckets = 0;
  if (!bucket_of || !bucket_saving) {
    free(bucket_of);
    free(bucket_saving);
    return aqs_errf(e, AQS_ERR_NOMEM, "slice: out of memory");
  }
  for (size_t i = 0; i < m; i++) {
    int64_t s = aqs_slice_group_bits(&g[idx[i]], false) - aqs_slice_group_bits(&g[idx[i]], true);
    size_t b = 0;
    while (b < n_buckets && bucket_saving[b] != s) b++;
    if (b == n_buckets) bucket_saving[n_buckets++] = s;
    bucket_of[i] = b;
  }
  frontier_point **layers = calloc(n_buckets + 1, sizeof *layers);
  size_t *layer_n = calloc(n_buckets + 1, sizeof *layer_n);
  aqs_status st = AQS_OK;
  layers[0] = malloc(sizeof(frontier_point));
  layers[0][0] = (frontier_point){0, 0.0, -1, 0};
  layer_n[0] = 1;
  for (size_t b = 0; b < n_buckets && st == AQS_OK; b++) {
    size_t members = 0;
    for (size_t i = 0; i < m; i++) members += bucket_of[i] == b;
    double *prefix = malloc((members + 1) * sizeof *prefix);
    prefix[0] = 0.0;
    for (size_t i = 0, c = 0; i < m; i++)
      if (bucket_of[i] == b) {
        prefix[c + 1] = prefix[c] + g[idx[i]].score;
        c++;
      }
    size_t cand_n = layer_n[b] * (members + 1);
    frontier_point *cand = malloc(cand_n * sizeof *cand);
    if (!cand || cand_n > (size_t)INT32_MAX) {
      free(prefix);
      free(cand);
      st = aqs_errf(e, AQS_ERR_NOMEM, "slice: budget search frontier too large");
      break;
    }
    size_t c = 0;
    for (size_t p = 0; p < layer_n[b]; p++)
      for (size_t k = 0; k <= members; k++) {
        int64_t saving = layers[b][p].saving + (int64_t)k * bucket_saving[b];
        cand[c++] = (frontier_point){saving < need ? saving : need, layers[b][p].score + prefix[k],
                                     (int32_t)p, (int32_t)k};
      }
    free(prefix);
    /* Keep the Pareto frontier: walking by saving descending, a point survives only if its score
     * is strictly lower than every point with at least its saving. Points that already meet the
     * need are all equivalent in saving: keep just the cheapest of them. */
    qsort(cand, c, sizeof *cand, by_saving_desc);
    size_t w = 0;
    double best = INFINITY;
    for (size_t i = 0; i < c; i++) {
      frontier_point pt = cand[i];
      if (pt.score < best) {
        cand[w++] = pt;
        best = pt.score;
      }
    }
    layers[b + 1] = cand;
    layer_n[b + 1] = w;
  }
  if (st == AQS_OK) {
    frontier_point *last = layers[n_buckets];
    int32_t pick = -1;
    for (size_t i = 0; i < layer_n[n_buckets]; i++)
      if (last[i].saving >= need && (pick < 0 || last[i].score < last[pick].score)) pick = (int32_t)i;
    if (pick < 0) {
      st = aqs_errf(e, AQS_ERR_INTERNAL, "slice: no feasible set"); /* caller checked feasibility */
    } else {
      size_t *take = calloc(n_buckets + 1, sizeof *take);
      for (size_t b = n_buckets; b > 0; b--) {
        take[b - 1] = (size_t)layers[b][pick].k;
        pick = layers[b][pick].prev;
      }
      for (size_t i = 0; i < m; i++)
        if (take[bucket_of[i]] > 0) {
          fp8_out[idx[i]] = true;
          take[bucket_of[i]]--;
        }
      free(take);
    }
  }
  for (size_t b = 0; b <= n_buckets; b++) free(layers[b]);
  free(layers);
  free(layer_n);
  free(bucket_of);
  free(bucket_saving);
  return st;
}

aqs_status aqs_slice_decide(const aqs_slice_group *groups, size_t n, const aqs_slice_params *p,
                            bool *fp8_out, aqs_slice_result *res, aqs_err *e) {
  memset(res, 0, sizeof *res);
  res->n_groups = n;
  size_t *idx = malloc((n + 1) * sizeof *idx);
  if (!idx) return aqs_errf(e, AQS_ERR_NOMEM, "slice: out of memory");
  size_t m = 0;
  int64_t bits_bf16 = 0, bits_all_fp8 = 0, params = 0;
  for (size_t i = 0; i < n; i++) {
    fp8_out[i] = false;
    if (!isfinite(groups[i].score)) {
      free(idx);
      return aqs_errf(e, AQS_ERR_NUMERIC, "slice: group %s has a non-finite score", groups[i].id);
    }
    if (groups[i].candidate) idx[m++] = i;
    bits_bf16 += aqs_slice_group_bits(&groups[i], false);
    bits_all_fp8 += aqs_slice_group_bits(&groups[i], groups[i].candidate);
    params += groups[i].weight_params + groups[i].bias_params;
  }
  res->n_candidates = m;
  aqs_status st = AQS_OK;
  if (!p->budget_mode) {
    order_candidates(groups, idx, m, p->order, p->order_seed);
    size_t k = aqs_slice_coverage_count(p->coverage, m);
    for (size_t i = 0; i < k; i++) fp8_out[idx[i]] = true;
  } else if (params > 0) {
    order_candidates(groups, idx, m, AQS_ORDER_LEAST_SENSITIVE_FIRST, 0);
    /* bits(Q) <= target × params  <=>  saving(Q) >= bits_bf16 - target × params */
    double target_bits = p->effective_bits * (double)params;
    int64_t need = (int64_t)ceil((double)bits_bf16 - target_bits - 1e-6);
    if (need > 0 && (double)bits_all_fp8 > target_bits + 1e-6)
      st = aqs_errf(e, AQS_ERR_INVALID,
                    "slice: effective bits %.3g is out of reach: with every candidate group in FP8 it is %.4f",
                    p->effective_bits, (double)bits_all_fp8 / (double)params);
    else if (need > 0)
      st = decide_budget(groups, idx, m, need, fp8_out, e);
  }
  free(idx);
  if (st) return st;
  aqs_slice_summarize(groups, n, fp8_out, res);
  return AQS_OK;
}

void aqs_slice_summarize(const aqs_slice_group *groups, size_t n, const bool *fp8, aqs_slice_result *res) {
  memset(res, 0, sizeof *res);
  res->n_groups = n;
  int64_t bits = 0, params = 0;
  for (size_t i = 0; i < n; i++) {
    bits += aqs_slice_group_bits(&groups[i], fp8[i]);
    params += groups[i].weight_params + groups[i].bias_params;
    res->n_candidates += groups[i].candidate;
    if (fp8[i]) {
      res->n_fp8++;
      res->fp8_score_sum += groups[i].score;
    }
  }
  res->effective_bits = params ? (double)bits / (double)params : 16.0;
}
