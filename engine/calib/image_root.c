/* engine/calib/image_root.c: image row paths contained in the image root (see image_root.h). */
#include "engine/calib/image_root.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALLOW_HINT "rows must stay inside the image root; --allow-outside-root allows it"

static int has_dotdot_component(const char *p) {
  for (const char *s = p; *s;) {
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 2 && s[0] == '.' && s[1] == '.') return 1;
    if (!slash) break;
    s = slash + 1;
  }
  return 0;
}

/* 1 when path is root itself or below it (both already real paths). */
static int is_inside(const char *root_real, const char *path_real) {
  size_t n = strlen(root_real);
  if (n == 1 && root_real[0] == '/') return 1;
  return strncmp(root_real, path_real, n) == 0 && (path_real[n] == '/' || path_real[n] == '\0');
}

aqs_status aqs_image_row_path(const char *root, const char *image, int allow_outside, char **path_out,
                              aqs_err *err) {
  *path_out = NULL;
  if (!allow_outside && image[0] == '/')
    return aqs_errf(err, AQS_ERR_INVALID, "image path '%s' is absolute (%s)", image, ALLOW_HINT);
  if (!allow_outside && has_dotdot_component(image))
    return aqs_errf(err, AQS_ERR_INVALID, "image path '%s' has a '..' component (%s)", image, ALLOW_HINT);
  char *path = NULL;
  if (image[0] == '/' || !root) path = strdup(image);
  else if (asprintf(&path, "%s/%s", root, image) < 0) path = NULL;
  if (!path) return aqs_errf(err, AQS_ERR_NOMEM, "out of memory resolving image path");
  if (allow_outside || !root) {
    *path_out = path;
    return AQS_OK;
  }
  char root_real[PATH_MAX], path_real[PATH_MAX];
  if (!realpath(root, root_real)) {
    aqs_status st = aqs_errno(err, errno == ENOENT ? AQS_ERR_NOT_FOUND : AQS_ERR_IO, errno, "image root %s", root);
    free(path);
    return st;
  }
  /* A missing file (or dangling link) is left for the reader to report as missing. */
  if (realpath(path, path_real) && !is_inside(root_real, path_real)) {
    aqs_status st = aqs_errf(err, AQS_ERR_INVALID, "image path '%s' leads to %s, outside the image root %s (%s)",
                             image, path_real, root_real, ALLOW_HINT);
    free(path);
    return st;
  }
  *path_out = path;
  return AQS_OK;
}
