/* engine/image/qwen_vision.h: Qwen2-VL image preprocessing, equal to transformers' slow
 * Qwen2VLImageProcessor: smart_resize (factor patch*merge), PIL bicubic resize, rescale 1/255,
 * normalize with mean/std (float32 math as numpy does it), repeat to the temporal patch size and
 * patchify to (grid_t*grid_h*grid_w, 3*temporal*patch*patch) with image_grid_thw. */
#ifndef AQS_IMAGE_QWEN_VISION_H
#define AQS_IMAGE_QWEN_VISION_H

#include <stdint.h>

#include "common/err.h"
#include "engine/image/image.h"

/* Processor settings (preprocessor_config.json). Defaults are Qwen2.5-VL's. */
typedef struct aqs_qwen_vision_cfg {
  int32_t patch_size;          /* 14 */
  int32_t temporal_patch_size; /* 2 */
  int32_t merge_size;          /* 2 */
  int64_t min_pixels;          /* 56*56 = 3136 ("min_pixels" or size.shortest_edge) */
  int64_t max_pixels;          /* 28*28*16384 = 12845056 ("max_pixels" or size.longest_edge) */
  double rescale_factor;       /* 1/255 */
  float image_mean[3];         /* OpenAI CLIP mean */
  float image_std[3];
  int do_resize, do_rescale, do_normalize; /* 1 unless the config says false */
} aqs_qwen_vision_cfg;

/* Fills cfg with Qwen2.5-VL's defaults. */
void aqs_qwen_vision_cfg_default(aqs_qwen_vision_cfg *cfg);
/* Reads preprocessor_config.json: keys not present keep their defaults; a key with the wrong type
 * or an out-of-range value is AQS_ERR_INVALID naming the file and key. */
aqs_status aqs_qwen_vision_cfg_load(const char *path, aqs_qwen_vision_cfg *cfg, aqs_err *err);
/* The settings as canonical JSON (part of the calib-set action key); *out malloc'd. */
aqs_status aqs_qwen_vision_cfg_to_json(const aqs_qwen_vision_cfg *cfg, char **out, aqs_err *err);

/* transformers' smart_resize: height/width rounded (half to even) to multiples of `factor`, then
 * scaled down (floor) to fit max_pixels or up (ceil) to reach min_pixels. Errors (AQS_ERR_INVALID):
 * a side < 1, or aspect ratio > 200. */
aqs_status aqs_qwen_smart_resize(int64_t height, int64_t width, int32_t factor, int64_t min_pixels,
                                 int64_t max_pixels, int32_t *out_height, int32_t *out_width,
                                 aqs_err *err);

/* The result of preprocessing one image. */
typedef struct aqs_qwen_pixels {
  int32_t grid_t, grid_h, grid_w; /* image_grid_thw */
  int64_t n_patches;              /* grid_t * grid_h * grid_w */
  int32_t patch_dim;              /* 3 * temporal_patch_size * patch_size^2 (1176) */
  float *patches;                 /* (n_patches, patch_dim), owned */
  int32_t resized_width, resized_height;
} aqs_qwen_pixels;

/* Preprocesses one RGB image. If resized_out is not NULL it receives the resized 8-bit image
 * (the values before rescale/normalize; caller frees) for conformance checks. */
aqs_status aqs_qwen_preprocess(const aqs_image *img, const aqs_qwen_vision_cfg *cfg,
                               aqs_qwen_pixels *out, aqs_image *resized_out, aqs_err *err);

/* Number of <|image_pad|> tokens for the image: t*h*w / merge^2. */
int64_t aqs_qwen_image_tokens(const aqs_qwen_pixels *px, const aqs_qwen_vision_cfg *cfg);

void aqs_qwen_pixels_free(aqs_qwen_pixels *px);

#endif
