/* tests/gpu/test_elementwise.c: CUDA casts, BF16 rounding, residual add, embedding gather and SwiGLU
 * (forward, backward) against the CPU twins. Casts and gathers must be bit-exact. */
#include "gpu_util.h"

static void test_casts_round_add(void **state) {
  (void)state;
  gpu_set_precision(AQS_PREC_F32);
  rng_seed(41);
  const size_t n = 65536 + 4096;
  /* every BF16 pattern, then random floats with specials */
  uint16_t *hb = malloc(n * 2);
  float *hf = malloc(n * 4);
  for (size_t i = 0; i < n; i++) {
    hb[i] = (uint16_t)i;
    hf[i] = rng_normal() * powf(2.0f, rng_uniform(-140.0f, 130.0f));
  }
  hf[0] = NAN;
  hf[1] = -INFINITY;
  hf[2] = 3.3895314e38f; /* rounds past the BF16 maximum -> Inf */
  hf[3] = -0.0f;
  mirror b = mirror_new(hb, n * 2), f = mirror_new(hf, n * 4), out = mirror_new(NULL, n * 4);
  mirror ob = mirror_new(NULL, n * 2);
  FOR_BOTH { be->ops->cast_bf16_to_f32(be, P(out), P(b), n); }
  compare_bytes("cast_bf16_to_f32 (all patterns)", &out, n * 4);
  FOR_BOTH { be->ops->cast_f32_to_bf16(be, P(ob), P(f), n); }
  compare_bytes("cast_f32_to_bf16", &ob, n * 2);
  FOR_BOTH {
    be->ops->copy_d2d(be, P(out), P(f), n * 4);
    be->ops->round_bf16(be, P(out), n);
  }
  compare_bytes("round_bf16", &out, n * 4);
  mirror a2 = mirror_random_f32(n, 1.0f, 0), b2 = mirror_random_f32(n, 1.0f, 0);
  for (int p = 0; p < 2; p++) {
    gpu_set_precision(p ? AQS_PREC_BF16 : AQS_PREC_F32);
    FOR_BOTH { be->ops->add(be, P(out), P(a2), P(b2), n); }
    compare_bytes(p ? "add bf16" : "add f32", &out, n * 4);
    FOR_BOTH {
      be->ops->copy_d2d(be, P(out), P(a2), n * 4);
      be->ops->add(be, P(out), P(out), P(b2), n); /* aliasing allowed */
    }
    compare_bytes("add in place", &out, n * 4);
  }
  mirror_free(&b);
  mirror_free(&f);
  mirror_free(&out);
  mirror_free(&ob);
  mirror_free(&a2);
  mirror_free(&b2);
  free(hb);
  free(hf);
}

static void test_embedding(void **state) {
  (void)state;
  rng_seed(42);
  const int V = 1000, C = 96, N = 333;
  int32_t ids[333];
  for (int i = 0; i < N; i++) ids[i] = (i * 7919) % V;
  ids[0] = V - 1;
  mirror table = mirror_random_bf16((size_t)V * C, 0.02f), idm = mirror_new(ids, sizeof ids);
  mirror out = mirror_new(NULL, (size_t)N * C * 4);
  FOR_BOTH { be->ops->embedding(be, P(out), P(table), P(idm), N, C); }
  compare_bytes("embedding", &out, (size_t)N * C * 4);
  mirror_free(&table);
  mirror_free(&idm);
  mirror_free(&out);
}

static void test_swiglu(void **state) {
  (void)state;
  rng_seed(43);
  const size_t n = 77 * 1100;
  for (int p = 0; p < 2; p++) {
    aqs_precision prec = p ? AQS_PREC_BF16 : AQS_PREC_F32;
    gpu_set_precision(prec);
    mirror gate = mirror_random_f32(n, 3.0f, p), up = mirror_random_f32(n, 1.0f, p);
    mirror out = mirror_new(NULL, n * 4), dout = mirror_random_f32(n, 1e-2f, p);
    mirror dg = mirror_new(NULL, n * 4), du = mirror_new(NULL, n * 4);
    FOR_BOTH { be->ops->swiglu_fwd(be, P(out), P(gate), P(up), n); }
    compare_f32(p ? "swiglu_fwd bf16" : "swiglu_fwd f32", &out, n, p ? 8e-3 : 1e-6);
    FOR_BOTH { be->ops->swiglu_bwd(be, P(dg), P(du), P(dout), P(gate), P(up), n); }
    compare_f32(p ? "swiglu_bwd dgate bf16" : "swiglu_bwd dgate f32", &dg, n, p ? 8e-3 : 1e-6);
    compare_f32(p ? "swiglu_bwd dup bf16" : "swiglu_bwd dup f32", &du, n, p ? 8e-3 : 1e-6);
    /* in place: dgate aliases gate, dup aliases up */
    FOR_BOTH { be->ops->swiglu_bwd(be, P(gate), P(up), P(dout), P(gate), P(up), n); }
    compare_f32("swiglu_bwd in place", &gate, n, p ? 8e-3 : 1e-6);
    mirror_free(&gate);
    mirror_free(&up);
    mirror_free(&out);
    mirror_free(&dout);
    mirror_free(&dg);
    mirror_free(&du);
  }
}

int main(void) {
  gpu_open_or_skip();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_casts_round_add),
      cmocka_unit_test(test_embedding),
      cmocka_unit_test(test_swiglu),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  aqs_backend_close(g_cpu);
  aqs_backend_close(g_gpu);
  return rc;
}
