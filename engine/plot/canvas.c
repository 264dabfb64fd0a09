/* engine/plot/canvas.c: the RGB canvas: filled rectangles, thick lines, markers, and the PNG
 * writer (libpng, tmp + rename so a reader never sees half a figure). */
#include "engine/plot/plot.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

aqs_status aqs_canvas_new(int w, int h, aqs_canvas *c, aqs_err *e) {
  c->w = w;
  c->h = h;
  c->rgb = malloc((size_t)w * (size_t)h * 3);
  if (!c->rgb) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory for a %dx%d figure", w, h);
  memset(c->rgb, 0xff, (size_t)w * (size_t)h * 3);
  return AQS_OK;
}

void aqs_canvas_free(aqs_canvas *c) {
  free(c->rgb);
  c->rgb = NULL;
}

static void put(aqs_canvas *c, int x, int y, uint32_t rgb) {
  if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
  uint8_t *p = c->rgb + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
  p[0] = (uint8_t)(rgb >> 16);
  p[1] = (uint8_t)(rgb >> 8);
  p[2] = (uint8_t)rgb;
}

void aqs_canvas_fill(aqs_canvas *c, int x, int y, int w, int h, uint32_t rgb) {
  for (int j = y; j < y + h; j++)
    for (int i = x; i < x + w; i++) put(c, i, j, rgb);
}

void aqs_canvas_frame(aqs_canvas *c, int x, int y, int w, int h, int thick, uint32_t rgb) {
  aqs_canvas_fill(c, x, y, w, thick, rgb);
  aqs_canvas_fill(c, x, y + h - thick, w, thick, rgb);
  aqs_canvas_fill(c, x, y, thick, h, rgb);
  aqs_canvas_fill(c, x + w - thick, y, thick, h, rgb);
}

/* Bresenham with a square brush of side thick. */
void aqs_canvas_line(aqs_canvas *c, int x0, int y0, int x1, int y1, int thick, uint32_t rgb) {
  int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
  const int half = thick / 2;
  for (;;) {
    aqs_canvas_fill(c, x0 - half, y0 - half, thick, thick, rgb);
    if (x0 == x1 && y0 == y1) break;
    int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

void aqs_canvas_marker(aqs_canvas *c, int x, int y, int shape, int size, uint32_t rgb) {
  const int r = size / 2;
  for (int j = -r; j <= r; j++)
    for (int i = -r; i <= r; i++) {
      int in;
      switch (shape) {
      case 1: in = i * i + j * j <= r * r; break;
      case 2: in = j >= -r && 2 * abs(i) <= j + r; break; /* apex up */
      case 3: in = abs(i) + abs(j) <= r; break;
      default: in = 1;
      }
      if (in) put(c, x + i, y + j, rgb);
    }
}

aqs_status aqs_canvas_write_png(const aqs_canvas *c, const char *path, aqs_err *e) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) return aqs_errno(e, AQS_ERR_IO, errno, "cannot write %s", tmp);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  png_bytep *rows = malloc((size_t)c->h * sizeof *rows);
  volatile int ok = png && info && rows;
  if (ok && setjmp(png_jmpbuf(png)) == 0) {
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    for (int y = 0; y < c->h; y++) rows[y] = c->rgb + (size_t)y * (size_t)c->w * 3;
    png_set_rows(png, info, rows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
  } else {
    ok = 0;
  }
  png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
  free(rows);
  int err = errno;
  if (fclose(f) != 0) ok = 0;
  if (!ok || rename(tmp, path) != 0) {
    remove(tmp);
    return aqs_errno(e, AQS_ERR_IO, err, "cannot write the figure %s", path);
  }
  return AQS_OK;
}
