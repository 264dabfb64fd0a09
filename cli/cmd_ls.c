/* cli/cmd_ls.c: `aqs ls`: the recipes built in this store (refs recipe/<name>) with their plan
 * summary, or with --recipes every recipe that can be built (built-in and workspace). */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "engine/stages/build.h"

static const char ls_usage[] =
    "usage: aqs ls [--recipes] [--json]\n"
    "\n"
    "Lists the recipes built in this store: name, FP8 groups / candidate groups, effective bits,\n"
    "and the checkpoint digest. With --recipes, lists the recipes that can be built instead\n"
    "(built-in ones and those in the workspace's recipes directory), with their descriptions.\n"
    "\n"
    "options:\n"
    "  --recipes   list buildable recipes instead of built ones\n"
    "  --json      print JSON\n";

typedef struct ls_ctx {
  aqs_store *store;
  json_t *rows;
} ls_ctx;

static int add_build(const char *name, const aqs_digest *target, void *user) {
  ls_ctx *c = user;
  if (strncmp(name, "recipe/", 7) != 0) return 0;
  json_t *doc;
  aqs_digest rec;
  aqs_err e = {0};
  if (aqs_build_record_load(c->store, name, &rec, &doc, &e) != AQS_OK) return 0;
  (void)target;
  json_t *summary = json_object_get(doc, "summary");
  aqs_digest ckpt;
  char hex[AQS_DIGEST_STR_SIZE];
  const char *ckpt_str = aqs_build_record_stage(doc, "export", &ckpt, &e) == AQS_OK ? aqs_digest_str(&ckpt, hex) : "";
  json_array_append_new(c->rows, json_pack("{s:s, s:O, s:s}", "recipe", name + 7, "summary",
                                           summary ? summary : json_null(), "checkpoint", ckpt_str));
  json_decref(doc);
  return 0;
}

static int list_recipes(const aqs_workspace *ws, int as_json) {
  aqs_recipe_source src = {.workspace_dir = ws->recipes_path};
  char **names;
  size_t n;
  aqs_err e = {0};
  if (aqs_recipe_list(&src, &names, &n, &e) != AQS_OK) return aqs_cli_fail_err("ls", &e);
  json_t *rows = json_array();
  int rc = AQS_EXIT_OK;
  for (size_t i = 0; i < n; i++) {
    aqs_recipe r;
    aqs_err re = {0};
    int ok = aqs_recipe_load(&src, names[i], &r, &re) == AQS_OK;
    if (as_json)
      json_array_append_new(rows, json_pack("{s:s, s:s}", "recipe", names[i], ok ? "description" : "error",
                                            ok ? r.description : re.msg));
    else if (ok)
      printf("%-22s %s\n", names[i], r.description);
    else {
      printf("%-22s (invalid: %s)\n", names[i], re.msg);
      rc = AQS_EXIT_FAIL;
    }
    free(names[i]);
  }
  free(names);
  if (as_json) return aqs_cli_print_json("ls", rows) ? AQS_EXIT_FAIL : rc;
  json_decref(rows);
  return rc;
}

static int run_ls(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(ls_usage, stdout);
    return AQS_EXIT_OK;
  }
  int as_json = 0, recipes = 0;
  static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
                                           {"recipes", no_argument, NULL, 'r'},
                                           {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (ch == 'j') as_json = 1;
    else if (ch == 'r') recipes = 1;
    else return aqs_cli_bad_option("ls", longopts, argv);
  }
  if (optind < argc) return aqs_cli_usage_error("ls", "unexpected argument '%s'", argv[optind]);
  aqs_workspace ws;
  if (recipes) {
    if (aqs_cli_load_workspace("ls", &ws)) return AQS_EXIT_FAIL;
    int rc = list_recipes(&ws, as_json);
    aqs_workspace_free(&ws);
    return rc;
  }
  aqs_store *store;
  if (aqs_cli_open_store("ls", AQS_STORE_RDONLY, &ws, &store)) return AQS_EXIT_FAIL;
  ls_ctx c = {.store = store, .rows = json_array()};
  aqs_err e = {0};
  int rc = AQS_EXIT_OK;
  if (aqs_ref_foreach(store, add_build, &c, &e) != AQS_OK) rc = aqs_cli_fail_err("ls", &e);
  if (rc == AQS_EXIT_OK && as_json) {
    rc = aqs_cli_print_json("ls", c.rows);
    c.rows = NULL;
  } else if (rc == AQS_EXIT_OK) {
    size_t i;
    json_t *row;
    if (json_array_size(c.rows) == 0) printf("no recipes built yet (aqs build recipe NAME)\n");
    json_array_foreach(c.rows, i, row) {
      json_t *s = json_object_get(row, "summary");
      const char *ck = json_string_value(json_object_get(row, "checkpoint"));
      printf("%-22s %3lld/%-3lld groups FP8  %6.3f bits  sha256:%.12s\n",
             json_string_value(json_object_get(row, "recipe")),
             (long long)json_integer_value(json_object_get(s, "fp8")),
             (long long)json_integer_value(json_object_get(s, "candidates")),
             json_number_value(json_object_get(s, "effective_bits")), ck && strlen(ck) > 7 ? ck + 7 : "");
    }
  }
  json_decref(c.rows);
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_ls = {"ls", "list built recipes (or --recipes: buildable ones)", run_ls};
