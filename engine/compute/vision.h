/* engine/compute/vision.h: the Qwen2.5-VL vision tower on a compute backend, llm.c style: a struct
 * of parameter pointers (backend memory) plus one function per pass, calling only kernels/ops.h
 * (same code on cpu and cuda). Mirrors transformers' Qwen2_5_VisionTransformerPretrainedModel:
 * patch embedding (the Conv3d over temporal x patch x patch as a linear), window reordering,
 * blocks (RMSNorm, fused qkv, 2-D rotary, window or full bidirectional attention, proj, RMSNorm,
 * SwiGLU MLP with biases), patch merger (RMSNorm ln_q, 2x2 rows merged, mlp.0, GELU, mlp.2) and
 * the inverse reordering.
 *
 * Shapes: N = patches of a batch of images (sum of t*h*w), M = N / m^2 merged tokens (m =
 * spatial_merge_size), C = vision hidden_size, H heads of D = C / H, I = intermediate_size,
 * P = 3 * temporal_patch_size * patch_size^2 (1176), O = out_hidden_size (the text hidden size).
 * Inside the tower rows are in WINDOW order (the batch reorders patches on the host); the output
 * rows are in the processor's merged order, i.e. the order of the <|image_pad|> tokens.
 * Threads: one pass at a time per aqs_vision / workspace (the backend is not thread-safe). */
#ifndef AQS_COMPUTE_VISION_H
#define AQS_COMPUTE_VISION_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/compute/lm.h"
#include "engine/model/qwen_config.h"
#include "kernels/ops.h"

/* The quantizable linears of the tower. Block slots apply to each block; the stem and merger
 * slots have block index -1 in hooks. */
typedef enum aqs_vis_slot {
  AQS_VIS_QKV = 0, /* blocks.B.attn.qkv (3C, C) + bias; input: norm1 output */
  AQS_VIS_PROJ,    /* blocks.B.attn.proj (C, C) + bias; input: attention output */
  AQS_VIS_GATE,    /* blocks.B.mlp.gate_proj (I, C) + bias; input: norm2 output */
  AQS_VIS_UP,      /* blocks.B.mlp.up_proj (I, C) + bias; input: norm2 output */
  AQS_VIS_DOWN,    /* blocks.B.mlp.down_proj (C, I) + bias; input: silu(gate) * up */
  AQS_VIS_BLOCK_SLOTS,
  AQS_VIS_PATCH = AQS_VIS_BLOCK_SLOTS, /* patch_embed.proj (C, P), no bias; input: patches */
  AQS_VIS_MERGER0, /* merger.mlp.0 (m^2 C, m^2 C) + bias; input: ln_q output, m^2 rows merged */
  AQS_VIS_MERGER2, /* merger.mlp.2 (O, m^2 C) + bias; input: GELU output */
  AQS_VIS_SLOT_COUNT
} aqs_vis_slot;

/* Module suffix of a slot ("attn.qkv", "patch_embed.proj", "merger.mlp.0"). */
const char *aqs_vis_slot_suffix(aqs_vis_slot s);

typedef struct aqs_vision_block {
  aqs_bf16 *norm1, *norm2;                  /* (C) */
  aqs_lm_linear lin[AQS_VIS_BLOCK_SLOTS];
} aqs_vision_block;

typedef struct aqs_vision {
  aqs_backend *be;             /* not owned */
  aqs_qwen_vision_config cfg;
  aqs_qwen_naming naming;
  int head_dim;                /* D */
  int patch_dim;               /* P */
  int merge_unit;              /* m^2 */
  aqs_lm_linear patch_embed;   /* w (C, P) = the Conv3d weight (C, 3, t, p, p) flattened */
  aqs_vision_block *blocks;    /* (depth) */
  aqs_bf16 *ln_q;              /* (C) */
  aqs_lm_linear merger[2];     /* mlp.0, mlp.2 */
  size_t weight_bytes;
  int n_served_fp8;            /* linears run as served FP8 (wq: aqs_vision_load_served_over) */
  const struct aqs_vision *base; /* aqs_vision_load_served_over: the tower whose BF16 tensors this
                                    one borrows (it owns only its FP8 codes) */
} aqs_vision;

/* Loads the vision tower of the checkpoint ck (already checked against model by
 * aqs_qwen_model_open) onto be. Errors as aqs_lm_load (tensor named). Computes weight_amax. */
aqs_status aqs_vision_load(aqs_backend *be, const aqs_qwen_model *model, const aqs_ckpt *ck,
                           aqs_vision **out, aqs_err *e);
/* Opens model_dir (config + checkpoint) and loads its vision tower. */
aqs_status aqs_vision_load_dir(aqs_backend *be, const char *model_dir, aqs_vision **out,
                               aqs_err *e);
/* A served scheme's tower over base (engine/compute/vision_served.c), as aqs_lm_load_served_over
 * for the language model: diff holds only what the scheme changed; an F8_E4M3 linear weight with
 * its weight_scale / input_scale becomes a served FP8 linear (gate/up share one weight and input
 * scale, as vLLM fuses them); every other tensor is base's (borrowed: base must outlive *out). A
 * changed tensor the tower reads in BF16 is AQS_ERR_UNSUPPORTED naming it. */
aqs_status aqs_vision_load_served_over(const aqs_vision *base, const aqs_ckpt *diff, aqs_vision **out,
                                       aqs_err *e);
void aqs_vision_free(aqs_vision *vis);

/* The linear of (block, slot): block in [0, depth) for block slots, -1 for the others; NULL for
 * an impossible pair. */
aqs_lm_linear *aqs_vision_linear(aqs_vision *vis, int block, aqs_vis_slot slot);

/* The (block, slot) of the vision linear named module (checkpoint module name, no ".weight");
 * returns 0 when no linear has that name. */
int aqs_vision_find_linear(const aqs_vision *vis, const char *module, int *block,
                           aqs_vis_slot *slot);

/* Window geometry of a batch of images, as transformers' get_window_index computes it (host).
 * window_index (M): merged token of the processor order at each window-order position;
 * cu_window (n_windows + 1) and cu_full (n_frames + 1): attention segments in patches, window
 * order (empty windows dropped, as torch.unique_consecutive does). All malloc'd; free with
 * aqs_vision_windows_free. */
typedef struct aqs_vision_windows {
  int n_tokens;                /* N patches */
  int n_merged;                /* M */
  int32_t *window_index;       /* (M) */
  int n_windows;
  int32_t *cu_window;          /* (n_windows + 1) */
  int max_window;
  int n_frames;
  int32_t *cu_full;            /* (n_frames + 1) */
  int max_frame;
  int32_t *pos_hw;             /* (2, N): rotary row / column of each patch, window order */
} aqs_vision_windows;

/* grid_thw (n_images, 3) host. Errors (AQS_ERR_INVALID naming the image): a side < 1, h or w not
 * a multiple of spatial_merge_size, more than INT32_MAX / 4 patches in total. */
aqs_status aqs_vision_windows_make(const aqs_qwen_vision_config *cfg, const int32_t *grid_thw,
                                   int n_images, aqs_vision_windows *out, aqs_err *e);
void aqs_vision_windows_free(aqs_vision_windows *w);

/* A batch of images on the backend (pixel patches in window order). */
typedef struct aqs_vision_batch {
  int n_images;
  int n_tokens;                /* N */
  int n_merged;                /* M */
  aqs_vision_windows win;      /* host geometry */
  float *patches;              /* backend (N, P), window order; BF16-rounded in BF16 mode */
  int32_t *pos_hw;             /* backend (2, N) */
  int32_t *cu_window;          /* backend (n_windows + 1) */
  int32_t *cu_full;            /* backend (n_frames + 1) */
  int32_t *window_index;       /* backend (M) */
  int32_t *qkv_rows;           /* backend (3, N): rows 3i, 3i+1, 3i+2 of the (3N, C) qkv view */
} aqs_vision_batch;

/* Uploads images: grid_thw (n_images, 3) host, patches (N, P) host in the processor's order
 * (engine/image/qwen_vision.h, aqs_calib_chunk.pixel_patches). Errors as windows_make, plus
 * AQS_ERR_INVALID when n_images < 1 or a patch holds NaN/Inf (image named). */
aqs_status aqs_vision_batch_make(const aqs_vision *vis, const int32_t *grid_thw, int n_images,
                                 const float *patches, aqs_vision_batch *out, aqs_err *e);
void aqs_vision_batch_free(const aqs_vision *vis, aqs_vision_batch *b);

/* Workspace for one batch: residual checkpoints (depth + 1, N, C), one block's intermediates,
 * the merger's, their gradients (with_grads) and the output (M, O). */
typedef struct aqs_vision_ws aqs_vision_ws;
aqs_status aqs_vision_ws_alloc(const aqs_vision *vis, const aqs_vision_batch *b, int with_grads,
                               aqs_vision_ws **out, aqs_err *e);
void aqs_vision_ws_free(const aqs_vision *vis, aqs_vision_ws *ws);
/* The output features (M, O) in <|image_pad|> order, valid after a forward. */
float *aqs_vision_ws_output(aqs_vision_ws *ws);
/* dL/d(output) (M, O): the caller writes it before aqs_vision_backward. */
float *aqs_vision_ws_doutput(aqs_vision_ws *ws);

/* FP8 fake-quant output of lin on x (rows, lin->in) into the workspace's scratch (input scale
 * input_amax / 448, weight scale weight_amax / 448); returns that (rows, lin->out) buffer, valid
 * until the next call or pass. */
float *aqs_vision_ws_linear_fp8(const aqs_vision *vis, aqs_vision_ws *ws,
                                const aqs_lm_linear *lin, const float *x, int rows);

/* Per-linear callback: block in [0, depth) or -1 (patch_embed, merger); x (rows, in), y (rows,
 * out), g = dL/dy (NULL in the forward); rows = N for the stem and blocks, M for the merger. */
typedef aqs_status (*aqs_vision_hook)(void *ctx, const aqs_vision *vis, int block,
                                      aqs_vis_slot slot, const aqs_lm_linear *lin, const float *x,
                                      const float *y, const float *g, int rows, aqs_err *e);

/* Forward of the tower into the output; hook (may be NULL) sees each linear's x and y.
 * Linears whose fp8 flag is set in quant (NULL = none) run FP8 fake-quantized: quant[k] for
 * k = (block + 1) * AQS_VIS_SLOT_COUNT + slot with block -1 for the stem/merger (see
 * aqs_vision_quant_index). Non-finite block outputs are AQS_ERR_NUMERIC naming the block. */
aqs_status aqs_vision_forward(const aqs_vision *vis, const aqs_vision_batch *b,
                              aqs_vision_ws *ws, const unsigned char *quant,
                              aqs_vision_hook hook, void *ctx, aqs_err *e);
/* Index into the quant flag array of aqs_vision_forward; the array has
 * (depth + 1) * AQS_VIS_SLOT_COUNT entries. */
int aqs_vision_quant_index(int block, aqs_vis_slot slot);

/* Backward from dL/d(output) (aqs_vision_ws_doutput) through the tower (activation gradients
 * only; blocks recomputed from their checkpoints). Needs a forward on the same batch first
 * (unquantized). hook sees each linear's x, y and g. */
aqs_status aqs_vision_backward(const aqs_vision *vis, const aqs_vision_batch *b,
                               aqs_vision_ws *ws, aqs_vision_hook hook, void *ctx, aqs_err *e);

#endif
