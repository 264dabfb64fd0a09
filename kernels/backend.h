/* kernels/backend.h: opening a compute backend by name ("cpu" | "cuda").
 * The returned aqs_backend (kernels/ops.h) is owned by the caller and closed with
 * aqs_backend_close. Each backend provides its own open function declared here. */
#ifndef AQS_KERNELS_BACKEND_H
#define AQS_KERNELS_BACKEND_H

#include "common/err.h"
#include "kernels/ops.h"

/* Opens backend `name` ("cpu" or "cuda") with the given precision mode.
 * Errors: AQS_ERR_INVALID for an unknown name; AQS_ERR_UNSUPPORTED for "cuda" in a build
 * without CUDA or on a machine without a usable GPU (the message says which). */
aqs_status aqs_backend_open(const char *name, aqs_precision precision, aqs_backend **out,
                            aqs_err *e);
/* Closes be (NULL is a no-op). */
void aqs_backend_close(aqs_backend *be);
/* True when this build has the CUDA backend compiled in. */
int aqs_backend_cuda_compiled(void);

/* Per-backend constructors (called by aqs_backend_open). The CPU one never fails except for
 * memory. aqs_backend_cuda_open exists only when AQS_HAVE_CUDA is defined (kernels/cuda/);
 * it returns AQS_ERR_UNSUPPORTED with a clear message when no GPU is usable. */
aqs_status aqs_backend_cpu_open(aqs_backend **out, aqs_err *e);
#ifdef AQS_HAVE_CUDA
aqs_status aqs_backend_cuda_open(aqs_backend **out, aqs_err *e);
#endif

/* Parses "f32" | "bf16" into *out; AQS_ERR_INVALID otherwise. */
aqs_status aqs_precision_parse(const char *text, aqs_precision *out, aqs_err *e);
const char *aqs_precision_name(aqs_precision p);

#endif
