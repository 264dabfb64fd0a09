/* tests/gpu/test_varied_batches.c: the CUDA backend on a long run of batches whose token counts all
 * differ, as captions of varied length give (the cuBLASLt plan cache once failed after 512 GEMM
 * shapes): calibration, gradient and kl_div sensitivity over 240 batches on the synthetic tiny
 * model, each compared with the CPU backend; the plan cache stays bounded and evicts, and a batch
 * scored again after all the evictions gives the same bits as its first run. */
#include "gpu_util.h"

#include "engine/compute/calibrate.h"
#include "engine/compute/lm.h"
#include "engine/compute/sensitivity.h"

#define N_BATCHES 240
#define MAX_SEQS 8
#define MAX_TOKENS (MAX_SEQS * 80)

typedef struct batch {
  int n_seqs, n_tokens;
  int32_t lens[MAX_SEQS];
  int32_t ids[MAX_TOKENS];
} batch;

static batch g_batches[N_BATCHES];
static char *g_tmp;
static aqs_lm *g_lm[2]; /* cpu, cuda */

/* Caption-like lengths (COCO: mostly 8-20 words, a tail to 50; about 1.3 tokens a word plus a
 * few prompt tokens): 85 % in 12..30 tokens, the rest 31..72. 3..8 sequences per batch. */
static void make_batches(int vocab) {
  uint64_t s = 20261202;
#define NEXT() (s = s * 6364136223846793005ull + 1442695040888963407ull, (int)(s >> 33))
  for (int b = 0; b < N_BATCHES; b++) {
    batch *x = &g_batches[b];
    x->n_seqs = 3 + NEXT() % 6;
    x->n_tokens = 0;
    for (int i = 0; i < x->n_seqs; i++) {
      x->lens[i] = NEXT() % 100 < 85 ? 12 + NEXT() % 19 : 31 + NEXT() % 42;
      for (int t = 0; t < x->lens[i]; t++) x->ids[x->n_tokens++] = NEXT() % vocab;
    }
  }
#undef NEXT
}

static aqs_token_batch tb_of(const batch *x) {
  return (aqs_token_batch){.n_seqs = x->n_seqs, .seq_lens = x->lens, .token_ids = x->ids};
}

static int count_distinct_token_counts(void) {
  int n = 0;
  for (int b = 0; b < N_BATCHES; b++) {
    int seen = 0;
    for (int c = 0; c < b && !seen; c++) seen = g_batches[c].n_tokens == g_batches[b].n_tokens;
    n += !seen;
  }
  return n;
}

static void test_calibration(void **state) {
  (void)state;
  aqs_amax_table *parts[2][N_BATCHES];
  aqs_err e;
  double worst = 0;
  for (int b = 0; b < N_BATCHES; b++) {
    aqs_token_batch tb = tb_of(&g_batches[b]);
    for (int side = 0; side < 2; side++) {
      parts[side][b] = calloc(1, sizeof(aqs_amax_table));
      if (aqs_calibrate_batch(g_lm[side], &tb, 0, parts[side][b], &e))
        fail_msg("calibrate batch %d (%d tokens) on %s: %s", b, g_batches[b].n_tokens, g_lm[side]->be->name, e.msg);
    }
    assert_int_equal(parts[0][b]->n, parts[1][b]->n);
    for (size_t i = 0; i < parts[0][b]->n; i++) {
      const aqs_amax_entry *c = &parts[0][b]->entries[i], *g = aqs_amax_find(parts[1][b], c->module);
      assert_non_null(g);
      worst = fmax(worst, fabs(g->input_amax - c->input_amax) / fmax(c->input_amax, 1e-30));
    }
  }
  printf("calibration: %d batches (%d distinct token counts), worst input_amax rel diff %.3g\n", N_BATCHES,
         count_distinct_token_counts(), worst);
  assert_true(worst <= 1e-4);
  /* both sides score with the CPU's reduced amax, so the scoring alone is compared below */
  aqs_amax_table reduced = {0};
  assert_int_equal(aqs_amax_reduce((const aqs_amax_table *const *)parts[0], N_BATCHES, &reduced, &e), AQS_OK);
  int64_t tokens = 0;
  for (int b = 0; b < N_BATCHES; b++) tokens += g_batches[b].n_tokens;
  assert_int_equal(reduced.n_tokens, tokens);
  for (int side = 0; side < 2; side++) assert_int_equal(aqs_lm_set_amax(g_lm[side], &reduced, &e), AQS_OK);
  aqs_amax_free(&reduced);
  for (int side = 0; side < 2; side++)
    for (int b = 0; b < N_BATCHES; b++) {
      aqs_amax_free(parts[side][b]);
      free(parts[side][b]);
    }
}

/* Spearman rank correlation (no ties among real scores). */
static double spearman(const double *a, const double *b, size_t n) {
  double d2 = 0;
  for (size_t i = 0; i < n; i++) {
    size_t ra = 0, rb = 0;
    for (size_t j = 0; j < n; j++) ra += a[j] < a[i], rb += b[j] < b[i];
    d2 += ((double)ra - (double)rb) * ((double)ra - (double)rb);
  }
  return n > 1 ? 1.0 - 6.0 * d2 / ((double)n * ((double)n * n - 1.0)) : 1.0;
}

static void run_method(aqs_sens_method method, double max_median_rel) {
  aqs_err e;
  double *sum[2] = {NULL, NULL};
  size_t ngroups = 0;
  aqs_scores first;
  for (int b = 0; b < N_BATCHES; b++) {
    aqs_token_batch tb = tb_of(&g_batches[b]);
    for (int side = 0; side < 2; side++) {
      aqs_scores sc;
      if (aqs_sensitivity_batch(g_lm[side], &tb, method, 0, &sc, NULL, &e))
        fail_msg("%s batch %d (%d tokens) on %s: %s", aqs_sens_method_name(method), b, g_batches[b].n_tokens,
                 g_lm[side]->be->name, e.msg);
      if (!sum[side]) sum[side] = calloc(sc.ngroups, sizeof(double));
      ngroups = sc.ngroups;
      for (size_t i = 0; i < sc.ngroups; i++) sum[side][i] += sc.groups[i].score;
      if (b == 0 && side == 1)
        first = sc;
      else
        aqs_scores_free(&sc);
    }
  }
  /* batch 0 again after every other batch's plans came and went: the same bits */
  aqs_token_batch tb0 = tb_of(&g_batches[0]);
  aqs_scores again;
  if (aqs_sensitivity_batch(g_lm[1], &tb0, method, 0, &again, NULL, &e)) fail_msg("again: %s", e.msg);
  for (size_t i = 0; i < ngroups; i++)
    assert_memory_equal(&first.groups[i].score, &again.groups[i].score, sizeof(double));
  aqs_scores_free(&first);
  aqs_scores_free(&again);
  double *rel = malloc(ngroups * sizeof *rel), worst = 0;
  for (size_t i = 0; i < ngroups; i++) {
    rel[i] = fabs(sum[0][i] - sum[1][i]) / fmax(fabs(sum[0][i]), 1e-300);
    worst = fmax(worst, rel[i]);
  }
  double rho = spearman(sum[0], sum[1], ngroups);
  for (size_t i = 1; i < ngroups; i++) /* insertion sort for the median */
    for (size_t j = i; j > 0 && rel[j - 1] > rel[j]; j--) {
      double t = rel[j];
      rel[j] = rel[j - 1];
      rel[j - 1] = t;
    }
  printf("%s: %d batches, %zu groups, Spearman %.5f, median rel err %.3g, max %.3g; batch 0 re-run: same bits\n",
         aqs_sens_method_name(method), N_BATCHES, ngroups, rho, rel[ngroups / 2], worst);
  assert_true(rho >= 0.99);
  assert_true(rel[ngroups / 2] <= max_median_rel);
  free(rel);
  free(sum[0]);
  free(sum[1]);
}

static void test_gradient(void **state) {
  (void)state;
  run_method(AQS_SENS_GRADIENT, 1e-3);
}
static void test_kl_div(void **state) {
  (void)state;
  run_method(AQS_SENS_KL_DIV, 1e-2);
}

/* After the whole run: the cache held at most its capacity and had to evict (the shapes exceed it). */
static void test_plan_cache_bounded(void **state) {
  (void)state;
  aqs_cuda_plan_stats st;
  aqs_cuda_gemm_plan_stats(&st);
  printf("plan cache: capacity %d, live %d, %llu hits, %llu misses, %llu evictions\n", st.capacity, st.live,
         (unsigned long long)st.hits, (unsigned long long)st.misses, (unsigned long long)st.evictions);
  assert_true(st.live <= st.capacity);
  assert_true(st.misses > 512);
  assert_true(st.evictions > 0);
}

int main(void) {
  gpu_open_or_skip();
  g_tmp = tu_mkdtemp("varied-batches");
  char dir[600];
  snprintf(dir, sizeof dir, "%s/tiny", g_tmp);
  if (tu_synth_model("tiny", 4, dir) != 0) return 1;
  aqs_backend *be[2] = {g_cpu, g_gpu};
  for (int side = 0; side < 2; side++) {
    aqs_err e;
    if (aqs_lm_load(be[side], dir, &g_lm[side], &e)) {
      printf("loading %s: %s\n", dir, e.msg);
      return 1;
    }
  }
  make_batches(g_lm[0]->cfg.vocab_size);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_calibration),
      cmocka_unit_test(test_gradient),
      cmocka_unit_test(test_kl_div),
      cmocka_unit_test(test_plan_cache_bounded),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  aqs_lm_free(g_lm[0]);
  aqs_lm_free(g_lm[1]);
  aqs_backend_close(g_cpu);
  aqs_backend_close(g_gpu);
  tu_rm_rf(g_tmp);
  free(g_tmp);
  return rc;
}
