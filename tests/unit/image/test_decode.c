/* tests/unit/image/test_decode.c: decoder failure paths: truncated PNG and JPEG files at every
 * cut point fail cleanly (no crash, AQS_ERR_INVALID naming the file), zero-sized and
 * decompression-bomb headers, a JPEG with hundreds of scans, missing files, directories and
 * garbage; plus an interlaced PNG written here with libpng decodes to the pixels it was written from. */
#include "testutil.h"

#include <png.h>
#include <jpeglib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/image/image.h"

static uint8_t *fixture(const char *name, size_t *len) {
  char rel[256];
  snprintf(rel, sizeof rel, "tests/fixtures/images/%s", name);
  uint8_t *data = (uint8_t *)tu_read_file(tu_src_path(rel), len);
  assert_non_null(data);
  return data;
}

static void truncations_fail(const char *name) {
  size_t len;
  uint8_t *data = fixture(name, &len);
  aqs_image img;
  aqs_err err = {0};
  assert_int_equal(aqs_image_decode(data, len, name, 0, &img, &err), AQS_OK);
  aqs_image_free(&img);
  int cuts = 0;
  /* Every cut point in the headers, then every 7th byte, up to the end of the pixel data: like
   * PIL, a file missing only its trailer (JPEG EOI, PNG IEND chunk) still decodes. */
  size_t last = strstr(name, ".jpg") ? len - 2 : len - 12;
  for (size_t cut = 0; cut < last; cut += cut < 400 ? 1 : 7, cuts++) {
    uint8_t *copy = malloc(cut ? cut : 1); /* exact-size buffer: ASan catches over-reads */
    memcpy(copy, data, cut);
    aqs_status st = aqs_image_decode(copy, cut, name, 0, &img, &err);
    if (st == AQS_OK) fprintf(stderr, "%s cut at %zu of %zu decoded\n", name, cut, len);
    assert_int_equal(st, AQS_ERR_INVALID);
    assert_non_null(strstr(err.msg, name));
    assert_null(img.rgb);
    free(copy);
  }
  printf("%s: %d truncations refused\n", name, cuts);
  free(data);
}

static void test_truncated_png(void **state) {
  (void)state;
  truncations_fail("rgb_101x67.png");
  truncations_fail("palette_133x71.png");
  truncations_fail("rgb16_45x66.png");
}

static void test_truncated_jpeg(void **state) {
  (void)state;
  truncations_fail("jpeg420_131x97.jpg");
  truncations_fail("jpegprog_150x113.jpg");
  truncations_fail("jpeggray_69x83.jpg");
}

/* CRC-32 (ISO-HDLC, as PNG chunks use), bitwise. */
static uint32_t crc32_png(const uint8_t *p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return c ^ 0xFFFFFFFFu;
}

/* Rewrites a PNG's IHDR width/height (and its CRC). */
static void png_set_size(uint8_t *png, uint32_t w, uint32_t h) {
  uint8_t *ihdr = png + 8 + 4; /* "IHDR" */
  for (int i = 0; i < 4; i++) {
    ihdr[4 + i] = (uint8_t)(w >> (24 - 8 * i));
    ihdr[8 + i] = (uint8_t)(h >> (24 - 8 * i));
  }
  uint32_t crc = crc32_png(ihdr, 17);
  for (int i = 0; i < 4; i++) ihdr[17 + i] = (uint8_t)(crc >> (24 - 8 * i));
}

static void test_png_bad_headers(void **state) {
  (void)state;
  size_t len;
  uint8_t *data = fixture("rgb_101x67.png", &len);
  aqs_image img;
  aqs_err err = {0};
  png_set_size(data, 0, 67);
  assert_int_equal(aqs_image_decode(data, len, "zero.png", 0, &img, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "zero.png"));
  png_set_size(data, 100000, 100000); /* 10^10 pixels: refused before any allocation */
  assert_int_equal(aqs_image_decode(data, len, "bomb.png", 0, &img, &err), AQS_ERR_UNSUPPORTED);
  assert_non_null(strstr(err.msg, "bomb.png: PNG too large"));
  png_set_size(data, 101, 67);
  assert_int_equal(aqs_image_decode(data, len, "ok.png", 0, &img, &err), AQS_OK);
  aqs_image_free(&img);
  assert_int_equal(aqs_image_decode(data, len, "small-limit.png", 1000, &img, &err), AQS_ERR_UNSUPPORTED);
  data[40] ^= 0xFF; /* inside IDAT: CRC mismatch */
  assert_int_equal(aqs_image_decode(data, len, "crc.png", 0, &img, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "crc.png: corrupt PNG"));
  free(data);
}

static void test_jpeg_bad_headers(void **state) {
  (void)state;
  size_t len;
  uint8_t *data = fixture("jpeg420_131x97.jpg", &len);
  aqs_image img;
  aqs_err err = {0};
  assert_int_equal(aqs_image_decode(data, len, "small-limit.jpg", 100, &img, &err), AQS_ERR_UNSUPPORTED);
  assert_non_null(strstr(err.msg, "small-limit.jpg: JPEG too large"));
  /* Zero the SOF0 height: libjpeg refuses "empty JPEG image". */
  for (size_t i = 2; i + 9 < len; i++)
    if (data[i] == 0xFF && data[i + 1] == 0xC0) {
      data[i + 5] = data[i + 6] = 0;
      break;
    }
  assert_int_equal(aqs_image_decode(data, len, "zero.jpg", 0, &img, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "zero.jpg"));
  free(data);
}

static void test_files(void **state) {
  (void)state;
  char *dir = tu_mkdtemp("img");
  char path[4200];
  aqs_image img;
  aqs_err err = {0};
  snprintf(path, sizeof path, "%s/missing.png", dir);
  assert_int_equal(aqs_image_load_file(path, 0, &img, &err), AQS_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, path));
  assert_int_equal(aqs_image_load_file(dir, 0, &img, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "is a directory"));
  snprintf(path, sizeof path, "%s/empty.jpg", dir);
  tu_write_file(path, "", 0);
  assert_int_equal(aqs_image_load_file(path, 0, &img, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "empty.jpg: empty image file"));
  snprintf(path, sizeof path, "%s/gif.png", dir);
  tu_write_file(path, "GIF89a\x01\x00\x01\x00", 10);
  assert_int_equal(aqs_image_load_file(path, 0, &img, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "gif.png: not a PNG or JPEG image"));
  tu_rm_rf(dir);
  free(dir);
}

/* Writes an Adam7-interlaced 8-bit RGBA PNG with libpng, then decodes it. */
static void test_interlaced_png(void **state) {
  (void)state;
  enum { W = 23, H = 17 };
  uint8_t rgba[H][W * 4];
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      for (int c = 0; c < 4; c++) rgba[y][x * 4 + c] = (uint8_t)(x * 11 + y * 5 + c * 60);
  char *dir = tu_mkdtemp("img");
  char path[4200];
  snprintf(path, sizeof path, "%s/adam7.png", dir);
  FILE *f = fopen(path, "wb");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, f);
  png_set_IHDR(png, info, W, H, 8, PNG_COLOR_TYPE_RGBA, PNG_INTERLACE_ADAM7,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_bytep rows[H];
  for (int y = 0; y < H; y++) rows[y] = rgba[y];
  png_set_rows(png, info, rows);
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
  png_destroy_write_struct(&png, &info);
  fclose(f);
  aqs_image img;
  aqs_err err = {0};
  assert_int_equal(aqs_image_load_file(path, 0, &img, &err), AQS_OK);
  assert_int_equal(img.width, W);
  assert_int_equal(img.height, H);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      for (int c = 0; c < 3; c++) assert_int_equal(img.rgb[(y * W + x) * 3 + c], rgba[y][x * 4 + c]);
  aqs_image_free(&img);
  tu_rm_rf(dir);
  free(dir);
}

/* Encodes a 3-component progressive JPEG whose scan script has one scan per coefficient, component
 * and approximation step (2 + 3*63*2 = 380 scans), as a CPU-bomb file would: refused by the
 * decoder's scan limit; the same image with libjpeg's standard progression decodes. */
static uint8_t *encode_progressive(int many_scans, unsigned long *len_out) {
  enum { W = 24, H = 16 };
  static jpeg_scan_info scans[2 + 3 * 63 * 2];
  struct jpeg_compress_struct ci;
  struct jpeg_error_mgr jerr;
  ci.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&ci);
  unsigned char *buf = NULL;
  unsigned long len = 0;
  jpeg_mem_dest(&ci, &buf, &len);
  ci.image_width = W;
  ci.image_height = H;
  ci.input_components = 3;
  ci.in_color_space = JCS_RGB;
  jpeg_set_defaults(&ci);
  jpeg_simple_progression(&ci);
  if (many_scans) {
    int n = 0;
    scans[n++] = (jpeg_scan_info){3, {0, 1, 2, 0}, 0, 0, 0, 1};
    scans[n++] = (jpeg_scan_info){3, {0, 1, 2, 0}, 0, 0, 1, 0};
    for (int c = 0; c < 3; c++)
      for (int k = 1; k < 64; k++) {
        scans[n++] = (jpeg_scan_info){1, {c, 0, 0, 0}, k, k, 0, 1};
        scans[n++] = (jpeg_scan_info){1, {c, 0, 0, 0}, k, k, 1, 0};
      }
    ci.scan_info = scans;
    ci.num_scans = n;
  }
  jpeg_start_compress(&ci, TRUE);
  unsigned char row[W * 3];
  while (ci.next_scanline < H) {
    for (int x = 0; x < W * 3; x++) row[x] = (unsigned char)(x * 7 + ci.next_scanline * 13);
    JSAMPROW rows[1] = {row};
    jpeg_write_scanlines(&ci, rows, 1);
  }
  jpeg_finish_compress(&ci);
  jpeg_destroy_compress(&ci);
  *len_out = len;
  return buf;
}

static void test_jpeg_scan_bomb(void **state) {
  (void)state;
  aqs_image img;
  aqs_err err = {0};
  unsigned long len;
  uint8_t *ok = encode_progressive(0, &len);
  assert_int_equal(aqs_image_decode(ok, len, "ten-scans.jpg", 0, &img, &err), AQS_OK);
  aqs_image_free(&img);
  free(ok);
  uint8_t *bomb = encode_progressive(1, &len);
  assert_int_equal(aqs_image_decode(bomb, len, "many-scans.jpg", 0, &img, &err), AQS_ERR_INVALID);
  assert_non_null(strstr(err.msg, "many-scans.jpg: corrupt JPEG: more than 256 scans"));
  free(bomb);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_truncated_png),
    cmocka_unit_test(test_truncated_jpeg),
    cmocka_unit_test(test_png_bad_headers),
    cmocka_unit_test(test_jpeg_bad_headers),
    cmocka_unit_test(test_files),
    cmocka_unit_test(test_interlaced_png),
    cmocka_unit_test(test_jpeg_scan_bomb),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
