/* cli/suggest.c: implementation of suggest.h (edit distance, nearest candidate). */
#include "cli/suggest.h"

#include <string.h>

int aqs_edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return 255;
  int d[65][65]; /* optimal string alignment: d[i][j] = distance of a[0..i) and b[0..j) */
  for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
      /* a transposition ("bulid") counts as one edit */
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  return d[la][lb];
}

const char *aqs_suggest(const char *word, const char *const *candidates, size_t n) {
  size_t wl = strlen(word);
  int limit = wl <= 3 ? 1 : 2;
  const char *best = NULL, *prefix_of = NULL;
  int best_d = limit + 1, n_prefix = 0;
  for (size_t i = 0; i < n; i++) {
    if (!candidates[i]) continue;
    int d = aqs_edit_distance(word, candidates[i]);
    if (d < best_d) {
      best_d = d;
      best = candidates[i];
    }
    if (wl && strncmp(candidates[i], word, wl) == 0) {
      prefix_of = candidates[i];
      n_prefix++;
    }
  }
  if (best) return best;
  return n_prefix == 1 ? prefix_of : NULL;
}
