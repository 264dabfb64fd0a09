/* tests/unit/compute/test_vlm.c: the whole model on image+text chunks (engine/compute/vlm.h) on
 * the CPU: M-RoPE positions and targets written out by hand from transformers' get_rope_index,
 * bad image token layouts, the gradient through both towers against finite differences,
 * calibration of the vision linears, and scores of every all_layers group with a planted vision
 * outlier ranked most sensitive by both methods. */
#include "testutil.h"

#include <math.h>

#include "engine/compute/calibrate.h"
#include "engine/compute/lm_internal.h"
#include "engine/compute/vlm.h"
#include "lm_fixture.h"
#include "vision_probe.h"

static char *plain_dir, *outlier_dir;

static int setup(void **state) {
  (void)state;
  plain_dir = fx_synth("tiny", NULL);
  outlier_dir = fx_synth("tiny", "vis.0.gate_up:100000");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_rm_rf(plain_dir);
  tu_rm_rf(outlier_dir);
  free(plain_dir);
  free(outlier_dir);
  return 0;
}

/* A chunk of two sequences: [5 text, VS, 6 pads (grid 1x4x6), VE, 7 text] and
 * [3 text, VS, 15 pads (grid 1x6x10), VE, 10 text]. Arrays are static (one chunk at a time). */
typedef struct fx_chunk {
  aqs_calib_chunk c;
  int32_t lens[2], ids[64], img_seq[2], img_start[2], img_ntok[2], thw[6];
  int64_t offs[3], poffs[3];
  float *patches;
} fx_chunk;

static void make_chunk(fx_chunk *f, const aqs_qwen_config *cfg, uint32_t seed) {
  memset(f, 0, sizeof *f);
  const int text0[2] = {5, 3}, text1[2] = {7, 10}, ntok[2] = {6, 15};
  const int32_t grids[6] = {1, 4, 6, 1, 6, 10};
  uint32_t s = seed;
  int off = 0;
  for (int q = 0; q < 2; q++) {
    f->offs[q] = off;
    for (int i = 0; i < text0[q]; i++, off++) f->ids[off] = (int32_t)((s = s * 1664525u + 1013904223u) >> 8) % 500;
    f->ids[off++] = cfg->vision_start_token_id;
    f->img_start[q] = text0[q] + 1;
    for (int i = 0; i < ntok[q]; i++) f->ids[off++] = cfg->image_token_id;
    f->ids[off++] = cfg->vision_end_token_id;
    for (int i = 0; i < text1[q]; i++, off++) f->ids[off] = (int32_t)((s = s * 1664525u + 1013904223u) >> 8) % 500;
    f->lens[q] = off - (int)f->offs[q];
    f->img_seq[q] = q;
    f->img_ntok[q] = ntok[q];
  }
  f->offs[2] = off;
  memcpy(f->thw, grids, sizeof grids);
  f->poffs[0] = 0;
  f->poffs[1] = 24;
  f->poffs[2] = 84;
  f->patches = malloc(84 * (size_t)AQS_CALIB_PATCH_DIM * sizeof(float));
  for (size_t i = 0; i < 84 * (size_t)AQS_CALIB_PATCH_DIM; i++)
    f->patches[i] = (float)(((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0) * 4.0f - 2.0f;
  aqs_calib_chunk *c = &f->c;
  c->n_seqs = 2;
  c->seq_lens = f->lens;
  c->seq_offsets = f->offs;
  c->n_tokens = off;
  c->token_ids = f->ids;
  c->n_images = 2;
  c->image_seq = f->img_seq;
  c->image_token_start = f->img_start;
  c->image_n_tokens = f->img_ntok;
  c->image_grid_thw = f->thw;
  c->image_patch_offsets = f->poffs;
  c->n_patches = 84;
  c->patch_dim = AQS_CALIB_PATCH_DIM;
  c->pixel_patches = f->patches;
}

static aqs_vlm *load(const char *dir, aqs_backend **be, aqs_precision prec) {
  aqs_err e = {0};
  aqs_vlm *m;
  assert_int_equal(aqs_backend_open("cpu", prec, be, &e), AQS_OK);
  if (aqs_vlm_load(*be, dir, &m, &e)) fail_msg("load: %s", e.msg);
  return m;
}

/* Sequence 0 of the fixture, by hand: text 0..5 (5 tokens + <|vision_start|>), then the 2x3 merged
 * grid at (6, 6 + row, 6 + col), then text from 6 + max(2, 3) = 9. */
static void test_positions_and_targets(void **state) {
  (void)state;
  aqs_backend *be;
  aqs_vlm *m = load(plain_dir, &be, AQS_PREC_F32);
  fx_chunk f;
  make_chunk(&f, &m->lm->model->cfg, 1);
  aqs_vlm_batch b;
  aqs_err e = {0};
  assert_int_equal(aqs_vlm_batch_of_chunk(m, &f.c, 0, &b, &e), AQS_OK);
  const int N = b.lm.n_tokens;
  int32_t *pos = malloc(3 * (size_t)N * sizeof *pos), *tg = malloc((size_t)N * sizeof *tg);
  int32_t rows[21];
  be->ops->copy_d2h(be, pos, b.lm.pos, 3 * (size_t)N * sizeof *pos);
  be->ops->copy_d2h(be, tg, b.lm.targets, (size_t)N * sizeof *tg);
  be->ops->copy_d2h(be, rows, b.lm.image_rows, sizeof rows);
  const int32_t t0[14] = {0, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 6, 9, 10};
  const int32_t h0[14] = {0, 1, 2, 3, 4, 5, 6, 6, 6, 7, 7, 7, 9, 10};
  const int32_t w0[14] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 6, 7, 8, 9, 10};
  for (int i = 0; i < 14; i++) {
    assert_int_equal(pos[i], t0[i]);
    assert_int_equal(pos[N + i], h0[i]);
    assert_int_equal(pos[2 * N + i], w0[i]);
  }
  /* sequence 1: VS at 3, 3x5 merged grid at (4, 4+r, 4+c), text after at 4 + 5 = 9 */
  const int s1 = f.lens[0];
  assert_int_equal(pos[s1 + 3], 3);
  assert_int_equal(pos[N + s1 + 4 + 14], 4 + 2);     /* last image token: row 2 */
  assert_int_equal(pos[2 * N + s1 + 4 + 14], 4 + 4);  /* column 4 */
  assert_int_equal(pos[s1 + 4 + 15], 9);              /* <|vision_end|> */
  assert_int_equal(b.lm.n_image_rows, 21);
  assert_int_equal(rows[0], 6);
  assert_int_equal(rows[6], s1 + 4);
  /* no target predicts <|vision_start|>, an image pad or <|vision_end|> */
  assert_int_equal(tg[4], -1);  /* next is VS */
  assert_int_equal(tg[5], -1);  /* next is a pad */
  assert_int_equal(tg[11], -1); /* next is VE */
  assert_int_equal(tg[12], f.ids[13]);
  assert_int_equal(tg[0], f.ids[1]);
  assert_int_equal(tg[s1 - 1], -1); /* last of the sequence */
  assert_int_equal(b.lm.n_targets, (5 - 1) + 7 + (3 - 1) + 10);
  free(pos);
  free(tg);
  aqs_vlm_batch_free(m, &b);
  free(f.patches);
  aqs_vlm_free(m);
  aqs_backend_close(be);
}

/* transformers' rule (get_rope_index, Qwen2.5-VL images: temporal step 0) on layouts the fixture
 * chunk lacks, expected positions written out by hand:
 *   sequence 0: [2 text, VS, tall image (patches 1x6x4: merged 3 rows x 2 columns), VE, 1 text, VS,
 *                wide strip (1x2x8: 1 x 4), VE, 3 text]: the first image sits at p = 3 and the
 *                text after it restarts at 3 + max(3, 2) = 6 (its height, not its width); the
 *                second at p = 9, text after at 9 + 4 = 13;
 *   sequence 1: [VS, square image (1x4x4: 2 x 2), VE]: nothing after the image but <|vision_end|>,
 *                at 1 + 2 = 3; positions restart at 0 in each packed sequence. */
static void test_positions_two_images_one_sequence(void **state) {
  (void)state;
  aqs_backend *be;
  aqs_vlm *m = load(plain_dir, &be, AQS_PREC_F32);
  const aqs_qwen_config *cfg = &m->lm->model->cfg;
  const int32_t T = 7, VS = cfg->vision_start_token_id, P = cfg->image_token_id,
                VE = cfg->vision_end_token_id;
  const int32_t ids[26] = {T, T, VS, P, P, P, P, P, P, VE, T, VS, P, P, P, P, VE, T, T, T,
                           VS, P, P, P, P, VE};
  const int32_t lens[2] = {20, 6}, seq[3] = {0, 0, 1}, start[3] = {3, 12, 1};
  const int32_t thw[9] = {1, 6, 4, 1, 2, 8, 1, 4, 4};
  const aqs_lm_images im = {3, seq, start, thw, m->vis->cfg.spatial_merge_size};
  assert_int_equal(im.merge_size, 2);
  aqs_lm_batch b;
  aqs_err e = {0};
  if (aqs_lm_batch_make_images(m->lm, ids, lens, 2, 64, &im, &b, &e)) fail_msg("%s", e.msg);
  const int32_t t[26] = {0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7, 8, 9, 9, 9, 9, 13, 14, 15, 16,
                         0, 1, 1, 1, 1, 3};
  const int32_t h[26] = {0, 1, 2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9, 9, 9, 9, 13, 14, 15, 16,
                         0, 1, 1, 2, 2, 3};
  const int32_t w[26] = {0, 1, 2, 3, 4, 3, 4, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                         0, 1, 2, 1, 2, 3};
  int32_t pos[78], rows[14], tg[26];
  assert_int_equal(b.n_tokens, 26);
  be->ops->copy_d2h(be, pos, b.pos, sizeof pos);
  be->ops->copy_d2h(be, rows, b.image_rows, sizeof rows);
  be->ops->copy_d2h(be, tg, b.targets, sizeof tg);
  for (int i = 0; i < 26; i++) {
    if (pos[i] != t[i] || pos[26 + i] != h[i] || pos[52 + i] != w[i])
      fail_msg("token %d: positions (%d, %d, %d), transformers gives (%d, %d, %d)", i, pos[i],
               pos[26 + i], pos[52 + i], t[i], h[i], w[i]);
  }
  assert_int_equal(b.n_image_rows, 14);
  const int32_t rows_want[14] = {3, 4, 5, 6, 7, 8, 12, 13, 14, 15, 21, 22, 23, 24};
  assert_memory_equal(rows, rows_want, sizeof rows);
  assert_int_equal(tg[9], T);  /* <|vision_end|> predicts the text after it */
  assert_int_equal(tg[10], -1); /* the text before the second <|vision_start|> predicts nothing */
  assert_int_equal(tg[19], -1); /* end of sequence 0 */
  assert_int_equal(b.n_targets, 5); /* tokens 0, 9, 16, 17, 18; none in sequence 1 */
  aqs_lm_batch_free(m->lm, &b);
  aqs_vlm_free(m);
  aqs_backend_close(be);
}

static void expect_bad(aqs_vlm *m, fx_chunk *f, const char *needle) {
  aqs_vlm_batch b;
  aqs_err e = {0};
  assert_int_equal(aqs_vlm_batch_of_chunk(m, &f->c, 0, &b, &e), AQS_ERR_INVALID);
  if (!strstr(e.msg, needle)) fail_msg("message '%s' lacks '%s'", e.msg, needle);
}

static void test_bad_layouts(void **state) {
  (void)state;
  aqs_backend *be;
  aqs_vlm *m = load(plain_dir, &be, AQS_PREC_F32);
  const aqs_qwen_config *cfg = &m->lm->model->cfg;
  fx_chunk f;
  make_chunk(&f, cfg, 2);
  f.ids[2] = cfg->image_token_id; /* a stray pad in the text of sequence 0 */
  expect_bad(m, &f, "sequence 0 position 2: <|image_pad|> outside");
  free(f.patches);
  make_chunk(&f, cfg, 2);
  f.ids[13] = cfg->image_token_id; /* a pad after image 0's <|vision_end|> */
  expect_bad(m, &f, "sequence 0 position 13: <|image_pad|> outside");
  free(f.patches);
  make_chunk(&f, cfg, 2);
  f.ids[f.lens[0] + 4 + 3] = 7; /* a hole in image 1's pads */
  expect_bad(m, &f, "sequence 1 image 1: position 7 holds token 7");
  free(f.patches);
  make_chunk(&f, cfg, 2);
  f.thw[4] = 12; /* 6 x 7 merged tokens from position 4 of a 30-token sequence */
  f.thw[5] = 14;
  expect_bad(m, &f, "sequence 1 image 1: 42 image tokens from position 4 run past the sequence end");
  free(f.patches);
  make_chunk(&f, cfg, 2);
  f.img_start[1] = 2; /* the image does not start at its pads */
  expect_bad(m, &f, "position 2 holds token");
  free(f.patches);
  make_chunk(&f, cfg, 2);
  f.thw[4] = 5; /* 5 is not a multiple of the merge size */
  expect_bad(m, &f, "bad grid");
  free(f.patches);
  make_chunk(&f, cfg, 2);
  f.c.n_images = 0;
  expect_bad(m, &f, "holds no images");
  free(f.patches);
  aqs_vlm_free(m);
  aqs_backend_close(be);
}

/* ---- gradient through both towers ---- */

static double mm_loss(aqs_vlm *m, aqs_vlm_batch *b, aqs_lm_ws *lws, aqs_vision_ws *vws, vprobe *p) {
  aqs_err e = {0};
  assert_int_equal(aqs_vision_forward(m->vis, &b->vis, vws, NULL, vprobe_hook, p, &e), AQS_OK);
  b->lm.image_embeds = aqs_vision_ws_output(vws);
  assert_int_equal(aqs_lm_forward(m->lm, &b->lm, lws, NULL, NULL, &e), AQS_OK);
  double sum;
  m->lm->be->ops->cross_entropy(m->lm->be, NULL, aqs_lm_ws_logits(lws), b->lm.targets,
                                b->lm.n_tokens, m->lm->cfg.vocab_size, 1.0f, &sum);
  return sum / b->lm.n_targets;
}

static void test_gradient_through_both_towers(void **state) {
  (void)state;
  aqs_backend *be;
  aqs_vlm *m = load(plain_dir, &be, AQS_PREC_F32);
  fx_chunk f;
  make_chunk(&f, &m->lm->model->cfg, 3);
  aqs_vlm_batch b;
  aqs_lm_ws *lws;
  aqs_vision_ws *vws;
  aqs_err e = {0};
  assert_int_equal(aqs_vlm_batch_of_chunk(m, &f.c, 0, &b, &e), AQS_OK);
  assert_int_equal(aqs_lm_ws_alloc(m->lm, &b.lm, 1, 0, &lws, &e), AQS_OK);
  assert_int_equal(aqs_vision_ws_alloc(m->vis, &b.vis, 1, &vws, &e), AQS_OK);
  float *g = malloc((size_t)1 << 22), *dir = malloc((size_t)1 << 22);
  struct { int block; aqs_vis_slot slot; } probes[] = {
    {-1, AQS_VIS_PATCH}, {0, AQS_VIS_QKV}, {1, AQS_VIS_DOWN}, {-1, AQS_VIS_MERGER2}};
  for (size_t pi = 0; pi < sizeof probes / sizeof *probes; pi++) {
    vprobe p = {probes[pi].block, probes[pi].slot, g, NULL, 0, 0};
    assert_int_equal(aqs_vision_forward(m->vis, &b.vis, vws, NULL, NULL, NULL, &e), AQS_OK);
    b.lm.image_embeds = aqs_vision_ws_output(vws);
    double loss;
    assert_int_equal(aqs_lm_forward_backward(m->lm, &b.lm, lws, NULL, NULL, &loss, &e), AQS_OK);
    be->ops->gather_rows(be, aqs_vision_ws_doutput(vws), aqs_lm_ws_dinput(lws), b.lm.image_rows,
                         b.lm.n_image_rows, m->lm->cfg.hidden_size);
    assert_int_equal(aqs_vision_backward(m->vis, &b.vis, vws, vprobe_hook, &p, &e), AQS_OK);
    double gn = 0;
    for (size_t i = 0; i < p.n; i++) gn += (double)g[i] * g[i];
    gn = sqrt(gn);
    assert_true(gn > 0);
    for (size_t i = 0; i < p.n; i++) dir[i] = (float)(g[i] / gn);
    vprobe fp = {probes[pi].block, probes[pi].slot, NULL, dir, 0.02f, 0};
    double lp = mm_loss(m, &b, lws, vws, &fp);
    fp.h = -0.02f;
    double lmn = mm_loss(m, &b, lws, vws, &fp);
    double fd = (lp - lmn) / 0.04;
    if (fabs(fd - gn) > 0.02 * gn)
      fail_msg("block %d %s: |G| = %.6g, finite difference along G %.6g", probes[pi].block,
               aqs_vis_slot_suffix(probes[pi].slot), gn, fd);
  }
  free(g);
  free(dir);
  aqs_vision_ws_free(m->vis, vws);
  aqs_lm_ws_free(m->lm, lws);
  aqs_vlm_batch_free(m, &b);
  free(f.patches);
  aqs_vlm_free(m);
  aqs_backend_close(be);
}

/* ---- calibration and scores ---- */
static void calibrate(aqs_vlm *m, fx_chunk *f, aqs_amax_table *t) {
  aqs_err e = {0};
  memset(t, 0, sizeof *t);
  if (aqs_vlm_calibrate_chunk(m, &f->c, 0, t, &e)) fail_msg("calibrate: %s", e.msg);
  assert_int_equal(aqs_vlm_set_amax(m, t, &e), AQS_OK);
}

static void test_calibration(void **state) {
  (void)state;
  aqs_backend *be;
  aqs_vlm *m = load(plain_dir, &be, AQS_PREC_F32);
  fx_chunk f;
  make_chunk(&f, &m->lm->model->cfg, 4);
  aqs_amax_table t;
  calibrate(m, &f, &t);
  float pmax = 0;
  for (size_t i = 0; i < 84 * (size_t)AQS_CALIB_PATCH_DIM; i++) pmax = fmaxf(pmax, fabsf(f.patches[i]));
  const aqs_amax_entry *en = aqs_amax_find(&t, "model.visual.patch_embed.proj");
  assert_non_null(en);
  assert_true(en->input_amax == pmax); /* exact: the max of the pixel values */
  en = aqs_amax_find(&t, "model.visual.merger.mlp.2");
  assert_non_null(en);
  assert_true(en->input_amax > 0 && en->weight_amax > 0);
  /* gate and up share their input */
  assert_true(aqs_amax_find(&t, "model.visual.blocks.1.mlp.up_proj")->input_amax ==
              aqs_amax_find(&t, "model.visual.blocks.1.mlp.gate_proj")->input_amax);
  assert_true(aqs_amax_find(&t, "model.language_model.layers.0.self_attn.q_proj")->input_amax > 0);
  assert_int_equal(t.n_tokens, f.c.n_tokens);
  aqs_amax_free(&t);
  free(f.patches);
  aqs_vlm_free(m);
  aqs_backend_close(be);
}

/* BF16 calibration of an image+text batch (image features scattered into rows of two sequences,
 * M-RoPE positions of a grid) on BF16 activation storage gives the F32-buffer forward's amax table,
 * bit for bit (aqs_vlm_calibrate_chunk takes the BF16-storage forward). */
static void test_calibration_storage_b(void **state) {
  (void)state;
  aqs_backend *be;
  aqs_vlm *m = load(plain_dir, &be, AQS_PREC_BF16);
  assert_int_equal(aqs_lm_calib_b_applies(m->lm), 1);
  fx_chunk f;
  make_chunk(&f, &m->lm->model->cfg, 6);
  aqs_err e = {0};
  aqs_vlm_batch b;
  assert_int_equal(aqs_vlm_batch_of_chunk(m, &f.c, 0, &b, &e), AQS_OK);
  assert_true(b.lm.n_image_rows > 0);
  aqs_vision_ws *vws;
  assert_int_equal(aqs_vision_ws_alloc(m->vis, &b.vis, 0, &vws, &e), AQS_OK);
  assert_int_equal(aqs_vision_forward(m->vis, &b.vis, vws, NULL, NULL, NULL, &e), AQS_OK);
  b.lm.image_embeds = aqs_vision_ws_output(vws);
  aqs_amax_table t[2];
  for (int sb = 0; sb < 2; sb++) {
    memset(&t[sb], 0, sizeof t[sb]);
    if (aqs_calibrate_lm_batch_storage(m->lm, &b.lm, sb, &t[sb], &e)) fail_msg("calibrate: %s", e.msg);
  }
  assert_int_equal(t[0].n, t[1].n);
  assert_int_equal(t[0].n, (size_t)m->lm->cfg.num_layers * (AQS_LIN_COUNT + 2));
  for (size_t j = 0; j < t[0].n; j++) {
    assert_string_equal(t[0].entries[j].module, t[1].entries[j].module);
    assert_memory_equal(&t[0].entries[j].input_amax, &t[1].entries[j].input_amax, sizeof(float));
    assert_true(t[0].entries[j].input_amax > 0);
  }
  /* the image rows matter: features scaled by 4 give another residual stream, other values */
  aqs_amax_table text = {0};
  float *feat = aqs_vision_ws_output(vws);
  for (size_t i = 0; i < (size_t)b.lm.n_image_rows * (size_t)m->lm->cfg.hidden_size; i++) feat[i] *= 4.0f;
  if (aqs_calibrate_lm_batch_storage(m->lm, &b.lm, 1, &text, &e)) fail_msg("calibrate: %s", e.msg);
  const char *gate0 = "model.language_model.layers.0.mlp.gate_proj";
  assert_true(aqs_amax_find(&text, gate0)->input_amax != aqs_amax_find(&t[1], gate0)->input_amax);
  for (int sb = 0; sb < 2; sb++) aqs_amax_free(&t[sb]);
  aqs_amax_free(&text);
  aqs_vision_ws_free(m->vis, vws);
  aqs_vlm_batch_free(m, &b);
  free(f.patches);
  aqs_vlm_free(m);
  aqs_backend_close(be);
}

static void check_scores(aqs_sens_method method) {
  aqs_backend *be;
  aqs_vlm *m = load(outlier_dir, &be, AQS_PREC_F32);
  fx_chunk f;
  make_chunk(&f, &m->lm->model->cfg, 5);
  aqs_amax_table t;
  calibrate(m, &f, &t);
  aqs_scores s;
  aqs_err e = {0};
  double loss;
  if (aqs_vlm_sensitivity_chunk(m, &f.c, method, AQS_SCOPE_ALL_LAYERS, 0, &s, &loss, &e))
    fail_msg("sensitivity: %s", e.msg);
  assert_int_equal(s.ngroups, m->lm->model->ngroups);
  assert_string_equal(s.scope, "all_layers");
  size_t *rank = aqs_scores_ranking(&s);
  const char *top = s.groups[rank[s.ngroups - 1]].id;
  printf("%s: most sensitive %s (%.4g), next %s (%.4g)\n", s.method, top,
         s.groups[rank[s.ngroups - 1]].score, s.groups[rank[s.ngroups - 2]].id,
         s.groups[rank[s.ngroups - 2]].score);
  assert_string_equal(top, "vis.0.gate_up");
  int vis_nonzero = 0;
  for (size_t i = 0; i < s.ngroups; i++) {
    assert_true(isfinite(s.groups[i].score) && s.groups[i].score >= 0);
    vis_nonzero += strncmp(s.groups[i].id, "vis.", 4) == 0 && s.groups[i].score > 0;
  }
  assert_int_equal(vis_nonzero, (int)(m->lm->model->ngroups - m->lm->model->n_lm_groups));
  free(rank);
  aqs_scores_free(&s);
  /* lm_only on the same chunk: the language groups only, vision still feeding them */
  assert_int_equal(aqs_vlm_sensitivity_chunk(m, &f.c, method, AQS_SCOPE_LM_ONLY, 0, &s, &loss, &e),
                   AQS_OK);
  assert_int_equal(s.ngroups, m->lm->model->n_lm_groups);
  aqs_scores_free(&s);
  aqs_amax_free(&t);
  free(f.patches);
  aqs_vlm_free(m);
  aqs_backend_close(be);
}

/* The gradient score of a vision group equals sum (G (Yq - Y))^2 recomputed here from the tower's
 * own backward (the language model's input gradient gathered at the image rows). */
typedef struct score_probe {
  aqs_vision_ws *ws;
  double score;
} score_probe;

static aqs_status score_hook(void *ctx, const aqs_vision *vis, int block, aqs_vis_slot slot,
                             const aqs_lm_linear *lin, const float *x, const float *y,
                             const float *g, int rows, aqs_err *e) {
  (void)e;
  score_probe *sp = ctx;
  if (!g || block != 1 || slot != AQS_VIS_PROJ) return AQS_OK;
  const float *yq = aqs_vision_ws_linear_fp8(vis, sp->ws, lin, x, rows);
  double s = 0;
  for (size_t i = 0; i < (size_t)rows * lin->out; i++) {
    double t = (double)g[i] * ((double)yq[i] - y[i]);
    s += t * t;
  }
  sp->score = s;
  return AQS_OK;
}

static void test_vision_score_by_hand(void **state) {
  (void)state;
  aqs_backend *be;
  aqs_vlm *m = load(plain_dir, &be, AQS_PREC_F32);
  fx_chunk f;
  make_chunk(&f, &m->lm->model->cfg, 6);
  aqs_amax_table t;
  calibrate(m, &f, &t);
  aqs_scores s;
  aqs_err e = {0};
  assert_int_equal(aqs_vlm_sensitivity_chunk(m, &f.c, AQS_SENS_GRADIENT, AQS_SCOPE_ALL_LAYERS, 0,
                                             &s, NULL, &e), AQS_OK);
  double got = -1;
  for (size_t i = 0; i < s.ngroups; i++)
    if (strcmp(s.groups[i].id, "vis.1.proj") == 0) got = s.groups[i].score;
  aqs_vlm_batch b;
  aqs_lm_ws *lws;
  aqs_vision_ws *vws;
  assert_int_equal(aqs_vlm_batch_of_chunk(m, &f.c, 0, &b, &e), AQS_OK);
  assert_int_equal(aqs_lm_ws_alloc(m->lm, &b.lm, 1, 0, &lws, &e), AQS_OK);
  assert_int_equal(aqs_vision_ws_alloc(m->vis, &b.vis, 1, &vws, &e), AQS_OK);
  assert_int_equal(aqs_vision_forward(m->vis, &b.vis, vws, NULL, NULL, NULL, &e), AQS_OK);
  b.lm.image_embeds = aqs_vision_ws_output(vws);
  double loss;
  assert_int_equal(aqs_lm_forward_backward(m->lm, &b.lm, lws, NULL, NULL, &loss, &e), AQS_OK);
  /* rows by hand: the <|image_pad|> positions of the packed batch */
  const int C = m->lm->cfg.hidden_size, O = m->vis->cfg.out_hidden_size;
  const float *din = aqs_lm_ws_dinput(lws);
  float *dout = aqs_vision_ws_doutput(vws);
  int k = 0;
  for (int r = 0; r < b.lm.n_tokens; r++)
    if (f.ids[r] == m->lm->model->cfg.image_token_id)
      memcpy(dout + (size_t)k++ * O, din + (size_t)r * C, (size_t)O * sizeof(float));
  assert_int_equal(k, b.vis.n_merged);
  score_probe sp = {vws, -1};
  assert_int_equal(aqs_vision_backward(m->vis, &b.vis, vws, score_hook, &sp, &e), AQS_OK);
  printf("vis.1.proj gradient score: engine %.9g, by hand %.9g\n", got, sp.score);
  assert_true(sp.score > 0);
  assert_true(fabs(got - sp.score) <= 1e-5 * sp.score);
  aqs_vision_ws_free(m->vis, vws);
  aqs_lm_ws_free(m->lm, lws);
  aqs_vlm_batch_free(m, &b);
  aqs_scores_free(&s);
  aqs_amax_free(&t);
  free(f.patches);
  aqs_vlm_free(m);
  aqs_backend_close(be);
}

static void test_scores_gradient(void **state) {
  (void)state;
  check_scores(AQS_SENS_GRADIENT);
}

static void test_scores_kl(void **state) {
  (void)state;
  check_scores(AQS_SENS_KL_DIV);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_positions_and_targets),
    cmocka_unit_test(test_positions_two_images_one_sequence),
    cmocka_unit_test(test_bad_layouts),
    cmocka_unit_test(test_gradient_through_both_towers),
    cmocka_unit_test(test_calibration),
    cmocka_unit_test(test_calibration_storage_b),
    cmocka_unit_test(test_vision_score_by_hand),
    cmocka_unit_test(test_scores_gradient),
    cmocka_unit_test(test_scores_kl),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
