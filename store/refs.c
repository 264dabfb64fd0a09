/* store/refs.c: refs (name -> digest) that pin objects against gc, each with a short reflog
 * (the last AQS_REFLOG_KEEP changes: old and new target, time, user, message). Reflog keys are
 * name '\0' + big-endian sequence number, so one name's history is one contiguous range. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/journal.h"
#include "store/store_internal.h"

static aqs_status check_name(const char *name, aqs_err *err) {
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > AQS_REF_NAME_MAX || name[0] == '-')
    return aqs_errf(err, AQS_ERR_INVALID, "bad ref name '%s' (1..255 characters, not starting "
                    "with '-')", name ? name : "");
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             strchr("._-/:+@", c) != NULL;
    if (!ok)
      return aqs_errf(err, AQS_ERR_INVALID,
                      "bad ref name '%s': character '%c' is not allowed (letters, digits, "
                      "._-/:+@)", name, c);
  }
  return AQS_OK;
}

/* Names new refs may take: '/'-separated segments of letters, digits, '.', '_', '-'; no empty,
 * '.' or '..' segment, no leading '-'. Older stores may hold refs the looser check_name allows
 * (':', '+', '@'): those stay readable, movable and deletable, never newly created. */
static aqs_status check_new_name(const char *name, aqs_err *err) {
  aqs_status st = check_name(name, err);
  if (st != AQS_OK) return st;
  const char *rule = "segments of letters, digits, '.', '_', '-' separated by single '/'; no '.' or '..' segment";
  for (const char *seg = name; ; ) {
    const char *end = strchr(seg, '/');
    size_t len = end ? (size_t)(end - seg) : strlen(seg);
    if (len == 0) return aqs_errf(err, AQS_ERR_INVALID, "bad ref name '%s': empty segment (%s)", name, rule);
    if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
      return aqs_errf(err, AQS_ERR_INVALID, "bad ref name '%s': '%.*s' segment (%s)", name, (int)len, seg, rule);
    for (size_t i = 0; i < len; i++)
      if (strchr(":+@", seg[i]))
        return aqs_errf(err, AQS_ERR_INVALID, "bad ref name '%s': character '%c' is not allowed (%s)", name, seg[i], rule);
    if (!end) break;
    seg = end + 1;
  }
  return AQS_OK;
}

static size_t reflog_key(const char *name, uint64_t seq, uint8_t *key) {
  size_t n = strlen(name);
  memcpy(key, name, n);
  key[n] = 0;
  for (int i = 0; i < 8; i++) key[n + 1 + i] = (uint8_t)(seq >> (56 - 8 * i));
  return n + 9;
}

typedef struct ref_change {
  const char *name;
  aqs_digest target;
  int deleting;
  const char *message;
} ref_change;

static aqs_status ref_change_body(wtx *w, void *ctx, aqs_err *err) {
  ref_change *c = ctx;
  store_env *e = w->s->env;
  char text[AQS_DIGEST_STR_SIZE];
  MDB_val k = {strlen(c->name), (void *)c->name}, v;
  aqs_digest old;
  int had_old = mdb_get(w->txn, e->db_ref, &k, &v) == 0 && v.mv_size == AQS_DIGEST_BYTES;
  if (had_old) memcpy(old.bytes, v.mv_data, AQS_DIGEST_BYTES);
  aqs_status st = AQS_OK;
  if (c->deleting) {
    if (!had_old) return aqs_errf(err, AQS_ERR_NOT_FOUND, "no ref %s", c->name);
    st = wdel(w, e->db_ref, c->name, strlen(c->name), NULL, 0, err);
    if (st == AQS_OK) st = wcounter_add(w, "refs", -1, err);
    if (st == AQS_OK) st = journal_append(w, J_REF_DEL, c->name, strlen(c->name), NULL, 0, err);
  } else {
    MDB_val ok = {AQS_DIGEST_BYTES, c->target.bytes}, ov;
    if (mdb_get(w->txn, e->db_obj, &ok, &ov) != 0)
      return aqs_errf(err, AQS_ERR_NOT_FOUND, "cannot point ref %s at %s: no such object in %s",
                      c->name, aqs_digest_str(&c->target, text), w->s->path);
    st = wput(w, e->db_ref, c->name, strlen(c->name), c->target.bytes, AQS_DIGEST_BYTES, 0, err);
    if (st == AQS_OK && !had_old) st = wcounter_add(w, "refs", 1, err);
    if (st == AQS_OK)
      st = journal_append(w, J_REF, c->target.bytes, AQS_DIGEST_BYTES, c->name, strlen(c->name),
                          err);
  }
  if (st != AQS_OK) return st;
  /* Reflog entry. */
  char user[AQS_NAME_MAX], old_text[AQS_DIGEST_STR_SIZE], new_text[AQS_DIGEST_STR_SIZE];
  current_user(user, sizeof user);
  json_t *entry = json_pack("{s:o, s:o, s:I, s:s, s:s}", "old",
                            had_old ? json_string(aqs_digest_str(&old, old_text)) : json_null(),
                            "new",
                            c->deleting ? json_null()
                                        : json_string(aqs_digest_str(&c->target, new_text)),
                            "time_ns", (json_int_t)now_ns(), "user", user, "message",
                            c->message ? c->message : "");
  char *entry_text = entry ? json_dumps(entry, JSON_COMPACT) : NULL;
  json_decref(entry);
  if (!entry_text) return aqs_errf(err, AQS_ERR_NOMEM, "reflog: out of memory");
  uint64_t seq = counter_get(w->s, w->txn, "reflog_seq") + 1;
  st = wcounter_add(w, "reflog_seq", 1, err);
  uint8_t key[AQS_REF_NAME_MAX + 16];
  size_t key_len = reflog_key(c->name, seq, key);
  if (st == AQS_OK) st = wput(w, e->db_reflog, key, key_len, entry_text, strlen(entry_text), 0, err);
  free(entry_text);
  /* Trim to the newest AQS_REFLOG_KEEP entries of this name. */
  if (st == AQS_OK) {
    MDB_cursor *cur = NULL;
    uint8_t start[AQS_REF_NAME_MAX + 16];
    size_t start_len = reflog_key(c->name, 0, start);
    size_t name_len = strlen(c->name) + 1;
    if (mdb_cursor_open(w->txn, e->db_reflog, &cur) == 0) {
      size_t count = 0;
      MDB_val ck = {start_len, start}, cv;
      int rc = mdb_cursor_get(cur, &ck, &cv, MDB_SET_RANGE);
      while (rc == 0 && ck.mv_size == start_len && !memcmp(ck.mv_data, start, name_len)) {
        count++;
        rc = mdb_cursor_get(cur, &ck, &cv, MDB_NEXT);
      }
      ck.mv_size = start_len;
      ck.mv_data = start;
      rc = mdb_cursor_get(cur, &ck, &cv, MDB_SET_RANGE);
      while (count > AQS_REFLOG_KEEP && rc == 0 && ck.mv_size == start_len &&
             !memcmp(ck.mv_data, start, name_len)) {
        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) break;
        count--;
        rc = mdb_cursor_get(cur, &ck, &cv, MDB_GET_CURRENT);
      }
      mdb_cursor_close(cur);
      if (rc == MDB_MAP_FULL) w->map_full = 1;
    }
  }
  return st;
}

aqs_status aqs_ref_set(aqs_store *s, const char *name, const aqs_digest *target,
                       const char *message, aqs_err *err) {
  aqs_digest existing;
  aqs_err ignore = {0};
  /* An existing old-style name may move; a new one must follow the current rules. */
  aqs_status st = aqs_ref_get(s, name, &existing, &ignore) == AQS_OK ? check_name(name, err)
                                                                      : check_new_name(name, err);
  if (st != AQS_OK) return st;
  ref_change c = {.name = name, .target = *target, .message = message};
  return store_write(s, ref_change_body, &c, err);
}

aqs_status aqs_ref_delete(aqs_store *s, const char *name, const char *message, aqs_err *err) {
  aqs_status st = check_name(name, err);
  if (st != AQS_OK) return st;
  ref_change c = {.name = name, .deleting = 1, .message = message};
  return store_write(s, ref_change_body, &c, err);
}

aqs_status aqs_ref_get(aqs_store *s, const char *name, aqs_digest *out, aqs_err *err) {
  aqs_status st = check_name(name, err);
  if (st != AQS_OK) return st;
  MDB_txn *txn = NULL;
  st = store_read_begin(s, &txn, err);
  if (st != AQS_OK) return st;
  MDB_val k = {strlen(name), (void *)name}, v;
  if (mdb_get(txn, s->env->db_ref, &k, &v) == 0 && v.mv_size == AQS_DIGEST_BYTES)
    memcpy(out->bytes, v.mv_data, AQS_DIGEST_BYTES);
  else
    st = aqs_errf(err, AQS_ERR_NOT_FOUND, "no ref %s in store %s", name, s->path);
  store_read_end(s, txn);
  return st;
}

typedef struct ref_item {
  char name[AQS_REF_NAME_MAX + 1];
  aqs_digest target;
} ref_item;

aqs_status aqs_ref_foreach(aqs_store *s, aqs_ref_fn fn, void *user, aqs_err *err) {
  MDB_txn *txn = NULL;
  aqs_status st = store_read_begin(s, &txn, err);
  if (st != AQS_OK) return st;
  ref_item *all = NULL;
  size_t n = 0, cap = 0;
  MDB_cursor *cur = NULL;
  MDB_val k, v;
  int rc = mdb_cursor_open(txn, s->env->db_ref, &cur);
  if (rc == 0) rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  while (rc == 0) {
    if (k.mv_size <= AQS_REF_NAME_MAX && v.mv_size == AQS_DIGEST_BYTES) {
      if (n == cap) {
        cap = cap ? cap * 2 : 32;
        ref_item *p = realloc(all, cap * sizeof *p);
        if (!p) {
          st = aqs_errf(err, AQS_ERR_NOMEM, "listing refs: out of memory");
          break;
        }
        all = p;
      }
      memcpy(all[n].name, k.mv_data, k.mv_size);
      all[n].name[k.mv_size] = '\0';
      memcpy(all[n].target.bytes, v.mv_data, AQS_DIGEST_BYTES);
      n++;
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (cur) mdb_cursor_close(cur);
  store_read_end(s, txn);
  for (size_t i = 0; i < n && st == AQS_OK; i++)
    if (fn(all[i].name, &all[i].target, user)) break;
  free(all);
  return st;
}

aqs_status aqs_ref_log(aqs_store *s, const char *name, aqs_reflog_fn fn, void *user,
                       aqs_err *err) {
  aqs_status st = check_name(name, err);
  if (st != AQS_OK) return st;
  MDB_txn *txn = NULL;
  st = store_read_begin(s, &txn, err);
  if (st != AQS_OK) return st;
  uint8_t start[AQS_REF_NAME_MAX + 16];
  size_t start_len = reflog_key(name, 0, start), name_len = strlen(name) + 1;
  char *texts[AQS_REFLOG_KEEP * 2];
  size_t n = 0;
  MDB_cursor *cur = NULL;
  if (mdb_cursor_open(txn, s->env->db_reflog, &cur) == 0) {
    MDB_val k = {start_len, start}, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size == start_len && !memcmp(k.mv_data, start, name_len) &&
           n < AQS_REFLOG_KEEP * 2) {
      texts[n] = strndup(v.mv_data, v.mv_size);
      if (texts[n]) n++;
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
  }
  store_read_end(s, txn);
  int stop = 0;
  for (size_t i = n; i-- > 0;) {
    json_t *j = stop ? NULL : json_loads(texts[i], 0, NULL);
    if (j) {
      aqs_reflog_entry e;
      memset(&e, 0, sizeof e);
      const char *o = json_string_value(json_object_get(j, "old"));
      const char *nw = json_string_value(json_object_get(j, "new"));
      e.has_old = o && aqs_digest_parse(o, &e.old_target, NULL) == AQS_OK;
      e.has_new = nw && aqs_digest_parse(nw, &e.new_target, NULL) == AQS_OK;
      e.time_ns = json_integer_value(json_object_get(j, "time_ns"));
      const char *u = json_string_value(json_object_get(j, "user"));
      const char *m = json_string_value(json_object_get(j, "message"));
      snprintf(e.user, sizeof e.user, "%s", u ? u : "");
      snprintf(e.message, sizeof e.message, "%s", m ? m : "");
      stop = fn(&e, user) != 0;
      json_decref(j);
    }
    free(texts[i]);
  }
  return AQS_OK;
}
