/* cli/eval_cli.h: option handling and table printing shared by `aqs eval` and `aqs report`
 * (defined in cli/cmd_eval.c). */
#ifndef AQS_CLI_EVAL_CLI_H
#define AQS_CLI_EVAL_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "common/workspace.h"
#include "engine/stages/eval_stage.h"
#include "store/store.h"

typedef struct aqs_eval_cli {
  const char *model_dir, *calib_captions, *captions, *backend, *precision, *recipes_dir;
  const char *images, *images_root;
  int allow_outside_root;
  int64_t samples;
  int json, quiet;
  int allow_out;          /* set by the caller (report): --out DIR is accepted */
  const char *out_dir;
  char **names;
  int n_names;
} aqs_eval_cli;

/* Parses the options above (cmd names the command in usage errors); names are the operands.
 * Returns 0, or AQS_EXIT_USAGE after printing the problem. */
int aqs_eval_cli_parse(const char *cmd, int argc, char **argv, aqs_eval_cli *out);
/* Eval options from the parsed command line and the workspace defaults. */
void aqs_eval_cli_opts(const aqs_eval_cli *cli, const aqs_workspace *ws, aqs_store *store, aqs_eval_opts *o);
/* The quality table (one line per row, then the eval set and the BF16 reference). */
void aqs_eval_print_table(FILE *f, const aqs_eval_row *rows, size_t n);

#endif
