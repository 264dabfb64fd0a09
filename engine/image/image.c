/* engine/image/image.c: format sniffing, file loading and dispatch to the PNG/JPEG decoders. */
#include "engine/image/image.h"

#include <stdlib.h>
#include <string.h>

#include "common/file.h"

aqs_image_format aqs_image_sniff(const uint8_t *bytes, size_t len) {
  static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (len >= 8 && memcmp(bytes, png_magic, 8) == 0) return AQS_IMAGE_PNG;
  if (len >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) return AQS_IMAGE_JPEG;
  return AQS_IMAGE_UNKNOWN;
}

aqs_status aqs_image_decode(const uint8_t *bytes, size_t len, const char *name, int64_t max_pixels,
                            aqs_image *img, aqs_err *err) {
  memset(img, 0, sizeof *img);
  switch (aqs_image_sniff(bytes, len)) {
    case AQS_IMAGE_PNG: return aqs_image_decode_png(bytes, len, name, max_pixels, img, err);
    case AQS_IMAGE_JPEG: return aqs_image_decode_jpeg(bytes, len, name, max_pixels, img, err);
    default:
      if (len == 0) return aqs_errf(err, AQS_ERR_INVALID, "%s: empty image file", name);
      return aqs_errf(err, AQS_ERR_INVALID, "%s: not a PNG or JPEG image", name);
  }
}

aqs_status aqs_image_load_file(const char *path, int64_t max_pixels, aqs_image *img, aqs_err *err) {
  memset(img, 0, sizeof *img);
  char *bytes;
  size_t len;
  aqs_status st = aqs_file_read_input(path, AQS_INPUT_IMAGE, &bytes, &len, err);
  if (st != AQS_OK) return st;
  if (len == 0) st = aqs_errf(err, AQS_ERR_INVALID, "%s: empty image file (0 bytes)", path);
  else st = aqs_image_decode((const uint8_t *)bytes, len, path, max_pixels, img, err);
  free(bytes);
  return st;
}

void aqs_image_free(aqs_image *img) {
  if (!img) return;
  free(img->rgb);
  memset(img, 0, sizeof *img);
}
