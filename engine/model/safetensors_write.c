/* engine/model/safetensors_write.c: streaming safetensors writer (declare tensors, write the
 * space-padded JSON header, stream the bytes, fsync + rename) and the sharded-checkpoint index
 * writer. Output is a pure function of the calls: same tensors and metadata -> same bytes. */
#include "engine/model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct aqs_st_writer {
  char *path;
  char *tmp_path;
  int fd;
  json_t *meta;           /* __metadata__ object (NULL until first set_meta) */
  json_t *entries;        /* tensor name -> entry, insertion order kept by JSON_PRESERVE_ORDER */
  uint64_t declared_bytes;
  uint64_t written_bytes;
  int data_started;
  uint8_t *header;        /* memory writers: the header bytes built by begin_data */
  size_t header_bytes;
};

static aqs_status write_all(int fd, const void *buf, size_t n, const char *path, aqs_err *e) {
  const uint8_t *p = buf;
  while (n) {
    ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return aqs_errno(e, AQS_ERR_IO, errno, "%s: write", path);
    }
    p += w;
    n -= (size_t)w;
  }
  return AQS_OK;
}

aqs_status aqs_st_writer_open(const char *path, aqs_st_writer **out, aqs_err *e) {
  *out = NULL;
  aqs_st_writer *w = calloc(1, sizeof *w);
  if (!w) return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", path);
  w->fd = -1;
  w->path = strdup(path);
  w->entries = json_object();
  if (!w->path || !w->entries || asprintf(&w->tmp_path, "%s.tmp.%ld", path, (long)getpid()) < 0) {
    w->tmp_path = NULL;
    aqs_st_writer_abort(w);
    return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", path);
  }
  w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w->fd < 0) {
    aqs_status st = aqs_errno(e, AQS_ERR_IO, errno, "%s: create", w->tmp_path);
    aqs_st_writer_abort(w);
    return st;
  }
  *out = w;
  return AQS_OK;
}

aqs_status aqs_st_writer_open_mem(const char *name, aqs_st_writer **out, aqs_err *e) {
  *out = NULL;
  aqs_st_writer *w = calloc(1, sizeof *w);
  if (!w || !(w->path = strdup(name)) || !(w->entries = json_object())) {
    aqs_st_writer_abort(w);
    return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", name);
  }
  w->fd = -1;
  *out = w;
  return AQS_OK;
}

aqs_status aqs_st_writer_header(const aqs_st_writer *w, const uint8_t **bytes, size_t *len, aqs_err *e) {
  if (!w->header) return aqs_errf(e, AQS_ERR_INTERNAL, "%s: no header built (memory writer before begin_data)", w->path);
  *bytes = w->header;
  *len = w->header_bytes;
  return AQS_OK;
}

aqs_status aqs_st_writer_set_meta(aqs_st_writer *w, const char *key, const char *value,
                                  aqs_err *e) {
  if (w->data_started)
    return aqs_errf(e, AQS_ERR_INTERNAL, "%s: metadata set after the header was written", w->path);
  if (!w->meta && !(w->meta = json_object()))
    return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", w->path);
  if (json_object_set_new(w->meta, key, json_string(value)) != 0)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: metadata \"%s\" is not valid UTF-8", w->path, key);
  return AQS_OK;
}

aqs_status aqs_st_writer_add(aqs_st_writer *w, const char *name, aqs_dtype dtype, int ndim,
                             const int64_t *shape, aqs_err *e) {
  if (w->data_started)
    return aqs_errf(e, AQS_ERR_INTERNAL, "%s: tensor \"%s\" added after the header was written",
                    w->path, name);
  if (strcmp(name, "__metadata__") == 0 || json_object_get(w->entries, name))
    return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor name \"%s\" used twice (or reserved)", w->path,
                    name);
  if (ndim < 0 || ndim > AQS_ST_MAX_DIMS || aqs_dtype_size(dtype) == 0)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor \"%s\": bad ndim %d or dtype", w->path, name,
                    ndim);
  uint64_t numel = 1;
  json_t *jshape = json_array();
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) {
      json_decref(jshape);
      return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor \"%s\": negative dimension", w->path, name);
    }
    numel *= (uint64_t)shape[i];
    json_array_append_new(jshape, json_integer(shape[i]));
  }
  uint64_t nbytes = numel * aqs_dtype_size(dtype);
  json_t *entry = json_pack("{s:s, s:o, s:[I, I]}", "dtype", aqs_dtype_name(dtype), "shape", jshape,
                            "data_offsets", (json_int_t)w->declared_bytes,
                            (json_int_t)(w->declared_bytes + nbytes));
  if (!entry || json_object_set_new(w->entries, name, entry) != 0)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor name \"%s\" is not valid UTF-8", w->path, name);
  w->declared_bytes += nbytes;
  return AQS_OK;
}

aqs_status aqs_st_writer_begin_data(aqs_st_writer *w, aqs_err *e) {
  if (w->data_started) return AQS_OK;
  json_t *root = json_object();
  if (!root) return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", w->path);
  if (w->meta) json_object_set(root, "__metadata__", w->meta);
  json_object_update(root, w->entries);
  char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(root);
  if (!text) return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", w->path);
  size_t len = strlen(text);
  size_t padded = (len + 7) & ~(size_t)7;
  uint8_t *buf = malloc(8 + padded);
  if (!buf) {
    free(text);
    return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", w->path);
  }
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
  memcpy(buf + 8, text, len);
  memset(buf + 8 + len, ' ', padded - len);
  free(text);
  w->data_started = 1;
  if (w->fd < 0) { /* memory writer: keep the header for aqs_st_writer_header */
    w->header = buf;
    w->header_bytes = 8 + padded;
    return AQS_OK;
  }
  aqs_status st = write_all(w->fd, buf, 8 + padded, w->tmp_path, e);
  free(buf);
  return st;
}

aqs_status aqs_st_writer_write(aqs_st_writer *w, const void *bytes, size_t nbytes, aqs_err *e) {
  if (!w->data_started) {
    aqs_status st = aqs_st_writer_begin_data(w, e);
    if (st) return st;
  }
  if (nbytes > w->declared_bytes - w->written_bytes)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: %llu bytes written past the declared %llu", w->path,
                    (unsigned long long)(w->written_bytes + nbytes),
                    (unsigned long long)w->declared_bytes);
  aqs_status st = write_all(w->fd, bytes, nbytes, w->tmp_path, e);
  if (!st) w->written_bytes += nbytes;
  return st;
}

uint64_t aqs_st_writer_data_bytes(const aqs_st_writer *w) { return w->declared_bytes; }

aqs_status aqs_st_writer_finish(aqs_st_writer *w, aqs_err *e) {
  aqs_status st = AQS_OK;
  if (!w->data_started) st = aqs_st_writer_begin_data(w, e);
  if (!st && w->written_bytes != w->declared_bytes)
    st = aqs_errf(e, AQS_ERR_INVALID, "%s: %llu of %llu declared data bytes written", w->path,
                  (unsigned long long)w->written_bytes, (unsigned long long)w->declared_bytes);
  if (!st && fsync(w->fd) != 0) st = aqs_errno(e, AQS_ERR_IO, errno, "%s: fsync", w->tmp_path);
  if (!st) {
    int rc = close(w->fd);
    w->fd = -1;
    if (rc != 0) st = aqs_errno(e, AQS_ERR_IO, errno, "%s: close", w->tmp_path);
  }
  if (!st && rename(w->tmp_path, w->path) != 0)
    st = aqs_errno(e, AQS_ERR_IO, errno, "rename %s -> %s", w->tmp_path, w->path);
  if (!st) {
    free(w->tmp_path);
    w->tmp_path = NULL; /* nothing left to unlink */
  }
  aqs_st_writer_abort(w);
  return st;
}

void aqs_st_writer_abort(aqs_st_writer *w) {
  if (!w) return;
  if (w->fd >= 0) close(w->fd);
  if (w->tmp_path) unlink(w->tmp_path);
  json_decref(w->meta);
  json_decref(w->entries);
  free(w->header);
  free(w->tmp_path);
  free(w->path);
  free(w);
}

aqs_status aqs_st_write_file(const char *path, const aqs_st_write_item *items, size_t nitems,
                             const char *const *meta_kv, aqs_err *e) {
  aqs_st_writer *w;
  aqs_status st = aqs_st_writer_open(path, &w, e);
  if (st) return st;
  for (size_t i = 0; meta_kv && meta_kv[i] && meta_kv[i + 1] && !st; i += 2)
    st = aqs_st_writer_set_meta(w, meta_kv[i], meta_kv[i + 1], e);
  for (size_t i = 0; i < nitems && !st; i++)
    st = aqs_st_writer_add(w, items[i].name, items[i].dtype, items[i].ndim, items[i].shape, e);
  if (!st) st = aqs_st_writer_begin_data(w, e);
  for (size_t i = 0; i < nitems && !st; i++) {
    uint64_t numel = 1;
    for (int d = 0; d < items[i].ndim; d++) numel *= (uint64_t)items[i].shape[d];
    st = aqs_st_writer_write(w, items[i].data, numel * aqs_dtype_size(items[i].dtype), e);
  }
  if (st) {
    aqs_st_writer_abort(w);
    return st;
  }
  return aqs_st_writer_finish(w, e);
}

aqs_status aqs_st_write_index(const char *dir, const char *const *tensor_names,
                              const char *const *shard_names, size_t n, uint64_t total_size,
                              aqs_err *e) {
  json_t *map = json_object();
  for (size_t i = 0; map && i < n; i++)
    json_object_set_new(map, tensor_names[i], json_string(shard_names[i]));
  json_t *root = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total_size,
                           "weight_map", map);
  char *path = NULL, *tmp = NULL;
  if (!root || asprintf(&path, "%s/model.safetensors.index.json", dir) < 0) {
    json_decref(root);
    return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", dir);
  }
  aqs_status st = AQS_OK;
  if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0) {
    tmp = NULL;
    st = aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", dir);
  } else if (json_dump_file(root, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0) {
    st = aqs_errno(e, AQS_ERR_IO, errno, "%s: write", tmp);
    unlink(tmp);
  } else if (rename(tmp, path) != 0) {
    st = aqs_errno(e, AQS_ERR_IO, errno, "rename %s -> %s", tmp, path);
    unlink(tmp);
  }
  json_decref(root);
  free(tmp);
  free(path);
  return st;
}
