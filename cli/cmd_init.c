/* cli/cmd_init.c: `aqs init [--shared] [DIR]`: creates an empty store (like git init). Without
 * DIR the store goes where the workspace says; in a directory with no .aqstore above it, init also
 * writes ./.aqstore so that commands run in subdirectories find the new store. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char init_usage[] =
    "usage: aqs init [--shared] [--json] [DIR]\n"
    "\n"
    "Creates an empty aqs store at DIR, or else at the workspace's store location: --store DIR,\n"
    "then $AQS_STORE, then [store] path in the nearest .aqstore, then ./.aqs-cache. When no\n"
    ".aqstore exists here or above and no location was given, also writes ./.aqstore (pointing\n"
    "at .aqs-cache) so that aqs finds the store from subdirectories. Running init on an existing\n"
    "store is harmless (it says so and changes nothing).\n"
    "\n"
    "The new store's settings (aqs.conf) take compression_level, inline_threshold and size_limit\n"
    "from the [store] section of .aqstore when set there.\n"
    "\n"
    "options:\n"
    "  --shared   group-shared store: group-writable setgid directories and umask 0002 recorded\n"
    "             in aqs.conf, so members of the directory's group can all write to it\n"
    "  --json     print {\"path\", \"created\", \"shared\", \"workspace_file\"} instead of text\n";

/* Writes a minimal .aqstore in the current directory. Returns 0 or prints and returns 1. */
static int write_workspace_file(const char *path) {
  static const char text[] =
      "; aqs workspace settings (see .aqstore.example in the aqs sources for every key).\n"
      "[store]\n"
      "path = " AQS_DEFAULT_STORE_DIR "\n";
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) return aqs_cli_fail("init", "cannot create %s: %s", path, strerror(errno));
  ssize_t n = write(fd, text, sizeof text - 1);
  int saved = errno;
  if (close(fd) != 0 || n != (ssize_t)(sizeof text - 1)) {
    unlink(path);
    return aqs_cli_fail("init", "cannot write %s: %s", path, strerror(n < 0 ? saved : EIO));
  }
  return 0;
}

/* mkdir -p of path's parent directory (the store directory itself is created by the store).
 * Returns 0 or prints and returns 1. */
static int make_parent_dirs(const char *path) {
  char buf[4200];
  snprintf(buf, sizeof buf, "%s", path);
  char *last = strrchr(buf, '/');
  if (!last || last == buf) return 0;
  *last = '\0';
  for (char *p = buf + 1; ; p++) {
    if (*p == '/' || *p == '\0') {
      char saved = *p;
      *p = '\0';
      if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return aqs_cli_fail("init", "cannot create directory %s: %s", buf, strerror(errno));
      *p = saved;
      if (!saved) break;
    }
  }
  return 0;
}

static int report(int as_json, const char *path, int created, int shared, const char *ws_file) {
  if (as_json) {
    json_t *doc = json_pack("{s:s, s:b, s:b, s:o}", "path", path, "created", created, "shared",
                            shared, "workspace_file", ws_file ? json_string(ws_file) : json_null());
    return aqs_cli_print_json("init", doc);
  }
  if (created)
    printf("initialized empty %saqs store in %s\n", shared ? "shared " : "", path);
  else
    printf("aqs store at %s already exists%s\n", path, shared ? " (shared)" : "");
  if (ws_file) printf("wrote %s (store path = %s)\n", ws_file, AQS_DEFAULT_STORE_DIR);
  return AQS_EXIT_OK;
}

static int cmd_init_run(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(init_usage, stdout);
    return AQS_EXIT_OK;
  }
  static const struct option longopts[] = {
    {"shared", no_argument, NULL, 's'},
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
  };
  int shared = 0, as_json = 0, c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
    if (c == 's') shared = 1;
    else if (c == 'j') as_json = 1;
    else return aqs_cli_bad_option("init", longopts, argv);
  }
  if (argc - optind > 1) return aqs_cli_usage_error("init", "too many arguments");
  const char *dir_arg = optind < argc ? argv[optind] : NULL;

  aqs_workspace ws;
  int rc = aqs_cli_load_workspace("init", &ws);
  if (rc) return rc;

  /* A relative DIR is relative to the current directory (like --store). */
  char *target = NULL;
  if (dir_arg && dir_arg[0] == '/') {
    target = strdup(dir_arg);
  } else if (dir_arg) {
    char *cwd = getcwd(NULL, 0);
    if (!cwd || asprintf(&target, "%s/%s", cwd, dir_arg) < 0) target = NULL;
    free(cwd);
  } else {
    target = strdup(ws.store_path);
  }
  if (!target) {
    aqs_workspace_free(&ws);
    return aqs_cli_fail("init", "out of memory");
  }
  int write_ws_file = !dir_arg && !ws.config_path && ws.store_origin == AQS_STORE_FROM_DEFAULT;

  aqs_store_config cfg;
  aqs_store_config_defaults(&cfg);
  if (aqs_workspace_get(&ws, "store", "compression_level")) cfg.zstd_level = ws.compression_level;
  if (aqs_workspace_get(&ws, "store", "inline_threshold"))
    cfg.inline_max_bytes = ws.inline_threshold_bytes;
  if (aqs_workspace_get(&ws, "store", "size_limit")) cfg.size_limit_bytes = ws.size_limit_bytes;
  cfg.shared = shared;

  char conf_path[4200];
  snprintf(conf_path, sizeof conf_path, "%s/aqs.conf", target);
  struct stat st;
  aqs_err err = {0};
  int created = 0, is_shared = shared;
  if (stat(conf_path, &st) == 0) {
    /* Already a store: say so; refuse only a --shared request the store cannot honour. */
    aqs_store *store = NULL;
    if (aqs_store_open(target, AQS_STORE_RDONLY, &store, &err) != AQS_OK) {
      rc = aqs_cli_fail_err("init", &err);
      goto out;
    }
    is_shared = aqs_store_get_config(store)->shared;
    aqs_store_close(store);
    if (shared && !is_shared) {
      rc = aqs_cli_fail("init", "%s is already an aqs store and is not shared; create a new "
                        "one with aqs init --shared DIR", target);
      goto out;
    }
    write_ws_file = 0;
  } else {
    rc = make_parent_dirs(target);
    if (rc) goto out;
    if (aqs_store_init(target, &cfg, &err) != AQS_OK) {
      rc = aqs_cli_fail_err("init", &err);
      goto out;
    }
    created = 1;
  }
  char ws_file[4200];
  if (write_ws_file) {
    char *cwd = getcwd(NULL, 0);
    snprintf(ws_file, sizeof ws_file, "%s/%s", cwd ? cwd : ".", AQS_WORKSPACE_FILE);
    free(cwd);
    rc = write_workspace_file(ws_file);
    if (rc) goto out;
  }
  rc = report(as_json, target, created, is_shared, write_ws_file ? ws_file : NULL);
out:
  free(target);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_init = {
  .name = "init",
  .summary = "create an empty store (and a .aqstore when there is none)",
  .run = cmd_init_run,
};
