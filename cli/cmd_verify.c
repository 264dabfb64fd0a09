/* cli/cmd_verify.c: `aqs verify`: re-hashes every object (or a random sample), checks that
 * manifests' children exist, quarantines bad objects and exits non-zero when any was bad. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <inttypes.h>
#include <string.h>

static const char verify_usage[] =
    "usage: aqs verify [--sample N] [--seed S] [--no-quarantine] [--json]\n"
    "\n"
    "Re-hashes stored objects and compares them with their digests (and checks that every\n"
    "manifest's children are present). Each bad object is reported on stderr with its digest and\n"
    "moved to <store>/quarantine/, so reads fail clearly and a later put of the right bytes\n"
    "repairs it. Exits 1 when any object was corrupt or missing, 0 when all checked were good.\n"
    "\n"
    "options:\n"
    "  --sample N       check a random sample of N objects instead of all\n"
    "  --seed S         seed for --sample (default: from the clock)\n"
    "  --no-quarantine  report only; leave bad objects in place\n"
    "  --json           print {checked, ok, corrupt, missing, bytes_checked, quarantined,\n"
    "                   bad: [{digest, status, message}]} on stdout\n";

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
    {NULL, 0, NULL, 0},
  };
  aqs_verify_opts opts = {.sample = 0, .seed = 0, .quarantine = 1};
  int as_json = 0, c;
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
    case ':': return aqs_cli_usage_error("verify", "option '%s' needs a value", argv[optind - 1]);
    default: return aqs_cli_usage_error("verify", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return aqs_cli_usage_error("verify", "unexpected argument '%s'", argv[optind]);

  aqs_workspace ws;
  aqs_store *store;
  int rc = aqs_cli_open_store("verify", opts.quarantine ? 0 : AQS_STORE_RDONLY, &ws, &store);
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
      json_t *doc = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "checked",
                              (json_int_t)report.checked, "ok", (json_int_t)report.ok, "corrupt",
                              (json_int_t)report.corrupt, "missing", (json_int_t)report.missing,
                              "bytes_checked", (json_int_t)report.bytes_checked, "quarantined",
                              (json_int_t)report.quarantined, "bad", listing.bad);
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
