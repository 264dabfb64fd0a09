/* common/err.h: the error convention shared by every module.
 * Functions that can fail return an aqs_status (0 = AQS_OK) and fill an aqs_err whose message
 * the CLI prints as is ("aqs: <msg>"). The message names the file, digest, tensor or line. */
#ifndef AQS_COMMON_ERR_H
#define AQS_COMMON_ERR_H

#include <stdarg.h>

typedef enum aqs_status {
  AQS_OK = 0,
  AQS_ERR_IO = 1,          /* read/write/open failed; errno text is in the message */
  AQS_ERR_NOT_FOUND = 2,   /* missing file, digest, ref, key, tensor */
  AQS_ERR_INVALID = 3,     /* malformed input: bad header, bad config line, bad argument */
  AQS_ERR_CORRUPT = 4,     /* stored bytes do not match their digest or checksum */
  AQS_ERR_NOMEM = 5,       /* host or device allocation failed */
  AQS_ERR_AMBIGUOUS = 6,   /* abbreviated digest or name matches several */
  AQS_ERR_UNSUPPORTED = 7, /* feature, dtype, architecture or filesystem not supported */
  AQS_ERR_BUSY = 8,        /* lock held / resource in use */
  AQS_ERR_NUMERIC = 9,     /* NaN/Inf or overflow in a computation */
  AQS_ERR_MISMATCH = 10,   /* a check failed (diff proof, shape vs config, ...) */
  AQS_ERR_INTERNAL = 11    /* a bug: an invariant did not hold */
} aqs_status;

#define AQS_ERR_MSG_MAX 1024

typedef struct aqs_err {
  aqs_status code;
  char msg[AQS_ERR_MSG_MAX];
} aqs_err;

/* Sets e (which may be NULL) to code + formatted message and returns code. */
aqs_status aqs_errf(aqs_err *e, aqs_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like aqs_errf, appending ": <strerror(errnum)>". */
aqs_status aqs_errno(aqs_err *e, aqs_status code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prepends context to an existing message ("reading x.safetensors: <old>"); returns e->code. */
aqs_status aqs_err_prefix(aqs_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Resets e to AQS_OK with an empty message. */
void aqs_err_clear(aqs_err *e);
/* Short name of a status code ("io", "not-found", ...). */
const char *aqs_status_name(aqs_status code);

#endif
