/* engine/model/safetensors_read.c: opens one .safetensors file read-only by mmap and validates
 * its header completely (see safetensors.h for the list) before exposing zero-copy tensor views.
 * Every defect yields its own message naming the file and the tensor. */
#include "common/file.h"
#include "engine/model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int cmp_by_offset(const void *a, const void *b) {
  const aqs_st_tensor *x = a, *y = b;
  if (x->file_offset != y->file_offset) return x->file_offset < y->file_offset ? -1 : 1;
  if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
  return strcmp(x->name, y->name);
}

static int cmp_by_name(const void *a, const void *b) {
  const aqs_st_tensor *const *x = a, *const *y = b;
  return strcmp((*x)->name, (*y)->name);
}

/* Reads a non-negative JSON integer; 0 if j is not one. */
static int json_uint(const json_t *j, uint64_t *out) {
  if (!json_is_integer(j) || json_integer_value(j) < 0) return 0;
  *out = (uint64_t)json_integer_value(j);
  return 1;
}

static aqs_status parse_metadata(aqs_st_file *f, json_t *meta, aqs_err *e) {
  if (!json_is_object(meta))
    return aqs_errf(e, AQS_ERR_INVALID, "%s: __metadata__ is not a JSON object", f->path);
  size_t n = json_object_size(meta);
  f->meta_keys = calloc(n ? n : 1, sizeof *f->meta_keys);
  f->meta_values = calloc(n ? n : 1, sizeof *f->meta_values);
  if (!f->meta_keys || !f->meta_values) return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", f->path);
  const char *key;
  json_t *val;
  json_object_foreach(meta, key, val) {
    if (!json_is_string(val))
      return aqs_errf(e, AQS_ERR_INVALID, "%s: __metadata__ value of \"%s\" is not a string",
                      f->path, key);
    f->meta_keys[f->nmeta] = strdup(key);
    f->meta_values[f->nmeta] = strdup(json_string_value(val));
    f->nmeta++;
    if (!f->meta_keys[f->nmeta - 1] || !f->meta_values[f->nmeta - 1])
      return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", f->path);
  }
  return AQS_OK;
}

/* Fills t from one header entry; checks dtype, shape, offsets and shape x dtype == byte range. */
static aqs_status parse_tensor(aqs_st_file *f, const char *name, json_t *entry,
                               uint64_t data_bytes, aqs_st_tensor *t, aqs_err *e) {
  const char *p = f->path;
  if (!json_is_object(entry))
    return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor \"%s\": header entry is not an object", p, name);
  json_t *jdtype = json_object_get(entry, "dtype");
  json_t *jshape = json_object_get(entry, "shape");
  json_t *joffs = json_object_get(entry, "data_offsets");
  if (!json_is_string(jdtype))
    return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor \"%s\": missing or non-string \"dtype\"", p, name);
  if (!json_is_array(jshape))
    return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor \"%s\": missing or non-array \"shape\"", p, name);
  if (!json_is_array(joffs) || json_array_size(joffs) != 2)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s: tensor \"%s\": \"data_offsets\" must be an array [begin, end]", p, name);
  t->name = strdup(name);
  if (!t->name) return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", p);
  t->file = f;
  aqs_status st = aqs_dtype_parse(json_string_value(jdtype), &t->dtype, e);
  if (st) return aqs_err_prefix(e, "%s: tensor \"%s\"", p, name);
  size_t ndim = json_array_size(jshape);
  if (ndim > AQS_ST_MAX_DIMS)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor \"%s\": %zu dimensions (at most %d)", p, name,
                    ndim, AQS_ST_MAX_DIMS);
  t->ndim = (int)ndim;
  uint64_t numel = 1;
  for (size_t i = 0; i < ndim; i++) {
    uint64_t d;
    if (!json_uint(json_array_get(jshape, i), &d))
      return aqs_errf(e, AQS_ERR_INVALID,
                      "%s: tensor \"%s\": shape[%zu] is not a non-negative integer", p, name, i);
    if (d != 0 && numel > UINT64_MAX / 8 / d)
      return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor \"%s\": element count overflows", p, name);
    numel *= d;
    t->shape[i] = (int64_t)d;
  }
  t->numel = numel;
  t->nbytes = numel * aqs_dtype_size(t->dtype);
  uint64_t begin, end;
  if (!json_uint(json_array_get(joffs, 0), &begin) || !json_uint(json_array_get(joffs, 1), &end))
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s: tensor \"%s\": data_offsets are not non-negative integers", p, name);
  if (begin > end)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s: tensor \"%s\": data_offsets begin %llu > end %llu", p, name,
                    (unsigned long long)begin, (unsigned long long)end);
  if (end - begin != t->nbytes)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s: tensor \"%s\": shape x %s size is %llu bytes but data_offsets span %llu",
                    p, name, aqs_dtype_name(t->dtype), (unsigned long long)t->nbytes,
                    (unsigned long long)(end - begin));
  if (end > data_bytes)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s: tensor \"%s\": data_offsets [%llu, %llu] extend past end of data (%llu "
                    "bytes; file truncated?)",
                    p, name, (unsigned long long)begin, (unsigned long long)end,
                    (unsigned long long)data_bytes);
  t->file_offset = f->data_start + begin;
  return AQS_OK;
}

/* Sorts tensors by offset and rejects overlapping non-empty ranges. */
static aqs_status check_overlaps(aqs_st_file *f, aqs_err *e) {
  qsort(f->tensors, f->ntensors, sizeof *f->tensors, cmp_by_offset);
  const aqs_st_tensor *prev = NULL;
  for (size_t i = 0; i < f->ntensors; i++) {
    const aqs_st_tensor *t = &f->tensors[i];
    if (t->nbytes == 0) continue;
    if (prev && t->file_offset < prev->file_offset + prev->nbytes)
      return aqs_errf(e, AQS_ERR_INVALID,
                      "%s: tensors \"%s\" and \"%s\" overlap (data_offsets [%llu, %llu] and "
                      "[%llu, %llu])",
                      f->path, prev->name, t->name,
                      (unsigned long long)(prev->file_offset - f->data_start),
                      (unsigned long long)(prev->file_offset - f->data_start + prev->nbytes),
                      (unsigned long long)(t->file_offset - f->data_start),
                      (unsigned long long)(t->file_offset - f->data_start + t->nbytes));
    prev = t;
  }
  return AQS_OK;
}

static aqs_status parse_header(aqs_st_file *f, aqs_err *e) {
  const char *hdr = (const char *)f->map + 8;
  json_error_t jerr;
  json_t *root = json_loadb(hdr, (size_t)f->header_bytes, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    if (json_error_code(&jerr) == json_error_invalid_utf8)
      return aqs_errf(e, AQS_ERR_INVALID, "%s: header is not valid UTF-8 (byte %d): %s", f->path,
                      jerr.position, jerr.text);
    if (json_error_code(&jerr) == json_error_duplicate_key)
      return aqs_errf(e, AQS_ERR_INVALID, "%s: header has a duplicate tensor name: %s", f->path,
                      jerr.text);
    return aqs_errf(e, AQS_ERR_INVALID, "%s: header is not valid JSON (byte %d): %s", f->path,
                    jerr.position, jerr.text);
  }
  aqs_status st = AQS_OK;
  if (!json_is_object(root)) {
    st = aqs_errf(e, AQS_ERR_INVALID, "%s: header is not a JSON object", f->path);
    goto done;
  }
  size_t n = json_object_size(root);
  f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
  f->by_name = calloc(n ? n : 1, sizeof *f->by_name);
  if (!f->tensors || !f->by_name) {
    st = aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", f->path);
    goto done;
  }
  uint64_t data_bytes = f->file_bytes - f->data_start;
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    if (strcmp(key, "__metadata__") == 0) {
      st = parse_metadata(f, val, e);
    } else {
      st = parse_tensor(f, key, val, data_bytes, &f->tensors[f->ntensors], e);
      f->ntensors++; /* counted even on error so close frees the name */
    }
    if (st) goto done;
  }
  st = check_overlaps(f, e);
  if (st) goto done;
  for (size_t i = 0; i < f->ntensors; i++) {
    aqs_st_tensor *t = &f->tensors[i];
    t->data = t->nbytes ? f->map + t->file_offset : NULL;
    f->by_name[i] = t;
  }
  qsort(f->by_name, f->ntensors, sizeof *f->by_name, cmp_by_name);
done:
  json_decref(root);
  return st;
}

aqs_status aqs_st_open(const char *path, aqs_st_file **out, aqs_err *e) {
  *out = NULL;
  aqs_st_file *f = calloc(1, sizeof *f);
  if (!f || !(f->path = strdup(path))) {
    free(f);
    return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", path);
  }
  aqs_status st = AQS_OK;
  int fd = -1;
  st = aqs_file_open_input(path, AQS_INPUT_MODEL, &fd, &f->file_bytes, e);
  if (st) goto fail;
  if (f->file_bytes < 8) {
    st = aqs_errf(e, AQS_ERR_INVALID,
                  "%s: file is %llu bytes, too short for the 8-byte header length", path,
                  (unsigned long long)f->file_bytes);
    goto fail;
  }
  void *map = mmap(NULL, (size_t)f->file_bytes, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    st = aqs_errno(e, AQS_ERR_IO, errno, "%s: mmap", path);
    goto fail;
  }
  f->map = map;
  close(fd);
  fd = -1;
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | f->map[i]; /* little-endian u64 */
  f->header_bytes = n;
  if (n < 2) {
    st = aqs_errf(e, AQS_ERR_INVALID, "%s: header length %llu is too small for a JSON object",
                  path, (unsigned long long)n);
    goto fail;
  }
  if (n > AQS_ST_MAX_HEADER_BYTES) {
    st = aqs_errf(e, AQS_ERR_INVALID, "%s: header length %llu exceeds the %u-byte limit", path,
                  (unsigned long long)n, AQS_ST_MAX_HEADER_BYTES);
    goto fail;
  }
  if (n > f->file_bytes - 8) {
    st = aqs_errf(e, AQS_ERR_INVALID,
                  "%s: header length %llu extends past end of file (%llu bytes; truncated?)", path,
                  (unsigned long long)n, (unsigned long long)f->file_bytes);
    goto fail;
  }
  f->data_start = 8 + n;
  st = parse_header(f, e);
  if (st) goto fail;
  *out = f;
  return AQS_OK;
fail:
  if (fd >= 0) close(fd);
  aqs_st_close(f);
  return st;
}

void aqs_st_close(aqs_st_file *f) {
  if (!f) return;
  if (f->map) munmap((void *)f->map, (size_t)f->file_bytes);
  for (size_t i = 0; i < f->ntensors; i++) free((char *)f->tensors[i].name);
  for (size_t i = 0; i < f->nmeta; i++) {
    free(f->meta_keys[i]);
    free(f->meta_values[i]);
  }
  free(f->meta_keys);
  free(f->meta_values);
  free(f->tensors);
  free(f->by_name);
  free(f->path);
  free(f);
}

const aqs_st_tensor *aqs_st_find(const aqs_st_file *f, const char *name) {
  size_t lo = 0, hi = f->ntensors;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(name, f->by_name[mid]->name);
    if (c == 0) return f->by_name[mid];
    if (c < 0) hi = mid;
    else lo = mid + 1;
  }
  return NULL;
}

const char *aqs_st_meta(const aqs_st_file *f, const char *key) {
  for (size_t i = 0; i < f->nmeta; i++)
    if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
  return NULL;
}
