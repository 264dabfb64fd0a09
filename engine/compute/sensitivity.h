/* engine/compute/sensitivity.h: ModelOpt AutoQuantize-compatible sensitivity of every
 * language-model group to FP8 (per-tensor, calibrated input scale) on one batch:
 *   gradient: S_g = sum over the group's modules and elements of clamp(G * dY, +-1e10)^2, with
 *             G = dL/dY of the mean next-token cross-entropy and dY = Y_fp8 - Y computed from
 *             the module's unquantized input;
 *   kl_div:   S_g = sum over tokens of KL(p_unquantized || p with only g fake-quantized), the
 *             re-run starting from the saved residual stream at g's layer.
 * Per-batch results are sums: reduce them with aqs_scores_reduce in chunk order. */
#ifndef AQS_COMPUTE_SENSITIVITY_H
#define AQS_COMPUTE_SENSITIVITY_H

#include "common/err.h"
#include "engine/compute/calibrate.h"
#include "engine/compute/lm.h"
#include "engine/compute/scores.h"

/* The sensitivity methods: the one enum (recipes, commands and stages use it). */
typedef enum aqs_sens_method { AQS_SENS_GRADIENT = 0, AQS_SENS_KL_DIV = 1, AQS_SENS_METHOD_COUNT } aqs_sens_method;

/* "gradient" | "kl_div"; anything else is AQS_ERR_INVALID naming it (never a fallback). */
aqs_status aqs_sens_method_parse(const char *s, aqs_sens_method *out, aqs_err *e);
/* The method's name, or NULL for a value outside the enum. */
const char *aqs_sens_method_name(aqs_sens_method m);

/* Scores of every lm group (scope lm_only) on one batch into *out (fresh). lm must have its
 * input amax set (aqs_lm_set_amax). *loss_out (may be NULL) = the batch's mean CE (gradient) or
 * 0 (kl_div). A method outside the enum is AQS_ERR_INVALID (never a fallback to gradient). */
aqs_status aqs_sensitivity_batch(const aqs_lm *lm, const aqs_token_batch *batch,
                                 aqs_sens_method method, int max_seq_len, aqs_scores *out,
                                 double *loss_out, aqs_err *e);

/* Scores of every batch of loop, summed in batch order into *out (fresh); *loss_sum (may be NULL)
 * = the sum of the computed batches' losses. Errors: those of the hooks and of
 * aqs_sensitivity_batch; an empty loop is AQS_ERR_INVALID. */
aqs_status aqs_sensitivity_batches(const aqs_batch_loop *loop, aqs_sens_method method, int max_seq_len,
                                   aqs_scores *out, double *loss_sum, aqs_err *e);

#endif
