/* engine/compute/mlp_backward.c: the SwiGLU MLP half's activation backward shared by the
 * language model and the vision tower (see mlp_backward.h). The op order is the LM's own, so its
 * numerics are unchanged. */
#include "engine/compute/mlp_backward.h"

aqs_status aqs_mlp_swiglu_bwd(aqs_backend *be, const aqs_mlp_bwd_io *io, int N, int C, int I,
                              aqs_mlp_bwd_hook hook, void *ctx, aqs_err *e) {
  const aqs_ops *op = be->ops;
  const size_t NC = (size_t)N * (size_t)C;
  aqs_status st;
#define HOOK(which, x, y, g) \
  if (hook && (st = hook(ctx, which, x, y, g, e)) != AQS_OK) return st
  HOOK(AQS_MLP_DOWN, io->act, io->down, io->d_out);
  op->linear_bwd_input(be, io->d_act, io->d_out, io->w_down, N, I, C, 0);
  op->swiglu_bwd(be, io->d_gate, io->d_up, io->d_act, io->gate, io->up, (size_t)N * (size_t)I);
  HOOK(AQS_MLP_GATE, io->ln2, io->gate, io->d_gate);
  HOOK(AQS_MLP_UP, io->ln2, io->up, io->d_up);
  op->linear_bwd_input(be, io->d_ln, io->d_gate, io->w_gate, N, C, I, 0);
  op->linear_bwd_input(be, io->d_ln, io->d_up, io->w_up, N, C, I, 1);
  op->copy_d2d(be, io->d_h, io->d_out, NC * sizeof(float));
  op->rmsnorm_bwd(be, io->d_h, io->d_ln, io->hmid, io->rstd2, io->norm2, N, C, 1);
#undef HOOK
  return AQS_OK;
}
