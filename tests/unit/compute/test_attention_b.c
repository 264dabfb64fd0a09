/* tests/unit/compute/test_attention_b.c: the CPU backend's attention_fwd_b (BF16 q, k, v, out) is
 * attention_fwd run in BF16 mode on the same values, bit for bit (out and lse), whatever the
 * backend's precision setting; packed sequences on and around the 64-token tile edges, GQA. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/bf16.h"

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

/* Deterministic normal-ish values (sum of uniforms) times scale, as BF16. */
static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static float urand(void) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((rng_state >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}
static aqs_bf16 *rand_bf16(size_t n, float scale) {
  aqs_bf16 *x = malloc(n * sizeof *x + 2);
  for (size_t i = 0; i < n; i++) x[i] = aqs_f32_to_bf16((urand() + urand() + urand()) * scale);
  return x;
}
static float *upcast(const aqs_bf16 *x, size_t n) {
  float *f = malloc(n * sizeof *f + 4);
  for (size_t i = 0; i < n; i++) f[i] = aqs_bf16_to_f32(x[i]);
  return f;
}

/* attention_fwd_b with the backend in `mode` against attention_fwd in BF16 mode. */
static void check_case(aqs_precision mode, int B, const int *lens, int Hq, int Hkv, int D, float scale) {
  int32_t cu[16] = {0};
  int max_len = 0;
  for (int s = 0; s < B; s++) {
    cu[s + 1] = cu[s] + lens[s];
    if (lens[s] > max_len) max_len = lens[s];
  }
  const int N = cu[B];
  const size_t nq = (size_t)N * Hq * D, nk = (size_t)N * Hkv * D, nl = (size_t)N * Hq;
  aqs_bf16 *q = rand_bf16(nq, scale), *k = rand_bf16(nk, scale), *v = rand_bf16(nk, 1.0f);
  float *qf = upcast(q, nq), *kf = upcast(k, nk), *vf = upcast(v, nk);
  float *want = malloc(nq * sizeof *want), *want_lse = malloc(nl * sizeof *want_lse);
  float *got_lse = malloc(nl * sizeof *got_lse);
  aqs_bf16 *got = malloc(nq * sizeof *got), *got2 = malloc(nq * sizeof *got2);
  be->precision = AQS_PREC_BF16;
  be->ops->attention_fwd(be, want, want_lse, qf, kf, vf, cu, B, max_len, N, Hq, Hkv, D);
  be->precision = mode;
  be->ops->attention_fwd_b(be, got, got_lse, q, k, v, cu, B, max_len, N, Hq, Hkv, D);
  be->ops->attention_fwd_b(be, got2, NULL, q, k, v, cu, B, max_len, N, Hq, Hkv, D);
  size_t differ = 0;
  for (size_t i = 0; i < nq; i++) {
    float g = aqs_bf16_to_f32(got[i]);
    if (memcmp(&g, &want[i], 4) != 0 && differ++ == 0)
      print_error("out[%zu]: attention_fwd_b %.9g, attention_fwd (bf16 mode) %.9g\n", i, g, want[i]);
  }
  assert_int_equal(differ, 0);
  assert_memory_equal(got_lse, want_lse, nl * sizeof *got_lse);
  assert_memory_equal(got, got2, nq * sizeof *got); /* lse NULL: same out */
  be->precision = AQS_PREC_F32;
  free(q), free(k), free(v), free(qf), free(kf), free(vf);
  free(want), free(want_lse), free(got_lse), free(got), free(got2);
}

static void test_equals_bf16_mode_attention(void **state) {
  (void)state;
  const int mixed[8] = {1, 7, 63, 64, 65, 130, 33, 2};
  check_case(AQS_PREC_F32, 8, mixed, 4, 2, 64, 1.0f);
  check_case(AQS_PREC_BF16, 8, mixed, 4, 2, 64, 1.0f);
  const int lm[3] = {65, 1, 40}; /* the 3b model's heads: 16 query, 2 kv, 128 wide */
  check_case(AQS_PREC_F32, 3, lm, 16, 2, 128, 2.0f);
  const int vis[2] = {64, 17}; /* the vision tower's head_dim, one query head per kv head */
  check_case(AQS_PREC_F32, 2, vis, 2, 2, 80, 1.0f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_equals_bf16_mode_attention),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
