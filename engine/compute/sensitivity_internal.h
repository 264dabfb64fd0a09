/* engine/compute/sensitivity_internal.h: pieces of the language-model sensitivity
 * (sensitivity.c) that the image+text version (sensitivity_images.c) reuses. Private to
 * engine/compute. */
#ifndef AQS_COMPUTE_SENSITIVITY_INTERNAL_H
#define AQS_COMPUTE_SENSITIVITY_INTERNAL_H

#include "engine/compute/sensitivity.h"

/* Slots of an lm group kind as a bit mask over aqs_lin_slot (0 for an unknown kind). */
unsigned aqs_sens_kind_mask(const char *kind);
/* Slot of an lm module name inside its layer (by suffix), -1 if none. */
int aqs_sens_slot_of_module(const char *module);

/* Gradient-score hook of the lm linears: module_score[layer][slot] = sum (G dY)^2. The scores stay
 * on the backend (grad_score_async) until aqs_sens_grad_end copies them back in one go. */
typedef struct aqs_sens_grad_ctx {
  aqs_lm_ws *ws;
  double *d_score;                       /* backend (num_layers, slots) */
  double (*module_score)[AQS_LIN_COUNT]; /* host copy (num_layers, slots) */
  /* ws->xq holds the FP8 codes of this input (layer, pointer, elements, scale): the hook of the
   * next linear sharing them (k/v after q, up after gate) skips the quantization */
  int xq_layer;
  const float *xq_of;
  size_t xq_n;
  float xq_scale;
} aqs_sens_grad_ctx;
/* Allocates and zeroes the tables (AQS_ERR_NOMEM); free with aqs_sens_grad_free in any case. */
aqs_status aqs_sens_grad_begin(const aqs_lm *lm, aqs_lm_ws *ws, aqs_sens_grad_ctx *gc, aqs_err *e);
/* After the backward: the host copy; a NaN score is AQS_ERR_NUMERIC naming the module. */
aqs_status aqs_sens_grad_end(const aqs_lm *lm, aqs_sens_grad_ctx *gc, aqs_err *e);
void aqs_sens_grad_free(const aqs_lm *lm, aqs_sens_grad_ctx *gc);
aqs_status aqs_sens_grad_hook(void *ctx, const aqs_lm *lm, int layer, aqs_lin_slot slot,
                              const float *x, const float *y, const float *g, int N, aqs_err *e);

/* Fills out (fresh) with the groups of model m in scope (ids, members, params), scores zero,
 * method / scope / precision / backend / device strings. */
aqs_status aqs_sens_init_groups(const aqs_qwen_model *m, const aqs_backend *be,
                                aqs_sens_method method, aqs_qwen_scope scope, aqs_scores *out,
                                aqs_err *e);

#endif
