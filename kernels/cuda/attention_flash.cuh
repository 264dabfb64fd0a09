/* kernels/cuda/attention_flash.cuh: the tensor-core (flash-style) attention of attention_flash.cu, used
 * by the launchers in attention.cu for BF16 mode (causal GQA and the vision tower's bidirectional
 * segments). Private to kernels/cuda; same conventions as kernels/ops.h attention_fwd/bwd. */
#ifndef AQS_KERNELS_CUDA_ATTENTION_FLASH_CUH
#define AQS_KERNELS_CUDA_ATTENTION_FLASH_CUH

#include "kernels/cuda/cuda_common.cuh"

/* 1 when the flash kernels handle this shape: head_dim 64, 80 or 128, Hq a multiple of Hkv, B and
 * Hq <= 65535, max_seqlen <= 64 * 65535 (grid dimensions), every non-NULL pointer of ptrs[0..n) 16-byte aligned, and the
 * kernels built for sm_80 or later (BF16 mma.sync; a PTX-only sm_75 build falls back). */
extern "C" int aqs_flash_supported(int D, int Hq, int Hkv, int B, int max_seqlen, const void *const *ptrs, int n);

/* out, lse as attention_fwd (lse may be NULL); causal = 0: every token of a segment sees all of it.
 * Output rounded to BF16. Asynchronous on the aqs stream. */
extern "C" aqs_status aqs_flash_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                                              const int32_t *cu, int B, int max_seqlen, int Hq, int Hkv, int D,
                                              int causal, aqs_err *e);

/* The same on BF16 q, k, v (bits) into a BF16 out: same values, bit for bit (kernels/ops.h
 * attention_fwd_b). */
extern "C" aqs_status aqs_flash_attention_fwd_b(uint16_t *out, float *lse, const uint16_t *q, const uint16_t *k,
                                                const uint16_t *v, const int32_t *cu, int B, int max_seqlen, int Hq,
                                                int Hkv, int D, int causal, aqs_err *e);

/* dq, dk, dv as attention_bwd, rounded to BF16; delta: (N, Hq) floats of scratch. */
extern "C" aqs_status aqs_flash_attention_bwd(float *dq, float *dk, float *dv, float *delta, const float *dout,
                                              const float *out, const float *lse, const float *q, const float *k,
                                              const float *v, const int32_t *cu, int B, int max_seqlen, int N,
                                              int Hq, int Hkv, int D, int causal, aqs_err *e);

#endif
