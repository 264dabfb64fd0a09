/* cli/cmd_cat.c: `aqs cat DIGEST|REF`: writes an object's bytes to stdout, verified against its
 * digest as they stream (like git cat-file -p); abbreviated digests and ref names are accepted.
 * --info describes the object instead (size, stored size, kind, children). */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char cat_usage[] =
    "usage: aqs cat [--info] [--json] DIGEST|REF\n"
    "\n"
    "Writes the object's bytes to standard output. DIGEST is \"sha256:<hex>\" or bare hex,\n"
    "abbreviated to any unambiguous prefix of at least 4 hex digits; a ref name (see aqs refs)\n"
    "names its target. The bytes are re-hashed while they stream: on corruption aqs cat stops,\n"
    "reports the digest and exits non-zero (discard what was written).\n"
    "\n"
    "options:\n"
    "  --info   describe the object instead: digest, size, stored size, kind (inline | zstd |\n"
    "           raw), manifest children, created and last-access times\n"
    "  --json   the --info description as JSON (implies --info)\n";

/* Resolves text to a digest: an object digest (full or abbreviated), else a ref name.
 * Returns AQS_OK or the error to report (the digest's error, which says what was wrong). */
static aqs_status resolve_target(aqs_store *store, const char *text, aqs_digest *out,
                                 aqs_err *err) {
  aqs_status st = aqs_store_resolve(store, text, out, err);
  if (st == AQS_OK || st == AQS_ERR_AMBIGUOUS) return st;
  aqs_err ref_err = {0};
  if (aqs_ref_get(store, text, out, &ref_err) == AQS_OK) return AQS_OK;
  if (st == AQS_ERR_INVALID)
    return aqs_errf(err, AQS_ERR_NOT_FOUND, "'%s' is neither a digest (4 to 64 hex digits) nor a "
                    "ref in %s", text, aqs_store_path(store));
  return st;
}

static int print_info(aqs_store *store, const aqs_digest *d, int as_json) {
  aqs_err err = {0};
  aqs_object_info info;
  if (aqs_object_stat(store, d, &info, &err) != AQS_OK) return aqs_cli_fail_err("cat", &err);
  aqs_digest *children = NULL;
  size_t n_children = 0;
  if (info.manifest && aqs_object_children(store, d, &children, &n_children, &err) != AQS_OK)
    return aqs_cli_fail_err("cat", &err);
  char digest[AQS_DIGEST_STR_SIZE], created[32], atime[32];
  aqs_digest_str(d, digest);
  aqs_cli_time(created, sizeof created, info.created_ns);
  aqs_cli_time(atime, sizeof atime, info.atime_ns);
  int rc = AQS_EXIT_OK;
  if (as_json) {
    json_t *kids = json_array();
    for (size_t i = 0; i < n_children; i++) {
      char c[AQS_DIGEST_STR_SIZE];
      json_array_append_new(kids, json_string(aqs_digest_str(&children[i], c)));
    }
    json_t *doc = json_pack("{s:s, s:I, s:I, s:s, s:b, s:o, s:s, s:s}", "digest", digest, "size",
                            (json_int_t)info.size_bytes, "stored", (json_int_t)info.stored_bytes,
                            "kind", aqs_cli_kind_name(info.kind), "manifest", info.manifest,
                            "children", kids, "created", created, "accessed", atime);
    rc = aqs_cli_print_json("cat", doc);
  } else {
    char size[32], stored[32];
    printf("digest    %s\n", digest);
    printf("size      %" PRIu64 " (%s)\n", info.size_bytes,
           aqs_cli_bytes(size, sizeof size, info.size_bytes));
    printf("stored    %" PRIu64 " (%s)\n", info.stored_bytes,
           aqs_cli_bytes(stored, sizeof stored, info.stored_bytes));
    printf("kind      %s%s\n", aqs_cli_kind_name(info.kind), info.manifest ? ", manifest" : "");
    printf("created   %s\n", created);
    printf("accessed  %s\n", atime);
    for (size_t i = 0; i < n_children; i++) {
      char c[AQS_DIGEST_STR_SIZE];
      printf("child     %s\n", aqs_digest_str(&children[i], c));
    }
  }
  free(children);
  return rc;
}

static int cmd_cat_run(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(cat_usage, stdout);
    return AQS_EXIT_OK;
  }
  static const struct option longopts[] = {
    {"info", no_argument, NULL, 'i'},
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
  };
  int want_info = 0, as_json = 0, c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (c == 'i') want_info = 1;
    else if (c == 'j') as_json = want_info = 1;
    else return aqs_cli_bad_option("cat", longopts, argv);
  }
  if (optind >= argc) return aqs_cli_usage_error("cat", "missing DIGEST");
  if (argc - optind > 1) return aqs_cli_usage_error("cat", "one DIGEST at a time");

  aqs_workspace ws;
  aqs_store *store;
  int rc = aqs_cli_open_store("cat", AQS_CLI_WRITE_IF_ALLOWED, &ws, &store);
  if (rc) return rc;
  aqs_err err = {0};
  aqs_digest d;
  if (resolve_target(store, argv[optind], &d, &err) != AQS_OK) {
    rc = aqs_cli_fail_err("cat", &err);
  } else if (want_info) {
    rc = print_info(store, &d, as_json);
  } else {
    fflush(stdout);
    if (aqs_get_fd(store, &d, STDOUT_FILENO, NULL, &err) != AQS_OK) rc = aqs_cli_fail_err("cat", &err);
  }
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_cat = {
  .name = "cat",
  .summary = "write an object's bytes to stdout, verified (like git cat-file -p)",
  .run = cmd_cat_run,
};
