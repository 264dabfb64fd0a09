/* store/actions.c: the action cache, key -> result digest + provenance. The key is SHA-256 of the
 * canonical key document (canon_json.h), stored with the record so `aqs plan` can diff inputs and
 * params against the nearest cached action of a stage. Records are JSON values in LMDB. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/version.h"
#include "store/journal.h"
#include "store/store_internal.h"

void aqs_action_info_free(aqs_action_info *info) {
  if (!info) return;
  free(info->key_doc);
  memset(info, 0, sizeof *info);
}

static void copy_str(char *dst, size_t cap, const char *src) {
  snprintf(dst, cap, "%s", src ? src : "");
}

/* Checks key_doc is a canonical key document; fills stage/stage_version. */
static aqs_status check_key_doc(const char *key_doc, char *stage, char *stage_version,
                                aqs_err *err) {
  json_error_t jerr;
  json_t *doc = json_loads(key_doc, 0, &jerr);
  if (!doc) return aqs_errf(err, AQS_ERR_INVALID, "action key document is not JSON: %s", jerr.text);
  aqs_status st = AQS_OK;
  json_t *jstage = json_object_get(doc, "stage");
  json_t *jver = json_object_get(doc, "stage_version");
  if (!json_is_object(doc) || !json_is_string(jstage) || !json_is_string(jver) ||
      !json_is_object(json_object_get(doc, "inputs")) || !json_object_get(doc, "params") ||
      json_object_size(doc) != 4) {
    st = aqs_errf(err, AQS_ERR_INVALID,
                  "action key document must be {inputs, params, stage, stage_version} (make it "
                  "with aqs_action_key)");
  } else {
    char *canon = NULL;
    st = aqs_json_canonical(doc, &canon, NULL, err);
    if (st == AQS_OK && strcmp(canon, key_doc) != 0)
      st = aqs_errf(err, AQS_ERR_INVALID,
                    "action key document is not canonical (make it with aqs_action_key)");
    free(canon);
    copy_str(stage, AQS_NAME_MAX, json_string_value(jstage));
    copy_str(stage_version, AQS_NAME_MAX, json_string_value(jver));
  }
  json_decref(doc);
  return st;
}

typedef struct act_put {
  aqs_digest key, result;
  const char *record;
} act_put;

static aqs_status act_put_body(wtx *w, void *ctx, aqs_err *err) {
  act_put *p = ctx;
  MDB_val k = {AQS_DIGEST_BYTES, p->result.bytes}, v;
  if (mdb_get(w->txn, w->s->env->db_obj, &k, &v) != 0) {
    char text[AQS_DIGEST_STR_SIZE];
    return aqs_errf(err, AQS_ERR_NOT_FOUND, "action result %s is not in store %s (put it first)",
                    aqs_digest_str(&p->result, text), w->s->path);
  }
  MDB_val ak = {AQS_DIGEST_BYTES, p->key.bytes}, old;
  int existed = mdb_get(w->txn, w->s->env->db_act, &ak, &old) == 0;
  aqs_status st = wput(w, w->s->env->db_act, p->key.bytes, AQS_DIGEST_BYTES, p->record,
                       strlen(p->record), 0, err);
  if (st == AQS_OK && !existed) st = wcounter_add(w, "actions", 1, err);
  if (st == AQS_OK) st = lease_drop(w, &p->key, err);
  if (st == AQS_OK)
    st = journal_append(w, J_ACTION, p->key.bytes, AQS_DIGEST_BYTES, p->record, strlen(p->record),
                        err);
  return st;
}

aqs_status aqs_action_put(aqs_store *s, const char *key_doc, const aqs_digest *result,
                          double wall_seconds, aqs_digest *key_out, aqs_err *err) {
  if (!key_doc) return aqs_errf(err, AQS_ERR_INVALID, "action put: no key document");
  aqs_action_info info = {0};
  aqs_status st = check_key_doc(key_doc, info.stage, info.stage_version, err);
  if (st != AQS_OK) return st;
  act_put p = {.result = *result};
  aqs_sha256_buf(key_doc, strlen(key_doc), &p.key);
  char host[AQS_HOST_MAX], user[AQS_NAME_MAX], when[AQS_TIME_STR_SIZE], text[AQS_DIGEST_STR_SIZE];
  current_host(host, sizeof host);
  current_user(user, sizeof user);
  int64_t created = now_ns();
  format_utc(created, when);
  json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:f, s:s}", "result",
                          aqs_digest_str(result, text), "stage", info.stage, "stage_version",
                          info.stage_version, "aqs_version", AQS_VERSION, "host", host, "user",
                          user, "created_ns", (json_int_t)created, "created_at", when,
                          "wall_seconds", wall_seconds, "key_doc", key_doc);
  char *record = rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(rec);
  if (!record) return aqs_errf(err, AQS_ERR_NOMEM, "action put: cannot encode the record");
  p.record = record;
  st = store_write(s, act_put_body, &p, err);
  if (st == AQS_OK && s->tiers) tiers_after_action_put(s, &p.key, result, record);
  free(record);
  if (st == AQS_OK && key_out) *key_out = p.key;
  return st;
}

aqs_status action_record_put(aqs_store *s, const aqs_digest *key, const char *record, aqs_err *err) {
  aqs_action_info info;
  if (action_record_decode(key, record, strlen(record), &info) != 0)
    return aqs_errf(err, AQS_ERR_CORRUPT, "action record %s is malformed", record);
  aqs_digest doc_key;
  aqs_sha256_buf(info.key_doc, strlen(info.key_doc), &doc_key);
  act_put p = {.key = *key, .result = info.result, .record = record};
  aqs_action_info_free(&info);
  if (!aqs_digest_eq(&doc_key, key)) {
    char hex[AQS_DIGEST_STR_SIZE];
    return aqs_errf(err, AQS_ERR_CORRUPT, "action record for %s has another key document",
                    aqs_digest_str(key, hex));
  }
  return store_write(s, act_put_body, &p, err);
}

/* Fills info from a stored record; 0 on success. */
int action_record_decode(const aqs_digest *key, const char *text, size_t len,
                         aqs_action_info *info) {
  memset(info, 0, sizeof *info);
  json_error_t jerr;
  json_t *rec = json_loadb(text, len, 0, &jerr);
  if (!rec) return -1;
  const char *result = json_string_value(json_object_get(rec, "result"));
  int bad = !result || aqs_digest_parse(result, &info->result, NULL) != AQS_OK;
  const char *doc = json_string_value(json_object_get(rec, "key_doc"));
  if (!bad && doc) { /* the key is the digest of its document: a damaged document is a miss */
    aqs_digest check;
    aqs_sha256_buf(doc, strlen(doc), &check);
    bad = !aqs_digest_eq(&check, key);
  }
  if (!bad && doc) {
    info->key = *key;
    copy_str(info->stage, sizeof info->stage, json_string_value(json_object_get(rec, "stage")));
    copy_str(info->stage_version, sizeof info->stage_version,
             json_string_value(json_object_get(rec, "stage_version")));
    copy_str(info->aqs_version, sizeof info->aqs_version,
             json_string_value(json_object_get(rec, "aqs_version")));
    copy_str(info->host, sizeof info->host, json_string_value(json_object_get(rec, "host")));
    copy_str(info->user, sizeof info->user, json_string_value(json_object_get(rec, "user")));
    copy_str(info->created_at, sizeof info->created_at,
             json_string_value(json_object_get(rec, "created_at")));
    info->created_ns = json_integer_value(json_object_get(rec, "created_ns"));
    info->wall_seconds = json_number_value(json_object_get(rec, "wall_seconds"));
    info->key_doc = strdup(doc);
    bad = info->key_doc == NULL;
  } else {
    bad = 1;
  }
  json_decref(rec);
  return bad ? -1 : 0;
}

/* A set of digests (open addressing on the first 8 bytes), for walking a closure once. */
typedef struct digest_set {
  aqs_digest *slots;
  uint8_t *used;
  size_t cap, n;
} digest_set;

/* Adds d; 1 when new, 0 when present, -1 out of memory. */
static int set_add(digest_set *set, const aqs_digest *d) {
  if (set->n * 2 >= set->cap) {
    size_t cap = set->cap ? set->cap * 2 : 256;
    digest_set grown = {calloc(cap, sizeof(aqs_digest)), calloc(cap, 1), cap, 0};
    if (!grown.slots || !grown.used) {
      free(grown.slots);
      free(grown.used);
      return -1;
    }
    for (size_t i = 0; i < set->cap; i++)
      if (set->used[i]) set_add(&grown, &set->slots[i]);
    free(set->slots);
    free(set->used);
    *set = grown;
  }
  uint64_t h;
  memcpy(&h, d->bytes, sizeof h);
  for (size_t i = (size_t)(h % set->cap);; i = (i + 1) % set->cap) {
    if (!set->used[i]) {
      set->used[i] = 1;
      set->slots[i] = *d;
      set->n++;
      return 1;
    }
    if (aqs_digest_eq(&set->slots[i], d)) return 0;
  }
}

/* 1 when root and everything its manifests reach are present and sound (aqs_object_check: a file
 * object is hashed once, then trusted while its stamp holds). A damaged object found here is
 * quarantined, which is what turns the lookup into a miss and makes the stage recompute. */
static int closure_sound(aqs_store *s, const aqs_digest *root) {
  digest_set seen = {0};
  aqs_digest *queue = malloc(sizeof *queue);
  size_t head = 0, tail = 0, cap = 1;
  int sound = queue != NULL && set_add(&seen, root) == 1;
  if (sound) queue[tail++] = *root;
  while (sound && head < tail) {
    aqs_digest d = queue[head++];
    if (aqs_object_check(s, &d, NULL) != AQS_OK) {
      sound = 0;
      break;
    }
    aqs_digest *children = NULL;
    size_t n = 0;
    if (aqs_object_children(s, &d, &children, &n, NULL) != AQS_OK) {
      sound = 0;
      break;
    }
    for (size_t i = 0; i < n && sound; i++) {
      int added = set_add(&seen, &children[i]);
      if (added < 0) sound = 0;
      if (added != 1) continue;
      if (tail == cap) {
        aqs_digest *p = realloc(queue, (cap *= 2) * sizeof *p);
        if (!p) {
          sound = 0;
          break;
        }
        queue = p;
      }
      queue[tail++] = children[i];
    }
    free(children);
  }
  free(queue);
  free(seen.slots);
  free(seen.used);
  return sound;
}

static void count_lookup(aqs_store *s, const char *stage, int hit) {
  char name[AQS_NAME_MAX + 32];
  const char *st = stage && *stage ? stage : "-";
  snprintf(name, sizeof name, "stage:%s:lookups", st);
  pending_count(s, name, 1);
  snprintf(name, sizeof name, "stage:%s:%s", st, hit ? "hits" : "misses");
  pending_count(s, name, 1);
}

aqs_status aqs_action_lookup(aqs_store *s, const char *stage, const aqs_digest *key,
                             aqs_action_info *info, aqs_err *err) {
  aqs_err quiet = {0};
  aqs_status st = action_lookup_quiet(s, key, info, &quiet);
  if (st == AQS_ERR_NOT_FOUND && s->tiers && tiers_action_lookup(s, key, info) == AQS_OK) st = AQS_OK;
  if (st != AQS_OK && st != AQS_ERR_NOT_FOUND) {
    if (err) *err = quiet;
    return st;
  }
  count_lookup(s, stage, st == AQS_OK);
  if (st == AQS_ERR_NOT_FOUND) {
    char hex[AQS_DIGEST_STR_SIZE];
    return aqs_errf(err, AQS_ERR_NOT_FOUND, "no cached action %s%s%s", aqs_digest_str(key, hex),
                    stage ? " of stage " : "", stage ? stage : "");
  }
  return AQS_OK;
}

int aqs_action_recorded(aqs_store *s, const aqs_digest *key) {
  aqs_err quiet = {0};
  aqs_action_info info;
  aqs_status st = action_lookup_quiet(s, key, &info, &quiet);
  if (st == AQS_OK) aqs_action_info_free(&info);
  else if (st == AQS_ERR_NOT_FOUND && s->tiers && tiers_action_lookup(s, key, &info) == AQS_OK) {
    aqs_action_info_free(&info);
    st = AQS_OK;
  }
  return st == AQS_OK;
}

aqs_status action_lookup_quiet(aqs_store *s, const aqs_digest *key, aqs_action_info *info,
                               aqs_err *err) {
  if (info) memset(info, 0, sizeof *info);
  MDB_txn *txn = NULL;
  aqs_status st = store_read_begin(s, &txn, err);
  if (st != AQS_OK) return st;
  char *text = NULL;
  size_t len = 0;
  MDB_val k = {AQS_DIGEST_BYTES, (void *)key->bytes}, v;
  int rc = mdb_get(txn, s->env->db_act, &k, &v);
  if (rc == 0) {
    text = malloc(v.mv_size + 1);
    if (text) {
      memcpy(text, v.mv_data, v.mv_size);
      len = v.mv_size;
    }
  } else if (rc != MDB_NOTFOUND) {
    st = store_mdb_err(s, rc, "reading an action", err);
  }
  aqs_action_info found;
  aqs_digest result = {0};
  int hit = 0;
  if (text && action_record_decode(key, text, len, &found) == 0) {
    result = found.result;
    MDB_val rk = {AQS_DIGEST_BYTES, found.result.bytes}, rv;
    hit = mdb_get(txn, s->env->db_obj, &rk, &rv) == 0;
    if (hit && info) *info = found;
    else aqs_action_info_free(&found);
  }
  store_read_end(s, txn);
  free(text);
  if (st != AQS_OK) {
    if (hit && info) aqs_action_info_free(info);
    return st;
  }
  if (hit && !closure_sound(s, &result)) {
    hit = 0;
    if (info) aqs_action_info_free(info);
  }
  if (!hit) {
    char hex[AQS_DIGEST_STR_SIZE];
    return aqs_errf(err, AQS_ERR_NOT_FOUND, "no cached action %s", aqs_digest_str(key, hex));
  }
  return AQS_OK;
}

typedef struct act_raw {
  aqs_digest key;
  char *text;
  size_t len;
} act_raw;

aqs_status aqs_action_foreach(aqs_store *s, const char *stage, aqs_action_fn fn, void *user,
                              aqs_err *err) {
  MDB_txn *txn = NULL;
  aqs_status st = store_read_begin(s, &txn, err);
  if (st != AQS_OK) return st;
  act_raw *all = NULL;
  size_t n = 0, cap = 0;
  MDB_cursor *cur = NULL;
  MDB_val k, v;
  int rc = mdb_cursor_open(txn, s->env->db_act, &cur);
  if (rc == 0) rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  while (rc == 0 && st == AQS_OK) {
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      act_raw *p = realloc(all, cap * sizeof *p);
      if (!p) {
        st = aqs_errf(err, AQS_ERR_NOMEM, "listing actions: out of memory");
        break;
      }
      all = p;
    }
    all[n].text = malloc(v.mv_size + 1);
    if (!all[n].text) {
      st = aqs_errf(err, AQS_ERR_NOMEM, "listing actions: out of memory");
      break;
    }
    memcpy(all[n].key.bytes, k.mv_data, AQS_DIGEST_BYTES);
    memcpy(all[n].text, v.mv_data, v.mv_size);
    all[n].len = v.mv_size;
    n++;
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (cur) mdb_cursor_close(cur);
  store_read_end(s, txn);
  int stop = 0;
  for (size_t i = 0; i < n; i++) {
    aqs_action_info info;
    if (!stop && st == AQS_OK && action_record_decode(&all[i].key, all[i].text, all[i].len, &info) == 0) {
      if (!stage || !strcmp(stage, info.stage)) stop = fn(&info, user) != 0;
      aqs_action_info_free(&info);
    }
    free(all[i].text);
  }
  free(all);
  return st;
}

static aqs_status act_del_body(wtx *w, void *ctx, aqs_err *err) {
  const aqs_digest *key = ctx;
  MDB_val k = {AQS_DIGEST_BYTES, (void *)key->bytes}, v;
  if (mdb_get(w->txn, w->s->env->db_act, &k, &v) != 0) {
    char hex[AQS_DIGEST_STR_SIZE];
    return aqs_errf(err, AQS_ERR_NOT_FOUND, "no action %s", aqs_digest_str(key, hex));
  }
  aqs_status st = wdel(w, w->s->env->db_act, key->bytes, AQS_DIGEST_BYTES, NULL, 0, err);
  if (st == AQS_OK) st = wcounter_add(w, "actions", -1, err);
  if (st == AQS_OK) st = journal_append(w, J_ACTION_DEL, key->bytes, AQS_DIGEST_BYTES, NULL, 0, err);
  return st;
}

aqs_status aqs_action_delete(aqs_store *s, const aqs_digest *key, aqs_err *err) {
  aqs_digest k = *key;
  return store_write(s, act_del_body, &k, err);
}

aqs_status action_record_get(aqs_store *s, const aqs_digest *key, char **text_out, aqs_err *err) {
  *text_out = NULL;
  MDB_txn *txn = NULL;
  aqs_status st = store_read_begin(s, &txn, err);
  if (st != AQS_OK) return st;
  MDB_val k = {AQS_DIGEST_BYTES, (void *)key->bytes}, v;
  int rc = mdb_get(txn, s->env->db_act, &k, &v);
  if (rc == 0) {
    *text_out = malloc(v.mv_size + 1);
    if (!*text_out) st = aqs_errf(err, AQS_ERR_NOMEM, "reading an action: out of memory");
    else {
      memcpy(*text_out, v.mv_data, v.mv_size);
      (*text_out)[v.mv_size] = '\0';
    }
  } else {
    char hex[AQS_DIGEST_STR_SIZE];
    st = rc == MDB_NOTFOUND ? aqs_errf(err, AQS_ERR_NOT_FOUND, "no action %s", aqs_digest_str(key, hex))
                            : store_mdb_err(s, rc, "reading an action", err);
  }
  store_read_end(s, txn);
  return st;
}
