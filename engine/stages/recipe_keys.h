/* engine/stages/recipe_keys.h: the recipe key table: every key a recipe may set, with its
 * section, type, default, the stage whose key it feeds, a line of documentation, and its parser.
 * recipe.c validates and applies recipe files through it (so an unknown key, a bad value and the
 * defaults all come from here), stages declare the keys they read (stage.h recipe_keys), and
 * `aqs ls --recipes --keys` prints it (the table in docs/recipes.md is that output).
 * Static data: thread-safe; nothing to free. */
#ifndef AQS_STAGES_RECIPE_KEYS_H
#define AQS_STAGES_RECIPE_KEYS_H

#include <stddef.h>

#include "engine/stages/recipe.h"

typedef struct aqs_recipe_key {
  const char *section;
  const char *key;
  const char *type;   /* what a value must be, as error messages and docs say it */
  const char *def;    /* the default, as a recipe writes it; NULL: unset unless a recipe sets it */
  const char *stage;  /* the stage whose key it feeds ("recipe" for extends and description) */
  const char *doc;
  /* Parses value into r: 1, or 0 for a bad value. NULL: handled by the loader (extends). */
  int (*apply)(const char *value, aqs_recipe *r);
} aqs_recipe_key;

/* The table, in documentation order (sections as recipes list them). */
const aqs_recipe_key *aqs_recipe_keys(size_t *n_out);

/* The entry of "section.key" (or of section and key given apart with _in), or NULL. */
const aqs_recipe_key *aqs_recipe_key_find(const char *dotted);
const aqs_recipe_key *aqs_recipe_key_in(const char *section, const char *key);

/* r filled with every default. */
void aqs_recipe_key_defaults(aqs_recipe *r);

/* The table as Markdown (docs/recipes.md): malloc'd, NUL-terminated; NULL when out of memory. */
char *aqs_recipe_keys_markdown(void);

#endif
