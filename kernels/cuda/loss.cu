/* kernels/cuda/loss.cu: cross-entropy (loss + logits gradient), log-softmax and KL divergence over
 * (N, V) logits, one block per row, F32 math; per-row results in double are summed by one block in
 * a fixed order (same bits every run). CPU twin: kernels/cpu/loss.c. */
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

__global__ void kl_div_kernel(double *row_kl, const float *logp_ref, const float *logits, int V) {
  __shared__ float scratch[32];
  __shared__ double scratch_d[32];
  const size_t r = blockIdx.x;
  const float *lr = logits + r * (size_t)V, *pr = logp_ref + r * (size_t)V;
  const float lse = row_lse(lr, V, scratch);
  double acc = 0.0;
  for (int c = threadIdx.x; c < V; c += blockDim.x) {
    float p = pr[c];
    if (p == -INFINITY) continue;
    float lq = lr[c] - lse;
    acc += (double)(__expf(p) * (p - lq));
  }
  acc = block_sum_d(acc, scratch_d);
  if (threadIdx.x == 0) row_kl[r] = acc;
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
