/* kernels/cuda/gemm_lt.cu: cuBLASLt GEMM wrappers for the row-major nn.Linear convention
 * (Y[M,N] = X[M,K] · W[N,K]^T): BF16 and FP8 E4M3 (per-tensor scales) operands, F32 accumulation,
 * one workspace, and the descriptors + chosen algorithm cached per exact shape in a bounded
 * least-recently-used cache (kernels/plan_cache.h): every batch of varied captions has its own
 * token count M, so plans come and go; a re-built plan gets the same heuristic choice, so the
 * bits of a GEMM depend only on its shape, never on the cache's history. */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <pthread.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/plan_cache.h"

namespace {

enum gemm_kind { GEMM_BF16_NT = 1, GEMM_BF16_NN = 2, GEMM_FP8_NT = 3 };

struct gemm_key {
  int kind, M, N, K, y_f32, bias_epilogue, accumulate;
  int align_a, align_b, align_c;
};

struct gemm_plan {
  gemm_key key;
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t a, b, c;
  cublasLtMatmulAlgo_t algo;
};

const size_t kWorkspaceBytes = 64u << 20;
/* A model has a few dozen (kind, N, K) GEMMs per token count M; 256 plans hold every shape of
 * several batches (the M of a batch is reused by all its layers) while staying bounded. */
const int kMaxPlans = 256;

cublasLtHandle_t g_lt;
void *g_workspace;
gemm_plan g_plans[kMaxPlans];
aqs_plan_cache g_cache;
/* Held from the lookup to the matmul's enqueue: the plan's descriptor (bias pointer) is set per call. */
pthread_mutex_t g_plan_lock = PTHREAD_MUTEX_INITIALIZER;

int ptr_alignment(const void *p) {
  uintptr_t u = (uintptr_t)p;
  int a = 256;
  while (a > 1 && (u % (uintptr_t)a) != 0) a >>= 1;
  return a;
}

aqs_status lt_fail(aqs_err *e, cublasStatus_t s, const char *what, const gemm_key &k) {
  return aqs_errf(e, AQS_ERR_INTERNAL, "cublasLt: %s for GEMM M=%d N=%d K=%d (kind %d): status %d",
                  what, k.M, k.N, k.K, k.kind, (int)s);
}

aqs_status ensure_handle(aqs_err *e) {
  if (g_lt) return AQS_OK;
  aqs_status st = aqs_cuda_init(0, e);
  if (!st && !g_cache.keys) st = aqs_plan_cache_init(&g_cache, sizeof(gemm_key), kMaxPlans, e);
  if (st) return st;
  cublasStatus_t s = cublasLtCreate(&g_lt);
  if (s != CUBLAS_STATUS_SUCCESS) return aqs_errf(e, AQS_ERR_INTERNAL, "cublasLt: creating the handle: status %d", (int)s);
  return aqs_cuda_malloc(&g_workspace, kWorkspaceBytes, "the cuBLASLt workspace", e);
}

void release_plan(gemm_plan *p) {
  if (p->op) cublasLtMatmulDescDestroy(p->op);
  if (p->a) cublasLtMatrixLayoutDestroy(p->a);
  if (p->b) cublasLtMatrixLayoutDestroy(p->b);
  if (p->c) cublasLtMatrixLayoutDestroy(p->c);
  memset(p, 0, sizeof *p);
}

/* Builds descriptors and picks the heuristic's first algorithm for key. Column-major view:
 * row-major Y[M,N] is col-major Y^T[N,M]; NT: Y^T = W^T(op T on stored [K,N]) · X^T; NN: Y^T = W^T · X^T
 * with W stored row-major [K,N] = col-major [N,K]. */
aqs_status build_plan(const gemm_key &k, gemm_plan *p, aqs_err *e) {
  memset(p, 0, sizeof *p);
  p->key = k;
  const bool fp8 = k.kind == GEMM_FP8_NT;
  cudaDataType_t ab_type = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
  cudaDataType_t cd_type = k.y_f32 ? CUDA_R_32F : CUDA_R_16BF;
  cublasStatus_t s = cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  if (s) return lt_fail(e, s, "creating the matmul descriptor", k);
  cublasOperation_t ta = k.kind == GEMM_BF16_NN ? CUBLAS_OP_N : CUBLAS_OP_T, tb = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
  cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
  if (k.bias_epilogue) {
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    cudaDataType_t bias_type = CUDA_R_16BF;
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type);
  }
  if (k.kind == GEMM_BF16_NN)
    s = cublasLtMatrixLayoutCreate(&p->a, ab_type, k.N, k.K, k.N);
  else
    s = cublasLtMatrixLayoutCreate(&p->a, ab_type, k.K, k.N, k.K);
  if (!s) s = cublasLtMatrixLayoutCreate(&p->b, ab_type, k.K, k.M, k.K);
  if (!s) s = cublasLtMatrixLayoutCreate(&p->c, cd_type, k.N, k.M, k.N);
  if (s) return lt_fail(e, s, "creating a matrix layout", k);

  cublasLtMatmulPreference_t pref;
  cublasLtMatmulPreferenceCreate(&pref);
  uint64_t ws = kWorkspaceBytes;
  uint32_t aa = (uint32_t)k.align_a, ab = (uint32_t)k.align_b, ac = (uint32_t)k.align_c;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof ac);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof ac);
  cublasLtMatmulHeuristicResult_t result;
  int found = 0;
  s = cublasLtMatmulAlgoGetHeuristic(g_lt, p->op, p->a, p->b, p->c, p->c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (s || found == 0)
    return aqs_errf(e, AQS_ERR_UNSUPPORTED,
                    "cublasLt: no algorithm for %s GEMM M=%d N=%d K=%d (alignments %d/%d/%d bytes)%s",
                    fp8 ? "FP8 E4M3" : "BF16", k.M, k.N, k.K, k.align_a, k.align_b, k.align_c,
                    fp8 ? "; FP8 needs K and N multiples of 16" : "");
  p->algo = result.algo;
  return AQS_OK;
}

/* The plan for k (built on a miss, replacing the least recently used one when full). Called with
 * g_plan_lock held. */
aqs_status get_plan(const gemm_key &k, gemm_plan **out, aqs_err *e) {
  int slot;
  aqs_plan_lookup found = aqs_plan_cache_get(&g_cache, &k, &slot);
  gemm_plan *p = &g_plans[slot];
  if (found == AQS_PLAN_HIT) {
    *out = p;
    return AQS_OK;
  }
  release_plan(p);
  aqs_status st = build_plan(k, p, e);
  if (st) {
    release_plan(p);
    aqs_plan_cache_drop(&g_cache, slot);
    return st;
  }
  *out = p;
  return AQS_OK;
}

/* Y[N_rows, M_cols col-major] += bias per row (F32 output path, or when no epilogue applies). */
__global__ void add_bias_kernel(void *y, int y_f32, const uint16_t *bias, size_t total, int N) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    float b = bf16_bits_to_f32(bias[i % (size_t)N]);
    if (y_f32) {
      ((float *)y)[i] += b;
    } else {
      uint16_t *yb = (uint16_t *)y;
      yb[i] = f32_to_bf16_bits(bf16_bits_to_f32(yb[i]) + b);
    }
  }
}

aqs_status run_gemm(int kind, const void *a, const void *b, float alpha, const uint16_t *bias, void *y, int y_f32,
                    int accumulate, int M, int N, int K, aqs_err *e) {
  if (M <= 0 || N <= 0 || K <= 0) {
    if (M >= 0 && N >= 0 && K >= 0) return AQS_OK;
    return aqs_errf(e, AQS_ERR_INVALID, "gemm: negative shape M=%d N=%d K=%d", M, N, K);
  }
  aqs_status st = ensure_handle(e);
  if (st) return st;
  gemm_key k;
  memset(&k, 0, sizeof k);
  k.kind = kind;
  k.M = M;
  k.N = N;
  k.K = K;
  k.y_f32 = y_f32;
  k.accumulate = accumulate;
  /* The BF16 bias epilogue needs BF16 output and no accumulation; other cases add bias afterwards. */
  k.bias_epilogue = bias != NULL && !y_f32 && !accumulate;
  k.align_a = ptr_alignment(a);
  k.align_b = ptr_alignment(b);
  k.align_c = ptr_alignment(y);
  gemm_plan *p;
  cudaStream_t stream = (cudaStream_t)aqs_cuda_stream();
  pthread_mutex_lock(&g_plan_lock);
  st = get_plan(k, &p, e);
  if (st) {
    pthread_mutex_unlock(&g_plan_lock);
    return st;
  }
  if (k.bias_epilogue)
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
  const float beta = accumulate ? 1.0f : 0.0f;
  cublasStatus_t s = cublasLtMatmul(g_lt, p->op, &alpha, a, p->a, b, p->b, &beta, y, p->c, y, p->c, &p->algo,
                                    g_workspace, kWorkspaceBytes, stream);
  pthread_mutex_unlock(&g_plan_lock);
  if (s) return lt_fail(e, s, "running the matmul", k);
  if (bias && !k.bias_epilogue) {
    size_t total = (size_t)M * (size_t)N;
    add_bias_kernel<<<grid_for(total, 256), 256, 0, stream>>>(y, y_f32, bias, total, N);
    AQS_CUDA_LAUNCH_CHECK(e, "add_bias_kernel");
  }
  return AQS_OK;
}

}  // namespace

extern "C" aqs_status aqs_cuda_gemm_bf16(const uint16_t *d_x, const uint16_t *d_w, const uint16_t *d_bias,
                                         void *d_y, int y_f32, int accumulate, int M, int N, int K, aqs_err *e) {
  return run_gemm(GEMM_BF16_NT, d_w, d_x, 1.0f, d_bias, d_y, y_f32, accumulate, M, N, K, e);
}

extern "C" aqs_status aqs_cuda_gemm_bf16_alpha(const uint16_t *d_x, const uint16_t *d_w, float alpha, float *d_y,
                                               int M, int N, int K, aqs_err *e) {
  return run_gemm(GEMM_BF16_NT, d_w, d_x, alpha, NULL, d_y, 1, 0, M, N, K, e);
}

extern "C" aqs_status aqs_cuda_gemm_bf16_nn(const uint16_t *d_x, const uint16_t *d_w, void *d_y, int y_f32,
                                            int accumulate, int M, int N, int K, aqs_err *e) {
  return run_gemm(GEMM_BF16_NN, d_w, d_x, 1.0f, NULL, d_y, y_f32, accumulate, M, N, K, e);
}

extern "C" aqs_status aqs_cuda_gemm_fp8(const uint8_t *d_xq, const uint8_t *d_wq, float x_scale, float w_scale,
                                        const uint16_t *d_bias, void *d_y, int y_f32, int M, int N, int K,
                                        aqs_err *e) {
  if (!aqs_cuda_gemm_fp8_shape_ok(N, K))
    return aqs_errf(e, AQS_ERR_UNSUPPORTED, "FP8 GEMM needs K and N multiples of 16 (got N=%d K=%d)", N, K);
  /* The per-tensor scales multiply the F32 accumulator: alpha = x_scale * w_scale. */
  return run_gemm(GEMM_FP8_NT, d_wq, d_xq, x_scale * w_scale, d_bias, d_y, y_f32, 0, M, N, K, e);
}

extern "C" int aqs_cuda_gemm_fp8_shape_ok(int N, int K) { return K % 16 == 0 && N % 16 == 0; }

extern "C" void aqs_cuda_gemm_plan_stats(aqs_cuda_plan_stats *out) {
  pthread_mutex_lock(&g_plan_lock);
  out->capacity = kMaxPlans;
  out->live = 0;
  for (int i = 0; i < g_cache.used; i++) out->live += g_cache.last_use[i] != 0;
  out->hits = g_cache.hits;
  out->misses = g_cache.misses;
  out->evictions = g_cache.evictions;
  pthread_mutex_unlock(&g_plan_lock);
}
