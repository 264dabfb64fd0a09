/* engine/stages/eval_stage.c: the eval stage (eval_stage.h): resolving names to checkpoints,
 * building the held-out eval set, one cached action per name, the metrics document. */
#include "engine/stages/eval_stage.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/path.h"
#include "common/progress.h"
#include "engine/stages/calib_set.h"
#include "engine/calib/captions.h"
#include "engine/calib/rows.h"
#include "engine/model/safetensors.h"
#include "engine/stages/build.h"
#include "engine/stages/build_names.h"
#include "engine/stages/ckpt_store.h"
#include "engine/stages/ckpt_view.h"
#include "engine/stages/recipe.h"
#include "kernels/backend.h"

#define V_EVAL "1"

/* What one aqs_eval_names call shares: the source, the eval set, the loaded reference. */
struct aqs_eval_session {
  const aqs_eval_opts *o;
  aqs_digest source;
  aqs_digest eval_set;     /* calib-set manifest */
  aqs_calib_set set;
  int64_t first_seq, n_seqs;
  uint64_t bf16_bytes;
  aqs_backend *be;
  aqs_lm *ref;
  aqs_vision *ref_vis;     /* image eval sets only */
  aqs_eval_ref *ref_results; /* the reference over the eval set, shared by every scheme */
};
typedef aqs_eval_session eval_env;

static json_t *jdigest(const aqs_digest *d) {
  char hex[AQS_DIGEST_STR_SIZE];
  return json_string(aqs_digest_str(d, hex));
}

static const char *backend_of(const aqs_eval_opts *o) { return o->backend ? o->backend : "cpu"; }


static void params_of_record(const json_t *rp, aqs_eval_calib *cp) {
  cp->samples = json_integer_value(json_object_get(rp, "calib_samples"));
  cp->seed = json_integer_value(json_object_get(rp, "seed"));
  cp->max_len = json_integer_value(json_object_get(rp, "max_len"));
  cp->chunk = json_integer_value(json_object_get(rp, "chunk_sequences"));
  const char *t = json_string_value(json_object_get(rp, "template"));
  snprintf(cp->template_name, sizeof cp->template_name, "%s", t ? t : "none");
  const char *modality = json_string_value(json_object_get(rp, "modality"));
  cp->images = modality && strcmp(modality, "images") == 0;
}

static aqs_status default_params(const aqs_eval_opts *o, aqs_eval_calib *cp, aqs_err *e) {
  aqs_recipe_source src = {.workspace_dir = o->recipes_dir};
  aqs_recipe r;
  aqs_status st = aqs_recipe_load(&src, "lm_only", &r, e);
  if (st) return st;
  cp->samples = r.calib_samples;
  cp->seed = r.seed;
  cp->max_len = r.max_len;
  cp->chunk = r.chunk_sequences;
  snprintf(cp->template_name, sizeof cp->template_name, "%s", r.template_name);
  return AQS_OK;
}

/* Usable rows of the eval set's dataset (caption lines, or JSONL rows of an image set). */
static aqs_status count_rows(const char *path, int images, int64_t *n, aqs_err *e) {
  if (images) {
    aqs_calib_rows rows;
    aqs_status st = aqs_calib_read_jsonl(path, 0, &rows, e);
    if (st) return st;
    *n = rows.n;
    aqs_calib_rows_free(&rows);
    return AQS_OK;
  }
  aqs_captions caps;
  aqs_caption_read_opts ro = {0};
  aqs_status st = aqs_captions_read(path, &ro, &caps, e);
  if (st) return st;
  *n = caps.n;
  aqs_captions_free(&caps);
  return AQS_OK;
}

/* The eval set: held-out rows of the calibration captions (or image rows), or a separate
 * caption file's first rows. */
static aqs_status make_eval_set(eval_env *v, const aqs_eval_calib *cp, aqs_err *e) {
  const aqs_eval_opts *o = v->o;
  const int images = cp->images && !o->eval_captions;
  const char *path = o->eval_captions ? o->eval_captions : images ? o->images_path : o->captions_path;
  if (!path)
    return aqs_errf(e, AQS_ERR_INVALID,
                    images ? "no eval images: the schemes were calibrated on image+caption rows; pass "
                             "--images FILE (and --root DIR) or set [data] images in .aqstore"
                           : "no eval captions: pass --captions FILE or set [data] captions in .aqstore");
  int64_t want = o->samples > 0 ? o->samples : AQS_EVAL_DEFAULT_SAMPLES, usable;
  aqs_status st = count_rows(path, images, &usable, e);
  if (st) return st;
  int64_t skip = o->eval_captions ? 0 : cp->samples;
  if (usable - skip < 1)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s has %lld usable %s and calibration uses %lld of them: none is left "
                    "for eval; pass --captions FILE with held-out captions",
                    path, (long long)usable, images ? "rows" : "captions", (long long)skip);
  v->first_seq = skip;
  v->n_seqs = usable - skip < want ? usable - skip : want;
  char tokenizer[4200], processor[4200];
  snprintf(tokenizer, sizeof tokenizer, "%s/tokenizer.json", o->model_dir);
  snprintf(processor, sizeof processor, "%s/preprocessor_config.json", o->model_dir);
  aqs_calib_opts co = {.tokenizer_path = tokenizer,
                       .samples = skip + v->n_seqs, .seed = (uint64_t)cp->seed,
                       .max_len = (int32_t)cp->max_len, .template_name = cp->template_name,
                       .chunk_seqs = (int32_t)cp->chunk, .progress = o->progress,
                       .lookup_only = o->lookup_only};
  if (images) { /* the options calibration's calib-set used, so its rows come first */
    co.images_jsonl = path;
    co.images_root = o->images_root;
    co.allow_outside_root = o->allow_outside_root;
    co.processor_config = access(processor, R_OK) == 0 ? processor : NULL;
  } else {
    co.captions_path = path;
  }
  aqs_calib_result cr;
  memset(&cr, 0, sizeof cr);
  st = aqs_calib_build(o->store, &co, &cr, e);
  if (!st) {
    v->eval_set = cr.digest;
    v->set = cr.set;
    memset(&cr.set, 0, sizeof cr.set);
    if (cr.samples_used < skip + v->n_seqs) v->n_seqs = cr.samples_used > skip ? cr.samples_used - skip : 0;
  }
  aqs_calib_result_free(&cr);
  if (!st && v->n_seqs < 1)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: no usable row is left for eval after calibration's %lld", path,
                    (long long)skip);
  return st ? aqs_err_prefix(e, "eval set") : AQS_OK;
}

static uint64_t safetensors_bytes_of_dir(const char *dir) {
  aqs_ckpt *ck;
  aqs_err ignore = {0};
  if (aqs_ckpt_open(dir, &ck, &ignore) != AQS_OK) return 0;
  uint64_t n = 0;
  for (size_t i = 0; i < ck->nfiles; i++) n += ck->files[i]->file_bytes;
  aqs_ckpt_close(ck);
  return n;
}

static uint64_t safetensors_bytes_of_manifest(const json_t *m) {
  uint64_t n = 0;
  size_t i;
  json_t *f;
  json_array_foreach(json_object_get(m, "files"), i, f) {
    const char *name = json_string_value(json_object_get(f, "name"));
    size_t len = name ? strlen(name) : 0;
    if (len > 12 && strcmp(name + len - 12, ".safetensors") == 0)
      n += (uint64_t)json_integer_value(json_object_get(f, "size"));
  }
  return n;
}

/* A checkpoint object missing or damaged (quarantined by the store): says what repairs it. */
static aqs_status repair_hint(aqs_status st, const char *name, aqs_err *e) {
  if (e && (st == AQS_ERR_NOT_FOUND || st == AQS_ERR_CORRUPT)) {
    size_t n = strlen(e->msg);
    snprintf(e->msg + n, sizeof e->msg - n, " (aqs build %s exports the checkpoint again)", name);
  }
  return st;
}

/* Fills row's checkpoint and scheme description from a name. */
static aqs_status resolve(eval_env *v, const char *name, aqs_eval_row *row, json_t **record, aqs_err *e) {
  *record = NULL;
  memset(row, 0, sizeof *row);
  snprintf(row->name, sizeof row->name, "%s", name);
  row->coverage = -1;
  if (strcmp(name, AQS_EVAL_BASELINE) == 0) {
    row->checkpoint = v->source;
    row->effective_bits = 16.0;
    row->ckpt_bytes = v->bf16_bytes;
    row->bf16_bytes = v->bf16_bytes;
    snprintf(row->order, sizeof row->order, "-");
    return AQS_OK;
  }
  /* a short name picks the build of this model (and of the calibration captions when given) */
  aqs_build_scope scope = {.has_model = 1, .model = v->source};
  aqs_err ignore = {0};
  if (v->o->captions_path &&
      aqs_hash_file_cached(v->o->store, v->o->captions_path, &scope.dataset, NULL, &ignore) == AQS_OK)
    scope.has_dataset = 1;
  aqs_build_entry be;
  aqs_status st = aqs_build_resolve(v->o->store, name, &scope, &be, e);
  if (st) return st;
  json_t *doc = be.doc;
  aqs_digest src;
  if (!(st = aqs_build_record_stage(doc, "source", &src, e)) && !aqs_digest_eq(&src, &v->source)) {
    char a[AQS_DIGEST_STR_SIZE], b[AQS_DIGEST_STR_SIZE];
    st = aqs_errf(e, AQS_ERR_MISMATCH,
                  "%s was built from source %.19s, not from %s (%.19s): eval runs a scheme "
                  "against its own BF16 source (--model DIR)",
                  name, aqs_digest_str(&src, a), v->o->model_dir, aqs_digest_str(&v->source, b));
  }
  if (!st) st = aqs_build_record_stage(doc, "export", &row->checkpoint, e);
  if (!st) st = aqs_build_record_stage(doc, "sensitivity", &row->sensitivity, e);
  row->has_sensitivity = !st;
  if (st) {
    json_decref(doc);
    return st;
  }
  const json_t *sum = json_object_get(doc, "summary"), *rp = json_object_get(doc, "recipe_params");
  row->effective_bits = json_number_value(json_object_get(sum, "effective_bits"));
  row->n_fp8 = json_integer_value(json_object_get(sum, "fp8"));
  row->n_candidates = json_integer_value(json_object_get(sum, "candidates"));
  const char *order = json_string_value(json_object_get(rp, "order"));
  snprintf(row->order, sizeof row->order, "%s", order ? order : "-");
  const json_t *cov = json_object_get(rp, "coverage");
  if (json_is_number(cov) && !json_is_true(json_object_get(rp, "budget_mode")))
    row->coverage = json_number_value(cov);
  const char *kv = json_string_value(json_object_get(rp, "kv_cache"));
  row->kv_fp8 = kv && strcmp(kv, "fp8") == 0;
  row->bf16_bytes = v->bf16_bytes;
  json_t *ck;
  if ((st = aqs_ckpt_load_manifest(v->o->store, &row->checkpoint, "aqs-checkpoint", &ck, e)) == AQS_OK) {
    row->ckpt_bytes = safetensors_bytes_of_manifest(ck);
    json_decref(ck);
  }
  *record = doc;
  return st ? repair_hint(aqs_err_prefix(e, "%s: checkpoint", name), name, e) : AQS_OK;
}

static json_t *metrics_json(const aqs_eval_metrics *m) {
  return json_pack("{s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "n_seqs", (json_int_t)m->n_seqs,
                   "n_tokens", (json_int_t)m->n_tokens, "n_targets", (json_int_t)m->n_targets, "ppl",
                   m->ppl, "ref_ppl", m->ref_ppl, "kl_mean", m->kl_mean, "kl_p99", m->kl_p99, "kl_max",
                   m->kl_max, "top1", m->top1, "last_mse", m->last_mse);
}

aqs_status aqs_eval_metrics_from_json(const json_t *doc, aqs_eval_metrics *m, aqs_err *e) {
  const json_t *j = json_object_get(doc, "metrics");
  if (!json_is_object(j)) return aqs_errf(e, AQS_ERR_CORRUPT, "eval result has no metrics");
  memset(m, 0, sizeof *m);
  m->n_seqs = json_integer_value(json_object_get(j, "n_seqs"));
  m->n_tokens = json_integer_value(json_object_get(j, "n_tokens"));
  m->n_targets = json_integer_value(json_object_get(j, "n_targets"));
  m->ppl = json_number_value(json_object_get(j, "ppl"));
  m->ref_ppl = json_number_value(json_object_get(j, "ref_ppl"));
  m->kl_mean = json_number_value(json_object_get(j, "kl_mean"));
  m->kl_p99 = json_number_value(json_object_get(j, "kl_p99"));
  m->kl_max = json_number_value(json_object_get(j, "kl_max"));
  m->top1 = json_number_value(json_object_get(j, "top1"));
  m->last_mse = json_number_value(json_object_get(j, "last_mse"));
  return AQS_OK;
}

/* Sequences [s0, s1) of an image chunk (tb) with their images to the reference results: the
 * chunk's images are sorted by sequence, so theirs are one run, renumbered from s0. */
static aqs_status add_image_seqs(eval_env *v, const aqs_calib_chunk *c, const aqs_token_batch *tb, int s0, int s1,
                                 aqs_err *e) {
  if (c->patch_dim != v->ref_vis->patch_dim)
    return aqs_errf(e, AQS_ERR_MISMATCH, "eval chunk at sequence %lld has %d values per patch; the vision tower takes %d",
                    (long long)c->first_seq, c->patch_dim, v->ref_vis->patch_dim);
  int i0 = 0, i1;
  while (i0 < c->n_images && c->image_seq[i0] < s0) i0++;
  for (i1 = i0; i1 < c->n_images && c->image_seq[i1] < s1; i1++)
    if (i1 > i0 && c->image_seq[i1] < c->image_seq[i1 - 1])
      return aqs_errf(e, AQS_ERR_CORRUPT, "eval chunk at sequence %lld: images are not sorted by sequence",
                      (long long)c->first_seq);
  if (i1 == i0) return aqs_eval_ref_add(v->ref_results, tb, e);
  int32_t *seq = malloc((size_t)(i1 - i0) * sizeof *seq);
  if (!seq) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  for (int i = i0; i < i1; i++) seq[i - i0] = c->image_seq[i] - s0;
  aqs_lm_images im = {i1 - i0, seq, c->image_token_start + i0, c->image_grid_thw + 3 * (size_t)i0,
                      v->ref_vis->cfg.spatial_merge_size};
  aqs_status st = aqs_eval_ref_add_images(v->ref_results, tb, &im,
                                          c->pixel_patches + (size_t)c->image_patch_offsets[i0] * (size_t)c->patch_dim, e);
  free(seq);
  return st ? aqs_err_prefix(e, "eval sequences %lld..%lld", (long long)(c->first_seq + s0),
                             (long long)(c->first_seq + s1 - 1))
            : AQS_OK;
}

/* The reference model and its results over the eval set [first_seq, first_seq + n_seqs), made
 * once per session (every scheme of a sweep is compared with the same reference results). */
static aqs_status ensure_ref(eval_env *v, aqs_err *e) {
  if (v->ref_results) return AQS_OK;
  aqs_status st = AQS_OK;
  if (!v->be) st = aqs_backend_open(backend_of(v->o), v->o->precision, &v->be, e);
  if (!st && !v->ref) st = aqs_lm_load(v->be, v->o->model_dir, &v->ref, e);
  if (!st && v->set.n_images > 0 && !v->ref_vis) st = aqs_vision_load_dir(v->be, v->o->model_dir, &v->ref_vis, e);
  const aqs_eval_model ref_model = {v->ref, v->ref_vis};
  if (!st) st = aqs_eval_ref_new(&ref_model, 0, &v->ref_results, e);
  const int64_t first = v->first_seq, last = v->first_seq + v->n_seqs;
  aqs_progress *p = !st && v->o->progress ? aqs_progress_start("eval bf16 reference", (uint64_t)v->n_seqs, "seq") : NULL;
  for (int32_t c = 0; !st && c < v->set.n_chunks; c++) {
    int64_t c0 = (int64_t)c * v->set.chunk_seqs;
    if (c0 + v->set.chunk_seqs <= first || c0 >= last) continue;
    aqs_calib_chunk chunk;
    memset(&chunk, 0, sizeof chunk);
    if ((st = aqs_calib_chunk_load(v->o->store, &v->set, c, &chunk, e))) break;
    int64_t s0 = first > c0 ? first - c0 : 0, s1 = last - c0 < chunk.n_seqs ? last - c0 : chunk.n_seqs;
    if (s1 > s0) {
      aqs_token_batch tb = {.n_seqs = (int)(s1 - s0), .seq_lens = chunk.seq_lens + s0,
                            .token_ids = chunk.token_ids + chunk.seq_offsets[s0]};
      st = chunk.n_images > 0 ? add_image_seqs(v, &chunk, &tb, (int)s0, (int)s1, e)
                              : aqs_eval_ref_add(v->ref_results, &tb, e);
      if (p) aqs_progress_add(p, (uint64_t)(s1 - s0));
    }
    aqs_calib_chunk_free(&chunk);
  }
  if (p) {
    if (st) aqs_progress_abort(p);
    else aqs_progress_finish(p);
  }
  if (st) {
    aqs_eval_ref_free(v->ref_results);
    v->ref_results = NULL;
  }
  return st;
}

/* Runs scheme over the eval set against the reference results. */
static aqs_status run_metrics(eval_env *v, const aqs_eval_model *scheme, const char *name, aqs_eval_metrics *m,
                              aqs_err *e) {
  aqs_eval_acc acc = {0};
  char label[96];
  snprintf(label, sizeof label, "eval %s", name);
  aqs_progress *p = v->o->progress ? aqs_progress_start(label, (uint64_t)v->n_seqs, "seq") : NULL;
  aqs_status st = aqs_eval_ref_run(v->ref_results, scheme, &acc, e);
  if (!st) st = aqs_eval_finish(&acc, m, e);
  if (p) {
    if (st) aqs_progress_abort(p);
    else {
      aqs_progress_add(p, (uint64_t)v->n_seqs);
      aqs_progress_finish(p);
    }
  }
  aqs_eval_acc_free(&acc);
  return st;
}

/* The scheme straight from the store: the tensors its export changed (FP8 weights and scales)
 * are read from their objects, everything else is the loaded reference's. */
static aqs_status load_scheme(eval_env *v, const aqs_digest *ckpt, const char *name, aqs_lm **lm, aqs_vision **vis,
                              aqs_err *e) {
  aqs_ckpt_view *view;
  aqs_status st = aqs_ckpt_view_open(v->o->store, ckpt, &v->source, &view, e);
  if (st) return repair_hint(st, name, e);
  st = aqs_lm_load_served_over(v->ref, aqs_ckpt_view_ckpt(view), lm, e);
  if (!st && v->ref_vis) st = aqs_vision_load_served_over(v->ref_vis, aqs_ckpt_view_ckpt(view), vis, e);
  aqs_ckpt_view_close(view);
  return st;
}

void aqs_eval_session_key(const aqs_eval_session *v, const aqs_digest *checkpoint, json_t **inputs,
                          json_t **params) {
  *inputs = json_pack("{s:o, s:o, s:o}", "checkpoint", jdigest(checkpoint), "source", jdigest(&v->source),
                      "eval_set", jdigest(&v->eval_set));
  *params = json_pack("{s:I, s:I, s:s, s:s}", "first_seq", (json_int_t)v->first_seq, "n_seqs",
                      (json_int_t)v->n_seqs, "backend", backend_of(v->o), "precision",
                      aqs_precision_name(v->o->precision));
}

aqs_status aqs_eval_session_compute(aqs_eval_session *v, const aqs_digest *checkpoint, const char *name,
                                    const json_t *params, aqs_eval_metrics *m, aqs_digest *result, aqs_err *e) {
  aqs_lm *scheme = NULL;
  aqs_vision *scheme_vis = NULL;
  aqs_status st = ensure_ref(v, e);
  if (!st && !aqs_digest_eq(checkpoint, &v->source)) st = load_scheme(v, checkpoint, name, &scheme, &scheme_vis, e);
  const aqs_eval_model model = {scheme ? scheme : v->ref, scheme_vis ? scheme_vis : v->ref_vis};
  if (!st) st = run_metrics(v, &model, name, m, e);
  aqs_vision_free(scheme_vis);
  aqs_lm_free(scheme);
  if (st) return st;
  json_t *doc = json_pack("{s:s, s:i, s:o, s:o, s:O}", "kind", "aqs-eval", "version", 1, "checkpoint",
                          jdigest(checkpoint), "metrics", metrics_json(m), "params", params);
  st = aqs_put_json(v->o->store, doc, 0, result, e);
  json_decref(doc);
  return st;
}

aqs_status aqs_eval_result_load(aqs_store *s, const aqs_digest *result, aqs_eval_metrics *m, aqs_err *e) {
  json_t *doc;
  aqs_status st = aqs_ckpt_load_manifest(s, result, "aqs-eval", &doc, e);
  if (!st) st = aqs_eval_metrics_from_json(doc, m, e);
  json_decref(doc);
  return st;
}

static aqs_status eval_one(eval_env *v, aqs_eval_row *row, aqs_err *e) {
  const aqs_eval_opts *o = v->o;
  json_t *inputs, *params;
  aqs_eval_session_key(v, &row->checkpoint, &inputs, &params);
  aqs_stage_ctx ctx;
  double t0 = aqs_stage_now_s();
  aqs_status st = aqs_stage_lookup(o->store, AQS_EVAL_STAGE_NAME, V_EVAL, inputs, params, &ctx, e);
  json_decref(inputs);
  if (st) {
    json_decref(params);
    return st;
  }
  row->key = ctx.key;
  row->hit = ctx.hit;
  if (ctx.hit) {
    row->result = ctx.result;
    st = aqs_eval_result_load(o->store, &ctx.result, &row->m, e);
  } else {
    st = aqs_eval_session_compute(v, &row->checkpoint, row->name, params, &row->m, &row->result, e);
    if (!st) st = aqs_stage_record(o->store, &ctx, &row->result, e);
  }
  json_decref(params);
  aqs_stage_ctx_free(&ctx);
  row->seconds = aqs_stage_now_s() - t0;
  return st ? aqs_err_prefix(e, "eval %s", row->name) : AQS_OK;
}

aqs_status aqs_eval_source(const aqs_eval_opts *o, aqs_digest *out, aqs_err *e) {
  aqs_stage_outcome src;
  aqs_build_opts bo = {.store = o->store, .model_dir = o->model_dir};
  aqs_status st = aqs_build_run_stage(&bo, "source", NULL, NULL, &src, e);
  if (!st) *out = src.result;
  return st;
}

void aqs_eval_calib_of_recipe(const aqs_recipe *r, aqs_eval_calib *c) {
  c->images = r->modality == AQS_MODALITY_IMAGES;
  c->samples = r->calib_samples;
  c->seed = r->seed;
  c->max_len = r->max_len;
  c->chunk = r->chunk_sequences;
  snprintf(c->template_name, sizeof c->template_name, "%s", r->template_name);
}

aqs_status aqs_eval_session_open(const aqs_eval_opts *o, const aqs_eval_calib *c, aqs_eval_session **out,
                                 aqs_err *e) {
  *out = NULL;
  aqs_eval_session *v = calloc(1, sizeof *v);
  if (!v) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  v->o = o;
  aqs_status st = aqs_eval_source(o, &v->source, e);
  if (!st) st = make_eval_set(v, c, e);
  if (st) {
    aqs_eval_session_close(v);
    return st;
  }
  v->bf16_bytes = safetensors_bytes_of_dir(o->model_dir);
  *out = v;
  return AQS_OK;
}

void aqs_eval_session_close(aqs_eval_session *v) {
  if (!v) return;
  aqs_eval_ref_free(v->ref_results);
  aqs_calib_set_free(&v->set);
  aqs_vision_free(v->ref_vis);
  aqs_lm_free(v->ref);
  if (v->be) aqs_backend_close(v->be);
  free(v);
}

aqs_status aqs_eval_names(const aqs_eval_opts *o, const char *const *names, size_t n, aqs_eval_row *rows,
                          aqs_err *e) {
  if (!o->model_dir)
    return aqs_errf(e, AQS_ERR_INVALID, "no model: pass --model DIR or set [model] path in .aqstore");
  eval_env v = {.o = o};
  aqs_status st = aqs_eval_source(o, &v.source, e);
  if (st) return st;
  v.bf16_bytes = safetensors_bytes_of_dir(o->model_dir);
  json_t **records = calloc(n ? n : 1, sizeof *records);
  if (!records) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  aqs_eval_calib cp = {0};
  int have_cp = 0;
  for (size_t i = 0; !st && i < n; i++) {
    st = resolve(&v, names[i], &rows[i], &records[i], e);
    if (!st && records[i] && !have_cp) {
      params_of_record(json_object_get(records[i], "recipe_params"), &cp);
      have_cp = 1;
    }
  }
  if (!st && !have_cp) st = default_params(o, &cp, e);
  if (!st) st = make_eval_set(&v, &cp, e);
  for (size_t i = 0; !st && i < n; i++) {
    rows[i].eval_images = v.set.n_images > 0;
    st = eval_one(&v, &rows[i], e);
  }
  for (size_t i = 0; i < n; i++) json_decref(records[i]);
  free(records);
  aqs_eval_ref_free(v.ref_results);
  aqs_calib_set_free(&v.set);
  aqs_vision_free(v.ref_vis);
  aqs_lm_free(v.ref);
  if (v.be) aqs_backend_close(v.be);
  return st;
}

json_t *aqs_eval_rows_json(const aqs_eval_row *rows, size_t n) {
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++) {
    const aqs_eval_row *r = &rows[i];
    json_t *j = metrics_json(&r->m);
    json_object_set_new(j, "name", json_string(r->name));
    json_object_set_new(j, "cached", json_boolean(r->hit));
    json_object_set_new(j, "result", jdigest(&r->result));
    json_object_set_new(j, "checkpoint", jdigest(&r->checkpoint));
    json_object_set_new(j, "effective_bits", json_real(r->effective_bits));
    json_object_set_new(j, "fp8_groups", json_integer(r->n_fp8));
    json_object_set_new(j, "candidate_groups", json_integer(r->n_candidates));
    json_object_set_new(j, "kv_cache", json_string(r->kv_fp8 ? "fp8" : "bf16"));
    json_object_set_new(j, "eval_set", json_string(r->eval_images ? "image+caption" : "caption"));
    json_object_set_new(j, "checkpoint_bytes", json_integer((json_int_t)r->ckpt_bytes));
    json_object_set_new(j, "bf16_bytes", json_integer((json_int_t)r->bf16_bytes));
    json_object_set_new(j, "order", json_string(r->order));
    json_object_set_new(j, "coverage", r->coverage >= 0 ? json_real(r->coverage) : json_null());
    json_object_set_new(j, "seconds", json_real(r->seconds));
    json_array_append_new(arr, j);
  }
  return arr;
}
