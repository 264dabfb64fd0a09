/* store/store_config.c: <store>/aqs.conf, the store-level settings (INI, [store] section) read
 * with inih at open and written by init. Sizes accept K/M/G/T suffixes (powers of 1024). */
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "store/store_internal.h"

void aqs_store_config_defaults(aqs_store_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->format_version = 1;
  cfg->zstd_level = 3;
  cfg->inline_max_bytes = 65536;
  cfg->size_limit_bytes = 0;
  cfg->map_size_bytes = 256ull << 20;
  cfg->shared = 0;
  cfg->umask = -1;
}

static int parse_size(const char *text, uint64_t *out) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno || end == text || text[0] == '-') return -1;
  uint64_t mult = 1;
  if (*end) {
    switch (*end) {
    case 'k': case 'K': mult = 1ull << 10; break;
    case 'm': case 'M': mult = 1ull << 20; break;
    case 'g': case 'G': mult = 1ull << 30; break;
    case 't': case 'T': mult = 1ull << 40; break;
    default: return -1;
    }
    end++;
    if (*end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -1;
  }
  if (v > UINT64_MAX / mult) return -1;
  *out = v * mult;
  return 0;
}

static int parse_bool(const char *text, int *out) {
  if (!strcasecmp(text, "true") || !strcasecmp(text, "yes") || !strcmp(text, "1")) *out = 1;
  else if (!strcasecmp(text, "false") || !strcasecmp(text, "no") || !strcmp(text, "0")) *out = 0;
  else return -1;
  return 0;
}

typedef struct conf_ctx {
  aqs_store_config *cfg;
  char problem[256];
} conf_ctx;

static int conf_handler(void *user, const char *section, const char *name, const char *value) {
  conf_ctx *c = user;
  aqs_store_config *cfg = c->cfg;
  if (strcmp(section, "store") != 0) return 1; /* other sections belong to later tiers */
  uint64_t n = 0;
  int ok = 0;
  if (!strcmp(name, "format")) {
    ok = parse_size(value, &n) == 0 && n >= 1 && n < 1000;
    cfg->format_version = (int)n;
  } else if (!strcmp(name, "zstd_level")) {
    ok = parse_size(value, &n) == 0 && n >= 1 && n <= 19;
    cfg->zstd_level = (int)n;
  } else if (!strcmp(name, "inline_max")) {
    ok = parse_size(value, &n) == 0 && n <= (64ull << 20);
    cfg->inline_max_bytes = n;
  } else if (!strcmp(name, "size_limit")) {
    ok = parse_size(value, &n) == 0;
    cfg->size_limit_bytes = n;
  } else if (!strcmp(name, "map_size")) {
    ok = parse_size(value, &n) == 0 && n >= (1ull << 20);
    cfg->map_size_bytes = n;
  } else if (!strcmp(name, "shared")) {
    ok = parse_bool(value, &cfg->shared) == 0;
  } else if (!strcmp(name, "umask")) {
    char *end = NULL;
    long m = strtol(value, &end, 8);
    ok = end != value && !*end && m >= 0 && m <= 0777;
    cfg->umask = (int)m;
  } else {
    snprintf(c->problem, sizeof c->problem, "unknown key '%s' in [store]", name);
    return 0;
  }
  if (!ok) {
    snprintf(c->problem, sizeof c->problem, "bad value '%s' for %s", value, name);
    return 0;
  }
  return 1;
}

aqs_status store_config_read(const char *conf_path, aqs_store_config *cfg, aqs_err *err) {
  aqs_store_config_defaults(cfg);
  FILE *f = fopen(conf_path, "r");
  if (!f)
    return aqs_errno(err, errno == ENOENT ? AQS_ERR_NOT_FOUND : AQS_ERR_IO, errno, "opening %s",
                     conf_path);
  conf_ctx c = {.cfg = cfg};
  int line = ini_parse_file(f, conf_handler, &c);
  fclose(f);
  if (line != 0)
    return aqs_errf(err, AQS_ERR_INVALID, "%s:%d: %s", conf_path, line,
                    c.problem[0] ? c.problem : "syntax error");
  return AQS_OK;
}

aqs_status store_config_write(const char *conf_path, const aqs_store_config *cfg, aqs_err *err) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", conf_path);
  FILE *f = fopen(tmp, "w");
  if (!f) return aqs_errno(err, AQS_ERR_IO, errno, "creating %s", tmp);
  fprintf(f,
          "# aqs store settings (written by aqs init; see docs/store-format.md)\n"
          "[store]\n"
          "format = %d\n"
          "zstd_level = %d\n"
          "inline_max = %llu\n"
          "size_limit = %llu\n"
          "map_size = %llu\n"
          "shared = %s\n",
          cfg->format_version, cfg->zstd_level, (unsigned long long)cfg->inline_max_bytes,
          (unsigned long long)cfg->size_limit_bytes, (unsigned long long)cfg->map_size_bytes,
          cfg->shared ? "true" : "false");
  if (cfg->umask >= 0) fprintf(f, "umask = %04o\n", (unsigned)cfg->umask);
  int bad = ferror(f);
  if (fflush(f) != 0 || fsync(fileno(f)) != 0) bad = 1;
  if (fclose(f) != 0) bad = 1;
  if (bad || rename(tmp, conf_path) != 0) {
    unlink(tmp);
    return aqs_errno(err, AQS_ERR_IO, errno, "writing %s", conf_path);
  }
  return AQS_OK;
}
