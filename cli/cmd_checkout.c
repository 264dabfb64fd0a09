/* cli/cmd_checkout.c: `aqs checkout NAME DIR`: materializes the checkpoint of a built recipe
 * (ref recipe/NAME, or a checkpoint manifest digest) into DIR by reflink, hardlink or copy. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "engine/stages/build.h"
#include "engine/stages/ckpt_store.h"
#include "cli/build_cli.h"

static const char checkout_usage[] =
    "usage: aqs checkout [--link-mode reflink|hardlink|copy] NAME DIR\n"
    "\n"
    "Writes the checkpoint of built recipe NAME (or of a checkpoint manifest digest) into DIR:\n"
    "a Hugging Face directory in ModelOpt's FP8 format, files read-only. DIR is created, or\n"
    "replaced if it is an earlier aqs checkout; any other existing DIR is refused.\n"
    "\n"
    "options:\n"
    "  --link-mode MODE   reflink (default from .aqstore: copy-on-write where the filesystem\n"
    "                     can, else an in-kernel copy), hardlink (shares files with the store),\n"
    "                     or copy\n";

int aqs_cli_parse_link_mode(const char *s, aqs_link_mode *out) {
  if (strcmp(s, "reflink") == 0) *out = AQS_LINK_REFLINK;
  else if (strcmp(s, "hardlink") == 0) *out = AQS_LINK_HARDLINK;
  else if (strcmp(s, "copy") == 0) *out = AQS_LINK_COPY;
  else return -1;
  return 0;
}

static int run_checkout(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(checkout_usage, stdout);
    return AQS_EXIT_OK;
  }
  const char *mode_text = NULL;
  static const struct option longopts[] = {{"link-mode", required_argument, NULL, 'l'}, {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (ch == 'l') mode_text = optarg;
    else return aqs_cli_bad_option("checkout", longopts, argv);
  }
  if (optind + 2 != argc) return aqs_cli_usage_error("checkout", "expected NAME and DIR");
  aqs_workspace ws;
  aqs_store *store;
  if (aqs_cli_open_store("checkout", 0, &ws, &store)) return AQS_EXIT_FAIL;
  aqs_link_mode mode = ws.link_mode;
  int rc = AQS_EXIT_OK;
  aqs_err e = {0};
  json_t *doc = NULL;
  aqs_digest ckpt, rec;
  if (mode_text && aqs_cli_parse_link_mode(mode_text, &mode) != 0) {
    rc = aqs_cli_usage_error("checkout", "bad --link-mode '%s' (reflink, hardlink or copy)", mode_text);
  } else if (aqs_build_record_load(store, argv[optind], &rec, &doc, &e) == AQS_OK) {
    if (aqs_build_record_stage(doc, "export", &ckpt, &e) != AQS_OK ||
        aqs_ckpt_materialize(store, &ckpt, argv[optind + 1], mode, &e) != AQS_OK)
      rc = aqs_cli_fail_err("checkout", &e);
  } else if (aqs_store_resolve(store, argv[optind], &ckpt, &e) == AQS_OK) {
    if (aqs_ckpt_materialize(store, &ckpt, argv[optind + 1], mode, &e) != AQS_OK) rc = aqs_cli_fail_err("checkout", &e);
  } else {
    rc = aqs_cli_fail_err("checkout", &e);
  }
  if (rc == AQS_EXIT_OK) printf("%s\n", argv[optind + 1]);
  json_decref(doc);
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_checkout = {"checkout", "write a built recipe's checkpoint into a directory", run_checkout};
