/* kernels/cuda/attention.cu: attention over packed variable-length sequences (no padding): the
 * language model's causal grouped-query attention and the vision tower's bidirectional windows and
 * frames (causal = 0), forward with an online softmax saving the log-sum-exp, backward recomputing
 * the probabilities. BF16 mode with head_dim 64/80/128 runs the tensor-core tiles of
 * attention_flash.cu; the rest (F32 mode, other shapes) runs the kernels here:
 * one warp per (token, head); lane l owns head columns l, l+32, ... (D <= 256), so every row load
 * is coalesced; ATT_UNROLL keys per step keep that many independent dot-product reductions in
 * flight. dK/dV are gathered per (key, head) into partials and summed over the group's heads in
 * order (no atomics): every result is the same bits on every run. CPU twin: kernels/cpu/attention.c. */
#include "kernels/cuda/attention_flash.cuh"

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

#define ATT_UNROLL 4 /* keys (or queries) per iteration: independent reductions overlap their latency */

/* Loads lane l's columns (l, l+32, ...) of a row; 0 beyond D. */
__device__ __forceinline__ void load_cols(float (&r)[ATT_MAX_PER_LANE], const float *p, int D, int lane) {
#pragma unroll
  for (int i = 0; i < ATT_MAX_PER_LANE; i++) {
    int c = lane + 32 * i;
    r[i] = c < D ? p[c] : 0.0f;
  }
}

/* Partial (this lane's columns) dot of a register row with a global row. */
__device__ __forceinline__ float part_dot(const float (&a)[ATT_MAX_PER_LANE], const float *p, int D, int lane) {
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < ATT_MAX_PER_LANE; i++) {
    int c = lane + 32 * i;
    if (c < D) s += a[i] * p[c];
  }
  return s;
}

/* U independent warp sums at once (their shuffles interleave). */
template <int U>
__device__ __forceinline__ void warp_sum_n(float (&v)[U]) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
#pragma unroll
    for (int u = 0; u < U; u++) v[u] += __shfl_xor_sync(0xffffffffu, v[u], o);
}

/* out (N, Hq*D), lse (N, Hq); q (N, Hq*D); k, v (N, Hkv*D). One warp per (token t, head h);
 * online softmax over the keys start..t (causal) or the whole segment, one key per step (measured
 * faster here than unrolled steps: at 64-token sequences the forward is latency-bound either way). */
__global__ void __launch_bounds__(32 * ATT_WARPS) attention_fwd_kernel(float *out, float *lse, const float *q,
                                                                        const float *k, const float *v,
                                                                        const int32_t *cu, int B, int N, int Hq,
                                                                        int Hkv, int D, float scale, int rnd,
                                                                        int causal) {
  const int lane = threadIdx.x & 31;
  const size_t task = (size_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
  if (task >= (size_t)N * (size_t)Hq) return;
  const int t = (int)(task / (size_t)Hq), h = (int)(task % (size_t)Hq);
  const int kh = h / (Hq / Hkv);
  const int sq = seq_of(cu, B, t), start = cu[sq], last = causal ? t : cu[sq + 1] - 1;
  const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D;
  float qr[ATT_MAX_PER_LANE], acc[ATT_MAX_PER_LANE];
  load_cols(qr, q + (size_t)t * qs + (size_t)h * D, D, lane);
#pragma unroll
  for (int i = 0; i < ATT_MAX_PER_LANE; i++) acc[i] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int j = start; j <= last; j++) {
    const float *kj = k + (size_t)j * ks + (size_t)kh * D, *vj = v + (size_t)j * ks + (size_t)kh * D;
    float s = warp_sum(part_dot(qr, kj, D, lane)) * scale;
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
__global__ void __launch_bounds__(32 * ATT_WARPS) attention_bwd_dq_kernel(
    float *dq, float *delta, const float *dout, const float *out, const float *lse, const float *q, const float *k,
    const float *v, const int32_t *cu, int B, int N, int Hq, int Hkv, int D, float scale, int rnd, int causal) {
  const int lane = threadIdx.x & 31;
  const size_t task = (size_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
  if (task >= (size_t)N * (size_t)Hq) return;
  const int t = (int)(task / (size_t)Hq), h = (int)(task % (size_t)Hq);
  const int kh = h / (Hq / Hkv);
  const int sq = seq_of(cu, B, t), start = cu[sq], last = causal ? t : cu[sq + 1] - 1;
  const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D, qoff = (size_t)t * qs + (size_t)h * D;
  const float *kbase = k + (size_t)kh * D, *vbase = v + (size_t)kh * D;
  float qr[ATT_MAX_PER_LANE], dor[ATT_MAX_PER_LANE], acc[ATT_MAX_PER_LANE];
  load_cols(qr, q + qoff, D, lane);
  load_cols(dor, dout + qoff, D, lane);
  const float di = warp_sum(part_dot(dor, out + qoff, D, lane));
  const float li = lse[(size_t)t * Hq + h];
#pragma unroll
  for (int i = 0; i < ATT_MAX_PER_LANE; i++) acc[i] = 0.0f;
  for (int j0 = start; j0 <= last; j0 += ATT_UNROLL) {
    const int cnt = min(ATT_UNROLL, last - j0 + 1);
    float r[2 * ATT_UNROLL]; /* scores then dO.V */
#pragma unroll
    for (int u = 0; u < ATT_UNROLL; u++) {
      r[u] = u < cnt ? part_dot(qr, kbase + (size_t)(j0 + u) * ks, D, lane) : 0.0f;
      r[ATT_UNROLL + u] = u < cnt ? part_dot(dor, vbase + (size_t)(j0 + u) * ks, D, lane) : 0.0f;
    }
    warp_sum_n<2 * ATT_UNROLL>(r);
    float ds[ATT_UNROLL];
#pragma unroll
    for (int u = 0; u < ATT_UNROLL; u++) {
      float p = __expf(r[u] * scale - li);
      ds[u] = u < cnt ? p * (r[ATT_UNROLL + u] - di) * scale : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < ATT_MAX_PER_LANE; i++) {
      int c = lane + 32 * i;
      if (c >= D) continue;
#pragma unroll
      for (int u = 0; u < ATT_UNROLL; u++)
        if (u < cnt) acc[i] += ds[u] * kbase[(size_t)(j0 + u) * ks + c];
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

/* ---- GQA-shared variants: one warp per (token t, kv head), all G query heads of the group at
 * once. Each key/value row is loaded once for G heads and the G dot-product reductions interleave,
 * which is what a 64-token sequence needs (the per-head kernels above are latency-bound).
 * PER = columns per lane (D <= 32 * PER). Same arithmetic per head as the per-head kernels. */
template <int G, int PER>
__global__ void __launch_bounds__(32 * ATT_WARPS) attention_fwd_gqa_kernel(float *out, float *lse, const float *q,
                                                                            const float *k, const float *v,
                                                                            const int32_t *cu, int B, int N, int Hq,
                                                                            int Hkv, int D, float scale, int rnd) {
  const int lane = threadIdx.x & 31;
  const size_t task = (size_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
  if (task >= (size_t)N * (size_t)Hkv) return;
  const int t = (int)(task / (size_t)Hkv), kh = (int)(task % (size_t)Hkv);
  const int start = cu[seq_of(cu, B, t)];
  const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D;
  const float *qrow = q + (size_t)t * qs + (size_t)kh * G * D;
  float qr[G][PER], acc[G][PER], m[G], l[G];
#pragma unroll
  for (int g = 0; g < G; g++) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < PER; i++) {
      int c = lane + 32 * i;
      qr[g][i] = c < D ? qrow[(size_t)g * D + c] : 0.0f;
      acc[g][i] = 0.0f;
    }
  }
  const float *kb = k + (size_t)kh * D, *vb = v + (size_t)kh * D;
  float kr[PER], vr[PER]; /* row j; the loop prefetches row j + 1 while computing with row j */
#pragma unroll
  for (int i = 0; i < PER; i++) {
    int c = lane + 32 * i;
    kr[i] = c < D ? kb[(size_t)start * ks + c] : 0.0f;
    vr[i] = c < D ? vb[(size_t)start * ks + c] : 0.0f;
  }
  for (int j = start; j <= t; j++) {
    float kn[PER], vn[PER];
#pragma unroll
    for (int i = 0; i < PER; i++) {
      int c = lane + 32 * i;
      bool ok = c < D && j < t;
      kn[i] = ok ? kb[(size_t)(j + 1) * ks + c] : 0.0f;
      vn[i] = ok ? vb[(size_t)(j + 1) * ks + c] : 0.0f;
    }
    float s[G];
#pragma unroll
    for (int g = 0; g < G; g++) {
      s[g] = 0.0f;
#pragma unroll
      for (int i = 0; i < PER; i++) s[g] += qr[g][i] * kr[i];
    }
    warp_sum_n<G>(s);
#pragma unroll
    for (int g = 0; g < G; g++) {
      float sc = s[g] * scale;
      float m_new = fmaxf(m[g], sc);
      float corr = __expf(m[g] - m_new), p = __expf(sc - m_new);
      l[g] = l[g] * corr + p;
#pragma unroll
      for (int i = 0; i < PER; i++) acc[g][i] = acc[g][i] * corr + p * vr[i];
      m[g] = m_new;
    }
#pragma unroll
    for (int i = 0; i < PER; i++) {
      kr[i] = kn[i];
      vr[i] = vn[i];
    }
  }
  float *orow = out + (size_t)t * qs + (size_t)kh * G * D;
#pragma unroll
  for (int g = 0; g < G; g++) {
    const float inv_l = div_exact(1.0f, l[g]);
#pragma unroll
    for (int i = 0; i < PER; i++) {
      int c = lane + 32 * i;
      if (c < D) {
        float val = acc[g][i] * inv_l;
        orow[(size_t)g * D + c] = rnd ? round_bf16(val) : val;
      }
    }
    if (lse && lane == 0) lse[(size_t)t * Hq + (size_t)kh * G + g] = m[g] + __logf(l[g]);
  }
}

/* dq of the G heads of one (token, kv head), and delta = dO . O per head. */
template <int G, int PER>
__global__ void __launch_bounds__(32 * ATT_WARPS) attention_bwd_dq_gqa_kernel(
    float *dq, float *delta, const float *dout, const float *out, const float *lse, const float *q, const float *k,
    const float *v, const int32_t *cu, int B, int N, int Hq, int Hkv, int D, float scale, int rnd) {
  const int lane = threadIdx.x & 31;
  const size_t task = (size_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
  if (task >= (size_t)N * (size_t)Hkv) return;
  const int t = (int)(task / (size_t)Hkv), kh = (int)(task % (size_t)Hkv);
  const int start = cu[seq_of(cu, B, t)];
  const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D, qoff = (size_t)t * qs + (size_t)kh * G * D;
  float qr[G][PER], dor[G][PER], acc[G][PER], di[G], li[G];
#pragma unroll
  for (int g = 0; g < G; g++) {
    float d = 0.0f;
#pragma unroll
    for (int i = 0; i < PER; i++) {
      int c = lane + 32 * i;
      size_t off = qoff + (size_t)g * D + c;
      qr[g][i] = c < D ? q[off] : 0.0f;
      dor[g][i] = c < D ? dout[off] : 0.0f;
      if (c < D) d += dor[g][i] * out[off];
      acc[g][i] = 0.0f;
    }
    di[g] = d;
    li[g] = lse[(size_t)t * Hq + (size_t)kh * G + g];
  }
  warp_sum_n<G>(di);
  const float *kb = k + (size_t)kh * D, *vb = v + (size_t)kh * D;
  float kr[PER], vr[PER]; /* row j; the loop prefetches row j + 1 while computing with row j */
#pragma unroll
  for (int i = 0; i < PER; i++) {
    int c = lane + 32 * i;
    kr[i] = c < D ? kb[(size_t)start * ks + c] : 0.0f;
    vr[i] = c < D ? vb[(size_t)start * ks + c] : 0.0f;
  }
  for (int j = start; j <= t; j++) {
    float kn[PER], vn[PER];
#pragma unroll
    for (int i = 0; i < PER; i++) {
      int c = lane + 32 * i;
      bool ok = c < D && j < t;
      kn[i] = ok ? kb[(size_t)(j + 1) * ks + c] : 0.0f;
      vn[i] = ok ? vb[(size_t)(j + 1) * ks + c] : 0.0f;
    }
    float r[2 * G];
#pragma unroll
    for (int g = 0; g < G; g++) {
      r[g] = 0.0f;
      r[G + g] = 0.0f;
#pragma unroll
      for (int i = 0; i < PER; i++) {
        r[g] += qr[g][i] * kr[i];
        r[G + g] += dor[g][i] * vr[i];
      }
    }
    warp_sum_n<2 * G>(r);
#pragma unroll
    for (int g = 0; g < G; g++) {
      float p = __expf(r[g] * scale - li[g]);
      float ds = p * (r[G + g] - di[g]) * scale;
#pragma unroll
      for (int i = 0; i < PER; i++) acc[g][i] += ds * kr[i];
    }
#pragma unroll
    for (int i = 0; i < PER; i++) {
      kr[i] = kn[i];
      vr[i] = vn[i];
    }
  }
#pragma unroll
  for (int g = 0; g < G; g++) {
#pragma unroll
    for (int i = 0; i < PER; i++) {
      int c = lane + 32 * i;
      if (c < D) dq[qoff + (size_t)g * D + c] = rnd ? round_bf16(acc[g][i]) : acc[g][i];
    }
    if (lane == 0) delta[(size_t)t * Hq + (size_t)kh * G + g] = di[g];
  }
}

/* Launches the GQA-shared variant when the group size and head_dim have an instantiation;
 * returns false to fall back to the per-head kernels. */
template <int G>
static bool launch_gqa_g(bool fwd, int D, unsigned blocks, cudaStream_t s, float *o, float *l_or_delta,
                         const float *dout, const float *out, const float *lse, const float *q, const float *k,
                         const float *v, const int32_t *cu, int B, int N, int Hq, int Hkv, float scale, int rnd) {
#define GQA_CASE(PER)                                                                                           \
  if (D <= 32 * PER) {                                                                                          \
    if (fwd)                                                                                                    \
      attention_fwd_gqa_kernel<G, PER><<<blocks, 32 * ATT_WARPS, 0, s>>>(o, l_or_delta, q, k, v, cu, B, N, Hq,  \
                                                                         Hkv, D, scale, rnd);                   \
    else                                                                                                        \
      attention_bwd_dq_gqa_kernel<G, PER><<<blocks, 32 * ATT_WARPS, 0, s>>>(o, l_or_delta, dout, out, lse, q, k, \
                                                                            v, cu, B, N, Hq, Hkv, D, scale, rnd); \
    return true;                                                                                                \
  }
  GQA_CASE(1)
  GQA_CASE(2)
  GQA_CASE(4)
#undef GQA_CASE
  return false;
}

static bool launch_gqa(bool fwd, int D, float *o, float *l_or_delta, const float *dout, const float *out,
                       const float *lse, const float *q, const float *k, const float *v, const int32_t *cu, int B,
                       int N, int Hq, int Hkv, float scale, int rnd) {
  const int group = Hq / Hkv;
  const unsigned blocks = (unsigned)(((size_t)N * Hkv + ATT_WARPS - 1) / ATT_WARPS);
  cudaStream_t s = (cudaStream_t)aqs_cuda_stream();
  switch (group) {
    case 1: return launch_gqa_g<1>(fwd, D, blocks, s, o, l_or_delta, dout, out, lse, q, k, v, cu, B, N, Hq, Hkv, scale, rnd);
    case 2: return launch_gqa_g<2>(fwd, D, blocks, s, o, l_or_delta, dout, out, lse, q, k, v, cu, B, N, Hq, Hkv, scale, rnd);
    case 4: return launch_gqa_g<4>(fwd, D, blocks, s, o, l_or_delta, dout, out, lse, q, k, v, cu, B, N, Hq, Hkv, scale, rnd);
    case 8: return launch_gqa_g<8>(fwd, D, blocks, s, o, l_or_delta, dout, out, lse, q, k, v, cu, B, N, Hq, Hkv, scale, rnd);
    default: return false;
  }
}

/* Partial dk, dv of one (key token j, query head h) over the later tokens of the sequence (causal)
 * or the whole segment:
 * pdk_jh = scale sum_i dS_ij Q_i, pdv_jh = sum_i P_ij dO_i, written to (N, Hq, D) scratch; the
 * reduce below sums the group's heads in head order (deterministic, and Hq/Hkv times more warps
 * than one per kv head). With Hq == Hkv the partials are dk/dv themselves (rnd: rounded). */
__global__ void __launch_bounds__(32 * ATT_WARPS) attention_bwd_dkv_kernel(
    float *pdk, float *pdv, const float *delta, const float *dout, const float *lse, const float *q, const float *k,
    const float *v, const int32_t *cu, int B, int N, int Hq, int Hkv, int D, float scale, int rnd, int causal) {
  const int lane = threadIdx.x & 31;
  const size_t task = (size_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
  if (task >= (size_t)N * (size_t)Hq) return;
  const int j = (int)(task / (size_t)Hq), h = (int)(task % (size_t)Hq);
  const int kh = h / (Hq / Hkv);
  const int sq = seq_of(cu, B, j), first = causal ? j : cu[sq], end = cu[sq + 1];
  const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D, koff = (size_t)j * ks + (size_t)kh * D;
  float kr[ATT_MAX_PER_LANE], vr[ATT_MAX_PER_LANE], dka[ATT_MAX_PER_LANE], dva[ATT_MAX_PER_LANE];
  load_cols(kr, k + koff, D, lane);
  load_cols(vr, v + koff, D, lane);
#pragma unroll
  for (int i = 0; i < ATT_MAX_PER_LANE; i++) dka[i] = dva[i] = 0.0f;
  const float *qbase = q + (size_t)h * D, *dobase = dout + (size_t)h * D;
  for (int i0 = first; i0 < end; i0 += ATT_UNROLL) {
    const int cnt = min(ATT_UNROLL, end - i0);
    float r[2 * ATT_UNROLL];
#pragma unroll
    for (int u = 0; u < ATT_UNROLL; u++) {
      r[u] = u < cnt ? part_dot(kr, qbase + (size_t)(i0 + u) * qs, D, lane) : 0.0f;
      r[ATT_UNROLL + u] = u < cnt ? part_dot(vr, dobase + (size_t)(i0 + u) * qs, D, lane) : 0.0f;
    }
    warp_sum_n<2 * ATT_UNROLL>(r);
    float p[ATT_UNROLL], ds[ATT_UNROLL];
#pragma unroll
    for (int u = 0; u < ATT_UNROLL; u++) {
      if (u < cnt) {
        size_t row = (size_t)(i0 + u) * Hq + h;
        p[u] = __expf(r[u] * scale - lse[row]);
        ds[u] = p[u] * (r[ATT_UNROLL + u] - delta[row]) * scale;
      } else {
        p[u] = ds[u] = 0.0f;
      }
    }
#pragma unroll
    for (int x = 0; x < ATT_MAX_PER_LANE; x++) {
      int c = lane + 32 * x;
      if (c >= D) continue;
#pragma unroll
      for (int u = 0; u < ATT_UNROLL; u++)
        if (u < cnt) {
          dka[x] += ds[u] * qbase[(size_t)(i0 + u) * qs + c];
          dva[x] += p[u] * dobase[(size_t)(i0 + u) * qs + c];
        }
    }
  }
  const size_t poff = task * (size_t)D; /* (j, h) row of the (N, Hq, D) partials */
#pragma unroll
  for (int x = 0; x < ATT_MAX_PER_LANE; x++) {
    int c = lane + 32 * x;
    if (c < D) {
      pdk[poff + c] = rnd ? round_bf16(dka[x]) : dka[x];
      pdv[poff + c] = rnd ? round_bf16(dva[x]) : dva[x];
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

static unsigned blocks_for(size_t tasks) { return (unsigned)((tasks + ATT_WARPS - 1) / ATT_WARPS); }

/* ---- launchers ---- */
/* Forward of both kinds: tensor-core tiles when BF16 mode and the shape allow, else per-row warps. */
static aqs_status attention_fwd_any(float *d_out, float *d_lse, const float *d_q, const float *d_k, const float *d_v,
                                    const int32_t *cu, int B, int max_seqlen, int N, int Hq, int Hkv, int D,
                                    int rnd, int causal, aqs_err *e) {
  aqs_status st = check_shape(Hq, Hkv, D, e);
  if (st || N <= 0 || B <= 0) return st;
  const void *const ptrs[8] = {d_out, d_lse, d_q, d_k, d_v, NULL, NULL, NULL};
  if (rnd && aqs_flash_supported(D, Hq, Hkv, B, max_seqlen, ptrs, 5))
    return aqs_flash_attention_fwd(d_out, d_lse, d_q, d_k, d_v, cu, B, max_seqlen, Hq, Hkv, D, causal, e);
  float scale = 1.0f / sqrtf((float)D);
  cudaStream_t s = (cudaStream_t)aqs_cuda_stream();
  if (!causal ||
      !launch_gqa(true, D, d_out, d_lse, NULL, NULL, NULL, d_q, d_k, d_v, cu, B, N, Hq, Hkv, scale, rnd))
    attention_fwd_kernel<<<blocks_for((size_t)N * Hq), 32 * ATT_WARPS, 0, s>>>(d_out, d_lse, d_q, d_k, d_v, cu, B,
                                                                               N, Hq, Hkv, D, scale, rnd, causal);
  AQS_CUDA_LAUNCH_CHECK(e, "attention_fwd_kernel");
  return AQS_OK;
}

/* Bytes of scratch the backward needs: delta (N, Hq) and the dk/dv partials (N, Hq, D). */
extern "C" size_t aqs_cuda_attention_bwd_scratch_bytes(int N, int Hq, int D) {
  size_t delta = ((size_t)N * Hq + 63) & ~(size_t)63;
  return (delta + 2 * (size_t)N * Hq * D) * sizeof(float);
}

static aqs_status attention_bwd_any(float *d_dq, float *d_dk, float *d_dv, void *d_scratch, const float *d_dout,
                                    const float *d_out, const float *d_lse, const float *d_q, const float *d_k,
                                    const float *d_v, const int32_t *cu, int B, int max_seqlen, int N, int Hq,
                                    int Hkv, int D, int rnd, int causal, aqs_err *e) {
  aqs_status st = check_shape(Hq, Hkv, D, e);
  if (st || N <= 0 || B <= 0) return st;
  float *delta = (float *)d_scratch;
  const void *const ptrs[8] = {d_dq, d_dk, d_dv, d_dout, d_out, d_q, d_k, d_v};
  if (rnd && aqs_flash_supported(D, Hq, Hkv, B, max_seqlen, ptrs, 8))
    return aqs_flash_attention_bwd(d_dq, d_dk, d_dv, delta, d_dout, d_out, d_lse, d_q, d_k, d_v, cu, B, max_seqlen,
                                   N, Hq, Hkv, D, causal, e);
  float scale = 1.0f / sqrtf((float)D);
  cudaStream_t s = (cudaStream_t)aqs_cuda_stream();
  /* one query head per kv head: the partials are the result (no reduce, no partials scratch) */
  const bool direct = Hq == Hkv;
  float *pdk = direct ? d_dk : delta + (((size_t)N * Hq + 63) & ~(size_t)63);
  float *pdv = direct ? d_dv : pdk + (size_t)N * Hq * D;
  unsigned bq = blocks_for((size_t)N * Hq);
  if (!causal || !launch_gqa(false, D, d_dq, delta, d_dout, d_out, d_lse, d_q, d_k, d_v, cu, B, N, Hq, Hkv, scale,
                             rnd))
    attention_bwd_dq_kernel<<<bq, 32 * ATT_WARPS, 0, s>>>(d_dq, delta, d_dout, d_out, d_lse, d_q, d_k, d_v, cu, B, N,
                                                          Hq, Hkv, D, scale, rnd, causal);
  AQS_CUDA_LAUNCH_CHECK(e, "attention_bwd_dq_kernel");
  attention_bwd_dkv_kernel<<<bq, 32 * ATT_WARPS, 0, s>>>(pdk, pdv, delta, d_dout, d_lse, d_q, d_k, d_v, cu, B, N, Hq,
                                                         Hkv, D, scale, direct ? rnd : 0, causal);
  AQS_CUDA_LAUNCH_CHECK(e, "attention_bwd_dkv_kernel");
  if (direct) return AQS_OK;
  size_t total = (size_t)N * Hkv * D;
  attention_bwd_dkv_reduce_kernel<<<grid_for(total, 256), 256, 0, s>>>(d_dk, d_dv, pdk, pdv, N, Hq, Hkv, D, rnd);
  AQS_CUDA_LAUNCH_CHECK(e, "attention_bwd_dkv_reduce_kernel");
  return AQS_OK;
}

extern "C" aqs_status aqs_cuda_attention_fwd(float *d_out, float *d_lse, const float *d_q, const float *d_k,
                                             const float *d_v, const int32_t *d_cu_seqlens, int B, int max_seqlen,
                                             int N, int Hq, int Hkv, int D, int rnd, aqs_err *e) {
  return attention_fwd_any(d_out, d_lse, d_q, d_k, d_v, d_cu_seqlens, B, max_seqlen, N, Hq, Hkv, D, rnd, 1, e);
}

extern "C" aqs_status aqs_cuda_attention_bwd(float *d_dq, float *d_dk, float *d_dv, void *d_scratch,
                                             const float *d_dout, const float *d_out, const float *d_lse,
                                             const float *d_q, const float *d_k, const float *d_v,
                                             const int32_t *d_cu_seqlens, int B, int max_seqlen, int N, int Hq,
                                             int Hkv, int D, int rnd, aqs_err *e) {
  return attention_bwd_any(d_dq, d_dk, d_dv, d_scratch, d_dout, d_out, d_lse, d_q, d_k, d_v, d_cu_seqlens, B,
                           max_seqlen, N, Hq, Hkv, D, rnd, 1, e);
}

extern "C" aqs_status aqs_cuda_attention_full_fwd(float *d_out, float *d_lse, const float *d_q, const float *d_k,
                                                  const float *d_v, const int32_t *d_cu, int B, int max_seqlen, int N,
                                                  int H, int D, int rnd, aqs_err *e) {
  if (N == 0 || H == 0) return AQS_OK;
  return attention_fwd_any(d_out, d_lse, d_q, d_k, d_v, d_cu, B, max_seqlen, N, H, H, D, rnd, 0, e);
}

/* Only delta (N, H): with one query head per kv head the backward needs no partials. */
extern "C" size_t aqs_cuda_attention_full_bwd_scratch_bytes(int N, int H) { return (size_t)N * H * sizeof(float); }

extern "C" aqs_status aqs_cuda_attention_full_bwd(float *d_dq, float *d_dk, float *d_dv, void *d_scratch,
                                                  const float *d_dout, const float *d_out, const float *d_lse,
                                                  const float *d_q, const float *d_k, const float *d_v,
                                                  const int32_t *d_cu, int B, int max_seqlen, int N, int H, int D,
                                                  int rnd, aqs_err *e) {
  if (N == 0 || H == 0) return AQS_OK;
  return attention_bwd_any(d_dq, d_dk, d_dv, d_scratch, d_dout, d_out, d_lse, d_q, d_k, d_v, d_cu, B, max_seqlen, N,
                           H, H, D, rnd, 0, e);
}

/* ---- BF16 activation storage (kernels/ops.h attention_fwd_b) ---- */
/* 1 when the tensor-core kernels take these BF16 tensors directly (no scratch). */
static int fwd_b_direct(const uint16_t *d_out, const float *d_lse, const uint16_t *d_q, const uint16_t *d_k,
                        const uint16_t *d_v, int B, int max_seqlen, int Hq, int Hkv, int D) {
  const void *const ptrs[5] = {d_out, d_lse, d_q, d_k, d_v};
  return aqs_flash_supported(D, Hq, Hkv, B, max_seqlen, ptrs, 5);
}

extern "C" size_t aqs_cuda_attention_fwd_b_scratch_bytes(const uint16_t *d_out, const float *d_lse,
                                                         const uint16_t *d_q, const uint16_t *d_k,
                                                         const uint16_t *d_v, int B, int max_seqlen, int N, int Hq,
                                                         int Hkv, int D) {
  if (N <= 0 || B <= 0 || fwd_b_direct(d_out, d_lse, d_q, d_k, d_v, B, max_seqlen, Hq, Hkv, D)) return 0;
  return (2 * (size_t)N * Hq * D + 2 * (size_t)N * Hkv * D) * sizeof(float);
}

extern "C" aqs_status aqs_cuda_attention_fwd_b(uint16_t *d_out, float *d_lse, const uint16_t *d_q, const uint16_t *d_k,
                                               const uint16_t *d_v, const int32_t *d_cu, int B, int max_seqlen,
                                               int N, int Hq, int Hkv, int D, int causal, void *d_scratch,
                                               aqs_err *e) {
  aqs_status st = check_shape(Hq, Hkv, D, e);
  if (st || N <= 0 || B <= 0) return st;
  if (fwd_b_direct(d_out, d_lse, d_q, d_k, d_v, B, max_seqlen, Hq, Hkv, D))
    return aqs_flash_attention_fwd_b(d_out, d_lse, d_q, d_k, d_v, d_cu, B, max_seqlen, Hq, Hkv, D, causal, e);
  /* other shapes: the F32-buffer kernels on exact F32 copies, the (BF16-valued) out cast back */
  const size_t nq = (size_t)N * Hq * D, nk = (size_t)N * Hkv * D;
  float *q32 = (float *)d_scratch, *k32 = q32 + nq, *v32 = k32 + nk, *o32 = v32 + nk;
  if ((st = aqs_cuda_cast_bf16_to_f32(q32, d_q, nq, e)) || (st = aqs_cuda_cast_bf16_to_f32(k32, d_k, nk, e)) ||
      (st = aqs_cuda_cast_bf16_to_f32(v32, d_v, nk, e)) ||
      (st = attention_fwd_any(o32, d_lse, q32, k32, v32, d_cu, B, max_seqlen, N, Hq, Hkv, D, 1, causal, e)))
    return st;
  return aqs_cuda_cast_f32_to_bf16(d_out, o32, nq, e);
}
