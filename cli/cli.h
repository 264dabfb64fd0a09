/* cli/cli.h: the aqs command's subcommand table and the helpers every subcommand file shares.
 * One file per subcommand (cli/cmd_<name>.c) defines one aqs_cmd; cli/main.c lists them. */
#ifndef AQS_CLI_H
#define AQS_CLI_H

#include <stdio.h>

typedef struct aqs_cmd {
  const char *name;     /* "init", "put", ... */
  const char *summary;  /* one line for `aqs --help` */
  /* argv[0] is the subcommand name; global options (--store) are already removed.
   * Returns the process exit status. */
  int (*run)(int argc, char **argv);
} aqs_cmd;

/* Global options parsed by main before dispatch. */
typedef struct aqs_cli_globals {
  const char *store_override; /* --store DIR, else NULL */
  char **argv;                /* main's whole command line (chunk workers run it again) */
} aqs_cli_globals;

extern aqs_cli_globals aqs_cli;

/* Prints "aqs <cmd>: <msg>" to stderr and returns the exit status to use (1). */
int aqs_cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
