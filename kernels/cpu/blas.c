/* kernels/cpu/blas.c: OpenBLAS, opened with dlopen on first use after fixing its kernel set.
 * OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its sgemm kernels for the CPU model when it is
 * loaded, and the kernel sets sum in different orders: on one machine the Haswell and Prescott
 * kernels gave different amax for the same build inputs. Action keys name the backend, not the
 * CPU, so a store shared by two CPU kinds would hold whichever bits were computed first. OpenBLAS
 * reads OPENBLAS_CORETYPE only in its load-time constructor, so the library is not linked but
 * opened here after setting it: Prescott (SSE3, every x86-64 CPU) or ARMV8 (every arm64 one).
 * Prescott is what OpenBLAS already chose on the machine the tests run on, so results computed
 * there stay valid. OpenBLAS runs single-threaded: the rows are spread by OpenMP (linear.c). */
#include "kernels/cpu/blas.h"

#include <cblas.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#define BLAS_CORE "Prescott"
#elif defined(__aarch64__)
#define BLAS_CORE "ARMV8"
#endif

#ifndef AQS_OPENBLAS_SONAME
#define AQS_OPENBLAS_SONAME "libopenblas.so.0"
#endif

typedef void (*sgemm_fn)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, blasint, blasint,
                         blasint, float, const float *, blasint, const float *, blasint, float, float *,
                         blasint);

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static sgemm_fn p_sgemm;
static char load_error[512];
static char kernels[256];

static void load(void) {
#ifdef BLAS_CORE
  /* Overwrites a user's value too: the bits must not depend on the environment either. */
  setenv("OPENBLAS_CORETYPE", BLAS_CORE, 1);
#endif
  void *h = dlopen(AQS_OPENBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(load_error, sizeof load_error, "cpu: cannot load OpenBLAS (%s): %s", AQS_OPENBLAS_SONAME,
             dlerror());
    return;
  }
  void (*set_threads)(int) = (void (*)(int))dlsym(h, "openblas_set_num_threads");
  char *(*config)(void) = (char *(*)(void))dlsym(h, "openblas_get_config");
  char *(*core)(void) = (char *(*)(void))dlsym(h, "openblas_get_corename");
  sgemm_fn sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
  if (!set_threads || !config || !core || !sgemm) {
    snprintf(load_error, sizeof load_error, "cpu: %s lacks cblas_sgemm or the openblas_* functions",
             AQS_OPENBLAS_SONAME);
    return;
  }
  set_threads(1);
  /* "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." -> "OpenBLAS 0.3.21, core Prescott" */
  const char *cfg = config(), *sp = strchr(cfg, ' ');
  if (sp) sp = strchr(sp + 1, ' ');
  int n = sp ? (int)(sp - cfg) : (int)strlen(cfg);
  snprintf(kernels, sizeof kernels, "%.*s, core %s", n, cfg, core());
  p_sgemm = sgemm;
}

aqs_status aqs_blas_load(aqs_err *e) {
  pthread_once(&load_once, load);
  return p_sgemm ? AQS_OK : aqs_errf(e, AQS_ERR_UNSUPPORTED, "%s", load_error);
}

void aqs_blas_sgemm(int trans_b, int rows, int M, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
  pthread_once(&load_once, load);
  if (!p_sgemm) {
    fprintf(stderr, "aqs: %s\n", load_error);
    abort();
  }
  p_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, rows, M, K, alpha, A, lda, B, ldb,
          beta, C, ldc);
}

const char *aqs_blas_kernels(void) { return kernels; }
