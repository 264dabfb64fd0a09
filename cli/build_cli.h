/* cli/build_cli.h: what `aqs build`, `aqs plan` and `aqs demo` share: the options that locate the
 * model and data (with workspace defaults), recipe loading, and printing build reports. */
#ifndef AQS_CLI_BUILD_CLI_H
#define AQS_CLI_BUILD_CLI_H

#include <jansson.h>

#include "common/workspace.h"
#include "engine/stages/build.h"

typedef struct aqs_build_cli {
  const char *model_dir, *captions, *images, *images_root, *backend, *out_dir, *recipes_dir;
  int json, no_checkout, quiet, allow_outside_root;
  char **names;     /* recipe names (argv) */
  int n_names;
} aqs_build_cli;

/* Option table shared by build and plan (long options only). Returns 0, or the usage exit
 * status after printing the error. */
int aqs_build_cli_parse(const char *cmd, int argc, char **argv, aqs_build_cli *out);

/* Fills opts from the parsed options and workspace defaults; loads every recipe into *recipes
 * (malloc'd). Returns 0 or AQS_EXIT_FAIL after printing the error. */
int aqs_build_cli_prepare(const char *cmd, const aqs_build_cli *cli, const aqs_workspace *ws, aqs_store *store,
                          aqs_build_opts *opts, aqs_recipe **recipes);

/* Prints reports as text (plan = 1: HIT/MISS with reasons) or returns them as JSON. */
void aqs_build_cli_print(const aqs_build_report *reports, size_t n, int plan, double seconds);
json_t *aqs_build_cli_json(const aqs_build_report *reports, size_t n, int plan);

/* Link mode parser shared with checkout: 0 or -1. */
int aqs_cli_parse_link_mode(const char *s, aqs_link_mode *out);

#endif
