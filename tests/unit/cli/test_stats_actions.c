/* tests/unit/cli/test_stats_actions.c: `aqs stats` and `aqs gc` on a store whose action cache
 * was exercised through the store API (no CLI command records actions): per-stage lookups,
 * hits, misses and hit rates in text and JSON; gc removing actions whose result it evicts. */
#include "testutil.h"

#include "store/store.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *store_dir;

/* Records one calibrate action, then looks up: calibrate hit x2 + miss x1, sensitivity miss x1. */
static void fill_store(void) {
  aqs_err err = {0};
  assert_int_equal(aqs_store_init(store_dir, NULL, &err), AQS_OK);
  aqs_store *s = NULL;
  assert_int_equal(aqs_store_open(store_dir, 0, &s, &err), AQS_OK);
  aqs_put_info result;
  const char manifest[] = "{\"children\": [], \"amax\": [1.5, 2.5]}";
  aqs_put_opts opts = {.compress = AQS_COMPRESS_DEFAULT, .manifest = 1};
  assert_int_equal(aqs_put_mem(s, manifest, strlen(manifest), &opts, &result, &err), AQS_OK);

  json_t *params = json_pack("{s:i}", "samples", 128);
  json_t *other_params = json_pack("{s:i}", "samples", 256);
  aqs_digest key, other_key;
  char *key_doc = NULL;
  assert_int_equal(aqs_action_key("calibrate", "1", NULL, params, &key, &key_doc, &err), AQS_OK);
  assert_int_equal(aqs_action_key("calibrate", "1", NULL, other_params, &other_key, NULL, &err),
                   AQS_OK);
  assert_int_equal(aqs_action_put(s, key_doc, &result.digest, 1.25, NULL, &err), AQS_OK);
  free(key_doc);
  json_decref(params);
  json_decref(other_params);

  assert_int_equal(aqs_action_lookup(s, "calibrate", &key, NULL, &err), AQS_OK);
  assert_int_equal(aqs_action_lookup(s, "calibrate", &key, NULL, &err), AQS_OK);
  assert_int_equal(aqs_action_lookup(s, "calibrate", &other_key, NULL, &err), AQS_ERR_NOT_FOUND);
  assert_int_equal(aqs_action_lookup(s, "sensitivity", &other_key, NULL, &err), AQS_ERR_NOT_FOUND);
  assert_int_equal(aqs_store_flush(s, &err), AQS_OK);
  aqs_store_close(s);
}

static int setup(void **state) {
  (void)state;
  char *tmp = tu_mkdtemp("cli-stats");
  if (asprintf(&store_dir, "%s/store", tmp) < 0) abort();
  free(tmp);
  fill_store();
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char *parent = strdup(store_dir);
  *strrchr(parent, '/') = '\0';
  tu_rm_rf(parent);
  free(parent);
  free(store_dir);
  return 0;
}

/* Runs `aqs --store <store> <args>`; returns its output (malloc'd) and checks the exit status. */
static char *run_aqs(const char *args, int want_status) {
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "'%s' --store '%s' %s 2>&1", tu_aqs_bin(), store_dir, args);
  char *out = NULL;
  int status = tu_run(cmd, &out);
  if (status != want_status) {
    fprintf(stderr, "%s -> %d (want %d):\n%s\n", cmd, status, want_status, out ? out : "");
    fail();
  }
  return out;
}

static json_t *stage_entry(json_t *doc, const char *stage) {
  json_t *stages = json_object_get(doc, "stages");
  assert_true(json_is_array(stages));
  size_t i;
  json_t *entry;
  json_array_foreach(stages, i, entry) {
    if (strcmp(json_string_value(json_object_get(entry, "stage")), stage) == 0) return entry;
  }
  fprintf(stderr, "stage %s missing from stats\n", stage);
  fail();
  return NULL;
}

static json_int_t int_field(json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  assert_true(json_is_integer(v));
  return json_integer_value(v);
}

static void test_stats_hit_rates(void **state) {
  (void)state;
  char *out = run_aqs("stats --json", 0);
  json_error_t jerr;
  json_t *doc = json_loads(out, 0, &jerr);
  if (!doc) fprintf(stderr, "bad JSON (%s): %s\n", jerr.text, out);
  assert_non_null(doc);
  assert_int_equal(int_field(doc, "actions"), 1);
  assert_int_equal(int_field(doc, "manifests"), 1);
  json_t *cal = stage_entry(doc, "calibrate");
  assert_int_equal(int_field(cal, "lookups"), 3);
  assert_int_equal(int_field(cal, "hits"), 2);
  assert_int_equal(int_field(cal, "misses"), 1);
  assert_float_equal(json_real_value(json_object_get(cal, "hit_rate")), 2.0 / 3.0, 1e-9);
  json_t *sens = stage_entry(doc, "sensitivity");
  assert_int_equal(int_field(sens, "lookups"), 1);
  assert_int_equal(int_field(sens, "hits"), 0);
  assert_float_equal(json_real_value(json_object_get(sens, "hit_rate")), 0.0, 1e-12);
  json_decref(doc);
  free(out);

  /* Text: one row per stage with the rate, and a total row (2 hits of 4 lookups). */
  out = run_aqs("stats", 0);
  assert_non_null(strstr(out, "hit rate"));
  assert_non_null(strstr(out, "66.7%"));
  assert_non_null(strstr(out, "sensitivity"));
  assert_non_null(strstr(out, "50.0%"));
  free(out);
}

static void test_gc_removes_evicted_actions(void **state) {
  (void)state;
  char *out = run_aqs("gc --limit 0 --json", 0);
  json_t *doc = json_loads(out, 0, NULL);
  assert_non_null(doc);
  assert_int_equal(int_field(doc, "evicted_objects"), 1);
  assert_int_equal(int_field(doc, "actions_removed"), 1);
  assert_int_equal(int_field(doc, "bytes_after"), 0);
  json_decref(doc);
  free(out);
  out = run_aqs("stats --json", 0);
  doc = json_loads(out, 0, NULL);
  assert_non_null(doc);
  assert_int_equal(int_field(doc, "actions"), 0);
  assert_int_equal(int_field(doc, "objects"), 0);
  json_decref(doc);
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_stats_hit_rates, setup, teardown),
    cmocka_unit_test_setup_teardown(test_gc_removes_evicted_actions, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
