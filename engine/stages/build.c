/* engine/stages/build.c: the build: one function per stage of DESIGN.md §2, each a cached action
 * (stage.h), chained by digests; chunked stages (calibrate, sensitivity) run one action per
 * calib-set chunk plus a reduce in chunk order, so results are the same bits however the chunks
 * were computed, and an interrupted build resumes at the first missing chunk. */
#include "engine/stages/build.h"
#include "engine/stages/build_names.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"
#include "common/path.h"
#include "common/progress.h"
#include "engine/calib/calib_stage.h"
#include "engine/compute/calibrate.h"
#include "engine/compute/sensitivity.h"
#include "engine/export/export.h"
#include "engine/stages/ckpt_store.h"
#include "engine/stages/family.h"
#include "engine/stages/report.h"
#include "engine/stages/slice.h"
#include "engine/stages/source.h"
#include "kernels/backend.h"

const char *const aqs_build_stage_names[AQS_BUILD_STAGES] = {"source", "calib-set", "calibrate",
                                                             "sensitivity", "slice", "export"};
enum { ST_SOURCE, ST_CALIB, ST_CALIBRATE, ST_SENS, ST_SLICE, ST_EXPORT };

/* Stage versions: bump one when its output bytes would change for the same key. */
#define V_CALIBRATE "1"
#define V_CALIBRATE_KV "1"
#define V_SENSITIVITY "1"
#define V_SLICE "1"
#define V_EXPORT "1"
#define COMPUTE_PRECISION AQS_PREC_F32

/* What one build shares across recipes: the model description and, once a compute stage
 * misses, the backend with the loaded model. */
typedef struct build_env {
  const aqs_build_opts *o;
  aqs_store *s;
  aqs_qwen_model *model;
  aqs_backend *be;
  aqs_lm *lm;
  aqs_digest lm_amax;   /* amax table currently set in lm */
  int lm_amax_set;
} build_env;

static const char *backend_name(const build_env *b) { return b->o->backend ? b->o->backend : "cpu"; }

static json_t *jdigest(const aqs_digest *d) {
  char hex[AQS_DIGEST_STR_SIZE];
  return json_string(aqs_digest_str(d, hex));
}

static aqs_status put_text(aqs_store *s, const char *text, size_t len, aqs_digest *out, aqs_err *e) {
  aqs_put_opts opts = {.compress = AQS_COMPRESS_ZSTD};
  aqs_put_info info;
  aqs_status st = aqs_put_mem(s, text, len, &opts, &info, e);
  if (!st) *out = info.digest;
  return st;
}

static aqs_status get_text(aqs_store *s, const aqs_digest *d, char **text, size_t *len, aqs_err *e) {
  *text = NULL;
  *len = 0;
  void *bytes;
  aqs_status st = aqs_get_mem(s, d, &bytes, len, e);
  if (st) return st;
  char *t = realloc(bytes, *len + 1);
  if (!t) {
    free(bytes);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  t[*len] = '\0';
  *text = t;
  return AQS_OK;
}

/* Loads the model on the backend (once per build, on the first compute miss). */
static aqs_status ensure_lm(build_env *b, aqs_err *e) {
  if (b->lm) return AQS_OK;
  aqs_status st = aqs_backend_open(backend_name(b), COMPUTE_PRECISION, &b->be, e);
  if (!st) st = aqs_lm_load(b->be, b->o->model_dir, &b->lm, e);
  return st;
}

static json_t *compute_params(const build_env *b, const aqs_recipe *r) {
  return json_pack("{s:s, s:s, s:I}", "backend", backend_name(b), "precision",
                   aqs_precision_name(COMPUTE_PRECISION), "max_len", (json_int_t)r->max_len);
}

/* Finishes a lookup in dry-run mode: the reason of a miss. */
static aqs_status explain_miss(build_env *b, aqs_stage_ctx *ctx, aqs_stage_outcome *out, aqs_err *e) {
  return aqs_stage_miss_reason(b->s, ctx->stage, ctx->key_doc, out->reason, sizeof out->reason, e);
}

/* Looks a stage up (taking ownership of inputs and params). *done = 1 when nothing is left to do:
 * a hit (out->result set), or a dry run (out->reason explains the miss); ctx is then freed. */
static aqs_status open_stage(build_env *b, const char *stage, const char *version, json_t *inputs, json_t *params,
                             aqs_stage_ctx *ctx, aqs_stage_outcome *out, int *done, aqs_err *e) {
  aqs_status st = aqs_stage_lookup(b->s, stage, version, inputs, params, ctx, e);
  json_decref(inputs);
  json_decref(params);
  *done = 1;
  if (st) return st;
  out->key = ctx->key;
  out->hit = ctx->hit;
  if (ctx->hit) out->result = ctx->result;
  else if (b->o->dry_run) st = explain_miss(b, ctx, out, e);
  else *done = 0;
  if (*done) aqs_stage_ctx_free(ctx);
  return st;
}

/* Stores a miss's result text and records the action (the caller frees ctx). */
static aqs_status close_stage(build_env *b, aqs_stage_ctx *ctx, const char *text, aqs_stage_outcome *out,
                              aqs_err *e) {
  aqs_digest d;
  aqs_status st = put_text(b->s, text, strlen(text), &d, e);
  if (!st) st = aqs_stage_record(b->s, ctx, &d, e);
  if (!st) out->result = d;
  return st;
}

/* ---- calib-set ---- */

static aqs_status stage_calib_set(build_env *b, const aqs_recipe *r, aqs_stage_outcome *out, aqs_err *e) {
  char tokenizer[4200], processor[4200];
  snprintf(tokenizer, sizeof tokenizer, "%s/tokenizer.json", b->o->model_dir);
  snprintf(processor, sizeof processor, "%s/preprocessor_config.json", b->o->model_dir);
  aqs_calib_opts co = {0};
  if (r->modality == AQS_MODALITY_IMAGES) {
    co.images_jsonl = b->o->images_path;
    co.images_root = b->o->images_root;
    co.allow_outside_root = b->o->allow_outside_root;
  } else {
    co.captions_path = b->o->captions_path;
  }
  co.tokenizer_path = tokenizer;
  co.processor_config = access(processor, R_OK) == 0 ? processor : NULL;
  co.samples = r->calib_samples;
  co.seed = (uint64_t)r->seed;
  co.max_len = (int32_t)r->max_len;
  co.template_name = r->template_name;
  co.chunk_seqs = (int32_t)r->chunk_sequences;
  co.lookup_only = b->o->dry_run;
  co.progress = b->o->progress;
  aqs_calib_result cr;
  memset(&cr, 0, sizeof cr);
  aqs_status st = aqs_calib_build(b->s, &co, &cr, e);
  if (!st) {
    out->hit = cr.hit;
    out->key = cr.key;
    out->result = cr.digest;
    if (!cr.hit && b->o->dry_run && cr.key_doc)
      st = aqs_stage_miss_reason(b->s, AQS_CALIB_STAGE_NAME, cr.key_doc, out->reason, sizeof out->reason, e);
  }
  aqs_calib_result_free(&cr);
  return st;
}

static aqs_status load_calib_set(build_env *b, const aqs_digest *d, aqs_calib_set *set, aqs_err *e) {
  return aqs_calib_set_load(b->s, d, set, e);
}

/* ---- chunked compute stages ---- */

/* Sets the calibrated input amax in the loaded model (once per amax table). */
static aqs_status ensure_amax(build_env *b, const aqs_digest *amax, aqs_err *e) {
  if (b->lm_amax_set && aqs_digest_eq(&b->lm_amax, amax)) return AQS_OK;
  char *text = NULL;
  size_t len = 0;
  aqs_status st = get_text(b->s, amax, &text, &len, e);
  if (st) return st;
  aqs_amax_table t = {0};
  char what[AQS_DIGEST_STR_SIZE];
  st = aqs_amax_from_json(text, len, aqs_digest_str(amax, what), &t, e);
  free(text);
  if (!st) st = aqs_lm_set_amax(b->lm, &t, e);
  aqs_amax_free(&t);
  if (!st) {
    b->lm_amax = *amax;
    b->lm_amax_set = 1;
  }
  return st;
}

typedef enum { CHUNK_CALIBRATE, CHUNK_SENSITIVITY } chunk_kind;

/* Runs (or reuses) one chunk action; on a miss computes it. *text_out is the chunk result JSON. */
static aqs_status run_chunk(build_env *b, const aqs_recipe *r, chunk_kind kind, const aqs_digest *source,
                            const aqs_calib_set *set, int32_t chunk_index, const aqs_digest *amax, char **text_out,
                            size_t *len_out, aqs_err *e) {
  const char *chunk_digest = set->chunk_digests[chunk_index];
  json_t *inputs = json_pack("{s:o, s:s}", "source", jdigest(source), "chunk", chunk_digest);
  json_t *params = compute_params(b, r);
  if (kind == CHUNK_SENSITIVITY) {
    json_object_set_new(inputs, "amax", jdigest(amax));
    json_object_set_new(params, "method", json_string(aqs_method_name(r->method)));
  }
  const char *stage = kind == CHUNK_CALIBRATE ? "calibrate-chunk" : "sensitivity-chunk";
  aqs_stage_ctx ctx;
  aqs_status st = aqs_stage_lookup(b->s, stage, kind == CHUNK_CALIBRATE ? V_CALIBRATE : V_SENSITIVITY, inputs,
                                   params, &ctx, e);
  json_decref(inputs);
  json_decref(params);
  if (!st && ctx.hit) {
    st = get_text(b->s, &ctx.result, text_out, len_out, e);
  } else if (!st) {
    aqs_calib_chunk chunk = {0};
    aqs_token_batch batch;
    st = aqs_calib_chunk_load(b->s, set, chunk_index, &chunk, e);
    if (!st) st = aqs_token_batch_of_chunk(&chunk, &batch, e);
    if (!st) st = ensure_lm(b, e);
    if (!st && kind == CHUNK_SENSITIVITY) st = ensure_amax(b, amax, e);
    if (!st && kind == CHUNK_CALIBRATE) {
      aqs_amax_table t = {0};
      st = aqs_calibrate_batch(b->lm, &batch, (int)r->max_len, &t, e);
      if (!st) st = aqs_amax_to_json(&t, text_out, e);
      aqs_amax_free(&t);
    } else if (!st) {
      aqs_sens_method m = r->method == AQS_RECIPE_KL_DIV ? AQS_SENS_KL_DIV : AQS_SENS_GRADIENT;
      aqs_scores sc = {0};
      st = aqs_sensitivity_batch(b->lm, &batch, m, (int)r->max_len, &sc, NULL, e);
      sc.device[0] = '\0'; /* provenance, not content: the stored bytes must not name the machine */
      if (!st) st = aqs_scores_to_json(&sc, text_out, e);
      aqs_scores_free(&sc);
    }
    if (!st) {
      *len_out = strlen(*text_out);
      aqs_digest d;
      st = put_text(b->s, *text_out, *len_out, &d, e);
      if (!st) st = aqs_stage_record(b->s, &ctx, &d, e);
      if (st) free(*text_out);
    }
    aqs_calib_chunk_free(&chunk);
  }
  aqs_stage_ctx_free(&ctx);
  if (st) aqs_err_prefix(e, "%s of chunk %.19s", stage, chunk_digest);
  return st;
}

static aqs_status stage_calibrate(build_env *b, const aqs_recipe *r, const aqs_digest *source,
                                  const aqs_digest *calib, aqs_stage_outcome *out, aqs_err *e) {
  json_t *inputs = json_pack("{s:o, s:o}", "source", jdigest(source), "calib_set", jdigest(calib));
  json_t *params = compute_params(b, r);
  json_object_set_new(params, "algorithm", json_string("max"));
  aqs_stage_ctx ctx;
  int done;
  aqs_status st = open_stage(b, "calibrate", V_CALIBRATE, inputs, params, &ctx, out, &done, e);
  if (done) return st;
  aqs_calib_set set = {0};
  st = load_calib_set(b, calib, &set, e);
  aqs_amax_table *parts = calloc((size_t)set.n_chunks + 1, sizeof *parts);
  const aqs_amax_table **part_ptrs = calloc((size_t)set.n_chunks + 1, sizeof *part_ptrs);
  aqs_progress *p = b->o->progress ? aqs_progress_start("calibrate", (uint64_t)set.n_tokens, "tok") : NULL;
  for (int32_t i = 0; !st && i < set.n_chunks; i++) {
    char *text = NULL;
    size_t len = 0;
    st = run_chunk(b, r, CHUNK_CALIBRATE, source, &set, i, NULL, &text, &len, e);
    if (st) break;
    st = aqs_amax_from_json(text, len, set.chunk_digests[i], &parts[i], e);
    free(text);
    part_ptrs[i] = &parts[i];
    aqs_progress_add(p, (uint64_t)parts[i].n_tokens);
  }
  if (st) aqs_progress_abort(p);
  else aqs_progress_finish(p);
  aqs_amax_table total = {0};
  char *text = NULL;
  if (!st) st = aqs_amax_reduce(part_ptrs, (size_t)set.n_chunks, &total, e);
  if (!st) st = aqs_amax_to_json(&total, &text, e);
  if (!st) st = close_stage(b, &ctx, text, out, e);
  free(text);
  aqs_amax_free(&total);
  for (int32_t i = 0; i < set.n_chunks; i++) aqs_amax_free(&parts[i]);
  free(parts);
  free(part_ptrs);
  aqs_calib_set_free(&set);
  aqs_stage_ctx_free(&ctx);
  return st;
}

static aqs_status stage_sensitivity(build_env *b, const aqs_recipe *r, const aqs_digest *source,
                                    const aqs_digest *calib, const aqs_digest *amax, aqs_stage_outcome *out,
                                    aqs_err *e) {
  if (r->scope == AQS_SCOPE_ALL_LAYERS)
    return aqs_errf(e, AQS_ERR_UNSUPPORTED,
                    "recipe %s: scope all_layers needs vision-tower sensitivity, which this version does not "
                    "compute (use an lm_only recipe)", r->name);
  json_t *inputs = json_pack("{s:o, s:o, s:o}", "source", jdigest(source), "calib_set", jdigest(calib), "amax",
                             jdigest(amax));
  json_t *params = compute_params(b, r);
  json_object_set_new(params, "method", json_string(aqs_method_name(r->method)));
  json_object_set_new(params, "score_samples", json_integer(r->score_samples));
  json_object_set_new(params, "scope", json_string(aqs_qwen_scope_name(r->scope)));
  aqs_stage_ctx ctx;
  int done;
  aqs_status st = open_stage(b, "sensitivity", V_SENSITIVITY, inputs, params, &ctx, out, &done, e);
  if (done) return st;
  aqs_calib_set set = {0};
  st = load_calib_set(b, calib, &set, e);
  /* Scoring uses the calib set's first chunks covering score_samples sequences: the sample
   * order is prefix-stable, so these are the same sequences whatever calib_samples is. */
  int32_t n_chunks = set.chunk_seqs > 0 ? (int32_t)((r->score_samples + set.chunk_seqs - 1) / set.chunk_seqs) : 0;
  if (n_chunks > set.n_chunks) n_chunks = set.n_chunks;
  aqs_scores *parts = calloc((size_t)n_chunks + 1, sizeof *parts);
  const aqs_scores **part_ptrs = calloc((size_t)n_chunks + 1, sizeof *part_ptrs);
  aqs_progress *p = b->o->progress ? aqs_progress_start("sensitivity", (uint64_t)n_chunks, "chunk") : NULL;
  for (int32_t i = 0; !st && i < n_chunks; i++) {
    char *text = NULL;
    size_t len = 0;
    st = run_chunk(b, r, CHUNK_SENSITIVITY, source, &set, i, amax, &text, &len, e);
    if (st) break;
    st = aqs_scores_from_json(text, len, set.chunk_digests[i], &parts[i], e);
    free(text);
    part_ptrs[i] = &parts[i];
    aqs_progress_add(p, 1);
  }
  if (st) aqs_progress_abort(p);
  else aqs_progress_finish(p);
  aqs_scores total = {0};
  char *text = NULL;
  if (!st) st = aqs_scores_reduce(part_ptrs, (size_t)n_chunks, &total, e);
  total.device[0] = '\0';
  if (!st) st = aqs_scores_to_json(&total, &text, e);
  if (!st) st = close_stage(b, &ctx, text, out, e);
  free(text);
  aqs_scores_free(&total);
  for (int32_t i = 0; i < n_chunks; i++) aqs_scores_free(&parts[i]);
  free(parts);
  free(part_ptrs);
  aqs_calib_set_free(&set);
  aqs_stage_ctx_free(&ctx);
  return st;
}

/* ---- slice ---- */

static int group_is_candidate(const aqs_qwen_group *g, const aqs_recipe *r) {
  if (!aqs_qwen_group_in_scope(g, r->scope)) return 0;
  int attn = strcmp(g->kind, "qkv") == 0 || strcmp(g->kind, "o") == 0 || strcmp(g->kind, "proj") == 0;
  if (r->candidates == AQS_CANDIDATES_MLP && attn) return 0;
  if (r->candidates == AQS_CANDIDATES_ATTN && !attn) return 0;
  char patterns[AQS_RECIPE_TEXT_MAX];
  snprintf(patterns, sizeof patterns, "%s", r->disabled);
  for (int m = 0; m < g->nmembers; m++) {
    char *save = NULL;
    char copy[AQS_RECIPE_TEXT_MAX];
    memcpy(copy, patterns, sizeof copy);
    for (char *pat = strtok_r(copy, ",", &save); pat; pat = strtok_r(NULL, ",", &save)) {
      while (*pat == ' ') pat++;
      if (*pat && fnmatch(pat, g->members[m].module, 0) == 0) return 0;
    }
  }
  return 1;
}

static json_t *slice_params(const aqs_recipe *r) {
  json_t *p = json_pack("{s:s, s:s, s:s, s:s}", "scope", aqs_qwen_scope_name(r->scope), "candidates",
                        aqs_candidates_name(r->candidates), "disabled", r->disabled, "mode",
                        r->budget_mode ? "effective_bits" : "coverage");
  if (r->budget_mode) {
    json_object_set_new(p, "effective_bits", json_real(r->effective_bits));
  } else {
    json_object_set_new(p, "coverage", json_real(r->coverage));
    json_object_set_new(p, "order", json_string(aqs_order_name(r->order)));
    if (r->order == AQS_ORDER_RANDOM) json_object_set_new(p, "order_seed", json_integer(r->order_seed));
  }
  return p;
}

static aqs_status stage_slice(build_env *b, const aqs_recipe *r, const aqs_digest *source, const aqs_digest *sens,
                              aqs_stage_outcome *out, aqs_build_report *rep, aqs_err *e) {
  json_t *inputs = json_pack("{s:o, s:o}", "source", jdigest(source), "sensitivity", jdigest(sens));
  json_t *params = slice_params(r);
  aqs_stage_ctx ctx;
  aqs_status st = aqs_stage_lookup(b->s, "slice", V_SLICE, inputs, params, &ctx, e);
  json_decref(inputs);
  json_decref(params);
  if (st) return st;
  out->key = ctx.key;
  out->hit = ctx.hit;
  if (b->o->dry_run && !ctx.hit) {
    st = explain_miss(b, &ctx, out, e);
    aqs_stage_ctx_free(&ctx);
    return st;
  }
  /* Even on a hit the decision is recomputed for the report: it is cheap and pure. */
  char *text = NULL;
  size_t len = 0;
  aqs_scores sc = {0};
  st = get_text(b->s, sens, &text, &len, e);
  if (!st) {
    char what[AQS_DIGEST_STR_SIZE];
    st = aqs_scores_from_json(text, len, aqs_digest_str(sens, what), &sc, e);
    free(text);
  }
  size_t n = b->model->ngroups;
  aqs_slice_group *groups = calloc(n + 1, sizeof *groups);
  const aqs_qwen_group **qg = calloc(n + 1, sizeof *qg);
  bool *fp8 = calloc(n + 1, sizeof *fp8);
  size_t m = 0;
  for (size_t i = 0; !st && i < n; i++) {
    const aqs_qwen_group *g = &b->model->groups[i];
    if (!aqs_qwen_group_in_scope(g, r->scope)) continue;
    const aqs_group_score *gs = NULL;
    for (size_t k = 0; k < sc.ngroups && !gs; k++)
      if (strcmp(sc.groups[k].id, g->id) == 0) gs = &sc.groups[k];
    if (!gs) {
      st = aqs_errf(e, AQS_ERR_NOT_FOUND, "slice: no sensitivity score for group %s", g->id);
      break;
    }
    qg[m] = g;
    groups[m++] = (aqs_slice_group){.id = g->id, .score = gs->score, .weight_params = (int64_t)g->weight_params,
                                    .bias_params = (int64_t)g->bias_params, .n_modules = g->nmembers,
                                    .candidate = group_is_candidate(g, r)};
  }
  aqs_slice_params sp = {.budget_mode = r->budget_mode, .coverage = r->coverage, .effective_bits = r->effective_bits,
                         .order = r->order, .order_seed = (uint64_t)r->order_seed};
  aqs_slice_result res;
  if (!st) st = aqs_slice_decide(groups, m, &sp, fp8, &res, e);
  aqs_plan *plan = NULL;
  if (!st) {
    plan = aqs_plan_new();
    snprintf(plan->scope, sizeof plan->scope, "%s", aqs_qwen_scope_name(r->scope));
    for (size_t i = 0; !st && i < m; i++) {
      st = aqs_plan_set(plan, groups[i].id, fp8[i] ? AQS_FMT_FP8 : AQS_FMT_BF16, e);
      if (!st) st = aqs_plan_set_score(plan, groups[i].id, groups[i].score, e);
    }
    rep->n_groups = res.n_groups;
    rep->n_candidates = res.n_candidates;
    rep->n_fp8 = res.n_fp8;
    rep->effective_bits = res.effective_bits;
  }
  if (!st && !ctx.hit) {
    char *pj = aqs_plan_to_json(plan);
    aqs_digest d;
    st = pj ? put_text(b->s, pj, strlen(pj), &d, e) : aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
    free(pj);
    if (!st) st = aqs_stage_record(b->s, &ctx, &d, e);
  }
  if (!st) out->result = ctx.result;
  aqs_plan_free(plan);
  free(groups);
  free(qg);
  free(fp8);
  aqs_scores_free(&sc);
  aqs_stage_ctx_free(&ctx);
  return st;
}

/* ---- export ---- */

static aqs_status make_staging_dir(build_env *b, char *out, size_t n, aqs_err *e) {
  snprintf(out, n, "%s/tmp/export-XXXXXX", aqs_store_path(b->s));
  if (!mkdtemp(out)) return aqs_errno(e, AQS_ERR_IO, errno, "creating %s", out);
  return AQS_OK;
}

static aqs_status load_plan_obj(aqs_store *s, const aqs_digest *d, aqs_plan **plan, aqs_err *e) {
  char *text = NULL;
  size_t len = 0;
  aqs_status st = get_text(s, d, &text, &len, e);
  if (st) return st;
  char what[AQS_DIGEST_STR_SIZE];
  st = aqs_plan_parse(text, len, aqs_digest_str(d, what), plan, e);
  free(text);
  return st;
}

/* Test hook (AQS_TEST_BREAK_EXPORT): flips the last byte of a shard file (the last tensor of
 * layer 0), so the family check has something to catch. A broken export writes files (no shard
 * sink) so there is a file to flip, and it is never recorded as the export's result. */
static aqs_status break_export(const char *path, aqs_err *e) {
  FILE *f = fopen(path, "r+b");
  if (!f) return aqs_errno(e, AQS_ERR_IO, errno, "test hook: %s", path);
  fseek(f, -1, SEEK_END);
  int c = fgetc(f);
  fseek(f, -1, SEEK_END);
  fputc(c ^ 0x01, f);
  fclose(f);
  return AQS_OK;
}

/* Source tensor digests from the source stage's manifest ("tensors" in name order), so the
 * exporter need not hash tensors it copies unchanged. */
static int source_digest_of(void *ctx, const char *name, aqs_digest *out) {
  const json_t *tensors = ctx;
  size_t lo = 0, hi = json_array_size(tensors);
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    const json_t *t = json_array_get(tensors, mid);
    int c = strcmp(json_string_value(json_array_get(t, 0)), name);
    if (c == 0) return aqs_digest_parse(json_string_value(json_array_get(t, 3)), out, NULL) == AQS_OK;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return 0;
}

typedef struct export_sink {
  aqs_ckpt_builder *builder;
  int broken;        /* test hook armed for this export */
} export_sink;

/* Shards go straight into the store from the exporter's memory: no shard file is written. */
static aqs_status sink_shard(void *ctx, const aqs_export_shard *shard, aqs_digest *file_digest, aqs_err *e) {
  export_sink *sink = ctx;
  aqs_ckpt_mem_tensor *t = calloc(shard->ntensors + 1, sizeof *t);
  if (!t) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < shard->ntensors; i++)
    t[i] = (aqs_ckpt_mem_tensor){shard->tensors[i].name, shard->tensors[i].digest, shard->tensors[i].data,
                                 shard->tensors[i].nbytes};
  aqs_status st = aqs_ckpt_builder_add_shard_mem(sink->builder, shard->name, shard->header, shard->header_bytes, t,
                                                 shard->ntensors, file_digest, e);
  free(t);
  return st;
}

static aqs_status sink_file(void *ctx, const char *path, const aqs_export_file *file, aqs_err *e) {
  export_sink *sink = ctx;
  aqs_status st = AQS_OK;
  if (sink->broken && strcmp(file->name, "model-layers-000.safetensors") == 0) st = break_export(path, e);
  if (!st) st = aqs_ckpt_builder_add(sink->builder, path, file->name, e);
  unlink(path);
  return st;
}

static int digest_is_zero(const aqs_digest *d) {
  static const aqs_digest zero;
  return aqs_digest_eq(d, &zero);
}

/* FP8 KV cache: the amax of K (after RoPE) and V per layer over the calib set, as an amax table
 * of "<layer>.self_attn.k_cache" / "v_cache" entries (one cached action, not chunked: only
 * kv_cache = fp8 recipes run it, so the calibrate stage and everything keyed on it is shared
 * with their BF16-cache twins). */
static aqs_status stage_kv_calibrate(build_env *b, const aqs_recipe *r, const aqs_digest *source,
                                     const aqs_digest *calib, aqs_digest *out, aqs_err *e) {
  json_t *inputs = json_pack("{s:o, s:o}", "source", jdigest(source), "calib_set", jdigest(calib));
  json_t *params = compute_params(b, r);
  aqs_stage_ctx ctx;
  aqs_status st = aqs_stage_lookup(b->s, "calibrate-kv", V_CALIBRATE_KV, inputs, params, &ctx, e);
  json_decref(inputs);
  json_decref(params);
  if (st || ctx.hit || b->o->dry_run) { /* a dry run's miss: *out stays zero */
    if (!st && ctx.hit) *out = ctx.result;
    aqs_stage_ctx_free(&ctx);
    return st;
  }
  aqs_calib_set set = {0};
  aqs_amax_table kv = {0};
  st = load_calib_set(b, calib, &set, e);
  if (!st) st = ensure_lm(b, e);
  aqs_progress *p = b->o->progress && !st ? aqs_progress_start("calibrate kv", (uint64_t)set.n_tokens, "tok") : NULL;
  for (int32_t i = 0; !st && i < set.n_chunks; i++) {
    aqs_calib_chunk chunk = {0};
    aqs_token_batch batch;
    aqs_amax_table part = {0}, next = {0};
    st = aqs_calib_chunk_load(b->s, &set, i, &chunk, e);
    if (!st) st = aqs_token_batch_of_chunk(&chunk, &batch, e);
    if (!st) st = aqs_calibrate_batch_kv(b->lm, &batch, (int)r->max_len, 1, &part, e);
    const aqs_amax_table *parts[2] = {&kv, &part};
    if (!st) st = aqs_amax_reduce(parts, 2, &next, e);
    if (!st) {
      aqs_amax_free(&kv);
      kv = next;
      aqs_progress_add(p, (uint64_t)part.n_tokens);
    }
    aqs_amax_free(&part);
    aqs_calib_chunk_free(&chunk);
  }
  if (st) aqs_progress_abort(p);
  else aqs_progress_finish(p);
  aqs_amax_table only = {.n_tokens = kv.n_tokens, .n_seqs = kv.n_seqs};
  for (size_t i = 0; !st && i < kv.n; i++)
    if (kv.entries[i].weight_amax == 0.0f && strstr(kv.entries[i].module, "_cache"))
      st = aqs_amax_set(&only, kv.entries[i].module, kv.entries[i].input_amax, 0.0f, e);
  char *text = NULL;
  if (!st) st = aqs_amax_to_json(&only, &text, e);
  aqs_digest d;
  if (!st) st = put_text(b->s, text, strlen(text), &d, e);
  if (!st) st = aqs_stage_record(b->s, &ctx, &d, e);
  if (!st) *out = d;
  free(text);
  aqs_amax_free(&only);
  aqs_amax_free(&kv);
  aqs_calib_set_free(&set);
  aqs_stage_ctx_free(&ctx);
  return st;
}

static aqs_status stage_export(build_env *b, const aqs_recipe *r, const aqs_digest *source, const aqs_digest *calib,
                               const aqs_digest *amax, const aqs_digest *plan_d, aqs_stage_outcome *out, aqs_err *e) {
  json_t *inputs = json_pack("{s:o, s:o, s:o}", "source", jdigest(source), "amax", jdigest(amax), "plan",
                             jdigest(plan_d));
  json_t *params = json_pack("{s:s, s:s}", "format", r->export_format, "layout", "block");
  aqs_digest kv_amax;
  memset(&kv_amax, 0, sizeof kv_amax);
  if (r->kv_cache_fp8) { /* keys of BF16-cache exports stay as they were */
    aqs_status kst = stage_kv_calibrate(b, r, source, calib, &kv_amax, e);
    if (!kst && b->o->dry_run && digest_is_zero(&kv_amax)) {
      out->hit = 0;
      snprintf(out->reason, sizeof out->reason, "the K/V cache amax (calibrate-kv) is not computed yet");
    }
    if (kst || (b->o->dry_run && digest_is_zero(&kv_amax))) {
      json_decref(inputs);
      json_decref(params);
      return kst;
    }
    json_object_set_new(inputs, "kv_amax", jdigest(&kv_amax));
    json_object_set_new(params, "kv_cache", json_string("fp8"));
  }
  aqs_stage_ctx ctx;
  aqs_status st = aqs_stage_lookup(b->s, "export", V_EXPORT, inputs, params, &ctx, e);
  json_decref(inputs);
  json_decref(params);
  if (st) return st;
  int broken = b->o->test_break_recipe && strcmp(b->o->test_break_recipe, r->name) == 0;
  out->key = ctx.key;
  out->hit = ctx.hit && !broken;
  if (out->hit || b->o->dry_run) {
    out->result = ctx.result;
    if (!ctx.hit) st = explain_miss(b, &ctx, out, e);
    aqs_stage_ctx_free(&ctx);
    return st;
  }
  aqs_plan *plan = NULL;
  aqs_amax_table t = {0};
  char *text = NULL;
  size_t len;
  char staging[4096], outdir[4200], amax_str[AQS_DIGEST_STR_SIZE], source_str[AQS_DIGEST_STR_SIZE];
  st = load_plan_obj(b->s, plan_d, &plan, e);
  if (!st) st = get_text(b->s, amax, &text, &len, e);
  if (!st) st = aqs_amax_from_json(text, len, aqs_digest_str(amax, amax_str), &t, e);
  if (!st && r->kv_cache_fp8) { /* the K/V entries join the linears' table */
    char *kv_text = NULL;
    size_t kv_len;
    aqs_amax_table kv = {0}, merged = {0};
    char kv_str[AQS_DIGEST_STR_SIZE];
    st = get_text(b->s, &kv_amax, &kv_text, &kv_len, e);
    if (!st) st = aqs_amax_from_json(kv_text, kv_len, aqs_digest_str(&kv_amax, kv_str), &kv, e);
    const aqs_amax_table *parts[2] = {&t, &kv};
    if (!st) st = aqs_amax_reduce(parts, 2, &merged, e);
    if (!st) {
      aqs_amax_free(&t);
      t = merged;
    }
    aqs_amax_free(&kv);
    free(kv_text);
  }
  if (!st) st = make_staging_dir(b, staging, sizeof staging, e);
  if (!st) {
    snprintf(outdir, sizeof outdir, "%s/ckpt", staging);
    /* Each file goes into the store as soon as the exporter finishes it and is then removed,
     * so staging never holds more than the shards in flight. */
    export_sink sink = {.broken = broken};
    json_t *source_doc = NULL;
    st = aqs_ckpt_load_manifest(b->s, source, "aqs-model", &source_doc, e);
    if (!st) st = aqs_ckpt_builder_new(b->s, &sink.builder, e);
    aqs_export_opts eo = {.model_dir = b->o->model_dir, .amax = &t, .plan = plan, .out_dir = outdir,
                          .source_digest = aqs_digest_str(source, source_str), .amax_digest = amax_str,
                          .progress = b->o->progress, .on_file = sink_file, .on_file_ctx = &sink,
                          .source_tensor_digest = source_digest_of,
                          .source_tensor_digest_ctx = json_object_get(source_doc, "tensors"),
                          .shard_sink = broken ? NULL : sink_shard, .shard_sink_ctx = &sink,
                          .kv_cache_fp8 = r->kv_cache_fp8};
    aqs_export_result res;
    if (!st) st = aqs_export_run(&eo, &res, e);
    if (!st && getenv("AQS_EXPORT_TIMING"))
      fprintf(stderr, "export %s: quantize %.2fs hash %.2fs sink %.2fs total %.2fs\n", r->name, res.seconds_quantize,
              res.seconds_hash, res.seconds_write, res.seconds_total);
    if (!st) aqs_export_result_free(&res);
    aqs_digest ckpt;
    if (!st) {
      st = aqs_ckpt_builder_finish(sink.builder, &ckpt, NULL, e);
      sink.builder = NULL;
    }
    aqs_ckpt_builder_free(sink.builder);
    json_decref(source_doc);
    if (!st && !broken) st = aqs_stage_record(b->s, &ctx, &ckpt, e);
    if (!st) out->result = ckpt;
    aqs_rm_flat_dir(outdir);
    rmdir(staging);
  }
  free(text);
  aqs_amax_free(&t);
  aqs_plan_free(plan);
  aqs_stage_ctx_free(&ctx);
  return st;
}

/* ---- build records and refs ---- */

static json_t *recipe_json(const aqs_recipe *r) {
  json_t *doc = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:I, s:s, s:I, s:s, s:s, s:s}", "modality",
                          aqs_modality_name(r->modality), "description", r->description, "calib_samples",
                          (json_int_t)r->calib_samples, "max_len", (json_int_t)r->max_len, "seed", (json_int_t)r->seed,
                          "template", r->template_name, "chunk_sequences", (json_int_t)r->chunk_sequences, "method",
                          aqs_method_name(r->method), "score_samples", (json_int_t)r->score_samples, "scope",
                          aqs_qwen_scope_name(r->scope), "candidates", aqs_candidates_name(r->candidates),
                          "export_format", r->export_format);
  if (r->kv_cache_fp8) json_object_set_new(doc, "kv_cache", json_string("fp8"));
  json_t *slice = slice_params(r);
  json_object_update(doc, slice);
  json_decref(slice);
  return doc;
}

static aqs_status record_build(build_env *b, const aqs_recipe *r, aqs_build_report *rep, aqs_err *e) {
  json_t *stages = json_object(), *children = json_array();
  for (int i = 0; i < AQS_BUILD_STAGES; i++) {
    json_object_set_new(stages, aqs_build_stage_names[i], jdigest(&rep->stages[i].result));
    json_array_append_new(children, jdigest(&rep->stages[i].result));
  }
  json_t *rj = recipe_json(r);
  json_t *doc = json_pack("{s:s, s:i, s:s, s:o, s:o, s:{s:I, s:I, s:I, s:f}, s:o}", "kind", "aqs-build", "version", 1,
                          "recipe", r->name, "recipe_params", rj, "stages", stages, "summary", "groups",
                          (json_int_t)rep->n_groups, "candidates", (json_int_t)rep->n_candidates, "fp8",
                          (json_int_t)rep->n_fp8, "effective_bits", rep->effective_bits, "children", children);
  aqs_status st = aqs_put_json(b->s, doc, 1, &rep->build_record, e);
  json_decref(doc);
  char ref[AQS_REF_NAME_MAX + 1], msg[128];
  aqs_build_ref_name(r->name, &rep->stages[ST_SOURCE].result, &rep->stages[ST_CALIB].result, ref, sizeof ref);
  snprintf(msg, sizeof msg, "build %s", r->name);
  aqs_digest current;
  aqs_err ignore = {0};
  if (!st && (aqs_ref_get(b->s, ref, &current, &ignore) != AQS_OK || !aqs_digest_eq(&current, &rep->build_record)))
    st = aqs_ref_set(b->s, ref, &rep->build_record, msg, e);
  return st;
}

aqs_status aqs_build_record_load(aqs_store *s, const char *name, aqs_digest *record_out, json_t **doc_out,
                                 aqs_err *e) {
  aqs_build_entry b;
  aqs_status st = aqs_build_resolve(s, name, NULL, &b, e);
  if (st) return st;
  *record_out = b.record;
  *doc_out = b.doc;
  return AQS_OK;
}

aqs_status aqs_build_record_stage(const json_t *doc, const char *stage, aqs_digest *out, aqs_err *e) {
  const char *text = json_string_value(json_object_get(json_object_get(doc, "stages"), stage));
  if (!text) return aqs_errf(e, AQS_ERR_CORRUPT, "build record has no stage %s", stage);
  return aqs_digest_parse(text, out, e);
}

aqs_status aqs_build_sensitivity_docs(aqs_store *s, const json_t *record, char **markdown, char **scores_json,
                                      aqs_err *e) {
  aqs_digest sens, slice;
  char *text = NULL;
  size_t len = 0;
  aqs_scores sc = {0};
  aqs_plan *plan = NULL;
  char what[AQS_DIGEST_STR_SIZE];
  aqs_status st = aqs_build_record_stage(record, "sensitivity", &sens, e);
  if (!st) st = aqs_build_record_stage(record, "slice", &slice, e);
  if (!st) st = get_text(s, &sens, &text, &len, e);
  if (!st) st = aqs_scores_from_json(text, len, aqs_digest_str(&sens, what), &sc, e);
  if (!st) st = load_plan_obj(s, &slice, &plan, e);
  if (!st && markdown) {
    const char *name = json_string_value(json_object_get(record, "recipe"));
    *markdown = aqs_sensitivity_markdown(name ? name : "?", &sc, plan);
    if (!*markdown) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  if (!st && scores_json) {
    *scores_json = text;
    text = NULL;
  }
  free(text);
  aqs_scores_free(&sc);
  aqs_plan_free(plan);
  return st;
}

/* Writes <out_dir>.per-layer-sensitivity.md and <out_dir>.sensitivity.json beside a checkout. */
static aqs_status write_reports(build_env *b, const aqs_build_report *rep, aqs_err *e) {
  json_t *doc;
  aqs_status st = aqs_ckpt_load_manifest(b->s, &rep->build_record, "aqs-build", &doc, e);
  if (st) return st;
  char *md = NULL, *scores = NULL, path[AQS_PATH_MAX];
  st = aqs_build_sensitivity_docs(b->s, doc, &md, &scores, e);
  json_decref(doc);
  if (!st && aqs_path_fmt(path, sizeof path, "%s.per-layer-sensitivity.md", rep->out_dir) == 0)
    st = aqs_file_write_atomic(path, md, strlen(md), e);
  if (!st && aqs_path_fmt(path, sizeof path, "%s.sensitivity.json", rep->out_dir) == 0)
    st = aqs_file_write_atomic(path, scores, strlen(scores), e);
  free(md);
  free(scores);
  return st;
}

/* ---- the whole build ---- */

static const char *calib_name(const build_env *b, const aqs_recipe *r) {
  const char *path = r->modality == AQS_MODALITY_IMAGES ? b->o->images_path : b->o->captions_path;
  return path ? path : "calib";
}

static void default_out_dir(const build_env *b, const aqs_recipe *r, char *buf, size_t n) {
  char base[256];
  const char *p = calib_name(b, r), *slash = strrchr(p, '/');
  snprintf(base, sizeof base, "%s", slash ? slash + 1 : p);
  char *dot = strrchr(base, '.');
  if (dot && dot != base) *dot = '\0';
  snprintf(buf, n, "%s/%s_%s", b->o->out_root ? b->o->out_root : "quantized", r->name, base);
}

static aqs_status build_one(build_env *b, const aqs_recipe *r, aqs_build_report *rep, aqs_err *e) {
  memset(rep, 0, sizeof *rep);
  snprintf(rep->recipe, sizeof rep->recipe, "%s", r->name);
  aqs_stage_outcome *o = rep->stages;
  aqs_status st;
  double t0;
#define RUN(idx, call)                                     \
  do {                                                     \
    t0 = aqs_stage_now_s();                                \
    st = (call);                                           \
    o[idx].seconds = aqs_stage_now_s() - t0;               \
    if (st) return aqs_err_prefix(e, "recipe %s", r->name); \
    rep->stage_done[idx] = 1;                              \
    if (!o[idx].hit && b->o->dry_run) return AQS_OK;       \
  } while (0)
  /* The calib-set's key does not depend on the source: a plan looks it up either way. */
  t0 = aqs_stage_now_s();
  st = aqs_stage_source(b->s, b->o->model_dir, b->o->dry_run, &o[ST_SOURCE], e);
  o[ST_SOURCE].seconds = aqs_stage_now_s() - t0;
  if (st) return aqs_err_prefix(e, "recipe %s", r->name);
  rep->stage_done[ST_SOURCE] = 1;
  RUN(ST_CALIB, stage_calib_set(b, r, &o[ST_CALIB], e));
  if (!o[ST_SOURCE].hit && b->o->dry_run) return AQS_OK;
  RUN(ST_CALIBRATE, stage_calibrate(b, r, &o[ST_SOURCE].result, &o[ST_CALIB].result, &o[ST_CALIBRATE], e));
  RUN(ST_SENS, stage_sensitivity(b, r, &o[ST_SOURCE].result, &o[ST_CALIB].result, &o[ST_CALIBRATE].result,
                                 &o[ST_SENS], e));
  RUN(ST_SLICE, stage_slice(b, r, &o[ST_SOURCE].result, &o[ST_SENS].result, &o[ST_SLICE], rep, e));
  RUN(ST_EXPORT, stage_export(b, r, &o[ST_SOURCE].result, &o[ST_CALIB].result, &o[ST_CALIBRATE].result,
                              &o[ST_SLICE].result,
                              &o[ST_EXPORT], e));
#undef RUN
  if (b->o->dry_run) return AQS_OK;
  if ((st = record_build(b, r, rep, e))) return st;
  if (!b->o->no_materialize) {
    if (b->o->out_dir) snprintf(rep->out_dir, sizeof rep->out_dir, "%s", b->o->out_dir);
    else default_out_dir(b, r, rep->out_dir, sizeof rep->out_dir);
    aqs_link_mode mode = b->o->ws ? b->o->ws->link_mode : AQS_LINK_REFLINK;
    st = aqs_ckpt_materialize(b->s, &o[ST_EXPORT].result, rep->out_dir, mode, e);
    if (!st) st = write_reports(b, rep, e);
  }
  return st;
}

static aqs_status family_check(build_env *b, const aqs_recipe *recipes, size_t n, aqs_build_report *reports,
                               aqs_err *e) {
  aqs_plan **plans = calloc(n, sizeof *plans);
  aqs_ckpt_tensors **tensors = calloc(n, sizeof *tensors);
  aqs_status st = plans && tensors ? AQS_OK : aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  for (size_t i = 0; !st && i < n; i++) {
    st = load_plan_obj(b->s, &reports[i].stages[ST_SLICE].result, &plans[i], e);
    if (!st) st = aqs_ckpt_tensors_load(b->s, &reports[i].stages[ST_EXPORT].result, &tensors[i], e);
  }
  for (size_t i = 0; !st && i < n; i++)
    for (size_t j = i + 1; !st && j < n; j++)
      st = aqs_family_check_tensors(b->model, recipes[i].name, tensors[i], plans[i], recipes[j].name, tensors[j],
                                    plans[j], NULL, e);
  for (size_t i = 0; i < n; i++) {
    if (plans) aqs_plan_free(plans[i]);
    if (tensors) aqs_ckpt_tensors_free(tensors[i]);
  }
  free(plans);
  free(tensors);
  return st ? aqs_err_prefix(e, "family check failed") : AQS_OK;
}

aqs_status aqs_build_recipes(const aqs_build_opts *opts, const aqs_recipe *recipes, size_t n,
                             aqs_build_report *reports, aqs_err *e) {
  if (!opts->model_dir) return aqs_errf(e, AQS_ERR_INVALID, "no model: pass --model DIR or set [model] path in .aqstore");
  build_env b = {.o = opts, .s = opts->store};
  aqs_status st = aqs_qwen_model_open(opts->model_dir, &b.model, NULL, e);
  for (size_t i = 0; !st && i < n; i++) st = build_one(&b, &recipes[i], &reports[i], e);
  if (!st && !opts->dry_run && !opts->skip_family_check && n >= 2) st = family_check(&b, recipes, n, reports, e);
  aqs_lm_free(b.lm);
  aqs_backend_close(b.be);
  aqs_qwen_model_free(b.model);
  return st;
}
