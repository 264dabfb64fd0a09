/* engine/image/qwen_vision.c: Qwen2-VL image preprocessing (see qwen_vision.h). The arithmetic
 * follows transformers' slow processor step by step: rescale in double then cast to float32
 * (numpy astype), normalize in float32, and the same 9-D transpose when flattening patches. */
#include "common/file.h"
#include "engine/image/qwen_vision.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/image/resize.h"

#define QWEN_MAX_ASPECT_RATIO 200

void aqs_qwen_vision_cfg_default(aqs_qwen_vision_cfg *cfg) {
  static const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
  static const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  memset(cfg, 0, sizeof *cfg);
  cfg->patch_size = 14;
  cfg->temporal_patch_size = 2;
  cfg->merge_size = 2;
  cfg->min_pixels = 56 * 56;
  cfg->max_pixels = 28 * 28 * 16384;
  cfg->rescale_factor = 1.0 / 255.0;
  memcpy(cfg->image_mean, clip_mean, sizeof clip_mean);
  memcpy(cfg->image_std, clip_std, sizeof clip_std);
  cfg->do_resize = cfg->do_rescale = cfg->do_normalize = 1;
}

static aqs_status cfg_int(json_t *root, const char *key, int64_t lo, int64_t hi, int64_t *out,
                          const char *path, aqs_err *err) {
  json_t *v = json_object_get(root, key);
  if (!v || json_is_null(v)) return AQS_OK;
  if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
    return aqs_errf(err, AQS_ERR_INVALID, "%s: \"%s\" must be an integer in [%lld, %lld]", path,
                    key, (long long)lo, (long long)hi);
  *out = json_integer_value(v);
  return AQS_OK;
}

static aqs_status cfg_bool(json_t *root, const char *key, int *out, const char *path, aqs_err *err) {
  json_t *v = json_object_get(root, key);
  if (!v || json_is_null(v)) return AQS_OK;
  if (!json_is_boolean(v))
    return aqs_errf(err, AQS_ERR_INVALID, "%s: \"%s\" must be true or false", path, key);
  *out = json_is_true(v);
  return AQS_OK;
}

static aqs_status cfg_triple(json_t *root, const char *key, float out[3], int positive,
                             const char *path, aqs_err *err) {
  json_t *v = json_object_get(root, key);
  if (!v || json_is_null(v)) return AQS_OK;
  if (!json_is_array(v) || json_array_size(v) != 3)
    return aqs_errf(err, AQS_ERR_INVALID, "%s: \"%s\" must be an array of 3 numbers", path, key);
  for (size_t i = 0; i < 3; i++) {
    json_t *x = json_array_get(v, i);
    if (!json_is_number(x) || (positive && json_number_value(x) <= 0))
      return aqs_errf(err, AQS_ERR_INVALID, "%s: \"%s\"[%zu] must be a %snumber", path, key, i,
                      positive ? "positive " : "");
    out[i] = (float)json_number_value(x); /* numpy: np.array(mean, dtype=float32) */
  }
  return AQS_OK;
}

static aqs_status cfg_parse(json_t *root, const char *path, aqs_qwen_vision_cfg *cfg, aqs_err *err) {
  int64_t patch = cfg->patch_size, temporal = cfg->temporal_patch_size, merge = cfg->merge_size;
  int64_t min_px = cfg->min_pixels, max_px = cfg->max_pixels;
  aqs_status st;
  if ((st = cfg_int(root, "patch_size", 1, 1024, &patch, path, err)) ||
      (st = cfg_int(root, "temporal_patch_size", 1, 64, &temporal, path, err)) ||
      (st = cfg_int(root, "merge_size", 1, 64, &merge, path, err)))
    return st;
  /* transformers: size.{shortest,longest}_edge, overridden by min_pixels / max_pixels. */
  json_t *size = json_object_get(root, "size");
  if (size && json_is_object(size)) {
    if ((st = cfg_int(size, "shortest_edge", 1, INT64_C(1) << 40, &min_px, path, err)) ||
        (st = cfg_int(size, "longest_edge", 1, INT64_C(1) << 40, &max_px, path, err)))
      return st;
  } else if (size && !json_is_null(size)) {
    return aqs_errf(err, AQS_ERR_INVALID, "%s: \"size\" must be an object", path);
  }
  if ((st = cfg_int(root, "min_pixels", 1, INT64_C(1) << 40, &min_px, path, err)) ||
      (st = cfg_int(root, "max_pixels", 1, INT64_C(1) << 40, &max_px, path, err)))
    return st;
  if (min_px > max_px)
    return aqs_errf(err, AQS_ERR_INVALID, "%s: min_pixels %lld > max_pixels %lld", path,
                    (long long)min_px, (long long)max_px);
  json_t *rf = json_object_get(root, "rescale_factor");
  if (rf && !json_is_null(rf)) {
    if (!json_is_number(rf) || json_number_value(rf) <= 0)
      return aqs_errf(err, AQS_ERR_INVALID, "%s: \"rescale_factor\" must be a positive number", path);
    cfg->rescale_factor = json_number_value(rf);
  }
  if ((st = cfg_triple(root, "image_mean", cfg->image_mean, 0, path, err)) ||
      (st = cfg_triple(root, "image_std", cfg->image_std, 1, path, err)) ||
      (st = cfg_bool(root, "do_resize", &cfg->do_resize, path, err)) ||
      (st = cfg_bool(root, "do_rescale", &cfg->do_rescale, path, err)) ||
      (st = cfg_bool(root, "do_normalize", &cfg->do_normalize, path, err)))
    return st;
  cfg->patch_size = (int32_t)patch;
  cfg->temporal_patch_size = (int32_t)temporal;
  cfg->merge_size = (int32_t)merge;
  cfg->min_pixels = min_px;
  cfg->max_pixels = max_px;
  return AQS_OK;
}

aqs_status aqs_qwen_vision_cfg_load(const char *path, aqs_qwen_vision_cfg *cfg, aqs_err *err) {
  aqs_qwen_vision_cfg_default(cfg);
  json_error_t jerr;
  char *text;
  size_t len;
  aqs_status rd = aqs_file_read_input(path, AQS_INPUT_CONFIG, &text, &len, err);
  if (rd) return rd;
  json_t *root = json_loadb(text, len, 0, &jerr);
  free(text);
  if (!root) return aqs_errf(err, AQS_ERR_INVALID, "%s:%d: invalid JSON: %s", path, jerr.line, jerr.text);
  aqs_status st = json_is_object(root)
                      ? cfg_parse(root, path, cfg, err)
                      : aqs_errf(err, AQS_ERR_INVALID, "%s: top level must be an object", path);
  json_decref(root);
  return st;
}

aqs_status aqs_qwen_vision_cfg_to_json(const aqs_qwen_vision_cfg *cfg, char **out, aqs_err *err) {
  json_t *mean = json_array(), *std = json_array();
  for (int i = 0; i < 3; i++) {
    json_array_append_new(mean, json_real(cfg->image_mean[i]));
    json_array_append_new(std, json_real(cfg->image_std[i]));
  }
  json_t *root = json_pack("{s:i,s:i,s:i,s:I,s:I,s:f,s:o,s:o,s:b,s:b,s:b,s:s}",
                           "patch_size", cfg->patch_size, "temporal_patch_size",
                           cfg->temporal_patch_size, "merge_size", cfg->merge_size, "min_pixels",
                           (json_int_t)cfg->min_pixels, "max_pixels", (json_int_t)cfg->max_pixels,
                           "rescale_factor", cfg->rescale_factor, "image_mean", mean, "image_std",
                           std, "do_resize", cfg->do_resize, "do_rescale", cfg->do_rescale,
                           "do_normalize", cfg->do_normalize, "resample", "pil-bicubic");
  *out = root ? json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17)) : NULL;
  json_decref(root);
  if (!*out) return aqs_errf(err, AQS_ERR_NOMEM, "processor settings: cannot encode JSON");
  return AQS_OK;
}

/* Python's round(): half to even (rint under the default rounding mode). */
static int64_t round_half_even(double x) { return (int64_t)nearbyint(x); }

aqs_status aqs_qwen_smart_resize(int64_t height, int64_t width, int32_t factor, int64_t min_pixels,
                                 int64_t max_pixels, int32_t *out_height, int32_t *out_width,
                                 aqs_err *err) {
  if (height < 1 || width < 1 || factor < 1)
    return aqs_errf(err, AQS_ERR_INVALID, "smart_resize: invalid size %lldx%lld", (long long)width,
                    (long long)height);
  int64_t lo = height < width ? height : width, hi = height < width ? width : height;
  if ((double)hi / (double)lo > QWEN_MAX_ASPECT_RATIO)
    return aqs_errf(err, AQS_ERR_INVALID,
                    "absolute aspect ratio must be smaller than %d, got %g (%lldx%lld)",
                    QWEN_MAX_ASPECT_RATIO, (double)hi / (double)lo, (long long)width,
                    (long long)height);
  int64_t h_bar = round_half_even((double)height / factor) * factor;
  int64_t w_bar = round_half_even((double)width / factor) * factor;
  if (h_bar * w_bar > max_pixels) {
    double beta = sqrt((double)(height * width) / (double)max_pixels);
    int64_t h = (int64_t)floor((double)height / beta / factor) * factor;
    int64_t w = (int64_t)floor((double)width / beta / factor) * factor;
    h_bar = h > factor ? h : factor;
    w_bar = w > factor ? w : factor;
  } else if (h_bar * w_bar < min_pixels) {
    double beta = sqrt((double)min_pixels / (double)(height * width));
    h_bar = (int64_t)ceil((double)height * beta / factor) * factor;
    w_bar = (int64_t)ceil((double)width * beta / factor) * factor;
  }
  if (h_bar < 1 || w_bar < 1 || h_bar > INT32_MAX || w_bar > INT32_MAX)
    return aqs_errf(err, AQS_ERR_INVALID, "smart_resize: %lldx%lld gives an empty or huge image",
                    (long long)width, (long long)height);
  *out_height = (int32_t)h_bar;
  *out_width = (int32_t)w_bar;
  return AQS_OK;
}

int64_t aqs_qwen_image_tokens(const aqs_qwen_pixels *px, const aqs_qwen_vision_cfg *cfg) {
  return px->n_patches / ((int64_t)cfg->merge_size * cfg->merge_size);
}

void aqs_qwen_pixels_free(aqs_qwen_pixels *px) {
  if (!px) return;
  free(px->patches);
  memset(px, 0, sizeof *px);
}

/* Channel-first float plane (3, H, W) of rescaled/normalized values. */
static float *to_float_planes(const aqs_image *img, const aqs_qwen_vision_cfg *cfg) {
  size_t hw = (size_t)img->width * img->height;
  float *planes = malloc(hw * 3 * sizeof *planes);
  if (!planes) return NULL;
  for (int c = 0; c < 3; c++) {
    float mean = cfg->image_mean[c], std = cfg->image_std[c];
    for (size_t i = 0; i < hw; i++) {
      float v = img->rgb[i * 3 + c];
      if (cfg->do_rescale) v = (float)((double)img->rgb[i * 3 + c] * cfg->rescale_factor);
      if (cfg->do_normalize) v = (v - mean) / std;
      planes[(size_t)c * hw + i] = v;
    }
  }
  return planes;
}

aqs_status aqs_qwen_preprocess(const aqs_image *img, const aqs_qwen_vision_cfg *cfg,
                               aqs_qwen_pixels *out, aqs_image *resized_out, aqs_err *err) {
  memset(out, 0, sizeof *out);
  if (resized_out) memset(resized_out, 0, sizeof *resized_out);
  int32_t patch = cfg->patch_size, merge = cfg->merge_size, temporal = cfg->temporal_patch_size;
  int32_t factor = patch * merge;
  int32_t rh = img->height, rw = img->width;
  aqs_status st;
  if (cfg->do_resize &&
      (st = aqs_qwen_smart_resize(img->height, img->width, factor, cfg->min_pixels,
                                  cfg->max_pixels, &rh, &rw, err)) != AQS_OK)
    return st;
  if (rh % factor || rw % factor)
    return aqs_errf(err, AQS_ERR_INVALID, "image %dx%d is not a multiple of %d (do_resize off)",
                    rw, rh, factor);
  aqs_image resized = {0};
  if ((st = aqs_image_resize_bicubic(img, rw, rh, &resized, err)) != AQS_OK) return st;
  float *planes = to_float_planes(&resized, cfg);
  int32_t grid_h = rh / patch, grid_w = rw / patch;
  int64_t n_patches = (int64_t)grid_h * grid_w; /* grid_t = 1: one image, repeated in time */
  int32_t patch_dim = 3 * temporal * patch * patch;
  float *rows = malloc((size_t)n_patches * (size_t)patch_dim * sizeof *rows);
  if (!planes || !rows) {
    free(planes);
    free(rows);
    aqs_image_free(&resized);
    return aqs_errf(err, AQS_ERR_NOMEM, "preprocess: out of memory for %lld patches",
                    (long long)n_patches);
  }
  /* Patch row order (hb, wb, mh, mw); within a row (channel, temporal, py, px). */
  size_t hw = (size_t)rw * rh;
  int64_t r = 0;
  for (int32_t hb = 0; hb < grid_h / merge; hb++)
    for (int32_t wb = 0; wb < grid_w / merge; wb++)
      for (int32_t mh = 0; mh < merge; mh++)
        for (int32_t mw = 0; mw < merge; mw++, r++) {
          float *dst = rows + (size_t)r * (size_t)patch_dim;
          int32_t y0 = (hb * merge + mh) * patch, x0 = (wb * merge + mw) * patch;
          for (int c = 0; c < 3; c++)
            for (int32_t t = 0; t < temporal; t++)
              for (int32_t py = 0; py < patch; py++) {
                const float *src = planes + (size_t)c * hw + (size_t)(y0 + py) * rw + x0;
                memcpy(dst, src, (size_t)patch * sizeof *dst);
                dst += patch;
              }
        }
  free(planes);
  out->grid_t = 1;
  out->grid_h = grid_h;
  out->grid_w = grid_w;
  out->n_patches = n_patches;
  out->patch_dim = patch_dim;
  out->patches = rows;
  out->resized_width = rw;
  out->resized_height = rh;
  if (resized_out)
    *resized_out = resized;
  else
    aqs_image_free(&resized);
  return AQS_OK;
}
