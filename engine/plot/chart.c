/* engine/plot/chart.c: the report's charts on a canvas: heat map (log colour scale, colour bar,
 * outlined cells), line chart (linear or log y, nice ticks, grid, legend) and horizontal bars. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/plot/plot.h"

#define INK 0x202020u
#define GRID 0xe4e4e4u
#define AXIS 0x606060u
#define TXT 2   /* text scale: 10x14 pixels per character */
#define TITLE 3

/* Perceptually ordered dark-blue -> teal -> green -> yellow ramp (viridis-like anchors). */
static uint32_t ramp(double t) {
  static const double a[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  if (!(t >= 0)) t = 0;
  if (t > 1) t = 1;
  double p = t * 4;
  int i = p >= 4 ? 3 : (int)p;
  double f = p - i;
  uint32_t rgb = 0;
  for (int k = 0; k < 3; k++) rgb = (rgb << 8) | (uint32_t)lround(a[i][k] + (a[i + 1][k] - a[i][k]) * f);
  return rgb;
}

static void fmt_num(char *buf, size_t n, double v) {
  double a = fabs(v);
  if (v == 0) snprintf(buf, n, "0");
  else if (a >= 1e5 || a < 1e-3) snprintf(buf, n, "%.0e", v);
  else snprintf(buf, n, "%g", v);
}

static void text_center(aqs_canvas *c, int cx, int y, const char *s, int scale, uint32_t rgb) {
  aqs_canvas_text(c, cx - aqs_text_width(s, scale) / 2, y, s, scale, rgb);
}

static void text_right(aqs_canvas *c, int rx, int y, const char *s, int scale, uint32_t rgb) {
  aqs_canvas_text(c, rx - aqs_text_width(s, scale), y, s, scale, rgb);
}

/* ---- heat map ---- */

void aqs_chart_heatmap(aqs_canvas *c, const aqs_heatmap *h) {
  double lo = INFINITY, hi = -INFINITY;
  for (int i = 0; i < h->rows * h->cols; i++)
    if (h->values[i] > 0 && isfinite(h->values[i])) {
      lo = fmin(lo, h->values[i]);
      hi = fmax(hi, h->values[i]);
    }
  if (!(lo <= hi)) lo = hi = 1;
  double llo = floor(log10(lo)), lhi = ceil(log10(hi));
  if (lhi <= llo) lhi = llo + 1;
  int label_w = 0;
  for (int r = 0; r < h->rows; r++) {
    int w = aqs_text_width(h->row_labels[r], TXT);
    if (w > label_w) label_w = w;
  }
  const int left = 40 + label_w + 12, top = 70, bar_w = 28, right_pad = 210;
  const int plot_w = c->w - left - right_pad, plot_h = c->h - top - 110;
  const int cw = plot_w / h->cols, ch = plot_h / h->rows;
  text_center(c, c->w / 2, 18, h->title, TITLE, INK);
  for (int r = 0; r < h->rows; r++) {
    int y = top + r * ch;
    text_right(c, left - 10, y + (ch - aqs_text_height(TXT)) / 2, h->row_labels[r], TXT, INK);
    for (int k = 0; k < h->cols; k++) {
      double v = h->values[r * h->cols + k];
      uint32_t col = v > 0 && isfinite(v) ? ramp((log10(v) - llo) / (lhi - llo)) : 0xc8c8c8u;
      aqs_canvas_fill(c, left + k * cw + 1, y + 1, cw - 2, ch - 2, col);
    }
  }
  for (int r = 0; r < h->rows; r++)
    for (int k = 0; k < h->cols; k++)
      if (h->marked && h->marked[r * h->cols + k])
        aqs_canvas_frame(c, left + k * cw - 1, top + r * ch - 1, cw + 2, ch + 2, 4, 0xe8202au);
  for (int k = 0; k < h->cols; k++)
    text_center(c, left + k * cw + cw / 2, top + h->rows * ch + 10, h->col_labels[k], TXT, INK);
  text_center(c, left + plot_w / 2, top + h->rows * ch + 38, h->col_title, TXT, AXIS);
  aqs_canvas_text_up(c, 10, top + h->rows * ch / 2 + aqs_text_width(h->row_title, TXT) / 2, h->row_title, TXT, AXIS);
  /* colour bar: one pixel row per step, decades labelled */
  const int bx = left + h->cols * cw + 30, bh = h->rows * ch;
  for (int y = 0; y < bh; y++) aqs_canvas_fill(c, bx, top + y, bar_w, 1, ramp(1.0 - (double)y / (bh - 1)));
  aqs_canvas_frame(c, bx, top, bar_w, bh, 1, AXIS);
  for (double d = llo; d <= lhi + 1e-9; d += 1) {
    int y = top + (int)lround((1.0 - (d - llo) / (lhi - llo)) * (bh - 1));
    char t[32];
    snprintf(t, sizeof t, "1e%d", (int)d);
    aqs_canvas_fill(c, bx + bar_w, y, 6, 2, AXIS);
    aqs_canvas_text(c, bx + bar_w + 10, y - 7, t, TXT, INK);
  }
  aqs_canvas_text_up(c, bx + bar_w + 80, top + bh / 2 + aqs_text_width(h->value_title, TXT) / 2, h->value_title,
                     TXT, AXIS);
  if (h->marked && h->mark_label) { /* legend under the group axis title */
    int ly = top + bh + 64;
    aqs_canvas_frame(c, left, ly, 22, 18, 4, 0xe8202au);
    aqs_canvas_text(c, left + 30, ly + 2, h->mark_label, TXT, INK);
  }
}

/* ---- axes ---- */

/* Nice linear ticks over [lo, hi]: step 1, 2 or 5 x 10^k, about 5 of them. */
static double nice_step(double lo, double hi) {
  double raw = (hi - lo) / 5, p = pow(10, floor(log10(raw))), m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

typedef struct axes {
  int x0, y0, w, h;          /* plot area */
  double xlo, xhi, ylo, yhi; /* data range (y in log10 units when log_y) */
  int log_y;
} axes;

static int px(const axes *a, double x) { return a->x0 + (int)lround((x - a->xlo) / (a->xhi - a->xlo) * a->w); }
static int py(const axes *a, double y) {
  double v = a->log_y ? log10(y) : y;
  return a->y0 + a->h - (int)lround((v - a->ylo) / (a->yhi - a->ylo) * a->h);
}

static void draw_axes(aqs_canvas *c, const axes *a, const char *x_title, const char *y_title) {
  char t[32];
  double step = nice_step(a->xlo, a->xhi);
  for (double x = ceil(a->xlo / step) * step; x <= a->xhi + step * 1e-9; x += step) {
    int X = px(a, x);
    aqs_canvas_fill(c, X, a->y0, 1, a->h, GRID);
    aqs_canvas_fill(c, X, a->y0 + a->h, 2, 7, AXIS);
    fmt_num(t, sizeof t, fabs(x) < step * 1e-6 ? 0 : x);
    text_center(c, X, a->y0 + a->h + 12, t, TXT, INK);
  }
  if (a->log_y) {
    for (double d = ceil(a->ylo - 1e-9); d <= a->yhi + 1e-9; d += 1) {
      int Y = py(a, pow(10, d));
      aqs_canvas_fill(c, a->x0, Y, a->w, 1, GRID);
      aqs_canvas_fill(c, a->x0 - 7, Y, 7, 2, AXIS);
      snprintf(t, sizeof t, "1e%d", (int)d);
      text_right(c, a->x0 - 12, Y - 7, t, TXT, INK);
    }
  } else {
    double ys = nice_step(a->ylo, a->yhi);
    for (double y = ceil(a->ylo / ys) * ys; y <= a->yhi + ys * 1e-9; y += ys) {
      int Y = py(a, y);
      aqs_canvas_fill(c, a->x0, Y, a->w, 1, GRID);
      aqs_canvas_fill(c, a->x0 - 7, Y, 7, 2, AXIS);
      fmt_num(t, sizeof t, fabs(y) < ys * 1e-6 ? 0 : y);
      text_right(c, a->x0 - 12, Y - 7, t, TXT, INK);
    }
  }
  aqs_canvas_frame(c, a->x0, a->y0, a->w + 1, a->h + 1, 2, AXIS);
  text_center(c, a->x0 + a->w / 2, a->y0 + a->h + 40, x_title, TXT, AXIS);
  aqs_canvas_text_up(c, 12, a->y0 + a->h / 2 + aqs_text_width(y_title, TXT) / 2, y_title, TXT, AXIS);
}

void aqs_chart_lines(aqs_canvas *c, const aqs_linechart *l) {
  axes a = {.x0 = 130, .y0 = 70, .log_y = l->log_y};
  a.w = c->w - a.x0 - 30;
  a.h = c->h - a.y0 - 80;
  a.xlo = a.ylo = INFINITY;
  a.xhi = a.yhi = -INFINITY;
  for (int s = 0; s < l->n_series; s++)
    for (int i = 0; i < l->series[s].n; i++) {
      double x = l->series[s].x[i], y = l->series[s].y[i];
      if (l->log_y) {
        if (!(y > 0)) continue;
        y = log10(y);
      }
      if (!isfinite(x) || !isfinite(y)) continue;
      a.xlo = fmin(a.xlo, x), a.xhi = fmax(a.xhi, x), a.ylo = fmin(a.ylo, y), a.yhi = fmax(a.yhi, y);
    }
  if (!(a.xlo <= a.xhi)) a.xlo = 0, a.xhi = 1, a.ylo = 0, a.yhi = 1;
  double xp = fmax((a.xhi - a.xlo) * 0.05, 0.25);
  a.xlo -= xp, a.xhi += xp;
  if (l->log_y) {
    a.ylo = floor(a.ylo), a.yhi = ceil(a.yhi);
    if (a.yhi - a.ylo < 1) a.yhi = a.ylo + 1;
  } else {
    double yp = fmax((a.yhi - a.ylo) * 0.08, fabs(a.yhi) * 1e-4 + 1e-9);
    a.ylo -= yp, a.yhi += yp;
  }
  text_center(c, c->w / 2, 18, l->title, TITLE, INK);
  draw_axes(c, &a, l->x_title, l->y_title);
  for (int s = 0; s < l->n_series; s++) {
    const aqs_series *se = &l->series[s];
    int have = 0, lx = 0, ly = 0;
    for (int i = 0; i < se->n; i++) {
      if (l->log_y && !(se->y[i] > 0)) continue;
      int X = px(&a, se->x[i]), Y = py(&a, se->y[i]);
      if (se->line && have) aqs_canvas_line(c, lx, ly, X, Y, 3, se->rgb);
      have = 1, lx = X, ly = Y;
    }
    for (int i = 0; i < se->n; i++)
      if (!l->log_y || se->y[i] > 0) aqs_canvas_marker(c, px(&a, se->x[i]), py(&a, se->y[i]), se->marker, 13, se->rgb);
  }
  /* legend inside the plot, on white */
  int lw = 0;
  for (int s = 0; s < l->n_series; s++) {
    int w = aqs_text_width(l->series[s].label, TXT);
    if (w > lw) lw = w;
  }
  /* the corner whose box covers the fewest points (top right on ties) */
  const int row = 24, bw = lw + 64, bh = row * l->n_series + 12;
  const int cx[4] = {a.x0 + a.w - bw - 10, a.x0 + 10, a.x0 + a.w - bw - 10, a.x0 + 10};
  const int cy[4] = {a.y0 + 10, a.y0 + 10, a.y0 + a.h - bh - 10, a.y0 + a.h - bh - 10};
  int best = 0, best_n = -1;
  for (int k = 0; k < 4; k++) {
    int inside = 0;
    for (int s = 0; s < l->n_series; s++)
      for (int i = 0; i < l->series[s].n; i++) {
        if (l->log_y && !(l->series[s].y[i] > 0)) continue;
        int X = px(&a, l->series[s].x[i]), Y = py(&a, l->series[s].y[i]);
        inside += X >= cx[k] - 8 && X <= cx[k] + bw + 8 && Y >= cy[k] - 8 && Y <= cy[k] + bh + 8;
      }
    if (best_n < 0 || inside < best_n) best = k, best_n = inside;
  }
  const int bx = cx[best], by = cy[best];
  aqs_canvas_fill(c, bx, by, bw, bh, 0xffffffu);
  aqs_canvas_frame(c, bx, by, bw, bh, 1, AXIS);
  for (int s = 0; s < l->n_series; s++) {
    int y = by + 8 + s * row + 7;
    if (l->series[s].line) aqs_canvas_line(c, bx + 8, y, bx + 40, y, 3, l->series[s].rgb);
    aqs_canvas_marker(c, bx + 24, y, l->series[s].marker, 13, l->series[s].rgb);
    aqs_canvas_text(c, bx + 52, y - 7, l->series[s].label, TXT, INK);
  }
}

/* ---- horizontal bars ---- */

void aqs_chart_bars(aqs_canvas *c, const aqs_barchart *b) {
  int label_w = 0;
  double hi = 0;
  for (int i = 0; i < b->n; i++) {
    int w = aqs_text_width(b->labels[i], TXT);
    if (w > label_w) label_w = w;
    if (b->values[i] > hi) hi = b->values[i];
  }
  if (!(hi > 0)) hi = 1;
  axes a = {.x0 = label_w + 30, .y0 = 70, .xlo = 0, .ylo = 0, .yhi = 1};
  a.w = c->w - a.x0 - 190;
  a.h = c->h - a.y0 - 80;
  a.xhi = hi * 1.02;
  text_center(c, c->w / 2, 18, b->title, TITLE, INK);
  char t[32];
  double step = nice_step(0, a.xhi);
  for (double x = 0; x <= a.xhi + step * 1e-9; x += step) {
    int X = px(&a, x);
    aqs_canvas_fill(c, X, a.y0, 1, a.h, GRID);
    aqs_canvas_fill(c, X, a.y0 + a.h, 2, 7, AXIS);
    fmt_num(t, sizeof t, x);
    text_center(c, X, a.y0 + a.h + 12, t, TXT, INK);
  }
  const int slot = a.h / (b->n ? b->n : 1), bar = slot * 7 / 10;
  for (int i = 0; i < b->n; i++) {
    int y = a.y0 + i * slot + (slot - bar) / 2;
    aqs_canvas_fill(c, a.x0, y, px(&a, b->values[i]) - a.x0, bar, b->rgb[i]);
    text_right(c, a.x0 - 10, y + (bar - aqs_text_height(TXT)) / 2, b->labels[i], TXT, INK);
    if (b->value_text)
      aqs_canvas_text(c, px(&a, b->values[i]) + 8, y + (bar - aqs_text_height(TXT)) / 2, b->value_text[i], TXT, INK);
  }
  aqs_canvas_fill(c, a.x0, a.y0, 2, a.h + 1, AXIS);
  aqs_canvas_fill(c, a.x0, a.y0 + a.h, a.w + 1, 2, AXIS);
  text_center(c, a.x0 + a.w / 2, a.y0 + a.h + 40, b->value_title, TXT, AXIS);
}
