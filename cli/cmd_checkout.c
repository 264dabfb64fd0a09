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
#include "cli/build_names_cli.h"

static const char checkout_usage[] =
    "usage: aqs checkout [--link-mode reflink|hardlink|copy] [--model DIR] [--captions FILE] NAME DIR\n"
    "\n"
    "Writes the checkpoint of build NAME (or of a checkpoint manifest digest) into DIR: a Hugging\n"
    "Face directory in the recipe's [export] format (ModelOpt FP8 by default), files read-only.\n"
    "NAME resolves as in aqs show (a recipe name, NAME@MODEL[+DATA], a ref, a digest). DIR is\n"
    "created, or replaced if it is an earlier aqs checkout; any other existing DIR is refused,\n"
    "and so is an earlier checkout that holds a file aqs did not write (the message names it:\n"
    "aqs never deletes your files). DIR must name a directory: '', '.', '..' and '/' are refused.\n"
    "\n"
    "options:\n"
    "  --link-mode MODE   reflink (default from .aqstore: copy-on-write where the filesystem\n"
    "                     can, else an in-kernel copy), hardlink (shares files with the store),\n"
    "                     or copy\n"
    "  --model DIR        the model that picks among builds of NAME ([model] path)\n"
    "  --captions FILE    the data that picks among builds of NAME ([data] captions)\n";

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
  aqs_cli_scope_flags scope = {0};
  static const struct option longopts[] = {{"link-mode", required_argument, NULL, 'l'},
                                           {"model", required_argument, NULL, 'M'},
                                           {"captions", required_argument, NULL, 'C'},
                                           {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (ch == 'l') mode_text = optarg;
    else if (ch == 'M') scope.model_dir = optarg;
    else if (ch == 'C') scope.data_file = optarg;
    else return aqs_cli_bad_option("checkout", longopts, argv);
  }
  if (optind + 2 != argc) return aqs_cli_usage_error("checkout", "expected NAME and DIR");
  const char *name = argv[optind], *dir = argv[optind + 1];
  aqs_link_mode mode;
  if (mode_text && aqs_cli_parse_link_mode(mode_text, &mode) != 0)
    return aqs_cli_usage_error("checkout", "bad --link-mode '%s' (reflink, hardlink or copy)", mode_text);
  aqs_workspace ws;
  aqs_store *store;
  if (aqs_cli_open_store("checkout", AQS_CLI_WRITE_IF_ALLOWED, &ws, &store)) return AQS_EXIT_FAIL;
  if (!mode_text) mode = ws.link_mode;
  int rc = AQS_EXIT_OK;
  aqs_err e = {0};
  aqs_digest ckpt;
  json_t *manifest = NULL;
  /* A checkpoint manifest digest checks out as is; any other name must reach a build. */
  if (aqs_store_resolve(store, name, &ckpt, &e) == AQS_OK &&
      aqs_ckpt_load_manifest(store, &ckpt, "aqs-checkpoint", &manifest, &e) == AQS_OK) {
    json_decref(manifest);
  } else {
    aqs_build_entry b;
    rc = aqs_cli_resolve_build("checkout", store, &ws, &scope, name, &b);
    if (!rc) {
      if (aqs_build_record_stage(b.doc, "export", &ckpt, &e) != AQS_OK) rc = aqs_cli_fail_err("checkout", &e);
      json_decref(b.doc);
    }
  }
  if (!rc && aqs_ckpt_materialize(store, &ckpt, dir, mode, &e) != AQS_OK) rc = aqs_cli_fail_err("checkout", &e);
  if (rc == AQS_EXIT_OK) printf("%s\n", dir);
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_checkout = {"checkout", "write a built recipe's checkpoint into a directory", run_checkout};
