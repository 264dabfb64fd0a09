/* engine/image/jpeg.c: JPEG decoding with libjpeg-turbo into 8-bit RGB (libjpeg's defaults:
 * islow IDCT, fancy upsampling, as PIL uses them); grayscale is replicated to RGB. A truncated
 * stream (libjpeg's "premature end" warning) is an error, as PIL raises "image file is truncated". */
#include "engine/image/image.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

typedef struct jpeg_fail {
  struct jpeg_error_mgr mgr; /* first member: libjpeg casts the pointer back */
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
} jpeg_fail;

static void jpeg_on_error(j_common_ptr cinfo) {
  jpeg_fail *f = (jpeg_fail *)cinfo->err;
  (*cinfo->err->format_message)(cinfo, f->msg);
  longjmp(f->jump, 1);
}

/* Warnings (level -1) are ignored except running out of data, which PIL treats as an error. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(cinfo);
}

aqs_status aqs_image_decode_jpeg(const uint8_t *bytes, size_t len, const char *name,
                                 int64_t max_pixels, aqs_image *img, aqs_err *err) {
  memset(img, 0, sizeof *img);
  if (max_pixels <= 0) max_pixels = AQS_IMAGE_MAX_PIXELS;
  if (len < 3 || bytes[0] != 0xFF || bytes[1] != 0xD8)
    return aqs_errf(err, AQS_ERR_INVALID, "%s: not a JPEG file (bad signature)", name);
  struct jpeg_decompress_struct *cinfo = calloc(1, sizeof *cinfo);
  jpeg_fail *fail = calloc(1, sizeof *fail);
  uint8_t *volatile rgb = NULL;
  uint8_t *volatile row = NULL;
  aqs_status st = AQS_OK;
  if (!cinfo || !fail) {
    free(cinfo);
    free(fail);
    return aqs_errf(err, AQS_ERR_NOMEM, "%s: out of memory", name);
  }
  cinfo->err = jpeg_std_error(&fail->mgr);
  fail->mgr.error_exit = jpeg_on_error;
  fail->mgr.emit_message = jpeg_on_message;
  if (setjmp(fail->jump)) {
    st = aqs_errf(err, AQS_ERR_INVALID, "%s: corrupt JPEG: %s", name, fail->msg);
    goto done;
  }
  jpeg_create_decompress(cinfo);
  cinfo->mem->max_memory_to_use = (long)1 << 30;
  jpeg_mem_src(cinfo, bytes, (unsigned long)len);
  jpeg_read_header(cinfo, TRUE);
  if (cinfo->image_width == 0 || cinfo->image_height == 0) {
    st = aqs_errf(err, AQS_ERR_INVALID, "%s: zero-sized JPEG", name);
    goto done;
  }
  if ((int64_t)cinfo->image_width * cinfo->image_height > max_pixels) {
    st = aqs_errf(err, AQS_ERR_UNSUPPORTED, "%s: JPEG too large (%ux%u, limit %lld pixels)", name,
                  cinfo->image_width, cinfo->image_height, (long long)max_pixels);
    goto done;
  }
  J_COLOR_SPACE cs = cinfo->jpeg_color_space;
  if (cs == JCS_CMYK || cs == JCS_YCCK) {
    st = aqs_errf(err, AQS_ERR_UNSUPPORTED, "%s: CMYK/YCCK JPEG is not supported", name);
    goto done;
  }
  int gray = cs == JCS_GRAYSCALE;
  cinfo->out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(cinfo);
  uint32_t width = cinfo->output_width, height = cinfo->output_height;
  int comps = cinfo->output_components;
  if ((gray && comps != 1) || (!gray && comps != 3)) {
    st = aqs_errf(err, AQS_ERR_UNSUPPORTED, "%s: unexpected JPEG output (%d components)", name,
                  comps);
    goto done;
  }
  rgb = malloc((size_t)width * height * 3);
  row = malloc((size_t)width * comps);
  if (!rgb || !row) {
    st = aqs_errf(err, AQS_ERR_NOMEM, "%s: out of memory for a %ux%u JPEG", name, width, height);
    goto done;
  }
  while (cinfo->output_scanline < height) {
    uint8_t *dst = rgb + (size_t)cinfo->output_scanline * width * 3;
    JSAMPROW rows[1] = {gray ? row : dst};
    if (jpeg_read_scanlines(cinfo, rows, 1) != 1) {
      st = aqs_errf(err, AQS_ERR_INVALID, "%s: corrupt JPEG: no scanline data", name);
      goto done;
    }
    if (gray)
      for (uint32_t x = 0; x < width; x++) dst[x * 3 + 0] = dst[x * 3 + 1] = dst[x * 3 + 2] = row[x];
  }
  /* No jpeg_finish_decompress: bytes after the last scanline (even a missing EOI) do not
   * change the pixels, and PIL does not read them either. */
  img->width = (int32_t)width;
  img->height = (int32_t)height;
  img->rgb = rgb;
  rgb = NULL;
done:
  jpeg_destroy_decompress(cinfo);
  free(rgb);
  free(row);
  free(cinfo);
  free(fail);
  return st;
}
