/* engine/stages/stage_calib_set.c: the calib-set stage (see calib_set.h). The action key holds only
 * content: the dataset file's digest, the tokenizer file's digest, for image sets the digests of
 * every image the sample walk may visit, and the parameters. A miss walks the seeded sample order,
 * turns rows into sequences (images decoded and preprocessed), packs them into chunks of
 * chunk_seqs sequences, stores each chunk and then the manifest, and records the action. */
#include "engine/stages/calib_set.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/progress.h"
#include "engine/calib/image_root.h"
#include "engine/calib/captions.h"
#include "engine/calib/prompt.h"
#include "engine/calib/rows.h"
#include "engine/image/image.h"
#include "engine/image/qwen_vision.h"
#include "engine/stages/build.h"
#include "engine/stages/recipe.h"
#include "engine/stages/stage.h"
#include "engine/stages/stage_env.h"
#include "engine/tokenizer/tokenizer.h"
#include "store/canon_json.h"

/* Rows the walk may visit beyond `samples` when skipping bad ones (part of the key: see docs). */
static int64_t walk_window(int64_t n_rows, int64_t samples, int skip_bad) {
  int64_t w = skip_bad ? samples * 2 + 16 : samples;
  return w < n_rows ? w : n_rows;
}

void aqs_calib_result_free(aqs_calib_result *res) {
  if (!res) return;
  aqs_calib_set_free(&res->set);
  free(res->key_doc);
  memset(res, 0, sizeof *res);
}

/* Directory part of path ("." when none). Caller frees. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return strdup(".");
  if (slash == path) return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

/* ---------------------------------------------------------------- chunk assembly */

/* Chunk under construction: per-sequence and per-image arrays sized for chunk_seqs up front
 * (one image per sequence at most); tokens and patches grow. */
typedef struct chunk_builder {
  aqs_calib_chunk c;
  int32_t max_seqs;
  int64_t cap_tokens, cap_patches;
} chunk_builder;

static aqs_status builder_init(chunk_builder *b, int32_t max_seqs, aqs_err *err) {
  memset(b, 0, sizeof *b);
  b->max_seqs = max_seqs;
  aqs_calib_chunk *c = &b->c;
  size_t n = (size_t)max_seqs + 1;
  c->seq_lens = calloc(n, sizeof *c->seq_lens);
  c->seq_offsets = calloc(n, sizeof *c->seq_offsets);
  c->image_seq = calloc(n, sizeof *c->image_seq);
  c->image_token_start = calloc(n, sizeof *c->image_token_start);
  c->image_n_tokens = calloc(n, sizeof *c->image_n_tokens);
  c->image_grid_thw = calloc(3 * n, sizeof *c->image_grid_thw);
  c->image_patch_offsets = calloc(n, sizeof *c->image_patch_offsets);
  if (!c->seq_lens || !c->seq_offsets || !c->image_seq || !c->image_token_start ||
      !c->image_n_tokens || !c->image_grid_thw || !c->image_patch_offsets) {
    aqs_calib_chunk_free(c);
    return aqs_errf(err, AQS_ERR_NOMEM, "calib chunk: out of memory");
  }
  return AQS_OK;
}

static int grow(void **p, size_t elem, int64_t need, int64_t *cap) {
  if (need <= *cap) return 0;
  int64_t ncap = *cap ? *cap : 1024;
  while (ncap < need) ncap *= 2;
  void *np = realloc(*p, (size_t)ncap * elem);
  if (!np) return -1;
  *p = np;
  *cap = ncap;
  return 0;
}

static aqs_status builder_add(chunk_builder *b, const aqs_token_ids *ids, int32_t image_start,
                              const aqs_qwen_pixels *px, int64_t image_tokens, aqs_err *err) {
  aqs_calib_chunk *c = &b->c;
  if (c->n_seqs >= b->max_seqs) return aqs_errf(err, AQS_ERR_INTERNAL, "calib chunk overflow");
  if (grow((void **)&c->token_ids, sizeof *c->token_ids, c->n_tokens + (int64_t)ids->len, &b->cap_tokens))
    return aqs_errf(err, AQS_ERR_NOMEM, "calib chunk: out of memory");
  memcpy(c->token_ids + c->n_tokens, ids->ids, ids->len * sizeof *ids->ids);
  c->seq_offsets[c->n_seqs] = c->n_tokens;
  c->seq_lens[c->n_seqs] = (int32_t)ids->len;
  c->n_tokens += (int64_t)ids->len;
  c->seq_offsets[c->n_seqs + 1] = c->n_tokens;
  if (px) {
    if (grow((void **)&c->pixel_patches, (size_t)px->patch_dim * sizeof(float),
             c->n_patches + px->n_patches, &b->cap_patches))
      return aqs_errf(err, AQS_ERR_NOMEM, "calib chunk: out of memory for image patches");
    int32_t i = c->n_images;
    c->image_seq[i] = c->n_seqs;
    c->image_token_start[i] = image_start;
    c->image_n_tokens[i] = (int32_t)image_tokens;
    c->image_grid_thw[3 * i] = px->grid_t;
    c->image_grid_thw[3 * i + 1] = px->grid_h;
    c->image_grid_thw[3 * i + 2] = px->grid_w;
    memcpy(c->pixel_patches + (size_t)c->n_patches * (size_t)px->patch_dim, px->patches,
           (size_t)px->n_patches * (size_t)px->patch_dim * sizeof(float));
    c->n_patches += px->n_patches;
    c->image_patch_offsets[i + 1] = c->n_patches;
    c->patch_dim = px->patch_dim;
    c->n_images++;
  }
  c->n_seqs++;
  return AQS_OK;
}

static void builder_reset(chunk_builder *b) {
  aqs_calib_chunk_free(&b->c);
  int32_t max_seqs = b->max_seqs;
  memset(b, 0, sizeof *b);
  b->max_seqs = max_seqs;
}

/* Encodes and stores the chunk under construction, appending its digest to set. */
static aqs_status builder_flush(aqs_store *store, chunk_builder *b, aqs_calib_set *set, aqs_err *err) {
  if (b->c.n_seqs == 0) return AQS_OK;
  uint8_t *bytes;
  size_t len;
  aqs_status st = aqs_calib_chunk_encode(&b->c, &bytes, &len, err);
  if (st != AQS_OK) return st;
  aqs_put_info info;
  st = aqs_put_mem(store, bytes, len, NULL, &info, err);
  free(bytes);
  if (st != AQS_OK) return st;
  void *nd = realloc(set->chunk_digests, (size_t)(set->n_chunks + 1) * sizeof *set->chunk_digests);
  if (!nd) return aqs_errf(err, AQS_ERR_NOMEM, "calib set: out of memory");
  set->chunk_digests = nd;
  aqs_digest_str(&info.digest, set->chunk_digests[set->n_chunks]);
  set->n_chunks++;
  set->n_tokens += b->c.n_tokens;
  set->n_images += b->c.n_images;
  builder_reset(b);
  return builder_init(b, b->max_seqs, err);
}

/* ---------------------------------------------------------------- key */

typedef struct calib_job {
  const aqs_calib_opts *o;
  int images;                  /* image+text set */
  const char *template_text;   /* resolved (captions.h): part of the key */
  int32_t chunk_seqs;
  aqs_qwen_vision_cfg vcfg;
  char *root;                  /* image root */
  aqs_calib_rows rows;
  int rows_loaded;
  int64_t samples;             /* sequences to build: opts->samples, or every usable row when the
                                  dataset has fewer (the key holds this count) */
  int64_t window;
  int64_t *order;              /* (window) row indices in walk order */
} calib_job;

static aqs_status job_load_rows(calib_job *job, aqs_err *err) {
  if (job->rows_loaded) return AQS_OK;
  const aqs_calib_opts *o = job->o;
  aqs_status st = job->images ? aqs_calib_read_jsonl(o->images_jsonl, o->skip_bad, &job->rows, err)
                              : aqs_calib_read_captions(o->captions_path, o->skip_bad, &job->rows, err);
  if (st != AQS_OK) return st;
  job->rows_loaded = 1;
  const char *ds = job->images ? o->images_jsonl : o->captions_path;
  if (job->rows.n == 0)
    return aqs_errf(err, AQS_ERR_INVALID, "%s: no usable rows (%lld bad%s%s)", ds, (long long)job->rows.n_bad,
                    job->rows.first_bad[0] ? ", first: " : "", job->rows.first_bad);
  /* Fewer rows than asked for: use them all (the result says so). */
  job->samples = job->rows.n < o->samples ? job->rows.n : o->samples;
  job->window = walk_window(job->rows.n, job->samples, o->skip_bad);
  job->order = malloc(((size_t)job->window + 1) * sizeof *job->order);
  if (!job->order) return aqs_errf(err, AQS_ERR_NOMEM, "calib: out of memory");
  return aqs_calib_sample_order(job->rows.n, job->window, o->seed, job->order, err);
}

/* Digest of the canonical list [[path as written, "sha256:..." | "missing"], ...] of the images
 * the walk may visit, in walk order. */
static aqs_status window_images_digest(aqs_store *store, calib_job *job, aqs_digest *out, aqs_err *err) {
  json_t *list = json_array();
  aqs_status st = AQS_OK;
  for (int64_t k = 0; k < job->window && st == AQS_OK; k++) {
    const aqs_calib_row *row = &job->rows.rows[job->order[k]];
    char *path;
    aqs_err herr = {0};
    aqs_status ps = aqs_image_row_path(job->root, row->image, job->o->allow_outside_root, &path, &herr);
    if (ps == AQS_ERR_NOMEM) {
      st = aqs_errf(err, AQS_ERR_NOMEM, "calib: out of memory");
      break;
    }
    aqs_digest d;
    /* A refused path is never read; the row fails (or is skipped) when the set is built. */
    char dstr[AQS_DIGEST_STR_SIZE] = "refused";
    aqs_status hs = ps == AQS_OK ? aqs_hash_file_cached(store, path, &d, NULL, &herr) : ps;
    if (hs == AQS_OK) aqs_digest_str(&d, dstr);
    else if (hs == AQS_ERR_NOT_FOUND) snprintf(dstr, sizeof dstr, "missing");
    else if (ps == AQS_OK) snprintf(dstr, sizeof dstr, "unreadable");
    json_array_append_new(list, json_pack("[s,s]", row->image, dstr));
    free(path);
  }
  if (st == AQS_OK) {
    char *canon;
    size_t len;
    st = aqs_json_canonical(list, &canon, &len, err);
    if (st == AQS_OK) {
      aqs_sha256_buf(canon, len, out);
      free(canon);
    }
  }
  json_decref(list);
  return st;
}

/* The key document's inputs and params (new references). */
static aqs_status job_key(aqs_store *store, calib_job *job, json_t **inputs_out, json_t **params_out, aqs_err *err) {
  const aqs_calib_opts *o = job->o;
  aqs_digest ds_digest, tok_digest, img_digest;
  char buf[AQS_DIGEST_STR_SIZE];
  aqs_status st;
  const char *ds = job->images ? o->images_jsonl : o->captions_path;
  if ((st = aqs_hash_file_cached(store, ds, &ds_digest, NULL, err)) != AQS_OK) return st;
  if ((st = aqs_hash_file_cached(store, o->tokenizer_path, &tok_digest, NULL, err)) != AQS_OK) return st;
  /* The rows decide the sample count that enters the key (and, for images, which files). */
  if ((st = job_load_rows(job, err)) != AQS_OK) return st;
  json_t *inputs = json_pack("{s:s}", "dataset", aqs_digest_str(&ds_digest, buf));
  json_object_set_new(inputs, "tokenizer", json_string(aqs_digest_str(&tok_digest, buf)));
  json_t *params = json_pack("{s:s,s:I,s:I,s:i,s:s,s:i,s:b}", "modality",
                             job->images ? "image+text" : "text", "samples", (json_int_t)job->samples,
                             "seed", (json_int_t)o->seed, "max_len", o->max_len, "template",
                             job->template_text, "chunk_seqs", job->chunk_seqs,
                             "skip_bad", o->skip_bad ? 1 : 0);
  if (job->images) {
    if ((st = window_images_digest(store, job, &img_digest, err)) != AQS_OK) {
      json_decref(inputs);
      json_decref(params);
      return st;
    }
    json_object_set_new(inputs, "images", json_string(aqs_digest_str(&img_digest, buf)));
    char *vjson;
    if ((st = aqs_qwen_vision_cfg_to_json(&job->vcfg, &vjson, err)) == AQS_OK) {
      json_object_set_new(params, "processor", json_loads(vjson, 0, NULL));
      free(vjson);
    }
  }
  if (st != AQS_OK) {
    json_decref(inputs);
    json_decref(params);
    return st;
  }
  *inputs_out = inputs;
  *params_out = params;
  return AQS_OK;
}

/* ---------------------------------------------------------------- build */

/* One row -> sequence ids (+ pixels). Returns AQS_OK, or a row error (the caller skips or fails). */
static aqs_status row_to_sequence(calib_job *job, aqs_tokenizer *tok, const aqs_calib_row *row,
                                  aqs_token_ids *ids, int32_t *image_start, aqs_qwen_pixels *px,
                                  int64_t *image_tokens, aqs_err *err) {
  const aqs_calib_opts *o = job->o;
  if (!job->images)
    return aqs_calib_prompt_encode(tok, job->template_text, row->caption, row->caption_len, -1, o->max_len,
                                   ids, image_start, err);
  char *path;
  aqs_status st = aqs_image_row_path(job->root, row->image, o->allow_outside_root, &path, err);
  if (st != AQS_OK) return st;
  aqs_image img;
  st = aqs_image_load_file(path, 0, &img, err);
  if (st == AQS_OK) {
    st = aqs_qwen_preprocess(&img, &job->vcfg, px, NULL, err);
    if (st != AQS_OK) aqs_err_prefix(err, "%s", path);
    aqs_image_free(&img);
  }
  if (st == AQS_OK) {
    *image_tokens = aqs_qwen_image_tokens(px, &job->vcfg);
    st = aqs_calib_prompt_encode(tok, job->template_text, row->caption, row->caption_len, *image_tokens,
                                 o->max_len, ids, image_start, err);
    if (st != AQS_OK) aqs_err_prefix(err, "%s", path);
  }
  free(path);
  return st;
}

static aqs_status job_build(aqs_store *store, calib_job *job, aqs_calib_set *set, char *first_bad,
                            size_t first_bad_len, aqs_err *err) {
  const aqs_calib_opts *o = job->o;
  const char *ds = job->images ? o->images_jsonl : o->captions_path;
  aqs_tokenizer *tok = NULL;
  aqs_status st = aqs_tokenizer_load(o->tokenizer_path, &tok, err);
  if (st != AQS_OK) return st;
  snprintf(set->modality, sizeof set->modality, "%s", job->images ? "image+text" : "text");
  set->chunk_seqs = job->chunk_seqs;
  set->max_seq_len = o->max_len;
  set->n_skipped = job->rows.n_bad;
  aqs_vision_ids vids = {-1, -1, -1};
  if (job->images) {
    aqs_vision_ids_lookup(tok, &vids);
    set->patch_size = job->vcfg.patch_size;
    set->temporal_patch_size = job->vcfg.temporal_patch_size;
    set->merge_size = job->vcfg.merge_size;
  }
  set->image_pad_id = vids.image_pad;
  set->vision_start_id = vids.vision_start;
  set->vision_end_id = vids.vision_end;
  if (job->rows.first_bad[0]) snprintf(first_bad, first_bad_len, "%s", job->rows.first_bad);
  aqs_progress *prog = o->progress ? aqs_progress_start("calib-set", (uint64_t)job->samples, "seq") : NULL;
  chunk_builder b;
  st = builder_init(&b, job->chunk_seqs, err);
  aqs_token_ids ids = {0};
  int64_t kept = 0, k = 0;
  for (; k < job->window && kept < job->samples && st == AQS_OK; k++) {
    const aqs_calib_row *row = &job->rows.rows[job->order[k]];
    aqs_qwen_pixels px = {0};
    int32_t image_start = -1;
    int64_t image_tokens = 0;
    aqs_err row_err = {0};
    aqs_status rs = row_to_sequence(job, tok, row, &ids, &image_start, &px, &image_tokens, &row_err);
    if (rs == AQS_ERR_NOMEM) {
      st = aqs_errf(err, rs, "%s", row_err.msg);
    } else if (rs != AQS_OK) {
      if (!o->skip_bad) {
        st = aqs_errf(err, rs, "%s:%lld: %s", ds, (long long)row->line, row_err.msg);
      } else {
        if (set->n_skipped++ == 0 || !first_bad[0])
          snprintf(first_bad, first_bad_len, "%.200s:%lld: %.280s", ds, (long long)row->line, row_err.msg);
      }
    } else {
      st = builder_add(&b, &ids, image_start, job->images ? &px : NULL, image_tokens, err);
      kept++;
      aqs_progress_add(prog, 1);
      if (st == AQS_OK && b.c.n_seqs == job->chunk_seqs) st = builder_flush(store, &b, set, err);
    }
    aqs_qwen_pixels_free(&px);
  }
  if (st == AQS_OK) st = builder_flush(store, &b, set, err);
  if (st == AQS_OK && kept == 0)
    st = aqs_errf(err, AQS_ERR_INVALID, "%s: no good rows among the %lld rows the walk may visit (%lld skipped)", ds,
                  (long long)job->window, (long long)set->n_skipped);
  set->n_seqs = kept;
  if (st == AQS_OK) aqs_progress_finish(prog);
  else aqs_progress_abort(prog);
  builder_reset(&b);
  aqs_token_ids_free(&ids);
  aqs_tokenizer_free(tok);
  return st;
}

static aqs_status opts_check(const aqs_calib_opts *o, calib_job *job, aqs_err *err) {
  if (!!o->captions_path == !!o->images_jsonl)
    return aqs_errf(err, AQS_ERR_INVALID, "calib: give exactly one of a caption file or an image JSONL");
  if (!o->tokenizer_path) return aqs_errf(err, AQS_ERR_INVALID, "calib: a tokenizer.json is required");
  if (o->samples < 1) return aqs_errf(err, AQS_ERR_INVALID, "calib: --samples must be at least 1");
  if (o->max_len < 1) return aqs_errf(err, AQS_ERR_INVALID, "calib: --max-len must be at least 1");
  if (o->chunk_seqs < 0) return aqs_errf(err, AQS_ERR_INVALID, "calib: chunk size must be positive");
  aqs_status st = aqs_caption_template_resolve(o->template_name, &job->template_text, err);
  if (st != AQS_OK) return st;
  job->images = o->images_jsonl != NULL;
  job->chunk_seqs = o->chunk_seqs ? o->chunk_seqs : AQS_CALIB_DEFAULT_CHUNK_SEQS;
  if (job->images) {
    if (o->processor_config) st = aqs_qwen_vision_cfg_load(o->processor_config, &job->vcfg, err);
    else aqs_qwen_vision_cfg_default(&job->vcfg);
    if (st != AQS_OK) return st;
    if (3 * job->vcfg.temporal_patch_size * job->vcfg.patch_size * job->vcfg.patch_size != AQS_CALIB_PATCH_DIM)
      return aqs_errf(err, AQS_ERR_UNSUPPORTED, "%s: patch geometry differs from Qwen2-VL's 3x2x14x14",
                      o->processor_config ? o->processor_config : "processor");
    job->root = o->images_root ? strdup(o->images_root) : dir_of(o->images_jsonl);
    if (!job->root) return aqs_errf(err, AQS_ERR_NOMEM, "calib: out of memory");
  }
  return AQS_OK;
}

/* When a set holds `have` < the samples asked for, says so in note ("" otherwise). Returns have. */
static int64_t job_note(const calib_job *job, int64_t have, char *note, size_t n) {
  const aqs_calib_opts *o = job->o;
  note[0] = '\0';
  if (have < o->samples)
    snprintf(note, n, "%.300s has %lld usable row%s, fewer than the %lld samples asked for: the calib-set uses %s%lld",
             job->images ? o->images_jsonl : o->captions_path,
             (long long)(job->samples < o->samples ? job->rows.n : have), job->rows.n == 1 ? "" : "s",
             (long long)o->samples, have == job->rows.n ? "all " : "", (long long)have);
  return have;
}

static void job_free(calib_job *job) {
  free(job->order);
  free(job->root);
  aqs_calib_rows_free(&job->rows);
  memset(job, 0, sizeof *job);
}

/* A miss: walks the rows, stores the chunks and then the manifest (its digest in *result). */
static aqs_status job_run(aqs_store *store, calib_job *job, aqs_calib_set *set, char *first_bad, size_t first_bad_len,
                          aqs_digest *result, aqs_err *err) {
  aqs_status st = job_load_rows(job, err);
  if (st == AQS_OK) st = job_build(store, job, set, first_bad, first_bad_len, err);
  char *manifest = NULL;
  if (st == AQS_OK) st = aqs_calib_set_to_json(set, &manifest, err);
  if (st == AQS_OK) {
    aqs_put_opts po = {.compress = AQS_COMPRESS_DEFAULT, .manifest = 1};
    aqs_put_info pi;
    st = aqs_put_mem(store, manifest, strlen(manifest), &po, &pi, err);
    if (st == AQS_OK) *result = pi.digest;
  }
  free(manifest);
  return st;
}

aqs_status aqs_calib_build(aqs_store *store, const aqs_calib_opts *opts, aqs_calib_result *res,
                           aqs_err *err) {
  memset(res, 0, sizeof *res);
  calib_job job;
  memset(&job, 0, sizeof job);
  job.o = opts;
  aqs_stage_ctx ctx = {0};
  json_t *inputs = NULL, *params = NULL;
  aqs_status st = opts_check(opts, &job, err);
  if (st == AQS_OK) st = job_key(store, &job, &inputs, &params, err);
  if (st == AQS_OK)
    st = aqs_stage_lookup(store, AQS_CALIB_STAGE_NAME, AQS_CALIB_STAGE_VERSION, inputs, params, &ctx, err);
  json_decref(inputs);
  json_decref(params);
  if (st == AQS_OK) {
    res->key = ctx.key;
    res->hit = ctx.hit;
    if (ctx.hit) {
      res->digest = ctx.result;
      st = aqs_calib_set_load(store, &res->digest, &res->set, err);
    } else if (!opts->lookup_only) {
      st = job_run(store, &job, &res->set, res->first_bad, sizeof res->first_bad, &res->digest, err);
      if (st == AQS_OK) st = aqs_stage_record(store, &ctx, &res->digest, err);
    }
  }
  if (job.rows_loaded) res->rows_total = job.rows.n + job.rows.n_bad;
  if (st == AQS_OK) res->samples_used = job_note(&job, res->set.n_chunks ? res->set.n_seqs : job.samples, res->note,
                                                  sizeof res->note);
  res->key_doc = ctx.key_doc;
  job_free(&job);
  if (st != AQS_OK) aqs_calib_result_free(res);
  return st;
}

/* ---------------------------------------------------------------- the build's stage */

/* job->state of the build's calib-set stage: the options a recipe gives, and the walk. */
typedef struct calib_state {
  aqs_calib_opts opts;
  char tokenizer[4200], processor[4200];
  calib_job job;
  aqs_calib_set set;
  char first_bad[512];
} calib_state;

static aqs_status calib_key(aqs_stage_job *sj, json_t **inputs, json_t **params, aqs_err *e) {
  calib_state *cs = calloc(1, sizeof *cs);
  if (!cs) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  sj->state = cs;
  const aqs_build_opts *bo = sj->env->o;
  const aqs_recipe *r = sj->recipe;
  aqs_calib_opts *co = &cs->opts;
  snprintf(cs->tokenizer, sizeof cs->tokenizer, "%s/tokenizer.json", bo->model_dir);
  snprintf(cs->processor, sizeof cs->processor, "%s/preprocessor_config.json", bo->model_dir);
  if (r->modality == AQS_MODALITY_IMAGES) {
    co->images_jsonl = bo->images_path;
    co->images_root = bo->images_root;
    co->allow_outside_root = bo->allow_outside_root;
  } else {
    co->captions_path = bo->captions_path;
  }
  co->tokenizer_path = cs->tokenizer;
  co->processor_config = access(cs->processor, R_OK) == 0 ? cs->processor : NULL;
  co->samples = r->calib_samples;
  co->seed = (uint64_t)r->seed;
  co->max_len = (int32_t)r->max_len;
  co->template_name = r->template_name;
  co->chunk_seqs = (int32_t)r->chunk_sequences;
  co->progress = bo->progress;
  co->skip_bad = bo->skip_bad;
  cs->job.o = co;
  aqs_status st = opts_check(co, &cs->job, e);
  if (st == AQS_OK) st = job_key(sj->store, &cs->job, inputs, params, e);
  /* The rows are read for the key: a plan and a hit say it too when the data is short. */
  if (st == AQS_OK && sj->report)
    job_note(&cs->job, cs->job.samples, sj->report->calib_note, sizeof sj->report->calib_note);
  return st;
}

static aqs_status calib_run(aqs_stage_job *sj, aqs_stage_ctx *ctx, aqs_digest *result, aqs_err *e) {
  (void)ctx;
  calib_state *cs = sj->state;
  return job_run(sj->store, &cs->job, &cs->set, cs->first_bad, sizeof cs->first_bad, result, e);
}

static void calib_release(aqs_stage_job *sj) {
  calib_state *cs = sj->state;
  if (!cs) return;
  job_free(&cs->job);
  aqs_calib_set_free(&cs->set);
  free(cs);
  sj->state = NULL;
}

const aqs_stage_def aqs_stage_calib_set = {
    .name = AQS_CALIB_STAGE_NAME,
    .version = AQS_CALIB_STAGE_VERSION,
    .inputs = {NULL}, /* reads the model's tokenizer file by content, not the source manifest */
    .recipe_keys = "calib.modality calib.samples calib.max_len calib.seed calib.template calib.chunk_sequences",
    .key = calib_key,
    .run = calib_run,
    .release = calib_release,
};

aqs_status aqs_calib_set_load(aqs_store *store, const aqs_digest *digest, aqs_calib_set *set,
                              aqs_err *err) {
  void *data;
  size_t len;
  aqs_status st = aqs_get_mem(store, digest, &data, &len, err);
  if (st != AQS_OK) return st;
  char what[AQS_DIGEST_STR_SIZE];
  st = aqs_calib_set_from_json(data, len, aqs_digest_str(digest, what), set, err);
  free(data);
  return st;
}

aqs_status aqs_calib_chunk_load(aqs_store *store, const aqs_calib_set *set, int32_t index,
                                aqs_calib_chunk *chunk, aqs_err *err) {
  memset(chunk, 0, sizeof *chunk);
  if (index < 0 || index >= set->n_chunks)
    return aqs_errf(err, AQS_ERR_INVALID, "calib set has %d chunks, no chunk %d", set->n_chunks, index);
  aqs_digest d;
  aqs_status st = aqs_digest_parse(set->chunk_digests[index], &d, err);
  if (st != AQS_OK) return st;
  void *data;
  size_t len;
  if ((st = aqs_get_mem(store, &d, &data, &len, err)) != AQS_OK) return st;
  st = aqs_calib_chunk_decode(data, len, set->chunk_digests[index], chunk, err);
  free(data);
  if (st == AQS_OK) chunk->first_seq = (int64_t)index * set->chunk_seqs;
  return st;
}
