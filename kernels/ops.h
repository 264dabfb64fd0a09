/* kernels/ops.h: the compute backend interface (cpu and cuda implement the same table).
 * The model code in engine/compute calls only these ops, so one forward/backward runs on any
 * backend. The CPU versions (kernels/cpu/) are the specification; CUDA ones optimize them.
 *
 * Conventions (every op):
 * - Pointers are BACKEND memory (from ops->alloc) unless the parameter says "host".
 * - Activations, gradients, logits are float (F32) buffers. Weights/biases/embeddings are BF16
 *   (aqs_bf16 = raw bits, uint16). Token ids, positions, cu_seqlens are int32.
 * - Layouts are row-major, token-major: (N, C) means N rows (tokens) of C contiguous floats.
 *   N = total tokens of a packed batch (sum of sequence lengths, no padding).
 * - Precision: be->precision selects where outputs are rounded.
 *     AQS_PREC_F32 : every op computes and stores plain F32 (weights upcast exactly from BF16).
 *     AQS_PREC_BF16: mirrors PyTorch running the model in bfloat16: each op's activation
 *       output is rounded to the nearest BF16 value (RNE) at the points torch rounds (listed per
 *       op below) and stored in the float buffer. Statistics (RMSNorm variance, softmax,
 *       attention scores, GEMM accumulation, losses, reductions) are always F32 or wider.
 * - Ops are asynchronous on CUDA and return void. A failure inside an op is sticky: the backend
 *   remembers the first one and reports it from the next sync() (or from any op returning a
 *   host value, which syncs). alloc() reports immediately.
 * - Ops returning host scalars (amax, sums) synchronize. Sums are accumulated in double, in a
 *   fixed order for a given (backend, sizes): same inputs -> same bits, every run.
 * - Unless stated, outputs must not alias inputs. "in place" ops say so.
 */
#ifndef AQS_KERNELS_OPS_H
#define AQS_KERNELS_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef uint16_t aqs_bf16; /* bfloat16 bits: the top half of an IEEE float32 */

typedef enum aqs_precision {
  AQS_PREC_F32 = 0,  /* F32 everywhere: reference for gradients and scores */
  AQS_PREC_BF16 = 1  /* round like torch bf16 at each op output (for matching transformers) */
} aqs_precision;

typedef struct aqs_ops aqs_ops;

/* An open backend. Owned by whoever opened it (kernels/backend.h); closed with ops->close. */
typedef struct aqs_backend {
  const aqs_ops *ops;
  const char *name;        /* "cpu" | "cuda" (static string) */
  char device[160];        /* human description for provenance: "cpu x86_64, 2 threads",
                              "NVIDIA H100 80GB HBM3 (sm_90)" */
  aqs_precision precision; /* may be changed between ops by the model code */
  void *impl;              /* backend-private state */
} aqs_backend;

struct aqs_ops {
  /* ---------------- memory and control ---------------- */
  /* Allocates bytes of backend memory (contents undefined). On failure returns AQS_ERR_NOMEM
   * with a message giving the size asked for, bytes in use and (cuda) the device free memory,
   * suggesting to reduce the batch / tokens per step. bytes == 0 yields a valid unique pointer. */
  aqs_status (*alloc)(aqs_backend *be, size_t bytes, void **out, aqs_err *e);
  void (*free)(aqs_backend *be, void *ptr); /* NULL is a no-op */
  void (*copy_h2d)(aqs_backend *be, void *dst, const void *host_src, size_t bytes);
  void (*copy_d2h)(aqs_backend *be, void *host_dst, const void *src, size_t bytes); /* syncs */
  void (*copy_d2d)(aqs_backend *be, void *dst, const void *src, size_t bytes);
  void (*zero)(aqs_backend *be, void *ptr, size_t bytes);
  /* Waits for all queued ops; returns the first error since the last sync (then clears it). */
  aqs_status (*sync)(aqs_backend *be, aqs_err *e);
  /* Bytes currently allocated through alloc, and the peak since open (host-side accounting;
   * cuda adds nothing hidden beyond its fixed workspaces, which are counted too). */
  void (*mem_stats)(aqs_backend *be, size_t *in_use_bytes, size_t *peak_bytes);
  /* Frees all backend state and be itself. */
  void (*close)(aqs_backend *be);

  /* ---------------- casts ---------------- */
  void (*cast_bf16_to_f32)(aqs_backend *be, float *dst, const aqs_bf16 *src, size_t n);
  /* Round to nearest even; NaN stays NaN; overflow gives +-Inf (as torch .to(bfloat16)). */
  void (*cast_f32_to_bf16)(aqs_backend *be, aqs_bf16 *dst, const float *src, size_t n);
  /* In place: x[i] = bf16_rne(x[i]) stored back as float. Unconditional (ignores precision). */
  void (*round_bf16)(aqs_backend *be, float *x, size_t n);

  /* ---------------- elementwise ---------------- */
  /* out[i] = a[i] + b[i]; out may alias a or b. BF16 mode: out rounded (torch residual add). */
  void (*add)(aqs_backend *be, float *out, const float *a, const float *b, size_t n);

  /* ---------------- embedding ---------------- */
  /* out (N, C) = table[ids[i]] (table (V, C) BF16, upcast exactly). ids in [0, V) (the model
   * code validates ids on the host before upload). */
  void (*embedding)(aqs_backend *be, float *out, const aqs_bf16 *table, const int32_t *ids,
                    int N, int C);

  /* ---------------- RMSNorm (Qwen2RMSNorm) ---------------- */
  /* out (N, C) = w * (x * rstd), rstd[r] = 1/sqrt(mean_c(x[r,c]^2) + eps), statistics in F32.
   * BF16 mode: (x*rstd) rounded to BF16, then w*that rounded (torch: weight * h.to(bf16)).
   * rstd (N) is written when not NULL (saved for backward). */
  void (*rmsnorm_fwd)(aqs_backend *be, float *out, float *rstd, const float *x,
                      const aqs_bf16 *w, int N, int C, float eps);
  /* Gradient w.r.t. x given dout (N, C), the forward input x and its rstd (N).
   * dx = rstd * (w*dout - xhat * mean_c(w*dout*xhat)), xhat = x*rstd.
   * accumulate != 0: dx += that (dx holds the residual-path gradient); else dx = that.
   * BF16 mode: the result (after accumulation) is rounded. dx must not alias dout or x. */
  void (*rmsnorm_bwd)(aqs_backend *be, float *dx, const float *dout, const float *x,
                      const float *rstd, const aqs_bf16 *w, int N, int C, int accumulate);

  /* ---------------- linear layers ---------------- */
  /* y (N, M) = x (N, K) @ w(M, K)^T + bias (M) (bias may be NULL). F32 accumulation.
   * BF16 mode: y rounded once after the bias add (cuBLASLt bias epilogue). */
  void (*linear)(aqs_backend *be, float *y, const float *x, const aqs_bf16 *w,
                 const aqs_bf16 *bias, int N, int K, int M);
  /* Input gradient: dx (N, K) (+)= dy (N, M) @ w (M, K). accumulate != 0 adds into dx.
   * BF16 mode: the product is rounded, then (if accumulating) the sum is rounded
   * (torch: each matmul grad is bf16, autograd sums them in bf16). */
  void (*linear_bwd_input)(aqs_backend *be, float *dx, const float *dy, const aqs_bf16 *w,
                           int N, int K, int M, int accumulate);
  /* FP8 E4M3 (OCP e4m3fn: no Inf, max 448) quantization with a per-tensor scale, bit-exact
   * with kernels/fp8.h aqs_fp8_quantize_f32 / aqs_fp8_quantize_bf16 with AQS_FP8_REF_TORCH_CUDA:
   * F32: q = e4m3_rne_sat(x / scale) (float division); BF16: the scale is first rounded to
   * BF16 and x/scale rounded to BF16 before the E4M3 rounding (torch's bf16 arithmetic);
   * saturate at +-448, NaN -> 0x7F. scale > 0. */
  void (*quantize_fp8_f32)(aqs_backend *be, uint8_t *q, const float *x, size_t n, float scale);
  void (*quantize_fp8_bf16)(aqs_backend *be, uint8_t *q, const aqs_bf16 *x, size_t n,
                            float scale);
  /* FP8 fake-quant GEMM: y (N, M) = (x_scale * xq (N, K)) @ (w_scale * wq (M, K))^T + bias,
   * with F32 accumulation of the exact E4M3 values and the two scales applied to the
   * accumulator (cuBLASLt FP8 with per-tensor A/B scales). bias may be NULL.
   * BF16 mode: y rounded once after the bias add. */
  void (*linear_fp8)(aqs_backend *be, float *y, const uint8_t *xq, float x_scale,
                     const uint8_t *wq, float w_scale, const aqs_bf16 *bias, int N, int K, int M);
  /* out[i] = E4M3 value of q[i] * scale (F32 multiply, exact for normal results; never
   * rounded to BF16): what an FP8 KV cache hands attention after its per-tensor dequant. */
  void (*dequantize_fp8)(aqs_backend *be, float *out, const uint8_t *q, size_t n, float scale);

  /* ---------------- rotary position embedding (M-RoPE) ---------------- */
  /* In place on x (N, H, D) (q or k laid out as a linear output (N, H*D)), rotate-half form:
   *   x' = x*cos + rotate_half(x)*sin, rotate_half(x) = cat(-x[D/2:], x[:D/2]).
   * inv_freq[j] = 1 / theta^(2j/D) (F32), j in [0, D/2). Frequency j takes its position from
   * axis a = the section containing j (mrope_section (host, 3 ints) sums to D/2: j <
   * s0 -> axis 0 (t), < s0+s1 -> axis 1 (h), else axis 2 (w)); angle = pos[a*N + i] * inv_freq[j]
   * computed in F32; cos/sin of column c use frequency c mod D/2. Text tokens have the same
   * position on all 3 axes. pos is (3, N) int32 in backend memory.
   * BF16 mode: cos/sin rounded to BF16 first, then x*cos, rotate_half(x)*sin, and their sum
   * each rounded (torch apply_multimodal_rotary_pos_emb on bf16 tensors). */
  void (*rope_fwd)(aqs_backend *be, float *x, const int32_t *pos, int N, int H, int D,
                   const int mrope_section[3], float theta);
  /* In place: gradient w.r.t. the rope input given the gradient w.r.t. its output
   * (the transposed rotation: dx = dy*cos - rotate_half(dy*sin) ... exactly the adjoint).
   * BF16 mode: products and sum rounded like the forward. */
  void (*rope_bwd)(aqs_backend *be, float *dx, const int32_t *pos, int N, int H, int D,
                   const int mrope_section[3], float theta);

  /* ---------------- attention ---------------- */
  /* Causal grouped-query attention over packed variable-length sequences.
   * q (N, Hq*D), k and v (N, Hkv*D): head h of a token is columns [h*D, (h+1)*D).
   * Sequence s holds tokens [cu_seqlens[s], cu_seqlens[s+1]) (int32, B+1 entries, backend
   * memory, cu_seqlens[0] = 0, cu_seqlens[B] = N); a token attends to itself and earlier tokens
   * of its own sequence only. Query head h uses kv head h / (Hq/Hkv). Scale 1/sqrt(D).
   * out (N, Hq*D); lse (N, Hq) (host-agnostic F32 log-sum-exp of the scaled scores, natural
   * log) saved for backward when not NULL. max_seqlen = longest sequence (host int).
   * Softmax and accumulation in F32. BF16 mode: out rounded (sdpa on bf16); the CUDA backend's
   * tensor-core path also rounds the probabilities (and, backward, dS) to BF16 as operands of the
   * second product, as sdpa does (tolerances in docs/cuda.md). */
  void (*attention_fwd)(aqs_backend *be, float *out, float *lse, const float *q, const float *k,
                        const float *v, const int32_t *cu_seqlens, int B, int max_seqlen, int N,
                        int Hq, int Hkv, int D);
  /* Gradients dq (N, Hq*D), dk, dv (N, Hkv*D) (overwritten) of the forward above, given dout,
   * the forward out and lse. dk/dv sum over the query heads sharing a kv head.
   * BF16 mode: dq, dk, dv rounded at the end. */
  void (*attention_bwd)(aqs_backend *be, float *dq, float *dk, float *dv, const float *dout,
                        const float *out, const float *lse, const float *q, const float *k,
                        const float *v, const int32_t *cu_seqlens, int B, int max_seqlen, int N,
                        int Hq, int Hkv, int D);

  /* ---------------- SwiGLU MLP activation ---------------- */
  /* out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)).
   * BF16 mode: silu(gate) rounded, then the product rounded. n = N * intermediate. */
  void (*swiglu_fwd)(aqs_backend *be, float *out, const float *gate, const float *up, size_t n);
  /* dgate[i] = dout*up*silu'(gate), dup[i] = dout*silu(gate). BF16 mode: both rounded.
   * dgate/dup may not alias each other; they may alias gate/up respectively (in place). */
  void (*swiglu_bwd)(aqs_backend *be, float *dgate, float *dup, const float *dout,
                     const float *gate, const float *up, size_t n);

  /* ---------------- vision tower (Qwen2.5-VL; engine/compute/vision*.c) ---------------- */
  /* Row gather: dst (n, width) row i = src row idx[i]. idx (n) int32 backend memory, every entry
   * a valid row of src (the model code builds the indices). Exact copy (no rounding). */
  void (*gather_rows)(aqs_backend *be, float *dst, const float *src, const int32_t *idx, int n,
                      int width);
  /* Row scatter: dst row idx[i] = src row i for i in [0, n); other dst rows untouched. The idx
   * entries must be distinct (then the result does not depend on order). Exact copy. */
  void (*scatter_rows)(aqs_backend *be, float *dst, const float *src, const int32_t *idx, int n,
                       int width);
  /* GELU, exact erf form (torch nn.GELU()): out = x * 0.5 * (1 + erf(x / sqrt(2))), F32 math.
   * BF16 mode: out rounded. out may alias x. */
  void (*gelu_fwd)(aqs_backend *be, float *out, const float *x, size_t n);
  /* dx = dout * gelu'(x), gelu'(x) = Phi(x) + x * phi(x). BF16 mode: dx rounded. dx may alias dout. */
  void (*gelu_bwd)(aqs_backend *be, float *dx, const float *dout, const float *x, size_t n);
  /* Vision 2-D rotary embedding, in place on x (N, H, D) (rotate-half form as rope_fwd).
   * pos (2, N) int32 backend: row 0 = patch row (h), row 1 = patch column (w).
   * inv_freq[j] = 1 / theta^(2j / (D/2)) (F32), j in [0, D/4). Column c uses f = c mod D/2:
   * f < D/4 -> angle = h * inv_freq[f], else angle = w * inv_freq[f - D/4] (F32 product);
   * cos/sin in F32. x*cos + rotate_half(x)*sin in F32, rounded once in BF16 mode (transformers'
   * apply_rotary_pos_emb_vision upcasts q/k to float). D % 4 == 0. */
  void (*vision_rope_fwd)(aqs_backend *be, float *x, const int32_t *pos, int N, int H, int D,
                          float theta);
  /* In place: the adjoint of vision_rope_fwd (gradient w.r.t. its input). BF16: rounded once. */
  void (*vision_rope_bwd)(aqs_backend *be, float *dx, const int32_t *pos, int N, int H, int D,
                          float theta);
  /* Bidirectional (non-causal) multi-head attention over packed segments: every token of segment
   * s = [cu_seqlens[s], cu_seqlens[s+1]) attends to every token of s. q, k, v, out (N, H*D);
   * lse (N, H) as attention_fwd (may be NULL). Scale 1/sqrt(D), F32 softmax. Empty segments
   * (cu_seqlens[s] == cu_seqlens[s+1]) are allowed. BF16 mode: out rounded. */
  void (*attention_full_fwd)(aqs_backend *be, float *out, float *lse, const float *q,
                             const float *k, const float *v, const int32_t *cu_seqlens, int B,
                             int max_seqlen, int N, int H, int D);
  /* Gradients dq, dk, dv (N, H*D) (overwritten) of attention_full_fwd. BF16: rounded at the end. */
  void (*attention_full_bwd)(aqs_backend *be, float *dq, float *dk, float *dv, const float *dout,
                             const float *out, const float *lse, const float *q, const float *k,
                             const float *v, const int32_t *cu_seqlens, int B, int max_seqlen,
                             int N, int H, int D);

  /* ---------------- losses and distributions (always F32 math) ---------------- */
  /* Next-token cross-entropy on logits (N, V) with targets (N) (target < 0: row ignored).
   * *loss_sum_host = sum over kept rows of -log_softmax(logits)[target] (double).
   * If dlogits != NULL: dlogits = grad_scale * (softmax(logits) - onehot(target)) on kept rows,
   * 0 on ignored rows; dlogits may equal logits (in place). BF16 mode: dlogits rounded. */
  void (*cross_entropy)(aqs_backend *be, float *dlogits, const float *logits,
                        const int32_t *targets, int N, int V, float grad_scale,
                        double *loss_sum_host);
  /* out (N, V) = log_softmax(logits) row-wise, F32 (never rounded). out may equal logits. */
  void (*log_softmax)(aqs_backend *be, float *out, const float *logits, int N, int V);
  /* *kl_sum_host = sum over rows r, columns v of exp(logp_ref[r,v]) * (logp_ref[r,v] -
   * log_softmax(logits)[r,v]) (KL(p_ref || p) summed over the N rows), in double. Terms with
   * logp_ref = -Inf contribute 0. logits is not modified. */
  void (*kl_div)(aqs_backend *be, const float *logp_ref, const float *logits, int N, int V,
                 double *kl_sum_host);
  /* Eval's per-row comparison in one pass: row_kl_host[r] = the KL term kl_div sums for row r
   * (same math, same bits), argmax_host[r] = the first index of the largest logits[r, v] (NaN
   * never wins). Host outputs (N each), synchronized. logits is not modified. */
  void (*kl_argmax_rows)(aqs_backend *be, const float *logp_ref, const float *logits, int N, int V,
                         double *row_kl_host, int32_t *argmax_host);

  /* ---------------- reductions for calibration and scoring ---------------- */
  /* *amax_host = max |x[i]| over n elements (0 for n == 0); NaN if any element is NaN, +Inf if
   * any is +-Inf (so a non-finite activation is detected by the caller). */
  void (*amax_f32)(aqs_backend *be, const float *x, size_t n, float *amax_host);
  void (*amax_bf16)(aqs_backend *be, const aqs_bf16 *x, size_t n, float *amax_host);
  /* ModelOpt AutoQuantize gradient score of one module:
   * *sum_host = sum_i t_i^2, t_i = clamp(g[i] * (y_q[i] - y[i]), -1e10, 1e10) computed in F32,
   * squared and summed in double (a NaN term propagates). g = dL/dy, y = unquantized output, y_q = fake-quant output. */
  void (*grad_score)(aqs_backend *be, const float *g, const float *y, const float *y_q,
                     size_t n, double *sum_host);
  /* amax_f32 without a synchronization: the result (same value, same bits) goes to out[0] in
   * BACKEND memory; read many at once with one copy_d2h (calibration gathers a batch's amaxes). */
  void (*amax_f32_async)(aqs_backend *be, const float *x, size_t n, float *out);
  /* grad_score without a synchronization: the sum (same bits) goes to out[0] in BACKEND memory. */
  void (*grad_score_async)(aqs_backend *be, const float *g, const float *y, const float *y_q,
                           size_t n, double *out);

  /* ---------------- BF16 activation storage (forward passes in BF16 semantics) ----------------
   * In AQS_PREC_BF16 every op output is a BF16 value already, so a forward that needs no
   * gradient (calibration) can keep its activations as BF16 arrays: half the bytes, no cast
   * before or after a GEMM. Each op below is DEFINED as its F32-buffer twin above run in
   * AQS_PREC_BF16, with BF16 inputs upcast exactly and the (BF16-valued) outputs stored as BF16:
   * same values, bit for bit. They ignore be->precision. The residual stream (x of rmsnorm_fwd_b,
   * a, b and out of add_b) is BF16 too: its values are BF16 values in BF16 mode.
   * amax (may be NULL) is BACKEND memory: *amax = max(*amax, max |output|) without a sync, NaN
   * wins over everything, +Inf over finite values (the start value must be >= 0, e.g. zeroed):
   * the op's output amax fused into the pass that writes it. */
  void (*rmsnorm_fwd_b)(aqs_backend *be, aqs_bf16 *out, float *rstd, const aqs_bf16 *x,
                        const aqs_bf16 *w, int N, int C, float eps, float *amax);
  /* y (N, M) = x (N, K) @ w (M, K)^T + bias, F32 accumulation, rounded once to BF16. */
  void (*linear_b)(aqs_backend *be, aqs_bf16 *y, const aqs_bf16 *x, const aqs_bf16 *w,
                   const aqs_bf16 *bias, int N, int K, int M);
  /* rope_fwd in place on BF16 x; amax of the rotated x. */
  void (*rope_fwd_b)(aqs_backend *be, aqs_bf16 *x, const int32_t *pos, int N, int H, int D,
                     const int mrope_section[3], float theta, float *amax);
  /* attention_fwd on BF16 q, k, v with a BF16 out (lse F32, may be NULL). */
  void (*attention_fwd_b)(aqs_backend *be, aqs_bf16 *out, float *lse, const aqs_bf16 *q,
                          const aqs_bf16 *k, const aqs_bf16 *v, const int32_t *cu_seqlens, int B,
                          int max_seqlen, int N, int Hq, int Hkv, int D);
  /* out[i] = bf16(a[i] + b[i]), all BF16 (out may alias a or b); amax of out. */
  void (*add_b)(aqs_backend *be, aqs_bf16 *out, const aqs_bf16 *a, const aqs_bf16 *b, size_t n,
                float *amax);
  /* swiglu_fwd on BF16 gate/up into BF16 out (out may alias gate or up); amax of out. */
  void (*swiglu_fwd_b)(aqs_backend *be, aqs_bf16 *out, const aqs_bf16 *gate, const aqs_bf16 *up,
                       size_t n, float *amax);
  /* *amax = max(*amax, max |x|) as above (no sync). */
  void (*amax_bf16_async)(aqs_backend *be, const aqs_bf16 *x, size_t n, float *amax);
};

#endif
