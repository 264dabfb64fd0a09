/* cli/cli_tiers.h: attaching the workspace's shared tiers ([secondary] stores, [remote]) to an open
 * store, with the CLI's warnings. aqs_cli_open_store calls it for every command; push and pull
 * call it to require a remote. */
#ifndef AQS_CLI_TIERS_H
#define AQS_CLI_TIERS_H

#include "common/workspace.h"
#include "store/store.h"

/* Attaches ws's secondaries (a missing or unusable one is a warning "aqs <cmd>: warning:
 * secondary store <path> ...; going on without it") and remote (token from the variable named by
 * token_env; an unset variable is a warning, the token is never printed). probe = 1: tiers are
 * looked at, never copied from (aqs plan). Returns 0, or prints an error and returns
 * AQS_EXIT_FAIL (a bad remote url; out of memory). */
int aqs_cli_attach_tiers(const char *cmd, const aqs_workspace *ws, aqs_store *store, int probe);

#endif
