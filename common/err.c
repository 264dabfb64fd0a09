/* common/err.c: formatting of aqs_err messages (see err.h for the convention). */
#include "common/err.h"

#include <stdio.h>
#include <string.h>

aqs_status aqs_errf(aqs_err *e, aqs_status code, const char *fmt, ...) {
  if (!e) return code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  e->code = code;
  return code;
}

aqs_status aqs_errno(aqs_err *e, aqs_status code, int errnum, const char *fmt, ...) {
  if (!e) return code;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < sizeof e->msg)
    snprintf(e->msg + n, sizeof e->msg - (size_t)n, ": %s", strerror(errnum));
  e->code = code;
  return code;
}

aqs_status aqs_err_prefix(aqs_err *e, const char *fmt, ...) {
  if (!e) return AQS_ERR_INTERNAL;
  char old[AQS_ERR_MSG_MAX];
  memcpy(old, e->msg, sizeof old);
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  /* Append ": <old>" by hand: snprintf of a full-size buffer into the rest trips -Wformat-truncation. */
  size_t len = n < 0 ? 0 : (size_t)n >= sizeof e->msg ? sizeof e->msg - 1 : (size_t)n;
  const char *parts[2] = {": ", old};
  for (int p = 0; p < 2; p++)
    for (const char *c = parts[p]; *c && len + 1 < sizeof e->msg; c++) e->msg[len++] = *c;
  e->msg[len] = '\0';
  return e->code;
}

void aqs_err_clear(aqs_err *e) {
  if (!e) return;
  e->code = AQS_OK;
  e->msg[0] = '\0';
}

const char *aqs_status_name(aqs_status code) {
  switch (code) {
  case AQS_OK: return "ok";
  case AQS_ERR_IO: return "io";
  case AQS_ERR_NOT_FOUND: return "not-found";
  case AQS_ERR_INVALID: return "invalid";
  case AQS_ERR_CORRUPT: return "corrupt";
  case AQS_ERR_NOMEM: return "no-memory";
  case AQS_ERR_AMBIGUOUS: return "ambiguous";
  case AQS_ERR_UNSUPPORTED: return "unsupported";
  case AQS_ERR_BUSY: return "busy";
  case AQS_ERR_NUMERIC: return "numeric";
  case AQS_ERR_MISMATCH: return "mismatch";
  case AQS_ERR_INTERNAL: return "internal";
  }
  return "unknown";
}
