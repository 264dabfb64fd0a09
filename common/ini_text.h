/* common/ini_text.h: INI files (recipes, .aqstore) read whole and handed to inih line by line.
 * Reading whole lets a NUL byte be refused with its line (inih reads C strings: a value would be
 * cut at the NUL silently, so "0.5\0junk" and "0.5" would be the same value). */
#ifndef AQS_COMMON_INI_TEXT_H
#define AQS_COMMON_INI_TEXT_H

#include <stddef.h>

#include "common/err.h"
#include "common/file.h"

/* Reads path (a regular file within kind's limit, common/file.h) into a malloc'd NUL-terminated
 * text the caller frees. Errors: those of aqs_file_read_input, and AQS_ERR_INVALID
 * "<path>:<line>: NUL byte in the line" for the first line holding a NUL. */
aqs_status aqs_ini_text_load(const char *path, aqs_input_kind kind, char **text_out, aqs_err *e);

/* Reader state over a NUL-terminated text. line: the number of the line handed out last.
 * overlong_line: the first line longer than inih's buffer (its rest is dropped and the line
 * handed out empty, so callers must report it), 0 if none. */
typedef struct aqs_ini_text {
  const char *text;
  size_t pos;
  int line;
  int overlong_line;
} aqs_ini_text;

/* An ini_reader for ini_parse_stream(aqs_ini_text_reader, &src, ...). Not thread-safe per src. */
char *aqs_ini_text_reader(char *str, int num, void *src);

#endif
