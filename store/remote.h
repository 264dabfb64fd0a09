/* store/remote.h: an HTTP remote cache in bazel-remote's layout (DESIGN.md §3, docs/store-format.md
 * "Remote cache"): object bytes at <url>/cas/<sha256-hex>, action records and refs at
 * <url>/ac/<key-hex>, read with GET/HEAD and written with PUT (libcurl). Any server speaking that
 * layout works: bazel-remote (run it with --disable_http_ac_validation: our /ac entries are JSON,
 * not REAPI ActionResults), or nginx with WebDAV PUT (tests/remote/).
 *
 * Reliability: transport errors, timeouts (no byte for `timeout_s`), HTTP 5xx, 408 and 429 are
 * retried with exponential backoff (backoff_ms, doubled per attempt, at most 5 s) up to `attempts`
 * tries. Every
 * CAS download is hashed as it arrives and rejected (and retried) unless it has exactly the
 * requested digest; a body cut short counts as a transport error. Callers therefore never see
 * bytes that do not match the digest they asked for. The bearer token is sent as
 * "Authorization: Bearer <token>" and never appears in a message.
 *
 * Threads: one aqs_remote may be used by several threads; requests are serialized on an internal
 * lock (one connection, kept alive). Not usable across fork(). Errors are aqs_status codes with a
 * message naming the URL (never the token) that the CLI prints as is. */
#ifndef AQS_STORE_REMOTE_H
#define AQS_STORE_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "store/digest.h"

typedef struct aqs_remote aqs_remote;

typedef struct aqs_remote_opts {
  const char *url;        /* http:// or https:// base; a trailing '/' is ignored. Required. */
  const char *token;      /* bearer token (copied) or NULL/"" for none */
  const char *token_env;  /* name of the variable the token came from, for messages (may be NULL) */
  int attempts;           /* tries per request (>= 1); 0 = default 4 */
  int timeout_s;          /* seconds without progress before a try is abandoned; 0 = default 30 */
  int backoff_ms;         /* delay before the 2nd try, doubled after each; 0 = default 200 */
} aqs_remote_opts;

/* Creates a client (no request is made). Errors: AQS_ERR_INVALID (bad url: message says why),
 * AQS_ERR_NOMEM, AQS_ERR_IO (libcurl could not be initialised). *out owned by the caller. */
aqs_status aqs_remote_open(const aqs_remote_opts *opts, aqs_remote **out, aqs_err *err);
void aqs_remote_close(aqs_remote *r);
/* The base URL as configured (without a trailing '/'); owned by r. */
const char *aqs_remote_url(const aqs_remote *r);

/* Request counters since open (for push/pull summaries and tests). */
typedef struct aqs_remote_stats {
  uint64_t requests;        /* HTTP tries, retries included */
  uint64_t retries;         /* tries after the first */
  uint64_t bytes_down, bytes_up;
} aqs_remote_stats;
void aqs_remote_get_stats(aqs_remote *r, aqs_remote_stats *out);

/* HEAD <url>/cas/<hex>: *present = 1 (2xx) or 0 (404).
 * Errors: AQS_ERR_IO (transport/5xx after retries, or an unexpected status: message names URL and
 * status; 401/403 name the token variable). */
aqs_status aqs_remote_cas_has(aqs_remote *r, const aqs_digest *d, int *present, aqs_err *err);

/* GET <url>/cas/<hex> into fd (a regular file the caller created; it is truncated before each try),
 * verifying the digest. size_out optional. Errors: AQS_ERR_NOT_FOUND (404), AQS_ERR_CORRUPT (the
 * body never matched the digest: message gives what it hashed to), AQS_ERR_IO. */
aqs_status aqs_remote_cas_get_fd(aqs_remote *r, const aqs_digest *d, int fd, uint64_t *size_out,
                                 aqs_err *err);

/* GET <url>/cas/<hex> into memory (at most max_bytes, else AQS_ERR_INVALID), verified as above.
 * *data_out malloc'd (caller frees; non-NULL on success). */
aqs_status aqs_remote_cas_get_mem(aqs_remote *r, const aqs_digest *d, size_t max_bytes,
                                  void **data_out, size_t *size_out, aqs_err *err);

/* PUT <url>/cas/<hex> with len bytes (the caller guarantees they hash to d).
 * Errors: AQS_ERR_IO (after retries; 4xx are not retried and named). */
aqs_status aqs_remote_cas_put(aqs_remote *r, const aqs_digest *d, const void *data, size_t len,
                              aqs_err *err);

/* Validates a downloaded /ac body (remote_response.h has the validators); AQS_OK or an error. */
typedef aqs_status (*aqs_remote_check_fn)(const void *body, size_t len, void *user, aqs_err *err);

/* GET <url>/ac/<key-hex> into memory (at most max_bytes; NUL-terminated). check (may be NULL) runs
 * on each 2xx body: a body it refuses is retried like a wrong CAS body, and its message is the
 * error after the last try. Errors: AQS_ERR_NOT_FOUND (404), AQS_ERR_INVALID (too large),
 * AQS_ERR_CORRUPT (check kept refusing), AQS_ERR_IO. */
aqs_status aqs_remote_ac_get(aqs_remote *r, const aqs_digest *key, size_t max_bytes, aqs_remote_check_fn check,
                             void *check_user, char **body_out, size_t *len_out, aqs_err *err);

/* PUT <url>/ac/<key-hex>. A 400 answer names bazel-remote's --disable_http_ac_validation.
 * Errors: AQS_ERR_IO. */
aqs_status aqs_remote_ac_put(aqs_remote *r, const aqs_digest *key, const void *body, size_t len,
                             aqs_err *err);

#endif
