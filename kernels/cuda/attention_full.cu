/* kernels/cuda/attention_full.cu: bidirectional multi-head attention over packed segments (the
 * vision tower's windows and full-attention frames), forward with an online softmax saving the
 * log-sum-exp, backward recomputing the probabilities. One warp per (token, head); lane l owns
 * head columns l, l+32, ... (D <= 256). dQ per query and dK/dV per key are each written by one
 * warp (no atomics): the same bits on every run. CPU twin: kernels/cpu/attention.c (causal = 0). */
#include "kernels/cuda/cuda_common.cuh"

#define AF_PER_LANE 8 /* D <= 256 */
#define AF_WARPS 8

/* Segment of token t: the last s with cu[s] <= t (empty segments share cu values and lose). */
__device__ __forceinline__ int af_segment(const int32_t *cu, int B, int t) {
  int lo = 0, hi = B - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) >> 1;
    if (cu[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

__device__ __forceinline__ void af_load(float (&r)[AF_PER_LANE], const float *p, int D, int lane) {
#pragma unroll
  for (int i = 0; i < AF_PER_LANE; i++) {
    int c = lane + 32 * i;
    r[i] = c < D ? p[c] : 0.0f;
  }
}

__device__ __forceinline__ float af_dot(const float (&a)[AF_PER_LANE], const float *p, int D, int lane) {
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < AF_PER_LANE; i++) {
    int c = lane + 32 * i;
    if (c < D) s += a[i] * p[c];
  }
  return warp_sum(s);
}

__global__ void __launch_bounds__(32 * AF_WARPS) attention_full_fwd_kernel(float *out, float *lse, const float *q,
                                                                           const float *k, const float *v,
                                                                           const int32_t *cu, int B, int N, int H,
                                                                           int D, float scale, int rnd) {
  const int lane = threadIdx.x & 31;
  const size_t task = (size_t)blockIdx.x * AF_WARPS + (threadIdx.x >> 5);
  if (task >= (size_t)N * (size_t)H) return;
  const int t = (int)(task / (size_t)H), h = (int)(task % (size_t)H);
  const int s = af_segment(cu, B, t), start = cu[s], end = cu[s + 1];
  const size_t rs = (size_t)H * D;
  float qr[AF_PER_LANE], acc[AF_PER_LANE];
  af_load(qr, q + (size_t)t * rs + (size_t)h * D, D, lane);
#pragma unroll
  for (int i = 0; i < AF_PER_LANE; i++) acc[i] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int j = start; j < end; j++) {
    const float *kj = k + (size_t)j * rs + (size_t)h * D, *vj = v + (size_t)j * rs + (size_t)h * D;
    float sc = af_dot(qr, kj, D, lane) * scale;
    float m_new = fmaxf(m, sc);
    float corr = expf(m - m_new), p = expf(sc - m_new);
    l = l * corr + p;
#pragma unroll
    for (int i = 0; i < AF_PER_LANE; i++) {
      int c = lane + 32 * i;
      if (c < D) acc[i] = acc[i] * corr + p * vj[c];
    }
    m = m_new;
  }
  const float inv_l = div_exact(1.0f, l);
  float *o = out + (size_t)t * rs + (size_t)h * D;
#pragma unroll
  for (int i = 0; i < AF_PER_LANE; i++) {
    int c = lane + 32 * i;
    if (c < D) {
      float val = acc[i] * inv_l;
      o[c] = rnd ? round_bf16(val) : val;
    }
  }
  if (lse && lane == 0) lse[(size_t)t * H + h] = m + logf(l);
}

/* delta (N, H) = dO . O per (token, head) */
__global__ void __launch_bounds__(32 * AF_WARPS) attention_full_delta_kernel(float *delta, const float *dout,
                                                                             const float *out, int N, int H, int D) {
  const int lane = threadIdx.x & 31;
  const size_t task = (size_t)blockIdx.x * AF_WARPS + (threadIdx.x >> 5);
  if (task >= (size_t)N * (size_t)H) return;
  float r[AF_PER_LANE];
  af_load(r, dout + task * (size_t)D, D, lane);
  float d = af_dot(r, out + task * (size_t)D, D, lane);
  if (lane == 0) delta[task] = d;
}

/* dQ_i = scale * sum_j P_ij (dO_i.V_j - delta_i) K_j, one warp per (query, head). */
__global__ void __launch_bounds__(32 * AF_WARPS) attention_full_dq_kernel(float *dq, const float *delta,
                                                                          const float *dout, const float *lse,
                                                                          const float *q, const float *k,
                                                                          const float *v, const int32_t *cu, int B,
                                                                          int N, int H, int D, float scale, int rnd) {
  const int lane = threadIdx.x & 31;
  const size_t task = (size_t)blockIdx.x * AF_WARPS + (threadIdx.x >> 5);
  if (task >= (size_t)N * (size_t)H) return;
  const int t = (int)(task / (size_t)H), h = (int)(task % (size_t)H);
  const int s = af_segment(cu, B, t), start = cu[s], end = cu[s + 1];
  const size_t rs = (size_t)H * D, off = (size_t)t * rs + (size_t)h * D;
  float qr[AF_PER_LANE], dor[AF_PER_LANE], acc[AF_PER_LANE];
  af_load(qr, q + off, D, lane);
  af_load(dor, dout + off, D, lane);
  const float di = delta[task], li = lse[task];
#pragma unroll
  for (int i = 0; i < AF_PER_LANE; i++) acc[i] = 0.0f;
  for (int j = start; j < end; j++) {
    const size_t koff = (size_t)j * rs + (size_t)h * D;
    float p = expf(af_dot(qr, k + koff, D, lane) * scale - li);
    float ds = p * (af_dot(dor, v + koff, D, lane) - di) * scale;
#pragma unroll
    for (int i = 0; i < AF_PER_LANE; i++) {
      int c = lane + 32 * i;
      if (c < D) acc[i] += ds * k[koff + c];
    }
  }
#pragma unroll
  for (int i = 0; i < AF_PER_LANE; i++) {
    int c = lane + 32 * i;
    if (c < D) dq[off + c] = rnd ? round_bf16(acc[i]) : acc[i];
  }
}

/* dK_j = scale * sum_i P_ij (dO_i.V_j - delta_i) Q_i, dV_j = sum_i P_ij dO_i, one warp per (key, head). */
__global__ void __launch_bounds__(32 * AF_WARPS) attention_full_dkv_kernel(float *dk, float *dv, const float *delta,
                                                                           const float *dout, const float *lse,
                                                                           const float *q, const float *k,
                                                                           const float *v, const int32_t *cu, int B,
                                                                           int N, int H, int D, float scale,
                                                                           int rnd) {
  const int lane = threadIdx.x & 31;
  const size_t task = (size_t)blockIdx.x * AF_WARPS + (threadIdx.x >> 5);
  if (task >= (size_t)N * (size_t)H) return;
  const int t = (int)(task / (size_t)H), h = (int)(task % (size_t)H);
  const int s = af_segment(cu, B, t), start = cu[s], end = cu[s + 1];
  const size_t rs = (size_t)H * D, off = (size_t)t * rs + (size_t)h * D;
  float kr[AF_PER_LANE], vr[AF_PER_LANE], ak[AF_PER_LANE], av[AF_PER_LANE];
  af_load(kr, k + off, D, lane);
  af_load(vr, v + off, D, lane);
#pragma unroll
  for (int i = 0; i < AF_PER_LANE; i++) ak[i] = av[i] = 0.0f;
  for (int i0 = start; i0 < end; i0++) {
    const size_t qoff = (size_t)i0 * rs + (size_t)h * D, row = (size_t)i0 * H + h;
    float p = expf(af_dot(kr, q + qoff, D, lane) * scale - lse[row]);
    float ds = p * (af_dot(vr, dout + qoff, D, lane) - delta[row]) * scale;
#pragma unroll
    for (int i = 0; i < AF_PER_LANE; i++) {
      int c = lane + 32 * i;
      if (c < D) {
        ak[i] += ds * q[qoff + c];
        av[i] += p * dout[qoff + c];
      }
    }
  }
#pragma unroll
  for (int i = 0; i < AF_PER_LANE; i++) {
    int c = lane + 32 * i;
    if (c < D) {
      dk[off + c] = rnd ? round_bf16(ak[i]) : ak[i];
      dv[off + c] = rnd ? round_bf16(av[i]) : av[i];
    }
  }
}

/* ---- launchers ---- */
static unsigned af_blocks(int N, int H) { return (unsigned)(((size_t)N * H + AF_WARPS - 1) / AF_WARPS); }

extern "C" aqs_status aqs_cuda_attention_full_fwd(float *d_out, float *d_lse, const float *d_q, const float *d_k,
                                                  const float *d_v, const int32_t *d_cu, int B, int N, int H, int D,
                                                  int rnd, aqs_err *e) {
  if (N == 0 || H == 0) return AQS_OK;
  if (D > 32 * AF_PER_LANE)
    return aqs_errf(e, AQS_ERR_UNSUPPORTED, "cuda attention: head_dim %d > %d", D, 32 * AF_PER_LANE);
  attention_full_fwd_kernel<<<af_blocks(N, H), 32 * AF_WARPS, 0, (cudaStream_t)aqs_cuda_stream()>>>(
      d_out, d_lse, d_q, d_k, d_v, d_cu, B, N, H, D, 1.0f / sqrtf((float)D), rnd);
  AQS_CUDA_LAUNCH_CHECK(e, "attention_full_fwd_kernel");
  return AQS_OK;
}

extern "C" size_t aqs_cuda_attention_full_bwd_scratch_bytes(int N, int H) { return (size_t)N * (size_t)H * sizeof(float); }

extern "C" aqs_status aqs_cuda_attention_full_bwd(float *d_dq, float *d_dk, float *d_dv, void *d_scratch,
                                                  const float *d_dout, const float *d_out, const float *d_lse,
                                                  const float *d_q, const float *d_k, const float *d_v,
                                                  const int32_t *d_cu, int B, int N, int H, int D, int rnd,
                                                  aqs_err *e) {
  if (N == 0 || H == 0) return AQS_OK;
  if (D > 32 * AF_PER_LANE)
    return aqs_errf(e, AQS_ERR_UNSUPPORTED, "cuda attention: head_dim %d > %d", D, 32 * AF_PER_LANE);
  const float scale = 1.0f / sqrtf((float)D);
  float *delta = (float *)d_scratch;
  cudaStream_t st = (cudaStream_t)aqs_cuda_stream();
  attention_full_delta_kernel<<<af_blocks(N, H), 32 * AF_WARPS, 0, st>>>(delta, d_dout, d_out, N, H, D);
  AQS_CUDA_LAUNCH_CHECK(e, "attention_full_delta_kernel");
  attention_full_dq_kernel<<<af_blocks(N, H), 32 * AF_WARPS, 0, st>>>(d_dq, delta, d_dout, d_lse, d_q, d_k, d_v,
                                                                      d_cu, B, N, H, D, scale, rnd);
  AQS_CUDA_LAUNCH_CHECK(e, "attention_full_dq_kernel");
  attention_full_dkv_kernel<<<af_blocks(N, H), 32 * AF_WARPS, 0, st>>>(d_dk, d_dv, delta, d_dout, d_lse, d_q, d_k,
                                                                       d_v, d_cu, B, N, H, D, scale, rnd);
  AQS_CUDA_LAUNCH_CHECK(e, "attention_full_dkv_kernel");
  return AQS_OK;
}
