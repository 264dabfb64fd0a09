/* tests/unit/compute/test_eval.c: eval metrics of a served FP8 checkpoint (exported by aqs) on
 * the tiny model against a slow double-precision forward written here from the Qwen2 equations
 * (its own weight reading, RMSNorm, RoPE, GQA attention, SwiGLU, FP8 emulation and metrics);
 * the BF16 baseline; served-model loading errors; the FP8 KV cache; a scheme loaded over the
 * reference (only its changed tensors) and the reference reused across schemes give the same bits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "lm_fixture.h"
#include "engine/compute/eval.h"
#include "engine/compute/vision.h"
#include "engine/model/qwen_config.h"
#include "engine/export/export.h"
#include "engine/model/safetensors.h"
#include "kernels/fp8.h"

static char *src_dir, *fp8_dir, *kv_dir;
static aqs_amax_table amax;
static fx_batches calib, evalb;

/* q/k/v and o of layer 0, gate/up of layer 1, down of layer 2 and 3 in FP8. */
static const char *const kFp8Groups[] = {"lm.0.qkv", "lm.0.o", "lm.1.gate_up", "lm.2.down", "lm.3.down"};

static void export_plan(const char *out, const aqs_amax_table *t, int kv_fp8) {
  aqs_plan *p = aqs_plan_new();
  for (size_t i = 0; i < sizeof kFp8Groups / sizeof kFp8Groups[0]; i++)
    assert_int_equal(aqs_plan_set(p, kFp8Groups[i], AQS_FMT_FP8, NULL), AQS_OK);
  aqs_export_opts o = {.model_dir = src_dir, .amax = t, .plan = p, .out_dir = out, .kv_cache_fp8 = kv_fp8};
  aqs_export_result r;
  aqs_err e = {0};
  if (aqs_export_run(&o, &r, &e) != AQS_OK) fail_msg("export: %s", e.msg);
  aqs_export_result_free(&r);
  aqs_plan_free(p);
}

static int setup(void **state) {
  (void)state;
  src_dir = fx_synth("tiny", NULL);
  fx_make_batches(&calib, 2, 4, 20, 600, 3);
  fx_make_batches(&evalb, 2, 5, 24, 600, 91);
  aqs_backend *be;
  aqs_lm *lm = fx_load(src_dir, &be, AQS_PREC_F32);
  /* calibration (the table holds the K/V cache amax too) */
  aqs_err e = {0};
  for (int i = 0; i < calib.n; i++) {
    aqs_amax_table part = {0}, next = {0};
    const aqs_amax_table *parts[2] = {&amax, &part};
    if (aqs_calibrate_batch(lm, &calib.b[i], 0, &part, &e) != AQS_OK ||
        aqs_amax_reduce(parts, 2, &next, &e) != AQS_OK)
      fail_msg("calibrate: %s", e.msg);
    aqs_amax_free(&part);
    aqs_amax_free(&amax);
    amax = next;
  }
  /* 7 linears and K, V per layer */
  assert_int_equal(amax.n, (size_t)lm->cfg.num_layers * (AQS_LIN_COUNT + 2));
  const aqs_amax_entry *kc = aqs_amax_find(&amax, "model.language_model.layers.1.self_attn.k_cache");
  const aqs_amax_entry *vc = aqs_amax_find(&amax, "model.language_model.layers.1.self_attn.v_cache");
  assert_true(kc && vc && kc->input_amax > 0 && vc->input_amax > 0 && kc->weight_amax == 0);
  aqs_lm_free(lm);
  be->ops->close(be);
  fp8_dir = tu_mkdtemp("evalfp8");
  rmdir(fp8_dir);
  export_plan(fp8_dir, &amax, 0);
  kv_dir = tu_mkdtemp("evalkv");
  rmdir(kv_dir);
  export_plan(kv_dir, &amax, 1);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  aqs_amax_free(&amax);
  tu_rm_rf(src_dir);
  tu_rm_rf(fp8_dir);
  tu_rm_rf(kv_dir);
  free(src_dir);
  free(fp8_dir);
  free(kv_dir);
  return 0;
}

/* ---------------- the double-precision reference ---------------- */

typedef struct rlin {
  int out, in;
  double *w;      /* (out, in): BF16 values, or FP8 codes * (fused) weight scale */
  double *b;      /* (out) or NULL */
  int fp8;
  float x_scale;  /* static input scale of an FP8 linear */
} rlin;

typedef struct rmodel {
  aqs_qwen_text_config c;
  double *embed, *head, *norm;
  double *ln1[8], *ln2[8];
  rlin lin[8][7];
  double k_scale[8], v_scale[8];
} rmodel;

static double bf16_value(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static const aqs_st_tensor *tensor(aqs_ckpt *ck, const char *fmt, int l, const char *suffix) {
  char name[256];
  snprintf(name, sizeof name, fmt, l, suffix);
  return aqs_ckpt_find(ck, name);
}

static double *bf16_tensor(aqs_ckpt *ck, const char *fmt, int l, const char *suffix) {
  const aqs_st_tensor *t = tensor(ck, fmt, l, suffix);
  assert_non_null(t);
  assert_int_equal(t->dtype, AQS_DT_BF16);
  double *d = malloc(t->numel * sizeof *d);
  const uint16_t *src = t->data;
  for (uint64_t i = 0; i < t->numel; i++) d[i] = bf16_value(src[i]);
  return d;
}

static float scalar(aqs_ckpt *ck, const char *fmt, int l, const char *suffix) {
  const aqs_st_tensor *t = tensor(ck, fmt, l, suffix);
  if (!t) return 0.0f;
  float v;
  memcpy(&v, t->data, 4);
  return v;
}

static const char *const kSuffix[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                       "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                       "mlp.down_proj"};
#define LAYER "model.language_model.layers.%d.%s"

/* The fused GEMMs vLLM builds: members share the max weight scale (codes requantized through
 * float16) and the max input scale. */
static void load_fused(rmodel *m, aqs_ckpt *ck, int l, int first, int n) {
  char sfx[128];
  float wmax = 0, xmax = 0, ws[7] = {0};
  snprintf(sfx, sizeof sfx, "%s.weight", kSuffix[first]);
  if (tensor(ck, LAYER, l, sfx)->dtype != AQS_DT_F8_E4M3) {
    for (int s = first; s < first + n; s++) {
      snprintf(sfx, sizeof sfx, "%s.weight", kSuffix[s]);
      m->lin[l][s].w = bf16_tensor(ck, LAYER, l, sfx);
    }
    return;
  }
  for (int s = first; s < first + n; s++) {
    snprintf(sfx, sizeof sfx, "%s.weight_scale", kSuffix[s]);
    ws[s] = scalar(ck, LAYER, l, sfx);
    snprintf(sfx, sizeof sfx, "%s.input_scale", kSuffix[s]);
    xmax = fmaxf(xmax, scalar(ck, LAYER, l, sfx));
    wmax = fmaxf(wmax, ws[s]);
  }
  for (int s = first; s < first + n; s++) {
    rlin *r = &m->lin[l][s];
    snprintf(sfx, sizeof sfx, "%s.weight", kSuffix[s]);
    const aqs_st_tensor *t = tensor(ck, LAYER, l, sfx);
    const uint8_t *q = t->data;
    r->w = malloc(t->numel * sizeof *r->w);
    r->fp8 = 1;
    r->x_scale = xmax;
    for (uint64_t i = 0; i < t->numel; i++) {
      uint8_t code = q[i];
      if (ws[s] != wmax) {
        _Float16 half = (_Float16)(aqs_fp8_e4m3_to_f32(code) * ws[s]);
        code = aqs_fp8_e4m3_from_f32((float)half * (1.0f / wmax), 0x7F);
      }
      r->w[i] = (double)aqs_fp8_e4m3_to_f32(code) * (double)wmax;
    }
  }
}

static void rmodel_load(rmodel *m, const char *dir, const aqs_qwen_text_config *c) {
  memset(m, 0, sizeof *m);
  m->c = *c;
  aqs_ckpt *ck;
  aqs_err e = {0};
  if (aqs_ckpt_open(dir, &ck, &e) != AQS_OK) fail_msg("%s", e.msg);
  m->embed = bf16_tensor(ck, "model.language_model.embed_tokens.weight%.0d%s", 0, "");
  m->norm = bf16_tensor(ck, "model.language_model.norm.weight%.0d%s", 0, "");
  m->head = aqs_ckpt_find(ck, "lm_head.weight") ? bf16_tensor(ck, "lm_head.weight%.0d%s", 0, "") : m->embed;
  const int D = c->head_dim, C = c->hidden_size, I = c->intermediate_size;
  const int outs[7] = {c->num_heads * D, c->num_kv_heads * D, c->num_kv_heads * D, C, I, I, C};
  const int ins[7] = {C, C, C, c->num_heads * D, C, C, I};
  for (int l = 0; l < c->num_layers; l++) {
    m->ln1[l] = bf16_tensor(ck, LAYER, l, "input_layernorm.weight");
    m->ln2[l] = bf16_tensor(ck, LAYER, l, "post_attention_layernorm.weight");
    for (int s = 0; s < 7; s++) {
      m->lin[l][s].out = outs[s];
      m->lin[l][s].in = ins[s];
    }
    load_fused(m, ck, l, 0, 3);
    load_fused(m, ck, l, 3, 1);
    load_fused(m, ck, l, 4, 2);
    load_fused(m, ck, l, 6, 1);
    char sfx[128];
    for (int s = 0; s < 3; s++) {
      snprintf(sfx, sizeof sfx, "%s.bias", kSuffix[s]);
      m->lin[l][s].b = bf16_tensor(ck, LAYER, l, sfx);
    }
    m->k_scale[l] = scalar(ck, LAYER, l, "self_attn.k_proj.k_scale");
    m->v_scale[l] = scalar(ck, LAYER, l, "self_attn.v_proj.v_scale");
  }
  aqs_ckpt_close(ck);
}

static void rmodel_free(rmodel *m) {
  if (m->head != m->embed) free(m->head);
  free(m->embed);
  free(m->norm);
  for (int l = 0; l < m->c.num_layers; l++) {
    free(m->ln1[l]);
    free(m->ln2[l]);
    for (int s = 0; s < 7; s++) {
      free(m->lin[l][s].w);
      free(m->lin[l][s].b);
    }
  }
}

/* E4M3 fake quantization of one value under scale (the division in F32, as the engine does). */
static double fq(double x, float scale) {
  return (double)aqs_fp8_e4m3_to_f32(aqs_fp8_e4m3_from_f32((float)x / scale, 0x7F)) * scale;
}

static void linear(const rlin *r, const double *x, double *y, int T) {
  double *xq = malloc((size_t)T * (size_t)r->in * sizeof *xq);
  for (size_t i = 0; i < (size_t)T * (size_t)r->in; i++) xq[i] = r->fp8 ? fq(x[i], r->x_scale) : x[i];
  for (int t = 0; t < T; t++)
    for (int o = 0; o < r->out; o++) {
      double acc = r->b ? r->b[o] : 0.0;
      for (int i = 0; i < r->in; i++) acc += xq[(size_t)t * r->in + i] * r->w[(size_t)o * r->in + i];
      y[(size_t)t * r->out + o] = acc;
    }
  free(xq);
}

static void rmsnorm(const double *x, const double *w, double *y, int T, int C, double eps) {
  for (int t = 0; t < T; t++) {
    double ss = 0;
    for (int i = 0; i < C; i++) ss += x[t * C + i] * x[t * C + i];
    double r = 1.0 / sqrt(ss / C + eps);
    for (int i = 0; i < C; i++) y[t * C + i] = w[i] * x[t * C + i] * r;
  }
}

static void rope(double *x, int T, int H, int D, double theta) {
  for (int t = 0; t < T; t++)
    for (int h = 0; h < H; h++) {
      double *v = x + ((size_t)t * H + h) * D, tmp[256];
      for (int j = 0; j < D; j++) {
        int f = j % (D / 2);
        double ang = t * pow(theta, -2.0 * f / D);
        double rot = j < D / 2 ? -v[j + D / 2] : v[j - D / 2];
        tmp[j] = v[j] * cos(ang) + rot * sin(ang);
      }
      memcpy(v, tmp, (size_t)D * sizeof *v);
    }
}

/* Logits (T, V) of one sequence. */
static double *rforward(const rmodel *m, const int32_t *ids, int T) {
  const aqs_qwen_text_config *c = &m->c;
  const int C = c->hidden_size, D = c->head_dim, Hq = c->num_heads, Hkv = c->num_kv_heads,
            I = c->intermediate_size, V = c->vocab_size;
  double *x = calloc((size_t)T * C, 8), *h = calloc((size_t)T * C, 8), *q = calloc((size_t)T * Hq * D, 8),
         *k = calloc((size_t)T * Hkv * D, 8), *v = calloc((size_t)T * Hkv * D, 8),
         *att = calloc((size_t)T * Hq * D, 8), *o = calloc((size_t)T * C, 8), *g = calloc((size_t)T * I, 8),
         *u = calloc((size_t)T * I, 8), *logits = calloc((size_t)T * V, 8);
  for (int t = 0; t < T; t++) memcpy(x + (size_t)t * C, m->embed + (size_t)ids[t] * C, (size_t)C * 8);
  for (int l = 0; l < c->num_layers; l++) {
    rmsnorm(x, m->ln1[l], h, T, C, c->rms_norm_eps);
    linear(&m->lin[l][0], h, q, T);
    linear(&m->lin[l][1], h, k, T);
    linear(&m->lin[l][2], h, v, T);
    rope(q, T, Hq, D, c->rope_theta);
    rope(k, T, Hkv, D, c->rope_theta);
    if (m->k_scale[l] > 0)
      for (int i = 0; i < T * Hkv * D; i++) {
        k[i] = fq(k[i], (float)m->k_scale[l]);
        v[i] = fq(v[i], (float)m->v_scale[l]);
      }
    for (int t = 0; t < T; t++)
      for (int hh = 0; hh < Hq; hh++) {
        int kh = hh / (Hq / Hkv);
        double p[512], mx = -1e300, sum = 0;
        for (int j = 0; j <= t; j++) {
          double dot = 0;
          for (int d = 0; d < D; d++) dot += q[((size_t)t * Hq + hh) * D + d] * k[((size_t)j * Hkv + kh) * D + d];
          p[j] = dot / sqrt((double)D);
          if (p[j] > mx) mx = p[j];
        }
        for (int j = 0; j <= t; j++) sum += (p[j] = exp(p[j] - mx));
        for (int d = 0; d < D; d++) {
          double a = 0;
          for (int j = 0; j <= t; j++) a += p[j] / sum * v[((size_t)j * Hkv + kh) * D + d];
          att[((size_t)t * Hq + hh) * D + d] = a;
        }
      }
    linear(&m->lin[l][3], att, o, T);
    for (int i = 0; i < T * C; i++) x[i] += o[i];
    rmsnorm(x, m->ln2[l], h, T, C, c->rms_norm_eps);
    linear(&m->lin[l][4], h, g, T);
    linear(&m->lin[l][5], h, u, T);
    for (int i = 0; i < T * I; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
    linear(&m->lin[l][6], g, o, T);
    for (int i = 0; i < T * C; i++) x[i] += o[i];
  }
  rmsnorm(x, m->norm, h, T, C, c->rms_norm_eps);
  for (int t = 0; t < T; t++)
    for (int w = 0; w < V; w++) {
      double a = 0;
      for (int i = 0; i < C; i++) a += h[(size_t)t * C + i] * m->head[(size_t)w * C + i];
      logits[(size_t)t * V + w] = a;
    }
  free(x), free(h), free(q), free(k), free(v), free(att), free(o), free(g), free(u);
  return logits;
}

static void log_softmax_d(const double *z, double *out, int V) {
  double mx = -1e300, s = 0;
  for (int i = 0; i < V; i++) mx = fmax(mx, z[i]);
  for (int i = 0; i < V; i++) s += exp(z[i] - mx);
  for (int i = 0; i < V; i++) out[i] = z[i] - mx - log(s);
}

typedef struct rmetrics {
  double ppl, ref_ppl, kl_mean, kl_p99, top1, mse;
} rmetrics;

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static rmetrics reference_metrics(const rmodel *ref, const rmodel *sch, const fx_batches *fb) {
  const int V = ref->c.vocab_size;
  double ce = 0, rce = 0, kl[512], mse = 0;
  int n = 0, agree = 0, nseq = 0;
  double *lr = malloc((size_t)V * 8), *ls = malloc((size_t)V * 8);
  for (int bi = 0; bi < fb->n; bi++) {
    const int32_t *ids = fb->ids[bi];
    for (int s = 0; s < fb->b[bi].n_seqs; s++) {
      int T = fb->lens[bi][s];
      double *a = rforward(ref, ids, T), *b = rforward(sch, ids, T);
      for (int t = 0; t < T; t++) {
        const double *za = a + (size_t)t * V, *zb = b + (size_t)t * V;
        if (t == T - 1) {
          double se = 0;
          for (int w = 0; w < V; w++) se += (zb[w] - za[w]) * (zb[w] - za[w]);
          mse += se / V;
          break;
        }
        log_softmax_d(za, lr, V);
        log_softmax_d(zb, ls, V);
        double k = 0;
        int ia = 0, ib = 0;
        for (int w = 0; w < V; w++) {
          k += exp(lr[w]) * (lr[w] - ls[w]);
          if (za[w] > za[ia]) ia = w;
          if (zb[w] > zb[ib]) ib = w;
        }
        kl[n++] = k;
        agree += ia == ib;
        ce -= ls[ids[t + 1]];
        rce -= lr[ids[t + 1]];
      }
      nseq++;
      free(a);
      free(b);
      ids += T;
    }
  }
  free(lr);
  free(ls);
  rmetrics r = {exp(ce / n), exp(rce / n), 0, 0, (double)agree / n, mse / nseq};
  for (int i = 0; i < n; i++) r.kl_mean += kl[i] / n;
  qsort(kl, (size_t)n, 8, cmpd);
  r.kl_p99 = kl[(int)ceil(0.99 * n) - 1];
  return r;
}

static aqs_eval_metrics engine_metrics(aqs_lm *ref, aqs_lm *sch, const fx_batches *fb) {
  aqs_eval_acc acc = {0};
  aqs_eval_metrics m;
  aqs_err e = {0};
  for (int i = 0; i < fb->n; i++)
    if (aqs_eval_batch(ref, sch, &fb->b[i], 0, &acc, &e) != AQS_OK) fail_msg("eval: %s", e.msg);
  if (aqs_eval_finish(&acc, &m, &e) != AQS_OK) fail_msg("finish: %s", e.msg);
  aqs_eval_acc_free(&acc);
  return m;
}

static void assert_rel(const char *what, double got, double want, double rel) {
  double err = fabs(got - want) / fmax(fabs(want), 1e-30);
  printf("  %-14s engine %.9g  reference %.9g  rel %.2e\n", what, got, want, err);
  if (!(err <= rel)) fail_msg("%s: engine %.9g vs double reference %.9g (rel %.3g > %.3g)", what, got, want, err, rel);
}

static void compare_with_reference(const char *scheme_dir) {
  aqs_backend *be;
  aqs_lm *ref = fx_load(src_dir, &be, AQS_PREC_F32), *sch;
  aqs_err e = {0};
  if (aqs_lm_load(be, scheme_dir, &sch, &e) != AQS_OK) fail_msg("load: %s", e.msg);
  aqs_eval_metrics m = engine_metrics(ref, sch, &evalb);
  rmodel rr, rs;
  rmodel_load(&rr, src_dir, &ref->cfg);
  rmodel_load(&rs, scheme_dir, &ref->cfg);
  rmetrics r = reference_metrics(&rr, &rs, &evalb);
  assert_true(m.kl_mean > 1e-6); /* the scheme really differs from BF16 */
  assert_rel("ppl", m.ppl, r.ppl, 1e-4);
  assert_rel("ref ppl", m.ref_ppl, r.ref_ppl, 1e-5);
  assert_rel("kl mean", m.kl_mean, r.kl_mean, 2e-4);
  assert_rel("kl p99", m.kl_p99, r.kl_p99, 1e-3);
  assert_rel("top1", m.top1, r.top1, 0.021); /* at most one near-tie may flip of ~90 */
  assert_rel("last mse", m.last_mse, r.mse, 1e-4);
  rmodel_free(&rr);
  rmodel_free(&rs);
  aqs_lm_free(sch);
  aqs_lm_free(ref);
  be->ops->close(be);
}

static void test_served_fp8_vs_double_reference(void **state) {
  (void)state;
  compare_with_reference(fp8_dir);
}

/* The BF16 source against itself: KL 0, top-1 1, MSE 0, ppl = reference ppl. */
static void test_baseline(void **state) {
  (void)state;
  aqs_backend *be;
  aqs_lm *ref = fx_load(src_dir, &be, AQS_PREC_BF16);
  aqs_eval_metrics m = engine_metrics(ref, ref, &evalb);
  assert_true(m.kl_mean == 0.0 && m.kl_p99 == 0.0 && m.top1 == 1.0 && m.last_mse == 0.0);
  assert_true(m.ppl == m.ref_ppl && m.ppl > 1.0);
  int want = 0;
  for (int i = 0; i < evalb.n; i++)
    for (int s = 0; s < evalb.b[i].n_seqs; s++) want += evalb.lens[i][s] - 1;
  assert_int_equal(m.n_targets, want);
  assert_int_equal(m.n_seqs, 10);
  aqs_lm_free(ref);
  be->ops->close(be);
}

/* FP8 KV cache: the scales round-trip (amax table -> checkpoint -> loaded model), the configs
 * declare it, eval changes and still matches the double reference (which quantizes K and V). */
static void test_kv_cache_fp8(void **state) {
  (void)state;
  aqs_backend *be;
  aqs_lm *ref = fx_load(src_dir, &be, AQS_PREC_F32), *kv, *plain;
  aqs_err e = {0};
  if (aqs_lm_load(be, kv_dir, &kv, &e) != AQS_OK) fail_msg("load: %s", e.msg);
  if (aqs_lm_load(be, fp8_dir, &plain, &e) != AQS_OK) fail_msg("load: %s", e.msg);
  assert_int_equal(kv->kv_fp8, 1);
  assert_int_equal(plain->kv_fp8, 0);
  for (int l = 0; l < kv->cfg.num_layers; l++) {
    char name[128];
    for (int v = 0; v < 2; v++) {
      aqs_lm_kv_cache_name(ref, l, v, name, sizeof name);
      const aqs_amax_entry *en = aqs_amax_find(&amax, name);
      assert_non_null(en);
      float want = en->input_amax / 448.0f, got = v ? kv->layers[l].v_scale : kv->layers[l].k_scale;
      assert_memory_equal(&got, &want, 4);
      assert_true(plain->layers[l].k_scale == 0.0f);
    }
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/hf_quant_config.json", kv_dir);
  char *hf = tu_read_file(path, NULL);
  assert_non_null(strstr(hf, "\"kv_cache_quant_algo\": \"FP8\""));
  free(hf);
  snprintf(path, sizeof path, "%s/config.json", kv_dir);
  char *cfg = tu_read_file(path, NULL);
  assert_non_null(strstr(cfg, "\"kv_cache_quant_algo\": \"FP8\""));
  free(cfg);
  snprintf(path, sizeof path, "%s/hf_quant_config.json", fp8_dir);
  hf = tu_read_file(path, NULL);
  assert_non_null(strstr(hf, "\"kv_cache_quant_algo\": null"));
  free(hf);
  aqs_eval_metrics a = engine_metrics(ref, plain, &evalb), b = engine_metrics(ref, kv, &evalb);
  printf("  kl mean: bf16 KV cache %.6g, fp8 KV cache %.6g\n", a.kl_mean, b.kl_mean);
  assert_true(b.kl_mean != a.kl_mean && b.ppl != a.ppl);
  aqs_lm_free(kv);
  aqs_lm_free(plain);
  aqs_lm_free(ref);
  be->ops->close(be);
  compare_with_reference(kv_dir);
}

/* Damaged served checkpoints are refused with the tensor named. */
static void test_bad_scales(void **state) {
  (void)state;
  aqs_backend *be;
  aqs_lm *ref = fx_load(src_dir, &be, AQS_PREC_F32), *lm = NULL;
  aqs_err e = {0};
  /* a negative weight scale, written over the F32 value in place */
  char *dir = tu_mkdtemp("evalbad");
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "cp -r %s/. %s/ && chmod -R u+w %s", fp8_dir, dir, dir);
  assert_int_equal(system(cmd), 0);
  aqs_ckpt *ck;
  assert_int_equal(aqs_ckpt_open(dir, &ck, &e), AQS_OK);
  const aqs_st_tensor *t = aqs_ckpt_find(ck, "model.language_model.layers.0.self_attn.k_proj.weight_scale");
  assert_non_null(t);
  uint64_t off = t->file_offset;
  char shard[4096];
  snprintf(shard, sizeof shard, "%s", t->file->path);
  aqs_ckpt_close(ck);
  FILE *f = fopen(shard, "r+b");
  assert_non_null(f);
  float neg = -0.5f;
  assert_int_equal(fseek(f, (long)off, SEEK_SET), 0);
  assert_int_equal(fwrite(&neg, 4, 1, f), 1);
  fclose(f);
  assert_int_equal(aqs_lm_load(be, dir, &lm, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "layers.0.self_attn.k_proj.weight_scale"));
  tu_rm_rf(dir);
  free(dir);
  aqs_lm_free(ref);
  be->ops->close(be);
}

/* The tensors of ck that are not BF16 (what an export changes: FP8 codes and scales), plus
 * `extra` when not NULL, as a checkpoint (tensors point into ck). */
static aqs_ckpt diff_of(const aqs_ckpt *ck, const char *extra, const aqs_st_tensor **buf) {
  aqs_ckpt d = {.dir = ck->dir, .tensors = buf};
  for (size_t i = 0; i < ck->ntensors; i++)
    if (ck->tensors[i]->dtype != AQS_DT_BF16 || (extra && strcmp(ck->tensors[i]->name, extra) == 0))
      buf[d.ntensors++] = ck->tensors[i];
  return d;
}

static void assert_same_metrics(const aqs_eval_metrics *a, const aqs_eval_metrics *b) {
  assert_true(a->n_targets == b->n_targets && a->n_seqs == b->n_seqs);
  assert_memory_equal(&a->ppl, &b->ppl, sizeof a->ppl);
  assert_memory_equal(&a->kl_mean, &b->kl_mean, sizeof a->kl_mean);
  assert_memory_equal(&a->kl_p99, &b->kl_p99, sizeof a->kl_p99);
  assert_memory_equal(&a->top1, &b->top1, sizeof a->top1);
  assert_memory_equal(&a->last_mse, &b->last_mse, sizeof a->last_mse);
}

/* Eval loads a scheme over the reference from its changed tensors only: same bits as the whole
 * checkpoint loaded on its own; the reference's results, made once and reused for two schemes,
 * give the same bits as a fresh reference per batch; a changed BF16 tensor is refused by name. */
static void test_served_over_reference(void **state) {
  (void)state;
  aqs_backend *be;
  aqs_lm *ref = fx_load(src_dir, &be, AQS_PREC_BF16), *full, *over, *kv_over;
  aqs_err e = {0};
  aqs_ckpt *ck, *kvck;
  assert_int_equal(aqs_ckpt_open(fp8_dir, &ck, &e), AQS_OK);
  assert_int_equal(aqs_ckpt_open(kv_dir, &kvck, &e), AQS_OK);
  const aqs_st_tensor **buf = malloc((2 * ck->ntensors + kvck->ntensors) * sizeof *buf);
  aqs_ckpt d = diff_of(ck, NULL, buf), dkv = diff_of(kvck, NULL, buf + ck->ntensors);
  assert_true(d.ntensors > 0 && d.ntensors < ck->ntensors);
  if (aqs_lm_load(be, fp8_dir, &full, &e) != AQS_OK) fail_msg("load: %s", e.msg);
  if (aqs_lm_load_served_over(ref, &d, &over, &e) != AQS_OK) fail_msg("load over: %s", e.msg);
  if (aqs_lm_load_served_over(ref, &dkv, &kv_over, &e) != AQS_OK) fail_msg("load over: %s", e.msg);
  assert_int_equal(over->n_served_fp8, full->n_served_fp8);
  assert_int_equal(kv_over->kv_fp8, 1);
  assert_int_equal(over->kv_fp8, 0);
  aqs_eval_metrics m_full = engine_metrics(ref, full, &evalb), m_over = engine_metrics(ref, over, &evalb);
  assert_true(m_full.kl_mean > 1e-6);
  assert_same_metrics(&m_full, &m_over);
  /* one reference for both schemes and the baseline */
  aqs_eval_metrics m_kv = engine_metrics(ref, kv_over, &evalb);
  aqs_eval_ref *r;
  const aqs_eval_model rm = {ref, NULL};
  assert_int_equal(aqs_eval_ref_new(&rm, 0, &r, &e), AQS_OK);
  for (int i = 0; i < evalb.n; i++) assert_int_equal(aqs_eval_ref_add(r, &evalb.b[i], &e), AQS_OK);
  const aqs_lm *order[] = {kv_over, over, ref};
  for (int k = 0; k < 3; k++) {
    aqs_eval_acc acc = {0};
    aqs_eval_metrics m;
    const aqs_eval_model sm = {order[k], NULL};
    assert_int_equal(aqs_eval_ref_run(r, &sm, &acc, &e), AQS_OK);
    assert_int_equal(aqs_eval_finish(&acc, &m, &e), AQS_OK);
    aqs_eval_acc_free(&acc);
    if (k == 0) assert_same_metrics(&m, &m_kv);
    if (k == 1) assert_same_metrics(&m, &m_over);
    if (k == 2) assert_true(m.kl_mean == 0.0 && m.top1 == 1.0 && m.ppl == m.ref_ppl);
  }
  aqs_eval_ref_free(r);
  /* a BF16 tensor that differs from the source, and a scheme over a scheme, are refused */
  aqs_lm *bad = NULL;
  const char *norm = "model.language_model.layers.1.input_layernorm.weight";
  aqs_ckpt dbad = diff_of(ck, norm, buf + ck->ntensors + kvck->ntensors);
  assert_int_equal(aqs_lm_load_served_over(ref, &dbad, &bad, &e), AQS_ERR_UNSUPPORTED);
  assert_non_null(strstr(e.msg, norm));
  assert_null(bad);
  assert_int_equal(aqs_lm_load_served_over(over, &d, &bad, &e), AQS_ERR_INVALID);
  /* an FP8 weight stored transposed (same element count) is refused, not run as wrong numbers;
   * the last by name, so that codes loaded before it are freed on the error path */
  const aqs_st_tensor *fp8_w = NULL;
  for (size_t i = 0; i < d.ntensors; i++)
    if (d.tensors[i]->dtype == AQS_DT_F8_E4M3 && d.tensors[i]->shape[0] != d.tensors[i]->shape[1]) fp8_w = d.tensors[i];
  assert_non_null(fp8_w);
  aqs_st_tensor transposed = *fp8_w;
  transposed.shape[0] = fp8_w->shape[1];
  transposed.shape[1] = fp8_w->shape[0];
  aqs_ckpt dt = diff_of(ck, NULL, buf + ck->ntensors + kvck->ntensors);
  for (size_t i = 0; i < dt.ntensors; i++)
    if (dt.tensors[i] == fp8_w) dt.tensors[i] = &transposed;
  assert_int_equal(aqs_lm_load_served_over(ref, &dt, &bad, &e), AQS_ERR_MISMATCH);
  assert_non_null(strstr(e.msg, fp8_w->name));
  assert_null(bad);
  /* an FP8 tensor no served linear reads (an FP8 lm_head) is refused, not left as the BF16 one */
  aqs_st_tensor stray = *fp8_w;
  stray.name = "lm_head.weight";
  const aqs_st_tensor **sbuf = malloc((d.ntensors + 1) * sizeof *sbuf);
  sbuf[0] = &stray; /* "lm_head." sorts before "model." */
  memcpy(sbuf + 1, d.tensors, d.ntensors * sizeof *sbuf);
  aqs_ckpt ds = {.dir = ck->dir, .tensors = sbuf, .ntensors = d.ntensors + 1};
  assert_int_equal(aqs_lm_load_served_over(ref, &ds, &bad, &e), AQS_ERR_UNSUPPORTED);
  assert_non_null(strstr(e.msg, "lm_head.weight (F8_E4M3) is read by no served linear"));
  assert_null(bad);
  free(sbuf);
  /* KV cache scales for some layers only: refused naming the first layer without them */
  const aqs_st_tensor **kbuf = malloc(dkv.ntensors * sizeof *kbuf);
  aqs_ckpt dk = {.dir = kvck->dir, .tensors = kbuf};
  for (size_t i = 0; i < dkv.ntensors; i++)
    if (!strstr(dkv.tensors[i]->name, "layers.1.self_attn.k_proj.k_scale") &&
        !strstr(dkv.tensors[i]->name, "layers.1.self_attn.v_proj.v_scale"))
      kbuf[dk.ntensors++] = dkv.tensors[i];
  assert_int_equal(dk.ntensors, dkv.ntensors - 2);
  assert_int_equal(aqs_lm_load_served_over(ref, &dk, &bad, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "layer 1 has no model.language_model.layers.1.self_attn.k_proj.k_scale"));
  assert_null(bad);
  free(kbuf);
  free(buf);
  aqs_ckpt_close(ck);
  aqs_ckpt_close(kvck);
  aqs_lm_free(kv_over);
  aqs_lm_free(over);
  aqs_lm_free(full);
  aqs_lm_free(ref);
  be->ops->close(be);
}

/* The vision tower over its BF16 base: a tower tensor no served linear reads (an input scale of a
 * linear whose weight stayed BF16) is refused by name, not ignored; with nothing changed the tower
 * serves nothing. */
static void test_vision_served_over(void **state) {
  (void)state;
  aqs_backend *be;
  aqs_lm *ref = fx_load(src_dir, &be, AQS_PREC_F32);
  aqs_vision *base, *over = NULL;
  aqs_err e = {0};
  if (aqs_vision_load_dir(be, src_dir, &base, &e) != AQS_OK) fail_msg("vision load: %s", e.msg);
  aqs_ckpt none = {.dir = "scheme"};
  assert_int_equal(aqs_vision_load_served_over(base, &none, &over, &e), AQS_OK);
  assert_int_equal(over->n_served_fp8, 0);
  aqs_vision_free(over);
  over = NULL;
  char name[256];
  snprintf(name, sizeof name, "%s.input_scale", aqs_vision_linear(base, 0, AQS_VIS_QKV)->module);
  static const float one = 1.0f;
  aqs_st_tensor t = {.name = name, .dtype = AQS_DT_F32, .ndim = 0, .numel = 1, .nbytes = 4, .data = (void *)&one};
  const aqs_st_tensor *tp = &t;
  aqs_ckpt stray = {.dir = "scheme", .tensors = &tp, .ntensors = 1};
  assert_int_equal(aqs_vision_load_served_over(base, &stray, &over, &e), AQS_ERR_UNSUPPORTED);
  assert_non_null(strstr(e.msg, name));
  assert_null(over);
  aqs_vision_free(base);
  aqs_lm_free(ref);
  be->ops->close(be);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_served_fp8_vs_double_reference),
      cmocka_unit_test(test_baseline),
      cmocka_unit_test(test_kv_cache_fp8),
      cmocka_unit_test(test_bad_scales),
      cmocka_unit_test(test_served_over_reference),
      cmocka_unit_test(test_vision_served_over),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
