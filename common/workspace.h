/* common/workspace.h: the workspace settings of aqs: the `.aqstore` INI file (read with inih),
 * found by walking up from the current directory like git finds `.git`, and the store location,
 * overridable by `--store DIR` (first) and $AQS_STORE (second). See .aqstore.example for every
 * key and its default, and docs/cli.md for the precedence rules.
 *
 * Paths inside .aqstore are relative to the directory holding the .aqstore file; --store and
 * $AQS_STORE are relative to the current directory. All paths in aqs_workspace are absolute and
 * cleaned lexically ("a/./b/../c" -> "a/c"). */
#ifndef AQS_COMMON_WORKSPACE_H
#define AQS_COMMON_WORKSPACE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AQS_WORKSPACE_FILE ".aqstore"
#define AQS_DEFAULT_STORE_DIR ".aqs-cache"

/* How checkpoint files are materialized from the store (DVC-style). */
typedef enum aqs_link_mode {
  AQS_LINK_REFLINK = 0, /* copy-on-write clone; falls back to copy where unsupported */
  AQS_LINK_HARDLINK = 1,
  AQS_LINK_COPY = 2
} aqs_link_mode;

/* Where store_path came from (for messages like "no store at X (from $AQS_STORE)"). */
typedef enum aqs_store_origin {
  AQS_STORE_FROM_FLAG = 0,    /* --store DIR */
  AQS_STORE_FROM_ENV = 1,     /* $AQS_STORE */
  AQS_STORE_FROM_CONFIG = 2,  /* [store] path in .aqstore */
  AQS_STORE_FROM_DEFAULT = 3  /* <.aqstore dir or cwd>/.aqs-cache */
} aqs_store_origin;

typedef struct aqs_workspace_entry {
  char *section;
  char *key;
  char *value;   /* raw text as written (secondary stores: the last line's text) */
  int line;
} aqs_workspace_entry;

typedef struct aqs_workspace {
  char *config_path;          /* absolute path of the .aqstore read, or NULL if none was found */
  char *root;                 /* directory holding .aqstore; the current directory if none */
  char *store_path;           /* the store directory (not checked for existence) */
  aqs_store_origin store_origin;

  /* [store] */
  int compression_level;           /* zstd level 1..19; default 3 */
  uint64_t size_limit_bytes;       /* gc target; 0 = unlimited (default); "10G", "500M" accepted */
  aqs_link_mode link_mode;         /* default reflink */
  uint64_t inline_threshold_bytes; /* objects up to this size live inline in LMDB; default 65536 */
  /* [secondary] stores: read-only stores consulted after the main one, in order */
  char **secondary_stores;
  size_t n_secondary_stores;
  /* [remote] url: HTTP cache (bazel-remote style /cas and /ac); NULL = none */
  char *remote_url;
  int remote_upload;          /* [remote] upload = true|false: builds send new results; default 0 */
  char *remote_token_env;     /* [remote] token_env: variable holding the bearer token; NULL = none */
  int remote_timeout_s;       /* [remote] timeout: seconds without progress; default 30 */
  int remote_retries;         /* [remote] retries: extra tries on 5xx/timeouts; default 3 */
  /* [model] path: the source checkpoint directory; NULL = none */
  char *model_path;
  /* [data] captions (JSONL/text file), images (directory or list file), images_root */
  char *data_captions;
  char *data_images;
  char *data_images_root;
  /* [recipes] path: a directory of user recipes searched before the built-in ones; NULL = none */
  char *recipes_path;

  /* Every key=value as read (after validation), for aqs_workspace_get. */
  aqs_workspace_entry *entries;
  size_t n_entries;
} aqs_workspace;

/* Defaults everywhere, no config, store_path = <cwd>/.aqs-cache. Caller frees with _free. */
aqs_status aqs_workspace_init_defaults(aqs_workspace *ws, aqs_err *err);

/* The usual entry point: finds .aqstore from the current directory upward (stopping at the
 * filesystem root), parses it, then applies $AQS_STORE and store_override (--store, may be NULL).
 * Errors: AQS_ERR_INVALID "<file>:<line>: <what>" for a malformed line, an unknown section or key,
 * or a bad value; AQS_ERR_IO when .aqstore exists but cannot be read. On error ws is freed. */
aqs_status aqs_workspace_load(aqs_workspace *ws, const char *store_override, aqs_err *err);

/* Like aqs_workspace_load, starting the search in start_dir instead of the current directory. */
aqs_status aqs_workspace_load_from(aqs_workspace *ws, const char *start_dir,
                                   const char *store_override, aqs_err *err);

/* Parses one INI file into ws (which must come from aqs_workspace_init_defaults); sets
 * config_path and root to the file and its directory. No environment or override applied. */
aqs_status aqs_workspace_parse_file(aqs_workspace *ws, const char *path, aqs_err *err);

/* Finds .aqstore from start_dir upward; returns a malloc'd absolute path or NULL if none. */
char *aqs_workspace_find(const char *start_dir);

/* The raw value of section.key as written in .aqstore, or NULL if absent. For keys other modules
 * define later, add them to the known-key table in workspace.c (unknown keys are rejected). */
const char *aqs_workspace_get(const aqs_workspace *ws, const char *section, const char *key);

/* A path-valued key resolved against the .aqstore's directory (malloc'd), or NULL if absent. */
char *aqs_workspace_get_path(const aqs_workspace *ws, const char *section, const char *key);

/* "reflink" / "hardlink" / "copy"; and the reverse (returns -1 if unknown). */
const char *aqs_link_mode_name(aqs_link_mode mode);
int aqs_link_mode_parse(const char *text);

/* "--store", "$AQS_STORE", "<config path>", "default". */
const char *aqs_store_origin_name(const aqs_workspace *ws);

/* Parses a size like "0", "123", "64K", "500M", "10G", "1T", "10GiB", "10GB" (binary units).
 * Returns 0 on success, -1 if malformed or overflowing. */
int aqs_parse_size(const char *text, uint64_t *bytes_out);

/* Frees everything ws owns and zeroes it (safe on a zeroed or already-freed ws). */
void aqs_workspace_free(aqs_workspace *ws);

#ifdef __cplusplus
}
#endif

#endif
