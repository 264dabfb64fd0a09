/* store/store_internal.h: private to the store module. The handle, the LMDB environment shared by the
 * handles of one process, transaction helpers (map growth, MAP_RESIZED), record encodings and
 * the pending (unflushed) access times and counters. Nothing outside store/ includes this. */
#ifndef AQS_STORE_INTERNAL_H
#define AQS_STORE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "store/store.h"

/* One LMDB environment per (process, store); handles share it (LMDB forbids opening one
 * environment twice in a process). */
typedef struct store_env {
  MDB_env *env;
  char index_path[4200];
  pid_t pid;
  int refcount;
  int rdonly;
  /* Held for reading by every transaction of this process; for writing while the map is resized
   * (LMDB requires no active transaction in the process then). */
  pthread_rwlock_t resize_lock;
  /* Serializes this process's write transactions (LMDB serializes processes). */
  pthread_mutex_t write_mutex;
  MDB_dbi db_obj;      /* digest(32) -> obj record (+ inline zstd bytes) */
  MDB_dbi db_atime;    /* digest(32) -> int64 ns */
  MDB_dbi db_edges;    /* parent(32) -> children, n * 32 bytes */
  MDB_dbi db_redges;   /* child(32) -> parent(32), DUPSORT|DUPFIXED */
  MDB_dbi db_act;      /* key(32) -> JSON action record */
  MDB_dbi db_ref;      /* name -> digest(32) */
  MDB_dbi db_reflog;   /* name '\0' be64 seq -> JSON entry */
  MDB_dbi db_statc;    /* absolute path -> statc record */
  MDB_dbi db_meta;     /* counter name -> uint64 */
  MDB_dbi db_lease;    /* action key(32) -> lease record (lease.c); 0 in a read-only open of a
                          store made before leases existed */
} store_env;

typedef struct pending_atime {
  aqs_digest digest;
  int64_t ns;
} pending_atime;

typedef struct pending_counter {
  char name[AQS_NAME_MAX + 32];
  uint64_t delta;
} pending_counter;

struct aqs_store {
  char path[4096];
  char objects_dir[4200];
  char tmp_dir[4200];
  char quarantine_dir[4200];
  char journal_path[4200]; /* <store>/journal: append-only log of index records (journal.c) */
  int no_journal;          /* 1 while reindex replays the journal into a new index */
  aqs_store_notice_fn notice; /* aqs_store_set_notice */
  void *notice_user;
  aqs_store_config cfg;
  unsigned flags;
  store_env *env;
  mode_t old_umask;
  int umask_applied;
  pthread_mutex_t pending_mutex;
  pending_atime *atimes;
  size_t n_atimes, cap_atimes;
  pending_counter *counters;
  size_t n_counters, cap_counters;
  struct store_tiers *tiers;  /* secondaries and remote consulted on a miss (tiers.c); NULL = none */
};

/* ---- object records (little-endian fixed header, then inline payload) */
#define OBJ_REC_VERSION 1
#define OBJ_FLAG_MANIFEST 0x1
#define OBJ_REC_HEADER 32
typedef struct obj_rec {
  uint8_t kind;    /* aqs_object_kind */
  uint8_t flags;
  uint64_t size_bytes;
  uint64_t stored_bytes;
  int64_t created_ns;
  const void *inline_data; /* points into the LMDB value; valid during the txn */
  size_t inline_len;
} obj_rec;

int obj_rec_decode(const MDB_val *v, obj_rec *r);
/* Encodes the header into out (OBJ_REC_HEADER bytes). */
void obj_rec_encode_header(const obj_rec *r, uint8_t out[OBJ_REC_HEADER]);

/* ---- transactions */
/* A write transaction passed to write_fn; map_full is set by wput/wdel on MDB_MAP_FULL. */
typedef struct wtx {
  aqs_store *s;
  MDB_txn *txn;
  int map_full;
  int journaled; /* journal_append was called: sync the journal before committing */
} wtx;

/* Body of a write transaction: return AQS_OK to commit, an error to abort. It may be run again
 * (after the map grew), so it must be idempotent apart from LMDB writes. */
typedef aqs_status (*write_fn)(wtx *w, void *ctx, aqs_err *err);
aqs_status store_write(aqs_store *s, write_fn fn, void *ctx, aqs_err *err);

/* Read transactions: begin takes the resize lock for reading; end aborts and releases it. */
aqs_status store_read_begin(aqs_store *s, MDB_txn **txn, aqs_err *err);
void store_read_end(aqs_store *s, MDB_txn *txn);

/* LMDB helpers inside a write transaction: return AQS_OK or AQS_ERR_IO (map_full noted). */
aqs_status wput(wtx *w, MDB_dbi dbi, const void *key, size_t key_len, const void *val,
                size_t val_len, unsigned flags, aqs_err *err);
aqs_status wdel(wtx *w, MDB_dbi dbi, const void *key, size_t key_len, const void *val,
                size_t val_len, aqs_err *err);
/* Adds delta to the uint64 counter name (creating it); subtracts when negative (floor 0). */
aqs_status wcounter_add(wtx *w, const char *name, int64_t delta, aqs_err *err);
/* Reads a counter (0 when absent). */
uint64_t counter_get(aqs_store *s, MDB_txn *txn, const char *name);

/* Formats an LMDB error: AQS_ERR_CORRUPT with the repair command for the codes that mean a
 * damaged index (MDB_CORRUPTED, MDB_PAGE_NOTFOUND, MDB_INVALID, ...), AQS_ERR_IO otherwise. */
aqs_status store_mdb_err(const aqs_store *s, int rc, const char *what, aqs_err *err);
/* AQS_ERR_CORRUPT "store index <store>/index/data.mdb is damaged (<why>); run aqs verify
 * --reindex ...". */
aqs_status store_index_damaged(const aqs_store *s, const char *why, aqs_err *err);

/* ---- pending reads bookkeeping (flushed by aqs_store_flush) */
void pending_touch(aqs_store *s, const aqs_digest *d);
void pending_count(aqs_store *s, const char *name, uint64_t delta);

/* ---- paths and misc */
/* objects/ab/cdef... (raw) or objects/ab/cdef....zst (zstd file) for d (cap >= 4400). */
void object_file_path(const aqs_store *s, const aqs_digest *d, int kind, char *out, size_t cap);
int64_t now_ns(void);
/* fsync a directory by path (best effort where unsupported). */
int fsync_dir(const char *dir);
/* Calls fn for every file under objects/ named like an object (objects/ab/<62 hex>[.zst]): its
 * path, file name, digest and whether it is a zstd file. fn returns non-zero to stop. 0, or -1
 * when objects/ cannot be read. */
typedef int (*object_file_fn)(const char *path, const char *name, const aqs_digest *d, int zstd,
                              void *user);
int object_files_foreach(const aqs_store *s, object_file_fn fn, void *user);
/* Creates dir (mode per store: 02775 shared, else 0755 minus umask) if missing. */
int store_mkdir(const aqs_store *s, const char *dir);
/* Unique tmp file in <store>/tmp; returns the fd (O_RDWR|O_CLOEXEC) and its path. */
int store_tmpfile(aqs_store *s, char *path_out, size_t cap, aqs_err *err);
/* Current user name and host name (never empty). */
void current_user(char *out, size_t cap);
void current_host(char *out, size_t cap);
/* UTC ISO-8601 of ns. */
void format_utc(int64_t ns, char out[AQS_TIME_STR_SIZE]);

/* Records the object (record, atime, counters, edges) inside w; used by put paths. */
aqs_status obj_index_insert(wtx *w, const aqs_digest *d, const obj_rec *rec, const void *inline_data,
                            size_t inline_len, const aqs_digest *children, size_t n_children,
                            aqs_err *err);
/* Removes an object's record, atime, edges and counters inside w (the file is the caller's). */
aqs_status obj_index_remove(wtx *w, const aqs_digest *d, const obj_rec *rec, aqs_err *err);

/* Reads the object into memory verifying digest and frame checksums (txn must be NULL; opens its
 * own). Used by get and verify. */
aqs_status obj_read_verified(aqs_store *s, const aqs_digest *d, void **data, size_t *size,
                             aqs_object_info *info, aqs_err *err);

/* Stat-cache: 1 and *out when (abs_path, size, mtime_ns, inode, device) matches an entry. */
struct stat;
int statcache_lookup(aqs_store *s, const char *abs_path, const struct stat *sb, aqs_digest *out);
/* Records an entry (best effort; skipped for RDONLY handles). */
void statcache_record(aqs_store *s, const char *abs_path, const struct stat *sb,
                      const aqs_digest *d);

/* Verified stamps (statcache.c): 1 when the object file's stat (sb) matches the stamp recorded
 * when its bytes last hashed right. stamp_put records one for path inside w; stamp_record in its
 * own transaction (best effort; nothing for RDONLY handles). */
int stamp_matches(aqs_store *s, const aqs_digest *d, const struct stat *sb);
aqs_status stamp_put(wtx *w, const aqs_digest *d, const char *path, aqs_err *err);
void stamp_record(aqs_store *s, const aqs_digest *d, const char *path);

/* Moves a damaged or missing object out of the store (file to quarantine/, record removed, which
 * also makes every action reaching it a miss) and tells the handle's notice function what was
 * repaired. Nothing for RDONLY handles. Returns 1 when quarantined. */
int store_quarantine(aqs_store *s, const aqs_digest *d, const char *why);

/* aqs_action_lookup without counting (the closure check included): AQS_OK and *info (optional) on
 * a hit, AQS_ERR_NOT_FOUND on a miss. */
aqs_status action_lookup_quiet(aqs_store *s, const aqs_digest *key, aqs_action_info *info,
                               aqs_err *err);
/* Deletes key's lease inside w (aqs_action_put: the result is recorded, waiters may go on). */
aqs_status lease_drop(wtx *w, const aqs_digest *key, aqs_err *err);

/* ---- actions: raw records (actions.c), used by tiers.c to copy records with their provenance */
/* Fills info from a stored JSON record; 0 on success, -1 when malformed. */
int action_record_decode(const aqs_digest *key, const char *text, size_t len, aqs_action_info *info);
/* The record text of key (malloc'd, NUL-terminated). Errors: AQS_ERR_NOT_FOUND, AQS_ERR_IO. */
aqs_status action_record_get(aqs_store *s, const aqs_digest *key, char **text_out, aqs_err *err);
/* Stores a record as is (its key document must hash to key; its result must be present).
 * Errors: AQS_ERR_CORRUPT, AQS_ERR_NOT_FOUND, AQS_ERR_IO. */
aqs_status action_record_put(aqs_store *s, const aqs_digest *key, const char *record, aqs_err *err);

/* ---- tiers (tiers.c): consulted only when s->tiers is set */
/* A local action miss: looks key up in the secondaries, then the remote. On a hit copies the
 * result's closure and the record into s (or, in probe mode, only checks they exist there) and
 * fills info (may be NULL) with source set. AQS_ERR_NOT_FOUND when no tier has it. */
aqs_status tiers_action_lookup(aqs_store *s, const aqs_digest *key, aqs_action_info *info);
/* A local object miss: copies d (and, for a manifest, its closure) from the first tier holding it.
 * Errors: AQS_ERR_NOT_FOUND (no tier has it: err is left untouched, so the caller's miss message stays),
 * AQS_ERR_CORRUPT / AQS_ERR_IO from the transfer, AQS_ERR_UNSUPPORTED in probe mode. */
aqs_status tiers_fetch_object(aqs_store *s, const aqs_digest *d, aqs_err *err);
/* aqs_get_mem's fallback: fetch mode copies then reads; probe mode reads from the tier directly. */
aqs_status tiers_get_mem(aqs_store *s, const aqs_digest *d, void **data, size_t *size, aqs_err *err);
/* After a local aqs_action_put: with [remote] upload, sends the result's closure and the record
 * (failures are reported through the warn callback; the build goes on). */
void tiers_after_action_put(aqs_store *s, const aqs_digest *key, const aqs_digest *result,
                            const char *record);
/* Closes the secondaries and the remote. */
void tiers_free(aqs_store *s);

/* Network filesystem check on dir: AQS_ERR_UNSUPPORTED with the remote-tier hint. */
aqs_status store_check_fs(const char *dir, aqs_err *err);

/* aqs_store_open with the LMDB environment in <store>/<index_name>. Flag STORE_FRESH_INDEX creates
 * that directory and accepts an empty index although objects/ holds objects (reindex builds it). */
#define STORE_FRESH_INDEX 0x100u
aqs_status store_open_at(const char *path, const char *index_name, unsigned flags,
                         aqs_store **out, aqs_err *err);
/* Parses a manifest's children (deduplicated, in order); *out malloc'd. Errors: AQS_ERR_INVALID. */
aqs_status manifest_children(const void *data, size_t len, aqs_digest **out, size_t *n_out,
                             aqs_err *err);

/* aqs.conf read/write. */
aqs_status store_config_read(const char *conf_path, aqs_store_config *cfg, aqs_err *err);
aqs_status store_config_write(const char *conf_path, const aqs_store_config *cfg, aqs_err *err);

#endif
