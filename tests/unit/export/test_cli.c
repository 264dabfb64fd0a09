/* tests/unit/export/test_cli.c: `aqs export` and `aqs diff` as a user runs them: exit codes,
 * the text and JSON outputs, usage errors, and errors naming the offending file. */
#include "export_fixture.h"

#include <fcntl.h>
#include <jansson.h>
#include <unistd.h>

static char *run(int want_rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *run(int want_rc, const char *fmt, ...) {
  char cmd[16384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  char *out = NULL;
  int rc = tu_run(cmd, &out);
  if (rc != want_rc) fprintf(stderr, "command: %s\nexit %d (want %d), output:\n%s\n", cmd, rc, want_rc, out);
  assert_int_equal(rc, want_rc);
  return out;
}

static void test_export_and_diff_cli(void **state) {
  (void)state;
  fx_model *fx = fx_model_new("cli");
  const char *aqs = tu_aqs_bin();
  char amax[4200], p10[4200], p50[4200], o1[4200], o2[4200], o3[4200];
  snprintf(amax, sizeof amax, "%s/amax.json", fx->root);
  snprintf(p10, sizeof p10, "%s/top10.json", fx->root);
  snprintf(p50, sizeof p50, "%s/top50.json", fx->root);
  snprintf(o1, sizeof o1, "%s/o1", fx->root);
  snprintf(o2, sizeof o2, "%s/o2", fx->root);
  snprintf(o3, sizeof o3, "%s/o3", fx->root);
  aqs_err e;
  fx_check(aqs_amax_save(&fx->amax, amax, &e), &e);
  aqs_plan *a = fx_plan(fx, fx_pick_top10), *b = fx_plan(fx, fx_pick_top50);
  fx_check(aqs_plan_save(a, p10, &e), &e);
  fx_check(aqs_plan_save(b, p50, &e), &e);

  char *out = run(0, "'%s' export --model '%s' --amax '%s' --plan '%s' --out '%s' --quiet 2>&1", aqs,
                  fx->src, amax, p10, o1);
  assert_non_null(strstr(out, "exported"));
  assert_non_null(strstr(out, "effective bits"));
  free(out);
  out = run(0, "'%s' export --model '%s' --amax '%s' --plan '%s' --out '%s' --quiet --json", aqs,
            fx->src, amax, p50, o2);
  json_t *doc = json_loads(out, 0, NULL);
  assert_non_null(doc);
  assert_int_equal(json_integer_value(json_object_get(doc, "fp8")), aqs_plan_count(b, AQS_FMT_FP8));
  assert_true(json_number_value(json_object_get(doc, "effective_bits")) < 16.0);
  json_decref(doc);
  free(out);

  out = run(0, "'%s' diff '%s' '%s' --quiet", aqs, o1, o2);
  assert_non_null(strstr(out, "proof holds"));
  assert_non_null(strstr(out, "expected"));
  free(out);
  out = run(0, "'%s' diff '%s' '%s' --quiet --json", aqs, o1, o2);
  doc = json_loads(out, 0, NULL);
  assert_true(json_is_true(json_object_get(doc, "proof_holds")));
  json_decref(doc);
  free(out);

  /* a tampered copy: exit 1, the reason on stderr */
  out = run(0, "cp -r '%s' '%s' && chmod -R u+w '%s'", o2, o3, o3);
  free(out);
  char shard[4300];
  snprintf(shard, sizeof shard, "%s/model-embed.safetensors", o3);
  int fd = open(shard, O_RDWR);
  assert_true(fd >= 0);
  unsigned char byte;
  assert_int_equal(pread(fd, &byte, 1, 4000), 1);
  byte ^= 0x10;
  assert_int_equal(pwrite(fd, &byte, 1, 4000), 1);
  close(fd);
  out = run(1, "'%s' diff '%s' '%s' --quiet 2>&1", aqs, o1, o3);
  assert_non_null(strstr(out, "proof fails"));
  assert_non_null(strstr(out, "embed_tokens"));
  free(out);

  /* errors */
  out = run(2, "'%s' export --model '%s' 2>&1", aqs, fx->src);
  assert_non_null(strstr(out, "required"));
  free(out);
  out = run(1, "'%s' export --model '%s' --amax '%s/nope.json' --plan '%s' --out '%s/o4' 2>&1", aqs,
            fx->src, fx->root, p10, fx->root);
  assert_non_null(strstr(out, "nope.json"));
  free(out);
  out = run(1, "'%s' export --model '%s' --amax '%s' --plan '%s' --out '%s' --quiet 2>&1", aqs,
            fx->src, amax, p10, o1);
  assert_non_null(strstr(out, "is not empty"));
  free(out);
  out = run(2, "'%s' diff '%s' 2>&1", aqs, o1);
  free(out);
  out = run(1, "'%s' diff '%s' '%s' 2>&1", aqs, o1, fx->src);
  assert_non_null(strstr(out, "is not an aqs export"));
  free(out);
  out = run(0, "'%s' diff --help", aqs);
  assert_non_null(strstr(out, "usage: aqs diff"));
  free(out);
  out = run(0, "'%s' export --help", aqs);
  assert_non_null(strstr(out, "usage: aqs export"));
  free(out);
  aqs_plan_free(a);
  aqs_plan_free(b);
  fx_model_free(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_export_and_diff_cli),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
