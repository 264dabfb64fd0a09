/* tests/bench/attention_bench.c: the CUDA attention forward alone at the model's shapes (3b
 * language model: 16 query / 2 kv heads of 128, causal; vision tower: 16 heads of 80,
 * bidirectional windows and frames), BF16 mode: F32 buffers (attention_fwd / attention_full_fwd)
 * and BF16 buffers (attention_fwd_b). Reports ms per call and per 36-layer step, TFLOP/s and a
 * digest of the output bits. Usage: attention_bench [--reps N] [--only NAME] (--help). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/bf16.h"

#ifdef AQS_HAVE_CUDA
#include <dlfcn.h>

#include "kernels/cuda/launchers.h"

/* attention_fwd_b, looked up at run time: with an older libaqs_cuda.so first on the library path
 * (the "before" of a comparison) only the F32-buffer rows are measured. */
typedef aqs_status (*fwd_b_fn)(uint16_t *, float *, const uint16_t *, const uint16_t *, const uint16_t *,
                               const int32_t *, int, int, int, int, int, int, int, void *, aqs_err *);
static fwd_b_fn g_fwd_b;

typedef struct shape {
  const char *name;
  int B, len, Hq, Hkv, D, causal;
} shape;

static const shape kShapes[] = {
    {"lm 8x512 causal", 8, 512, 16, 2, 128, 1},
    {"lm 16x64 causal", 16, 64, 16, 2, 128, 1},
    {"lm 64x64 causal", 64, 64, 16, 2, 128, 1},
    {"vision 64 windows x64", 64, 64, 16, 16, 80, 0},
    {"vision 4 frames x1024", 4, 1024, 16, 16, 80, 0},
};

/* FNV-1a of n bytes of device memory. */
static uint64_t digest(const void *d, size_t n, aqs_err *e) {
  unsigned char *h = malloc(n);
  uint64_t x = 1469598103934665603ull;
  if (!h || aqs_cuda_copy_d2h(h, d, n, e)) return 0;
  for (size_t i = 0; i < n; i++) x = (x ^ h[i]) * 1099511628211ull;
  free(h);
  return x;
}

/* Tile FLOPs (what the kernels compute: 64 x 64 tiles up to the diagonal) and useful FLOPs. */
static void flops(const shape *s, double *tile, double *useful) {
  const double per = 4.0 * s->D * s->Hq * s->B; /* QK^T and PV: 2 multiply-adds per (query, key, d) */
  const int t = (s->len + 63) / 64;
  *tile = per * 64.0 * 64.0 * (s->causal ? t * (t + 1) / 2.0 : (double)t * t);
  *useful = per * (s->causal ? s->len * (s->len + 1) / 2.0 : (double)s->len * s->len);
}

static int bench(const shape *s, int reps, aqs_err *e) {
  const int N = s->B * s->len;
  const size_t nq = (size_t)N * s->Hq * s->D, nk = (size_t)N * s->Hkv * s->D, nl = (size_t)N * s->Hq;
  int32_t *cu = malloc((size_t)(s->B + 1) * sizeof *cu);
  for (int i = 0; i <= s->B; i++) cu[i] = i * s->len;
  void *dcu, *q, *k, *v, *o, *q32, *k32, *v32, *o32, *lse;
  if (aqs_cuda_malloc(&dcu, (size_t)(s->B + 1) * 4, "cu_seqlens", e) || aqs_cuda_malloc(&q, nq * 2, "q", e) ||
      aqs_cuda_malloc(&k, nk * 2, "k", e) || aqs_cuda_malloc(&v, nk * 2, "v", e) ||
      aqs_cuda_malloc(&o, nq * 2, "out", e) || aqs_cuda_malloc(&q32, nq * 4, "q32", e) ||
      aqs_cuda_malloc(&k32, nk * 4, "k32", e) || aqs_cuda_malloc(&v32, nk * 4, "v32", e) ||
      aqs_cuda_malloc(&o32, nq * 4, "out32", e) || aqs_cuda_malloc(&lse, nl * 4, "lse", e))
    return 1;
  aqs_cuda_copy_h2d(dcu, cu, (size_t)(s->B + 1) * 4, e);
  const size_t nh = (nq > nk ? nq : nk) + 16; /* k and v start 7 and 13 values in */
  uint16_t *h = malloc(nh * 2);
  uint64_t r = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < nh; i++) {
    r ^= r >> 12, r ^= r << 25, r ^= r >> 27;
    h[i] = aqs_f32_to_bf16(((float)((r * 2685821657736338717ull) >> 40) / 16777216.0f - 0.5f) * 4.0f);
  }
  aqs_cuda_copy_h2d(q, h, nq * 2, e);
  aqs_cuda_copy_h2d(k, h + 7, nk * 2, e);
  aqs_cuda_copy_h2d(v, h + 13, nk * 2, e);
  free(h);
  aqs_cuda_cast_bf16_to_f32(q32, q, nq, e);
  aqs_cuda_cast_bf16_to_f32(k32, k, nk, e);
  aqs_cuda_cast_bf16_to_f32(v32, v, nk, e);
  double tile, useful;
  flops(s, &tile, &useful);
  for (int kind = 0; kind < (g_fwd_b ? 2 : 1); kind++) { /* 0: F32 buffers, 1: BF16 buffers */
    aqs_status st = AQS_OK;
    for (int i = 0; i < reps + 3; i++) {
      if (i == 3) {
        if ((st = aqs_cuda_sync(e))) break;
        aqs_cuda_timer_start();
      }
      if (kind == 1)
        st = g_fwd_b(o, lse, q, k, v, dcu, s->B, s->len, N, s->Hq, s->Hkv, s->D, s->causal, NULL,
                                      e);
      else if (s->causal)
        st = aqs_cuda_attention_fwd(o32, lse, q32, k32, v32, dcu, s->B, s->len, N, s->Hq, s->Hkv, s->D, 1, e);
      else
        st = aqs_cuda_attention_full_fwd(o32, lse, q32, k32, v32, dcu, s->B, s->len, N, s->Hq, s->D, 1, e);
      if (st) break;
    }
    const float ms = st ? 0.f : aqs_cuda_timer_stop_ms() / (float)reps;
    if (st || (st = aqs_cuda_sync(e))) return 1;
    printf("%-24s %-5s %8.4f ms/call %7.3f ms/36 layers %7.1f TFLOP/s tiles %7.1f useful  out %016llx\n", s->name,
           kind ? "bf16" : "f32", ms, ms * 36.0, tile / (ms * 1e-3) / 1e12, useful / (ms * 1e-3) / 1e12,
           (unsigned long long)digest(kind ? o : o32, nq * (kind ? 2 : 4), e));
  }
  void *bufs[] = {dcu, q, k, v, o, q32, k32, v32, o32, lse};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) aqs_cuda_free(bufs[i]);
  free(cu);
  return 0;
}

#endif

int main(int argc, char **argv) {
  int reps = 50;
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else {
      printf("usage: attention_bench [--reps N (50)] [--only NAME-PREFIX]\n"
             "Times the CUDA attention forward (BF16 mode) at the 3b language model's and the vision\n"
             "tower's shapes, F32 and BF16 buffers; AQS_FLASH_HEADS=1 forces one query head per block.\n");
      return strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  if (reps < 1) reps = 1;
#ifndef AQS_HAVE_CUDA
  (void)only;
  fprintf(stderr, "attention_bench: built without CUDA (configure with -DAQS_CUDA=ON)\n");
  return 1;
#else
  aqs_err e;
  aqs_err_clear(&e);
  if (aqs_cuda_device_count() == 0 || aqs_cuda_init(0, &e)) {
    fprintf(stderr, "attention_bench: no CUDA device: %s\n", e.msg);
    return 1;
  }
  g_fwd_b = (fwd_b_fn)dlsym(RTLD_DEFAULT, "aqs_cuda_attention_fwd_b");
  printf("%s, %d reps, AQS_FLASH_HEADS=%s%s\n", aqs_cuda_device_desc(), reps,
         getenv("AQS_FLASH_HEADS") ? getenv("AQS_FLASH_HEADS") : "(default)",
         g_fwd_b ? "" : ", no attention_fwd_b in this libaqs_cuda.so");
  for (size_t i = 0; i < sizeof kShapes / sizeof kShapes[0]; i++) {
    if (only && strncmp(kShapes[i].name, only, strlen(only))) continue;
    if (bench(&kShapes[i], reps, &e)) {
      fprintf(stderr, "attention_bench: %s: %s\n", kShapes[i].name, e.msg);
      return 1;
    }
  }
  return 0;
#endif
}
