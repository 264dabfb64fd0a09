/* engine/compute/lm.h: the Qwen2.5-VL language model (text path) on a compute backend, llm.c
 * style: a struct of parameter pointers (backend memory) plus one function per pass. The passes
 * call only kernels/ops.h, so the same code runs on cpu and cuda.
 *
 * Shapes: N = tokens of a packed batch (sum of sequence lengths), C = hidden_size,
 * Hq/Hkv = attention / kv heads, D = head_dim, I = intermediate_size, V = vocab_size.
 * Linear slots of one decoder layer (the modules quantization acts on): */
#ifndef AQS_COMPUTE_LM_H
#define AQS_COMPUTE_LM_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/model/qwen_config.h"
#include "kernels/ops.h"

typedef enum aqs_lin_slot {
  AQS_LIN_Q = 0, /* self_attn.q_proj (Hq*D, C) + bias; input: ln1 output */
  AQS_LIN_K,     /* self_attn.k_proj (Hkv*D, C) + bias; input: ln1 output */
  AQS_LIN_V,     /* self_attn.v_proj (Hkv*D, C) + bias; input: ln1 output */
  AQS_LIN_O,     /* self_attn.o_proj (C, Hq*D); input: attention output */
  AQS_LIN_GATE,  /* mlp.gate_proj (I, C); input: ln2 output */
  AQS_LIN_UP,    /* mlp.up_proj (I, C); input: ln2 output */
  AQS_LIN_DOWN,  /* mlp.down_proj (C, I); input: silu(gate) * up */
  AQS_LIN_COUNT
} aqs_lin_slot;

/* Module suffix of a slot ("self_attn.q_proj"). */
const char *aqs_lin_slot_suffix(aqs_lin_slot s);

typedef struct aqs_lm_linear {
  char module[128];      /* checkpoint module name ("model.language_model.layers.0.self_attn.q_proj") */
  aqs_bf16 *w;           /* (out, in) */
  aqs_bf16 *b;           /* (out) or NULL */
  int out, in;
  float weight_amax;     /* max |w| (computed at load) */
  float input_amax;      /* calibrated input amax (set by aqs_lm_set_amax), 0 = unset */
  /* Served FP8 (a checkpoint whose weight is F8_E4M3, as vLLM runs it): wq != NULL holds the
   * codes (out, in) under w_scale, x_scale is the static input scale; the forward then always
   * runs FP8 GEMM (input quantized with x_scale) and w is NULL. */
  uint8_t *wq;
  float w_scale, x_scale;
  /* Fake quant: the E4M3 codes of w at weight_amax/448, made once per model by
   * aqs_lm_fake_quant_weights (backend memory, out*in bytes), or NULL (quantized per call). */
  uint8_t *w_fake;
} aqs_lm_linear;

typedef struct aqs_lm_layer {
  aqs_bf16 *ln1, *ln2;   /* input_layernorm, post_attention_layernorm (C) */
  aqs_lm_linear lin[AQS_LIN_COUNT];
  /* FP8 KV cache: > 0 -> K (after RoPE) and V are stored as E4M3 under these per-tensor scales
   * and dequantized for attention (self_attn.k_proj.k_scale / v_proj.v_scale); 0 = BF16 cache. */
  float k_scale, v_scale;
} aqs_lm_layer;

typedef struct aqs_lm {
  aqs_backend *be;       /* not owned */
  aqs_qwen_model *model; /* owned: config, naming, groups */
  aqs_qwen_text_config cfg;
  aqs_bf16 *embed;       /* (V, C) */
  aqs_bf16 *final_norm;  /* (C) */
  aqs_bf16 *lm_head;     /* (V, C); == embed when tied */
  aqs_lm_layer *layers;  /* (num_layers) */
  size_t weight_bytes;   /* backend bytes held by the weights */
  int n_served_fp8;      /* linears loaded as FP8 (wq) */
  int kv_fp8;            /* 1 when any layer has k_scale/v_scale */
  const struct aqs_lm *base; /* aqs_lm_load_served_over: the model whose BF16 weights, biases,
                                norms and config this one borrows (it owns only its FP8 codes) */
} aqs_lm;

/* Loads the language model of the checkpoint in model_dir onto be: config.json, shape checks
 * against the config (AQS_ERR_MISMATCH naming tensor, shape and expected shape), every tensor
 * must be BF16 (AQS_ERR_UNSUPPORTED naming the tensor otherwise), NaN/Inf in any weight is
 * AQS_ERR_NUMERIC naming the tensor. Computes each linear's weight_amax.
 * An exported FP8 checkpoint (docs/checkpoint-format.md) loads too, as the serving engine runs
 * it: a linear whose weight is F8_E4M3 needs <module>.weight_scale and .input_scale (F32
 * scalars, finite and > 0; AQS_ERR_INVALID naming the tensor otherwise) and becomes a served
 * FP8 linear (wq). Fused members (q/k/v, gate/up) are requantized to the largest weight scale
 * of their fused GEMM and share the largest input scale, as vLLM's modelopt loader does.
 * self_attn.k_proj.k_scale / v_proj.v_scale (ModelOpt's FP8 KV cache scales) set the layer's
 * k_scale / v_scale. Such a model is for forward passes (eval); weight_amax of an FP8 linear is
 * the max |dequantized weight|. */
aqs_status aqs_lm_load(aqs_backend *be, const char *model_dir, aqs_lm **out, aqs_err *e);
/* A served scheme of base's model without reading or uploading what it shares with base: diff
 * holds only the tensors the scheme changed (the FP8 weights, their scales, KV cache scales:
 * engine/stages/ckpt_view.h); every other language-model tensor is base's (borrowed: base must
 * outlive *out and must be a BF16 model loaded by aqs_lm_load). FP8 linears, fused requantization
 * and KV scales as aqs_lm_load. A changed tensor the language model reads in BF16 (a weight, norm,
 * bias or embedding that differs from base) is AQS_ERR_UNSUPPORTED naming it; tensors of the
 * vision tower are ignored. */
aqs_status aqs_lm_load_served_over(const aqs_lm *base, const aqs_ckpt *diff, aqs_lm **out, aqs_err *e);
void aqs_lm_free(aqs_lm *lm);

/* A packed batch of token sequences on the backend. */
typedef struct aqs_lm_batch {
  int n_seqs;            /* B */
  int n_tokens;          /* N */
  int max_seqlen;
  int n_targets;         /* tokens with a next-token target (N - B) */
  int32_t *ids;          /* backend (N) */
  int32_t *targets;      /* backend (N): next token in the same sequence, -1 for the last */
  int32_t *pos;          /* backend (3, N): M-RoPE positions (text: index in sequence, x3) */
  int32_t *cu_seqlens;   /* backend (B + 1) */
  int32_t *host_cu_seqlens; /* host copy (B + 1) */
  /* Image batches (aqs_lm_batch_make_images; 0 / NULL for text batches): */
  int n_image_rows;      /* <|image_pad|> tokens of the batch */
  int32_t *image_rows;   /* backend (n_image_rows): their packed rows, image by image */
  const float *image_embeds; /* backend (n_image_rows, C), set by the caller before a forward:
                                the vision tower's output, placed at image_rows after the
                                token embedding (not owned); in BF16 mode BF16 values (the
                                BF16-storage calibration, lm_calib_b.c, stores them as BF16) */
} aqs_lm_batch;

/* Uploads sequences: ids (host, sum(seq_lens)) packed back to back, seq_lens (host, n_seqs).
 * Checks: n_seqs >= 1, every length >= 1 and <= max_seq_len (when > 0) and <=
 * max_position_embeddings (AQS_ERR_INVALID "sequence 3 has 900 tokens, more than the maximum
 * 512"), every id in [0, V) (AQS_ERR_INVALID naming sequence, position and id). */
aqs_status aqs_lm_batch_make(const aqs_lm *lm, const int32_t *ids, const int32_t *seq_lens,
                             int n_seqs, int max_seq_len, aqs_lm_batch *out, aqs_err *e);
void aqs_lm_batch_free(const aqs_lm *lm, aqs_lm_batch *b);

/* Where the images of a packed batch sit (host arrays, images sorted by sequence then start). */
typedef struct aqs_lm_images {
  int n_images;
  const int32_t *image_seq;         /* (n) sequence of each image */
  const int32_t *image_token_start; /* (n) first <|image_pad|> position within the sequence */
  const int32_t *image_grid_thw;    /* (n, 3) patches (t, h, w); tokens = t*h*w / merge^2 */
  int merge_size;                   /* vision spatial_merge_size */
} aqs_lm_images;

/* aqs_lm_batch_make for image+text sequences: the same checks, plus each image's token range must
 * hold only <|image_pad|> (config image_token_id), lie inside its sequence, and every
 * <|image_pad|> must belong to an image (AQS_ERR_INVALID naming sequence, image and position).
 * Positions are transformers' get_rope_index (Qwen2.5-VL, images: temporal index 0): text tokens
 * take p, p+1, ... on all three axes; the image tokens of a t x h x w merged grid take
 * (p, p + row, p + column) and the text after it continues at p + max(h, w). Targets: the next
 * token, except where the next token is <|image_pad|>, <|vision_start|> or <|vision_end|>
 * (-1: the loss covers the caption and prompt text only). */
aqs_status aqs_lm_batch_make_images(const aqs_lm *lm, const int32_t *ids, const int32_t *seq_lens,
                                    int n_seqs, int max_seq_len, const aqs_lm_images *images,
                                    aqs_lm_batch *out, aqs_err *e);

/* Workspace for one batch: the residual checkpoints (num_layers + 1, N, C), one layer's
 * intermediates (recomputed in the backward), their gradients and the logits (N, V).
 * Peak memory = weights + this; see docs/compute.md. */
typedef struct aqs_lm_ws aqs_lm_ws;
aqs_status aqs_lm_ws_alloc(const aqs_lm *lm, const aqs_lm_batch *b, int with_grads,
                           int with_logp_ref, aqs_lm_ws **out, aqs_err *e);
/* A workspace for aqs_lm_forward_layers only (no final norm, no logits: calibration), which
 * saves N * vocab floats (2.3 GiB for 4096 tokens of the 3b model). */
aqs_status aqs_lm_ws_alloc_layers(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws **out, aqs_err *e);
void aqs_lm_ws_free(const aqs_lm *lm, aqs_lm_ws *ws);
/* FP8 KV cache calibration: from now on every layer forward on ws writes max |K after RoPE| to
 * kv_amax[2l] and max |V| to kv_amax[2l + 1] (BACKEND memory (num_layers, 2), borrowed; written
 * asynchronously with amax_f32_async: copy it back after the forward; NaN/Inf propagate). NULL
 * stops it. */
void aqs_lm_ws_track_kv_amax(aqs_lm_ws *ws, float *kv_amax);

/* Per-linear callback during forward/backward passes. Called with backend pointers:
 * x = the linear's input (N, in), y = its unquantized output (N, out), g = dL/dy (N, out) in the
 * backward (NULL in forward-only passes). Returning non-OK stops the pass. */
typedef aqs_status (*aqs_lm_linear_hook)(void *ctx, const aqs_lm *lm, int layer, aqs_lin_slot slot,
                                         const float *x, const float *y, const float *g, int N,
                                         aqs_err *e);

/* Forward of the whole model: embedding, layers (saving residual checkpoints), final norm,
 * logits into the workspace. hook (may be NULL) sees every linear's x and y. Checks each layer's
 * output for NaN/Inf (AQS_ERR_NUMERIC naming the layer). */
aqs_status aqs_lm_forward(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws,
                          aqs_lm_linear_hook hook, void *ctx, aqs_err *e);
/* The decoder layers only (no final norm / lm_head, logits untouched): what calibration needs. */
aqs_status aqs_lm_forward_layers(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws,
                                 aqs_lm_linear_hook hook, void *ctx, aqs_err *e);
/* Logits (N, V) of the last forward (backend memory, owned by ws). */
float *aqs_lm_ws_logits(aqs_lm_ws *ws);
/* After aqs_lm_forward_backward: dL/d(input embeddings) (N, C) (backend, owned by ws); the rows
 * at image_rows are the gradient w.r.t. the image features. */
const float *aqs_lm_ws_dinput(const aqs_lm_ws *ws);

/* Forward + mean next-token cross-entropy + backward through the whole network (activation
 * gradients only, layers recomputed from the checkpoints one at a time). hook sees every linear
 * with x, y and g = dL/dy. *loss_out = mean CE over the batch's targets. */
aqs_status aqs_lm_forward_backward(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws,
                                   aqs_lm_linear_hook hook, void *ctx, double *loss_out,
                                   aqs_err *e);

/* The saved reference log-probs (N, V) (NULL without with_logp_ref). */
const float *aqs_lm_ws_logp_ref(const aqs_lm_ws *ws);
/* KL support: after aqs_lm_forward, stores log_softmax(logits) as the reference. */
aqs_status aqs_lm_save_logp_ref(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws,
                                aqs_err *e);
/* Re-runs the model from the saved checkpoint before `layer`, with the linears of that layer
 * whose bit is set in quant_mask (1 << slot) fake-quantized to FP8 (input scale input_amax/448,
 * weight scale weight_amax/448), layers after it unquantized; *kl_out = sum over tokens of
 * KL(p_ref || p_quant). Needs aqs_lm_forward and aqs_lm_save_logp_ref first; does not modify
 * the saved checkpoints. */
aqs_status aqs_lm_kl_from_layer(const aqs_lm *lm, const aqs_lm_batch *b, aqs_lm_ws *ws,
                                int layer, unsigned quant_mask, double *kl_out, aqs_err *e);

/* Fake-quant output of one linear: yq (N, out) = FP8(x, input_amax/448) @ FP8(w, weight_amax/448)^T
 * + b. scratch_xq must hold N*in bytes, scratch_wq out*in bytes (backend memory). */
void aqs_lm_linear_fp8(const aqs_lm *lm, const aqs_lm_linear *lin, float *yq, const float *x,
                       int N, uint8_t *scratch_xq, uint8_t *scratch_wq);

/* Quantizes every language linear's weight to FP8 once (w_fake), so that the fake-quant linears
 * of scoring stop re-quantizing weights on every batch; costs one byte per weight parameter of
 * backend memory (2.6 GiB for the 3b model). Idempotent; a cache of values fixed at load (the
 * weight scale), hence on a const model. AQS_ERR_NOMEM naming the buffer; the model stays usable
 * (linears without codes quantize per call). */
aqs_status aqs_lm_fake_quant_weights(const aqs_lm *lm, aqs_err *e);

/* The same on any backend (the vision tower's linears use it too). */
void aqs_linear_fp8(aqs_backend *be, const aqs_lm_linear *lin, float *yq, const float *x, int N,
                    uint8_t *scratch_xq, uint8_t *scratch_wq);
/* Its second half: the FP8 GEMM on input codes xq already quantized with lin's input scale (linears
 * sharing one input and one scale, q/k/v or gate/up, quantize it once). */
void aqs_linear_fp8_codes(aqs_backend *be, const aqs_lm_linear *lin, float *yq, const uint8_t *xq, int N,
                          uint8_t *scratch_wq);
/* A served FP8 linear (lin->wq set): x (N, in) quantized with the static input scale x_scale into
 * scratch_xq (N * in bytes), FP8 GEMM with F32 accumulation into y (N, out), both scales applied. */
void aqs_linear_served_fp8(aqs_backend *be, const aqs_lm_linear *lin, float *y, const float *x, int N,
                           uint8_t *scratch_xq);

/* Uploads checkpoint tensor `name` (must be BF16 with numel elements: AQS_ERR_UNSUPPORTED /
 * AQS_ERR_MISMATCH naming it otherwise) into new backend memory *out (caller frees with
 * ops->free), adds its bytes to *bytes_total and, when amax_out is not NULL, stores max |w|.
 * NaN/Inf is AQS_ERR_NUMERIC naming the tensor (*out is then set and must still be freed). */
aqs_status aqs_weight_upload(aqs_backend *be, const aqs_ckpt *ck, const char *name,
                             uint64_t numel, aqs_bf16 **out, float *amax_out,
                             size_t *bytes_total, aqs_err *e);

/* FP8 per-tensor scale for an amax (amax / 448; 1 when amax is 0). */
float aqs_fp8_scale_of_amax(float amax);

#endif
