/* store/store.h: the content-addressed store (DESIGN.md §3): objects, actions, refs, stat-cache,
 * counters, gc and verify over one directory with an LMDB index. The store knows nothing of
 * models; everything is bytes named by SHA-256. On-disk format: docs/store-format.md.
 *
 *   <store>/aqs.conf     store settings (INI: [store] format, zstd_level, inline_max, size_limit,
 *                        map_size, shared, umask)
 *   <store>/index/       LMDB environment (objects, atimes, edges, actions, refs, reflog,
 *                        stat-cache and verified stamps, counters, leases); checked before use
 *                        (store/index_check.h): a damaged or lost index is AQS_ERR_CORRUPT
 *   <store>/journal      append-only log of inline objects, actions and refs (store/journal.h),
 *                        from which aqs_store_reindex rebuilds a lost index
 *   <store>/objects/ab/cdef...   one file per large object, immutable, mode 0444 (raw bytes;
 *                        zstd-compressed ones end in .zst)
 *   <store>/tmp/         in-flight writes (tmp + fsync + rename); orphans are removed by gc
 *   <store>/quarantine/  damaged objects moved aside (by a read, a check or verify)
 *
 * Threads and processes: many processes may open one store at once (LMDB's single writer;
 * object files appear atomically by rename). One aqs_store handle may be used by several
 * threads of a process at once. Opening the same store twice in one process returns a second
 * handle sharing one LMDB environment. After fork() a child must not use the parent's handle:
 * it opens its own.
 *
 * Every function that can fail returns aqs_status and fills err (which may be NULL); messages
 * name the store path, file or digest and can be printed as is. */
#ifndef AQS_STORE_STORE_H
#define AQS_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "store/canon_json.h"
#include "store/digest.h"

typedef struct aqs_store aqs_store;

/* ------------------------------------------------------------------ create / open / config */

/* Store-level settings, read from <store>/aqs.conf at open. */
typedef struct aqs_store_config {
  int format_version;          /* on-disk format; this code writes and reads 1 */
  int zstd_level;              /* level for zstd objects (1..19); default 3 */
  uint64_t inline_max_bytes;   /* zstd objects of at most this size live inline in LMDB; 65536 */
  uint64_t size_limit_bytes;   /* gc target for stored bytes; 0 = no limit (default) */
  uint64_t map_size_bytes;     /* initial LMDB map size; grown on demand; default 256 MiB */
  int shared;                  /* 1: group-shared store (aqs init --shared) */
  int umask;                   /* umask applied while this store creates files; -1 = inherit */
} aqs_store_config;

/* Fills cfg with the defaults listed above (shared 0, umask -1). */
void aqs_store_config_defaults(aqs_store_config *cfg);

/* Creates a store at path (the directory may exist if empty of store files) with cfg (NULL =
 * defaults). When cfg->shared: directories are group-writable and setgid (02775), the umask
 * recorded in aqs.conf is cfg->umask if >= 0 else 0002, and aqs.conf says shared = true.
 * Errors: AQS_ERR_INVALID (already a store: "<path> is already an aqs store", or a bad cfg value),
 * AQS_ERR_IO (cannot create; errno text), AQS_ERR_UNSUPPORTED (network filesystem, see open). */
aqs_status aqs_store_init(const char *path, const aqs_store_config *cfg, aqs_err *err);

#define AQS_STORE_RDONLY 0x1u /* no writes; atimes and counters are not recorded */

/* Opens the store at path (a directory holding aqs.conf). Reads aqs.conf, refuses a network
 * filesystem (statfs magic NFS/CIFS/SMB/SMB2; tests inject a type through env AQS_TEST_FSTYPE =
 * nfs|cifs|smb|smb2|local), opens the LMDB environment and clears stale reader slots left by
 * killed processes (mdb_reader_check). On success *out owns the handle (aqs_store_close).
 * Before LMDB reads the index, the file is checked (meta pages, size, a walk of the current
 * snapshot); RDONLY opens of a store whose lock file this user cannot write use MDB_NOLOCK.
 * Errors: AQS_ERR_NOT_FOUND ("no aqs store at <path> (run aqs init)"), AQS_ERR_INVALID (bad
 * aqs.conf: message names the file and line), AQS_ERR_UNSUPPORTED (network filesystem: the
 * message says so and points to the remote tier; or an unknown format_version), AQS_ERR_CORRUPT
 * ("store index <store>/index/data.mdb is damaged (<why>); run `aqs verify --reindex` ...", or
 * "... is missing|empty but objects/ holds objects: the index was lost; ..."), AQS_ERR_IO. */
aqs_status aqs_store_open(const char *path, unsigned flags, aqs_store **out, aqs_err *err);

/* Flushes pending access times and read counters (aqs_store_flush), then closes. NULL is a no-op.
 * A flush failure is ignored here; call aqs_store_flush first to see it. */
void aqs_store_close(aqs_store *s);

/* Writes access times and lookup/get counters gathered by reads since the last flush in one
 * write transaction (reads do not take the writer lock). No-op for RDONLY handles.
 * Errors: AQS_ERR_IO (LMDB). */
aqs_status aqs_store_flush(aqs_store *s, aqs_err *err);

/* 1 when the handle was opened with AQS_STORE_RDONLY. */
int aqs_store_is_rdonly(const aqs_store *s);

/* The absolute store directory and its settings; owned by the handle. */
const char *aqs_store_path(const aqs_store *s);
const aqs_store_config *aqs_store_get_config(const aqs_store *s);

/* Creates a private scratch directory <store>/tmp/<prefix>-XXXXXX for a caller that stages
 * files before putting them (an export, a checkout for diff); its path goes into buf. The caller
 * removes it; gc removes leftovers of crashed processes. Errors: AQS_ERR_INVALID (buf too small
 * or prefix holding '/'), AQS_ERR_IO. Thread-safe. */
aqs_status aqs_store_mkdtemp(aqs_store *s, const char *prefix, char *buf, size_t n, aqs_err *err);

/* ------------------------------------------------------------------ objects */

typedef enum aqs_compress {
  AQS_COMPRESS_DEFAULT = 0, /* zstd at the store's level */
  AQS_COMPRESS_ZSTD = 1,    /* zstd (level from aqs_put_opts.zstd_level, else the store's) */
  AQS_COMPRESS_RAW = 2      /* stored raw, always as a file (linkable: aqs_object_path) */
} aqs_compress;

typedef enum aqs_object_kind {
  AQS_OBJ_INLINE_ZSTD = 1, /* zstd frame inside the LMDB record (size <= inline_max_bytes) */
  AQS_OBJ_FILE_ZSTD = 2,   /* zstd frame in objects/ab/cdef....zst */
  AQS_OBJ_FILE_RAW = 3     /* the bytes themselves in objects/ab/cdef... */
} aqs_object_kind;

/* Manifest convention (the ONE way an object declares children, used by gc reachability):
 * an object put with aqs_put_opts.manifest = 1 must be a JSON object with a top-level
 * "children" array of digest strings ("sha256:<64 hex>"); other members are free. The store
 * parses it at put, requires every child to be present already (children are put first, so the
 * store stays closed under children), and records the edges. Objects put without the flag are
 * opaque bytes even if they contain digests. A manifest may list a child several times. */
typedef struct aqs_put_opts {
  aqs_compress compress;
  int zstd_level;  /* 0 = store config */
  int manifest;    /* 1 = the bytes are a manifest (see above) */
} aqs_put_opts;

typedef struct aqs_put_info {
  aqs_digest digest;
  uint64_t size_bytes;    /* logical (uncompressed) size */
  uint64_t stored_bytes;  /* bytes the object takes in the store (compressed or raw) */
  aqs_object_kind kind;
  int deduped;            /* 1: the object was already present; nothing was written */
} aqs_put_info;

/* Puts len bytes from memory. opts may be NULL (defaults). Putting an existing object is a
 * no-op that refreshes its access time and counts a dedup, except that a RAW put of an object
 * stored compressed converts it to a raw file (so it can be linked). Compressed objects are zstd frames
 * with content checksums. File objects are written to tmp/, fsync'd, renamed into objects/ and
 * made read-only before the index records them: no reader ever sees a partial object.
 * info (optional) describes the result.
 * Errors: AQS_ERR_INVALID (manifest flag with bytes that are not a manifest: message says why),
 * AQS_ERR_NOT_FOUND (a manifest child is missing: message names it), AQS_ERR_IO, AQS_ERR_NOMEM,
 * AQS_ERR_UNSUPPORTED (RDONLY handle). */
aqs_status aqs_put_mem(aqs_store *s, const void *data, size_t len, const aqs_put_opts *opts,
                       aqs_put_info *info, aqs_err *err);

/* Puts length bytes of fd from offset (AQS_TO_EOF: to the end). Streams in blocks with pread
 * (thread-safe on one fd; the fd position is neither used nor moved); never holds the whole
 * object in memory. Pipes and sockets work too (read in order; offset must then be 0). Raw puts
 * from a regular file copy in the kernel (copy_file_range) and hash the stored copy. Use it for tensor byte ranges inside a checkpoint file. Same semantics and
 * errors as aqs_put_mem; reading past EOF before length bytes is AQS_ERR_IO. what (may be NULL)
 * names the source in messages. */
aqs_status aqs_put_fd(aqs_store *s, int fd, uint64_t offset, uint64_t length, const char *what,
                      const aqs_put_opts *opts, aqs_put_info *info, aqs_err *err);

/* Puts a whole file by path, consulting the stat-cache first: an unchanged file whose digest is
 * known and present is a dedup without reading it. Records the stat-cache entry afterwards.
 * Errors: as aqs_put_fd; AQS_ERR_NOT_FOUND / AQS_ERR_IO name the path; AQS_ERR_IO also when the
 * file changed while it was read. */
aqs_status aqs_put_file(aqs_store *s, const char *path, const aqs_put_opts *opts,
                        aqs_put_info *info, aqs_err *err);

typedef struct aqs_object_info {
  aqs_digest digest;
  aqs_object_kind kind;
  int manifest;            /* 1 when put as a manifest */
  uint64_t size_bytes;     /* logical */
  uint64_t stored_bytes;
  int64_t created_ns;      /* CLOCK_REALTIME ns when first stored */
  int64_t atime_ns;        /* last put/get recorded (flushed) */
} aqs_object_info;

/* Whether d is present, and its record. Counts nothing, touches nothing.
 * Errors: AQS_ERR_NOT_FOUND ("object sha256:<hex> not found in <store>"), AQS_ERR_IO. */
aqs_status aqs_object_stat(aqs_store *s, const aqs_digest *d, aqs_object_info *info, aqs_err *err);
/* 1 if present, 0 if not (or on error). */
int aqs_object_exists(aqs_store *s, const aqs_digest *d);

/* Reads an object into memory: *data_out is malloc'd (caller frees; non-NULL even for size 0),
 * *size_out its size. The bytes are re-hashed and compared to d (and zstd frame checksums
 * checked) before returning: a corrupt object NEVER returns bytes; on a writable handle it is
 * also quarantined (aqs_object_check) and the notice function told.
 * Errors: AQS_ERR_NOT_FOUND, AQS_ERR_CORRUPT ("object sha256:<hex> is corrupt: <why>; run aqs
 * verify"), AQS_ERR_IO, AQS_ERR_NOMEM. */
aqs_status aqs_get_mem(aqs_store *s, const aqs_digest *d, void **data_out, size_t *size_out,
                       aqs_err *err);

/* Streams an object's bytes to fd (write; any fd: file, pipe, socket) in blocks, hashing as it
 * goes. On AQS_ERR_CORRUPT some bytes may already have been written: the caller must discard
 * the output (the CLI exits non-zero). size_out (optional) = bytes written.
 * Errors: as aqs_get_mem; AQS_ERR_IO when writing to fd fails. */
aqs_status aqs_get_fd(aqs_store *s, const aqs_digest *d, int fd, uint64_t *size_out, aqs_err *err);

/* A read-only view of an object's bytes. Raw file objects are mmap'd; others are decompressed
 * into memory. Release with aqs_view_release (which zeroes the struct). */
typedef struct aqs_view {
  const void *data;
  size_t size;
  void *priv_;  /* internal */
  int mapped_;  /* internal */
} aqs_view;

/* Opens a view. verify = 1 re-hashes the bytes (always done for compressed objects; for raw
 * mapped objects it costs one pass over the file) and fails with AQS_ERR_CORRUPT on mismatch.
 * Errors: as aqs_get_mem. */
aqs_status aqs_object_view(aqs_store *s, const aqs_digest *d, int verify, aqs_view *view,
                           aqs_err *err);
void aqs_view_release(aqs_view *view);

/* Checks that d is present and its bytes match it, hashing a file object only when its verified
 * stamp (inode, device, size, mtime, ctime recorded when its bytes last hashed right, in the
 * stat-cache) does not match the file; inline objects are always re-hashed (they are small). A
 * damaged or missing object is quarantined (writable handles) and the notice function is told.
 * Use it before trusting an object without reading it (dedup, linking).
 * Errors: AQS_ERR_NOT_FOUND, AQS_ERR_CORRUPT (the message names the digest and why), AQS_ERR_IO. */
aqs_status aqs_object_check(aqs_store *s, const aqs_digest *d, aqs_err *err);

/* Called with a one-line message whenever the store repairs itself (a damaged object quarantined
 * by a read, a check or an action lookup: "repaired: ...") or starts waiting for an action another
 * process computes ("waiting for ..."), so a command can say so. Set it right
 * after open; the function may be called from any thread using the handle. */
typedef void (*aqs_store_notice_fn)(const char *msg, void *user);
void aqs_store_set_notice(aqs_store *s, aqs_store_notice_fn fn, void *user);

/* Path of a raw file object (objects/ab/cdef...), for hardlinking / reflinking / copying into a
 * checkpoint directory. The object is checked first (aqs_object_check: verified once, then by its
 * stamp), so a damaged file is never handed out. The file is read-only and must never be modified in place (a hardlink
 * shares the inode: open linked copies read-only). Counts as an access.
 * Errors: AQS_ERR_NOT_FOUND, AQS_ERR_CORRUPT (damaged: quarantined), AQS_ERR_UNSUPPORTED (the
 * object is not a raw file object: put it with AQS_COMPRESS_RAW), AQS_ERR_INVALID (path_cap too
 * small; 4096 always suffices). */
aqs_status aqs_object_path(aqs_store *s, const aqs_digest *d, char *path_out, size_t path_cap,
                           aqs_err *err);

/* Hardlinks the raw file object d (checked as by aqs_object_path) to dest, and renews its verified
 * stamp (a link changes the inode's ctime, not its bytes). Errors: as aqs_object_path; AQS_ERR_IO
 * when link() fails (another filesystem, no permission: the caller may copy instead). */
aqs_status aqs_object_link(aqs_store *s, const aqs_digest *d, const char *dest, aqs_err *err);

/* Children recorded for a manifest object: *children_out malloc'd array (caller frees; NULL when
 * none) of *n_out digests in the order listed, duplicates removed.
 * Errors: AQS_ERR_NOT_FOUND (no such object), AQS_ERR_IO. A non-manifest object has 0 children. */
aqs_status aqs_object_children(aqs_store *s, const aqs_digest *d, aqs_digest **children_out,
                               size_t *n_out, aqs_err *err);

/* Expands an abbreviation ("sha256:<hex>" or "<hex>", at least 4 hex digits) to the one object
 * digest it names. A full 64-digit digest is returned as is if present, or when tiers are
 * attached (store/tiers.h: the read that follows consults them).
 * Errors: AQS_ERR_INVALID (not a digest), AQS_ERR_NOT_FOUND ("no object matches <text>"),
 * AQS_ERR_AMBIGUOUS ("<text> is ambiguous: sha256:<12>..., sha256:<12>... (N matches)"). */
aqs_status aqs_store_resolve(aqs_store *s, const char *text, aqs_digest *out, aqs_err *err);

/* Calls fn for every object record in digest order (read snapshot). fn returns 0 to go on,
 * non-zero to stop (then this returns AQS_OK). Errors: AQS_ERR_IO. */
typedef int (*aqs_object_fn)(const aqs_object_info *info, void *user);
aqs_status aqs_object_foreach(aqs_store *s, aqs_object_fn fn, void *user, aqs_err *err);

/* ------------------------------------------------------------------ actions */

#define AQS_NAME_MAX 128   /* stage names, versions, users */
#define AQS_HOST_MAX 256
#define AQS_TIME_STR_SIZE 32
#define AQS_SOURCE_MAX 1024

/* One cached stage run. Provenance fields never enter the key. */
typedef struct aqs_action_info {
  aqs_digest key;
  aqs_digest result;                    /* the result (manifest) object */
  char stage[AQS_NAME_MAX];             /* from the key document */
  char stage_version[AQS_NAME_MAX];     /* from the key document */
  char aqs_version[AQS_NAME_MAX];       /* provenance: aqs that recorded it */
  char host[AQS_HOST_MAX];              /* provenance */
  char user[AQS_NAME_MAX];              /* provenance */
  char created_at[AQS_TIME_STR_SIZE];   /* provenance: UTC "2026-11-24T07:10:00Z" */
  int64_t created_ns;                   /* same instant, ns since the epoch */
  double wall_seconds;                  /* provenance: how long the stage ran */
  char *key_doc;                        /* malloc'd canonical key document (see aqs_action_key) */
  char source[AQS_SOURCE_MAX];          /* "" = this store; else the tier that answered a lookup:
                                           "secondary <path>" or "remote <url>" (store/tiers.h) */
} aqs_action_info;

/* Frees key_doc (and zeroes the struct). NULL is a no-op. */
void aqs_action_info_free(aqs_action_info *info);

/* Records an action: key = SHA-256(key_doc) where key_doc is the canonical document returned by
 * aqs_action_key (it is re-parsed for stage and stage_version and must be canonical). result must
 * already be in the store. Provenance (aqs version, host, user, created_at) is filled here;
 * wall_seconds is the caller's. An existing action with the same key is replaced (the last
 * writer wins; a changed result is legal for non-deterministic stages). key_out optional.
 * Errors: AQS_ERR_INVALID (key_doc not a canonical key document), AQS_ERR_NOT_FOUND (result
 * missing: message names it), AQS_ERR_IO, AQS_ERR_UNSUPPORTED (RDONLY). Drops the key's lease.
 * The record is also appended to the store's journal (so `aqs verify --reindex` restores it). */
aqs_status aqs_action_put(aqs_store *s, const char *key_doc, const aqs_digest *result,
                          double wall_seconds, aqs_digest *key_out, aqs_err *err);

/* Looks up an action by key and counts a lookup and a hit or miss under stage (the caller's
 * stage name, since a miss has no record; NULL counts under "-"). A record whose result, or any
 * object the result's manifests reach, is gone (evicted, quarantined) or damaged is a miss: the
 * closure is checked with aqs_object_check (damaged objects are quarantined then), so a stage
 * recomputes what it needs without a special case. On a hit info (optional) is filled (caller frees with
 * aqs_action_info_free). Errors: AQS_ERR_NOT_FOUND (a miss, message names the key), AQS_ERR_IO. */
aqs_status aqs_action_lookup(aqs_store *s, const char *stage, const aqs_digest *key,
                             aqs_action_info *info, aqs_err *err);

/* Whether aqs_action_lookup would hit, counting nothing (a scheduler asking what is left to
 * compute, e.g. engine/stages/chunk_workers.h). Errors count as "not recorded". */
int aqs_action_recorded(aqs_store *s, const aqs_digest *key);

/* After a miss: makes sure only one process computes the action. Takes the action's lease (a
 * record: pid, host, process start, time) and returns AQS_ERR_NOT_FOUND: this process computes it
 * and aqs_action_put releases the lease (or aqs_lease_release on failure). While another live
 * process holds the lease it waits (polling, 5 to 200 ms; the notice function is told once whom it
 * waits for) and returns AQS_OK with info (optional, as aqs_action_lookup) once that result is
 * recorded. A lease whose holder no longer runs on this host (or, from another host, older than an
 * hour) is taken over. A read-only handle takes no lease and returns AQS_ERR_NOT_FOUND at once.
 * Counts nothing. Errors: AQS_ERR_IO. */
aqs_status aqs_action_claim(aqs_store *s, const char *stage, const aqs_digest *key,
                            aqs_action_info *info, aqs_err *err);
/* Drops this process's lease on key (nothing when another process holds it or none exists). */
void aqs_lease_release(aqs_store *s, const aqs_digest *key);

/* Calls fn for every action whose stage equals stage (NULL = all), in key order. info is valid
 * only during the call (copy what you keep; key_doc included). fn returns non-zero to stop.
 * Use it to find the nearest cached action of a stage and diff key documents. Errors: AQS_ERR_IO. */
typedef int (*aqs_action_fn)(const aqs_action_info *info, void *user);
aqs_status aqs_action_foreach(aqs_store *s, const char *stage, aqs_action_fn fn, void *user,
                              aqs_err *err);

/* Removes an action. Errors: AQS_ERR_NOT_FOUND, AQS_ERR_IO. */
aqs_status aqs_action_delete(aqs_store *s, const aqs_digest *key, aqs_err *err);

/* ------------------------------------------------------------------ refs */

/* Ref names: 1..255 bytes: segments of 'a'-'z', 'A'-'Z', '0'-'9', '.', '_', '-' separated by
 * single '/', no '.' or '..' segment, not starting with '-' (so "../x", "/abs", "a//b" are
 * refused). Refs created by older versions may also hold ':', '+', '@' and empty or dot
 * segments: they stay readable, movable and deletable. Refs pin objects (and everything
 * their manifests reach) against gc. Each ref keeps a reflog of its last AQS_REFLOG_KEEP changes. */
#define AQS_REF_NAME_MAX 255
#define AQS_REFLOG_KEEP 20

/* Points name at target (which must be present). message (may be NULL) goes to the reflog.
 * Errors: AQS_ERR_INVALID (bad name: a new ref must follow the rules above), AQS_ERR_NOT_FOUND
 * (target missing), AQS_ERR_IO. */
aqs_status aqs_ref_set(aqs_store *s, const char *name, const aqs_digest *target,
                       const char *message, aqs_err *err);
/* Errors: AQS_ERR_NOT_FOUND ("no ref <name>"), AQS_ERR_INVALID, AQS_ERR_IO. */
aqs_status aqs_ref_get(aqs_store *s, const char *name, aqs_digest *out, aqs_err *err);
/* Deletes the ref (the reflog records the deletion). Errors: AQS_ERR_NOT_FOUND, AQS_ERR_IO. */
aqs_status aqs_ref_delete(aqs_store *s, const char *name, const char *message, aqs_err *err);

/* Calls fn for every ref in name order; non-zero stops. Errors: AQS_ERR_IO. */
typedef int (*aqs_ref_fn)(const char *name, const aqs_digest *target, void *user);
aqs_status aqs_ref_foreach(aqs_store *s, aqs_ref_fn fn, void *user, aqs_err *err);

typedef struct aqs_reflog_entry {
  aqs_digest old_target;   /* all zero when the ref was created */
  aqs_digest new_target;   /* all zero when the ref was deleted */
  int has_old, has_new;
  int64_t time_ns;
  char user[AQS_NAME_MAX];
  char message[256];
} aqs_reflog_entry;

/* Calls fn for the reflog of name, newest first; non-zero stops. A name without history calls
 * nothing and returns AQS_OK. Errors: AQS_ERR_INVALID, AQS_ERR_IO. */
typedef int (*aqs_reflog_fn)(const aqs_reflog_entry *entry, void *user);
aqs_status aqs_ref_log(aqs_store *s, const char *name, aqs_reflog_fn fn, void *user, aqs_err *err);

/* ------------------------------------------------------------------ stat-cache */

/* Digest of a file, using the stat-cache: (absolute path, size, mtime_ns, inode, device) ->
 * digest. On a match the file is not read. Otherwise it is hashed (streaming) and the entry is
 * written (not for RDONLY handles). s may be NULL: then this just hashes. size_out optional.
 * A file modified within the same mtime tick after being cached is not detected (as in git);
 * files being written while aqs runs should not be fed to it.
 * Errors: AQS_ERR_NOT_FOUND, AQS_ERR_IO (the message names the path). */
aqs_status aqs_hash_file_cached(aqs_store *s, const char *path, aqs_digest *out,
                                uint64_t *size_out, aqs_err *err);

/* ------------------------------------------------------------------ counters */

typedef struct aqs_stage_stats {
  char stage[AQS_NAME_MAX];
  uint64_t lookups, hits, misses;
} aqs_stage_stats;

typedef struct aqs_store_stats {
  uint64_t objects;            /* object records */
  uint64_t objects_inline, objects_file_zstd, objects_file_raw, manifests;
  uint64_t bytes_logical;      /* sum of object sizes (uncompressed) */
  uint64_t bytes_stored;       /* sum of stored sizes (what the objects take) */
  uint64_t puts;               /* put calls that stored a new object (cumulative) */
  uint64_t dedups;             /* put calls that found the object present (cumulative) */
  uint64_t dedup_bytes;        /* logical bytes those dedups did not store again */
  uint64_t gets;               /* object reads (cumulative, flushed) */
  uint64_t evictions;          /* objects removed by gc (cumulative) */
  uint64_t corrupt_found;      /* objects quarantined by verify (cumulative) */
  uint64_t actions, refs, statcache_entries;
  uint64_t index_bytes;        /* LMDB data file size */
  size_t n_stages;
  aqs_stage_stats *stages;     /* malloc'd, n_stages entries sorted by name */
} aqs_store_stats;

/* Snapshot of the counters (pending reads of this handle included). Free with
 * aqs_store_stats_free. Errors: AQS_ERR_IO, AQS_ERR_NOMEM. */
aqs_status aqs_store_stats_get(aqs_store *s, aqs_store_stats *out, aqs_err *err);
void aqs_store_stats_free(aqs_store_stats *st);

/* ------------------------------------------------------------------ gc */

typedef struct aqs_gc_opts {
  int64_t size_limit_bytes; /* < 0: the store's size_limit (0 there = no limit, evict nothing);
                               >= 0: evict unpinned objects until bytes_stored <= this */
  int dry_run;              /* 1: change nothing, report what would go */
  int64_t orphan_grace_s;   /* tmp files and unindexed object files older than this are removed;
                               < 0: default 3600 (protects writes in flight in other processes) */
} aqs_gc_opts;

typedef struct aqs_gc_report {
  uint64_t objects_before, bytes_before;      /* stored bytes */
  uint64_t pinned_objects, pinned_bytes;      /* reachable from refs */
  uint64_t evicted_objects, evicted_bytes;
  uint64_t bytes_after;
  uint64_t actions_removed;                   /* actions whose result was evicted */
  uint64_t orphan_files_removed;              /* tmp/ leftovers and unindexed object files */
} aqs_gc_report;

/* Called for each object evicted (or that would be, in dry-run), in eviction order. */
typedef void (*aqs_gc_fn)(const aqs_object_info *victim, void *user);

/* Garbage collection. Pinned = reachable from any ref through manifest children. Unpinned objects
 * are evicted least recently used first (atime, then digest) until the stored bytes fit the
 * limit. Evicting an object also evicts every manifest that lists it (transitively), so the
 * store stays closed under children; actions whose result goes are removed. Pending access
 * times are flushed first. Objects are removed under the writer lock, so a concurrent put of the
 * same bytes either dedups before or re-stores after. opts may be NULL (store limit, real run).
 * Errors: AQS_ERR_IO, AQS_ERR_UNSUPPORTED (RDONLY and not dry-run). */
aqs_status aqs_gc(aqs_store *s, const aqs_gc_opts *opts, aqs_gc_fn fn, void *user,
                  aqs_gc_report *report, aqs_err *err);

/* ------------------------------------------------------------------ verify */

typedef struct aqs_verify_opts {
  uint64_t sample;    /* 0 = every object; N = a random sample of N objects */
  uint64_t seed;      /* sample seed (0 = from the clock) */
  int quarantine;     /* 1: move corrupt/missing objects out of the store (default for the CLI) */
  /* Optional progress report after each object: objects and logical bytes done so far, and the
   * totals of the run (for a progress bar on stderr). */
  void (*progress)(uint64_t objects_done, uint64_t objects_total, uint64_t bytes_done,
                   uint64_t bytes_total, void *user);
  void *progress_user;
} aqs_verify_opts;

typedef struct aqs_verify_report {
  uint64_t checked, ok, corrupt, missing;  /* missing = record without its file */
  uint64_t bytes_checked;                  /* logical bytes re-hashed */
  uint64_t quarantined;
  uint64_t unindexed;  /* object files under objects/ the index does not know (full runs only) */
} aqs_verify_report;

/* Called for each bad object: status AQS_ERR_CORRUPT or AQS_ERR_NOT_FOUND (file missing) and a
 * message naming the digest and the reason. */
typedef void (*aqs_verify_fn)(const aqs_digest *d, aqs_status status, const char *msg, void *user);

/* Re-hashes objects (all or a sample). With quarantine, a bad object's file moves to
 * quarantine/<hex> (inline bytes to quarantine/<hex>.zst) and its record is removed: later reads
 * report NOT_FOUND (never wrong bytes), and a new put of the right bytes repairs the store.
 * Without quarantine, reads of it keep failing with AQS_ERR_CORRUPT. opts may be NULL (all, no
 * quarantine).
 * A full run (no sample) also counts object files under objects/ that the index does not know.
 * Returns AQS_OK when everything checked is good, AQS_ERR_CORRUPT when anything was bad
 * (message: "N bad object(s) in store <path>: sha256:<12>...", or "N object file(s) under
 * <store>/objects are not in the index ...; run `aqs verify --reindex`"), AQS_ERR_IO on failure to
 * run. report optional. */
aqs_status aqs_verify(aqs_store *s, const aqs_verify_opts *opts, aqs_verify_fn fn, void *user,
                      aqs_verify_report *report, aqs_err *err);

/* ------------------------------------------------------------------ reindex */

typedef struct aqs_reindex_report {
  uint64_t files_scanned;      /* object files found under objects/ */
  uint64_t files_bad;          /* of those, content not matching the name (or unreadable) */
  uint64_t files_quarantined;  /* bad files moved to quarantine/ */
  uint64_t journal_records;    /* good journal records replayed */
  uint64_t journal_damaged;    /* damaged journal spans skipped */
  uint64_t objects;            /* objects in the new index (files + inline) */
  uint64_t inline_objects;     /* of those, restored from the journal */
  uint64_t manifests_dropped;  /* manifests left out because a child is gone */
  uint64_t actions, actions_dropped; /* restored / left out (result gone) */
  uint64_t refs, refs_dropped;       /* restored / left out (target gone) */
} aqs_reindex_report;

/* Rebuilds the index of the store at path from objects/ (every file re-hashed; a bad one moves to
 * quarantine/) and the journal (inline objects, manifest flags, actions, refs, in commit order),
 * keeping only manifests whose children are present, actions whose result is and refs whose target
 * is. Works on a lost, empty or damaged index/ (never opens it): the new index is built in
 * <store>/index.new and renamed over index/. Run it while no other aqs uses the store. Stat-cache
 * entries, counters other than object/action/ref counts, and the reflog are not restored.
 * Errors: AQS_ERR_NOT_FOUND (no store), AQS_ERR_INVALID (bad aqs.conf), AQS_ERR_IO, AQS_ERR_NOMEM. */
aqs_status aqs_store_reindex(const char *path, aqs_reindex_report *report, aqs_err *err);

/* Tiers: read-only secondary stores and an HTTP remote can be attached to a handle
 * (store/tiers.h); then aqs_action_lookup, aqs_get_mem, aqs_get_fd, aqs_object_view,
 * aqs_object_path and aqs_object_stat consult them on a local miss. */

#endif
