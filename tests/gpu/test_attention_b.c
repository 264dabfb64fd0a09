/* tests/gpu/test_attention_b.c: attention_fwd_b (BF16 q, k, v, out) on CUDA against its CPU twin,
 * and bit for bit against CUDA attention_fwd in BF16 mode on F32 buffers holding the same values
 * (out and lse): packed sequences of lengths 1 to 512 around the 64-token tiles, GQA 16:2 and 4:2,
 * head_dim 64/80/128 (tensor-core kernels), 192 and misaligned tensors (the F32-copy fallback). */
#include "gpu_util.h"

typedef struct att_case {
  int B;
  int lens[8];
  int Hq, Hkv, D;
  int offset; /* elements added to every BF16 pointer: 1 = not 16-byte aligned (fallback path) */
} att_case;

/* F32 mirror of a BF16 mirror's values (exact cast on each side). */
static mirror widen(const mirror *b, size_t off, size_t n) {
  mirror f = mirror_new(NULL, n * 4);
  FOR_BOTH { be->ops->cast_bf16_to_f32(be, P(f), (const aqs_bf16 *)P(*b) + off, n); }
  return f;
}

/* A BF16 mirror of n random values (normal * scale) starting `off` elements in. */
static mirror random_bf16_at(size_t n, size_t off, float scale) {
  uint16_t *h = calloc(n + off + 8, sizeof *h);
  for (size_t i = 0; i < n; i++) h[off + i] = bf16_of(rng_normal() * scale);
  mirror m = mirror_new(h, (n + off + 8) * sizeof *h);
  free(h);
  return m;
}

static void run_case(const att_case *c) {
  int32_t cu[9];
  int max_len;
  const int N = packed_cu(cu, c->lens, c->B, &max_len);
  const size_t nq = (size_t)N * c->Hq * c->D, nk = (size_t)N * c->Hkv * c->D, nl = (size_t)N * c->Hq;
  const size_t off = (size_t)c->offset;
  mirror cum = mirror_new(cu, (size_t)(c->B + 1) * sizeof(int32_t));
  mirror q = random_bf16_at(nq, off, 1.0f), k = random_bf16_at(nk, off, 1.0f), v = random_bf16_at(nk, off, 1.0f);
  mirror out = mirror_new(NULL, (nq + off + 8) * 2), lse = mirror_new(NULL, nl * 4);
  gpu_set_precision(AQS_PREC_F32); /* attention_fwd_b ignores the precision setting */
  FOR_BOTH {
    be->ops->attention_fwd_b(be, (aqs_bf16 *)P(out) + off, P(lse), (aqs_bf16 *)P(q) + off, (aqs_bf16 *)P(k) + off,
                             (aqs_bf16 *)P(v) + off, P(cum), c->B, max_len, N, c->Hq, c->Hkv, c->D);
  }
  char what[112];
  snprintf(what, sizeof what, "attention_fwd_b N=%d Hq=%d Hkv=%d D=%d%s", N, c->Hq, c->Hkv, c->D,
           off ? " unaligned" : "");
  mirror outf = widen(&out, off, nq);
  compare_f32(what, &outf, nq, 8e-3);
  compare_f32("attention_fwd_b lse", &lse, nl, 2e-5);

  /* CUDA attention_fwd in BF16 mode on F32 copies: the same bits */
  mirror qf = widen(&q, off, nq), kf = widen(&k, off, nk), vf = widen(&v, off, nk);
  mirror out32 = mirror_new(NULL, nq * 4), lse32 = mirror_new(NULL, nl * 4);
  gpu_set_precision(AQS_PREC_BF16);
  g_gpu->ops->attention_fwd(g_gpu, out32.gpu, lse32.gpu, qf.gpu, kf.gpu, vf.gpu, cum.gpu, c->B, max_len, N, c->Hq,
                            c->Hkv, c->D);
  float *a = malloc(nq * 4), *b = malloc(nq * 4), *la = malloc(nl * 4), *lb = malloc(nl * 4);
  g_gpu->ops->copy_d2h(g_gpu, a, out32.gpu, nq * 4);
  g_gpu->ops->copy_d2h(g_gpu, b, outf.gpu, nq * 4);
  g_gpu->ops->copy_d2h(g_gpu, la, lse32.gpu, nl * 4);
  g_gpu->ops->copy_d2h(g_gpu, lb, lse.gpu, nl * 4);
  gpu_sync_ok();
  size_t differ = 0;
  for (size_t i = 0; i < nq; i++)
    if (memcmp(&a[i], &b[i], 4) != 0 && differ++ == 0)
      printf("out[%zu]: attention_fwd %.9g attention_fwd_b %.9g\n", i, (double)a[i], (double)b[i]);
  size_t ldiffer = 0;
  for (size_t i = 0; i < nl; i++) ldiffer += memcmp(&la[i], &lb[i], 4) != 0;
  printf("%-40s out %zu / lse %zu of %zu / %zu differ from attention_fwd (bf16 mode)\n", what, differ, ldiffer, nq,
         nl);
  assert_int_equal(differ, 0);
  assert_int_equal(ldiffer, 0);

  /* a second run: the same bits */
  uint16_t *first = malloc(nq * 2), *second = malloc(nq * 2);
  g_gpu->ops->copy_d2h(g_gpu, first, (uint16_t *)out.gpu + off, nq * 2);
  g_gpu->ops->attention_fwd_b(g_gpu, (aqs_bf16 *)out.gpu + off, NULL, (aqs_bf16 *)q.gpu + off,
                              (aqs_bf16 *)k.gpu + off, (aqs_bf16 *)v.gpu + off, cum.gpu, c->B, max_len, N, c->Hq,
                              c->Hkv, c->D);
  g_gpu->ops->copy_d2h(g_gpu, second, (uint16_t *)out.gpu + off, nq * 2);
  gpu_sync_ok();
  assert_memory_equal(first, second, nq * 2);
  free(first), free(second), free(a), free(b), free(la), free(lb);
  mirror *all[] = {&cum, &q, &k, &v, &out, &lse, &outf, &qf, &kf, &vf, &out32, &lse32};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mirror_free(all[i]);
  gpu_set_precision(AQS_PREC_F32);
}

static void test_attention_b_tiles(void **state) {
  (void)state;
  rng_seed(41);
  /* the 3b model's 16:2 heads of 128 on one packed batch of caption-like and tile-edge lengths */
  att_case a = {8, {1, 7, 63, 64, 65, 500, 511, 512}, 16, 2, 128, 0};
  run_case(&a);
  att_case b = {8, {1, 7, 63, 64, 65, 500, 511, 512}, 4, 2, 64, 0};
  run_case(&b);
  att_case c = {8, {1, 7, 63, 64, 65, 500, 511, 512}, 4, 2, 80, 0};
  run_case(&c);
  /* group 1 (one head per block) and group 3 (odd: one head per block) */
  att_case d = {4, {130, 1, 64, 97}, 4, 4, 128, 0};
  run_case(&d);
  att_case e = {3, {200, 17, 65}, 6, 2, 64, 0};
  run_case(&e);
}

static void test_attention_b_fallback(void **state) {
  (void)state;
  rng_seed(42);
  /* head_dim 192: no tensor-core instantiation; misaligned BF16 tensors: F32 copies */
  att_case a = {3, {50, 20, 1}, 6, 2, 192, 0};
  run_case(&a);
  att_case b = {4, {1, 65, 130, 7}, 16, 2, 128, 1};
  run_case(&b);
}

int main(void) {
  gpu_open_or_skip();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_attention_b_tiles),
      cmocka_unit_test(test_attention_b_fallback),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  aqs_backend_close(g_cpu);
  aqs_backend_close(g_gpu);
  return rc;
}
