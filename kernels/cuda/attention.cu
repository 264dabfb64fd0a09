/* kernels/cuda/attention.cu: causal grouped-query attention over packed variable-length sequences
 * (no padding), forward with an online softmax (flash-style: scores never stored) saving the
 * log-sum-exp, and backward recomputing the probabilities. One warp per (token, head); lane l owns
 * head columns l, l+32, ... (D <= 256). dK/dV are gathered per key (no atomics): deterministic.
 * CPU twin: kernels/cpu/attention.c. */
#include "kernels/cuda/cuda_common.cuh"

#define ATT_MAX_PER_LANE 8 /* D <= 256 */
#define ATT_WARPS 8

/* Sequence index of token t: the s with cu[s] <= t < cu[s+1] (binary search over B+1 entries). */
__device__ __forceinline__ int seq_of(const int32_t *cu, int B, int t) {
  int lo = 0, hi = B - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) >> 1;
    if (cu[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

__device__ __forceinline__ void load_row(float (&r)[ATT_MAX_PER_LANE], const float *p, int D, int lane) {
#pragma unroll
  for (int k = 0; k < ATT_MAX_PER_LANE; k++) {
    int c = lane + 32 * k;
    r[k] = c < D ? p[c] : 0.0f;
  }
}

__device__ __forceinline__ float dot_row(const float (&a)[ATT_MAX_PER_LANE], const float *p, int D, int lane) {
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < ATT_MAX_PER_LANE; k++) {
    int c = lane + 32 * k;
    if (c < D) s += a[k] * p[c];
  }
  return warp_sum(s);
}

/* out (N, Hq*D), lse (N, Hq); q (N, Hq*D); k, v (N, Hkv*D). */
__global__ void attention_fwd_kernel(float *out, float *lse, const float *q, const float *k, const float *v,
                                     const int32_t *cu, int B, int N, int Hq, int Hkv, int D, float scale, int rnd) {
  const int lane = threadIdx.x & 31;
  const size_t task = (size_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
  if (task >= (size_t)N * (size_t)Hq) return;
  const int t = (int)(task / (size_t)Hq), h = (int)(task % (size_t)Hq);
  const int kh = h / (Hq / Hkv);
  const int start = cu[seq_of(cu, B, t)];
  const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D;
  float qr[ATT_MAX_PER_LANE], acc[ATT_MAX_PER_LANE];
  load_row(qr, q + (size_t)t * qs + (size_t)h * D, D, lane);
#pragma unroll
  for (int i = 0; i < ATT_MAX_PER_LANE; i++) acc[i] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int j = start; j <= t; j++) {
    const float *kj = k + (size_t)j * ks + (size_t)kh * D, *vj = v + (size_t)j * ks + (size_t)kh * D;
    float s = dot_row(qr, kj, D, lane) * scale;
    float m_new = fmaxf(m, s);
    float corr = __expf(m - m_new), p = __expf(s - m_new);
    l = l * corr + p;
#pragma unroll
    for (int i = 0; i < ATT_MAX_PER_LANE; i++) {
      int c = lane + 32 * i;
      if (c < D) acc[i] = acc[i] * corr + p * vj[c];
    }
    m = m_new;
  }
  float inv_l = div_exact(1.0f, l);
  float *o = out + (size_t)t * qs + (size_t)h * D;
#pragma unroll
  for (int i = 0; i < ATT_MAX_PER_LANE; i++) {
    int c = lane + 32 * i;
    if (c < D) {
      float val = acc[i] * inv_l;
      o[c] = rnd ? round_bf16(val) : val;
    }
  }
  if (lse && lane == 0) lse[(size_t)t * Hq + h] = m + __logf(l);
}

/* dq for one (token, head), and delta = dout . out saved for the dk/dv pass. */
__global__ void attention_bwd_dq_kernel(float *dq, float *delta, const float *dout, const float *out, const float *lse,
                                        const float *q, const float *k, const float *v, const int32_t *cu, int B, int N,
                                        int Hq, int Hkv, int D, float scale, int rnd) {
  const int lane = threadIdx.x & 31;
  const size_t task = (size_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
  if (task >= (size_t)N * (size_t)Hq) return;
  const int t = (int)(task / (size_t)Hq), h = (int)(task % (size_t)Hq);
  const int kh = h / (Hq / Hkv);
  const int start = cu[seq_of(cu, B, t)];
  const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D, qoff = (size_t)t * qs + (size_t)h * D;
  float qr[ATT_MAX_PER_LANE], dor[ATT_MAX_PER_LANE], acc[ATT_MAX_PER_LANE];
  load_row(qr, q + qoff, D, lane);
  load_row(dor, dout + qoff, D, lane);
  const float di = dot_row(dor, out + qoff, D, lane);
  const float li = lse[(size_t)t * Hq + h];
#pragma unroll
  for (int i = 0; i < ATT_MAX_PER_LANE; i++) acc[i] = 0.0f;
  for (int j = start; j <= t; j++) {
    const float *kj = k + (size_t)j * ks + (size_t)kh * D, *vj = v + (size_t)j * ks + (size_t)kh * D;
    float s = dot_row(qr, kj, D, lane), dpv = dot_row(dor, vj, D, lane);
    float p = __expf(s * scale - li);
    float ds = p * (dpv - di) * scale;
#pragma unroll
    for (int i = 0; i < ATT_MAX_PER_LANE; i++) {
      int c = lane + 32 * i;
      if (c < D) acc[i] += ds * kj[c];
    }
  }
  float *o = dq + qoff;
#pragma unroll
  for (int i = 0; i < ATT_MAX_PER_LANE; i++) {
    int c = lane + 32 * i;
    if (c < D) o[c] = rnd ? round_bf16(acc[i]) : acc[i];
  }
  if (lane == 0) delta[(size_t)t * Hq + h] = di;
}

/* dk, dv for one (key token, kv head): sums over the group's query heads and later tokens. */
__global__ void attention_bwd_dkv_kernel(float *dk, float *dv, const float *delta, const float *dout, const float *lse,
                                         const float *q, const float *k, const float *v, const int32_t *cu, int B,
                                         int N, int Hq, int Hkv, int D, float scale, int rnd) {
  const int lane = threadIdx.x & 31;
  const size_t task = (size_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
  if (task >= (size_t)N * (size_t)Hkv) return;
  const int j = (int)(task / (size_t)Hkv), kh = (int)(task % (size_t)Hkv);
  const int group = Hq / Hkv;
  const int end = cu[seq_of(cu, B, j) + 1];
  const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D, koff = (size_t)j * ks + (size_t)kh * D;
  float kr[ATT_MAX_PER_LANE], vr[ATT_MAX_PER_LANE], dka[ATT_MAX_PER_LANE], dva[ATT_MAX_PER_LANE];
  load_row(kr, k + koff, D, lane);
  load_row(vr, v + koff, D, lane);
#pragma unroll
  for (int i = 0; i < ATT_MAX_PER_LANE; i++) dka[i] = dva[i] = 0.0f;
  for (int h = kh * group; h < (kh + 1) * group; h++) {
    for (int t = j; t < end; t++) {
      const size_t qoff = (size_t)t * qs + (size_t)h * D;
      const float *qi = q + qoff, *doi = dout + qoff;
      float s = dot_row(kr, qi, D, lane), dpv = dot_row(vr, doi, D, lane);
      float p = __expf(s * scale - lse[(size_t)t * Hq + h]);
      float ds = p * (dpv - delta[(size_t)t * Hq + h]) * scale;
#pragma unroll
      for (int i = 0; i < ATT_MAX_PER_LANE; i++) {
        int c = lane + 32 * i;
        if (c < D) {
          dka[i] += ds * qi[c];
          dva[i] += p * doi[c];
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < ATT_MAX_PER_LANE; i++) {
    int c = lane + 32 * i;
    if (c < D) {
      dk[koff + c] = rnd ? round_bf16(dka[i]) : dka[i];
      dv[koff + c] = rnd ? round_bf16(dva[i]) : dva[i];
    }
  }
}

static aqs_status check_shape(int Hq, int Hkv, int D, aqs_err *e) {
  if (D <= 0 || D > 32 * ATT_MAX_PER_LANE || Hkv <= 0 || Hq % Hkv != 0)
    return aqs_errf(e, AQS_ERR_UNSUPPORTED,
                    "cuda attention: head_dim %d (max %d) with %d query / %d kv heads is not supported", D,
                    32 * ATT_MAX_PER_LANE, Hq, Hkv);
  return AQS_OK;
}

/* ---- launchers ---- */
extern "C" aqs_status aqs_cuda_attention_fwd(float *d_out, float *d_lse, const float *d_q, const float *d_k,
                                             const float *d_v, const int32_t *d_cu_seqlens, int B, int N, int Hq,
                                             int Hkv, int D, int rnd, aqs_err *e) {
  aqs_status st = check_shape(Hq, Hkv, D, e);
  if (st || N <= 0 || B <= 0) return st;
  size_t tasks = (size_t)N * Hq;
  unsigned blocks = (unsigned)((tasks + ATT_WARPS - 1) / ATT_WARPS);
  float scale = 1.0f / sqrtf((float)D);
  attention_fwd_kernel<<<blocks, 32 * ATT_WARPS, 0, (cudaStream_t)aqs_cuda_stream()>>>(
      d_out, d_lse, d_q, d_k, d_v, d_cu_seqlens, B, N, Hq, Hkv, D, scale, rnd);
  AQS_CUDA_LAUNCH_CHECK(e, "attention_fwd_kernel");
  return AQS_OK;
}

/* d_delta: scratch of N*Hq floats. */
extern "C" aqs_status aqs_cuda_attention_bwd(float *d_dq, float *d_dk, float *d_dv, float *d_delta,
                                             const float *d_dout, const float *d_out, const float *d_lse,
                                             const float *d_q, const float *d_k, const float *d_v,
                                             const int32_t *d_cu_seqlens, int B, int N, int Hq, int Hkv, int D,
                                             int rnd, aqs_err *e) {
  aqs_status st = check_shape(Hq, Hkv, D, e);
  if (st || N <= 0 || B <= 0) return st;
  float scale = 1.0f / sqrtf((float)D);
  cudaStream_t s = (cudaStream_t)aqs_cuda_stream();
  size_t tasks = (size_t)N * Hq;
  attention_bwd_dq_kernel<<<(unsigned)((tasks + ATT_WARPS - 1) / ATT_WARPS), 32 * ATT_WARPS, 0, s>>>(
      d_dq, d_delta, d_dout, d_out, d_lse, d_q, d_k, d_v, d_cu_seqlens, B, N, Hq, Hkv, D, scale, rnd);
  AQS_CUDA_LAUNCH_CHECK(e, "attention_bwd_dq_kernel");
  tasks = (size_t)N * Hkv;
  attention_bwd_dkv_kernel<<<(unsigned)((tasks + ATT_WARPS - 1) / ATT_WARPS), 32 * ATT_WARPS, 0, s>>>(
      d_dk, d_dv, d_delta, d_dout, d_lse, d_q, d_k, d_v, d_cu_seqlens, B, N, Hq, Hkv, D, scale, rnd);
  AQS_CUDA_LAUNCH_CHECK(e, "attention_bwd_dkv_kernel");
  return AQS_OK;
}
