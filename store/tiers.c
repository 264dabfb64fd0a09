/* store/tiers.c: secondary stores and the HTTP remote behind a primary store (tiers.h): the
 * read-through on a local miss (actions and objects), copying closures in children-first with
 * every byte re-hashed, the upload of new actions, and explicit push / pull of a ref's closure. */
#include "store/tiers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/remote_response.h"
#include "store/store_internal.h"

#define RECORD_MAX_BYTES (16u << 20)   /* action and ref records */
#define PARSE_MAX_BYTES (64u << 20)    /* downloads up to this size are checked for manifests */
#define PROBE_READ_MAX_BYTES (1u << 30) /* probe-mode reads straight from the remote */

/* A sorted set of digests (objects known to be on the remote, objects visited by a push). */
typedef struct digest_set {
  aqs_digest *items;
  size_t n, cap;
} digest_set;

static int set_find(const digest_set *set, const aqs_digest *d, size_t *pos) {
  size_t lo = 0, hi = set->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = aqs_digest_cmp(&set->items[mid], d);
    if (c == 0) {
      *pos = mid;
      return 1;
    }
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  *pos = lo;
  return 0;
}

/* Adds d; returns 1 if added, 0 if present, -1 when out of memory. */
static int set_add(digest_set *set, const aqs_digest *d) {
  size_t pos;
  if (set_find(set, d, &pos)) return 0;
  if (set->n == set->cap) {
    size_t cap = set->cap ? set->cap * 2 : 64;
    aqs_digest *p = realloc(set->items, cap * sizeof *p);
    if (!p) return -1;
    set->items = p;
    set->cap = cap;
  }
  memmove(&set->items[pos + 1], &set->items[pos], (set->n - pos) * sizeof *set->items);
  set->items[pos] = *d;
  set->n++;
  return 1;
}

typedef struct secondary {
  aqs_store *store;
  char label[AQS_SOURCE_MAX];  /* "secondary <path>" */
} secondary;

typedef struct store_tiers {
  secondary *secondaries;
  size_t n_secondaries;
  aqs_remote *remote;
  char remote_label[AQS_SOURCE_MAX];  /* "remote <url>" */
  int upload, probe;
  int remote_down;                    /* a transport failure during read-through: skip the remote */
  aqs_tier_warn_fn warn;
  void *warn_user;
  pthread_mutex_t lock;               /* guards on_remote and remote_down */
  digest_set on_remote;               /* objects known to be on the remote (HEAD or PUT said so) */
} store_tiers;

static void default_warn(const char *msg, void *user) {
  (void)user;
  fprintf(stderr, "aqs: warning: %s\n", msg);
}

static store_tiers *tiers_of(aqs_store *s) {
  if (!s->tiers) {
    store_tiers *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->warn = default_warn;
    pthread_mutex_init(&t->lock, NULL);
    s->tiers = t;
  }
  return s->tiers;
}

static void warnf(store_tiers *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(store_tiers *t, const char *fmt, ...) {
  char msg[AQS_ERR_MSG_MAX + 256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  t->warn(msg, t->warn_user);
}

static int probing(const aqs_store *s) {
  return s->tiers->probe || (s->flags & AQS_STORE_RDONLY);
}

void tiers_free(aqs_store *s) {
  store_tiers *t = s->tiers;
  if (!t) return;
  for (size_t i = 0; i < t->n_secondaries; i++) aqs_store_close(t->secondaries[i].store);
  free(t->secondaries);
  aqs_remote_close(t->remote);
  free(t->on_remote.items);
  pthread_mutex_destroy(&t->lock);
  free(t);
  s->tiers = NULL;
}

/* ------------------------------------------------------------------ attaching */

aqs_status aqs_store_add_secondary(aqs_store *s, const char *path, aqs_err *err) {
  char real[4096];
  if (!realpath(path, real))
    return aqs_errf(err, AQS_ERR_NOT_FOUND, "secondary store %s not found (%s)", path, strerror(errno));
  if (strcmp(real, s->path) == 0)
    return aqs_errf(err, AQS_ERR_INVALID, "secondary store %s is the primary store itself", path);
  aqs_store *sec = NULL;
  aqs_err open_err = {0};
  aqs_status st = aqs_store_open(real, AQS_STORE_RDONLY, &sec, &open_err);
  if (st != AQS_OK)
    return aqs_errf(err, st, "secondary store %s: %s", path, open_err.msg);
  store_tiers *t = tiers_of(s);
  secondary *grown = t ? realloc(t->secondaries, (t->n_secondaries + 1) * sizeof *grown) : NULL;
  if (!grown) {
    aqs_store_close(sec);
    return aqs_errf(err, AQS_ERR_NOMEM, "out of memory");
  }
  t->secondaries = grown;
  secondary *n = &t->secondaries[t->n_secondaries++];
  n->store = sec;
  snprintf(n->label, sizeof n->label, "secondary %s", path);
  return AQS_OK;
}

aqs_status aqs_store_set_remote(aqs_store *s, aqs_remote *remote, int upload, aqs_err *err) {
  store_tiers *t = tiers_of(s);
  if (!t || t->remote) {
    aqs_remote_close(remote);
    return t ? aqs_errf(err, AQS_ERR_INVALID, "a remote is already attached to store %s", s->path)
             : aqs_errf(err, AQS_ERR_NOMEM, "out of memory");
  }
  t->remote = remote;
  t->upload = upload;
  snprintf(t->remote_label, sizeof t->remote_label, "remote %s", aqs_remote_url(remote));
  return AQS_OK;
}

aqs_remote *aqs_store_remote(aqs_store *s) { return s->tiers ? s->tiers->remote : NULL; }

void aqs_store_set_tier_probe(aqs_store *s, int probe) {
  store_tiers *t = tiers_of(s);
  if (t) t->probe = probe;
}

void aqs_store_set_tier_warn(aqs_store *s, aqs_tier_warn_fn fn, void *user) {
  store_tiers *t = tiers_of(s);
  if (!t) return;
  t->warn = fn ? fn : default_warn;
  t->warn_user = user;
}

/* ------------------------------------------------------------------ copying objects in */

static aqs_status put_checked(aqs_store *s, const aqs_digest *d, const void *data, size_t len,
                              aqs_compress compress, int manifest, aqs_err *err) {
  aqs_put_opts opts = {.compress = compress, .manifest = manifest};
  aqs_put_info info;
  aqs_status st = aqs_put_mem(s, data, len, &opts, &info, err);
  if (st == AQS_OK && !aqs_digest_eq(&info.digest, d)) {
    char text[AQS_DIGEST_STR_SIZE];
    return aqs_errf(err, AQS_ERR_CORRUPT, "copy of %s hashed differently", aqs_digest_str(d, text));
  }
  return st;
}

static void count_moved(aqs_transfer_stats *stats, uint64_t bytes) {
  if (!stats) return;
  stats->objects_moved++;
  stats->bytes_moved += bytes;
  if (stats->on_object) stats->on_object(bytes, stats->on_object_user);
}

/* Copies d and its closure from a secondary (children first). */
static aqs_status copy_from_secondary(aqs_store *s, aqs_store *sec, const aqs_digest *d,
                                      aqs_transfer_stats *stats, aqs_err *err) {
  if (aqs_object_exists(s, d)) return AQS_OK;
  aqs_object_info info;
  aqs_status st = aqs_object_stat(sec, d, &info, err);
  if (st != AQS_OK) return st;
  if (info.manifest) {
    aqs_digest *children = NULL;
    size_t n = 0;
    st = aqs_object_children(sec, d, &children, &n, err);
    for (size_t i = 0; st == AQS_OK && i < n; i++)
      st = copy_from_secondary(s, sec, &children[i], stats, err);
    free(children);
    if (st != AQS_OK) return st;
  }
  aqs_view view;
  st = aqs_object_view(sec, d, 1, &view, err);
  if (st != AQS_OK) return st;
  st = put_checked(s, d, view.data, view.size,
                   info.kind == AQS_OBJ_FILE_RAW ? AQS_COMPRESS_RAW : AQS_COMPRESS_ZSTD, info.manifest, err);
  aqs_view_release(&view);
  if (st == AQS_OK) count_moved(stats, info.size_bytes);
  return st;
}

static void mark_remote_down(store_tiers *t, const aqs_err *e) {
  pthread_mutex_lock(&t->lock);
  int first = !t->remote_down;
  t->remote_down = 1;
  pthread_mutex_unlock(&t->lock);
  if (first) warnf(t, "%s; not using the remote for the rest of this command", e->msg);
}

static int remote_usable(store_tiers *t) {
  pthread_mutex_lock(&t->lock);
  int ok = t->remote && !t->remote_down;
  pthread_mutex_unlock(&t->lock);
  return ok;
}

static void remember_on_remote(store_tiers *t, const aqs_digest *d) {
  pthread_mutex_lock(&t->lock);
  set_add(&t->on_remote, d); /* out of memory only costs a later HEAD */
  pthread_mutex_unlock(&t->lock);
}

/* Reads a whole (small) file into memory. */
static aqs_status slurp_fd(int fd, uint64_t size, void **out, aqs_err *err) {
  *out = malloc(size ? (size_t)size : 1);
  if (!*out) return aqs_errf(err, AQS_ERR_NOMEM, "out of memory");
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = pread(fd, (char *)*out + done, (size_t)(size - done), (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      free(*out);
      *out = NULL;
      return aqs_errno(err, AQS_ERR_IO, n < 0 ? errno : EIO, "reading a downloaded object");
    }
    done += (uint64_t)n;
  }
  return AQS_OK;
}

/* Downloads d (verified by the client) into a tmp file, then its children if it is a manifest,
 * then puts it: objects larger than the inline limit are stored raw (linkable). */
static aqs_status copy_from_remote(aqs_store *s, aqs_remote *r, const aqs_digest *d,
                                   aqs_transfer_stats *stats, int depth, aqs_err *err) {
  if (stats) stats->objects++;
  if (aqs_object_exists(s, d)) return AQS_OK;
  if (depth > 64) return aqs_errf(err, AQS_ERR_CORRUPT, "remote manifests nest more than 64 deep");
  char tmp[4400];
  int fd = store_tmpfile(s, tmp, sizeof tmp, err);
  if (fd < 0) return AQS_ERR_IO;
  uint64_t size = 0;
  aqs_status st = aqs_remote_cas_get_fd(r, d, fd, &size, err);
  aqs_compress compress = size > s->cfg.inline_max_bytes ? AQS_COMPRESS_RAW : AQS_COMPRESS_ZSTD;
  if (st == AQS_OK && size <= PARSE_MAX_BYTES) {
    void *data = NULL;
    st = slurp_fd(fd, size, &data, err);
    aqs_digest *children = NULL;
    size_t n = 0;
    int manifest = st == AQS_OK ? aqs_remote_manifest_children(data, (size_t)size, &children, &n) : 0;
    if (manifest < 0) st = aqs_errf(err, AQS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; st == AQS_OK && i < n; i++)
      st = copy_from_remote(s, r, &children[i], stats, depth + 1, err);
    free(children);
    if (st == AQS_OK) st = put_checked(s, d, data, (size_t)size, compress, manifest == 1, err);
    free(data);
  } else if (st == AQS_OK) {
    aqs_put_opts opts = {.compress = AQS_COMPRESS_RAW};
    aqs_put_info info;
    st = aqs_put_fd(s, fd, 0, size, "a downloaded object", &opts, &info, err);
    if (st == AQS_OK && !aqs_digest_eq(&info.digest, d))
      st = aqs_errf(err, AQS_ERR_CORRUPT, "a downloaded object changed on disk before it was stored");
  }
  close(fd);
  unlink(tmp);
  if (st == AQS_OK) count_moved(stats, size);
  return st;
}

aqs_status tiers_fetch_object(aqs_store *s, const aqs_digest *d, aqs_err *err) {
  store_tiers *t = s->tiers;
  if (probing(s)) return AQS_ERR_NOT_FOUND;
  for (size_t i = 0; i < t->n_secondaries; i++) {
    if (!aqs_object_exists(t->secondaries[i].store, d)) continue;
    aqs_status st = copy_from_secondary(s, t->secondaries[i].store, d, NULL, err);
    if (st != AQS_OK) aqs_err_prefix(err, "copying from %s", t->secondaries[i].label);
    return st;
  }
  if (!remote_usable(t)) return AQS_ERR_NOT_FOUND;
  aqs_err e = {0};
  aqs_status st = copy_from_remote(s, t->remote, d, NULL, 0, &e);
  if (st == AQS_ERR_NOT_FOUND) return st;
  if (st == AQS_ERR_IO) mark_remote_down(t, &e);
  if (st != AQS_OK && err) *err = e;
  return st;
}

/* Guards against a fetch that succeeded but whose object vanished before the re-read (a concurrent
 * gc): the re-read then reports the miss instead of fetching again. */
static _Thread_local int in_tier_read;

aqs_status tiers_get_mem(aqs_store *s, const aqs_digest *d, void **data, size_t *size, aqs_err *err) {
  store_tiers *t = s->tiers;
  if (in_tier_read) return AQS_ERR_NOT_FOUND;
  if (!probing(s)) {
    aqs_status st = tiers_fetch_object(s, d, err);
    if (st != AQS_OK) return st;
    in_tier_read = 1;
    st = aqs_get_mem(s, d, data, size, err);
    in_tier_read = 0;
    return st;
  }
  for (size_t i = 0; i < t->n_secondaries; i++)
    if (aqs_object_exists(t->secondaries[i].store, d))
      return aqs_get_mem(t->secondaries[i].store, d, data, size, err);
  if (!remote_usable(t)) return AQS_ERR_NOT_FOUND;
  aqs_err e = {0};
  aqs_status st = aqs_remote_cas_get_mem(t->remote, d, PROBE_READ_MAX_BYTES, data, size, &e);
  if (st == AQS_ERR_IO) mark_remote_down(t, &e);
  if (st != AQS_OK && st != AQS_ERR_NOT_FOUND && err) *err = e;
  return st;
}

/* ------------------------------------------------------------------ actions */

/* aqs_remote_check_fn adapters: an action record must match its key, a ref record its name. */
static aqs_status check_action(const void *body, size_t len, void *user, aqs_err *err) {
  return aqs_remote_action_check(user, body, len, NULL, err);
}

static aqs_status check_ref(const void *body, size_t len, void *user, aqs_err *err) {
  return aqs_remote_ref_check(user, body, len, NULL, err);
}

static aqs_status hit_info(const aqs_digest *key, const char *record, const char *label,
                           aqs_action_info *info) {
  if (!info) return AQS_OK;
  if (action_record_decode(key, record, strlen(record), info) != 0) return AQS_ERR_CORRUPT;
  snprintf(info->source, sizeof info->source, "%s", label);
  return AQS_OK;
}

static aqs_status lookup_secondary(aqs_store *s, secondary *sec, const aqs_digest *key,
                                   aqs_action_info *info) {
  char *record = NULL;
  if (action_record_get(sec->store, key, &record, NULL) != AQS_OK) return AQS_ERR_NOT_FOUND;
  aqs_action_info found;
  aqs_status st = action_record_decode(key, record, strlen(record), &found) == 0 ? AQS_OK : AQS_ERR_CORRUPT;
  if (st == AQS_OK && !aqs_object_exists(sec->store, &found.result)) st = AQS_ERR_NOT_FOUND;
  aqs_err e = {0};
  if (st == AQS_OK && !probing(s)) {
    st = copy_from_secondary(s, sec->store, &found.result, NULL, &e);
    if (st == AQS_OK) st = action_record_put(s, key, record, &e);
    if (st != AQS_OK) warnf(s->tiers, "%s: %s", sec->label, e.msg);
  }
  if (st == AQS_OK) st = hit_info(key, record, sec->label, info);
  aqs_action_info_free(&found);
  free(record);
  return st;
}

static aqs_status lookup_remote(aqs_store *s, const aqs_digest *key, aqs_action_info *info) {
  store_tiers *t = s->tiers;
  char *body = NULL;
  size_t len = 0;
  aqs_err e = {0};
  aqs_digest result;
  aqs_status st = aqs_remote_ac_get(t->remote, key, RECORD_MAX_BYTES, check_action, (void *)key, &body, &len, &e);
  if (st == AQS_OK) st = aqs_remote_action_check(key, body, len, &result, &e);
  if (st == AQS_OK && probing(s)) {
    int present = 0;
    st = aqs_remote_cas_has(t->remote, &result, &present, &e);
    if (st == AQS_OK && !present) st = AQS_ERR_NOT_FOUND;
  } else if (st == AQS_OK) {
    st = copy_from_remote(s, t->remote, &result, NULL, 0, &e);
    if (st == AQS_OK) st = action_record_put(s, key, body, &e);
  }
  if (st == AQS_OK) st = hit_info(key, body, t->remote_label, info);
  free(body);
  if (st == AQS_ERR_IO) mark_remote_down(t, &e);
  else if (st != AQS_OK && st != AQS_ERR_NOT_FOUND) warnf(t, "%s (ignored: computing locally)", e.msg);
  return st;
}

aqs_status tiers_action_lookup(aqs_store *s, const aqs_digest *key, aqs_action_info *info) {
  store_tiers *t = s->tiers;
  for (size_t i = 0; i < t->n_secondaries; i++)
    if (lookup_secondary(s, &t->secondaries[i], key, info) == AQS_OK) return AQS_OK;
  if (!remote_usable(t)) return AQS_ERR_NOT_FOUND;
  return lookup_remote(s, key, info);
}

aqs_status aqs_tiers_action_source(aqs_store *s, const aqs_digest *key, char *source, size_t cap,
                                   aqs_err *err) {
  char *record = NULL;
  aqs_status st = action_record_get(s, key, &record, err);
  free(record);
  if (cap) source[0] = '\0';
  if (st != AQS_ERR_NOT_FOUND || !s->tiers) return st;
  int was_probe = s->tiers->probe;
  s->tiers->probe = 1;
  aqs_action_info info;
  st = tiers_action_lookup(s, key, &info);
  s->tiers->probe = was_probe;
  if (st != AQS_OK) {
    char hex[AQS_DIGEST_STR_SIZE];
    return aqs_errf(err, AQS_ERR_NOT_FOUND, "no cached action %s in any tier", aqs_digest_str(key, hex));
  }
  snprintf(source, cap, "%s", info.source);
  aqs_action_info_free(&info);
  return AQS_OK;
}

/* ------------------------------------------------------------------ uploading */

/* Sends d's closure (children first) unless the remote has it; visited avoids repeats. */
static aqs_status push_object(aqs_store *s, const aqs_digest *d, digest_set *visited,
                              aqs_transfer_stats *stats, aqs_err *err) {
  store_tiers *t = s->tiers;
  int added = set_add(visited, d);
  if (added < 0) return aqs_errf(err, AQS_ERR_NOMEM, "out of memory");
  if (added == 0) return AQS_OK;
  if (stats) stats->objects++;
  aqs_digest *children = NULL;
  size_t n = 0;
  aqs_status st = aqs_object_children(s, d, &children, &n, err);
  for (size_t i = 0; st == AQS_OK && i < n; i++) st = push_object(s, &children[i], visited, stats, err);
  free(children);
  if (st != AQS_OK) return st;
  pthread_mutex_lock(&t->lock);
  size_t pos;
  int known = set_find(&t->on_remote, d, &pos);
  pthread_mutex_unlock(&t->lock);
  if (known) return AQS_OK;
  int present = 0;
  st = aqs_remote_cas_has(t->remote, d, &present, err);
  if (st == AQS_OK && !present) {
    aqs_view view;
    st = aqs_object_view(s, d, 1, &view, err); /* verified: a damaged object is never sent */
    if (st == AQS_OK) {
      st = aqs_remote_cas_put(t->remote, d, view.data, view.size, err);
      if (st == AQS_OK) count_moved(stats, view.size);
      aqs_view_release(&view);
    }
  }
  if (st == AQS_OK) remember_on_remote(t, d);
  return st;
}

static aqs_status push_action(aqs_store *s, const aqs_digest *key, aqs_err *err) {
  char *record = NULL;
  aqs_status st = action_record_get(s, key, &record, err);
  if (st == AQS_OK) st = aqs_remote_ac_put(s->tiers->remote, key, record, strlen(record), err);
  free(record);
  return st;
}

void tiers_after_action_put(aqs_store *s, const aqs_digest *key, const aqs_digest *result,
                            const char *record) {
  store_tiers *t = s->tiers;
  if (!t->upload || probing(s) || !remote_usable(t)) return;
  digest_set visited = {0};
  aqs_err e = {0};
  aqs_status st = push_object(s, result, &visited, NULL, &e);
  if (st == AQS_OK) st = aqs_remote_ac_put(t->remote, key, record, strlen(record), &e);
  free(visited.items);
  if (st == AQS_ERR_IO) mark_remote_down(t, &e);
  else if (st != AQS_OK) warnf(t, "uploading to %s: %s", t->remote_label, e.msg);
}

/* ------------------------------------------------------------------ push / pull */

typedef struct reach_ctx {
  const digest_set *closure;
  digest_set keys;
  int oom;
} reach_ctx;

static int collect_reaching(const aqs_action_info *info, void *user) {
  reach_ctx *c = user;
  size_t pos;
  if (set_find(c->closure, &info->result, &pos) && set_add(&c->keys, &info->key) < 0) c->oom = 1;
  return c->oom;
}

static aqs_status put_ref_record(aqs_remote *r, const char *name, const char *ref, const aqs_digest *root,
                                 const digest_set *actions, aqs_err *err) {
  char *body = aqs_remote_ref_encode(name, ref, root, actions->items, actions->n);
  if (!body) return aqs_errf(err, AQS_ERR_NOMEM, "out of memory");
  aqs_digest key;
  aqs_remote_ref_key(name, &key);
  aqs_status st = aqs_remote_ac_put(r, &key, body, strlen(body), err);
  free(body);
  return st;
}

aqs_status aqs_tiers_push(aqs_store *s, const char *ref, const char *alias, const aqs_digest *root,
                          aqs_transfer_stats *stats, aqs_err *err) {
  if (!s->tiers || !s->tiers->remote)
    return aqs_errf(err, AQS_ERR_UNSUPPORTED, "no remote configured (set [remote] url in .aqstore)");
  digest_set visited = {0};
  reach_ctx reach = {.closure = &visited};
  aqs_status st = push_object(s, root, &visited, stats, err);
  if (st == AQS_OK) st = aqs_action_foreach(s, NULL, collect_reaching, &reach, err);
  if (st == AQS_OK && reach.oom) st = aqs_errf(err, AQS_ERR_NOMEM, "out of memory");
  for (size_t i = 0; st == AQS_OK && i < reach.keys.n; i++) {
    st = push_action(s, &reach.keys.items[i], err);
    if (st == AQS_OK && stats) stats->actions_moved++;
  }
  /* The ref records go last: a pull never finds a ref whose objects are not there yet. */
  if (st == AQS_OK && ref) st = put_ref_record(s->tiers->remote, ref, ref, root, &reach.keys, err);
  if (st == AQS_OK && ref && alias) st = put_ref_record(s->tiers->remote, alias, ref, root, &reach.keys, err);
  if (st == AQS_OK && ref && stats) stats->refs_moved++;
  free(visited.items);
  free(reach.keys.items);
  return st;
}

/* Fetches and stores one listed action record; a record the remote no longer has is skipped
 * with a warning (the objects are what a checkout needs). */
static aqs_status pull_action(aqs_store *s, const aqs_digest *key, aqs_transfer_stats *stats, aqs_err *err) {
  store_tiers *t = s->tiers;
  char *body = NULL;
  size_t len = 0;
  aqs_digest result;
  aqs_status st = aqs_remote_ac_get(t->remote, key, RECORD_MAX_BYTES, check_action, (void *)key, &body, &len, err);
  if (st == AQS_ERR_NOT_FOUND) {
    free(body);
    warnf(t, "%s (skipped: that stage will be recomputed if needed)", err->msg);
    return AQS_OK;
  }
  if (st == AQS_OK) st = aqs_remote_action_check(key, body, len, &result, err);
  if (st == AQS_OK) st = copy_from_remote(s, t->remote, &result, stats, 0, err);
  if (st == AQS_OK) st = action_record_put(s, key, body, err);
  if (st == AQS_OK && stats) stats->actions_moved++;
  free(body);
  return st;
}

aqs_status aqs_tiers_pull(aqs_store *s, const char *name, char *ref_out, aqs_digest *target_out,
                          aqs_transfer_stats *stats, aqs_err *err) {
  if (!s->tiers || !s->tiers->remote)
    return aqs_errf(err, AQS_ERR_UNSUPPORTED, "no remote configured (set [remote] url in .aqstore)");
  store_tiers *t = s->tiers;
  aqs_digest key;
  size_t len = 0;
  char *body = NULL;
  aqs_remote_ref rec = {0};
  aqs_remote_ref_key(name, &key);
  aqs_status st = aqs_remote_ac_get(t->remote, &key, RECORD_MAX_BYTES, check_ref, (void *)name, &body, &len, err);
  if (st == AQS_ERR_NOT_FOUND)
    st = aqs_errf(err, AQS_ERR_NOT_FOUND, "no ref %s in remote %s (push it first)", name, aqs_remote_url(t->remote));
  if (st == AQS_OK) st = aqs_remote_ref_check(name, body, len, &rec, err);
  free(body);
  if (st == AQS_OK) st = copy_from_remote(s, t->remote, &rec.target, stats, 0, err);
  for (size_t i = 0; st == AQS_OK && i < rec.n_actions; i++) st = pull_action(s, &rec.actions[i], stats, err);
  if (st == AQS_OK) {
    char msg[AQS_SOURCE_MAX + 8];
    snprintf(msg, sizeof msg, "pull %s", aqs_remote_url(t->remote));
    aqs_digest current;
    if (aqs_ref_get(s, rec.ref, &current, NULL) != AQS_OK || !aqs_digest_eq(&current, &rec.target)) {
      st = aqs_ref_set(s, rec.ref, &rec.target, msg, err);
      if (st == AQS_OK && stats) stats->refs_moved++;
    }
  }
  if (st == AQS_OK && target_out) *target_out = rec.target;
  if (st == AQS_OK && ref_out) snprintf(ref_out, AQS_REF_NAME_MAX + 1, "%s", rec.ref);
  aqs_remote_ref_free(&rec);
  return st;
}
