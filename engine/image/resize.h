/* engine/image/resize.h: bicubic resampling of 8-bit RGB images, equal byte for byte to PIL's
 * Image.resize(size, Image.BICUBIC): separable two-pass filter (horizontal first), cubic kernel
 * with a = -0.5 whose support widens with the downscale factor, fixed-point coefficients with
 * 22 fractional bits and rounding to 8 bits after each pass. */
#ifndef AQS_IMAGE_RESIZE_H
#define AQS_IMAGE_RESIZE_H

#include "common/err.h"
#include "engine/image/image.h"

/* Resizes src to (out_width, out_height) into *dst (caller frees with aqs_image_free).
 * Same size gives a copy. Errors: AQS_ERR_INVALID for non-positive sizes, AQS_ERR_NOMEM. */
aqs_status aqs_image_resize_bicubic(const aqs_image *src, int32_t out_width, int32_t out_height,
                                    aqs_image *dst, aqs_err *err);

#endif
