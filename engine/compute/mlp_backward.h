/* engine/compute/mlp_backward.h: activation backward of the pre-norm SwiGLU MLP half of a
 * transformer block (RMSNorm, gate/up, silu(gate) * up, down, residual), the one sequence of ops
 * that the language model's decoder layers (lm_backward.c) and the vision tower's blocks
 * (vision_backward.c) both run. Private to engine/compute; threads as the backend (one call at a
 * time per backend). */
#ifndef AQS_COMPUTE_MLP_BACKWARD_H
#define AQS_COMPUTE_MLP_BACKWARD_H

#include "common/err.h"
#include "kernels/backend.h"

/* The three linears of the MLP, in the order the hook sees them. */
typedef enum { AQS_MLP_DOWN = 0, AQS_MLP_GATE, AQS_MLP_UP } aqs_mlp_linear;

/* One block's MLP half on N rows, hidden C, intermediate I. All pointers are backend memory,
 * borrowed for the call. Forward intermediates must be those of the block's forward. */
typedef struct aqs_mlp_bwd_io {
  const float *hmid, *rstd2;              /* residual stream entering the MLP half (N, C), norm2's (N) */
  const float *ln2, *gate, *up, *act, *down; /* (N, C), (N, I) x3, (N, C) */
  const aqs_bf16 *norm2;                  /* (C) */
  const aqs_bf16 *w_gate, *w_up, *w_down; /* (I, C), (I, C), (C, I) */
  const float *d_out;  /* dL/d(block output) (N, C): the down projection's output gradient */
  float *d_h;          /* written: dL/d(hmid) (N, C) = d_out + the gradient through the MLP */
  float *d_ln;         /* scratch (N, C) */
  float *d_act, *d_gate, *d_up; /* scratch (N, I) */
} aqs_mlp_bwd_io;

/* Sees linear `which`'s input x, output y and output gradient g (N rows); a non-OK return stops
 * the backward with that status (e filled by the hook). */
typedef aqs_status (*aqs_mlp_bwd_hook)(void *ctx, aqs_mlp_linear which, const float *x, const float *y,
                                       const float *g, aqs_err *e);

/* Runs the MLP half's backward on be: io->d_h = d_out + d(MLP(norm2(hmid)))/d(hmid)^T d_out.
 * hook may be NULL. Returns the hook's status, else AQS_OK (backend errors surface at its sync). */
aqs_status aqs_mlp_swiglu_bwd(aqs_backend *be, const aqs_mlp_bwd_io *io, int N, int C, int I,
                              aqs_mlp_bwd_hook hook, void *ctx, aqs_err *e);

#endif
