/* tests/unit/compute/vision_probe.h: a vision-tower hook for gradient checks, shared by the compute
 * tests: captures G = dL/dY of one (block, slot) in the backward, or adds h * direction to that
 * linear's Y in the forward (CPU backend memory is host memory). Header-only (static). */
#ifndef AQS_TEST_VISION_PROBE_H
#define AQS_TEST_VISION_PROBE_H

#include <string.h>

#include "engine/compute/vision.h"

typedef struct vprobe {
  int block;
  aqs_vis_slot slot;
  float *g;          /* captured G, or NULL */
  const float *dir;  /* perturbation direction, or NULL */
  float h;
  size_t n;          /* elements of the probed output */
} vprobe;

static inline aqs_status vprobe_hook(void *ctx, const aqs_vision *vis, int block, aqs_vis_slot slot,
                                     const aqs_lm_linear *lin, const float *x, const float *y,
                                     const float *g, int rows, aqs_err *e) {
  (void)vis;
  (void)x;
  (void)e;
  vprobe *p = ctx;
  if (block != p->block || slot != p->slot) return AQS_OK;
  p->n = (size_t)rows * (size_t)lin->out;
  if (g && p->g) memcpy(p->g, g, p->n * sizeof(float));
  else if (!g && p->dir)
    for (size_t i = 0; i < p->n; i++) ((float *)y)[i] += p->h * p->dir[i];
  return AQS_OK;
}

#endif
