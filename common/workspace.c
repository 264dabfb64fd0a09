/* common/workspace.c: .aqstore discovery (walk up like git), INI parsing with inih against a table
 * of known keys (anything else is an error naming file and line), value validation, and the
 * store-location precedence --store > $AQS_STORE > [store] path > default. */
#include "common/workspace.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ini_text.h"

typedef enum value_kind {
  KIND_PATH,       /* one path, relative to the .aqstore's directory */
  KIND_PATH_LIST,  /* comma-separated paths; repeated lines append */
  KIND_LEVEL,      /* zstd compression level */
  KIND_SIZE,       /* byte size with optional K/M/G/T suffix */
  KIND_LINK_MODE,  /* reflink | hardlink | copy */
  KIND_URL,        /* http:// or https:// */
  KIND_BOOL,       /* true | false */
  KIND_ENV_NAME,   /* an environment variable name: [A-Za-z_][A-Za-z0-9_]* */
  KIND_COUNT       /* a small non-negative integer (0..3600) */
} value_kind;

typedef struct known_key {
  const char *section;
  const char *key;
  value_kind kind;
} known_key;

/* Every key .aqstore may hold (documented with defaults in .aqstore.example). */
static const known_key known_keys[] = {
  {"store", "path", KIND_PATH},
  {"store", "compression_level", KIND_LEVEL},
  {"store", "size_limit", KIND_SIZE},
  {"store", "link_mode", KIND_LINK_MODE},
  {"store", "inline_threshold", KIND_SIZE},
  {"secondary", "stores", KIND_PATH_LIST},
  {"remote", "url", KIND_URL},
  {"remote", "upload", KIND_BOOL},
  {"remote", "token_env", KIND_ENV_NAME},
  {"remote", "timeout", KIND_COUNT},
  {"remote", "retries", KIND_COUNT},
  {"model", "path", KIND_PATH},
  {"data", "captions", KIND_PATH},
  {"data", "images", KIND_PATH},
  {"data", "images_root", KIND_PATH},
  {"recipes", "path", KIND_PATH},
};

/* ---- small helpers ---- */

static char *current_dir(void) { return getcwd(NULL, 0); }

/* Lexical clean-up of an absolute path in place: "//" and "/./" collapse, "x/.." drops x,
 * no trailing slash ("/" stays). Like Go's filepath.Clean; symlinks are not consulted (as
 * `cd -L` does), so messages show the path the user wrote, minus noise. */
static void normalize_path(char *path) {
  size_t out = 0; /* length of the cleaned prefix, which always starts with '/' */
  const char *p = path;
  while (*p) {
    while (*p == '/') p++;
    const char *seg = p;
    while (*p && *p != '/') p++;
    size_t len = (size_t)(p - seg);
    if (len == 0 || (len == 1 && seg[0] == '.')) continue;
    if (len == 2 && seg[0] == '.' && seg[1] == '.') {
      while (out > 0 && path[out - 1] != '/') out--; /* drop the last component */
      if (out > 0) out--;                            /* and its slash */
      continue;
    }
    path[out++] = '/';
    memmove(path + out, seg, len);
    out += len;
  }
  if (out == 0) path[out++] = '/';
  path[out] = '\0';
}

/* base + "/" + rel, or rel if absolute; "~/x" expands with $HOME. malloc'd. */
static char *join_path(const char *base, const char *rel) {
  const char *home = getenv("HOME");
  char *out = NULL;
  if (rel[0] == '/') {
    out = strdup(rel);
  } else if (rel[0] == '~' && (rel[1] == '/' || rel[1] == '\0') && home && home[0]) {
    if (asprintf(&out, "%s%s", home, rel + 1) < 0) out = NULL;
  } else {
    size_t bl = strlen(base);
    while (rel[0] == '.' && rel[1] == '/') rel += 2; /* "./x" -> "x" */
    if (strcmp(rel, ".") == 0) rel = "";
    if (asprintf(&out, "%s%s%s", base, (bl && base[bl - 1] == '/') || !rel[0] ? "" : "/", rel) < 0)
      out = NULL;
  }
  if (out && out[0] == '/') normalize_path(out);
  return out;
}

static char *dir_of(const char *path) {
  char *d = strdup(path);
  if (!d) return NULL;
  char *slash = strrchr(d, '/');
  if (slash == d) d[1] = '\0';
  else if (slash) *slash = '\0';
  else strcpy(d, ".");
  return d;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = '\0';
  return s;
}

int aqs_parse_size(const char *text, uint64_t *bytes_out) {
  if (!text) return -1;
  while (*text == ' ') text++;
  if (*text < '0' || *text > '9') return -1;
  errno = 0;
  char *end;
  unsigned long long n = strtoull(text, &end, 10);
  if (errno) return -1;
  unsigned shift = 0;
  switch (*end) {
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  case 't': case 'T': shift = 40; end++; break;
  default: break;
  }
  if (shift && *end == 'i') end++;
  if (*end == 'B' || *end == 'b') end++;
  while (*end == ' ') end++;
  if (*end) return -1;
  if (shift && n > (UINT64_MAX >> shift)) return -1;
  *bytes_out = (uint64_t)n << shift;
  return 0;
}

const char *aqs_link_mode_name(aqs_link_mode mode) {
  switch (mode) {
  case AQS_LINK_REFLINK: return "reflink";
  case AQS_LINK_HARDLINK: return "hardlink";
  case AQS_LINK_COPY: return "copy";
  }
  return "?";
}

int aqs_link_mode_parse(const char *text) {
  if (strcmp(text, "reflink") == 0) return AQS_LINK_REFLINK;
  if (strcmp(text, "hardlink") == 0) return AQS_LINK_HARDLINK;
  if (strcmp(text, "copy") == 0) return AQS_LINK_COPY;
  return -1;
}

const char *aqs_store_origin_name(const aqs_workspace *ws) {
  switch (ws->store_origin) {
  case AQS_STORE_FROM_FLAG: return "--store";
  case AQS_STORE_FROM_ENV: return "$AQS_STORE";
  case AQS_STORE_FROM_CONFIG: return ws->config_path ? ws->config_path : ".aqstore";
  case AQS_STORE_FROM_DEFAULT: return "default";
  }
  return "?";
}

/* ---- lifecycle ---- */

void aqs_workspace_free(aqs_workspace *ws) {
  if (!ws) return;
  free(ws->config_path);
  free(ws->root);
  free(ws->store_path);
  for (size_t i = 0; i < ws->n_secondary_stores; i++) free(ws->secondary_stores[i]);
  free(ws->secondary_stores);
  free(ws->remote_url);
  free(ws->remote_token_env);
  free(ws->model_path);
  free(ws->data_captions);
  free(ws->data_images);
  free(ws->data_images_root);
  free(ws->recipes_path);
  for (size_t i = 0; i < ws->n_entries; i++) {
    free(ws->entries[i].section);
    free(ws->entries[i].key);
    free(ws->entries[i].value);
  }
  free(ws->entries);
  memset(ws, 0, sizeof *ws);
}

aqs_status aqs_workspace_init_defaults(aqs_workspace *ws, aqs_err *err) {
  memset(ws, 0, sizeof *ws);
  ws->compression_level = 3;
  ws->size_limit_bytes = 0;
  ws->link_mode = AQS_LINK_REFLINK;
  ws->inline_threshold_bytes = 65536;
  ws->remote_timeout_s = 30;
  ws->remote_retries = 3;
  ws->root = current_dir();
  if (!ws->root) return aqs_errno(err, AQS_ERR_IO, errno, "cannot read the current directory");
  ws->store_path = join_path(ws->root, AQS_DEFAULT_STORE_DIR);
  ws->store_origin = AQS_STORE_FROM_DEFAULT;
  if (!ws->store_path) {
    aqs_workspace_free(ws);
    return aqs_errf(err, AQS_ERR_NOMEM, "out of memory");
  }
  return AQS_OK;
}

/* ---- parsing ---- */

typedef struct parse_ctx {
  aqs_workspace *ws;
  const char *path;
  aqs_ini_text src;      /* the text; src.line: the line inih was handed last */
  int error_line;        /* first line the handler (or the section check) rejected, 0 if none */
  char error_msg[512];
} parse_ctx;

static int handler_fail(parse_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int section_known(const char *section);

/* The line reader: inih calls the handler for keys only, so a "[section]" line without keys is
 * checked here, or an unknown empty section would pass silently. */
static char *section_checking_reader(char *str, int num, void *stream) {
  parse_ctx *ctx = stream;
  if (!aqs_ini_text_reader(str, num, &ctx->src)) return NULL;
  const char *p = str + strspn(str, " \t");
  const char *end = p[0] == '[' ? strchr(p, ']') : NULL;
  if (end) {
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(end - p - 1), p + 1);
    if (!section_known(name)) handler_fail(ctx, "unknown section [%s]", name);
  }
  return str;
}

static int handler_fail(parse_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int handler_fail(parse_ctx *ctx, const char *fmt, ...) {
  if (!ctx->error_line) {
    ctx->error_line = ctx->src.line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->error_msg, sizeof ctx->error_msg, fmt, ap);
    va_end(ap);
  }
  return 0;
}

static const known_key *find_known(const char *section, const char *key) {
  for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++)
    if (strcmp(known_keys[i].section, section) == 0 && strcmp(known_keys[i].key, key) == 0)
      return &known_keys[i];
  return NULL;
}

static int section_known(const char *section) {
  for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++)
    if (strcmp(known_keys[i].section, section) == 0) return 1;
  return 0;
}

static aqs_workspace_entry *find_entry(const aqs_workspace *ws, const char *section,
                                       const char *key) {
  for (size_t i = ws->n_entries; i-- > 0;)
    if (strcmp(ws->entries[i].section, section) == 0 && strcmp(ws->entries[i].key, key) == 0)
      return &ws->entries[i];
  return NULL;
}

static int add_entry(aqs_workspace *ws, const char *section, const char *key, const char *value,
                     int line) {
  aqs_workspace_entry *grown = realloc(ws->entries, (ws->n_entries + 1) * sizeof *grown);
  if (!grown) return -1;
  ws->entries = grown;
  aqs_workspace_entry *e = &ws->entries[ws->n_entries];
  e->section = strdup(section);
  e->key = strdup(key);
  e->value = strdup(value);
  e->line = line;
  if (!e->section || !e->key || !e->value) {
    free(e->section);
    free(e->key);
    free(e->value);
    return -1;
  }
  ws->n_entries++;
  return 0;
}

static int append_secondary(parse_ctx *ctx, const char *list) {
  aqs_workspace *ws = ctx->ws;
  char *copy = strdup(list);
  if (!copy) return handler_fail(ctx, "out of memory");
  int any = 0;
  char *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *item = trim(tok);
    if (!item[0]) continue;
    char *abs = join_path(ws->root, item);
    char **grown = realloc(ws->secondary_stores, (ws->n_secondary_stores + 1) * sizeof *grown);
    if (!abs || !grown) {
      free(abs);
      if (grown) ws->secondary_stores = grown;
      free(copy);
      return handler_fail(ctx, "out of memory");
    }
    ws->secondary_stores = grown;
    ws->secondary_stores[ws->n_secondary_stores++] = abs;
    any = 1;
  }
  free(copy);
  if (!any) return handler_fail(ctx, "[secondary] stores: empty list");
  return 1;
}

/* Applies one validated key to the typed fields. Returns 1 (inih: go on) or 0 after handler_fail. */
static int apply_value(parse_ctx *ctx, const known_key *k, const char *value) {
  aqs_workspace *ws = ctx->ws;
  switch (k->kind) {
  case KIND_PATH: {
    if (!value[0]) return handler_fail(ctx, "[%s] %s: empty path", k->section, k->key);
    char *abs = join_path(ws->root, value);
    if (!abs) return handler_fail(ctx, "out of memory");
    char **field = NULL;
    if (strcmp(k->section, "store") == 0) field = &ws->store_path;
    else if (strcmp(k->section, "model") == 0) field = &ws->model_path;
    else if (strcmp(k->section, "recipes") == 0) field = &ws->recipes_path;
    else if (strcmp(k->key, "captions") == 0) field = &ws->data_captions;
    else if (strcmp(k->key, "images") == 0) field = &ws->data_images;
    else field = &ws->data_images_root;
    free(*field);
    *field = abs;
    if (field == &ws->store_path) ws->store_origin = AQS_STORE_FROM_CONFIG;
    return 1;
  }
  case KIND_PATH_LIST:
    return append_secondary(ctx, value);
  case KIND_LEVEL: {
    char *end;
    errno = 0;
    long level = strtol(value, &end, 10);
    if (!value[0] || *end || errno || level < 1 || level > 19)
      return handler_fail(ctx, "[store] compression_level: '%s' is not a zstd level 1..19", value);
    ws->compression_level = (int)level;
    return 1;
  }
  case KIND_SIZE: {
    uint64_t bytes;
    if (aqs_parse_size(value, &bytes) != 0)
      return handler_fail(ctx, "[%s] %s: '%s' is not a size (e.g. 0, 65536, 64K, 500M, 10G)",
                          k->section, k->key, value);
    if (strcmp(k->key, "size_limit") == 0) ws->size_limit_bytes = bytes;
    else ws->inline_threshold_bytes = bytes;
    return 1;
  }
  case KIND_LINK_MODE: {
    int mode = aqs_link_mode_parse(value);
    if (mode < 0)
      return handler_fail(ctx, "[store] link_mode: '%s' is not one of reflink, hardlink, copy",
                          value);
    ws->link_mode = (aqs_link_mode)mode;
    return 1;
  }
  case KIND_URL:
    if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0)
      return handler_fail(ctx, "[remote] url: '%s' must start with http:// or https://", value);
    free(ws->remote_url);
    ws->remote_url = strdup(value);
    if (!ws->remote_url) return handler_fail(ctx, "out of memory");
    return 1;
  case KIND_BOOL:
    if (strcmp(value, "true") == 0) ws->remote_upload = 1;
    else if (strcmp(value, "false") == 0) ws->remote_upload = 0;
    else return handler_fail(ctx, "[%s] %s: '%s' is not true or false", k->section, k->key, value);
    return 1;
  case KIND_ENV_NAME: {
    int ok = value[0] && !(value[0] >= '0' && value[0] <= '9');
    for (const char *c = value; ok && *c; c++)
      ok = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_';
    if (!ok)
      return handler_fail(ctx, "[%s] %s: '%s' is not an environment variable name (the token itself "
                          "never goes in this file)", k->section, k->key, value);
    free(ws->remote_token_env);
    ws->remote_token_env = strdup(value);
    if (!ws->remote_token_env) return handler_fail(ctx, "out of memory");
    return 1;
  }
  case KIND_COUNT: {
    char *end;
    errno = 0;
    long n = strtol(value, &end, 10);
    if (!value[0] || *end || errno || n < 0 || n > 3600)
      return handler_fail(ctx, "[%s] %s: '%s' is not a whole number 0..3600", k->section, k->key, value);
    if (strcmp(k->key, "timeout") == 0) ws->remote_timeout_s = (int)n;
    else ws->remote_retries = (int)n;
    return 1;
  }
  }
  return handler_fail(ctx, "internal: unhandled key kind");
}

static int ini_handler_fn(void *user, const char *section, const char *name, const char *value) {
  parse_ctx *ctx = user;
  if (ctx->error_line) return 0; /* report only the first problem */
  if (!section[0]) return handler_fail(ctx, "key '%s' outside any [section]", name);
  if (!section_known(section)) return handler_fail(ctx, "unknown section [%s]", section);
  const known_key *k = find_known(section, name);
  if (!k) return handler_fail(ctx, "unknown key '%s' in section [%s]", name, section);
  aqs_workspace_entry *prev = find_entry(ctx->ws, section, name);
  if (prev && k->kind != KIND_PATH_LIST)
    return handler_fail(ctx, "duplicate key '%s' in section [%s] (first set on line %d)", name,
                        section, prev->line);
  if (!apply_value(ctx, k, value)) return 0;
  if (add_entry(ctx->ws, section, name, value, ctx->src.line) != 0)
    return handler_fail(ctx, "out of memory");
  return 1;
}

aqs_status aqs_workspace_parse_file(aqs_workspace *ws, const char *path, aqs_err *err) {
  char *text;
  aqs_status rd = aqs_ini_text_load(path, AQS_INPUT_WORKSPACE, &text, err);
  if (rd != AQS_OK) return rd;
  char *cwd = NULL;
  char *abs_path = path[0] == '/' ? strdup(path) : ((cwd = current_dir()) ? join_path(cwd, path) : NULL);
  free(cwd);
  char *root = abs_path ? dir_of(abs_path) : NULL;
  if (!abs_path || !root) {
    free(text);
    free(abs_path);
    free(root);
    return aqs_errf(err, AQS_ERR_NOMEM, "out of memory reading %s", path);
  }
  free(ws->config_path);
  free(ws->root);
  ws->config_path = abs_path;
  ws->root = root;
  /* The default store location follows the workspace root. */
  if (ws->store_origin == AQS_STORE_FROM_DEFAULT) {
    char *def = join_path(root, AQS_DEFAULT_STORE_DIR);
    if (def) {
      free(ws->store_path);
      ws->store_path = def;
    }
  }

  parse_ctx ctx = {.ws = ws, .path = path, .src = {.text = text}};
  int syntax_line = ini_parse_stream(section_checking_reader, &ctx, ini_handler_fn, &ctx);
  free(text);
  if (syntax_line < 0) return aqs_errf(err, AQS_ERR_NOMEM, "out of memory parsing %s", path);

  /* Report whichever problem comes first in the file. */
  int first = 0;
  const char *what = NULL;
  char buf[96];
  if (ctx.src.overlong_line) {
    first = ctx.src.overlong_line;
    snprintf(buf, sizeof buf, "line longer than %d characters", INI_MAX_LINE - 2);
    what = buf;
  }
  if (ctx.error_line && (!first || ctx.error_line < first)) {
    first = ctx.error_line;
    what = ctx.error_msg;
  }
  if (syntax_line > 0 && (!first || syntax_line < first)) {
    first = syntax_line;
    what = "malformed line (expected '[section]', 'key = value' or a ';' comment)";
  }
  if (first) return aqs_errf(err, AQS_ERR_INVALID, "%s:%d: %s", path, first, what);
  return AQS_OK;
}

char *aqs_workspace_find(const char *start_dir) {
  char *dir = realpath(start_dir, NULL);
  if (!dir) return NULL;
  for (;;) {
    char *candidate = join_path(dir, AQS_WORKSPACE_FILE);
    struct stat st;
    if (candidate && stat(candidate, &st) == 0 && S_ISREG(st.st_mode)) {
      free(dir);
      return candidate;
    }
    free(candidate);
    if (strcmp(dir, "/") == 0) break;
    char *parent = dir_of(dir);
    free(dir);
    if (!parent) return NULL;
    dir = parent;
  }
  free(dir);
  return NULL;
}

aqs_status aqs_workspace_load_from(aqs_workspace *ws, const char *start_dir,
                                   const char *store_override, aqs_err *err) {
  aqs_status st = aqs_workspace_init_defaults(ws, err);
  if (st != AQS_OK) return st;
  char *config = aqs_workspace_find(start_dir);
  if (config) {
    st = aqs_workspace_parse_file(ws, config, err);
    free(config);
    if (st != AQS_OK) {
      aqs_workspace_free(ws);
      return st;
    }
  }
  const char *env = getenv("AQS_STORE");
  const char *chosen = NULL;
  aqs_store_origin origin = ws->store_origin;
  if (store_override && store_override[0]) {
    chosen = store_override;
    origin = AQS_STORE_FROM_FLAG;
  } else if (env && env[0]) {
    chosen = env;
    origin = AQS_STORE_FROM_ENV;
  }
  if (chosen) {
    char *cwd = current_dir();
    char *abs = cwd ? join_path(cwd, chosen) : NULL;
    free(cwd);
    if (!abs) {
      aqs_workspace_free(ws);
      return aqs_errno(err, AQS_ERR_IO, errno, "cannot resolve store path %s", chosen);
    }
    free(ws->store_path);
    ws->store_path = abs;
    ws->store_origin = origin;
  }
  return AQS_OK;
}

aqs_status aqs_workspace_load(aqs_workspace *ws, const char *store_override, aqs_err *err) {
  return aqs_workspace_load_from(ws, ".", store_override, err);
}

const char *aqs_workspace_get(const aqs_workspace *ws, const char *section, const char *key) {
  aqs_workspace_entry *e = find_entry(ws, section, key);
  return e ? e->value : NULL;
}

char *aqs_workspace_get_path(const aqs_workspace *ws, const char *section, const char *key) {
  const char *v = aqs_workspace_get(ws, section, key);
  if (!v || !v[0]) return NULL;
  return join_path(ws->root, v);
}
