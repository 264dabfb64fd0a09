/* cli/cmd_put.c: `aqs put FILE|- ...`: stores files (or stdin) as objects and prints each
 * digest, like git hash-object -w. Plumbing: output is one "sha256:<hex>" per input, stable. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char put_usage[] =
    "usage: aqs put [--raw | --zstd] [--level N] [--manifest] [--json] FILE|- ...\n"
    "\n"
    "Stores each FILE (or standard input for '-') as an object in the store and prints its\n"
    "digest (\"sha256:<hex>\", one line per input, in order). Putting bytes that are already\n"
    "stored changes nothing (a dedup, counted by aqs stats). Files are streamed, never read\n"
    "into memory whole; an unchanged file already put is recognized by the stat-cache without\n"
    "being re-read.\n"
    "\n"
    "options:\n"
    "  --zstd       store zstd-compressed (the default; small objects go inline in the index)\n"
    "  --raw        store the bytes as they are, as a read-only file that checkpoints can link\n"
    "  --level N    zstd level 1..19 (default: [store] compression_level, else the store's)\n"
    "  --manifest   the input is a manifest: a JSON object whose \"children\" array lists the\n"
    "               digests it references (they must be stored already); gc follows it\n"
    "  --json       print [{\"input\", \"digest\", \"size\", \"stored\", \"kind\", \"deduped\"}]\n";

/* Copies standard input into an unlinked temporary file (pipes cannot be pread) and returns its
 * fd, or -1 after printing an error. A regular-file stdin is used in place (fd 0, *offset set). */
static int stdin_as_file(uint64_t *offset) {
  struct stat st;
  if (fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode)) {
    off_t pos = lseek(STDIN_FILENO, 0, SEEK_CUR);
    *offset = pos > 0 ? (uint64_t)pos : 0;
    return STDIN_FILENO;
  }
  *offset = 0;
  const char *tmp = getenv("TMPDIR");
  if (!tmp || !tmp[0]) tmp = "/tmp";
  int fd = open(tmp, O_TMPFILE | O_RDWR, 0600);
  if (fd < 0) {
    char path[4200];
    snprintf(path, sizeof path, "%s/aqs-put-XXXXXX", tmp);
    fd = mkstemp(path);
    if (fd >= 0) unlink(path);
  }
  if (fd < 0) {
    aqs_cli_fail("put", "cannot create a temporary file in %s to spool standard input: %s", tmp,
                 strerror(errno));
    return -1;
  }
  static char block[1 << 20];
  for (;;) {
    ssize_t n = read(STDIN_FILENO, block, sizeof block);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      aqs_cli_fail("put", "reading standard input: %s", strerror(errno));
      close(fd);
      return -1;
    }
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(fd, block + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        aqs_cli_fail("put", "spooling standard input to %s: %s", tmp, strerror(errno));
        close(fd);
        return -1;
      }
      off += w;
    }
  }
  return fd;
}

static json_t *info_json(const char *input, const aqs_put_info *info) {
  char digest[AQS_DIGEST_STR_SIZE];
  return json_pack("{s:s, s:s, s:I, s:I, s:s, s:b}", "input", input, "digest",
                   aqs_digest_str(&info->digest, digest), "size", (json_int_t)info->size_bytes,
                   "stored", (json_int_t)info->stored_bytes, "kind",
                   aqs_cli_kind_name(info->kind), "deduped", info->deduped);
}

static int cmd_put_run(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(put_usage, stdout);
    return AQS_EXIT_OK;
  }
  static const struct option longopts[] = {
    {"raw", no_argument, NULL, 'r'},
    {"zstd", no_argument, NULL, 'z'},
    {"level", required_argument, NULL, 'l'},
    {"manifest", no_argument, NULL, 'm'},
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
  };
  aqs_put_opts opts = {.compress = AQS_COMPRESS_DEFAULT};
  int as_json = 0, c, level_given = 0;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
    uint64_t level;
    switch (c) {
    case 'r': opts.compress = AQS_COMPRESS_RAW; break;
    case 'z': opts.compress = AQS_COMPRESS_ZSTD; break;
    case 'm': opts.manifest = 1; break;
    case 'j': as_json = 1; break;
    case 'l':
      if (aqs_cli_parse_u64(optarg, &level) != 0 || level < 1 || level > 19)
        return aqs_cli_usage_error("put", "--level wants a zstd level 1..19, not '%s'", optarg);
      opts.zstd_level = (int)level;
      level_given = 1;
      break;
    case ':':
      return aqs_cli_usage_error("put", "option '%s' needs a value", argv[optind - 1]);
    default:
      return aqs_cli_bad_option("put", longopts, argv);
    }
  }
  if (optind >= argc) return aqs_cli_usage_error("put", "missing FILE (or '-' for stdin)");
  if (level_given && opts.compress == AQS_COMPRESS_RAW)
    return aqs_cli_usage_error("put", "--level applies to zstd objects, not --raw");
  int n_stdin = 0;
  for (int i = optind; i < argc; i++) n_stdin += strcmp(argv[i], "-") == 0;
  if (n_stdin > 1) return aqs_cli_usage_error("put", "'-' (standard input) given more than once");

  aqs_workspace ws;
  aqs_store *store;
  int rc = aqs_cli_open_store("put", 0, &ws, &store);
  if (rc) return rc;
  if (!level_given && opts.compress != AQS_COMPRESS_RAW &&
      aqs_workspace_get(&ws, "store", "compression_level"))
    opts.zstd_level = ws.compression_level;

  json_t *results = as_json ? json_array() : NULL;
  aqs_err err = {0};
  for (int i = optind; i < argc && rc == AQS_EXIT_OK; i++) {
    aqs_put_info info;
    aqs_status st;
    if (strcmp(argv[i], "-") == 0) {
      uint64_t offset;
      int fd = stdin_as_file(&offset);
      if (fd < 0) {
        rc = AQS_EXIT_FAIL;
        break;
      }
      st = aqs_put_fd(store, fd, offset, AQS_TO_EOF, "standard input", &opts, &info, &err);
      if (fd != STDIN_FILENO) close(fd);
    } else {
      st = aqs_put_file(store, argv[i], &opts, &info, &err);
    }
    if (st != AQS_OK) {
      rc = aqs_cli_fail_err("put", &err);
      break;
    }
    if (as_json) {
      json_array_append_new(results, info_json(argv[i], &info));
    } else {
      char digest[AQS_DIGEST_STR_SIZE];
      printf("%s\n", aqs_digest_str(&info.digest, digest));
    }
  }
  if (rc == AQS_EXIT_OK && as_json) rc = aqs_cli_print_json("put", results);
  else json_decref(results);
  if (rc == AQS_EXIT_OK && aqs_store_flush(store, &err) != AQS_OK) rc = aqs_cli_fail_err("put", &err);
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  if (rc == AQS_EXIT_OK && fflush(stdout) != 0)
    rc = aqs_cli_fail("put", "writing to stdout failed: %s", strerror(errno));
  return rc;
}

const aqs_cmd aqs_cmd_put = {
  .name = "put",
  .summary = "store files or stdin as objects and print their digests (like git hash-object)",
  .run = cmd_put_run,
};
