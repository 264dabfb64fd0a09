/* cli/build_names_cli.c: implementation of build_names_cli.h. */
#include "cli/build_names_cli.h"

#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "cli/suggest.h"
#include "engine/stages/recipe.h"
#include "engine/stages/build.h"

static int recipe_names(const char *recipes_dir, char ***names, size_t *n) {
  aqs_recipe_source src = {.workspace_dir = recipes_dir};
  aqs_err e = {0};
  if (aqs_recipe_list(&src, names, n, &e) != AQS_OK) {
    *names = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static void free_names(char **names, size_t n) {
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
}

const char *aqs_cli_recipe_hint(const char *recipes_dir, const char *name, char *buf, size_t n) {
  char **names;
  size_t count;
  if (recipe_names(recipes_dir, &names, &count)) return NULL;
  const char *near = aqs_suggest(name, (const char *const *)names, count);
  if (near) snprintf(buf, n, "%s", near);
  free_names(names, count);
  return near ? buf : NULL;
}

int aqs_cli_is_recipe(const char *recipes_dir, const char *name) {
  char **names;
  size_t count;
  int found = 0;
  if (recipe_names(recipes_dir, &names, &count)) return 0;
  for (size_t i = 0; i < count && !found; i++) found = strcmp(names[i], name) == 0;
  free_names(names, count);
  return found;
}

/* The workspace's model (source digest, when the store has hashed it) and data file digest. */
static void load_scope(aqs_store *store, const aqs_workspace *ws, const aqs_cli_scope_flags *f, aqs_build_scope *sc) {
  memset(sc, 0, sizeof *sc);
  const char *model = f && f->model_dir ? f->model_dir : ws->model_path;
  const char *data = f && f->data_file ? f->data_file : ws->data_captions ? ws->data_captions : ws->data_images;
  aqs_err ignore = {0};
  if (model) {
    aqs_stage_outcome o;
    memset(&o, 0, sizeof o);
    aqs_build_opts bo = {.store = store, .model_dir = model, .dry_run = 1};
    if (aqs_build_run_stage(&bo, "source", NULL, NULL, &o, &ignore) == AQS_OK && o.hit) {
      sc->has_model = 1;
      sc->model = o.result;
    }
  }
  if (data && aqs_hash_file_cached(store, data, &sc->dataset, NULL, &ignore) == AQS_OK) sc->has_dataset = 1;
}

int aqs_cli_resolve_build(const char *cmd, aqs_store *store, const aqs_workspace *ws, const aqs_cli_scope_flags *flags,
                          const char *name, aqs_build_entry *out) {
  aqs_err e = {0};
  aqs_status st = aqs_build_resolve(store, name, NULL, out, &e);
  if (st == AQS_ERR_AMBIGUOUS) {
    aqs_build_scope scope;
    load_scope(store, ws, flags, &scope);
    if (scope.has_model || scope.has_dataset) st = aqs_build_resolve(store, name, &scope, out, &e);
  }
  if (st == AQS_OK) return AQS_EXIT_OK;
  if (st != AQS_ERR_NOT_FOUND || strchr(name, '@')) return aqs_cli_fail_err(cmd, &e);
  const char *recipes_dir = flags && flags->recipes_dir ? flags->recipes_dir : ws->recipes_path;
  if (aqs_cli_is_recipe(recipes_dir, name))
    return aqs_cli_fail(cmd, "recipe '%s' is not built in %s yet (aqs build recipe %s)", name, aqs_store_path(store),
                        name);
  /* Nearest among the built recipes, then among the buildable ones. */
  aqs_build_entry *list = NULL;
  size_t n = 0;
  const char *near = NULL;
  char hint[AQS_RECIPE_NAME_MAX];
  if (aqs_build_list(store, &list, &n, &e) == AQS_OK && n) {
    const char **names = calloc(n, sizeof *names);
    for (size_t i = 0; names && i < n; i++) names[i] = list[i].recipe;
    if (names && (near = aqs_suggest(name, names, n))) snprintf(hint, sizeof hint, "%s", near);
    near = near ? hint : NULL;
    free(names);
  }
  aqs_build_list_free(list, n);
  if (!near) near = aqs_cli_recipe_hint(recipes_dir, name, hint, sizeof hint);
  if (near)
    return aqs_cli_fail(cmd, "no build or recipe named '%s' in %s; did you mean '%s'? (aqs ls lists builds, aqs ls "
                        "--recipes recipes)", name, aqs_store_path(store), near);
  return aqs_cli_fail(cmd, "no build or recipe named '%s' in %s (aqs ls lists builds, aqs ls --recipes recipes)",
                      name, aqs_store_path(store));
}
