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

/* A progressive JPEG may hold thousands of tiny scans that each re-walk the whole image (a known
 * CPU bomb); real encoders write about 10. More than this many is refused. */
#define MAX_JPEG_SCANS 256

static void jpeg_on_progress(j_common_ptr cinfo) {
  j_decompress_ptr d = (j_decompress_ptr)cinfo;
  if (d->input_scan_number > MAX_JPEG_SCANS) {
    jpeg_fail *f = (jpeg_fail *)cinfo->err;
    snprintf(f->msg, sizeof f->msg, "more than %d scans", MAX_JPEG_SCANS);
    longjmp(f->jump, 1);
  }
}

/* Decoder state, heap-allocated so that nothing live across the setjmp sits in a register. */
typedef struct jpeg_job {
  struct jpeg_decompress_struct cinfo;
  jpeg_fail fail;
  struct jpeg_progress_mgr progress;
  const char *name;
  int64_t pixel_limit;
  uint8_t *rgb, *row;
  int32_t width, height;
} jpeg_job;

/* Everything libjpeg may longjmp out of; results go to job. */
static aqs_status jpeg_decode_steps(jpeg_job *job, const uint8_t *bytes, size_t len, aqs_err *err) {
  struct jpeg_decompress_struct *cinfo = &job->cinfo;
  jpeg_create_decompress(cinfo);
  cinfo->mem->max_memory_to_use = (long)1 << 30;
  job->progress.progress_monitor = jpeg_on_progress;
  cinfo->progress = &job->progress;
  jpeg_mem_src(cinfo, bytes, (unsigned long)len);
  jpeg_read_header(cinfo, TRUE);
  if (cinfo->image_width == 0 || cinfo->image_height == 0)
    return aqs_errf(err, AQS_ERR_INVALID, "%s: zero-sized JPEG", job->name);
  if ((int64_t)cinfo->image_width * cinfo->image_height > job->pixel_limit)
    return aqs_errf(err, AQS_ERR_UNSUPPORTED, "%s: JPEG too large (%ux%u, limit %lld pixels)",
                    job->name, cinfo->image_width, cinfo->image_height,
                    (long long)job->pixel_limit);
  J_COLOR_SPACE cs = cinfo->jpeg_color_space;
  if (cs == JCS_CMYK || cs == JCS_YCCK)
    return aqs_errf(err, AQS_ERR_UNSUPPORTED, "%s: CMYK/YCCK JPEG is not supported", job->name);
  int gray = cs == JCS_GRAYSCALE;
  cinfo->out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(cinfo);
  uint32_t width = cinfo->output_width, height = cinfo->output_height;
  int comps = cinfo->output_components;
  if ((gray && comps != 1) || (!gray && comps != 3))
    return aqs_errf(err, AQS_ERR_UNSUPPORTED, "%s: unexpected JPEG output (%d components)",
                    job->name, comps);
  job->rgb = malloc((size_t)width * height * 3);
  job->row = malloc((size_t)width * comps);
  if (!job->rgb || !job->row)
    return aqs_errf(err, AQS_ERR_NOMEM, "%s: out of memory for a %ux%u JPEG", job->name, width,
                    height);
  while (cinfo->output_scanline < height) {
    uint8_t *dst = job->rgb + (size_t)cinfo->output_scanline * width * 3;
    JSAMPROW rows[1] = {gray ? job->row : dst};
    if (jpeg_read_scanlines(cinfo, rows, 1) != 1)
      return aqs_errf(err, AQS_ERR_INVALID, "%s: corrupt JPEG: no scanline data", job->name);
    if (gray)
      for (uint32_t x = 0; x < width; x++)
        dst[x * 3 + 0] = dst[x * 3 + 1] = dst[x * 3 + 2] = job->row[x];
  }
  /* No jpeg_finish_decompress: bytes after the last scanline (even a missing EOI) do not change
   * the pixels, and PIL does not read them either. */
  job->width = (int32_t)width;
  job->height = (int32_t)height;
  return AQS_OK;
}

static aqs_status jpeg_decode_guarded(jpeg_job *job, const uint8_t *bytes, size_t len,
                                      aqs_err *err) {
  if (setjmp(job->fail.jump))
    return aqs_errf(err, AQS_ERR_INVALID, "%s: corrupt JPEG: %s", job->name, job->fail.msg);
  return jpeg_decode_steps(job, bytes, len, err);
}

aqs_status aqs_image_decode_jpeg(const uint8_t *bytes, size_t len, const char *name,
                                 int64_t max_pixels, aqs_image *img, aqs_err *err) {
  memset(img, 0, sizeof *img);
  if (len < 3 || bytes[0] != 0xFF || bytes[1] != 0xD8)
    return aqs_errf(err, AQS_ERR_INVALID, "%s: not a JPEG file (bad signature)", name);
  jpeg_job *job = calloc(1, sizeof *job);
  if (!job) return aqs_errf(err, AQS_ERR_NOMEM, "%s: out of memory", name);
  job->name = name;
  job->pixel_limit = max_pixels > 0 ? max_pixels : AQS_IMAGE_MAX_PIXELS;
  job->cinfo.err = jpeg_std_error(&job->fail.mgr);
  job->fail.mgr.error_exit = jpeg_on_error;
  job->fail.mgr.emit_message = jpeg_on_message;
  aqs_status st = jpeg_decode_guarded(job, bytes, len, err);
  jpeg_destroy_decompress(&job->cinfo);
  if (st == AQS_OK) {
    img->width = job->width;
    img->height = job->height;
    img->rgb = job->rgb;
    job->rgb = NULL;
  }
  free(job->rgb);
  free(job->row);
  free(job);
  return st;
}
