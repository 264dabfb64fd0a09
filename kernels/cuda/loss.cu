/* kernels/cuda/loss.cu: cross-entropy (loss + logits gradient), log-softmax and KL divergence over
 * (N, V) logits, one block per row, F32 math; per-row results in double are summed by one block in
 * a fixed order (same bits every run). CPU twin: kernels/cpu/loss.c. */
#include <limits.h>

#include "kernels/cuda/cuda_common.cuh"

#define LOSS_THREADS 512

__device__ __forceinline__ double block_sum_d(double v, double *scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum_d(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  double t = lane < nwarps ? scratch[lane] : 0.0;
  return warp_sum_d(t);
}

/* log-sum-exp of one row: max then sum of exp(x - max), F32. */
__device__ float row_lse(const float *row, int V, float *scratch) {
  float mx = -INFINITY;
  for (int c = threadIdx.x; c < V; c += blockDim.x) mx = fmaxf(mx, row[c]);
  mx = block_max(mx, scratch);
  float s = 0.0f;
  for (int c = threadIdx.x; c < V; c += blockDim.x) s += __expf(row[c] - mx);
  s = block_sum(s, scratch);
  return mx + __logf(s);
}

__global__ void cross_entropy_kernel(float *dlogits, double *row_loss, const float *logits, const int32_t *targets,
                                     int V, float grad_scale, int rnd) {
  __shared__ float scratch[32];
  __shared__ float target_logit;
  const size_t r = blockIdx.x;
  const float *lr = logits + r * (size_t)V;
  const int t = targets[r];
  if (t < 0) {
    if (threadIdx.x == 0) row_loss[r] = 0.0;
    if (dlogits)
      for (int c = threadIdx.x; c < V; c += blockDim.x) dlogits[r * (size_t)V + c] = 0.0f;
    return;
  }
  if (threadIdx.x == 0) target_logit = lr[t];
  const float lse = row_lse(lr, V, scratch); /* its barriers publish target_logit */
  if (threadIdx.x == 0) row_loss[r] = (double)(lse - target_logit);
  if (dlogits) {
    float *dr = dlogits + r * (size_t)V;
    for (int c = threadIdx.x; c < V; c += blockDim.x) {
      float p = __expf(lr[c] - lse);
      float g = grad_scale * (c == t ? p - 1.0f : p);
      dr[c] = rnd ? round_bf16(g) : g;
    }
  }
}

__global__ void log_softmax_kernel(float *out, const float *logits, int V) {
  __shared__ float scratch[32];
  const size_t r = blockIdx.x;
  const float *lr = logits + r * (size_t)V;
  const float lse = row_lse(lr, V, scratch);
  __syncthreads(); /* every thread has read the row before an in-place write */
  float *o = out + r * (size_t)V;
  for (int c = threadIdx.x; c < V; c += blockDim.x) o[c] = lr[c] - lse;
}

/* KL(p_ref || softmax(lr)) of one row (the block's), valid in thread 0. */
__device__ double row_kl(const float *pr, const float *lr, int V, float *scratch, double *scratch_d) {
  const float lse = row_lse(lr, V, scratch);
  double acc = 0.0;
  for (int c = threadIdx.x; c < V; c += blockDim.x) {
    float p = pr[c];
    if (p == -INFINITY) continue;
    float lq = lr[c] - lse;
    acc += (double)(__expf(p) * (p - lq));
  }
  return block_sum_d(acc, scratch_d);
}

__global__ void kl_div_kernel(double *row_kl_out, const float *logp_ref, const float *logits, int V) {
  __shared__ float scratch[32];
  __shared__ double scratch_d[32];
  const size_t r = blockIdx.x;
  double kl = row_kl(logp_ref + r * (size_t)V, logits + r * (size_t)V, V, scratch, scratch_d);
  if (threadIdx.x == 0) row_kl_out[r] = kl;
}

/* (value, index) with the larger value, the smaller index on ties (the host's first argmax). */
__device__ __forceinline__ void argmax_merge(float *v, int *i, float ov, int oi) {
  if (ov > *v || (ov == *v && oi < *i)) {
    *v = ov;
    *i = oi;
  }
}

__global__ void kl_argmax_kernel(double *row_kl_out, int32_t *argmax, const float *logp_ref, const float *logits,
                                 int V) {
  __shared__ float scratch[32];
  __shared__ double scratch_d[32];
  __shared__ float best_v[32];
  __shared__ int best_i[32];
  const size_t r = blockIdx.x;
  const float *lr = logits + r * (size_t)V;
  double kl = row_kl(logp_ref + r * (size_t)V, lr, V, scratch, scratch_d);
  float v = -INFINITY;
  int i = INT_MAX;
  for (int c = threadIdx.x; c < V; c += blockDim.x) argmax_merge(&v, &i, lr[c], c);
  for (int o = 16; o > 0; o >>= 1) argmax_merge(&v, &i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  if (lane == 0) {
    best_v[warp] = v;
    best_i[warp] = i;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < nwarps; w++) argmax_merge(&v, &i, best_v[w], best_i[w]);
    row_kl_out[r] = kl;
    argmax[r] = i == INT_MAX ? 0 : i;
  }
}

/* out[0] = sum of v[0..n) in a fixed order (one block). */
__global__ void sum_rows_kernel(double *out, const double *v, int n) {
  __shared__ double scratch_d[32];
  double acc = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) acc += v[i];
  acc = block_sum_d(acc, scratch_d);
  if (threadIdx.x == 0) out[0] = acc;
}

static aqs_status sum_to_host(double *d_rows, int N, double *h_sum, aqs_err *e) {
  cudaStream_t s = (cudaStream_t)aqs_cuda_stream();
  sum_rows_kernel<<<1, 256, 0, s>>>(d_rows + N, d_rows, N);
  AQS_CUDA_LAUNCH_CHECK(e, "sum_rows_kernel");
  return aqs_cuda_copy_d2h(h_sum, d_rows + N, sizeof(double), e);
}

/* ---- launchers ---- */
/* d_rows: scratch of N + 1 doubles. */
extern "C" aqs_status aqs_cuda_cross_entropy(float *d_dlogits, const float *d_logits, const int32_t *d_targets,
                                             int N, int V, float grad_scale, int rnd, double *d_rows,
                                             double *h_loss_sum, aqs_err *e) {
  if (N <= 0) {
    *h_loss_sum = 0.0;
    return AQS_OK;
  }
  cross_entropy_kernel<<<N, LOSS_THREADS, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_dlogits, d_rows, d_logits,
                                                                                d_targets, V, grad_scale, rnd);
  AQS_CUDA_LAUNCH_CHECK(e, "cross_entropy_kernel");
  return sum_to_host(d_rows, N, h_loss_sum, e);
}

extern "C" aqs_status aqs_cuda_log_softmax(float *d_out, const float *d_logits, int N, int V, aqs_err *e) {
  if (N <= 0) return AQS_OK;
  log_softmax_kernel<<<N, LOSS_THREADS, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_out, d_logits, V);
  AQS_CUDA_LAUNCH_CHECK(e, "log_softmax_kernel");
  return AQS_OK;
}

/* d_rows: scratch of 2N doubles (row KL, then the argmax as int32). */
extern "C" aqs_status aqs_cuda_kl_argmax_rows(const float *d_logp_ref, const float *d_logits, int N, int V,
                                              double *d_rows, double *h_row_kl, int32_t *h_argmax, aqs_err *e) {
  if (N <= 0) return AQS_OK;
  int32_t *d_argmax = (int32_t *)(d_rows + N);
  kl_argmax_kernel<<<N, LOSS_THREADS, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_rows, d_argmax, d_logp_ref, d_logits, V);
  AQS_CUDA_LAUNCH_CHECK(e, "kl_argmax_kernel");
  aqs_status st = aqs_cuda_copy_d2h(h_row_kl, d_rows, (size_t)N * sizeof(double), e);
  return st ? st : aqs_cuda_copy_d2h(h_argmax, d_argmax, (size_t)N * sizeof(int32_t), e);
}

/* d_rows: scratch of N + 1 doubles. */
extern "C" aqs_status aqs_cuda_kl_div(const float *d_logp_ref, const float *d_logits, int N, int V, double *d_rows,
                                      double *h_kl_sum, aqs_err *e) {
  if (N <= 0) {
    *h_kl_sum = 0.0;
    return AQS_OK;
  }
  kl_div_kernel<<<N, LOSS_THREADS, 0, (cudaStream_t)aqs_cuda_stream()>>>(d_rows, d_logp_ref, d_logits, V);
  AQS_CUDA_LAUNCH_CHECK(e, "kl_div_kernel");
  return sum_to_host(d_rows, N, h_kl_sum, e);
}
