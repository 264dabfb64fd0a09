/* engine/compute/vision_internal.h: the vision workspace layout shared by the pass files of the
 * tower (vision_batch.c, vision_forward.c, vision_backward.c). Private to engine/compute. */
#ifndef AQS_COMPUTE_VISION_INTERNAL_H
#define AQS_COMPUTE_VISION_INTERNAL_H

#include "engine/compute/vision.h"

struct aqs_vision_ws {
  int N, M;
  float *ckpt;                     /* (depth + 1, N, C) residual stream at each block input */
  /* one block's intermediates (window order) */
  float *ln1, *rstd1;              /* (N, C), (N) */
  float *qkv;                      /* (N, 3C) fused projection output */
  float *q, *k, *v;                /* (N, C) split, before rotary */
  float *qr, *kr;                  /* (N, C) after rotary */
  float *attn, *lse;               /* (N, C), (N, H) */
  float *proj, *hmid;              /* (N, C) */
  float *ln2, *rstd2;              /* (N, C), (N) */
  float *gate, *up, *act;          /* (N, I) */
  float *down, *xa;                /* (N, C); xa = block output of a recompute */
  /* merger (window order until the final scatter) */
  float *lnq, *rstdq;              /* (N, C) = (M, m^2 C), (N) */
  float *m0, *gel;                 /* (M, m^2 C) */
  float *m2;                       /* (M, O) window order */
  float *out;                      /* (M, O) processor order */
  /* gradients (NULL without with_grads) */
  float *d_out, *d_m2;             /* (M, O) */
  float *d_gel, *d_m0;             /* (M, m^2 C) */
  float *d_x, *d_h, *d_ln;         /* (N, C) */
  float *d_qkv;                    /* (N, 3C) */
  float *d_q, *d_k, *d_v, *d_attn; /* (N, C) */
  float *d_act, *d_gate, *d_up;    /* (N, I) */
  /* FP8 fake-quant scratch */
  uint8_t *xq, *wq;
  float *yq;                       /* (max(N, M), max_out) */
  int nbufs;
  void *bufs[48];
};

/* Runs block blk on x_in (N, C) into x_out (N, C), filling the block intermediates of ws.
 * quant: as aqs_vision_forward (may be NULL). */
aqs_status aqs_vision_block_fwd(const aqs_vision *vis, const aqs_vision_batch *b,
                                aqs_vision_ws *ws, int blk, const float *x_in, float *x_out,
                                const unsigned char *quant, aqs_vision_hook hook, void *ctx,
                                aqs_err *e);

#endif
