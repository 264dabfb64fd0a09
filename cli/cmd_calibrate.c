/* cli/cmd_calibrate.c: `aqs calibrate`: max calibration of the language model's linears over
 * token batches (plumbing over engine/compute/calibrate.h); writes the amax table JSON. */
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "cli/compute_opts.h"
#include "engine/compute/calibrate.h"
#include "engine/stages/token_input.h"
#include "kernels/backend.h"

static const char calibrate_usage[] =
    "usage: aqs calibrate --model DIR --tokens FILE [--tokens FILE ...] --out AMAX.json\n"
    "                     [--backend cpu|cuda] [--precision f32|bf16] [--batch-seqs N]\n"
    "                     [--max-seq-len N] [--json]\n"
    "\n"
    "Runs the language model forward over the token batches and records, for every linear\n"
    "layer (q/k/v/o/gate/up/down of each decoder layer), the max |input| and max |weight|\n"
    "(FP8 scale = amax / 448). Batches are processed one at a time and reduced with max.\n"
    "\n"
    "options:\n"
    "  --model DIR        Qwen2.5-VL checkpoint directory (config.json + safetensors, BF16)\n"
    "  --tokens FILE      a calib-set chunk (AQSCALC1) or JSON lines, one array of token ids\n"
    "                     per line (one sequence); repeatable\n"
    "  --out FILE         amax table to write (JSON, format aqs-amax-1)\n"
    "  --backend B        cpu (default) or cuda\n"
    "  --precision P      f32 (default) or bf16 (torch bf16 rounding points)\n"
    "  --batch-seqs N     sequences per batch for JSON lines input (default 8)\n"
    "  --max-seq-len N    reject longer sequences (default: the model's maximum)\n"
    "  --json             print a summary (tokens, seconds, tokens/s, peak memory) as JSON\n"
    "\n"
    "Progress (tokens, tokens/s, ETA) goes to stderr. Errors name the file, layer or module.\n";

static int calibrate_run(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(calibrate_usage, stdout);
    return AQS_EXIT_OK;
  }
  compute_opts o;
  int rc = aqs_compute_parse_opts("calibrate", argc, argv, &o, 0);
  if (rc >= 0) return rc;
  aqs_err err = {0};
  aqs_precision prec;
  if (aqs_precision_parse(o.precision, &prec, &err) != AQS_OK)
    return aqs_cli_usage_error("calibrate", "%s", err.msg);
  aqs_token_batches tb = {0};
  for (int i = 0; i < o.ntokens; i++)
    if (aqs_token_batches_read(o.tokens[i], o.batch_seqs, &tb, &err) != AQS_OK) {
      aqs_token_batches_free(&tb);
      return aqs_cli_fail_err("calibrate", &err);
    }
  aqs_backend *be = NULL;
  aqs_lm *lm = NULL;
  aqs_amax_table total = {0};
  rc = AQS_EXIT_FAIL;
  if (aqs_backend_open(o.backend, prec, &be, &err) != AQS_OK) goto done;
  if (aqs_lm_load(be, o.model, &lm, &err) != AQS_OK) goto done;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  aqs_token_batches_ctx bc = {&tb, lm};
  aqs_batch_loop loop;
  aqs_token_batches_loop(&bc, &loop);
  loop.progress_label = "calibrate";
  if (aqs_calibrate_batches(&loop, o.max_seq_len, &total, &err) != AQS_OK) goto done;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (aqs_amax_save(&total, o.out, &err) != AQS_OK) goto done;
  rc = AQS_EXIT_OK;
  if (o.json) {
    double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    size_t in_use, peak;
    be->ops->mem_stats(be, &in_use, &peak);
    rc = aqs_cli_print_json(
        "calibrate",
        json_pack("{s:s,s:I,s:I,s:I,s:f,s:f,s:I,s:s,s:s,s:s}", "out", o.out, "n_tokens",
                  (json_int_t)total.n_tokens, "n_seqs", (json_int_t)total.n_seqs, "n_modules",
                  (json_int_t)total.n, "seconds", secs, "tok_per_s",
                  secs > 0 ? total.n_tokens / secs : 0.0, "peak_bytes", (json_int_t)peak,
                  "backend", be->name, "device", be->device, "precision",
                  aqs_precision_name(prec)));
  }
done:
  if (rc == AQS_EXIT_FAIL && err.code != AQS_OK) aqs_cli_fail_err("calibrate", &err);
  aqs_amax_free(&total);
  aqs_lm_free(lm);
  aqs_backend_close(be);
  aqs_token_batches_free(&tb);
  return rc;
}

const aqs_cmd aqs_cmd_calibrate = {"calibrate", "max-calibrate the LM's linear inputs/weights (amax table)",
                                   calibrate_run};
