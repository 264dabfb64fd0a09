/* store/stats.c: the counters snapshot behind `aqs stats`: object counts and bytes (logical vs
 * stored, maintained in the same transactions as the objects), puts/dedups/gets, and action cache
 * lookups/hits/misses per stage name (pending reads of this handle included). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store_internal.h"

void aqs_store_stats_free(aqs_store_stats *st) {
  if (!st) return;
  free(st->stages);
  st->stages = NULL;
  st->n_stages = 0;
}

/* Adds delta to the stage counter named by "stage:<name>:<kind>". */
static int add_stage_counter(aqs_store_stats *out, size_t *cap, const char *key, size_t key_len,
                             uint64_t delta) {
  if (key_len < 7 || memcmp(key, "stage:", 6) != 0) return 0;
  char name[AQS_NAME_MAX + 32];
  if (key_len >= sizeof name) return 0;
  memcpy(name, key + 6, key_len - 6);
  name[key_len - 6] = '\0';
  char *colon = strrchr(name, ':');
  if (!colon) return 0;
  *colon = '\0';
  const char *kind = colon + 1;
  size_t i = 0;
  while (i < out->n_stages && strcmp(out->stages[i].stage, name) != 0) i++;
  if (i == out->n_stages) {
    if (out->n_stages == *cap) {
      size_t ncap = *cap ? *cap * 2 : 8;
      aqs_stage_stats *p = realloc(out->stages, ncap * sizeof *p);
      if (!p) return -1;
      out->stages = p;
      *cap = ncap;
    }
    memset(&out->stages[i], 0, sizeof out->stages[i]);
    size_t n = strlen(name) < AQS_NAME_MAX - 1 ? strlen(name) : AQS_NAME_MAX - 1;
    memcpy(out->stages[i].stage, name, n);
    out->stages[i].stage[n] = '\0';
    out->n_stages++;
  }
  if (!strcmp(kind, "lookups")) out->stages[i].lookups += delta;
  else if (!strcmp(kind, "hits")) out->stages[i].hits += delta;
  else if (!strcmp(kind, "misses")) out->stages[i].misses += delta;
  return 0;
}

static int stage_cmp(const void *a, const void *b) {
  return strcmp(((const aqs_stage_stats *)a)->stage, ((const aqs_stage_stats *)b)->stage);
}

static uint64_t *field(aqs_store_stats *o, const char *name) {
  struct {
    const char *name;
    uint64_t *slot;
  } map[] = {{"objects", &o->objects},
             {"objects_inline", &o->objects_inline},
             {"objects_file_zstd", &o->objects_file_zstd},
             {"objects_file_raw", &o->objects_file_raw},
             {"manifests", &o->manifests},
             {"bytes_logical", &o->bytes_logical},
             {"bytes_stored", &o->bytes_stored},
             {"puts", &o->puts},
             {"dedups", &o->dedups},
             {"dedup_bytes", &o->dedup_bytes},
             {"gets", &o->gets},
             {"evictions", &o->evictions},
             {"corrupt_found", &o->corrupt_found}};
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (!strcmp(map[i].name, name)) return map[i].slot;
  return NULL;
}

aqs_status aqs_store_stats_get(aqs_store *s, aqs_store_stats *out, aqs_err *err) {
  memset(out, 0, sizeof *out);
  MDB_txn *txn = NULL;
  aqs_status st = store_read_begin(s, &txn, err);
  if (st != AQS_OK) return st;
  size_t cap = 0;
  MDB_cursor *cur = NULL;
  MDB_val k, v;
  int rc = mdb_cursor_open(txn, s->env->db_meta, &cur);
  if (rc == 0) rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  while (rc == 0) {
    uint64_t value = 0;
    if (v.mv_size == sizeof value) {
      memcpy(&value, v.mv_data, sizeof value);
      char name[AQS_NAME_MAX + 32];
      if (k.mv_size < sizeof name) {
        memcpy(name, k.mv_data, k.mv_size);
        name[k.mv_size] = '\0';
        uint64_t *slot = field(out, name);
        if (slot) *slot = value;
        else if (add_stage_counter(out, &cap, name, k.mv_size, value) != 0)
          st = aqs_errf(err, AQS_ERR_NOMEM, "stats: out of memory");
      }
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (cur) mdb_cursor_close(cur);
  MDB_stat ms;
  if (mdb_stat(txn, s->env->db_act, &ms) == 0) out->actions = ms.ms_entries;
  if (mdb_stat(txn, s->env->db_ref, &ms) == 0) out->refs = ms.ms_entries;
  if (mdb_stat(txn, s->env->db_statc, &ms) == 0) out->statcache_entries = ms.ms_entries;
  store_read_end(s, txn);
  /* This handle's reads not flushed yet. */
  pthread_mutex_lock(&s->pending_mutex);
  for (size_t i = 0; i < s->n_counters && st == AQS_OK; i++) {
    uint64_t *slot = field(out, s->counters[i].name);
    if (slot) *slot += s->counters[i].delta;
    else if (add_stage_counter(out, &cap, s->counters[i].name, strlen(s->counters[i].name),
                               s->counters[i].delta) != 0)
      st = aqs_errf(err, AQS_ERR_NOMEM, "stats: out of memory");
  }
  pthread_mutex_unlock(&s->pending_mutex);
  char data_path[4300];
  struct stat sb;
  snprintf(data_path, sizeof data_path, "%s/index/data.mdb", s->path);
  if (stat(data_path, &sb) == 0) out->index_bytes = (uint64_t)sb.st_size;
  if (st != AQS_OK) {
    aqs_store_stats_free(out);
    return st;
  }
  if (out->n_stages) qsort(out->stages, out->n_stages, sizeof *out->stages, stage_cmp);
  return AQS_OK;
}
