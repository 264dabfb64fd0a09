/* cli/cli_util.h: helpers shared by subcommand files: opening the workspace's store with the
 * standard error messages, option-parsing conventions, JSON output and human-readable sizes.
 * Any cmd_*.c may use these (the store commands do; porcelain commands should too). */
#ifndef AQS_CLI_UTIL_H
#define AQS_CLI_UTIL_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "common/workspace.h"
#include "store/store.h"

/* Exit statuses: 0 success, 1 failure (error printed), 2 usage error. */
#define AQS_EXIT_OK 0
#define AQS_EXIT_FAIL 1
#define AQS_EXIT_USAGE 2

/* Loads the workspace (.aqstore discovery, $AQS_STORE, --store). On failure prints
 * "aqs <cmd>: <file>:<line>: ..." and returns AQS_EXIT_FAIL; on success 0 (free ws after). */
int aqs_cli_load_workspace(const char *cmd, aqs_workspace *ws);

/* For aqs_cli_open_store: open read-write when this user can write the store's index (reads then
 * record access times for gc and quarantine damaged objects), read-only otherwise (a teammate's
 * store, a read-only mount). For commands that mostly read but may repair: cat, checkout, diff. */
#define AQS_CLI_WRITE_IF_ALLOWED 0x10000u

/* Loads the workspace and opens its store. flags: 0 (read-write), AQS_STORE_RDONLY for commands
 * that only read (ls, show, stats, plan: they never write, not even counters), or
 * AQS_CLI_WRITE_IF_ALLOWED. On failure prints
 * a message and returns AQS_EXIT_FAIL; a missing store reads
 *   "aqs <cmd>: no store at <path> (from <origin>); run `aqs init` to create one".
 * On success returns 0; the caller closes *store and frees ws. */
int aqs_cli_open_store(const char *cmd, unsigned flags, aqs_workspace *ws, aqs_store **store);
/* The workspace's [secondary] stores and [remote] are attached to the store (cli/cli_tiers.h);
 * with this bit in flags they are only probed, never copied from (aqs plan). */
#define AQS_CLI_TIERS_PROBE 0x100u

/* Prints "aqs <cmd>: <err->msg>" and returns AQS_EXIT_FAIL. */
int aqs_cli_fail_err(const char *cmd, const aqs_err *err);

/* Prints "aqs <cmd>: <msg> (see aqs <cmd> --help)" and returns AQS_EXIT_USAGE. */
int aqs_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The one message for an option getopt_long rejected (call it with opterr = 0 when getopt_long
 * returns '?' or ':'): "option '--out' needs a value" for a known option without its value,
 * else "unknown option '--bogus'" (plus the nearest known option when one is close). Prints
 * "aqs <cmd>: <message> (see aqs <cmd> --help)" and returns AQS_EXIT_USAGE. */
struct option;
int aqs_cli_bad_option(const char *cmd, const struct option *longopts, char **argv);

/* 1 when argv holds --help or -h (before any "--"). */
int aqs_cli_wants_help(int argc, char **argv);

/* Writes doc to stdout (2-space indent, keys sorted, trailing newline) and decrefs it.
 * Returns AQS_EXIT_OK, or AQS_EXIT_FAIL if doc is NULL (out of memory) or writing failed. */
int aqs_cli_print_json(const char *cmd, json_t *doc);

/* "0 B", "812 B", "1.5 KiB", "3.2 GiB". Returns buf (at least 32 bytes). */
char *aqs_cli_bytes(char *buf, size_t buf_len, uint64_t bytes);

/* "2026-11-24T07:10:00Z" for ns since the epoch (UTC). Returns buf (at least 32 bytes). */
char *aqs_cli_time(char *buf, size_t buf_len, int64_t ns);

/* Parses a non-negative decimal integer option value. Returns 0 on success, -1 otherwise. */
int aqs_cli_parse_u64(const char *text, uint64_t *out);

/* Name of an object kind: "inline", "zstd", "raw". */
const char *aqs_cli_kind_name(aqs_object_kind kind);

#endif
