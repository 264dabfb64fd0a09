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
#include "cli/build_names_cli.h"
#include "common/file.h"
#include "common/path.h"
#include "engine/stages/ckpt_store.h"

/* --rebuild A,B or repeated --rebuild: each name a stage of the table or "all". */
static int parse_rebuild(const char *cmd, const char *arg, aqs_build_cli *out) {
  size_t used = 0;
  for (int i = 0; i < out->n_rebuild; i++) used += strlen(out->rebuild[i]) + 1;
  if (used + strlen(arg) + 1 > sizeof out->rebuild_buf) return aqs_cli_usage_error(cmd, "--rebuild: too many stages");
  char *copy = out->rebuild_buf + used, *save = NULL;
  memcpy(copy, arg, strlen(arg) + 1);
  for (char *name = strtok_r(copy, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
    if (strcmp(name, "all") != 0 && aqs_stage_index(name) < 0)
      return aqs_cli_usage_error(cmd, "--rebuild %s: no such stage (see %s --help)", name, cmd);
    if (out->n_rebuild == (int)(sizeof out->rebuild / sizeof out->rebuild[0]))
      return aqs_cli_usage_error(cmd, "--rebuild: too many stages");
    out->rebuild[out->n_rebuild++] = name;
  }
  return 0;
}

/* AQS_TEST_BREAK_EXPORT=<recipe>: flips the last byte of that recipe's first layer shard (the last
 * tensor of layer 0), so that tests can see the family check fail. */
static aqs_status break_export(void *ctx, const char *file_name, const char *path, aqs_err *e) {
  (void)ctx;
  if (strcmp(file_name, "model-layers-000.safetensors") != 0) return AQS_OK;
  FILE *f = fopen(path, "r+b");
  if (!f) return aqs_errno(e, AQS_ERR_IO, errno, "test hook: %s", path);
  fseek(f, -1, SEEK_END);
  int c = fgetc(f);
  fseek(f, -1, SEEK_END);
  fputc(c ^ 0x01, f);
  fclose(f);
  return AQS_OK;
}

/* AQS_TEST_FAIL_EXPORT=<recipe>: that recipe's export fails at its second layer shard, as a write
 * error would, so that tests can see a failure in the middle of a sweep's concurrent exports. */
static aqs_status fail_export(void *ctx, const char *file_name, const char *path, aqs_err *e) {
  (void)ctx;
  (void)path;
  if (strcmp(file_name, "model-layers-001.safetensors") != 0) return AQS_OK;
  return aqs_errf(e, AQS_ERR_IO, "test hook: cannot store %s", file_name);
}

int aqs_build_cli_parse(const char *cmd, int argc, char **argv, aqs_build_cli *out) {
  memset(out, 0, sizeof *out);
  static const struct option longopts[] = {
      {"model", required_argument, NULL, 'm'},   {"captions", required_argument, NULL, 'c'},
      {"images", required_argument, NULL, 'i'},  {"root", required_argument, NULL, 'r'},
      {"backend", required_argument, NULL, 'b'}, {"out", required_argument, NULL, 'o'},
      {"recipes-dir", required_argument, NULL, 'R'}, {"json", no_argument, NULL, 'j'},
      {"no-checkout", no_argument, NULL, 'n'},   {"quiet", no_argument, NULL, 'q'},
      {"allow-outside-root", no_argument, NULL, 'A'},
      {"rebuild", required_argument, NULL, 'B'}, {"samples", required_argument, NULL, 's'},
      {"skip-bad", no_argument, NULL, 'k'},      {"eval", no_argument, NULL, 'E'},
      {"devices", required_argument, NULL, 'D'}, {NULL, 0, NULL, 0}};
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
    case 'E': out->eval = 1; break;
    case 'B':
      if (parse_rebuild(cmd, optarg, out)) return AQS_EXIT_USAGE;
      break;
    case 'k': out->skip_bad = 1; break;
    case 'D': {
      aqs_err e = {0};
      if (aqs_devices_parse(optarg, &out->devices_parsed, &e)) return aqs_cli_usage_error(cmd, "%s", e.msg);
      out->devices = optarg;
      break;
    }
    case 's': {
      uint64_t v;
      if (aqs_cli_parse_u64(optarg, &v) || v < 1 || v > 100000000)
        return aqs_cli_usage_error(cmd, "bad --samples '%s' (a count of calibration sequences, at least 1)", optarg);
      out->samples = (int64_t)v;
      break;
    }
    default: return aqs_cli_bad_option(cmd, longopts, argv);
    }
  }
  int i = optind;
  if (i < argc && strcmp(argv[i], "recipe") == 0) i++;
  if (i >= argc) return aqs_cli_usage_error(cmd, "name at least one recipe (aqs ls --recipes lists them)");
  out->names = argv + i;
  out->n_names = argc - i;
  if (out->backend && strcmp(out->backend, "cpu") != 0 && strcmp(out->backend, "cuda") != 0)
    return aqs_cli_usage_error(cmd, "bad --backend '%s' (cpu or cuda)", out->backend);
  int cuda = out->backend && strcmp(out->backend, "cuda") == 0;
  if (out->devices && out->devices_parsed.is_cpu && cuda)
    return aqs_cli_usage_error(cmd, "--devices %s names CPU workers but the backend is cuda (give GPU indices)",
                               out->devices);
  if (out->devices && !out->devices_parsed.is_cpu && !cuda)
    return aqs_cli_usage_error(cmd, "--devices %s names GPUs: add --backend cuda (or give cpu,cpu for CPU workers)",
                               out->devices);
  if (out->out_dir && out->n_names > 1)
    return aqs_cli_usage_error(cmd, "--out needs exactly one recipe (several go to quantized/<recipe>_<data>)");
  return 0;
}

void aqs_build_cli_free(aqs_build_cli *cli) { aqs_chunk_worker_free(&cli->worker); }

int aqs_build_cli_prepare(const char *cmd, aqs_build_cli *cli, const aqs_workspace *ws, aqs_store *store,
                          aqs_build_opts *opts, aqs_recipe **recipes_out) {
  memset(opts, 0, sizeof *opts);
  opts->store = store;
  opts->model_dir = cli->model_dir ? cli->model_dir : ws->model_path;
  opts->captions_path = cli->captions ? cli->captions : ws->data_captions;
  opts->images_path = cli->images ? cli->images : ws->data_images;
  opts->images_root = cli->images_root ? cli->images_root : ws->data_images_root;
  opts->allow_outside_root = cli->allow_outside_root;
  opts->backend = cli->backend ? cli->backend : "cpu";
  opts->progress = !cli->quiet;
  opts->eval = cli->eval;
  opts->skip_bad = cli->skip_bad;
  opts->rebuild = cli->rebuild;
  opts->n_rebuild = (size_t)cli->n_rebuild;
  if (cli->devices) {
    opts->devices = &cli->devices_parsed;
    opts->argv = aqs_cli.argv;
    char index[16];
    snprintf(index, sizeof index, "%d", cli->devices_parsed.index[0]);
    /* one GPU: this process uses it; several: each worker gets its own (chunk_workers.c) */
    if (cli->devices_parsed.n == 1 && !cli->devices_parsed.is_cpu) setenv("AQS_CUDA_DEVICE", index, 1);
  }
  if (strcmp(cmd, "build") == 0) {
    aqs_err e = {0};
    if (aqs_chunk_worker_from_env(&cli->worker, &cli->is_worker, &e)) return aqs_cli_fail_err(cmd, &e);
    if (cli->is_worker) {
      opts->worker = &cli->worker;
      opts->progress = 0;
    }
  }
  opts->export_hook_recipe = getenv("AQS_TEST_BREAK_EXPORT");
  if (opts->export_hook_recipe) opts->export_hook = break_export;
  if (getenv("AQS_TEST_FAIL_EXPORT")) {
    opts->export_hook_recipe = getenv("AQS_TEST_FAIL_EXPORT");
    opts->export_hook = fail_export;
  }
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
      char hint[AQS_RECIPE_NAME_MAX];
      if (e.code == AQS_ERR_NOT_FOUND && aqs_cli_recipe_hint(src.workspace_dir, cli->names[i], hint, sizeof hint))
        return aqs_cli_fail(cmd, "%s; did you mean %s?", e.msg, hint);
      return aqs_cli_fail_err(cmd, &e);
    }
    /* --samples replaces every recipe's calib samples; scoring never asks for more than that. */
    if (cli->samples) {
      recipes[i].calib_samples = cli->samples;
      if (recipes[i].score_samples > cli->samples) recipes[i].score_samples = cli->samples;
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

/* ---- the porcelain after a build: checkouts and reports ---- */

/* <out_root>/<model>-<model digest>/<recipe>_<data>: the model directory's name and 8 hex of its
 * source digest (two models never share a directory, even with one name), then the data file's
 * name without directory and extension. */
static void default_out_dir(const aqs_build_opts *o, const aqs_build_checkout *co, const aqs_build_report *r,
                            aqs_modality modality, char *buf, size_t n) {
  char dir[AQS_PATH_MAX], hex[AQS_DIGEST_STR_SIZE] = "sha256:-";
  snprintf(dir, sizeof dir, "%s", o->model_dir);
  for (size_t len = strlen(dir); len > 1 && dir[len - 1] == '/'; len--) dir[len - 1] = '\0'; /* "m/" is m */
  const char *model = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
  const aqs_digest *source = aqs_build_report_result(r, "source");
  if (source) aqs_digest_str(source, hex);
  const char *p = modality == AQS_MODALITY_IMAGES ? o->images_path : o->captions_path;
  if (!p) p = "calib";
  const char *slash = strrchr(p, '/');
  char base[256];
  snprintf(base, sizeof base, "%s", slash ? slash + 1 : p);
  char *dot = strrchr(base, '.');
  if (dot && dot != base) *dot = '\0';
  snprintf(buf, n, "%s/%s-%.8s/%s_%s", co->out_root ? co->out_root : "quantized", model, hex + 7, r->recipe, base);
}

/* Writes <out_dir>.per-layer-sensitivity.md and <out_dir>.sensitivity.json beside a checkout. */
static aqs_status write_reports(aqs_store *store, const aqs_digest *record, const char *out_dir, aqs_err *e) {
  json_t *doc;
  aqs_status st = aqs_ckpt_load_manifest(store, record, "aqs-build", &doc, e);
  if (st) return st;
  char *md = NULL, *scores = NULL, path[AQS_PATH_MAX];
  st = aqs_build_sensitivity_docs(store, doc, &md, &scores, e);
  json_decref(doc);
  if (!st && aqs_path_fmt(path, sizeof path, "%s.per-layer-sensitivity.md", out_dir) == 0)
    st = aqs_file_write_atomic(path, md, strlen(md), e);
  if (!st && aqs_path_fmt(path, sizeof path, "%s.sensitivity.json", out_dir) == 0)
    st = aqs_file_write_atomic(path, scores, strlen(scores), e);
  free(md);
  free(scores);
  return st;
}

int aqs_build_cli_checkout(const char *cmd, aqs_store *store, const aqs_build_opts *opts,
                           const aqs_build_checkout *co, const aqs_recipe *recipes,
                           const aqs_build_report *reports, size_t n, char (*out_dirs)[AQS_PATH_MAX]) {
  for (size_t i = 0; i < n; i++) {
    const aqs_build_report *r = &reports[i];
    const aqs_digest *ckpt = aqs_build_report_result(r, "export");
    aqs_err e = {0};
    out_dirs[i][0] = '\0';
    if (!ckpt) continue;
    if (co->out_dir) snprintf(out_dirs[i], AQS_PATH_MAX, "%s", co->out_dir);
    else default_out_dir(opts, co, r, recipes[i].modality, out_dirs[i], AQS_PATH_MAX);
    if (aqs_ckpt_materialize(store, ckpt, out_dirs[i], co->link_mode, &e) != AQS_OK ||
        write_reports(store, &r->build_record, out_dirs[i], &e) != AQS_OK) {
      aqs_err_prefix(&e, "recipe %s", r->recipe);
      return aqs_cli_fail_err(cmd, &e);
    }
  }
  return 0;
}

static const char *stage_state(const aqs_build_report *r, size_t i, int plan) {
  if (!r->stages[i].done) return plan ? "MISS" : "-";
  return r->stages[i].hit ? "HIT" : plan ? "MISS" : "RUN";
}

static const char *out_dir_of(char (*out_dirs)[AQS_PATH_MAX], size_t k) {
  return out_dirs && out_dirs[k][0] ? out_dirs[k] : NULL;
}

void aqs_build_cli_print(const aqs_build_report *reports, size_t n, int plan, double seconds,
                         char (*out_dirs)[AQS_PATH_MAX]) {
  int ran = 0, reused = 0;
  for (size_t k = 0; k < n; k++) {
    const aqs_build_report *r = &reports[k];
    printf("%s\n", r->recipe);
    if (r->calib_note[0]) printf("  note: %s\n", r->calib_note);
    for (size_t i = 0; i < r->n_stages; i++) {
      const aqs_stage_outcome *o = &r->stages[i];
      char hex[AQS_DIGEST_SHORT_LEN + 1] = "-";
      if (o->has_result) aqs_digest_short(&o->result, hex);
      if (o->done) {
        if (o->hit) reused++;
        else ran++;
      }
      char tiered[AQS_SOURCE_MAX + 8]; /* a plan's hit from a secondary store or the remote */
      const char *state = stage_state(r, i, plan);
      if (plan && o->done && o->hit && o->reason[0]) {
        snprintf(tiered, sizeof tiered, "HIT (%s)", o->reason);
        state = tiered;
      }
      printf("  %-12s %-5s %-12s", r->stage_names[i], state, hex);
      if (plan && o->done && !o->hit) printf("  %s", o->reason);
      else if (plan && !o->done) printf("  needs %s first", o->blocked_by);
      else if (!plan) printf("  %.2fs%s", o->seconds, o->forced ? " (--rebuild)" : "");
      printf("\n");
    }
    const char *dir = out_dir_of(out_dirs, k);
    if (!plan)
      printf("  %zu/%zu groups FP8, %.4f effective bits%s%s\n", r->n_fp8, r->n_candidates, r->effective_bits,
             dir ? " -> " : "", dir ? dir : "");
  }
  /* aqs_build_recipes fails unless the family check holds, so reaching here means it passed. */
  if (!plan && n >= 2)
    printf("family check passed: the %zu checkpoints differ pairwise exactly as their plans (%zu pairs)\n", n,
           n * (n - 1) / 2);
  if (!plan) printf("%d stage(s) run, %d reused, %.2fs\n", ran, reused, seconds);
}

json_t *aqs_build_cli_json(const aqs_build_report *reports, size_t n, int plan, char (*out_dirs)[AQS_PATH_MAX]) {
  json_t *arr = json_array();
  for (size_t k = 0; k < n; k++) {
    const aqs_build_report *r = &reports[k];
    json_t *stages = json_array();
    for (size_t i = 0; i < r->n_stages; i++) {
      const aqs_stage_outcome *o = &r->stages[i];
      char hex[AQS_DIGEST_STR_SIZE], key[AQS_DIGEST_STR_SIZE];
      json_t *st = json_pack("{s:s, s:s}", "stage", r->stage_names[i], "state", stage_state(r, i, plan));
      if (o->done) {
        json_object_set_new(st, "key", json_string(aqs_digest_str(&o->key, key)));
        if (o->has_result) json_object_set_new(st, "result", json_string(aqs_digest_str(&o->result, hex)));
        if (plan && !o->hit) json_object_set_new(st, "reason", json_string(o->reason));
        if (plan && o->hit && o->reason[0]) json_object_set_new(st, "source", json_string(o->reason));
        if (o->forced) json_object_set_new(st, "rebuilt", json_true());
        json_object_set_new(st, "seconds", json_real(o->seconds));
      } else {
        json_object_set_new(st, "needs", json_string(o->blocked_by));
      }
      json_array_append_new(stages, st);
    }
    json_t *doc = json_pack("{s:s, s:o}", "recipe", r->recipe, "stages", stages);
    if (r->calib_note[0]) json_object_set_new(doc, "note", json_string(r->calib_note));
    if (!plan) {
      char rec[AQS_DIGEST_STR_SIZE];
      const char *dir = out_dir_of(out_dirs, k);
      json_object_set_new(doc, "build_record", json_string(aqs_digest_str(&r->build_record, rec)));
      json_object_set_new(doc, "summary", json_pack("{s:I, s:I, s:I, s:f}", "groups", (json_int_t)r->n_groups,
                                                    "candidates", (json_int_t)r->n_candidates, "fp8",
                                                    (json_int_t)r->n_fp8, "effective_bits", r->effective_bits));
      json_object_set_new(doc, "out_dir", dir ? json_string(dir) : json_null());
    }
    json_array_append_new(arr, doc);
  }
  return arr;
}
