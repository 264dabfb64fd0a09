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
/* Y[M,N] (+)= X[M,K] · W[K,N] (BF16 in, W not transposed: the backward dX = dY · W form), F32 acc. */
aqs_status aqs_cuda_gemm_bf16_nn(const uint16_t *d_x, const uint16_t *d_w, void *d_y, int y_f32, int accumulate,
                                 int M, int N, int K, aqs_err *e);
/* Y[M,N] (BF16 or F32) = (x_scale * Xq[M,K]) · (w_scale * Wq[N,K])^T (+ bias BF16), F8 E4M3
 * operands, the product of the two per-tensor scales applied to the F32 accumulator (alpha).
 * K and N must be multiples of 16. */
aqs_status aqs_cuda_gemm_fp8(const uint8_t *d_xq, const uint8_t *d_wq, float x_scale, float w_scale,
                             const uint16_t *d_bias, void *d_y, int y_f32, int M, int N, int K, aqs_err *e);

#ifdef __cplusplus
}
#endif

#endif
