/* tests/unit/compute/test_batch_loop.c: the one loop over batches (engine/compute/batch_loop.h):
 * parts taken from a cache and parts computed fold into the same bits as computing every batch,
 * in batch order; a cached part is never computed (no batch, no model asked for); a hook's error
 * stops the loop; an error of the computation names the batch. */
#include "testutil.h"

#include "engine/compute/batch_loop.h"
#include "engine/compute/scores.h"
#include "lm_fixture.h"

typedef struct probe {
  const fx_batches *fb;
  const aqs_lm *lm;
  int sens;                  /* parts are aqs_scores (else aqs_amax_table) */
  const void *cache[8];      /* part i when cached, else NULL */
  int batches_asked[8];
  int computed[8];
  size_t fail_at;            /* batch() fails here (SIZE_MAX: never) */
} probe;

static aqs_status cached(void *ctx, size_t i, void *part, int *found, aqs_err *e) {
  probe *p = ctx;
  *found = p->cache[i] != NULL;
  if (!*found) return AQS_OK;
  if (p->sens) { /* a deep copy: the loop frees the parts it is given */
    const aqs_scores *src = p->cache[i];
    const aqs_scores *one[1] = {src};
    return aqs_scores_reduce(one, 1, part, e);
  }
  const aqs_amax_table *one[1] = {p->cache[i]};
  return aqs_amax_reduce(one, 1, part, e);
}

static aqs_status batch(void *ctx, size_t i, aqs_token_batch *b, const aqs_lm **lm, aqs_err *e) {
  probe *p = ctx;
  p->batches_asked[i]++;
  if (i == p->fail_at) return aqs_errf(e, AQS_ERR_NOT_FOUND, "chunk %zu is gone", i);
  *b = p->fb->b[i];
  *lm = p->lm;
  return AQS_OK;
}

static aqs_status computed(void *ctx, size_t i, const void *part, aqs_err *e) {
  (void)part;
  (void)e;
  ((probe *)ctx)->computed[i]++;
  return AQS_OK;
}

static aqs_batch_loop loop_of(probe *p, size_t n) {
  return (aqs_batch_loop){.n = n, .unit = "chunk", .ctx = p, .cached = cached, .batch = batch, .computed = computed};
}

static void test_cached_and_computed_parts_fold_alike(void **state) {
  (void)state;
  char *dir = fx_synth("tiny", "lm.1.down:1000");
  aqs_backend *be;
  aqs_lm *lm = fx_load(dir, &be, AQS_PREC_F32);
  fx_batches fb;
  fx_make_batches(&fb, 3, 3, 10, lm->cfg.vocab_size, 11);
  aqs_err e = {0};

  /* Calibration: every batch computed, then batch 1 from the cache. */
  probe p = {.fb = &fb, .lm = lm, .fail_at = SIZE_MAX};
  aqs_batch_loop loop = loop_of(&p, 3);
  aqs_amax_table all = {0}, part1 = {0}, mixed = {0};
  assert_int_equal(aqs_calibrate_batches(&loop, 0, &all, &e), AQS_OK);
  assert_int_equal(all.n_seqs, 9);
  assert_int_equal(aqs_calibrate_batch(lm, &fb.b[1], 0, &part1, &e), AQS_OK);
  probe q = {.fb = &fb, .lm = lm, .fail_at = SIZE_MAX, .cache = {NULL, &part1, NULL}};
  loop = loop_of(&q, 3);
  assert_int_equal(aqs_calibrate_batches(&loop, 0, &mixed, &e), AQS_OK);
  assert_int_equal(q.batches_asked[1], 0);
  assert_int_equal(q.computed[1], 0);
  assert_int_equal(q.computed[0] + q.computed[2], 2);
  assert_int_equal(mixed.n, all.n);
  assert_int_equal(mixed.n_tokens, all.n_tokens);
  for (size_t i = 0; i < all.n; i++) assert_memory_equal(&mixed.entries[i], &all.entries[i], sizeof all.entries[i]);
  assert_int_equal(aqs_lm_set_amax(lm, &all, &e), AQS_OK);

  /* Sensitivity: the sum over batches in order, whatever came from the cache. */
  aqs_scores s_all, s0 = {0}, s_mixed;
  probe r = {.fb = &fb, .lm = lm, .sens = 1, .fail_at = SIZE_MAX};
  loop = loop_of(&r, 3);
  double loss = 0;
  assert_int_equal(aqs_sensitivity_batches(&loop, AQS_SENS_GRADIENT, 0, &s_all, &loss, &e), AQS_OK);
  assert_true(loss > 0);
  assert_int_equal(s_all.n_batches, 3);
  assert_int_equal(aqs_sensitivity_batch(lm, &fb.b[0], AQS_SENS_GRADIENT, 0, &s0, NULL, &e), AQS_OK);
  probe t = {.fb = &fb, .lm = lm, .sens = 1, .fail_at = SIZE_MAX, .cache = {&s0, NULL, NULL}};
  loop = loop_of(&t, 3);
  assert_int_equal(aqs_sensitivity_batches(&loop, AQS_SENS_GRADIENT, 0, &s_mixed, NULL, &e), AQS_OK);
  assert_int_equal(t.batches_asked[0], 0);
  assert_int_equal(s_mixed.ngroups, s_all.ngroups);
  for (size_t g = 0; g < s_all.ngroups; g++) assert_memory_equal(&s_mixed.groups[g].score, &s_all.groups[g].score, 8);
  /* The loop's total is the fixed-order reduce of the parts, bit for bit. */
  aqs_scores parts[3];
  for (int i = 0; i < 3; i++)
    assert_int_equal(aqs_sensitivity_batch(lm, &fb.b[i], AQS_SENS_GRADIENT, 0, &parts[i], NULL, &e), AQS_OK);
  const aqs_scores *in_order[3] = {&parts[0], &parts[1], &parts[2]};
  aqs_scores by_reduce;
  assert_int_equal(aqs_scores_reduce(in_order, 3, &by_reduce, &e), AQS_OK);
  for (size_t g = 0; g < s_all.ngroups; g++) assert_memory_equal(&by_reduce.groups[g].score, &s_all.groups[g].score, 8);
  for (int i = 0; i < 3; i++) aqs_scores_free(&parts[i]);
  aqs_scores_free(&by_reduce);

  /* A failing hook stops the loop there; a fully cached loop needs no model. */
  probe u = {.fb = &fb, .lm = lm, .fail_at = 1};
  loop = loop_of(&u, 3);
  aqs_amax_table none = {0};
  assert_int_equal(aqs_calibrate_batches(&loop, 0, &none, &e), AQS_ERR_NOT_FOUND);
  assert_string_equal(e.msg, "chunk 1 is gone");
  assert_int_equal(u.batches_asked[2], 0);
  aqs_amax_free(&none);
  probe v = {.fb = &fb, .lm = NULL, .fail_at = SIZE_MAX, .cache = {&part1, &part1}};
  loop = loop_of(&v, 2);
  assert_int_equal(aqs_calibrate_batches(&loop, 0, &none, &e), AQS_OK);
  assert_int_equal(v.batches_asked[0] + v.batches_asked[1], 0);
  assert_int_equal(none.n_seqs, 2 * part1.n_seqs);
  aqs_amax_free(&none);

  /* A batch longer than max_seq_len: the computation's error names the batch. */
  probe w = {.fb = &fb, .lm = lm, .fail_at = SIZE_MAX};
  loop = loop_of(&w, 3);
  assert_int_not_equal(aqs_calibrate_batches(&loop, 3, &none, &e), AQS_OK);
  assert_non_null(strstr(e.msg, "chunk 0: "));
  aqs_amax_free(&none);

  aqs_scores_free(&s_all);
  aqs_scores_free(&s0);
  aqs_scores_free(&s_mixed);
  aqs_amax_free(&all);
  aqs_amax_free(&part1);
  aqs_amax_free(&mixed);
  aqs_lm_free(lm);
  aqs_backend_close(be);
  tu_rm_rf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_cached_and_computed_parts_fold_alike)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
