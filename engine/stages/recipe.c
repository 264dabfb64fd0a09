/* engine/stages/recipe.c: loading, validating and resolving recipes (see recipe.h).
 * A file is read with inih through a line-counting reader so that every key keeps its line;
 * the extends chain is applied root first, each key validated where it is set. */
#include "engine/stages/recipe.h"
#include "engine/stages/recipe_keys.h"
#include "common/ini_text.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>

/* Generated at build time from recipes/NAME.ini (cmake/embed_recipes.cmake). */
typedef struct { const char *name; const char *text; } aqs_builtin_recipe;
extern const aqs_builtin_recipe aqs_builtin_recipes[];
extern const size_t aqs_builtin_recipe_count;

#define MAX_EXTENDS_DEPTH 16

typedef struct recipe_entry {
  char section[32];
  char key[48];
  char value[AQS_RECIPE_TEXT_MAX];
  int line;
} recipe_entry;

typedef struct recipe_file {
  char origin[512];       /* path, or "builtin:NAME.ini" */
  recipe_entry *entries;
  size_t n, cap;
  char extends[AQS_RECIPE_NAME_MAX];
  int extends_line;
} recipe_file;

/* Files and built-ins are read whole and handed to inih by common/ini_text (line numbers, NUL
 * bytes and over-long lines refused). */
typedef aqs_ini_text line_stream;

typedef struct parse_ctx {
  line_stream *ls;
  recipe_file *rf;
  aqs_err *e;
  bool failed;
} parse_ctx;

static int on_entry(void *user, const char *section, const char *name, const char *value) {
  parse_ctx *pc = user;
  if (pc->failed) return 1;
  recipe_file *rf = pc->rf;
  if (strlen(section) >= sizeof rf->entries[0].section || strlen(name) >= sizeof rf->entries[0].key ||
      strlen(value) >= AQS_RECIPE_TEXT_MAX) {
    aqs_errf(pc->e, AQS_ERR_INVALID, "%s:%d: key or value too long", rf->origin, pc->ls->line);
    pc->failed = true;
    return 1;
  }
  if (rf->n == rf->cap) {
    size_t cap = rf->cap ? rf->cap * 2 : 16;
    recipe_entry *ne = realloc(rf->entries, cap * sizeof *ne);
    if (!ne) {
      aqs_errf(pc->e, AQS_ERR_NOMEM, "%s: out of memory", rf->origin);
      pc->failed = true;
      return 1;
    }
    rf->entries = ne;
    rf->cap = cap;
  }
  for (size_t i = 0; i < rf->n; i++)
    if (strcmp(rf->entries[i].section, section) == 0 && strcmp(rf->entries[i].key, name) == 0) {
      aqs_errf(pc->e, AQS_ERR_INVALID, "%s:%d: duplicate key '%s' in section [%s] (first set on line %d)",
               rf->origin, pc->ls->line, name, section, rf->entries[i].line);
      pc->failed = true;
      return 1;
    }
  recipe_entry *en = &rf->entries[rf->n++];
  snprintf(en->section, sizeof en->section, "%s", section);
  snprintf(en->key, sizeof en->key, "%s", name);
  snprintf(en->value, sizeof en->value, "%s", value);
  en->line = pc->ls->line;
  if (strcmp(section, "recipe") == 0 && strcmp(name, "extends") == 0) {
    snprintf(rf->extends, sizeof rf->extends, "%s", value);
    rf->extends_line = en->line;
  }
  return 1;
}

static aqs_status parse_recipe(line_stream *ls, recipe_file *rf, aqs_err *e) {
  parse_ctx pc = {.ls = ls, .rf = rf, .e = e};
  int rc = ini_parse_stream(aqs_ini_text_reader, ls, on_entry, &pc);
  if (pc.failed) return e->code;
  if (ls->overlong_line && (rc <= 0 || ls->overlong_line < rc))
    return aqs_errf(e, AQS_ERR_INVALID, "%s:%d: line too long", rf->origin, ls->overlong_line);
  if (rc > 0) return aqs_errf(e, AQS_ERR_INVALID, "%s:%d: malformed line", rf->origin, rc);
  if (rc < 0) return aqs_errf(e, AQS_ERR_IO, "%s: cannot parse", rf->origin);
  return AQS_OK;
}

static bool valid_name(const char *name) {
  if (!*name || strlen(name) >= AQS_RECIPE_NAME_MAX) return false;
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_' || *p == '-' || *p == '.'))
      return false;
  return name[0] != '.';
}

const char *aqs_recipe_builtin_text(const char *name) {
  for (size_t i = 0; i < aqs_builtin_recipe_count; i++)
    if (strcmp(aqs_builtin_recipes[i].name, name) == 0) return aqs_builtin_recipes[i].text;
  return NULL;
}

/* Reads recipe NAME (workspace first, then built-in) into rf. */
static aqs_status read_recipe_file(const aqs_recipe_source *src, const char *name, recipe_file *rf,
                                   aqs_err *e) {
  memset(rf, 0, sizeof *rf);
  line_stream ls = {0};
  if (src && src->workspace_dir) {
    snprintf(rf->origin, sizeof rf->origin, "%s/%s.ini", src->workspace_dir, name);
    char *text;
    aqs_status st = aqs_ini_text_load(rf->origin, AQS_INPUT_RECIPE, &text, e);
    if (st == AQS_OK) {
      ls.text = text;
      st = parse_recipe(&ls, rf, e);
      free(text);
      return st;
    }
    if (st != AQS_ERR_NOT_FOUND) return st;
    aqs_err_clear(e);
  }
  const char *text = aqs_recipe_builtin_text(name);
  if (!text) {
    if (src && src->workspace_dir)
      return aqs_errf(e, AQS_ERR_NOT_FOUND, "no recipe '%s' (looked in %s and the built-ins; see aqs ls --recipes)",
                      name, src->workspace_dir);
    return aqs_errf(e, AQS_ERR_NOT_FOUND, "no recipe '%s' among the built-ins (see aqs ls --recipes)", name);
  }
  snprintf(rf->origin, sizeof rf->origin, "builtin:%s.ini", name);
  ls.text = text;
  return parse_recipe(&ls, rf, e);
}

static aqs_status bad_value(const recipe_file *rf, const recipe_entry *en, const char *expect, aqs_err *e) {
  return aqs_errf(e, AQS_ERR_INVALID, "%s:%d: bad value '%s' for [%s] %s (expected %s)", rf->origin,
                  en->line, en->value, en->section, en->key, expect);
}

/* Applies one entry to r, validating it through the recipe key table. */
static aqs_status apply_entry(const recipe_file *rf, const recipe_entry *en, aqs_recipe *r, aqs_err *e) {
  const aqs_recipe_key *k = aqs_recipe_key_in(en->section, en->key);
  if (!k)
    return aqs_errf(e, AQS_ERR_INVALID, "%s:%d: unknown key '%s' in section [%s] (aqs ls --recipes --keys lists them)",
                    rf->origin, en->line, en->key, en->section);
  if (k->apply && !k->apply(en->value, r)) return bad_value(rf, en, k->type, e);
  return AQS_OK;
}

aqs_status aqs_recipe_load(const aqs_recipe_source *src, const char *name, aqs_recipe *out, aqs_err *e) {
  if (!valid_name(name))
    return aqs_errf(e, AQS_ERR_INVALID, "bad recipe name '%s' (letters, digits, '_', '-', '.')", name);
  recipe_file chain[MAX_EXTENDS_DEPTH];
  size_t depth = 0;
  aqs_status st = AQS_OK;
  const char *next = name;
  while (next) {
    if (depth == MAX_EXTENDS_DEPTH) {
      recipe_file *last = &chain[depth - 1];
      st = aqs_errf(e, AQS_ERR_INVALID, "%s:%d: extends chain deeper than %d", last->origin,
                    last->extends_line, MAX_EXTENDS_DEPTH);
      goto done;
    }
    st = read_recipe_file(src, next, &chain[depth], e);
    if (st) {
      if (depth > 0)
        aqs_err_prefix(e, "%s:%d: extends %s", chain[depth - 1].origin, chain[depth - 1].extends_line, next);
      free(chain[depth].entries);
      goto done;
    }
    recipe_file *cur = &chain[depth++];
    next = cur->extends[0] ? cur->extends : NULL;
    if (next && !valid_name(next)) {
      st = aqs_errf(e, AQS_ERR_INVALID, "%s:%d: bad recipe name '%s' in extends", cur->origin,
                    cur->extends_line, next);
      goto done;
    }
    for (size_t i = 0; next && i < depth; i++) {
      const char *seen = i == 0 ? name : chain[i - 1].extends;
      if (strcmp(seen, next) == 0) {
        /* cur is the file whose extends closes the loop; name the whole chain after it. */
        char loop[MAX_EXTENDS_DEPTH * (AQS_RECIPE_NAME_MAX + 4)];
        size_t used = (size_t)snprintf(loop, sizeof loop, "%s", name);
        for (size_t k = 0; k < depth && used < sizeof loop; k++)
          used += (size_t)snprintf(loop + used, sizeof loop - used, " -> %s", chain[k].extends);
        st = aqs_errf(e, AQS_ERR_INVALID, "%s:%d: extends cycle: %s", cur->origin, cur->extends_line, loop);
        goto done;
      }
    }
  }
  aqs_recipe_key_defaults(out);
  for (size_t d = depth; d-- > 0;)
    for (size_t i = 0; i < chain[d].n; i++)
      if ((st = apply_entry(&chain[d], &chain[d].entries[i], out, e))) goto done;
  memcpy(out->name, name, strlen(name) + 1); /* valid_name: shorter than AQS_RECIPE_NAME_MAX */
  if (out->score_samples > out->calib_samples) {
    st = aqs_errf(e, AQS_ERR_INVALID, "recipe %s: score_samples (%lld) exceeds calib samples (%lld)", name,
                  (long long)out->score_samples, (long long)out->calib_samples);
  }
done:
  for (size_t d = 0; d < depth; d++) free(chain[d].entries);
  return st;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

aqs_status aqs_recipe_list(const aqs_recipe_source *src, char ***names_out, size_t *n_out, aqs_err *e) {
  size_t cap = aqs_builtin_recipe_count + 16, n = 0;
  char **names = malloc(cap * sizeof *names);
  if (!names) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < aqs_builtin_recipe_count; i++) names[n++] = strdup(aqs_builtin_recipes[i].name);
  DIR *dir = src && src->workspace_dir ? opendir(src->workspace_dir) : NULL;
  struct dirent *de;
  while (dir && (de = readdir(dir))) {
    size_t len = strlen(de->d_name);
    if (len <= 4 || strcmp(de->d_name + len - 4, ".ini") != 0) continue;
    if (n == cap) {
      char **nn = realloc(names, (cap *= 2) * sizeof *nn);
      if (!nn) break;
      names = nn;
    }
    names[n++] = strndup(de->d_name, len - 4);
  }
  if (dir) closedir(dir);
  qsort(names, n, sizeof *names, cmp_str);
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    if (w > 0 && strcmp(names[w - 1], names[i]) == 0) {
      free(names[i]);
      continue;
    }
    names[w++] = names[i];
  }
  *names_out = names;
  *n_out = w;
  return AQS_OK;
}
