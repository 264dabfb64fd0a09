/* kernels/cuda/attention_flash.cu: tiled (flash-style) attention on tensor cores for BF16 mode, shared
 * by the causal GQA attention of the language model and the vision tower's bidirectional windows.
 * Q/K/V/dO tiles are staged in shared memory as BF16 (exact: BF16 mode hands attention BF16 values);
 * scores, softmax, log-sum-exp and every accumulation stay F32 (mma.sync m16n8k16, F32 accumulate);
 * probabilities and dS are rounded to BF16 as operands of the second product, as sdpa on bf16 does.
 * Each output element is written by one block in a fixed order: same bits on every run. */
#include <cuda_bf16.h>
#include <stdlib.h>

#include "kernels/cuda/attention_flash.cuh"

#define FL_THREADS 128 /* 4 warps (per query head in the forward), 16 rows each */
#define FL_LOG2E 1.4426950408889634f

typedef __nv_bfloat16 bf16;

/* c += a (16x16, row-major fragment) * b (16x8, column fragment), BF16 in, F32 accumulate. */
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap(); /* never launched: aqs_flash_supported checks the built architecture */
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

/* Two F32 -> one register of two BF16 (lo in the low half: the lower column of the fragment). */
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&v);
}

__device__ __forceinline__ uint32_t ld32(const bf16 *p) { return *reinterpret_cast<const uint32_t *>(p); }

/* A fragment (16 rows x 16 k) of a row-major tile X[row][k] with row stride ld (elements). */
__device__ __forceinline__ void frag_a(uint32_t (&a)[4], const bf16 *x, int ld, int row0, int k0, int lane) {
  const int g = lane >> 2, t2 = (lane & 3) * 2;
  const bf16 *p = x + (size_t)(row0 + g) * ld + k0 + t2;
  a[0] = ld32(p);
  a[1] = ld32(p + 8 * ld);
  a[2] = ld32(p + 8);
  a[3] = ld32(p + 8 * ld + 8);
}

/* B fragment (16 k x 8 n) from a tile stored n-major, Y[n][k] (e.g. K[key][d] for Q K^T). */
__device__ __forceinline__ void frag_b(uint32_t &b0, uint32_t &b1, const bf16 *y, int ld, int n0, int k0, int lane) {
  const bf16 *p = y + (size_t)(n0 + (lane >> 2)) * ld + k0 + (lane & 3) * 2;
  b0 = ld32(p);
  b1 = ld32(p + 8);
}

/* A fragment for keys [16kk, 16kk+16) from the accumulators of two adjacent 8-column score tiles. */
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack2(c0[0], c0[1]);
  a[1] = pack2(c0[2], c0[3]);
  a[2] = pack2(c1[0], c1[1]);
  a[3] = pack2(c1[2], c1[3]);
}

/* ROWS x D of F32 rows (row r at src + r*stride, 16-byte aligned) -> BF16 tiles; rows >= valid are
 * zero. dst[r][c] (stride ld) when dst is not NULL, dstT[c][r] (stride ldt, transposed) when dstT
 * is not NULL: one read of global memory serves both. Loads go out in groups of FL_LOADS before
 * their first use, so their latencies overlap (one at a time made the forward latency-bound). */
#define FL_LOADS 8
template <int D, int ROWS>
__device__ __forceinline__ void stage(bf16 *dst, int ld, bf16 *dstT, int ldt, const float *src, size_t stride,
                                      int valid) {
  constexpr int C4 = D / 4, TOTAL = ROWS * C4, PER = (TOTAL + FL_THREADS - 1) / FL_THREADS;
#pragma unroll
  for (int j0 = 0; j0 < PER; j0 += FL_LOADS) {
    float4 f[FL_LOADS];
#pragma unroll
    for (int u = 0; u < FL_LOADS; u++) {
      const int i = threadIdx.x + (j0 + u) * FL_THREADS, r = i / C4, c = (i % C4) * 4;
      f[u] = make_float4(0.f, 0.f, 0.f, 0.f);
      if (j0 + u < PER && i < TOTAL && r < valid) f[u] = *reinterpret_cast<const float4 *>(src + (size_t)r * stride + c);
    }
#pragma unroll
    for (int u = 0; u < FL_LOADS; u++) {
      const int i = threadIdx.x + (j0 + u) * FL_THREADS, r = i / C4, c = (i % C4) * 4;
      if (j0 + u >= PER || i >= TOTAL) continue;
      if (dst) *reinterpret_cast<uint2 *>(dst + (size_t)r * ld + c) = make_uint2(pack2(f[u].x, f[u].y), pack2(f[u].z, f[u].w));
      if (dstT) {
        dstT[(size_t)(c + 0) * ldt + r] = __float2bfloat16_rn(f[u].x);
        dstT[(size_t)(c + 1) * ldt + r] = __float2bfloat16_rn(f[u].y);
        dstT[(size_t)(c + 2) * ldt + r] = __float2bfloat16_rn(f[u].z);
        dstT[(size_t)(c + 3) * ldt + r] = __float2bfloat16_rn(f[u].w);
      }
    }
  }
}

/* Two score-shaped products of one warp's 16 rows over the head dimension, sharing the loop:
 * c1 = A1[row0..+16] . B1^T and c2 = A2[row0..+16] . B2^T (B tiles n-major, ST tiles of 8 columns). */
template <int D, int ST>
__device__ __forceinline__ void dual_scores(float (&c1)[ST][4], float (&c2)[ST][4], const bf16 *A1, const bf16 *A2,
                                            const bf16 *B1, const bf16 *B2, int ld, int row0, int lane) {
#pragma unroll
  for (int nt = 0; nt < ST; nt++)
#pragma unroll
    for (int e = 0; e < 4; e++) c1[nt][e] = c2[nt][e] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    uint32_t a1[4], a2[4];
    frag_a(a1, A1, ld, row0, kk * 16, lane);
    frag_a(a2, A2, ld, row0, kk * 16, lane);
#pragma unroll
    for (int nt = 0; nt < ST; nt++) {
      uint32_t b0, b1;
      frag_b(b0, b1, B1, ld, nt * 8, kk * 16, lane);
      mma16816(c1[nt], a1, b0, b1);
      frag_b(b0, b1, B2, ld, nt * 8, kk * 16, lane);
      mma16816(c2[nt], a2, b0, b1);
    }
  }
}

/* acc (16 rows x D) += p (16 rows x 16*KT, score accumulators rounded to BF16) . T, with T stored
 * transposed (Tt[d][k], stride ldt): P.V, dS.K, P^T.dO, dS^T.Q. */
template <int D, int KT>
__device__ __forceinline__ void acc_product(float (&acc)[D / 8][4], const float (&p)[2 * KT][4], const bf16 *Tt,
                                            int ldt, int lane) {
#pragma unroll
  for (int kk = 0; kk < KT; kk++) {
    uint32_t a[4];
    acc_to_a(a, p[2 * kk], p[2 * kk + 1]);
#pragma unroll
    for (int nt = 0; nt < D / 8; nt++) {
      uint32_t b0, b1;
      frag_b(b0, b1, Tt, ldt, nt * 8, kk * 16, lane);
      mma16816(acc[nt], a, b0, b1);
    }
  }
}

/* Writes row r (0: group row, 1: group row + 8) of a 16 x D accumulator times mul, rounded to
 * BF16, to dst (that row's D floats; this thread's column pairs). */
template <int D>
__device__ __forceinline__ void store_row(float *dst, const float (&acc)[D / 8][4], int r, float mul, int t2) {
#pragma unroll
  for (int nt = 0; nt < D / 8; nt++)
    *reinterpret_cast<float2 *>(dst + nt * 8 + t2) =
        make_float2(round_bf16(acc[nt][2 * r] * mul), round_bf16(acc[nt][2 * r + 1] * mul));
}

/* ---- forward ----
 * Block = 64 queries of one sequence and HPB query heads of one GQA group (HPB x 4 warps, 16 rows
 * each), walking key tiles of 64 up to the diagonal. The group's heads share each K/V tile. Tiles
 * sit row-major in shared memory (row stride D + 8: ldmatrix reads 8 rows in 8 distinct bank
 * quads); V^T fragments come from ldmatrix.trans. BF16 inputs are copied with cp.async, two tile
 * buffers deep (tile j + 1 loads while tile j is computed); F32 inputs are converted on the way in.
 * Each row's arithmetic (order included) does not depend on T, HPB or the grid order: same bits for
 * all of them (attention_fwd_b's promise). */

/* ldmatrix x4: four 8x8 BF16 matrices; lane l gives the address of row l % 8 of matrix l / 8.
 * TRANS: each matrix transposed (the V^T operand from row-major V). */
template <bool TRANS>
__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], const bf16 *p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  const unsigned a = (unsigned)__cvta_generic_to_shared(p);
  if (TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
#endif
}

/* 16 bytes global -> shared without registers; n = 0 writes zeros (rows past a sequence's end). */
__device__ __forceinline__ void cp_async16(bf16 *dst, const void *src, int n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();
#else
  const unsigned a = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(a), "l"(src), "r"(n));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

/* ROWS x W elements (row r at src + r * stride) -> dst[r][c] (stride ld) as BF16, rows >= valid
 * zero. BF16 source: cp.async (complete after cp_async_wait); F32 source: loaded in groups of 4
 * chunks of 8 (their latencies overlap), rounded to BF16 (exact for BF16 values), stored. */
template <int W, int ROWS, int NTHR>
__device__ __forceinline__ void load_tile(bf16 *dst, int ld, const bf16 *src, size_t stride, int valid) {
  constexpr int C8 = W / 8;
#pragma unroll
  for (int i = threadIdx.x; i < ROWS * C8; i += NTHR) {
    const int r = i / C8, c = (i % C8) * 8;
    cp_async16(dst + r * ld + c, src + (size_t)(r < valid ? r : 0) * stride + c, r < valid ? 16 : 0);
  }
}
template <int W, int ROWS, int NTHR>
__device__ __forceinline__ void load_tile(bf16 *dst, int ld, const float *src, size_t stride, int valid) {
  constexpr int C8 = W / 8, TOTAL = ROWS * C8, PER = (TOTAL + NTHR - 1) / NTHR, G = 4;
#pragma unroll
  for (int j0 = 0; j0 < PER; j0 += G) {
    float4 f[G][2];
#pragma unroll
    for (int u = 0; u < G; u++) {
      const int i = threadIdx.x + (j0 + u) * NTHR, r = i / C8, c = (i % C8) * 8;
      f[u][0] = f[u][1] = make_float4(0.f, 0.f, 0.f, 0.f);
      if (j0 + u < PER && i < TOTAL && r < valid) {
        const float4 *p = reinterpret_cast<const float4 *>(src + (size_t)r * stride + c);
        f[u][0] = p[0];
        f[u][1] = p[1];
      }
    }
#pragma unroll
    for (int u = 0; u < G; u++) {
      const int i = threadIdx.x + (j0 + u) * NTHR, r = i / C8, c = (i % C8) * 8;
      if (j0 + u >= PER || i >= TOTAL) continue;
      *reinterpret_cast<uint4 *>(dst + r * ld + c) = make_uint4(pack2(f[u][0].x, f[u][0].y), pack2(f[u][0].z, f[u][0].w),
                                                                pack2(f[u][1].x, f[u][1].y), pack2(f[u][1].z, f[u][1].w));
    }
  }
}

/* Two output columns of one row: F32 pair or BF16 pair (the value is a BF16 value either way). */
__device__ __forceinline__ void store2(float *p, float a, float b) {
  *reinterpret_cast<float2 *>(p) = make_float2(round_bf16(a), round_bf16(b));
}
__device__ __forceinline__ void store2(bf16 *p, float a, float b) {
  *reinterpret_cast<uint32_t *>(p) = (uint32_t)f32_to_bf16_bits(a) | (uint32_t)f32_to_bf16_bits(b) << 16;
}

template <typename T, int D, bool CAUSAL, int HPB>
__global__ void __launch_bounds__(FL_THREADS * HPB, 2) flash_fwd_kernel(T *out, float *lse, const T *q, const T *k,
                                                                    const T *v, const int32_t *cu, int Hq, int Hkv,
                                                                    float scale) {
  constexpr int BM = 64, BN = 64, NTHR = FL_THREADS * HPB, LD = D + 8, LDQ = HPB * D + 8, KS = D / 16, NT = D / 8,
                ST = BN / 8;
  constexpr bool ASYNC = sizeof(T) == 2;
  extern __shared__ uint4 fl_smem[];
  bf16 *Qs = reinterpret_cast<bf16 *>(fl_smem), *Ks = Qs + BM * LDQ, *Vs = Ks + 2 * BN * LD; /* K, V: 2 buffers */
  /* causal grid (head blocks, sequences, query tiles): the tiles with the most keys go out first for
   * every head and sequence, the short ones fill in behind them; bidirectional grid (query tiles,
   * head blocks, sequences): the tiles of one head and segment run together (K/V stay in L2) */
  const int s = CAUSAL ? blockIdx.y : blockIdx.z, h0 = (CAUSAL ? blockIdx.x : blockIdx.y) * HPB;
  const int start = cu[s], len = cu[s + 1] - start;
  const int q0 = CAUSAL ? (gridDim.z - 1 - blockIdx.z) * BM : blockIdx.x * BM;
  if (q0 >= len) return;
  const int kh = h0 / (Hq / Hkv), warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int hw = warp >> 2, wr = (warp & 3) * 16, h = h0 + hw; /* this warp's head and first row */
  const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D;
  const int kend = CAUSAL ? min(len, q0 + BM) : len, ntiles = (kend + BN - 1) / BN;
  const T *kb = k + (size_t)start * ks + (size_t)kh * D, *vb = v + (size_t)start * ks + (size_t)kh * D;
  /* the HPB heads' query columns are adjacent: one tile of HPB * D columns */
  load_tile<HPB * D, BM, NTHR>(Qs, LDQ, q + (size_t)(start + q0) * qs + (size_t)h0 * D, qs, min(BM, len - q0));
  load_tile<D, BN, NTHR>(Ks, LD, kb, ks, min(BN, len));
  load_tile<D, BN, NTHR>(Vs, LD, vb, ks, min(BN, len));
  if (ASYNC) cp_async_commit();
  const int g = lane >> 2, t2 = (lane & 3) * 2;
  const int row0 = q0 + wr + g, row1 = row0 + 8; /* this thread's two query rows */
  /* ldmatrix lane addresses: A (Q) and B (K) fragments, and V^T through .trans */
  const int lr = lane & 7, lm = lane >> 3;
  const bf16 *qa = Qs + (wr + lr + (lm & 1) * 8) * LDQ + hw * D + (lm >> 1) * 8;
  const int kofs = (lr + (lm >> 1) * 8) * LD + (lm & 1) * 8, vofs = (lr + (lm & 1) * 8) * LD + (lm >> 1) * 8;
  const float sl2 = scale * FL_LOG2E;
  float o[NT][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
#pragma unroll
  for (int nt = 0; nt < NT; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
  for (int j = 0; j < ntiles; j++) {
    const int k0 = j * BN, buf = j & 1;
    if (j + 1 < ntiles) { /* the next tile into the other buffer (consumed before the last barrier) */
      const int n0 = k0 + BN, nvalid = min(BN, len - n0);
      load_tile<D, BN, NTHR>(Ks + (buf ^ 1) * BN * LD, LD, kb + (size_t)n0 * ks, ks, nvalid);
      load_tile<D, BN, NTHR>(Vs + (buf ^ 1) * BN * LD, LD, vb + (size_t)n0 * ks, ks, nvalid);
      if (ASYNC) {
        cp_async_commit();
        cp_async_wait<1>();
      }
    } else if (ASYNC) {
      cp_async_wait<0>();
    }
    __syncthreads(); /* tile j (and Q) visible to every warp */
    const bf16 *Kt = Ks + buf * BN * LD, *Vt = Vs + buf * BN * LD;
    float sc[ST][4];
#pragma unroll
    for (int nt = 0; nt < ST; nt++) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
      uint32_t qf[4]; /* from shared memory each time: registers go to the accumulators */
      ldsm4<false>(qf, qa + kk * 16);
#pragma unroll
      for (int nt = 0; nt < ST; nt += 2) {
        uint32_t b[4];
        ldsm4<false>(b, Kt + nt * 8 * LD + kk * 16 + kofs);
        mma16816(sc[nt], qf, b[0], b[1]);
        mma16816(sc[nt + 1], qf, b[2], b[3]);
      }
    }
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < ST; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int col = k0 + nt * 8 + t2 + (e & 1), row = e < 2 ? row0 : row1;
        const bool ok = col < len && (!CAUSAL || col <= row);
        sc[nt][e] = ok ? sc[nt][e] * sl2 : -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], sc[nt][e]);
      }
    float corr[2], ms[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float mn = fmaxf(m[r], mx[r]);
      ms[r] = mn == -INFINITY ? 0.f : mn;
      corr[r] = exp2f(m[r] - ms[r]);
      m[r] = mn;
      l[r] *= corr[r];
    }
#pragma unroll
    for (int nt = 0; nt < ST; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        sc[nt][e] = exp2f(sc[nt][e] - ms[e >> 1]);
        l[e >> 1] += sc[nt][e];
      }
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
      o[nt][0] *= corr[0];
      o[nt][1] *= corr[0];
      o[nt][2] *= corr[1];
      o[nt][3] *= corr[1];
    }
    /* o += P . V: P rounded to BF16 as the A operand, V^T fragments by ldmatrix.trans */
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) {
      uint32_t a[4];
      acc_to_a(a, sc[2 * kk], sc[2 * kk + 1]);
#pragma unroll
      for (int nt = 0; nt < NT; nt += 2) {
        uint32_t b[4];
        ldsm4<true>(b, Vt + kk * 16 * LD + nt * 8 + vofs);
        mma16816(o[nt], a, b[0], b[1]);
        mma16816(o[nt + 1], a, b[2], b[3]);
      }
    }
    __syncthreads(); /* every warp is done with buffer buf before it is refilled */
  }
#pragma unroll
  for (int r = 0; r < 2; r++) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  const float inv[2] = {div_exact(1.0f, l[0]), div_exact(1.0f, l[1])};
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int row = r ? row1 : row0;
    if (row >= len) continue;
    T *dst = out + (size_t)(start + row) * qs + (size_t)h * D;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) store2(dst + nt * 8 + t2, o[nt][2 * r] * inv[r], o[nt][2 * r + 1] * inv[r]);
    if (lse && (lane & 3) == 0) lse[(size_t)(start + row) * Hq + h] = (m[r] + log2f(l[r])) * (1.0f / FL_LOG2E);
  }
}

/* delta (N, H) = dO . O per (token, head); rows of D floats. One warp per row. */
__global__ void flash_delta_kernel(float *delta, const float *dout, const float *out, size_t rows, int D) {
  const int lane = threadIdx.x & 31;
  const size_t row = (size_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= rows) return;
  float s = 0.f;
  for (int c = lane; c < D; c += 32) s += dout[row * D + c] * out[row * D + c];
  s = warp_sum(s);
  if (lane == 0) delta[row] = s;
}

/* ---- backward dQ: block = 64 queries of one (sequence, query head); key tiles of 32 ---- */
template <int D, bool CAUSAL>
__global__ void __launch_bounds__(FL_THREADS) flash_bwd_dq_kernel(float *dq, const float *delta, const float *dout,
                                                                  const float *lse, const float *q, const float *k,
                                                                  const float *v, const int32_t *cu, int Hq, int Hkv,
                                                                  float scale) {
  constexpr int BM = 64, BN = 32, LD = D + 8, LDT = BN + 8, NT = D / 8, ST = BN / 8;
  extern __shared__ uint4 fl_smem[];
  bf16 *Qs = reinterpret_cast<bf16 *>(fl_smem), *dOs = Qs + BM * LD, *Ks = dOs + BM * LD, *Vs = Ks + BN * LD,
       *Kt = Vs + BN * LD;
  const int s = blockIdx.z, h = blockIdx.y;
  const int start = cu[s], len = cu[s + 1] - start;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * BM;
  if (q0 >= len) return;
  const int kh = h / (Hq / Hkv), warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D;
  const int qvalid = min(BM, len - q0);
  stage<D, BM>(Qs, LD, NULL, 0, q + (size_t)(start + q0) * qs + (size_t)h * D, qs, qvalid);
  stage<D, BM>(dOs, LD, NULL, 0, dout + (size_t)(start + q0) * qs + (size_t)h * D, qs, qvalid);
  const int g = lane >> 2, t2 = (lane & 3) * 2;
  const int row0 = q0 + warp * 16 + g, row1 = row0 + 8;
  const float sl2 = scale * FL_LOG2E;
  float lrow[2], drow[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int row = r ? row1 : row0;
    const size_t i = (size_t)(start + min(row, len - 1)) * Hq + h;
    lrow[r] = lse[i] * FL_LOG2E;
    drow[r] = delta[i];
  }
  float acc[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
  const int kend = CAUSAL ? min(len, q0 + BM) : len;
  const float *kb = k + (size_t)start * ks + (size_t)kh * D, *vb = v + (size_t)start * ks + (size_t)kh * D;
  for (int k0 = 0; k0 < kend; k0 += BN) {
    __syncthreads();
    const int kvalid = min(BN, len - k0);
    stage<D, BN>(Ks, LD, Kt, LDT, kb + (size_t)k0 * ks, ks, kvalid);
    stage<D, BN>(Vs, LD, NULL, 0, vb + (size_t)k0 * ks, ks, kvalid);
    __syncthreads();
    float sc[ST][4], dp[ST][4];
    dual_scores<D, ST>(sc, dp, Qs, dOs, Ks, Vs, LD, warp * 16, lane);
#pragma unroll
    for (int nt = 0; nt < ST; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int col = k0 + nt * 8 + t2 + (e & 1), row = e < 2 ? row0 : row1;
        const bool ok = col < len && row < len && (!CAUSAL || col <= row);
        const float p = exp2f(sc[nt][e] * sl2 - lrow[e >> 1]);
        sc[nt][e] = ok ? p * (dp[nt][e] - drow[e >> 1]) : 0.f; /* dS (scale applied at the end) */
      }
    acc_product<D, BN / 16>(acc, sc, Kt, LDT, lane);
  }
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int row = r ? row1 : row0;
    if (row >= len) continue;
    store_row<D>(dq + (size_t)(start + row) * qs + (size_t)h * D, acc, r, scale, t2);
  }
}

/* ---- backward dK, dV: block = 64 keys of one (sequence, kv head), summing the group's query
 * heads in order; query tiles of 32 ---- */
template <int D, bool CAUSAL>
__global__ void __launch_bounds__(FL_THREADS) flash_bwd_dkv_kernel(float *dk, float *dv, const float *delta,
                                                                   const float *dout, const float *lse,
                                                                   const float *q, const float *k, const float *v,
                                                                   const int32_t *cu, int Hq, int Hkv, float scale) {
  constexpr int BN = 64, BQ = 32, LD = D + 8, LDT = BQ + 8, NT = D / 8, ST = BQ / 8;
  extern __shared__ uint4 fl_smem[];
  bf16 *Ks = reinterpret_cast<bf16 *>(fl_smem), *Vs = Ks + BN * LD, *Qs = Vs + BN * LD, *dOs = Qs + BQ * LD,
       *Qt = dOs + BQ * LD, *dOt = Qt + D * LDT;
  float *ls = reinterpret_cast<float *>(dOt + D * LDT), *ds = ls + BQ;
  const int s = blockIdx.z, kh = blockIdx.y, group = Hq / Hkv;
  const int start = cu[s], len = cu[s + 1] - start;
  const int k0 = blockIdx.x * BN;
  if (k0 >= len) return;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D;
  const int kvalid = min(BN, len - k0);
  stage<D, BN>(Ks, LD, NULL, 0, k + (size_t)(start + k0) * ks + (size_t)kh * D, ks, kvalid);
  stage<D, BN>(Vs, LD, NULL, 0, v + (size_t)(start + k0) * ks + (size_t)kh * D, ks, kvalid);
  const int g = lane >> 2, t2 = (lane & 3) * 2;
  const int key0 = k0 + warp * 16 + g, key1 = key0 + 8; /* this thread's two key rows */
  const float sl2 = scale * FL_LOG2E;
  float ak[NT][4], av[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int e = 0; e < 4; e++) ak[nt][e] = av[nt][e] = 0.f;
  const int qbeg = CAUSAL ? (k0 / BQ) * BQ : 0;
  for (int hh = 0; hh < group; hh++) {
    const int h = kh * group + hh;
    for (int i0 = qbeg; i0 < len; i0 += BQ) {
      __syncthreads();
      const int qvalid = min(BQ, len - i0);
      const float *qrow = q + (size_t)(start + i0) * qs + (size_t)h * D;
      const float *drow = dout + (size_t)(start + i0) * qs + (size_t)h * D;
      stage<D, BQ>(Qs, LD, Qt, LDT, qrow, qs, qvalid);
      stage<D, BQ>(dOs, LD, dOt, LDT, drow, qs, qvalid);
      if (threadIdx.x < BQ) {
        const int i = i0 + threadIdx.x;
        const size_t idx = (size_t)(start + min(i, len - 1)) * Hq + h;
        ls[threadIdx.x] = lse[idx] * FL_LOG2E;
        ds[threadIdx.x] = delta[idx];
      }
      __syncthreads();
      float st[ST][4], dpt[ST][4];
      dual_scores<D, ST>(st, dpt, Ks, Vs, Qs, dOs, LD, warp * 16, lane);
      /* st -> P^T, dpt -> dS^T (rows = keys, columns = queries) */
#pragma unroll
      for (int nt = 0; nt < ST; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int cq = nt * 8 + t2 + (e & 1), qi = i0 + cq, key = e < 2 ? key0 : key1;
          const bool ok = qi < len && key < len && (!CAUSAL || key <= qi);
          const float p = ok ? exp2f(st[nt][e] * sl2 - ls[cq]) : 0.f;
          st[nt][e] = p;
          dpt[nt][e] = p * (dpt[nt][e] - ds[cq]);
        }
      acc_product<D, BQ / 16>(av, st, dOt, LDT, lane);
      acc_product<D, BQ / 16>(ak, dpt, Qt, LDT, lane);
    }
  }
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int key = r ? key1 : key0;
    if (key >= len) continue;
    const size_t off = (size_t)(start + key) * ks + (size_t)kh * D;
    store_row<D>(dk + off, ak, r, scale, t2);
    store_row<D>(dv + off, av, r, 1.0f, t2);
  }
}

/* ---- dispatch ---- */
/* Q (64 x HPB heads) and two buffers of K and V tiles (64 x D each). */
static size_t fwd_smem(int D, int hpb) { return (size_t)(64 * (hpb * D + 8) + 4 * 64 * (D + 8)) * sizeof(bf16); }
static size_t dq_smem(int D) { return (size_t)(64 * (D + 8) * 2 + 32 * (D + 8) * 2 + D * 40) * sizeof(bf16); }
static size_t dkv_smem(int D) {
  return (size_t)(64 * (D + 8) * 2 + 32 * (D + 8) * 2 + D * 40 * 2) * sizeof(bf16) + 64 * sizeof(float);
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* 1 when the kernels were built for sm_80 or later (BF16 mma.sync) for the current device. Both
 * versions count: PTX from compute_75 JIT-compiled on a Hopper has binaryVersion 90 but was compiled
 * with __CUDA_ARCH__ 750, i.e. with the __trap() above (seen on an H200 with an sm_75 build). */
static int arch_ok(void) {
  static int ok = -1;
  if (ok < 0) {
    cudaFuncAttributes a;
    ok = cudaFuncGetAttributes(&a, flash_fwd_kernel<bf16, 64, true, 1>) == cudaSuccess && a.binaryVersion >= 80 &&
         a.ptxVersion >= 80;
  }
  return ok;
}

extern "C" int aqs_flash_supported(int D, int Hq, int Hkv, int B, int max_seqlen, const void *const *ptrs, int n) {
  if (!arch_ok()) return 0;
  if (D != 64 && D != 80 && D != 128) return 0;
  if (Hkv <= 0 || Hq % Hkv != 0 || Hq > 65535 || B <= 0 || B > 65535 || max_seqlen <= 0 ||
      max_seqlen > 64 * 65535)
    return 0;
  for (int i = 0; i < n; i++)
    if (ptrs[i] && !aligned16(ptrs[i])) return 0;
  return 1;
}

/* Opts a kernel into more than 48 KiB of dynamic shared memory (once per instantiation). */
template <typename K>
static cudaError_t allow_smem(K kernel, size_t bytes, bool &done) {
  if (done) return cudaSuccess;
  cudaError_t rc = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
  if (rc == cudaSuccess) done = true;
  return rc;
}

/* Query heads per forward block: 2 (one K/V tile serves both) when a GQA group holds an even number
 * of heads, except for BF16 inputs with one key tile per sequence, where 1 measured faster (more
 * blocks; the 2-head block is held to 128 registers a thread; docs/cuda.md). AQS_FLASH_HEADS=1 or 2
 * overrides (benchmarks; 2 only where the group is even). The results are the same bits either way. */
static int fwd_heads(int Hq, int Hkv, bool f32, int max_seqlen) {
  static int forced = -1;
  if (forced < 0) {
    const char *env = getenv("AQS_FLASH_HEADS");
    forced = env ? atoi(env) : 0;
  }
  const bool even = (Hq / Hkv) % 2 == 0;
  if (forced == 1 || forced == 2) return forced == 2 && even ? 2 : 1;
  return even && (f32 || max_seqlen > 64) ? 2 : 1;
}

template <typename T, int D, bool CAUSAL, int HPB>
static aqs_status fwd_launch(T *out, float *lse, const T *q, const T *k, const T *v, const int32_t *cu, int B,
                             int max_seqlen, int Hq, int Hkv, aqs_err *e) {
  static bool ok = false;
  const size_t sm = fwd_smem(D, HPB);
  if (allow_smem(flash_fwd_kernel<T, D, CAUSAL, HPB>, sm, ok) != cudaSuccess)
    return aqs_errf(e, AQS_ERR_IO, "cuda attention: cannot reserve %zu bytes of shared memory", sm);
  const unsigned tiles = (unsigned)((max_seqlen + 63) / 64), hb = (unsigned)(Hq / HPB);
  const dim3 grid = CAUSAL ? dim3(hb, (unsigned)B, tiles) : dim3(tiles, hb, (unsigned)B);
  flash_fwd_kernel<T, D, CAUSAL, HPB><<<grid, FL_THREADS * HPB, sm, (cudaStream_t)aqs_cuda_stream()>>>(
      out, lse, q, k, v, cu, Hq, Hkv, 1.0f / sqrtf((float)D));
  AQS_CUDA_LAUNCH_CHECK(e, "flash_fwd_kernel");
  return AQS_OK;
}

template <typename T, int D, bool CAUSAL>
static aqs_status fwd_t(T *out, float *lse, const T *q, const T *k, const T *v, const int32_t *cu, int B,
                        int max_seqlen, int Hq, int Hkv, aqs_err *e) {
  if (fwd_heads(Hq, Hkv, sizeof(T) == 4, max_seqlen) == 2)
    return fwd_launch<T, D, CAUSAL, 2>(out, lse, q, k, v, cu, B, max_seqlen, Hq, Hkv, e);
  return fwd_launch<T, D, CAUSAL, 1>(out, lse, q, k, v, cu, B, max_seqlen, Hq, Hkv, e);
}

template <int D, bool CAUSAL>
static aqs_status bwd_t(float *dq, float *dk, float *dv, float *delta, const float *dout, const float *out,
                        const float *lse, const float *q, const float *k, const float *v, const int32_t *cu, int B,
                        int max_seqlen, int N, int Hq, int Hkv, aqs_err *e) {
  static bool ok_dq = false, ok_dkv = false;
  const float scale = 1.0f / sqrtf((float)D);
  cudaStream_t st = (cudaStream_t)aqs_cuda_stream();
  const size_t rows = (size_t)N * Hq;
  flash_delta_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, st>>>(delta, dout, out, rows, D);
  AQS_CUDA_LAUNCH_CHECK(e, "flash_delta_kernel");
  if (allow_smem(flash_bwd_dq_kernel<D, CAUSAL>, dq_smem(D), ok_dq) != cudaSuccess ||
      allow_smem(flash_bwd_dkv_kernel<D, CAUSAL>, dkv_smem(D), ok_dkv) != cudaSuccess)
    return aqs_errf(e, AQS_ERR_IO, "cuda attention: cannot reserve %zu bytes of shared memory", dkv_smem(D));
  const unsigned tiles = (unsigned)((max_seqlen + 63) / 64);
  flash_bwd_dq_kernel<D, CAUSAL><<<dim3(tiles, (unsigned)Hq, (unsigned)B), FL_THREADS, dq_smem(D), st>>>(
      dq, delta, dout, lse, q, k, v, cu, Hq, Hkv, scale);
  AQS_CUDA_LAUNCH_CHECK(e, "flash_bwd_dq_kernel");
  flash_bwd_dkv_kernel<D, CAUSAL><<<dim3(tiles, (unsigned)Hkv, (unsigned)B), FL_THREADS, dkv_smem(D), st>>>(
      dk, dv, delta, dout, lse, q, k, v, cu, Hq, Hkv, scale);
  AQS_CUDA_LAUNCH_CHECK(e, "flash_bwd_dkv_kernel");
  return AQS_OK;
}

#define FL_DISPATCH(CALL)                                             \
  switch (D) {                                                        \
    case 64: return causal ? CALL(64, true) : CALL(64, false);        \
    case 80: return causal ? CALL(80, true) : CALL(80, false);        \
    case 128: return causal ? CALL(128, true) : CALL(128, false);     \
    default:                                                          \
      return aqs_errf(e, AQS_ERR_UNSUPPORTED, "cuda flash attention: head_dim %d", D); \
  }

extern "C" aqs_status aqs_flash_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                                              const int32_t *cu, int B, int max_seqlen, int Hq, int Hkv, int D,
                                              int causal, aqs_err *e) {
#define FWD(DD, CC) fwd_t<float, DD, CC>(out, lse, q, k, v, cu, B, max_seqlen, Hq, Hkv, e)
  FL_DISPATCH(FWD)
#undef FWD
}

extern "C" aqs_status aqs_flash_attention_fwd_b(uint16_t *out, float *lse, const uint16_t *q, const uint16_t *k,
                                                const uint16_t *v, const int32_t *cu, int B, int max_seqlen, int Hq,
                                                int Hkv, int D, int causal, aqs_err *e) {
  bf16 *o = reinterpret_cast<bf16 *>(out);
  const bf16 *qb = reinterpret_cast<const bf16 *>(q), *kb = reinterpret_cast<const bf16 *>(k),
             *vb = reinterpret_cast<const bf16 *>(v);
#define FWD(DD, CC) fwd_t<bf16, DD, CC>(o, lse, qb, kb, vb, cu, B, max_seqlen, Hq, Hkv, e)
  FL_DISPATCH(FWD)
#undef FWD
}

extern "C" aqs_status aqs_flash_attention_bwd(float *dq, float *dk, float *dv, float *delta, const float *dout,
                                              const float *out, const float *lse, const float *q, const float *k,
                                              const float *v, const int32_t *cu, int B, int max_seqlen, int N,
                                              int Hq, int Hkv, int D, int causal, aqs_err *e) {
#define BWD(DD, CC) bwd_t<DD, CC>(dq, dk, dv, delta, dout, out, lse, q, k, v, cu, B, max_seqlen, N, Hq, Hkv, e)
  FL_DISPATCH(BWD)
#undef BWD
}
