/* cli/build_names_cli.h: the porcelain side of build names: turning what the user typed (a recipe
 * name, NAME@MODEL[+DATA], a ref, a digest) into one build with the workspace's model and data as
 * the tie-breaker, and the messages for names that reach nothing (with "did you mean"). */
#ifndef AQS_CLI_BUILD_NAMES_CLI_H
#define AQS_CLI_BUILD_NAMES_CLI_H

#include "common/workspace.h"
#include "engine/stages/build_names.h"
#include "store/store.h"

/* The workspace's current model and data, overridable by a command's --model / --captions /
 * --images flags (each may be NULL). */
typedef struct aqs_cli_scope_flags {
  const char *model_dir;
  const char *data_file;
  const char *recipes_dir;   /* for "did you mean" over buildable recipes; NULL = workspace's */
} aqs_cli_scope_flags;

/* Resolves name to one build (engine/stages/build_names.h). When several builds share the
 * recipe name, the workspace's model and data pick one. On failure prints one message:
 *   "aqs <cmd>: recipe 'top50' is not built in <store> yet (aqs build recipe top50)"
 *   "aqs <cmd>: no build or recipe named 'x' in <store>; did you mean 'top50'? (aqs ls lists ...)"
 *   "aqs <cmd>: 'top50' names 2 builds ...; pick one:\n  top50@<model>..."
 * and returns AQS_EXIT_FAIL; 0 on success (json_decref(out->doc) after). */
int aqs_cli_resolve_build(const char *cmd, aqs_store *store, const aqs_workspace *ws, const aqs_cli_scope_flags *flags,
                          const char *name, aqs_build_entry *out);

/* The buildable recipe nearest to a mistyped name (for "did you mean"), copied into buf;
 * returns buf, or NULL when none is close. */
const char *aqs_cli_recipe_hint(const char *recipes_dir, const char *name, char *buf, size_t n);

/* 1 when name is a buildable recipe (built-in or in recipes_dir). */
int aqs_cli_is_recipe(const char *recipes_dir, const char *name);

#endif
