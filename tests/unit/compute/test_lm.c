/* tests/unit/compute/test_lm.c: the whole language model on the CPU backend (tiny synthetic
 * checkpoint): activation gradients dL/dY of every linear against finite differences of the
 * loss, and the bad-input errors (NaN weights, shapes vs config, long sequences, bad ids). */
#include "testutil.h"

#include <fcntl.h>
#include <math.h>
#include <unistd.h>

#include "engine/compute/lm.h"
#include "engine/compute/lm_internal.h"
#include "engine/model/safetensors.h"
#include "lm_fixture.h"

static char *model_dir;

static int setup(void **state) {
  (void)state;
  model_dir = fx_synth("tiny", NULL);
  return 0;
}
static int teardown(void **state) {
  (void)state;
  tu_rm_rf(model_dir);
  free(model_dir);
  return 0;
}

/* Hook state: capture G of one (layer, slot) in the backward; or add a perturbation
 * direction * h to y of that linear in the forward (CPU backend memory is host memory). */
typedef struct probe {
  int layer;
  aqs_lin_slot slot;
  float *g;           /* captured G (N * out) */
  const float *dir;   /* perturbation direction or NULL */
  float h;
  size_t n;
} probe;

static aqs_status probe_hook(void *ctx, const aqs_lm *lm, int layer, aqs_lin_slot slot,
                             const float *x, const float *y, const float *g, int N, aqs_err *e) {
  (void)x;
  (void)e;
  probe *p = ctx;
  if (layer != p->layer || slot != p->slot) return AQS_OK;
  p->n = (size_t)N * (size_t)lm->layers[layer].lin[slot].out;
  if (g) {
    memcpy(p->g, g, p->n * sizeof(float));
  } else if (p->dir) {
    float *yw = (float *)y;
    for (size_t i = 0; i < p->n; i++) yw[i] += p->h * p->dir[i];
  }
  return AQS_OK;
}

static double loss_with(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws, probe *p) {
  aqs_err e = {0};
  assert_int_equal(aqs_lm_forward(lm, b, ws, probe_hook, p, &e), AQS_OK);
  double sum;
  lm->be->ops->cross_entropy(lm->be, NULL, aqs_lm_ws_logits(ws), b->targets, b->n_tokens,
                             lm->cfg.vocab_size, 1.0f, &sum);
  return sum / b->n_targets;
}

/* The model in F32 on the CPU, a batch of n_seqs pseudo-random sequences (fx_make_batches) and a
 * workspace with gradients for it. */
static aqs_lm *load_batch_ws(aqs_backend **be, int n_seqs, int len_spread, uint32_t seed, aqs_lm_batch *b,
                             aqs_lm_ws **ws) {
  aqs_lm *lm = fx_load(model_dir, be, AQS_PREC_F32);
  fx_batches fb;
  fx_make_batches(&fb, 1, n_seqs, len_spread, lm->cfg.vocab_size, seed);
  aqs_err e = {0};
  assert_int_equal(aqs_lm_batch_make(lm, fb.b[0].token_ids, fb.b[0].seq_lens, n_seqs, 0, b, &e), AQS_OK);
  assert_int_equal(aqs_lm_ws_alloc(lm, b, 1, 0, ws, &e), AQS_OK);
  return lm;
}

static void test_gradient_vs_finite_differences(void **state) {
  (void)state;
  aqs_backend *be;
  aqs_lm_batch b;
  aqs_lm_ws *ws;
  aqs_lm *lm = load_batch_ws(&be, 3, 6, 11, &b, &ws);
  aqs_err e = {0};
  size_t maxn = (size_t)b.n_tokens * (size_t)lm->cfg.intermediate_size;
  float *g = malloc(maxn * sizeof *g), *dir = malloc(maxn * sizeof *dir);
  /* every slot of the first and last layer */
  int layers[2] = {0, lm->cfg.num_layers - 1};
  for (int li = 0; li < 2; li++)
    for (int s = 0; s < AQS_LIN_COUNT; s++) {
      probe p = {layers[li], (aqs_lin_slot)s, g, NULL, 0, 0};
      double loss;
      assert_int_equal(aqs_lm_forward_backward(lm, &b, ws, probe_hook, &p, &loss, &e), AQS_OK);
      assert_true(loss > 0 && isfinite(loss));
      /* directional derivative along a random direction r: dL = <G, r> */
      uint32_t r = 12345u + (uint32_t)s;
      double gr = 0, gnorm = 0;
      for (size_t i = 0; i < p.n; i++) {
        r = r * 1664525u + 1013904223u;
        dir[i] = (float)((r >> 8) / 16777216.0) * 2.0f - 1.0f;
        gr += (double)g[i] * dir[i];
        gnorm += (double)g[i] * g[i];
      }
      gnorm = sqrt(gnorm);
      assert_true(gnorm > 0);
      probe fp = {layers[li], (aqs_lin_slot)s, NULL, dir, 0.05f, 0};
      double lp = loss_with(lm, &b, ws, &fp);
      fp.h = -0.05f;
      double lm_ = loss_with(lm, &b, ws, &fp);
      double fd = (lp - lm_) / 0.1;
      if (fabs(fd - gr) > 0.02 * fabs(gr) + 1e-4 * gnorm) {
        print_error("layer %d %s: <G,r> = %.6g, finite difference %.6g (|G| = %.3g)\n",
                    layers[li], aqs_lin_slot_suffix((aqs_lin_slot)s), gr, fd, gnorm);
        fail();
      }
      /* along G itself: dL = |G|^2 */
      for (size_t i = 0; i < p.n; i++) dir[i] = (float)(g[i] / gnorm);
      fp.h = 0.05f;
      lp = loss_with(lm, &b, ws, &fp);
      fp.h = -0.05f;
      lm_ = loss_with(lm, &b, ws, &fp);
      fd = (lp - lm_) / 0.1;
      if (fabs(fd - gnorm) > 0.02 * gnorm) {
        print_error("layer %d %s: |G| = %.6g, finite difference along G %.6g\n", layers[li],
                    aqs_lin_slot_suffix((aqs_lin_slot)s), gnorm, fd);
        fail();
      }
    }
  free(g);
  free(dir);
  aqs_lm_ws_free(lm, ws);
  aqs_lm_batch_free(lm, &b);
  aqs_lm_free(lm);
  aqs_backend_close(be);
}

/* Records the bytes of every hook call's x, y and g, in call order. */
typedef struct tape {
  unsigned char *buf;
  size_t n, cap;
  int calls;
  const float *q_in[2]; /* where the hook saw q_proj's input of layers 0 and 1 */
} tape;
static void tape_put(tape *t, const float *p, size_t n) {
  size_t bytes = p ? n * sizeof(float) : 0;
  if (t->n + bytes > t->cap) {
    t->cap = (t->n + bytes) * 2;
    t->buf = realloc(t->buf, t->cap);
    assert_non_null(t->buf);
  }
  if (bytes) memcpy(t->buf + t->n, p, bytes);
  t->n += bytes;
}
static aqs_status tape_hook(void *ctx, const aqs_lm *lm, int layer, aqs_lin_slot slot, const float *x,
                            const float *y, const float *g, int N, aqs_err *e) {
  (void)e;
  tape *t = ctx;
  const aqs_lm_linear *lin = &lm->layers[layer].lin[slot];
  tape_put(t, x, (size_t)N * (size_t)lin->in);
  tape_put(t, y, (size_t)N * (size_t)lin->out);
  tape_put(t, g, (size_t)N * (size_t)lin->out);
  if (slot == AQS_LIN_Q && layer < 2) t->q_in[layer] = x;
  t->calls++;
  return AQS_OK;
}

/* The backward on kept activations (lm_backward.c) sees exactly the x, y, g and input gradient of
 * the backward that recomputes every layer (AQS_KEEP_ACTIVATIONS=0), in both precisions. */
static void test_kept_activations_same_bits(void **state) {
  (void)state;
  for (int prec = 0; prec < 2; prec++) {
    aqs_backend *be;
    aqs_lm *lm = fx_load(model_dir, &be, prec ? AQS_PREC_BF16 : AQS_PREC_F32);
    fx_batches fb;
    fx_make_batches(&fb, 1, 4, 30, lm->cfg.vocab_size, 5);
    aqs_err e = {0};
    aqs_lm_batch b;
    assert_int_equal(aqs_lm_batch_make(lm, fb.b[0].token_ids, fb.b[0].seq_lens, 4, 0, &b, &e), AQS_OK);
    tape t[2] = {{0}, {0}};
    double loss[2];
    float *dx[2];
    const size_t nc = (size_t)b.n_tokens * (size_t)lm->cfg.hidden_size;
    for (int keep = 0; keep < 2; keep++) {
      if (keep) unsetenv("AQS_KEEP_ACTIVATIONS");
      else setenv("AQS_KEEP_ACTIVATIONS", "0", 1);
      aqs_lm_ws *ws;
      assert_int_equal(aqs_lm_ws_alloc(lm, &b, 1, 0, &ws, &e), AQS_OK);
      size_t before, after;
      be->ops->mem_stats(be, &before, NULL);
      assert_int_equal(aqs_lm_forward_backward(lm, &b, ws, tape_hook, &t[keep], &loss[keep], &e), AQS_OK);
      /* kept: each layer's intermediates in a set of their own (the tiny model's sets fit);
       * recomputed: every layer in the workspace's own set */
      assert_int_equal(t[keep].q_in[0] != t[keep].q_in[1], keep);
      /* the kept sets live for the backward only (e.g. the vision backward that follows needs the
       * memory): the workspace holds its own set and nothing more afterwards */
      be->ops->mem_stats(be, &after, NULL);
      assert_int_equal(after, before);
      assert_null(ws->kept);
      assert_ptr_equal(ws->gate, ws->base.gate);
      dx[keep] = malloc(nc * sizeof(float));
      memcpy(dx[keep], aqs_lm_ws_dinput(ws), nc * sizeof(float));
      aqs_lm_ws_free(lm, ws);
    }
    unsetenv("AQS_KEEP_ACTIVATIONS");
    assert_int_equal(t[0].calls, t[1].calls);
    assert_int_equal(t[0].calls, lm->cfg.num_layers * AQS_LIN_COUNT);
    assert_int_equal(t[0].n, t[1].n);
    assert_memory_equal(t[0].buf, t[1].buf, t[0].n);
    assert_memory_equal(&loss[0], &loss[1], sizeof(double));
    assert_memory_equal(dx[0], dx[1], nc * sizeof(float));
    for (int k = 0; k < 2; k++) {
      free(t[k].buf);
      free(dx[k]);
    }
    aqs_lm_batch_free(lm, &b);
    aqs_lm_free(lm);
    aqs_backend_close(be);
  }
}

/* A backward that fails after the forward (here a NaN in the final norm's weight: every layer output
 * is finite, the loss is not) gives the kept sets back and leaves the workspace on its own set. */
static void test_kept_activations_released_on_error(void **state) {
  (void)state;
  unsetenv("AQS_KEEP_ACTIVATIONS"); /* kept when they fit: the tiny model's do */
  aqs_err e = {0};
  aqs_backend *be;
  aqs_lm_batch b;
  aqs_lm_ws *ws;
  aqs_lm *lm = load_batch_ws(&be, 3, 20, 9, &b, &ws);
  lm->final_norm[0] = 0x7FC0;
  size_t before, after;
  be->ops->mem_stats(be, &before, NULL);
  double loss;
  assert_int_equal(aqs_lm_forward_backward(lm, &b, ws, NULL, NULL, &loss, &e), AQS_ERR_NUMERIC);
  assert_non_null(strstr(e.msg, "non-finite cross-entropy loss"));
  be->ops->mem_stats(be, &after, NULL);
  assert_int_equal(after, before);
  assert_null(ws->kept);
  assert_ptr_equal(ws->ln1, ws->base.ln1);
  assert_ptr_equal(ws->down, ws->base.down);
  aqs_lm_ws_free(lm, ws);
  aqs_lm_batch_free(lm, &b);
  aqs_lm_free(lm);
  aqs_backend_close(be);
}

/* A NaN entering the gradient at layer 1's down_proj output is named at layer 1's input (the
 * first non-finite input gradient from the top), with activations kept or recomputed. */
static aqs_status nan_grad_hook(void *ctx, const aqs_lm *lm, int layer, aqs_lin_slot slot, const float *x,
                                const float *y, const float *g, int N, aqs_err *e) {
  (void)ctx, (void)lm, (void)x, (void)y, (void)N, (void)e;
  if (g && layer == 1 && slot == AQS_LIN_DOWN) ((float *)g)[3] = NAN; /* CPU: host memory */
  return AQS_OK;
}
static void test_nan_gradient_named(void **state) {
  (void)state;
  for (int keep = 0; keep < 2; keep++) {
    if (!keep) setenv("AQS_KEEP_ACTIVATIONS", "0", 1);
    aqs_backend *be;
    aqs_lm *lm = fx_load(model_dir, &be, AQS_PREC_F32);
    assert_true(lm->cfg.num_layers >= 3);
    fx_batches fb;
    fx_make_batches(&fb, 1, 3, 9, lm->cfg.vocab_size, 4);
    aqs_err e = {0};
    aqs_lm_batch b;
    aqs_lm_ws *ws;
    assert_int_equal(aqs_lm_batch_make(lm, fb.b[0].token_ids, fb.b[0].seq_lens, 3, 0, &b, &e), AQS_OK);
    assert_int_equal(aqs_lm_ws_alloc(lm, &b, 1, 0, &ws, &e), AQS_OK);
    double loss;
    assert_int_equal(aqs_lm_forward_backward(lm, &b, ws, nan_grad_hook, NULL, &loss, &e), AQS_ERR_NUMERIC);
    assert_string_equal(e.msg, "non-finite activation (NaN) at the gradient at the input of language layer 1");
    unsetenv("AQS_KEEP_ACTIVATIONS");
    aqs_lm_ws_free(lm, ws);
    aqs_lm_batch_free(lm, &b);
    aqs_lm_free(lm);
    aqs_backend_close(be);
  }
}

/* Packing: a sequence's logits do not depend on which other sequences share its batch. */
static void test_packing_isolation(void **state) {
  (void)state;
  aqs_backend *be;
  aqs_lm *lm = fx_load(model_dir, &be, AQS_PREC_F32);
  fx_batches fb;
  fx_make_batches(&fb, 1, 3, 9, lm->cfg.vocab_size, 5);
  aqs_err e = {0};
  aqs_lm_batch b3, b1;
  aqs_lm_ws *w3, *w1;
  const int V = lm->cfg.vocab_size, off = fb.lens[0][0] + fb.lens[0][1];
  assert_int_equal(aqs_lm_batch_make(lm, fb.ids[0], fb.lens[0], 3, 0, &b3, &e), AQS_OK);
  assert_int_equal(aqs_lm_batch_make(lm, fb.ids[0] + off, fb.lens[0] + 2, 1, 0, &b1, &e), AQS_OK);
  assert_int_equal(aqs_lm_ws_alloc(lm, &b3, 0, 0, &w3, &e), AQS_OK);
  assert_int_equal(aqs_lm_ws_alloc(lm, &b1, 0, 0, &w1, &e), AQS_OK);
  assert_int_equal(aqs_lm_forward(lm, &b3, w3, NULL, NULL, &e), AQS_OK);
  assert_int_equal(aqs_lm_forward(lm, &b1, w1, NULL, NULL, &e), AQS_OK);
  const float *l3 = aqs_lm_ws_logits(w3) + (size_t)off * V, *l1 = aqs_lm_ws_logits(w1);
  for (int i = 0; i < fb.lens[0][2] * V; i++) assert_true(fabsf(l3[i] - l1[i]) < 1e-5f);
  aqs_lm_ws_free(lm, w3);
  aqs_lm_ws_free(lm, w1);
  aqs_lm_batch_free(lm, &b3);
  aqs_lm_batch_free(lm, &b1);
  aqs_lm_free(lm);
  aqs_backend_close(be);
}

static void test_bad_batches(void **state) {
  (void)state;
  aqs_backend *be;
  aqs_lm *lm = fx_load(model_dir, &be, AQS_PREC_F32);
  aqs_err e = {0};
  aqs_lm_batch b;
  int32_t ids[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, lens[2] = {4, 6};
  assert_int_equal(aqs_lm_batch_make(lm, ids, lens, 2, 5, &b, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "sequence 1 has 6 tokens, more than the maximum 5"));
  ids[7] = 100000;
  assert_int_equal(aqs_lm_batch_make(lm, ids, lens, 2, 0, &b, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "sequence 1 position 3: token id 100000"));
  /* one-token sequences have no targets: the gradient pass refuses */
  int32_t one[1] = {3}, len1[1] = {1};
  aqs_lm_ws *ws;
  assert_int_equal(aqs_lm_batch_make(lm, one, len1, 1, 0, &b, &e), AQS_OK);
  assert_int_equal(aqs_lm_ws_alloc(lm, &b, 1, 0, &ws, &e), AQS_OK);
  double loss;
  assert_int_equal(aqs_lm_forward_backward(lm, &b, ws, NULL, NULL, &loss, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "no next-token targets"));
  aqs_lm_ws_free(lm, ws);
  aqs_lm_batch_free(lm, &b);
  aqs_lm_free(lm);
  aqs_backend_close(be);
}

/* Copies model_dir to a new temp dir via cp -r. */
static char *copy_model(void) {
  char *dir = tu_mkdtemp("compute-bad");
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "cp -r '%s'/. '%s'/", model_dir, dir);
  char *out = NULL;
  assert_int_equal(tu_run(cmd, &out), 0);
  free(out);
  return dir;
}

static void test_nan_weight_named(void **state) {
  (void)state;
  char *dir = copy_model();
  char path[4096];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  aqs_err e = {0};
  aqs_st_file *f;
  assert_int_equal(aqs_st_open(path, &f, &e), AQS_OK);
  const aqs_st_tensor *t = aqs_st_find(f, "model.language_model.layers.2.mlp.up_proj.weight");
  assert_non_null(t);
  uint64_t off = t->file_offset + 2 * 17;
  aqs_st_close(f);
  int fd = open(path, O_WRONLY);
  uint16_t nan_bits = 0x7FC0;
  assert_int_equal(pwrite(fd, &nan_bits, 2, (off_t)off), 2);
  close(fd);
  aqs_backend *be;
  aqs_lm *lm;
  assert_int_equal(aqs_backend_open("cpu", AQS_PREC_F32, &be, &e), AQS_OK);
  assert_int_equal(aqs_lm_load(be, dir, &lm, &e), AQS_ERR_NUMERIC);
  assert_non_null(strstr(e.msg, "model.language_model.layers.2.mlp.up_proj.weight holds NaN"));
  aqs_backend_close(be);
  tu_rm_rf(dir);
  free(dir);
}

static void test_shape_mismatch(void **state) {
  (void)state;
  char *dir = copy_model();
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  char *cfg = tu_read_file(path, NULL);
  char *p = strstr(cfg, "\"intermediate_size\": 128");
  if (!p) p = strstr(cfg, "\"intermediate_size\":128");
  assert_non_null(p);
  char *digits = strstr(p, "128");
  memcpy(digits, "144", 3);
  tu_write_file(path, cfg, strlen(cfg));
  free(cfg);
  aqs_err e = {0};
  aqs_backend *be;
  aqs_lm *lm;
  assert_int_equal(aqs_backend_open("cpu", AQS_PREC_F32, &be, &e), AQS_OK);
  aqs_status st = aqs_lm_load(be, dir, &lm, &e);
  assert_int_equal(st, AQS_ERR_MISMATCH);
  assert_non_null(strstr(e.msg, "mlp"));
  aqs_backend_close(be);
  tu_rm_rf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_gradient_vs_finite_differences),
    cmocka_unit_test(test_packing_isolation),
    cmocka_unit_test(test_kept_activations_same_bits),
    cmocka_unit_test(test_nan_gradient_named),
    cmocka_unit_test(test_kept_activations_released_on_error),
    cmocka_unit_test(test_bad_batches),
    cmocka_unit_test(test_nan_weight_named),
    cmocka_unit_test(test_shape_mismatch),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
