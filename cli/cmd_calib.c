/* cli/cmd_calib.c: `aqs calib`: builds (or finds cached) a calibration set in the store from a
 * caption file or an image+caption JSONL, and prints its digest and a summary. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/stages/calib_set.h"

static const char calib_usage[] =
    "usage: aqs calib (--captions FILE | --images JSONL [--root DIR] [--allow-outside-root])\n"
    "                 (--tokenizer FILE|DIR | --model DIR) [--config preprocessor_config.json]\n"
    "                 [--samples N] [--seed S] [--max-len L] [--template T]\n"
    "                 [--chunk-seqs N] [--skip-bad] [--json]\n"
    "\n"
    "Builds a calibration set and caches it in the store (the calib-set stage). The key is\n"
    "content only: the dataset file's digest (and for --images the digests of the images the\n"
    "sample walk may visit), the tokenizer's digest, the processor settings and the options\n"
    "below, so re-running with the same inputs is a cache hit from any directory.\n"
    "\n"
    "datasets:\n"
    "  --captions FILE  UTF-8 text, one caption per line\n"
    "  --images JSONL   rows {\"image\": path, \"caption\": text}; paths relative to --root\n"
    "  --root DIR       image root (default: the JSONL's directory); a row that is\n"
    "                   absolute, has a '..' part or is a symlink leading out of it is a\n"
    "                   bad row\n"
    "  --allow-outside-root  follow such rows (trusted datasets only)\n"
    "options:\n"
    "  --tokenizer P    tokenizer.json, or a directory holding one\n"
    "  --model DIR      checkpoint directory: its tokenizer.json and preprocessor_config.json\n"
    "                   (default: the workspace's [model] path)\n"
    "  --config FILE    preprocessor_config.json (default: from --model, else Qwen2.5-VL's)\n"
    "  --samples N      sequences (default 128)\n"
    "  --seed S         sampling seed (default 0); N samples are a prefix of N+k samples\n"
    "  --max-len L      tokens per sequence, longer ones truncated (default 2048)\n"
    "  --template T     none (default): the caption as is; chat: one Qwen user turn;\n"
    "                   chat-system: system + user turn + assistant prompt; or any text\n"
    "                   holding {caption} once (image rows: the vision tokens + caption)\n"
    "  --chunk-seqs N   sequences per stored chunk (default 8)\n"
    "  --skip-bad       skip and count bad lines/images instead of failing on the first\n"
    "  --json           print the summary as JSON\n";

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *join(const char *dir, const char *name) {
  char *p = NULL;
  if (asprintf(&p, "%s/%s", dir, name) < 0) return NULL;
  return p;
}

static int parse_i64(const char *cmd, const char *opt, const char *text, int64_t lo, int64_t *out) {
  uint64_t v;
  if (aqs_cli_parse_u64(text, &v) != 0 || v > INT64_MAX || (int64_t)v < lo)
    return aqs_cli_usage_error(cmd, "%s needs an integer >= %lld, got '%s'", opt, (long long)lo, text);
  *out = (int64_t)v;
  return 0;
}

static int print_result(const aqs_calib_result *r, int as_json) {
  char key[AQS_DIGEST_STR_SIZE], dig[AQS_DIGEST_STR_SIZE];
  aqs_digest_str(&r->key, key);
  aqs_digest_str(&r->digest, dig);
  const aqs_calib_set *s = &r->set;
  if (as_json) {
    json_t *chunks = json_array();
    for (int32_t i = 0; i < s->n_chunks; i++) json_array_append_new(chunks, json_string(s->chunk_digests[i]));
    json_t *doc = json_pack("{s:s,s:s,s:b,s:s,s:I,s:I,s:I,s:I,s:i,s:i,s:o}", "digest", dig, "key", key,
                            "hit", r->hit, "modality", s->modality, "samples", (json_int_t)s->n_seqs,
                            "tokens", (json_int_t)s->n_tokens, "images", (json_int_t)s->n_images,
                            "skipped", (json_int_t)s->n_skipped, "chunk_seqs", s->chunk_seqs,
                            "max_len", s->max_seq_len, "chunks", chunks);
    if (doc && r->first_bad[0]) json_object_set_new(doc, "first_skipped", json_string(r->first_bad));
    if (doc && r->note[0]) json_object_set_new(doc, "note", json_string(r->note));
    if (r->note[0]) fprintf(stderr, "aqs calib: note: %s\n", r->note);
    return aqs_cli_print_json("calib", doc);
  }
  printf("calib-set %s (%s)\n", dig, r->hit ? "cached" : "built");
  printf("  %s: %lld samples, %lld tokens, %lld images, %lld skipped, %d chunks of %d\n",
         s->modality, (long long)s->n_seqs, (long long)s->n_tokens, (long long)s->n_images,
         (long long)s->n_skipped, s->n_chunks, s->chunk_seqs);
  if (r->first_bad[0]) printf("  first skipped: %s\n", r->first_bad);
  if (r->note[0]) fprintf(stderr, "aqs calib: note: %s\n", r->note);
  return AQS_EXIT_OK;
}

static int calib_run(int argc, char **argv) {
  static const char *cmd = "calib";
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(calib_usage, stdout);
    return AQS_EXIT_OK;
  }
  enum { O_CAPTIONS = 1, O_IMAGES, O_ROOT, O_TOK, O_MODEL, O_CONFIG, O_SAMPLES, O_SEED, O_MAXLEN,
         O_TEMPLATE, O_CHUNK, O_SKIP, O_JSON, O_OUTSIDE };
  static const struct option longopts[] = {
      {"captions", required_argument, NULL, O_CAPTIONS}, {"images", required_argument, NULL, O_IMAGES},
      {"root", required_argument, NULL, O_ROOT},         {"tokenizer", required_argument, NULL, O_TOK},
      {"model", required_argument, NULL, O_MODEL},       {"config", required_argument, NULL, O_CONFIG},
      {"samples", required_argument, NULL, O_SAMPLES},   {"seed", required_argument, NULL, O_SEED},
      {"max-len", required_argument, NULL, O_MAXLEN},    {"template", required_argument, NULL, O_TEMPLATE},
      {"chunk-seqs", required_argument, NULL, O_CHUNK},  {"skip-bad", no_argument, NULL, O_SKIP},
      {"json", no_argument, NULL, O_JSON},               {"allow-outside-root", no_argument, NULL, O_OUTSIDE},
      {NULL, 0, NULL, 0}};
  aqs_calib_opts o = {0};
  o.samples = 128;
  o.max_len = 2048;
  const char *tok_arg = NULL, *model_arg = NULL;
  int as_json = 0, c;
  int64_t v = 0;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case O_CAPTIONS: o.captions_path = optarg; break;
      case O_IMAGES: o.images_jsonl = optarg; break;
      case O_ROOT: o.images_root = optarg; break;
      case O_TOK: tok_arg = optarg; break;
      case O_MODEL: model_arg = optarg; break;
      case O_CONFIG: o.processor_config = optarg; break;
      case O_SAMPLES:
        if (parse_i64(cmd, "--samples", optarg, 1, &o.samples)) return AQS_EXIT_USAGE;
        break;
      case O_SEED:
        if (parse_i64(cmd, "--seed", optarg, 0, &v)) return AQS_EXIT_USAGE;
        o.seed = (uint64_t)v;
        break;
      case O_MAXLEN:
        if (parse_i64(cmd, "--max-len", optarg, 1, &v) || v > INT32_MAX) return AQS_EXIT_USAGE;
        o.max_len = (int32_t)v;
        break;
      case O_TEMPLATE: o.template_name = optarg; break;
      case O_CHUNK:
        if (parse_i64(cmd, "--chunk-seqs", optarg, 1, &v) || v > 1 << 20) return AQS_EXIT_USAGE;
        o.chunk_seqs = (int32_t)v;
        break;
      case O_SKIP: o.skip_bad = 1; break;
      case O_JSON: as_json = 1; break;
      case O_OUTSIDE: o.allow_outside_root = 1; break;
      default:
        return aqs_cli_bad_option(cmd, longopts, argv);
    }
  }
  if (optind < argc) return aqs_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
  if (!!o.captions_path == !!o.images_jsonl)
    return aqs_cli_usage_error(cmd, "give exactly one of --captions FILE or --images JSONL");
  if (o.images_root && !o.images_jsonl) return aqs_cli_usage_error(cmd, "--root needs --images");
  if (o.allow_outside_root && !o.images_jsonl) return aqs_cli_usage_error(cmd, "--allow-outside-root needs --images");
  aqs_workspace ws;
  aqs_store *store = NULL;
  int rc = aqs_cli_open_store(cmd, 0, &ws, &store);
  if (rc) return rc;
  char *tok_path = NULL, *cfg_path = NULL;
  if (!tok_arg && !model_arg) model_arg = ws.model_path;
  if (tok_arg) tok_path = is_dir(tok_arg) ? join(tok_arg, "tokenizer.json") : strdup(tok_arg);
  else if (model_arg) tok_path = join(model_arg, "tokenizer.json");
  if (!o.processor_config && model_arg && o.images_jsonl) {
    cfg_path = join(model_arg, "preprocessor_config.json");
    if (cfg_path && access(cfg_path, R_OK) == 0) o.processor_config = cfg_path;
  }
  if (!tok_path) {
    rc = aqs_cli_usage_error(cmd, "--tokenizer FILE or --model DIR is required");
  } else {
    o.tokenizer_path = tok_path;
    o.progress = 1;
    aqs_calib_result res;
    aqs_err err = {0};
    if (aqs_calib_build(store, &o, &res, &err) != AQS_OK) {
      rc = aqs_cli_fail_err(cmd, &err);
    } else {
      rc = print_result(&res, as_json);
      aqs_calib_result_free(&res);
    }
  }
  free(tok_path);
  free(cfg_path);
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_calib = {"calib", "build a calibration set (captions or images) in the store",
                               calib_run};
