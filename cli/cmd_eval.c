/* cli/cmd_eval.c: `aqs eval NAME...`: quality of built schemes against their BF16 source
 * (engine/stages/eval_stage.h), one cached action per name, printed as a table or JSON. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/eval_cli.h"
#include "engine/stages/eval_stage.h"
#include "kernels/backend.h"

static const char eval_usage[] =
    "usage: aqs eval [options] NAME [NAME...]\n"
    "\n"
    "Runs each built scheme (a recipe name from aqs build, a ref or a build digest; \"bf16\" is\n"
    "the unquantized source) as the serving engine does -- FP8 weights with static per-tensor\n"
    "input scales, FP8 GEMM with F32 accumulation, BF16 layers in BF16, the KV cache in FP8 when\n"
    "the scheme says so -- and compares it with the BF16 source on held-out captions: the rows\n"
    "of the caption file that calibration did not use (same seed), or --captions FILE. Schemes\n"
    "calibrated on image+caption rows (all_layers) are evaluated on the image rows calibration\n"
    "did not use: both towers run, the scheme's FP8 vision linears as served, metrics on the\n"
    "caption tokens.\n"
    "Metrics: perplexity, mean and p99 per-token KL(BF16 || scheme) in nats, top-1 agreement with\n"
    "BF16, last-token logit MSE; effective bits and checkpoint size beside them. Every result is\n"
    "cached (keyed by checkpoint, eval set, backend and precision): a second run computes nothing.\n"
    "\n"
    "options (defaults from .aqstore):\n"
    "  --model DIR            the BF16 source the schemes were built from ([model] path)\n"
    "  --calib-captions FILE  calibration's caption file ([data] captions)\n"
    "  --captions FILE        a separate eval caption file (default: held-out calibration rows)\n"
    "  --images JSONL         calibration's image+caption rows ([data] images), for image schemes\n"
    "  --root DIR             the images' root directory ([data] images_root; default: the JSONL's)\n"
    "  --allow-outside-root   let image rows be absolute or leave --root (trusted data only)\n"
    "  --samples N            eval sequences (32)\n"
    "  --backend cpu|cuda     compute backend (cpu)\n"
    "  --precision bf16|f32   bf16 rounds like the served model (default); f32 for reference work\n"
    "  --recipes-dir DIR      workspace recipes ([recipes] path)\n"
    "  --quiet                no progress bars\n"
    "  --json                 print the rows as JSON\n";

int aqs_eval_cli_parse(const char *cmd, int argc, char **argv, aqs_eval_cli *out) {
  int allow_out = out->allow_out;
  memset(out, 0, sizeof *out);
  out->allow_out = allow_out;
  static const struct option longopts[] = {
      {"model", required_argument, NULL, 'm'},   {"calib-captions", required_argument, NULL, 'C'},
      {"captions", required_argument, NULL, 'c'}, {"samples", required_argument, NULL, 's'},
      {"backend", required_argument, NULL, 'b'}, {"precision", required_argument, NULL, 'p'},
      {"recipes-dir", required_argument, NULL, 'R'}, {"json", no_argument, NULL, 'j'},
      {"quiet", no_argument, NULL, 'q'},          {"out", required_argument, NULL, 'o'},
      {"images", required_argument, NULL, 'I'},  {"root", required_argument, NULL, 'r'},
      {"allow-outside-root", no_argument, NULL, 'A'},
      {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  uint64_t n;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (ch) {
    case 'm': out->model_dir = optarg; break;
    case 'C': out->calib_captions = optarg; break;
    case 'c': out->captions = optarg; break;
    case 's':
      if (aqs_cli_parse_u64(optarg, &n) || n < 1 || n > 1000000)
        return aqs_cli_usage_error(cmd, "bad --samples '%s' (1 to 1000000)", optarg);
      out->samples = (int64_t)n;
      break;
    case 'b': out->backend = optarg; break;
    case 'p': out->precision = optarg; break;
    case 'R': out->recipes_dir = optarg; break;
    case 'I': out->images = optarg; break;
    case 'r': out->images_root = optarg; break;
    case 'A': out->allow_outside_root = 1; break;
    case 'j': out->json = 1; break;
    case 'q': out->quiet = 1; break;
    case 'o':
      if (!out->allow_out) return aqs_cli_usage_error(cmd, "unknown option '--out'");
      out->out_dir = optarg;
      break;
    default: return aqs_cli_bad_option(cmd, longopts, argv);
    }
  }
  out->names = argv + optind;
  out->n_names = argc - optind;
  if (out->backend && strcmp(out->backend, "cpu") != 0 && strcmp(out->backend, "cuda") != 0)
    return aqs_cli_usage_error(cmd, "bad --backend '%s' (cpu or cuda)", out->backend);
  if (out->precision && strcmp(out->precision, "bf16") != 0 && strcmp(out->precision, "f32") != 0)
    return aqs_cli_usage_error(cmd, "bad --precision '%s' (bf16 or f32)", out->precision);
  return 0;
}

void aqs_eval_cli_opts(const aqs_eval_cli *cli, const aqs_workspace *ws, aqs_store *store, aqs_eval_opts *o) {
  memset(o, 0, sizeof *o);
  o->store = store;
  o->model_dir = cli->model_dir ? cli->model_dir : ws->model_path;
  o->captions_path = cli->calib_captions ? cli->calib_captions : ws->data_captions;
  o->eval_captions = cli->captions;
  o->images_path = cli->images ? cli->images : ws->data_images;
  o->images_root = cli->images_root ? cli->images_root : ws->data_images_root;
  o->allow_outside_root = cli->allow_outside_root;
  o->samples = cli->samples;
  o->backend = cli->backend ? cli->backend : "cpu";
  o->precision = cli->precision && strcmp(cli->precision, "f32") == 0 ? AQS_PREC_F32 : AQS_PREC_BF16;
  o->recipes_dir = cli->recipes_dir ? cli->recipes_dir : ws->recipes_path;
  o->progress = !cli->quiet;
}

void aqs_eval_print_table(FILE *f, const aqs_eval_row *rows, size_t n) {
  fprintf(f, "%-22s %6s %5s %5s %10s %10s %10s %7s %10s %9s %s\n", "scheme", "bits", "fp8", "kv", "ppl",
          "KL mean", "KL p99", "top-1", "last MSE", "size", "");
  for (size_t i = 0; i < n; i++) {
    const aqs_eval_row *r = &rows[i];
    char size[32], fp8[16];
    aqs_cli_bytes(size, sizeof size, r->ckpt_bytes);
    if (strcmp(r->name, AQS_EVAL_BASELINE) == 0) snprintf(fp8, sizeof fp8, "-");
    else snprintf(fp8, sizeof fp8, "%lld/%lld", (long long)r->n_fp8, (long long)r->n_candidates);
    fprintf(f, "%-22s %6.2f %5s %5s %10.4f %10.3e %10.3e %6.2f%% %10.3e %9s %s\n", r->name, r->effective_bits, fp8,
            r->kv_fp8 ? "fp8" : "bf16", r->m.ppl, r->m.kl_mean, r->m.kl_p99, 100.0 * r->m.top1, r->m.last_mse,
            size, r->hit ? "(cached)" : "");
  }
  if (n)
    fprintf(f, "%lld held-out %s, %lld predicted tokens; BF16 source: ppl %.4f, %s\n",
            (long long)rows[0].m.n_seqs, rows[0].eval_images ? "image+caption rows" : "sequences",
            (long long)rows[0].m.n_targets, rows[0].m.ref_ppl,
            aqs_cli_bytes((char[32]){0}, 32, rows[0].bf16_bytes));
}

static int run_eval(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(eval_usage, stdout);
    return AQS_EXIT_OK;
  }
  aqs_eval_cli cli;
  int rc = aqs_eval_cli_parse("eval", argc, argv, &cli);
  if (rc) return rc;
  if (cli.n_names < 1) return aqs_cli_usage_error("eval", "name at least one built scheme (or bf16)");
  aqs_workspace ws;
  aqs_store *store;
  if (aqs_cli_open_store("eval", 0, &ws, &store)) return AQS_EXIT_FAIL;
  aqs_eval_opts o;
  aqs_eval_cli_opts(&cli, &ws, store, &o);
  aqs_eval_row *rows = calloc((size_t)cli.n_names, sizeof *rows);
  aqs_err e = {0};
  if (!rows) {
    rc = aqs_cli_fail("eval", "out of memory");
  } else if (aqs_eval_names(&o, (const char *const *)cli.names, (size_t)cli.n_names, rows, &e) != AQS_OK) {
    rc = aqs_cli_fail_err("eval", &e);
  } else if (cli.json) {
    rc = aqs_cli_print_json("eval", aqs_eval_rows_json(rows, (size_t)cli.n_names));
  } else {
    aqs_eval_print_table(stdout, rows, (size_t)cli.n_names);
  }
  free(rows);
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_eval = {"eval", "quality of built schemes against BF16 (perplexity, KL, top-1)", run_eval};
