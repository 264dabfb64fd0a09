/* cli/cmd_pull.c: `aqs pull NAME...`: fetches builds from the remote cache into the store: the ref
 * record, its target's closure (every object verified by digest) and its action records, then
 * sets the local ref (store/tiers.h aqs_tiers_pull). Afterwards checkout works offline. */
#include "cli/cli.h"
#include "cli/cli_transfer.h"
#include "cli/cli_util.h"

#include <stdio.h>
#include <string.h>

#include "common/progress.h"

static const char pull_usage[] =
    "usage: aqs pull [--json] NAME...\n"
    "\n"
    "Fetches builds that someone pushed (aqs push) from the remote cache ([remote] url in\n"
    ".aqstore): the ref NAME, every object its target reaches and the action records pushed with\n"
    "it. Each download is verified by digest before it enters the store (a wrong or cut-short\n"
    "body is retried, then refused); the local ref is set last, so an interrupted pull leaves no\n"
    "ref to missing objects. Afterwards aqs checkout NAME and aqs build of the same recipe and\n"
    "data work without the remote.\n"
    "\n"
    "NAME is a build ref as pushed (recipe/<recipe>/<model>-<data>, exact) or a recipe name:\n"
    "then the alias recipe/NAME, i.e. the last build of that recipe anyone pushed. The local ref\n"
    "set is the build's full ref, so aqs ls, checkout and build name it as if it was built here.\n"
    "\n"
    "options:\n"
    "  --json   print a summary as JSON (per ref: objects and bytes fetched, action records;\n"
    "           requests and retries)\n";

static int run_pull(int argc, char **argv) {
  int json, first;
  int rc = aqs_cli_transfer_args("pull", pull_usage, argc, argv, &json, &first);
  if (rc >= 0) return rc;
  if (first >= argc) return aqs_cli_usage_error("pull", "expected at least one NAME");
  aqs_workspace ws;
  aqs_store *store;
  if (aqs_cli_open_with_remote("pull", 0, &ws, &store)) return AQS_EXIT_FAIL;
  rc = AQS_EXIT_OK;
  json_t *list = json_array();
  for (int i = first; !rc && i < argc; i++) {
    /* NAME as published (a full build ref or an alias), then the alias of a recipe called NAME. */
    char alias[AQS_REF_NAME_MAX + 1];
    snprintf(alias, sizeof alias, "recipe/%s", argv[i]);
    const char *names[2] = {argv[i], strchr(argv[i], '/') ? NULL : alias};
    aqs_err e = {0};
    aqs_status st = AQS_ERR_NOT_FOUND;
    for (int c = 0; c < 2 && names[c] && st == AQS_ERR_NOT_FOUND; c++) {
      aqs_transfer_stats ts = {0};
      aqs_digest target;
      char ref[AQS_REF_NAME_MAX + 1];
      aqs_progress *p = aqs_cli_transfer_progress(names[c], json, &ts);
      st = aqs_tiers_pull(store, names[c], ref, &target, &ts, &e);
      if (st == AQS_OK) aqs_progress_finish(p);
      else aqs_progress_abort(p);
      if (st == AQS_OK && json) json_array_append_new(list, aqs_cli_transfer_json(ref, &target, &ts));
      else if (st == AQS_OK) aqs_cli_transfer_print("pulled", ref, &target, &ts);
    }
    if (st != AQS_OK) rc = aqs_cli_fail_err("pull", &e);
  }
  if (!rc && json) rc = aqs_cli_print_json("pull", aqs_cli_transfer_summary(store, list));
  else json_decref(list);
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_pull = {"pull", "fetch builds from the remote cache (verified) for offline use", run_pull};
