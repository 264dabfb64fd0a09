/* common/progress.h: a progress line on stderr for long work (hashing, calibration, sensitivity,
 * export): "label  done/total unit  pct  rate  ETA". Redrawn in place at most ~10 times a second
 * when stderr is a terminal; when it is not (CI, pipes, logs) only the final summary line is printed.
 *
 * Usage (any thread may call aqs_progress_add; drawing is serialized internally):
 *     aqs_progress *p = aqs_progress_start("calibrate", total_tokens, "tok");
 *     for (...) { ...; aqs_progress_add(p, batch_tokens); }
 *     aqs_progress_finish(p);   // prints "calibrate  4096/4096 tok  100%  812 tok/s  5.0s", frees p
 *
 * Unit "B" is special: counts are shown as KiB/MiB/GiB and the rate as MB/s-style binary units.
 * total = 0 means unknown: no percentage and no ETA, just the count and rate.
 * A NULL aqs_progress* is accepted everywhere (no-op), so allocation failure needs no handling.
 * Environment: AQS_PROGRESS=never (print nothing) | always (redraw even when stderr is not a tty). */
#ifndef AQS_COMMON_PROGRESS_H
#define AQS_COMMON_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct aqs_progress aqs_progress;

/* Starts a progress line on stderr. label and unit are copied. Returns NULL on allocation failure
 * or when AQS_PROGRESS=never (both are valid handles for the calls below). */
aqs_progress *aqs_progress_start(const char *label, uint64_t total, const char *unit);

/* Like aqs_progress_start, writing to out instead of stderr; live = 1 redraws in place (as on a
 * terminal), live = 0 prints only the final line. For tests and for callers that own a stream. */
aqs_progress *aqs_progress_start_on(FILE *out, int live, const char *label, uint64_t total,
                                    const char *unit);

/* Adds n to the count (thread-safe) and redraws if enough time has passed. */
void aqs_progress_add(aqs_progress *p, uint64_t n);

/* Sets the count to done (monotonic callers only; thread-safe) and redraws if due. */
void aqs_progress_set(aqs_progress *p, uint64_t done);

/* Changes the total (e.g. once it becomes known); 0 = unknown. */
void aqs_progress_set_total(aqs_progress *p, uint64_t total);

/* Prints the final line (always, unless AQS_PROGRESS=never), ends it with a newline and frees p. */
void aqs_progress_finish(aqs_progress *p);

/* Ends the line without the summary (e.g. on error: the caller prints its own message) and frees p. */
void aqs_progress_abort(aqs_progress *p);

/* Formats one progress line (no newline) into buf: the pure part, exposed for tests.
 * elapsed_s is the time since start. Returns buf. Example outputs:
 *   "hash  512.0 MiB/1.0 GiB  50%  256.0 MiB/s  ETA 2s"
 *   "calibrate  96/128 tok  75%  48.0 tok/s  ETA 1s"
 *   "score  7 chunk  3.5 chunk/s"                             (total unknown)
 * final = 1 replaces the ETA with the total elapsed time ("in 2.0s"). */
char *aqs_progress_format(char *buf, size_t buf_len, const char *label, uint64_t done,
                          uint64_t total, const char *unit, double elapsed_s, int final);

#ifdef __cplusplus
}
#endif

#endif
