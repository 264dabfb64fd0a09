/* engine/stages/build_names.h: build identity and the names that reach a build (issue 9).
 * A build is (recipe, source-model digest, calib-set digest); each one keeps its own ref
 *   recipe/<recipe>/<model16>-<data16>     (16 hex of the source and calib-set digests)
 * so teammates and models never move each other's builds. Refs of the older layout,
 * recipe/<recipe>, are still read. A short name ("top50") resolves when one build of that
 * recipe matches the workspace's current model and data; "top50@<model-hex>[+<data-hex>]" picks
 * one explicitly. Nothing here prints; errors carry the message the CLI shows. Not thread-safe
 * per store handle (as the store). */
#ifndef AQS_STAGES_BUILD_NAMES_H
#define AQS_STAGES_BUILD_NAMES_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/stages/recipe.h"
#include "store/store.h"

/* Hex digits of the model and data digests in a build's ref name and short selectors. */
#define AQS_BUILD_ID_HEX 16

/* The ref of one build (see above). buf holds at least AQS_REF_NAME_MAX + 1 bytes. */
void aqs_build_ref_name(const char *recipe, const aqs_digest *model, const aqs_digest *data, char *buf, size_t n);

/* One build a "recipe/..." ref names. doc is the build record (owned). */
typedef struct aqs_build_entry {
  char ref[AQS_REF_NAME_MAX + 1];
  char recipe[AQS_RECIPE_NAME_MAX];
  aqs_digest record;
  aqs_digest model;            /* the source stage's result */
  aqs_digest data;             /* the calib-set stage's result */
  aqs_digest sensitivity;      /* the sensitivity stage's result */
  json_t *doc;
  int64_t time_ns;             /* when the ref last moved (0 if its history is gone) */
  char user[AQS_NAME_MAX];     /* who moved it ("" if unknown) */
} aqs_build_entry;

/* Every build in the store (refs recipe/... naming an aqs-build record; a ref naming anything
 * else is skipped), sorted by recipe name in natural order (top10, top20, ..., top100), then
 * newest first. Errors: AQS_ERR_IO, AQS_ERR_NOMEM. Free with aqs_build_list_free. */
aqs_status aqs_build_list(aqs_store *s, aqs_build_entry **out, size_t *n_out, aqs_err *e);
void aqs_build_list_free(aqs_build_entry *list, size_t n);

/* What "current" means for a short name: the workspace's model and data (either may be unset). */
typedef struct aqs_build_scope {
  int has_model;
  aqs_digest model;            /* source-stage result of the workspace's model */
  int has_dataset;
  aqs_digest dataset;          /* digest of the workspace's caption file / image JSONL */
} aqs_build_scope;

/* Resolves name to one build: "top50", "top50@<model-hex>[+<data-hex>]", a full ref name, or a
 * build record digest (abbreviations work). scope may be NULL. On success *out owns its doc
 * (free with aqs_build_list_free(out, 1) semantics: json_decref(out->doc)).
 * Errors: AQS_ERR_NOT_FOUND ("no build named 'x'"), AQS_ERR_AMBIGUOUS (the message lists the
 * candidates, one per line, with the selector that picks each), AQS_ERR_IO. */
aqs_status aqs_build_resolve(aqs_store *s, const char *name, const aqs_build_scope *scope, aqs_build_entry *out,
                             aqs_err *e);

/* Natural order of names: digit runs compare as numbers ("top20" < "top100"). strcmp-like. */
int aqs_natural_cmp(const char *a, const char *b);

#endif
