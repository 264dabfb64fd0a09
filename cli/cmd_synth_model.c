/* cli/cmd_synth_model.c: `aqs synth-model`: writes a deterministic synthetic Qwen2.5-VL
 * checkpoint (tiny / small / 3b shapes) with optional planted outlier groups; porcelain over
 * engine/model/synth.h. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <dirent.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/model/qwen_config.h"
#include "engine/model/synth.h"

static const char synth_usage[] =
    "usage: aqs synth-model --preset tiny|small|3b --out DIR [--seed N]\n"
    "                       [--outliers GROUP:FACTOR,...] [--naming hf5|hf4] [--threads N]\n"
    "                       [--shard-size BYTES] [--json]\n"
    "\n"
    "Writes a Qwen2.5-VL-shaped checkpoint with deterministic BF16 weights into DIR:\n"
    "config.json (transformers 5.x layout), generation_config.json, preprocessor_config.json,\n"
    "tokenizer.json + tokenizer_config.json (byte-level BPE with Qwen's special tokens) and\n"
    "model.safetensors (or model-XXXXX-of-YYYYY.safetensors + model.safetensors.index.json).\n"
    "The same preset, seed, outliers and naming always give the same bytes.\n"
    "\n"
    "presets:\n"
    "  tiny    hidden 64, 4 layers, 4/2 heads, vocab 640, vision depth 2 hidden 32 (CI)\n"
    "  small   hidden 256, 8 layers, vocab 2048, vision depth 4 hidden 64, untied lm_head\n"
    "  3b      the Qwen2.5-VL-3B shapes (hidden 2048, 36 layers, vocab 151936, vision depth\n"
    "          32 hidden 1280); about 7.5 GB, written by all cores\n"
    "\n"
    "options:\n"
    "  --seed N          PRNG seed (default 0)\n"
    "  --outliers LIST   plant large input channels in these groups, e.g. lm.1.down:1e5,vis.0.qkv:1e5;\n"
    "                    the producer of those channels is divided by FACTOR so the BF16 model is\n"
    "                    nearly unchanged while per-tensor FP8 of the group becomes coarse (E4M3\n"
    "                    only degrades for FACTOR >= ~3e4; 1e5 makes the group clearly the most\n"
    "                    sensitive)\n"
    "  --naming S        tensor names: hf5 = model.language_model.* / model.visual.* (default),\n"
    "                    hf4 = model.layers.* / visual.* (the hub checkpoints)\n"
    "  --threads N       worker threads (default: all online CPUs; output does not depend on it)\n"
    "  --shard-size B    start a new shard past B bytes (default 4 GiB)\n"
    "  --json            print a summary (files, sizes, groups, parameters) as JSON\n";

static int is_output_file(const char *name) {
  static const char *const fixed[] = {"config.json", "generation_config.json",
                                      "preprocessor_config.json", "tokenizer.json",
                                      "tokenizer_config.json", "model.safetensors.index.json", NULL};
  for (int i = 0; fixed[i]; i++)
    if (strcmp(name, fixed[i]) == 0) return 1;
  size_t n = strlen(name);
  return strncmp(name, "model", 5) == 0 && n > 12 && strcmp(name + n - 12, ".safetensors") == 0;
}

static int cmp_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

static json_t *summary_json(const aqs_synth_opts *o, const aqs_qwen_model *m) {
  json_t *files = json_array();
  struct dirent **entries = NULL;
  int n = scandir(o->out_dir, &entries, NULL, cmp_name);
  for (int i = 0; i < n; i++) {
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", o->out_dir, entries[i]->d_name);
    if (is_output_file(entries[i]->d_name) && stat(path, &sb) == 0)
      json_array_append_new(files, json_pack("{s:s, s:I}", "name", entries[i]->d_name, "bytes",
                                             (json_int_t)sb.st_size));
    free(entries[i]);
  }
  free(entries);
  uint64_t params = 0;
  for (size_t i = 0; i < m->ntensors; i++) {
    if (m->tensors[i].optional) continue;
    uint64_t n = 1;
    for (int d = 0; d < m->tensors[i].ndim; d++) n *= (uint64_t)m->tensors[i].shape[d];
    params += n;
  }
  json_t *outliers = json_array();
  for (int k = 0; k < o->noutliers; k++)
    json_array_append_new(outliers, json_pack("{s:s, s:f}", "group", o->outliers[k].group_id,
                                              "factor", o->outliers[k].factor));
  return json_pack("{s:s, s:I, s:s, s:s, s:o, s:I, s:I, s:I, s:I, s:o}", "preset", o->preset,
                   "seed", (json_int_t)o->seed, "out", o->out_dir, "naming",
                   o->naming == AQS_NAMING_HF4 ? "hf4" : "hf5", "files", files, "tensors",
                   (json_int_t)m->ntensors, "parameters", (json_int_t)params, "groups",
                   (json_int_t)m->ngroups, "lm_groups", (json_int_t)m->n_lm_groups, "outliers",
                   outliers);
}

static int synth_model_run(int argc, char **argv) {
  const char *cmd = "synth-model";
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(synth_usage, stdout);
    return AQS_EXIT_OK;
  }
  aqs_synth_opts opts = {.naming = AQS_NAMING_HF5, .progress = 1};
  int as_json = 0;
  aqs_err err = {0};
  static const struct option longopts[] = {
    {"preset", required_argument, NULL, 'p'},   {"seed", required_argument, NULL, 's'},
    {"out", required_argument, NULL, 'o'},      {"outliers", required_argument, NULL, 'x'},
    {"naming", required_argument, NULL, 'n'},   {"threads", required_argument, NULL, 't'},
    {"shard-size", required_argument, NULL, 'z'}, {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int c;
  uint64_t v;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'p': opts.preset = optarg; break;
    case 'o': opts.out_dir = optarg; break;
    case 'j': as_json = 1; break;
    case 's':
      if (aqs_cli_parse_u64(optarg, &v)) return aqs_cli_usage_error(cmd, "bad --seed '%s'", optarg);
      opts.seed = v;
      break;
    case 't':
      if (aqs_cli_parse_u64(optarg, &v) || v == 0 || v > 1024)
        return aqs_cli_usage_error(cmd, "bad --threads '%s'", optarg);
      opts.threads = (int)v;
      break;
    case 'z':
      if (aqs_cli_parse_u64(optarg, &v) || v == 0)
        return aqs_cli_usage_error(cmd, "bad --shard-size '%s'", optarg);
      opts.shard_max_bytes = v;
      break;
    case 'n':
      if (strcmp(optarg, "hf5") == 0) opts.naming = AQS_NAMING_HF5;
      else if (strcmp(optarg, "hf4") == 0) opts.naming = AQS_NAMING_HF4;
      else return aqs_cli_usage_error(cmd, "bad --naming '%s' (hf5 or hf4)", optarg);
      break;
    case 'x':
      if (aqs_synth_parse_outliers(optarg, &opts, &err)) return aqs_cli_usage_error(cmd, "%s", err.msg);
      break;
    default:
      return aqs_cli_bad_option(cmd, longopts, argv);
    }
  }
  if (optind < argc) return aqs_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
  if (!opts.preset) return aqs_cli_usage_error(cmd, "--preset is required");
  if (!opts.out_dir) return aqs_cli_usage_error(cmd, "--out is required");
  aqs_qwen_config cfg;
  if (aqs_synth_preset(opts.preset, &cfg, &err)) return aqs_cli_usage_error(cmd, "%s", err.msg);
  if (aqs_synth_write(&opts, &err)) return aqs_cli_fail_err(cmd, &err);
  if (!as_json) return AQS_EXIT_OK;
  aqs_qwen_model *m = NULL;
  if (aqs_qwen_model_from_config(&cfg, opts.naming, &m, &err)) return aqs_cli_fail_err(cmd, &err);
  int rc = aqs_cli_print_json(cmd, summary_json(&opts, m));
  aqs_qwen_model_free(m);
  return rc;
}

const aqs_cmd aqs_cmd_synth_model = {"synth-model", "write a deterministic synthetic Qwen2.5-VL checkpoint",
                                     synth_model_run};
