/* cli/suggest.h: "did you mean ...?" for a mistyped command or recipe name: the nearest of a
 * list of candidates by edit distance (git's help.autocorrect idea, without the autocorrect).
 * Pure functions; no allocation kept; any thread. */
#ifndef AQS_CLI_SUGGEST_H
#define AQS_CLI_SUGGEST_H

#include <stddef.h>

/* Levenshtein distance between a and b (ASCII, case-sensitive); capped at 255. */
int aqs_edit_distance(const char *a, const char *b);

/* The candidate nearest to word, or NULL when none is close enough to be a typo: within edit
 * distance 2 (1 for words of up to 3 characters), or word is a prefix of exactly one candidate.
 * Ties go to the earlier candidate. candidates[i] may be NULL (skipped). */
const char *aqs_suggest(const char *word, const char *const *candidates, size_t n);

#endif
