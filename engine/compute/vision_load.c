/* engine/compute/vision_load.c: loading the vision tower's BF16 weights onto a backend (dtype,
 * size and NaN/Inf checks through aqs_weight_upload, weight amax) and naming its linears. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/compute/vision.h"

static const char *const vis_slot_suffix[AQS_VIS_SLOT_COUNT] = {
  "attn.qkv", "attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
  "patch_embed.proj", "merger.mlp.0", "merger.mlp.2",
};

const char *aqs_vis_slot_suffix(aqs_vis_slot s) {
  return (unsigned)s < AQS_VIS_SLOT_COUNT ? vis_slot_suffix[s] : "?";
}

int aqs_vision_quant_index(int block, aqs_vis_slot slot) {
  return (block + 1) * AQS_VIS_SLOT_COUNT + (int)slot;
}

aqs_lm_linear *aqs_vision_linear(aqs_vision *vis, int block, aqs_vis_slot slot) {
  if (block >= 0) {
    if (block >= vis->cfg.depth || slot >= AQS_VIS_BLOCK_SLOTS) return NULL;
    return &vis->blocks[block].lin[slot];
  }
  switch (slot) {
  case AQS_VIS_PATCH: return &vis->patch_embed;
  case AQS_VIS_MERGER0: return &vis->merger[0];
  case AQS_VIS_MERGER2: return &vis->merger[1];
  default: return NULL;
  }
}

int aqs_vision_find_linear(const aqs_vision *vis, const char *module, int *block,
                           aqs_vis_slot *slot) {
  for (int b = -1; b < vis->cfg.depth; b++)
    for (int s = 0; s < AQS_VIS_SLOT_COUNT; s++) {
      const aqs_lm_linear *lin = aqs_vision_linear((aqs_vision *)vis, b, (aqs_vis_slot)s);
      if (lin && strcmp(lin->module, module) == 0) {
        *block = b;
        *slot = (aqs_vis_slot)s;
        return 1;
      }
    }
  return 0;
}

/* Uploads <module>.weight (out x in) and, when has_bias, <module>.bias. */
static aqs_status load_linear(aqs_vision *vis, const aqs_ckpt *ck, aqs_lm_linear *lin,
                              const char *module, int out, int in, int has_bias, aqs_err *e) {
  char name[300];
  snprintf(lin->module, sizeof lin->module, "%s", module);
  lin->out = out;
  lin->in = in;
  snprintf(name, sizeof name, "%s.weight", module);
  aqs_status st = aqs_weight_upload(vis->be, ck, name, (uint64_t)out * (uint64_t)in, &lin->w,
                                    &lin->weight_amax, &vis->weight_bytes, e);
  if (st != AQS_OK || !has_bias) return st;
  snprintf(name, sizeof name, "%s.bias", module);
  return aqs_weight_upload(vis->be, ck, name, (uint64_t)out, &lin->b, NULL, &vis->weight_bytes, e);
}

aqs_status aqs_vision_load(aqs_backend *be, const aqs_qwen_model *model, const aqs_ckpt *ck,
                           aqs_vision **out, aqs_err *e) {
  *out = NULL;
  aqs_vision *vis = calloc(1, sizeof *vis);
  if (!vis) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  vis->be = be;
  vis->cfg = model->cfg.vision;
  vis->naming = model->naming;
  const aqs_qwen_vision_config *c = &vis->cfg;
  const int C = c->hidden_size, I = c->intermediate_size, m2 = c->spatial_merge_size *
                                                                 c->spatial_merge_size;
  vis->head_dim = C / c->num_heads;
  vis->patch_dim = c->in_channels * c->temporal_patch_size * c->patch_size * c->patch_size;
  vis->merge_unit = m2;
  aqs_status st = AQS_OK;
  if (vis->head_dim % 4 != 0) {
    st = aqs_errf(e, AQS_ERR_UNSUPPORTED,
                  "vision head_dim %d (hidden_size / num_heads) is not a multiple of 4",
                  vis->head_dim);
    goto fail;
  }
  vis->blocks = calloc((size_t)c->depth, sizeof *vis->blocks);
  if (!vis->blocks) {
    st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
    goto fail;
  }
  char name[256], module[256];
  aqs_qwen_global_name(vis->naming, "patch_embed.proj", module, sizeof module);
  if ((st = load_linear(vis, ck, &vis->patch_embed, module, C, vis->patch_dim, 0, e))) goto fail;
  const int outs[AQS_VIS_BLOCK_SLOTS] = {3 * C, C, I, I, C};
  const int ins[AQS_VIS_BLOCK_SLOTS] = {C, C, C, C, I};
  for (int b = 0; b < c->depth; b++) {
    aqs_vision_block *B = &vis->blocks[b];
    aqs_qwen_vis_name(vis->naming, b, "norm1.weight", name, sizeof name);
    if ((st = aqs_weight_upload(be, ck, name, (uint64_t)C, &B->norm1, NULL, &vis->weight_bytes, e)))
      goto fail;
    aqs_qwen_vis_name(vis->naming, b, "norm2.weight", name, sizeof name);
    if ((st = aqs_weight_upload(be, ck, name, (uint64_t)C, &B->norm2, NULL, &vis->weight_bytes, e)))
      goto fail;
    for (int s = 0; s < AQS_VIS_BLOCK_SLOTS; s++) {
      aqs_qwen_vis_name(vis->naming, b, vis_slot_suffix[s], module, sizeof module);
      if ((st = load_linear(vis, ck, &B->lin[s], module, outs[s], ins[s], 1, e))) goto fail;
    }
  }
  aqs_qwen_global_name(vis->naming, "merger.ln_q.weight", name, sizeof name);
  if ((st = aqs_weight_upload(be, ck, name, (uint64_t)C, &vis->ln_q, NULL, &vis->weight_bytes, e)))
    goto fail;
  aqs_qwen_global_name(vis->naming, "merger.mlp.0", module, sizeof module);
  if ((st = load_linear(vis, ck, &vis->merger[0], module, m2 * C, m2 * C, 1, e))) goto fail;
  aqs_qwen_global_name(vis->naming, "merger.mlp.2", module, sizeof module);
  if ((st = load_linear(vis, ck, &vis->merger[1], module, c->out_hidden_size, m2 * C, 1, e)))
    goto fail;
  *out = vis;
  return AQS_OK;
fail:
  aqs_vision_free(vis);
  return st;
}

aqs_status aqs_vision_load_dir(aqs_backend *be, const char *model_dir, aqs_vision **out,
                               aqs_err *e) {
  aqs_qwen_model *model = NULL;
  aqs_ckpt *ck = NULL;
  aqs_status st = aqs_qwen_model_open(model_dir, &model, &ck, e);
  if (st == AQS_OK) st = aqs_vision_load(be, model, ck, out, e);
  aqs_ckpt_close(ck);
  aqs_qwen_model_free(model);
  return st;
}

static void free_linear(aqs_backend *be, aqs_lm_linear *lin) {
  be->ops->free(be, lin->w);
  be->ops->free(be, lin->b);
}

void aqs_vision_free(aqs_vision *vis) {
  if (!vis) return;
  aqs_backend *be = vis->be;
  if (vis->base) { /* aqs_vision_load_served_over: only the FP8 codes are this tower's */
    for (int b = -1; vis->blocks && b < vis->cfg.depth; b++)
      for (int s = 0; s < AQS_VIS_SLOT_COUNT; s++) {
        aqs_lm_linear *lin = aqs_vision_linear(vis, b, (aqs_vis_slot)s);
        if (lin) be->ops->free(be, lin->wq);
      }
    free(vis->blocks);
    free(vis);
    return;
  }
  if (vis->blocks) {
    for (int b = 0; b < vis->cfg.depth; b++) {
      be->ops->free(be, vis->blocks[b].norm1);
      be->ops->free(be, vis->blocks[b].norm2);
      for (int s = 0; s < AQS_VIS_BLOCK_SLOTS; s++) free_linear(be, &vis->blocks[b].lin[s]);
    }
    free(vis->blocks);
  }
  free_linear(be, &vis->patch_embed);
  free_linear(be, &vis->merger[0]);
  free_linear(be, &vis->merger[1]);
  be->ops->free(be, vis->ln_q);
  free(vis);
}
