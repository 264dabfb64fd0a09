/* tests/unit/compute/test_vision.c: the vision tower (engine/compute/vision.h) on the CPU
 * against a slow double-precision reference written here from transformers' Qwen2.5-VL
 * (get_window_index with its -100 padding, rot_pos_emb, blocks, merger, inverse order), on odd
 * image sizes; the activation backward against finite differences; FP8 fake-quant hooks. */
#include "testutil.h"

#include <math.h>

#include "engine/compute/vision.h"
#include "lm_fixture.h"
#include "vision_probe.h"

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

/* Images of odd sizes (in patches): partial windows both ways, a side that is an exact multiple
 * of the window (transformers then pads a whole empty window row), a 2-patch-wide strip. */
static const int32_t grids[][3] = {{1, 6, 10}, {1, 8, 4}, {1, 2, 18}};
#define N_IMAGES 3

/* ------------------------------------------------------------------ reference (double) */
typedef struct ref_model {
  aqs_qwen_config cfg;
  aqs_ckpt *ck;
  aqs_qwen_model *model;
} ref_model;

static double *tensor(ref_model *r, const char *suffix_global, int block, const char *suffix) {
  char name[256];
  if (block >= 0) aqs_qwen_vis_name(r->model->naming, block, suffix, name, sizeof name);
  else aqs_qwen_global_name(r->model->naming, suffix_global, name, sizeof name);
  const aqs_st_tensor *t;
  aqs_err e = {0};
  if (aqs_ckpt_get(r->ck, name, &t, &e) != AQS_OK) {
    print_error("%s\n", e.msg);
    fail();
  }
  double *out = malloc(t->numel * sizeof *out);
  const uint16_t *b = t->data;
  for (uint64_t i = 0; i < t->numel; i++) {
    uint32_t u = (uint32_t)b[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    out[i] = f;
  }
  return out;
}

/* y (n, out) = x (n, in) @ w^T + bias */
static void ref_linear(double *y, const double *x, const double *w, const double *bias, int n,
                       int in, int out) {
  for (int i = 0; i < n; i++)
    for (int o = 0; o < out; o++) {
      double s = bias ? bias[o] : 0.0;
      for (int k = 0; k < in; k++) s += x[(size_t)i * in + k] * w[(size_t)o * in + k];
      y[(size_t)i * out + o] = s;
    }
}

static void ref_rmsnorm(double *y, const double *x, const double *w, int n, int c, double eps) {
  for (int i = 0; i < n; i++) {
    double ss = 0;
    for (int j = 0; j < c; j++) ss += x[(size_t)i * c + j] * x[(size_t)i * c + j];
    double r = 1.0 / sqrt(ss / c + eps);
    for (int j = 0; j < c; j++) y[(size_t)i * c + j] = w[j] * x[(size_t)i * c + j] * r;
  }
}

/* torch-style get_window_index for one image: the merged grid padded with -100 to whole windows
 * (plus a full window when already whole), windows in (row, col) order, -100 dropped. */
static int ref_window_index(int t, int lh, int lw, int vw, int base, int32_t *idx, int *seqlens,
                            int *nwin) {
  int pad_h = vw - lh % vw, pad_w = vw - lw % vw, ph = lh + pad_h, pw = lw + pad_w, k = 0;
  for (int tt = 0; tt < t; tt++)
    for (int wh = 0; wh < ph / vw; wh++)
      for (int ww = 0; ww < pw / vw; ww++) {
        int cnt = 0;
        for (int a = 0; a < vw; a++)
          for (int b = 0; b < vw; b++) {
            int r = wh * vw + a, c = ww * vw + b;
            int v = (r < lh && c < lw) ? (tt * lh + r) * lw + c : -100;
            if (v != -100) {
              idx[k++] = base + v;
              cnt++;
            }
          }
        seqlens[(*nwin)++] = cnt;
      }
  return k;
}

/* Runs the reference tower on processor-order patches; out (M, O) in processor order. */
static void ref_forward(ref_model *r, const float *patches, int N, double *out) {
  const aqs_qwen_vision_config *v = &r->cfg.vision;
  const int C = v->hidden_size, H = v->num_heads, D = C / H, I = v->intermediate_size,
            m = v->spatial_merge_size, mu = m * m, O = v->out_hidden_size, M = N / mu,
            P = 3 * v->temporal_patch_size * v->patch_size * v->patch_size;
  const int vw = v->window_size / m / v->patch_size;
  /* window index and segments */
  int32_t *widx = malloc((size_t)M * sizeof *widx);
  int seqlens[512], nwin = 0, k = 0, base = 0;
  for (int i = 0; i < N_IMAGES; i++) {
    int lh = grids[i][1] / m, lw = grids[i][2] / m;
    k += ref_window_index(grids[i][0], lh, lw, vw, base, widx + k, seqlens, &nwin);
    base += grids[i][0] * lh * lw;
  }
  assert_int_equal(k, M);
  int cu_win[513], ncw = 0, cu_full[16], ncf = 0;
  cu_win[0] = 0;
  for (int w = 0; w < nwin; w++)
    if (seqlens[w]) cu_win[ncw + 1] = cu_win[ncw] + seqlens[w] * mu, ncw++;
  cu_full[0] = 0;
  for (int i = 0; i < N_IMAGES; i++)
    for (int tt = 0; tt < grids[i][0]; tt++)
      cu_full[ncf + 1] = cu_full[ncf] + grids[i][1] * grids[i][2], ncf++;
  /* rotary positions, processor order: hpos/wpos reshaped (h/m, m, w/m, m), permuted (0,2,1,3) */
  int *hp = malloc((size_t)N * sizeof *hp), *wp = malloc((size_t)N * sizeof *wp);
  int p = 0;
  for (int i = 0; i < N_IMAGES; i++)
    for (int tt = 0; tt < grids[i][0]; tt++)
      for (int bh = 0; bh < grids[i][1] / m; bh++)
        for (int bw = 0; bw < grids[i][2] / m; bw++)
          for (int a = 0; a < m; a++)
            for (int b = 0; b < m; b++, p++) {
              hp[p] = bh * m + a;
              wp[p] = bw * m + b;
            }
  /* reorder patches and positions (per merge unit) into window order */
  double *x = malloc((size_t)N * P * sizeof *x);
  int *hw = malloc((size_t)N * sizeof *hw), *ww = malloc((size_t)N * sizeof *ww);
  for (int i = 0; i < M; i++)
    for (int u = 0; u < mu; u++) {
      int src = widx[i] * mu + u, dst = i * mu + u;
      for (int j = 0; j < P; j++) x[(size_t)dst * P + j] = patches[(size_t)src * P + j];
      hw[dst] = hp[src];
      ww[dst] = wp[src];
    }
  double *wpe = tensor(r, "patch_embed.proj.weight", -1, NULL);
  double *h = malloc((size_t)N * C * sizeof *h);
  ref_linear(h, x, wpe, NULL, N, P, C);
  double *ln = malloc((size_t)N * C * sizeof *ln), *qkv = malloc((size_t)N * 3 * C * sizeof *qkv);
  double *att = malloc((size_t)N * C * sizeof *att), *tmp = malloc((size_t)N * C * sizeof *tmp);
  double *g = malloc((size_t)N * I * sizeof *g), *u = malloc((size_t)N * I * sizeof *u);
  double *sc = malloc((size_t)N * sizeof *sc);
  for (int blk = 0; blk < v->depth; blk++) {
    int full = 0;
    for (int i = 0; i < v->n_fullatt; i++) full |= v->fullatt_block_indexes[i] == blk;
    double *n1 = tensor(r, NULL, blk, "norm1.weight"), *n2 = tensor(r, NULL, blk, "norm2.weight");
    double *wq = tensor(r, NULL, blk, "attn.qkv.weight"), *bq = tensor(r, NULL, blk, "attn.qkv.bias");
    double *wo = tensor(r, NULL, blk, "attn.proj.weight"), *bo = tensor(r, NULL, blk, "attn.proj.bias");
    double *wg = tensor(r, NULL, blk, "mlp.gate_proj.weight"), *bg = tensor(r, NULL, blk, "mlp.gate_proj.bias");
    double *wu = tensor(r, NULL, blk, "mlp.up_proj.weight"), *bu = tensor(r, NULL, blk, "mlp.up_proj.bias");
    double *wd = tensor(r, NULL, blk, "mlp.down_proj.weight"), *bd = tensor(r, NULL, blk, "mlp.down_proj.bias");
    ref_rmsnorm(ln, h, n1, N, C, v->rms_norm_eps);
    ref_linear(qkv, ln, wq, bq, N, C, 3 * C);
    /* rotary on q and k: emb = cat(freqs, freqs), freqs = [h * inv, w * inv], inv over dim D/2 */
    for (int i = 0; i < N; i++)
      for (int s = 0; s < 2; s++)
        for (int hh = 0; hh < H; hh++) {
          double *vec = qkv + (size_t)i * 3 * C + (size_t)s * C + (size_t)hh * D, rot[256];
          for (int c = 0; c < D; c++) {
            int f = c % (D / 2), j = f % (D / 4);
            double inv = 1.0 / pow(10000.0, 2.0 * j / (D / 2.0));
            double ang = (f < D / 4 ? hw[i] : ww[i]) * inv;
            double rh = c < D / 2 ? -vec[c + D / 2] : vec[c - D / 2];
            rot[c] = vec[c] * cos(ang) + rh * sin(ang);
          }
          memcpy(vec, rot, (size_t)D * sizeof *vec);
        }
    const int *cu = full ? cu_full : cu_win, ns = full ? ncf : ncw;
    for (int s = 0; s < ns; s++)
      for (int hh = 0; hh < H; hh++)
        for (int i = cu[s]; i < cu[s + 1]; i++) {
          double mx = -1e300;
          for (int j = cu[s]; j < cu[s + 1]; j++) {
            double d = 0;
            for (int c = 0; c < D; c++)
              d += qkv[(size_t)i * 3 * C + hh * D + c] * qkv[(size_t)j * 3 * C + C + hh * D + c];
            sc[j] = d / sqrt((double)D);
            if (sc[j] > mx) mx = sc[j];
          }
          double z = 0;
          for (int j = cu[s]; j < cu[s + 1]; j++) z += (sc[j] = exp(sc[j] - mx));
          for (int c = 0; c < D; c++) {
            double a = 0;
            for (int j = cu[s]; j < cu[s + 1]; j++) a += sc[j] / z * qkv[(size_t)j * 3 * C + 2 * C + hh * D + c];
            att[(size_t)i * C + hh * D + c] = a;
          }
        }
    ref_linear(tmp, att, wo, bo, N, C, C);
    for (size_t i = 0; i < (size_t)N * C; i++) h[i] += tmp[i];
    ref_rmsnorm(ln, h, n2, N, C, v->rms_norm_eps);
    ref_linear(g, ln, wg, bg, N, C, I);
    ref_linear(u, ln, wu, bu, N, C, I);
    for (size_t i = 0; i < (size_t)N * I; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
    ref_linear(tmp, g, wd, bd, N, I, C);
    for (size_t i = 0; i < (size_t)N * C; i++) h[i] += tmp[i];
    double *all[] = {n1, n2, wq, bq, wo, bo, wg, bg, wu, bu, wd, bd};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
  }
  double *lnq = tensor(r, "merger.ln_q.weight", -1, NULL);
  double *w0 = tensor(r, "merger.mlp.0.weight", -1, NULL), *b0 = tensor(r, "merger.mlp.0.bias", -1, NULL);
  double *w2 = tensor(r, "merger.mlp.2.weight", -1, NULL), *b2 = tensor(r, "merger.mlp.2.bias", -1, NULL);
  ref_rmsnorm(ln, h, lnq, N, C, 1e-6);
  double *m0 = malloc((size_t)N * C * sizeof *m0), *m2 = malloc((size_t)M * O * sizeof *m2);
  ref_linear(m0, ln, w0, b0, M, mu * C, mu * C);
  for (size_t i = 0; i < (size_t)N * C; i++) m0[i] = 0.5 * m0[i] * (1.0 + erf(m0[i] / sqrt(2.0)));
  ref_linear(m2, m0, w2, b2, M, mu * C, O);
  /* reverse_indices = argsort(window_index) */
  for (int i = 0; i < M; i++) memcpy(out + (size_t)widx[i] * O, m2 + (size_t)i * O, (size_t)O * sizeof *out);
  double *fr[] = {wpe, h, ln, qkv, att, tmp, g, u, sc, x, lnq, w0, b0, w2, b2, m0, m2};
  for (size_t i = 0; i < sizeof fr / sizeof *fr; i++) free(fr[i]);
  free(widx);
  free(hp);
  free(wp);
  free(hw);
  free(ww);
}

/* ------------------------------------------------------------------ fixtures */
static int total_patches(void) {
  int n = 0;
  for (int i = 0; i < N_IMAGES; i++) n += grids[i][0] * grids[i][1] * grids[i][2];
  return n;
}

static float *make_patches(int N, int P, uint32_t seed) {
  float *p = malloc((size_t)N * P * sizeof *p);
  uint32_t s = seed;
  for (size_t i = 0; i < (size_t)N * P; i++) {
    s = s * 1664525u + 1013904223u;
    p[i] = (float)((s >> 8) / 16777216.0) * 4.0f - 2.0f; /* normalized pixels span about +-2 */
  }
  return p;
}

static void test_forward_matches_reference(void **state) {
  (void)state;
  aqs_err e = {0};
  aqs_backend *be;
  aqs_vision *vis;
  assert_int_equal(aqs_backend_open("cpu", AQS_PREC_F32, &be, &e), AQS_OK);
  assert_int_equal(aqs_vision_load_dir(be, model_dir, &vis, &e), AQS_OK);
  const int N = total_patches(), P = vis->patch_dim, O = vis->cfg.out_hidden_size, M = N / 4;
  assert_true(vis->cfg.n_fullatt >= 1 && vis->cfg.depth >= 2); /* both attention kinds run */
  float *patches = make_patches(N, P, 5);
  aqs_vision_batch b;
  aqs_vision_ws *ws;
  assert_int_equal(aqs_vision_batch_make(vis, &grids[0][0], N_IMAGES, patches, &b, &e), AQS_OK);
  assert_int_equal(b.n_merged, M);
  assert_int_equal(aqs_vision_ws_alloc(vis, &b, 0, &ws, &e), AQS_OK);
  assert_int_equal(aqs_vision_forward(vis, &b, ws, NULL, NULL, NULL, &e), AQS_OK);
  const float *out = aqs_vision_ws_output(ws);

  ref_model r = {0};
  assert_int_equal(aqs_qwen_model_open(model_dir, &r.model, &r.ck, &e), AQS_OK);
  r.cfg = r.model->cfg;
  double *ref = malloc((size_t)M * O * sizeof *ref);
  ref_forward(&r, patches, N, ref);
  double maxref = 0, maxdiff = 0;
  for (size_t i = 0; i < (size_t)M * O; i++) {
    if (fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
    if (fabs(ref[i] - out[i]) > maxdiff) maxdiff = fabs(ref[i] - out[i]);
  }
  assert_true(maxref > 1e-3);
  if (maxdiff > 1e-4 * maxref) {
    print_error("vision output differs from the reference: max |diff| %.3g, max |ref| %.3g\n",
                maxdiff, maxref);
    fail();
  }
  free(ref);
  aqs_ckpt_close(r.ck);
  aqs_qwen_model_free(r.model);
  aqs_vision_ws_free(vis, ws);
  aqs_vision_batch_free(vis, &b);
  free(patches);
  aqs_vision_free(vis);
  aqs_backend_close(be);
}

/* Window geometry of a 6x10 patch image (merged 3x5, window side 4): windows of 4x3 merged
 * ... as transformers lists them; a 8x4 image (merged 4x2) is one window plus empty ones. */
static void test_window_geometry(void **state) {
  (void)state;
  aqs_qwen_config cfg;
  aqs_err e = {0};
  aqs_qwen_model *model;
  assert_int_equal(aqs_qwen_model_open(model_dir, &model, NULL, &e), AQS_OK);
  cfg = model->cfg;
  aqs_qwen_model_free(model);
  aqs_vision_windows w;
  const int32_t g1[3] = {1, 6, 10};
  assert_int_equal(aqs_vision_windows_make(&cfg.vision, g1, 1, &w, &e), AQS_OK);
  /* merged grid 3 x 5: window (0,0) holds columns 0..3 of rows 0..2, window (0,1) column 4 */
  const int32_t want[15] = {0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 4, 9, 14};
  assert_int_equal(w.n_merged, 15);
  assert_memory_equal(w.window_index, want, sizeof want);
  assert_int_equal(w.n_windows, 2);
  assert_int_equal(w.cu_window[1], 48);
  assert_int_equal(w.cu_window[2], 60);
  assert_int_equal(w.n_frames, 1);
  assert_int_equal(w.cu_full[1], 60);
  /* patch 4 of window order = merged token 1 (row 0, col 1) patch 0: row 0, column 2 */
  assert_int_equal(w.pos_hw[4], 0);
  assert_int_equal(w.pos_hw[60 + 4], 2);
  /* merged token 12 in window order is token 4 (row 0, col 4), its last patch: row 1, col 9 */
  assert_int_equal(w.pos_hw[12 * 4 + 3], 1);
  assert_int_equal(w.pos_hw[60 + 12 * 4 + 3], 9);
  aqs_vision_windows_free(&w);
  const int32_t bad[3] = {1, 5, 4};
  assert_int_equal(aqs_vision_windows_make(&cfg.vision, bad, 1, &w, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "image 0"));
}

/* ------------------------------------------------------------------ gradients */

/* L = <out, R> */
static double vloss(const aqs_vision *vis, const aqs_vision_batch *b, aqs_vision_ws *ws,
                    const float *R, vprobe *p) {
  aqs_err e = {0};
  assert_int_equal(aqs_vision_forward(vis, b, ws, NULL, vprobe_hook, p, &e), AQS_OK);
  const float *out = aqs_vision_ws_output(ws);
  double s = 0;
  for (size_t i = 0; i < (size_t)b->n_merged * vis->cfg.out_hidden_size; i++) s += (double)out[i] * R[i];
  return s;
}

static void test_backward_vs_finite_differences(void **state) {
  (void)state;
  aqs_err e = {0};
  aqs_backend *be;
  aqs_vision *vis;
  assert_int_equal(aqs_backend_open("cpu", AQS_PREC_F32, &be, &e), AQS_OK);
  assert_int_equal(aqs_vision_load_dir(be, model_dir, &vis, &e), AQS_OK);
  const int N = total_patches(), P = vis->patch_dim, O = vis->cfg.out_hidden_size;
  float *patches = make_patches(N, P, 9);
  aqs_vision_batch b;
  aqs_vision_ws *ws;
  assert_int_equal(aqs_vision_batch_make(vis, &grids[0][0], N_IMAGES, patches, &b, &e), AQS_OK);
  assert_int_equal(aqs_vision_ws_alloc(vis, &b, 1, &ws, &e), AQS_OK);
  const int M = b.n_merged;
  float *R = make_patches(M, O, 77);
  size_t maxn = (size_t)N * (size_t)(vis->cfg.intermediate_size > 3 * vis->cfg.hidden_size
                                         ? vis->cfg.intermediate_size
                                         : 3 * vis->cfg.hidden_size);
  if ((size_t)M * 4 * vis->cfg.hidden_size > maxn) maxn = (size_t)M * 4 * vis->cfg.hidden_size;
  float *g = malloc(maxn * sizeof *g), *dir = malloc(maxn * sizeof *dir);
  struct { int block; aqs_vis_slot slot; } probes[] = {
    {-1, AQS_VIS_PATCH}, {0, AQS_VIS_QKV}, {0, AQS_VIS_PROJ}, {0, AQS_VIS_GATE}, {0, AQS_VIS_UP},
    {0, AQS_VIS_DOWN}, {1, AQS_VIS_QKV}, {1, AQS_VIS_DOWN}, {-1, AQS_VIS_MERGER0},
    {-1, AQS_VIS_MERGER2},
  };
  for (size_t pi = 0; pi < sizeof probes / sizeof *probes; pi++) {
    vprobe p = {probes[pi].block, probes[pi].slot, g, NULL, 0, 0};
    assert_int_equal(aqs_vision_forward(vis, &b, ws, NULL, NULL, NULL, &e), AQS_OK);
    memcpy(aqs_vision_ws_doutput(ws), R, (size_t)M * O * sizeof *R);
    assert_int_equal(aqs_vision_backward(vis, &b, ws, vprobe_hook, &p, &e), AQS_OK);
    assert_true(p.n > 0);
    double gnorm = 0;
    for (size_t i = 0; i < p.n; i++) gnorm += (double)g[i] * g[i];
    gnorm = sqrt(gnorm);
    assert_true(gnorm > 0);
    for (size_t i = 0; i < p.n; i++) dir[i] = (float)(g[i] / gnorm);
    vprobe fp = {probes[pi].block, probes[pi].slot, NULL, dir, 0.01f, 0};
    double lp = vloss(vis, &b, ws, R, &fp);
    fp.h = -0.01f;
    double lm = vloss(vis, &b, ws, R, &fp);
    double fd = (lp - lm) / 0.02;
    if (fabs(fd - gnorm) > 0.01 * gnorm) {
      print_error("block %d %s: |G| = %.6g, finite difference along G %.6g\n", probes[pi].block,
                  aqs_vis_slot_suffix(probes[pi].slot), gnorm, fd);
      fail();
    }
  }
  free(g);
  free(dir);
  free(R);
  free(patches);
  aqs_vision_ws_free(vis, ws);
  aqs_vision_batch_free(vis, &b);
  aqs_vision_free(vis);
  aqs_backend_close(be);
}

/* Quantizing one linear changes the output; quantizing none gives the plain forward's bits. */
static void test_fake_quant_flags(void **state) {
  (void)state;
  aqs_err e = {0};
  aqs_backend *be;
  aqs_vision *vis;
  assert_int_equal(aqs_backend_open("cpu", AQS_PREC_BF16, &be, &e), AQS_OK);
  assert_int_equal(aqs_vision_load_dir(be, model_dir, &vis, &e), AQS_OK);
  const int N = total_patches(), P = vis->patch_dim, O = vis->cfg.out_hidden_size;
  float *patches = make_patches(N, P, 3);
  aqs_vision_batch b;
  aqs_vision_ws *ws;
  assert_int_equal(aqs_vision_batch_make(vis, &grids[0][0], N_IMAGES, patches, &b, &e), AQS_OK);
  assert_int_equal(aqs_vision_ws_alloc(vis, &b, 0, &ws, &e), AQS_OK);
  size_t n = (size_t)b.n_merged * O;
  float *plain = malloc(n * sizeof *plain);
  assert_int_equal(aqs_vision_forward(vis, &b, ws, NULL, NULL, NULL, &e), AQS_OK);
  memcpy(plain, aqs_vision_ws_output(ws), n * sizeof *plain);
  size_t nq = (size_t)(vis->cfg.depth + 1) * AQS_VIS_SLOT_COUNT;
  unsigned char *quant = calloc(nq, 1);
  assert_int_equal(aqs_vision_forward(vis, &b, ws, quant, NULL, NULL, &e), AQS_OK);
  assert_memory_equal(plain, aqs_vision_ws_output(ws), n * sizeof *plain);
  /* amax of the patch embedding input: the patches' own max (F32 values rounded to BF16) */
  aqs_vision_linear(vis, -1, AQS_VIS_PATCH)->input_amax = 2.0f;
  quant[aqs_vision_quant_index(-1, AQS_VIS_PATCH)] = 1;
  assert_int_equal(aqs_vision_forward(vis, &b, ws, quant, NULL, NULL, &e), AQS_OK);
  double diff = 0;
  for (size_t i = 0; i < n; i++) diff += fabs(plain[i] - aqs_vision_ws_output(ws)[i]);
  assert_true(diff > 0);
  free(quant);
  free(plain);
  free(patches);
  aqs_vision_ws_free(vis, ws);
  aqs_vision_batch_free(vis, &b);
  aqs_vision_free(vis);
  aqs_backend_close(be);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_window_geometry),
    cmocka_unit_test(test_forward_matches_reference),
    cmocka_unit_test(test_backward_vs_finite_differences),
    cmocka_unit_test(test_fake_quant_flags),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
