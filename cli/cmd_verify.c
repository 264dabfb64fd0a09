/* cli/cmd_verify.c: `aqs verify`: re-hashes every object (or a random sample), checks that
 * manifests' children exist, quarantines bad objects and exits non-zero when any was bad. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <errno.h>
#include <getopt.h>
#include <unistd.h>
#include <inttypes.h>
#include <string.h>

static const char verify_usage[] =
    "usage: aqs verify [--sample N] [--seed S] [--no-quarantine] [--json]\n"
    "       aqs verify --reindex [--json]\n"
    "\n"
    "Re-hashes stored objects and compares them with their digests (and checks that every\n"
    "manifest's children are present). Each bad object is reported on stderr with its digest and\n"
    "moved to <store>/quarantine/, so reads fail clearly and a later put of the right bytes\n"
    "repairs it. A full run also reports object files the index does not know (a lost index).\n"
    "Exits 1 when any object was corrupt, missing or unindexed, 0 when all were good. On a store\n"
    "you cannot write (another user's, a read-only mount) it reports without quarantining.\n"
    "\n"
    "--reindex rebuilds a lost, empty or damaged index from objects/ (every file re-hashed; bad\n"
    "ones go to quarantine/) and the store's journal (inline objects, actions, refs). Run it\n"
    "when no other aqs uses the store.\n"
    "\n"
    "options:\n"
    "  --sample N       check a random sample of N objects instead of all\n"
    "  --seed S         seed for --sample (default: from the clock)\n"
    "  --no-quarantine  report only; leave bad objects in place\n"
    "  --reindex        rebuild the index (see above) and print what was restored\n"
    "  --json           print {checked, ok, corrupt, missing, unindexed, bytes_checked,\n"
    "                   quarantined, bad: [{digest, status, message}]} on stdout\n";

typedef struct verify_listing {
  json_t *bad; /* JSON array, or NULL */
} verify_listing;

static void on_bad(const aqs_digest *d, aqs_status status, const char *msg, void *user) {
  verify_listing *l = user;
  char digest[AQS_DIGEST_STR_SIZE];
  aqs_digest_str(d, digest);
  fprintf(stderr, "aqs verify: %s: %s\n", status == AQS_ERR_CORRUPT ? "corrupt" : "missing", msg);
  if (l->bad)
    json_array_append_new(l->bad, json_pack("{s:s, s:s, s:s}", "digest", digest, "status",
                                            aqs_status_name(status), "message", msg));
}

static int run_reindex(aqs_workspace *ws, int as_json) {
  if (aqs_cli_load_workspace("verify", ws)) return AQS_EXIT_FAIL;
  aqs_err err = {0};
  aqs_reindex_report r;
  int rc = AQS_EXIT_OK;
  if (aqs_store_reindex(ws->store_path, &r, &err) != AQS_OK) {
    rc = aqs_cli_fail_err("verify", &err);
  } else if (as_json) {
    rc = aqs_cli_print_json(
        "verify",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "files_scanned",
                  (json_int_t)r.files_scanned, "files_bad", (json_int_t)r.files_bad,
                  "files_quarantined", (json_int_t)r.files_quarantined, "journal_records",
                  (json_int_t)r.journal_records, "journal_damaged", (json_int_t)r.journal_damaged,
                  "objects", (json_int_t)r.objects, "inline_objects", (json_int_t)r.inline_objects,
                  "manifests_dropped", (json_int_t)r.manifests_dropped, "actions",
                  (json_int_t)r.actions, "actions_dropped", (json_int_t)r.actions_dropped, "refs",
                  (json_int_t)r.refs, "refs_dropped", (json_int_t)r.refs_dropped));
  } else {
    printf("reindexed %s: %" PRIu64 " objects (%" PRIu64 " files, %" PRIu64
           " inline from the journal), %" PRIu64 " actions, %" PRIu64 " refs\n",
           ws->store_path, r.objects, r.objects - r.inline_objects, r.inline_objects, r.actions,
           r.refs);
    if (r.files_bad || r.journal_damaged || r.manifests_dropped || r.actions_dropped ||
        r.refs_dropped)
      printf("left out: %" PRIu64 " bad object files (quarantined), %" PRIu64
             " damaged journal spans, %" PRIu64 " manifests, %" PRIu64 " actions, %" PRIu64
             " refs (what they need is gone)\n",
             r.files_bad, r.journal_damaged, r.manifests_dropped, r.actions_dropped,
             r.refs_dropped);
  }
  aqs_workspace_free(ws);
  return rc;
}

static int cmd_verify_run(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(verify_usage, stdout);
    return AQS_EXIT_OK;
  }
  static const struct option longopts[] = {
    {"sample", required_argument, NULL, 'n'},
    {"seed", required_argument, NULL, 's'},
    {"no-quarantine", no_argument, NULL, 'q'},
    {"json", no_argument, NULL, 'j'},
    {"reindex", no_argument, NULL, 'r'},
    {NULL, 0, NULL, 0},
  };
  aqs_verify_opts opts = {.sample = 0, .seed = 0, .quarantine = 1};
  int as_json = 0, reindex = 0, c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
    switch (c) {
    case 'n':
      if (aqs_cli_parse_u64(optarg, &opts.sample) != 0 || opts.sample == 0)
        return aqs_cli_usage_error("verify", "--sample wants a positive count, not '%s'", optarg);
      break;
    case 's':
      if (aqs_cli_parse_u64(optarg, &opts.seed) != 0)
        return aqs_cli_usage_error("verify", "--seed wants a non-negative integer, not '%s'",
                                   optarg);
      break;
    case 'q': opts.quarantine = 0; break;
    case 'j': as_json = 1; break;
    case 'r': reindex = 1; break;
    case ':': return aqs_cli_usage_error("verify", "option '%s' needs a value", argv[optind - 1]);
    default: return aqs_cli_bad_option("verify", longopts, argv);
    }
  }
  if (optind < argc) return aqs_cli_usage_error("verify", "unexpected argument '%s'", argv[optind]);

  aqs_workspace ws;
  aqs_store *store;
  if (reindex) return run_reindex(&ws, as_json);
  /* Without write access to the index, report only. */
  int rc = aqs_cli_open_store("verify", opts.quarantine ? AQS_CLI_WRITE_IF_ALLOWED : AQS_STORE_RDONLY,
                              &ws, &store);
  if (rc == AQS_EXIT_OK && opts.quarantine && aqs_store_is_rdonly(store)) {
    fprintf(stderr, "aqs verify: store %s is not writable: reporting without quarantining\n",
            ws.store_path);
    opts.quarantine = 0;
  }
  if (rc) return rc;
  verify_listing listing = {.bad = as_json ? json_array() : NULL};
  aqs_err err = {0};
  aqs_verify_report report;
  memset(&report, 0, sizeof report);
  aqs_status st = aqs_verify(store, &opts, on_bad, &listing, &report, &err);
  if (st != AQS_OK && st != AQS_ERR_CORRUPT) {
    rc = aqs_cli_fail_err("verify", &err);
    json_decref(listing.bad);
  } else {
    if (as_json) {
      json_t *doc = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "checked",
                              (json_int_t)report.checked, "ok", (json_int_t)report.ok, "corrupt",
                              (json_int_t)report.corrupt, "missing", (json_int_t)report.missing,
                              "bytes_checked", (json_int_t)report.bytes_checked, "quarantined",
                              (json_int_t)report.quarantined, "unindexed",
                              (json_int_t)report.unindexed, "bad", listing.bad);
      rc = aqs_cli_print_json("verify", doc);
    } else {
      char bytes[32];
      printf("checked %" PRIu64 " objects (%s): %" PRIu64 " ok, %" PRIu64 " corrupt, %" PRIu64
             " missing; %" PRIu64 " quarantined\n",
             report.checked, aqs_cli_bytes(bytes, sizeof bytes, report.bytes_checked), report.ok,
             report.corrupt, report.missing, report.quarantined);
    }
    if (st == AQS_ERR_CORRUPT) rc = aqs_cli_fail_err("verify", &err);
  }
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_verify = {
  .name = "verify",
  .summary = "re-hash objects (all or --sample N); exit non-zero on corruption",
  .run = cmd_verify_run,
};
