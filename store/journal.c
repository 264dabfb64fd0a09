/* store/journal.c: <store>/journal, an append-only log of what the index holds that objects/ does
 * not: inline objects (their zstd bytes), which file objects are manifests, action records, refs,
 * and their removals. Appended inside the LMDB write transaction (so records follow commit order
 * across processes) and synced before the commit; `aqs verify --reindex` replays it
 * (reindex.c). Each record carries a SHA-256 of its type and payload: a damaged record is skipped,
 * never trusted. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/journal.h"
#include "store/store_internal.h"

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void record_sum(uint8_t type, const uint8_t *payload, size_t len, aqs_digest *out) {
  aqs_sha256 *h = aqs_sha256_new();
  aqs_sha256_update(h, &type, 1);
  aqs_sha256_update(h, payload, len);
  aqs_sha256_final(h, out);
  aqs_sha256_free(h);
}

/* Encodes one record (header, a then b, checksum) into a malloc'd buffer of *total bytes; NULL
 * when out of memory. Appends and compaction write records only through it. */
static uint8_t *encode_record(journal_type type, const void *a, size_t a_len, const void *b,
                              size_t b_len, size_t *total) {
  size_t len = a_len + b_len;
  *total = JOURNAL_HEADER + len + AQS_DIGEST_BYTES;
  uint8_t *rec = malloc(*total);
  if (!rec) return NULL;
  memcpy(rec, JOURNAL_MAGIC, 4);
  rec[4] = (uint8_t)type;
  rec[5] = rec[6] = rec[7] = 0;
  put32(rec + 8, (uint32_t)len);
  if (a_len) memcpy(rec + JOURNAL_HEADER, a, a_len);
  if (b_len) memcpy(rec + JOURNAL_HEADER + a_len, b, b_len);
  aqs_digest sum;
  record_sum((uint8_t)type, rec + JOURNAL_HEADER, len, &sum);
  memcpy(rec + JOURNAL_HEADER + len, sum.bytes, AQS_DIGEST_BYTES);
  return rec;
}

aqs_status journal_append(wtx *w, journal_type type, const void *a, size_t a_len,
                          const void *b, size_t b_len, aqs_err *err) {
  aqs_store *s = w->s;
  if (s->no_journal) return AQS_OK;
  w->journaled = 1;
  size_t total;
  uint8_t *rec = encode_record(type, a, a_len, b, b_len, &total);
  if (!rec) return aqs_errf(err, AQS_ERR_NOMEM, "journal: out of memory");
  aqs_status st = AQS_OK;
  int fd = open(s->journal_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                s->cfg.shared ? 0664 : 0644);
  if (fd < 0) {
    st = aqs_errno(err, AQS_ERR_IO, errno, "opening the journal %s", s->journal_path);
  } else {
    /* One write per record: O_APPEND places it whole at the end. */
    ssize_t n = write(fd, rec, total);
    if (n != (ssize_t)total)
      st = aqs_errno(err, AQS_ERR_IO, n < 0 ? errno : ENOSPC, "appending to the journal %s",
                     s->journal_path);
    close(fd);
  }
  free(rec);
  return st;
}

size_t journal_next(const uint8_t *buf, size_t len, size_t pos, journal_record *out,
                    size_t *skipped) {
  while (pos + JOURNAL_HEADER + AQS_DIGEST_BYTES <= len) {
    const uint8_t *p = buf + pos;
    if (!memcmp(p, JOURNAL_MAGIC, 4)) {
      uint32_t plen = get32(p + 8);
      if ((uint64_t)pos + JOURNAL_HEADER + plen + AQS_DIGEST_BYTES <= len) {
        aqs_digest sum;
        record_sum(p[4], p + JOURNAL_HEADER, plen, &sum);
        if (!memcmp(sum.bytes, p + JOURNAL_HEADER + plen, AQS_DIGEST_BYTES)) {
          out->type = (journal_type)p[4];
          out->payload = p + JOURNAL_HEADER;
          out->len = plen;
          return pos + JOURNAL_HEADER + plen + AQS_DIGEST_BYTES;
        }
      }
    }
    /* Damaged or torn: resynchronize at the next magic. */
    const uint8_t *next = memmem(p + 1, len - pos - 1, JOURNAL_MAGIC, 4);
    size_t npos = next ? (size_t)(next - buf) : len;
    if (skipped) (*skipped)++;
    pos = npos;
  }
  return 0;
}

aqs_status journal_sync(aqs_store *s, aqs_err *err) {
  int fd = open(s->journal_path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return aqs_errno(err, AQS_ERR_IO, errno, "opening the journal %s", s->journal_path);
  int rc = fdatasync(fd);
  int e = errno;
  close(fd);
  if (rc != 0) return aqs_errno(err, AQS_ERR_IO, e, "syncing the journal %s", s->journal_path);
  return AQS_OK;
}

/* Appends one record to the open file f (compaction). 0 on success. */
static int write_record(int fd, journal_type type, const void *a, size_t a_len, const void *b,
                        size_t b_len) {
  size_t total;
  uint8_t *rec = encode_record(type, a, a_len, b, b_len, &total);
  if (!rec) return -1;
  int rc = write(fd, rec, total) == (ssize_t)total ? 0 : -1;
  free(rec);
  return rc;
}

aqs_status journal_compact(wtx *w, aqs_err *err) {
  aqs_store *s = w->s;
  store_env *e = s->env;
  if (s->no_journal) return AQS_OK;
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s.compact", s->journal_path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, s->cfg.shared ? 0664 : 0644);
  if (fd < 0) return aqs_errno(err, AQS_ERR_IO, errno, "creating %s", tmp);
  int bad = 0;
  /* Objects first (inline bytes, file manifests), then actions, then refs: replay order. */
  MDB_dbi dbis[3] = {e->db_obj, e->db_act, e->db_ref};
  for (int t = 0; t < 3 && !bad; t++) {
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc = mdb_cursor_open(w->txn, dbis[t], &cur);
    if (rc == 0) rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && !bad) {
      if (t == 0 && k.mv_size == AQS_DIGEST_BYTES) {
        obj_rec rec;
        if (obj_rec_decode(&v, &rec) == 0) {
          uint8_t head[AQS_DIGEST_BYTES + 1];
          memcpy(head, k.mv_data, AQS_DIGEST_BYTES);
          head[AQS_DIGEST_BYTES] = rec.flags & OBJ_FLAG_MANIFEST ? 1 : 0;
          if (rec.kind == AQS_OBJ_INLINE_ZSTD)
            bad = write_record(fd, J_OBJ_INLINE, head, sizeof head, rec.inline_data, rec.inline_len);
          else if (rec.flags & OBJ_FLAG_MANIFEST)
            bad = write_record(fd, J_OBJ_FILE_MANIFEST, k.mv_data, AQS_DIGEST_BYTES, NULL, 0);
        }
      } else if (t == 1 && k.mv_size == AQS_DIGEST_BYTES) {
        bad = write_record(fd, J_ACTION, k.mv_data, AQS_DIGEST_BYTES, v.mv_data, v.mv_size);
      } else if (t == 2 && v.mv_size == AQS_DIGEST_BYTES) {
        bad = write_record(fd, J_REF, v.mv_data, AQS_DIGEST_BYTES, k.mv_data, k.mv_size);
      }
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (cur) mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND) bad = 1;
  }
  int saved = errno;
  if (!bad && fsync(fd) != 0) bad = 1;
  close(fd);
  /* Under the writer lock: no append can fall between the snapshot and the rename. */
  if (bad || rename(tmp, s->journal_path) != 0) {
    unlink(tmp);
    return aqs_errno(err, AQS_ERR_IO, bad ? saved : errno, "compacting the journal %s",
                     s->journal_path);
  }
  return AQS_OK;
}
