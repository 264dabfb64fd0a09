/* tests/gpu/test_bf16_ops.c: the CUDA BF16 activation storage ops (kernels/ops.h rmsnorm_fwd_b,
 * linear_b, rope_fwd_b, add_b, swiglu_fwd_b, amax_bf16_async) on odd sizes and unaligned tails:
 * (1) bit for bit the CUDA F32-buffer twin run in BF16 mode (their definition); (2) against the CPU
 * _b op: bit-exact where the CUDA twin is (add, amax), else within the CPU/CUDA tolerance of the
 * F32 twins' tests (reduction order, libm vs double-rounded exp/cos/sin, GEMM order); (3) the fused
 * amax equals the output's amax, folds into the value already there, NaN and Inf win. */
#include "gpu_util.h"

#include "kernels/bf16.h"

/* A pointer off bytes into p (unaligned tails); PO: into a mirror's side. */
static void *at(void *p, size_t off) { return (char *)p + off; }
#define PO(m, off) at(P(m), (off))

/* Host copy of n BF16 values at byte offset off of the cuda (side 1) or cpu (side 0) buffer. */
static uint16_t *fetch_bf16(const mirror *m, int side, size_t off, size_t n) {
  uint16_t *h = malloc(n * 2 + 2);
  aqs_backend *be = side ? g_gpu : g_cpu;
  be->ops->copy_d2h(be, h, (char *)(side ? m->gpu : m->cpu) + off, n * 2);
  return h;
}
static float *fetch_f32(const mirror *m, int side, size_t off, size_t n) {
  float *h = malloc(n * 4 + 4);
  aqs_backend *be = side ? g_gpu : g_cpu;
  be->ops->copy_d2h(be, h, (char *)(side ? m->gpu : m->cpu) + off, n * 4);
  return h;
}
static float fetch_amax(const mirror *m, int side) {
  float f;
  aqs_backend *be = side ? g_gpu : g_cpu;
  be->ops->copy_d2h(be, &f, side ? m->gpu : m->cpu, 4);
  return f;
}
static void reset_amax(mirror *m, float v) {
  g_cpu->ops->copy_h2d(g_cpu, m->cpu, &v, 4);
  g_gpu->ops->copy_h2d(g_gpu, m->gpu, &v, 4);
}

/* (1) the cuda _b output (BF16) equals the cuda F32 twin's output in BF16 mode, bit for bit. */
static void assert_cuda_twin(const char *what, const uint16_t *b, const float *f, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float v = aqs_bf16_to_f32(b[i]);
    if (memcmp(&v, &f[i], 4) != 0)
      fail_msg("%s: element %zu: cuda _b %.9g (0x%04x) vs cuda F32 twin in BF16 mode %.9g", what, i, (double)v, b[i],
               (double)f[i]);
  }
  printf("%-44s n=%-9zu bit-exact with the cuda F32 twin (BF16 mode)\n", what, n);
}

/* (2) cuda vs cpu BF16 values: bit-exact when tol == 0, else max err <= tol * max |cpu|.
 * Prints the share of bit-exact elements. */
static void compare_vals(const char *what, const float *cpu, const float *gpu, size_t n, double tol) {
  double scale = 1e-30, err = 0;
  size_t exact = 0, worst = 0;
  for (size_t i = 0; i < n; i++)
    if (isfinite(cpu[i]) && fabs(cpu[i]) > scale) scale = fabs(cpu[i]);
  for (size_t i = 0; i < n; i++) {
    if (memcmp(&cpu[i], &gpu[i], 4) == 0 || (isnan(cpu[i]) && isnan(gpu[i]))) {
      exact++;
      continue;
    }
    if (tol == 0 || !isfinite(cpu[i]) || !isfinite(gpu[i]))
      fail_msg("%s: element %zu: cpu %.9g vs cuda %.9g", what, i, (double)cpu[i], (double)gpu[i]);
    double d = fabs((double)cpu[i] - (double)gpu[i]);
    if (d > err) {
      err = d;
      worst = i;
    }
  }
  printf("%-44s n=%-9zu vs cpu: bit-exact %.2f%%, max err rel %.3g (at %zu)\n", what, n,
         100.0 * (double)exact / (double)(n ? n : 1), err / scale, worst);
  if (!(err / scale <= tol) && err > 0) fail_msg("%s: relative error %.3g above %.3g", what, err / scale, tol);
}
static float *upcast_h(const uint16_t *b, size_t n) {
  float *f = malloc(n * 4 + 4);
  for (size_t i = 0; i < n; i++) f[i] = aqs_bf16_to_f32(b[i]);
  return f;
}
static void compare_bf16_sides(const char *what, const mirror *m, size_t off, size_t n, double tol) {
  gpu_sync_ok();
  uint16_t *a = fetch_bf16(m, 0, off, n), *b = fetch_bf16(m, 1, off, n);
  float *fa = upcast_h(a, n), *fb = upcast_h(b, n);
  compare_vals(what, fa, fb, n, tol);
  free(a); free(b); free(fa); free(fb);
}
static void compare_f32_sides(const char *what, const mirror *m, size_t off, size_t n, double tol) {
  gpu_sync_ok();
  float *a = fetch_f32(m, 0, off, n), *b = fetch_f32(m, 1, off, n);
  compare_vals(what, a, b, n, tol);
  free(a); free(b);
}
/* (3) the fused amax on each side equals that side's amax of the output (same bits, NaN as NaN). */
static float amax_of_side(int side, const void *p, size_t n, int bf16) {
  aqs_backend *be = side ? g_gpu : g_cpu;
  float m;
  if (bf16) be->ops->amax_bf16(be, p, n, &m);
  else be->ops->amax_f32(be, p, n, &m);
  return m;
}
static void check_amax(const char *what, const mirror *amax, const mirror *out, size_t off, size_t n, int bf16,
                       int exact_vs_cpu) {
  gpu_sync_ok();
  float got[2], want[2];
  for (int side = 0; side < 2; side++) {
    got[side] = fetch_amax(amax, side);
    want[side] = amax_of_side(side, (char *)(side ? out->gpu : out->cpu) + off, n, bf16);
    if (!(memcmp(&got[side], &want[side], 4) == 0 || (isnan(got[side]) && isnan(want[side]))))
      fail_msg("%s: %s fused amax %.9g, amax of its output %.9g", what, side ? "cuda" : "cpu", (double)got[side],
               (double)want[side]);
  }
  if (exact_vs_cpu && !(got[0] == got[1] || (isnan(got[0]) && isnan(got[1]))))
    fail_msg("%s: fused amax cpu %.9g vs cuda %.9g", what, (double)got[0], (double)got[1]);
  printf("%-44s fused amax cpu %.9g cuda %.9g\n", what, (double)got[0], (double)got[1]);
}

/* BF16 tolerance of the F32 twins' cpu/cuda tests (test_elementwise.c, test_norm_rope.c). */
#define TOL_BF16 8e-3

static void run_rmsnorm(int N, int C, size_t off) {
  size_t n = (size_t)N * C;
  mirror x = mirror_random_f32(n + 8, 2.0f, 1), w = mirror_random_bf16((size_t)C + 8, 1.0f);
  mirror out = mirror_new(NULL, n * 2 + 16), rstd = mirror_new(NULL, (size_t)N * 4 + 16);
  mirror twin = mirror_new(NULL, n * 4), amax = mirror_new(NULL, 4);
  gpu_set_precision(AQS_PREC_F32); /* the _b ops ignore it */
  FOR_BOTH { be->ops->rmsnorm_fwd_b(be, PO(out, off), P(rstd), PO(x, 2 * off), PO(w, off), N, C, 1e-6f, P(amax)); }
  gpu_set_precision(AQS_PREC_BF16);
  g_gpu->ops->rmsnorm_fwd(g_gpu, twin.gpu, NULL, at(x.gpu, 2 * off), at(w.gpu, off), N, C, 1e-6f);
  gpu_set_precision(AQS_PREC_F32);
  gpu_sync_ok();
  char what[96];
  snprintf(what, sizeof what, "rmsnorm_fwd_b N=%d C=%d off=%zu", N, C, off);
  uint16_t *b = fetch_bf16(&out, 1, off, n);
  float *f = fetch_f32(&twin, 1, 0, n);
  assert_cuda_twin(what, b, f, n);
  /* cpu vs cuda: block vs sequential sum of squares (and FMA) differ in rstd's last bits */
  compare_bf16_sides(what, &out, off, n, TOL_BF16);
  compare_f32_sides("  rstd", &rstd, 0, (size_t)N, 1e-5);
  check_amax(what, &amax, &out, off, n, 1, 0);
  free(b); free(f);
  mirror_free(&x); mirror_free(&w); mirror_free(&out); mirror_free(&rstd); mirror_free(&twin); mirror_free(&amax);
}

static void test_rmsnorm_b(void **state) {
  (void)state;
  rng_seed(61);
  run_rmsnorm(67, 2048, 0);
  run_rmsnorm(5, 1001, 0);
  run_rmsnorm(1, 37, 2); /* unaligned x, w, out */
  run_rmsnorm(33, 333, 2);
  run_rmsnorm(3, 5000, 0); /* wider than the register-cached rows */
}

static void run_linear(int N, int K, int M, int with_bias, size_t off) {
  size_t xn = (size_t)N * K, yn = (size_t)N * M;
  mirror x = mirror_random_bf16(xn + 8, 1.0f), w = mirror_random_bf16((size_t)M * K, 0.05f);
  mirror bias = mirror_random_bf16((size_t)M, 0.5f), y = mirror_new(NULL, yn * 2 + 16);
  mirror xf = mirror_new(NULL, xn * 4), twin = mirror_new(NULL, yn * 4);
  const aqs_bf16 *bp;
  gpu_set_precision(AQS_PREC_F32);
  FOR_BOTH {
    bp = with_bias ? P(bias) : NULL;
    be->ops->linear_b(be, PO(y, off), PO(x, off), P(w), bp, N, K, M);
  }
  gpu_set_precision(AQS_PREC_BF16);
  g_gpu->ops->cast_bf16_to_f32(g_gpu, xf.gpu, at(x.gpu, off), xn);
  g_gpu->ops->linear(g_gpu, twin.gpu, xf.gpu, w.gpu, with_bias ? bias.gpu : NULL, N, K, M);
  gpu_set_precision(AQS_PREC_F32);
  gpu_sync_ok();
  char what[96];
  snprintf(what, sizeof what, "linear_b N=%d K=%d M=%d%s off=%zu", N, K, M, with_bias ? " +bias" : "", off);
  uint16_t *b = fetch_bf16(&y, 1, off, yn);
  float *f = fetch_f32(&twin, 1, 0, yn);
  if (off == 0) {
    assert_cuda_twin(what, b, f, yn);
  } else { /* the twin's GEMM reads an aligned scratch copy: cuBLASLt may pick another kernel */
    float *fb = upcast_h(b, yn);
    compare_vals("  vs cuda twin (other alignment)", f, fb, yn, TOL_BF16);
    free(fb);
  }
  /* cpu (sgemm) vs cuda (tensor cores): F32 accumulation in another order, then one rounding */
  compare_bf16_sides(what, &y, off, yn, TOL_BF16);
  free(b); free(f);
  mirror_free(&x); mirror_free(&w); mirror_free(&bias); mirror_free(&y); mirror_free(&xf); mirror_free(&twin);
}

static void test_linear_b(void **state) {
  (void)state;
  rng_seed(62);
  run_linear(77, 256, 160, 1, 0);
  run_linear(77, 256, 160, 0, 0);
  run_linear(13, 40, 24, 1, 0);
  run_linear(9, 37, 19, 1, 0); /* odd K and M: 2-byte aligned rows */
  run_linear(9, 64, 48, 1, 2);
}

static void run_rope(int N, int H, int D, const int sec[3], size_t off) {
  size_t n = (size_t)N * H * D;
  int32_t *pos = malloc((size_t)3 * N * sizeof *pos);
  for (int i = 0; i < N; i++)
    for (int a = 0; a < 3; a++) pos[(size_t)a * N + i] = (i * (a + 1) + 3 * a) % 700;
  mirror p = mirror_new(pos, (size_t)3 * N * sizeof *pos);
  mirror x = mirror_random_bf16(n + 8, 1.0f), twin = mirror_new(NULL, n * 4), amax = mirror_new(NULL, 4);
  gpu_set_precision(AQS_PREC_BF16);
  g_gpu->ops->cast_bf16_to_f32(g_gpu, twin.gpu, at(x.gpu, off), n);
  g_gpu->ops->rope_fwd(g_gpu, twin.gpu, p.gpu, N, H, D, sec, 1e6f);
  gpu_set_precision(AQS_PREC_F32);
  FOR_BOTH { be->ops->rope_fwd_b(be, PO(x, off), P(p), N, H, D, sec, 1e6f, P(amax)); }
  gpu_sync_ok();
  char what[96];
  snprintf(what, sizeof what, "rope_fwd_b N=%d H=%d D=%d off=%zu", N, H, D, off);
  uint16_t *b = fetch_bf16(&x, 1, off, n);
  float *f = fetch_f32(&twin, 1, 0, n);
  assert_cuda_twin(what, b, f, n);
  /* cpu vs cuda: cosf/sinf of libm vs cos/sin in double rounded to F32 may differ by an ulp */
  compare_bf16_sides(what, &x, off, n, TOL_BF16);
  check_amax(what, &amax, &x, off, n, 1, 0);
  free(b); free(f); free(pos);
  mirror_free(&p); mirror_free(&x); mirror_free(&twin); mirror_free(&amax);
}

static void test_rope_b(void **state) {
  (void)state;
  rng_seed(63);
  const int sec128[3] = {16, 24, 24}, sec16[3] = {2, 3, 3}, sec12[3] = {1, 2, 3};
  run_rope(130, 4, 128, sec128, 0);
  run_rope(31, 3, 16, sec16, 2);
  run_rope(7, 1, 12, sec12, 0);
}

static void run_add(size_t n, size_t off, int in_place) {
  mirror a = mirror_random_f32(n + 8, 3.0f, 1), b = mirror_random_bf16(n + 8, 3.0f);
  mirror out = mirror_new(NULL, n * 4 + 32), twin = mirror_new(NULL, n * 4), bf = mirror_new(NULL, n * 4);
  mirror amax = mirror_new(NULL, 4);
  gpu_set_precision(AQS_PREC_BF16);
  g_gpu->ops->cast_bf16_to_f32(g_gpu, bf.gpu, at(b.gpu, off / 2), n);
  g_gpu->ops->add(g_gpu, twin.gpu, at(a.gpu, off), bf.gpu, n);
  gpu_set_precision(AQS_PREC_F32);
  mirror *dst = in_place ? &a : &out;
  FOR_BOTH { be->ops->add_b(be, PO(*dst, off), PO(a, off), PO(b, off / 2), n, P(amax)); }
  gpu_sync_ok();
  char what[96];
  snprintf(what, sizeof what, "add_b n=%zu off=%zu%s", n, off, in_place ? " in place" : "");
  float *got = fetch_f32(dst, 1, off, n), *f = fetch_f32(&twin, 1, 0, n);
  if (memcmp(got, f, n * 4) != 0) fail_msg("%s: differs from the cuda F32 twin in BF16 mode", what);
  printf("%-44s n=%-9zu bit-exact with the cuda F32 twin (BF16 mode)\n", what, n);
  compare_f32_sides(what, dst, off, n, 0);
  check_amax(what, &amax, dst, off, n, 0, 1);
  free(got); free(f);
  mirror_free(&a); mirror_free(&b); mirror_free(&out); mirror_free(&twin); mirror_free(&bf); mirror_free(&amax);
}

static void test_add_b(void **state) {
  (void)state;
  rng_seed(64);
  run_add(67 * 2048 + 3, 0, 0);
  run_add(67 * 2048 + 3, 0, 1);
  run_add(1001, 4, 0); /* a and out 4 bytes off 16, b 2 bytes off 8: the scalar path */
  run_add(5, 0, 1);
  /* subnormal sums: the CPU does not flush them, nor must cuda (add_exact under --use_fast_math) */
  float ha[4] = {0x1p-126f, -0x1p-126f, 0x1p-130f, 1.0f};
  uint16_t hb[4] = {aqs_f32_to_bf16(-0x1.8p-127f), aqs_f32_to_bf16(0x1p-133f), aqs_f32_to_bf16(0x1p-130f), 0};
  mirror a = mirror_new(ha, sizeof ha), b = mirror_new(hb, sizeof hb), out = mirror_new(NULL, sizeof ha);
  FOR_BOTH { be->ops->add_b(be, P(out), P(a), P(b), 4, NULL); }
  compare_f32_sides("add_b subnormal sums", &out, 0, 4, 0);
  mirror_free(&a); mirror_free(&b); mirror_free(&out);
}

static void run_swiglu(size_t n, size_t off, int alias) {
  mirror gate = mirror_random_bf16(n + 8, 3.0f), up = mirror_random_bf16(n + 8, 1.0f);
  mirror out = mirror_new(NULL, n * 2 + 16), gf = mirror_new(NULL, n * 4), uf = mirror_new(NULL, n * 4);
  mirror twin = mirror_new(NULL, n * 4), amax = mirror_new(NULL, 4);
  gpu_set_precision(AQS_PREC_BF16);
  g_gpu->ops->cast_bf16_to_f32(g_gpu, gf.gpu, at(gate.gpu, off), n);
  g_gpu->ops->cast_bf16_to_f32(g_gpu, uf.gpu, at(up.gpu, off), n);
  g_gpu->ops->swiglu_fwd(g_gpu, twin.gpu, gf.gpu, uf.gpu, n);
  gpu_set_precision(AQS_PREC_F32);
  mirror *dst = alias == 1 ? &gate : alias == 2 ? &up : &out;
  FOR_BOTH { be->ops->swiglu_fwd_b(be, PO(*dst, off), PO(gate, off), PO(up, off), n, P(amax)); }
  gpu_sync_ok();
  char what[96];
  snprintf(what, sizeof what, "swiglu_fwd_b n=%zu off=%zu%s", n, off, alias ? " in place" : "");
  uint16_t *b = fetch_bf16(dst, 1, off, n);
  float *f = fetch_f32(&twin, 1, 0, n);
  assert_cuda_twin(what, b, f, n);
  /* cpu vs cuda: glibc expf vs exp in double rounded to F32 may differ by an ulp */
  compare_bf16_sides(what, dst, off, n, TOL_BF16);
  check_amax(what, &amax, dst, off, n, 1, 0);
  free(b); free(f);
  mirror_free(&gate); mirror_free(&up); mirror_free(&out); mirror_free(&gf); mirror_free(&uf);
  mirror_free(&twin); mirror_free(&amax);
}

/* Every BF16 gate (silu comes from a table on cuda, filled by the F32 path's own silu): with up = 1
 * the output is bf16(silu(gate)) itself, then with random up. */
static void run_swiglu_all_gates(int unit_up) {
  const size_t n = 65536 + 5;
  uint16_t *hg = malloc(n * 2 + 16), *hu = malloc(n * 2 + 16);
  for (size_t i = 0; i < n + 8; i++) {
    hg[i] = (uint16_t)i;
    hu[i] = unit_up ? aqs_f32_to_bf16(1.0f) : aqs_f32_to_bf16(rng_normal());
  }
  mirror gate = mirror_new(hg, n * 2 + 16), up = mirror_new(hu, n * 2 + 16), out = mirror_new(NULL, n * 2);
  mirror gf = mirror_new(NULL, n * 4), uf = mirror_new(NULL, n * 4), twin = mirror_new(NULL, n * 4);
  gpu_set_precision(AQS_PREC_BF16);
  g_gpu->ops->cast_bf16_to_f32(g_gpu, gf.gpu, gate.gpu, n);
  g_gpu->ops->cast_bf16_to_f32(g_gpu, uf.gpu, up.gpu, n);
  g_gpu->ops->swiglu_fwd(g_gpu, twin.gpu, gf.gpu, uf.gpu, n);
  gpu_set_precision(AQS_PREC_F32);
  FOR_BOTH { be->ops->swiglu_fwd_b(be, P(out), P(gate), P(up), n, NULL); }
  gpu_sync_ok();
  const char *what = unit_up ? "swiglu_fwd_b every gate, up=1" : "swiglu_fwd_b every gate, random up";
  uint16_t *b = fetch_bf16(&out, 1, 0, n);
  float *f = fetch_f32(&twin, 1, 0, n);
  assert_cuda_twin(what, b, f, n);
  uint16_t *c = fetch_bf16(&out, 0, 0, n);
  size_t exact = 0;
  for (size_t i = 0; i < n; i++) exact += b[i] == c[i] || (isnan(aqs_bf16_to_f32(b[i])) && isnan(aqs_bf16_to_f32(c[i])));
  /* glibc expf vs exp in double rounded to F32: an ulp apart now and then, which BF16 rounding hides
   * almost always */
  printf("%-44s n=%-9zu vs cpu: bit-exact %.3f%%\n", what, n, 100.0 * (double)exact / (double)n);
  free(hg); free(hu); free(b); free(f); free(c);
  mirror_free(&gate); mirror_free(&up); mirror_free(&out); mirror_free(&gf); mirror_free(&uf); mirror_free(&twin);
}

static void test_swiglu_b(void **state) {
  (void)state;
  rng_seed(65);
  run_swiglu_all_gates(1);
  run_swiglu_all_gates(0);
  run_swiglu(77 * 1100 + 5, 0, 0);
  run_swiglu(77 * 1100 + 5, 0, 1);
  run_swiglu(77 * 1100 + 5, 0, 2);
  run_swiglu(1003, 2, 0); /* unaligned: the scalar path */
  run_swiglu(7, 0, 0);
}

/* amax_bf16_async: every BF16 pattern but NaN, odd lengths and offsets, folding semantics. */
static void test_amax_fold(void **state) {
  (void)state;
  const size_t n = 65536 + 13;
  uint16_t *h = malloc(n * 2);
  for (size_t i = 0; i < n; i++) {
    uint16_t v = (uint16_t)(i * 40503u);
    h[i] = (v & 0x7fffu) > 0x7f80u ? (uint16_t)(v & 0x807fu) : v; /* no NaN patterns */
  }
  mirror x = mirror_new(h, n * 2), amax = mirror_new(NULL, 4);
  size_t lens[4] = {n, n - 1, 1001, 7}, offs[4] = {0, 2, 6, 14};
  for (int t = 0; t < 4; t++) {
    for (int inf = 0; inf < 2; inf++) {
      /* without Inf patterns first (finite amax), then with */
      uint16_t *hx = calloc(lens[t] + 8, 2); /* the mirror copies 16 bytes past the data */
      memcpy(hx, h + offs[t] / 2, lens[t] * 2);
      for (size_t i = 0; i < lens[t]; i++)
        if (!inf && (hx[i] & 0x7fffu) == 0x7f80u) hx[i] = 0x3f80u;
      mirror xs = mirror_new(hx, lens[t] * 2 + 16);
      reset_amax(&amax, 0.0f);
      FOR_BOTH { be->ops->amax_bf16_async(be, PO(xs, 0), lens[t], P(amax)); }
      char what[96];
      snprintf(what, sizeof what, "amax_bf16_async n=%zu%s", lens[t], inf ? " with Inf" : "");
      check_amax(what, &amax, &xs, 0, lens[t], 1, 1);
      mirror_free(&xs);
      free(hx);
    }
    reset_amax(&amax, 0.0f);
    FOR_BOTH { be->ops->amax_bf16_async(be, PO(x, offs[t]), lens[t], P(amax)); }
    check_amax("amax_bf16_async (offset view)", &amax, &x, offs[t], lens[t], 1, 1);
  }
  /* folding: a larger value already there stays; a smaller one is replaced */
  uint16_t small[5] = {aqs_f32_to_bf16(1.0f), aqs_f32_to_bf16(-7.0f), 0, aqs_f32_to_bf16(2.0f), 0x8000u};
  mirror s = mirror_new(small, sizeof small);
  float starts[3] = {100.0f, 3.0f, INFINITY}, wants[3] = {100.0f, 7.0f, INFINITY};
  for (int k = 0; k < 3; k++) {
    reset_amax(&amax, starts[k]);
    FOR_BOTH { be->ops->amax_bf16_async(be, P(s), 5, P(amax)); }
    gpu_sync_ok();
    for (int side = 0; side < 2; side++)
      if (fetch_amax(&amax, side) != wants[k])
        fail_msg("amax fold from %g: %s got %g, want %g", (double)starts[k], side ? "cuda" : "cpu",
                 (double)fetch_amax(&amax, side), (double)wants[k]);
  }
  /* NaN in x beats an Inf already there; a NaN already there stays */
  small[2] = aqs_f32_to_bf16(NAN);
  mirror sn = mirror_new(small, sizeof small);
  reset_amax(&amax, INFINITY);
  FOR_BOTH { be->ops->amax_bf16_async(be, P(sn), 5, P(amax)); }
  gpu_sync_ok();
  for (int side = 0; side < 2; side++) assert_true(isnan(fetch_amax(&amax, side)));
  FOR_BOTH { be->ops->amax_bf16_async(be, P(s), 5, P(amax)); }
  gpu_sync_ok();
  for (int side = 0; side < 2; side++) assert_true(isnan(fetch_amax(&amax, side)));
  printf("amax_bf16_async folding: larger kept, smaller replaced, Inf kept, NaN wins and stays\n");
  mirror_free(&s); mirror_free(&sn); mirror_free(&x); mirror_free(&amax);
  free(h);
}

/* Non-finite outputs reach every fused amax, on both sides. */
static void test_fused_nonfinite(void **state) {
  (void)state;
  rng_seed(66);
  const size_t n = 2053;
  mirror a = mirror_random_f32(n, 1.0f, 1), b = mirror_random_bf16(n, 1.0f), out = mirror_new(NULL, n * 4);
  mirror ob = mirror_new(NULL, n * 2), amax = mirror_new(NULL, 4);
  float inf = INFINITY, nan = NAN;
  for (int k = 0; k < 2; k++) {
    FOR_BOTH { be->ops->copy_h2d(be, (char *)P(a) + 1500 * 4, k ? &nan : &inf, 4); }
    reset_amax(&amax, 1.0f);
    FOR_BOTH { be->ops->add_b(be, P(out), P(a), P(b), n, P(amax)); }
    check_amax(k ? "add_b NaN" : "add_b Inf", &amax, &out, 0, n, 0, 1);
    gpu_sync_ok();
    float g = fetch_amax(&amax, 1);
    assert_true(k ? isnan(g) : isinf(g));
  }
  /* swiglu: a BF16 NaN gate gives NaN; silu(4) * 3e38 overflows to Inf */
  uint16_t g4 = aqs_f32_to_bf16(4.0f), u4 = aqs_f32_to_bf16(3.0e38f), gn = aqs_f32_to_bf16(NAN);
  mirror gate = mirror_random_bf16(n, 1.0f), up = mirror_random_bf16(n, 1.0f);
  FOR_BOTH {
    be->ops->copy_h2d(be, (char *)P(gate) + 2 * 100, &g4, 2);
    be->ops->copy_h2d(be, (char *)P(up) + 2 * 100, &u4, 2);
  }
  reset_amax(&amax, 0.0f);
  FOR_BOTH { be->ops->swiglu_fwd_b(be, P(ob), P(gate), P(up), n, P(amax)); }
  check_amax("swiglu_fwd_b Inf", &amax, &ob, 0, n, 1, 1);
  FOR_BOTH { be->ops->copy_h2d(be, (char *)P(gate) + 2 * 2050, &gn, 2); } /* in the scalar tail */
  FOR_BOTH { be->ops->swiglu_fwd_b(be, P(ob), P(gate), P(up), n, P(amax)); }
  check_amax("swiglu_fwd_b NaN (tail)", &amax, &ob, 0, n, 1, 1);
  gpu_sync_ok();
  assert_true(isnan(fetch_amax(&amax, 1)));
  /* rmsnorm: a NaN row */
  mirror w = mirror_random_bf16(n, 1.0f);
  reset_amax(&amax, 0.0f);
  FOR_BOTH { be->ops->rmsnorm_fwd_b(be, P(ob), NULL, P(a), P(w), 1, (int)n, 1e-6f, P(amax)); }
  check_amax("rmsnorm_fwd_b NaN row", &amax, &ob, 0, n, 1, 1);
  mirror_free(&a); mirror_free(&b); mirror_free(&out); mirror_free(&ob); mirror_free(&amax);
  mirror_free(&gate); mirror_free(&up); mirror_free(&w);
}

int main(void) {
  gpu_open_or_skip();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rmsnorm_b), cmocka_unit_test(test_linear_b), cmocka_unit_test(test_rope_b),
      cmocka_unit_test(test_add_b),     cmocka_unit_test(test_swiglu_b), cmocka_unit_test(test_amax_fold),
      cmocka_unit_test(test_fused_nonfinite),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  aqs_backend_close(g_cpu);
  aqs_backend_close(g_gpu);
  return rc;
}
