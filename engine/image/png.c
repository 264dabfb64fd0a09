/* engine/image/png.c: PNG decoding with libpng into 8-bit RGB, converting modes as PIL's
 * Image.open(...).convert("RGB") does: palette expanded, gray replicated, alpha dropped,
 * 16-bit samples reduced to their high byte -- except 16-bit grayscale, which PIL opens as
 * mode I;16 and clamps to 255 when converting to RGB. libpng errors longjmp back here. */
#include "engine/image/image.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

/* State shared with libpng's callbacks; heap-allocated so it survives the longjmp. */
typedef struct png_reader {
  const uint8_t *bytes;
  size_t len, pos;
  const char *name;
  char libpng_msg[256];
  int64_t pixel_limit;
  png_bytep *rows;
  uint8_t *raw;
  uint8_t *rgb;
  int32_t width, height;
} png_reader;

static void png_read_mem(png_structp png, png_bytep out, size_t n) {
  png_reader *r = png_get_io_ptr(png);
  if (n > r->len - r->pos) png_error(png, "file is truncated");
  memcpy(out, r->bytes + r->pos, n);
  r->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg) {
  png_reader *r = png_get_error_ptr(png);
  snprintf(r->libpng_msg, sizeof r->libpng_msg, "%s", msg);
  png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg; /* ancillary-chunk problems: PIL ignores them too */
}

/* One decoded row (width pixels of `channels` samples, 8 or 16 bits) -> RGB bytes. */
static void png_row_to_rgb(const uint8_t *in, int32_t width, int channels, int bit_depth,
                           uint8_t *out) {
  for (int32_t x = 0; x < width; x++) {
    uint8_t v[4];
    for (int c = 0; c < channels; c++) {
      if (bit_depth == 16) {
        const uint8_t *s = in + ((size_t)x * channels + c) * 2;
        unsigned sample = ((unsigned)s[0] << 8) | s[1];
        /* 16-bit gray (no alpha) clamps like PIL's I;16 -> RGB; everything else keeps the MSB. */
        v[c] = channels == 1 ? (uint8_t)(sample > 255 ? 255 : sample) : s[0];
      } else {
        v[c] = in[(size_t)x * channels + c];
      }
    }
    if (channels <= 2) {
      out[x * 3 + 0] = out[x * 3 + 1] = out[x * 3 + 2] = v[0];
    } else {
      out[x * 3 + 0] = v[0];
      out[x * 3 + 1] = v[1];
      out[x * 3 + 2] = v[2];
    }
  }
}

/* Everything libpng may longjmp out of; results go to r. Returns AQS_OK or an error in err. */
static aqs_status png_decode_steps(png_reader *r, png_structp png, png_infop info, aqs_err *err) {
  png_set_read_fn(png, r, png_read_mem);
  png_set_user_limits(png, 1u << 20, 1u << 20);
  png_set_chunk_malloc_max(png, (png_alloc_size_t)64 << 20);
  png_read_info(png, info);
  png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
  int color_type = png_get_color_type(png, info), bit_depth = png_get_bit_depth(png, info);
  if (width == 0 || height == 0)
    return aqs_errf(err, AQS_ERR_INVALID, "%s: zero-sized PNG (%ux%u)", r->name, width, height);
  if ((int64_t)width * (int64_t)height > r->pixel_limit)
    return aqs_errf(err, AQS_ERR_UNSUPPORTED, "%s: PNG too large (%ux%u = %lld pixels, limit %lld)",
                    r->name, width, height, (long long)width * height, (long long)r->pixel_limit);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int channels = png_get_channels(png, info);
  int out_depth = png_get_bit_depth(png, info);
  size_t rowbytes = png_get_rowbytes(png, info);
  if (channels < 1 || channels > 4 || (out_depth != 8 && out_depth != 16) ||
      rowbytes < (size_t)width * channels * (out_depth / 8))
    return aqs_errf(err, AQS_ERR_UNSUPPORTED, "%s: unsupported PNG layout (%d channels, %d bits)",
                    r->name, channels, out_depth);
  r->raw = malloc(rowbytes * height);
  r->rows = malloc(sizeof *r->rows * height);
  r->rgb = malloc((size_t)width * height * 3);
  if (!r->raw || !r->rows || !r->rgb)
    return aqs_errf(err, AQS_ERR_NOMEM, "%s: out of memory for a %ux%u PNG", r->name, width, height);
  for (png_uint_32 y = 0; y < height; y++) r->rows[y] = r->raw + rowbytes * y;
  png_read_image(png, r->rows);
  for (png_uint_32 y = 0; y < height; y++)
    png_row_to_rgb(r->rows[y], (int32_t)width, channels, out_depth, r->rgb + (size_t)y * width * 3);
  r->width = (int32_t)width;
  r->height = (int32_t)height;
  return AQS_OK;
}

/* The setjmp frame: nothing here is modified between setjmp and a longjmp. */
static aqs_status png_decode_guarded(png_reader *r, png_structp png, png_infop info, aqs_err *err) {
  if (setjmp(png_jmpbuf(png)))
    return aqs_errf(err, AQS_ERR_INVALID, "%s: corrupt PNG: %s", r->name, r->libpng_msg);
  return png_decode_steps(r, png, info, err);
}

aqs_status aqs_image_decode_png(const uint8_t *bytes, size_t len, const char *name,
                                int64_t max_pixels, aqs_image *img, aqs_err *err) {
  memset(img, 0, sizeof *img);
  if (len < 8 || png_sig_cmp(bytes, 0, 8) != 0)
    return aqs_errf(err, AQS_ERR_INVALID, "%s: not a PNG file (bad signature)", name);
  png_reader *r = calloc(1, sizeof *r);
  if (!r) return aqs_errf(err, AQS_ERR_NOMEM, "%s: out of memory", name);
  r->bytes = bytes;
  r->len = len;
  r->name = name;
  r->pixel_limit = max_pixels > 0 ? max_pixels : AQS_IMAGE_MAX_PIXELS;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, r, png_on_error, png_on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  aqs_status st = png && info ? png_decode_guarded(r, png, info, err)
                              : aqs_errf(err, AQS_ERR_NOMEM, "%s: out of memory creating the PNG reader", name);
  if (png) png_destroy_read_struct(&png, info ? &info : NULL, NULL);
  if (st == AQS_OK) {
    img->width = r->width;
    img->height = r->height;
    img->rgb = r->rgb;
    r->rgb = NULL;
  }
  free(r->rgb);
  free(r->raw);
  free(r->rows);
  free(r);
  return st;
}
