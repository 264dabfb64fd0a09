/* cli/cmd_build.c: `aqs build recipe NAME...`: resolve recipes into the stage graph, run only the
 * stages whose results are not cached, record each recipe's build under ref recipe/NAME and
 * materialize its checkpoint; a family of recipes is checked pairwise afterwards. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <stdlib.h>
#include <string.h>

#include "cli/build_cli.h"

static const char build_usage[] =
    "usage: aqs build [options] recipe NAME [NAME...]\n"
    "\n"
    "Builds each recipe by walking the stage table (docs/build.md): source -> calib-set ->\n"
    "calibrate -> sensitivity -> slice -> export.\n"
    "Every stage is a cached action keyed by its inputs' digests and parameters: stages already\n"
    "in the store are reused, only misses run. Recipes built together share every common stage.\n"
    "Each build (recipe, model, data) is recorded under its own ref, recipe/NAME/<model>-<data>\n"
    "(aqs ls lists them; aqs show, diff and checkout take NAME), and its checkpoint is written to\n"
    "--out, or to quantized/<model>-<model digest>/<recipe>_<data> beside .aqstore.\n"
    "With several recipes, aqs then proves pairwise that the checkpoints differ exactly as their\n"
    "plans do, and fails loudly otherwise.\n"
    "\n"
    "options (defaults from .aqstore):\n"
    "  --model DIR         source checkpoint ([model] path)\n"
    "  --captions FILE     caption file, one per line ([data] captions)\n"
    "  --images JSONL      image+caption rows ([data] images), with --root DIR\n"
    "  --allow-outside-root  let image rows be absolute or leave --root (trusted data only)\n"
    "  --backend cpu|cuda  compute backend for calibration and sensitivity (cpu)\n"
    "  --devices LIST      compute calibration and sensitivity chunks on several workers at\n"
    "                      once, one process per entry: CUDA device indices (0,1; 0,0 = two\n"
    "                      workers on GPU 0) or cpu entries for CPU workers (cpu,cpu); same\n"
    "                      bits as one device. One GPU index selects that GPU\n"
    "  --out DIR           where to write the checkpoint (one recipe only)\n"
    "  --no-checkout       build into the store only\n"
    "  --samples N         calibration sequences for every recipe named (default: the recipe's\n"
    "                      [calib] samples, 512 for the built-ins); a dataset with fewer usable\n"
    "                      rows uses them all and says so (the calib-set is keyed by that count)\n"
    "  --skip-bad          skip dataset rows that cannot be used (invalid UTF-8, too long, bad\n"
    "                      image) instead of failing; blank caption lines are always skipped\n"
    "  --eval              add the eval stage: each checkpoint against BF16 on held-out\n"
    "                      captions, or image+caption rows for image recipes (as aqs eval; a\n"
    "                      recipe [eval] samples = N does the same)\n"
    "  --rebuild STAGE     compute STAGE again instead of reusing its cached action (and its\n"
    "                      chunk actions); repeatable or comma-separated; 'all' = every stage;\n"
    "                      stages: source, calib-set, calibrate, sensitivity, slice, export, eval\n"
    "  --recipes-dir DIR   workspace recipes ([recipes] path)\n"
    "  --quiet             no progress bars\n"
    "  --json              print the build reports as JSON\n";

static int run_build(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(build_usage, stdout);
    return AQS_EXIT_OK;
  }
  aqs_build_cli cli;
  int rc = aqs_build_cli_parse("build", argc, argv, &cli);
  if (rc) return rc;
  aqs_workspace ws;
  aqs_store *store;
  if (aqs_cli_open_store("build", 0, &ws, &store)) return AQS_EXIT_FAIL;
  aqs_build_opts opts;
  aqs_recipe *recipes = NULL;
  rc = aqs_build_cli_prepare("build", &cli, &ws, store, &opts, &recipes);
  size_t n = (size_t)cli.n_names;
  aqs_build_report *reports = calloc(n, sizeof *reports);
  char (*out_dirs)[AQS_PATH_MAX] = calloc(n, sizeof *out_dirs);
  if (!rc) {
    aqs_err e = {0};
    double t0 = aqs_stage_now_s();
    char out_root[AQS_PATH_MAX];
    snprintf(out_root, sizeof out_root, "%s/quantized", ws.root);
    aqs_build_checkout co = {.out_dir = cli.out_dir, .out_root = out_root, .link_mode = ws.link_mode};
    if (aqs_build_recipes(&opts, recipes, n, reports, &e) != AQS_OK)
      rc = aqs_cli_fail_err("build", &e);
    else if (cli.is_worker)
      ; /* a chunk worker: its chunks are recorded, the build that started it does the rest */
    else if (!cli.no_checkout)
      rc = aqs_build_cli_checkout("build", store, &opts, &co, recipes, reports, n, out_dirs);
    if (rc) {
    } else if (cli.json) {
      rc = aqs_cli_print_json("build", aqs_build_cli_json(reports, n, 0, out_dirs));
    } else {
      aqs_build_cli_print(reports, n, 0, aqs_stage_now_s() - t0, out_dirs);
    }
  }
  free(out_dirs);
  free(reports);
  free(recipes);
  aqs_build_cli_free(&cli);
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_build = {"build", "build recipes: run missing stages, reuse cached ones", run_build};
