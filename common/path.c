/* common/path.c: checked path formatting (see path.h). */
#include "common/path.h"

#include <stdarg.h>
#include <stdio.h>

int aqs_path_join(char *buf, size_t n, const char *dir, const char *name) {
  int len = snprintf(buf, n, "%s/%s", dir, name);
  return len < 0 || (size_t)len >= n ? -1 : 0;
}

int aqs_path_fmt(char *buf, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(buf, n, fmt, ap);
  va_end(ap);
  return len < 0 || (size_t)len >= n ? -1 : 0;
}
