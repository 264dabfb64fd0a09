/* store/store_txn.c: LMDB transactions for the store: read/write helpers that grow the map on
 * MDB_MAP_FULL (doubling, then retrying the whole write body) and adopt a map grown by another
 * process on MDB_MAP_RESIZED; counters in the meta database. */
#include <stdio.h>
#include <string.h>

#include "store/journal.h"
#include "store/store_internal.h"

aqs_status store_mdb_err(const aqs_store *s, int rc, const char *what, aqs_err *err) {
  if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID ||
      rc == MDB_VERSION_MISMATCH || rc == MDB_INCOMPATIBLE || rc == MDB_BAD_VALSIZE) {
    char why[256];
    snprintf(why, sizeof why, "%s: %s", what, mdb_strerror(rc));
    return store_index_damaged(s, why, err);
  }
  return aqs_errf(err, AQS_ERR_IO, "%s in store index %s/index: %s", what, s->path,
                  mdb_strerror(rc));
}

/* Adopts the current map size (after MDB_MAP_RESIZED) or doubles it (after MDB_MAP_FULL). Must be
 * called with no transaction of this thread open; takes the resize lock exclusively. */
static int grow_map(aqs_store *s, int doubling) {
  store_env *e = s->env;
  pthread_rwlock_wrlock(&e->resize_lock);
  int rc;
  if (doubling) {
    MDB_envinfo info;
    mdb_env_info(e->env, &info);
    rc = mdb_env_set_mapsize(e->env, info.me_mapsize * 2);
  } else {
    rc = mdb_env_set_mapsize(e->env, 0);
  }
  pthread_rwlock_unlock(&e->resize_lock);
  return rc;
}

aqs_status store_read_begin(aqs_store *s, MDB_txn **txn, aqs_err *err) {
  for (int attempt = 0; attempt < 8; attempt++) {
    pthread_rwlock_rdlock(&s->env->resize_lock);
    int rc = mdb_txn_begin(s->env->env, NULL, MDB_RDONLY, txn);
    if (rc == 0) return AQS_OK;
    pthread_rwlock_unlock(&s->env->resize_lock);
    if (rc != MDB_MAP_RESIZED) return store_mdb_err(s, rc, "starting a read", err);
    grow_map(s, 0);
  }
  return aqs_errf(err, AQS_ERR_IO, "store index %s/index keeps being resized", s->path);
}

void store_read_end(aqs_store *s, MDB_txn *txn) {
  if (!txn) return;
  mdb_txn_abort(txn);
  pthread_rwlock_unlock(&s->env->resize_lock);
}

aqs_status store_write(aqs_store *s, write_fn fn, void *ctx, aqs_err *err) {
  if (s->flags & AQS_STORE_RDONLY)
    return aqs_errf(err, AQS_ERR_UNSUPPORTED, "store %s is open read-only", s->path);
  store_env *e = s->env;
  pthread_mutex_lock(&e->write_mutex);
  aqs_status st = AQS_OK;
  for (int attempt = 0;; attempt++) {
    if (attempt == 40) {
      st = aqs_errf(err, AQS_ERR_IO, "store index %s/index: cannot grow the map", s->path);
      break;
    }
    pthread_rwlock_rdlock(&e->resize_lock);
    wtx w = {.s = s};
    int rc = mdb_txn_begin(e->env, NULL, 0, &w.txn);
    if (rc == MDB_MAP_RESIZED) {
      pthread_rwlock_unlock(&e->resize_lock);
      grow_map(s, 0);
      continue;
    }
    if (rc != 0) {
      pthread_rwlock_unlock(&e->resize_lock);
      st = store_mdb_err(s, rc, "starting a write", err);
      break;
    }
    st = fn(&w, ctx, err);
    if (st == AQS_OK && !w.map_full && w.journaled) st = journal_sync(s, err);
    if (st == AQS_OK && !w.map_full) {
      rc = mdb_txn_commit(w.txn);
      pthread_rwlock_unlock(&e->resize_lock);
      if (rc == 0) break;
      if (rc != MDB_MAP_FULL) {
        st = store_mdb_err(s, rc, "committing", err);
        break;
      }
    } else {
      mdb_txn_abort(w.txn);
      pthread_rwlock_unlock(&e->resize_lock);
      if (!w.map_full) break;
    }
    /* MDB_MAP_FULL: grow and run the body again. */
    rc = grow_map(s, 1);
    if (rc != 0) {
      st = store_mdb_err(s, rc, "growing the map", err);
      break;
    }
    aqs_err_clear(err);
    st = AQS_OK;
  }
  pthread_mutex_unlock(&e->write_mutex);
  return st;
}

aqs_status wput(wtx *w, MDB_dbi dbi, const void *key, size_t key_len, const void *val,
                size_t val_len, unsigned flags, aqs_err *err) {
  MDB_val k = {key_len, (void *)key}, v = {val_len, (void *)val};
  int rc = mdb_put(w->txn, dbi, &k, &v, flags);
  if (rc == 0 || rc == MDB_KEYEXIST) return AQS_OK;
  if (rc == MDB_MAP_FULL || rc == MDB_TXN_FULL) w->map_full = 1;
  return store_mdb_err(w->s, rc, "writing", err);
}

aqs_status wdel(wtx *w, MDB_dbi dbi, const void *key, size_t key_len, const void *val,
                size_t val_len, aqs_err *err) {
  MDB_val k = {key_len, (void *)key}, v = {val_len, (void *)val};
  int rc = mdb_del(w->txn, dbi, &k, val ? &v : NULL);
  if (rc == 0 || rc == MDB_NOTFOUND) return AQS_OK;
  if (rc == MDB_MAP_FULL) w->map_full = 1;
  return store_mdb_err(w->s, rc, "deleting", err);
}

uint64_t counter_get(aqs_store *s, MDB_txn *txn, const char *name) {
  MDB_val k = {strlen(name), (void *)name}, v;
  uint64_t value = 0;
  if (mdb_get(txn, s->env->db_meta, &k, &v) == 0 && v.mv_size == sizeof value)
    memcpy(&value, v.mv_data, sizeof value);
  return value;
}

aqs_status wcounter_add(wtx *w, const char *name, int64_t delta, aqs_err *err) {
  if (delta == 0) return AQS_OK;
  uint64_t value = counter_get(w->s, w->txn, name);
  if (delta < 0 && (uint64_t)(-delta) > value) value = 0;
  else value += (uint64_t)delta;
  return wput(w, w->s->env->db_meta, name, strlen(name), &value, sizeof value, 0, err);
}
