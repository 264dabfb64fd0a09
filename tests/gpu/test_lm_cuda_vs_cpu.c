/* tests/gpu/test_lm_cuda_vs_cpu.c: whole-model evidence that the CUDA backend computes what the CPU
 * reference does: on synthetic tiny and small checkpoints (written by `aqs synth-model`), the
 * logits (F32 and BF16 modes), the calibration amax table, and the gradient and kl_div scores of
 * every group (value and rank) agree; CUDA scores are the same bits on a second run, which recomputes
 * each layer in the backward instead of keeping its activations. */
#include "gpu_util.h"

#include "engine/compute/calibrate.h"
#include "engine/compute/lm.h"
#include "engine/compute/lm_internal.h"
#include "engine/compute/sensitivity.h"

static char *g_tmp;

/* Writes the preset checkpoint with our binary; returns its directory (static buffer per preset). */
static const char *synth(const char *preset) {
  static char dirs[2][512];
  char *dir = dirs[strcmp(preset, "tiny") == 0 ? 0 : 1];
  snprintf(dir, 512, "%s/%s", g_tmp, preset);
  if (tu_synth_model(preset, 3, dir) != 0) fail_msg("synth-model %s failed", preset);
  return dir;
}

static void make_batch(int n_seqs, int vocab, int32_t *ids, int32_t *lens, int *n_tokens) {
  static const int kLens[] = {64, 17, 1, 40, 64, 33, 9, 50};
  int n = 0;
  uint64_t s = 12345;
  for (int i = 0; i < n_seqs; i++) {
    lens[i] = kLens[i % 8];
    for (int t = 0; t < lens[i]; t++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      ids[n++] = (int32_t)((s >> 33) % (uint64_t)vocab);
    }
  }
  *n_tokens = n;
}

static aqs_lm *load(aqs_backend *be, const char *dir) {
  aqs_lm *lm;
  aqs_err e;
  if (aqs_lm_load(be, dir, &lm, &e)) fail_msg("loading %s on %s: %s", dir, be->name, e.msg);
  return lm;
}

/* Forward logits on both backends; returns the max error relative to max |logit|. */
static double logits_rel_err(aqs_lm *lc, aqs_lm *lg, const int32_t *ids, const int32_t *lens, int n_seqs) {
  aqs_lm *lms[2] = {lc, lg};
  float *host[2];
  size_t n = 0;
  aqs_err e;
  for (int side = 0; side < 2; side++) {
    aqs_lm_batch b;
    aqs_lm_ws *ws;
    assert_int_equal(aqs_lm_batch_make(lms[side], ids, lens, n_seqs, 0, &b, &e), AQS_OK);
    assert_int_equal(aqs_lm_ws_alloc(lms[side], &b, 0, 0, &ws, &e), AQS_OK);
    if (aqs_lm_forward(lms[side], &b, ws, NULL, NULL, &e)) fail_msg("forward: %s", e.msg);
    n = (size_t)b.n_tokens * (size_t)lms[side]->cfg.vocab_size;
    host[side] = malloc(n * sizeof(float));
    lms[side]->be->ops->copy_d2h(lms[side]->be, host[side], aqs_lm_ws_logits(ws), n * sizeof(float));
    assert_int_equal(lms[side]->be->ops->sync(lms[side]->be, &e), AQS_OK);
    aqs_lm_ws_free(lms[side], ws);
    aqs_lm_batch_free(lms[side], &b);
  }
  double scale = 0, err = 0, sum_err = 0;
  for (size_t i = 0; i < n; i++) {
    scale = fmax(scale, fabs(host[0][i]));
    double d = fabs((double)host[0][i] - host[1][i]);
    err = fmax(err, d);
    sum_err += d;
  }
  printf("logits (%s): n=%zu max|logit| %.4g, max err %.3g (rel %.3g), mean err %.3g\n",
         lc->be->precision == AQS_PREC_BF16 ? "bf16" : "f32", n, scale, err, err / scale, sum_err / (double)n);
  free(host[0]);
  free(host[1]);
  return err / scale;
}

static void test_logits(void **state) {
  (void)state;
  const char *dir = synth("tiny");
  int32_t ids[512], lens[8];
  int n_tokens;
  for (int p = 0; p < 2; p++) {
    gpu_set_precision(p ? AQS_PREC_BF16 : AQS_PREC_F32);
    aqs_lm *lc = load(g_cpu, dir), *lg = load(g_gpu, dir);
    make_batch(8, lc->cfg.vocab_size, ids, lens, &n_tokens);
    double rel = logits_rel_err(lc, lg, ids, lens, 8);
    assert_true(rel <= (p ? 3e-2 : 1e-4));
    aqs_lm_free(lc);
    aqs_lm_free(lg);
  }
}

/* Spearman rank correlation of two score vectors (no ties expected among real scores). */
static double spearman(const double *a, const double *b, size_t n) {
  double *ra = malloc(n * sizeof *ra), *rb = malloc(n * sizeof *rb);
  for (size_t i = 0; i < n; i++) {
    size_t ca = 0, cb = 0;
    for (size_t j = 0; j < n; j++) {
      ca += a[j] < a[i];
      cb += b[j] < b[i];
    }
    ra[i] = (double)ca;
    rb[i] = (double)cb;
  }
  double d2 = 0;
  for (size_t i = 0; i < n; i++) d2 += (ra[i] - rb[i]) * (ra[i] - rb[i]);
  free(ra);
  free(rb);
  return n > 1 ? 1.0 - 6.0 * d2 / ((double)n * ((double)n * n - 1.0)) : 1.0;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

/* Calibrate on both backends (amax must agree), then score with method on both: Spearman and
 * median relative error of the group scores; the CUDA scores are the same bits on a second run. */
static void run_scores(const char *preset, aqs_sens_method method, double min_spearman, double max_median_rel) {
  const char *dir = synth(preset);
  gpu_set_precision(AQS_PREC_F32);
  aqs_lm *lms[2] = {load(g_cpu, dir), load(g_gpu, dir)};
  int32_t ids[512], lens[8];
  int n_tokens;
  make_batch(8, lms[0]->cfg.vocab_size, ids, lens, &n_tokens);
  aqs_token_batch tb = {.n_seqs = 8, .seq_lens = lens, .token_ids = ids};
  aqs_amax_table amax[2] = {{0}, {0}};
  aqs_err e;
  for (int side = 0; side < 2; side++)
    if (aqs_calibrate_batch(lms[side], &tb, 0, &amax[side], &e)) fail_msg("calibrate: %s", e.msg);
  assert_int_equal(amax[0].n, amax[1].n);
  double worst = 0;
  for (size_t i = 0; i < amax[0].n; i++) {
    const aqs_amax_entry *g = aqs_amax_find(&amax[1], amax[0].entries[i].module);
    assert_non_null(g);
    double rel = fabs(g->input_amax - amax[0].entries[i].input_amax) / fmax(amax[0].entries[i].input_amax, 1e-30);
    worst = fmax(worst, rel);
    assert_true(g->weight_amax == amax[0].entries[i].weight_amax);
  }
  printf("%s amax: %zu modules, worst input_amax rel diff %.3g\n", preset, amax[0].n, worst);
  assert_true(worst <= 1e-4);
  /* both sides score with the CPU's amax (so only the scoring is compared) */
  for (int side = 0; side < 2; side++) assert_int_equal(aqs_lm_set_amax(lms[side], &amax[0], &e), AQS_OK);
  aqs_scores sc[2], again;
  for (int side = 0; side < 2; side++)
    if (aqs_sensitivity_batch(lms[side], &tb, method, 0, &sc[side], NULL, &e)) fail_msg("scores: %s", e.msg);
  /* again on CUDA, recomputing each layer in the backward instead of keeping its activations: same bits */
  setenv("AQS_KEEP_ACTIVATIONS", "0", 1);
  if (aqs_sensitivity_batch(lms[1], &tb, method, 0, &again, NULL, &e)) fail_msg("scores: %s", e.msg);
  unsetenv("AQS_KEEP_ACTIVATIONS");
  size_t n = sc[0].ngroups;
  assert_int_equal(n, sc[1].ngroups);
  double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *rel = malloc(n * sizeof *rel);
  for (size_t i = 0; i < n; i++) {
    a[i] = sc[0].groups[i].score;
    b[i] = sc[1].groups[i].score;
    rel[i] = fabs(a[i] - b[i]) / fmax(fabs(a[i]), 1e-300);
    assert_memory_equal(&sc[1].groups[i].score, &again.groups[i].score, sizeof(double));
  }
  double rho = spearman(a, b, n);
  qsort(rel, n, sizeof *rel, cmp_double);
  double median = rel[n / 2], maxrel = rel[n - 1];
  printf("%s %s scores: %zu groups, Spearman %.5f, median rel err %.3g, max rel err %.3g (e.g. %s cpu %.6g cuda "
         "%.6g)\n",
         preset, aqs_sens_method_name(method), n, rho, median, maxrel, sc[0].groups[0].id, a[0], b[0]);
  assert_true(rho >= min_spearman);
  assert_true(median <= max_median_rel);
  free(a);
  free(b);
  free(rel);
  aqs_scores_free(&sc[0]);
  aqs_scores_free(&sc[1]);
  aqs_scores_free(&again);
  aqs_amax_free(&amax[0]);
  aqs_amax_free(&amax[1]);
  aqs_lm_free(lms[0]);
  aqs_lm_free(lms[1]);
}

/* BF16 calibration: on each backend the BF16-activation-storage forward (lm_calib_b.c) gives the
 * F32-buffer forward's amax table bit for bit; CUDA against CPU within BF16 rounding. */
static void calib_bf16_storage(const char *preset) {
  const char *dir = synth(preset);
  gpu_set_precision(AQS_PREC_BF16);
  aqs_lm *lms[2] = {load(g_cpu, dir), load(g_gpu, dir)};
  int32_t ids[512], lens[8];
  int n_tokens;
  make_batch(8, lms[0]->cfg.vocab_size, ids, lens, &n_tokens);
  aqs_amax_table t[2][2] = {{{0}, {0}}, {{0}, {0}}}; /* [side][storage_b] */
  aqs_err e;
  for (int side = 0; side < 2; side++) {
    assert_int_equal(aqs_lm_calib_b_applies(lms[side]), 1);
    aqs_lm_batch b;
    assert_int_equal(aqs_lm_batch_make(lms[side], ids, lens, 8, 0, &b, &e), AQS_OK);
    for (int sb = 0; sb < 2; sb++)
      if (aqs_calibrate_lm_batch_storage(lms[side], &b, sb, &t[side][sb], &e)) fail_msg("calibrate: %s", e.msg);
    aqs_lm_batch_free(lms[side], &b);
    assert_int_equal(t[side][0].n, t[side][1].n);
    for (size_t i = 0; i < t[side][0].n; i++) {
      assert_string_equal(t[side][0].entries[i].module, t[side][1].entries[i].module);
      if (memcmp(&t[side][0].entries[i].input_amax, &t[side][1].entries[i].input_amax, sizeof(float)))
        fail_msg("%s %s: %s input amax %.9g on F32 buffers, %.9g on BF16 storage", preset, lms[side]->be->name,
                 t[side][0].entries[i].module, t[side][0].entries[i].input_amax, t[side][1].entries[i].input_amax);
    }
  }
  double worst = 0;
  for (size_t i = 0; i < t[0][1].n; i++) {
    double a = t[0][1].entries[i].input_amax, g = t[1][1].entries[i].input_amax;
    worst = fmax(worst, fabs(g - a) / fmax(a, 1e-30));
  }
  printf("%s bf16 calibration: %zu entries, both storages identical on each backend; cuda vs cpu worst rel diff "
         "%.3g\n", preset, t[0][1].n, worst);
  assert_true(worst <= 3e-2); /* a few BF16 steps (2^-8 relative each) after different GEMM sums */
  for (int side = 0; side < 2; side++) {
    aqs_amax_free(&t[side][0]);
    aqs_amax_free(&t[side][1]);
    aqs_lm_free(lms[side]);
  }
  gpu_set_precision(AQS_PREC_F32);
}
static void test_calib_bf16_storage(void **state) {
  (void)state;
  calib_bf16_storage("tiny");
  calib_bf16_storage("small");
}

static void test_gradient_scores_tiny(void **state) {
  (void)state;
  run_scores("tiny", AQS_SENS_GRADIENT, 0.99, 0.01);
}
static void test_kl_scores_tiny(void **state) {
  (void)state;
  run_scores("tiny", AQS_SENS_KL_DIV, 0.99, 0.01);
}
static void test_gradient_scores_small(void **state) {
  (void)state;
  run_scores("small", AQS_SENS_GRADIENT, 0.99, 0.01);
}

int main(void) {
  gpu_open_or_skip();
  g_tmp = tu_mkdtemp("lm-cuda");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_logits),
      cmocka_unit_test(test_gradient_scores_tiny),
      cmocka_unit_test(test_kl_scores_tiny),
      cmocka_unit_test(test_gradient_scores_small),
      cmocka_unit_test(test_calib_bf16_storage),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  aqs_backend_close(g_cpu);
  aqs_backend_close(g_gpu);
  tu_rm_rf(g_tmp);
  free(g_tmp);
  return rc;
}
