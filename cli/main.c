/* cli/main.c: the aqs entry point: global options, then dispatch to one subcommand file. */
#include "cli/cli.h"
#include "cli/commands.h"
#include "common/version.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

aqs_cli_globals aqs_cli;

/* Subcommands, in the order `aqs --help` lists them. */
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
  &aqs_cmd_push,
  &aqs_cmd_pull,
  NULL
};

int aqs_cli_fail(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "aqs %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 1;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: aqs [--store DIR] <command> [options]\n"
          "       aqs --version | --help | help <command>\n"
          "\n"
          "global options:\n"
          "  --store DIR   use the store at DIR (overrides $AQS_STORE and .aqstore)\n"
          "\n"
          "commands:\n");
  for (size_t i = 0; commands[i]; i++)
    fprintf(out, "  %-16s %s\n", commands[i]->name, commands[i]->summary);
  fprintf(out, "\n`aqs <command> --help` describes one command; docs/cli.md has them all.\n");
}

static const aqs_cmd *find_command(const char *name) {
  for (size_t c = 0; commands[c]; c++)
    if (strcmp(commands[c]->name, name) == 0) return commands[c];
  return NULL;
}

int main(int argc, char **argv) {
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "--version") == 0) {
      printf("aqs %s\n", AQS_VERSION);
      return 0;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--store") == 0) {
      if (i + 1 >= argc || !argv[i + 1][0]) {
        fprintf(stderr, "aqs: --store needs a directory\n");
        return 2;
      }
      aqs_cli.store_override = argv[++i];
    } else if (strncmp(argv[i], "--store=", 8) == 0) {
      if (!argv[i][8]) {
        fprintf(stderr, "aqs: --store needs a directory\n");
        return 2;
      }
      aqs_cli.store_override = argv[i] + 8;
    } else {
      fprintf(stderr, "aqs: unknown option '%s' (see aqs --help)\n", argv[i]);
      return 2;
    }
  }
  if (i >= argc) {
    usage(stderr);
    return 2;
  }
  /* `aqs help CMD` is `aqs CMD --help`. */
  if (strcmp(argv[i], "help") == 0) {
    if (i + 1 >= argc) {
      usage(stdout);
      return 0;
    }
    const aqs_cmd *cmd = find_command(argv[i + 1]);
    if (!cmd) {
      fprintf(stderr, "aqs: unknown command '%s' (see aqs --help)\n", argv[i + 1]);
      return 2;
    }
    char *help_argv[] = {argv[i + 1], "--help", NULL};
    return cmd->run(2, help_argv);
  }
  const aqs_cmd *cmd = find_command(argv[i]);
  if (cmd) return cmd->run(argc - i, argv + i);
  fprintf(stderr, "aqs: unknown command '%s' (see aqs --help)\n", argv[i]);
  return 2;
}
