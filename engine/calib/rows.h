/* engine/calib/rows.h: reading calibration datasets into rows: a caption file (one UTF-8 caption
 * per line) or an image+caption JSONL ({"image": path, "caption": text} per line). Every bad line
 * is reported with its line number; with skip_bad it is counted and left out instead.
 * Caption files are read by engine/calib/captions.h (the tokenizer engineer's reader). */
#ifndef AQS_CALIB_ROWS_H
#define AQS_CALIB_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Longest caption line accepted, in bytes. */
#define AQS_CALIB_MAX_LINE_BYTES 65536

typedef struct aqs_calib_row {
  int64_t line;      /* 1-based line number in the dataset file */
  char *image;       /* JSONL: the image path as written (NULL for caption files) */
  char *caption;     /* NUL-terminated UTF-8 */
  size_t caption_len;
} aqs_calib_row;

typedef struct aqs_calib_rows {
  aqs_calib_row *rows; /* good rows in file order */
  int64_t n;
  int64_t n_bad;       /* bad lines skipped (skip_bad only) */
  char first_bad[512]; /* "<file>:<line>: <why>" of the first skipped line, "" if none */
} aqs_calib_rows;

/* Caption file through aqs_captions_read. Bad lines: invalid UTF-8 (byte offset given), empty or
 * white space only, longer than AQS_CALIB_MAX_LINE_BYTES. Without skip_bad any bad line is
 * AQS_ERR_INVALID listing them ("<file>:<line>: ...; ..."). Errors: AQS_ERR_NOT_FOUND / AQS_ERR_IO
 * naming the file. */
aqs_status aqs_calib_read_captions(const char *path, int skip_bad, aqs_calib_rows *out, aqs_err *err);

/* JSONL file. Blank lines are ignored; bad lines: not a JSON object, missing/empty "image" or
 * "caption" string. Same error convention as above. */
aqs_status aqs_calib_read_jsonl(const char *path, int skip_bad, aqs_calib_rows *out, aqs_err *err);

void aqs_calib_rows_free(aqs_calib_rows *rows);

#endif
