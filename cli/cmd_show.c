/* cli/cmd_show.c: `aqs show NAME`: one built recipe: its parameters, the stages' digests, the plan
 * (effective bits, FP8 groups with their sensitivity scores, BF16 candidates). */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "engine/export/plan.h"
#include "engine/stages/build.h"

static const char show_usage[] =
    "usage: aqs show [--json | --markdown | --scores] NAME\n"
    "\n"
    "Shows the latest build of recipe NAME (its ref recipe/NAME): the recipe's parameters, the\n"
    "digest of every stage's result, the effective bits, and each group's decision with its\n"
    "sensitivity score (FP8 groups first, least sensitive first).\n"
    "\n"
    "options:\n"
    "  --json       print JSON: the build record plus \"plan\"\n"
    "  --markdown   print the per-layer sensitivity table (Markdown; aqs build also writes it\n"
    "               beside each checkout as <dir>.per-layer-sensitivity.md)\n"
    "  --scores     print the sensitivity manifest: per-group scores, costs, ranking (JSON)\n";

static aqs_status load_plan(aqs_store *store, const json_t *doc, aqs_plan **plan, aqs_err *e) {
  aqs_digest d;
  aqs_status st = aqs_build_record_stage(doc, "slice", &d, e);
  if (st) return st;
  void *bytes;
  size_t len;
  if ((st = aqs_get_mem(store, &d, &bytes, &len, e))) return st;
  char what[AQS_DIGEST_STR_SIZE];
  st = aqs_plan_parse(bytes, len, aqs_digest_str(&d, what), plan, e);
  free(bytes);
  return st;
}

static const aqs_plan *sort_plan;
static int by_format_score(const void *a, const void *b) {
  const aqs_plan_entry *x = &sort_plan->entries[*(const size_t *)a], *y = &sort_plan->entries[*(const size_t *)b];
  if (x->format != y->format) return x->format == AQS_FMT_FP8 ? -1 : 1;
  if (x->score != y->score) return x->score < y->score ? -1 : 1;
  return aqs_group_id_cmp(x->group, y->group);
}

static int run_show(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(show_usage, stdout);
    return AQS_EXIT_OK;
  }
  int as_json = 0, markdown = 0, scores = 0;
  static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
                                           {"markdown", no_argument, NULL, 'm'},
                                           {"scores", no_argument, NULL, 's'},
                                           {NULL, 0, NULL, 0}};
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (ch == 'j') as_json = 1;
    else if (ch == 'm') markdown = 1;
    else if (ch == 's') scores = 1;
    else return aqs_cli_usage_error("show", "unknown option");
  }
  if (optind + 1 != argc) return aqs_cli_usage_error("show", "expected one recipe name");
  const char *name = argv[optind];
  aqs_workspace ws;
  aqs_store *store;
  if (aqs_cli_open_store("show", AQS_STORE_RDONLY, &ws, &store)) return AQS_EXIT_FAIL;
  aqs_err e = {0};
  json_t *doc = NULL;
  aqs_plan *plan = NULL;
  aqs_digest rec;
  int rc = AQS_EXIT_OK;
  if (aqs_build_record_load(store, name, &rec, &doc, &e) != AQS_OK || load_plan(store, doc, &plan, &e) != AQS_OK) {
    rc = aqs_cli_fail_err("show", &e);
    goto out;
  }
  if (markdown || scores) {
    char *text = NULL;
    if (aqs_build_sensitivity_docs(store, doc, markdown ? &text : NULL, scores ? &text : NULL, &e) != AQS_OK)
      rc = aqs_cli_fail_err("show", &e);
    else
      fputs(text, stdout);
    free(text);
    goto out;
  }
  if (as_json) {
    json_error_t jerr;
    char *pj = aqs_plan_to_json(plan);
    json_t *pdoc = pj ? json_loads(pj, 0, &jerr) : NULL;
    free(pj);
    char hex[AQS_DIGEST_STR_SIZE];
    json_object_set_new(doc, "plan", pdoc ? pdoc : json_null());
    json_object_set_new(doc, "build_record", json_string(aqs_digest_str(&rec, hex)));
    rc = aqs_cli_print_json("show", doc);
    doc = NULL;
    goto out;
  }
  json_t *summary = json_object_get(doc, "summary");
  printf("recipe          %s\n", json_string_value(json_object_get(doc, "recipe")));
  printf("groups          %lld FP8 of %lld candidates (%lld groups in scope %s)\n",
         (long long)json_integer_value(json_object_get(summary, "fp8")),
         (long long)json_integer_value(json_object_get(summary, "candidates")),
         (long long)json_integer_value(json_object_get(summary, "groups")), plan->scope);
  printf("effective bits  %.4f\n", json_number_value(json_object_get(summary, "effective_bits")));
  size_t n_stages;
  const aqs_stage_def *const *table = aqs_stage_table(&n_stages);
  for (size_t i = 0; i < n_stages; i++) {
    aqs_digest d;
    char hex[AQS_DIGEST_STR_SIZE];
    if (aqs_build_record_stage(doc, table[i]->name, &d, &e) == AQS_OK)
      printf("%-15s %s\n", table[i]->name, aqs_digest_str(&d, hex));
  }
  size_t *order = malloc((plan->n + 1) * sizeof *order);
  for (size_t i = 0; i < plan->n; i++) order[i] = i;
  sort_plan = plan;
  qsort(order, plan->n, sizeof *order, by_format_score);
  printf("\n%-16s %-6s %s\n", "group", "format", "score");
  for (size_t i = 0; i < plan->n; i++) {
    const aqs_plan_entry *en = &plan->entries[order[i]];
    if (en->has_score)
      printf("%-16s %-6s %.6g\n", en->group, aqs_format_name(en->format), en->score);
    else
      printf("%-16s %-6s -\n", en->group, aqs_format_name(en->format));
  }
  free(order);
out:
  json_decref(doc);
  aqs_plan_free(plan);
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_show = {"show", "show a built recipe: plan, effective bits, scores", run_show};
