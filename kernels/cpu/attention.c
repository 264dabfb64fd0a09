/* kernels/cpu/attention.c: grouped-query attention over packed variable-length sequences,
 * causal (the language model) or bidirectional (the vision tower's windows), forward (saving the
 * log-sum-exp) and backward (CPU reference, F32 softmax). Work is split over (sequence, head)
 * pairs; nothing is computed across sequence borders. */
#include <stdlib.h>

#include "kernels/cpu/cpu_common.h"

/* Keys of query i in a sequence of len tokens: [0, i] when causal, else [0, len). */
static inline int key_end(int causal, int i, int len) { return causal ? i + 1 : len; }

static void attention_fwd(aqs_backend *be, int causal, float *out, float *lse, const float *q,
                          const float *k, const float *v, const int32_t *cu_seqlens, int B,
                          int max_seqlen, int N, int Hq, int Hkv, int D) {
  (void)N;
  const float scale = 1.0f / sqrtf((float)D);
  const int group = Hq / Hkv;
  const size_t qs = (size_t)Hq * (size_t)D, ks = (size_t)Hkv * (size_t)D;
#pragma omp parallel if ((size_t)N * (size_t)max_seqlen * (size_t)Hq * (size_t)D >= CPU_PAR_MIN)
  {
    float *p = malloc(((size_t)max_seqlen + 1) * sizeof *p);
    float *acc = malloc((size_t)D * sizeof *acc);
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int s = 0; s < B; s++) {
      for (int h = 0; h < Hq; h++) {
        int start = cu_seqlens[s], len = cu_seqlens[s + 1] - start, kh = h / group;
        for (int i = 0; i < len; i++) {
          const float *qi = q + (size_t)(start + i) * qs + (size_t)h * (size_t)D;
          float mx = -INFINITY;
          const int jend = key_end(causal, i, len);
          for (int j = 0; j < jend; j++) {
            const float *kj = k + (size_t)(start + j) * ks + (size_t)kh * (size_t)D;
            float dot = 0.0f;
            for (int d = 0; d < D; d++) dot += qi[d] * kj[d];
            p[j] = dot * scale;
            if (p[j] > mx) mx = p[j];
          }
          float sum = 0.0f;
          for (int j = 0; j < jend; j++) {
            p[j] = expf(p[j] - mx);
            sum += p[j];
          }
          for (int d = 0; d < D; d++) acc[d] = 0.0f;
          for (int j = 0; j < jend; j++) {
            const float *vj = v + (size_t)(start + j) * ks + (size_t)kh * (size_t)D;
            float w = p[j] / sum;
            for (int d = 0; d < D; d++) acc[d] += w * vj[d];
          }
          float *oi = out + (size_t)(start + i) * qs + (size_t)h * (size_t)D;
          for (int d = 0; d < D; d++) oi[d] = cpu_rnd(be, acc[d]);
          if (lse) lse[(size_t)(start + i) * (size_t)Hq + (size_t)h] = mx + logf(sum);
        }
      }
    }
    free(p);
    free(acc);
  }
}

/* dS_ij = P_ij (dO_i.V_j - dO_i.O_i); dQ_i = scale sum_j dS_ij K_j; dK_j = scale sum_i dS_ij Q_i;
 * dV_j = sum_i P_ij dO_i. One task per (sequence, kv head) owns its dK/dV rows. */
static void attention_bwd(aqs_backend *be, int causal, float *dq, float *dk, float *dv,
                          const float *dout, const float *out, const float *lse, const float *q,
                          const float *k, const float *v, const int32_t *cu_seqlens, int B,
                          int max_seqlen, int N, int Hq, int Hkv, int D) {
  (void)max_seqlen;
  const float scale = 1.0f / sqrtf((float)D);
  const int group = Hq / Hkv;
  const size_t qs = (size_t)Hq * (size_t)D, ks = (size_t)Hkv * (size_t)D;
  (void)N;
#pragma omp parallel for schedule(dynamic, 1) collapse(2) if ((size_t)N * (size_t)max_seqlen * (size_t)Hq * (size_t)D >= CPU_PAR_MIN)
  for (int s = 0; s < B; s++) {
    for (int kh = 0; kh < Hkv; kh++) {
      int start = cu_seqlens[s], len = cu_seqlens[s + 1] - start;
      for (int j = 0; j < len; j++) {
        float *dkj = dk + (size_t)(start + j) * ks + (size_t)kh * (size_t)D;
        float *dvj = dv + (size_t)(start + j) * ks + (size_t)kh * (size_t)D;
        for (int d = 0; d < D; d++) dkj[d] = dvj[d] = 0.0f;
      }
      for (int h = kh * group; h < (kh + 1) * group; h++) {
        for (int i = 0; i < len; i++) {
          size_t qoff = (size_t)(start + i) * qs + (size_t)h * (size_t)D;
          const float *qi = q + qoff, *doi = dout + qoff, *oi = out + qoff;
          float *dqi = dq + qoff;
          float li = lse[(size_t)(start + i) * (size_t)Hq + (size_t)h];
          float Di = 0.0f;
          for (int d = 0; d < D; d++) Di += doi[d] * oi[d];
          for (int d = 0; d < D; d++) dqi[d] = 0.0f;
          for (int j = 0; j < key_end(causal, i, len); j++) {
            size_t koff = (size_t)(start + j) * ks + (size_t)kh * (size_t)D;
            const float *kj = k + koff, *vj = v + koff;
            float dot = 0.0f, dpv = 0.0f;
            for (int d = 0; d < D; d++) {
              dot += qi[d] * kj[d];
              dpv += doi[d] * vj[d];
            }
            float pij = expf(dot * scale - li);
            float ds = pij * (dpv - Di) * scale;
            float *dkj = dk + koff, *dvj = dv + koff;
            for (int d = 0; d < D; d++) {
              dqi[d] += ds * kj[d];
              dkj[d] += ds * qi[d];
              dvj[d] += pij * doi[d];
            }
          }
          if (be->precision == AQS_PREC_BF16)
            for (int d = 0; d < D; d++) dqi[d] = cpu_round_bf16(dqi[d]);
        }
      }
      if (be->precision == AQS_PREC_BF16) {
        for (int j = 0; j < len; j++) {
          float *dkj = dk + (size_t)(start + j) * ks + (size_t)kh * (size_t)D;
          float *dvj = dv + (size_t)(start + j) * ks + (size_t)kh * (size_t)D;
          for (int d = 0; d < D; d++) {
            dkj[d] = cpu_round_bf16(dkj[d]);
            dvj[d] = cpu_round_bf16(dvj[d]);
          }
        }
      }
    }
  }
}

void cpu_attention_fwd(aqs_backend *be, float *out, float *lse, const float *q, const float *k,
                       const float *v, const int32_t *cu_seqlens, int B, int max_seqlen, int N,
                       int Hq, int Hkv, int D) {
  attention_fwd(be, 1, out, lse, q, k, v, cu_seqlens, B, max_seqlen, N, Hq, Hkv, D);
}

void cpu_attention_bwd(aqs_backend *be, float *dq, float *dk, float *dv, const float *dout,
                       const float *out, const float *lse, const float *q, const float *k,
                       const float *v, const int32_t *cu_seqlens, int B, int max_seqlen, int N,
                       int Hq, int Hkv, int D) {
  attention_bwd(be, 1, dq, dk, dv, dout, out, lse, q, k, v, cu_seqlens, B, max_seqlen, N, Hq, Hkv,
                D);
}

void cpu_attention_full_fwd(aqs_backend *be, float *out, float *lse, const float *q,
                            const float *k, const float *v, const int32_t *cu_seqlens, int B,
                            int max_seqlen, int N, int H, int D) {
  attention_fwd(be, 0, out, lse, q, k, v, cu_seqlens, B, max_seqlen, N, H, H, D);
}

void cpu_attention_full_bwd(aqs_backend *be, float *dq, float *dk, float *dv, const float *dout,
                            const float *out, const float *lse, const float *q, const float *k,
                            const float *v, const int32_t *cu_seqlens, int B, int max_seqlen,
                            int N, int H, int D) {
  attention_bwd(be, 0, dq, dk, dv, dout, out, lse, q, k, v, cu_seqlens, B, max_seqlen, N, H, H, D);
}
