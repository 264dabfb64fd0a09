/* cli/cmd_tokenize.c: `aqs tokenize --tokenizer FILE`: plumbing over engine/tokenizer: one line of
 * text in, one line of token ids out (or the reverse with --decode), so users and scripts can check
 * one input at a time against Hugging Face `tokenizers`. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/tokenizer/tokenizer.h"

static const char tokenize_usage[] =
    "usage: aqs tokenize --tokenizer FILE|DIR [--json] [--decode [--skip-special]]\n"
    "\n"
    "Encodes standard input line by line with a Hugging Face tokenizer.json (Qwen2 family\n"
    "byte-level BPE; DIR means DIR/tokenizer.json) and prints one line of token ids per input\n"
    "line, separated by spaces. The line's '\\n' is not part of its text (a '\\r' is). Added\n"
    "tokens written in the text (\"<|im_start|>\") become their ids, as HF `tokenizers` does.\n"
    "\n"
    "options:\n"
    "  --tokenizer P    tokenizer.json, or a directory holding one (required)\n"
    "  --json           encode: a JSON array of ids per line; decode: a JSON string per line\n"
    "                   (the safe form when decoded text may hold newlines)\n"
    "  --decode         the reverse: each input line holds ids (separated by spaces or commas,\n"
    "                   or a JSON array); prints the text\n"
    "  --skip-special   with --decode: drop special tokens (HF skip_special_tokens=True)\n"
    "\n"
    "Exits 1 at the first line that is not valid UTF-8 or holds an unknown id, naming the line.\n";

/* Resolves --tokenizer: a directory means its tokenizer.json. Returns a malloc'd path. */
static char *tokenizer_path(const char *arg) {
  struct stat st;
  if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) {
    size_t n = strlen(arg) + sizeof "/tokenizer.json";
    char *path = malloc(n);
    if (path) snprintf(path, n, "%s/tokenizer.json", arg);
    return path;
  }
  return strdup(arg);
}

static void print_ids(const aqs_token_ids *ids, int as_json) {
  if (as_json) putchar('[');
  for (size_t i = 0; i < ids->len; i++) {
    if (i) fputs(as_json ? ", " : " ", stdout);
    printf("%d", ids->ids[i]);
  }
  if (as_json) putchar(']');
  putchar('\n');
}

static int encode_line(aqs_tokenizer *tok, const char *line, size_t len, size_t line_no,
                       int as_json, aqs_token_ids *ids) {
  aqs_err err = {0};
  ids->len = 0;
  if (aqs_tokenizer_encode(tok, line, len, ids, &err) != AQS_OK)
    return aqs_cli_fail("tokenize", "stdin line %zu: %s", line_no, err.msg);
  print_ids(ids, as_json);
  return AQS_EXIT_OK;
}

/* Parses "1 2 3", "1,2,3" or "[1, 2, 3]" into ids. Returns 0, or -1 with *bad at the offending
 * character. */
static int parse_id_line(const char *line, aqs_token_ids *ids, const char **bad) {
  ids->len = 0;
  const char *p = line;
  while (*p) {
    if (strchr(" \t\r,[]", *p)) {
      p++;
      continue;
    }
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno || v < INT32_MIN || v > INT32_MAX ||
        (*end && !strchr(" \t\r,[]", *end))) {
      *bad = p;
      return -1;
    }
    if (ids->len == ids->cap) {
      size_t cap = ids->cap ? ids->cap * 2 : 64;
      int32_t *grown = realloc(ids->ids, cap * sizeof *grown);
      if (!grown) {
        *bad = p;
        return -1;
      }
      ids->ids = grown;
      ids->cap = cap;
    }
    ids->ids[ids->len++] = (int32_t)v;
    p = end;
  }
  return 0;
}

static int decode_line(aqs_tokenizer *tok, const char *line, size_t line_no, int as_json,
                       int flags, aqs_token_ids *ids) {
  const char *bad = NULL;
  if (parse_id_line(line, ids, &bad) != 0)
    return aqs_cli_fail("tokenize", "stdin line %zu: not a token id at column %zu: '%.20s'",
                        line_no, (size_t)(bad - line) + 1, bad);
  aqs_err err = {0};
  char *text = NULL;
  size_t text_len = 0;
  if (aqs_tokenizer_decode(tok, ids->ids, ids->len, flags, &text, &text_len, &err) != AQS_OK)
    return aqs_cli_fail("tokenize", "stdin line %zu: %s", line_no, err.msg);
  if (as_json) {
    json_t *s = json_stringn(text, text_len);
    char *dumped = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    if (dumped) puts(dumped);
    free(dumped);
    json_decref(s);
    if (!dumped) {
      free(text);
      return aqs_cli_fail("tokenize", "stdin line %zu: out of memory", line_no);
    }
  } else {
    fwrite(text, 1, text_len, stdout);
    putchar('\n');
  }
  free(text);
  return AQS_EXIT_OK;
}

static int tokenize_run(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(tokenize_usage, stdout);
    return AQS_EXIT_OK;
  }
  static const struct option longopts[] = {
      {"tokenizer", required_argument, NULL, 't'}, {"json", no_argument, NULL, 'j'},
      {"decode", no_argument, NULL, 'd'},          {"skip-special", no_argument, NULL, 's'},
      {NULL, 0, NULL, 0}};
  const char *tokenizer_arg = NULL;
  int as_json = 0, decode = 0, flags = 0, c;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (c == 't') tokenizer_arg = optarg;
    else if (c == 'j') as_json = 1;
    else if (c == 'd') decode = 1;
    else if (c == 's') flags |= AQS_DECODE_SKIP_SPECIAL;
    else return aqs_cli_bad_option("tokenize", longopts, argv);
  }
  if (!tokenizer_arg) return aqs_cli_usage_error("tokenize", "--tokenizer FILE is required");
  if (optind < argc)
    return aqs_cli_usage_error("tokenize", "unexpected argument '%s' (text comes on stdin)",
                               argv[optind]);
  if (flags && !decode) return aqs_cli_usage_error("tokenize", "--skip-special needs --decode");
  char *path = tokenizer_path(tokenizer_arg);
  aqs_tokenizer *tok = NULL;
  aqs_err err = {0};
  aqs_status st = path ? aqs_tokenizer_load(path, &tok, &err)
                       : aqs_errf(&err, AQS_ERR_NOMEM, "out of memory");
  free(path);
  if (st != AQS_OK) return aqs_cli_fail_err("tokenize", &err);
  aqs_token_ids ids = {0};
  char *line = NULL;
  size_t line_cap = 0, line_no = 0;
  ssize_t n;
  int rc = AQS_EXIT_OK;
  while (rc == AQS_EXIT_OK && (n = getline(&line, &line_cap, stdin)) >= 0) {
    line_no++;
    if (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
    rc = decode ? decode_line(tok, line, line_no, as_json, flags, &ids)
                : encode_line(tok, line, (size_t)n, line_no, as_json, &ids);
  }
  if (rc == AQS_EXIT_OK && (fflush(stdout) != 0 || ferror(stdout)))
    rc = aqs_cli_fail("tokenize", "writing standard output: %s", strerror(errno));
  free(line);
  aqs_token_ids_free(&ids);
  aqs_tokenizer_free(tok);
  return rc;
}

const aqs_cmd aqs_cmd_tokenize = {"tokenize", "encode / decode text with a tokenizer.json",
                                  tokenize_run};
