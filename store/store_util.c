/* store/store_util.c: small helpers shared by the store files: clocks, object paths, tmp files,
 * directory fsync, user/host names for provenance, and the object record encoding. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store_internal.h"

int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void format_utc(int64_t ns, char out[AQS_TIME_STR_SIZE]) {
  time_t secs = (time_t)(ns / 1000000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  strftime(out, AQS_TIME_STR_SIZE, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void object_file_path(const aqs_store *s, const aqs_digest *d, int kind, char *out, size_t cap) {
  char hex[AQS_DIGEST_HEX_LEN + 1];
  aqs_digest_hex(d, hex);
  snprintf(out, cap, "%s/%.2s/%s%s", s->objects_dir, hex, hex + 2,
           kind == AQS_OBJ_FILE_ZSTD ? ".zst" : "");
}

int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  if (rc != 0 && (errno == EINVAL || errno == EROFS)) rc = 0;
  close(fd);
  return rc;
}

int store_tmpfile(aqs_store *s, char *path_out, size_t cap, aqs_err *err) {
  snprintf(path_out, cap, "%s/put-%ld-XXXXXX", s->tmp_dir, (long)getpid());
  int fd = mkostemp(path_out, O_CLOEXEC);
  if (fd < 0) {
    aqs_errno(err, AQS_ERR_IO, errno, "creating a temporary file in %s", s->tmp_dir);
    return -1;
  }
  return fd;
}

void current_user(char *out, size_t cap) {
  const char *name = NULL;
  struct passwd pw, *found = NULL;
  char buf[1024];
  if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &found) == 0 && found) name = found->pw_name;
  if (!name) name = getenv("USER");
  if (name && *name) snprintf(out, cap, "%s", name);
  else snprintf(out, cap, "uid%ld", (long)getuid());
}

void current_host(char *out, size_t cap) {
  if (gethostname(out, cap) != 0 || !out[0]) snprintf(out, cap, "unknown");
  out[cap - 1] = '\0';
}

static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Layout: u8 version, u8 kind, u8 flags, 5 reserved, u64 size, u64 stored, i64 created_ns. */
void obj_rec_encode_header(const obj_rec *r, uint8_t out[OBJ_REC_HEADER]) {
  memset(out, 0, OBJ_REC_HEADER);
  out[0] = OBJ_REC_VERSION;
  out[1] = r->kind;
  out[2] = r->flags;
  put_u64(out + 8, r->size_bytes);
  put_u64(out + 16, r->stored_bytes);
  put_u64(out + 24, (uint64_t)r->created_ns);
}

int obj_rec_decode(const MDB_val *v, obj_rec *r) {
  const uint8_t *p = v->mv_data;
  if (v->mv_size < OBJ_REC_HEADER || p[0] != OBJ_REC_VERSION) return -1;
  if (p[1] < AQS_OBJ_INLINE_ZSTD || p[1] > AQS_OBJ_FILE_RAW) return -1;
  r->kind = p[1];
  r->flags = p[2];
  r->size_bytes = get_u64(p + 8);
  r->stored_bytes = get_u64(p + 16);
  r->created_ns = (int64_t)get_u64(p + 24);
  r->inline_data = p + OBJ_REC_HEADER;
  r->inline_len = v->mv_size - OBJ_REC_HEADER;
  return 0;
}

int object_files_foreach(const aqs_store *s, object_file_fn fn, void *user) {
  DIR *top = opendir(s->objects_dir);
  if (!top) return errno == ENOENT ? 0 : -1;
  int stop = 0;
  struct dirent *de;
  while (!stop && (de = readdir(top))) {
    if (strlen(de->d_name) != 2) continue;
    char sub[4600];
    snprintf(sub, sizeof sub, "%s/%s", s->objects_dir, de->d_name);
    DIR *d = opendir(sub);
    if (!d) continue;
    struct dirent *f;
    while (!stop && (f = readdir(d))) {
      size_t len = strlen(f->d_name);
      int zstd = len == 66 && !strcmp(f->d_name + 62, ".zst");
      if (len != 62 && !zstd) continue; /* not an object name */
      char text[80], path[4900];
      aqs_digest dg;
      snprintf(text, sizeof text, "sha256:%.2s%.62s", de->d_name, f->d_name);
      if (aqs_digest_parse(text, &dg, NULL) != AQS_OK) continue;
      snprintf(path, sizeof path, "%s/%.255s", sub, f->d_name);
      stop = fn(path, f->d_name, &dg, zstd, user);
    }
    closedir(d);
  }
  closedir(top);
  return 0;
}
