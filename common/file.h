/* common/file.h: opening and reading the files aqs reads by path. Every such file must be a
 * regular file (never a FIFO, device or directory: they would hang or never end) no larger than
 * the limit of its kind (docs/cli.md, "Input limits"); plus atomic whole-file writes. */
#ifndef AQS_COMMON_FILE_H
#define AQS_COMMON_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* The kinds of input file, each with a name for messages and a size limit (aqs_input_limit). */
typedef enum aqs_input_kind {
  AQS_INPUT_TOKENIZER,  /* tokenizer.json */
  AQS_INPUT_TOKENS,     /* --tokens: token-id JSONL or an AQSCALC1 calib chunk */
  AQS_INPUT_CAPTIONS,   /* --captions: one caption per line */
  AQS_INPUT_ROWS,       /* --images: JSONL image rows */
  AQS_INPUT_CONFIG,     /* a model's config.json, preprocessor_config.json */
  AQS_INPUT_RECIPE,     /* a recipe .ini */
  AQS_INPUT_WORKSPACE,  /* .aqstore */
  AQS_INPUT_IMAGE,      /* a PNG/JPEG named by an image row (decoded pixels: image.h) */
  AQS_INPUT_DOCUMENT,   /* anything else aqs writes and reads back: plans, scores, amax, aux files */
  AQS_INPUT_MODEL,      /* a .safetensors file: mapped, no size limit (its header has one) */
  AQS_INPUT_HASHED,     /* a file only hashed (dataset, tokenizer, model files): streamed, no limit */
  AQS_INPUT_KIND_COUNT
} aqs_input_kind;

typedef struct aqs_input_limit {
  const char *what;   /* "tokenizer", "caption file", ... */
  uint64_t max_bytes; /* 0 = no limit */
} aqs_input_limit;

/* The limit of a kind (a static table; never NULL for a valid kind). */
const aqs_input_limit *aqs_input_limit_of(aqs_input_kind kind);

/* Opens path read-only without blocking on a FIFO (O_NONBLOCK, cleared once the file is known to
 * be regular), then refuses anything but a regular file no larger than the kind's limit.
 * On success *fd_out is the caller's to close and *size_out (may be NULL) the size at open.
 * Errors, each naming the path and the kind: AQS_ERR_NOT_FOUND (missing), AQS_ERR_IO,
 * AQS_ERR_INVALID ("is a directory", "not a regular file (a FIFO)"), AQS_ERR_UNSUPPORTED (over
 * the limit: "... is N bytes, over the limit of M bytes for a <what>"). Thread-safe. */
aqs_status aqs_file_open_input(const char *path, aqs_input_kind kind, int *fd_out, uint64_t *size_out,
                               aqs_err *e);

/* Reads a whole input file of the given kind (aqs_file_open_input's checks; the read itself stops
 * one byte past the limit, so a file that grows while read is refused too) into a malloc'd
 * buffer, NUL-terminated; *len_out (may be NULL) excludes the NUL. Errors as above, and
 * AQS_ERR_NOMEM. The buffer is the caller's to free. */
aqs_status aqs_file_read_input(const char *path, aqs_input_kind kind, char **data_out, size_t *len_out,
                               aqs_err *e);

/* aqs_file_read_input with kind AQS_INPUT_DOCUMENT and what (may be NULL: "file") naming the
 * file in messages: "cannot open <what> <path>: <errno>". */
aqs_status aqs_file_read(const char *path, const char *what, char **data_out, size_t *len_out, aqs_err *e);

/* Writes len bytes to path through "<path>.tmp.<pid>" + rename, so a reader sees the old file or
 * the whole new one. Errors: AQS_ERR_IO naming the path (the tmp file is removed). */
aqs_status aqs_file_write_atomic(const char *path, const void *data, size_t len, aqs_err *e);

#endif
