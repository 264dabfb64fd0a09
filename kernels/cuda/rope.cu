/* kernels/cuda/rope.cu: multimodal rotary position embedding (Qwen2.5-VL M-RoPE), forward and
 * adjoint, in place on (N, H, D), one thread per (token, frequency) pair of columns, all heads.
 * inv_freq comes from the host (the CPU twin's powf expression, so the same bits); cos/sin are
 * taken in double and rounded to F32 (immune to --use_fast_math). The forward also runs on BF16
 * storage with a fused amax (rope_fwd_b). CPU twins: kernels/cpu/rope.c, bf16_store.c. */
#include "kernels/cuda/cuda_common.cuh"

/* Element access: F32 buffers, or BF16 storage (values stored are BF16 values already: exact). */
__device__ __forceinline__ float load_el(const float *p) { return *p; }
__device__ __forceinline__ float load_el(const uint16_t *p) { return bf16_bits_to_f32(*p); }
__device__ __forceinline__ void store_el(float *p, float v) { *p = v; }
__device__ __forceinline__ void store_el(uint16_t *p, float v) { *p = f32_to_bf16_bits(v); }

/* x (N, H, D); pos (3, N); inv_freq (D/2); sec0/sec1: mrope_section[0..1]. backward != 0: adjoint.
 * One thread per (token, frequency) pair: cos/sin (in double: the costly part) once, then the
 * rotation of that column pair in every head. T uint16_t: BF16 storage (rnd set), the same bits as
 * the F32 buffer in BF16 mode; amax (may be NULL) folds max |rotated x|. */
template <typename T>
__global__ void rope_kernel(T *x, const int32_t *pos, const float *inv_freq, int N, int H, int D, int sec0, int sec1,
                            int rnd, int backward, float *amax) {
  int m = 0;
  const int half = D / 2;
  const size_t total = (size_t)N * (size_t)half;
  for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
    int j = (int)(t % (size_t)half);
    int i = (int)(t / (size_t)half);
    int axis = j < sec0 ? 0 : (j < sec0 + sec1 ? 1 : 2);
    float angle = mul_exact((float)pos[(size_t)axis * (size_t)N + (size_t)i], inv_freq[j]);
    float cs = (float)cos((double)angle), sn = (float)sin((double)angle);
    if (rnd) {
      cs = round_bf16(cs);
      sn = round_bf16(sn);
    }
    for (int h = 0; h < H; h++) {
      T *v = x + ((size_t)i * (size_t)H + (size_t)h) * (size_t)D;
      float a = load_el(v + j), b = load_el(v + j + half);
      float p1, p2, p3, p4;
      if (!backward) { /* lo = a*cos - b*sin ; hi = b*cos + a*sin */
        p1 = mul_exact(a, cs);
        p2 = mul_exact(-b, sn);
        p3 = mul_exact(b, cs);
        p4 = mul_exact(a, sn);
      } else { /* lo = a*cos + b*sin ; hi = b*cos - a*sin */
        p1 = mul_exact(a, cs);
        p2 = mul_exact(b, sn);
        p3 = mul_exact(b, cs);
        p4 = mul_exact(-a, sn);
      }
      if (rnd) {
        p1 = round_bf16(p1);
        p2 = round_bf16(p2);
        p3 = round_bf16(p3);
        p4 = round_bf16(p4);
      }
      float lo = p1 + p2, hi = p3 + p4;
      if (rnd) {
        lo = round_bf16(lo);
        hi = round_bf16(hi);
      }
      store_el(v + j, lo);
      store_el(v + j + half, hi);
      m = max(m, max(abs_bits(lo), abs_bits(hi)));
    }
  }
  if (amax) block_fold_amax(m, amax);
}

/* ---- launchers ---- */
extern "C" aqs_status aqs_cuda_rope(float *d_x, const int32_t *d_pos, const float *d_inv_freq, int N, int H, int D,
                                    const int mrope_section[3], int rnd, int backward, aqs_err *e) {
  size_t total = (size_t)N * (size_t)(D / 2);
  if (total == 0 || H <= 0) return AQS_OK;
  rope_kernel<float><<<grid_for(total, 256), 256, 0, (cudaStream_t)aqs_cuda_stream()>>>(
      d_x, d_pos, d_inv_freq, N, H, D, mrope_section[0], mrope_section[1], rnd, backward, NULL);
  AQS_CUDA_LAUNCH_CHECK(e, "rope_kernel");
  return AQS_OK;
}

extern "C" aqs_status aqs_cuda_rope_fwd_b(uint16_t *d_x, const int32_t *d_pos, const float *d_inv_freq, int N, int H,
                                          int D, const int mrope_section[3], float *d_amax, aqs_err *e) {
  size_t total = (size_t)N * (size_t)(D / 2);
  if (total == 0 || H <= 0) return AQS_OK;
  rope_kernel<uint16_t><<<fold_grid(total, 256), 256, 0, (cudaStream_t)aqs_cuda_stream()>>>(
      d_x, d_pos, d_inv_freq, N, H, D, mrope_section[0], mrope_section[1], 1, 0, d_amax);
  AQS_CUDA_LAUNCH_CHECK(e, "rope_kernel<bf16>");
  return AQS_OK;
}
