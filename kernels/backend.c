/* kernels/backend.c: backend selection by name and precision-mode names. */
#include <string.h>

#include "kernels/backend.h"

int aqs_backend_cuda_compiled(void) {
#ifdef AQS_HAVE_CUDA
  return 1;
#else
  return 0;
#endif
}

aqs_status aqs_backend_open(const char *name, aqs_precision precision, aqs_backend **out,
                            aqs_err *e) {
  *out = NULL;
  aqs_status st;
  if (strcmp(name, "cpu") == 0) {
    st = aqs_backend_cpu_open(out, e);
  } else if (strcmp(name, "cuda") == 0) {
#ifdef AQS_HAVE_CUDA
    st = aqs_backend_cuda_open(out, e);
#else
    return aqs_errf(e, AQS_ERR_UNSUPPORTED,
                    "backend 'cuda' is not available: this aqs was built without CUDA "
                    "(rebuild with -DAQS_CUDA=ON on a machine with nvcc), use --backend cpu");
#endif
  } else {
    return aqs_errf(e, AQS_ERR_INVALID, "unknown backend '%s' (expected cpu or cuda)", name);
  }
  if (st != AQS_OK) return st;
  (*out)->precision = precision;
  return AQS_OK;
}

void aqs_backend_close(aqs_backend *be) {
  if (be) be->ops->close(be);
}

aqs_status aqs_precision_parse(const char *text, aqs_precision *out, aqs_err *e) {
  if (strcmp(text, "f32") == 0) {
    *out = AQS_PREC_F32;
  } else if (strcmp(text, "bf16") == 0) {
    *out = AQS_PREC_BF16;
  } else {
    return aqs_errf(e, AQS_ERR_INVALID, "unknown precision '%s' (expected f32 or bf16)", text);
  }
  return AQS_OK;
}

const char *aqs_precision_name(aqs_precision p) { return p == AQS_PREC_BF16 ? "bf16" : "f32"; }
