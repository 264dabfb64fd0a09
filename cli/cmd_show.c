/* cli/cmd_show.c: `aqs show NAME`: one built recipe: its parameters, the stages' digests, the plan
 * (effective bits, FP8 groups with their sensitivity scores, BF16 candidates). */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "engine/export/plan.h"
#include "cli/build_names_cli.h"
#include "engine/stages/build.h"
#include "engine/stages/ckpt_store.h"
#include "engine/stages/stage.h"

static const char show_usage[] =
    "usage: aqs show [--json | --markdown | --scores] [--model DIR] [--captions FILE] NAME\n"
    "\n"
    "Shows one build of recipe NAME: when and by whom it was built, its model and data, every\n"
    "recipe parameter, the digest of every stage's result, the effective bits, and each group's\n"
    "decision with its sensitivity score (FP8 groups first, least sensitive first). Scores are\n"
    "printed as 1.234e-06, bits with 4 decimals.\n"
    "\n"
    "NAME is a recipe name when the store holds one build of it, or one for the workspace's\n"
    "model and data ([model] path and [data] captions in .aqstore, or --model / --captions);\n"
    "NAME@MODEL[+DATA] picks a build by digest prefixes (aqs ls shows them); a ref name or a\n"
    "build record digest works too.\n"
    "\n"
    "options:\n"
    "  --json            print JSON: the build record plus \"plan\" and \"build_record\"\n"
    "  --markdown        print the per-layer sensitivity table (Markdown; aqs build also writes it\n"
    "                    beside each checkout as <dir>.per-layer-sensitivity.md)\n"
    "  --scores          print the sensitivity manifest: per-group scores, costs, ranking (JSON)\n"
    "  --model DIR       the model that picks among builds of NAME ([model] path)\n"
    "  --captions FILE   the data that picks among builds of NAME ([data] captions)\n";

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

/* A recipe parameter as the recipe file writes it. */
static void print_param(const char *key, const json_t *v) {
  if (json_is_string(v)) printf("  %-18s %s\n", key, json_string_value(v));
  else if (json_is_integer(v)) printf("  %-18s %lld\n", key, (long long)json_integer_value(v));
  else if (json_is_real(v)) printf("  %-18s %g\n", key, json_real_value(v));
  else if (json_is_boolean(v)) printf("  %-18s %s\n", key, json_is_true(v) ? "true" : "false");
}

static void print_header(const aqs_build_entry *b, const aqs_plan *plan) {
  const json_t *doc = b->doc, *summary = json_object_get(doc, "summary");
  char when[32], m[AQS_DIGEST_STR_SIZE], d[AQS_DIGEST_STR_SIZE];
  aqs_digest_str(&b->model, m);
  aqs_digest_str(&b->data, d);
  printf("recipe          %s\n", b->recipe);
  printf("build           %s@%.12s+%.12s\n", b->recipe, m + 7, d + 7);
  if (b->ref[0]) printf("ref             %s\n", b->ref);
  if (b->time_ns) printf("built           %s by %s\n", aqs_cli_time(when, sizeof when, b->time_ns), b->user);
  printf("model           %.19s\n", m);
  printf("data            %.19s (calib-set)\n", d);
  printf("groups          %lld FP8 of %lld candidates (%lld groups in scope %s)\n",
         (long long)json_integer_value(json_object_get(summary, "fp8")),
         (long long)json_integer_value(json_object_get(summary, "candidates")),
         (long long)json_integer_value(json_object_get(summary, "groups")), plan->scope);
  printf("effective bits  %.4f\n", json_number_value(json_object_get(summary, "effective_bits")));
  printf("\nparameters\n");
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)json_object_get(doc, "recipe_params"), key, v) print_param(key, v);
  printf("\nstages\n");
  size_t n_stages;
  const aqs_stage_def *const *table = aqs_stage_table(&n_stages);
  for (size_t i = 0; i < n_stages; i++) {
    aqs_digest sd;
    char hex[AQS_DIGEST_STR_SIZE];
    aqs_err ignore = {0};
    if (aqs_build_record_stage(doc, table[i]->name, &sd, &ignore) == AQS_OK)
      printf("  %-16s %s\n", table[i]->name, aqs_digest_str(&sd, hex));
  }
}

/* The consumer verdicts of the build's aqs-manifest.json (docs/vision.md); silent when the
 * export predates them. */
static void print_consumers(aqs_store *store, json_t *doc) {
  aqs_digest ck;
  aqs_err e = {0};
  json_t *tree = NULL, *man = NULL;
  if (aqs_build_record_stage(doc, "export", &ck, &e) != AQS_OK ||
      aqs_ckpt_load_manifest(store, &ck, NULL, &tree, &e) != AQS_OK)
    return;
  json_t *f;
  size_t i;
  json_array_foreach(json_object_get(tree, "files"), i, f) {
    aqs_digest d;
    char *text = NULL;
    size_t len = 0;
    const char *fname = json_string_value(json_object_get(f, "name"));
    const char *fdigest = json_string_value(json_object_get(f, "digest"));
    if (!fname || !fdigest || strcmp(fname, "aqs-manifest.json") != 0 ||
        aqs_digest_parse(fdigest, &d, &e) != AQS_OK ||
        aqs_stage_get_text(store, &d, &text, &len, &e) != AQS_OK)
      continue;
    man = json_loadb(text, len, 0, NULL);
    free(text);
  }
  json_t *consumers = json_object_get(man, "consumers");
  if (json_object_size(consumers)) {
    const char *fmt = json_string_value(json_object_get(man, "export_format"));
    printf("\nconsumers (%s export; rules in docs/vision.md)\n", fmt ? fmt : "?");
    const char *name;
    json_t *c;
    json_object_foreach(consumers, name, c) {
      if (!json_is_true(json_object_get(c, "reads_format")))
        printf("  %s: does not read this format\n", name);
      else if (!json_is_true(json_object_get(c, "loads")))
        printf("  %s: fails: %s\n", name, json_string_value(json_object_get(c, "reason")));
      else {
        size_t wrong = json_array_size(json_object_get(c, "fp8_codes_as_bf16"));
        printf("  %s: loads: %zu modules FP8, %zu BF16", name, json_array_size(json_object_get(c, "fp8")),
               json_array_size(json_object_get(c, "bf16")));
        if (wrong) printf(", %zu FP8 read as BF16 without scales (wrong outputs)", wrong);
        printf("\n");
      }
    }
  }
  json_decref(man);
  json_decref(tree);
}

static int run_show(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(show_usage, stdout);
    return AQS_EXIT_OK;
  }
  int as_json = 0, markdown = 0, scores = 0;
  aqs_cli_scope_flags scope = {0};
  static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
                                           {"markdown", no_argument, NULL, 'm'},
                                           {"scores", no_argument, NULL, 's'},
                                           {"model", required_argument, NULL, 'M'},
                                           {"captions", required_argument, NULL, 'C'},
                                           {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (ch == 'j') as_json = 1;
    else if (ch == 'm') markdown = 1;
    else if (ch == 's') scores = 1;
    else if (ch == 'M') scope.model_dir = optarg;
    else if (ch == 'C') scope.data_file = optarg;
    else return aqs_cli_bad_option("show", longopts, argv);
  }
  if (optind + 1 != argc) return aqs_cli_usage_error("show", "expected one recipe name");
  const char *name = argv[optind];
  aqs_workspace ws;
  aqs_store *store;
  if (aqs_cli_open_store("show", AQS_STORE_RDONLY, &ws, &store)) return AQS_EXIT_FAIL;
  aqs_err e = {0};
  json_t *doc = NULL;
  aqs_plan *plan = NULL;
  aqs_build_entry b;
  int rc = aqs_cli_resolve_build("show", store, &ws, &scope, name, &b);
  if (rc) goto out;
  doc = b.doc;
  aqs_digest rec = b.record;
  if (load_plan(store, doc, &plan, &e) != AQS_OK) {
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
    json_object_set_new(doc, "ref", b.ref[0] ? json_string(b.ref) : json_null());
    json_object_set_new(doc, "user", json_string(b.user));
    json_object_set_new(doc, "time", b.time_ns ? json_string(aqs_cli_time(hex, sizeof hex, b.time_ns)) : json_null());
    rc = aqs_cli_print_json("show", doc);
    doc = NULL;
    goto out;
  }
  print_header(&b, plan);
  print_consumers(store, doc);
  size_t *order = malloc((plan->n + 1) * sizeof *order);
  for (size_t i = 0; i < plan->n; i++) order[i] = i;
  sort_plan = plan;
  qsort(order, plan->n, sizeof *order, by_format_score);
  printf("\n%-16s %-6s %s\n", "group", "format", "score");
  for (size_t i = 0; i < plan->n; i++) {
    const aqs_plan_entry *en = &plan->entries[order[i]];
    if (en->has_score)
      printf("%-16s %-6s %.3e\n", en->group, aqs_format_name(en->format), en->score);
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
