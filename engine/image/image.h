/* engine/image/image.h: decoding PNG (libpng) and JPEG (libjpeg-turbo) files into 8-bit RGB,
 * converting every input mode the way PIL's Image.convert("RGB") does (alpha dropped, gray
 * replicated, palette expanded, 16-bit samples truncated to their high byte). */
#ifndef AQS_IMAGE_IMAGE_H
#define AQS_IMAGE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* An 8-bit RGB image, rows top to bottom, pixels interleaved: rgb[(y * width + x) * 3 + c]. */
typedef struct aqs_image {
  int32_t width, height;
  uint8_t *rgb; /* (height, width, 3), owned; freed by aqs_image_free */
} aqs_image;

/* Refuse images with more pixels than this (a decompression-bomb guard): PIL's own limit, where
 * Image.open raises DecompressionBombError (2 x MAX_IMAGE_PIXELS). */
#define AQS_IMAGE_MAX_PIXELS ((int64_t)178956970)

typedef enum aqs_image_format {
  AQS_IMAGE_UNKNOWN = 0,
  AQS_IMAGE_PNG,
  AQS_IMAGE_JPEG
} aqs_image_format;

/* Format from the first bytes (magic numbers, never the file name). */
aqs_image_format aqs_image_sniff(const uint8_t *bytes, size_t len);

/* Decodes an in-memory PNG / JPEG into *img (caller frees with aqs_image_free).
 * `name` (a file name or label) is named in every error message.
 * Errors: AQS_ERR_INVALID (corrupt, truncated, zero-sized, not that format),
 * AQS_ERR_UNSUPPORTED (e.g. CMYK JPEG, or more than max_pixels pixels; max_pixels <= 0 means
 * AQS_IMAGE_MAX_PIXELS), AQS_ERR_NOMEM. Never aborts on malformed input. */
aqs_status aqs_image_decode_png(const uint8_t *bytes, size_t len, const char *name,
                                int64_t max_pixels, aqs_image *img, aqs_err *err);
aqs_status aqs_image_decode_jpeg(const uint8_t *bytes, size_t len, const char *name,
                                 int64_t max_pixels, aqs_image *img, aqs_err *err);
/* Sniffs the format and dispatches to one of the above. */
aqs_status aqs_image_decode(const uint8_t *bytes, size_t len, const char *name, int64_t max_pixels,
                            aqs_image *img, aqs_err *err);
/* Reads and decodes a file. Missing/unreadable file: AQS_ERR_NOT_FOUND / AQS_ERR_IO naming path;
 * an empty file: AQS_ERR_INVALID; files over 1 GiB: AQS_ERR_UNSUPPORTED. */
aqs_status aqs_image_load_file(const char *path, int64_t max_pixels, aqs_image *img, aqs_err *err);

/* Frees img->rgb and zeroes img. NULL-safe. */
void aqs_image_free(aqs_image *img);

#endif
