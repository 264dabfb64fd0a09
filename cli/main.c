/* cli/main.c: the aqs entry point: global options, then dispatch to one subcommand file. */
#include "cli/cli.h"
#include "common/version.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

aqs_cli_globals aqs_cli;

/* Subcommands, in the order `aqs --help` lists them. */
static const aqs_cmd *const commands[] = {
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
  fprintf(out, "usage: aqs [--store DIR] <command> [options]\n       aqs --version\n\ncommands:\n");
  for (size_t i = 0; commands[i]; i++)
    fprintf(out, "  %-16s %s\n", commands[i]->name, commands[i]->summary);
  fprintf(out, "\n`aqs <command> --help` describes one command.\n");
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
    } else if (strcmp(argv[i], "--store") == 0 && i + 1 < argc) {
      aqs_cli.store_override = argv[++i];
    } else if (strncmp(argv[i], "--store=", 8) == 0) {
      aqs_cli.store_override = argv[i] + 8;
    } else {
      fprintf(stderr, "aqs: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (i >= argc) {
    usage(stderr);
    return 2;
  }
  for (size_t c = 0; commands[c]; c++)
    if (strcmp(commands[c]->name, argv[i]) == 0) return commands[c]->run(argc - i, argv + i);
  fprintf(stderr, "aqs: unknown command '%s' (see aqs --help)\n", argv[i]);
  return 2;
}
