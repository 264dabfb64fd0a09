/* kernels/cpu/gather.c: row gather and scatter by an index list (CPU reference): the vision
 * tower's window reordering and its inverse, q/k/v split of the fused qkv projection, and
 * placing image features at <|image_pad|> positions. Exact copies. */
#include "kernels/cpu/cpu_common.h"

void cpu_gather_rows(aqs_backend *be, float *dst, const float *src, const int32_t *idx, int n,
                     int width) {
  (void)be;
#pragma omp parallel for schedule(static) if ((size_t)n * (size_t)width >= CPU_PAR_MIN)
  for (int i = 0; i < n; i++)
    memcpy(dst + (size_t)i * (size_t)width, src + (size_t)idx[i] * (size_t)width,
           (size_t)width * sizeof *dst);
}

void cpu_scatter_rows(aqs_backend *be, float *dst, const float *src, const int32_t *idx, int n,
                      int width) {
  (void)be;
#pragma omp parallel for schedule(static) if ((size_t)n * (size_t)width >= CPU_PAR_MIN)
  for (int i = 0; i < n; i++)
    memcpy(dst + (size_t)idx[i] * (size_t)width, src + (size_t)i * (size_t)width,
           (size_t)width * sizeof *dst);
}
