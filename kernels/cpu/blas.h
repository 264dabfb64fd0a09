/* kernels/cpu/blas.h: the CPU backend's one BLAS call (sgemm), from OpenBLAS loaded on first use
 * with a fixed kernel set, so that the CPU backend gives the same bits on every CPU model (see
 * blas.c for why and how).
 * Errors: aqs_blas_load returns AQS_ERR_UNSUPPORTED naming the library when it cannot be loaded.
 * Threads: aqs_blas_load and aqs_blas_kernels are safe from any thread (pthread_once);
 * aqs_blas_sgemm may run on several threads at once (single-threaded OpenBLAS inside). */
#ifndef AQS_KERNELS_CPU_BLAS_H
#define AQS_KERNELS_CPU_BLAS_H

#include "common/err.h"

/* Loads OpenBLAS (once per process); later calls return the first call's outcome. */
aqs_status aqs_blas_load(aqs_err *e);
/* Row-major C (rows, M) = alpha * A (rows, K) @ op(B) + beta * C, op(B) = B^T (B is M x K) when
 * trans_b, else B (K x M). Loads OpenBLAS if needed and aborts with a message if it cannot
 * (callers open the CPU backend first, which reports that as an error). */
void aqs_blas_sgemm(int trans_b, int rows, int M, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);
/* OpenBLAS's version and kernel set, e.g. "OpenBLAS 0.3.21, core Prescott"; "" before a
 * successful load. */
const char *aqs_blas_kernels(void);

#endif
