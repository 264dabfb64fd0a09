/* engine/calib/image_root.h: where an image row's path may point. Rows are data from elsewhere:
 * by default they must stay inside the image root (no absolute paths, no ".." components, no
 * symlink leading out of it), so a dataset file cannot make aqs read arbitrary files into a
 * calibration set (and from there into a shared store). */
#ifndef AQS_CALIB_IMAGE_ROOT_H
#define AQS_CALIB_IMAGE_ROOT_H

#include "common/err.h"

/* Resolves row path image against root (NULL root: the path as written). Without allow_outside,
 * refuses an absolute path, a ".." component, and an existing file whose real path (symlinks
 * resolved) is outside realpath(root); a missing file resolves to root/image so the caller
 * reports it as missing. *path_out is malloc'd (caller frees).
 * Errors: AQS_ERR_INVALID naming the path, the root and --allow-outside-root; AQS_ERR_NOMEM;
 * AQS_ERR_NOT_FOUND / AQS_ERR_IO when root itself cannot be resolved. Thread-safe. */
aqs_status aqs_image_row_path(const char *root, const char *image, int allow_outside, char **path_out,
                              aqs_err *err);

#endif
