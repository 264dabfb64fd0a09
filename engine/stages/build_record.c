/* engine/stages/build_record.c: build records (see build.h): what each built recipe recorded
 * (its parameters, every stage's result, the slice summary) under ref recipe/<name>, and the
 * documents derived from one (the per-layer sensitivity report). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/compute/scores.h"
#include "engine/stages/build.h"
#include "engine/stages/build_names.h"
#include "engine/stages/ckpt_store.h"
#include "engine/stages/report.h"
#include "engine/stages/slice.h"

static json_t *recipe_json(const aqs_recipe *r) {
  json_t *doc = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:I, s:s, s:I, s:s, s:s, s:s}", "modality",
                          aqs_modality_name(r->modality), "description", r->description, "calib_samples",
                          (json_int_t)r->calib_samples, "max_len", (json_int_t)r->max_len, "seed", (json_int_t)r->seed,
                          "template", r->template_name, "chunk_sequences", (json_int_t)r->chunk_sequences, "method",
                          aqs_sens_method_name(r->method), "score_samples", (json_int_t)r->score_samples, "scope",
                          aqs_qwen_scope_name(r->scope), "candidates", aqs_candidates_name(r->candidates),
                          "export_format", r->export_format);
  if (r->kv_cache_fp8) json_object_set_new(doc, "kv_cache", json_string("fp8")); /* absent: bf16, as before */
  json_t *slice = aqs_slice_params_json(r);
  json_object_update(doc, slice);
  json_decref(slice);
  return doc;
}

aqs_status aqs_build_record_put(aqs_store *s, const aqs_recipe *r, aqs_build_report *rep, aqs_err *e) {
  json_t *stages = json_object(), *children = json_array();
  for (size_t i = 0; i < rep->n_stages; i++) {
    json_object_set_new(stages, rep->stage_names[i], aqs_stage_jdigest(&rep->stages[i].result));
    json_array_append_new(children, aqs_stage_jdigest(&rep->stages[i].result));
  }
  json_t *doc = json_pack("{s:s, s:i, s:s, s:o, s:o, s:{s:I, s:I, s:I, s:f}, s:o}", "kind", "aqs-build", "version", 1,
                          "recipe", r->name, "recipe_params", recipe_json(r), "stages", stages, "summary", "groups",
                          (json_int_t)rep->n_groups, "candidates", (json_int_t)rep->n_candidates, "fp8",
                          (json_int_t)rep->n_fp8, "effective_bits", rep->effective_bits, "children", children);
  aqs_status st = aqs_put_json(s, doc, 1, &rep->build_record, e);
  json_decref(doc);
  char ref[AQS_REF_NAME_MAX + 1], msg[128];
  const aqs_digest *model = aqs_build_report_result(rep, "source"), *data = aqs_build_report_result(rep, "calib-set");
  if (!model || !data) return aqs_errf(e, AQS_ERR_INTERNAL, "build of %s has no source or calib-set", r->name);
  aqs_build_ref_name(r->name, model, data, ref, sizeof ref);
  snprintf(msg, sizeof msg, "build %s", r->name);
  aqs_digest current;
  aqs_err ignore = {0};
  if (!st && (aqs_ref_get(s, ref, &current, &ignore) != AQS_OK || !aqs_digest_eq(&current, &rep->build_record)))
    st = aqs_ref_set(s, ref, &rep->build_record, msg, e);
  return st;
}

aqs_status aqs_build_record_load(aqs_store *s, const char *name, aqs_digest *record_out, json_t **doc_out,
                                 aqs_err *e) {
  aqs_build_entry b;
  aqs_status st = aqs_build_resolve(s, name, NULL, &b, e);
  if (st) return st;
  *record_out = b.record;
  *doc_out = b.doc;
  return AQS_OK;
}

aqs_status aqs_build_record_stage(const json_t *doc, const char *stage, aqs_digest *out, aqs_err *e) {
  const char *text = json_string_value(json_object_get(json_object_get(doc, "stages"), stage));
  if (!text) return aqs_errf(e, AQS_ERR_CORRUPT, "build record has no stage %s", stage);
  return aqs_digest_parse(text, out, e);
}

aqs_status aqs_build_sensitivity_docs(aqs_store *s, const json_t *record, char **markdown, char **scores_json,
                                      aqs_err *e) {
  aqs_digest sens, slice;
  char *text = NULL;
  size_t len = 0;
  aqs_scores sc = {0};
  aqs_plan *plan = NULL;
  char what[AQS_DIGEST_STR_SIZE];
  aqs_status st = aqs_build_record_stage(record, "sensitivity", &sens, e);
  if (!st) st = aqs_build_record_stage(record, "slice", &slice, e);
  if (!st) st = aqs_stage_get_text(s, &sens, &text, &len, e);
  if (!st) st = aqs_scores_from_json(text, len, aqs_digest_str(&sens, what), &sc, e);
  if (!st) st = aqs_build_load_plan(s, &slice, &plan, e);
  if (!st && markdown) {
    const char *name = json_string_value(json_object_get(record, "recipe"));
    *markdown = aqs_sensitivity_markdown(name ? name : "?", &sc, plan);
    if (!*markdown) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  if (!st && scores_json) {
    *scores_json = text;
    text = NULL;
  }
  free(text);
  aqs_scores_free(&sc);
  aqs_plan_free(plan);
  return st;
}
