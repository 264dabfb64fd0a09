/* tests/unit/stages/test_stage_table.c: the stage table and its walk. The table is a graph (every
 * input before its reader, names unique, recipe keys known); a new stage is one definition plus
 * one table entry: "token-count" below is defined here and walked with source and calib-set,
 * cached, planned, rebuilt and recorded with no other change; a slice hit records its summary
 * from the stored plan alone (no scores needed); the sensitivity method has one enum and an
 * unknown one is an error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/compute/sensitivity.h"
#include "engine/export/plan.h"
#include "engine/model/synth.h"
#include "engine/stages/build.h"
#include "engine/stages/build_names.h"
#include "engine/stages/calib_set.h"
#include "engine/stages/demo_data.h"
#include "engine/stages/recipe.h"
#include "engine/stages/recipe_keys.h"
#include "engine/stages/slice.h"
#include "engine/stages/stage.h"
#include "engine/stages/stage_env.h"
#include "testutil.h"

extern const aqs_stage_def aqs_stage_source, aqs_stage_calib_set, aqs_stage_slice;

/* ---- a new stage: the whole of it ---- */

static int token_count_runs; /* how often run() computed (the test's probe) */

static aqs_status token_count_key(aqs_stage_job *job, json_t **inputs, json_t **params, aqs_err *e) {
  (void)e;
  *inputs = json_pack("{s:o}", "calib_set", aqs_stage_jdigest(&job->in[0]));
  *params = json_pack("{s:s}", "unit", "tokens");
  return AQS_OK;
}

static aqs_status token_count_run(aqs_stage_job *job, aqs_stage_ctx *ctx, aqs_digest *result, aqs_err *e) {
  (void)ctx;
  aqs_calib_set set = {0};
  aqs_status st = aqs_calib_set_load(job->store, &job->in[0], &set, e);
  char text[64];
  snprintf(text, sizeof text, "{\"n_tokens\":%lld}", (long long)set.n_tokens);
  if (!st) st = aqs_stage_put_text(job->store, text, result, e);
  aqs_calib_set_free(&set);
  token_count_runs++;
  return st;
}

static const aqs_stage_def token_count = {
    .name = "token-count",
    .version = "1",
    .inputs = {"calib-set", NULL},
    .recipe_keys = "",
    .key = token_count_key,
    .run = token_count_run,
};

/* The table a build with the new stage walks: the entry is the only change. */
static const aqs_stage_def *const table[] = {&aqs_stage_source, &aqs_stage_calib_set, &token_count};

/* ---- fixture: a tiny synthetic model, captions, a store ---- */

typedef struct fixture {
  char *dir;
  char model[512], captions[512], store_path[512];
  aqs_store *store;
  aqs_recipe recipe;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  f->dir = tu_mkdtemp("stage-table");
  snprintf(f->model, sizeof f->model, "%s/model", f->dir);
  snprintf(f->captions, sizeof f->captions, "%s/captions.txt", f->dir);
  snprintf(f->store_path, sizeof f->store_path, "%s/store", f->dir);
  aqs_err e = {0};
  aqs_synth_opts so = {.preset = "tiny", .seed = 3, .out_dir = f->model, .naming = AQS_NAMING_HF5, .threads = 1};
  if (aqs_synth_write(&so, &e) || aqs_demo_write_captions(f->captions, 64, 5, &e) ||
      aqs_store_init(f->store_path, NULL, &e) || aqs_store_open(f->store_path, 0, &f->store, &e) ||
      aqs_recipe_load(NULL, "top50", &f->recipe, &e)) {
    fprintf(stderr, "setup: %s\n", e.msg);
    return -1;
  }
  f->recipe.calib_samples = 16;
  f->recipe.max_len = 48;
  f->recipe.chunk_sequences = 8;
  f->recipe.score_samples = 8;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  aqs_store_close(f->store);
  tu_rm_rf(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static aqs_build_opts opts_of(fixture *f) {
  return (aqs_build_opts){.store = f->store, .model_dir = f->model, .captions_path = f->captions,
                          .table = table, .n_table = 3};
}

static const char *state_of(const aqs_build_report *r, size_t i) {
  return !r->stages[i].done ? "-" : r->stages[i].hit ? "HIT" : "RUN";
}

/* ---- tests ---- */

static void test_table_is_a_graph(void **state) {
  (void)state;
  size_t n;
  const aqs_stage_def *const *t = aqs_stage_table(&n);
  assert_true(n >= 6 && n <= AQS_STAGE_MAX);
  const char *want[] = {"source", "calib-set", "calibrate", "sensitivity", "slice", "export"};
  for (size_t i = 0; i < 6; i++) assert_int_equal(aqs_stage_index(want[i]), (int)i);
  assert_int_equal(aqs_stage_index("no-such-stage"), -1);
  for (size_t i = 0; i < n; i++) {
    assert_non_null(t[i]->key);
    assert_non_null(t[i]->run);
    for (size_t j = 0; j < i; j++) assert_string_not_equal(t[i]->name, t[j]->name);
    for (int k = 0; t[i]->inputs[k]; k++) {
      int j = aqs_stage_index(t[i]->inputs[k]);
      assert_true(j >= 0 && j < (int)i); /* read stages come first */
    }
    /* Every recipe key a stage declares is in the recipe key table. */
    char keys[512];
    snprintf(keys, sizeof keys, "%s", t[i]->recipe_keys);
    char *save = NULL;
    for (char *k = strtok_r(keys, " ", &save); k; k = strtok_r(NULL, " ", &save)) {
      if (!aqs_recipe_key_find(k)) fail_msg("stage %s declares unknown recipe key %s", t[i]->name, k);
    }
  }
}

static void test_new_stage_walked_cached_rebuilt(void **state) {
  fixture *f = *state;
  aqs_err e = {0};
  aqs_build_opts o = opts_of(f);
  aqs_build_report rep;
  /* A plan on an empty store: calib-set misses, the new stage waits for it. */
  o.dry_run = 1;
  assert_int_equal(aqs_build_recipes(&o, &f->recipe, 1, &rep, &e), AQS_OK);
  assert_int_equal(rep.n_stages, 3);
  assert_string_equal(rep.stage_names[2], "token-count");
  assert_false(rep.stages[1].hit);
  assert_string_equal(rep.stages[1].reason, "never built");
  assert_false(rep.stages[2].done);
  assert_string_equal(rep.stages[2].blocked_by, "calib-set");
  assert_int_equal(token_count_runs, 0);

  o.dry_run = 0;
  aqs_status st = aqs_build_recipes(&o, &f->recipe, 1, &rep, &e);
  if (st) fail_msg("%s", e.msg);
  assert_string_equal(state_of(&rep, 2), "RUN");
  assert_int_equal(token_count_runs, 1);
  const aqs_digest *count = aqs_build_report_result(&rep, "token-count");
  assert_non_null(count);
  aqs_calib_set set = {0};
  assert_int_equal(aqs_calib_set_load(f->store, aqs_build_report_result(&rep, "calib-set"), &set, &e), AQS_OK);
  char *text;
  size_t len;
  assert_int_equal(aqs_stage_get_text(f->store, count, &text, &len, &e), AQS_OK);
  char want[64];
  snprintf(want, sizeof want, "{\"n_tokens\":%lld}", (long long)set.n_tokens);
  assert_true(set.n_tokens > 0);
  assert_string_equal(text, want);
  free(text);
  aqs_calib_set_free(&set);

  /* The build record lists the new stage. */
  json_t *doc;
  aqs_digest rec, got;
  assert_int_equal(aqs_build_record_load(f->store, "top50", &rec, &doc, &e), AQS_OK);
  assert_int_equal(aqs_build_record_stage(doc, "token-count", &got, &e), AQS_OK);
  assert_true(aqs_digest_eq(&got, count));
  json_decref(doc);

  /* Again: every stage hits, nothing runs; a plan says HIT too. */
  assert_int_equal(aqs_build_recipes(&o, &f->recipe, 1, &rep, &e), AQS_OK);
  for (size_t i = 0; i < 3; i++) assert_string_equal(state_of(&rep, i), "HIT");
  assert_int_equal(token_count_runs, 1);
  o.dry_run = 1;
  assert_int_equal(aqs_build_recipes(&o, &f->recipe, 1, &rep, &e), AQS_OK);
  assert_true(rep.stages[2].hit);

  /* --rebuild token-count: computed again though cached, same result; a plan explains it. */
  const char *rebuild[] = {"token-count"};
  o.rebuild = rebuild;
  o.n_rebuild = 1;
  assert_int_equal(aqs_build_recipes(&o, &f->recipe, 1, &rep, &e), AQS_OK);
  assert_string_equal(rep.stages[2].reason, "--rebuild token-count");
  o.dry_run = 0;
  assert_int_equal(aqs_build_recipes(&o, &f->recipe, 1, &rep, &e), AQS_OK);
  assert_string_equal(state_of(&rep, 1), "HIT");
  assert_string_equal(state_of(&rep, 2), "RUN");
  assert_true(rep.stages[2].forced);
  assert_int_equal(token_count_runs, 2);
  assert_true(aqs_digest_eq(aqs_build_report_result(&rep, "token-count"), count));

  /* A name that is no stage of the walked table is refused before anything runs. */
  const char *bogus[] = {"slice"};
  o.rebuild = bogus;
  assert_int_equal(aqs_build_recipes(&o, &f->recipe, 1, &rep, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "--rebuild slice: no such stage"));
}

/* A slice hit records groups, candidates, FP8 count and effective bits from the plan alone: with
 * no scores in the store at all, record() still gives what the decision gave. */
static void test_slice_record_from_plan_only(void **state) {
  fixture *f = *state;
  aqs_err e = {0};
  aqs_build_opts o = opts_of(f);
  aqs_stage_env env;
  aqs_stage_env_init(&env, &o, f->store);
  assert_int_equal(aqs_qwen_model_open(f->model, &env.model, NULL, &e), AQS_OK);
  /* Decide on made-up scores, as the slice stage's run() would. */
  size_t m = 0;
  aqs_slice_group groups[64];
  bool fp8[64];
  aqs_plan *plan = aqs_plan_new();
  for (size_t i = 0; i < env.model->ngroups && m < 64; i++) {
    const aqs_qwen_group *g = &env.model->groups[i];
    if (!aqs_qwen_group_in_scope(g, f->recipe.scope)) continue;
    groups[m] = (aqs_slice_group){.id = g->id, .score = (double)((i * 7) % 11), .weight_params = (int64_t)g->weight_params,
                                  .bias_params = (int64_t)g->bias_params, .n_modules = g->nmembers, .candidate = true};
    m++;
  }
  aqs_slice_params sp = {.coverage = 0.25, .order = AQS_ORDER_LEAST_SENSITIVE_FIRST};
  aqs_slice_result want;
  assert_int_equal(aqs_slice_decide(groups, m, &sp, fp8, &want, &e), AQS_OK);
  for (size_t i = 0; i < m; i++) {
    assert_int_equal(aqs_plan_set(plan, groups[i].id, fp8[i] ? AQS_FMT_FP8 : AQS_FMT_BF16, &e), AQS_OK);
    assert_int_equal(aqs_plan_set_score(plan, groups[i].id, groups[i].score, &e), AQS_OK);
  }
  char *pj = aqs_plan_to_json(plan);
  aqs_digest plan_d;
  assert_int_equal(aqs_stage_put_text(f->store, pj, &plan_d, &e), AQS_OK);
  free(pj);
  aqs_plan_free(plan);
  aqs_build_report rep = {0};
  aqs_stage_job job = {.store = f->store, .env = &env, .recipe = &f->recipe, .report = &rep};
  assert_int_equal(aqs_stage_slice.record(&job, &plan_d, &e), AQS_OK);
  assert_int_equal(rep.n_groups, want.n_groups);
  assert_int_equal(rep.n_candidates, want.n_candidates);
  assert_int_equal(rep.n_fp8, want.n_fp8);
  assert_true(rep.n_fp8 > 0 && rep.n_fp8 < rep.n_groups);
  assert_true(rep.effective_bits == want.effective_bits); /* the same sums in the same order */
  aqs_qwen_model_free(env.model);
}

static void test_one_method_enum_no_fallback(void **state) {
  (void)state;
  aqs_sens_method m;
  aqs_err e = {0};
  assert_int_equal(aqs_sens_method_parse("kl_div", &m, &e), AQS_OK);
  assert_int_equal(m, AQS_SENS_KL_DIV);
  assert_string_equal(aqs_sens_method_name(m), "kl_div");
  assert_int_equal(aqs_sens_method_parse("fisher", &m, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "unknown sensitivity method 'fisher'"));
  assert_null(aqs_sens_method_name((aqs_sens_method)7)); /* no silent gradient */
  aqs_scores out;
  aqs_token_batch b = {0};
  assert_int_equal(aqs_sensitivity_batch(NULL, &b, (aqs_sens_method)7, 0, &out, NULL, &e), AQS_ERR_INVALID);
  assert_non_null(strstr(e.msg, "unknown sensitivity method 7"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table_is_a_graph),
      cmocka_unit_test(test_new_stage_walked_cached_rebuilt),
      cmocka_unit_test(test_slice_record_from_plan_only),
      cmocka_unit_test(test_one_method_enum_no_fallback),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
