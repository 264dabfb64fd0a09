/* cli/cli_transfer.h: what aqs push and aqs pull share: opening the store with its remote required,
 * and the summary lines / JSON they print. */
#ifndef AQS_CLI_TRANSFER_H
#define AQS_CLI_TRANSFER_H

#include <jansson.h>

#include "common/workspace.h"
#include "store/tiers.h"

/* Parses `aqs push|pull [--json] NAME...` (usage printed for --help): returns -1 to go on with
 * *json set and *first_name = optind, else the exit status to return. */
int aqs_cli_transfer_args(const char *cmd, const char *usage, int argc, char **argv, int *json, int *first_name);

/* A byte progress line on stderr ("push ... MiB"), fed by stats->on_object; NULL when json
 * (scripts read stdout only, and the line would be noise). Finish with aqs_progress_finish. */
struct aqs_progress *aqs_cli_transfer_progress(const char *label, int json, aqs_transfer_stats *stats);

/* Opens the workspace's store (flags as aqs_cli_open_store) and checks a remote is configured:
 * "aqs <cmd>: no remote configured: set [remote] url in .aqstore". Returns 0 or the exit status. */
int aqs_cli_open_with_remote(const char *cmd, unsigned flags, aqs_workspace *ws, aqs_store **store);


/* One transferred ref: a text line ("<verb> <ref> -> sha256:<12>: ...") or a JSON object. */
void aqs_cli_transfer_print(const char *verb, const char *ref, const aqs_digest *target,
                            const aqs_transfer_stats *st);
json_t *aqs_cli_transfer_json(const char *ref, const aqs_digest *target, const aqs_transfer_stats *st);

/* The closing JSON document: {"remote", "refs": [...], "requests", "retries", "bytes_down", "bytes_up"}. */
json_t *aqs_cli_transfer_summary(aqs_store *store, json_t *refs);

#endif
