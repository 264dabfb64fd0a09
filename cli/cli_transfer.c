/* cli/cli_transfer.c: implementation of cli_transfer.h (shared by cmd_push.c and cmd_pull.c). */
#include "cli/cli_transfer.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "common/progress.h"

int aqs_cli_transfer_args(const char *cmd, const char *usage, int argc, char **argv, int *json, int *first_name) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(usage, stdout);
    return AQS_EXIT_OK;
  }
  *json = 0;
  static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
    if (ch == 'j') *json = 1;
    else return aqs_cli_bad_option(cmd, longopts, argv);
  }
  *first_name = optind;
  return -1;
}

static void progress_bytes(uint64_t bytes, void *user) { aqs_progress_add(user, bytes); }

aqs_progress *aqs_cli_transfer_progress(const char *label, int json, aqs_transfer_stats *stats) {
  aqs_progress *p = json ? NULL : aqs_progress_start(label, 0, "B");
  if (p) {
    stats->on_object = progress_bytes;
    stats->on_object_user = p;
  }
  return p;
}

int aqs_cli_open_with_remote(const char *cmd, unsigned flags, aqs_workspace *ws, aqs_store **store) {
  if (aqs_cli_open_store(cmd, flags, ws, store)) return AQS_EXIT_FAIL;
  if (aqs_store_remote(*store)) return AQS_EXIT_OK;
  aqs_store_close(*store);
  *store = NULL;
  int rc = aqs_cli_fail(cmd, "no remote configured: set [remote] url in %s",
                        ws->config_path ? ws->config_path : ".aqstore");
  aqs_workspace_free(ws);
  return rc;
}

void aqs_cli_transfer_print(const char *verb, const char *ref, const aqs_digest *target,
                            const aqs_transfer_stats *st) {
  char hex[AQS_DIGEST_SHORT_LEN + 1], size[32];
  printf("%s %s -> sha256:%s: %" PRIu64 " object(s) %s (%s), %" PRIu64 " action record(s)\n", verb, ref,
         aqs_digest_short(target, hex), st->objects_moved, strcmp(verb, "pushed") == 0 ? "sent" : "fetched",
         aqs_cli_bytes(size, sizeof size, st->bytes_moved), st->actions_moved);
}

json_t *aqs_cli_transfer_json(const char *ref, const aqs_digest *target, const aqs_transfer_stats *st) {
  char text[AQS_DIGEST_STR_SIZE];
  return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "ref", ref, "target", aqs_digest_str(target, text),
                   "objects_reached", (json_int_t)st->objects, "objects_moved", (json_int_t)st->objects_moved,
                   "bytes_moved", (json_int_t)st->bytes_moved, "actions", (json_int_t)st->actions_moved);
}

json_t *aqs_cli_transfer_summary(aqs_store *store, json_t *refs) {
  aqs_remote *r = aqs_store_remote(store);
  aqs_remote_stats rs;
  aqs_remote_get_stats(r, &rs);
  return json_pack("{s:s, s:o, s:I, s:I, s:I, s:I}", "remote", aqs_remote_url(r), "refs", refs, "requests",
                   (json_int_t)rs.requests, "retries", (json_int_t)rs.retries, "bytes_down",
                   (json_int_t)rs.bytes_down, "bytes_up", (json_int_t)rs.bytes_up);
}
