/* cli/main.c: the aqs entry point: global options, then dispatch to one subcommand file.
 * `aqs` alone and `aqs --help` list the commands grouped as git does: porcelain (the daily
 * commands) first, then plumbing (the building blocks scripts use). */
#include "cli/cli.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/suggest.h"
#include "common/version.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

aqs_cli_globals aqs_cli;

/* Subcommands, in the order `aqs --help` lists them within their group. */
static const aqs_cmd *const commands[] = {
  &aqs_cmd_demo,
  &aqs_cmd_build,
  &aqs_cmd_plan,
  &aqs_cmd_show,
  &aqs_cmd_ls,
  &aqs_cmd_checkout,
  &aqs_cmd_init,
  &aqs_cmd_put,
  &aqs_cmd_cat,
  &aqs_cmd_stats,
  &aqs_cmd_gc,
  &aqs_cmd_verify,
  &aqs_cmd_refs,
  &aqs_cmd_tokenize,
  &aqs_cmd_calibrate,
  &aqs_cmd_sensitivity,
  &aqs_cmd_synth_model,
  &aqs_cmd_calib,
  &aqs_cmd_preprocess_image,
  &aqs_cmd_export,
  &aqs_cmd_diff,
  &aqs_cmd_eval,
  &aqs_cmd_push,
  &aqs_cmd_pull,
  &aqs_cmd_report,
  NULL
};

int aqs_cli_fail(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "aqs %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return AQS_EXIT_FAIL;
}

/* The porcelain commands, in the order a session uses them; every other command is plumbing.
 * Names without a command in this build are skipped. */
static const char *const porcelain[] = {"init", "build", "plan", "ls",   "show", "diff",   "checkout",
                                        "eval", "report", "push", "pull", "gc",   "verify", "demo"};
#define N_PORCELAIN (sizeof porcelain / sizeof porcelain[0])

static const aqs_cmd *find_command(const char *name) {
  for (size_t c = 0; commands[c]; c++)
    if (strcmp(commands[c]->name, name) == 0) return commands[c];
  return NULL;
}

static int is_porcelain(const char *name) {
  for (size_t p = 0; p < N_PORCELAIN; p++)
    if (strcmp(porcelain[p], name) == 0) return 1;
  return 0;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: aqs [--store DIR] <command> [options]\n"
          "       aqs --version | --help | help <command>\n"
          "\n"
          "global options:\n"
          "  --store DIR   use the store at DIR (overrides $AQS_STORE and .aqstore)\n"
          "\n"
          "porcelain (a quantization session):\n");
  for (size_t p = 0; p < N_PORCELAIN; p++) {
    const aqs_cmd *cmd = find_command(porcelain[p]);
    if (cmd) fprintf(out, "  %-16s %s\n", cmd->name, cmd->summary);
  }
  fprintf(out, "\nplumbing (the store and single stages, for scripts):\n");
  for (size_t i = 0; commands[i]; i++)
    if (!is_porcelain(commands[i]->name)) fprintf(out, "  %-16s %s\n", commands[i]->name, commands[i]->summary);
  fprintf(out, "\n`aqs <command> --help` describes one command; docs/cli.md says where each is documented.\n");
}

/* "aqs: unknown command 'bulid'; did you mean 'build'? (see aqs --help)" */
static int unknown_command(const char *name) {
  const char *names[64];
  size_t n = 0;
  for (size_t c = 0; commands[c] && n < 64; c++) names[n++] = commands[c]->name;
  const char *near = aqs_suggest(name, names, n);
  if (near) fprintf(stderr, "aqs: unknown command '%s'; did you mean '%s'? (see aqs --help)\n", name, near);
  else fprintf(stderr, "aqs: unknown command '%s' (see aqs --help)\n", name);
  return AQS_EXIT_USAGE;
}

int main(int argc, char **argv) {
  aqs_cli.argv = argv;
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "--version") == 0) {
      printf("aqs %s\n", AQS_VERSION);
      return AQS_EXIT_OK;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return AQS_EXIT_OK;
    } else if (strcmp(argv[i], "--store") == 0) {
      if (i + 1 >= argc || !argv[i + 1][0]) {
        fprintf(stderr, "aqs: --store needs a directory\n");
        return AQS_EXIT_USAGE;
      }
      aqs_cli.store_override = argv[++i];
    } else if (strncmp(argv[i], "--store=", 8) == 0) {
      if (!argv[i][8]) {
        fprintf(stderr, "aqs: --store needs a directory\n");
        return AQS_EXIT_USAGE;
      }
      aqs_cli.store_override = argv[i] + 8;
    } else {
      fprintf(stderr, "aqs: unknown option '%s' (see aqs --help)\n", argv[i]);
      return AQS_EXIT_USAGE;
    }
  }
  if (i >= argc) { /* like git: the command list, and a usage exit status */
    usage(stdout);
    return AQS_EXIT_USAGE;
  }
  /* `aqs help CMD` is `aqs CMD --help`. */
  if (strcmp(argv[i], "help") == 0) {
    if (i + 1 >= argc) {
      usage(stdout);
      return AQS_EXIT_OK;
    }
    const aqs_cmd *cmd = find_command(argv[i + 1]);
    if (!cmd) return unknown_command(argv[i + 1]);
    char *help_argv[] = {argv[i + 1], "--help", NULL};
    return cmd->run(2, help_argv);
  }
  const aqs_cmd *cmd = find_command(argv[i]);
  if (cmd) return cmd->run(argc - i, argv + i);
  return unknown_command(argv[i]);
}
