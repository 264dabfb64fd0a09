/* cli/cmd_export.c: `aqs export`: plumbing over engine/export: writes a ModelOpt FP8 checkpoint
 * from a source checkpoint, an amax table and a plan (no store involved; `aqs build` is the
 * cached porcelain over the same library). */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "engine/export/export.h"
#include "engine/export/plan.h"
#include "engine/model/amax.h"

static const char export_usage[] =
    "usage: aqs export --model DIR --amax AMAX.json --plan PLAN.json --out DIR [options]\n"
    "\n"
    "Writes a ModelOpt-format Hugging Face FP8 checkpoint (vLLM: quantization=\"modelopt\") into\n"
    "the new or empty directory DIR: groups the plan makes \"fp8\" get E4M3 weights with per-tensor\n"
    "weight_scale and a group-shared input_scale (max input amax / 448); everything else is copied\n"
    "bit for bit. One shard per transformer block, config.json with quantization_config,\n"
    "hf_quant_config.json, tokenizer files, and aqs-manifest.json (plan, decisions, effective\n"
    "bits, per-tensor SHA-256, input digests). See docs/checkpoint-format.md.\n"
    "\n"
    "options:\n"
    "  --model DIR        source Qwen2.5-VL checkpoint directory\n"
    "  --amax FILE        amax table JSON (aqs calibrate output)\n"
    "  --plan FILE        plan JSON: {\"scope\":..,\"groups\":{\"lm.0.qkv\":\"fp8\",..}}\n"
    "  --out DIR          output directory (created; must be empty if it exists)\n"
    "  --fp8-ref REF      cuda (default: torch on a GPU, as ModelOpt) or cpu rounding reference\n"
    "  --source-digest D  record D as the source digest instead of hashing the source files\n"
    "  --json             print the result as JSON\n"
    "  --quiet            no progress on stderr\n";

static json_t *result_json(const aqs_export_result *r, const char *out_dir) {
  json_t *files = json_array();
  char hex[AQS_DIGEST_STR_SIZE];
  for (size_t i = 0; i < r->nfiles; i++)
    json_array_append_new(files, json_pack("{s:s, s:s, s:I}", "name", r->files[i].name, "sha256",
                                           aqs_digest_str(&r->files[i].digest, hex), "bytes",
                                           (json_int_t)r->files[i].bytes));
  return json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:I, s:I, s:{s:f, s:f, s:f, s:f}, s:o}", "out",
                   out_dir, "scope", r->scope, "groups", (json_int_t)r->n_groups, "candidates",
                   (json_int_t)r->n_candidates, "fp8", (json_int_t)r->n_fp8, "effective_bits",
                   r->effective_bits, "tensor_bytes", (json_int_t)r->tensor_bytes,
                   "quantized_params", (json_int_t)r->quantized_params, "seconds", "quantize",
                   r->seconds_quantize, "hash", r->seconds_hash, "write", r->seconds_write,
                   "total", r->seconds_total, "files", files);
}

static int run_export(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(export_usage, stdout);
    return AQS_EXIT_OK;
  }
  const char *model = NULL, *amax_path = NULL, *plan_path = NULL, *out = NULL, *ref = "cuda",
             *source_digest = NULL;
  int as_json = 0, quiet = 0;
  static const struct option longopts[] = {
      {"model", required_argument, NULL, 'm'}, {"amax", required_argument, NULL, 'a'},
      {"plan", required_argument, NULL, 'p'},  {"out", required_argument, NULL, 'o'},
      {"fp8-ref", required_argument, NULL, 'r'}, {"source-digest", required_argument, NULL, 's'},
      {"json", no_argument, NULL, 'j'},        {"quiet", no_argument, NULL, 'q'},
      {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (ch) {
    case 'm': model = optarg; break;
    case 'a': amax_path = optarg; break;
    case 'p': plan_path = optarg; break;
    case 'o': out = optarg; break;
    case 'r': ref = optarg; break;
    case 's': source_digest = optarg; break;
    case 'j': as_json = 1; break;
    case 'q': quiet = 1; break;
    default: return aqs_cli_bad_option("export", longopts, argv);
    }
  }
  if (optind < argc) return aqs_cli_usage_error("export", "unexpected argument '%s'", argv[optind]);
  if (!model || !amax_path || !plan_path || !out)
    return aqs_cli_usage_error("export", "--model, --amax, --plan and --out are required");
  if (strcmp(ref, "cuda") && strcmp(ref, "cpu"))
    return aqs_cli_usage_error("export", "--fp8-ref must be cuda or cpu, not '%s'", ref);
  aqs_err e = {0};
  aqs_plan *plan = NULL;
  aqs_amax_table amax = {0};
  if (aqs_plan_load(plan_path, &plan, &e)) return aqs_cli_fail_err("export", &e);
  if (aqs_amax_load(amax_path, &amax, &e)) {
    aqs_plan_free(plan);
    return aqs_cli_fail_err("export", &e);
  }
  aqs_export_opts o = {.model_dir = model, .amax = &amax, .plan = plan, .out_dir = out,
                       .fp8_ref = strcmp(ref, "cpu") == 0 ? AQS_FP8_REF_TORCH_CPU : AQS_FP8_REF_TORCH_CUDA,
                       .source_digest = source_digest, .progress = !quiet};
  aqs_export_result r;
  int rc = AQS_EXIT_OK;
  if (aqs_export_run(&o, &r, &e)) {
    rc = aqs_cli_fail_err("export", &e);
  } else if (as_json) {
    rc = aqs_cli_print_json("export", result_json(&r, out));
    aqs_export_result_free(&r);
  } else {
    char size[32];
    printf("exported %s: %zu/%zu %s groups FP8, %.4f effective bits, %zu files, %s of tensors "
           "(%.2fs: quantize %.2fs, hash %.2fs, write %.2fs)\n",
           out, r.n_fp8, r.n_candidates, r.scope, r.effective_bits, r.nfiles,
           aqs_cli_bytes(size, sizeof size, r.tensor_bytes), r.seconds_total, r.seconds_quantize,
           r.seconds_hash, r.seconds_write);
    aqs_export_result_free(&r);
  }
  aqs_plan_free(plan);
  aqs_amax_free(&amax);
  return rc;
}

const aqs_cmd aqs_cmd_export = {"export", "write a ModelOpt FP8 checkpoint from model + amax + plan",
                                run_export};
