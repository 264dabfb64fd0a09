/* cli/cmd_refs.c: `aqs refs`: lists refs (name -> digest; refs pin objects against gc), shows a
 * ref's history (its reflog), and sets or deletes refs by hand (like git update-ref). */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <string.h>

#include "engine/stages/ckpt_store.h"

static const char refs_usage[] =
    "usage: aqs refs [--json]                          list refs: digest and name\n"
    "       aqs refs log NAME [--json]                 the ref's history, newest first\n"
    "       aqs refs set NAME DIGEST [-m MESSAGE]      point NAME at an object (must be stored)\n"
    "       aqs refs delete NAME [-m MESSAGE]          remove NAME (its history records it)\n"
    "\n"
    "A ref names an object (usually a checkpoint or stage manifest). Refs pin what they name,\n"
    "and everything its manifests list, against aqs gc. Each ref keeps its last 20 changes.\n"
    "DIGEST may be abbreviated or be another ref's name. Names are segments of letters, digits,\n"
    "'.', '_', '-' separated by single '/' (no '.' or '..' segment). Refs under recipe/ name builds\n"
    "(aqs ls lists them): they may only point at build records.\n"
    "\n"
    "options:\n"
    "  --json        print the list or the history as JSON\n"
    "  -m MESSAGE    a note recorded in the history (set, delete)\n";

typedef struct list_ctx {
  json_t *arr; /* NULL: print text */
  size_t count;
} list_ctx;

static int on_ref(const char *name, const aqs_digest *target, void *user) {
  list_ctx *l = user;
  char digest[AQS_DIGEST_STR_SIZE];
  aqs_digest_str(target, digest);
  if (l->arr) json_array_append_new(l->arr, json_pack("{s:s, s:s}", "name", name, "target", digest));
  else printf("%s %s\n", digest, name);
  l->count++;
  return 0;
}

static int on_log_entry(const aqs_reflog_entry *e, void *user) {
  list_ctx *l = user;
  char old_d[AQS_DIGEST_STR_SIZE], new_d[AQS_DIGEST_STR_SIZE], when[32];
  aqs_cli_time(when, sizeof when, e->time_ns);
  if (e->has_old) aqs_digest_str(&e->old_target, old_d);
  if (e->has_new) aqs_digest_str(&e->new_target, new_d);
  if (l->arr) {
    json_array_append_new(
        l->arr, json_pack("{s:o, s:o, s:s, s:s, s:s}", "old",
                          e->has_old ? json_string(old_d) : json_null(), "new",
                          e->has_new ? json_string(new_d) : json_null(), "time", when, "user",
                          e->user, "message", e->message));
  } else {
    const char *action = !e->has_old ? "created" : !e->has_new ? "deleted" : "moved";
    char old_short[AQS_DIGEST_SHORT_LEN + 1] = "-", new_short[AQS_DIGEST_SHORT_LEN + 1] = "-";
    if (e->has_old) aqs_digest_short(&e->old_target, old_short);
    if (e->has_new) aqs_digest_short(&e->new_target, new_short);
    printf("%s  %-7s %-12s -> %-12s  %s%s%s\n", when, action, old_short, new_short, e->user,
           e->message[0] ? "  " : "", e->message);
  }
  l->count++;
  return 0;
}

/* Resolves a DIGEST argument: an object digest (abbreviations ok) or another ref's name. */
static aqs_status resolve_target(aqs_store *store, const char *text, aqs_digest *out, aqs_err *err) {
  aqs_status st = aqs_store_resolve(store, text, out, err);
  if (st == AQS_OK || st == AQS_ERR_AMBIGUOUS) return st;
  aqs_err ref_err = {0};
  if (aqs_ref_get(store, text, out, &ref_err) == AQS_OK) return AQS_OK;
  if (st == AQS_ERR_INVALID)
    return aqs_errf(err, AQS_ERR_NOT_FOUND, "'%s' is neither a digest nor a ref in %s", text,
                    aqs_store_path(store));
  return st;
}

static int cmd_refs_run(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(refs_usage, stdout);
    return AQS_EXIT_OK;
  }
  static const struct option longopts[] = {
    {"json", no_argument, NULL, 'j'},
    {"message", required_argument, NULL, 'm'},
    {NULL, 0, NULL, 0},
  };
  int as_json = 0, c;
  const char *message = NULL;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":m:", longopts, NULL)) != -1) {
    switch (c) {
    case 'j': as_json = 1; break;
    case 'm': message = optarg; break;
    case ':': return aqs_cli_usage_error("refs", "option '%s' needs a value", argv[optind - 1]);
    default: return aqs_cli_bad_option("refs", longopts, argv);
    }
  }
  int nargs = argc - optind;
  char **args = argv + optind;
  const char *verb = nargs ? args[0] : "list";
  int want_args = strcmp(verb, "list") == 0 ? 0 : strcmp(verb, "log") == 0 ? 1
                : strcmp(verb, "set") == 0 ? 2 : strcmp(verb, "delete") == 0 ? 1 : -1;
  if (want_args < 0)
    return aqs_cli_usage_error("refs", "unknown action '%s' (list, log, set, delete)", verb);
  if (nargs && nargs - 1 != want_args)
    return aqs_cli_usage_error("refs", "'refs %s' takes %d argument%s", verb, want_args,
                               want_args == 1 ? "" : "s");

  aqs_workspace ws;
  aqs_store *store;
  int writes = strcmp(verb, "set") == 0 || strcmp(verb, "delete") == 0;
  int rc = aqs_cli_open_store("refs", writes ? 0 : AQS_STORE_RDONLY, &ws, &store);
  if (rc) return rc;
  aqs_err err = {0};
  list_ctx l = {.arr = as_json ? json_array() : NULL};
  aqs_status st = AQS_OK;
  if (strcmp(verb, "list") == 0) {
    st = aqs_ref_foreach(store, on_ref, &l, &err);
  } else if (strcmp(verb, "log") == 0) {
    aqs_digest current;
    aqs_err get_err = {0};
    st = aqs_ref_log(store, args[1], on_log_entry, &l, &err);
    /* A name that never existed has no history: say so rather than print nothing. */
    if (st == AQS_OK && l.count == 0 && aqs_ref_get(store, args[1], &current, &get_err) != AQS_OK)
      st = aqs_errf(&err, AQS_ERR_NOT_FOUND, "no ref %s (and no history) in %s", args[1],
                    aqs_store_path(store));
  } else if (strcmp(verb, "set") == 0) {
    aqs_digest target;
    st = resolve_target(store, args[2], &target, &err);
    json_t *record = NULL;
    aqs_err kind_err = {0};
    if (st == AQS_OK && strncmp(args[1], "recipe/", 7) == 0 &&
        aqs_ckpt_load_manifest(store, &target, "aqs-build", &record, &kind_err) != AQS_OK)
      st = aqs_errf(&err, AQS_ERR_INVALID, "refs under recipe/ name builds, and %s is not a build record (%s)",
                    args[2], kind_err.msg);
    json_decref(record);
    if (st == AQS_OK) st = aqs_ref_set(store, args[1], &target, message, &err);
    if (st == AQS_OK && !as_json) {
      char digest[AQS_DIGEST_STR_SIZE];
      printf("%s %s\n", aqs_digest_str(&target, digest), args[1]);
    } else if (st == AQS_OK) {
      on_ref(args[1], &target, &l);
    }
  } else {
    st = aqs_ref_delete(store, args[1], message, &err);
  }
  if (st != AQS_OK) {
    rc = aqs_cli_fail_err("refs", &err);
    json_decref(l.arr);
  } else if (as_json) {
    rc = aqs_cli_print_json("refs", l.arr);
  }
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_refs = {
  .name = "refs",
  .summary = "list refs, show a ref's history, set or delete a ref",
  .run = cmd_refs_run,
};
