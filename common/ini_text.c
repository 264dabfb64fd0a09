/* common/ini_text.c: whole-file INI text with NUL refusal and a line-counting reader (see
 * ini_text.h). */
#include "common/ini_text.h"

#include <stdlib.h>
#include <string.h>

aqs_status aqs_ini_text_load(const char *path, aqs_input_kind kind, char **text_out, aqs_err *e) {
  char *text;
  size_t len;
  aqs_status st = aqs_file_read_input(path, kind, &text, &len, e);
  if (st != AQS_OK) return st;
  const char *nul = memchr(text, '\0', len);
  if (nul) {
    int line = 1;
    for (const char *p = text; p < nul; p++) line += *p == '\n';
    free(text);
    return aqs_errf(e, AQS_ERR_INVALID, "%s:%d: NUL byte in the line (not a text file?)", path, line);
  }
  *text_out = text;
  return AQS_OK;
}

char *aqs_ini_text_reader(char *str, int num, void *src) {
  aqs_ini_text *t = src;
  const char *p = t->text + t->pos;
  if (!*p) return NULL;
  const char *nl = strchr(p, '\n');
  size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
  t->pos += n;
  t->line++;
  if (n > (size_t)num - 1) {
    if (!t->overlong_line) t->overlong_line = t->line;
    n = 0;
    str[n++] = '\n';
  } else {
    memcpy(str, p, n);
  }
  str[n] = '\0';
  return str;
}
