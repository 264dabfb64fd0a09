/* engine/compute/lm_backward.c: forward + mean next-token cross-entropy + activation backward
 * (no weight gradients). Each layer is recomputed from its residual checkpoint, then
 * differentiated; the hook sees every linear's input x, output y and gradient g = dL/dy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/compute/lm_internal.h"
#include "engine/compute/mlp_backward.h"

/* The MLP half's hook: maps its linears onto the layer's slots for the caller's hook. */
typedef struct layer_hook_ctx {
  aqs_lm_linear_hook hook;
  void *ctx;
  const aqs_lm *lm;
  int layer, N;
} layer_hook_ctx;

static aqs_status mlp_hook(void *ctx, aqs_mlp_linear which, const float *x, const float *y, const float *g,
                           aqs_err *e) {
  static const aqs_lin_slot slot[] = {[AQS_MLP_DOWN] = AQS_LIN_DOWN, [AQS_MLP_GATE] = AQS_LIN_GATE,
                                      [AQS_MLP_UP] = AQS_LIN_UP};
  const layer_hook_ctx *h = ctx;
  return h->hook(h->ctx, h->lm, h->layer, slot[which], x, y, g, h->N, e);
}

/* Backward through layer l: ws->d_x holds dL/d(layer output) on entry, dL/d(layer input) on
 * return. The layer's intermediates must be those of its forward on x_in. */
static aqs_status layer_bwd(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws, int l,
                            const float *x_in, aqs_lm_linear_hook hook, void *ctx, aqs_err *e) {
  aqs_backend *be = lm->be;
  const aqs_ops *op = be->ops;
  const aqs_qwen_text_config *c = &lm->cfg;
  const aqs_lm_layer *L = &lm->layers[l];
  const aqs_lm_linear *lin = L->lin;
  const int N = ws->N, C = c->hidden_size, D = c->head_dim, Hq = c->num_heads,
            Hkv = c->num_kv_heads, I = c->intermediate_size;
  const size_t NC = (size_t)N * (size_t)C;
  aqs_status st;
  /* MLP */
  const aqs_mlp_bwd_io mlp = {.hmid = ws->hmid, .rstd2 = ws->rstd2, .ln2 = ws->ln2, .gate = ws->gate,
                              .up = ws->up, .act = ws->act, .down = ws->down, .norm2 = L->ln2,
                              .w_gate = lin[AQS_LIN_GATE].w, .w_up = lin[AQS_LIN_UP].w,
                              .w_down = lin[AQS_LIN_DOWN].w, .d_out = ws->d_x, .d_h = ws->d_h,
                              .d_ln = ws->d_ln, .d_act = ws->d_act, .d_gate = ws->d_gate, .d_up = ws->d_up};
  layer_hook_ctx hctx = {hook, ctx, lm, l, N};
  if ((st = aqs_mlp_swiglu_bwd(be, &mlp, N, C, I, hook ? mlp_hook : NULL, &hctx, e)) != AQS_OK) return st;
#define HOOK(slot, x, y, g) \
  if (hook && (st = hook(ctx, lm, l, slot, x, y, g, N, e)) != AQS_OK) return st
  /* attention */
  HOOK(AQS_LIN_O, ws->attn, ws->o, ws->d_h);
  op->linear_bwd_input(be, ws->d_attn, ws->d_h, lin[AQS_LIN_O].w, N, Hq * D, C, 0);
  op->attention_bwd(be, ws->d_q, ws->d_k, ws->d_v, ws->d_attn, ws->attn, ws->lse, ws->qr, ws->kr,
                    ws->v, b->cu_seqlens, b->n_seqs, b->max_seqlen, N, Hq, Hkv, D);
  op->rope_bwd(be, ws->d_q, b->pos, N, Hq, D, c->mrope_section, (float)c->rope_theta);
  op->rope_bwd(be, ws->d_k, b->pos, N, Hkv, D, c->mrope_section, (float)c->rope_theta);
  HOOK(AQS_LIN_Q, ws->ln1, ws->q, ws->d_q);
  HOOK(AQS_LIN_K, ws->ln1, ws->k, ws->d_k);
  HOOK(AQS_LIN_V, ws->ln1, ws->v, ws->d_v);
  op->linear_bwd_input(be, ws->d_ln, ws->d_q, lin[AQS_LIN_Q].w, N, C, Hq * D, 0);
  op->linear_bwd_input(be, ws->d_ln, ws->d_k, lin[AQS_LIN_K].w, N, C, Hkv * D, 1);
  op->linear_bwd_input(be, ws->d_ln, ws->d_v, lin[AQS_LIN_V].w, N, C, Hkv * D, 1);
  op->copy_d2d(be, ws->d_x, ws->d_h, NC * sizeof(float));
  op->rmsnorm_bwd(be, ws->d_x, ws->d_ln, x_in, ws->rstd1, L->ln1, N, C, 1);
#undef HOOK
  return AQS_OK;
}

/* Physical memory, or the cgroup (v2) limit of this process when lower (a container's memory.max). */
static size_t host_memory_bytes(void) {
  long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGE_SIZE);
  size_t mem = pages > 0 && psize > 0 ? (size_t)pages * (size_t)psize : 0;
  FILE *f = fopen("/sys/fs/cgroup/memory.max", "r");
  unsigned long long limit;
  if (f) {
    if (fscanf(f, "%llu", &limit) == 1 && limit < mem) mem = (size_t)limit; /* "max": no limit */
    fclose(f);
  }
  return mem;
}

/* Keeps every layer's intermediates for the backward when memory allows (AQS_KEEP_ACTIVATIONS:
 * unset = when it fits, 0 = never, i.e. recompute each layer from its checkpoint as before).
 * Same bits either way: the kept values are those the recompute would produce. "Fits": the sets
 * allocate and, on a GPU, a reserve of max(1 GiB, 4 sets) still does after them (the backward's own
 * scratch grows later); on the CPU they take at most an eighth of physical memory or of the cgroup's memory.max. */
static void keep_activations(const aqs_lm *lm, aqs_lm_ws *ws) {
  const char *env = getenv("AQS_KEEP_ACTIVATIONS");
  if (env && !strcmp(env, "0")) return;
  aqs_backend *be = lm->be;
  /* sizes in floats, in aqs_lm_acts order; each part starts 256-byte aligned like an allocation */
  size_t part[AQS_LM_ACTS], per = 0;
  aqs_lm_acts_sizes(lm, (size_t)ws->N, part);
  for (int i = 0; i < AQS_LM_ACTS; i++) per += (part[i] + 63) / 64 * 64;
  const int L = lm->cfg.num_layers;
  const size_t bytes = per * sizeof(float) * (size_t)L;
  if (!strcmp(be->name, "cpu") && bytes > host_memory_bytes() / 8) return;
  aqs_lm_acts *kept = calloc((size_t)L, sizeof *kept);
  void *mem = NULL, *reserve = NULL;
  aqs_err ignored;
  if (!kept || be->ops->alloc(be, bytes, &mem, &ignored) != AQS_OK) {
    free(kept);
    return;
  }
  if (strcmp(be->name, "cpu")) {
    size_t want = per * sizeof(float) * 4 > (1u << 30) ? per * sizeof(float) * 4 : (1u << 30);
    if (be->ops->alloc(be, want, &reserve, &ignored) != AQS_OK) {
      be->ops->free(be, mem);
      free(kept);
      return;
    }
    be->ops->free(be, reserve);
  }
  float *p = mem;
  for (int l = 0; l < L; l++) {
    float *f[AQS_LM_ACTS];
    for (int i = 0; i < AQS_LM_ACTS; i++) {
      f[i] = p;
      p += (part[i] + 63) / 64 * 64;
    }
    kept[l] = aqs_lm_acts_of(f);
  }
  ws->kept = kept;
  ws->kept_mem = mem;
}

/* Releases the kept sets and points ws at its own set again: they serve one backward, and what
 * runs after it (the vision backward of an image batch, another pass on ws) needs the memory. */
static void drop_kept(const aqs_lm *lm, aqs_lm_ws *ws) {
  aqs_lm_ws_select_layer(ws, -1);
  lm->be->ops->free(lm->be, ws->kept_mem);
  free(ws->kept);
  ws->kept = NULL;
  ws->kept_mem = NULL;
}

aqs_status aqs_lm_forward_backward(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws,
                                   aqs_lm_linear_hook hook, void *ctx, double *loss_out,
                                   aqs_err *e) {
  aqs_backend *be = lm->be;
  const aqs_ops *op = be->ops;
  const aqs_qwen_text_config *c = &lm->cfg;
  const int N = ws->N, C = c->hidden_size, V = c->vocab_size;
  const size_t NC = (size_t)N * (size_t)C;
  if (!ws->d_x) return aqs_errf(e, AQS_ERR_INTERNAL, "workspace allocated without gradients");
  if (b->n_targets < 1)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "batch has no next-token targets (every sequence has one token)");
  keep_activations(lm, ws);
  aqs_status st = aqs_lm_forward(lm, b, ws, NULL, NULL, e);
  if (st != AQS_OK) {
    drop_kept(lm, ws);
    return st;
  }
  double loss_sum = 0.0;
  op->cross_entropy(be, ws->logits, ws->logits, b->targets, N, V, 1.0f / (float)b->n_targets,
                    &loss_sum);
  if (!(loss_sum == loss_sum) || loss_sum > 1e300) {
    drop_kept(lm, ws);
    return aqs_errf(e, AQS_ERR_NUMERIC, "non-finite cross-entropy loss (%g)", loss_sum);
  }
  *loss_out = loss_sum / b->n_targets;
  const float *x_final = ws->ckpt + (size_t)c->num_layers * NC;
  op->linear_bwd_input(be, ws->d_ln, ws->logits, lm->lm_head, N, C, V, 0);
  op->rmsnorm_bwd(be, ws->d_x, ws->d_ln, x_final, ws->rstdf, lm->final_norm, N, C, 0);
  for (int l = c->num_layers - 1; l >= 0; l--) {
    const float *x_in = ws->ckpt + (size_t)l * NC;
    if (ws->kept) { /* the forward left the layer's intermediates in kept[l] */
      aqs_lm_ws_select_layer(ws, l);
    } else { /* recompute them (x_out lands in xa; the checkpoint stays intact) */
      if ((st = aqs_lm_layer_fwd(lm, b, ws, l, x_in, ws->xa, 0, NULL, NULL, e)) != AQS_OK) break;
    }
    if ((st = layer_bwd(lm, b, ws, l, x_in, hook, ctx, e)) != AQS_OK) break;
    /* the finite check of each layer's input gradient without a sync per layer (a sync drains
     * the GPU's queue 36 times a step): the forward has read ws->layer_amax already */
    op->amax_f32_async(be, ws->d_x, NC, ws->layer_amax + l);
  }
  drop_kept(lm, ws);
  if (st != AQS_OK) return st;
  return aqs_lm_check_layer_amax(lm, ws, 1, "the gradient at the input of", e);
}
