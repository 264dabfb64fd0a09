/* cli/cli_tiers.c: implementation of cli_tiers.h: the workspace's secondaries and remote become
 * tiers of the open store (store/tiers.h), and tier warnings are printed under the command name. */
#include "cli/cli_tiers.h"

#include <stdio.h>
#include <stdlib.h>

#include "cli/cli_util.h"
#include "store/tiers.h"

static void print_warning(const char *msg, void *user) {
  fprintf(stderr, "aqs %s: warning: %s\n", (const char *)user, msg);
}

int aqs_cli_attach_tiers(const char *cmd, const aqs_workspace *ws, aqs_store *store, int probe) {
  if (ws->n_secondary_stores == 0 && !ws->remote_url) return AQS_EXIT_OK;
  aqs_store_set_tier_warn(store, print_warning, (void *)cmd);
  aqs_store_set_tier_probe(store, probe);
  for (size_t i = 0; i < ws->n_secondary_stores; i++) {
    aqs_err err = {0};
    if (aqs_store_add_secondary(store, ws->secondary_stores[i], &err) != AQS_OK)
      fprintf(stderr, "aqs %s: warning: %s; going on without it\n", cmd, err.msg);
  }
  if (!ws->remote_url) return AQS_EXIT_OK;
  const char *token = NULL;
  if (ws->remote_token_env) {
    token = getenv(ws->remote_token_env);
    if (!token || !token[0])
      fprintf(stderr, "aqs %s: warning: [remote] token_env names $%s, which is not set; sending no token\n",
              cmd, ws->remote_token_env);
  }
  aqs_remote_opts opts = {.url = ws->remote_url,
                          .token = token,
                          .token_env = ws->remote_token_env,
                          .attempts = ws->remote_retries + 1,
                          .timeout_s = ws->remote_timeout_s};
  aqs_remote *remote = NULL;
  aqs_err err = {0};
  if (aqs_remote_open(&opts, &remote, &err) != AQS_OK ||
      aqs_store_set_remote(store, remote, ws->remote_upload, &err) != AQS_OK)
    return aqs_cli_fail_err(cmd, &err);
  return AQS_EXIT_OK;
}
