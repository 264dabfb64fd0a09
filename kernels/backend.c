/* kernels/backend.c: backend selection by name and precision-mode names. The CUDA backend is a
 * separate shared module (libaqs_cuda.so, built from kernels/cuda/) loaded with dlopen the first
 * time "cuda" is opened, so commands that never compute do not map the CUDA libraries. */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/backend.h"

#ifndef AQS_CUDA_MODULE_DIR
#define AQS_CUDA_MODULE_DIR "/usr/local/lib/aqs"
#endif
#define CUDA_MODULE_NAME "libaqs_cuda.so"

int aqs_backend_cuda_compiled(void) {
#ifdef AQS_HAVE_CUDA
  return 1;
#else
  return 0;
#endif
}

typedef aqs_status (*cuda_open_fn)(aqs_backend **out, aqs_err *e);

static pthread_mutex_t g_cuda_lock = PTHREAD_MUTEX_INITIALIZER;
static cuda_open_fn g_cuda_open;

/* Directory of the running executable (for the module next to it); "" when unknown. */
static void exe_dir(char *dir, size_t cap) {
  ssize_t n = readlink("/proc/self/exe", dir, cap - 1);
  dir[n > 0 ? n : 0] = '\0';
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  else dir[0] = '\0';
}

/* Finds aqs_backend_cuda_open: already linked in (tests and benchmarks link the module), else
 * $AQS_CUDA_MODULE, else libaqs_cuda.so next to the executable, in ../lib/aqs from it, or in the
 * install directory. The module is never unloaded. */
static aqs_status load_cuda(cuda_open_fn *out, aqs_err *e) {
  pthread_mutex_lock(&g_cuda_lock);
  if (!g_cuda_open) g_cuda_open = (cuda_open_fn)dlsym(RTLD_DEFAULT, "aqs_backend_cuda_open");
  if (g_cuda_open) {
    *out = g_cuda_open;
    pthread_mutex_unlock(&g_cuda_lock);
    return AQS_OK;
  }
  char dir[PATH_MAX], paths[4][PATH_MAX + 32];
  int n = 0;
  const char *env = getenv("AQS_CUDA_MODULE");
  if (env && *env) {
    snprintf(paths[n++], sizeof paths[0], "%s", env);
  } else {
    exe_dir(dir, sizeof dir);
    if (dir[0]) {
      snprintf(paths[n++], sizeof paths[0], "%s/%s", dir, CUDA_MODULE_NAME);
      snprintf(paths[n++], sizeof paths[0], "%s/../lib/aqs/%s", dir, CUDA_MODULE_NAME);
    }
    snprintf(paths[n++], sizeof paths[0], "%s/%s", AQS_CUDA_MODULE_DIR, CUDA_MODULE_NAME);
  }
  aqs_status st = AQS_OK;
  for (int i = 0; i < n && !g_cuda_open; i++) {
    if (access(paths[i], F_OK) != 0) continue;
    void *h = dlopen(paths[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      /* Present but not loadable: most often the CUDA runtime or cuBLASLt is not installed. */
      st = aqs_errf(e, AQS_ERR_UNSUPPORTED, "backend 'cuda': cannot load %s: %s (install the CUDA runtime and "
                    "cuBLASLt, or use --backend cpu)", paths[i], dlerror());
      break;
    }
    g_cuda_open = (cuda_open_fn)dlsym(h, "aqs_backend_cuda_open");
    if (!g_cuda_open)
      st = aqs_errf(e, AQS_ERR_UNSUPPORTED, "backend 'cuda': %s is not an aqs CUDA module (no "
                    "aqs_backend_cuda_open)", paths[i]);
  }
  if (!g_cuda_open && st == AQS_OK) {
    char tried[4 * (PATH_MAX + 32) + 8] = "";
    for (int i = 0; i < n; i++) {
      strcat(tried, i ? ", " : "");
      strcat(tried, paths[i]);
    }
    st = aqs_errf(e, AQS_ERR_UNSUPPORTED, "backend 'cuda': the CUDA module was not found (looked for %s); %s",
                  tried,
                  aqs_backend_cuda_compiled() ? "install it with aqs (cmake --install puts it in lib/aqs) or set "
                                                "AQS_CUDA_MODULE=/path/to/" CUDA_MODULE_NAME
                                              : "this aqs was built without CUDA (rebuild with -DAQS_CUDA=ON on a "
                                                "machine with nvcc), use --backend cpu");
  }
  *out = g_cuda_open;
  pthread_mutex_unlock(&g_cuda_lock);
  return st;
}

aqs_status aqs_backend_open(const char *name, aqs_precision precision, aqs_backend **out,
                            aqs_err *e) {
  *out = NULL;
  aqs_status st;
  if (strcmp(name, "cpu") == 0) {
    st = aqs_backend_cpu_open(out, e);
  } else if (strcmp(name, "cuda") == 0) {
    if (!aqs_backend_cuda_compiled() && !getenv("AQS_CUDA_MODULE"))
      return aqs_errf(e, AQS_ERR_UNSUPPORTED,
                      "backend 'cuda' is not available: this aqs was built without CUDA "
                      "(rebuild with -DAQS_CUDA=ON on a machine with nvcc), use --backend cpu");
    cuda_open_fn open_fn;
    st = load_cuda(&open_fn, e);
    if (st == AQS_OK) st = open_fn(out, e);
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
