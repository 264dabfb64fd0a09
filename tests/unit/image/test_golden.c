/* tests/unit/image/test_golden.c: conformance of decoding + Qwen2-VL preprocessing with the
 * goldens made by tests/conformance/gen_image_golden.py (transformers 5.17's PIL-backed
 * Qwen2VLImageProcessorPil, Pillow 12.3). Prints max/mean abs differences of the resized pixels
 * (before normalization, in 0..255 units) and of the normalized floats. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "engine/image/image.h"
#include "engine/image/qwen_vision.h"

static char *fixture(const char *name) {
  char *p = malloc(4096);
  snprintf(p, 4096, "%s", tu_src_path("tests/fixtures/images/"));
  strncat(p, name, 4096 - strlen(p) - 1);
  return p;
}

static json_t *load_index(void) {
  char *path = fixture("golden.json");
  json_error_t jerr;
  json_t *root = json_load_file(path, 0, &jerr);
  if (!root) fprintf(stderr, "%s: %s\n", path, jerr.text);
  free(path);
  assert_non_null(root);
  return root;
}

static void *read_fixture(const char *name, size_t *len) {
  char *path = fixture(name);
  void *data = tu_read_file(path, len);
  if (!data) fprintf(stderr, "missing fixture %s\n", path);
  free(path);
  assert_non_null(data);
  return data;
}

/* Decoded RGB equals PIL's Image.open().convert("RGB") for every PNG/JPEG mode in the set. */
static void test_decode_matches_pil(void **state) {
  (void)state;
  json_t *root = load_index(), *cases = json_object_get(root, "cases");
  size_t i;
  json_t *c;
  json_array_foreach(cases, i, c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    char *path = fixture(json_string_value(json_object_get(c, "file")));
    aqs_image img;
    aqs_err err = {0};
    aqs_status st = aqs_image_load_file(path, 0, &img, &err);
    if (st != AQS_OK) fprintf(stderr, "%s: %s\n", name, err.msg);
    assert_int_equal(st, AQS_OK);
    assert_int_equal(img.width, json_integer_value(json_object_get(c, "width")));
    assert_int_equal(img.height, json_integer_value(json_object_get(c, "height")));
    size_t len;
    uint8_t *want = read_fixture(json_string_value(json_object_get(c, "rgb_file")), &len);
    assert_int_equal(len, (size_t)img.width * img.height * 3);
    int max_diff = 0;
    for (size_t k = 0; k < len; k++) {
      int d = abs((int)img.rgb[k] - (int)want[k]);
      if (d > max_diff) max_diff = d;
    }
    printf("decode %-18s %-5s max abs diff %d\n", name,
           json_string_value(json_object_get(c, "pil_mode")), max_diff);
    assert_int_equal(max_diff, 0);
    free(want);
    aqs_image_free(&img);
    free(path);
  }
  json_decref(root);
}

static void cfg_for(json_t *root, const char *cfg_name, aqs_qwen_vision_cfg *cfg) {
  aqs_qwen_vision_cfg_default(cfg);
  json_t *c = json_object_get(json_object_get(root, "configs"), cfg_name);
  cfg->min_pixels = json_integer_value(json_object_get(c, "min_pixels"));
  cfg->max_pixels = json_integer_value(json_object_get(c, "max_pixels"));
}

/* Resized pixels (before rescale/normalize) and the normalized floats against transformers. */
static void test_preprocess_matches_transformers(void **state) {
  (void)state;
  json_t *root = load_index(), *cases = json_object_get(root, "cases");
  double total_abs = 0, total_n = 0, f32_max = 0;
  int u8_max = 0, f32_files = 0, sha_cases = 0, sha_equal = 0;
  size_t i;
  json_t *c;
  json_array_foreach(cases, i, c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    char *path = fixture(json_string_value(json_object_get(c, "file")));
    aqs_image img;
    aqs_err err = {0};
    assert_int_equal(aqs_image_load_file(path, 0, &img, &err), AQS_OK);
    const char *cfg_name;
    json_t *res;
    json_object_foreach(json_object_get(c, "results"), cfg_name, res) {
      assert_null(json_object_get(res, "error"));
      aqs_qwen_vision_cfg cfg;
      cfg_for(root, cfg_name, &cfg);
      /* 1) before normalization: do_rescale/do_normalize off -> resized bytes as floats. */
      aqs_qwen_vision_cfg raw_cfg = cfg;
      raw_cfg.do_rescale = raw_cfg.do_normalize = 0;
      aqs_qwen_pixels px;
      aqs_status st = aqs_qwen_preprocess(&img, &raw_cfg, &px, NULL, &err);
      if (st) fprintf(stderr, "%s/%s: %s\n", name, cfg_name, err.msg);
      assert_int_equal(st, AQS_OK);
      json_t *grid = json_object_get(res, "grid_thw");
      assert_int_equal(px.grid_t, json_integer_value(json_array_get(grid, 0)));
      assert_int_equal(px.grid_h, json_integer_value(json_array_get(grid, 1)));
      assert_int_equal(px.grid_w, json_integer_value(json_array_get(grid, 2)));
      assert_int_equal(px.patch_dim, 1176);
      size_t len;
      uint8_t *want = read_fixture(json_string_value(json_object_get(res, "u8_file")), &len);
      assert_int_equal(len, (size_t)px.n_patches * 3 * 14 * 14);
      int case_max = 0;
      double case_abs = 0;
      for (int64_t p = 0; p < px.n_patches; p++)
        for (int ch = 0; ch < 3; ch++)
          for (int t = 0; t < 2; t++)
            for (int k = 0; k < 196; k++) {
              float ours = px.patches[p * 1176 + (ch * 2 + t) * 196 + k];
              int d = abs((int)lrintf(ours) - (int)want[(p * 3 + ch) * 196 + k]);
              case_abs += d;
              if (d > case_max) case_max = d;
            }
      total_abs += case_abs;
      total_n += (double)px.n_patches * 1176;
      if (case_max > u8_max) u8_max = case_max;
      printf("resize %-18s %-7s grid 1x%dx%d max %d mean %.5f (x1/255)\n", name, cfg_name,
             px.grid_h, px.grid_w, case_max, case_abs / ((double)px.n_patches * 1176));
      free(want);
      aqs_qwen_pixels_free(&px);
      /* 2) normalized floats: sum always, bytes where the golden keeps them. */
      assert_int_equal(aqs_qwen_preprocess(&img, &cfg, &px, NULL, &err), AQS_OK);
      double sum = 0;
      for (int64_t k = 0; k < px.n_patches * 1176; k++) sum += px.patches[k];
      double want_sum = json_real_value(json_object_get(res, "f32_sum"));
      assert_true(fabs(sum - want_sum) <= 1e-3 * (1 + fabs(want_sum)));
      /* Bit-exactness: the SHA-256 of our float32 bytes equals the golden's (x86-64 LE). */
      unsigned char md[32];
      unsigned int md_len = 0;
      EVP_Digest(px.patches, (size_t)px.n_patches * 1176 * sizeof(float), md, &md_len,
                 EVP_sha256(), NULL);
      char hex[65];
      for (int k = 0; k < 32; k++) snprintf(hex + 2 * k, 3, "%02x", md[k]);
      if (strcmp(hex, json_string_value(json_object_get(res, "f32_sha256"))) == 0) sha_equal++;
      json_t *f32_file = json_object_get(res, "f32_file");
      if (f32_file) {
        float *wantf = read_fixture(json_string_value(f32_file), &len);
        assert_int_equal(len, (size_t)px.n_patches * 1176 * sizeof(float));
        for (int64_t k = 0; k < px.n_patches * 1176; k++) {
          double d = fabs((double)px.patches[k] - wantf[k]);
          if (d > f32_max) f32_max = d;
        }
        f32_files++;
        free(wantf);
      }
      sha_cases++;
      aqs_qwen_pixels_free(&px);
    }
    aqs_image_free(&img);
    free(path);
  }
  double mean = total_abs / total_n;
  printf("golden summary: %d case/config pairs; resized pixels max abs diff %d/255, mean %.6f/255;"
         " normalized floats max abs diff %.3g over %d full outputs; %d/%d outputs bit-identical\n",
         sha_cases, u8_max, mean, f32_max, f32_files, sha_equal, sha_cases);
  assert_true(u8_max <= 2);      /* target: max <= 2/255 */
  assert_true(mean <= 0.5);      /* target: mean <= 0.5/255 */
  assert_true(f32_max <= 1e-6);  /* same float32 arithmetic as numpy */
  assert_int_equal(sha_equal, sha_cases);
  json_decref(root);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_decode_matches_pil),
    cmocka_unit_test(test_preprocess_matches_transformers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
