/* store/canon_json.h: canonical JSON bytes and the action-key helper.
 * Action keys must be equal on every machine for equal content, so the encoding is defined here
 * once: keys sorted bytewise, no white space, integers in decimal, reals "%.17g", UTF-8 strings. */
#ifndef AQS_STORE_CANON_JSON_H
#define AQS_STORE_CANON_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"
#include "store/digest.h"

/* Encodes value canonically:
 *   - objects: members sorted by key, comparing the keys' UTF-8 bytes (unsigned, shorter first
 *     on a common prefix); "{" "k" ":" v "," ... "}", no white space anywhere;
 *   - arrays in their order; true/false/null as such;
 *   - integers (json_integer) in decimal ("-12"); reals (json_real) with "%.17g" in the C locale
 *     (so 1.0 encodes as "1" and 0.1 as "0.10000000000000001"); NaN and +-Inf are refused;
 *   - strings as UTF-8 (non-ASCII characters are NOT \u-escaped); escaped are only '"' and '\\'
 *     (as \" and \\), \b \f \n \r \t, and other bytes below 0x20 as \u00XX (lowercase hex).
 * On success *out is a malloc'd NUL-terminated buffer (caller frees) of *len_out bytes (may be NULL).
 * Errors: AQS_ERR_INVALID (NaN/Inf, or a string/key that is not valid UTF-8), AQS_ERR_NOMEM. */
aqs_status aqs_json_canonical(const json_t *value, char **out, size_t *len_out, aqs_err *err);

/* The action key of a stage run: SHA-256 of the canonical encoding of
 *   {"inputs": inputs, "params": params, "stage": stage, "stage_version": stage_version}
 * inputs: a JSON object name -> digest string ("sha256:<64 hex>", or bare 64 hex; both are
 *   normalized to "sha256:<lowercase hex>" in the document); NULL means {}.
 * params: any JSON value (normally an object); NULL means {}.
 * Only content goes in: never paths, user names, hosts or clocks (those are provenance).
 * key_out receives the key; key_doc_out (optional, may be NULL) receives the malloc'd canonical
 * document (caller frees): store it with aqs_action_put so `aqs plan` can diff inputs/params.
 * Errors: AQS_ERR_INVALID (empty stage, inputs not an object, an input that is not a digest,
 * non-canonicalizable params; the message names the input), AQS_ERR_NOMEM. */
aqs_status aqs_action_key(const char *stage, const char *stage_version, const json_t *inputs,
                          const json_t *params, aqs_digest *key_out, char **key_doc_out,
                          aqs_err *err);

#endif
