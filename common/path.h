/* common/path.h: building file paths into fixed buffers without silent truncation. */
#ifndef AQS_COMMON_PATH_H
#define AQS_COMMON_PATH_H

#include <stddef.h>

/* Longest path aqs builds (PATH_MAX on Linux). */
#define AQS_PATH_MAX 4096

/* buf = dir + "/" + name. Returns 0, or -1 (buf holds a truncated path) when it does not fit. */
int aqs_path_join(char *buf, size_t n, const char *dir, const char *name);
/* buf = formatted text (snprintf); 0, or -1 when truncated. */
int aqs_path_fmt(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
