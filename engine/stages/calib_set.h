/* engine/stages/calib_set.h: the calib-set stage (DESIGN.md §2): builds a calibration set from a
 * caption file or an image+caption JSONL, stores it as chunk objects plus a manifest, and caches
 * the run as an action keyed by content only (dataset digests, tokenizer digest, processor
 * settings, samples, max length, seed, template, chunking, skip-bad): re-running with the same
 * inputs is a hit from any directory or machine sharing the store. The build runs it as the stage
 * table's "calib-set" (stage_calib_set.c); `aqs calib` through aqs_calib_build, with the same key.
 * Threads: one call per thread (the store may be shared). Ownership: results are freed with
 * aqs_calib_result_free / aqs_calib_set_free / aqs_calib_chunk_free. */
#ifndef AQS_STAGES_CALIB_SET_H
#define AQS_STAGES_CALIB_SET_H

#include <stdint.h>

#include "common/err.h"
#include "engine/calib/calibset.h"
#include "store/store.h"

#define AQS_CALIB_STAGE_NAME "calib-set"
#define AQS_CALIB_STAGE_VERSION "1"

typedef struct aqs_calib_opts {
  /* Exactly one dataset: captions_path (UTF-8, one caption per line) or images_jsonl (rows
   * {"image": path, "caption": text}, paths relative to images_root; root NULL = the JSONL's dir). */
  const char *captions_path;
  const char *images_jsonl;
  const char *images_root;
  int allow_outside_root;        /* 1: image rows may be absolute or leave images_root
                                    (engine/calib/image_root.h) */
  const char *tokenizer_path;    /* tokenizer.json (required) */
  const char *processor_config;  /* preprocessor_config.json; NULL = Qwen2.5-VL defaults */
  int64_t samples;               /* sequences wanted (>= 1); a dataset with fewer usable rows gives
                                    them all (the key then holds that count; see result.note) */
  uint64_t seed;                 /* sampling seed */
  int32_t max_len;               /* tokens per sequence, at most (longer ones are truncated;
                                    an image prompt that does not fit is a bad row) */
  const char *template_name;     /* "none" (default), "chat", "chat-system" or a text holding
                                    "{caption}" (engine/calib/captions.h) */
  int32_t chunk_seqs;            /* sequences per chunk; 0 = AQS_CALIB_DEFAULT_CHUNK_SEQS */
  int skip_bad;                  /* 1: skip and count bad rows; 0: the first bad row is an error */
  int progress;                  /* 1: progress on stderr */
  int lookup_only;               /* 1 (aqs plan): compute the key and look it up; a miss returns
                                    AQS_OK with hit = 0 and builds nothing */
} aqs_calib_opts;

typedef struct aqs_calib_result {
  int hit;                 /* 1: the action was cached; nothing was computed */
  aqs_digest key;          /* action key */
  char *key_doc;           /* canonical key document (owned), for miss explanations */
  aqs_digest digest;       /* the calib-set manifest object (the stage result; zero on a
                              lookup_only miss) */
  aqs_calib_set set;       /* the manifest, decoded (owned: aqs_calib_result_free; empty on a
                              lookup_only miss) */
  int64_t rows_total;      /* rows in the dataset */
  char first_bad[512];     /* with skip_bad: the first skipped row's reason ("" if none) */
  int64_t samples_used;    /* sequences in the set (on a lookup_only miss: those it would hold) */
  char note[512];          /* "" or, when samples_used < opts->samples, a sentence saying so */
} aqs_calib_result;

/* Looks up the action and, on a miss, builds and records the set. Errors name the file and line
 * (or image) at fault: AQS_ERR_NOT_FOUND (missing dataset, tokenizer, image), AQS_ERR_INVALID
 * (bad caption line, bad JSONL row, corrupt image, no usable row at all; blank caption lines are
 * not rows and never an error),
 * AQS_ERR_UNSUPPORTED (absurdly large image), AQS_ERR_IO, AQS_ERR_NOMEM. */
aqs_status aqs_calib_build(aqs_store *store, const aqs_calib_opts *opts, aqs_calib_result *res,
                           aqs_err *err);
void aqs_calib_result_free(aqs_calib_result *res);

/* Reads a calib-set manifest object. Errors: AQS_ERR_NOT_FOUND, AQS_ERR_CORRUPT. */
aqs_status aqs_calib_set_load(aqs_store *store, const aqs_digest *digest, aqs_calib_set *set,
                              aqs_err *err);
/* Reads chunk `index` of set (0-based) and sets its first_seq. Errors: AQS_ERR_INVALID (index out
 * of range), AQS_ERR_NOT_FOUND, AQS_ERR_CORRUPT. */
aqs_status aqs_calib_chunk_load(aqs_store *store, const aqs_calib_set *set, int32_t index,
                                aqs_calib_chunk *chunk, aqs_err *err);

#endif
