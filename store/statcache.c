/* store/statcache.c: the stat-cache, (absolute path, size, mtime_ns, inode, device) -> digest,
 * so an unchanged multi-GB checkpoint file is not hashed twice (aqs_hash_file_cached, and
 * aqs_put_file which turns a known file into a dedup without reading it). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "store/store_internal.h"

/* Value layout: u64 size, i64 mtime_ns, u64 inode, u64 device, digest(32). */
typedef struct statc_rec {
  uint64_t size;
  int64_t mtime_ns;
  uint64_t ino;
  uint64_t dev;
  uint8_t digest[AQS_DIGEST_BYTES];
} statc_rec;

static void rec_of(const struct stat *sb, statc_rec *r) {
  memset(r, 0, sizeof *r);
  r->size = (uint64_t)sb->st_size;
  r->mtime_ns = (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
  r->ino = (uint64_t)sb->st_ino;
  r->dev = (uint64_t)sb->st_dev;
}

int statcache_lookup(aqs_store *s, const char *abs_path, const struct stat *sb, aqs_digest *out) {
  if (!s) return 0;
  MDB_txn *txn = NULL;
  if (store_read_begin(s, &txn, NULL) != AQS_OK) return 0;
  MDB_val k = {strlen(abs_path), (void *)abs_path}, v;
  statc_rec want, have;
  rec_of(sb, &want);
  int hit = 0;
  if (mdb_get(txn, s->env->db_statc, &k, &v) == 0 && v.mv_size == sizeof have) {
    memcpy(&have, v.mv_data, sizeof have);
    hit = have.size == want.size && have.mtime_ns == want.mtime_ns && have.ino == want.ino &&
          have.dev == want.dev;
    if (hit) memcpy(out->bytes, have.digest, AQS_DIGEST_BYTES);
  }
  store_read_end(s, txn);
  return hit;
}

typedef struct statc_put {
  const char *path;
  statc_rec rec;
} statc_put;

static aqs_status statc_body(wtx *w, void *ctx, aqs_err *err) {
  statc_put *p = ctx;
  return wput(w, w->s->env->db_statc, p->path, strlen(p->path), &p->rec, sizeof p->rec, 0, err);
}

void statcache_record(aqs_store *s, const char *abs_path, const struct stat *sb,
                      const aqs_digest *d) {
  if (!s || (s->flags & AQS_STORE_RDONLY)) return;
  if (strlen(abs_path) > 500) return; /* LMDB keys are at most 511 bytes */
  statc_put p = {.path = abs_path};
  rec_of(sb, &p.rec);
  memcpy(p.rec.digest, d->bytes, AQS_DIGEST_BYTES);
  store_write(s, statc_body, &p, NULL);
}

aqs_status aqs_hash_file_cached(aqs_store *s, const char *path, aqs_digest *out,
                                uint64_t *size_out, aqs_err *err) {
  char abs[4096];
  if (!realpath(path, abs))
    return aqs_errno(err, errno == ENOENT ? AQS_ERR_NOT_FOUND : AQS_ERR_IO, errno, "opening %s",
                     path);
  int fd;
  aqs_status op = aqs_file_open_input(abs, AQS_INPUT_HASHED, &fd, NULL, err);
  if (op != AQS_OK) return op;
  struct stat before, after;
  if (fstat(fd, &before) != 0) {
    close(fd);
    return aqs_errno(err, AQS_ERR_IO, errno, "stat %s", path);
  }
  if (statcache_lookup(s, abs, &before, out)) {
    close(fd);
    if (size_out) *size_out = (uint64_t)before.st_size;
    return AQS_OK;
  }
  uint64_t size = 0;
  aqs_status st = aqs_sha256_fd(fd, 0, AQS_TO_EOF, path, out, &size, err);
  if (st == AQS_OK && fstat(fd, &after) == 0 && after.st_size == before.st_size &&
      after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
      after.st_mtim.tv_nsec == before.st_mtim.tv_nsec)
    statcache_record(s, abs, &before, out);
  close(fd);
  if (st == AQS_OK && size_out) *size_out = size;
  return st;
}

/* ---- verified stamps: an object file whose (inode, device, size, mtime, ctime) match the stamp
 * recorded when its bytes were last hashed is not hashed again. Key: STAMP_PREFIX + digest (paths,
 * the other keys of this database, start with '/'). */
#define STAMP_PREFIX "\x01v"
#define STAMP_PREFIX_LEN 2

typedef struct stamp_rec {
  uint64_t ino, dev, size;
  int64_t mtime_ns, ctime_ns;
} stamp_rec;

static void stamp_of(const struct stat *sb, stamp_rec *r) {
  memset(r, 0, sizeof *r);
  r->ino = (uint64_t)sb->st_ino;
  r->dev = (uint64_t)sb->st_dev;
  r->size = (uint64_t)sb->st_size;
  r->mtime_ns = (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
  r->ctime_ns = (int64_t)sb->st_ctim.tv_sec * 1000000000 + sb->st_ctim.tv_nsec;
}

static size_t stamp_key(const aqs_digest *d, uint8_t key[STAMP_PREFIX_LEN + AQS_DIGEST_BYTES]) {
  memcpy(key, STAMP_PREFIX, STAMP_PREFIX_LEN);
  memcpy(key + STAMP_PREFIX_LEN, d->bytes, AQS_DIGEST_BYTES);
  return STAMP_PREFIX_LEN + AQS_DIGEST_BYTES;
}

int stamp_matches(aqs_store *s, const aqs_digest *d, const struct stat *sb) {
  MDB_txn *txn = NULL;
  if (store_read_begin(s, &txn, NULL) != AQS_OK) return 0;
  uint8_t key[STAMP_PREFIX_LEN + AQS_DIGEST_BYTES];
  MDB_val k = {stamp_key(d, key), key}, v;
  stamp_rec want, have;
  stamp_of(sb, &want);
  int hit = mdb_get(txn, s->env->db_statc, &k, &v) == 0 && v.mv_size == sizeof have &&
            (memcpy(&have, v.mv_data, sizeof have), !memcmp(&have, &want, sizeof have));
  store_read_end(s, txn);
  return hit;
}

aqs_status stamp_put(wtx *w, const aqs_digest *d, const char *path, aqs_err *err) {
  struct stat sb;
  if (stat(path, &sb) != 0) return AQS_OK; /* nothing to vouch for */
  stamp_rec r;
  stamp_of(&sb, &r);
  uint8_t key[STAMP_PREFIX_LEN + AQS_DIGEST_BYTES];
  return wput(w, w->s->env->db_statc, key, stamp_key(d, key), &r, sizeof r, 0, err);
}

typedef struct stamp_ctx {
  aqs_digest digest;
  const char *path;
} stamp_ctx;

static aqs_status stamp_body(wtx *w, void *ctx, aqs_err *err) {
  stamp_ctx *c = ctx;
  return stamp_put(w, &c->digest, c->path, err);
}

void stamp_record(aqs_store *s, const aqs_digest *d, const char *path) {
  if (s->flags & AQS_STORE_RDONLY) return;
  stamp_ctx c = {*d, path};
  store_write(s, stamp_body, &c, NULL);
}
