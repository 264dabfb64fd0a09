/* cli/build_cli.c: shared option handling and report printing of build, plan and demo. */
#include "cli/build_cli.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "common/path.h"
#include "engine/stages/ckpt_store.h"

int aqs_build_cli_parse(const char *cmd, int argc, char **argv, aqs_build_cli *out) {
  memset(out, 0, sizeof *out);
  static const struct option longopts[] = {
      {"model", required_argument, NULL, 'm'},   {"captions", required_argument, NULL, 'c'},
      {"images", required_argument, NULL, 'i'},  {"root", required_argument, NULL, 'r'},
      {"backend", required_argument, NULL, 'b'}, {"out", required_argument, NULL, 'o'},
      {"recipes-dir", required_argument, NULL, 'R'}, {"json", no_argument, NULL, 'j'},
      {"no-checkout", no_argument, NULL, 'n'},   {"quiet", no_argument, NULL, 'q'},
      {"allow-outside-root", no_argument, NULL, 'A'},
      {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (ch) {
    case 'm': out->model_dir = optarg; break;
    case 'c': out->captions = optarg; break;
    case 'i': out->images = optarg; break;
    case 'r': out->images_root = optarg; break;
    case 'b': out->backend = optarg; break;
    case 'o': out->out_dir = optarg; break;
    case 'R': out->recipes_dir = optarg; break;
    case 'j': out->json = 1; break;
    case 'n': out->no_checkout = 1; break;
    case 'q': out->quiet = 1; break;
    case 'A': out->allow_outside_root = 1; break;
    default: return aqs_cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  int i = optind;
  if (i < argc && strcmp(argv[i], "recipe") == 0) i++;
  if (i >= argc) return aqs_cli_usage_error(cmd, "name at least one recipe (aqs ls --recipes lists them)");
  out->names = argv + i;
  out->n_names = argc - i;
  if (out->backend && strcmp(out->backend, "cpu") != 0 && strcmp(out->backend, "cuda") != 0)
    return aqs_cli_usage_error(cmd, "bad --backend '%s' (cpu or cuda)", out->backend);
  if (out->out_dir && out->n_names > 1)
    return aqs_cli_usage_error(cmd, "--out needs exactly one recipe (several go to quantized/<recipe>_<data>)");
  return 0;
}

int aqs_build_cli_prepare(const char *cmd, const aqs_build_cli *cli, const aqs_workspace *ws, aqs_store *store,
                          aqs_build_opts *opts, aqs_recipe **recipes_out) {
  memset(opts, 0, sizeof *opts);
  opts->store = store;
  opts->ws = ws;
  opts->model_dir = cli->model_dir ? cli->model_dir : ws->model_path;
  opts->captions_path = cli->captions ? cli->captions : ws->data_captions;
  opts->images_path = cli->images ? cli->images : ws->data_images;
  opts->images_root = cli->images_root ? cli->images_root : ws->data_images_root;
  opts->allow_outside_root = cli->allow_outside_root;
  opts->backend = cli->backend ? cli->backend : "cpu";
  opts->out_dir = cli->out_dir;
  opts->no_materialize = cli->no_checkout;
  opts->progress = !cli->quiet;
  opts->test_break_recipe = getenv("AQS_TEST_BREAK_EXPORT");
  static char out_root[4200];
  snprintf(out_root, sizeof out_root, "%s/quantized", ws->root);
  opts->out_root = out_root;
  if (!opts->model_dir) {
    aqs_cli_fail(cmd, "no model: pass --model DIR or set [model] path in .aqstore");
    return AQS_EXIT_FAIL;
  }
  aqs_recipe_source src = {.workspace_dir = cli->recipes_dir ? cli->recipes_dir : ws->recipes_path};
  aqs_recipe *recipes = calloc((size_t)cli->n_names, sizeof *recipes);
  for (int i = 0; i < cli->n_names; i++) {
    aqs_err e = {0};
    if (aqs_recipe_load(&src, cli->names[i], &recipes[i], &e) != AQS_OK) {
      free(recipes);
      return aqs_cli_fail_err(cmd, &e);
    }
    const char *problem = NULL;
    for (int j = 0; j < i; j++)
      if (strcmp(recipes[j].name, recipes[i].name) == 0) problem = "is named twice";
    if (recipes[i].modality == AQS_MODALITY_CAPTIONS && !opts->captions_path)
      problem = "calibrates on captions: pass --captions FILE or set [data] captions in .aqstore";
    if (recipes[i].modality == AQS_MODALITY_IMAGES && !opts->images_path)
      problem = "calibrates on images: pass --images JSONL --root DIR or set [data] images in .aqstore";
    if (problem) {
      aqs_cli_fail(cmd, "recipe %s %s", recipes[i].name, problem);
      free(recipes);
      return AQS_EXIT_FAIL;
    }
  }
  *recipes_out = recipes;
  return 0;
}

static const char *stage_state(const aqs_build_report *r, int i, int plan) {
  if (!r->stage_done[i]) return plan ? "MISS" : "-";
  return r->stages[i].hit ? "HIT" : plan ? "MISS" : "RUN";
}

void aqs_build_cli_print(const aqs_build_report *reports, size_t n, int plan, double seconds) {
  int ran = 0, reused = 0;
  for (size_t k = 0; k < n; k++) {
    const aqs_build_report *r = &reports[k];
    printf("%s\n", r->recipe);
    const char *blocked = NULL;
    for (int i = 0; i < AQS_BUILD_STAGES; i++) {
      char hex[AQS_DIGEST_SHORT_LEN + 1] = "-";
      if (r->stage_done[i] && (r->stages[i].hit || !plan)) aqs_digest_short(&r->stages[i].result, hex);
      const char *state = stage_state(r, i, plan);
      if (r->stage_done[i]) {
        if (r->stages[i].hit) reused++;
        else ran++;
      }
      printf("  %-12s %-5s %-12s", aqs_build_stage_names[i], state, hex);
      if (plan && r->stage_done[i] && !r->stages[i].hit) {
        printf("  %s", r->stages[i].reason);
        if (!blocked) blocked = aqs_build_stage_names[i];
      } else if (plan && !r->stage_done[i]) {
        printf("  needs %s first", blocked ? blocked : "an earlier stage");
      } else if (!plan) {
        printf("  %.2fs", r->stages[i].seconds);
      }
      printf("\n");
    }
    if (!plan)
      printf("  %zu/%zu groups FP8, %.4f effective bits%s%s\n", r->n_fp8, r->n_candidates, r->effective_bits,
             r->out_dir[0] ? " -> " : "", r->out_dir);
  }
  if (!plan) printf("%d stage(s) run, %d reused, %.2fs\n", ran, reused, seconds);
}

json_t *aqs_build_cli_json(const aqs_build_report *reports, size_t n, int plan) {
  json_t *arr = json_array();
  for (size_t k = 0; k < n; k++) {
    const aqs_build_report *r = &reports[k];
    json_t *stages = json_array();
    for (int i = 0; i < AQS_BUILD_STAGES; i++) {
      char hex[AQS_DIGEST_STR_SIZE], key[AQS_DIGEST_STR_SIZE];
      json_t *st = json_pack("{s:s, s:s}", "stage", aqs_build_stage_names[i], "state", stage_state(r, i, plan));
      if (r->stage_done[i]) {
        json_object_set_new(st, "key", json_string(aqs_digest_str(&r->stages[i].key, key)));
        if (r->stages[i].hit || !plan)
          json_object_set_new(st, "result", json_string(aqs_digest_str(&r->stages[i].result, hex)));
        if (plan && !r->stages[i].hit) json_object_set_new(st, "reason", json_string(r->stages[i].reason));
        json_object_set_new(st, "seconds", json_real(r->stages[i].seconds));
      }
      json_array_append_new(stages, st);
    }
    json_t *doc = json_pack("{s:s, s:o}", "recipe", r->recipe, "stages", stages);
    if (!plan) {
      char rec[AQS_DIGEST_STR_SIZE];
      json_object_set_new(doc, "build_record", json_string(aqs_digest_str(&r->build_record, rec)));
      json_object_set_new(doc, "summary", json_pack("{s:I, s:I, s:I, s:f}", "groups", (json_int_t)r->n_groups,
                                                    "candidates", (json_int_t)r->n_candidates, "fp8",
                                                    (json_int_t)r->n_fp8, "effective_bits", r->effective_bits));
      json_object_set_new(doc, "out_dir", r->out_dir[0] ? json_string(r->out_dir) : json_null());
    }
    json_array_append_new(arr, doc);
  }
  return arr;
}
