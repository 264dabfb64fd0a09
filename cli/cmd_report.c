/* cli/cmd_report.c: `aqs report [NAME...] --out DIR`: report.md and PNG figures for a family of
 * schemes (engine/stages/quality_report.h), from cached evals. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <stdlib.h>
#include <string.h>

#include "cli/eval_cli.h"
#include "engine/stages/quality_report.h"

static const char report_usage[] =
    "usage: aqs report [options] [NAME...] --out DIR\n"
    "\n"
    "Writes DIR/report.md and four PNG figures for the named schemes (default: every recipe built\n"
    "from the model, plus bf16): the sensitivity heat map (layers x group kind, log colour, most\n"
    "sensitive groups outlined), KL and perplexity against effective bits for the sensitivity\n"
    "order beside the most_sensitive_first and random controls, and checkpoint sizes against BF16\n"
    "with the bytes the store holds for the family. The numbers are aqs eval's (cached): a second\n"
    "report evaluates nothing.\n"
    "\n"
    "options: --out DIR (required), and those of aqs eval (--model, --calib-captions, --captions,\n"
    "--images, --root, --allow-outside-root, --samples, --backend, --precision, --recipes-dir,\n"
    "--quiet, --json).\n";

static int run_report(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(report_usage, stdout);
    return AQS_EXIT_OK;
  }
  aqs_eval_cli cli = {0};
  cli.allow_out = 1;
  int rc = aqs_eval_cli_parse("report", argc, argv, &cli);
  if (rc) return rc;
  if (!cli.out_dir) return aqs_cli_usage_error("report", "--out DIR is required");
  aqs_workspace ws;
  aqs_store *store;
  if (aqs_cli_open_store("report", 0, &ws, &store)) return AQS_EXIT_FAIL;
  aqs_eval_opts o;
  aqs_eval_cli_opts(&cli, &ws, store, &o);
  aqs_report_result res;
  aqs_err e = {0};
  if (aqs_quality_report(&o, (const char *const *)cli.names, (size_t)cli.n_names, cli.out_dir, &res, &e) != AQS_OK) {
    rc = aqs_cli_fail_err("report", &e);
  } else if (cli.json) {
    json_t *figs = json_array();
    for (int i = 0; i < AQS_REPORT_FIGURES; i++) json_array_append_new(figs, json_string(aqs_report_figure_names[i]));
    rc = aqs_cli_print_json("report", json_pack("{s:s, s:o, s:I, s:I, s:I, s:I}", "report", res.markdown_path,
                                                "figures", figs, "schemes", (json_int_t)res.n_rows, "evaluated",
                                                (json_int_t)res.n_evaluated, "family_bytes",
                                                (json_int_t)res.family_logical_bytes, "stored_bytes",
                                                (json_int_t)res.family_stored_bytes));
  } else {
    printf("report: %s (%d figures; %zu schemes: %zu evaluated, %zu from the store)\n", res.markdown_path,
           AQS_REPORT_FIGURES, res.n_rows, res.n_evaluated, res.n_rows - res.n_evaluated);
  }
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_report = {"report", "quality report: report.md and PNG figures of a scheme family", run_report};
