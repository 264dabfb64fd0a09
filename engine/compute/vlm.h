/* engine/compute/vlm.h: the whole Qwen2.5-VL on image+text calib chunks: the vision tower's
 * features placed at the <|image_pad|> rows of the language model (M-RoPE positions as
 * transformers' get_rope_index), loss on the text tokens, activation gradients flowing back into
 * the tower. Calibration records the amax of every linear of both towers; sensitivity scores
 * every group of a scope (lm_only or all_layers) with the same methods and units as the
 * language-model-only engine (engine/compute/sensitivity.h).
 * Threads: one call at a time per aqs_vlm (the backend is not thread-safe). */
#ifndef AQS_COMPUTE_VLM_H
#define AQS_COMPUTE_VLM_H

#include "common/err.h"
#include "engine/calib/calibset.h"
#include "engine/compute/calibrate.h"
#include "engine/compute/lm.h"
#include "engine/compute/scores.h"
#include "engine/compute/sensitivity.h"
#include "engine/compute/vision.h"

typedef struct aqs_vlm {
  aqs_lm *lm;          /* owned; lm->model describes both towers */
  aqs_vision *vis;     /* owned */
} aqs_vlm;

/* Loads both towers of the checkpoint in model_dir onto be (errors as aqs_lm_load). */
aqs_status aqs_vlm_load(aqs_backend *be, const char *model_dir, aqs_vlm **out, aqs_err *e);
void aqs_vlm_free(aqs_vlm *m);

/* One image+text chunk on the backend. */
typedef struct aqs_vlm_batch {
  aqs_lm_batch lm;
  aqs_vision_batch vis;
} aqs_vlm_batch;

/* Uploads chunk c (must hold images: AQS_ERR_INVALID otherwise; patch_dim must match the
 * tower's). Errors of aqs_lm_batch_make_images and aqs_vision_batch_make, prefixed with the
 * chunk's first sequence index. */
aqs_status aqs_vlm_batch_of_chunk(const aqs_vlm *m, const aqs_calib_chunk *c, int max_seq_len,
                                  aqs_vlm_batch *out, aqs_err *e);
void aqs_vlm_batch_free(const aqs_vlm *m, aqs_vlm_batch *b);

/* Max calibration over one image chunk: input and weight amax of every linear of both towers
 * into *out (adds to n_tokens / n_seqs). Reduce chunks with aqs_amax_reduce as for text. */
aqs_status aqs_vlm_calibrate_chunk(const aqs_vlm *m, const aqs_calib_chunk *c, int max_seq_len,
                                   aqs_amax_table *out, aqs_err *e);
/* Installs a table's input amax into both towers (errors as aqs_lm_set_amax). */
aqs_status aqs_vlm_set_amax(aqs_vlm *m, const aqs_amax_table *t, aqs_err *e);

/* Scores of every group in scope on one image chunk into *out (fresh; groups in model order):
 * gradient = sum (G dY)^2 per module through both towers; kl_div = sum over tokens of
 * KL(p || p with the group fake-quantized) (vision groups re-run the tower and the whole
 * language model). Needs aqs_vlm_set_amax first. *loss_out (may be NULL): mean CE (gradient). */
aqs_status aqs_vlm_sensitivity_chunk(const aqs_vlm *m, const aqs_calib_chunk *c,
                                     aqs_sens_method method, aqs_qwen_scope scope,
                                     int max_seq_len, aqs_scores *out, double *loss_out,
                                     aqs_err *e);

#endif
