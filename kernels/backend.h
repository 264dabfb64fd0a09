/* kernels/backend.h: opening a compute backend by name ("cpu" | "cuda").
 * The returned aqs_backend (kernels/ops.h) is owned by the caller and closed with
 * aqs_backend_close. Each backend provides its own open function declared here. The CUDA
 * backend lives in a shared module (libaqs_cuda.so) loaded on the first "cuda" open only.
 * Threads: opening is safe from several threads; each backend is used by one thread at a time. */
#ifndef AQS_KERNELS_BACKEND_H
#define AQS_KERNELS_BACKEND_H

#include "common/err.h"
#include "kernels/ops.h"

/* Opens backend `name` ("cpu" or "cuda") with the given precision mode.
 * "cuda" loads libaqs_cuda.so once per process: $AQS_CUDA_MODULE if set, else the one next to
 * the executable, in ../lib/aqs from it, or in the install directory (lib/aqs).
 * Errors: AQS_ERR_INVALID for an unknown name; AQS_ERR_UNSUPPORTED for "cuda" in a build
 * without CUDA, when the module is missing (the paths tried are named) or cannot be loaded
 * (e.g. no CUDA runtime / cuBLASLt: the loader's message), or on a machine without a usable GPU. */
aqs_status aqs_backend_open(const char *name, aqs_precision precision, aqs_backend **out,
                            aqs_err *e);
/* Closes be (NULL is a no-op). */
void aqs_backend_close(aqs_backend *be);
/* True when this build has the CUDA backend compiled in. */
int aqs_backend_cuda_compiled(void);

/* Per-backend constructors (called by aqs_backend_open). The CPU one fails only for memory or
 * when OpenBLAS cannot be loaded (kernels/cpu/blas.h). aqs_backend_cuda_open is defined in the CUDA module (kernels/cuda/ops_cuda.c), found
 * through aqs_backend_open; it returns AQS_ERR_UNSUPPORTED with a clear message when no GPU is
 * usable. */
aqs_status aqs_backend_cpu_open(aqs_backend **out, aqs_err *e);
aqs_status aqs_backend_cuda_open(aqs_backend **out, aqs_err *e);

/* Parses "f32" | "bf16" into *out; AQS_ERR_INVALID otherwise. */
aqs_status aqs_precision_parse(const char *text, aqs_precision *out, aqs_err *e);
const char *aqs_precision_name(aqs_precision p);

#endif
