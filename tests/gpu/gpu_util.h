/* tests/gpu/gpu_util.h: helpers for the CUDA-vs-CPU op tests: open both backends (exit 77 when no
 * GPU), deterministic random data, mirrored buffers (same bytes on cpu and cuda), and comparisons
 * that print the max error relative to the reference's scale. Header-only, included once per test. */
#ifndef AQS_TESTS_GPU_UTIL_H
#define AQS_TESTS_GPU_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "kernels/backend.h"
#include "kernels/cuda/launchers.h"
#include "kernels/ops.h"

static aqs_backend *g_cpu, *g_gpu;

/* Opens cpu + cuda backends or exits 77 (skip) when no GPU is usable. */
static __attribute__((unused)) void gpu_open_or_skip(void) {
  if (aqs_cuda_device_count() == 0) {
    printf("skipping: no CUDA GPU\n");
    exit(AQS_TEST_SKIP);
  }
  aqs_err e;
  if (aqs_backend_open("cpu", AQS_PREC_F32, &g_cpu, &e) || aqs_backend_open("cuda", AQS_PREC_F32, &g_gpu, &e)) {
    printf("skipping: %s\n", e.msg);
    exit(AQS_TEST_SKIP);
  }
  printf("cuda device: %s\n", g_gpu->device);
}

static __attribute__((unused)) void gpu_set_precision(aqs_precision p) {
  g_cpu->precision = p;
  g_gpu->precision = p;
}

/* xorshift64* stream; uniform in [lo, hi). */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static __attribute__((unused)) void rng_seed(uint64_t s) { g_rng = s ? s : 1; }
static __attribute__((unused)) float rng_uniform(float lo, float hi) {
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  uint64_t r = g_rng * 2685821657736338717ull;
  return lo + (hi - lo) * (float)((r >> 40) * (1.0 / 16777216.0));
}
static __attribute__((unused)) float rng_normal(void) {
  float u1 = rng_uniform(1e-7f, 1.0f), u2 = rng_uniform(0.0f, 1.0f);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}
static __attribute__((unused)) uint16_t bf16_of(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static __attribute__((unused)) float f32_of_bf16(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static __attribute__((unused)) float round_to_bf16(float f) { return f32_of_bf16(bf16_of(f)); }

/* cu_seqlens (B + 1 entries) of a packed batch of B sequences of lens[s] tokens; returns N, the
 * total, and sets *max_len to the longest. */
static __attribute__((unused)) int packed_cu(int32_t *cu, const int *lens, int B, int *max_len) {
  cu[0] = 0;
  *max_len = 0;
  for (int s = 0; s < B; s++) {
    cu[s + 1] = cu[s] + lens[s];
    if (lens[s] > *max_len) *max_len = lens[s];
  }
  return cu[B];
}

/* A buffer present on both backends with the same initial bytes. */
typedef struct mirror {
  void *cpu, *gpu;
  size_t bytes;
} mirror;

static __attribute__((unused)) mirror mirror_new(const void *host, size_t bytes) {
  mirror m = {NULL, NULL, bytes};
  aqs_err e;
  assert_int_equal(g_cpu->ops->alloc(g_cpu, bytes, &m.cpu, &e), AQS_OK);
  assert_int_equal(g_gpu->ops->alloc(g_gpu, bytes, &m.gpu, &e), AQS_OK);
  if (host) {
    g_cpu->ops->copy_h2d(g_cpu, m.cpu, host, bytes);
    g_gpu->ops->copy_h2d(g_gpu, m.gpu, host, bytes);
  } else {
    g_cpu->ops->zero(g_cpu, m.cpu, bytes);
    g_gpu->ops->zero(g_gpu, m.gpu, bytes);
  }
  return m;
}
static __attribute__((unused)) void mirror_free(mirror *m) {
  g_cpu->ops->free(g_cpu, m->cpu);
  g_gpu->ops->free(g_gpu, m->gpu);
  m->cpu = m->gpu = NULL;
}

/* Random F32 mirror of n values: normal * scale, rounded to BF16 values when bf16_values. */
static __attribute__((unused)) mirror mirror_random_f32(size_t n, float scale, int bf16_values) {
  float *h = malloc(n * sizeof *h + 4);
  for (size_t i = 0; i < n; i++) {
    float v = rng_normal() * scale;
    h[i] = bf16_values ? round_to_bf16(v) : v;
  }
  mirror m = mirror_new(h, n * sizeof *h);
  free(h);
  return m;
}
/* Random BF16 mirror (weights). */
static __attribute__((unused)) mirror mirror_random_bf16(size_t n, float scale) {
  uint16_t *h = malloc(n * sizeof *h + 2);
  for (size_t i = 0; i < n; i++) h[i] = bf16_of(rng_normal() * scale);
  mirror m = mirror_new(h, n * sizeof *h);
  free(h);
  return m;
}

static __attribute__((unused)) void gpu_sync_ok(void) {
  aqs_err e;
  aqs_status st = g_gpu->ops->sync(g_gpu, &e);
  if (st) fail_msg("cuda op failed: %s", e.msg);
  assert_int_equal(g_cpu->ops->sync(g_cpu, &e), AQS_OK);
}

/* Copies both sides of an F32 mirror to the host and checks max|gpu - cpu| <= tol * max(|cpu|, floor).
 * Returns the relative error. Non-finite values must match exactly in kind. */
static __attribute__((unused)) double compare_f32(const char *what, const mirror *m, size_t n, double tol) {
  gpu_sync_ok();
  float *a = malloc(n * sizeof *a + 4), *b = malloc(n * sizeof *b + 4);
  g_cpu->ops->copy_d2h(g_cpu, a, m->cpu, n * sizeof *a);
  g_gpu->ops->copy_d2h(g_gpu, b, m->gpu, n * sizeof *b);
  gpu_sync_ok();
  double scale = 1e-30, err = 0;
  size_t worst = 0, bitexact = 0;
  for (size_t i = 0; i < n; i++) {
    if (isfinite(a[i]) && fabs(a[i]) > scale) scale = fabs(a[i]);
    if (memcmp(&a[i], &b[i], 4) == 0) bitexact++;
  }
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(a[i]) || !isfinite(b[i])) {
      if (isnan(a[i]) != isnan(b[i]) || (isinf(a[i]) && a[i] != b[i]))
        fail_msg("%s: element %zu: cpu %g vs cuda %g", what, i, (double)a[i], (double)b[i]);
      continue;
    }
    double d = fabs((double)a[i] - (double)b[i]);
    if (d > err) {
      err = d;
      worst = i;
    }
  }
  double rel = err / scale;
  printf("%-40s n=%-9zu max|ref|=%-10.4g max err rel=%.3g (at %zu: cpu %.9g cuda %.9g) bit-exact %.1f%%\n", what, n,
         scale, rel, worst, (double)a[worst], (double)b[worst], 100.0 * (double)bitexact / (double)(n ? n : 1));
  free(a);
  free(b);
  if (!(rel <= tol)) fail_msg("%s: relative error %.3g above tolerance %.3g", what, rel, tol);
  return rel;
}

/* Both sides' bytes must be identical. */
static __attribute__((unused)) void compare_bytes(const char *what, const mirror *m, size_t bytes) {
  gpu_sync_ok();
  unsigned char *a = malloc(bytes + 1), *b = malloc(bytes + 1);
  g_cpu->ops->copy_d2h(g_cpu, a, m->cpu, bytes);
  g_gpu->ops->copy_d2h(g_gpu, b, m->gpu, bytes);
  gpu_sync_ok();
  for (size_t i = 0; i < bytes; i++)
    if (a[i] != b[i]) fail_msg("%s: byte %zu differs: cpu 0x%02x cuda 0x%02x", what, i, a[i], b[i]);
  printf("%-40s %zu bytes bit-exact\n", what, bytes);
  free(a);
  free(b);
}

/* Scalars (host results): |gpu - cpu| <= tol * max(|cpu|, 1e-30). */
static __attribute__((unused)) void compare_scalar(const char *what, double cpu, double gpu, double tol) {
  double rel = fabs(cpu - gpu) / fmax(fabs(cpu), 1e-30);
  printf("%-40s cpu %.17g cuda %.17g rel %.3g\n", what, cpu, gpu, rel);
  if (isnan(cpu) || isnan(gpu)) {
    if (isnan(cpu) != isnan(gpu)) fail_msg("%s: NaN on one side only", what);
    return;
  }
  if (!(rel <= tol)) fail_msg("%s: relative error %.3g above %.3g", what, rel, tol);
}

/* FOR_BOTH { be->ops->op(be, P(x), ...); } runs the body on cpu (side 0) then cuda (side 1);
 * P(m) is the mirror's pointer on the current side. */
#define FOR_BOTH \
  for (int side = 0; side < 2; side++) \
    for (aqs_backend *be = side ? g_gpu : g_cpu; be; be = NULL)
#define P(m) ((void *)((side) ? (m).gpu : (m).cpu))

#endif
