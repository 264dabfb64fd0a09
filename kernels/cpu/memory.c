/* kernels/cpu/memory.c: host memory as "backend memory" for the CPU backend, with byte
 * accounting (in use / peak) so memory reports mean the same thing on cpu and cuda. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_common.h"

/* Each block starts with a 64-byte header holding its size, keeping the data 64-aligned. */
#define CPU_HDR 64

aqs_status cpu_alloc(aqs_backend *be, size_t bytes, void **out, aqs_err *e) {
  cpu_state *st = be->impl;
  *out = NULL;
  if (bytes > SIZE_MAX - 2 * CPU_HDR)
    return aqs_errf(e, AQS_ERR_NOMEM, "cpu: allocation of %zu bytes is too large", bytes);
  size_t total = (bytes + CPU_HDR + 63) / 64 * 64;
  unsigned char *p = aligned_alloc(64, total);
  if (!p)
    return aqs_errf(e, AQS_ERR_NOMEM,
                    "cpu: out of host memory allocating %.1f MiB (aqs holds %.1f MiB): reduce the "
                    "batch size or tokens per step",
                    bytes / 1048576.0, st->bytes_in_use / 1048576.0);
  memcpy(p, &bytes, sizeof bytes);
  st->bytes_in_use += bytes;
  if (st->bytes_in_use > st->bytes_peak) st->bytes_peak = st->bytes_in_use;
  *out = p + CPU_HDR;
  return AQS_OK;
}

void cpu_free(aqs_backend *be, void *ptr) {
  if (!ptr) return;
  cpu_state *st = be->impl;
  unsigned char *p = (unsigned char *)ptr - CPU_HDR;
  size_t bytes;
  memcpy(&bytes, p, sizeof bytes);
  st->bytes_in_use -= bytes;
  free(p);
}

void cpu_copy_h2d(aqs_backend *be, void *dst, const void *src, size_t bytes) {
  (void)be;
  if (bytes) memmove(dst, src, bytes);
}
void cpu_copy_d2h(aqs_backend *be, void *dst, const void *src, size_t bytes) {
  (void)be;
  if (bytes) memmove(dst, src, bytes);
}
void cpu_copy_d2d(aqs_backend *be, void *dst, const void *src, size_t bytes) {
  (void)be;
  if (bytes) memmove(dst, src, bytes);
}
void cpu_zero(aqs_backend *be, void *ptr, size_t bytes) {
  (void)be;
  if (bytes) memset(ptr, 0, bytes);
}

aqs_status cpu_sync(aqs_backend *be, aqs_err *e) {
  (void)be;
  (void)e;
  return AQS_OK;
}

void cpu_mem_stats(aqs_backend *be, size_t *in_use, size_t *peak) {
  cpu_state *st = be->impl;
  if (in_use) *in_use = st->bytes_in_use;
  if (peak) *peak = st->bytes_peak;
}
