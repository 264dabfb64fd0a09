/* engine/compute/vision_served.c: a served scheme's vision tower over the BF16 one (vision.h,
 * aqs_vision_load_served_over): FP8 linears from the checkpoint's codes and scales, grouped as
 * vLLM's Qwen2.5-VL vision tower fuses them; every other tensor borrowed from the base tower. */
#include <stdlib.h>
#include <string.h>

#include "engine/compute/lm_internal.h"
#include "engine/compute/vision.h"

aqs_status aqs_vision_load_served_over(const aqs_vision *base, const aqs_ckpt *diff, aqs_vision **out,
                                       aqs_err *e) {
  *out = NULL;
  if (base->base || base->n_served_fp8)
    return aqs_errf(e, AQS_ERR_INVALID, "a served scheme is loaded over a BF16 tower, not over another scheme");
  const char *const prefix = aqs_qwen_vis_prefix(base->naming);
  aqs_status cst = aqs_served_check_diff(diff, &prefix, 1, e);
  if (cst) return cst;
  aqs_vision *vis = malloc(sizeof *vis);
  aqs_vision_block *blocks = malloc((size_t)base->cfg.depth * sizeof *blocks);
  if (!vis || !blocks) {
    free(vis);
    free(blocks);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  *vis = *base;
  memcpy(blocks, base->blocks, (size_t)base->cfg.depth * sizeof *blocks);
  vis->blocks = blocks;
  vis->base = base;
  vis->weight_bytes = 0;
  for (int b = -1; b < vis->cfg.depth; b++)
    for (int s = 0; s < AQS_VIS_SLOT_COUNT; s++) {
      aqs_lm_linear *lin = aqs_vision_linear(vis, b, (aqs_vis_slot)s);
      if (lin) lin->w_fake = NULL;
    }
  /* vLLM's GEMMs: qkv, proj, gate_up (fused), down per block; patch embedding and the merger's two */
  aqs_status st = AQS_OK;
  for (int b = 0; st == AQS_OK && b < vis->cfg.depth; b++) {
    aqs_lm_linear *L = vis->blocks[b].lin;
    aqs_lm_linear *qkv[] = {&L[AQS_VIS_QKV]}, *proj[] = {&L[AQS_VIS_PROJ]},
                  *gate_up[] = {&L[AQS_VIS_GATE], &L[AQS_VIS_UP]}, *down[] = {&L[AQS_VIS_DOWN]};
    aqs_lm_linear *const *groups[] = {qkv, proj, gate_up, down};
    const int sizes[] = {1, 1, 2, 1};
    for (int g = 0; st == AQS_OK && g < 4; g++)
      st = aqs_served_load_fused(vis->be, diff, groups[g], sizes[g], &vis->weight_bytes, &vis->n_served_fp8, e);
  }
  aqs_lm_linear *stem[] = {&vis->patch_embed, &vis->merger[0], &vis->merger[1]};
  for (int g = 0; st == AQS_OK && g < 3; g++)
    st = aqs_served_load_fused(vis->be, diff, &stem[g], 1, &vis->weight_bytes, &vis->n_served_fp8, e);
  /* a changed tower tensor no served linear reads would leave the BF16 one in its place: refused */
  for (size_t i = 0; st == AQS_OK && i < diff->ntensors; i++) {
    const char *name = diff->tensors[i]->name;
    if (strncmp(name, prefix, strlen(prefix)) != 0) continue;
    int read = 0;
    for (int b = -1; !read && b < vis->cfg.depth; b++)
      for (int s = 0; !read && s < AQS_VIS_SLOT_COUNT; s++) {
        const aqs_lm_linear *lin = aqs_vision_linear(vis, b, (aqs_vis_slot)s);
        read = lin && aqs_served_reads(lin, name, NULL);
      }
    if (!read)
      st = aqs_errf(e, AQS_ERR_UNSUPPORTED, "%s: tensor %s (%s) is read by no served linear of the vision tower",
                    diff->dir, name, aqs_dtype_name(diff->tensors[i]->dtype));
  }
  if (st != AQS_OK) {
    aqs_vision_free(vis);
    return st;
  }
  *out = vis;
  return AQS_OK;
}
