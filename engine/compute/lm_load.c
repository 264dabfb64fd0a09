/* engine/compute/lm_load.c: loading the language model's BF16 weights from a checkpoint onto a
 * backend (shape checks against config.json, dtype and NaN/Inf checks, weight amax). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/compute/lm_internal.h"

static const char *const slot_suffix[AQS_LIN_COUNT] = {
  "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
  "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

const char *aqs_lin_slot_suffix(aqs_lin_slot s) {
  return (unsigned)s < AQS_LIN_COUNT ? slot_suffix[s] : "?";
}

aqs_status aqs_weight_upload(aqs_backend *be, const aqs_ckpt *ck, const char *name,
                             uint64_t numel, aqs_bf16 **out, float *amax_out,
                             size_t *bytes_total, aqs_err *e) {
  const aqs_st_tensor *t;
  aqs_status st = aqs_ckpt_get(ck, name, &t, e);
  if (st != AQS_OK) return st;
  if (t->dtype != AQS_DT_BF16)
    return aqs_errf(e, AQS_ERR_UNSUPPORTED, "%s: tensor %s is %s; the compute engine needs BF16",
                    ck->dir, name, aqs_dtype_name(t->dtype));
  if (t->numel != numel)
    return aqs_errf(e, AQS_ERR_MISMATCH, "%s: tensor %s has %llu elements, config implies %llu",
                    ck->dir, name, (unsigned long long)t->numel, (unsigned long long)numel);
  void *p;
  if ((st = be->ops->alloc(be, t->nbytes, &p, e)) != AQS_OK)
    return aqs_err_prefix(e, "loading %s", name);
  be->ops->copy_h2d(be, p, t->data, t->nbytes);
  *bytes_total += t->nbytes;
  *out = p;
  float amax;
  be->ops->amax_bf16(be, p, numel, &amax);
  if (!(amax <= 3.0e38f))
    return aqs_errf(e, AQS_ERR_NUMERIC, "%s: tensor %s holds %s values", ck->dir, name,
                    amax != amax ? "NaN" : "Inf");
  if (amax_out) *amax_out = amax;
  return AQS_OK;
}

static aqs_status upload(aqs_lm *lm, const aqs_ckpt *ck, const char *name, uint64_t numel,
                         aqs_bf16 **out, float *amax_out, aqs_err *e) {
  return aqs_weight_upload(lm->be, ck, name, numel, out, amax_out, &lm->weight_bytes, e);
}

aqs_status aqs_lm_load(aqs_backend *be, const char *model_dir, aqs_lm **out, aqs_err *e) {
  *out = NULL;
  aqs_lm *lm = calloc(1, sizeof *lm);
  if (!lm) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  lm->be = be;
  aqs_ckpt *ck = NULL;
  aqs_status st = aqs_qwen_model_open(model_dir, &lm->model, &ck, e);
  if (st != AQS_OK) goto fail;
  lm->cfg = lm->model->cfg.text;
  const aqs_qwen_text_config *c = &lm->cfg;
  const aqs_qwen_naming nm = lm->model->naming;
  uint64_t C = (uint64_t)c->hidden_size, V = (uint64_t)c->vocab_size;
  lm->layers = calloc((size_t)c->num_layers, sizeof *lm->layers);
  if (!lm->layers) {
    st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
    goto fail;
  }
  char name[256];
  aqs_qwen_global_name(nm, "embed_tokens.weight", name, sizeof name);
  if ((st = upload(lm, ck, name, V * C, &lm->embed, NULL, e)) != AQS_OK) goto fail;
  aqs_qwen_global_name(nm, "norm.weight", name, sizeof name);
  if ((st = upload(lm, ck, name, C, &lm->final_norm, NULL, e)) != AQS_OK) goto fail;
  if (c->tie_word_embeddings && !aqs_ckpt_find(ck, "lm_head.weight")) {
    lm->lm_head = lm->embed;
  } else if ((st = upload(lm, ck, "lm_head.weight", V * C, &lm->lm_head, NULL, e)) != AQS_OK) {
    goto fail;
  }
  const int qd = c->num_heads * c->head_dim, kvd = c->num_kv_heads * c->head_dim;
  const int I = c->intermediate_size;
  const int outs[AQS_LIN_COUNT] = {qd, kvd, kvd, (int)C, I, I, (int)C};
  const int ins[AQS_LIN_COUNT] = {(int)C, (int)C, (int)C, qd, (int)C, (int)C, I};
  for (int l = 0; l < c->num_layers; l++) {
    aqs_lm_layer *L = &lm->layers[l];
    aqs_qwen_lm_name(nm, l, "input_layernorm.weight", name, sizeof name);
    if ((st = upload(lm, ck, name, C, &L->ln1, NULL, e)) != AQS_OK) goto fail;
    aqs_qwen_lm_name(nm, l, "post_attention_layernorm.weight", name, sizeof name);
    if ((st = upload(lm, ck, name, C, &L->ln2, NULL, e)) != AQS_OK) goto fail;
    for (int s = 0; s < AQS_LIN_COUNT; s++) {
      aqs_lm_linear *lin = &L->lin[s];
      lin->out = outs[s];
      lin->in = ins[s];
      aqs_qwen_lm_name(nm, l, slot_suffix[s], lin->module, sizeof lin->module);
      snprintf(name, sizeof name, "%s.weight", lin->module);
      if (!aqs_lm_weight_is_fp8(ck, lin->module)) { /* FP8 ones: aqs_lm_load_served_layer */
        st = upload(lm, ck, name, (uint64_t)lin->out * (uint64_t)lin->in, &lin->w,
                    &lin->weight_amax, e);
        if (st != AQS_OK) goto fail;
      }
      if (s <= AQS_LIN_V) {
        snprintf(name, sizeof name, "%s.bias", lin->module);
        if ((st = upload(lm, ck, name, (uint64_t)lin->out, &lin->b, NULL, e)) != AQS_OK) goto fail;
      }
    }
    if ((st = aqs_lm_load_served_layer(lm, ck, l, e)) != AQS_OK) goto fail;
  }
  aqs_ckpt_close(ck);
  *out = lm;
  return AQS_OK;
fail:
  aqs_ckpt_close(ck);
  aqs_lm_free(lm);
  return st;
}

void aqs_lm_free(aqs_lm *lm) {
  if (!lm) return;
  aqs_backend *be = lm->be;
  if (lm->base) { /* aqs_lm_load_served_over: only the FP8 codes are this model's */
    for (int l = 0; lm->layers && l < lm->cfg.num_layers; l++)
      for (int s = 0; s < AQS_LIN_COUNT; s++) be->ops->free(be, lm->layers[l].lin[s].wq);
    free(lm->layers);
    free(lm);
    return;
  }
  if (lm->layers) {
    for (int l = 0; l < lm->cfg.num_layers; l++) {
      aqs_lm_layer *L = &lm->layers[l];
      be->ops->free(be, L->ln1);
      be->ops->free(be, L->ln2);
      for (int s = 0; s < AQS_LIN_COUNT; s++) {
        be->ops->free(be, L->lin[s].w);
        be->ops->free(be, L->lin[s].wq);
        be->ops->free(be, L->lin[s].w_fake);
        be->ops->free(be, L->lin[s].b);
      }
    }
    free(lm->layers);
  }
  if (lm->lm_head != lm->embed) be->ops->free(be, lm->lm_head);
  be->ops->free(be, lm->embed);
  be->ops->free(be, lm->final_norm);
  aqs_qwen_model_free(lm->model);
  free(lm);
}
