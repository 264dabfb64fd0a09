/* engine/stages/recipe_keys.c: the recipe key table (see recipe_keys.h): one row per key, with
 * its parser; adding a recipe key is one row here (and the field it fills in aqs_recipe). */
#include "engine/stages/recipe_keys.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- value parsers ---- */

static int parse_int(const char *v, int64_t lo, int64_t hi, int64_t *out) {
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || end == v || *end || x < lo || x > hi) return 0;
  *out = x;
  return 1;
}

static int parse_real(const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi) return 0;
  *out = x;
  return 1;
}

static int parse_enum(const char *v, const char *const *names, int n, int *out) {
  for (int i = 0; i < n; i++)
    if (strcmp(v, names[i]) == 0) {
      *out = i;
      return 1;
    }
  return 0;
}

static int copy_text(const char *v, char *dst, size_t n) {
  if (strlen(v) >= n) return 0;
  snprintf(dst, n, "%s", v);
  return 1;
}

static const char *const modality_names[] = {"captions", "images"};
static const char *const scope_names[] = {"lm_only", "all_layers"};
static const char *const candidates_names[] = {"all", "mlp", "attn", "visual", "lm"};
static const char *const order_names[] = {"least_sensitive_first", "most_sensitive_first", "random"};
static const char *const template_names[] = {"none", "chat"};
/* "modelopt" is stored as "modelopt_fp8", the name keys have always held */
static const char *const export_names[] = {"modelopt_fp8", "modelopt", "modelopt_mixed", "compressed_tensors"};
#define ENUM(arr) arr, (int)(sizeof arr / sizeof arr[0])

const char *aqs_modality_name(aqs_modality m) { return modality_names[m]; }
const char *aqs_candidates_name(aqs_candidates c) { return candidates_names[c]; }
const char *aqs_order_name(aqs_order o) { return order_names[o]; }

/* ---- one parser per key ---- */

/* A key whose value is one of names[], stored as its index in r->field (of enum type T). */
#define ENUM_KEY(fn, field, T, names)                \
  static int fn(const char *v, aqs_recipe *r) {      \
    int x;                                           \
    if (!parse_enum(v, ENUM(names), &x)) return 0;   \
    r->field = (T)x;                                 \
    return 1;                                        \
  }

static int k_description(const char *v, aqs_recipe *r) { return copy_text(v, r->description, sizeof r->description); }
ENUM_KEY(k_modality, modality, aqs_modality, modality_names)
static int k_samples(const char *v, aqs_recipe *r) { return parse_int(v, 1, 1000000, &r->calib_samples); }
static int k_max_len(const char *v, aqs_recipe *r) { return parse_int(v, 2, 1 << 20, &r->max_len); }
static int k_seed(const char *v, aqs_recipe *r) { return parse_int(v, 0, INT64_MAX, &r->seed); }
static int k_template(const char *v, aqs_recipe *r) {
  int x;
  return parse_enum(v, ENUM(template_names), &x) && copy_text(v, r->template_name, sizeof r->template_name);
}
static int k_chunk(const char *v, aqs_recipe *r) { return parse_int(v, 1, 1 << 16, &r->chunk_sequences); }
static int k_algorithm(const char *v, aqs_recipe *r) {
  (void)r;
  return strcmp(v, "max") == 0;
}
static int k_method(const char *v, aqs_recipe *r) { return aqs_sens_method_parse(v, &r->method, NULL) == AQS_OK; }
static int k_score_samples(const char *v, aqs_recipe *r) { return parse_int(v, 1, 1000000, &r->score_samples); }
ENUM_KEY(k_scope, scope, aqs_qwen_scope, scope_names)
static int k_candidates(const char *v, aqs_recipe *r) {
  int x;
  /* "visual.*" / "lm.*", as the group ids read, or the bare words */
  char word[16];
  snprintf(word, sizeof word, "%.*s", (int)strcspn(v, "."), v);
  if (strcmp(v, word) != 0 && strcmp(v + strlen(word), ".*") != 0) return 0;
  if (!parse_enum(word, ENUM(candidates_names), &x)) return 0;
  r->candidates = (aqs_candidates)x;
  return 1;
}
static int k_formats(const char *v, aqs_recipe *r) {
  (void)r;
  return strcmp(v, "fp8") == 0;
}
static int k_disabled(const char *v, aqs_recipe *r) { return copy_text(v, r->disabled, sizeof r->disabled); }
static int k_coverage(const char *v, aqs_recipe *r) {
  if (!parse_real(v, 0.0, 1.0, &r->coverage)) return 0;
  r->budget_mode = false;
  return 1;
}
static int k_effective_bits(const char *v, aqs_recipe *r) {
  if (!parse_real(v, 8.0, 16.0, &r->effective_bits)) return 0;
  r->budget_mode = true;
  return 1;
}
ENUM_KEY(k_order, order, aqs_order, order_names)
static int k_order_seed(const char *v, aqs_recipe *r) { return parse_int(v, 0, INT64_MAX, &r->order_seed); }
static int k_format(const char *v, aqs_recipe *r) {
  int x;
  return parse_enum(v, ENUM(export_names), &x) &&
         copy_text(x == 1 ? export_names[0] : v, r->export_format, sizeof r->export_format);
}
static int k_kv_cache(const char *v, aqs_recipe *r) {
  if (strcmp(v, "fp8") != 0 && strcmp(v, "bf16") != 0) return 0;
  r->kv_cache_fp8 = strcmp(v, "fp8") == 0;
  return 1;
}
static int k_eval_samples(const char *v, aqs_recipe *r) { return parse_int(v, 1, 1000000, &r->eval_samples); }

/* ---- the table ---- */

static const aqs_recipe_key table[] = {
    {"recipe", "extends", "a recipe name", NULL, "recipe", "the recipe whose keys this one starts from", NULL},
    {"recipe", "description", "text", "", "recipe", "one line for aqs ls --recipes", k_description},
    {"calib", "modality", "captions or images", "captions", "calib-set",
     "calibration data: a caption file, or image+caption JSONL rows", k_modality},
    {"calib", "samples", "an integer 1..1000000", "512", "calib-set", "sequences in the calib set", k_samples},
    {"calib", "max_len", "an integer 2..1048576", "512", "calib-set",
     "tokens per sequence at most (also a param of every compute stage)", k_max_len},
    {"calib", "seed", "a non-negative integer", "0", "calib-set", "seed of the sample order", k_seed},
    {"calib", "template", "none or chat", "none", "calib-set", "prompt template around each caption", k_template},
    {"calib", "chunk_sequences", "an integer 1..65536", "8", "calib-set",
     "sequences per chunk: the unit of the chunked compute actions", k_chunk},
    {"calibrate", "algorithm", "max", "max", "calibrate", "amax = the largest absolute value over the calib set", k_algorithm},
    {"sensitivity", "method", "gradient or kl_div", "gradient", "sensitivity",
     "gradient: Fisher-weighted output error; kl_div: KL of the output, forward only", k_method},
    {"sensitivity", "score_samples", "an integer 1..1000000, at most samples", "128", "sensitivity",
     "sequences scored: the calib set's first chunks covering them", k_score_samples},
    {"sensitivity", "scope", "lm_only or all_layers", "lm_only", "sensitivity",
     "candidate groups: the language model's, or the vision tower's too", k_scope},
    {"sensitivity", "candidates", "all, mlp, attn, visual.* or lm.*", "all", "slice",
     "which groups may go to FP8: kinds, or one tower's", k_candidates},
    {"slice", "candidates", "all, mlp, attn, visual.* or lm.*", "all", "slice",
     "the same setting as [sensitivity] candidates", k_candidates},
    {"sensitivity", "formats", "fp8", "fp8", "sensitivity", "formats scored per group", k_formats},
    {"sensitivity", "disabled", "comma-separated globs", "*lm_head*,*embed_tokens*,*norm*,*patch_embed*", "slice",
     "module names kept BF16 (fnmatch over each group's members)", k_disabled},
    {"slice", "coverage", "a fraction 0..1", "1.0", "slice",
     "coverage mode: round-half-up(coverage x candidates) groups to FP8", k_coverage},
    {"slice", "effective_bits", "bits in 8..16", NULL, "slice",
     "budget mode (instead of coverage): least total score within this many bits per weight", k_effective_bits},
    {"slice", "order", "least_sensitive_first, most_sensitive_first or random", "least_sensitive_first", "slice",
     "coverage mode: which groups go to FP8 first", k_order},
    {"slice", "order_seed", "a non-negative integer", "0", "slice", "seed of the random order", k_order_seed},
    {"export", "format", "modelopt_fp8 (or modelopt), modelopt_mixed or compressed_tensors", "modelopt_fp8", "export",
     "checkpoint metadata form (same FP8 codes and scales; docs/vision.md)", k_format},
    {"export", "kv_cache", "bf16 or fp8", "bf16", "export",
     "fp8: FP8 KV cache scales (calibrate then keeps the K/V amax)", k_kv_cache},
    {"eval", "samples", "an integer 1..1000000", NULL, "eval",
     "the build evaluates the checkpoint on this many held-out captions (docs/eval.md)", k_eval_samples},
};

const aqs_recipe_key *aqs_recipe_keys(size_t *n_out) {
  *n_out = sizeof table / sizeof table[0];
  return table;
}

const aqs_recipe_key *aqs_recipe_key_in(const char *section, const char *key) {
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (strcmp(table[i].section, section) == 0 && strcmp(table[i].key, key) == 0) return &table[i];
  return NULL;
}

const aqs_recipe_key *aqs_recipe_key_find(const char *dotted) {
  const char *dot = strchr(dotted, '.');
  char section[32];
  if (!dot || (size_t)(dot - dotted) >= sizeof section) return NULL;
  snprintf(section, sizeof section, "%.*s", (int)(dot - dotted), dotted);
  return aqs_recipe_key_in(section, dot + 1);
}

void aqs_recipe_key_defaults(aqs_recipe *r) {
  memset(r, 0, sizeof *r);
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (table[i].def && table[i].apply) table[i].apply(table[i].def, r);
  r->effective_bits = 16.0; /* unused in coverage mode; the no-op budget */
}

char *aqs_recipe_keys_markdown(void) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return NULL;
  fprintf(f, "| section | key | type | default | stage | meaning |\n| --- | --- | --- | --- | --- | --- |\n");
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    const aqs_recipe_key *k = &table[i];
    fprintf(f, "| [%s] | `%s` | %s | %s%s%s | %s | %s |\n", k->section, k->key, k->type,
            k->def && *k->def ? "`" : "", !k->def ? "(unset)" : *k->def ? k->def : "(empty)",
            k->def && *k->def ? "`" : "", k->stage, k->doc);
  }
  fclose(f);
  return buf;
}
