/* store/digest.h: SHA-256 digests (the names of everything in the store) and a streaming hasher.
 * A digest is the SHA-256 of an object's *uncompressed* bytes, written "sha256:<64 lowercase hex>"
 * and shown short as 12 hex digits. Pure functions: no store needed (see store.h for lookups). */
#ifndef AQS_STORE_DIGEST_H
#define AQS_STORE_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define AQS_DIGEST_BYTES 32
#define AQS_DIGEST_HEX_LEN 64     /* hex digits of a full digest */
#define AQS_DIGEST_SHORT_LEN 12   /* hex digits shown in short form */
#define AQS_DIGEST_PREFIX "sha256:"
/* Buffer size for "sha256:<64 hex>" plus NUL. */
#define AQS_DIGEST_STR_SIZE (7 + AQS_DIGEST_HEX_LEN + 1)
/* Shortest hex prefix accepted as an abbreviation (like git). */
#define AQS_DIGEST_MIN_ABBREV 4

typedef struct aqs_digest {
  uint8_t bytes[AQS_DIGEST_BYTES];
} aqs_digest;

/* Writes "sha256:<64 hex>" + NUL into out (AQS_DIGEST_STR_SIZE bytes). Returns out. */
char *aqs_digest_str(const aqs_digest *d, char out[AQS_DIGEST_STR_SIZE]);
/* Writes the 64 hex digits + NUL into out (65 bytes). Returns out. */
char *aqs_digest_hex(const aqs_digest *d, char out[AQS_DIGEST_HEX_LEN + 1]);
/* Writes the first 12 hex digits + NUL into out (13 bytes). Returns out. */
char *aqs_digest_short(const aqs_digest *d, char out[AQS_DIGEST_SHORT_LEN + 1]);

/* Parses a FULL digest: "sha256:<64 hex>" or bare "<64 hex>" (hex case-insensitive).
 * Errors: AQS_ERR_INVALID (message quotes the text) for anything else, including abbreviations;
 * use aqs_store_resolve() (store.h) to expand an abbreviation against a store. */
aqs_status aqs_digest_parse(const char *text, aqs_digest *out, aqs_err *err);
/* Parses an abbreviation: "sha256:<hex>" or "<hex>" with 4..64 hex digits. On success prefix
 * holds the digits packed high-nibble-first (unused nibbles zero) and *n_hex_digits their count.
 * Errors: AQS_ERR_INVALID when not hex, too short or too long. */
aqs_status aqs_digest_parse_prefix(const char *text, aqs_digest *prefix, int *n_hex_digits,
                                   aqs_err *err);
/* 1 when the first n_hex_digits hex digits of d equal those of prefix. */
int aqs_digest_has_prefix(const aqs_digest *d, const aqs_digest *prefix, int n_hex_digits);

/* memcmp order; 0 when equal. */
int aqs_digest_cmp(const aqs_digest *a, const aqs_digest *b);
int aqs_digest_eq(const aqs_digest *a, const aqs_digest *b);

/* Streaming SHA-256 (OpenSSL EVP underneath; uses SHA-NI where the CPU has it).
 * Lifecycle: aqs_sha256_new -> update* -> final -> free. final may be called once; after it the
 * context may be reset with aqs_sha256_reset and reused. Not thread-safe per context. */
typedef struct aqs_sha256 aqs_sha256;
/* NULL on allocation failure. */
aqs_sha256 *aqs_sha256_new(void);
void aqs_sha256_update(aqs_sha256 *h, const void *data, size_t len);
void aqs_sha256_final(aqs_sha256 *h, aqs_digest *out);
void aqs_sha256_reset(aqs_sha256 *h);
void aqs_sha256_free(aqs_sha256 *h);

/* One-shot digest of a buffer. */
void aqs_sha256_buf(const void *data, size_t len, aqs_digest *out);
/* Digest of length bytes of fd from offset (pread; the fd position is not used or moved), or
 * up to EOF when length == AQS_TO_EOF. Streams in 1 MiB blocks. *size_out (optional) = bytes hashed.
 * Errors: AQS_ERR_IO (read failed, or EOF before length bytes); what names the source in the
 * message (e.g. the file path; may be NULL). */
#define AQS_TO_EOF UINT64_MAX
aqs_status aqs_sha256_fd(int fd, uint64_t offset, uint64_t length, const char *what,
                         aqs_digest *out, uint64_t *size_out, aqs_err *err);
/* Digest of a whole file by path (no store, no stat-cache; see aqs_hash_file_cached in store.h).
 * Errors: AQS_ERR_NOT_FOUND (missing), AQS_ERR_IO (unreadable); the message names the path. */
aqs_status aqs_sha256_file(const char *path, aqs_digest *out, uint64_t *size_out, aqs_err *err);

#endif
