/* engine/image/resize.c: PIL-equal bicubic resampling (see resize.h). Two separable passes,
 * horizontal then vertical, each with per-output-pixel integer weights (22 fractional bits) and
 * rounding back to 8 bits; the weights are computed in double exactly as PIL does so that the
 * integer weights, and hence every output byte, agree. */
#include "engine/image/resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define WEIGHT_FRAC_BITS 22 /* PIL: 32 bits - 8 result bits - 2 overflow bits */
#define CUBIC_SUPPORT 2.0

/* Keys' cubic convolution kernel with a = -0.5 (the expression order matters for bit-equality). */
static double cubic_kernel(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

/* Per output pixel: the first input index, the tap count and taps_max integer weights. */
typedef struct resample_taps {
  int32_t taps_max;
  int32_t *first; /* (out_size) */
  int32_t *count; /* (out_size) */
  int32_t *weight; /* (out_size, taps_max) fixed point */
} resample_taps;

static void taps_free(resample_taps *t) {
  free(t->first);
  free(t->count);
  free(t->weight);
  memset(t, 0, sizeof *t);
}

static aqs_status taps_compute(int32_t in_size, int32_t out_size, resample_taps *t, aqs_err *err) {
  double scale = (double)in_size / out_size;
  double filter_scale = scale < 1.0 ? 1.0 : scale;
  double support = CUBIC_SUPPORT * filter_scale;
  t->taps_max = (int32_t)ceil(support) * 2 + 1;
  t->first = malloc((size_t)out_size * sizeof *t->first);
  t->count = malloc((size_t)out_size * sizeof *t->count);
  t->weight = malloc((size_t)out_size * (size_t)t->taps_max * sizeof *t->weight);
  double *w = malloc((size_t)t->taps_max * sizeof *w);
  if (!t->first || !t->count || !t->weight || !w) {
    free(w);
    taps_free(t);
    return aqs_errf(err, AQS_ERR_NOMEM, "resize: out of memory for %d x %d filter taps", out_size,
                    t->taps_max);
  }
  for (int32_t o = 0; o < out_size; o++) {
    double center = (o + 0.5) * scale;
    double inv = 1.0 / filter_scale;
    int32_t lo = (int32_t)(center - support + 0.5);
    if (lo < 0) lo = 0;
    int32_t hi = (int32_t)(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    int32_t n = hi - lo;
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) {
      w[i] = cubic_kernel((i + lo - center + 0.5) * inv);
      total += w[i];
    }
    int32_t *wi = t->weight + (size_t)o * (size_t)t->taps_max;
    for (int32_t i = 0; i < t->taps_max; i++) {
      double v = i < n ? (total != 0.0 ? w[i] / total : w[i]) : 0.0;
      double fixed = v * (1 << WEIGHT_FRAC_BITS);
      wi[i] = (int32_t)(v < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    t->first[o] = lo;
    t->count[o] = n;
  }
  free(w);
  return AQS_OK;
}

/* Rounds a fixed-point accumulator (already holding the +0.5 bias) to 0..255. int32 suffices, as
 * in PIL: |sum| <= 255 * sum(|w|) * 2^22 with sum(|w|) < 1.3 for this kernel, below 2^31. */
static uint8_t clamp_to_u8(int32_t acc) {
  int32_t v = acc >> WEIGHT_FRAC_BITS; /* arithmetic shift: floor, as PIL's table lookup */
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* src (rows, in_w, 3) -> dst (rows, out_w, 3), rows taken from src starting at row0. */
static void pass_horizontal(const uint8_t *src, int32_t in_w, int32_t row0, int32_t rows,
                            const resample_taps *t, int32_t out_w, uint8_t *dst) {
  for (int32_t y = 0; y < rows; y++) {
    const uint8_t *in_row = src + (size_t)(y + row0) * (size_t)in_w * 3;
    uint8_t *out_row = dst + (size_t)y * (size_t)out_w * 3;
    for (int32_t x = 0; x < out_w; x++) {
      const int32_t *w = t->weight + (size_t)x * (size_t)t->taps_max;
      const uint8_t *px = in_row + (size_t)t->first[x] * 3;
      int32_t acc[3] = {1 << (WEIGHT_FRAC_BITS - 1), 1 << (WEIGHT_FRAC_BITS - 1),
                        1 << (WEIGHT_FRAC_BITS - 1)};
      for (int32_t i = 0; i < t->count[x]; i++)
        for (int c = 0; c < 3; c++) acc[c] += (int32_t)px[i * 3 + c] * w[i];
      for (int c = 0; c < 3; c++) out_row[x * 3 + c] = clamp_to_u8(acc[c]);
    }
  }
}

/* src (in rows, w, 3) -> dst (out_h, w, 3); tap indices are relative to src's first row. */
static void pass_vertical(const uint8_t *src, int32_t width, const resample_taps *t,
                          int32_t row_shift, int32_t out_h, uint8_t *dst) {
  size_t stride = (size_t)width * 3;
  for (int32_t y = 0; y < out_h; y++) {
    const int32_t *w = t->weight + (size_t)y * (size_t)t->taps_max;
    const uint8_t *col0 = src + (size_t)(t->first[y] - row_shift) * stride;
    uint8_t *out_row = dst + (size_t)y * stride;
    for (size_t xc = 0; xc < stride; xc++) {
      int32_t acc = 1 << (WEIGHT_FRAC_BITS - 1);
      for (int32_t i = 0; i < t->count[y]; i++) acc += (int32_t)col0[(size_t)i * stride + xc] * w[i];
      out_row[xc] = clamp_to_u8(acc);
    }
  }
}

aqs_status aqs_image_resize_bicubic(const aqs_image *src, int32_t out_width, int32_t out_height,
                                    aqs_image *dst, aqs_err *err) {
  memset(dst, 0, sizeof *dst);
  if (out_width <= 0 || out_height <= 0 || src->width <= 0 || src->height <= 0)
    return aqs_errf(err, AQS_ERR_INVALID, "resize: invalid size %dx%d -> %dx%d", src->width,
                    src->height, out_width, out_height);
  size_t out_bytes = (size_t)out_width * (size_t)out_height * 3;
  dst->rgb = malloc(out_bytes);
  if (!dst->rgb) return aqs_errf(err, AQS_ERR_NOMEM, "resize: out of memory (%zu bytes)", out_bytes);
  dst->width = out_width;
  dst->height = out_height;
  int need_h = out_width != src->width, need_v = out_height != src->height;
  if (!need_h && !need_v) {
    memcpy(dst->rgb, src->rgb, out_bytes);
    return AQS_OK;
  }
  resample_taps tv = {0}, th = {0};
  aqs_status st = taps_compute(src->height, out_height, &tv, err);
  if (st != AQS_OK) goto fail;
  /* Only the source rows some output row reads go through the horizontal pass, as in PIL. */
  int32_t row_first = tv.first[0];
  int32_t row_last = tv.first[out_height - 1] + tv.count[out_height - 1];
  const uint8_t *vin = src->rgb;
  int32_t vin_width = src->width, row_shift = 0;
  uint8_t *tmp = NULL;
  if (need_h) {
    if ((st = taps_compute(src->width, out_width, &th, err)) != AQS_OK) goto fail;
    int32_t rows = row_last - row_first;
    tmp = malloc((size_t)out_width * (size_t)rows * 3);
    if (!tmp) {
      st = aqs_errf(err, AQS_ERR_NOMEM, "resize: out of memory for the horizontal pass");
      goto fail;
    }
    uint8_t *hout = need_v ? tmp : dst->rgb;
    pass_horizontal(src->rgb, src->width, need_v ? row_first : 0, need_v ? rows : out_height, &th,
                    out_width, hout);
    vin = tmp;
    vin_width = out_width;
    row_shift = row_first;
  }
  if (need_v) pass_vertical(vin, vin_width, &tv, row_shift, out_height, dst->rgb);
  free(tmp);
  taps_free(&tv);
  taps_free(&th);
  return AQS_OK;
fail:
  taps_free(&tv);
  taps_free(&th);
  aqs_image_free(dst);
  return st;
}
