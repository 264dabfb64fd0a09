/* cli/cmd_plan.c: `aqs plan recipe NAME...`: the dry run of aqs build: each stage of the resolved
 * graph, HIT or MISS, and for a miss the reason (which input digest or parameter differs from the
 * nearest cached action of that stage, or "never built"). Computes nothing, writes nothing. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <stdlib.h>
#include <string.h>

#include "cli/build_cli.h"
#include "store/tiers.h"

static const char plan_usage[] =
    "usage: aqs plan [options] recipe NAME [NAME...]\n"
    "\n"
    "Shows what aqs build would do: for each recipe, each stage with HIT (cached) or MISS, the\n"
    "cached result's digest, and for a miss why: the input digests and parameters that differ\n"
    "from the nearest cached action of that stage (e.g. \"params.seed 0 -> 1\"), or \"never\n"
    "built\". Stages after a miss cannot be looked up until it is built (their key depends on\n"
    "its result). Takes the same options as aqs build; opens the store read-only, so it\n"
    "computes and writes nothing.\n"
    "\n"
    "options: --model DIR, --captions FILE, --images JSONL --root DIR, --allow-outside-root,\n"
    "         --backend cpu|cuda, --samples N, --skip-bad, --recipes-dir DIR, --rebuild STAGE|all,\n"
    "         --json\n"
    "         (see aqs build --help)\n";

/* A hit answered by a secondary store or the remote says so: its reason holds the tier's label
 * ("secondary /team/cache"), printed as HIT (secondary /team/cache). */
static void note_hit_sources(aqs_store *store, aqs_build_report *reports, size_t n) {
  for (size_t k = 0; k < n; k++)
    for (size_t i = 0; i < reports[k].n_stages; i++) {
      aqs_stage_outcome *o = &reports[k].stages[i];
      if (!o->done || !o->hit) continue;
      if (aqs_tiers_action_source(store, &o->key, o->reason, sizeof o->reason, NULL) != AQS_OK)
        o->reason[0] = '\0';
    }
}

static int run_plan(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(plan_usage, stdout);
    return AQS_EXIT_OK;
  }
  aqs_build_cli cli;
  int rc = aqs_build_cli_parse("plan", argc, argv, &cli);
  if (rc) return rc;
  aqs_workspace ws;
  aqs_store *store;
  if (aqs_cli_open_store("plan", AQS_STORE_RDONLY | AQS_CLI_TIERS_PROBE, &ws, &store)) return AQS_EXIT_FAIL;
  aqs_build_opts opts;
  aqs_recipe *recipes = NULL;
  rc = aqs_build_cli_prepare("plan", &cli, &ws, store, &opts, &recipes);
  opts.dry_run = 1;
  opts.progress = 0;
  aqs_build_report *reports = calloc((size_t)cli.n_names, sizeof *reports);
  if (!rc) {
    aqs_err e = {0};
    if (aqs_build_recipes(&opts, recipes, (size_t)cli.n_names, reports, &e) != AQS_OK) {
      rc = aqs_cli_fail_err("plan", &e);
    } else {
      note_hit_sources(store, reports, (size_t)cli.n_names);
      if (cli.json) rc = aqs_cli_print_json("plan", aqs_build_cli_json(reports, (size_t)cli.n_names, 1, NULL));
      else aqs_build_cli_print(reports, (size_t)cli.n_names, 1, 0, NULL);
    }
  }
  free(reports);
  free(recipes);
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_plan = {"plan", "dry run of a build: each stage HIT or MISS, and why", run_plan};
