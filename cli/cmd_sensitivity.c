/* cli/cmd_sensitivity.c: `aqs sensitivity`: per-group FP8 sensitivity scores of the language
 * model (gradient or kl_div) over token batches, summed in batch order; writes scores JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "cli/compute_opts.h"
#include "engine/compute/sensitivity.h"
#include "engine/stages/token_input.h"
#include "kernels/backend.h"

static const char sensitivity_usage[] =
    "usage: aqs sensitivity --model DIR --tokens FILE [--tokens FILE ...] --amax AMAX.json\n"
    "                       --out SCORES.json [--method gradient|kl_div] [--backend cpu|cuda]\n"
    "                       [--precision f32|bf16] [--batch-seqs N] [--max-seq-len N] [--json]\n"
    "\n"
    "Scores every language-model group (lm.<L>.qkv, .o, .gate_up, .down) for FP8 per-tensor\n"
    "quantization with the calibrated input scales (ModelOpt AutoQuantize):\n"
    "  gradient  sum over batches and elements of (dL/dY * (Y_fp8 - Y))^2, L = mean next-token\n"
    "            cross-entropy of the batch; a group's score is the sum over its modules\n"
    "  kl_div    sum over tokens of KL(p_bf16 || p with only that group fake-quantized)\n"
    "The output lists per group: score, cost (bytes at fp8 and bf16), parameter count, and the\n"
    "ranking (least sensitive first). Same inputs give the same bits on the same backend.\n"
    "\n"
    "options:\n"
    "  --model DIR        Qwen2.5-VL checkpoint directory (BF16)\n"
    "  --tokens FILE      calib-set chunk (AQSCALC1) or JSON lines of token-id arrays; repeatable\n"
    "  --amax FILE        amax table from `aqs calibrate` on the same checkpoint\n"
    "  --out FILE         scores JSON to write (format aqs-scores-1)\n"
    "  --method M         gradient (default) or kl_div\n"
    "  --backend B        cpu (default) or cuda\n"
    "  --precision P      f32 (default) or bf16\n"
    "  --batch-seqs N     sequences per batch for JSON lines input (default 8)\n"
    "  --max-seq-len N    reject longer sequences (default: the model's maximum)\n"
    "  --json             print the ranking and a run summary as JSON on stdout\n";

static int sensitivity_run(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(sensitivity_usage, stdout);
    return AQS_EXIT_OK;
  }
  compute_opts o;
  int rc = aqs_compute_parse_opts("sensitivity", argc, argv, &o, 1);
  if (rc >= 0) return rc;
  aqs_err err = {0};
  aqs_precision prec;
  aqs_sens_method method;
  if (aqs_precision_parse(o.precision, &prec, &err) != AQS_OK ||
      aqs_sens_method_parse(o.method, &method, &err) != AQS_OK)
    return aqs_cli_usage_error("sensitivity", "%s", err.msg);
  aqs_token_batches tb = {0};
  aqs_amax_table amax = {0};
  aqs_backend *be = NULL;
  aqs_lm *lm = NULL;
  aqs_scores total = {0};
  rc = AQS_EXIT_FAIL;
  for (int i = 0; i < o.ntokens; i++)
    if (aqs_token_batches_read(o.tokens[i], o.batch_seqs, &tb, &err) != AQS_OK) goto done;
  if (aqs_amax_load(o.amax, &amax, &err) != AQS_OK) goto done;
  if (aqs_backend_open(o.backend, prec, &be, &err) != AQS_OK) goto done;
  if (aqs_lm_load(be, o.model, &lm, &err) != AQS_OK) goto done;
  if (aqs_lm_set_amax(lm, &amax, &err) != AQS_OK) {
    aqs_err_prefix(&err, "%s", o.amax);
    goto done;
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  double loss_sum = 0.0;
  aqs_token_batches_ctx bc = {&tb, lm};
  aqs_batch_loop loop;
  aqs_token_batches_loop(&bc, &loop);
  loop.progress_label = "sensitivity";
  if (aqs_sensitivity_batches(&loop, method, o.max_seq_len, &total, &loss_sum, &err) != AQS_OK) goto done;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (aqs_scores_save(&total, o.out, &err) != AQS_OK) goto done;
  rc = AQS_EXIT_OK;
  if (o.json) {
    double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    size_t in_use, peak;
    be->ops->mem_stats(be, &in_use, &peak);
    size_t *order = aqs_scores_ranking(&total);
    json_t *ranking = json_array();
    for (size_t i = 0; order && i < total.ngroups; i++)
      json_array_append_new(ranking, json_pack("{s:s,s:f}", "id", total.groups[order[i]].id,
                                               "score", total.groups[order[i]].score));
    free(order);
    rc = aqs_cli_print_json(
        "sensitivity",
        json_pack("{s:s,s:s,s:I,s:I,s:f,s:f,s:f,s:I,s:s,s:s,s:s,s:o}", "out", o.out, "method",
                  total.method, "n_tokens", (json_int_t)total.n_tokens, "n_batches",
                  (json_int_t)total.n_batches, "seconds", secs, "tok_per_s",
                  secs > 0 ? total.n_tokens / secs : 0.0, "mean_loss",
                  tb.n ? loss_sum / (double)tb.n : 0.0, "peak_bytes", (json_int_t)peak,
                  "backend", be->name, "device", be->device, "precision",
                  aqs_precision_name(prec), "ranking", ranking));
  }
done:
  if (rc == AQS_EXIT_FAIL && err.code != AQS_OK) aqs_cli_fail_err("sensitivity", &err);
  aqs_scores_free(&total);
  aqs_lm_free(lm);
  aqs_backend_close(be);
  aqs_amax_free(&amax);
  aqs_token_batches_free(&tb);
  return rc;
}

const aqs_cmd aqs_cmd_sensitivity = {"sensitivity",
                                     "FP8 sensitivity score per LM group (gradient | kl_div)",
                                     sensitivity_run};
