/* engine/image/image.c: format sniffing, file loading and dispatch to the PNG/JPEG decoders. */
#include "engine/image/image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_IMAGE_FILE_BYTES ((int64_t)1 << 30)

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
  FILE *f = fopen(path, "rb");
  if (!f)
    return aqs_errno(err, errno == ENOENT ? AQS_ERR_NOT_FOUND : AQS_ERR_IO, errno,
                     "cannot open image %s", path);
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0) {
    int e = errno;
    fclose(f);
    return aqs_errno(err, AQS_ERR_IO, e, "cannot stat image %s", path);
  }
  if (!S_ISREG(sb.st_mode)) {
    fclose(f);
    return aqs_errf(err, AQS_ERR_INVALID, "%s: not a regular file", path);
  }
  if (sb.st_size == 0) {
    fclose(f);
    return aqs_errf(err, AQS_ERR_INVALID, "%s: empty image file (0 bytes)", path);
  }
  if (sb.st_size > MAX_IMAGE_FILE_BYTES) {
    fclose(f);
    return aqs_errf(err, AQS_ERR_UNSUPPORTED, "%s: image file too large (%lld bytes)", path,
                    (long long)sb.st_size);
  }
  size_t len = (size_t)sb.st_size;
  uint8_t *bytes = malloc(len);
  if (!bytes) {
    fclose(f);
    return aqs_errf(err, AQS_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, len);
  }
  size_t got = fread(bytes, 1, len, f);
  int read_errno = ferror(f) ? errno : 0;
  fclose(f);
  if (got != len) {
    free(bytes);
    if (read_errno) return aqs_errno(err, AQS_ERR_IO, read_errno, "cannot read image %s", path);
    return aqs_errf(err, AQS_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, len);
  }
  aqs_status st = aqs_image_decode(bytes, len, path, max_pixels, img, err);
  free(bytes);
  return st;
}

void aqs_image_free(aqs_image *img) {
  if (!img) return;
  free(img->rgb);
  memset(img, 0, sizeof *img);
}
