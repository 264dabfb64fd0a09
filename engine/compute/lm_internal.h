/* engine/compute/lm_internal.h: the workspace layout shared by the pass files of the LM
 * (lm_load.c, lm_ws.c, lm_forward.c, lm_backward.c, lm_kl.c). Private to engine/compute. */
#ifndef AQS_COMPUTE_LM_INTERNAL_H
#define AQS_COMPUTE_LM_INTERNAL_H

#include <stdlib.h>

#include "engine/compute/lm.h"
#include "engine/model/safetensors.h"

/* One decoder layer's forward intermediates (the fields of aqs_lm_ws of the same names). */
typedef struct aqs_lm_acts {
  float *ln1, *rstd1, *q, *k, *v, *qr, *kr, *attn, *lse, *o, *hmid, *ln2, *rstd2, *gate, *up, *act, *down;
} aqs_lm_acts;
#define AQS_LM_ACTS 17 /* pointers in aqs_lm_acts */
/* The floats of each aqs_lm_acts buffer for N tokens, in field order. */
void aqs_lm_acts_sizes(const aqs_lm *lm, size_t N, size_t part[AQS_LM_ACTS]);
/* The set whose buffers are f[0..AQS_LM_ACTS) in field order. */
aqs_lm_acts aqs_lm_acts_of(float *const f[AQS_LM_ACTS]);

struct aqs_lm_ws {
  int N;
  float *ckpt;                 /* (L + 1, N, C) residual stream at each layer input; [L] = final */
  /* one layer's intermediates */
  float *ln1, *rstd1;          /* (N, C), (N) */
  float *q, *k, *v;            /* (N, Hq*D), (N, Hkv*D) x2: projection outputs before rope */
  float *qr, *kr;              /* same, after rope */
  float *attn, *lse;           /* (N, Hq*D), (N, Hq) */
  float *o, *hmid;             /* (N, C) */
  float *ln2, *rstd2;          /* (N, C), (N) */
  float *gate, *up, *act;      /* (N, I) */
  float *down;                 /* (N, C) */
  float *xa, *xb;              /* (N, C) ping-pong residual for KL re-runs */
  float *normf, *rstdf;        /* (N, C), (N) final norm */
  float *logits;               /* (N, V); dlogits in place during backward */
  float *logp_ref;             /* (N, V) or NULL */
  /* gradients (NULL without with_grads) */
  float *d_x, *d_h, *d_ln;     /* (N, C) */
  float *d_attn, *d_q, *d_k, *d_v; /* (N, Hq*D), (N, Hq*D), (N, Hkv*D) x2 */
  float *d_act, *d_gate, *d_up;    /* (N, I) */
  /* FP8 fake-quant scratch */
  uint8_t *xq;                 /* N * max_in */
  uint8_t *wq;                 /* max_out * max_in */
  float *yq;                   /* (N, max_out) */
  float *kv_amax;              /* backend (L, 2) or NULL: aqs_lm_ws_track_kv_amax */
  float *layer_amax;           /* backend (L): amax of each layer's output (finite check) */
  /* Kept activations (lm_backward.c, when memory allows): set only inside aqs_lm_forward_backward
   * (released, and ws back on base, when it returns, errors included). While kept != NULL, layer l's
   * forward writes its intermediates into kept[l] (aqs_lm_ws_select_layer), and the backward reads
   * them there instead of recomputing the layer. base = the workspace's own set. */
  aqs_lm_acts *kept;
  void *kept_mem;
  aqs_lm_acts base;
  /* every allocation, for free */
  int nbufs;
  void *bufs[48];
};

/* Runs decoder layer l on x_in (N, C) into x_out (N, C) (must differ), filling the layer
 * intermediates of ws. Linears with bit (1 << slot) in quant_mask are FP8 fake-quantized.
 * hook (may be NULL) sees x and y of each linear (g = NULL). */
aqs_status aqs_lm_layer_fwd(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws, int l,
                            const float *x_in, float *x_out, unsigned quant_mask,
                            aqs_lm_linear_hook hook, void *ctx, aqs_err *e);
/* Points ws's intermediates at kept[l] (l >= 0 and kept set) or back at its own set (l < 0). */
void aqs_lm_ws_select_layer(aqs_lm_ws *ws, int l);
/* Reads ws->layer_amax (L entries, written during a pass without a sync) once: AQS_ERR_NUMERIC
 * "non-finite activation (NaN|Inf) at <what> language layer <l>" for the first non-finite entry,
 * in layer order, or from the top (from_top: a backward). Syncs. */
aqs_status aqs_lm_check_layer_amax(const aqs_lm *lm, aqs_lm_ws *ws, int from_top, const char *what,
                                   aqs_err *e);
/* lm_calib_b.c: 1 when the calibration forward can run on BF16 activation storage: BF16 precision,
 * the backend has the BF16-storage ops, no served FP8 linear and no FP8 KV cache. */
int aqs_lm_calib_b_applies(const aqs_lm *lm);
/* lm_calib_b.c: embedding + decoder layers as aqs_lm_forward_layers would run them for
 * calibrate.c in BF16 mode (same bits), on BF16 activations. Writes the input amaxes of Q, O, GATE
 * and DOWN into d_amax (L, AQS_LIN_COUNT) and K-after-RoPE / V into d_kv_amax (L, 2) (may be NULL),
 * both BACKEND memory taken as max with what is there (start zeroed). Ends like
 * aqs_lm_forward_layers: AQS_ERR_NUMERIC names the first layer whose output is not finite. */
aqs_status aqs_lm_calib_layers_b(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws, float *d_amax,
                                 float *d_kv_amax, aqs_err *e);
/* Final norm + lm_head on x (N, C) into ws->logits. */
void aqs_lm_head_fwd(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws, const float *x);
/* lm_served.c: 1 when <module>.weight is F8_E4M3 in ck. */
int aqs_lm_weight_is_fp8(const aqs_ckpt *ck, const char *module);
/* lm_served.c: loads the FP8 linears lin[0..n) of one fused GEMM (n <= AQS_LIN_COUNT; none FP8:
 * nothing; some: AQS_ERR_UNSUPPORTED) as vLLM serves them: the checkpoint's codes (members
 * requantized to the largest weight scale), the largest input scale; adds to *weight_bytes and
 * *n_served. Errors name the tensor. */
aqs_status aqs_served_load_fused(aqs_backend *be, const aqs_ckpt *ck, aqs_lm_linear *const *lin, int n,
                                 size_t *weight_bytes, int *n_served, aqs_err *e);
/* lm_served.c: 1 when t is what a served loader reads from a scheme: an F8_E4M3 weight or a
 * weight / input / KV cache scale. */
int aqs_served_tensor(const aqs_st_tensor *t);
/* lm_served.c: AQS_ERR_UNSUPPORTED naming the first tensor of diff under one of the n prefixes
 * that a served loader does not read (a BF16 tensor that differs from the source); else AQS_OK. */
aqs_status aqs_served_check_diff(const aqs_ckpt *diff, const char *const *prefixes, int n, aqs_err *e);
/* lm_served.c: 1 when the loaded linear lin reads tensor name from a scheme: its FP8 weight or
 * weight / input scale when it is served, or <module><kv_suffix> (".k_scale" / ".v_scale", NULL:
 * none) when it carries the FP8 KV cache's scale. */
int aqs_served_reads(const aqs_lm_linear *lin, const char *name, const char *kv_suffix);
/* lm_served.c: loads layer l's FP8 linears (wq, scales; fused members requantized to one
 * scale) and its KV cache scales. Module names of the layer must be set. */
aqs_status aqs_lm_load_served_layer(aqs_lm *lm, const aqs_ckpt *ck, int l, aqs_err *e);
/* AQS_ERR_NUMERIC naming `what` when x (n floats) holds NaN/Inf. */
aqs_status aqs_lm_check_finite(const aqs_lm *lm, const float *x, size_t n, const char *what,
                               aqs_err *e);

#endif
