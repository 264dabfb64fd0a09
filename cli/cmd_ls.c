/* cli/cmd_ls.c: `aqs ls`: the builds in this store (one per recipe, model and data: refs
 * recipe/...) with their plan summary and provenance, or with --recipes every recipe that can be
 * built (built-in and workspace). Both lists are in natural order (top10, top20, ..., top100). */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "engine/stages/build.h"
#include "engine/stages/build_names.h"
#include "engine/stages/recipe_keys.h"

static const char ls_usage[] =
    "usage: aqs ls [--recipes [--recipes-dir DIR] | --recipes --keys] [--json]\n"
    "\n"
    "Lists the builds in this store, one line per (recipe, model, data): recipe, FP8 groups /\n"
    "candidate groups, effective bits, the model (source digest) and data (calib-set digest)\n"
    "prefixes, when and by whom it was built. NAME@MODEL picks one build where a recipe was built\n"
    "on several models (aqs show, checkout, diff). With --recipes, lists the recipes that can be\n"
    "built instead (built-in ones and those in the workspace's recipes directory), with their\n"
    "descriptions. With --recipes --keys, lists every key a recipe may set: section, key, type,\n"
    "default, the stage whose cache key it feeds, and what it means (a Markdown table; the one\n"
    "in docs/recipes.md).\n"
    "\n"
    "options:\n"
    "  --recipes           list buildable recipes instead of builds\n"
    "  --recipes-dir DIR   workspace recipes for --recipes ([recipes] path in .aqstore)\n"
    "  --keys              with --recipes: the recipe keys instead of the recipes\n"
    "  --json              print JSON\n";

static int by_natural(const void *a, const void *b) {
  return aqs_natural_cmp(*(char *const *)a, *(char *const *)b);
}

static int list_recipes(const char *recipes_dir, int as_json) {
  aqs_recipe_source src = {.workspace_dir = recipes_dir};
  char **names;
  size_t n;
  aqs_err e = {0};
  if (aqs_recipe_list(&src, &names, &n, &e) != AQS_OK) return aqs_cli_fail_err("ls", &e);
  qsort(names, n, sizeof *names, by_natural);
  json_t *rows = json_array();
  int rc = AQS_EXIT_OK;
  if (!as_json) printf("%-22s %s\n", "RECIPE", "DESCRIPTION");
  for (size_t i = 0; i < n; i++) {
    aqs_recipe r;
    aqs_err re = {0};
    int ok = aqs_recipe_load(&src, names[i], &r, &re) == AQS_OK;
    if (as_json)
      json_array_append_new(rows, json_pack("{s:s, s:s}", "recipe", names[i], ok ? "description" : "error",
                                            ok ? r.description : re.msg));
    else if (ok)
      printf("%-22s %s\n", names[i], r.description);
    else
      printf("%-22s (invalid: %s)\n", names[i], re.msg);
    if (!ok) rc = AQS_EXIT_FAIL;
    free(names[i]);
  }
  free(names);
  if (as_json) return aqs_cli_print_json("ls", rows) ? AQS_EXIT_FAIL : rc;
  json_decref(rows);
  return rc;
}

static json_t *build_row(const aqs_build_entry *b) {
  json_t *summary = json_object_get(b->doc, "summary");
  char m[AQS_DIGEST_STR_SIZE], d[AQS_DIGEST_STR_SIZE], ck[AQS_DIGEST_STR_SIZE], when[32];
  aqs_digest ckpt;
  aqs_err e = {0};
  aqs_digest_str(&b->model, m);
  aqs_digest_str(&b->data, d);
  const char *ckpt_str = aqs_build_record_stage(b->doc, "export", &ckpt, &e) == AQS_OK ? aqs_digest_str(&ckpt, ck) : "";
  return json_pack("{s:s, s:s, s:s, s:s, s:O, s:s, s:o, s:s}", "recipe", b->recipe, "ref", b->ref, "model", m, "data", d,
                   "summary", summary ? summary : json_null(), "checkpoint", ckpt_str, "time",
                   b->time_ns ? json_string(aqs_cli_time(when, sizeof when, b->time_ns)) : json_null(), "user", b->user);
}

static void print_builds(const aqs_build_entry *list, size_t n) {
  if (n == 0) {
    printf("no builds yet (aqs build recipe NAME; aqs ls --recipes lists the recipes)\n");
    return;
  }
  printf("%-22s %-9s %-8s %-12s %-12s %-20s %s\n", "RECIPE", "FP8", "BITS", "MODEL", "DATA", "BUILT", "BY");
  for (size_t i = 0; i < n; i++) {
    const aqs_build_entry *b = &list[i];
    json_t *s = json_object_get(b->doc, "summary");
    char m[AQS_DIGEST_SHORT_LEN + 1], d[AQS_DIGEST_SHORT_LEN + 1], when[32] = "-", groups[32];
    aqs_digest_short(&b->model, m);
    aqs_digest_short(&b->data, d);
    if (b->time_ns) aqs_cli_time(when, sizeof when, b->time_ns);
    snprintf(groups, sizeof groups, "%lld/%lld", (long long)json_integer_value(json_object_get(s, "fp8")),
             (long long)json_integer_value(json_object_get(s, "candidates")));
    printf("%-22s %-9s %-8.4f %-12s %-12s %-20s %s\n", b->recipe, groups,
           json_number_value(json_object_get(s, "effective_bits")), m, d, when, b->user[0] ? b->user : "-");
  }
}

/* The recipe key table (engine/stages/recipe_keys.h): Markdown, or JSON rows. */
static int list_keys(int as_json) {
  size_t n;
  const aqs_recipe_key *keys = aqs_recipe_keys(&n);
  if (!as_json) {
    char *md = aqs_recipe_keys_markdown();
    if (!md) return aqs_cli_fail("ls", "out of memory");
    fputs(md, stdout);
    free(md);
    return AQS_EXIT_OK;
  }
  json_t *rows = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:o, s:s, s:s}", "section", keys[i].section, "key",
                                          keys[i].key, "type", keys[i].type, "default",
                                          keys[i].def ? json_string(keys[i].def) : json_null(), "stage",
                                          keys[i].stage, "doc", keys[i].doc));
  return aqs_cli_print_json("ls", rows) ? AQS_EXIT_FAIL : AQS_EXIT_OK;
}

static int run_ls(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(ls_usage, stdout);
    return AQS_EXIT_OK;
  }
  int as_json = 0, recipes = 0, keys = 0;
  const char *recipes_dir = NULL;
  static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
                                           {"recipes", no_argument, NULL, 'r'},
                                           {"recipes-dir", required_argument, NULL, 'R'},
                                           {"keys", no_argument, NULL, 'k'},
                                           {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (ch == 'j') as_json = 1;
    else if (ch == 'r') recipes = 1;
    else if (ch == 'R') recipes_dir = optarg;
    else if (ch == 'k') keys = 1;
    else return aqs_cli_bad_option("ls", longopts, argv);
  }
  if (optind < argc) return aqs_cli_usage_error("ls", "unexpected argument '%s'", argv[optind]);
  if (recipes_dir && !recipes) return aqs_cli_usage_error("ls", "--recipes-dir goes with --recipes");
  if (keys && !recipes) return aqs_cli_usage_error("ls", "--keys goes with --recipes");
  if (keys) return list_keys(as_json);
  aqs_workspace ws;
  if (recipes) {
    if (aqs_cli_load_workspace("ls", &ws)) return AQS_EXIT_FAIL;
    int rc = list_recipes(recipes_dir ? recipes_dir : ws.recipes_path, as_json);
    aqs_workspace_free(&ws);
    return rc;
  }
  aqs_store *store;
  if (aqs_cli_open_store("ls", AQS_STORE_RDONLY, &ws, &store)) return AQS_EXIT_FAIL;
  aqs_build_entry *list = NULL;
  size_t n = 0;
  aqs_err e = {0};
  int rc = AQS_EXIT_OK;
  if (aqs_build_list(store, &list, &n, &e) != AQS_OK) {
    rc = aqs_cli_fail_err("ls", &e);
  } else if (as_json) {
    json_t *rows = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(rows, build_row(&list[i]));
    rc = aqs_cli_print_json("ls", rows);
  } else {
    print_builds(list, n);
  }
  aqs_build_list_free(list, n);
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_ls = {"ls", "list builds: recipe, model, data, bits, when, who (--recipes: buildable)", run_ls};
