/* store/remote_response.h: what aqs makes of a remote cache's answers, kept free of I/O so that
 * it can be unit-tested and fuzzed (tests/fuzz/fuzz_remote_response.c): HTTP status classes, the
 * validation of downloaded action records and ref records against the key they were asked for,
 * and the recognition of manifest objects among downloaded bytes. A server is untrusted: every
 * function here accepts arbitrary bytes and either returns a validated value or AQS_ERR_CORRUPT
 * with a message saying what was wrong. Thread-safe (no state). */
#ifndef AQS_STORE_REMOTE_RESPONSE_H
#define AQS_STORE_REMOTE_RESPONSE_H

#include <stddef.h>

#include "common/err.h"
#include "store/digest.h"

typedef enum aqs_remote_class {
  AQS_REMOTE_OK = 0,        /* 2xx */
  AQS_REMOTE_MISSING = 1,   /* 404 */
  AQS_REMOTE_RETRY = 2,     /* 5xx, 408, 429, or 0 (no answer): try again after a backoff */
  AQS_REMOTE_AUTH = 3,      /* 401, 403: the token is missing or wrong */
  AQS_REMOTE_REJECTED = 4   /* any other status: a clear error, no retry */
} aqs_remote_class;

aqs_remote_class aqs_remote_classify(long http_status);

/* Validates an action record downloaded from <url>/ac/<key>: a JSON object (at most 16 MiB) with
 * "result" (a digest string), "stage" (string) and "key_doc" (string) whose SHA-256 equals key,
 * so a body stored under another key or altered in transit is refused. result_out optional.
 * Errors: AQS_ERR_CORRUPT ("remote action record <key12>: <why>"). */
aqs_status aqs_remote_action_check(const aqs_digest *key, const void *body, size_t len,
                                   aqs_digest *result_out, aqs_err *err);

/* Refs travel as small JSON documents under /ac: the record published under `name` has the key
 * SHA-256("aqs-ref:" + name) and the body
 *   {"actions":["sha256:<key>",...],"kind":"aqs-ref","name":<name>,"ref":<ref>,"target":"sha256:<hex>"}
 * name: what pull asks for (a build's full ref, or its short alias recipe/<recipe>); ref: the
 * local ref pull sets (the build's full ref); actions: the action records push sent with the
 * target, so that pull can restore them.
 * ref_key fills key; ref_encode returns the body (malloc'd, NUL-terminated; NULL when out of memory). */
void aqs_remote_ref_key(const char *name, aqs_digest *key);
char *aqs_remote_ref_encode(const char *name, const char *ref, const aqs_digest *target,
                            const aqs_digest *actions, size_t n_actions);

typedef struct aqs_remote_ref {
  char ref[256];          /* the local ref name to set (a ref name: printable, no spaces) */
  aqs_digest target;
  aqs_digest *actions;    /* malloc'd (NULL when none); free with aqs_remote_ref_free */
  size_t n_actions;
} aqs_remote_ref;
void aqs_remote_ref_free(aqs_remote_ref *r);

/* Validates a downloaded ref body for name; out (may be NULL) receives it.
 * Errors: AQS_ERR_CORRUPT (not a ref record, another name, a bad ref name, target or action
 * digest: message says which), AQS_ERR_NOMEM. */
aqs_status aqs_remote_ref_check(const char *name, const void *body, size_t len, aqs_remote_ref *out,
                                aqs_err *err);

/* Whether downloaded object bytes are a manifest (store.h's convention: a JSON object with a
 * "children" array of "sha256:<hex>" strings). Returns 1 and a malloc'd array in *children
 * (caller frees; NULL when the array is empty) with *n; 0 for any other bytes (opaque object);
 * -1 when memory ran out. Bytes over 64 MiB are treated as opaque without parsing. */
int aqs_remote_manifest_children(const void *data, size_t len, aqs_digest **children, size_t *n);

#endif
