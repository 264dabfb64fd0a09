/* tests/bench/compute_bench.c: compute benchmark of the CUDA backend on a real-shape checkpoint:
 * bf16 GEMM peak (cuBLASLt, same run), calibration forward tokens/s and MFU, gradient scoring
 * tokens/s, optional kl_div scoring, peak GPU memory and a per-op time breakdown (CUDA events
 * around every ops-table call). Usage: compute_bench --model DIR [options] (--help). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/compute/calibrate.h"
#include "engine/compute/lm_internal.h"
#include "engine/compute/lm.h"
#include "engine/compute/sensitivity.h"
#include "kernels/backend.h"

#ifdef AQS_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/launchers.h"

/* ---------------- per-op profiler: wraps the ops table, CUDA events around each call -------- */
enum {
  OP_linear, OP_linear_bwd_input, OP_linear_fp8, OP_quantize_fp8_f32, OP_quantize_fp8_bf16, OP_rmsnorm_fwd,
  OP_rmsnorm_bwd, OP_rope_fwd, OP_rope_bwd, OP_attention_fwd, OP_attention_bwd, OP_swiglu_fwd, OP_swiglu_bwd,
  OP_add, OP_embedding, OP_cross_entropy, OP_log_softmax, OP_kl_div, OP_amax_f32, OP_amax_bf16, OP_grad_score,
  OP_casts_copies, OP_COUNT
};
static const char *kOpNames[OP_COUNT] = {
    "linear (bf16 gemm)", "linear_bwd_input", "linear_fp8 (fp8 gemm)", "quantize_fp8_f32", "quantize_fp8_bf16",
    "rmsnorm_fwd", "rmsnorm_bwd", "rope_fwd", "rope_bwd", "attention_fwd", "attention_bwd", "swiglu_fwd",
    "swiglu_bwd", "add", "embedding", "cross_entropy", "log_softmax", "kl_div", "amax_f32", "amax_bf16",
    "grad_score", "casts/copies/zero"};

#define PROF_EVENTS 8192
static aqs_ops g_real, g_wrapped;
static const aqs_ops *g_orig;
static cudaEvent_t g_ev[PROF_EVENTS][2];
static int g_ev_op[PROF_EVENTS], g_ev_n, g_prof_ready;
static double g_op_ms[OP_COUNT];
static long g_op_calls[OP_COUNT];

static void prof_flush(void) {
  if (!g_ev_n) return;
  cudaEventSynchronize(g_ev[g_ev_n - 1][1]);
  for (int i = 0; i < g_ev_n; i++) {
    float ms = 0;
    cudaEventElapsedTime(&ms, g_ev[i][0], g_ev[i][1]);
    g_op_ms[g_ev_op[i]] += ms;
    g_op_calls[g_ev_op[i]]++;
  }
  g_ev_n = 0;
}
static int prof_begin(void) {
  if (g_ev_n == PROF_EVENTS) prof_flush();
  cudaEventRecord(g_ev[g_ev_n][0], (cudaStream_t)aqs_cuda_stream());
  return g_ev_n;
}
static void prof_end(int slot, int op) {
  cudaEventRecord(g_ev[slot][1], (cudaStream_t)aqs_cuda_stream());
  g_ev_op[slot] = op;
  g_ev_n = slot + 1;
}
#define WRAP(name, opid, params, args)          \
  static void w_##name params {                 \
    int slot_ = prof_begin();                   \
    g_real.name args;                           \
    prof_end(slot_, opid);                      \
  }
WRAP(linear, OP_linear, (aqs_backend *be, float *y, const float *x, const aqs_bf16 *w, const aqs_bf16 *b, int N, int K,
                         int M), (be, y, x, w, b, N, K, M))
WRAP(linear_bwd_input, OP_linear_bwd_input,
     (aqs_backend *be, float *dx, const float *dy, const aqs_bf16 *w, int N, int K, int M, int acc),
     (be, dx, dy, w, N, K, M, acc))
WRAP(linear_fp8, OP_linear_fp8,
     (aqs_backend *be, float *y, const uint8_t *xq, float xs, const uint8_t *wq, float ws, const aqs_bf16 *b, int N,
      int K, int M), (be, y, xq, xs, wq, ws, b, N, K, M))
WRAP(quantize_fp8_f32, OP_quantize_fp8_f32, (aqs_backend *be, uint8_t *q, const float *x, size_t n, float s),
     (be, q, x, n, s))
WRAP(quantize_fp8_bf16, OP_quantize_fp8_bf16, (aqs_backend *be, uint8_t *q, const aqs_bf16 *x, size_t n, float s),
     (be, q, x, n, s))
WRAP(rmsnorm_fwd, OP_rmsnorm_fwd,
     (aqs_backend *be, float *o, float *r, const float *x, const aqs_bf16 *w, int N, int C, float eps),
     (be, o, r, x, w, N, C, eps))
WRAP(rmsnorm_bwd, OP_rmsnorm_bwd,
     (aqs_backend *be, float *dx, const float *d, const float *x, const float *r, const aqs_bf16 *w, int N, int C,
      int acc), (be, dx, d, x, r, w, N, C, acc))
WRAP(rope_fwd, OP_rope_fwd,
     (aqs_backend *be, float *x, const int32_t *p, int N, int H, int D, const int s[3], float t),
     (be, x, p, N, H, D, s, t))
WRAP(rope_bwd, OP_rope_bwd,
     (aqs_backend *be, float *x, const int32_t *p, int N, int H, int D, const int s[3], float t),
     (be, x, p, N, H, D, s, t))
WRAP(attention_fwd, OP_attention_fwd,
     (aqs_backend *be, float *o, float *l, const float *q, const float *k, const float *v, const int32_t *cu, int B,
      int ms, int N, int Hq, int Hkv, int D), (be, o, l, q, k, v, cu, B, ms, N, Hq, Hkv, D))
WRAP(attention_bwd, OP_attention_bwd,
     (aqs_backend *be, float *dq, float *dk, float *dv, const float *d, const float *o, const float *l, const float *q,
      const float *k, const float *v, const int32_t *cu, int B, int ms, int N, int Hq, int Hkv, int D),
     (be, dq, dk, dv, d, o, l, q, k, v, cu, B, ms, N, Hq, Hkv, D))
WRAP(swiglu_fwd, OP_swiglu_fwd, (aqs_backend *be, float *o, const float *g, const float *u, size_t n),
     (be, o, g, u, n))
WRAP(swiglu_bwd, OP_swiglu_bwd,
     (aqs_backend *be, float *dg, float *du, const float *d, const float *g, const float *u, size_t n),
     (be, dg, du, d, g, u, n))
WRAP(add, OP_add, (aqs_backend *be, float *o, const float *a, const float *b, size_t n), (be, o, a, b, n))
WRAP(embedding, OP_embedding, (aqs_backend *be, float *o, const aqs_bf16 *t, const int32_t *ids, int N, int C),
     (be, o, t, ids, N, C))
WRAP(cross_entropy, OP_cross_entropy,
     (aqs_backend *be, float *d, const float *l, const int32_t *t, int N, int V, float gs, double *ls),
     (be, d, l, t, N, V, gs, ls))
WRAP(log_softmax, OP_log_softmax, (aqs_backend *be, float *o, const float *l, int N, int V), (be, o, l, N, V))
WRAP(kl_div, OP_kl_div, (aqs_backend *be, const float *r, const float *l, int N, int V, double *k),
     (be, r, l, N, V, k))
WRAP(amax_f32, OP_amax_f32, (aqs_backend *be, const float *x, size_t n, float *a), (be, x, n, a))
WRAP(amax_f32_async, OP_amax_f32, (aqs_backend *be, const float *x, size_t n, float *a), (be, x, n, a))
WRAP(amax_bf16, OP_amax_bf16, (aqs_backend *be, const aqs_bf16 *x, size_t n, float *a), (be, x, n, a))
WRAP(grad_score, OP_grad_score,
     (aqs_backend *be, const float *g, const float *y, const float *yq, size_t n, double *s), (be, g, y, yq, n, s))
WRAP(grad_score_async, OP_grad_score,
     (aqs_backend *be, const float *g, const float *y, const float *yq, size_t n, double *s), (be, g, y, yq, n, s))
/* BF16 activation storage (kernels/ops.h): counted with their F32-buffer twins */
WRAP(rmsnorm_fwd_b, OP_rmsnorm_fwd,
     (aqs_backend *be, aqs_bf16 *o, float *r, const float *x, const aqs_bf16 *w, int N, int C, float eps, float *a),
     (be, o, r, x, w, N, C, eps, a))
WRAP(linear_b, OP_linear,
     (aqs_backend *be, aqs_bf16 *y, const aqs_bf16 *x, const aqs_bf16 *w, const aqs_bf16 *b, int N, int K, int M),
     (be, y, x, w, b, N, K, M))
WRAP(rope_fwd_b, OP_rope_fwd,
     (aqs_backend *be, aqs_bf16 *x, const int32_t *p, int N, int H, int D, const int s[3], float t, float *a),
     (be, x, p, N, H, D, s, t, a))
WRAP(attention_fwd_b, OP_attention_fwd,
     (aqs_backend *be, aqs_bf16 *o, float *l, const aqs_bf16 *q, const aqs_bf16 *k, const aqs_bf16 *v,
      const int32_t *cu, int B, int ms, int N, int Hq, int Hkv, int D), (be, o, l, q, k, v, cu, B, ms, N, Hq, Hkv, D))
WRAP(add_b, OP_add, (aqs_backend *be, float *o, const float *a, const aqs_bf16 *b, size_t n, float *m),
     (be, o, a, b, n, m))
WRAP(swiglu_fwd_b, OP_swiglu_fwd,
     (aqs_backend *be, aqs_bf16 *o, const aqs_bf16 *g, const aqs_bf16 *u, size_t n, float *a), (be, o, g, u, n, a))
WRAP(amax_bf16_async, OP_amax_bf16, (aqs_backend *be, const aqs_bf16 *x, size_t n, float *a), (be, x, n, a))
WRAP(copy_d2d, OP_casts_copies, (aqs_backend *be, void *d, const void *s, size_t n), (be, d, s, n))
WRAP(zero, OP_casts_copies, (aqs_backend *be, void *p, size_t n), (be, p, n))
WRAP(round_bf16, OP_casts_copies, (aqs_backend *be, float *x, size_t n), (be, x, n))
WRAP(cast_bf16_to_f32, OP_casts_copies, (aqs_backend *be, float *d, const aqs_bf16 *s, size_t n), (be, d, s, n))
WRAP(cast_f32_to_bf16, OP_casts_copies, (aqs_backend *be, aqs_bf16 *d, const float *s, size_t n), (be, d, s, n))

static void prof_install(aqs_backend *be) {
  if (!g_prof_ready) {
    for (int i = 0; i < PROF_EVENTS; i++) {
      cudaEventCreate(&g_ev[i][0]);
      cudaEventCreate(&g_ev[i][1]);
    }
    g_prof_ready = 1;
  }
  g_orig = be->ops;
  g_real = *be->ops;
  g_wrapped = g_real;
#define SET(name) g_wrapped.name = w_##name
  SET(linear); SET(linear_bwd_input); SET(linear_fp8); SET(quantize_fp8_f32); SET(quantize_fp8_bf16);
  SET(rmsnorm_fwd); SET(rmsnorm_bwd); SET(rope_fwd); SET(rope_bwd); SET(attention_fwd); SET(attention_bwd);
  SET(swiglu_fwd); SET(swiglu_bwd); SET(add); SET(embedding); SET(cross_entropy); SET(log_softmax); SET(kl_div);
  SET(amax_f32); SET(amax_f32_async); SET(amax_bf16); SET(grad_score); SET(grad_score_async); SET(copy_d2d); SET(zero); SET(round_bf16);
  SET(cast_bf16_to_f32); SET(cast_f32_to_bf16);
#define SET_IF(name) if (g_real.name) g_wrapped.name = w_##name /* optional ops stay NULL */
  SET_IF(rmsnorm_fwd_b); SET_IF(linear_b); SET_IF(rope_fwd_b); SET_IF(attention_fwd_b); SET_IF(add_b);
  SET_IF(swiglu_fwd_b); SET_IF(amax_bf16_async);
#undef SET_IF
#undef SET
  be->ops = &g_wrapped;
  memset(g_op_ms, 0, sizeof g_op_ms);
  memset(g_op_calls, 0, sizeof g_op_calls);
}
static void prof_remove(aqs_backend *be) {
  prof_flush();
  be->ops = g_orig;
}
#endif

/* Peak backend bytes since the last reset (cuda: the allocator's counter; cpu: ops mem_stats). */
static void reset_peak(int on_gpu) {
#ifdef AQS_HAVE_CUDA
  if (on_gpu) aqs_cuda_reset_peak();
#else
  (void)on_gpu;
#endif
}
static size_t peak_bytes(aqs_backend *be) {
  size_t in_use = 0, peak = 0;
  be->ops->mem_stats(be, &in_use, &peak);
  return peak;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct bench_opts {
  const char *model_dir, *json_path, *precision, *backend;
  int calib_seqs, calib_len, calib_steps;
  int score_seqs, score_len, score_steps;
  int kl_steps, profile, warmup, varied;
  const char *storage; /* calibration activations: "bf16", "f32" or "both" (f32 then bf16, same process) */
} bench_opts;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Caption-like length in tokens (COCO: mostly 8-20 words, a tail to 50): 85 % in 12..30, the
 * rest in 31..72, at most max. The same generator as torch_peer.py --varied (same lengths). */
static int caption_len(uint64_t *s, int max) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  int r = (int)(*s >> 33);
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  int r2 = (int)(*s >> 33);
  int n = r % 100 < 85 ? 12 + r2 % 19 : 31 + r2 % 42;
  return n < max ? n : max;
}

/* Random token batch (deterministic): n_seqs sequences of len tokens (varied: caption-like
 * lengths up to len) with ids in [0, vocab); returns the number of tokens. */
static int make_tokens(int n_seqs, int len, int vocab, uint64_t seed, int varied, int32_t *ids, int32_t *lens) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1, ls = seed;
  int n = 0;
  for (int i = 0; i < n_seqs; i++) {
    lens[i] = varied ? caption_len(&ls, len) : len;
    n += lens[i];
  }
  for (int i = 0; i < n; i++) {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    ids[i] = (int32_t)((s * 2685821657736338717ull >> 33) % (uint64_t)vocab);
  }
  return n;
}

/* Forward FLOPs of one batch (sequences of lens[i] tokens): 2 * tokens * (linear (+ lm_head when
 * with_head) params) plus causal attention (QK^T and PV over the lower triangle, all heads, all
 * layers). Calibration runs the layers only (its logits are not used), so it counts no lm_head. */
static double forward_flops(const aqs_qwen_text_config *c, const int32_t *lens, int n_seqs, int with_head) {
  double C = c->hidden_size, D = c->head_dim, Hq = c->num_heads, Hkv = c->num_kv_heads, I = c->intermediate_size;
  double per_layer_params = C * (Hq * D) + 2.0 * C * (Hkv * D) + (Hq * D) * C + 3.0 * C * I;
  double tokens = 0, pairs = 0;
  for (int i = 0; i < n_seqs; i++) {
    tokens += lens[i];
    pairs += (double)lens[i] * (lens[i] + 1) / 2.0;
  }
  double linear = 2.0 * tokens * (per_layer_params * c->num_layers + (with_head ? C * c->vocab_size : 0.0));
  double attn = 4.0 * pairs * D * Hq * c->num_layers;
  return linear + attn;
}

static int parse_opts(int argc, char **argv, bench_opts *o) {
  *o = (bench_opts){NULL, NULL, "bf16", "cuda", 16, 64, 8, 8, 64, 4, 0, 1, 2, 0, "bf16"};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEXT_INT(dst) do { if (!v) return -1; dst = atoi(v); i++; } while (0)
    if (!strcmp(a, "--model") && v) { o->model_dir = v; i++; }
    else if (!strcmp(a, "--json") && v) { o->json_path = v; i++; }
    else if (!strcmp(a, "--precision") && v) { o->precision = v; i++; }
    else if (!strcmp(a, "--backend") && v) { o->backend = v; i++; }
    else if (!strcmp(a, "--calib-seqs")) NEXT_INT(o->calib_seqs);
    else if (!strcmp(a, "--calib-len")) NEXT_INT(o->calib_len);
    else if (!strcmp(a, "--calib-steps")) NEXT_INT(o->calib_steps);
    else if (!strcmp(a, "--score-seqs")) NEXT_INT(o->score_seqs);
    else if (!strcmp(a, "--score-len")) NEXT_INT(o->score_len);
    else if (!strcmp(a, "--score-steps")) NEXT_INT(o->score_steps);
    else if (!strcmp(a, "--kl-steps")) NEXT_INT(o->kl_steps);
    else if (!strcmp(a, "--warmup")) NEXT_INT(o->warmup);
    else if (!strcmp(a, "--no-profile")) o->profile = 0;
    else if (!strcmp(a, "--varied")) o->varied = 1;
    else if (!strcmp(a, "--storage") && v && (!strcmp(v, "bf16") || !strcmp(v, "f32") || !strcmp(v, "both"))) {
      o->storage = v;
      i++;
    }
    else return -1;
#undef NEXT_INT
  }
  return o->model_dir ? 0 : -1;
}

static void usage(void) {
  fprintf(stderr,
          "usage: compute_bench --model DIR [--precision bf16|f32] [--calib-seqs 16 --calib-len 64 --calib-steps 8]\n"
          "                     [--score-seqs 8 --score-len 64 --score-steps 4] [--kl-steps 0] [--warmup 2]\n"
          "                     [--no-profile] [--varied] [--json FILE] [--backend cuda|cpu] [--storage bf16|f32|both]\n"
          "--varied: caption-like sequence lengths up to --calib-len / --score-len (packed), the lengths\n"
          "torch_peer.py --varied uses (padded there); tokens/s count real tokens.\n"
          "--storage: the BF16-mode calibration forward's activations: bf16 (BF16 arrays, the default where\n"
          "the backend has the ops), f32 (F32 buffers), both (f32 first, then bf16, and the amax tables compared).\n"
          "Runs on the cuda backend: bf16 GEMM peak, calibration forward tokens/s + MFU, gradient scoring\n"
          "tokens/s, optional kl_div scoring, peak GPU memory, per-op breakdown.\n");
}

#ifdef AQS_HAVE_CUDA
/* bf16 GEMM TFLOP/s of cuBLASLt at M x N x K (BF16 out), mean of reps after a warm-up. */
static double gemm_tflops(int M, int N, int K, int reps, int f32_out, aqs_err *e) {
  void *x, *w, *y;
  if (aqs_cuda_malloc(&x, (size_t)M * K * 2, "bench A", e) || aqs_cuda_malloc(&w, (size_t)N * K * 2, "bench B", e) ||
      aqs_cuda_malloc(&y, (size_t)M * N * (f32_out ? 4 : 2), "bench C", e))
    return -1;
  /* random-ish BF16 data (a mantissa pattern, small exponents) */
  aqs_cuda_memset0(x, (size_t)M * K * 2, e);
  aqs_cuda_memset0(w, (size_t)N * K * 2, e);
  uint16_t *h = malloc((size_t)N * K * 2);
  for (size_t i = 0; i < (size_t)N * K; i++) h[i] = (uint16_t)(0x3c00 + (i * 2654435761u >> 20) % 0x3ff) ^ ((i & 1) << 15);
  aqs_cuda_copy_h2d(w, h, (size_t)N * K * 2, e);
  if ((size_t)M * K <= (size_t)N * K) aqs_cuda_copy_h2d(x, h, (size_t)M * K * 2, e);
  free(h);
  for (int i = 0; i < 3; i++) aqs_cuda_gemm_bf16(x, w, NULL, y, f32_out, 0, M, N, K, e);
  aqs_cuda_sync(e);
  aqs_cuda_timer_start();
  for (int i = 0; i < reps; i++) aqs_cuda_gemm_bf16(x, w, NULL, y, f32_out, 0, M, N, K, e);
  float ms = aqs_cuda_timer_stop_ms();
  aqs_cuda_free(x);
  aqs_cuda_free(w);
  aqs_cuda_free(y);
  return 2.0 * M * N * (double)K * reps / (ms * 1e-3) / 1e12;
}
#endif

int main(int argc, char **argv) {
  bench_opts o;
  if (parse_opts(argc, argv, &o) != 0) {
    usage();
    return 2;
  }
  aqs_err e;
  aqs_err_clear(&e);
  aqs_precision prec;
  if (aqs_precision_parse(o.precision, &prec, &e)) {
    fprintf(stderr, "compute_bench: %s\n", e.msg);
    return 2;
  }
  aqs_backend *be;
  const int on_gpu = strcmp(o.backend, "cuda") == 0;
  if (aqs_backend_open(o.backend, prec, &be, &e)) {
    fprintf(stderr, "compute_bench: %s\n", e.msg);
    return 77;
  }
  if (!on_gpu) printf("(cpu backend: GEMM peak and profile skipped; peak memory since open)\n");
  printf("device: %s\nprecision: %s\n", be->device, o.precision);

  /* 1. bf16 GEMM peak (cuBLASLt), measured now, in this process */
  double peak = 1.0, gemm_mlp = 0, gemm_down = 0;
#ifdef AQS_HAVE_CUDA
  if (on_gpu) {
    peak = gemm_tflops(8192, 8192, 8192, 20, 0, &e);
    gemm_mlp = gemm_tflops(o.calib_seqs * o.calib_len, 11008, 2048, 50, 1, &e);
    gemm_down = gemm_tflops(o.calib_seqs * o.calib_len, 2048, 11008, 50, 1, &e);
  }
#endif
  printf("bf16 GEMM peak (8192^3, cuBLASLt): %.1f TFLOP/s\n", peak);
  printf("bf16 GEMM at model shapes (F32 out): %dx11008x2048 %.1f TFLOP/s, %dx2048x11008 %.1f TFLOP/s\n",
         o.calib_seqs * o.calib_len, gemm_mlp, o.calib_seqs * o.calib_len, gemm_down);

  /* 2. load */
  double t0 = now_s();
  aqs_lm *lm;
  if (aqs_lm_load(be, o.model_dir, &lm, &e)) {
    fprintf(stderr, "compute_bench: loading %s: %s\n", o.model_dir, e.msg);
    return 1;
  }
  double load_s = now_s() - t0;
  const aqs_qwen_text_config *c = &lm->cfg;
  printf("model: %s: %d layers, hidden %d, vocab %d; loaded in %.1f s (%.2f GiB of weights on the GPU)\n",
         o.model_dir, c->num_layers, c->hidden_size, c->vocab_size, load_s, lm->weight_bytes / 1073741824.0);

  /* 3. calibration forward */
  int ctok = o.calib_seqs * o.calib_len;
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)(ctok > o.score_seqs * o.score_len ? ctok : o.score_seqs * o.score_len));
  int32_t *lens = malloc(sizeof(int32_t) * (size_t)(o.calib_seqs > o.score_seqs ? o.calib_seqs : o.score_seqs));
  aqs_amax_table amax = {0};
  /* --storage f32 hides the BF16-storage ops from the model code (a copy of the table without them):
   * calibration then runs on F32 buffers, as before those ops existed */
  const aqs_ops *ops_b = be->ops;
  static aqs_ops ops_f32;
  ops_f32 = *be->ops;
  ops_f32.rmsnorm_fwd_b = NULL;
  ops_f32.linear_b = NULL;
  ops_f32.rope_fwd_b = NULL;
  ops_f32.attention_fwd_b = NULL;
  ops_f32.add_b = NULL;
  ops_f32.swiglu_fwd_b = NULL;
  ops_f32.amax_bf16_async = NULL;
  const int both = !strcmp(o.storage, "both");
  double calib_s = 0, calib_tokens = 0, calib_flops = 0, calib_tok_s = 0, calib_tflops = 0;
  size_t calib_peak = 0;
  aqs_amax_table amax_f32 = {0};
  for (int pass = 0; pass < (both ? 2 : 1); pass++) {
    int storage_f32 = both ? pass == 0 : !strcmp(o.storage, "f32");
    be->ops = storage_f32 ? &ops_f32 : ops_b;
    const char *storage_name = storage_f32 ? "f32" : aqs_lm_calib_b_applies(lm) ? "bf16" : "f32 (no bf16 ops)";
    if (pass == 1) {
      amax_f32 = amax;
      memset(&amax, 0, sizeof amax);
    }
    reset_peak(on_gpu);
    calib_s = calib_tokens = calib_flops = 0;
    double step_ms[64];
    int n_step_ms = 0;
    for (int step = 0; step < o.warmup + o.calib_steps; step++) {
      int ntok = make_tokens(o.calib_seqs, o.calib_len, c->vocab_size, (uint64_t)step + 1, o.varied, ids, lens);
      aqs_token_batch tb = {.n_seqs = o.calib_seqs, .seq_lens = lens, .token_ids = ids};
      aqs_amax_table part = {0};
      double s0 = now_s();
      if (aqs_calibrate_batch(lm, &tb, 0, &part, &e)) {
        fprintf(stderr, "compute_bench: calibration: %s\n", e.msg);
        return 1;
      }
      double dt = now_s() - s0;
      if (step >= o.warmup) {
        calib_s += dt;
        calib_tokens += ntok;
        calib_flops += forward_flops(c, lens, o.calib_seqs, 0);
        if (n_step_ms < 64) step_ms[n_step_ms++] = dt * 1e3;
      }
      if (amax.n == 0) {
        amax = part;
      } else {
        const aqs_amax_table *parts[2] = {&amax, &part};
        aqs_amax_table merged = {0};
        if (aqs_amax_reduce(parts, 2, &merged, &e)) {
          fprintf(stderr, "compute_bench: amax reduce: %s\n", e.msg);
          return 1;
        }
        aqs_amax_free(&amax);
        aqs_amax_free(&part);
        amax = merged;
      }
    }
    calib_peak = peak_bytes(be);
    calib_tok_s = calib_tokens / calib_s;
    calib_tflops = calib_flops / calib_s / 1e12;
    printf("calibration forward (%dx%d%s per step, %d steps, %.0f tokens/step, %s activations): %.0f tokens/s, "
           "%.1f TFLOP/s model, MFU %.1f%% of the measured peak; peak GPU memory %.2f GiB\n",
           o.calib_seqs, o.calib_len, o.varied ? " varied" : "", o.calib_steps, calib_tokens / o.calib_steps,
           storage_name, calib_tok_s, calib_tflops, 100.0 * calib_tflops / peak, calib_peak / 1073741824.0);
    qsort(step_ms, (size_t)n_step_ms, sizeof *step_ms, cmp_double);
    if (n_step_ms > 0)
      printf("  step times: min %.2f ms, median %.2f ms, max %.2f ms (%d steps)\n", step_ms[0], step_ms[n_step_ms / 2],
             step_ms[n_step_ms - 1], n_step_ms);
  }
  if (both) {
    size_t same = 0;
    for (size_t i = 0; i < amax.n && i < amax_f32.n; i++)
      same += !memcmp(&amax.entries[i].input_amax, &amax_f32.entries[i].input_amax, sizeof(float));
    printf("amax tables of the two storages: %zu of %zu entries bit-identical\n", same, amax.n);
    aqs_amax_free(&amax_f32);
  }
  be->ops = ops_b;

  /* 4. gradient scoring */
  if (aqs_lm_set_amax(lm, &amax, &e)) {
    fprintf(stderr, "compute_bench: %s\n", e.msg);
    return 1;
  }
  reset_peak(on_gpu);
  double score_s = 0, loss = 0, score_tokens = 0;
  for (int step = 0; step < o.warmup + o.score_steps; step++) {
    int ntok = make_tokens(o.score_seqs, o.score_len, c->vocab_size, (uint64_t)step + 101, o.varied, ids, lens);
    aqs_token_batch tb = {.n_seqs = o.score_seqs, .seq_lens = lens, .token_ids = ids};
    aqs_scores sc;
    double s0 = now_s();
    if (aqs_sensitivity_batch(lm, &tb, AQS_SENS_GRADIENT, 0, &sc, &loss, &e)) {
      fprintf(stderr, "compute_bench: gradient scoring: %s\n", e.msg);
      return 1;
    }
    double dt = now_s() - s0;
    if (step >= o.warmup) {
      score_s += dt;
      score_tokens += ntok;
    }
    aqs_scores_free(&sc);
  }
  size_t score_peak = peak_bytes(be);
  double score_tok_s = score_tokens / score_s;
  /* forward twice (forward + recompute in the backward) + backward GEMMs (= forward's) + FP8 GEMMs */
  printf("gradient scoring (%dx%d%s per step, %d steps, %.0f tokens/step): %.0f tokens/s (%.1f ms/step, loss %.3f); "
         "peak GPU memory %.2f GiB\n",
         o.score_seqs, o.score_len, o.varied ? " varied" : "", o.score_steps, score_tokens / o.score_steps,
         score_tok_s, 1e3 * score_s / o.score_steps, loss, score_peak / 1073741824.0);

  double kl_tok_s = 0;
  if (o.kl_steps > 0) {
    double kl_s = 0, kl_tokens = 0;
    for (int step = 0; step < o.kl_steps; step++) {
      kl_tokens += make_tokens(o.score_seqs, o.score_len, c->vocab_size, (uint64_t)step + 201, o.varied, ids, lens);
      aqs_token_batch tb = {.n_seqs = o.score_seqs, .seq_lens = lens, .token_ids = ids};
      aqs_scores sc;
      double s0 = now_s();
      if (aqs_sensitivity_batch(lm, &tb, AQS_SENS_KL_DIV, 0, &sc, NULL, &e)) {
        fprintf(stderr, "compute_bench: kl_div scoring: %s\n", e.msg);
        return 1;
      }
      kl_s += now_s() - s0;
      aqs_scores_free(&sc);
    }
    kl_tok_s = kl_tokens / kl_s;
    printf("kl_div scoring (%dx%d per step, %d steps): %.0f tokens/s\n", o.score_seqs, o.score_len, o.kl_steps,
           kl_tok_s);
  }

  /* 5. per-op breakdown: one profiled calibration step and one profiled scoring step */
#ifdef AQS_HAVE_CUDA
  if (o.profile && on_gpu) {
    for (int phase = 0; phase < 2; phase++) {
      prof_install(be);
      double s0 = now_s();
      aqs_token_batch tb;
      if (phase == 0) {
        make_tokens(o.calib_seqs, o.calib_len, c->vocab_size, 7, o.varied, ids, lens);
        tb = (aqs_token_batch){.n_seqs = o.calib_seqs, .seq_lens = lens, .token_ids = ids};
        aqs_amax_table part = {0};
        if (aqs_calibrate_batch(lm, &tb, 0, &part, &e)) fprintf(stderr, "profile: %s\n", e.msg);
        aqs_amax_free(&part);
      } else {
        make_tokens(o.score_seqs, o.score_len, c->vocab_size, 8, o.varied, ids, lens);
        tb = (aqs_token_batch){.n_seqs = o.score_seqs, .seq_lens = lens, .token_ids = ids};
        aqs_scores sc;
        if (aqs_sensitivity_batch(lm, &tb, AQS_SENS_GRADIENT, 0, &sc, NULL, &e) == AQS_OK) aqs_scores_free(&sc);
        else fprintf(stderr, "profile: %s\n", e.msg);
      }
      prof_flush();
      double wall_ms = (now_s() - s0) * 1e3, gpu_ms = 0;
      for (int i = 0; i < OP_COUNT; i++) gpu_ms += g_op_ms[i];
      printf("\nper-op breakdown, one %s step (profiled: wall %.1f ms, sum of op times %.1f ms):\n",
             phase ? "gradient-scoring" : "calibration", wall_ms, gpu_ms);
      for (int i = 0; i < OP_COUNT; i++)
        if (g_op_calls[i])
          printf("  %-24s %6ld calls %9.2f ms  %5.1f%%\n", kOpNames[i], g_op_calls[i], g_op_ms[i],
                 100.0 * g_op_ms[i] / gpu_ms);
      prof_remove(be);
    }
  }
#endif

  if (o.json_path) {
    FILE *f = fopen(o.json_path, "w");
    if (f) {
      fprintf(f,
              "{\"device\": \"%s\", \"precision\": \"%s\", \"calib_storage\": \"%s\", \"gemm_bf16_peak_tflops\": %.2f,\n"
              " \"calib\": {\"seqs\": %d, \"len\": %d, \"steps\": %d, \"tokens_per_s\": %.1f, \"model_tflops\": %.2f, "
              "\"mfu\": %.4f, \"peak_gib\": %.3f},\n"
              " \"score_gradient\": {\"seqs\": %d, \"len\": %d, \"steps\": %d, \"tokens_per_s\": %.1f, \"peak_gib\": "
              "%.3f},\n"
              " \"score_kl_div_tokens_per_s\": %.1f, \"load_s\": %.2f}\n",
              be->device, o.precision, both ? "bf16" : o.storage, peak, o.calib_seqs, o.calib_len, o.calib_steps, calib_tok_s, calib_tflops,
              calib_tflops / peak, calib_peak / 1073741824.0, o.score_seqs, o.score_len, o.score_steps, score_tok_s,
              score_peak / 1073741824.0, kl_tok_s, load_s);
      fclose(f);
    }
  }
  aqs_amax_free(&amax);
  free(ids);
  free(lens);
  aqs_lm_free(lm);
  aqs_backend_close(be);
  return 0;
}
