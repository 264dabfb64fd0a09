/* cli/build_cli.h: what `aqs build`, `aqs plan` and `aqs demo` share: the options that locate the
 * model and data (with workspace defaults), recipe loading, the porcelain around a build (where
 * each checkpoint goes, its checkout and the reports beside it, the AQS_TEST_BREAK_EXPORT and
 * AQS_TEST_FAIL_EXPORT test hooks) and printing build reports. */
#ifndef AQS_CLI_BUILD_CLI_H
#define AQS_CLI_BUILD_CLI_H

#include <jansson.h>

#include "common/path.h"
#include "common/workspace.h"
#include "engine/stages/build.h"
#include "engine/stages/chunk_workers.h"

typedef struct aqs_build_cli {
  const char *model_dir, *captions, *images, *images_root, *backend, *out_dir, *recipes_dir;
  int json, no_checkout, quiet, allow_outside_root, skip_bad, eval;
  int64_t samples;         /* --samples N (0: each recipe's calib samples) */
  const char *rebuild[16]; /* --rebuild STAGE|all (repeatable, or comma-separated) */
  int n_rebuild;
  char rebuild_buf[512];
  char **names;     /* recipe names (argv) */
  int n_names;
  const char *devices;     /* --devices LIST (chunk_workers.h) */
  aqs_devices devices_parsed;
  aqs_chunk_worker worker; /* this process is a chunk worker (AQS_CHUNK_WORKER; build only) */
  int is_worker;
} aqs_build_cli;

/* Option table shared by build and plan (long options only). Returns 0, or the usage exit
 * status after printing the error. */
int aqs_build_cli_parse(const char *cmd, int argc, char **argv, aqs_build_cli *out);

/* Fills opts from the parsed options and workspace defaults; loads every recipe into *recipes
 * (malloc'd). Returns 0 or AQS_EXIT_FAIL after printing the error. */
int aqs_build_cli_prepare(const char *cmd, aqs_build_cli *cli, const aqs_workspace *ws, aqs_store *store,
                          aqs_build_opts *opts, aqs_recipe **recipes);
/* Frees what parse and prepare kept in cli. */
void aqs_build_cli_free(aqs_build_cli *cli);

/* Where checkpoints go: --out (one recipe), else <out_root>/<model>-<model digest 8 hex>/<recipe>_<data>. */
typedef struct aqs_build_checkout {
  const char *out_dir;
  const char *out_root;
  aqs_link_mode link_mode;
} aqs_build_checkout;

/* Materializes each built recipe's checkpoint and writes its per-layer sensitivity report beside
 * it (<dir>.per-layer-sensitivity.md, <dir>.sensitivity.json); out_dirs[i] gets the directory.
 * Returns 0 or AQS_EXIT_FAIL after printing the error. */
int aqs_build_cli_checkout(const char *cmd, aqs_store *store, const aqs_build_opts *opts,
                           const aqs_build_checkout *co, const aqs_recipe *recipes,
                           const aqs_build_report *reports, size_t n, char (*out_dirs)[AQS_PATH_MAX]);

/* Prints reports as text (plan = 1: HIT/MISS with reasons) or returns them as JSON; out_dirs
 * (may be NULL) are the checkouts. */
void aqs_build_cli_print(const aqs_build_report *reports, size_t n, int plan, double seconds,
                         char (*out_dirs)[AQS_PATH_MAX]);
json_t *aqs_build_cli_json(const aqs_build_report *reports, size_t n, int plan, char (*out_dirs)[AQS_PATH_MAX]);

/* Link mode parser shared with checkout: 0 or -1. */
int aqs_cli_parse_link_mode(const char *s, aqs_link_mode *out);

#endif
