/* engine/compute/sensitivity.c: per-group FP8 sensitivity on one batch, gradient (Fisher-
 * weighted output error, ModelOpt AutoQuantize) and kl_div (forward-only KL) methods. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/compute/lm_internal.h"
#include "engine/compute/sensitivity.h"
#include "engine/compute/sensitivity_internal.h"

/* Indexed by aqs_sens_method: the one list of methods (recipes and commands parse with it). */
static const char *const method_names[AQS_SENS_METHOD_COUNT] = {"gradient", "kl_div"};

aqs_status aqs_sens_method_parse(const char *s, aqs_sens_method *out, aqs_err *e) {
  for (int m = 0; m < AQS_SENS_METHOD_COUNT; m++)
    if (strcmp(s, method_names[m]) == 0) {
      *out = (aqs_sens_method)m;
      return AQS_OK;
    }
  return aqs_errf(e, AQS_ERR_INVALID, "unknown sensitivity method '%s' (gradient|kl_div)", s);
}

const char *aqs_sens_method_name(aqs_sens_method m) {
  return (int)m >= 0 && m < AQS_SENS_METHOD_COUNT ? method_names[m] : NULL;
}

unsigned aqs_sens_kind_mask(const char *kind) {
  if (strcmp(kind, "qkv") == 0) return 1u << AQS_LIN_Q | 1u << AQS_LIN_K | 1u << AQS_LIN_V;
  if (strcmp(kind, "o") == 0) return 1u << AQS_LIN_O;
  if (strcmp(kind, "gate_up") == 0) return 1u << AQS_LIN_GATE | 1u << AQS_LIN_UP;
  if (strcmp(kind, "down") == 0) return 1u << AQS_LIN_DOWN;
  return 0;
}

int aqs_sens_slot_of_module(const char *module) {
  for (int s = 0; s < AQS_LIN_COUNT; s++) {
    const char *suf = aqs_lin_slot_suffix((aqs_lin_slot)s);
    size_t ml = strlen(module), sl = strlen(suf);
    if (ml > sl && strcmp(module + ml - sl, suf) == 0 && module[ml - sl - 1] == '.') return s;
  }
  return -1;
}

aqs_status aqs_sens_grad_begin(const aqs_lm *lm, aqs_lm_ws *ws, aqs_sens_grad_ctx *gc, aqs_err *e) {
  const size_t score_bytes = (size_t)lm->cfg.num_layers * AQS_LIN_COUNT * sizeof(double);
  gc->ws = ws;
  gc->d_score = NULL;
  gc->xq_of = NULL; /* no input codes in ws->xq yet */
  gc->module_score = calloc((size_t)lm->cfg.num_layers, sizeof *gc->module_score);
  if (!gc->module_score) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  aqs_status st = lm->be->ops->alloc(lm->be, score_bytes, (void **)&gc->d_score, e);
  if (st == AQS_OK) lm->be->ops->zero(lm->be, gc->d_score, score_bytes);
  return st;
}

aqs_status aqs_sens_grad_end(const aqs_lm *lm, aqs_sens_grad_ctx *gc, aqs_err *e) {
  const int L = lm->cfg.num_layers;
  lm->be->ops->copy_d2h(lm->be, gc->module_score, gc->d_score, (size_t)L * AQS_LIN_COUNT * sizeof(double));
  aqs_status st = lm->be->ops->sync(lm->be, e);
  /* in backward order (last layer first), as the hooks ran */
  for (int l = L - 1; l >= 0 && st == AQS_OK; l--)
    for (int sl = 0; sl < AQS_LIN_COUNT && st == AQS_OK; sl++)
      if (!(gc->module_score[l][sl] == gc->module_score[l][sl]))
        st = aqs_errf(e, AQS_ERR_NUMERIC, "NaN gradient score at %s", lm->layers[l].lin[sl].module);
  return st;
}

void aqs_sens_grad_free(const aqs_lm *lm, aqs_sens_grad_ctx *gc) {
  free(gc->module_score);
  if (gc->d_score) lm->be->ops->free(lm->be, gc->d_score);
  gc->module_score = NULL;
  gc->d_score = NULL;
}

aqs_status aqs_sens_grad_hook(void *ctx, const aqs_lm *lm, int layer, aqs_lin_slot slot,
                              const float *x, const float *y, const float *g, int N, aqs_err *e) {
  aqs_sens_grad_ctx *gc = ctx;
  const aqs_lm_linear *lin = &lm->layers[layer].lin[slot];
  if (lin->input_amax <= 0.0f)
    return aqs_errf(e, AQS_ERR_INVALID, "no calibrated input amax for %s", lin->module);
  const size_t n = (size_t)N * (size_t)lin->in;
  const float xs = aqs_fp8_scale_of_amax(lin->input_amax);
  /* The backward calls the hooks of q, k, v (and gate, up) one after another on one input with
   * one scale (calibrate.c copies Q's amax to K and V): nothing writes ws->xq in between. */
  if (gc->xq_of != x || gc->xq_layer != layer || gc->xq_n != n || gc->xq_scale != xs) {
    lm->be->ops->quantize_fp8_f32(lm->be, gc->ws->xq, x, n, xs);
    gc->xq_of = x;
    gc->xq_layer = layer;
    gc->xq_n = n;
    gc->xq_scale = xs;
  }
  aqs_linear_fp8_codes(lm->be, lin, gc->ws->yq, gc->ws->xq, N, gc->ws->wq);
  lm->be->ops->grad_score_async(lm->be, g, y, gc->ws->yq, (size_t)N * (size_t)lin->out,
                                gc->d_score + (size_t)layer * AQS_LIN_COUNT + slot);
  return AQS_OK;
}

aqs_status aqs_sens_init_groups(const aqs_qwen_model *m, const aqs_backend *be,
                                aqs_sens_method method, aqs_qwen_scope scope, aqs_scores *out,
                                aqs_err *e) {
  memset(out, 0, sizeof *out);
  out->groups = calloc(m->ngroups ? m->ngroups : 1, sizeof *out->groups);
  if (!out->groups) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  snprintf(out->method, sizeof out->method, "%s", aqs_sens_method_name(method));
  snprintf(out->scope, sizeof out->scope, "%s", aqs_qwen_scope_name(scope));
  snprintf(out->precision, sizeof out->precision, "%s",
           be->precision == AQS_PREC_BF16 ? "bf16" : "f32");
  snprintf(out->backend, sizeof out->backend, "%s", be->name);
  snprintf(out->device, sizeof out->device, "%s", be->device);
  for (size_t i = 0; i < m->ngroups; i++) {
    const aqs_qwen_group *g = &m->groups[i];
    if (!aqs_qwen_group_in_scope(g, scope)) continue;
    aqs_group_score *gs = &out->groups[out->ngroups++];
    snprintf(gs->id, sizeof gs->id, "%s", g->id);
    snprintf(gs->kind, sizeof gs->kind, "%s", g->kind);
    gs->layer = g->layer;
    gs->nmembers = g->nmembers;
    gs->weight_params = g->weight_params;
    gs->bias_params = g->bias_params;
    for (int k = 0; k < g->nmembers; k++) {
      snprintf(gs->members[k], sizeof gs->members[k], "%s", g->members[k].module);
      if (g->tower == AQS_TOWER_LM && aqs_sens_slot_of_module(g->members[k].module) < 0)
        return aqs_errf(e, AQS_ERR_INTERNAL, "group %s: unknown member %s", g->id,
                        g->members[k].module);
    }
    if (g->tower == AQS_TOWER_LM && !aqs_sens_kind_mask(g->kind))
      return aqs_errf(e, AQS_ERR_INTERNAL, "group %s: unknown kind %s", g->id, g->kind);
  }
  return AQS_OK;
}

aqs_status aqs_sensitivity_batch(const aqs_lm *lm, const aqs_token_batch *batch,
                                 aqs_sens_method method, int max_seq_len, aqs_scores *out,
                                 double *loss_out, aqs_err *e) {
  memset(out, 0, sizeof *out);
  if (!aqs_sens_method_name(method))
    return aqs_errf(e, AQS_ERR_INVALID, "unknown sensitivity method %d (gradient|kl_div)", (int)method);
  aqs_status st = aqs_sens_init_groups(lm->model, lm->be, method, AQS_SCOPE_LM_ONLY, out, e);
  if (st != AQS_OK) {
    aqs_scores_free(out);
    return st;
  }
  aqs_lm_batch b;
  aqs_lm_ws *ws = NULL;
  aqs_sens_grad_ctx gc = {0};
  if (loss_out) *loss_out = 0.0;
  if ((st = aqs_lm_batch_make(lm, batch->token_ids, batch->seq_lens, batch->n_seqs, max_seq_len,
                              &b, e)) != AQS_OK) {
    aqs_scores_free(out);
    return st;
  }
  if ((st = aqs_lm_ws_alloc(lm, &b, method == AQS_SENS_GRADIENT, method == AQS_SENS_KL_DIV, &ws,
                            e)) != AQS_OK)
    goto done;
  /* Weights quantized to FP8 once per model, not per batch; without the memory for the codes,
   * each fake-quant linear quantizes its weight as it runs (same bits either way). */
  st = aqs_lm_fake_quant_weights(lm, e);
  if (st == AQS_ERR_NOMEM) st = AQS_OK;
  if (st != AQS_OK) goto done;
  if (method == AQS_SENS_GRADIENT) {
    if ((st = aqs_sens_grad_begin(lm, ws, &gc, e)) != AQS_OK) goto done;
    double loss;
    if ((st = aqs_lm_forward_backward(lm, &b, ws, aqs_sens_grad_hook, &gc, &loss, e)) != AQS_OK) goto done;
    if ((st = aqs_sens_grad_end(lm, &gc, e)) != AQS_OK) goto done;
    if (loss_out) *loss_out = loss;
    for (size_t i = 0; i < out->ngroups; i++) {
      aqs_group_score *gs = &out->groups[i];
      gs->score = 0.0;
      for (int k = 0; k < gs->nmembers; k++) {
        gs->member_score[k] = gc.module_score[gs->layer][aqs_sens_slot_of_module(gs->members[k])];
        gs->score += gs->member_score[k];
      }
    }
  } else {
    if ((st = aqs_lm_forward(lm, &b, ws, NULL, NULL, e)) != AQS_OK) goto done;
    if ((st = aqs_lm_save_logp_ref(lm, &b, ws, e)) != AQS_OK) goto done;
    for (size_t i = 0; i < out->ngroups; i++) {
      aqs_group_score *gs = &out->groups[i];
      for (int k = 0; k < gs->nmembers; k++) {
        const aqs_lm_linear *lin = &lm->layers[gs->layer].lin[aqs_sens_slot_of_module(gs->members[k])];
        if (lin->input_amax <= 0.0f) {
          st = aqs_errf(e, AQS_ERR_INVALID, "no calibrated input amax for %s", lin->module);
          goto done;
        }
      }
      double kl = 0.0;
      st = aqs_lm_kl_from_layer(lm, &b, ws, gs->layer, aqs_sens_kind_mask(gs->kind), &kl, e);
      if (st != AQS_OK) goto done;
      gs->score = kl;
    }
  }
  out->n_tokens = b.n_tokens;
  out->n_seqs = b.n_seqs;
  out->n_batches = 1;
done:
  aqs_sens_grad_free(lm, &gc);
  aqs_lm_ws_free(lm, ws);
  aqs_lm_batch_free(lm, &b);
  if (st != AQS_OK) aqs_scores_free(out);
  return st;
}
