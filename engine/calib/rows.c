/* engine/calib/rows.c: caption-file and JSONL readers (see rows.h). Lines are read whole with
 * getline; each is validated, then kept, skipped (counted) or turned into the error. */
#include "engine/calib/rows.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"

#include "engine/calib/captions.h"

void aqs_calib_rows_free(aqs_calib_rows *rows) {
  if (!rows) return;
  for (int64_t i = 0; i < rows->n; i++) {
    free(rows->rows[i].image);
    free(rows->rows[i].caption);
  }
  free(rows->rows);
  memset(rows, 0, sizeof *rows);
}

static aqs_status rows_push(aqs_calib_rows *rows, int64_t *cap, int64_t line, const char *image,
                            const char *caption, size_t caption_len, aqs_err *err) {
  if (rows->n == *cap) {
    int64_t ncap = *cap ? *cap * 2 : 256;
    aqs_calib_row *nr = realloc(rows->rows, (size_t)ncap * sizeof *nr);
    if (!nr) return aqs_errf(err, AQS_ERR_NOMEM, "out of memory reading dataset rows");
    rows->rows = nr;
    *cap = ncap;
  }
  aqs_calib_row *r = &rows->rows[rows->n];
  r->line = line;
  r->image = image ? strdup(image) : NULL;
  r->caption = malloc(caption_len + 1);
  if ((image && !r->image) || !r->caption) {
    free(r->image);
    free(r->caption);
    return aqs_errf(err, AQS_ERR_NOMEM, "out of memory reading dataset rows");
  }
  memcpy(r->caption, caption, caption_len);
  r->caption[caption_len] = '\0';
  r->caption_len = caption_len;
  rows->n++;
  return AQS_OK;
}

/* A bad line: an error, or (skip_bad) a count and maybe the first reason. */
static aqs_status bad_line(aqs_calib_rows *rows, int skip_bad, aqs_err *err, const char *path,
                           int64_t line, const char *why) {
  if (!skip_bad) return aqs_errf(err, AQS_ERR_INVALID, "%s:%lld: %s", path, (long long)line, why);
  if (rows->n_bad++ == 0)
    snprintf(rows->first_bad, sizeof rows->first_bad, "%s:%lld: %s", path, (long long)line, why);
  return AQS_OK;
}

static FILE *open_dataset(const char *path, aqs_err *err) {
  int fd;
  if (aqs_file_open_input(path, AQS_INPUT_ROWS, &fd, NULL, err) != AQS_OK) return NULL;
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    aqs_errno(err, AQS_ERR_IO, errno, "cannot open dataset %s", path);
    close(fd);
  }
  return f;
}

/* Strips "\n" or "\r\n". */
static size_t chomp(char *s, size_t len) {
  if (len && s[len - 1] == '\n') len--;
  if (len && s[len - 1] == '\r') len--;
  s[len] = '\0';
  return len;
}

aqs_status aqs_calib_read_captions(const char *path, int skip_bad, aqs_calib_rows *out, aqs_err *err) {
  memset(out, 0, sizeof *out);
  aqs_caption_read_opts ro = {.max_line_bytes = AQS_CALIB_MAX_LINE_BYTES, .skip_bad = skip_bad};
  aqs_captions caps;
  aqs_status st = aqs_captions_read(path, &ro, &caps, err);
  if (st != AQS_OK) return st;
  int64_t cap = 0;
  for (int64_t i = 0; i < caps.n && st == AQS_OK; i++)
    st = rows_push(out, &cap, caps.items[i].line, NULL, caps.items[i].text, caps.items[i].len, err);
  out->n_bad = caps.n_issues;
  if (caps.n_issues) {
    const aqs_caption_issue *is = &caps.issues[0];
    snprintf(out->first_bad, sizeof out->first_bad, "%.300s:%lld: %s", path, (long long)is->line,
             aqs_caption_problem_name(is->problem));
  }
  aqs_captions_free(&caps);
  if (st != AQS_OK) aqs_calib_rows_free(out);
  return st;
}

static int is_blank(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
  return 1;
}

aqs_status aqs_calib_read_jsonl(const char *path, int skip_bad, aqs_calib_rows *out, aqs_err *err) {
  memset(out, 0, sizeof *out);
  FILE *f = open_dataset(path, err);
  if (!f) return err ? err->code : AQS_ERR_IO;
  char *line = NULL, why[256];
  size_t line_cap = 0;
  int64_t cap = 0, lineno = 0;
  ssize_t got;
  aqs_status st = AQS_OK;
  while (st == AQS_OK && (got = getline(&line, &line_cap, f)) >= 0) {
    lineno++;
    size_t len = chomp(line, (size_t)got);
    if (is_blank(line, len)) continue;
    json_error_t jerr;
    json_t *row = json_loadb(line, len, 0, &jerr);
    const char *image = row ? json_string_value(json_object_get(row, "image")) : NULL;
    json_t *cap_v = row ? json_object_get(row, "caption") : NULL;
    const char *caption = json_string_value(cap_v);
    if (!row) {
      snprintf(why, sizeof why, "invalid JSON: %s", jerr.text);
      st = bad_line(out, skip_bad, err, path, lineno, why);
    } else if (!json_is_object(row)) {
      st = bad_line(out, skip_bad, err, path, lineno, "row is not a JSON object");
    } else if (!image || !*image) {
      st = bad_line(out, skip_bad, err, path, lineno, "missing or empty \"image\" string");
    } else if (!caption || json_string_length(cap_v) == 0) {
      st = bad_line(out, skip_bad, err, path, lineno, "missing or empty \"caption\" string");
    } else if (json_string_length(cap_v) > AQS_CALIB_MAX_LINE_BYTES) {
      st = bad_line(out, skip_bad, err, path, lineno, "caption too long");
    } else {
      st = rows_push(out, &cap, lineno, image, caption, json_string_length(cap_v), err);
    }
    json_decref(row);
  }
  if (st == AQS_OK && ferror(f)) st = aqs_errno(err, AQS_ERR_IO, errno, "cannot read dataset %s", path);
  free(line);
  fclose(f);
  if (st != AQS_OK) aqs_calib_rows_free(out);
  return st;
}
