/* tests/gpu/test_attention.c: CUDA causal GQA attention over packed variable-length sequences
 * (forward + log-sum-exp, backward dq/dk/dv) against the CPU twin, F32 and BF16 modes (BF16: the
 * tensor-core tiles of attention_flash.cu); sequences of length 1, odd, on and around the 64-token
 * tile edges and up to 512, mixed in one batch; determinism of the backward (same bits twice). */
#include "gpu_util.h"

typedef struct att_case {
  int B;
  int lens[8];
  int Hq, Hkv, D;
} att_case;

static void run_attention(aqs_precision prec, const att_case *c) {
  gpu_set_precision(prec);
  int bf16 = prec == AQS_PREC_BF16;
  int32_t cu[9];
  int max_len;
  const int N = packed_cu(cu, c->lens, c->B, &max_len);
  size_t nq = (size_t)N * c->Hq * c->D, nk = (size_t)N * c->Hkv * c->D;
  mirror cum = mirror_new(cu, (size_t)(c->B + 1) * sizeof(int32_t));
  mirror q = mirror_random_f32(nq, 1.0f, bf16), k = mirror_random_f32(nk, 1.0f, bf16),
         v = mirror_random_f32(nk, 1.0f, bf16);
  mirror out = mirror_new(NULL, nq * 4), lse = mirror_new(NULL, (size_t)N * c->Hq * 4);
  FOR_BOTH {
    be->ops->attention_fwd(be, P(out), P(lse), P(q), P(k), P(v), P(cum), c->B, max_len, N, c->Hq, c->Hkv, c->D);
  }
  char what[96];
  snprintf(what, sizeof what, "attention_fwd %s N=%d Hq=%d Hkv=%d D=%d", bf16 ? "bf16" : "f32", N, c->Hq, c->Hkv,
           c->D);
  compare_f32(what, &out, nq, bf16 ? 8e-3 : 2e-5);
  compare_f32("attention lse", &lse, (size_t)N * c->Hq, 2e-5);
  /* backward from the CPU's forward outputs on both sides (so only the backward is compared) */
  float *h = malloc(nq * 4 + (size_t)N * c->Hq * 4);
  g_cpu->ops->copy_d2h(g_cpu, h, out.cpu, nq * 4);
  g_gpu->ops->copy_h2d(g_gpu, out.gpu, h, nq * 4);
  g_cpu->ops->copy_d2h(g_cpu, h, lse.cpu, (size_t)N * c->Hq * 4);
  g_gpu->ops->copy_h2d(g_gpu, lse.gpu, h, (size_t)N * c->Hq * 4);
  free(h);
  mirror dout = mirror_random_f32(nq, 1e-2f, bf16);
  mirror dq = mirror_new(NULL, nq * 4), dk = mirror_new(NULL, nk * 4), dv = mirror_new(NULL, nk * 4);
  FOR_BOTH {
    be->ops->attention_bwd(be, P(dq), P(dk), P(dv), P(dout), P(out), P(lse), P(q), P(k), P(v), P(cum), c->B, max_len,
                           N, c->Hq, c->Hkv, c->D);
  }
  double tol = bf16 ? 1.6e-2 : 5e-5;
  compare_f32("attention_bwd dq", &dq, nq, tol);
  compare_f32("attention_bwd dk", &dk, nk, tol);
  compare_f32("attention_bwd dv", &dv, nk, tol);
  /* determinism: run the CUDA backward again, compare bits with the first run */
  float *first = malloc(nk * 4), *second = malloc(nk * 4);
  g_gpu->ops->copy_d2h(g_gpu, first, dk.gpu, nk * 4);
  g_gpu->ops->attention_bwd(g_gpu, dq.gpu, dk.gpu, dv.gpu, dout.gpu, out.gpu, lse.gpu, q.gpu, k.gpu, v.gpu, cum.gpu,
                            c->B, max_len, N, c->Hq, c->Hkv, c->D);
  g_gpu->ops->copy_d2h(g_gpu, second, dk.gpu, nk * 4);
  gpu_sync_ok();
  assert_memory_equal(first, second, nk * 4);
  free(first);
  free(second);
  mirror_free(&cum);
  mirror_free(&q);
  mirror_free(&k);
  mirror_free(&v);
  mirror_free(&out);
  mirror_free(&lse);
  mirror_free(&dout);
  mirror_free(&dq);
  mirror_free(&dk);
  mirror_free(&dv);
}

static void test_attention_f32(void **state) {
  (void)state;
  rng_seed(31);
  att_case a = {4, {1, 7, 33, 64}, 4, 2, 64};
  run_attention(AQS_PREC_F32, &a);
  att_case b = {2, {130, 5}, 16, 2, 128};
  run_attention(AQS_PREC_F32, &b);
  att_case c = {3, {3, 17, 40}, 4, 4, 16};
  run_attention(AQS_PREC_F32, &c);
  /* group 3 and head_dim 192: the per-head kernels (no GQA-shared instantiation) */
  att_case d = {2, {50, 20}, 6, 2, 192};
  run_attention(AQS_PREC_F32, &d);
  /* caption-like and tile-edge lengths mixed in one packed batch */
  att_case e = {8, {1, 7, 63, 64, 65, 500, 511, 512}, 4, 2, 64};
  run_attention(AQS_PREC_F32, &e);
}

static void test_attention_bf16(void **state) {
  (void)state;
  rng_seed(32);
  att_case a = {4, {1, 7, 33, 64}, 16, 2, 128};
  run_attention(AQS_PREC_BF16, &a);
  /* the tensor-core tiles (64 queries x 64/32 keys): lengths on, below and above tile edges, one
   * packed batch; the 3b model's 16:2 heads of 128 */
  att_case b = {8, {1, 7, 63, 64, 65, 500, 511, 512}, 16, 2, 128};
  run_attention(AQS_PREC_BF16, &b);
  /* head_dim 64 and 80, group 1 and 4; head_dim 192 (no tile instantiation: per-row kernels) */
  att_case c = {5, {130, 1, 64, 33, 97}, 4, 4, 64};
  run_attention(AQS_PREC_BF16, &c);
  att_case d = {3, {200, 17, 65}, 8, 2, 80};
  run_attention(AQS_PREC_BF16, &d);
  att_case f = {2, {50, 20}, 6, 2, 192};
  run_attention(AQS_PREC_BF16, &f);
}

/* A head_dim the kernel does not support is reported at sync, not silently wrong. */
static void test_attention_unsupported_head_dim(void **state) {
  (void)state;
  void *buf;
  aqs_err e;
  int32_t cu[2] = {0, 2};
  void *dcu;
  assert_int_equal(g_gpu->ops->alloc(g_gpu, sizeof cu, &dcu, &e), AQS_OK);
  g_gpu->ops->copy_h2d(g_gpu, dcu, cu, sizeof cu);
  assert_int_equal(g_gpu->ops->alloc(g_gpu, 2 * 512 * 4, &buf, &e), AQS_OK);
  g_gpu->ops->attention_fwd(g_gpu, buf, NULL, buf, buf, buf, dcu, 1, 2, 2, 1, 1, 512);
  aqs_status st = g_gpu->ops->sync(g_gpu, &e);
  printf("unsupported head_dim: %s\n", e.msg);
  assert_int_equal(st, AQS_ERR_UNSUPPORTED);
  assert_non_null(strstr(e.msg, "head_dim 512"));
  g_gpu->ops->free(g_gpu, buf);
  g_gpu->ops->free(g_gpu, dcu);
}

int main(void) {
  gpu_open_or_skip();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_attention_f32),
      cmocka_unit_test(test_attention_bf16),
      cmocka_unit_test(test_attention_unsupported_head_dim),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  aqs_backend_close(g_cpu);
  aqs_backend_close(g_gpu);
  return rc;
}
