/* store/objects_put.c: putting objects. Small zstd objects go inline into the LMDB record;
 * large and raw ones are streamed to tmp/, fsync'd, made read-only and renamed into objects/
 * under the writer lock, then indexed in the same transaction. Existing objects are dedups. */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "store/journal.h"
#include "store/store_internal.h"

#define PUT_BLOCK_BYTES (1u << 20)
#define MANIFEST_MAX_BYTES (256ull << 20)

static const char *kind_counter(aqs_object_kind kind) {
  switch (kind) {
  case AQS_OBJ_INLINE_ZSTD: return "objects_inline";
  case AQS_OBJ_FILE_ZSTD: return "objects_file_zstd";
  default: return "objects_file_raw";
  }
}

aqs_status obj_index_insert(wtx *w, const aqs_digest *d, const obj_rec *rec, const void *inline_data,
                            size_t inline_len, const aqs_digest *children, size_t n_children,
                            aqs_err *err) {
  store_env *e = w->s->env;
  size_t val_len = OBJ_REC_HEADER + inline_len;
  uint8_t *val = malloc(val_len);
  if (!val) return aqs_errf(err, AQS_ERR_NOMEM, "indexing an object: out of memory");
  obj_rec_encode_header(rec, val);
  if (inline_len) memcpy(val + OBJ_REC_HEADER, inline_data, inline_len);
  aqs_status st = wput(w, e->db_obj, d->bytes, AQS_DIGEST_BYTES, val, val_len, 0, err);
  free(val);
  int64_t t = now_ns();
  if (st == AQS_OK) st = wput(w, e->db_atime, d->bytes, AQS_DIGEST_BYTES, &t, sizeof t, 0, err);
  if (st == AQS_OK && n_children)
    st = wput(w, e->db_edges, d->bytes, AQS_DIGEST_BYTES, children,
              n_children * sizeof(aqs_digest), 0, err);
  for (size_t i = 0; i < n_children && st == AQS_OK; i++)
    st = wput(w, e->db_redges, children[i].bytes, AQS_DIGEST_BYTES, d->bytes, AQS_DIGEST_BYTES,
              MDB_NODUPDATA, err);
  if (st == AQS_OK) st = wcounter_add(w, "objects", 1, err);
  if (st == AQS_OK) st = wcounter_add(w, kind_counter(rec->kind), 1, err);
  if (st == AQS_OK && (rec->flags & OBJ_FLAG_MANIFEST)) st = wcounter_add(w, "manifests", 1, err);
  if (st == AQS_OK) st = wcounter_add(w, "bytes_logical", (int64_t)rec->size_bytes, err);
  if (st == AQS_OK) st = wcounter_add(w, "bytes_stored", (int64_t)rec->stored_bytes, err);
  if (st == AQS_OK && rec->kind == AQS_OBJ_INLINE_ZSTD) {
    uint8_t head[AQS_DIGEST_BYTES + 1];
    memcpy(head, d->bytes, AQS_DIGEST_BYTES);
    head[AQS_DIGEST_BYTES] = rec->flags & OBJ_FLAG_MANIFEST ? 1 : 0;
    st = journal_append(w, J_OBJ_INLINE, head, sizeof head, inline_data, inline_len, err);
  } else if (st == AQS_OK && (rec->flags & OBJ_FLAG_MANIFEST)) {
    st = journal_append(w, J_OBJ_FILE_MANIFEST, d->bytes, AQS_DIGEST_BYTES, NULL, 0, err);
  }
  return st;
}

aqs_status obj_index_remove(wtx *w, const aqs_digest *d, const obj_rec *rec, aqs_err *err) {
  store_env *e = w->s->env;
  MDB_val k = {AQS_DIGEST_BYTES, (void *)d->bytes}, v;
  aqs_status st = AQS_OK;
  if (mdb_get(w->txn, e->db_edges, &k, &v) == 0) {
    size_t n = v.mv_size / sizeof(aqs_digest);
    aqs_digest *children = malloc(v.mv_size ? v.mv_size : 1);
    if (!children) return aqs_errf(err, AQS_ERR_NOMEM, "removing an object: out of memory");
    memcpy(children, v.mv_data, v.mv_size);
    for (size_t i = 0; i < n && st == AQS_OK; i++)
      st = wdel(w, e->db_redges, children[i].bytes, AQS_DIGEST_BYTES, d->bytes, AQS_DIGEST_BYTES,
                err);
    free(children);
    if (st == AQS_OK) st = wdel(w, e->db_edges, d->bytes, AQS_DIGEST_BYTES, NULL, 0, err);
  }
  if (st == AQS_OK) st = wdel(w, e->db_obj, d->bytes, AQS_DIGEST_BYTES, NULL, 0, err);
  if (st == AQS_OK) st = wdel(w, e->db_atime, d->bytes, AQS_DIGEST_BYTES, NULL, 0, err);
  if (st == AQS_OK) st = wcounter_add(w, "objects", -1, err);
  if (st == AQS_OK) st = wcounter_add(w, kind_counter(rec->kind), -1, err);
  if (st == AQS_OK && (rec->flags & OBJ_FLAG_MANIFEST)) st = wcounter_add(w, "manifests", -1, err);
  if (st == AQS_OK) st = wcounter_add(w, "bytes_logical", -(int64_t)rec->size_bytes, err);
  if (st == AQS_OK) st = wcounter_add(w, "bytes_stored", -(int64_t)rec->stored_bytes, err);
  if (st == AQS_OK) st = journal_append(w, J_OBJ_DEL, d->bytes, AQS_DIGEST_BYTES, NULL, 0, err);
  return st;
}

/* Parses a manifest's children (deduplicated, in order). */
aqs_status manifest_children(const void *data, size_t len, aqs_digest **out, size_t *n_out,
                             aqs_err *err) {
  *out = NULL;
  *n_out = 0;
  json_error_t jerr;
  json_t *doc = json_loadb(data, len, 0, &jerr);
  if (!doc)
    return aqs_errf(err, AQS_ERR_INVALID, "manifest is not JSON: line %d: %s", jerr.line,
                    jerr.text);
  json_t *children = json_object_get(doc, "children");
  aqs_status st = AQS_OK;
  if (!json_is_object(doc) || !json_is_array(children)) {
    st = aqs_errf(err, AQS_ERR_INVALID,
                  "manifest must be a JSON object with a top-level \"children\" array");
  } else {
    size_t n = json_array_size(children);
    aqs_digest *list = calloc(n ? n : 1, sizeof *list);
    size_t kept = 0;
    if (!list) st = aqs_errf(err, AQS_ERR_NOMEM, "manifest: out of memory");
    for (size_t i = 0; i < n && st == AQS_OK; i++) {
      json_t *item = json_array_get(children, i);
      aqs_digest d;
      if (!json_is_string(item) || aqs_digest_parse(json_string_value(item), &d, NULL) != AQS_OK) {
        st = aqs_errf(err, AQS_ERR_INVALID, "manifest child %zu is not a digest (sha256:<64 hex>)",
                      i);
        break;
      }
      int seen = 0;
      for (size_t j = 0; j < kept && !seen; j++) seen = aqs_digest_eq(&list[j], &d);
      if (!seen) list[kept++] = d;
    }
    if (st == AQS_OK) {
      *out = list;
      *n_out = kept;
    } else {
      free(list);
    }
  }
  json_decref(doc);
  return st;
}

/* What a put stores, prepared outside the transaction. */
typedef struct put_ctx {
  aqs_digest digest;
  obj_rec rec;
  const void *inline_data; /* zstd frame for inline objects */
  size_t inline_len;
  const char *tmp_path;    /* prepared file for file objects */
  int renamed;             /* the tmp file has been moved into place (body may re-run) */
  aqs_digest *children;
  size_t n_children;
  int deduped;
  uint64_t stored_bytes_existing;
  aqs_object_kind kind_existing;
} put_ctx;

static aqs_status count_dedup(wtx *w, put_ctx *c, const obj_rec *existing, aqs_err *err) {
  store_env *e = w->s->env;
  int64_t t = now_ns();
  c->deduped = 1;
  c->stored_bytes_existing = existing->stored_bytes;
  c->kind_existing = existing->kind;
  aqs_status st = wput(w, e->db_atime, c->digest.bytes, AQS_DIGEST_BYTES, &t, sizeof t, 0, err);
  if (st == AQS_OK) st = wcounter_add(w, "dedups", 1, err);
  if (st == AQS_OK) st = wcounter_add(w, "dedup_bytes", (int64_t)existing->size_bytes, err);
  return st;
}

static aqs_status put_body(wtx *w, void *ctx_, aqs_err *err) {
  put_ctx *c = ctx_;
  aqs_store *s = w->s;
  store_env *e = s->env;
  char hexs[AQS_DIGEST_STR_SIZE];
  c->deduped = 0;
  MDB_val k = {AQS_DIGEST_BYTES, c->digest.bytes}, v;
  obj_rec existing;
  int found = mdb_get(w->txn, e->db_obj, &k, &v) == 0 && obj_rec_decode(&v, &existing) == 0;
  char final_path[4400];
  object_file_path(s, &c->digest, c->rec.kind, final_path, sizeof final_path);
  int upgrade_to_raw = 0;
  if (found) {
    char existing_path[4400];
    object_file_path(s, &c->digest, existing.kind, existing_path, sizeof existing_path);
    struct stat sb;
    int file_ok = existing.kind == AQS_OBJ_INLINE_ZSTD || stat(existing_path, &sb) == 0;
    /* A raw put of an object stored compressed converts it, so it can be linked. */
    upgrade_to_raw = c->tmp_path && c->rec.kind == AQS_OBJ_FILE_RAW &&
                     existing.kind != AQS_OBJ_FILE_RAW;
    if (!upgrade_to_raw && (file_ok || !c->tmp_path || existing.kind != c->rec.kind))
      return count_dedup(w, c, &existing, err);
    /* Otherwise the record's file is gone (an interrupted gc, a deleted file): ours repairs it. */
  }
  for (size_t i = 0; i < c->n_children; i++) {
    MDB_val ck = {AQS_DIGEST_BYTES, c->children[i].bytes}, cv;
    if (mdb_get(w->txn, e->db_obj, &ck, &cv) != 0)
      return aqs_errf(err, AQS_ERR_NOT_FOUND,
                      "manifest child %s is not in store %s (put children first)",
                      aqs_digest_str(&c->children[i], hexs), s->path);
  }
  if (c->tmp_path && !c->renamed) {
    char sub[4300];
    snprintf(sub, sizeof sub, "%s/%.2s", s->objects_dir, aqs_digest_hex(&c->digest, hexs));
    if (store_mkdir(s, sub) != 0)
      return aqs_errno(err, AQS_ERR_IO, errno, "creating %s", sub);
    if (rename(c->tmp_path, final_path) != 0)
      return aqs_errno(err, AQS_ERR_IO, errno, "renaming %s to %s", c->tmp_path, final_path);
    c->renamed = 1;
    if (fsync_dir(sub) != 0) return aqs_errno(err, AQS_ERR_IO, errno, "syncing %s", sub);
  }
  if (c->tmp_path) { /* we hashed these bytes while writing them: vouch for the file */
    aqs_status sst = stamp_put(w, &c->digest, final_path, err);
    if (sst != AQS_OK) return sst;
  }
  aqs_status st = AQS_OK;
  if (found && !upgrade_to_raw) return AQS_OK; /* repaired the file; the record counts it */
  if (upgrade_to_raw) {
    st = obj_index_remove(w, &c->digest, &existing, err);
    if (st == AQS_OK && existing.kind == AQS_OBJ_FILE_ZSTD) {
      char old_path[4400];
      object_file_path(s, &c->digest, existing.kind, old_path, sizeof old_path);
      unlink(old_path);
    }
  }
  if (st == AQS_OK)
    st = obj_index_insert(w, &c->digest, &c->rec, c->inline_data, c->inline_len, c->children,
                          c->n_children, err);
  if (st == AQS_OK) st = wcounter_add(w, "puts", 1, err);
  return st;
}

static void fill_info(aqs_put_info *info, const put_ctx *c) {
  if (!info) return;
  info->digest = c->digest;
  info->size_bytes = c->rec.size_bytes;
  info->deduped = c->deduped;
  info->stored_bytes = c->deduped ? c->stored_bytes_existing : c->rec.stored_bytes;
  info->kind = c->deduped ? c->kind_existing : (aqs_object_kind)c->rec.kind;
}

/* Dedup without writing anything when the object is present and (for files) its file exists. */
static int already_present(aqs_store *s, const aqs_digest *d, int want_raw) {
  MDB_txn *txn = NULL;
  if (store_read_begin(s, &txn, NULL) != AQS_OK) return 0;
  MDB_val k = {AQS_DIGEST_BYTES, (void *)d->bytes}, v;
  obj_rec rec;
  int present = mdb_get(txn, s->env->db_obj, &k, &v) == 0 && obj_rec_decode(&v, &rec) == 0;
  store_read_end(s, txn);
  if (present && want_raw && rec.kind != AQS_OBJ_FILE_RAW) present = 0;
  if (present && rec.kind != AQS_OBJ_INLINE_ZSTD) {
    char path[4400];
    struct stat sb;
    object_file_path(s, d, rec.kind, path, sizeof path);
    present = stat(path, &sb) == 0;
  }
  /* Never dedup onto damaged bytes: a bad copy is quarantined and ours is stored. */
  if (present && aqs_object_check(s, d, NULL) != AQS_OK) present = 0;
  return present;
}

/* A tmp file being filled, raw or through a zstd stream. */
typedef struct file_sink {
  aqs_store *s;
  int fd;
  char path[4300];
  ZSTD_CCtx *zc;
  uint8_t *zout;
  size_t zout_cap;
  uint64_t written;
  uint64_t synced_upto; /* writeback started for [0, synced_upto) */
} file_sink;

static aqs_status sink_write_all(file_sink *k, const void *data, size_t len, aqs_err *err) {
  const uint8_t *p = data;
  while (len) {
    ssize_t n = write(k->fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return aqs_errno(err, AQS_ERR_IO, errno, "writing %s", k->path);
    }
    p += n;
    len -= (size_t)n;
    k->written += (uint64_t)n;
  }
  if (k->written - k->synced_upto >= (8u << 20)) { /* start writeback early (see fsync below) */
    sync_file_range(k->fd, (off_t)k->synced_upto, (off_t)(k->written - k->synced_upto),
                    SYNC_FILE_RANGE_WRITE);
    k->synced_upto = k->written;
  }
  return AQS_OK;
}

static aqs_status sink_open(file_sink *k, aqs_store *s, int zstd_level, aqs_err *err) {
  memset(k, 0, sizeof *k);
  k->s = s;
  k->fd = store_tmpfile(s, k->path, sizeof k->path, err);
  if (k->fd < 0) return AQS_ERR_IO;
  if (zstd_level > 0) {
    k->zc = ZSTD_createCCtx();
    k->zout_cap = ZSTD_CStreamOutSize();
    k->zout = malloc(k->zout_cap);
    if (!k->zc || !k->zout) return aqs_errf(err, AQS_ERR_NOMEM, "zstd: out of memory");
    ZSTD_CCtx_setParameter(k->zc, ZSTD_c_compressionLevel, zstd_level);
    ZSTD_CCtx_setParameter(k->zc, ZSTD_c_checksumFlag, 1);
  }
  return AQS_OK;
}

static aqs_status sink_feed(file_sink *k, const void *data, size_t len, ZSTD_EndDirective mode,
                            aqs_err *err) {
  if (!k->zc) return sink_write_all(k, data, len, err);
  ZSTD_inBuffer in = {data, len, 0};
  for (;;) {
    ZSTD_outBuffer out = {k->zout, k->zout_cap, 0};
    size_t left = ZSTD_compressStream2(k->zc, &out, &in, mode);
    if (ZSTD_isError(left))
      return aqs_errf(err, AQS_ERR_IO, "zstd compression: %s", ZSTD_getErrorName(left));
    aqs_status st = sink_write_all(k, k->zout, out.pos, err);
    if (st != AQS_OK) return st;
    if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size) return AQS_OK;
  }
}

/* Ends the stream, syncs and makes the file read-only; the file stays in tmp/ until renamed. */
static aqs_status sink_finish(file_sink *k, aqs_err *err) {
  aqs_status st = AQS_OK;
  if (k->zc) st = sink_feed(k, NULL, 0, ZSTD_e_end, err);
  if (st == AQS_OK && fchmod(k->fd, 0444) != 0)
    st = aqs_errno(err, AQS_ERR_IO, errno, "chmod %s", k->path);
  if (st == AQS_OK && fsync(k->fd) != 0)
    st = aqs_errno(err, AQS_ERR_IO, errno, "syncing %s", k->path);
  return st;
}

/* Closes; removes the tmp file unless it was renamed away. */
static void sink_close(file_sink *k, int renamed) {
  if (k->fd >= 0) close(k->fd);
  k->fd = -1;
  if (!renamed && k->path[0]) unlink(k->path);
  ZSTD_freeCCtx(k->zc);
  free(k->zout);
  k->zc = NULL;
  k->zout = NULL;
}

typedef struct put_plan {
  int raw;
  int level;
  int manifest;
} put_plan;

static put_plan plan_of(const aqs_store *s, const aqs_put_opts *opts) {
  put_plan p = {0, s->cfg.zstd_level, 0};
  if (opts) {
    p.raw = opts->compress == AQS_COMPRESS_RAW;
    if (opts->zstd_level > 0) p.level = opts->zstd_level;
    p.manifest = opts->manifest;
  }
  if (p.level > ZSTD_maxCLevel()) p.level = ZSTD_maxCLevel();
  return p;
}

static aqs_status finish_put(aqs_store *s, put_ctx *c, aqs_put_info *info, aqs_err *err) {
  aqs_status st = store_write(s, put_body, c, err);
  if (st == AQS_OK) fill_info(info, c);
  return st;
}

/* Records a dedup found outside the transaction (no file written). */
static aqs_status dedup_only(aqs_store *s, put_ctx *c, aqs_put_info *info, aqs_err *err) {
  c->tmp_path = NULL;
  c->inline_data = NULL;
  c->inline_len = 0;
  aqs_status st = store_write(s, put_body, c, err);
  if (st == AQS_OK && !c->deduped) {
    /* gc removed it between the check and the transaction: caller must store it. */
    return AQS_ERR_NOT_FOUND;
  }
  if (st == AQS_OK) fill_info(info, c);
  return st;
}

aqs_status aqs_put_mem(aqs_store *s, const void *data, size_t len, const aqs_put_opts *opts,
                       aqs_put_info *info, aqs_err *err) {
  if (s->flags & AQS_STORE_RDONLY)
    return aqs_errf(err, AQS_ERR_UNSUPPORTED, "store %s is open read-only", s->path);
  put_plan plan = plan_of(s, opts);
  put_ctx c = {0};
  aqs_sha256_buf(data, len, &c.digest);
  c.rec.size_bytes = len;
  c.rec.created_ns = now_ns();
  c.rec.flags = plan.manifest ? OBJ_FLAG_MANIFEST : 0;
  aqs_status st = AQS_OK;
  if (plan.manifest) {
    st = manifest_children(data, len, &c.children, &c.n_children, err);
    if (st != AQS_OK) return st;
  }
  if (already_present(s, &c.digest, plan.raw)) {
    st = dedup_only(s, &c, info, err);
    if (st != AQS_ERR_NOT_FOUND) {
      free(c.children);
      return st;
    }
    st = AQS_OK;
  }
  if (!plan.raw && len <= s->cfg.inline_max_bytes) {
    size_t cap = ZSTD_compressBound(len);
    void *frame = malloc(cap ? cap : 1);
    if (!frame) {
      free(c.children);
      return aqs_errf(err, AQS_ERR_NOMEM, "compressing an object: out of memory");
    }
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    size_t n = 0;
    if (zc) {
      ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, plan.level);
      ZSTD_CCtx_setParameter(zc, ZSTD_c_checksumFlag, 1);
      n = ZSTD_compress2(zc, frame, cap, data, len);
      ZSTD_freeCCtx(zc);
    }
    if (!zc || ZSTD_isError(n)) {
      st = aqs_errf(err, AQS_ERR_IO, "zstd compression failed%s",
                    zc ? "" : ": out of memory");
    } else {
      c.rec.kind = AQS_OBJ_INLINE_ZSTD;
      c.rec.stored_bytes = n;
      c.inline_data = frame;
      c.inline_len = n;
      st = finish_put(s, &c, info, err);
    }
    free(frame);
    free(c.children);
    return st;
  }
  file_sink k;
  st = sink_open(&k, s, plan.raw ? 0 : plan.level, err);
  if (st == AQS_OK) {
    const uint8_t *p = data;
    size_t left = len;
    while (left && st == AQS_OK) {
      size_t n = left < PUT_BLOCK_BYTES ? left : PUT_BLOCK_BYTES;
      st = sink_feed(&k, p, n, ZSTD_e_continue, err);
      p += n;
      left -= n;
    }
  }
  if (st == AQS_OK) st = sink_finish(&k, err);
  if (st == AQS_OK) {
    c.rec.kind = plan.raw ? AQS_OBJ_FILE_RAW : AQS_OBJ_FILE_ZSTD;
    c.rec.stored_bytes = k.written;
    c.tmp_path = k.path;
    st = finish_put(s, &c, info, err);
  }
  sink_close(&k, c.renamed);
  free(c.children);
  return st;
}

/* Reads up to want bytes at offset (short only at EOF). */
static aqs_status read_at(int fd, void *buf, size_t want, uint64_t offset, const char *what,
                          size_t *got_out, aqs_err *err) {
  size_t got = 0;
  while (got < want) {
    ssize_t n = pread(fd, (uint8_t *)buf + got, want - got, (off_t)(offset + got));
    if (n < 0 && errno == ESPIPE) /* a pipe or socket: read in order (offset must be 0) */
      n = read(fd, (uint8_t *)buf + got, want - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return aqs_errno(err, AQS_ERR_IO, errno, "reading %s", what);
    }
    if (n == 0) break;
    got += (size_t)n;
  }
  *got_out = got;
  return AQS_OK;
}

/* The streaming put pipeline: this thread reads blocks and hashes them while a worker thread
 * compresses and writes the previous ones, so a put costs about max(hash, write) instead of the
 * sum. Each block is read once: the bytes written are exactly the bytes hashed. */
#define PIPE_SLOTS 3
#define PIPE_BLOCK_BYTES (4u << 20)

typedef struct put_pipe {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint8_t *bufs[PIPE_SLOTS];
  size_t lens[PIPE_SLOTS];
  int head, tail, count;
  int producer_done;
  int worker_failed;
  file_sink *sink;
  aqs_err err;
} put_pipe;

static void *pipe_worker(void *arg) {
  put_pipe *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (p->count == 0 && !p->producer_done) pthread_cond_wait(&p->cv, &p->mu);
    if (p->count == 0) break;
    int slot = p->tail;
    pthread_mutex_unlock(&p->mu);
    aqs_status st = sink_feed(p->sink, p->bufs[slot], p->lens[slot], ZSTD_e_continue, &p->err);
    pthread_mutex_lock(&p->mu);
    p->tail = (p->tail + 1) % PIPE_SLOTS;
    p->count--;
    if (st != AQS_OK) p->worker_failed = 1;
    pthread_cond_broadcast(&p->cv);
    if (p->worker_failed) break;
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static aqs_status stream_pipelined(file_sink *k, aqs_sha256 *h, int fd, uint64_t offset,
                                   uint64_t length, const char *name, uint64_t *done,
                                   aqs_err *err) {
  put_pipe p;
  memset(&p, 0, sizeof p);
  p.sink = k;
  aqs_err_clear(&p.err);
  for (int i = 0; i < PIPE_SLOTS; i++) {
    p.bufs[i] = malloc(PIPE_BLOCK_BYTES);
    if (!p.bufs[i]) {
      for (int j = 0; j < i; j++) free(p.bufs[j]);
      return aqs_errf(err, AQS_ERR_NOMEM, "putting %s: out of memory", name);
    }
  }
  pthread_mutex_init(&p.mu, NULL);
  pthread_cond_init(&p.cv, NULL);
  pthread_t worker;
  int threaded = pthread_create(&worker, NULL, pipe_worker, &p) == 0;
  aqs_status st = AQS_OK;
  while (length == AQS_TO_EOF || *done < length) {
    pthread_mutex_lock(&p.mu);
    while (threaded && p.count == PIPE_SLOTS && !p.worker_failed) pthread_cond_wait(&p.cv, &p.mu);
    int failed = p.worker_failed, slot = p.head;
    pthread_mutex_unlock(&p.mu);
    if (failed) break;
    size_t want = PIPE_BLOCK_BYTES;
    if (length != AQS_TO_EOF && length - *done < want) want = (size_t)(length - *done);
    size_t got = 0;
    st = read_at(fd, p.bufs[slot], want, offset + *done, name, &got, err);
    if (st != AQS_OK) break;
    if (got == 0) {
      if (length != AQS_TO_EOF)
        st = aqs_errf(err, AQS_ERR_IO, "reading %s: end of file after %llu of %llu bytes", name,
                      (unsigned long long)*done, (unsigned long long)length);
      break;
    }
    aqs_sha256_update(h, p.bufs[slot], got);
    *done += got;
    if (!threaded) {
      st = sink_feed(k, p.bufs[slot], got, ZSTD_e_continue, err);
      if (st != AQS_OK) break;
      continue;
    }
    pthread_mutex_lock(&p.mu);
    p.lens[slot] = got;
    p.head = (p.head + 1) % PIPE_SLOTS;
    p.count++;
    pthread_cond_broadcast(&p.cv);
    pthread_mutex_unlock(&p.mu);
  }
  if (threaded) {
    pthread_mutex_lock(&p.mu);
    p.producer_done = 1;
    pthread_cond_broadcast(&p.cv);
    pthread_mutex_unlock(&p.mu);
    pthread_join(worker, NULL);
    if (st == AQS_OK && p.worker_failed) {
      st = p.err.code;
      if (err) *err = p.err;
    }
  }
  pthread_cond_destroy(&p.cv);
  pthread_mutex_destroy(&p.mu);
  for (int i = 0; i < PIPE_SLOTS; i++) free(p.bufs[i]);
  return st;
}

/* Raw puts from a regular file copy in the kernel (copy_file_range, as cp does; a reflink where
 * the filesystem can) while this thread hashes what has landed in the tmp file, so the digest is
 * of the stored bytes themselves even if the source changes meanwhile. Returns
 * AQS_ERR_UNSUPPORTED before copying anything when the kernel or filesystem cannot do it. */
typedef struct raw_copy {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int src_fd, dst_fd;
  uint64_t offset, length; /* length may be AQS_TO_EOF */
  uint64_t copied;
  int finished, copy_errno, unsupported;
} raw_copy;

static void *raw_copy_worker(void *arg) {
  raw_copy *c = arg;
  uint64_t copied = 0;
  int err_no = 0, unsupported = 0;
  for (;;) {
    size_t want = 8u << 20;
    if (c->length != AQS_TO_EOF && c->length - copied < want) want = (size_t)(c->length - copied);
    if (want == 0) break;
    loff_t src = (loff_t)(c->offset + copied), dst = (loff_t)copied;
    ssize_t n = copy_file_range(c->src_fd, &src, c->dst_fd, &dst, want, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err_no = errno;
      unsupported = copied == 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                                    errno == EOPNOTSUPP || errno == EBADF);
      break;
    }
    if (n == 0) break;
    /* Start writeback now, so the final fsync overlaps with the hashing instead of following it. */
    sync_file_range(c->dst_fd, (off_t)copied, (off_t)n, SYNC_FILE_RANGE_WRITE);
    copied += (uint64_t)n;
    pthread_mutex_lock(&c->mu);
    c->copied = copied;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
  }
  pthread_mutex_lock(&c->mu);
  c->copied = copied;
  c->finished = 1;
  c->copy_errno = err_no;
  c->unsupported = unsupported;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

static aqs_status stream_raw_copy(file_sink *k, aqs_sha256 *h, int fd, uint64_t offset,
                                  uint64_t length, const char *name, uint64_t *done,
                                  aqs_err *err) {
  struct stat sb;
  if (k->zc || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) return AQS_ERR_UNSUPPORTED;
  uint8_t *buf = malloc(PIPE_BLOCK_BYTES);
  if (!buf) return AQS_ERR_UNSUPPORTED;
  raw_copy c;
  memset(&c, 0, sizeof c);
  c.src_fd = fd;
  c.dst_fd = k->fd;
  c.offset = offset;
  c.length = length;
  pthread_mutex_init(&c.mu, NULL);
  pthread_cond_init(&c.cv, NULL);
  pthread_t worker;
  if (pthread_create(&worker, NULL, raw_copy_worker, &c) != 0) {
    free(buf);
    return AQS_ERR_UNSUPPORTED;
  }
  aqs_status st = AQS_OK;
  uint64_t hashed = 0;
  for (;;) {
    pthread_mutex_lock(&c.mu);
    while (c.copied == hashed && !c.finished) pthread_cond_wait(&c.cv, &c.mu);
    uint64_t available = c.copied;
    int finished = c.finished;
    pthread_mutex_unlock(&c.mu);
    if (available == hashed && finished) break;
    while (hashed < available && st == AQS_OK) {
      size_t want = available - hashed < PIPE_BLOCK_BYTES ? (size_t)(available - hashed)
                                                           : PIPE_BLOCK_BYTES;
      size_t got = 0;
      st = read_at(k->fd, buf, want, hashed, k->path, &got, err);
      if (st == AQS_OK && got != want)
        st = aqs_errf(err, AQS_ERR_IO, "reading back %s: short read", k->path);
      if (st == AQS_OK) aqs_sha256_update(h, buf, got);
      hashed += got;
    }
    if (st != AQS_OK) break;
  }
  pthread_join(worker, NULL);
  free(buf);
  pthread_cond_destroy(&c.cv);
  pthread_mutex_destroy(&c.mu);
  if (st != AQS_OK) return st;
  if (c.unsupported) return AQS_ERR_UNSUPPORTED;
  if (c.copy_errno)
    return aqs_errno(err, AQS_ERR_IO, c.copy_errno, "copying %s into the store", name);
  if (length != AQS_TO_EOF && c.copied != length)
    return aqs_errf(err, AQS_ERR_IO, "reading %s: end of file after %llu of %llu bytes", name,
                    (unsigned long long)c.copied, (unsigned long long)length);
  *done = c.copied;
  k->written = c.copied;
  return AQS_OK;
}

aqs_status aqs_put_fd(aqs_store *s, int fd, uint64_t offset, uint64_t length, const char *what,
                      const aqs_put_opts *opts, aqs_put_info *info, aqs_err *err) {
  if (s->flags & AQS_STORE_RDONLY)
    return aqs_errf(err, AQS_ERR_UNSUPPORTED, "store %s is open read-only", s->path);
  const char *name = what ? what : "input";
  put_plan plan = plan_of(s, opts);
  /* Small objects and manifests are read whole and go through aqs_put_mem. */
  uint64_t head_cap = plan.manifest ? MANIFEST_MAX_BYTES + 1
                      : plan.raw    ? 0
                                    : s->cfg.inline_max_bytes + 1;
  if (length != AQS_TO_EOF && head_cap > length + 1) head_cap = length + 1;
  struct stat src_stat;
  if (length == AQS_TO_EOF && fstat(fd, &src_stat) == 0 && S_ISREG(src_stat.st_mode)) {
    uint64_t left = (uint64_t)src_stat.st_size > offset ? (uint64_t)src_stat.st_size - offset : 0;
    if (head_cap > left + 1) head_cap = left + 1; /* a manifest buffer no larger than the file */
  }
  uint8_t *block = malloc(head_cap > PUT_BLOCK_BYTES ? head_cap : PUT_BLOCK_BYTES);
  if (!block) return aqs_errf(err, AQS_ERR_NOMEM, "putting %s: out of memory", name);
  aqs_status st = AQS_OK;
  size_t head = 0;
  if (head_cap) {
    size_t want = (size_t)(length == AQS_TO_EOF || head_cap <= length ? head_cap : length);
    if (length != AQS_TO_EOF && want > length) want = (size_t)length;
    st = read_at(fd, block, want, offset, name, &head, err);
    if (st == AQS_OK && length != AQS_TO_EOF && head < want)
      st = aqs_errf(err, AQS_ERR_IO, "reading %s: end of file after %zu of %llu bytes", name, head,
                    (unsigned long long)length);
    if (st == AQS_OK && (head < head_cap || (length != AQS_TO_EOF && head == length))) {
      if (head <= s->cfg.inline_max_bytes || plan.manifest) {
        st = aqs_put_mem(s, block, head, opts, info, err);
        free(block);
        return st;
      }
    }
    if (st == AQS_OK && plan.manifest) {
      free(block);
      return aqs_errf(err, AQS_ERR_INVALID, "manifest %s is larger than %llu bytes", name,
                      (unsigned long long)MANIFEST_MAX_BYTES);
    }
  }
  put_ctx c = {0};
  file_sink k = {.fd = -1};
  aqs_sha256 *h = aqs_sha256_new();
  if (st == AQS_OK && !h) st = aqs_errf(err, AQS_ERR_NOMEM, "putting %s: out of memory", name);
  if (st == AQS_OK) st = sink_open(&k, s, plan.raw ? 0 : plan.level, err);
  uint64_t done = 0;
  if (st == AQS_OK && head) {
    aqs_sha256_update(h, block, head);
    st = sink_feed(&k, block, head, ZSTD_e_continue, err);
    done = head;
  }
  if (st == AQS_OK && plan.raw) {
    st = stream_raw_copy(&k, h, fd, offset, length, name, &done, err);
    if (st == AQS_ERR_UNSUPPORTED) { /* nothing copied or hashed: stream it ourselves */
      aqs_sha256_reset(h);
      done = 0;
      st = stream_pipelined(&k, h, fd, offset, length, name, &done, err);
    }
  } else if (st == AQS_OK) {
    st = stream_pipelined(&k, h, fd, offset, length, name, &done, err);
  }
  if (st == AQS_OK) st = sink_finish(&k, err);
  if (st == AQS_OK) {
    aqs_sha256_final(h, &c.digest);
    c.rec.kind = plan.raw ? AQS_OBJ_FILE_RAW : AQS_OBJ_FILE_ZSTD;
    c.rec.size_bytes = done;
    c.rec.stored_bytes = k.written;
    c.rec.created_ns = now_ns();
    c.tmp_path = k.path;
    st = finish_put(s, &c, info, err);
  }
  sink_close(&k, c.renamed);
  aqs_sha256_free(h);
  free(block);
  if (st != AQS_OK && what) aqs_err_prefix(err, "putting %s", what);
  return st;
}

aqs_status aqs_put_file(aqs_store *s, const char *path, const aqs_put_opts *opts,
                        aqs_put_info *info, aqs_err *err) {
  if (s->flags & AQS_STORE_RDONLY)
    return aqs_errf(err, AQS_ERR_UNSUPPORTED, "store %s is open read-only", s->path);
  char abs[4096];
  if (!realpath(path, abs))
    return aqs_errno(err, errno == ENOENT ? AQS_ERR_NOT_FOUND : AQS_ERR_IO, errno, "opening %s",
                     path);
  /* O_NONBLOCK: a FIFO is refused below instead of blocking the open (no effect on files). */
  int fd = open(abs, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return aqs_errno(err, errno == ENOENT ? AQS_ERR_NOT_FOUND : AQS_ERR_IO, errno, "opening %s",
                     path);
  struct stat before, after;
  aqs_status st = AQS_OK;
  if (fstat(fd, &before) != 0) st = aqs_errno(err, AQS_ERR_IO, errno, "stat %s", path);
  else if (!S_ISREG(before.st_mode))
    st = aqs_errf(err, AQS_ERR_INVALID, "%s is not a regular file", path);
  if (st == AQS_OK) {
    put_ctx c = {0};
    if (statcache_lookup(s, abs, &before, &c.digest) && (!opts || !opts->manifest) &&
        already_present(s, &c.digest, opts && opts->compress == AQS_COMPRESS_RAW)) {
      c.rec.size_bytes = (uint64_t)before.st_size;
      st = dedup_only(s, &c, info, err);
      if (st != AQS_ERR_NOT_FOUND) {
        close(fd);
        return st;
      }
      st = AQS_OK;
    }
    st = aqs_put_fd(s, fd, 0, AQS_TO_EOF, path, opts, info, err);
  }
  if (st == AQS_OK && fstat(fd, &after) == 0) {
    if (after.st_size != before.st_size || after.st_mtim.tv_sec != before.st_mtim.tv_sec ||
        after.st_mtim.tv_nsec != before.st_mtim.tv_nsec)
      st = aqs_errf(err, AQS_ERR_IO, "%s changed while it was being stored; try again", path);
    else if (info)
      statcache_record(s, abs, &before, &info->digest);
  }
  close(fd);
  return st;
}
