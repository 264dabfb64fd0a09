/* tests/unit/compute/test_sensitivity.c: calibration and sensitivity on the tiny synthetic
 * model (CPU): amax semantics, chunk reduce in fixed order (same bits however computed),
 * JSON round trips, and planted outlier groups ranking most sensitive with both methods. */
#include "testutil.h"

#include <math.h>

#include "engine/compute/calibrate.h"
#include "engine/compute/lm_internal.h"
#include "engine/compute/scores.h"
#include "lm_fixture.h"

static void test_calibrate_amax(void **state) {
  (void)state;
  char *dir = fx_synth("tiny", NULL);
  aqs_backend *be;
  aqs_lm *lm = fx_load(dir, &be, AQS_PREC_F32);
  fx_batches fb;
  fx_make_batches(&fb, 2, 4, 12, lm->cfg.vocab_size, 3);
  aqs_err e = {0};
  aqs_amax_table a0 = {0}, a1 = {0}, all = {0};
  assert_int_equal(aqs_calibrate_batch(lm, &fb.b[0], 0, &a0, &e), AQS_OK);
  assert_int_equal(aqs_calibrate_batch(lm, &fb.b[1], 0, &a1, &e), AQS_OK);
  assert_int_equal(a0.n, (size_t)lm->cfg.num_layers * (AQS_LIN_COUNT + 2)); /* + K/V cache */
  const aqs_amax_table *parts[2] = {&a0, &a1};
  assert_int_equal(aqs_amax_reduce(parts, 2, &all, &e), AQS_OK);
  assert_int_equal(all.n_seqs, 8);
  for (size_t i = 0; i < all.n; i++) {
    float want = fmaxf(a0.entries[i].input_amax, a1.entries[i].input_amax);
    assert_true(all.entries[i].input_amax == want);
    assert_true(all.entries[i].input_amax > 0);
  }
  /* q/k/v share their input; weight amax is max |W| of the checkpoint tensor */
  const aqs_amax_entry *q = aqs_amax_find(&all, "model.language_model.layers.1.self_attn.q_proj");
  const aqs_amax_entry *v = aqs_amax_find(&all, "model.language_model.layers.1.self_attn.v_proj.weight");
  assert_non_null(q);
  assert_non_null(v);
  assert_true(q->input_amax == v->input_amax);
  assert_true(q->weight_amax == lm->layers[1].lin[AQS_LIN_Q].weight_amax);
  assert_true(q->weight_amax > 0.01f && q->weight_amax < 2.0f);
  /* the FP8 KV cache amax: K after RoPE and V of every layer */
  const aqs_amax_entry *kc = aqs_amax_find(&all, "model.language_model.layers.1.self_attn.k_cache");
  const aqs_amax_entry *vc = aqs_amax_find(&all, "model.language_model.layers.1.self_attn.v_cache");
  assert_non_null(kc);
  assert_non_null(vc);
  assert_true(kc->input_amax > 0 && vc->input_amax > 0 && kc->weight_amax == 0);
  /* JSON round trip is exact */
  char *json;
  assert_int_equal(aqs_amax_to_json(&all, &json, &e), AQS_OK);
  aqs_amax_table back;
  assert_int_equal(aqs_amax_from_json(json, strlen(json), "t", &back, &e), AQS_OK);
  assert_int_equal(back.n, all.n);
  for (size_t i = 0; i < all.n; i++) {
    assert_string_equal(back.entries[i].module, all.entries[i].module);
    assert_memory_equal(&back.entries[i].input_amax, &all.entries[i].input_amax, 4);
    assert_memory_equal(&back.entries[i].weight_amax, &all.entries[i].weight_amax, 4);
  }
  free(json);
  /* a table from another checkpoint is refused */
  aqs_amax_entry *q1 = (aqs_amax_entry *)aqs_amax_find(&back, "model.language_model.layers.1.self_attn.q_proj");
  q1->weight_amax *= 2;
  assert_int_equal(aqs_lm_set_amax(lm, &back, &e), AQS_ERR_MISMATCH);
  assert_non_null(strstr(e.msg, q1->module));
  aqs_amax_free(&back);
  const char *bad = "{\"format\":\"aqs-amax-1\",\"modules\":{\"m\":{\"input_amax\":-1,\"weight_amax\":1}}}";
  assert_int_equal(aqs_amax_from_json(bad, strlen(bad), "bad.json", &back, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "bad.json: module m: input_amax"));
  /* a NaN in layer 1's o_proj weight: the first linear whose input is not finite is layer 1's
   * gate_proj (after the residual add and RMSNorm), and calibration names it */
  lm->layers[1].lin[AQS_LIN_O].w[0] = 0x7fc0;
  aqs_amax_table nan_t = {0};
  assert_int_equal(aqs_calibrate_batch(lm, &fb.b[0], 0, &nan_t, &e), AQS_ERR_NUMERIC);
  assert_non_null(strstr(e.msg, "non-finite activation (NaN) at the input of model.language_model.layers.1.mlp.gate_proj"));
  assert_int_equal(nan_t.n, 0);
  aqs_amax_free(&a0);
  aqs_amax_free(&a1);
  aqs_amax_free(&all);
  aqs_lm_free(lm);
  aqs_backend_close(be);
  tu_rm_rf(dir);
  free(dir);
}

/* BF16 calibration on BF16 activation storage (engine/compute/lm_calib_b.c) gives the amax table
 * of the F32-buffer forward with hooks, bit for bit, over batches of varied lengths; a NaN is
 * named the same way. */
static void test_calibrate_storage_b(void **state) {
  (void)state;
  char *dir = fx_synth("tiny", NULL);
  aqs_backend *be;
  aqs_lm *lm = fx_load(dir, &be, AQS_PREC_BF16);
  assert_int_equal(aqs_lm_calib_b_applies(lm), 1);
  fx_batches fb;
  fx_make_batches(&fb, 3, 5, 40, lm->cfg.vocab_size, 11);
  /* and sequences of one token: among others, and a batch of one token */
  static const int32_t lens3[3] = {1, 9, 1}, lens4[1] = {1};
  fb.b[3] = (aqs_token_batch){.n_seqs = 3, .seq_lens = lens3, .token_ids = fb.b[0].token_ids};
  fb.b[4] = (aqs_token_batch){.n_seqs = 1, .seq_lens = lens4, .token_ids = fb.b[1].token_ids};
  fb.n = 5;
  aqs_err e = {0};
  for (int i = 0; i < fb.n; i++) {
    aqs_lm_batch b;
    assert_int_equal(aqs_lm_batch_make(lm, fb.b[i].token_ids, fb.b[i].seq_lens, fb.b[i].n_seqs, 0, &b, &e), AQS_OK);
    aqs_amax_table tb = {0}, tf = {0};
    assert_int_equal(aqs_calibrate_lm_batch_storage(lm, &b, 1, &tb, &e), AQS_OK);
    assert_int_equal(aqs_calibrate_lm_batch_storage(lm, &b, 0, &tf, &e), AQS_OK);
    assert_int_equal(tb.n, tf.n);
    assert_int_equal(tb.n, (size_t)lm->cfg.num_layers * (AQS_LIN_COUNT + 2));
    for (size_t j = 0; j < tb.n; j++) {
      assert_string_equal(tb.entries[j].module, tf.entries[j].module);
      assert_memory_equal(&tb.entries[j].input_amax, &tf.entries[j].input_amax, sizeof(float));
      assert_true(tb.entries[j].input_amax > 0);
    }
    aqs_amax_free(&tb);
    aqs_amax_free(&tf);
    aqs_lm_batch_free(lm, &b);
  }
  /* F32 precision, an FP8 KV cache or a served FP8 linear never take the BF16-storage forward */
  be->precision = AQS_PREC_F32;
  assert_int_equal(aqs_lm_calib_b_applies(lm), 0);
  be->precision = AQS_PREC_BF16;
  lm->layers[1].k_scale = 0.5f;
  assert_int_equal(aqs_lm_calib_b_applies(lm), 0);
  lm->layers[1].k_scale = 0.0f;
  uint8_t code = 0;
  lm->layers[1].lin[AQS_LIN_DOWN].wq = &code;
  assert_int_equal(aqs_lm_calib_b_applies(lm), 0);
  lm->layers[1].lin[AQS_LIN_DOWN].wq = NULL;
  assert_int_equal(aqs_lm_calib_b_applies(lm), 1);
  /* a NaN in layer 1's o_proj weight is named at the next measured input, as on F32 buffers */
  lm->layers[1].lin[AQS_LIN_O].w[0] = 0x7fc0;
  aqs_amax_table nan_t = {0};
  assert_int_equal(aqs_calibrate_batch(lm, &fb.b[0], 0, &nan_t, &e), AQS_ERR_NUMERIC);
  assert_non_null(strstr(e.msg, "non-finite activation (NaN) at the input of model.language_model.layers.1.mlp.gate_proj"));
  assert_int_equal(nan_t.n, 0);
  aqs_lm_free(lm);
  aqs_backend_close(be);
  tu_rm_rf(dir);
  free(dir);
}

/* Scores of each batch computed in one process and order, vs recomputed in another order
 * with a fresh model: per-batch bits equal, and the fixed-order reduce gives equal bits. */
static void test_chunk_invariance(void **state) {
  (void)state;
  char *dir = fx_synth("tiny", NULL);
  fx_batches fb;
  aqs_err e = {0};
  for (int m = 0; m < 2; m++) {
    aqs_sens_method method = m ? AQS_SENS_KL_DIV : AQS_SENS_GRADIENT;
    aqs_backend *be;
    aqs_lm *lm = fx_load(dir, &be, AQS_PREC_F32);
    fx_make_batches(&fb, 3, 3, 10, lm->cfg.vocab_size, 21);
    aqs_amax_table amax;
    fx_calibrate(lm, &fb, &amax);
    aqs_scores a[3], b[3];
    for (int i = 0; i < 3; i++)
      assert_int_equal(aqs_sensitivity_batch(lm, &fb.b[i], method, 0, &a[i], NULL, &e), AQS_OK);
    aqs_lm_free(lm);
    aqs_backend_close(be);
    lm = fx_load(dir, &be, AQS_PREC_F32);
    assert_int_equal(aqs_lm_set_amax(lm, &amax, &e), AQS_OK);
    for (int i = 2; i >= 0; i--)
      assert_int_equal(aqs_sensitivity_batch(lm, &fb.b[i], method, 0, &b[i], NULL, &e), AQS_OK);
    for (int i = 0; i < 3; i++)
      for (size_t g = 0; g < a[i].ngroups; g++)
        assert_memory_equal(&a[i].groups[g].score, &b[i].groups[g].score, sizeof(double));
    /* reduce of all parts == incremental reduce == reduce of JSON round-tripped parts */
    const aqs_scores *pa[3] = {&a[0], &a[1], &a[2]};
    aqs_scores all, inc01, inc, rt[3];
    assert_int_equal(aqs_scores_reduce(pa, 3, &all, &e), AQS_OK);
    assert_int_equal(aqs_scores_reduce(pa, 2, &inc01, &e), AQS_OK);
    const aqs_scores *pi[2] = {&inc01, &a[2]};
    assert_int_equal(aqs_scores_reduce(pi, 2, &inc, &e), AQS_OK);
    for (int i = 0; i < 3; i++) {
      char *json;
      assert_int_equal(aqs_scores_to_json(&b[i], &json, &e), AQS_OK);
      assert_int_equal(aqs_scores_from_json(json, strlen(json), "part", &rt[i], &e), AQS_OK);
      free(json);
    }
    const aqs_scores *pr[3] = {&rt[0], &rt[1], &rt[2]};
    aqs_scores all_rt;
    assert_int_equal(aqs_scores_reduce(pr, 3, &all_rt, &e), AQS_OK);
    assert_int_equal(all.n_batches, 3);
    for (size_t g = 0; g < all.ngroups; g++) {
      assert_true(all.groups[g].score > 0);
      assert_memory_equal(&all.groups[g].score, &inc.groups[g].score, sizeof(double));
      assert_memory_equal(&all.groups[g].score, &all_rt.groups[g].score, sizeof(double));
    }
    char *j1, *j2;
    assert_int_equal(aqs_scores_to_json(&all, &j1, &e), AQS_OK);
    assert_int_equal(aqs_scores_to_json(&all_rt, &j2, &e), AQS_OK);
    assert_string_equal(j1, j2);
    assert_non_null(strstr(j1, "\"device\": \"cpu"));
    free(j1);
    free(j2);
    /* stages blank the device so stored bytes are machine-independent */
    all.device[0] = '\0';
    assert_int_equal(aqs_scores_to_json(&all, &j1, &e), AQS_OK);
    assert_null(strstr(j1, "device"));
    free(j1);
    /* mixing methods is refused */
    snprintf(rt[1].method, sizeof rt[1].method, "%s", m ? "gradient" : "kl_div");
    aqs_scores bad;
    assert_int_equal(aqs_scores_reduce(pr, 3, &bad, &e), AQS_ERR_MISMATCH);
    assert_non_null(strstr(e.msg, "method"));
    for (int i = 0; i < 3; i++) {
      aqs_scores_free(&a[i]);
      aqs_scores_free(&b[i]);
      aqs_scores_free(&rt[i]);
    }
    aqs_scores_free(&all);
    aqs_scores_free(&inc01);
    aqs_scores_free(&inc);
    aqs_scores_free(&all_rt);
    aqs_amax_free(&amax);
    aqs_lm_free(lm);
    aqs_backend_close(be);
  }
  tu_rm_rf(dir);
  free(dir);
}

/* Index of group id in the ranking (0 = least sensitive). */
static size_t rank_of(const aqs_scores *s, const size_t *order, const char *id) {
  for (size_t i = 0; i < s->ngroups; i++)
    if (strcmp(s->groups[order[i]].id, id) == 0) return i;
  fail_msg("group %s not ranked", id);
  return 0;
}

static void test_planted_outliers_rank_most_sensitive(void **state) {
  (void)state;
  char *dir = fx_synth("tiny", "lm.1.down:100000,lm.2.qkv:100000,lm.3.o:100000");
  aqs_backend *be;
  aqs_lm *lm = fx_load(dir, &be, AQS_PREC_F32);
  fx_batches fb;
  fx_make_batches(&fb, 2, 4, 12, lm->cfg.vocab_size, 9);
  aqs_amax_table amax;
  fx_calibrate(lm, &fb, &amax);
  aqs_err e = {0};
  for (int m = 0; m < 2; m++) {
    aqs_sens_method method = m ? AQS_SENS_KL_DIV : AQS_SENS_GRADIENT;
    aqs_scores parts[2], total;
    for (int i = 0; i < 2; i++)
      assert_int_equal(aqs_sensitivity_batch(lm, &fb.b[i], method, 0, &parts[i], NULL, &e), AQS_OK);
    const aqs_scores *pp[2] = {&parts[0], &parts[1]};
    assert_int_equal(aqs_scores_reduce(pp, 2, &total, &e), AQS_OK);
    size_t *order = aqs_scores_ranking(&total);
    size_t n = total.ngroups;
    const char *planted[3] = {"lm.1.down", "lm.2.qkv", "lm.3.o"};
    for (int k = 0; k < 3; k++) {
      size_t r = rank_of(&total, order, planted[k]);
      if (r < n - 3) {
        print_error("%s: planted %s ranks %zu of %zu (least sensitive first)\n",
                    aqs_sens_method_name(method), planted[k], r, n);
        for (size_t i = 0; i < n; i++)
          print_error("  %s %.6g\n", total.groups[order[i]].id, total.groups[order[i]].score);
        fail();
      }
    }
    free(order);
    aqs_scores_free(&parts[0]);
    aqs_scores_free(&parts[1]);
    aqs_scores_free(&total);
  }
  aqs_amax_free(&amax);
  aqs_lm_free(lm);
  aqs_backend_close(be);
  tu_rm_rf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_calibrate_amax),
    cmocka_unit_test(test_calibrate_storage_b),
    cmocka_unit_test(test_chunk_invariance),
    cmocka_unit_test(test_planted_outliers_rank_most_sensitive),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
