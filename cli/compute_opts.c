/* cli/compute_opts.c: option parsing shared by `aqs calibrate` and `aqs sensitivity`. */
#include <getopt.h>
#include <stdint.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/compute_opts.h"

int aqs_compute_parse_opts(const char *cmd, int argc, char **argv, compute_opts *o,
                           int want_amax) {
  static const struct option longopts[] = {
    {"model", required_argument, 0, 'm'},     {"tokens", required_argument, 0, 't'},
    {"out", required_argument, 0, 'o'},       {"backend", required_argument, 0, 'b'},
    {"precision", required_argument, 0, 'p'}, {"batch-seqs", required_argument, 0, 's'},
    {"max-seq-len", required_argument, 0, 'l'}, {"json", no_argument, 0, 'j'},
    {"amax", required_argument, 0, 'a'},      {"method", required_argument, 0, 'M'},
    {0, 0, 0, 0}};
  memset(o, 0, sizeof *o);
  o->backend = "cpu";
  o->precision = "f32";
  o->method = "gradient";
  o->batch_seqs = 8;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    uint64_t v;
    switch (c) {
    case 'm': o->model = optarg; break;
    case 't':
      if (o->ntokens == 64) return aqs_cli_usage_error(cmd, "too many --tokens files (max 64)");
      o->tokens[o->ntokens++] = optarg;
      break;
    case 'o': o->out = optarg; break;
    case 'b': o->backend = optarg; break;
    case 'p': o->precision = optarg; break;
    case 'a': o->amax = optarg; break;
    case 'M': o->method = optarg; break;
    case 'j': o->json = 1; break;
    case 's':
    case 'l':
      if (aqs_cli_parse_u64(optarg, &v) != 0 || v > 1u << 30 || (c == 's' && v == 0))
        return aqs_cli_usage_error(cmd, "bad value '%s' for --%s", optarg,
                                   c == 's' ? "batch-seqs" : "max-seq-len");
      if (c == 's') o->batch_seqs = (int)v;
      else o->max_seq_len = (int)v;
      break;
    default:
      return aqs_cli_bad_option(cmd, longopts, argv);
    }
  }
  if (optind < argc) return aqs_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
  if (!o->model) return aqs_cli_usage_error(cmd, "--model is required");
  if (!o->ntokens) return aqs_cli_usage_error(cmd, "--tokens is required");
  if (!o->out) return aqs_cli_usage_error(cmd, "--out is required");
  if (want_amax && !o->amax) return aqs_cli_usage_error(cmd, "--amax is required");
  return -1;
}

