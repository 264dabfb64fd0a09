/* tests/testutil.h: small helpers shared by the cmocka tests (temp dirs, fixture paths, skips).
 * Every test includes this after <cmocka.h>'s prerequisites. */
#ifndef AQS_TESTUTIL_H
#define AQS_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Exit code ctest treats as "skipped" (SKIP_RETURN_CODE). */
#define AQS_TEST_SKIP 77

/* A fresh empty directory under $TMPDIR (or /tmp); caller frees the string. Aborts on failure. */
char *tu_mkdtemp(const char *tag);
/* rm -rf path (refuses "/" and empty); returns 0 on success. */
int tu_rm_rf(const char *path);
/* Path to a file in the source tree: $AQS_SOURCE_DIR/rel (static buffer, valid until next call). */
const char *tu_src_path(const char *rel);
/* Path to ../shared/rel when present, else NULL after printing "skipping: <path> missing". */
const char *tu_shared_path(const char *rel);
/* Path of the aqs binary ($AQS_BIN). */
const char *tu_aqs_bin(void);
/* Writes len bytes to path (creating/truncating); aborts on failure. */
void tu_write_file(const char *path, const void *data, size_t len);
/* Reads a whole file (malloc'd, NUL-terminated); NULL if missing. */
char *tu_read_file(const char *path, size_t *len_out);
/* Runs a shell command, captures stdout+stderr (malloc'd) and returns the exit status. */
int tu_run(const char *cmd, char **output);
/* Writes the synthetic checkpoint `preset` (seed) into dir with the aqs binary; returns 0, or
 * prints the command and its output and returns its exit status. */
int tu_synth_model(const char *preset, int seed, const char *dir);

#endif
