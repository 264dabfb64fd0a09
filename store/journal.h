/* store/journal.h: the store's append-only journal (<store>/journal), private to store/. It keeps
 * every index record that objects/ cannot restore, so `aqs verify --reindex` rebuilds objects,
 * actions and refs after the index is lost. Record: "AQJ1", type (1 byte), 3 zero bytes, payload
 * length (u32 LE), payload, SHA-256 of type byte + payload. Format: docs/store-format.md. */
#ifndef AQS_STORE_JOURNAL_H
#define AQS_STORE_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define JOURNAL_MAGIC "AQJ1"
#define JOURNAL_HEADER 12

typedef enum journal_type {
  J_OBJ_INLINE = 1,        /* digest(32), flags(1: 1 = manifest), zstd frame */
  J_OBJ_FILE_MANIFEST = 2, /* digest(32): this file object is a manifest */
  J_OBJ_DEL = 3,           /* digest(32): the object left the index (gc, quarantine) */
  J_ACTION = 4,            /* key(32), JSON action record */
  J_ACTION_DEL = 5,        /* key(32) */
  J_REF = 6,               /* target digest(32), name */
  J_REF_DEL = 7            /* name */
} journal_type;

/* Appends one record (payload = a then b) inside write transaction w (the LMDB writer lock orders
 * records across processes); store_write syncs the journal before it commits. No-op on a handle with no_journal set (reindex).
 * Errors: AQS_ERR_IO (names the journal), AQS_ERR_NOMEM. */
struct wtx;
aqs_status journal_append(struct wtx *w, journal_type type, const void *a, size_t a_len,
                          const void *b, size_t b_len, aqs_err *err);

/* fdatasync of the journal (store_write calls it before committing a transaction that appended).
 * Errors: AQS_ERR_IO. */
aqs_status journal_sync(aqs_store *s, aqs_err *err);

/* Rewrites the journal as the index holds it now (inside w, so under the writer lock: no append
 * interleaves), dropping what gc evicted and superseded records; written to journal.compact,
 * fsync'd, renamed over the journal. Errors: AQS_ERR_IO. */
aqs_status journal_compact(struct wtx *w, aqs_err *err);

typedef struct journal_record {
  journal_type type;
  const uint8_t *payload; /* points into the caller's buffer */
  size_t len;
} journal_record;

/* Reads the record at or after pos in buf (the whole journal), skipping damaged bytes (counted in
 * *skipped). Returns the position after the record, or 0 at the end. */
size_t journal_next(const uint8_t *buf, size_t len, size_t pos, journal_record *out,
                    size_t *skipped);

#endif
