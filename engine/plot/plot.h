/* engine/plot/plot.h: figures drawn by aqs itself for `aqs report`: an RGB canvas with filled
 * rectangles, lines, markers and 5x7 bitmap text (font.c), written as PNG with libpng, and three
 * charts (chart.c): a heat map with a log colour scale, an x/y line chart with legend, and a
 * horizontal bar chart. Coordinates are pixels, origin top left. Drawing clips to the canvas.
 * Errors: AQS_ERR_NOMEM, AQS_ERR_IO (PNG write, naming the file). Not thread-safe per canvas. */
#ifndef AQS_PLOT_PLOT_H
#define AQS_PLOT_PLOT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct aqs_canvas {
  int w, h;
  uint8_t *rgb; /* (h, w, 3) */
} aqs_canvas;

/* A white w x h canvas. */
aqs_status aqs_canvas_new(int w, int h, aqs_canvas *c, aqs_err *e);
void aqs_canvas_free(aqs_canvas *c);
/* Colours are 0xRRGGBB. */
void aqs_canvas_fill(aqs_canvas *c, int x, int y, int w, int h, uint32_t rgb);
void aqs_canvas_frame(aqs_canvas *c, int x, int y, int w, int h, int thick, uint32_t rgb);
void aqs_canvas_line(aqs_canvas *c, int x0, int y0, int x1, int y1, int thick, uint32_t rgb);
/* shape 0 = filled square, 1 = filled circle, 2 = filled triangle, 3 = diamond; size = diameter. */
void aqs_canvas_marker(aqs_canvas *c, int x, int y, int shape, int size, uint32_t rgb);
/* Text with its top-left corner at (x, y); returns its width. Unknown bytes draw as '?'. */
int aqs_canvas_text(aqs_canvas *c, int x, int y, const char *s, int scale, uint32_t rgb);
/* Text rotated to read bottom to top, its baseline start at (x, y). */
void aqs_canvas_text_up(aqs_canvas *c, int x, int y, const char *s, int scale, uint32_t rgb);
int aqs_text_width(const char *s, int scale);
int aqs_text_height(int scale);
/* 8-bit RGB PNG, written to path.tmp and renamed. */
aqs_status aqs_canvas_write_png(const aqs_canvas *c, const char *path, aqs_err *e);

/* ---- charts (chart.c) ---- */

/* Heat map: rows x cols cells, values > 0 on a log colour scale (values <= 0 or NaN grey);
 * marked[r * cols + c] != 0 draws a thick outline around the cell (legend: mark_label). */
typedef struct aqs_heatmap {
  const char *title;
  int rows, cols;
  const double *values;          /* (rows, cols) */
  const unsigned char *marked;   /* (rows, cols) or NULL */
  const char *mark_label;        /* legend text of the outline */
  const char *const *row_labels; /* (rows) */
  const char *const *col_labels; /* (cols) */
  const char *row_title, *col_title, *value_title;
} aqs_heatmap;

/* One series of a line chart: points drawn with markers, joined by lines when line != 0. */
typedef struct aqs_series {
  const char *label;
  const double *x, *y;
  int n;
  uint32_t rgb;
  int marker;                    /* aqs_canvas_marker shape */
  int line;
} aqs_series;

typedef struct aqs_linechart {
  const char *title, *x_title, *y_title;
  int log_y;                     /* y on a log10 scale (values <= 0 are skipped) */
  const aqs_series *series;
  int n_series;
} aqs_linechart;

typedef struct aqs_barchart {
  const char *title, *value_title;
  int n;
  const char *const *labels;     /* (n) */
  const double *values;          /* (n) >= 0 */
  const uint32_t *rgb;           /* (n) */
  const char *const *value_text; /* (n) printed at the end of each bar, or NULL */
} aqs_barchart;

/* Each draws into the whole canvas. */
void aqs_chart_heatmap(aqs_canvas *c, const aqs_heatmap *h);
void aqs_chart_lines(aqs_canvas *c, const aqs_linechart *l);
void aqs_chart_bars(aqs_canvas *c, const aqs_barchart *b);

#endif
