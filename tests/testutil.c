/* tests/testutil.c: implementation of the shared test helpers in testutil.h. */
#include "testutil.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

char *tu_mkdtemp(const char *tag) {
  const char *tmp = getenv("TMPDIR");
  if (!tmp || !*tmp) tmp = "/tmp";
  char *path = malloc(4096);
  if (!path) abort();
  snprintf(path, 4096, "%s/aqs-test-%s-XXXXXX", tmp, tag);
  if (!mkdtemp(path)) {
    fprintf(stderr, "mkdtemp %s: %s\n", path, strerror(errno));
    abort();
  }
  return path;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st; (void)flag; (void)ftw;
  chmod(p, 0700);
  return remove(p);
}

static int chmod_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)ftw;
  if (flag == FTW_D || flag == FTW_DNR || (st && S_ISDIR(st->st_mode))) chmod(p, 0700);
  return 0;
}

int tu_rm_rf(const char *path) {
  if (!path || !*path || strcmp(path, "/") == 0) return -1;
  nftw(path, chmod_one, 16, FTW_PHYS); /* make read-only dirs removable first */
  return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *tu_src_path(const char *rel) {
  static char buf[4096];
  const char *src = getenv("AQS_SOURCE_DIR");
  snprintf(buf, sizeof buf, "%s/%s", src && *src ? src : ".", rel);
  return buf;
}

const char *tu_shared_path(const char *rel) {
  static char buf[4096];
  const char *shared = getenv("AQS_SHARED_DIR");
  snprintf(buf, sizeof buf, "%s/%s", shared && *shared ? shared : "../shared", rel);
  if (access(buf, R_OK) != 0) {
    fprintf(stderr, "skipping: %s missing\n", buf);
    return NULL;
  }
  return buf;
}

const char *tu_aqs_bin(void) {
  const char *bin = getenv("AQS_BIN");
  return bin && *bin ? bin : "aqs";
}

void tu_write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
    fprintf(stderr, "write %s: %s\n", path, strerror(errno));
    abort();
  }
}

char *tu_read_file(const char *path, size_t *len_out) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap + 1);
  size_t n;
  while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      char *nb = realloc(buf, cap * 2 + 1);
      if (!nb) { free(buf); buf = NULL; break; }
      buf = nb;
      cap *= 2;
    }
  }
  fclose(f);
  if (!buf) return NULL;
  buf[len] = '\0';
  if (len_out) *len_out = len;
  return buf;
}

int tu_run(const char *cmd, char **output) {
  char full[8192];
  snprintf(full, sizeof full, "( %s ) 2>&1", cmd);
  FILE *p = popen(full, "r");
  if (!p) return -1;
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap + 1);
  size_t n;
  while ((n = fread(buf + len, 1, cap - len, p)) > 0) {
    len += n;
    if (len == cap) {
      cap *= 2;
      buf = realloc(buf, cap + 1);
      if (!buf) abort();
    }
  }
  buf[len] = '\0';
  int st = pclose(p);
  if (output) *output = buf; else free(buf);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

int tu_synth_model(const char *preset, int seed, const char *dir) {
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "'%s' synth-model --preset %s --seed %d --out '%s'", tu_aqs_bin(), preset, seed, dir);
  char *out = NULL;
  int rc = tu_run(cmd, &out);
  if (rc != 0) printf("%s failed (%d): %s\n", cmd, rc, out ? out : "");
  free(out);
  return rc;
}
