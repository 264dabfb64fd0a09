/* engine/compute/batch_loop.c: the loop over batches (see batch_loop.h) and its two uses,
 * aqs_calibrate_batches and aqs_sensitivity_batches: one driver, parts described by a small
 * table of operations (compute one batch, fold into the total, free, count tokens). */
#include "engine/compute/batch_loop.h"

#include <string.h>

#include "common/progress.h"
#include "engine/compute/calibrate.h"
#include "engine/compute/sensitivity.h"
#include "engine/compute/vlm.h"

/* The two towers of an image batch as the vlm API takes them (not owned). */
static aqs_vlm vlm_of(const aqs_lm *lm, const aqs_token_batch *b) {
  return (aqs_vlm){(aqs_lm *)lm, (aqs_vision *)b->vision};
}

static aqs_status check_images(const aqs_token_batch *b, aqs_err *e) {
  if (!b->vision)
    return aqs_errf(e, AQS_ERR_INTERNAL, "image batch without the vision tower loaded");
  return AQS_OK;
}

typedef struct sens_arg {
  aqs_sens_method method;
  aqs_qwen_scope scope;
} sens_arg;

typedef struct part_ops {
  aqs_status (*compute)(const void *arg, const aqs_lm *lm, const aqs_token_batch *b, int max_len, void *part,
                        double *loss, aqs_err *e);
  /* total = total + part, in that order (first: total is empty). */
  aqs_status (*fold)(void *total, const void *part, int first, aqs_err *e);
  void (*free)(void *part);
  int64_t (*tokens)(const void *part);
} part_ops;

static aqs_status run_loop(const aqs_batch_loop *loop, const part_ops *ops, const void *arg, int max_len,
                           void *total, void *part, double *loss_sum, aqs_err *e) {
  aqs_progress *prog = loop->progress_label ? aqs_progress_start(loop->progress_label, loop->progress_total,
                                                                 loop->progress_batches ? loop->unit : "tok")
                                            : NULL;
  aqs_status st = AQS_OK;
  for (size_t i = 0; !st && i < loop->n; i++) {
    int found = 0;
    if (loop->skip && loop->skip(loop->ctx, i)) continue;
    if (loop->cached) st = loop->cached(loop->ctx, i, part, &found, e);
    if (!st && !found) {
      aqs_token_batch b;
      const aqs_lm *lm = NULL;
      double loss = 0.0;
      st = loop->batch(loop->ctx, i, &b, &lm, e);
      if (!st) {
        st = ops->compute(arg, lm, &b, max_len, part, &loss, e);
        if (st) aqs_err_prefix(e, "%s %zu", loop->unit ? loop->unit : "batch", i);
      }
      if (loop->batch_done) loop->batch_done(loop->ctx, i);
      if (!st && loss_sum) *loss_sum += loss;
      if (!st && loop->computed) st = loop->computed(loop->ctx, i, part, e);
    }
    if (!st && !loop->skip) st = ops->fold(total, part, i == 0, e);
    if (!st) aqs_progress_add(prog, loop->progress_batches ? 1 : (uint64_t)ops->tokens(part));
    ops->free(part);
  }
  if (st) aqs_progress_abort(prog);
  else aqs_progress_finish(prog);
  return st;
}

/* ---- calibrate ---- */

static aqs_status amax_compute(const void *arg, const aqs_lm *lm, const aqs_token_batch *b, int max_len, void *part,
                               double *loss, aqs_err *e) {
  (void)arg;
  (void)loss;
  if (b->image_chunk) {
    aqs_status st = check_images(b, e);
    aqs_vlm m = vlm_of(lm, b);
    return st ? st : aqs_vlm_calibrate_chunk(&m, b->image_chunk, max_len, part, e);
  }
  return aqs_calibrate_batch(lm, b, max_len, part, e);
}

static aqs_status amax_fold(void *total, const void *part, int first, aqs_err *e) {
  (void)first; /* max over an empty table is the part itself */
  aqs_amax_table *t = total, next = {0};
  const aqs_amax_table *parts[2] = {t, part};
  aqs_status st = aqs_amax_reduce(parts, 2, &next, e);
  aqs_amax_free(t);
  *t = next;
  return st;
}

static void amax_free(void *part) {
  aqs_amax_free(part);
  memset(part, 0, sizeof(aqs_amax_table));
}
static int64_t amax_tokens(const void *part) { return ((const aqs_amax_table *)part)->n_tokens; }

aqs_status aqs_calibrate_batches(const aqs_batch_loop *loop, int max_seq_len, aqs_amax_table *out, aqs_err *e) {
  static const part_ops ops = {amax_compute, amax_fold, amax_free, amax_tokens};
  aqs_amax_table part = {0};
  return run_loop(loop, &ops, NULL, max_seq_len, out, &part, NULL, e);
}

/* ---- sensitivity ---- */

static aqs_status scores_compute(const void *arg, const aqs_lm *lm, const aqs_token_batch *b, int max_len,
                                 void *part, double *loss, aqs_err *e) {
  const sens_arg *a = arg;
  if (b->image_chunk) {
    aqs_status st = check_images(b, e);
    aqs_vlm m = vlm_of(lm, b);
    return st ? st : aqs_vlm_sensitivity_chunk(&m, b->image_chunk, a->method, a->scope, max_len, part, loss, e);
  }
  if (a->scope == AQS_SCOPE_ALL_LAYERS)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "scope all_layers scores the vision tower: it needs an image+text calib set "
                    "([calib] modality = images, --images rows.jsonl)");
  return aqs_sensitivity_batch(lm, b, a->method, max_len, part, loss, e);
}

static aqs_status scores_fold(void *total, const void *part, int first, aqs_err *e) {
  aqs_scores *t = total, next;
  const aqs_scores *parts[2] = {t, part};
  aqs_status st = first ? aqs_scores_reduce(parts + 1, 1, &next, e) : aqs_scores_reduce(parts, 2, &next, e);
  if (st) return st;
  aqs_scores_free(t);
  *t = next;
  return AQS_OK;
}

static void scores_free(void *part) {
  aqs_scores_free(part);
  memset(part, 0, sizeof(aqs_scores));
}
static int64_t scores_tokens(const void *part) { return ((const aqs_scores *)part)->n_tokens; }

aqs_status aqs_sensitivity_batches(const aqs_batch_loop *loop, aqs_sens_method method, int max_seq_len,
                                   aqs_scores *out, double *loss_sum, aqs_err *e) {
  static const part_ops ops = {scores_compute, scores_fold, scores_free, scores_tokens};
  memset(out, 0, sizeof *out);
  if (loop->n == 0) return aqs_errf(e, AQS_ERR_INVALID, "sensitivity: no batches");
  aqs_scores part = {0};
  sens_arg arg = {method, loop->scope};
  aqs_status st = run_loop(loop, &ops, &arg, max_seq_len, out, &part, loss_sum, e);
  if (st) aqs_scores_free(out);
  return st;
}
