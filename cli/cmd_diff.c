/* cli/cmd_diff.c: `aqs diff A B`: compares two exported checkpoint directories tensor by tensor
 * and checks that they differ exactly where their plans do (engine/export/diff.h). */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/build_cli.h"
#include "engine/export/diff.h"

static const char diff_usage[] =
    "usage: aqs diff A B [--json] [--tensors] [--quiet]\n"
    "\n"
    "A and B are exported checkpoint directories (aqs export / aqs build outputs) or the names of\n"
    "built recipes (aqs diff top10 top50: their checkpoints are checked out from the store).\n"
    "Compares the two checkpoints: the SHA-256 of\n"
    "every tensor, and for tensors that differ the dequantized max-abs and relative L2 difference,\n"
    "summarized per group. Then the proof: the groups that differ must be exactly the groups where\n"
    "the two plans (from each aqs-manifest.json) differ, nothing else may differ, and every tensor\n"
    "must match its own manifest. Exit 0 when the proof holds, 1 with the reason when it does not\n"
    "(including two different plans that produced identical weights).\n"
    "\n"
    "options:\n"
    "  --json      print the full report as JSON\n"
    "  --tensors   also list every differing tensor\n"
    "  --quiet     no progress on stderr\n";

static void print_num(double v) {
  if (isnan(v)) printf(" %10s", "-");
  else printf(" %10.3e", v);
}

static void print_report(const aqs_diff_report *r, int list_tensors) {
  printf("A: %s (%zu tensors)\nB: %s (%zu tensors)\n", r->dir_a, r->n_tensors_a, r->dir_b,
         r->n_tensors_b);
  printf("%zu identical tensors, %zu differing; plans differ in %zu group(s)\n", r->n_identical,
         r->ntensors, r->n_plan_diff);
  if (r->ngroups) {
    printf("\n%-14s %-5s %-5s %8s %10s %10s  %s\n", "group", "A", "B", "tensors", "max|A-B|",
           "rel L2", "");
    for (size_t i = 0; i < r->ngroups; i++) {
      const aqs_diff_group *g = &r->groups[i];
      printf("%-14s %-5s %-5s %8zu", g->id, aqs_format_name(g->format_a),
             aqs_format_name(g->format_b), g->n_differ);
      print_num(g->n_differ ? g->max_abs : NAN);
      print_num(g->n_differ ? g->rel_l2 : NAN);
      printf("  %s\n", g->in_plan_diff ? (g->n_differ ? "expected" : "EXPECTED BUT IDENTICAL")
                                       : "UNEXPECTED");
    }
  }
  if (list_tensors && r->ntensors) {
    static const char *const kinds[] = {"changed", "only A", "only B"};
    printf("\n%-60s %-12s %-8s %-8s %10s %10s\n", "tensor", "group", "A", "B", "max|A-B|", "rel L2");
    for (size_t i = 0; i < r->ntensors; i++) {
      const aqs_diff_tensor *t = &r->tensors[i];
      printf("%-60s %-12s %-8s %-8s", t->name, t->group[0] ? t->group : "(none)",
             t->dtype_a[0] ? t->dtype_a : "-", t->dtype_b[0] ? t->dtype_b : "-");
      print_num(t->max_abs);
      print_num(t->rel_l2);
      printf("  %s\n", kinds[t->kind]);
    }
  }
  if (r->nviolations) {
    printf("\nproblems:\n");
    for (size_t i = 0; i < r->nviolations; i++) printf("  - %s\n", r->violations[i]);
  }
  printf("\n%s\n", r->verdict);
}

static int run_diff(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(diff_usage, stdout);
    return AQS_EXIT_OK;
  }
  int as_json = 0, list_tensors = 0, quiet = 0;
  static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
                                           {"tensors", no_argument, NULL, 't'},
                                           {"quiet", no_argument, NULL, 'q'},
                                           {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (ch == 'j') as_json = 1;
    else if (ch == 't') list_tensors = 1;
    else if (ch == 'q') quiet = 1;
    else return aqs_cli_bad_option("diff", longopts, argv);
  }
  if (argc - optind != 2) return aqs_cli_usage_error("diff", "expected two checkpoints A and B (directories or built recipe names)");
  aqs_cli_export_ctx names = {0};
  char dir_a[4400], dir_b[4400];
  int rc_dirs = aqs_cli_export_dir("diff", argv[optind], &names, dir_a, sizeof dir_a);
  if (!rc_dirs) rc_dirs = aqs_cli_export_dir("diff", argv[optind + 1], &names, dir_b, sizeof dir_b);
  if (rc_dirs) {
    aqs_cli_export_ctx_free(&names);
    return rc_dirs;
  }
  aqs_diff_report r;
  aqs_err e = {0};
  aqs_status st = aqs_export_diff(dir_a, dir_b, !quiet, &r, &e);
  aqs_cli_export_ctx_free(&names);
  if (st != AQS_OK && st != AQS_ERR_MISMATCH) {
    aqs_diff_report_free(&r);
    return aqs_cli_fail_err("diff", &e);
  }
  int rc = st == AQS_OK ? AQS_EXIT_OK : AQS_EXIT_FAIL;
  if (as_json) {
    char *text = aqs_diff_report_to_json(&r);
    if (!text || fputs(text, stdout) == EOF) rc = AQS_EXIT_FAIL;
    free(text);
  } else {
    print_report(&r, list_tensors);
  }
  if (st == AQS_ERR_MISMATCH) fprintf(stderr, "aqs diff: %s\n", e.msg);
  aqs_diff_report_free(&r);
  return rc;
}

const aqs_cmd aqs_cmd_diff = {"diff", "compare two exports and prove they differ exactly as their plans",
                              run_diff};
