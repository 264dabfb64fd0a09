/* cli/cmd_demo.c: `aqs demo`: the whole product on a tiny synthetic model, with nothing but the
 * project: synthesize a Qwen2.5-VL-shaped model with planted outliers and a caption file, build
 * top10 ... top100 and two control orders on the CPU (one sensitivity run, cheap exports), prove
 * top10 vs top50 differ exactly as planned, evaluate every scheme against BF16 and write the
 * quality report. Running it again reuses everything. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/build_cli.h"
#include "cli/eval_cli.h"
#include "common/file.h"
#include "engine/compute/scores.h"
#include "engine/export/plan.h"
#include "engine/model/synth.h"
#include "engine/stages/demo_data.h"
#include "engine/stages/family.h"
#include "engine/stages/quality_report.h"

static const char demo_usage[] =
    "usage: aqs demo [--dir DIR] [--backend cpu|cuda] [--json]\n"
    "\n"
    "Runs the main job end to end on a built-in tiny model: writes a synthetic Qwen2.5-VL-shaped\n"
    "checkpoint with planted outliers in two groups (lm.1.down, lm.2.qkv) and 600 synthetic\n"
    "captions into DIR (default ./aqs-demo), creates a store there, builds the recipes top10 ...\n"
    "top100 and the controls top50_random and top50_most_sensitive, checks that top10 and top50\n"
    "differ exactly as their plans say, and prints what ran, what was reused, the time, the store\n"
    "size and the most sensitive groups (the planted ones); then each scheme's quality against\n"
    "BF16 on held-out captions (aqs eval) and the report with its figures in DIR/report\n"
    "(aqs report). A second run finds every stage and every eval cached. DIR is an ordinary\n"
    "workspace: its .aqstore names the store, the model and the captions, so `cd DIR` and every\n"
    "command works there (aqs ls, aqs show top50, aqs diff top10 top50, aqs eval top50 bf16).\n";

#define DEMO_OUTLIERS "lm.1.down:100000,lm.2.qkv:100000"

static int ensure_dir(const char *path) { return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1; }

static int run_demo(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(demo_usage, stdout);
    return AQS_EXIT_OK;
  }
  const char *dir = "aqs-demo", *backend = "cpu";
  int as_json = 0;
  static const struct option longopts[] = {{"dir", required_argument, NULL, 'd'},
                                           {"backend", required_argument, NULL, 'b'},
                                           {"json", no_argument, NULL, 'j'},
                                           {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (ch == 'd') dir = optarg;
    else if (ch == 'b') backend = optarg;
    else if (ch == 'j') as_json = 1;
    else return aqs_cli_bad_option("demo", longopts, argv);
  }
  if (optind != argc) return aqs_cli_usage_error("demo", "unexpected argument '%s'", argv[optind]);
  if (ensure_dir(dir) != 0) return aqs_cli_fail("demo", "cannot create %s: %s", dir, strerror(errno));
  char model[4200], captions[4200], store_path[4200], out_root[4200], marker[4300];
  snprintf(model, sizeof model, "%s/model", dir);
  snprintf(captions, sizeof captions, "%s/captions.txt", dir);
  snprintf(store_path, sizeof store_path, "%s/store", dir);
  snprintf(out_root, sizeof out_root, "%s/quantized", dir);
  snprintf(marker, sizeof marker, "%s/config.json", model);
  double t0 = aqs_stage_now_s();
  aqs_err e = {0};
  if (!as_json) fprintf(stderr, "aqs demo: workspace %s\n", dir);
  if (access(marker, F_OK) != 0) {
    aqs_synth_opts so = {.preset = "tiny", .seed = 1, .out_dir = model, .naming = AQS_NAMING_HF5};
    if (aqs_synth_parse_outliers(DEMO_OUTLIERS, &so, &e) != AQS_OK || aqs_synth_write(&so, &e) != AQS_OK)
      return aqs_cli_fail_err("demo", &e);
  }
  if (access(captions, F_OK) != 0 && aqs_demo_write_captions(captions, 600, 7, &e) != AQS_OK)
    return aqs_cli_fail_err("demo", &e);
  /* The workspace file that makes DIR an ordinary workspace (kept if the user has one). */
  snprintf(marker, sizeof marker, "%s/.aqstore", dir);
  if (access(marker, F_OK) != 0) {
    static const char ws_text[] = "; the aqs demo's workspace (see .aqstore.example in the aqs sources)\n"
                                  "[store]\npath = store\n[model]\npath = model\n[data]\ncaptions = captions.txt\n";
    if (aqs_file_write_atomic(marker, ws_text, sizeof ws_text - 1, &e) != AQS_OK) return aqs_cli_fail_err("demo", &e);
  }
  snprintf(marker, sizeof marker, "%s/aqs.conf", store_path);
  if (access(marker, F_OK) != 0 && aqs_store_init(store_path, NULL, &e) != AQS_OK) return aqs_cli_fail_err("demo", &e);
  aqs_store *store;
  if (aqs_store_open(store_path, 0, &store, &e) != AQS_OK) return aqs_cli_fail_err("demo", &e);

  /* the coverage sweep, then the two control orders the report sets beside it */
  static const char *const names[] = {"top10", "top20", "top30", "top40", "top50", "top60", "top70",
                                      "top80", "top90", "top100", "top50_random", "top50_most_sensitive", "bf16"};
  enum { N = 12 };
  aqs_recipe recipes[N];
  aqs_build_report reports[N];
  int rc = AQS_EXIT_OK;
  for (int i = 0; i < N && !rc; i++)
    if (aqs_recipe_load(NULL, names[i], &recipes[i], &e) != AQS_OK) rc = aqs_cli_fail_err("demo", &e);
  aqs_workspace ws;
  aqs_workspace_init_defaults(&ws, &e);
  ws.link_mode = AQS_LINK_REFLINK;
  aqs_build_opts opts = {.store = store, .model_dir = model, .captions_path = captions, .backend = backend,
                         .progress = !as_json};
  aqs_build_checkout co = {.out_root = out_root, .link_mode = ws.link_mode};
  char out_dirs[N][AQS_PATH_MAX];
  if (!rc && aqs_build_recipes(&opts, recipes, N, reports, &e) != AQS_OK) rc = aqs_cli_fail_err("demo", &e);
  if (!rc) rc = aqs_build_cli_checkout("demo", store, &opts, &co, recipes, reports, N, out_dirs);
  double seconds = aqs_stage_now_s() - t0;

  /* The proof for one pair, as `aqs diff top10 top50` gives it, and the store's size. */
  aqs_family_pair pair = {0};
  aqs_qwen_model *qm = NULL;
  aqs_store_stats stats = {0};
  aqs_scores scores = {0};
  if (!rc) {
    aqs_plan *p10 = NULL, *p50 = NULL;
    aqs_status st = aqs_qwen_model_open(model, &qm, NULL, &e);
    if (!st) st = aqs_build_load_plan(store, aqs_build_report_result(&reports[0], "slice"), &p10, &e);
    if (!st) st = aqs_build_load_plan(store, aqs_build_report_result(&reports[4], "slice"), &p50, &e);
    if (!st)
      st = aqs_family_check(store, qm, "top10", aqs_build_report_result(&reports[0], "export"), p10, "top50",
                            aqs_build_report_result(&reports[4], "export"), p50, &pair, &e);
    if (!st) st = aqs_store_stats_get(store, &stats, &e);
    if (!st) st = aqs_build_load_scores(store, aqs_build_report_result(&reports[0], "sensitivity"), &scores, &e);
    aqs_plan_free(p10);
    aqs_plan_free(p50);
    if (st) rc = aqs_cli_fail_err("demo", &e);
  }
  /* Quality of every scheme against BF16 (cached eval actions) and the report. */
  aqs_eval_row rows[N + 1];
  aqs_report_result rr = {0};
  char report_dir[4200];
  snprintf(report_dir, sizeof report_dir, "%s/report", dir);
  aqs_eval_opts eo = {.store = store, .model_dir = model, .captions_path = captions, .backend = backend,
                      .precision = AQS_PREC_BF16, .progress = !as_json};
  if (!rc && (aqs_eval_names(&eo, names, N + 1, rows, &e) != AQS_OK ||
              aqs_quality_report(&eo, names, N + 1, report_dir, &rr, &e) != AQS_OK))
    rc = aqs_cli_fail_err("demo", &e);
  if (!rc) {
    int ran = 0, reused = 0;
    for (int i = 0; i < N; i++)
      for (size_t s = 0; s < reports[i].n_stages; s++) {
        if (reports[i].stages[s].hit) reused++;
        else ran++;
      }
    size_t *rank = aqs_scores_ranking(&scores);
    json_t *top = json_array();
    for (size_t k = 0; k < 3 && k < scores.ngroups; k++) {
      const aqs_group_score *g = &scores.groups[rank[scores.ngroups - 1 - k]];
      json_array_append_new(top, json_pack("{s:s, s:f}", "group", g->id, "score", g->score));
    }
    free(rank);
    if (as_json) {
      json_t *doc = json_pack("{s:s, s:i, s:i, s:f, s:I, s:I, s:o, s:s, s:{s:I, s:I, s:I}, s:o}", "dir", dir,
                              "stages_run", ran, "stages_reused", reused, "seconds", seconds, "store_bytes",
                              (json_int_t)stats.bytes_stored, "logical_bytes", (json_int_t)stats.bytes_logical,
                              "most_sensitive", top, "planted", DEMO_OUTLIERS, "diff_top10_top50",
                              "plan_groups", (json_int_t)pair.plan_diff_groups, "differing_groups",
                              (json_int_t)pair.differing_groups, "differing_tensors",
                              (json_int_t)pair.differing_tensors, "builds",
                              aqs_build_cli_json(reports, N, 0, out_dirs));
      json_object_set_new(doc, "quality", aqs_eval_rows_json(rows, N + 1));
      json_object_set_new(doc, "report", json_string(rr.markdown_path));
      rc = aqs_cli_print_json("demo", doc);
    } else {
      char sz[32], lz[32];
      printf("\n");
      for (int i = 0; i < N; i++)
        printf("  %-7s %3zu/%zu groups FP8  %7.4f effective bits  -> %s\n", reports[i].recipe, reports[i].n_fp8,
               reports[i].n_candidates, reports[i].effective_bits, out_dirs[i]);
      printf("\nstages: %d run, %d reused (cached) in %.1fs\n", ran, reused, seconds);
      printf("store:  %s stored for %s of objects (%s)\n", aqs_cli_bytes(sz, sizeof sz, stats.bytes_stored),
             aqs_cli_bytes(lz, sizeof lz, stats.bytes_logical), store_path);
      printf("diff top10 top50: plans differ on %zu groups; exactly those %zu groups differ (%zu tensors), "
             "%zu tensors shared: proof holds\n",
             pair.plan_diff_groups, pair.differing_groups, pair.differing_tensors, pair.shared_tensors);
      printf("most sensitive groups:");
      size_t k;
      json_t *g;
      json_array_foreach(top, k, g) printf(" %s", json_string_value(json_object_get(g, "group")));
      printf("   (planted: %s)\n", DEMO_OUTLIERS);
      printf("\nquality against BF16 (held-out captions):\n");
      aqs_eval_print_table(stdout, rows, N + 1);
      printf("report: %s\n", rr.markdown_path);
      printf("\nexplore: cd %s && aqs ls; aqs show top50; aqs diff top10 top50; aqs checkout top50 out/top50\n", dir);
      json_decref(top);
    }
  }
  aqs_scores_free(&scores);
  aqs_store_stats_free(&stats);
  aqs_qwen_model_free(qm);
  aqs_workspace_free(&ws);
  aqs_store_close(store);
  return rc;
}

const aqs_cmd aqs_cmd_demo = {"demo", "run the whole pipeline on a built-in tiny model", run_demo};
