/* tests/unit/image/test_resize.c: the PIL-equal bicubic resampler against Pillow goldens
 * (tests/conformance/gen_resize_golden.py: downscales, upscales, 1-pixel sides, identity) and
 * smart_resize against transformers' rules (rounding half to even, min/max pixels, ratio limit). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/image/qwen_vision.h"
#include "engine/image/resize.h"

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void test_resize_matches_pillow(void **state) {
  (void)state;
  size_t len;
  uint8_t *data = (uint8_t *)tu_read_file(tu_src_path("tests/fixtures/images/resize_golden.bin"), &len);
  assert_non_null(data);
  assert_memory_equal(data, "AQSRSZ1\0", 8);
  aqs_image src = {(int32_t)rd32(data + 8), (int32_t)rd32(data + 12), NULL};
  uint32_t n_cases = rd32(data + 16);
  size_t off = 20;
  src.rgb = data + off;
  off += (size_t)src.width * src.height * 3;
  for (uint32_t k = 0; k < n_cases; k++) {
    int32_t w = (int32_t)rd32(data + off), h = (int32_t)rd32(data + off + 4);
    off += 8;
    assert_true(off + (size_t)w * h * 3 <= len);
    aqs_image dst;
    aqs_err err = {0};
    assert_int_equal(aqs_image_resize_bicubic(&src, w, h, &dst, &err), AQS_OK);
    int max_diff = 0;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
      int d = abs((int)dst.rgb[i] - (int)data[off + i]);
      if (d > max_diff) max_diff = d;
    }
    if (max_diff) printf("resize %dx%d -> %dx%d: max abs diff %d\n", src.width, src.height, w, h, max_diff);
    assert_int_equal(max_diff, 0);
    off += (size_t)w * h * 3;
    aqs_image_free(&dst);
  }
  printf("%u Pillow resize cases byte-identical\n", n_cases);
  free(data);
}

static void test_resize_invalid(void **state) {
  (void)state;
  uint8_t px[3] = {1, 2, 3};
  aqs_image src = {1, 1, px}, dst;
  aqs_err err = {0};
  assert_int_equal(aqs_image_resize_bicubic(&src, 0, 5, &dst, &err), AQS_ERR_INVALID);
  assert_int_equal(aqs_image_resize_bicubic(&src, 4, 3, &dst, &err), AQS_OK);
  for (int i = 0; i < 12; i++) assert_int_equal(dst.rgb[i * 3 + 1], 2); /* a constant stays constant */
  aqs_image_free(&dst);
}

static void check_smart(int64_t h, int64_t w, int64_t min_px, int64_t max_px, int32_t want_h, int32_t want_w) {
  int32_t rh, rw;
  aqs_err err = {0};
  assert_int_equal(aqs_qwen_smart_resize(h, w, 28, min_px, max_px, &rh, &rw, &err), AQS_OK);
  if (rh != want_h || rw != want_w)
    printf("smart_resize(%lld, %lld) = %d x %d, want %d x %d\n", (long long)h, (long long)w, rh, rw, want_h, want_w);
  assert_int_equal(rh, want_h);
  assert_int_equal(rw, want_w);
}

static void test_smart_resize(void **state) {
  (void)state;
  const int64_t mn = 3136, mx = 12845056;
  check_smart(67, 101, mn, mx, 56, 112);     /* golden rgb_101x67: grid 4 x 8 */
  check_smart(157, 283, mn, mx, 168, 280);   /* golden: grid 12 x 20 */
  check_smart(157, 283, mn, 28 * 28 * 20, 84, 168); /* golden "small": grid 6 x 12 (downscale) */
  check_smart(9, 13, mn, mx, 56, 84);        /* golden tiny_13x9: grid 4 x 6 (upscale to min) */
  check_smart(9, 400, mn, mx, 28, 392);      /* golden wide_400x9: grid 2 x 28 */
  check_smart(42, 42, mn, mx, 56, 56);       /* 1.5 rounds half to even: 2 */
  check_smart(70, 70, mn, mx, 56, 56);       /* 2.5 -> 2 (half to even), not 3 */
  check_smart(98, 98, mn, mx, 112, 112);     /* 3.5 -> 4 */
  check_smart(480, 640, mn, mx, 476, 644);   /* COCO-sized */
  check_smart(4000, 6000, mn, 1003520, 812, 1204); /* downscale to max_pixels (floor) */
  int32_t rh, rw;
  aqs_err err = {0};
  assert_int_equal(aqs_qwen_smart_resize(1, 201, 28, mn, mx, &rh, &rw, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "aspect ratio"));
  assert_int_equal(aqs_qwen_smart_resize(0, 10, 28, mn, mx, &rh, &rw, &err), AQS_ERR_INVALID);
}

static void test_config_load(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("vcfg");
  char path[4200];
  snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
  static const char good[] = "{\"min_pixels\": 1000, \"max_pixels\": 50000, \"patch_size\": 14,"
                             " \"image_mean\": [0.5, 0.5, 0.5], \"image_std\": [0.5, 0.25, 0.5],"
                             " \"size\": {\"shortest_edge\": 7, \"longest_edge\": 9}}";
  tu_write_file(path, good, sizeof good - 1);
  aqs_qwen_vision_cfg cfg;
  aqs_err err = {0};
  assert_int_equal(aqs_qwen_vision_cfg_load(path, &cfg, &err), AQS_OK);
  assert_int_equal(cfg.min_pixels, 1000); /* min_pixels overrides size.shortest_edge */
  assert_int_equal(cfg.max_pixels, 50000);
  assert_true(cfg.image_std[1] == 0.25f);
  assert_int_equal(cfg.merge_size, 2);
  static const char bad[] = "{\"image_std\": [0.5, 0, 0.5]}";
  tu_write_file(path, bad, sizeof bad - 1);
  assert_int_equal(aqs_qwen_vision_cfg_load(path, &cfg, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "image_std"));
  assert_non_null(strstr(err.msg, path));
  tu_write_file(path, "{not json", 9);
  assert_int_equal(aqs_qwen_vision_cfg_load(path, &cfg, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, path));
  snprintf(path, sizeof path, "%s/missing.json", dir);
  assert_int_equal(aqs_qwen_vision_cfg_load(path, &cfg, &err), AQS_ERR_NOT_FOUND);
  tu_rm_rf(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_resize_matches_pillow),
    cmocka_unit_test(test_resize_invalid),
    cmocka_unit_test(test_smart_resize),
    cmocka_unit_test(test_config_load),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
