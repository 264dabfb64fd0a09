/* kernels/cuda/launchers.h: plain C entry points of the CUDA backend (one section per kernels/cuda
 * file). kernels/cuda/ops_cuda.c maps kernels/ops.h onto these; tests and benchmarks may call them
 * directly. Every pointer argument named d_* is device memory; every launch goes on the backend's
 * single stream (aqs_cuda_stream), so calls are ordered and a host copy after them sees their results.
 * Shapes are row-major; N = number of tokens (rows), C = channels. BF16 tensors are uint16_t bits. */
#ifndef AQS_KERNELS_CUDA_LAUNCHERS_H
#define AQS_KERNELS_CUDA_LAUNCHERS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "common/err.h"

/* ---- device.cu: device, stream, memory ---------------------------------------------------- */

/* Number of usable CUDA devices (0 when no driver/GPU; never fails). */
int aqs_cuda_device_count(void);
/* Selects device_index, creates the stream, the cuBLASLt handle and the memory pool. Idempotent.
 * AQS_ERR_UNSUPPORTED "no CUDA GPU ..." when none; AQS_ERR_INTERNAL on driver errors. */
aqs_status aqs_cuda_init(int device_index, aqs_err *e);
/* Device description for provenance: "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)". */
const char *aqs_cuda_device_desc(void);
/* The backend's stream (a cudaStream_t). */
void *aqs_cuda_stream(void);
/* Allocates bytes of device memory from the pool. 'what' names the buffer for the error message:
 * on out-of-memory, AQS_ERR_NOMEM "cuda: out of GPU memory allocating X MiB for <what> (aqs holds
 * Y MiB, device free Z of T MiB): reduce the batch size or tokens per step". bytes == 0 -> NULL, OK. */
aqs_status aqs_cuda_malloc(void **d_ptr, size_t bytes, const char *what, aqs_err *e);
/* Returns memory to the pool (stream-ordered); NULL is a no-op. */
void aqs_cuda_free(void *d_ptr);
/* Copies (stream-ordered); h2d/d2h copies complete before returning (synchronous for the host). */
aqs_status aqs_cuda_copy_h2d(void *d_dst, const void *h_src, size_t bytes, aqs_err *e);
aqs_status aqs_cuda_copy_d2h(void *h_dst, const void *d_src, size_t bytes, aqs_err *e);
aqs_status aqs_cuda_copy_d2d(void *d_dst, const void *d_src, size_t bytes, aqs_err *e);
aqs_status aqs_cuda_memset0(void *d_dst, size_t bytes, aqs_err *e);
/* Waits for all work on the stream; reports any asynchronous kernel error. */
aqs_status aqs_cuda_sync(aqs_err *e);
/* Bytes held by live allocations now / at most since the last reset. */
size_t aqs_cuda_bytes_in_use(void);
size_t aqs_cuda_peak_bytes(void);
void aqs_cuda_reset_peak(void);
/* Event-based timer on the stream: start, then stop returns elapsed milliseconds (synchronizes). */
void aqs_cuda_timer_start(void);
float aqs_cuda_timer_stop_ms(void);

/* ---- gemm_lt.cu: cuBLASLt GEMMs ------------------------------------------------------------ */

/* Y[M,N] (BF16 or F32 per y_f32) = X[M,K] (BF16) · W[N,K]^T (BF16) (+ bias[N] BF16 when d_bias)
 * (+ Y when accumulate: Y += ...), F32 accumulate. Row-major; the PyTorch nn.Linear convention.
 * Heuristics and workspace are cached per shape. */
aqs_status aqs_cuda_gemm_bf16(const uint16_t *d_x, const uint16_t *d_w, const uint16_t *d_bias,
                              void *d_y, int y_f32, int accumulate, int M, int N, int K, aqs_err *e);
/* Y[M,N] (F32) = alpha * X[M,K] · W[N,K]^T (BF16 operands, F32 accumulate, no bias). */
aqs_status aqs_cuda_gemm_bf16_alpha(const uint16_t *d_x, const uint16_t *d_w, float alpha, float *d_y, int M, int N,
                                    int K, aqs_err *e);
/* Y[M,N] (+)= X[M,K] · W[K,N] (BF16 in, W not transposed: the backward dX = dY · W form), F32 acc. */
aqs_status aqs_cuda_gemm_bf16_nn(const uint16_t *d_x, const uint16_t *d_w, void *d_y, int y_f32, int accumulate,
                                 int M, int N, int K, aqs_err *e);
/* Y[M,N] (BF16 or F32) = (x_scale * Xq[M,K]) · (w_scale * Wq[N,K])^T (+ bias BF16), F8 E4M3
 * operands, the product of the two per-tensor scales applied to the F32 accumulator (alpha).
 * K and N must be multiples of 16 (aqs_cuda_gemm_fp8_shape_ok); other shapes are AQS_ERR_UNSUPPORTED. */
aqs_status aqs_cuda_gemm_fp8(const uint8_t *d_xq, const uint8_t *d_wq, float x_scale, float w_scale,
                             const uint16_t *d_bias, void *d_y, int y_f32, int M, int N, int K, aqs_err *e);
/* 1 when aqs_cuda_gemm_fp8 takes an N x K weight (cuBLASLt's FP8 tensor cores need both multiples
 * of 16); callers decode other shapes to BF16 instead. */
int aqs_cuda_gemm_fp8_shape_ok(int N, int K);
/* The plan cache's counters since the process started (plans are cached per exact shape, at most
 * capacity at once, least recently used replaced; a lookup is one GEMM call). */
typedef struct aqs_cuda_plan_stats {
  int capacity, live;
  uint64_t hits, misses, evictions;
} aqs_cuda_plan_stats;
void aqs_cuda_gemm_plan_stats(aqs_cuda_plan_stats *out);

/* ---- elementwise.cu ------------------------------------------------------------------------ */
/* rnd != 0: round results to BF16 (AQS_PREC_BF16). */
aqs_status aqs_cuda_cast_bf16_to_f32(float *d_dst, const uint16_t *d_src, size_t n, aqs_err *e);
aqs_status aqs_cuda_cast_f32_to_bf16(uint16_t *d_dst, const float *d_src, size_t n, aqs_err *e);
aqs_status aqs_cuda_round_bf16(float *d_x, size_t n, aqs_err *e);
aqs_status aqs_cuda_add(float *d_out, const float *d_a, const float *d_b, size_t n, int rnd, aqs_err *e);
/* out (N, C) = table[ids] (table (V, C) BF16). */
aqs_status aqs_cuda_embedding(float *d_out, const uint16_t *d_table, const int32_t *d_ids, int N, int C,
                              aqs_err *e);
/* y (N, M) = rnd(y + bias) (bias BF16 (M) or NULL); no-op when neither bias nor rnd. */
aqs_status aqs_cuda_bias_round(float *d_y, const uint16_t *d_bias, int N, int M, int rnd, aqs_err *e);
/* dst = bf16(dst + bf16(prod)), n elements. */
aqs_status aqs_cuda_accumulate_round(float *d_dst, const float *d_prod, size_t n, aqs_err *e);
/* parts (nparts, n) BF16: parts[0] = bf16(x), parts[p] = bf16(x - sum of earlier parts); with 3
 * parts the sum represents every normal F32 exactly (3 x 8 significand bits). */
aqs_status aqs_cuda_split_bf16(uint16_t *d_parts, const float *d_x, size_t n, int nparts, aqs_err *e);

/* ---- rmsnorm.cu ---------------------------------------------------------------------------- */
aqs_status aqs_cuda_rmsnorm_fwd(float *d_out, float *d_rstd, const float *d_x, const uint16_t *d_w, int N, int C,
                                float eps, int rnd, aqs_err *e);
aqs_status aqs_cuda_rmsnorm_bwd(float *d_dx, const float *d_dout, const float *d_x, const float *d_rstd,
                                const uint16_t *d_w, int N, int C, int accumulate, int rnd, aqs_err *e);

/* ---- rope.cu ------------------------------------------------------------------------------- */
/* In place on x (N, H, D); pos (3, N); inv_freq (D/2) F32 device table; backward: the adjoint. */
aqs_status aqs_cuda_rope(float *d_x, const int32_t *d_pos, const float *d_inv_freq, int N, int H, int D,
                         const int mrope_section[3], int rnd, int backward, aqs_err *e);

/* ---- attention.cu (+ attention_flash.cu) --------------------------------------------------- */
/* Causal GQA over packed sequences (kernels/ops.h attention_fwd/bwd); D <= 256. BF16 mode with
 * head_dim 64/80/128 runs the tensor-core kernels, otherwise the F32 warp-per-row kernels. */
aqs_status aqs_cuda_attention_fwd(float *d_out, float *d_lse, const float *d_q, const float *d_k,
                                  const float *d_v, const int32_t *d_cu_seqlens, int B, int max_seqlen, int N,
                                  int Hq, int Hkv, int D, int rnd, aqs_err *e);
/* Scratch bytes for the backward (delta (N, Hq) and per-head dk/dv partials (N, Hq, D)). */
size_t aqs_cuda_attention_bwd_scratch_bytes(int N, int Hq, int D);
aqs_status aqs_cuda_attention_bwd(float *d_dq, float *d_dk, float *d_dv, void *d_scratch, const float *d_dout,
                                  const float *d_out, const float *d_lse, const float *d_q, const float *d_k,
                                  const float *d_v, const int32_t *d_cu_seqlens, int B, int max_seqlen, int N,
                                  int Hq, int Hkv, int D, int rnd, aqs_err *e);
/* Bidirectional MHA over packed segments, the vision tower's windows and frames (kernels/ops.h
 * attention_full_fwd/bwd): the same kernels as above with every token of a segment visible. */
aqs_status aqs_cuda_attention_full_fwd(float *d_out, float *d_lse, const float *d_q, const float *d_k,
                                       const float *d_v, const int32_t *d_cu, int B, int max_seqlen, int N, int H,
                                       int D, int rnd, aqs_err *e);
/* Scratch bytes for the backward (delta (N, H)). */
size_t aqs_cuda_attention_full_bwd_scratch_bytes(int N, int H);
aqs_status aqs_cuda_attention_full_bwd(float *d_dq, float *d_dk, float *d_dv, void *d_scratch, const float *d_dout,
                                       const float *d_out, const float *d_lse, const float *d_q, const float *d_k,
                                       const float *d_v, const int32_t *d_cu, int B, int max_seqlen, int N, int H,
                                       int D, int rnd, aqs_err *e);

/* ---- gather.cu ----------------------------------------------------------------------------- */
/* scatter == 0: dst row i = src row idx[i]; else dst row idx[i] = src row i (n rows of width). */
aqs_status aqs_cuda_gather_rows(float *d_dst, const float *d_src, const int32_t *d_idx, int n, int width,
                                int scatter, aqs_err *e);

/* ---- gelu.cu ------------------------------------------------------------------------------- */
/* backward == 0: out = gelu(x) (d_dout unused); else out = dout * gelu'(x). */
aqs_status aqs_cuda_gelu(float *d_out, const float *d_dout, const float *d_x, size_t n, int rnd, int backward,
                         aqs_err *e);

/* ---- vision_rope.cu ------------------------------------------------------------------------ */
/* In place on x (N, H, D); pos (2, N) (row, column); backward: the adjoint. */
aqs_status aqs_cuda_vision_rope(float *d_x, const int32_t *d_pos, int N, int H, int D, float theta, int rnd,
                                int backward, aqs_err *e);

/* ---- swiglu.cu ----------------------------------------------------------------------------- */
aqs_status aqs_cuda_swiglu_fwd(float *d_out, const float *d_gate, const float *d_up, size_t n, int rnd, aqs_err *e);
aqs_status aqs_cuda_swiglu_bwd(float *d_dgate, float *d_dup, const float *d_dout, const float *d_gate,
                               const float *d_up, size_t n, int rnd, aqs_err *e);

/* ---- loss.cu ------------------------------------------------------------------------------- */
/* d_rows: scratch of N + 1 doubles. Results summed in double, fixed order, copied to the host. */
aqs_status aqs_cuda_cross_entropy(float *d_dlogits, const float *d_logits, const int32_t *d_targets, int N, int V,
                                  float grad_scale, int rnd, double *d_rows, double *h_loss_sum, aqs_err *e);
aqs_status aqs_cuda_log_softmax(float *d_out, const float *d_logits, int N, int V, aqs_err *e);
aqs_status aqs_cuda_kl_div(const float *d_logp_ref, const float *d_logits, int N, int V, double *d_rows,
                           double *h_kl_sum, aqs_err *e);
aqs_status aqs_cuda_kl_argmax_rows(const float *d_logp_ref, const float *d_logits, int N, int V,
                                   double *d_rows, double *h_row_kl, int32_t *h_argmax, aqs_err *e);

/* ---- reduce.cu ----------------------------------------------------------------------------- */
/* Bytes of device scratch the two reductions below need. */
size_t aqs_cuda_reduce_scratch_bytes(void);
/* max |x| (bf16 != 0: x holds BF16 bits); NaN if any NaN. Synchronizes. */
aqs_status aqs_cuda_amax(const void *d_x, int bf16, size_t n, void *d_scratch, float *h_amax, aqs_err *e);
/* The F32 amax into device memory d_amax (one float), stream-ordered, no synchronization. */
aqs_status aqs_cuda_amax_async(const float *d_x, size_t n, void *d_scratch, float *d_amax, aqs_err *e);
/* sum clamp(g*(yq - y), +-1e10)^2 in double. Synchronizes. */
/* The same sum into device memory d_sum (one double), stream-ordered, no synchronization. */
aqs_status aqs_cuda_grad_score_async(const float *d_g, const float *d_y, const float *d_yq, size_t n, void *d_scratch,
                                     double *d_sum, aqs_err *e);
aqs_status aqs_cuda_grad_score(const float *d_g, const float *d_y, const float *d_yq, size_t n, void *d_scratch,
                               double *h_sum, aqs_err *e);

/* ---- fp8.cu -------------------------------------------------------------------------------- */
/* E4M3 codes of x / scale, bit-exact with kernels/fp8.h; ref 0 = AQS_FP8_REF_TORCH_CUDA, 1 = CPU. */
aqs_status aqs_cuda_quantize_fp8_f32(uint8_t *d_q, const float *d_x, size_t n, float scale, int ref, aqs_err *e);
aqs_status aqs_cuda_quantize_fp8_bf16(uint8_t *d_q, const uint16_t *d_x, size_t n, float scale, int ref,
                                      aqs_err *e);
/* out = BF16 bits of the unscaled E4M3 value of q (exact). */
aqs_status aqs_cuda_fp8_to_bf16(uint16_t *d_out, const uint8_t *d_q, size_t n, aqs_err *e);
/* out = float(q) * scale (F32 multiply). */
aqs_status aqs_cuda_dequantize_fp8(float *d_out, const uint8_t *d_q, size_t n, float scale, aqs_err *e);

/* ---- BF16 activation storage (kernels/ops.h *_b ops) ------------------------------------------
 * Each is its F32 twin above with rnd set, inputs/outputs as BF16 bits where the op says, the same
 * bits. d_amax (may be NULL): one float of device memory that gets max(*d_amax, max |output|)
 * through an atomic on its bits (NaN wins, then +Inf; start value +0 or more), no synchronization.
 * linear_b needs no launcher of its own: aqs_cuda_gemm_bf16 with y_f32 = 0 writes BF16 y. */
/* rmsnorm.cu: out (N, C) BF16; rstd may be NULL. */
aqs_status aqs_cuda_rmsnorm_fwd_b(uint16_t *d_out, float *d_rstd, const float *d_x, const uint16_t *d_w, int N, int C,
                                  float eps, float *d_amax, aqs_err *e);
/* rope.cu: forward in place on BF16 x (N, H, D). */
aqs_status aqs_cuda_rope_fwd_b(uint16_t *d_x, const int32_t *d_pos, const float *d_inv_freq, int N, int H, int D,
                               const int mrope_section[3], float *d_amax, aqs_err *e);
/* elementwise.cu: out (F32, may alias a) = bf16(a + b), b BF16. */
aqs_status aqs_cuda_add_b(float *d_out, const float *d_a, const uint16_t *d_b, size_t n, float *d_amax, aqs_err *e);
/* swiglu.cu: out = bf16(bf16(silu(gate)) * up), all BF16; out may alias gate or up. The first call
 * on a device also fills its silu table (16 KB of device memory, never freed; thread-safe). */
aqs_status aqs_cuda_swiglu_fwd_b(uint16_t *d_out, const uint16_t *d_gate, const uint16_t *d_up, size_t n,
                                 float *d_amax, aqs_err *e);
/* reduce.cu: only the fold of max |x| (d_amax not NULL). */
aqs_status aqs_cuda_amax_bf16_fold(const uint16_t *d_x, size_t n, float *d_amax, aqs_err *e);

/* ---- attention.cu: BF16 activation storage (flash) ------------------------------------------- */
/* kernels/ops.h attention_fwd_b: BF16 q, k, v (bits) -> BF16 out, F32 lse (may be NULL); causal = 0:
 * bidirectional segments (as attention_full_fwd). Same bits as aqs_cuda_attention_fwd (or _full_fwd)
 * with rnd on the same values. d_scratch: aqs_cuda_attention_fwd_b_scratch_bytes for the same
 * arguments (0, NULL allowed, when the tensor-core kernels read the BF16 tensors directly; else F32
 * copies for the per-row kernels). */
size_t aqs_cuda_attention_fwd_b_scratch_bytes(const uint16_t *d_out, const float *d_lse, const uint16_t *d_q,
                                              const uint16_t *d_k, const uint16_t *d_v, int B, int max_seqlen, int N,
                                              int Hq, int Hkv, int D);
aqs_status aqs_cuda_attention_fwd_b(uint16_t *d_out, float *d_lse, const uint16_t *d_q, const uint16_t *d_k,
                                    const uint16_t *d_v, const int32_t *d_cu, int B, int max_seqlen, int N, int Hq,
                                    int Hkv, int D, int causal, void *d_scratch, aqs_err *e);

#ifdef __cplusplus
}
#endif

#endif
