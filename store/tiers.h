/* store/tiers.h: the shared tiers behind a primary store (DESIGN.md §3 "Sharing"): read-only
 * secondary stores (a teammate's or a shared disk's cache) and an HTTP remote (store/remote.h).
 * Once attached, a local miss in aqs_action_lookup or an object read (see store.h) consults the
 * secondaries in order, then the remote. In fetch mode (the default) a hit is copied into the
 * primary first: objects are re-hashed on the way in (a secondary's by aqs_object_view with
 * verify, a download by the remote client) and a manifest's children are copied before it, so the
 * primary stays closed under children; action records keep their original provenance. In probe
 * mode (aqs plan, or a primary opened read-only) nothing is written: lookups only report where a
 * hit would come from (aqs_action_info.source) and aqs_get_mem reads from the tier directly.
 *
 * With upload set, every action recorded in the primary (aqs_action_put) is sent to the remote
 * with the closure of its result; an upload failure is reported through the warn callback and
 * does not fail the caller. Threads: as store.h (tier calls may come from several threads). */
#ifndef AQS_STORE_TIERS_H
#define AQS_STORE_TIERS_H

#include <stddef.h>
#include <stdint.h>

#include "store/remote.h"
#include "store/store.h"

/* Opens the store at path read-only and appends it to s's secondaries.
 * Errors: AQS_ERR_NOT_FOUND ("secondary store <path> not found": callers warn and go on),
 * AQS_ERR_INVALID (path is the primary itself), and aqs_store_open's errors. */
aqs_status aqs_store_add_secondary(aqs_store *s, const char *path, aqs_err *err);

/* Attaches remote (ownership moves to s; closed by aqs_store_close) with upload on or off.
 * Errors: AQS_ERR_INVALID when a remote is already attached (remote is then closed). */
aqs_status aqs_store_set_remote(aqs_store *s, aqs_remote *remote, int upload, aqs_err *err);
/* The attached remote, or NULL. */
aqs_remote *aqs_store_remote(aqs_store *s);

/* probe = 1: tiers are only looked at, never copied from (see above). */
void aqs_store_set_tier_probe(aqs_store *s, int probe);

/* Where non-fatal tier problems go (an unreachable remote during a build, an upload that failed).
 * Default: "aqs: warning: <msg>" on stderr. */
typedef void (*aqs_tier_warn_fn)(const char *msg, void *user);
void aqs_store_set_tier_warn(aqs_store *s, aqs_tier_warn_fn fn, void *user);

/* Where a lookup of action key would be answered from: "" when s itself holds it, else the
 * tier's label ("secondary <path>", "remote <url>") into source (cap bytes), found as in probe mode
 * (nothing is copied). Errors: AQS_ERR_NOT_FOUND (no tier has it), AQS_ERR_IO. */
aqs_status aqs_tiers_action_source(aqs_store *s, const aqs_digest *key, char *source, size_t cap,
                                   aqs_err *err);

/* ------------------------------------------------------------------ push / pull (explicit) */

typedef struct aqs_transfer_stats {
  uint64_t objects;          /* objects visited: push, the closure; pull, the objects looked at
                                (a present manifest's children are not looked at) */
  uint64_t objects_moved;    /* objects sent (push) or copied in (pull) */
  uint64_t bytes_moved;      /* logical bytes of those */
  uint64_t actions_moved;    /* action records sent or stored */
  uint64_t refs_moved;       /* ref records sent or set */
  /* Optional: called after each object moved with its size (for a progress line). */
  void (*on_object)(uint64_t bytes, void *user);
  void *on_object_user;
} aqs_transfer_stats;

/* Sends root and everything it reaches to the remote, children before parents (objects already
 * there, by HEAD, are skipped), then every action record of s whose result is in that closure,
 * then the ref record ref -> root listing those actions (so pull can restore them), and, when
 * alias is set, the same record published under alias too (pull alias then sets ref).
 * ref may be NULL (objects and actions only). stats accumulates.
 * Errors: AQS_ERR_UNSUPPORTED (no remote attached), AQS_ERR_NOT_FOUND / AQS_ERR_CORRUPT (a local
 * object is missing or damaged: nothing wrong is ever sent), AQS_ERR_IO (the remote). */
aqs_status aqs_tiers_push(aqs_store *s, const char *ref, const char *alias, const aqs_digest *root,
                          aqs_transfer_stats *stats, aqs_err *err);

/* Fetches the ref record published under name from the remote, copies its target's closure
 * (verified) and its action records into s, then points the local ref the record names (ref_out,
 * AQS_REF_NAME_MAX + 1 bytes, optional) at the target (reflog: "pull <url>"). target_out optional.
 * Errors: AQS_ERR_UNSUPPORTED (no remote), AQS_ERR_NOT_FOUND ("no ref <name>
 * in remote <url>"), AQS_ERR_CORRUPT (a record or object that fails validation; nothing is stored
 * for it), AQS_ERR_IO. */
aqs_status aqs_tiers_pull(aqs_store *s, const char *name, char *ref_out, aqs_digest *target_out,
                          aqs_transfer_stats *stats, aqs_err *err);

#endif
