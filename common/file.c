/* common/file.c: bounded, regular-file-only input reads and atomic writes (see file.h). The
 * limit table is the one place the per-kind limits live; docs/cli.md lists the same numbers. */
#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB ((uint64_t)1 << 20)

static const aqs_input_limit input_limits[AQS_INPUT_KIND_COUNT] = {
  [AQS_INPUT_TOKENIZER] = {"tokenizer", 64 * MIB},
  [AQS_INPUT_TOKENS] = {"token file", 2048 * MIB},
  [AQS_INPUT_CAPTIONS] = {"caption file", 256 * MIB},
  [AQS_INPUT_ROWS] = {"image rows file", 256 * MIB},
  [AQS_INPUT_CONFIG] = {"model config", 4 * MIB},
  [AQS_INPUT_RECIPE] = {"recipe", 1 * MIB},
  [AQS_INPUT_WORKSPACE] = {"workspace config", 1 * MIB},
  [AQS_INPUT_IMAGE] = {"image", 64 * MIB},
  [AQS_INPUT_DOCUMENT] = {"file", 256 * MIB},
  [AQS_INPUT_MODEL] = {"model file", 0},
  [AQS_INPUT_HASHED] = {"file", 0},
};

const aqs_input_limit *aqs_input_limit_of(aqs_input_kind kind) {
  if ((unsigned)kind >= AQS_INPUT_KIND_COUNT) kind = AQS_INPUT_DOCUMENT;
  return &input_limits[kind];
}

static const char *file_type_name(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a plain file";
}

static aqs_status open_checked(const char *path, const char *what, uint64_t max_bytes, int *fd_out,
                               uint64_t *size_out, aqs_err *e) {
  *fd_out = -1;
  /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return aqs_errno(e, errno == ENOENT ? AQS_ERR_NOT_FOUND : AQS_ERR_IO, errno, "cannot open %s %s", what,
                     path);
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    int err = errno;
    close(fd);
    return aqs_errno(e, AQS_ERR_IO, err, "cannot stat %s %s", what, path);
  }
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    if (S_ISDIR(sb.st_mode)) return aqs_errf(e, AQS_ERR_INVALID, "%s %s is a directory, not a file", what, path);
    return aqs_errf(e, AQS_ERR_INVALID, "%s %s is not a regular file (%s)", what, path,
                    file_type_name(sb.st_mode));
  }
  if (max_bytes && (uint64_t)sb.st_size > max_bytes) {
    close(fd);
    return aqs_errf(e, AQS_ERR_UNSUPPORTED, "%s %s is %llu bytes, over the %s limit of %llu bytes", what, path,
                    (unsigned long long)sb.st_size, what, (unsigned long long)max_bytes);
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  *fd_out = fd;
  if (size_out) *size_out = (uint64_t)sb.st_size;
  return AQS_OK;
}

aqs_status aqs_file_open_input(const char *path, aqs_input_kind kind, int *fd_out, uint64_t *size_out,
                               aqs_err *e) {
  const aqs_input_limit *lim = aqs_input_limit_of(kind);
  return open_checked(path, lim->what, lim->max_bytes, fd_out, size_out, e);
}

static aqs_status read_bounded(const char *path, const char *what, uint64_t max_bytes, char **data_out,
                               size_t *len_out, aqs_err *e) {
  *data_out = NULL;
  if (len_out) *len_out = 0;
  int fd;
  uint64_t size;
  aqs_status st = open_checked(path, what, max_bytes, &fd, &size, e);
  if (st != AQS_OK) return st;
  size_t cap = (size_t)size + 1 + 4096, len = 0;
  char *buf = malloc(cap);
  if (!buf) {
    close(fd);
    return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory reading %llu bytes", path, (unsigned long long)size);
  }
  for (;;) {
    if (len + 1 == cap) {
      char *grown = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
      if (!grown) {
        st = aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", path);
        break;
      }
      buf = grown;
      cap *= 2;
    }
    ssize_t got = read(fd, buf + len, cap - len - 1);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      st = aqs_errno(e, AQS_ERR_IO, errno, "cannot read %s %s", what, path);
      break;
    }
    if (got == 0) break;
    len += (size_t)got;
    if (max_bytes && len > max_bytes) {
      st = aqs_errf(e, AQS_ERR_UNSUPPORTED, "%s %s grew past the %s limit of %llu bytes", what, path, what,
                    (unsigned long long)max_bytes);
      break;
    }
  }
  close(fd);
  if (st != AQS_OK) {
    free(buf);
    return st;
  }
  buf[len] = '\0';
  *data_out = buf;
  if (len_out) *len_out = len;
  return AQS_OK;
}

aqs_status aqs_file_read_input(const char *path, aqs_input_kind kind, char **data_out, size_t *len_out,
                               aqs_err *e) {
  const aqs_input_limit *lim = aqs_input_limit_of(kind);
  return read_bounded(path, lim->what, lim->max_bytes, data_out, len_out, e);
}

aqs_status aqs_file_read(const char *path, const char *what, char **data_out, size_t *len_out, aqs_err *e) {
  const aqs_input_limit *lim = aqs_input_limit_of(AQS_INPUT_DOCUMENT);
  return read_bounded(path, what ? what : lim->what, lim->max_bytes, data_out, len_out, e);
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
