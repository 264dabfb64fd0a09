/* store/verify.c: integrity check. Re-hashes every object (or a random sample) through the same
 * verified read path as gets, checks that manifests' children are present, reports each bad
 * object by digest and optionally quarantines it (file moved to quarantine/, record removed). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_internal.h"

typedef struct obj_list {
  aqs_object_info *items;
  size_t n, cap;
} obj_list;

static int collect(const aqs_object_info *info, void *user) {
  obj_list *l = user;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 256;
    aqs_object_info *p = realloc(l->items, cap * sizeof *p);
    if (!p) return 1;
    l->items = p;
    l->cap = cap;
  }
  l->items[l->n++] = *info;
  return 0;
}

static uint64_t next_random(uint64_t *state) {
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *state = x;
}

typedef struct quarantine_ctx {
  aqs_digest digest;
  int moved;
} quarantine_ctx;

static aqs_status quarantine_body(wtx *w, void *ctx_, aqs_err *err) {
  quarantine_ctx *c = ctx_;
  aqs_store *s = w->s;
  MDB_val k = {AQS_DIGEST_BYTES, c->digest.bytes}, v;
  obj_rec rec;
  if (mdb_get(w->txn, s->env->db_obj, &k, &v) != 0 || obj_rec_decode(&v, &rec) != 0)
    return AQS_OK; /* already gone */
  char hex[AQS_DIGEST_HEX_LEN + 1], dest[4400];
  aqs_digest_hex(&c->digest, hex);
  snprintf(dest, sizeof dest, "%s/%s%s", s->quarantine_dir, hex,
           rec.kind == AQS_OBJ_FILE_RAW ? "" : ".zst");
  store_mkdir(s, s->quarantine_dir);
  if (rec.kind == AQS_OBJ_INLINE_ZSTD) {
    FILE *f = fopen(dest, "wb");
    if (f) {
      fwrite(rec.inline_data, 1, rec.inline_len, f);
      fclose(f);
    }
  } else if (!c->moved) {
    char src[4400];
    object_file_path(s, &c->digest, rec.kind, src, sizeof src);
    if (rename(src, dest) != 0 && errno != ENOENT)
      return aqs_errno(err, AQS_ERR_IO, errno, "moving %s to %s", src, dest);
    c->moved = 1;
  }
  aqs_status st = obj_index_remove(w, &c->digest, &rec, err);
  if (st == AQS_OK) st = wcounter_add(w, "corrupt_found", 1, err);
  return st;
}

void aqs_store_set_notice(aqs_store *s, aqs_store_notice_fn fn, void *user) {
  s->notice = fn;
  s->notice_user = user;
}

int store_quarantine(aqs_store *s, const aqs_digest *d, const char *why) {
  if (s->flags & AQS_STORE_RDONLY) return 0;
  quarantine_ctx q = {.digest = *d};
  if (store_write(s, quarantine_body, &q, NULL) != AQS_OK) return 0;
  if (s->notice) {
    /* Keep only the reason of a read error ("object X is corrupt: <reason>; run aqs verify"). */
    char reason[AQS_ERR_MSG_MAX];
    const char *start = strstr(why, "is corrupt: ");
    snprintf(reason, sizeof reason, "%s", start ? start + strlen("is corrupt: ") : why);
    char *tail = strstr(reason, "; run aqs verify");
    if (tail) *tail = '\0';
    why = reason;
    char text[AQS_DIGEST_STR_SIZE], msg[AQS_ERR_MSG_MAX + 200];
    snprintf(msg, sizeof msg,
             "repaired: object %s was damaged (%s); it is quarantined and what needs it is "
             "recomputed",
             aqs_digest_str(d, text), why);
    s->notice(msg, s->notice_user);
  }
  return 1;
}

static int file_missing(aqs_store *s, const aqs_object_info *info) {
  if (info->kind == AQS_OBJ_INLINE_ZSTD) return 0;
  char path[4400];
  struct stat sb;
  object_file_path(s, &info->digest, info->kind, path, sizeof path);
  return stat(path, &sb) != 0 && errno == ENOENT;
}

/* Object files under objects/ that the index does not know (a lost or partial index). Files newer
 * than an hour may be puts in flight (renamed into place, not yet committed) and are not counted;
 * gc uses the same grace for orphans. */
#define UNINDEXED_GRACE_S 3600
typedef struct unindexed_ctx {
  aqs_store *s;
  uint64_t n;
} unindexed_ctx;

static int count_if_unindexed(const char *path, const char *name, const aqs_digest *d, int zstd,
                              void *user) {
  (void)name, (void)zstd;
  unindexed_ctx *c = user;
  struct stat sb;
  if (stat(path, &sb) == 0 && (int64_t)sb.st_mtime <= now_ns() / 1000000000 - UNINDEXED_GRACE_S &&
      !aqs_object_exists(c->s, d))
    c->n++;
  return 0;
}

static uint64_t count_unindexed(aqs_store *s) {
  unindexed_ctx c = {s, 0};
  object_files_foreach(s, count_if_unindexed, &c);
  return c.n;
}

aqs_status aqs_verify(aqs_store *s, const aqs_verify_opts *opts, aqs_verify_fn fn, void *user,
                      aqs_verify_report *report, aqs_err *err) {
  aqs_verify_opts o = {0};
  if (opts) o = *opts;
  aqs_verify_report r = {0};
  obj_list list = {0};
  aqs_status st = aqs_object_foreach(s, collect, &list, err);
  if (st != AQS_OK) {
    free(list.items);
    return st;
  }
  size_t n = list.n;
  if (o.sample && o.sample < n) {
    uint64_t state = o.seed ? o.seed : (uint64_t)now_ns() | 1;
    for (size_t i = 0; i < o.sample; i++) {
      size_t j = i + (size_t)(next_random(&state) % (n - i));
      aqs_object_info t = list.items[i];
      list.items[i] = list.items[j];
      list.items[j] = t;
    }
    n = (size_t)o.sample;
  }
  char first_bad[4][AQS_DIGEST_SHORT_LEN + 1];
  uint64_t bytes_total = 0, bytes_done = 0;
  for (size_t i = 0; i < n; i++) bytes_total += list.items[i].size_bytes;
  for (size_t i = 0; i < n; i++) {
    const aqs_object_info *info = &list.items[i];
    if (o.progress && i) o.progress(i, n, bytes_done, bytes_total, o.progress_user);
    bytes_done += info->size_bytes;
    aqs_err e;
    aqs_err_clear(&e);
    r.checked++;
    aqs_status vs = obj_read_verified(s, &info->digest, NULL, NULL, NULL, &e);
    if (vs == AQS_ERR_NOT_FOUND) continue; /* removed meanwhile (gc) */
    if (vs == AQS_ERR_NOMEM || (vs == AQS_ERR_IO && !file_missing(s, info))) {
      st = aqs_errf(err, vs, "verify: %s", e.msg);
      break;
    }
    int bad = vs != AQS_OK;
    aqs_status code = AQS_ERR_CORRUPT;
    if (bad && file_missing(s, info)) {
      code = AQS_ERR_NOT_FOUND;
      r.missing++;
    } else if (bad) {
      r.corrupt++;
    } else {
      r.bytes_checked += info->size_bytes;
    }
    if (!bad && info->manifest) {
      aqs_digest *children = NULL;
      size_t n_children = 0;
      if (aqs_object_children(s, &info->digest, &children, &n_children, NULL) == AQS_OK) {
        for (size_t c = 0; c < n_children && !bad; c++)
          if (!aqs_object_exists(s, &children[c])) {
            char pd[AQS_DIGEST_STR_SIZE], cd[AQS_DIGEST_STR_SIZE];
            aqs_errf(&e, AQS_ERR_NOT_FOUND, "manifest %s lists child %s, which is missing",
                     aqs_digest_str(&info->digest, pd), aqs_digest_str(&children[c], cd));
            bad = 1;
            code = AQS_ERR_NOT_FOUND;
            r.missing++;
          }
        free(children);
      }
      if (bad) { /* the manifest itself is fine: report, never quarantine it */
        if (r.corrupt + r.missing <= 4)
          aqs_digest_short(&info->digest, first_bad[r.corrupt + r.missing - 1]);
        if (fn) fn(&info->digest, code, e.msg, user);
        continue;
      }
    }
    if (!bad) {
      r.ok++;
      continue;
    }
    if (r.corrupt + r.missing <= 4)
      aqs_digest_short(&info->digest, first_bad[r.corrupt + r.missing - 1]);
    /* The read path's advice to run aqs verify makes no sense inside it. */
    char *advice = strstr(e.msg, "; run aqs verify");
    if (advice) *advice = '\0';
    int moved = 0;
    if (o.quarantine && !(s->flags & AQS_STORE_RDONLY)) {
      quarantine_ctx q = {.digest = info->digest};
      moved = store_write(s, quarantine_body, &q, NULL) == AQS_OK;
      r.quarantined += (uint64_t)moved;
    }
    if (moved) {
      size_t used = strlen(e.msg);
      snprintf(e.msg + used, sizeof e.msg - used, " (quarantined)");
    }
    if (fn) fn(&info->digest, code, e.msg, user);
  }
  if (o.progress && st == AQS_OK) o.progress(n, n, bytes_total, bytes_total, o.progress_user);
  free(list.items);
  if (st == AQS_OK && !o.sample) r.unindexed = count_unindexed(s);
  if (report) *report = r;
  if (st != AQS_OK) return st;
  uint64_t bad_total = r.corrupt + r.missing;
  if (!bad_total && r.unindexed)
    return aqs_errf(err, AQS_ERR_CORRUPT,
                    "%llu object file(s) under %s are not in the index (a lost or damaged index); "
                    "run `aqs verify --reindex` to rebuild it",
                    (unsigned long long)r.unindexed, s->objects_dir);
  if (bad_total) {
    char list_text[128] = "";
    for (uint64_t i = 0; i < bad_total && i < 4; i++) {
      char part[80]; /* ", sha256:" + a short digest + "..." */
      snprintf(part, sizeof part, "%ssha256:%.12s...", i ? ", " : "", first_bad[i]);
      strncat(list_text, part, sizeof list_text - strlen(list_text) - 1);
    }
    char moved[64] = "";
    if (r.quarantined) snprintf(moved, sizeof moved, " (%llu quarantined)", (unsigned long long)r.quarantined);
    return aqs_errf(err, AQS_ERR_CORRUPT, "%llu bad object(s) in store %s: %s%s%s",
                    (unsigned long long)bad_total, s->path, list_text, bad_total > 4 ? ", ..." : "", moved);
  }
  return AQS_OK;
}
