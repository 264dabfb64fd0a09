/* kernels/cpu/cpu_backend.c: the CPU backend's op table and constructor. The CPU ops are the
 * reference (specification) of kernels/ops.h: plain loops, OpenMP across rows, OpenBLAS sgemm. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/backend.h"
#include "kernels/cpu/blas.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_common.h"

const aqs_ops aqs_cpu_ops = {
  .alloc = cpu_alloc,
  .free = cpu_free,
  .copy_h2d = cpu_copy_h2d,
  .copy_d2h = cpu_copy_d2h,
  .copy_d2d = cpu_copy_d2d,
  .zero = cpu_zero,
  .sync = cpu_sync,
  .mem_stats = cpu_mem_stats,
  .close = cpu_close,
  .cast_bf16_to_f32 = cpu_cast_bf16_to_f32,
  .cast_f32_to_bf16 = cpu_cast_f32_to_bf16,
  .round_bf16 = cpu_round_bf16_op,
  .add = cpu_add,
  .embedding = cpu_embedding,
  .rmsnorm_fwd = cpu_rmsnorm_fwd,
  .rmsnorm_bwd = cpu_rmsnorm_bwd,
  .linear = cpu_linear,
  .linear_bwd_input = cpu_linear_bwd_input,
  .quantize_fp8_f32 = cpu_quantize_fp8_f32,
  .quantize_fp8_bf16 = cpu_quantize_fp8_bf16,
  .linear_fp8 = cpu_linear_fp8,
  .dequantize_fp8 = cpu_dequantize_fp8,
  .rope_fwd = cpu_rope_fwd,
  .rope_bwd = cpu_rope_bwd,
  .attention_fwd = cpu_attention_fwd,
  .attention_bwd = cpu_attention_bwd,
  .swiglu_fwd = cpu_swiglu_fwd,
  .swiglu_bwd = cpu_swiglu_bwd,
  .gather_rows = cpu_gather_rows,
  .scatter_rows = cpu_scatter_rows,
  .gelu_fwd = cpu_gelu_fwd,
  .gelu_bwd = cpu_gelu_bwd,
  .vision_rope_fwd = cpu_vision_rope_fwd,
  .vision_rope_bwd = cpu_vision_rope_bwd,
  .attention_full_fwd = cpu_attention_full_fwd,
  .attention_full_bwd = cpu_attention_full_bwd,
  .cross_entropy = cpu_cross_entropy,
  .log_softmax = cpu_log_softmax,
  .kl_div = cpu_kl_div,
  .kl_argmax_rows = cpu_kl_argmax_rows,
  .amax_f32 = cpu_amax_f32,
  .amax_f32_async = cpu_amax_f32, /* CPU memory is host memory */
  .amax_bf16 = cpu_amax_bf16,
  .grad_score = cpu_grad_score,
  .grad_score_async = cpu_grad_score,
  /* BF16 activation storage (kernels/cpu/bf16_store.c) */
  .rmsnorm_fwd_b = cpu_rmsnorm_fwd_b,
  .linear_b = cpu_linear_b,
  .rope_fwd_b = cpu_rope_fwd_b,
  .add_b = cpu_add_b,
  .swiglu_fwd_b = cpu_swiglu_fwd_b,
  .amax_bf16_async = cpu_amax_bf16_async,
  /* flash */
  .attention_fwd_b = cpu_attention_fwd_b,
};

aqs_status aqs_backend_cpu_open(aqs_backend **out, aqs_err *e) {
  *out = NULL;
  aqs_backend *be = calloc(1, sizeof *be);
  cpu_state *st = calloc(1, sizeof *st);
  if (!be || !st) {
    free(be);
    free(st);
    return aqs_errf(e, AQS_ERR_NOMEM, "cpu: out of memory opening the backend");
  }
  /* GEMMs are parallelized over fixed row blocks by OpenMP (kernels/cpu/linear.c): OpenBLAS
   * itself runs single-threaded, with one kernel set on every CPU model (kernels/cpu/blas.c). */
  aqs_status bst = aqs_blas_load(e);
  if (bst != AQS_OK) {
    free(be);
    free(st);
    return bst;
  }
  be->ops = &aqs_cpu_ops;
  be->name = "cpu";
  snprintf(be->device, sizeof be->device, "cpu, %d OpenMP threads, %s", omp_get_max_threads(), aqs_blas_kernels());
  be->precision = AQS_PREC_F32;
  be->impl = st;
  *out = be;
  return AQS_OK;
}

void cpu_close(aqs_backend *be) {
  if (!be) return;
  free(be->impl);
  free(be);
}
