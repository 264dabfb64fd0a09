/* tests/bench/bf16_ops_bench.c: time of each BF16 activation storage op (kernels/ops.h *_b) against
 * what the calibration forward runs today for the same step: the F32-buffer twin in BF16 mode plus,
 * for ops whose output is calibrated, amax_f32_async of that output. 3B shapes by default.
 * Prints microseconds per call, GB/s of the minimal bytes each variant moves, TFLOP/s for GEMMs.
 * Usage: bf16_ops_bench [--backend cuda] [--tokens N] [--hidden C] [--inter I] [--reps R] (--help). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"

static aqs_backend *be;
static int g_reps = 20;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static void sync_or_die(void) {
  aqs_err e;
  if (be->ops->sync(be, &e)) {
    fprintf(stderr, "bf16_ops_bench: %s\n", e.msg);
    exit(1);
  }
}
static void *dev(size_t bytes) {
  void *p;
  aqs_err e;
  if (be->ops->alloc(be, bytes, &p, &e)) {
    fprintf(stderr, "bf16_ops_bench: %s\n", e.msg);
    exit(1);
  }
  return p;
}
/* Random BF16 bits of N(0, ~scale) values into backend memory (n elements). */
static void *dev_bf16(size_t n, float scale) {
  uint16_t *h = malloc(n * 2);
  uint64_t s = 0x9E3779B97F4A7C15ull ^ n;
  for (size_t i = 0; i < n; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    float f = ((float)(s >> 40) / 16777216.0f * 2.0f - 1.0f) * scale;
    uint32_t u;
    memcpy(&u, &f, 4);
    h[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  void *d = dev(n * 2);
  be->ops->copy_h2d(be, d, h, n * 2);
  free(h);
  return d;
}
static void *dev_f32_of(const void *bf16, size_t n) {
  void *d = dev(n * 4);
  be->ops->cast_bf16_to_f32(be, d, bf16, n);
  return d;
}

typedef void (*step_fn)(void *ctx);
/* Mean seconds per call of fn over g_reps calls after 2 warm-up calls. */
static double time_it(step_fn fn, void *ctx) {
  fn(ctx);
  fn(ctx);
  sync_or_die();
  double t0 = now_s();
  for (int r = 0; r < g_reps; r++) fn(ctx);
  sync_or_die();
  return (now_s() - t0) / g_reps;
}
static void report(const char *what, double s_b, double bytes_b, double s_f, double bytes_f, double flops) {
  printf("%-34s _b %8.1f us %7.0f GB/s", what, s_b * 1e6, bytes_b / s_b * 1e-9);
  if (flops > 0) printf(" %6.1f TFLOP/s", flops / s_b * 1e-12);
  printf(" | f32 twin %8.1f us %7.0f GB/s", s_f * 1e6, bytes_f / s_f * 1e-9);
  if (flops > 0) printf(" %6.1f TFLOP/s", flops / s_f * 1e-12);
  printf(" | %.2fx\n", s_f / s_b);
}

typedef struct ctx {
  int N, C, I, Hq, Hkv, D, K, M;
  size_t n;
  void *xb, *xf, *yb, *yf, *w, *bias, *ab, *bb, *af, *bf, *out_f, *pos, *amax;
  int sec[3];
} ctx;

/* the ops under test (_b) and the steps they replace (F32 twin in BF16 mode [+ amax]) */
static void rms_b(void *p) {
  ctx *c = p;
  be->ops->rmsnorm_fwd_b(be, c->yb, NULL, c->xf, c->w, c->N, c->C, 1e-6f, c->amax);
}
static void rms_f(void *p) {
  ctx *c = p;
  be->ops->rmsnorm_fwd(be, c->yf, NULL, c->xf, c->w, c->N, c->C, 1e-6f);
  be->ops->amax_f32_async(be, c->yf, (size_t)c->N * c->C, c->amax);
}
static void lin_b(void *p) {
  ctx *c = p;
  be->ops->linear_b(be, c->yb, c->xb, c->w, c->bias, c->N, c->K, c->M);
}
static void lin_f(void *p) {
  ctx *c = p;
  be->ops->linear(be, c->yf, c->xf, c->w, c->bias, c->N, c->K, c->M);
}
static void rope_b(void *p) {
  ctx *c = p;
  be->ops->rope_fwd_b(be, c->xb, c->pos, c->N, c->Hq, c->D, c->sec, 1e6f, c->amax);
}
static void rope_f(void *p) {
  ctx *c = p;
  be->ops->rope_fwd(be, c->xf, c->pos, c->N, c->Hq, c->D, c->sec, 1e6f);
  be->ops->amax_f32_async(be, c->xf, c->n, c->amax);
}
static void add_b(void *p) {
  ctx *c = p;
  be->ops->add_b(be, c->out_f, c->af, c->bb, c->n, c->amax);
}
static void add_f(void *p) {
  ctx *c = p;
  be->ops->add(be, c->out_f, c->af, c->bf, c->n);
  be->ops->amax_f32_async(be, c->out_f, c->n, c->amax);
}
static void swiglu_b(void *p) {
  ctx *c = p;
  be->ops->swiglu_fwd_b(be, c->yb, c->ab, c->bb, c->n, c->amax);
}
static void swiglu_f(void *p) {
  ctx *c = p;
  be->ops->swiglu_fwd(be, c->out_f, c->af, c->bf, c->n);
  be->ops->amax_f32_async(be, c->out_f, c->n, c->amax);
}
static void amax_b(void *p) {
  ctx *c = p;
  be->ops->amax_bf16_async(be, c->ab, c->n, c->amax);
}
static void amax_f(void *p) {
  ctx *c = p;
  be->ops->amax_f32_async(be, c->af, c->n, c->amax);
}

static void usage(void) {
  printf("usage: bf16_ops_bench [--backend cuda|cpu] [--tokens N] [--hidden C] [--inter I] [--reps R]\n"
         "Times each BF16 activation storage op against the F32-buffer twin in BF16 mode (+ amax_f32_async\n"
         "of the output where calibration takes one). Defaults: the 3B shapes, N=4096 C=2048 I=11008,\n"
         "16 query / 2 kv heads of 128, 20 repetitions, backend cuda.\n");
}

int main(int argc, char **argv) {
  const char *backend = "cuda";
  ctx c = {.N = 4096, .C = 2048, .I = 11008, .Hq = 16, .Hkv = 2, .D = 128, .sec = {16, 24, 24}};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help")) {
      usage();
      return 0;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "bf16_ops_bench: %s needs a value (--help)\n", argv[i]);
      return 2;
    }
    const char *v = argv[++i];
    if (!strcmp(argv[i - 1], "--backend")) backend = v;
    else if (!strcmp(argv[i - 1], "--tokens")) c.N = atoi(v);
    else if (!strcmp(argv[i - 1], "--hidden")) c.C = atoi(v);
    else if (!strcmp(argv[i - 1], "--inter")) c.I = atoi(v);
    else if (!strcmp(argv[i - 1], "--reps")) g_reps = atoi(v);
    else {
      fprintf(stderr, "bf16_ops_bench: unknown option %s (--help)\n", argv[i - 1]);
      return 2;
    }
  }
  if (c.N <= 0 || c.C <= 0 || c.I <= 0 || g_reps <= 0) {
    fprintf(stderr, "bf16_ops_bench: sizes and --reps must be positive\n");
    return 2;
  }
  aqs_err e;
  if (aqs_backend_open(backend, AQS_PREC_BF16, &be, &e)) {
    fprintf(stderr, "bf16_ops_bench: %s\n", e.msg);
    return 1;
  }
  printf("bf16_ops_bench: %s, N=%d C=%d I=%d, %d reps\n", be->device, c.N, c.C, c.I, g_reps);
  size_t NC = (size_t)c.N * c.C, NI = (size_t)c.N * c.I, NQ = (size_t)c.N * c.Hq * c.D;
  size_t big = NI > NC ? NI : NC;
  if (NQ > big) big = NQ;
  c.amax = dev(4);
  be->ops->zero(be, c.amax, 4);
  c.xb = dev_bf16(big, 2.0f);
  c.xf = dev_f32_of(c.xb, big);
  c.yb = dev(big * 2);
  c.yf = dev(big * 4);
  c.ab = dev_bf16(big, 3.0f);
  c.bb = dev_bf16(big, 1.0f);
  c.af = dev_f32_of(c.ab, big);
  c.bf = dev_f32_of(c.bb, big);
  c.out_f = dev(big * 4);
  c.w = dev_bf16((size_t)c.I * c.C, 0.02f);
  c.bias = dev_bf16((size_t)c.I, 0.1f);
  int32_t *pos = malloc((size_t)3 * c.N * sizeof *pos);
  for (int i = 0; i < 3 * c.N; i++) pos[i] = i % c.N;
  c.pos = dev((size_t)3 * c.N * sizeof *pos);
  be->ops->copy_h2d(be, c.pos, pos, (size_t)3 * c.N * sizeof *pos);
  free(pos);
  sync_or_die();

  double sb, sf;
  sb = time_it(rms_b, &c);
  sf = time_it(rms_f, &c);
  report("rmsnorm (N, C) + amax", sb, NC * 6.0, sf, NC * 12.0, 0);

  struct { const char *name; int K, M, bias; } lin[] = {
      {"linear q   (C -> C, bias)", c.C, c.C, 1}, {"linear k/v (C -> C/8, bias)", c.C, c.C / 8, 1},
      {"linear o   (C -> C)", c.C, c.C, 0},       {"linear gate/up (C -> I)", c.C, c.I, 0},
      {"linear down (I -> C)", c.I, c.C, 0}};
  for (size_t k = 0; k < sizeof lin / sizeof lin[0]; k++) {
    c.K = lin[k].K;
    c.M = lin[k].M;
    void *keep = c.bias;
    if (!lin[k].bias) c.bias = NULL;
    sb = time_it(lin_b, &c);
    sf = time_it(lin_f, &c);
    c.bias = keep;
    double xn = (double)c.N * c.K, yn = (double)c.N * c.M, wn = (double)c.M * c.K;
    report(lin[k].name, sb, 2 * (xn + yn + wn), sf, 4 * xn + 4 * yn + 2 * wn, 2.0 * c.N * c.K * c.M);
  }

  c.n = (size_t)c.N * c.Hq * c.D;
  sb = time_it(rope_b, &c);
  sf = time_it(rope_f, &c);
  report("rope q (N, Hq, D) + amax", sb, c.n * 4.0, sf, c.n * 12.0, 0);
  int hq = c.Hq;
  c.Hq = c.Hkv;
  c.n = (size_t)c.N * c.Hkv * c.D;
  sb = time_it(rope_b, &c);
  sf = time_it(rope_f, &c);
  report("rope k (N, Hkv, D) + amax", sb, c.n * 4.0, sf, c.n * 12.0, 0);
  c.Hq = hq;

  c.n = NC;
  sb = time_it(add_b, &c);
  sf = time_it(add_f, &c);
  report("residual add (N, C) + amax", sb, NC * 10.0, sf, NC * 16.0, 0);

  c.n = NI;
  sb = time_it(swiglu_b, &c);
  sf = time_it(swiglu_f, &c);
  report("swiglu (N, I) + amax", sb, NI * 6.0, sf, NI * 16.0, 0);
  sb = time_it(amax_b, &c);
  sf = time_it(amax_f, &c);
  report("amax (N, I) bf16 vs f32", sb, NI * 2.0, sf, NI * 4.0, 0);

  void *bufs[] = {c.amax, c.xb, c.xf, c.yb, c.yf, c.ab, c.bb, c.af, c.bf, c.out_f, c.w, c.bias, c.pos};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->ops->free(be, bufs[i]);
  aqs_backend_close(be);
  return 0;
}
