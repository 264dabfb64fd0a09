/* common/file.h: whole-file reads and atomic whole-file writes, for the small text documents
 * (amax tables, scores, plans, configs) that modules load and save. */
#ifndef AQS_COMMON_FILE_H
#define AQS_COMMON_FILE_H

#include <stddef.h>

#include "common/err.h"

/* Reads path into a malloc'd buffer (NUL-terminated; *len_out excludes the NUL).
 * what (may be NULL) says what the file is for messages: "cannot open <what> <path>: <errno>".
 * Errors: AQS_ERR_NOT_FOUND (missing), AQS_ERR_IO, AQS_ERR_NOMEM; messages name the path. */
aqs_status aqs_file_read(const char *path, const char *what, char **data_out, size_t *len_out, aqs_err *e);

/* Writes len bytes to path through "<path>.tmp.<pid>" + rename, so a reader sees the old file or
 * the whole new one. Errors: AQS_ERR_IO naming the path (the tmp file is removed). */
aqs_status aqs_file_write_atomic(const char *path, const void *data, size_t len, aqs_err *e);

#endif
