/* cli/cmd_push.c: `aqs push [NAME...]`: uploads builds to the remote cache: each named ref's target
 * and everything it reaches, the action records whose results it reaches, and the ref record
 * (store/tiers.h aqs_tiers_push). No NAME: every ref of the store. */
#include "cli/cli.h"
#include "cli/cli_transfer.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char push_usage[] =
    "usage: aqs push [--json] [NAME...]\n"
    "\n"
    "Uploads builds to the remote cache ([remote] url in .aqstore; bazel-remote layout, see\n"
    "docs/store-format.md): for each NAME, the object its ref names and every object it reaches\n"
    "(children first; objects the remote already has are skipped), every action record whose\n"
    "result is among them (so a teammate's build of the same recipe is all hits), and last the\n"
    "ref itself, so that `aqs pull NAME` elsewhere finds it. Every object is re-hashed before it\n"
    "is sent: a damaged object stops the push. Without NAME, every ref of the store is pushed.\n"
    "\n"
    "NAME is a ref name (aqs refs) or a recipe name whose build ref is recipe/NAME.\n"
    "\n"
    "options:\n"
    "  --json   print a summary as JSON (per ref: objects reached and sent, bytes, action records;\n"
    "           requests and retries)\n";

typedef struct ref_list {
  char (*names)[AQS_REF_NAME_MAX + 1];
  aqs_digest *targets;
  size_t n;
  int oom;
} ref_list;

static int add_ref(ref_list *l, const char *name, const aqs_digest *target) {
  char (*names)[AQS_REF_NAME_MAX + 1] = realloc(l->names, (l->n + 1) * sizeof *names);
  if (names) l->names = names;
  aqs_digest *targets = names ? realloc(l->targets, (l->n + 1) * sizeof *targets) : NULL;
  if (targets) l->targets = targets;
  if (!names || !targets) return l->oom = 1;
  snprintf(l->names[l->n], sizeof l->names[l->n], "%s", name);
  l->targets[l->n++] = *target;
  return 0;
}

static int on_ref(const char *name, const aqs_digest *target, void *user) { return add_ref(user, name, target); }

/* Resolves each NAME to a ref of the store (see aqs_cli_ref_candidates). */
static int resolve_names(aqs_store *store, int argc, char **argv, ref_list *refs) {
  for (int i = 0; i < argc; i++) {
    char cand[2][AQS_REF_NAME_MAX + 1];
    int n = aqs_cli_ref_candidates(argv[i], cand), found = 0;
    for (int c = 0; c < n && !found; c++) {
      aqs_digest target;
      if (aqs_ref_get(store, cand[c], &target, NULL) == AQS_OK) {
        if (add_ref(refs, cand[c], &target)) return aqs_cli_fail("push", "out of memory");
        found = 1;
      }
    }
    if (!found)
      return aqs_cli_fail("push", "no ref %s or %s in store %s (aqs refs lists them)", cand[0], cand[n - 1],
                          aqs_store_path(store));
  }
  return AQS_EXIT_OK;
}

static int run_push(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(push_usage, stdout);
    return AQS_EXIT_OK;
  }
  int json = 0;
  static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (ch == 'j') json = 1;
    else return aqs_cli_usage_error("push", "unknown option");
  }
  aqs_workspace ws;
  aqs_store *store;
  if (aqs_cli_open_with_remote("push", AQS_STORE_RDONLY, &ws, &store)) return AQS_EXIT_FAIL;
  ref_list refs = {0};
  aqs_err e = {0};
  int rc = AQS_EXIT_OK;
  if (optind < argc) rc = resolve_names(store, argc - optind, argv + optind, &refs);
  else if (aqs_ref_foreach(store, on_ref, &refs, &e) != AQS_OK) rc = aqs_cli_fail_err("push", &e);
  if (!rc && refs.oom) rc = aqs_cli_fail("push", "out of memory");
  if (!rc && refs.n == 0) rc = aqs_cli_fail("push", "store %s has no refs to push (build something first)", aqs_store_path(store));
  json_t *list = json_array();
  for (size_t i = 0; !rc && i < refs.n; i++) {
    aqs_transfer_stats st = {0};
    if (!json) fprintf(stderr, "pushing %s (%zu/%zu)...\n", refs.names[i], i + 1, refs.n);
    if (aqs_tiers_push(store, refs.names[i], &refs.targets[i], &st, &e) != AQS_OK) {
      rc = aqs_cli_fail("push", "%s: %s", refs.names[i], e.msg);
      break;
    }
    if (json) json_array_append_new(list, aqs_cli_transfer_json(refs.names[i], &refs.targets[i], &st));
    else aqs_cli_transfer_print("pushed", refs.names[i], &refs.targets[i], &st);
  }
  if (!rc && json) rc = aqs_cli_print_json("push", aqs_cli_transfer_summary(store, list));
  else json_decref(list);
  free(refs.names);
  free(refs.targets);
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_push = {"push", "upload builds (objects, action records, refs) to the remote cache", run_push};
