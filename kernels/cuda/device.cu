/* kernels/cuda/device.cu: the CUDA backend's device state: one device, one stream, a stream-ordered
 * memory pool that keeps freed memory cached, byte accounting (in use / peak) and out-of-memory
 * errors that say how much was asked for, for what, and what to reduce. */
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"

namespace {

struct device_state {
  int initialized;
  int device_index;
  cudaStream_t stream;
  cudaEvent_t timer_begin, timer_end;
  char desc[160];
};
device_state g_dev;
pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

/* Live allocation sizes: open-addressing table keyed by pointer (sizes are needed for in-use bytes). */
struct alloc_slot {
  void *ptr;
  size_t bytes;
};
alloc_slot *g_slots;
size_t g_slot_cap, g_slot_used;
size_t g_in_use, g_peak;

size_t slot_hash(void *p, size_t cap) { return (size_t)(((uintptr_t)p >> 8) * 0x9E3779B97F4A7C15ull) & (cap - 1); }

void slots_put(void *p, size_t bytes);
void slots_grow(void) {
  size_t old_cap = g_slot_cap;
  alloc_slot *old = g_slots;
  g_slot_cap = old_cap ? old_cap * 2 : 1024;
  g_slots = (alloc_slot *)calloc(g_slot_cap, sizeof *g_slots);
  if (!g_slots) abort();
  g_slot_used = 0;
  for (size_t i = 0; i < old_cap; i++)
    if (old[i].ptr && old[i].ptr != (void *)1) slots_put(old[i].ptr, old[i].bytes);
  free(old);
}
void slots_put(void *p, size_t bytes) {
  if ((g_slot_used + 1) * 2 > g_slot_cap) slots_grow();
  size_t i = slot_hash(p, g_slot_cap);
  while (g_slots[i].ptr && g_slots[i].ptr != (void *)1) i = (i + 1) & (g_slot_cap - 1);
  g_slots[i].ptr = p;
  g_slots[i].bytes = bytes;
  g_slot_used++;
}
/* Removes p, returning its size (0 if unknown). Deleted slots become tombstones ((void*)1). */
size_t slots_take(void *p) {
  if (!g_slot_cap) return 0;
  size_t i = slot_hash(p, g_slot_cap);
  while (g_slots[i].ptr) {
    if (g_slots[i].ptr == p) {
      size_t b = g_slots[i].bytes;
      g_slots[i].ptr = (void *)1;
      return b;
    }
    i = (i + 1) & (g_slot_cap - 1);
  }
  return 0;
}

aqs_status cuda_fail(aqs_err *e, cudaError_t err, const char *what) {
  return aqs_errf(e, AQS_ERR_INTERNAL, "cuda: %s: %s", what, cudaGetErrorString(err));
}

}  // namespace

extern "C" int aqs_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

extern "C" aqs_status aqs_cuda_init(int device_index, aqs_err *e) {
  if (g_dev.initialized) return AQS_OK;
  int n = aqs_cuda_device_count();
  if (n == 0)
    return aqs_errf(e, AQS_ERR_UNSUPPORTED,
                    "cuda: no CUDA GPU found (driver missing or no device visible); use --backend cpu");
  if (device_index < 0 || device_index >= n)
    return aqs_errf(e, AQS_ERR_INVALID, "cuda: device %d requested but only %d present", device_index, n);
  cudaError_t err = cudaSetDevice(device_index);
  if (err != cudaSuccess) return cuda_fail(e, err, "selecting the device");
  err = cudaStreamCreateWithFlags(&g_dev.stream, cudaStreamNonBlocking);
  if (err != cudaSuccess) return cuda_fail(e, err, "creating the stream");
  cudaEventCreate(&g_dev.timer_begin);
  cudaEventCreate(&g_dev.timer_end);
  /* Keep freed blocks in the pool: the passes free and re-allocate the same sizes every layer. */
  cudaMemPool_t pool;
  if (cudaDeviceGetDefaultMemPool(&pool, device_index) == cudaSuccess) {
    uint64_t keep_all = UINT64_MAX;
    cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all);
  }
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, device_index);
  snprintf(g_dev.desc, sizeof g_dev.desc, "%s (sm_%d%d, %d SMs, %.1f GiB)", prop.name, prop.major,
           prop.minor, prop.multiProcessorCount, (double)prop.totalGlobalMem / (1024.0 * 1024 * 1024));
  g_dev.device_index = device_index;
  g_dev.initialized = 1;
  return AQS_OK;
}

extern "C" const char *aqs_cuda_device_desc(void) { return g_dev.initialized ? g_dev.desc : "(cuda not initialized)"; }

extern "C" void *aqs_cuda_stream(void) { return (void *)g_dev.stream; }

extern "C" aqs_status aqs_cuda_malloc(void **d_ptr, size_t bytes, const char *what, aqs_err *e) {
  *d_ptr = NULL;
  if (bytes == 0) return AQS_OK;
  if (!g_dev.initialized) {
    aqs_status st = aqs_cuda_init(0, e);
    if (st) return st;
  }
  void *p = NULL;
  cudaError_t err = cudaMallocAsync(&p, bytes, g_dev.stream);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    /* Cached blocks of other sizes may be what is missing: trim the pool and retry once. */
    cudaStreamSynchronize(g_dev.stream);
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, g_dev.device_index) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
    err = cudaMallocAsync(&p, bytes, g_dev.stream);
  }
  if (err != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    const double mib = 1024.0 * 1024.0;
    if (err == cudaErrorMemoryAllocation)
      return aqs_errf(e, AQS_ERR_NOMEM,
                      "cuda: out of GPU memory allocating %.1f MiB for %s (aqs holds %.1f MiB, device "
                      "free %.1f of %.1f MiB): reduce the batch size or the tokens per step "
                      "(sequence length), or free the GPU from other processes",
                      (double)bytes / mib, what ? what : "a buffer", (double)g_in_use / mib,
                      (double)free_b / mib, (double)total_b / mib);
    return aqs_errf(e, AQS_ERR_INTERNAL, "cuda: allocating %zu bytes for %s: %s", bytes,
                    what ? what : "a buffer", cudaGetErrorString(err));
  }
  pthread_mutex_lock(&g_lock);
  slots_put(p, bytes);
  g_in_use += bytes;
  if (g_in_use > g_peak) g_peak = g_in_use;
  pthread_mutex_unlock(&g_lock);
  *d_ptr = p;
  return AQS_OK;
}

extern "C" void aqs_cuda_free(void *d_ptr) {
  if (!d_ptr) return;
  pthread_mutex_lock(&g_lock);
  g_in_use -= slots_take(d_ptr);
  pthread_mutex_unlock(&g_lock);
  cudaFreeAsync(d_ptr, g_dev.stream);
}

static aqs_status copy_sync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, const char *what,
                            aqs_err *e) {
  if (bytes == 0) return AQS_OK;
  cudaError_t err = cudaMemcpyAsync(dst, src, bytes, kind, g_dev.stream);
  if (err == cudaSuccess && kind != cudaMemcpyDeviceToDevice) err = cudaStreamSynchronize(g_dev.stream);
  if (err != cudaSuccess) return cuda_fail(e, err, what);
  return AQS_OK;
}

extern "C" aqs_status aqs_cuda_copy_h2d(void *d_dst, const void *h_src, size_t bytes, aqs_err *e) {
  return copy_sync(d_dst, h_src, bytes, cudaMemcpyHostToDevice, "copying host to device", e);
}
extern "C" aqs_status aqs_cuda_copy_d2h(void *h_dst, const void *d_src, size_t bytes, aqs_err *e) {
  return copy_sync(h_dst, d_src, bytes, cudaMemcpyDeviceToHost, "copying device to host", e);
}
extern "C" aqs_status aqs_cuda_copy_d2d(void *d_dst, const void *d_src, size_t bytes, aqs_err *e) {
  return copy_sync(d_dst, d_src, bytes, cudaMemcpyDeviceToDevice, "copying device to device", e);
}
extern "C" aqs_status aqs_cuda_memset0(void *d_dst, size_t bytes, aqs_err *e) {
  if (bytes == 0) return AQS_OK;
  cudaError_t err = cudaMemsetAsync(d_dst, 0, bytes, g_dev.stream);
  if (err != cudaSuccess) return cuda_fail(e, err, "clearing device memory");
  return AQS_OK;
}

extern "C" aqs_status aqs_cuda_sync(aqs_err *e) {
  cudaError_t err = cudaStreamSynchronize(g_dev.stream);
  if (err != cudaSuccess) return cuda_fail(e, err, "a kernel failed");
  return AQS_OK;
}

extern "C" size_t aqs_cuda_bytes_in_use(void) { return g_in_use; }
extern "C" size_t aqs_cuda_peak_bytes(void) { return g_peak; }
extern "C" void aqs_cuda_reset_peak(void) {
  pthread_mutex_lock(&g_lock);
  g_peak = g_in_use;
  pthread_mutex_unlock(&g_lock);
}

extern "C" void aqs_cuda_timer_start(void) { cudaEventRecord(g_dev.timer_begin, g_dev.stream); }
extern "C" float aqs_cuda_timer_stop_ms(void) {
  float ms = 0;
  cudaEventRecord(g_dev.timer_end, g_dev.stream);
  cudaEventSynchronize(g_dev.timer_end);
  cudaEventElapsedTime(&ms, g_dev.timer_begin, g_dev.timer_end);
  return ms;
}
