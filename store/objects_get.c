/* store/objects_get.c: reading objects. Every read re-hashes the bytes and checks zstd frame
 * checksums, so a corrupt object fails with AQS_ERR_CORRUPT and never yields wrong bytes (for
 * streams: the caller discards what was written). Also stat, raw paths, views, children,
 * abbreviation lookup and iteration. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "store/store_internal.h"

#define GET_BLOCK_BYTES (1u << 20)

/* Sink for object bytes; NULL fn discards (verify). */
typedef aqs_status (*bytes_fn)(const void *data, size_t len, void *user, aqs_err *err);

static aqs_status not_found(aqs_store *s, const aqs_digest *d, aqs_err *err) {
  char text[AQS_DIGEST_STR_SIZE];
  return aqs_errf(err, AQS_ERR_NOT_FOUND, "object %s not found in store %s",
                  aqs_digest_str(d, text), s->path);
}

static aqs_status corrupt(const aqs_digest *d, const char *why, aqs_err *err) {
  char text[AQS_DIGEST_STR_SIZE];
  return aqs_errf(err, AQS_ERR_CORRUPT, "object %s is corrupt: %s; run aqs verify",
                  aqs_digest_str(d, text), why);
}

static void info_of(const aqs_digest *d, const obj_rec *r, int64_t atime, aqs_object_info *info) {
  memset(info, 0, sizeof *info);
  info->digest = *d;
  info->kind = (aqs_object_kind)r->kind;
  info->manifest = !!(r->flags & OBJ_FLAG_MANIFEST);
  info->size_bytes = r->size_bytes;
  info->stored_bytes = r->stored_bytes;
  info->created_ns = r->created_ns;
  info->atime_ns = atime;
}

/* Looks the record up; for inline objects copies the frame into *frame (malloc'd). */
static aqs_status lookup(aqs_store *s, const aqs_digest *d, aqs_object_info *info, void **frame,
                         size_t *frame_len, aqs_err *err) {
  MDB_txn *txn = NULL;
  aqs_status st = store_read_begin(s, &txn, err);
  if (st != AQS_OK) return st;
  MDB_val k = {AQS_DIGEST_BYTES, (void *)d->bytes}, v, av;
  obj_rec r;
  int rc = mdb_get(txn, s->env->db_obj, &k, &v);
  if (rc == MDB_NOTFOUND) st = not_found(s, d, err);
  else if (rc != 0) st = store_mdb_err(s, rc, "reading", err);
  else if (obj_rec_decode(&v, &r) != 0) st = corrupt(d, "its index record is malformed", err);
  if (st == AQS_OK) {
    int64_t atime = 0;
    if (mdb_get(txn, s->env->db_atime, &k, &av) == 0 && av.mv_size == sizeof atime)
      memcpy(&atime, av.mv_data, sizeof atime);
    info_of(d, &r, atime, info);
    if (frame) {
      *frame = NULL;
      *frame_len = 0;
      if (r.kind == AQS_OBJ_INLINE_ZSTD) {
        *frame = malloc(r.inline_len ? r.inline_len : 1);
        if (!*frame) st = aqs_errf(err, AQS_ERR_NOMEM, "reading an object: out of memory");
        else memcpy(*frame, r.inline_data, r.inline_len);
        *frame_len = r.inline_len;
      }
    }
  }
  store_read_end(s, txn);
  return st;
}

/* Decompresses zstd input chunks, hashing and forwarding the output. */
typedef struct zreader {
  ZSTD_DCtx *dc;
  uint8_t *out;
  size_t out_cap;
  size_t last_ret; /* 0 when the frame ended exactly */
} zreader;

static aqs_status feed_out(aqs_sha256 *h, bytes_fn fn, void *user, const void *data, size_t len,
                           uint64_t *total, aqs_err *err) {
  aqs_sha256_update(h, data, len);
  *total += len;
  return fn ? fn(data, len, user, err) : AQS_OK;
}

static aqs_status z_feed(zreader *z, const aqs_digest *d, const void *in_data, size_t in_len,
                         aqs_sha256 *h, bytes_fn fn, void *user, uint64_t *total, aqs_err *err) {
  ZSTD_inBuffer in = {in_data, in_len, 0};
  while (in.pos < in.size) {
    ZSTD_outBuffer out = {z->out, z->out_cap, 0};
    size_t ret = ZSTD_decompressStream(z->dc, &out, &in);
    if (ZSTD_isError(ret)) {
      char why[160];
      snprintf(why, sizeof why, "zstd: %s", ZSTD_getErrorName(ret));
      return corrupt(d, why, err);
    }
    z->last_ret = ret;
    aqs_status st = feed_out(h, fn, user, z->out, out.pos, total, err);
    if (st != AQS_OK) return st;
    if (ret == 0 && in.pos < in.size) return corrupt(d, "trailing bytes after the zstd frame", err);
  }
  /* Drain output the decoder still holds. */
  for (;;) {
    ZSTD_outBuffer out = {z->out, z->out_cap, 0};
    ZSTD_inBuffer none = {NULL, 0, 0};
    if (z->last_ret == 0) break;
    size_t ret = ZSTD_decompressStream(z->dc, &out, &none);
    if (ZSTD_isError(ret)) return corrupt(d, ZSTD_getErrorName(ret), err);
    z->last_ret = ret;
    aqs_status st = feed_out(h, fn, user, z->out, out.pos, total, err);
    if (st != AQS_OK) return st;
    if (out.pos < out.size) break;
  }
  return AQS_OK;
}

/* Streams the verified bytes of d to fn (which may be NULL). info is filled. */
static aqs_status obj_stream(aqs_store *s, const aqs_digest *d, bytes_fn fn, void *user,
                             aqs_object_info *info, aqs_err *err) {
  void *frame = NULL;
  size_t frame_len = 0;
  aqs_status st = lookup(s, d, info, &frame, &frame_len, err);
  if (st != AQS_OK) return st;
  aqs_sha256 *h = aqs_sha256_new();
  zreader z = {0};
  uint8_t *block = NULL;
  int fd = -1;
  uint64_t total = 0;
  if (!h) st = aqs_errf(err, AQS_ERR_NOMEM, "reading an object: out of memory");
  if (st == AQS_OK && info->kind != AQS_OBJ_FILE_RAW) {
    z.dc = ZSTD_createDCtx();
    z.out_cap = ZSTD_DStreamOutSize();
    z.out = malloc(z.out_cap);
    z.last_ret = 1;
    if (!z.dc || !z.out) st = aqs_errf(err, AQS_ERR_NOMEM, "reading an object: out of memory");
  }
  if (st == AQS_OK && info->kind == AQS_OBJ_INLINE_ZSTD) {
    st = z_feed(&z, d, frame, frame_len, h, fn, user, &total, err);
  } else if (st == AQS_OK) {
    char path[4400];
    object_file_path(s, d, info->kind, path, sizeof path);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int open_errno = errno;
      aqs_object_info again;
      if (open_errno == ENOENT && lookup(s, d, &again, NULL, NULL, NULL) == AQS_ERR_NOT_FOUND) {
        st = not_found(s, d, err); /* evicted by a concurrent gc since the lookup */
      } else {
        char why[4500];
        snprintf(why, sizeof why, "its file %s cannot be opened (%s)", path, strerror(open_errno));
        st = corrupt(d, why, err);
      }
    }
    block = malloc(GET_BLOCK_BYTES);
    if (st == AQS_OK && !block) st = aqs_errf(err, AQS_ERR_NOMEM, "reading: out of memory");
    if (fd >= 0) posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    while (st == AQS_OK) {
      ssize_t n = read(fd, block, GET_BLOCK_BYTES);
      if (n < 0) {
        if (errno == EINTR) continue;
        st = aqs_errno(err, AQS_ERR_IO, errno, "reading %s", path);
        break;
      }
      if (n == 0) break;
      if (info->kind == AQS_OBJ_FILE_RAW) st = feed_out(h, fn, user, block, (size_t)n, &total, err);
      else st = z_feed(&z, d, block, (size_t)n, h, fn, user, &total, err);
      if (st == AQS_OK && total > info->size_bytes)
        st = corrupt(d, "it is longer than recorded", err);
    }
  }
  if (st == AQS_OK && z.dc && z.last_ret != 0) st = corrupt(d, "the zstd frame is truncated", err);
  if (st == AQS_OK && total != info->size_bytes) st = corrupt(d, "its size differs from the record", err);
  if (st == AQS_OK) {
    aqs_digest got;
    aqs_sha256_final(h, &got);
    if (!aqs_digest_eq(&got, d)) {
      char text[AQS_DIGEST_STR_SIZE], why[200];
      snprintf(why, sizeof why, "its bytes hash to %s", aqs_digest_str(&got, text));
      st = corrupt(d, why, err);
    }
  }
  if (fd >= 0) close(fd);
  free(block);
  free(z.out);
  ZSTD_freeDCtx(z.dc);
  aqs_sha256_free(h);
  free(frame);
  return st;
}

aqs_status obj_read_verified(aqs_store *s, const aqs_digest *d, void **data, size_t *size,
                             aqs_object_info *info, aqs_err *err);

typedef struct mem_sink {
  uint8_t *data;
  size_t len, cap;
} mem_sink;

static aqs_status mem_append(const void *data, size_t len, void *user, aqs_err *err) {
  mem_sink *m = user;
  if (m->len + len > m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 4096;
    while (cap < m->len + len) cap *= 2;
    uint8_t *p = realloc(m->data, cap);
    if (!p) return aqs_errf(err, AQS_ERR_NOMEM, "reading an object: out of memory");
    m->data = p;
    m->cap = cap;
  }
  memcpy(m->data + m->len, data, len);
  m->len += len;
  return AQS_OK;
}

static aqs_status read_mem(aqs_store *s, const aqs_digest *d, void **data_out, size_t *size_out,
                           aqs_object_info *info, aqs_err *err) {
  aqs_object_info tmp;
  if (!info) info = &tmp;
  mem_sink m = {0};
  /* Reserve the recorded size up front (bounded, so a bad record cannot force a huge alloc). */
  MDB_txn *txn = NULL;
  if (store_read_begin(s, &txn, NULL) == AQS_OK) {
    MDB_val k = {AQS_DIGEST_BYTES, (void *)d->bytes}, v;
    obj_rec r;
    if (mdb_get(txn, s->env->db_obj, &k, &v) == 0 && obj_rec_decode(&v, &r) == 0 &&
        r.size_bytes <= (64ull << 30)) {
      m.cap = (size_t)r.size_bytes ? (size_t)r.size_bytes : 1;
      m.data = malloc(m.cap);
      if (!m.data) m.cap = 0;
    }
    store_read_end(s, txn);
  }
  aqs_status st = obj_stream(s, d, mem_append, &m, info, err);
  if (st != AQS_OK) {
    free(m.data);
    return st;
  }
  if (!m.data) m.data = malloc(1);
  if (!m.data) return aqs_errf(err, AQS_ERR_NOMEM, "reading an object: out of memory");
  *data_out = m.data;
  *size_out = m.len;
  return AQS_OK;
}

aqs_status obj_read_verified(aqs_store *s, const aqs_digest *d, void **data, size_t *size,
                             aqs_object_info *info, aqs_err *err) {
  if (data) return read_mem(s, d, data, size, info, err);
  aqs_object_info tmp;
  return obj_stream(s, d, NULL, NULL, info ? info : &tmp, err);
}

static void count_get(aqs_store *s, const aqs_digest *d) {
  pending_touch(s, d);
  pending_count(s, "gets", 1);
}

/* A read found damaged bytes: quarantine them (writable handles) so the next lookup misses. Only
 * after a second read fails too: a concurrent writer replacing the object's file (a zstd object
 * converted to a raw one) can make one read miss a good file. Returns st, or AQS_OK when the
 * second read found the object sound. */
static aqs_status quarantine_on_corrupt(aqs_store *s, const aqs_digest *d, aqs_status st,
                                        aqs_err *err) {
  if (st != AQS_ERR_CORRUPT) return st;
  aqs_object_info again;
  if (obj_stream(s, d, NULL, NULL, &again, NULL) == AQS_OK) return AQS_OK;
  store_quarantine(s, d, err ? err->msg : "its bytes do not match");
  return st;
}

aqs_status aqs_get_mem(aqs_store *s, const aqs_digest *d, void **data_out, size_t *size_out,
                       aqs_err *err) {
  *data_out = NULL;
  *size_out = 0;
  aqs_status st = read_mem(s, d, data_out, size_out, NULL, err);
  if (st == AQS_ERR_NOT_FOUND && s->tiers) return tiers_get_mem(s, d, data_out, size_out, err);
  if (st == AQS_ERR_CORRUPT && quarantine_on_corrupt(s, d, st, err) == AQS_OK)
    st = read_mem(s, d, data_out, size_out, NULL, err); /* it was a race: read it again */
  if (st == AQS_OK) count_get(s, d);
  return st;
}

aqs_status aqs_object_check(aqs_store *s, const aqs_digest *d, aqs_err *err) {
  aqs_object_info info;
  aqs_status st = lookup(s, d, &info, NULL, NULL, err);
  if (st != AQS_OK) return st;
  char path[4400] = "";
  if (info.kind != AQS_OBJ_INLINE_ZSTD) {
    struct stat sb;
    object_file_path(s, d, info.kind, path, sizeof path);
    if (stat(path, &sb) == 0 && stamp_matches(s, d, &sb)) return AQS_OK;
  }
  aqs_err e = {0};
  st = obj_stream(s, d, NULL, NULL, &info, &e);
  if (st == AQS_OK && path[0]) stamp_record(s, d, path);
  if (st == AQS_OK) return AQS_OK;
  st = quarantine_on_corrupt(s, d, st, &e);
  if (err && st != AQS_OK) *err = e;
  return st;
}

typedef struct fd_sink {
  int fd;
  uint64_t written;
} fd_sink;

static aqs_status fd_write(const void *data, size_t len, void *user, aqs_err *err) {
  fd_sink *f = user;
  const uint8_t *p = data;
  while (len) {
    ssize_t n = write(f->fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return aqs_errno(err, AQS_ERR_IO, errno, "writing object bytes");
    }
    p += n;
    len -= (size_t)n;
    f->written += (uint64_t)n;
  }
  return AQS_OK;
}

aqs_status aqs_get_fd(aqs_store *s, const aqs_digest *d, int fd, uint64_t *size_out,
                      aqs_err *err) {
  fd_sink f = {fd, 0};
  aqs_object_info info;
  aqs_status st = obj_stream(s, d, fd_write, &f, &info, err);
  if (st == AQS_ERR_NOT_FOUND && s->tiers && (st = tiers_fetch_object(s, d, err)) == AQS_OK)
    st = obj_stream(s, d, fd_write, &f, &info, err); /* a miss writes nothing: safe to retry */
  if (size_out) *size_out = f.written;
  if (st == AQS_OK) count_get(s, d);
  /* Bytes may have been written: the caller gets the error whatever the second read finds. */
  if (st == AQS_ERR_CORRUPT) quarantine_on_corrupt(s, d, st, err);
  return st;
}

aqs_status aqs_object_stat(aqs_store *s, const aqs_digest *d, aqs_object_info *info,
                           aqs_err *err) {
  aqs_object_info tmp;
  aqs_status st = lookup(s, d, info ? info : &tmp, NULL, NULL, err);
  if (st == AQS_ERR_NOT_FOUND && s->tiers && (st = tiers_fetch_object(s, d, err)) == AQS_OK)
    st = lookup(s, d, info ? info : &tmp, NULL, NULL, err);
  return st;
}

int aqs_object_exists(aqs_store *s, const aqs_digest *d) {
  aqs_object_info info;
  return lookup(s, d, &info, NULL, NULL, NULL) == AQS_OK;
}

aqs_status aqs_object_view(aqs_store *s, const aqs_digest *d, int verify, aqs_view *view,
                           aqs_err *err) {
  memset(view, 0, sizeof *view);
  aqs_object_info info;
  aqs_status st = lookup(s, d, &info, NULL, NULL, err);
  if (st == AQS_ERR_NOT_FOUND && s->tiers && (st = tiers_fetch_object(s, d, err)) == AQS_OK)
    st = lookup(s, d, &info, NULL, NULL, err);
  if (st != AQS_OK) return st;
  if (info.kind != AQS_OBJ_FILE_RAW) {
    void *data = NULL;
    size_t size = 0;
    st = read_mem(s, d, &data, &size, NULL, err);
    if (st != AQS_OK) return st;
    view->data = data;
    view->size = size;
    view->priv_ = data;
    count_get(s, d);
    return AQS_OK;
  }
  char path[4400];
  object_file_path(s, d, info.kind, path, sizeof path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    char why[4500];
    snprintf(why, sizeof why, "its file %s cannot be opened (%s)", path, strerror(errno));
    return corrupt(d, why, err);
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || (uint64_t)sb.st_size != info.size_bytes) {
    close(fd);
    return corrupt(d, "its file size differs from the record", err);
  }
  static const uint8_t empty[1];
  if (info.size_bytes == 0) {
    close(fd);
    view->data = empty;
    count_get(s, d);
    return AQS_OK;
  }
  void *map = mmap(NULL, (size_t)info.size_bytes, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return aqs_errno(err, AQS_ERR_IO, errno, "mapping %s", path);
  if (verify) {
    aqs_digest got;
    aqs_sha256_buf(map, (size_t)info.size_bytes, &got);
    if (!aqs_digest_eq(&got, d)) {
      munmap(map, (size_t)info.size_bytes);
      return corrupt(d, "its bytes do not match its digest", err);
    }
  }
  view->data = map;
  view->size = (size_t)info.size_bytes;
  view->priv_ = map;
  view->mapped_ = 1;
  count_get(s, d);
  return AQS_OK;
}

void aqs_view_release(aqs_view *view) {
  if (!view) return;
  if (view->mapped_) munmap(view->priv_, view->size);
  else free(view->priv_);
  memset(view, 0, sizeof *view);
}

aqs_status aqs_object_path(aqs_store *s, const aqs_digest *d, char *path_out, size_t path_cap,
                           aqs_err *err) {
  aqs_object_info info;
  aqs_status st = lookup(s, d, &info, NULL, NULL, err);
  if (st == AQS_ERR_NOT_FOUND && s->tiers && (st = tiers_fetch_object(s, d, err)) == AQS_OK)
    st = lookup(s, d, &info, NULL, NULL, err);
  if (st == AQS_OK && info.kind == AQS_OBJ_FILE_RAW) st = aqs_object_check(s, d, err);
  if (st != AQS_OK) return st;
  char text[AQS_DIGEST_STR_SIZE];
  if (info.kind != AQS_OBJ_FILE_RAW)
    return aqs_errf(err, AQS_ERR_UNSUPPORTED,
                    "object %s is stored compressed, not as a raw file (put it with raw "
                    "compression to link it)",
                    aqs_digest_str(d, text));
  char path[4400];
  object_file_path(s, d, info.kind, path, sizeof path);
  if (strlen(path) + 1 > path_cap)
    return aqs_errf(err, AQS_ERR_INVALID, "path buffer too small for %s", path);
  memcpy(path_out, path, strlen(path) + 1);
  pending_touch(s, d);
  return AQS_OK;
}

aqs_status aqs_object_children(aqs_store *s, const aqs_digest *d, aqs_digest **children_out,
                               size_t *n_out, aqs_err *err) {
  *children_out = NULL;
  *n_out = 0;
  MDB_txn *txn = NULL;
  aqs_status st = store_read_begin(s, &txn, err);
  if (st != AQS_OK) return st;
  MDB_val k = {AQS_DIGEST_BYTES, (void *)d->bytes}, v;
  if (mdb_get(txn, s->env->db_obj, &k, &v) != 0) st = not_found(s, d, err);
  else if (mdb_get(txn, s->env->db_edges, &k, &v) == 0 && v.mv_size) {
    *children_out = malloc(v.mv_size);
    if (!*children_out) st = aqs_errf(err, AQS_ERR_NOMEM, "out of memory");
    else {
      memcpy(*children_out, v.mv_data, v.mv_size);
      *n_out = v.mv_size / sizeof(aqs_digest);
    }
  }
  store_read_end(s, txn);
  return st;
}

aqs_status aqs_store_resolve(aqs_store *s, const char *text, aqs_digest *out, aqs_err *err) {
  aqs_digest prefix;
  int n_hex = 0;
  aqs_status st = aqs_digest_parse_prefix(text, &prefix, &n_hex, err);
  if (st != AQS_OK) return st;
  MDB_txn *txn = NULL;
  st = store_read_begin(s, &txn, err);
  if (st != AQS_OK) return st;
  MDB_cursor *cur = NULL;
  int rc = mdb_cursor_open(txn, s->env->db_obj, &cur);
  if (rc != 0) {
    store_read_end(s, txn);
    return store_mdb_err(s, rc, "reading", err);
  }
  MDB_val k = {AQS_DIGEST_BYTES, prefix.bytes}, v;
  size_t matches = 0;
  aqs_digest shown[4];
  rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  while (rc == 0 && k.mv_size == AQS_DIGEST_BYTES) {
    aqs_digest d;
    memcpy(d.bytes, k.mv_data, AQS_DIGEST_BYTES);
    if (!aqs_digest_has_prefix(&d, &prefix, n_hex)) break;
    if (matches < 4) shown[matches] = d;
    matches++;
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  mdb_cursor_close(cur);
  store_read_end(s, txn);
  if (matches == 0 && n_hex == AQS_DIGEST_HEX_LEN && s->tiers) {
    *out = prefix; /* a full digest: the read that follows consults the tiers */
    return AQS_OK;
  }
  if (matches == 0)
    return aqs_errf(err, AQS_ERR_NOT_FOUND, "no object matches %s in store %s", text, s->path);
  if (matches > 1) {
    char list[256] = "", part[40], sh[AQS_DIGEST_SHORT_LEN + 1];
    for (size_t i = 0; i < matches && i < 4; i++) {
      snprintf(part, sizeof part, "%ssha256:%s...", i ? ", " : "", aqs_digest_short(&shown[i], sh));
      strncat(list, part, sizeof list - strlen(list) - 1);
    }
    return aqs_errf(err, AQS_ERR_AMBIGUOUS, "%s is ambiguous: %s (%zu matches)", text, list,
                    matches);
  }
  *out = shown[0];
  return AQS_OK;
}

aqs_status aqs_object_foreach(aqs_store *s, aqs_object_fn fn, void *user, aqs_err *err) {
  MDB_txn *txn = NULL;
  aqs_status st = store_read_begin(s, &txn, err);
  if (st != AQS_OK) return st;
  MDB_cursor *cur = NULL;
  aqs_object_info *all = NULL;
  size_t n = 0, cap = 0;
  int rc = mdb_cursor_open(txn, s->env->db_obj, &cur);
  MDB_val k, v, av;
  if (rc == 0) rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  while (rc == 0 && st == AQS_OK) {
    obj_rec r;
    if (k.mv_size == AQS_DIGEST_BYTES && obj_rec_decode(&v, &r) == 0) {
      if (n == cap) {
        cap = cap ? cap * 2 : 256;
        aqs_object_info *p = realloc(all, cap * sizeof *p);
        if (!p) {
          st = aqs_errf(err, AQS_ERR_NOMEM, "listing objects: out of memory");
          break;
        }
        all = p;
      }
      aqs_digest d;
      memcpy(d.bytes, k.mv_data, AQS_DIGEST_BYTES);
      int64_t atime = 0;
      if (mdb_get(txn, s->env->db_atime, &k, &av) == 0 && av.mv_size == sizeof atime)
        memcpy(&atime, av.mv_data, sizeof atime);
      info_of(&d, &r, atime, &all[n++]);
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (st == AQS_OK && rc != MDB_NOTFOUND) st = store_mdb_err(s, rc, "listing objects", err);
  if (cur) mdb_cursor_close(cur);
  store_read_end(s, txn);
  for (size_t i = 0; i < n && st == AQS_OK; i++)
    if (fn(&all[i], user)) break;
  free(all);
  return st;
}

aqs_status aqs_object_link(aqs_store *s, const aqs_digest *d, const char *dest, aqs_err *err) {
  char path[4400];
  aqs_status st = aqs_object_path(s, d, path, sizeof path, err);
  if (st != AQS_OK) return st;
  if (link(path, dest) != 0) return aqs_errno(err, AQS_ERR_IO, errno, "linking %s to %s", path, dest);
  /* link() changed the inode's ctime, not its bytes (checked just above): keep the stamp valid so
   * the next use does not hash the file again. */
  stamp_record(s, d, path);
  return AQS_OK;
}
