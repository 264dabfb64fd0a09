/* store/store_open.c: creating (init) and opening stores: directory layout, group sharing,
 * the network-filesystem refusal, the per-process registry of LMDB environments, stale reader
 * cleanup, and flushing of pending access times and counters at close. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "store/index_check.h"
#include "store/store_internal.h"

#define FS_NFS 0x6969L
#define FS_CIFS 0xFF534D42L
#define FS_SMB 0x517BL
#define FS_SMB2 0xFE534D42L

static pthread_mutex_t registry_mutex = PTHREAD_MUTEX_INITIALIZER;
static store_env *registry[32];

aqs_status store_check_fs(const char *dir, aqs_err *err) {
  long magic = 0;
  const char *injected = getenv("AQS_TEST_FSTYPE");
  if (injected && *injected) {
    if (!strcasecmp(injected, "nfs")) magic = FS_NFS;
    else if (!strcasecmp(injected, "cifs")) magic = FS_CIFS;
    else if (!strcasecmp(injected, "smb")) magic = FS_SMB;
    else if (!strcasecmp(injected, "smb2")) magic = FS_SMB2;
  } else {
    struct statfs sfs;
    if (statfs(dir, &sfs) != 0) return aqs_errno(err, AQS_ERR_IO, errno, "statfs %s", dir);
    magic = (long)(unsigned)sfs.f_type;
  }
  const char *fs = NULL;
  if (magic == FS_NFS) fs = "NFS";
  else if (magic == FS_CIFS) fs = "CIFS";
  else if (magic == FS_SMB || magic == FS_SMB2) fs = "SMB";
  if (!fs) return AQS_OK;
  return aqs_errf(err, AQS_ERR_UNSUPPORTED,
                  "store %s is on a network filesystem (%s): its LMDB index cannot be shared "
                  "safely over the network. Keep the store on a local disk and share results "
                  "through the remote cache tier ([remote] in .aqstore, aqs push / aqs pull)",
                  dir, fs);
}

static void env_release(store_env *e) {
  pthread_mutex_lock(&registry_mutex);
  int last = --e->refcount == 0;
  if (last)
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
      if (registry[i] == e) registry[i] = NULL;
  pthread_mutex_unlock(&registry_mutex);
  if (!last) return;
  mdb_env_close(e->env);
  pthread_rwlock_destroy(&e->resize_lock);
  pthread_mutex_destroy(&e->write_mutex);
  free(e);
}

static aqs_status open_dbis(aqs_store *s, store_env *e, aqs_err *err) {
  MDB_txn *txn = NULL;
  unsigned create = e->rdonly ? 0 : MDB_CREATE;
  int rc = mdb_txn_begin(e->env, NULL, e->rdonly ? MDB_RDONLY : 0, &txn);
  if (rc != 0) return store_mdb_err(s, rc, "opening", err);
  struct {
    const char *name;
    unsigned flags;
    MDB_dbi *dbi;
  } dbs[] = {
      {"obj", 0, &e->db_obj},         {"atime", 0, &e->db_atime},
      {"edges", 0, &e->db_edges},     {"redges", MDB_DUPSORT | MDB_DUPFIXED, &e->db_redges},
      {"act", 0, &e->db_act},         {"ref", 0, &e->db_ref},
      {"reflog", 0, &e->db_reflog},   {"statc", 0, &e->db_statc},
      {"meta", 0, &e->db_meta},       {"lease", 0, &e->db_lease},
  };
  for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
    rc = mdb_dbi_open(txn, dbs[i].name, dbs[i].flags | create, dbs[i].dbi);
    if (rc == MDB_NOTFOUND && dbs[i].dbi == &e->db_lease) { /* older store, read-only open */
      e->db_lease = 0;
      continue;
    }
    if (rc != 0) {
      mdb_txn_abort(txn);
      return store_mdb_err(s, rc, "opening a database", err);
    }
  }
  /* Commit even read-only: aborting the transaction that opened the databases would close their
   * handles (mdb_dbi_open in a read-only txn keeps them only when the txn commits). */
  rc = mdb_txn_commit(txn);
  if (rc != 0) return store_mdb_err(s, rc, "opening", err);
  return AQS_OK;
}

/* 1 when objects/ holds at least one object file or the journal holds records: a store that is
 * not empty, whatever its index says. */
static int stop_at_first(const char *path, const char *name, const aqs_digest *d, int zstd,
                         void *user) {
  (void)path, (void)name, (void)d, (void)zstd;
  *(int *)user = 1;
  return 1;
}

static int store_has_content(const aqs_store *s) {
  struct stat sb;
  if (stat(s->journal_path, &sb) == 0 && sb.st_size > 0) return 1;
  int found = 0;
  object_files_foreach(s, stop_at_first, &found);
  return found;
}

aqs_status store_index_damaged(const aqs_store *s, const char *why, aqs_err *err) {
  return aqs_errf(err, AQS_ERR_CORRUPT,
                  "store index %s/index/data.mdb is damaged (%s); run `aqs verify --reindex` to "
                  "rebuild it from objects/ and the journal",
                  s->path, why);
}

/* Before LMDB sees data.mdb: a lost index (missing or empty file while the store holds objects)
 * and damaged meta pages or a truncated file are errors. *fd_out is the file opened for the
 * snapshot walk (-1 when the file does not exist yet: a new store). */
static aqs_status precheck_index(aqs_store *s, const char *index_path, int *fd_out, aqs_err *err) {
  char data_path[4300], why[256];
  snprintf(data_path, sizeof data_path, "%s/data.mdb", index_path);
  *fd_out = -1;
  int fd = open(data_path, O_RDONLY | O_CLOEXEC);
  struct stat sb;
  if (fd < 0 && errno != ENOENT) return aqs_errno(err, AQS_ERR_IO, errno, "opening %s", data_path);
  if (fd < 0 || (fstat(fd, &sb) == 0 && sb.st_size == 0)) {
    if (fd >= 0) close(fd);
    if ((s->flags & STORE_FRESH_INDEX) || !store_has_content(s)) return AQS_OK;
    return aqs_errf(err, AQS_ERR_CORRUPT,
                    "store index %s is %s but objects/ holds objects: the index was lost; run "
                    "`aqs verify --reindex` to rebuild it from objects/ and the journal",
                    data_path, fd < 0 ? "missing" : "empty");
  }
  if (aqs_index_check_metas(fd, NULL, why, sizeof why) != 0) {
    close(fd);
    return store_index_damaged(s, why, err);
  }
  *fd_out = fd;
  return AQS_OK;
}

/* Walks the current snapshot (held by a read transaction so its pages stay put). */
static aqs_status check_snapshot(aqs_store *s, store_env *e, int fd, aqs_err *err) {
  char why[256];
  for (int attempt = 0; attempt < 20; attempt++) {
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn);
    if (rc == MDB_MAP_RESIZED) {
      mdb_env_set_mapsize(e->env, 0);
      continue;
    }
    if (rc != 0) return store_mdb_err(s, rc, "starting a read", err);
    int res = aqs_index_check_snapshot(fd, (uint64_t)mdb_txn_id(txn), why, sizeof why);
    mdb_txn_abort(txn);
    if (res == 0) return AQS_OK;
    if (res < 0) return store_index_damaged(s, why, err);
  }
  return aqs_errf(err, AQS_ERR_BUSY, "store index %s/index changes too fast to check", s->path);
}

/* Read-only opens of a store whose lock file cannot be written (another user's store, a
 * read-only mount) run without LMDB's lock file: nothing is written at all. */
static int lock_writable(const char *index_path) {
  char lock[4300];
  snprintf(lock, sizeof lock, "%s/lock.mdb", index_path);
  if (access(lock, F_OK) == 0) return access(lock, W_OK) == 0;
  return access(index_path, W_OK) == 0;
}

/* Finds this process's environment for index_path or opens one. */
static aqs_status env_acquire(aqs_store *s, const char *index_path, aqs_err *err) {
  pthread_mutex_lock(&registry_mutex);
  pid_t pid = getpid();
  size_t free_slot = SIZE_MAX;
  for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++) {
    store_env *e = registry[i];
    if (!e) {
      if (free_slot == SIZE_MAX) free_slot = i;
      continue;
    }
    if (e->pid != pid) { /* inherited across fork: never touch the parent's environment */
      registry[i] = NULL;
      if (free_slot == SIZE_MAX) free_slot = i;
      continue;
    }
    if (!strcmp(e->index_path, index_path) && e->rdonly == !!(s->flags & AQS_STORE_RDONLY)) {
      e->refcount++;
      s->env = e;
      pthread_mutex_unlock(&registry_mutex);
      return AQS_OK;
    }
  }
  aqs_status st = AQS_OK;
  store_env *e = calloc(1, sizeof *e);
  if (!e) {
    pthread_mutex_unlock(&registry_mutex);
    return aqs_errf(err, AQS_ERR_NOMEM, "opening store %s: out of memory", s->path);
  }
  snprintf(e->index_path, sizeof e->index_path, "%s", index_path);
  e->pid = pid;
  e->refcount = 1;
  e->rdonly = !!(s->flags & AQS_STORE_RDONLY);
  pthread_rwlock_init(&e->resize_lock, NULL);
  pthread_mutex_init(&e->write_mutex, NULL);
  int data_fd = -1;
  st = precheck_index(s, index_path, &data_fd, err);
  if (st != AQS_OK) {
    pthread_rwlock_destroy(&e->resize_lock);
    pthread_mutex_destroy(&e->write_mutex);
    free(e);
    pthread_mutex_unlock(&registry_mutex);
    return st;
  }
  int rc = mdb_env_create(&e->env);
  if (rc == 0) rc = mdb_env_set_maxdbs(e->env, 16);
  if (rc == 0) rc = mdb_env_set_maxreaders(e->env, 510);
  if (rc == 0) rc = mdb_env_set_mapsize(e->env, (size_t)s->cfg.map_size_bytes);
  if (rc == 0) {
    /* NOMETASYNC: one fsync per commit; a power loss may drop the last commits, never corrupt. */
    unsigned flags = MDB_NOTLS | MDB_NOMETASYNC | (e->rdonly ? MDB_RDONLY : 0);
    if (e->rdonly && !lock_writable(index_path)) flags |= MDB_NOLOCK;
    rc = mdb_env_open(e->env, index_path, flags, s->cfg.shared ? 0664 : 0644);
  }
  if (rc != 0) {
    st = store_mdb_err(s, rc, "opening", err);
  } else {
    /* LMDB opens data.mdb without O_CLOEXEC: a program this process starts (a chunk worker)
     * would hold it open for its whole life. */
    int data_mdb_fd;
    if (mdb_env_get_fd(e->env, &data_mdb_fd) == 0) fcntl(data_mdb_fd, F_SETFD, FD_CLOEXEC);
    int dead = 0;
    if (!(e->rdonly && !lock_writable(index_path))) mdb_reader_check(e->env, &dead);
    s->env = e;
    if (data_fd >= 0) st = check_snapshot(s, e, data_fd, err);
    if (st == AQS_OK) st = open_dbis(s, e, err);
  }
  if (data_fd >= 0) close(data_fd);
  if (st != AQS_OK) {
    if (e->env) mdb_env_close(e->env);
    pthread_rwlock_destroy(&e->resize_lock);
    pthread_mutex_destroy(&e->write_mutex);
    free(e);
    s->env = NULL;
  } else if (free_slot != SIZE_MAX) {
    registry[free_slot] = e;
  }
  pthread_mutex_unlock(&registry_mutex);
  return st;
}

int store_mkdir(const aqs_store *s, const char *dir) {
  mode_t mode = s->cfg.shared ? 02775 : 0755;
  if (mkdir(dir, mode) != 0) return errno == EEXIST ? 0 : -1;
  if (s->cfg.shared) chmod(dir, mode); /* the umask may have dropped group bits or setgid */
  return 0;
}

static void set_dirs(aqs_store *s) {
  snprintf(s->objects_dir, sizeof s->objects_dir, "%s/objects", s->path);
  snprintf(s->tmp_dir, sizeof s->tmp_dir, "%s/tmp", s->path);
  snprintf(s->quarantine_dir, sizeof s->quarantine_dir, "%s/quarantine", s->path);
  snprintf(s->journal_path, sizeof s->journal_path, "%s/journal", s->path);
}

aqs_status aqs_store_init(const char *path, const aqs_store_config *cfg_in, aqs_err *err) {
  aqs_store tmp = {0};
  if (cfg_in) tmp.cfg = *cfg_in;
  else aqs_store_config_defaults(&tmp.cfg);
  if (tmp.cfg.zstd_level < 1 || tmp.cfg.zstd_level > 19)
    return aqs_errf(err, AQS_ERR_INVALID, "zstd level %d is out of range 1..19",
                    tmp.cfg.zstd_level);
  if (tmp.cfg.format_version != 1)
    return aqs_errf(err, AQS_ERR_INVALID, "store format %d is not supported (1 is)",
                    tmp.cfg.format_version);
  if (tmp.cfg.map_size_bytes < (1ull << 20)) tmp.cfg.map_size_bytes = 1ull << 20;
  if (tmp.cfg.shared && tmp.cfg.umask < 0) tmp.cfg.umask = 0002;
  if (mkdir(path, tmp.cfg.shared ? 02775 : 0755) != 0 && errno != EEXIST)
    return aqs_errno(err, AQS_ERR_IO, errno, "creating store directory %s", path);
  if (!realpath(path, tmp.path))
    return aqs_errno(err, AQS_ERR_IO, errno, "resolving %s", path);
  if (tmp.cfg.shared) chmod(tmp.path, 02775);
  aqs_status st = store_check_fs(tmp.path, err);
  if (st != AQS_OK) return st;
  char conf[4200];
  snprintf(conf, sizeof conf, "%s/aqs.conf", tmp.path);
  if (access(conf, F_OK) == 0)
    return aqs_errf(err, AQS_ERR_INVALID, "%s is already an aqs store", tmp.path);
  mode_t old_umask = 0;
  if (tmp.cfg.umask >= 0) old_umask = umask((mode_t)tmp.cfg.umask);
  set_dirs(&tmp);
  char index_dir[4200];
  snprintf(index_dir, sizeof index_dir, "%s/index", tmp.path);
  const char *dirs[] = {index_dir, tmp.objects_dir, tmp.tmp_dir, tmp.quarantine_dir};
  for (size_t i = 0; i < 4 && st == AQS_OK; i++)
    if (store_mkdir(&tmp, dirs[i]) != 0)
      st = aqs_errno(err, AQS_ERR_IO, errno, "creating %s", dirs[i]);
  if (st == AQS_OK) st = store_config_write(conf, &tmp.cfg, err);
  if (tmp.cfg.umask >= 0) umask(old_umask);
  if (st != AQS_OK) return st;
  /* Create the LMDB environment and its databases now, so readers find them. */
  aqs_store *s = NULL;
  st = aqs_store_open(tmp.path, 0, &s, err);
  aqs_store_close(s);
  return st;
}

aqs_status aqs_store_open(const char *path, unsigned flags, aqs_store **out, aqs_err *err) {
  return store_open_at(path, "index", flags & ~STORE_FRESH_INDEX, out, err);
}

aqs_status store_open_at(const char *path, const char *index_name, unsigned flags,
                         aqs_store **out, aqs_err *err) {
  *out = NULL;
  aqs_store *s = calloc(1, sizeof *s);
  if (!s) return aqs_errf(err, AQS_ERR_NOMEM, "opening store %s: out of memory", path);
  s->flags = flags;
  pthread_mutex_init(&s->pending_mutex, NULL);
  aqs_status st = AQS_OK;
  char conf[4200];
  if (!realpath(path, s->path)) {
    st = aqs_errf(err, AQS_ERR_NOT_FOUND, "no aqs store at %s (run aqs init)", path);
    goto fail;
  }
  snprintf(conf, sizeof conf, "%s/aqs.conf", s->path);
  if (access(conf, F_OK) != 0) {
    st = aqs_errf(err, AQS_ERR_NOT_FOUND, "no aqs store at %s (no aqs.conf; run aqs init)",
                  s->path);
    goto fail;
  }
  st = store_config_read(conf, &s->cfg, err);
  if (st != AQS_OK) goto fail;
  if (s->cfg.format_version != 1) {
    st = aqs_errf(err, AQS_ERR_UNSUPPORTED, "%s: store format %d is newer than this aqs (1)",
                  conf, s->cfg.format_version);
    goto fail;
  }
  st = store_check_fs(s->path, err);
  if (st != AQS_OK) goto fail;
  set_dirs(s);
  if (s->cfg.umask >= 0 && !(flags & AQS_STORE_RDONLY)) {
    s->old_umask = umask((mode_t)s->cfg.umask);
    s->umask_applied = 1;
  }
  char index_dir[4200];
  snprintf(index_dir, sizeof index_dir, "%s/%s", s->path, index_name);
  if ((flags & STORE_FRESH_INDEX) && store_mkdir(s, index_dir) != 0) {
    st = aqs_errno(err, AQS_ERR_IO, errno, "creating %s", index_dir);
    goto fail;
  }
  st = env_acquire(s, index_dir, err);
  if (st != AQS_OK) goto fail;
  *out = s;
  return AQS_OK;
fail:
  if (s->umask_applied) umask(s->old_umask);
  pthread_mutex_destroy(&s->pending_mutex);
  free(s);
  return st;
}

void aqs_store_close(aqs_store *s) {
  if (!s) return;
  aqs_store_flush(s, NULL);
  tiers_free(s);
  if (s->env) env_release(s->env);
  if (s->umask_applied) umask(s->old_umask);
  pthread_mutex_destroy(&s->pending_mutex);
  free(s->atimes);
  free(s->counters);
  free(s);
}

const char *aqs_store_path(const aqs_store *s) { return s->path; }
int aqs_store_is_rdonly(const aqs_store *s) { return (s->flags & AQS_STORE_RDONLY) != 0; }
const aqs_store_config *aqs_store_get_config(const aqs_store *s) { return &s->cfg; }

/* ---- pending access times and counters */

void pending_touch(aqs_store *s, const aqs_digest *d) {
  if (s->flags & AQS_STORE_RDONLY) return;
  pthread_mutex_lock(&s->pending_mutex);
  if (s->n_atimes == s->cap_atimes) {
    size_t cap = s->cap_atimes ? s->cap_atimes * 2 : 64;
    pending_atime *p = realloc(s->atimes, cap * sizeof *p);
    if (!p) {
      pthread_mutex_unlock(&s->pending_mutex);
      return; /* an access time is a hint for gc: losing one is harmless */
    }
    s->atimes = p;
    s->cap_atimes = cap;
  }
  s->atimes[s->n_atimes].digest = *d;
  s->atimes[s->n_atimes].ns = now_ns();
  s->n_atimes++;
  pthread_mutex_unlock(&s->pending_mutex);
}

void pending_count(aqs_store *s, const char *name, uint64_t delta) {
  if (s->flags & AQS_STORE_RDONLY) return;
  pthread_mutex_lock(&s->pending_mutex);
  for (size_t i = 0; i < s->n_counters; i++)
    if (!strcmp(s->counters[i].name, name)) {
      s->counters[i].delta += delta;
      pthread_mutex_unlock(&s->pending_mutex);
      return;
    }
  if (s->n_counters == s->cap_counters) {
    size_t cap = s->cap_counters ? s->cap_counters * 2 : 16;
    pending_counter *p = realloc(s->counters, cap * sizeof *p);
    if (!p) {
      pthread_mutex_unlock(&s->pending_mutex);
      return;
    }
    s->counters = p;
    s->cap_counters = cap;
  }
  snprintf(s->counters[s->n_counters].name, sizeof s->counters[0].name, "%s", name);
  s->counters[s->n_counters].delta = delta;
  s->n_counters++;
  pthread_mutex_unlock(&s->pending_mutex);
}

typedef struct flush_ctx {
  pending_atime *atimes;
  size_t n_atimes;
  pending_counter *counters;
  size_t n_counters;
} flush_ctx;

static aqs_status flush_body(wtx *w, void *ctx_, aqs_err *err) {
  flush_ctx *c = ctx_;
  store_env *e = w->s->env;
  for (size_t i = 0; i < c->n_atimes; i++) {
    MDB_val k = {AQS_DIGEST_BYTES, c->atimes[i].digest.bytes}, v;
    if (mdb_get(w->txn, e->db_obj, &k, &v) != 0) continue; /* evicted meanwhile */
    aqs_status st = wput(w, e->db_atime, c->atimes[i].digest.bytes, AQS_DIGEST_BYTES,
                         &c->atimes[i].ns, sizeof(int64_t), 0, err);
    if (st != AQS_OK) return st;
  }
  for (size_t i = 0; i < c->n_counters; i++) {
    aqs_status st = wcounter_add(w, c->counters[i].name, (int64_t)c->counters[i].delta, err);
    if (st != AQS_OK) return st;
  }
  return AQS_OK;
}

aqs_status aqs_store_flush(aqs_store *s, aqs_err *err) {
  if (!s || (s->flags & AQS_STORE_RDONLY)) return AQS_OK;
  pthread_mutex_lock(&s->pending_mutex);
  flush_ctx c = {s->atimes, s->n_atimes, s->counters, s->n_counters};
  s->atimes = NULL;
  s->counters = NULL;
  s->n_atimes = s->cap_atimes = s->n_counters = s->cap_counters = 0;
  pthread_mutex_unlock(&s->pending_mutex);
  aqs_status st = AQS_OK;
  if (c.n_atimes || c.n_counters) st = store_write(s, flush_body, &c, err);
  free(c.atimes);
  free(c.counters);
  return st;
}
