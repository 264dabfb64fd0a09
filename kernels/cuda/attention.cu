/* kernels/cuda/attention.cu: causal grouped-query attention over packed variable-length sequences
 * (no padding), forward with an online softmax (flash-style: the score matrix never exists in
 * memory) saving the log-sum-exp, and backward recomputing the probabilities.
 * One warp per (token, head). Scores are computed lane-per-key (32 keys at once, each lane a full
 * dot product against the warp's row held in shared memory), then the weighted sums lane-per-column
 * (lane l owns head columns l, l+32, ...; D <= 256), so a warp needs two reductions per 32 keys
 * instead of one per key. dK/dV are gathered per key row (no atomics): every result is the same
 * bits on every run. CPU twin: kernels/cpu/attention.c. */
#include "kernels/cuda/cuda_common.cuh"

#define ATT_MAX_PER_LANE 8 /* D <= 256 */
#define ATT_MAX_D (32 * ATT_MAX_PER_LANE)
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

/* Dot product of a global row with a shared-memory row of D floats, by one lane. VEC: D % 4 == 0
 * and 16-byte aligned rows. */
template <bool VEC>
__device__ __forceinline__ float row_dot(const float *g, const float *s, int D) {
  float acc = 0.0f;
  if (VEC) {
    const float4 *g4 = (const float4 *)g, *s4 = (const float4 *)s;
    for (int c = 0; c < D / 4; c++) {
      float4 a = g4[c], b = s4[c];
      acc += a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
    }
  } else {
    for (int c = 0; c < D; c++) acc += g[c] * s[c];
  }
  return acc;
}

/* Copies a row of D floats into shared memory (one warp) and syncs the warp. */
__device__ __forceinline__ void warp_load_row(float *dst, const float *src, int D, int lane) {
  for (int c = lane; c < D; c += 32) dst[c] = src[c];
  __syncwarp();
}

/* out (N, Hq*D), lse (N, Hq); q (N, Hq*D); k, v (N, Hkv*D). */
template <bool VEC>
__global__ void __launch_bounds__(32 * ATT_WARPS) attention_fwd_kernel(float *out, float *lse, const float *q,
                                                                        const float *k, const float *v,
                                                                        const int32_t *cu, int B, int N, int Hq,
                                                                        int Hkv, int D, float scale, int rnd) {
  __shared__ __align__(16) float s_q[ATT_WARPS][ATT_MAX_D];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const size_t task = (size_t)blockIdx.x * ATT_WARPS + w;
  if (task >= (size_t)N * (size_t)Hq) return;
  const int t = (int)(task / (size_t)Hq), h = (int)(task % (size_t)Hq);
  const int kh = h / (Hq / Hkv);
  const int start = cu[seq_of(cu, B, t)];
  const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D;
  warp_load_row(s_q[w], q + (size_t)t * qs + (size_t)h * D, D, lane);
  float acc[ATT_MAX_PER_LANE];
#pragma unroll
  for (int i = 0; i < ATT_MAX_PER_LANE; i++) acc[i] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  const float *kbase = k + (size_t)kh * D, *vbase = v + (size_t)kh * D;
  for (int j0 = start; j0 <= t; j0 += 32) {
    const int j = j0 + lane, cnt = min(32, t - j0 + 1);
    float s = -INFINITY;
    if (lane < cnt) s = row_dot<VEC>(kbase + (size_t)j * ks, s_q[w], D) * scale;
    const float m_new = fmaxf(m, warp_max(s));
    const float corr = __expf(m - m_new);
    const float p = lane < cnt ? __expf(s - m_new) : 0.0f;
    l = l * corr + warp_sum(p);
#pragma unroll
    for (int i = 0; i < ATT_MAX_PER_LANE; i++) acc[i] *= corr;
    for (int jj = 0; jj < cnt; jj++) {
      const float pj = __shfl_sync(0xffffffffu, p, jj);
      const float *vj = vbase + (size_t)(j0 + jj) * ks;
#pragma unroll
      for (int i = 0; i < ATT_MAX_PER_LANE; i++) {
        int c = lane + 32 * i;
        if (c < D) acc[i] += pj * vj[c];
      }
    }
    m = m_new;
  }
  const float inv_l = div_exact(1.0f, l);
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

/* dq for one (token, head): dq = scale * sum_j P_ij (dO_i.V_j - delta_i) K_j; writes delta_i =
 * dO_i . O_i for the dk/dv pass. */
template <bool VEC>
__global__ void __launch_bounds__(32 * ATT_WARPS) attention_bwd_dq_kernel(
    float *dq, float *delta, const float *dout, const float *out, const float *lse, const float *q, const float *k,
    const float *v, const int32_t *cu, int B, int N, int Hq, int Hkv, int D, float scale, int rnd) {
  __shared__ __align__(16) float s_q[ATT_WARPS][ATT_MAX_D];
  __shared__ __align__(16) float s_do[ATT_WARPS][ATT_MAX_D];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const size_t task = (size_t)blockIdx.x * ATT_WARPS + w;
  if (task >= (size_t)N * (size_t)Hq) return;
  const int t = (int)(task / (size_t)Hq), h = (int)(task % (size_t)Hq);
  const int kh = h / (Hq / Hkv);
  const int start = cu[seq_of(cu, B, t)];
  const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D, qoff = (size_t)t * qs + (size_t)h * D;
  warp_load_row(s_q[w], q + qoff, D, lane);
  warp_load_row(s_do[w], dout + qoff, D, lane);
  float di = 0.0f;
  for (int c = lane; c < D; c += 32) di += s_do[w][c] * out[qoff + c];
  di = warp_sum(di);
  const float li = lse[(size_t)t * Hq + h];
  float acc[ATT_MAX_PER_LANE];
#pragma unroll
  for (int i = 0; i < ATT_MAX_PER_LANE; i++) acc[i] = 0.0f;
  const float *kbase = k + (size_t)kh * D, *vbase = v + (size_t)kh * D;
  for (int j0 = start; j0 <= t; j0 += 32) {
    const int j = j0 + lane, cnt = min(32, t - j0 + 1);
    float ds = 0.0f;
    if (lane < cnt) {
      float s = row_dot<VEC>(kbase + (size_t)j * ks, s_q[w], D);
      float dp = row_dot<VEC>(vbase + (size_t)j * ks, s_do[w], D);
      float p = __expf(s * scale - li);
      ds = p * (dp - di) * scale;
    }
    for (int jj = 0; jj < cnt; jj++) {
      const float dsj = __shfl_sync(0xffffffffu, ds, jj);
      const float *kj = kbase + (size_t)(j0 + jj) * ks;
#pragma unroll
      for (int i = 0; i < ATT_MAX_PER_LANE; i++) {
        int c = lane + 32 * i;
        if (c < D) acc[i] += dsj * kj[c];
      }
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

/* Partial dk, dv of one (key token j, query head h) over the later tokens of the sequence:
 * pdk_jh = scale sum_i dS_ij Q_i, pdv_jh = sum_i P_ij dO_i, written to (N, Hq, D) scratch; the
 * reduce below sums the group's heads in head order (deterministic, and Hq/Hkv times more warps
 * than one per kv head). */
template <bool VEC>
__global__ void __launch_bounds__(32 * ATT_WARPS) attention_bwd_dkv_kernel(
    float *pdk, float *pdv, const float *delta, const float *dout, const float *lse, const float *q, const float *k,
    const float *v, const int32_t *cu, int B, int N, int Hq, int Hkv, int D, float scale) {
  __shared__ __align__(16) float s_k[ATT_WARPS][ATT_MAX_D];
  __shared__ __align__(16) float s_v[ATT_WARPS][ATT_MAX_D];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const size_t task = (size_t)blockIdx.x * ATT_WARPS + w;
  if (task >= (size_t)N * (size_t)Hq) return;
  const int j = (int)(task / (size_t)Hq), h = (int)(task % (size_t)Hq);
  const int kh = h / (Hq / Hkv);
  const int end = cu[seq_of(cu, B, j) + 1];
  const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D, koff = (size_t)j * ks + (size_t)kh * D;
  warp_load_row(s_k[w], k + koff, D, lane);
  warp_load_row(s_v[w], v + koff, D, lane);
  float dka[ATT_MAX_PER_LANE], dva[ATT_MAX_PER_LANE];
#pragma unroll
  for (int i = 0; i < ATT_MAX_PER_LANE; i++) dka[i] = dva[i] = 0.0f;
  const float *qbase = q + (size_t)h * D, *dobase = dout + (size_t)h * D;
  for (int i0 = j; i0 < end; i0 += 32) {
    const int i = i0 + lane, cnt = min(32, end - i0);
    float p = 0.0f, ds = 0.0f;
    if (lane < cnt) {
      float s = row_dot<VEC>(qbase + (size_t)i * qs, s_k[w], D);
      float dp = row_dot<VEC>(dobase + (size_t)i * qs, s_v[w], D);
      p = __expf(s * scale - lse[(size_t)i * Hq + h]);
      ds = p * (dp - delta[(size_t)i * Hq + h]) * scale;
    }
    for (int ii = 0; ii < cnt; ii++) {
      const float pi = __shfl_sync(0xffffffffu, p, ii), dsi = __shfl_sync(0xffffffffu, ds, ii);
      const float *qi = qbase + (size_t)(i0 + ii) * qs, *doi = dobase + (size_t)(i0 + ii) * qs;
#pragma unroll
      for (int x = 0; x < ATT_MAX_PER_LANE; x++) {
        int c = lane + 32 * x;
        if (c < D) {
          dka[x] += dsi * qi[c];
          dva[x] += pi * doi[c];
        }
      }
    }
  }
  const size_t poff = task * (size_t)D; /* (j, h) row of the (N, Hq, D) partials */
#pragma unroll
  for (int x = 0; x < ATT_MAX_PER_LANE; x++) {
    int c = lane + 32 * x;
    if (c < D) {
      pdk[poff + c] = dka[x];
      pdv[poff + c] = dva[x];
    }
  }
}

/* dk/dv (N, Hkv, D) = sum over the group's heads, in head order, of the partials (N, Hq, D). */
__global__ void attention_bwd_dkv_reduce_kernel(float *dk, float *dv, const float *pdk, const float *pdv, int N,
                                                int Hq, int Hkv, int D, int rnd) {
  const int group = Hq / Hkv;
  const size_t total = (size_t)N * Hkv * D;
  for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
    size_t c = idx % (size_t)D, jk = idx / (size_t)D;
    size_t j = jk / (size_t)Hkv, kh = jk % (size_t)Hkv;
    size_t base = (j * Hq + kh * group) * (size_t)D + c;
    float a = 0.0f, b = 0.0f;
    for (int g = 0; g < group; g++) {
      a += pdk[base + (size_t)g * D];
      b += pdv[base + (size_t)g * D];
    }
    dk[idx] = rnd ? round_bf16(a) : a;
    dv[idx] = rnd ? round_bf16(b) : b;
  }
}

static aqs_status check_shape(int Hq, int Hkv, int D, aqs_err *e) {
  if (D <= 0 || D > ATT_MAX_D || Hkv <= 0 || Hq % Hkv != 0)
    return aqs_errf(e, AQS_ERR_UNSUPPORTED,
                    "cuda attention: head_dim %d (max %d) with %d query / %d kv heads is not supported", D,
                    ATT_MAX_D, Hq, Hkv);
  return AQS_OK;
}

static bool vec_ok(int D, const void *a, const void *b, const void *c) {
  return D % 4 == 0 && (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) & 15u) == 0;
}

static unsigned blocks_for(size_t tasks) { return (unsigned)((tasks + ATT_WARPS - 1) / ATT_WARPS); }

/* ---- launchers ---- */
extern "C" aqs_status aqs_cuda_attention_fwd(float *d_out, float *d_lse, const float *d_q, const float *d_k,
                                             const float *d_v, const int32_t *d_cu_seqlens, int B, int N, int Hq,
                                             int Hkv, int D, int rnd, aqs_err *e) {
  aqs_status st = check_shape(Hq, Hkv, D, e);
  if (st || N <= 0 || B <= 0) return st;
  float scale = 1.0f / sqrtf((float)D);
  cudaStream_t s = (cudaStream_t)aqs_cuda_stream();
  unsigned blocks = blocks_for((size_t)N * Hq);
  if (vec_ok(D, d_q, d_k, d_v))
    attention_fwd_kernel<true><<<blocks, 32 * ATT_WARPS, 0, s>>>(d_out, d_lse, d_q, d_k, d_v, d_cu_seqlens, B, N, Hq,
                                                                 Hkv, D, scale, rnd);
  else
    attention_fwd_kernel<false><<<blocks, 32 * ATT_WARPS, 0, s>>>(d_out, d_lse, d_q, d_k, d_v, d_cu_seqlens, B, N,
                                                                  Hq, Hkv, D, scale, rnd);
  AQS_CUDA_LAUNCH_CHECK(e, "attention_fwd_kernel");
  return AQS_OK;
}

/* Bytes of scratch aqs_cuda_attention_bwd needs: delta (N, Hq) and the dk/dv partials (N, Hq, D). */
extern "C" size_t aqs_cuda_attention_bwd_scratch_bytes(int N, int Hq, int D) {
  size_t delta = ((size_t)N * Hq + 63) & ~(size_t)63;
  return (delta + 2 * (size_t)N * Hq * D) * sizeof(float);
}

extern "C" aqs_status aqs_cuda_attention_bwd(float *d_dq, float *d_dk, float *d_dv, void *d_scratch,
                                             const float *d_dout, const float *d_out, const float *d_lse,
                                             const float *d_q, const float *d_k, const float *d_v,
                                             const int32_t *d_cu_seqlens, int B, int N, int Hq, int Hkv, int D,
                                             int rnd, aqs_err *e) {
  aqs_status st = check_shape(Hq, Hkv, D, e);
  if (st || N <= 0 || B <= 0) return st;
  float scale = 1.0f / sqrtf((float)D);
  cudaStream_t s = (cudaStream_t)aqs_cuda_stream();
  float *delta = (float *)d_scratch;
  float *pdk = delta + (((size_t)N * Hq + 63) & ~(size_t)63), *pdv = pdk + (size_t)N * Hq * D;
  const bool vec = vec_ok(D, d_q, d_k, d_v) && vec_ok(D, d_dout, d_q, d_q);
  unsigned bq = blocks_for((size_t)N * Hq);
  if (vec) {
    attention_bwd_dq_kernel<true><<<bq, 32 * ATT_WARPS, 0, s>>>(d_dq, delta, d_dout, d_out, d_lse, d_q, d_k, d_v,
                                                                d_cu_seqlens, B, N, Hq, Hkv, D, scale, rnd);
    AQS_CUDA_LAUNCH_CHECK(e, "attention_bwd_dq_kernel");
    attention_bwd_dkv_kernel<true><<<bq, 32 * ATT_WARPS, 0, s>>>(pdk, pdv, delta, d_dout, d_lse, d_q, d_k, d_v,
                                                                 d_cu_seqlens, B, N, Hq, Hkv, D, scale);
  } else {
    attention_bwd_dq_kernel<false><<<bq, 32 * ATT_WARPS, 0, s>>>(d_dq, delta, d_dout, d_out, d_lse, d_q, d_k, d_v,
                                                                 d_cu_seqlens, B, N, Hq, Hkv, D, scale, rnd);
    AQS_CUDA_LAUNCH_CHECK(e, "attention_bwd_dq_kernel");
    attention_bwd_dkv_kernel<false><<<bq, 32 * ATT_WARPS, 0, s>>>(pdk, pdv, delta, d_dout, d_lse, d_q, d_k, d_v,
                                                                  d_cu_seqlens, B, N, Hq, Hkv, D, scale);
  }
  AQS_CUDA_LAUNCH_CHECK(e, "attention_bwd_dkv_kernel");
  size_t total = (size_t)N * Hkv * D;
  attention_bwd_dkv_reduce_kernel<<<grid_for(total, 256), 256, 0, s>>>(d_dk, d_dv, pdk, pdv, N, Hq, Hkv, D, rnd);
  AQS_CUDA_LAUNCH_CHECK(e, "attention_bwd_dkv_reduce_kernel");
  return AQS_OK;
}
