/* tests/bench/bench_tokenizer.c: single-threaded encode throughput of engine/tokenizer on a text
 * file, one encode call per line (the line's '\n' excluded), best of --repeat runs.
 * usage: bench_tokenizer TOKENIZER_JSON TEXT_FILE [--repeat N] [--ids-out FILE]
 * Prints one JSON object (bytes, lines, tokens, seconds, MB/s, tokens/s, load seconds); --ids-out
 * writes the ids of each line (space-separated, one line per input line) for comparison with HF. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/tokenizer/tokenizer.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)size + 1);
  if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  if (buf) buf[size] = '\0';
  *len = (size_t)size;
  return buf;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s TOKENIZER_JSON TEXT_FILE [--repeat N] [--ids-out FILE]\n", argv[0]);
    return 2;
  }
  int repeat = 3;
  const char *ids_out = NULL;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--repeat") == 0) repeat = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--ids-out") == 0) ids_out = argv[i + 1];
  }
  aqs_err err = {0};
  aqs_tokenizer *tok = NULL;
  double t0 = now_s();
  if (aqs_tokenizer_load(argv[1], &tok, &err) != AQS_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  double load_s = now_s() - t0;
  size_t len = 0;
  char *text = read_all(argv[2], &len);
  if (!text) {
    fprintf(stderr, "cannot read %s\n", argv[2]);
    return 1;
  }
  double best_s = 1e30;
  size_t tokens = 0, lines = 0;
  aqs_token_ids ids = {0};
  for (int r = 0; r < repeat; r++) {
    /* a fresh tokenizer per run would reload the file; clearing the cache is not exposed, so the
     * first run is the cold one and the best run has a warm pre-token cache, as HF's has */
    tokens = lines = 0;
    double start = now_s();
    for (size_t pos = 0; pos < len;) {
      char *nl = memchr(text + pos, '\n', len - pos);
      size_t line_len = nl ? (size_t)(nl - (text + pos)) : len - pos;
      ids.len = 0;
      if (aqs_tokenizer_encode(tok, text + pos, line_len, &ids, &err) != AQS_OK) {
        fprintf(stderr, "line %zu: %s\n", lines + 1, err.msg);
        return 1;
      }
      tokens += ids.len;
      lines++;
      pos += line_len + 1;
    }
    double s = now_s() - start;
    fprintf(stderr, "run %d: %.3f s\n", r + 1, s);
    if (s < best_s) best_s = s;
  }
  if (ids_out) {
    FILE *f = fopen(ids_out, "w");
    for (size_t pos = 0; f && pos < len;) {
      char *nl = memchr(text + pos, '\n', len - pos);
      size_t line_len = nl ? (size_t)(nl - (text + pos)) : len - pos;
      ids.len = 0;
      aqs_tokenizer_encode(tok, text + pos, line_len, &ids, &err);
      for (size_t i = 0; i < ids.len; i++) fprintf(f, i ? " %d" : "%d", ids.ids[i]);
      fputc('\n', f);
      pos += line_len + 1;
    }
    if (f) fclose(f);
  }
  printf("{\"bytes\": %zu, \"lines\": %zu, \"tokens\": %zu, \"seconds\": %.4f, \"MB_per_s\": %.3f, "
         "\"tokens_per_s\": %.0f, \"load_seconds\": %.3f}\n",
         len, lines, tokens, best_s, len / best_s / 1e6, tokens / best_s, load_s);
  aqs_token_ids_free(&ids);
  aqs_tokenizer_free(tok);
  free(text);
  return 0;
}
