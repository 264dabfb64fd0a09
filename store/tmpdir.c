/* store/tmpdir.c: scratch directories under the store's tmp/ (see aqs_store_mkdtemp in store.h):
 * the one place that knows where a store keeps temporary files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

aqs_status aqs_store_mkdtemp(aqs_store *s, const char *prefix, char *buf, size_t n, aqs_err *err) {
  if (strchr(prefix, '/')) return aqs_errf(err, AQS_ERR_INVALID, "scratch directory prefix '%s' holds a '/'", prefix);
  int len = snprintf(buf, n, "%s/tmp/%s-XXXXXX", aqs_store_path(s), prefix);
  if (len < 0 || (size_t)len >= n) return aqs_errf(err, AQS_ERR_INVALID, "store path too long for a scratch directory");
  if (!mkdtemp(buf)) return aqs_errno(err, AQS_ERR_IO, errno, "creating %s", buf);
  return AQS_OK;
}
