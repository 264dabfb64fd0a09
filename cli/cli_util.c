/* cli/cli_util.c: implementation of cli_util.h: workspace + store opening with the standard
 * messages, JSON printing, and the small formatting helpers the subcommands share. */
#include "cli/cli_util.h"

#include "cli/cli.h"
#include "cli/cli_tiers.h"
#include "cli/suggest.h"

#include <getopt.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int aqs_cli_fail_err(const char *cmd, const aqs_err *err) {
  return aqs_cli_fail(cmd, "%s", err->msg[0] ? err->msg : aqs_status_name(err->code));
}

int aqs_cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "aqs %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (see aqs %s --help)\n", cmd);
  va_end(ap);
  return AQS_EXIT_USAGE;
}

int aqs_cli_bad_option(const char *cmd, const struct option *longopts, char **argv) {
  const char *arg = optind > 0 ? argv[optind - 1] : "?";
  char name[128];
  snprintf(name, sizeof name, "%s", arg);
  char *eq = strchr(name, '=');
  if (eq) *eq = '\0';
  const char *names[64];
  size_t n = 0;
  for (size_t i = 0; longopts && longopts[i].name && n < 64; i++) {
    if (strncmp(name, "--", 2) == 0 && strcmp(name + 2, longopts[i].name) == 0 &&
        longopts[i].has_arg == required_argument)
      return aqs_cli_usage_error(cmd, "option '%s' needs a value", name);
    names[n++] = longopts[i].name;
  }
  if (optopt && optopt != '?' && arg[0] == '-' && arg[1] != '-')
    return aqs_cli_usage_error(cmd, "option '-%c' is unknown or needs a value", optopt);
  const char *near = strncmp(name, "--", 2) == 0 ? aqs_suggest(name + 2, names, n) : NULL;
  if (near) return aqs_cli_usage_error(cmd, "unknown option '%s'; did you mean '--%s'?", name, near);
  return aqs_cli_usage_error(cmd, "unknown option '%s'", name);
}

int aqs_cli_wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) return 0;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
  }
  return 0;
}

int aqs_cli_load_workspace(const char *cmd, aqs_workspace *ws) {
  aqs_err err = {0};
  if (aqs_workspace_load(ws, aqs_cli.store_override, &err) != AQS_OK)
    return aqs_cli_fail_err(cmd, &err);
  return AQS_EXIT_OK;
}

/* The store repaired itself (a damaged object quarantined): say so on stderr. */
static void print_notice(const char *msg, void *user) {
  fprintf(stderr, "aqs %s: %s\n", (const char *)user, msg);
}

int aqs_cli_open_store(const char *cmd, unsigned flags, aqs_workspace *ws, aqs_store **store) {
  *store = NULL;
  int rc = aqs_cli_load_workspace(cmd, ws);
  if (rc) return rc;
  struct stat st;
  char conf[4200];
  snprintf(conf, sizeof conf, "%s/aqs.conf", ws->store_path);
  if (stat(conf, &st) != 0 && errno == ENOENT) {
    rc = aqs_cli_fail(cmd, "no store at %s (from %s); run `aqs init` to create one",
                      ws->store_path, aqs_store_origin_name(ws));
    aqs_workspace_free(ws);
    return rc;
  }
  int probe_tiers = (flags & AQS_CLI_TIERS_PROBE) != 0;
  flags &= ~AQS_CLI_TIERS_PROBE;
  if (flags & AQS_CLI_WRITE_IF_ALLOWED) {
    char index_dir[4200];
    snprintf(index_dir, sizeof index_dir, "%s/index", ws->store_path);
    flags = access(index_dir, W_OK) == 0 ? 0 : AQS_STORE_RDONLY;
  }
  aqs_err err = {0};
  if (aqs_store_open(ws->store_path, flags, store, &err) != AQS_OK) {
    if (err.code == AQS_ERR_NOT_FOUND)
      rc = aqs_cli_fail(cmd, "no store at %s (from %s); run `aqs init` to create one",
                        ws->store_path, aqs_store_origin_name(ws));
    else
      rc = aqs_cli_fail_err(cmd, &err);
    aqs_workspace_free(ws);
    *store = NULL;
    return rc;
  }
  aqs_store_set_notice(*store, print_notice, (void *)cmd);
  if (aqs_cli_attach_tiers(cmd, ws, *store, probe_tiers)) {
    aqs_store_close(*store);
    aqs_workspace_free(ws);
    *store = NULL;
    return AQS_EXIT_FAIL;
  }
  return AQS_EXIT_OK;
}

int aqs_cli_print_json(const char *cmd, json_t *doc) {
  if (!doc) return aqs_cli_fail(cmd, "out of memory building the JSON output");
  int rc = json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(doc);
  if (rc != 0 || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
    return aqs_cli_fail(cmd, "writing to stdout failed: %s", strerror(errno));
  return AQS_EXIT_OK;
}

char *aqs_cli_bytes(char *buf, size_t buf_len, uint64_t bytes) {
  static const char *const suffix[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = (double)bytes;
  size_t s = 0;
  while (v >= 1024.0 && s + 1 < sizeof suffix / sizeof suffix[0]) {
    v /= 1024.0;
    s++;
  }
  if (s == 0) snprintf(buf, buf_len, "%" PRIu64 " B", bytes);
  else snprintf(buf, buf_len, "%.1f %s", v, suffix[s]);
  return buf;
}

char *aqs_cli_time(char *buf, size_t buf_len, int64_t ns) {
  time_t secs = (time_t)(ns / 1000000000LL);
  struct tm tm;
  if (!gmtime_r(&secs, &tm) || strftime(buf, buf_len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(buf, buf_len, "?");
  return buf;
}

int aqs_cli_parse_u64(const char *text, uint64_t *out) {
  if (!text || text[0] < '0' || text[0] > '9') return -1;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno || *end) return -1;
  *out = v;
  return 0;
}

const char *aqs_cli_kind_name(aqs_object_kind kind) {
  switch (kind) {
  case AQS_OBJ_INLINE_ZSTD: return "inline";
  case AQS_OBJ_FILE_ZSTD: return "zstd";
  case AQS_OBJ_FILE_RAW: return "raw";
  }
  return "?";
}
