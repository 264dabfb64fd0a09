/* store/reindex.c: `aqs verify --reindex`: builds a new index from what survives outside LMDB:
 * every object file under objects/ (re-hashed; a bad one goes to quarantine/) and the journal
 * (inline objects, manifest flags, actions, refs, in commit order). Then it restores the store's
 * invariants (manifests only with all their children, actions only with their result, refs only
 * to present objects) and swaps the new index in for the old one. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "common/file.h"
#include "store/journal.h"
#include "store/store_internal.h"

#define BLOCK (1u << 20)

/* Hashes a file object's content (decompressing .zst files). 0 on success. */
static int hash_object_file(const char *path, int zstd, aqs_digest *out, uint64_t *size_out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  uint8_t *in = malloc(BLOCK), *outb = zstd ? malloc(ZSTD_DStreamOutSize()) : NULL;
  ZSTD_DCtx *dc = zstd ? ZSTD_createDCtx() : NULL;
  aqs_sha256 *h = aqs_sha256_new();
  int rc = (!in || (zstd && (!outb || !dc)) || !h) ? -1 : 0;
  uint64_t size = 0;
  size_t last = 1;
  while (rc == 0) {
    ssize_t n = read(fd, in, BLOCK);
    if (n < 0) rc = -1;
    if (n <= 0) break;
    if (!zstd) {
      aqs_sha256_update(h, in, (size_t)n);
      size += (uint64_t)n;
      continue;
    }
    ZSTD_inBuffer ib = {in, (size_t)n, 0};
    while (rc == 0 && ib.pos < ib.size) {
      ZSTD_outBuffer ob = {outb, ZSTD_DStreamOutSize(), 0};
      last = ZSTD_decompressStream(dc, &ob, &ib);
      if (ZSTD_isError(last)) rc = -1;
      aqs_sha256_update(h, outb, ob.pos);
      size += ob.pos;
    }
  }
  if (zstd && last != 0) rc = -1; /* a cut frame */
  if (rc == 0) aqs_sha256_final(h, out);
  *size_out = size;
  aqs_sha256_free(h);
  ZSTD_freeDCtx(dc);
  free(in);
  free(outb);
  close(fd);
  return rc;
}

typedef struct insert_ctx {
  aqs_digest digest;
  obj_rec rec;
  const void *inline_data;
  size_t inline_len;
} insert_ctx;

static aqs_status insert_body(wtx *w, void *ctx_, aqs_err *err) {
  insert_ctx *c = ctx_;
  MDB_val k = {AQS_DIGEST_BYTES, c->digest.bytes}, v;
  obj_rec old;
  if (mdb_get(w->txn, w->s->env->db_obj, &k, &v) == 0 && obj_rec_decode(&v, &old) == 0) {
    if (old.kind != AQS_OBJ_FILE_RAW && c->rec.kind == AQS_OBJ_FILE_RAW) {
      aqs_status st = obj_index_remove(w, &c->digest, &old, err);
      if (st != AQS_OK) return st;
    } else {
      return AQS_OK; /* first kind wins; a raw file is preferred (linkable) */
    }
  }
  return obj_index_insert(w, &c->digest, &c->rec, c->inline_data, c->inline_len, NULL, 0, err);
}

static void quarantine_file(aqs_store *s, const char *path, const char *name, aqs_reindex_report *r) {
  char dest[4600];
  store_mkdir(s, s->quarantine_dir);
  snprintf(dest, sizeof dest, "%s/%.255s", s->quarantine_dir, name);
  if (rename(path, dest) == 0) r->files_quarantined++;
}

typedef struct scan_ctx {
  aqs_store *s;
  aqs_reindex_report *r;
  aqs_status st;
  aqs_err *err;
} scan_ctx;

/* Indexes one object file after re-hashing it; a bad one goes to quarantine/. */
static int index_file(const char *path, const char *name, const aqs_digest *d, int zstd, void *user) {
  scan_ctx *c = user;
  insert_ctx ins = {.digest = *d};
  struct stat sb;
  aqs_digest got;
  uint64_t size = 0;
  if (stat(path, &sb) != 0) return 0;
  c->r->files_scanned++;
  if (hash_object_file(path, zstd, &got, &size) != 0 || !aqs_digest_eq(&got, d)) {
    c->r->files_bad++;
    quarantine_file(c->s, path, name, c->r);
    return 0;
  }
  ins.rec.kind = zstd ? AQS_OBJ_FILE_ZSTD : AQS_OBJ_FILE_RAW;
  ins.rec.size_bytes = size;
  ins.rec.stored_bytes = (uint64_t)sb.st_size;
  ins.rec.created_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
  c->st = store_write(c->s, insert_body, &ins, c->err);
  return c->st != AQS_OK;
}

static aqs_status scan_objects(aqs_store *s, aqs_reindex_report *r, aqs_err *err) {
  scan_ctx c = {s, r, AQS_OK, err};
  if (object_files_foreach(s, index_file, &c) != 0)
    return aqs_errno(err, AQS_ERR_IO, errno, "reading %s", s->objects_dir);
  return c.st;
}

typedef struct replay_ctx {
  const uint8_t *buf;
  size_t len;
  aqs_reindex_report *r;
} replay_ctx;

static int rec_of(wtx *w, const aqs_digest *d, obj_rec *rec) {
  MDB_val k = {AQS_DIGEST_BYTES, (void *)d->bytes}, v;
  return mdb_get(w->txn, w->s->env->db_obj, &k, &v) == 0 && obj_rec_decode(&v, rec) == 0;
}

/* One inline object from the journal, verified by its digest. */
static aqs_status replay_inline(wtx *w, const journal_record *j, aqs_err *err) {
  if (j->len < AQS_DIGEST_BYTES + 1) return AQS_OK;
  aqs_digest d;
  memcpy(d.bytes, j->payload, AQS_DIGEST_BYTES);
  obj_rec rec = {0};
  if (rec_of(w, &d, &rec)) return AQS_OK;
  const uint8_t *frame = j->payload + AQS_DIGEST_BYTES + 1;
  size_t frame_len = j->len - AQS_DIGEST_BYTES - 1;
  unsigned long long size = ZSTD_getFrameContentSize(frame, frame_len);
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > (1u << 30))
    return AQS_OK;
  void *plain = malloc(size ? size : 1);
  if (!plain) return aqs_errf(err, AQS_ERR_NOMEM, "reindex: out of memory");
  size_t got = ZSTD_decompress(plain, size ? size : 1, frame, frame_len);
  aqs_digest check;
  int ok = !ZSTD_isError(got) && got == size;
  if (ok) aqs_sha256_buf(plain, got, &check);
  free(plain);
  if (!ok || !aqs_digest_eq(&check, &d)) return AQS_OK;
  rec.kind = AQS_OBJ_INLINE_ZSTD;
  rec.flags = j->payload[AQS_DIGEST_BYTES] ? OBJ_FLAG_MANIFEST : 0;
  rec.size_bytes = size;
  rec.stored_bytes = frame_len;
  rec.created_ns = now_ns();
  return obj_index_insert(w, &d, &rec, frame, frame_len, NULL, 0, err);
}

static aqs_status replay_body(wtx *w, void *ctx_, aqs_err *err) {
  replay_ctx *c = ctx_;
  store_env *e = w->s->env;
  journal_record j;
  size_t pos = 0, skipped = 0;
  aqs_status st = AQS_OK;
  c->r->journal_records = 0;
  while (st == AQS_OK && (pos = journal_next(c->buf, c->len, pos, &j, &skipped)) != 0) {
    c->r->journal_records++;
    aqs_digest d;
    obj_rec rec;
    if (j.type != J_REF_DEL && j.len >= AQS_DIGEST_BYTES) memcpy(d.bytes, j.payload, AQS_DIGEST_BYTES);
    else if (j.type != J_REF_DEL) continue;
    switch (j.type) {
    case J_OBJ_INLINE: st = replay_inline(w, &j, err); break;
    case J_OBJ_FILE_MANIFEST:
      if (rec_of(w, &d, &rec) && rec.kind != AQS_OBJ_INLINE_ZSTD && !(rec.flags & OBJ_FLAG_MANIFEST)) {
        st = obj_index_remove(w, &d, &rec, err);
        rec.flags |= OBJ_FLAG_MANIFEST;
        if (st == AQS_OK) st = obj_index_insert(w, &d, &rec, NULL, 0, NULL, 0, err);
      }
      break;
    case J_OBJ_DEL: /* a file object's fate is its file's; an inline one leaves */
      if (rec_of(w, &d, &rec) && rec.kind == AQS_OBJ_INLINE_ZSTD) st = obj_index_remove(w, &d, &rec, err);
      break;
    case J_ACTION:
      st = wput(w, e->db_act, d.bytes, AQS_DIGEST_BYTES, j.payload + AQS_DIGEST_BYTES,
                j.len - AQS_DIGEST_BYTES, 0, err);
      break;
    case J_ACTION_DEL: st = wdel(w, e->db_act, d.bytes, AQS_DIGEST_BYTES, NULL, 0, err); break;
    case J_REF:
      if (j.len > AQS_DIGEST_BYTES && j.len - AQS_DIGEST_BYTES <= AQS_REF_NAME_MAX)
        st = wput(w, e->db_ref, j.payload + AQS_DIGEST_BYTES, j.len - AQS_DIGEST_BYTES, d.bytes,
                  AQS_DIGEST_BYTES, 0, err);
      break;
    case J_REF_DEL:
      if (j.len && j.len <= AQS_REF_NAME_MAX) st = wdel(w, e->db_ref, j.payload, j.len, NULL, 0, err);
      break;
    default: break;
    }
  }
  c->r->journal_damaged = skipped;
  return st;
}

typedef struct closure_ctx {
  aqs_reindex_report *r;
  int changed;
} closure_ctx;

/* One pass: records edges of manifests whose children are all present, removes the others. */
static aqs_status closure_body(wtx *w, void *ctx_, aqs_err *err) {
  closure_ctx *c = ctx_;
  aqs_store *s = w->s;
  store_env *e = s->env;
  c->changed = 0;
  aqs_digest *manifests = NULL;
  size_t n = 0, cap = 0;
  MDB_cursor *cur = NULL;
  MDB_val k, v;
  int rc = mdb_cursor_open(w->txn, e->db_obj, &cur);
  if (rc == 0) rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  while (rc == 0) {
    obj_rec rec;
    MDB_val ek = k, ev;
    if (obj_rec_decode(&v, &rec) == 0 && (rec.flags & OBJ_FLAG_MANIFEST) &&
        mdb_get(w->txn, e->db_edges, &ek, &ev) != 0 && k.mv_size == AQS_DIGEST_BYTES) {
      if (n == cap) {
        cap = cap ? cap * 2 : 64;
        aqs_digest *p = realloc(manifests, cap * sizeof *p);
        if (!p) break;
        manifests = p;
      }
      memcpy(manifests[n++].bytes, k.mv_data, AQS_DIGEST_BYTES);
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (cur) mdb_cursor_close(cur);
  aqs_status st = AQS_OK;
  for (size_t i = 0; i < n && st == AQS_OK; i++) {
    obj_rec rec;
    if (!rec_of(w, &manifests[i], &rec)) continue;
    aqs_digest *children = NULL;
    size_t n_children = 0;
    int parsed = 0;
    MDB_val ek = {AQS_DIGEST_BYTES, manifests[i].bytes}, ev;
    int had_edges = mdb_get(w->txn, e->db_edges, &ek, &ev) == 0;
    if (had_edges) {
      n_children = ev.mv_size / sizeof(aqs_digest);
      children = malloc(ev.mv_size ? ev.mv_size : 1);
      if (children) memcpy(children, ev.mv_data, ev.mv_size);
      parsed = children != NULL;
    } else {
      void *data = NULL;
      size_t size = 0;
      /* Its bytes: an inline frame or a file. */
      if (rec.kind == AQS_OBJ_INLINE_ZSTD) {
        unsigned long long sz = ZSTD_getFrameContentSize(rec.inline_data, rec.inline_len);
        if (sz != ZSTD_CONTENTSIZE_ERROR && sz != ZSTD_CONTENTSIZE_UNKNOWN && sz < (1u << 30) &&
            (data = malloc(sz ? sz : 1)) != NULL) {
          size = ZSTD_decompress(data, sz ? sz : 1, rec.inline_data, rec.inline_len);
          if (ZSTD_isError(size)) size = 0;
        }
      } else if (rec.kind == AQS_OBJ_FILE_RAW) {
        char path[4400];
        object_file_path(s, &manifests[i], rec.kind, path, sizeof path);
        aqs_file_read(path, "manifest", (char **)&data, &size, NULL);
      } else {
        char path[4400];
        object_file_path(s, &manifests[i], rec.kind, path, sizeof path);
        char *z = NULL;
        size_t zlen = 0;
        if (aqs_file_read(path, "manifest", &z, &zlen, NULL) == AQS_OK) {
          unsigned long long sz = ZSTD_getFrameContentSize(z, zlen);
          if (sz != ZSTD_CONTENTSIZE_ERROR && sz != ZSTD_CONTENTSIZE_UNKNOWN && sz < (1u << 30) &&
              (data = malloc(sz ? sz : 1)) != NULL) {
            size = ZSTD_decompress(data, sz ? sz : 1, z, zlen);
            if (ZSTD_isError(size)) size = 0;
          }
          free(z);
        }
      }
      parsed = data && manifest_children(data, size, &children, &n_children, NULL) == AQS_OK;
      free(data);
    }
    int keep = parsed;
    for (size_t j = 0; j < n_children && keep; j++) {
      obj_rec crec;
      keep = rec_of(w, &children[j], &crec);
    }
    if (keep && !had_edges) {
      if (n_children)
        st = wput(w, e->db_edges, manifests[i].bytes, AQS_DIGEST_BYTES, children,
                  n_children * sizeof(aqs_digest), 0, err);
      for (size_t j = 0; j < n_children && st == AQS_OK; j++)
        st = wput(w, e->db_redges, children[j].bytes, AQS_DIGEST_BYTES, manifests[i].bytes,
                  AQS_DIGEST_BYTES, MDB_NODUPDATA, err);
    } else if (!keep) {
      st = obj_index_remove(w, &manifests[i], &rec, err);
      c->r->manifests_dropped++;
      c->changed = 1;
    }
    free(children);
  }
  free(manifests);
  return st;
}

/* Drops actions whose result and refs whose target is not in the new index; counts the rest. */
static aqs_status dangling_body(wtx *w, void *ctx_, aqs_err *err) {
  aqs_reindex_report *r = ctx_;
  store_env *e = w->s->env;
  r->actions = r->actions_dropped = r->refs = r->refs_dropped = 0;
  MDB_dbi dbis[2] = {e->db_act, e->db_ref};
  aqs_status st = AQS_OK;
  for (int t = 0; t < 2 && st == AQS_OK; t++) {
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc = mdb_cursor_open(w->txn, dbis[t], &cur);
    if (rc == 0) rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && st == AQS_OK) {
      aqs_digest target;
      int ok = 0;
      obj_rec rec;
      if (t == 0) {
        json_t *doc = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        const char *text = json_string_value(json_object_get(doc, "result"));
        ok = text && aqs_digest_parse(text, &target, NULL) == AQS_OK && rec_of(w, &target, &rec);
        json_decref(doc);
      } else if (v.mv_size == AQS_DIGEST_BYTES) {
        memcpy(target.bytes, v.mv_data, AQS_DIGEST_BYTES);
        ok = rec_of(w, &target, &rec);
      }
      if (ok) {
        if (t == 0) r->actions++;
        else r->refs++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        continue;
      }
      if (t == 0) r->actions_dropped++;
      else r->refs_dropped++;
      rc = mdb_cursor_del(cur, 0);
      if (rc == 0) rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) st = store_mdb_err(w->s, rc, "reindex", err);
    if (cur) mdb_cursor_close(cur);
  }
  if (st == AQS_OK) st = wcounter_add(w, "actions", (int64_t)r->actions, err);
  if (st == AQS_OK) st = wcounter_add(w, "refs", (int64_t)r->refs, err);
  return st;
}

/* Removes every file of dir (an LMDB environment directory) and dir itself. */
static void remove_env_dir(const char *dir) {
  const char *files[] = {"data.mdb", "lock.mdb"};
  for (size_t i = 0; i < 2; i++) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, files[i]);
    unlink(p);
  }
  rmdir(dir);
}

aqs_status aqs_store_reindex(const char *path, aqs_reindex_report *report, aqs_err *err) {
  aqs_reindex_report r = {0};
  char root[4096];
  if (!realpath(path, root))
    return aqs_errf(err, AQS_ERR_NOT_FOUND, "no aqs store at %s (run aqs init)", path);
  char fresh[4200], live[4200], old[4300];
  snprintf(fresh, sizeof fresh, "%s/index.new", root);
  snprintf(live, sizeof live, "%s/index", root);
  snprintf(old, sizeof old, "%s/index.old", root);
  remove_env_dir(fresh);
  aqs_store *s = NULL;
  aqs_status st = store_open_at(root, "index.new", STORE_FRESH_INDEX, &s, err);
  if (st != AQS_OK) return st;
  s->no_journal = 1;
  st = scan_objects(s, &r, err);
  char *journal = NULL;
  size_t journal_len = 0;
  if (st == AQS_OK && access(s->journal_path, F_OK) == 0)
    st = aqs_file_read(s->journal_path, "store journal", &journal, &journal_len, err);
  if (st == AQS_OK && journal) {
    replay_ctx c = {(const uint8_t *)journal, journal_len, &r};
    st = store_write(s, replay_body, &c, err);
  }
  free(journal);
  for (int pass = 0; st == AQS_OK && pass < 64; pass++) {
    closure_ctx c = {&r, 0};
    st = store_write(s, closure_body, &c, err);
    if (!c.changed) break;
  }
  if (st == AQS_OK) st = store_write(s, dangling_body, &r, err);
  aqs_store_stats stats;
  if (st == AQS_OK && aqs_store_stats_get(s, &stats, err) == AQS_OK) {
    r.objects = stats.objects;
    r.inline_objects = stats.objects_inline;
    aqs_store_stats_free(&stats);
  }
  aqs_store_close(s);
  if (st != AQS_OK) {
    remove_env_dir(fresh);
    return st;
  }
  /* Swap: the old index (damaged or lost) is removed once the new one is in place. */
  remove_env_dir(old);
  if (rename(live, old) != 0 && errno != ENOENT)
    return aqs_errno(err, AQS_ERR_IO, errno, "moving %s aside", live);
  if (rename(fresh, live) != 0)
    return aqs_errno(err, AQS_ERR_IO, errno, "moving %s to %s", fresh, live);
  remove_env_dir(old);
  if (report) *report = r;
  return AQS_OK;
}
