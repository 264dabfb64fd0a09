/* tests/unit/compute/test_ops.c: the CPU backend's ops against slow, obvious references
 * (double precision loops) and their backward ops against finite differences. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/fp8.h"

static aqs_backend *be;

static int setup(void **state) {
  (void)state;
  aqs_err e = {0};
  return aqs_backend_open("cpu", AQS_PREC_F32, &be, &e) == AQS_OK ? 0 : -1;
}
static int teardown(void **state) {
  (void)state;
  aqs_backend_close(be);
  return 0;
}

/* Deterministic uniform [-1, 1). */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float urand(void) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((rng_state >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}
static float *rand_f(size_t n, float scale) {
  float *x = malloc(n * sizeof *x);
  for (size_t i = 0; i < n; i++) x[i] = urand() * scale;
  return x;
}
static aqs_bf16 to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (aqs_bf16)(u >> 16);
}
static float of_bf16(aqs_bf16 b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static aqs_bf16 *rand_bf16(size_t n, float scale) {
  aqs_bf16 *w = malloc(n * sizeof *w);
  for (size_t i = 0; i < n; i++) w[i] = to_bf16(urand() * scale);
  return w;
}
static double dot(const float *a, const float *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}
static void assert_close(const float *got, const double *want, size_t n, double tol) {
  for (size_t i = 0; i < n; i++) {
    double err = fabs(got[i] - want[i]);
    if (err > tol * (1.0 + fabs(want[i]))) {
      print_error("element %zu: got %.9g want %.9g\n", i, got[i], want[i]);
      fail();
    }
  }
}

static void test_rmsnorm(void **state) {
  (void)state;
  const int N = 5, C = 48;
  float *x = rand_f((size_t)N * C, 2.0f), *out = malloc(sizeof(float) * N * C), rstd[5];
  aqs_bf16 *w = rand_bf16(C, 1.0f);
  be->ops->rmsnorm_fwd(be, out, rstd, x, w, N, C, 1e-6f);
  double *want = malloc(sizeof(double) * N * C);
  for (int r = 0; r < N; r++) {
    double ss = 0;
    for (int c = 0; c < C; c++) ss += (double)x[r * C + c] * x[r * C + c];
    double rs = 1.0 / sqrt(ss / C + 1e-6);
    for (int c = 0; c < C; c++) want[r * C + c] = of_bf16(w[c]) * x[r * C + c] * rs;
  }
  assert_close(out, want, (size_t)N * C, 1e-5);
  /* backward vs finite differences of L = sum(dout * rmsnorm(x)) */
  float *dout = rand_f((size_t)N * C, 1.0f), *dx = malloc(sizeof(float) * N * C);
  be->ops->rmsnorm_bwd(be, dx, dout, x, rstd, w, N, C, 0);
  float *tmp = malloc(sizeof(float) * N * C);
  for (int i = 0; i < N * C; i += 7) {
    float h = 1e-2f, keep = x[i];
    x[i] = keep + h;
    be->ops->rmsnorm_fwd(be, tmp, NULL, x, w, N, C, 1e-6f);
    double lp = dot(tmp, dout, (size_t)N * C);
    x[i] = keep - h;
    be->ops->rmsnorm_fwd(be, tmp, NULL, x, w, N, C, 1e-6f);
    double lm = dot(tmp, dout, (size_t)N * C);
    x[i] = keep;
    double fd = (lp - lm) / (2 * h);
    if (fabs(fd - dx[i]) > 2e-3 * (1 + fabs(fd))) {
      print_error("rmsnorm dx[%d] = %g, finite difference %g\n", i, dx[i], fd);
      fail();
    }
  }
  /* accumulate adds onto what dx held */
  float *acc = malloc(sizeof(float) * N * C);
  for (int i = 0; i < N * C; i++) acc[i] = 1.0f;
  be->ops->rmsnorm_bwd(be, acc, dout, x, rstd, w, N, C, 1);
  for (int i = 0; i < N * C; i++) assert_true(fabsf(acc[i] - (1.0f + dx[i])) < 1e-5f);
  free(x); free(out); free(w); free(want); free(dout); free(dx); free(tmp); free(acc);
}

static void test_linear(void **state) {
  (void)state;
  const int N = 6, K = 40, M = 24;
  float *x = rand_f((size_t)N * K, 1.0f), *y = malloc(sizeof(float) * N * M);
  aqs_bf16 *w = rand_bf16((size_t)M * K, 0.5f), *b = rand_bf16(M, 0.5f);
  be->ops->linear(be, y, x, w, b, N, K, M);
  double *want = malloc(sizeof(double) * N * M);
  for (int r = 0; r < N; r++)
    for (int m = 0; m < M; m++) {
      double s = of_bf16(b[m]);
      for (int k = 0; k < K; k++) s += (double)x[r * K + k] * of_bf16(w[m * K + k]);
      want[r * M + m] = s;
    }
  assert_close(y, want, (size_t)N * M, 1e-5);
  /* dx = dy W, and accumulate */
  float *dy = rand_f((size_t)N * M, 1.0f), *dx = malloc(sizeof(float) * N * K);
  be->ops->linear_bwd_input(be, dx, dy, w, N, K, M, 0);
  double *wdx = malloc(sizeof(double) * N * K);
  for (int r = 0; r < N; r++)
    for (int k = 0; k < K; k++) {
      double s = 0;
      for (int m = 0; m < M; m++) s += (double)dy[r * M + m] * of_bf16(w[m * K + k]);
      wdx[r * K + k] = s;
    }
  assert_close(dx, wdx, (size_t)N * K, 1e-5);
  be->ops->linear_bwd_input(be, dx, dy, w, N, K, M, 1);
  for (int i = 0; i < N * K; i++) wdx[i] *= 2;
  assert_close(dx, wdx, (size_t)N * K, 1e-5);
  /* BF16 mode rounds the output to BF16 values */
  be->precision = AQS_PREC_BF16;
  be->ops->linear(be, y, x, w, b, N, K, M);
  be->precision = AQS_PREC_F32;
  for (int i = 0; i < N * M; i++) {
    assert_true(of_bf16(to_bf16(y[i])) == y[i]);
    assert_true(fabs(y[i] - want[i]) <= fabs(want[i]) * (1.0 / 128) + 1e-6);
  }
  free(x); free(y); free(w); free(b); free(want); free(dy); free(dx); free(wdx);
}

static void test_linear_fp8(void **state) {
  (void)state;
  const int N = 4, K = 32, M = 8;
  float *x = rand_f((size_t)N * K, 3.0f), *y = malloc(sizeof(float) * N * M);
  aqs_bf16 *w = rand_bf16((size_t)M * K, 0.1f);
  float xs = 3.0f / 448.0f, wsc = 0.1f / 448.0f;
  uint8_t *xq = malloc((size_t)N * K), *wq = malloc((size_t)M * K), *ref = malloc((size_t)N * K);
  be->ops->quantize_fp8_f32(be, xq, x, (size_t)N * K, xs);
  aqs_fp8_quantize_f32(x, (size_t)N * K, xs, AQS_FP8_REF_TORCH_CUDA, ref);
  assert_memory_equal(xq, ref, (size_t)N * K);
  be->ops->quantize_fp8_bf16(be, wq, w, (size_t)M * K, wsc);
  be->ops->linear_fp8(be, y, xq, xs, wq, wsc, NULL, N, K, M);
  double *want = malloc(sizeof(double) * N * M);
  for (int r = 0; r < N; r++)
    for (int m = 0; m < M; m++) {
      double s = 0;
      for (int k = 0; k < K; k++)
        s += (double)aqs_fp8_e4m3_to_f32(xq[r * K + k]) * aqs_fp8_e4m3_to_f32(wq[m * K + k]);
      want[r * M + m] = s * xs * wsc;
    }
  assert_close(y, want, (size_t)N * M, 1e-5);
  /* fake-quant output is close to the exact one (E4M3 has ~2^-4 relative precision) */
  float *y_exact = malloc(sizeof(float) * N * M);
  be->ops->linear(be, y_exact, x, w, NULL, N, K, M);
  double num = 0, den = 0;
  for (int i = 0; i < N * M; i++) {
    num += (y[i] - y_exact[i]) * (double)(y[i] - y_exact[i]);
    den += (double)y_exact[i] * y_exact[i];
  }
  assert_true(num / den < 0.01);
  assert_true(num > 0);
  free(x); free(y); free(w); free(xq); free(wq); free(ref); free(want); free(y_exact);
}

static void test_rope(void **state) {
  (void)state;
  const int N = 7, H = 3, D = 16;
  const int sec[3] = {2, 3, 3};
  int32_t pos[3 * 7];
  for (int i = 0; i < N; i++) pos[i] = pos[N + i] = pos[2 * N + i] = i + 1;
  float *x = rand_f((size_t)N * H * D, 1.0f), *y = malloc(sizeof(float) * N * H * D);
  memcpy(y, x, sizeof(float) * N * H * D);
  be->ops->rope_fwd(be, y, pos, N, H, D, sec, 10000.0f);
  /* text positions: standard rotate-half RoPE */
  double *want = malloc(sizeof(double) * N * H * D);
  for (int i = 0; i < N; i++)
    for (int h = 0; h < H; h++)
      for (int j = 0; j < D / 2; j++) {
        double f = (double)pos[i] / pow(10000.0, 2.0 * j / D);
        const float *v = x + (i * H + h) * D;
        want[(i * H + h) * D + j] = v[j] * cos(f) - v[j + D / 2] * sin(f);
        want[(i * H + h) * D + j + D / 2] = v[j + D / 2] * cos(f) + v[j] * sin(f);
      }
  assert_close(y, want, (size_t)N * H * D, 1e-5);
  /* M-RoPE sections: frequencies of section a take positions of axis a */
  for (int i = 0; i < N; i++) {
    pos[N + i] = 3 * i;
    pos[2 * N + i] = 5 * i + 2;
  }
  memcpy(y, x, sizeof(float) * N * H * D);
  be->ops->rope_fwd(be, y, pos, N, H, D, sec, 10000.0f);
  for (int i = 0; i < N; i++)
    for (int j = 0; j < D / 2; j++) {
      int axis = j < 2 ? 0 : (j < 5 ? 1 : 2);
      double f = (double)pos[axis * N + i] / pow(10000.0, 2.0 * j / D);
      const float *v = x + i * H * D;
      assert_true(fabs(y[i * H * D + j] - (v[j] * cos(f) - v[j + D / 2] * sin(f))) < 1e-4);
    }
  /* backward is the adjoint: <rope(x), g> == <x, rope_bwd(g)> */
  float *g = rand_f((size_t)N * H * D, 1.0f), *gb = malloc(sizeof(float) * N * H * D);
  memcpy(gb, g, sizeof(float) * N * H * D);
  be->ops->rope_bwd(be, gb, pos, N, H, D, sec, 10000.0f);
  double l = dot(y, g, (size_t)N * H * D), r = dot(x, gb, (size_t)N * H * D);
  assert_true(fabs(l - r) < 1e-4 * (1 + fabs(l)));
  free(x); free(y); free(want); free(g); free(gb);
}

/* Dense reference attention of one packed batch, double. */
static void ref_attention(double *out, const float *q, const float *k, const float *v,
                          const int32_t *cu, int B, int Hq, int Hkv, int D) {
  double scale = 1.0 / sqrt(D);
  for (int s = 0; s < B; s++)
    for (int h = 0; h < Hq; h++)
      for (int i = cu[s]; i < cu[s + 1]; i++) {
        int kh = h / (Hq / Hkv);
        double mx = -1e300, p[64], sum = 0;
        for (int j = cu[s]; j <= i; j++) {
          double d = 0;
          for (int c = 0; c < D; c++) d += (double)q[(i * Hq + h) * D + c] * k[(j * Hkv + kh) * D + c];
          p[j - cu[s]] = d * scale;
          if (p[j - cu[s]] > mx) mx = p[j - cu[s]];
        }
        for (int j = cu[s]; j <= i; j++) sum += (p[j - cu[s]] = exp(p[j - cu[s]] - mx));
        for (int c = 0; c < D; c++) {
          double acc = 0;
          for (int j = cu[s]; j <= i; j++) acc += p[j - cu[s]] / sum * v[(j * Hkv + kh) * D + c];
          out[(i * Hq + h) * D + c] = acc;
        }
      }
}

static void test_attention(void **state) {
  (void)state;
  const int B = 3, Hq = 4, Hkv = 2, D = 8;
  int32_t cu[4] = {0, 5, 6, 13};
  const int N = 13;
  size_t qn = (size_t)N * Hq * D, kn = (size_t)N * Hkv * D;
  float *q = rand_f(qn, 1.0f), *k = rand_f(kn, 1.0f), *v = rand_f(kn, 1.0f);
  float *out = malloc(qn * sizeof(float)), *lse = malloc((size_t)N * Hq * sizeof(float));
  be->ops->attention_fwd(be, out, lse, q, k, v, cu, B, 7, N, Hq, Hkv, D);
  double *want = malloc(qn * sizeof(double));
  ref_attention(want, q, k, v, cu, B, Hq, Hkv, D);
  assert_close(out, want, qn, 1e-5);
  /* token 5 is a sequence of its own: its output is its own v */
  for (int h = 0; h < Hq; h++)
    for (int c = 0; c < D; c++)
      assert_true(fabsf(out[(5 * Hq + h) * D + c] - v[(5 * Hkv + h / 2) * D + c]) < 1e-6f);
  /* backward vs finite differences of L = sum(dout * out) */
  float *dout = rand_f(qn, 1.0f), *dq = malloc(qn * 4), *dk = malloc(kn * 4), *dv = malloc(kn * 4);
  be->ops->attention_bwd(be, dq, dk, dv, dout, out, lse, q, k, v, cu, B, 7, N, Hq, Hkv, D);
  float *tmp = malloc(qn * 4);
  float *bufs[3] = {q, k, v}, *grads[3] = {dq, dk, dv};
  size_t sizes[3] = {qn, kn, kn};
  for (int t = 0; t < 3; t++)
    for (size_t i = 0; i < sizes[t]; i += 5) {
      float h = 1e-2f, keep = bufs[t][i];
      bufs[t][i] = keep + h;
      be->ops->attention_fwd(be, tmp, NULL, q, k, v, cu, B, 7, N, Hq, Hkv, D);
      double lp = dot(tmp, dout, qn);
      bufs[t][i] = keep - h;
      be->ops->attention_fwd(be, tmp, NULL, q, k, v, cu, B, 7, N, Hq, Hkv, D);
      double lm = dot(tmp, dout, qn);
      bufs[t][i] = keep;
      double fd = (lp - lm) / (2 * h);
      if (fabs(fd - grads[t][i]) > 3e-3 * (1 + fabs(fd))) {
        print_error("attention d%c[%zu] = %g, finite difference %g\n", "qkv"[t], i,
                    grads[t][i], fd);
        fail();
      }
    }
  free(q); free(k); free(v); free(out); free(lse); free(want); free(dout); free(dq); free(dk);
  free(dv); free(tmp);
}

static void test_swiglu(void **state) {
  (void)state;
  const size_t n = 64;
  float *g = rand_f(n, 4.0f), *u = rand_f(n, 2.0f), *out = malloc(n * 4);
  be->ops->swiglu_fwd(be, out, g, u, n);
  for (size_t i = 0; i < n; i++) {
    double want = g[i] / (1 + exp(-(double)g[i])) * u[i];
    assert_true(fabs(out[i] - want) < 1e-5 * (1 + fabs(want)));
  }
  float *dout = rand_f(n, 1.0f), *dg = malloc(n * 4), *du = malloc(n * 4);
  be->ops->swiglu_bwd(be, dg, du, dout, g, u, n);
  for (size_t i = 0; i < n; i++) {
    double h = 1e-3, gp = g[i] + h, gm = g[i] - h;
    double fd = (gp / (1 + exp(-gp)) - gm / (1 + exp(-gm))) / (2 * h) * u[i] * dout[i];
    assert_true(fabs(dg[i] - fd) < 1e-3 * (1 + fabs(fd)));
    assert_true(fabs(du[i] - dout[i] * g[i] / (1 + exp(-(double)g[i]))) < 1e-5);
  }
  free(g); free(u); free(out); free(dout); free(dg); free(du);
}

static void test_cross_entropy_kl(void **state) {
  (void)state;
  const int N = 4, V = 30;
  float *logits = rand_f((size_t)N * V, 3.0f), *d = malloc(sizeof(float) * N * V);
  int32_t targets[4] = {3, -1, 29, 0};
  double loss;
  be->ops->cross_entropy(be, d, logits, targets, N, V, 0.5f, &loss);
  double want = 0;
  for (int r = 0; r < N; r++) {
    if (targets[r] < 0) continue;
    double s = 0;
    for (int v = 0; v < V; v++) s += exp(logits[r * V + v]);
    want += log(s) - logits[r * V + targets[r]];
  }
  assert_true(fabs(loss - want) < 1e-5 * want);
  for (int v = 0; v < V; v++) assert_true(d[V + v] == 0.0f); /* ignored row */
  /* gradient = 0.5 * d(loss)/d(logits): finite differences */
  for (int i = 0; i < N * V; i += 3) {
    float h = 1e-2f, keep = logits[i];
    double lp, lm;
    logits[i] = keep + h;
    be->ops->cross_entropy(be, NULL, logits, targets, N, V, 1.0f, &lp);
    logits[i] = keep - h;
    be->ops->cross_entropy(be, NULL, logits, targets, N, V, 1.0f, &lm);
    logits[i] = keep;
    assert_true(fabs(0.5 * (lp - lm) / (2 * h) - d[i]) < 1e-3);
  }
  /* KL(p || p) = 0; KL against a shifted distribution matches the definition */
  float *lp = malloc(sizeof(float) * N * V), *other = rand_f((size_t)N * V, 3.0f);
  be->ops->log_softmax(be, lp, logits, N, V);
  double kl;
  be->ops->kl_div(be, lp, logits, N, V, &kl);
  assert_true(fabs(kl) < 1e-5);
  be->ops->kl_div(be, lp, other, N, V, &kl);
  double wkl = 0;
  for (int r = 0; r < N; r++) {
    double s = 0;
    for (int v = 0; v < V; v++) s += exp(other[r * V + v]);
    for (int v = 0; v < V; v++)
      wkl += exp(lp[r * V + v]) * (lp[r * V + v] - (other[r * V + v] - log(s)));
  }
  assert_true(wkl > 0.1 && fabs(kl - wkl) < 1e-4 * wkl);
  free(logits); free(d); free(lp); free(other);
}

static void test_reductions(void **state) {
  (void)state;
  const size_t n = 10000;
  float *x = rand_f(n, 2.0f);
  x[1234] = -7.5f;
  float amax;
  be->ops->amax_f32(be, x, n, &amax);
  assert_true(amax == 7.5f);
  x[99] = NAN;
  be->ops->amax_f32(be, x, n, &amax);
  assert_true(isnan(amax));
  x[99] = INFINITY;
  be->ops->amax_f32(be, x, n, &amax);
  assert_true(isinf(amax));
  aqs_bf16 wb[3] = {to_bf16(0.5f), to_bf16(-3.0f), to_bf16(1.0f)};
  be->ops->amax_bf16(be, wb, 3, &amax);
  assert_true(amax == 3.0f);
  /* grad score: sum (g (yq - y))^2, clamped at 1e10 per product */
  float *g = rand_f(n, 1.0f), *y = rand_f(n, 1.0f), *yq = rand_f(n, 1.0f);
  double s, want = 0;
  be->ops->grad_score(be, g, y, yq, n, &s);
  for (size_t i = 0; i < n; i++) {
    double t = (double)g[i] * ((double)yq[i] - y[i]);
    want += t * t;
  }
  assert_true(fabs(s - want) < 1e-5 * want);
  double s2;
  be->ops->grad_score(be, g, y, yq, n, &s2);
  assert_memory_equal(&s, &s2, sizeof s); /* deterministic */
  g[0] = 1e12f;
  y[0] = 0.0f;
  yq[0] = 1.0f;
  be->ops->grad_score(be, g, y, yq, 1, &s);
  assert_true(s == 1e20);
  free(x); free(g); free(y); free(yq);
}

static void test_backend_open(void **state) {
  (void)state;
  aqs_err e = {0};
  aqs_backend *b2 = NULL;
  assert_int_equal(aqs_backend_open("tpu", AQS_PREC_F32, &b2, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "unknown backend 'tpu'"));
  if (!aqs_backend_cuda_compiled()) {
    assert_int_equal(aqs_backend_open("cuda", AQS_PREC_F32, &b2, &e), AQS_ERR_UNSUPPORTED);
    assert_non_null(strstr(e.msg, "built without CUDA"));
  }
  void *p;
  size_t in_use, peak;
  be->ops->mem_stats(be, &in_use, NULL);
  assert_int_equal(be->ops->alloc(be, 1000, &p, &e), AQS_OK);
  be->ops->mem_stats(be, &peak, NULL);
  assert_int_equal(peak - in_use, 1000);
  be->ops->free(be, p);
  be->ops->mem_stats(be, &peak, NULL);
  assert_int_equal(peak, in_use);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_rmsnorm),        cmocka_unit_test(test_linear),
    cmocka_unit_test(test_linear_fp8),     cmocka_unit_test(test_rope),
    cmocka_unit_test(test_attention),      cmocka_unit_test(test_swiglu),
    cmocka_unit_test(test_cross_entropy_kl), cmocka_unit_test(test_reductions),
    cmocka_unit_test(test_backend_open),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
