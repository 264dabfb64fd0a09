/* common/file.c: whole-file reads and atomic writes (see file.h). */
#include "common/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

aqs_status aqs_file_read(const char *path, const char *what, char **data_out, size_t *len_out, aqs_err *e) {
  *data_out = NULL;
  if (len_out) *len_out = 0;
  FILE *f = fopen(path, "rb");
  if (!f)
    return aqs_errno(e, errno == ENOENT ? AQS_ERR_NOT_FOUND : AQS_ERR_IO, errno, "%s%s%s%s", what ? "cannot open " : "",
                     what ? what : "", what ? " " : "", path);
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len + 65536 + 1 > cap) {
      cap = cap ? cap * 2 : 131072;
      char *grown = realloc(buf, cap);
      if (!grown) {
        free(buf);
        fclose(f);
        return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", path);
      }
      buf = grown;
    }
    size_t got = fread(buf + len, 1, cap - len - 1, f);
    len += got;
    if (got == 0) break;
  }
  int failed = ferror(f);
  fclose(f);
  if (failed) {
    free(buf);
    return aqs_errf(e, AQS_ERR_IO, "%s: read error", path);
  }
  buf[len] = '\0';
  *data_out = buf;
  if (len_out) *len_out = len;
  return AQS_OK;
}

aqs_status aqs_file_write_atomic(const char *path, const void *data, size_t len, aqs_err *e) {
  char *tmp = NULL;
  if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    aqs_status st = aqs_errno(e, AQS_ERR_IO, errno, "%s: cannot create", tmp);
    free(tmp);
    return st;
  }
  int ok = fwrite(data, 1, len, f) == len;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    int err = errno;
    unlink(tmp);
    free(tmp);
    return aqs_errno(e, AQS_ERR_IO, err, "%s: cannot write", path);
  }
  free(tmp);
  return AQS_OK;
}
