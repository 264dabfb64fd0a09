/* store/gc.c: garbage collection. Pins = everything reachable from refs through manifest
 * children. Unpinned objects go least recently used first until the stored bytes fit the limit;
 * evicting an object evicts the manifests listing it (the store stays closed under children),
 * and actions whose result went are dropped. Also removes orphan tmp/ and object files. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/journal.h"
#include "store/store_internal.h"

typedef struct gc_obj {
  aqs_object_info info;
  int pinned;
  int evicted;
} gc_obj;

typedef struct gc_plan {
  gc_obj *objs;     /* sorted by digest (LMDB order) */
  size_t n;
  size_t *victims;  /* indexes into objs, eviction order */
  size_t n_victims;
  uint64_t bytes_before;
} gc_plan;

static void plan_free(gc_plan *p) {
  free(p->objs);
  free(p->victims);
  memset(p, 0, sizeof *p);
}

static int digest_key_cmp(const void *key, const void *elem) {
  return aqs_digest_cmp(key, &((const gc_obj *)elem)->info.digest);
}

static gc_obj *find_obj(gc_plan *p, const aqs_digest *d) {
  return bsearch(d, p->objs, p->n, sizeof *p->objs, digest_key_cmp);
}

/* Marks d and everything below it pinned (iterative DFS over edges). */
static aqs_status pin_from(aqs_store *s, MDB_txn *txn, gc_plan *p, const aqs_digest *root,
                           aqs_err *err) {
  size_t cap = 64, top = 0;
  aqs_digest *stack = malloc(cap * sizeof *stack);
  if (!stack) return aqs_errf(err, AQS_ERR_NOMEM, "gc: out of memory");
  stack[top++] = *root;
  while (top) {
    aqs_digest d = stack[--top];
    gc_obj *o = find_obj(p, &d);
    if (!o || o->pinned) continue;
    o->pinned = 1;
    MDB_val k = {AQS_DIGEST_BYTES, d.bytes}, v;
    if (mdb_get(txn, s->env->db_edges, &k, &v) != 0) continue;
    size_t n = v.mv_size / sizeof(aqs_digest);
    if (top + n > cap) {
      while (top + n > cap) cap *= 2;
      aqs_digest *grown = realloc(stack, cap * sizeof *stack);
      if (!grown) {
        free(stack);
        return aqs_errf(err, AQS_ERR_NOMEM, "gc: out of memory");
      }
      stack = grown;
    }
    memcpy(stack + top, v.mv_data, n * sizeof(aqs_digest));
    top += n;
  }
  free(stack);
  return AQS_OK;
}

static int lru_cmp(const void *a, const void *b, void *plan) {
  const gc_plan *p = plan;
  const gc_obj *x = &p->objs[*(const size_t *)a], *y = &p->objs[*(const size_t *)b];
  if (x->info.atime_ns != y->info.atime_ns) return x->info.atime_ns < y->info.atime_ns ? -1 : 1;
  return aqs_digest_cmp(&x->info.digest, &y->info.digest);
}

/* Adds o and (transitively) every manifest listing it to the victims. */
static aqs_status evict_with_parents(aqs_store *s, MDB_txn *txn, gc_plan *p, size_t idx,
                                     uint64_t *stored, aqs_err *err) {
  size_t cap = 16, top = 0;
  size_t *stack = malloc(cap * sizeof *stack);
  if (!stack) return aqs_errf(err, AQS_ERR_NOMEM, "gc: out of memory");
  stack[top++] = idx;
  MDB_cursor *cur = NULL;
  int rc = mdb_cursor_open(txn, s->env->db_redges, &cur);
  if (rc != 0) {
    free(stack);
    return store_mdb_err(s, rc, "gc", err);
  }
  aqs_status st = AQS_OK;
  while (top && st == AQS_OK) {
    gc_obj *o = &p->objs[stack[--top]];
    if (o->evicted) continue;
    o->evicted = 1;
    p->victims[p->n_victims++] = (size_t)(o - p->objs);
    *stored -= o->info.stored_bytes < *stored ? o->info.stored_bytes : *stored;
    MDB_val k = {AQS_DIGEST_BYTES, o->info.digest.bytes}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
    while (rc == 0) {
      aqs_digest parent;
      memcpy(parent.bytes, v.mv_data, AQS_DIGEST_BYTES);
      gc_obj *po = find_obj(p, &parent);
      if (po && !po->evicted) {
        if (top == cap) {
          cap *= 2;
          size_t *grown = realloc(stack, cap * sizeof *stack);
          if (!grown) {
            st = aqs_errf(err, AQS_ERR_NOMEM, "gc: out of memory");
            break;
          }
          stack = grown;
        }
        stack[top++] = (size_t)(po - p->objs);
      }
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP);
    }
  }
  mdb_cursor_close(cur);
  free(stack);
  return st;
}

/* Plans the eviction inside txn (read or write). */
static aqs_status make_plan(aqs_store *s, MDB_txn *txn, uint64_t limit, int has_limit, gc_plan *p,
                            aqs_gc_report *r, aqs_err *err) {
  memset(p, 0, sizeof *p);
  MDB_stat ms;
  mdb_stat(txn, s->env->db_obj, &ms);
  size_t cap = ms.ms_entries + 1;
  p->objs = calloc(cap, sizeof *p->objs);
  p->victims = calloc(cap, sizeof *p->victims);
  if (!p->objs || !p->victims) return aqs_errf(err, AQS_ERR_NOMEM, "gc: out of memory");
  MDB_cursor *cur = NULL;
  MDB_val k, v, av;
  int rc = mdb_cursor_open(txn, s->env->db_obj, &cur);
  if (rc == 0) rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  while (rc == 0 && p->n < cap) {
    obj_rec rec;
    if (k.mv_size == AQS_DIGEST_BYTES && obj_rec_decode(&v, &rec) == 0) {
      gc_obj *o = &p->objs[p->n++];
      memcpy(o->info.digest.bytes, k.mv_data, AQS_DIGEST_BYTES);
      o->info.kind = (aqs_object_kind)rec.kind;
      o->info.manifest = !!(rec.flags & OBJ_FLAG_MANIFEST);
      o->info.size_bytes = rec.size_bytes;
      o->info.stored_bytes = rec.stored_bytes;
      o->info.created_ns = rec.created_ns;
      if (mdb_get(txn, s->env->db_atime, &k, &av) == 0 && av.mv_size == sizeof(int64_t))
        memcpy(&o->info.atime_ns, av.mv_data, sizeof(int64_t));
      p->bytes_before += rec.stored_bytes;
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (cur) mdb_cursor_close(cur);
  /* Pins. */
  aqs_status st = AQS_OK;
  rc = mdb_cursor_open(txn, s->env->db_ref, &cur);
  if (rc == 0) rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  while (rc == 0 && st == AQS_OK) {
    if (v.mv_size == AQS_DIGEST_BYTES) {
      aqs_digest d;
      memcpy(d.bytes, v.mv_data, AQS_DIGEST_BYTES);
      st = pin_from(s, txn, p, &d, err);
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (cur) mdb_cursor_close(cur);
  if (st != AQS_OK) return st;
  r->objects_before = p->n;
  r->bytes_before = p->bytes_before;
  size_t n_unpinned = 0;
  for (size_t i = 0; i < p->n; i++) {
    if (p->objs[i].pinned) {
      r->pinned_objects++;
      r->pinned_bytes += p->objs[i].info.stored_bytes;
    } else {
      p->victims[n_unpinned++] = i; /* candidates, sorted below */
    }
  }
  uint64_t stored = p->bytes_before;
  if (!has_limit || stored <= limit) {
    p->n_victims = 0;
    r->bytes_after = stored;
    return AQS_OK;
  }
  size_t *candidates = malloc((n_unpinned + 1) * sizeof *candidates);
  if (!candidates) return aqs_errf(err, AQS_ERR_NOMEM, "gc: out of memory");
  memcpy(candidates, p->victims, n_unpinned * sizeof *candidates);
  qsort_r(candidates, n_unpinned, sizeof *candidates, lru_cmp, p);
  p->n_victims = 0;
  for (size_t i = 0; i < n_unpinned && stored > limit && st == AQS_OK; i++)
    if (!p->objs[candidates[i]].evicted)
      st = evict_with_parents(s, txn, p, candidates[i], &stored, err);
  free(candidates);
  for (size_t i = 0; i < p->n_victims; i++) {
    r->evicted_objects++;
    r->evicted_bytes += p->objs[p->victims[i]].info.stored_bytes;
  }
  r->bytes_after = stored;
  return st;
}

/* Removes actions whose result object is gone. */
static aqs_status drop_dangling_actions(wtx *w, aqs_gc_report *r, aqs_err *err) {
  store_env *e = w->s->env;
  MDB_cursor *cur = NULL;
  int rc = mdb_cursor_open(w->txn, e->db_act, &cur);
  if (rc != 0) return store_mdb_err(w->s, rc, "gc", err);
  aqs_digest *dangling = NULL;
  size_t n = 0, cap = 0;
  aqs_status st = AQS_OK;
  MDB_val k, v;
  rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  while (rc == 0 && st == AQS_OK) {
    json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, NULL);
    aqs_digest result;
    const char *text = json_string_value(json_object_get(rec, "result"));
    int gone = !text || aqs_digest_parse(text, &result, NULL) != AQS_OK;
    if (!gone) {
      MDB_val ok = {AQS_DIGEST_BYTES, result.bytes}, ov;
      gone = mdb_get(w->txn, e->db_obj, &ok, &ov) != 0;
    }
    json_decref(rec);
    if (gone && k.mv_size == AQS_DIGEST_BYTES) {
      if (n == cap) {
        cap = cap ? cap * 2 : 16;
        aqs_digest *p = realloc(dangling, cap * sizeof *p);
        if (!p) st = aqs_errf(err, AQS_ERR_NOMEM, "gc: out of memory");
        else dangling = p;
      }
      if (st == AQS_OK) memcpy(dangling[n++].bytes, k.mv_data, AQS_DIGEST_BYTES);
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  mdb_cursor_close(cur);
  for (size_t i = 0; i < n && st == AQS_OK; i++)
    st = wdel(w, e->db_act, dangling[i].bytes, AQS_DIGEST_BYTES, NULL, 0, err);
  free(dangling);
  if (st != AQS_OK) return st;
  r->actions_removed += n;
  return wcounter_add(w, "actions", -(int64_t)n, err);
}

static int old_enough(const struct stat *sb, int64_t grace_s) {
  return (int64_t)(now_ns() / 1000000000) - (int64_t)sb->st_mtime >= grace_s;
}

/* Removes tmp/ leftovers and object files without a matching record, older than grace_s. */
static uint64_t remove_orphans(aqs_store *s, MDB_txn *txn, int64_t grace_s, int dry_run) {
  uint64_t removed = 0;
  char path[4800];
  struct stat sb;
  DIR *dir = opendir(s->tmp_dir);
  struct dirent *de;
  while (dir && (de = readdir(dir))) {
    if (de->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s", s->tmp_dir, de->d_name);
    if (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) && old_enough(&sb, grace_s)) {
      if (dry_run || unlink(path) == 0) removed++;
    }
  }
  if (dir) closedir(dir);
  DIR *top = opendir(s->objects_dir);
  while (top && (de = readdir(top))) {
    if (strlen(de->d_name) != 2 || !isxdigit((unsigned char)de->d_name[0]) ||
        !isxdigit((unsigned char)de->d_name[1]))
      continue; /* only the fan-out directories (never "." or "..") */
    char sub[4400];
    snprintf(sub, sizeof sub, "%s/%.2s", s->objects_dir, de->d_name);
    DIR *d = opendir(sub);
    struct dirent *fe;
    while (d && (fe = readdir(d))) {
      if (fe->d_name[0] == '.') continue;
      char hex[AQS_DIGEST_HEX_LEN + 8];
      snprintf(hex, sizeof hex, "%.2s%.62s", de->d_name, fe->d_name);
      size_t name_len = strlen(fe->d_name);
      int zst = name_len == 66 && !strcmp(fe->d_name + 62, ".zst");
      aqs_digest dg;
      int known = 0;
      if ((name_len == 62 || zst) && aqs_digest_parse(hex, &dg, NULL) == AQS_OK) {
        MDB_val k = {AQS_DIGEST_BYTES, dg.bytes}, v;
        obj_rec rec;
        known = mdb_get(txn, s->env->db_obj, &k, &v) == 0 && obj_rec_decode(&v, &rec) == 0 &&
                rec.kind == (zst ? AQS_OBJ_FILE_ZSTD : AQS_OBJ_FILE_RAW);
      }
      snprintf(path, sizeof path, "%s/%s", sub, fe->d_name);
      if (!known && lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) && old_enough(&sb, grace_s))
        if (dry_run || unlink(path) == 0) removed++;
    }
    if (d) closedir(d);
  }
  if (top) closedir(top);
  return removed;
}

typedef struct gc_ctx {
  uint64_t limit;
  int has_limit;
  int64_t grace_s;
  gc_plan plan;
  aqs_gc_report report;
  /* Files of evicted objects, unlinked after the eviction committed (unlink_body). */
  aqs_digest *doomed;
  uint8_t *doomed_kind;
  size_t n_doomed;
} gc_ctx;

static aqs_status gc_body(wtx *w, void *ctx_, aqs_err *err) {
  gc_ctx *c = ctx_;
  aqs_store *s = w->s;
  plan_free(&c->plan);
  memset(&c->report, 0, sizeof c->report);
  c->n_doomed = 0;
  aqs_status st = make_plan(s, w->txn, c->limit, c->has_limit, &c->plan, &c->report, err);
  if (st == AQS_OK && c->plan.n_victims) {
    free(c->doomed);
    free(c->doomed_kind);
    c->doomed = malloc(c->plan.n_victims * sizeof *c->doomed);
    c->doomed_kind = malloc(c->plan.n_victims);
    if (!c->doomed || !c->doomed_kind) st = aqs_errf(err, AQS_ERR_NOMEM, "gc: out of memory");
  }
  for (size_t i = 0; i < c->plan.n_victims && st == AQS_OK; i++) {
    gc_obj *o = &c->plan.objs[c->plan.victims[i]];
    MDB_val k = {AQS_DIGEST_BYTES, o->info.digest.bytes}, v;
    obj_rec rec;
    if (mdb_get(w->txn, s->env->db_obj, &k, &v) != 0 || obj_rec_decode(&v, &rec) != 0) continue;
    st = obj_index_remove(w, &o->info.digest, &rec, err);
    if (st == AQS_OK && rec.kind != AQS_OBJ_INLINE_ZSTD) {
      c->doomed[c->n_doomed] = o->info.digest;
      c->doomed_kind[c->n_doomed++] = rec.kind;
    }
  }
  if (st == AQS_OK && c->plan.n_victims)
    st = wcounter_add(w, "evictions", (int64_t)c->plan.n_victims, err);
  if (st == AQS_OK) st = drop_dangling_actions(w, &c->report, err);
  if (st == AQS_OK) c->report.orphan_files_removed = remove_orphans(s, w->txn, c->grace_s, 0);
  return st;
}

/* After the eviction committed: removes the evicted objects' files, under the writer lock and
 * only while no record names them again (a put of the same bytes since re-stored them), and
 * compacts the journal. A kill
 * between the two transactions leaves orphan files, never a record without its file; the next gc
 * removes them. */
static aqs_status unlink_body(wtx *w, void *ctx_, aqs_err *err) {
  gc_ctx *c = ctx_;
  for (size_t i = 0; i < c->n_doomed; i++) {
    MDB_val k = {AQS_DIGEST_BYTES, c->doomed[i].bytes}, v;
    if (mdb_get(w->txn, w->s->env->db_obj, &k, &v) == 0) continue;
    char path[4400];
    object_file_path(w->s, &c->doomed[i], c->doomed_kind[i], path, sizeof path);
    unlink(path);
  }
  /* The journal keeps only what the index holds now (evicted inline objects leave it). */
  return journal_compact(w, err);
}

aqs_status aqs_gc(aqs_store *s, const aqs_gc_opts *opts, aqs_gc_fn fn, void *user,
                  aqs_gc_report *report, aqs_err *err) {
  aqs_gc_opts o = {.size_limit_bytes = -1, .dry_run = 0, .orphan_grace_s = -1};
  if (opts) o = *opts;
  gc_ctx c = {0};
  c.grace_s = o.orphan_grace_s < 0 ? 3600 : o.orphan_grace_s;
  if (o.size_limit_bytes >= 0) {
    c.has_limit = 1;
    c.limit = (uint64_t)o.size_limit_bytes;
  } else if (s->cfg.size_limit_bytes > 0) {
    c.has_limit = 1;
    c.limit = s->cfg.size_limit_bytes;
  }
  aqs_status st = aqs_store_flush(s, err);
  if (st != AQS_OK) return st;
  if (o.dry_run) {
    MDB_txn *txn = NULL;
    st = store_read_begin(s, &txn, err);
    if (st != AQS_OK) return st;
    st = make_plan(s, txn, c.limit, c.has_limit, &c.plan, &c.report, err);
    if (st == AQS_OK) c.report.orphan_files_removed = remove_orphans(s, txn, c.grace_s, 1);
    store_read_end(s, txn);
  } else {
    st = store_write(s, gc_body, &c, err);
    if (st == AQS_OK) st = store_write(s, unlink_body, &c, err);
  }
  free(c.doomed);
  free(c.doomed_kind);
  if (st == AQS_OK && fn)
    for (size_t i = 0; i < c.plan.n_victims; i++) fn(&c.plan.objs[c.plan.victims[i]].info, user);
  if (st == AQS_OK && report) *report = c.report;
  plan_free(&c.plan);
  return st;
}
