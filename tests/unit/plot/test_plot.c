/* tests/unit/plot/test_plot.c: the report's figures decode with libpng at the size drawn, hold
 * more than one colour where they should (text, markers, colour ramp, outlines), and a write
 * into a missing directory fails naming the file. */
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "engine/plot/plot.h"

typedef struct image {
  int w, h;
  uint8_t *rgb;
} image;

/* Decodes path with libpng into 8-bit RGB. */
static image decode(const char *path) {
  image im = {0};
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) fail_msg("libpng could not decode %s", path);
  png_init_io(png, f);
  png_read_png(png, info, PNG_TRANSFORM_STRIP_16 | PNG_TRANSFORM_PACKING | PNG_TRANSFORM_EXPAND, NULL);
  im.w = (int)png_get_image_width(png, info);
  im.h = (int)png_get_image_height(png, info);
  assert_int_equal(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
  png_bytep *rows = png_get_rows(png, info);
  im.rgb = malloc((size_t)im.w * im.h * 3);
  for (int y = 0; y < im.h; y++) memcpy(im.rgb + (size_t)y * im.w * 3, rows[y], (size_t)im.w * 3);
  png_destroy_read_struct(&png, &info, NULL);
  fclose(f);
  return im;
}

static uint32_t pixel(const image *im, int x, int y) {
  const uint8_t *p = im->rgb + ((size_t)y * im->w + x) * 3;
  return ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2];
}

static int count_colour(const image *im, uint32_t rgb) {
  int n = 0;
  for (int y = 0; y < im->h; y++)
    for (int x = 0; x < im->w; x++) n += pixel(im, x, y) == rgb;
  return n;
}

static int distinct_colours(const image *im) {
  static unsigned char seen[1 << 24 >> 3];
  memset(seen, 0, sizeof seen);
  int n = 0;
  for (int y = 0; y < im->h; y++)
    for (int x = 0; x < im->w; x++) {
      uint32_t c = pixel(im, x, y);
      if (!(seen[c >> 3] & (1 << (c & 7)))) {
        seen[c >> 3] |= (unsigned char)(1 << (c & 7));
        n++;
      }
    }
  return n;
}

static char *dir;

static image draw_and_read(aqs_canvas *c, const char *name) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  aqs_err e = {0};
  assert_int_equal(aqs_canvas_write_png(c, path, &e), AQS_OK);
  image im = decode(path);
  assert_int_equal(im.w, c->w);
  assert_int_equal(im.h, c->h);
  assert_memory_equal(im.rgb, c->rgb, (size_t)c->w * c->h * 3);
  return im;
}

static void test_text_and_primitives(void **state) {
  (void)state;
  aqs_canvas c;
  aqs_err e = {0};
  assert_int_equal(aqs_canvas_new(200, 60, &c, &e), AQS_OK);
  int w = aqs_canvas_text(&c, 4, 4, "A1", 2, 0x000000);
  assert_int_equal(w, (2 * 6 - 1) * 2);
  /* 'A' row 0 is .###.: columns 1..3 inked at scale 2 -> pixels x 6..11 of row y 4..5 */
  assert_int_equal(c.rgb[((size_t)4 * 200 + 6) * 3], 0);
  assert_int_equal(c.rgb[((size_t)4 * 200 + 4) * 3], 255);
  aqs_canvas_line(&c, 0, 59, 199, 40, 3, 0xff0000);
  aqs_canvas_marker(&c, 150, 20, 1, 11, 0x00ff00);
  image im = draw_and_read(&c, "prim.png");
  assert_true(count_colour(&im, 0x000000) > 40);
  assert_true(count_colour(&im, 0xff0000) > 200);
  int circle = count_colour(&im, 0x00ff00);
  assert_true(circle > 70 && circle < 121); /* a disc of diameter 11, not its square */
  free(im.rgb);
  aqs_canvas_free(&c);
}

static void test_charts(void **state) {
  (void)state;
  aqs_err e = {0};
  aqs_canvas c;
  /* heat map: values over 4 decades, one outlined cell */
  double v[6 * 4];
  unsigned char mark[6 * 4] = {0};
  for (int i = 0; i < 24; i++) v[i] = pow(10, -6 + (i % 5));
  mark[9] = 1;
  const char *rows[6] = {"0", "1", "2", "3", "4", "5"}, *cols[4] = {"qkv", "o", "gate_up", "down"};
  aqs_heatmap h = {"t", 6, 4, v, mark, "most sensitive", rows, cols, "layer", "group", "score"};
  assert_int_equal(aqs_canvas_new(900, 430, &c, &e), AQS_OK);
  aqs_chart_heatmap(&c, &h);
  image im = draw_and_read(&c, "heat.png");
  assert_true(distinct_colours(&im) > 100); /* the colour bar's ramp */
  assert_true(count_colour(&im, 0xe8202a) > 4 * 2 * 100); /* outline of the marked cell + legend */
  free(im.rgb);
  aqs_canvas_free(&c);
  /* line chart on a log axis with two series */
  double x[3] = {8, 12, 16}, y1[3] = {1e-1, 1e-3, 1e-5}, y2[3] = {2e-1, 5e-2, 1e-2};
  aqs_series s[2] = {{"a", x, y1, 3, 0x1f77b4, 1, 1}, {"b", x, y2, 3, 0xd62728, 2, 0}};
  aqs_linechart lc = {"KL", "bits", "kl", 1, s, 2};
  assert_int_equal(aqs_canvas_new(960, 600, &c, &e), AQS_OK);
  aqs_chart_lines(&c, &lc);
  im = draw_and_read(&c, "lines.png");
  assert_true(count_colour(&im, 0x1f77b4) > 500); /* line + markers + legend */
  assert_true(count_colour(&im, 0xd62728) > 100 && count_colour(&im, 0xd62728) < 500); /* markers only */
  assert_true(count_colour(&im, 0x202020) > 1000); /* title and tick labels */
  free(im.rgb);
  aqs_canvas_free(&c);
  /* bars: lengths proportional to the values */
  const char *labels[2] = {"bf16", "top50"}, *texts[2] = {"1 MiB", "0.5 MiB"};
  double vals[2] = {1.0, 0.5};
  uint32_t rgb[2] = {0x2ca02c, 0x1f77b4};
  aqs_barchart b = {"size", "MiB", 2, labels, vals, rgb, texts};
  assert_int_equal(aqs_canvas_new(1000, 228, &c, &e), AQS_OK);
  aqs_chart_bars(&c, &b);
  im = draw_and_read(&c, "bars.png");
  int g = count_colour(&im, 0x2ca02c), bl = count_colour(&im, 0x1f77b4);
  assert_true(g > 0 && bl > 0);
  assert_true(abs(g - 2 * bl) < g / 20); /* bar areas 2:1 */
  free(im.rgb);
  aqs_canvas_free(&c);
}

static void test_write_error(void **state) {
  (void)state;
  aqs_canvas c;
  aqs_err e = {0};
  assert_int_equal(aqs_canvas_new(10, 10, &c, &e), AQS_OK);
  char path[4200];
  snprintf(path, sizeof path, "%s/missing/fig.png", dir);
  assert_int_equal(aqs_canvas_write_png(&c, path, &e), AQS_ERR_IO);
  assert_non_null(strstr(e.msg, "missing/fig.png"));
  aqs_canvas_free(&c);
}

int main(void) {
  dir = tu_mkdtemp("plot");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_text_and_primitives),
      cmocka_unit_test(test_charts),
      cmocka_unit_test(test_write_error),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  tu_rm_rf(dir);
  free(dir);
  return rc;
}
