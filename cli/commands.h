/* cli/commands.h: one extern per subcommand (defined in cli/cmd_<name>.c); cli/main.c lists them
 * in its commands[] table. Add one line here and one in that table per new subcommand. */
#ifndef AQS_CLI_COMMANDS_H
#define AQS_CLI_COMMANDS_H

#include "cli/cli.h"

extern const aqs_cmd aqs_cmd_demo;
extern const aqs_cmd aqs_cmd_build;
extern const aqs_cmd aqs_cmd_plan;
extern const aqs_cmd aqs_cmd_show;
extern const aqs_cmd aqs_cmd_ls;
extern const aqs_cmd aqs_cmd_checkout;
extern const aqs_cmd aqs_cmd_init;
extern const aqs_cmd aqs_cmd_put;
extern const aqs_cmd aqs_cmd_cat;
extern const aqs_cmd aqs_cmd_stats;
extern const aqs_cmd aqs_cmd_gc;
extern const aqs_cmd aqs_cmd_verify;
extern const aqs_cmd aqs_cmd_refs;
extern const aqs_cmd aqs_cmd_tokenize;
extern const aqs_cmd aqs_cmd_calibrate;
extern const aqs_cmd aqs_cmd_sensitivity;
extern const aqs_cmd aqs_cmd_synth_model;
extern const aqs_cmd aqs_cmd_calib;
extern const aqs_cmd aqs_cmd_preprocess_image;
extern const aqs_cmd aqs_cmd_export;
extern const aqs_cmd aqs_cmd_diff;
extern const aqs_cmd aqs_cmd_eval;
extern const aqs_cmd aqs_cmd_push;
extern const aqs_cmd aqs_cmd_pull;
extern const aqs_cmd aqs_cmd_report;

#endif
