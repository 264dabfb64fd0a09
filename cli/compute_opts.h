/* cli/compute_opts.h: option parsing shared by `aqs calibrate` and `aqs sensitivity`
 * (model, token files, backend, precision, batch size, amax table, method). */
#ifndef AQS_CLI_COMPUTE_OPTS_H
#define AQS_CLI_COMPUTE_OPTS_H

typedef struct compute_opts {
  const char *model, *out, *backend, *precision, *amax, *method;
  const char *tokens[64];
  int ntokens, batch_seqs, max_seq_len, json;
} compute_opts;

/* Parses long options of calibrate/sensitivity into *o (defaults: cpu, f32, gradient, 8 seqs).
 * want_amax: --amax is required. Returns -1 on success, else the exit status to return
 * (usage error printed). */
int aqs_compute_parse_opts(const char *cmd, int argc, char **argv, compute_opts *o,
                           int want_amax);

#endif
