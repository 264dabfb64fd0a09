/* cli/cmd_push.c: `aqs push [NAME...]`: uploads builds to the remote cache: each build's record and
 * everything it reaches, the action records whose results it reaches, and its ref records (the
 * full build ref and the recipe/<recipe> alias; store/tiers.h aqs_tiers_push). No NAME: every build. */
#include "cli/cli.h"
#include "cli/cli_transfer.h"
#include "cli/cli_util.h"

#include <stdio.h>
#include <string.h>

#include "cli/build_names_cli.h"
#include "common/progress.h"

static const char push_usage[] =
    "usage: aqs push [--json] [NAME...]\n"
    "\n"
    "Uploads builds to the remote cache ([remote] url in .aqstore; bazel-remote layout, see\n"
    "docs/store-format.md): for each build, its record and every object it reaches (children\n"
    "first; objects the remote already has are skipped), every action record whose result is among\n"
    "them (so a teammate's build of the same recipe and data is all hits), and last its ref\n"
    "records: the full build ref (recipe/<recipe>/<model>-<data>) and the alias recipe/<recipe>\n"
    "(the last build of that recipe pushed), which `aqs pull` looks up. Every object is re-hashed\n"
    "before it is sent: a damaged object stops the push. Without NAME, every build in the store.\n"
    "\n"
    "NAME names a build as in aqs checkout: a recipe (top50), top50@<model>[+<data>], a ref or a\n"
    "build record digest.\n"
    "\n"
    "options:\n"
    "  --json   print a summary as JSON (per build: objects reached and sent, bytes, action\n"
    "           records; requests and retries)\n";

/* Pushes one build; prints its line or appends its JSON. Returns 0 or the exit status. */
static int push_one(aqs_store *store, const aqs_build_entry *b, int alias, json_t *list) {
  char alias_ref[AQS_REF_NAME_MAX + 1];
  snprintf(alias_ref, sizeof alias_ref, "recipe/%s", b->recipe);
  int distinct = strcmp(alias_ref, b->ref) != 0;
  aqs_transfer_stats st = {0};
  aqs_err e = {0};
  aqs_progress *p = aqs_cli_transfer_progress(b->ref, list != NULL, &st);
  if (aqs_tiers_push(store, b->ref, alias && distinct ? alias_ref : NULL, &b->record, &st, &e) != AQS_OK) {
    aqs_progress_abort(p);
    return aqs_cli_fail("push", "%s: %s", b->ref, e.msg);
  }
  aqs_progress_finish(p);
  if (list) json_array_append_new(list, aqs_cli_transfer_json(b->ref, &b->record, &st));
  else aqs_cli_transfer_print("pushed", b->ref, &b->record, &st);
  return AQS_EXIT_OK;
}

static int push_all(aqs_store *store, json_t *list) {
  aqs_build_entry *builds = NULL;
  size_t n = 0;
  aqs_err e = {0};
  if (aqs_build_list(store, &builds, &n, &e) != AQS_OK) return aqs_cli_fail_err("push", &e);
  int rc = n ? AQS_EXIT_OK : aqs_cli_fail("push", "store %s has no builds to push", aqs_store_path(store));
  /* The list is newest first within a recipe: the alias goes to the newest build of each. */
  for (size_t i = 0; !rc && i < n; i++)
    rc = push_one(store, &builds[i], i == 0 || strcmp(builds[i - 1].recipe, builds[i].recipe) != 0, list);
  aqs_build_list_free(builds, n);
  return rc;
}

static int run_push(int argc, char **argv) {
  int json, first;
  int rc = aqs_cli_transfer_args("push", push_usage, argc, argv, &json, &first);
  if (rc >= 0) return rc;
  aqs_workspace ws;
  aqs_store *store;
  if (aqs_cli_open_with_remote("push", AQS_STORE_RDONLY, &ws, &store)) return AQS_EXIT_FAIL;
  json_t *list = json ? json_array() : NULL;
  rc = first == argc ? push_all(store, list) : AQS_EXIT_OK;
  for (int i = first; !rc && i < argc; i++) {
    aqs_build_entry b;
    rc = aqs_cli_resolve_build("push", store, &ws, NULL, argv[i], &b);
    if (!rc) {
      rc = push_one(store, &b, 1, list);
      json_decref(b.doc);
    }
  }
  if (!rc && json) rc = aqs_cli_print_json("push", aqs_cli_transfer_summary(store, list));
  else json_decref(list);
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_push = {"push", "upload builds (objects, action records, refs) to the remote cache", run_push};
