/* kernels/cuda/gather.cu: row gather and scatter by an index list (window reordering of the
 * vision tower and its inverse, the q/k/v split of the fused qkv, image features placed at
 * <|image_pad|> rows). Exact copies, one thread per element. CPU twin: kernels/cpu/gather.c. */
#include "kernels/cuda/cuda_common.cuh"

/* scatter == 0: dst[i] = src[idx[i]]; else dst[idx[i]] = src[i] (rows of width floats). */
__global__ void gather_rows_kernel(float *dst, const float *src, const int32_t *idx, int n, int width,
                                   int scatter) {
  const size_t total = (size_t)n * (size_t)width;
  for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
    size_t i = t / (size_t)width, c = t % (size_t)width;
    size_t other = (size_t)idx[i] * (size_t)width + c;
    if (scatter) dst[other] = src[t];
    else dst[t] = src[other];
  }
}

extern "C" aqs_status aqs_cuda_gather_rows(float *d_dst, const float *d_src, const int32_t *d_idx, int n, int width,
                                           int scatter, aqs_err *e) {
  size_t total = (size_t)n * (size_t)width;
  if (total == 0) return AQS_OK;
  gather_rows_kernel<<<grid_for(total, 256), 256, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_dst, d_src, d_idx, n,
                                                                                          width, scatter);
  AQS_CUDA_LAUNCH_CHECK(e, "gather_rows_kernel");
  return AQS_OK;
}
