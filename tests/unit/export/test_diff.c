/* tests/unit/export/test_diff.c: the export diff and its proof on a tiny synthetic model:
 * identical plans, top10-like vs top50-like plans (exactly the expected groups differ), a
 * tampered tensor outside any group and inside a differing group, a group that differs although
 * both plans agree (changed amax), and two different plans with identical weights. */
#include "export_fixture.h"

#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <unistd.h>

#include "engine/export/diff.h"
#include "engine/model/safetensors.h"

static void copy_dir(const char *from, const char *to) {
  char cmd[9000];
  snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", from, to);
  assert_int_equal(tu_run(cmd, NULL), 0);
}

/* Flips one bit in the middle of tensor `name` of the export in dir. */
static void tamper(const char *dir, const char *name) {
  aqs_ckpt *c;
  aqs_err e;
  fx_check(aqs_ckpt_open(dir, &c, &e), &e);
  const aqs_st_tensor *t = aqs_ckpt_find(c, name);
  assert_non_null(t);
  uint64_t off = t->file_offset + t->nbytes / 2;
  uint8_t byte = ((const uint8_t *)t->data)[t->nbytes / 2] ^ 0x01;
  char path[4096];
  snprintf(path, sizeof path, "%s", t->file->path);
  aqs_ckpt_close(c);
  int fd = open(path, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, &byte, 1, (off_t)off), 1);
  close(fd);
}

static int has_violation(const aqs_diff_report *r, const char *a, const char *b) {
  for (size_t i = 0; i < r->nviolations; i++)
    if (strstr(r->violations[i], a) && (!b || strstr(r->violations[i], b))) return 1;
  return 0;
}

static void test_identical_plans(void **state) {
  (void)state;
  fx_model *fx = fx_model_new("diff-same");
  aqs_plan *p = fx_plan(fx, fx_pick_half);
  const char *a = fx_export(fx, p, "a", NULL);
  const char *b = fx_export(fx, p, "b", NULL);
  aqs_diff_report r;
  aqs_err e;
  fx_check(aqs_export_diff(a, b, 0, &r, &e), &e);
  assert_true(r.proof_holds);
  assert_int_equal(r.ntensors, 0);
  assert_int_equal(r.n_identical, r.n_tensors_a);
  assert_int_equal(r.n_tensors_a, r.n_tensors_b);
  assert_non_null(strstr(r.verdict, "identical"));
  aqs_diff_report_free(&r);
  aqs_plan_free(p);
  fx_model_free(fx);
}

static void test_top10_vs_top50(void **state) {
  (void)state;
  fx_model *fx = fx_model_new("diff-top");
  aqs_plan *p10 = fx_plan(fx, fx_pick_top10), *p50 = fx_plan(fx, fx_pick_top50);
  const char *a = fx_export(fx, p10, "top10", NULL);
  const char *b = fx_export(fx, p50, "top50", NULL);
  aqs_diff_report r;
  aqs_err e;
  fx_check(aqs_export_diff(a, b, 0, &r, &e), &e);
  assert_true(r.proof_holds);
  size_t n = fx->model->n_lm_groups, lo = (n + 9) / 10, hi = (n + 1) / 2;
  assert_int_equal(r.n_plan_diff, hi - lo);
  assert_int_equal(r.ngroups, hi - lo);
  size_t expected_tensors = 0;
  for (size_t i = 0; i < r.ngroups; i++) {
    const aqs_qwen_group *g = &fx->model->groups[lo + i];
    assert_string_equal(r.groups[i].id, g->id); /* natural order == model order */
    assert_true(r.groups[i].in_plan_diff);
    assert_int_equal(r.groups[i].format_a, AQS_FMT_BF16);
    assert_int_equal(r.groups[i].format_b, AQS_FMT_FP8);
    /* per member: the weight changes, weight_scale and input_scale exist only in B */
    assert_int_equal(r.groups[i].n_differ, 3 * (size_t)g->nmembers);
    expected_tensors += 3 * (size_t)g->nmembers;
    assert_true(r.groups[i].max_abs > 0);
    assert_true(r.groups[i].rel_l2 > 0 && r.groups[i].rel_l2 < 0.1); /* FP8-sized error */
  }
  assert_int_equal(r.ntensors, expected_tensors);
  for (size_t i = 0; i < r.ntensors; i++) {
    if (r.tensors[i].kind == AQS_DIFF_CHANGED) {
      assert_string_equal(r.tensors[i].dtype_a, "BF16");
      assert_string_equal(r.tensors[i].dtype_b, "F8_E4M3");
    } else {
      assert_int_equal(r.tensors[i].kind, AQS_DIFF_ONLY_B);
    }
  }
  assert_non_null(strstr(r.verdict, "proof holds"));
  char *json = aqs_diff_report_to_json(&r);
  json_t *doc = json_loads(json, 0, NULL);
  assert_true(json_is_true(json_object_get(doc, "proof_holds")));
  assert_int_equal(json_array_size(json_object_get(doc, "plan_diff")), hi - lo);
  json_decref(doc);
  free(json);
  aqs_diff_report_free(&r);

  /* reversed order: same groups, formats swapped */
  fx_check(aqs_export_diff(b, a, 0, &r, &e), &e);
  assert_int_equal(r.ngroups, hi - lo);
  assert_int_equal(r.groups[0].format_a, AQS_FMT_FP8);
  aqs_diff_report_free(&r);
  aqs_plan_free(p10);
  aqs_plan_free(p50);
  fx_model_free(fx);
}

static void test_tampered_tensor(void **state) {
  (void)state;
  fx_model *fx = fx_model_new("diff-tamper");
  aqs_plan *p10 = fx_plan(fx, fx_pick_top10), *p50 = fx_plan(fx, fx_pick_top50);
  const char *a = fx_export(fx, p10, "top10", NULL);
  const char *b = fx_export(fx, p50, "top50", NULL);
  char c[4200];
  snprintf(c, sizeof c, "%s/tampered", fx->root);
  copy_dir(b, c);
  tamper(c, "model.language_model.embed_tokens.weight");
  aqs_diff_report r;
  aqs_err e;
  aqs_err_clear(&e);
  assert_int_equal(aqs_export_diff(a, c, 0, &r, &e), AQS_ERR_MISMATCH);
  assert_false(r.proof_holds);
  assert_true(has_violation(&r, "model.language_model.embed_tokens.weight", "belongs to no quantization group"));
  assert_true(has_violation(&r, "model.language_model.embed_tokens.weight", "changed after export"));
  assert_non_null(strstr(e.msg, "proof fails"));
  aqs_diff_report_free(&r);

  /* tampering inside a group that may differ is still caught, by the manifest */
  char d[4200];
  snprintf(d, sizeof d, "%s/tampered2", fx->root);
  copy_dir(b, d);
  const aqs_qwen_group *g = &fx->model->groups[(fx->model->n_lm_groups + 1) / 2 - 1];
  char name[300];
  snprintf(name, sizeof name, "%s.weight", g->members[0].module);
  tamper(d, name);
  aqs_err_clear(&e);
  assert_int_equal(aqs_export_diff(a, d, 0, &r, &e), AQS_ERR_MISMATCH);
  assert_true(has_violation(&r, name, "changed after export"));
  aqs_diff_report_free(&r);
  aqs_plan_free(p10);
  aqs_plan_free(p50);
  fx_model_free(fx);
}

static void test_group_differs_with_same_plan(void **state) {
  (void)state;
  fx_model *fx = fx_model_new("diff-amax");
  aqs_plan *p = fx_plan(fx, fx_pick_all);
  const char *a = fx_export(fx, p, "a", NULL);
  /* recalibrated input amax for lm.1.o's module: same plan, different input_scale */
  const aqs_qwen_group *g = aqs_qwen_find_group(fx->model, "lm.1.o");
  assert_non_null(g);
  aqs_amax_set(&fx->amax, g->members[0].module, 99.0f, 0.1f, NULL);
  const char *b = fx_export(fx, p, "b", NULL);
  aqs_diff_report r;
  aqs_err e;
  aqs_err_clear(&e);
  assert_int_equal(aqs_export_diff(a, b, 0, &r, &e), AQS_ERR_MISMATCH);
  assert_true(has_violation(&r, "group lm.1.o differs in 1 tensor(s) but both plans make it fp8", NULL));
  assert_int_equal(r.ntensors, 1);
  assert_non_null(strstr(r.tensors[0].name, ".input_scale"));
  aqs_diff_report_free(&r);
  aqs_plan_free(p);
  fx_model_free(fx);
}

static void test_different_plans_identical_weights(void **state) {
  (void)state;
  fx_model *fx = fx_model_new("diff-noop");
  aqs_plan *p = fx_plan(fx, fx_pick_half);
  const char *a = fx_export(fx, p, "a", NULL);
  char b[4200], path[4300];
  snprintf(b, sizeof b, "%s/b", fx->root);
  copy_dir(a, b);
  /* B's manifest claims a plan with lm.0.o fp8 too, but its weights were never re-exported */
  snprintf(path, sizeof path, "%s/%s", b, AQS_EXPORT_MANIFEST);
  json_t *m = json_load_file(path, 0, NULL);
  assert_non_null(m);
  json_object_set_new(json_object_get(json_object_get(m, "plan"), "groups"), "lm.0.o", json_string("fp8"));
  assert_int_equal(json_dump_file(m, path, JSON_INDENT(1)), 0);
  json_decref(m);
  aqs_diff_report r;
  aqs_err e;
  aqs_err_clear(&e);
  assert_int_equal(aqs_export_diff(a, b, 0, &r, &e), AQS_ERR_MISMATCH);
  assert_non_null(strstr(e.msg, "plans differ in 1 group(s) (lm.0.o) but the two checkpoints have identical weights"));
  aqs_diff_report_free(&r);
  aqs_plan_free(p);
  fx_model_free(fx);
}

static void test_not_an_export(void **state) {
  (void)state;
  fx_model *fx = fx_model_new("diff-bad");
  aqs_diff_report r;
  aqs_err e;
  aqs_err_clear(&e);
  assert_int_equal(aqs_export_diff(fx->src, fx->src, 0, &r, &e), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "is not an aqs export"));
  assert_non_null(strstr(e.msg, fx->src));
  aqs_diff_report_free(&r);
  fx_model_free(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_identical_plans),
    cmocka_unit_test(test_top10_vs_top50),
    cmocka_unit_test(test_tampered_tensor),
    cmocka_unit_test(test_group_differs_with_same_plan),
    cmocka_unit_test(test_different_plans_identical_weights),
    cmocka_unit_test(test_not_an_export),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
