/* engine/stages/ckpt_view.c: the tensors of a stored checkpoint that differ from its source, as
 * views of their objects (ckpt_view.h); the shard headers give dtype and shape. */
#include "engine/stages/ckpt_view.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/stages/ckpt_store.h"

struct aqs_ckpt_view {
  aqs_ckpt ck;               /* tensors sorted by name, no files */
  aqs_st_tensor *tensors;    /* (n, cap) */
  aqs_view *views;           /* one per tensor */
  size_t n, cap;
  uint64_t bytes;
};

typedef struct source_tensor {
  const char *name, *digest;
  int in_ckpt; /* the checkpoint has a tensor of this name */
} source_tensor;

static int by_name(const void *a, const void *b) {
  return strcmp(((const source_tensor *)a)->name, ((const source_tensor *)b)->name);
}

static int by_tensor_name(const void *a, const void *b) {
  return strcmp((*(const aqs_st_tensor *const *)a)->name, (*(const aqs_st_tensor *const *)b)->name);
}

/* The source's [name, digest] pairs sorted by name (pointing into doc). */
static aqs_status source_tensors(const json_t *doc, source_tensor **out, size_t *n_out, aqs_err *e) {
  const json_t *arr = json_object_get(doc, "tensors");
  size_t n = json_array_size(arr), i;
  source_tensor *t = malloc((n ? n : 1) * sizeof *t);
  if (!t) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  json_t *row;
  json_array_foreach(arr, i, row) {
    t[i].name = json_string_value(json_array_get(row, 0));
    t[i].digest = json_string_value(json_array_get(row, 3));
    t[i].in_ckpt = 0;
    if (!t[i].name || !t[i].digest) {
      free(t);
      return aqs_errf(e, AQS_ERR_CORRUPT, "source manifest: tensor entry %zu is malformed", i);
    }
  }
  qsort(t, n, sizeof *t, by_name);
  *out = t;
  *n_out = n;
  return AQS_OK;
}

/* 1 when the source holds name with this digest; marks the source tensor as present. */
static int same_as_source(source_tensor *src, size_t n, const char *name, const char *digest) {
  source_tensor key = {.name = name};
  source_tensor *hit = bsearch(&key, src, n, sizeof *src, by_name);
  if (hit) hit->in_ckpt = 1;
  return hit && strcmp(hit->digest, digest) == 0;
}

/* The JSON header of a stored shard (the object holds the 8-byte length and the JSON). */
static aqs_status load_header(aqs_store *s, const json_t *shard, const char *what, json_t **out, aqs_err *e) {
  aqs_digest d;
  aqs_status st = aqs_digest_parse(json_string_value(json_object_get(shard, "header")), &d, e);
  if (st) return aqs_err_prefix(e, "%s: header", what);
  void *data;
  size_t size;
  if ((st = aqs_get_mem(s, &d, &data, &size, e))) return aqs_err_prefix(e, "%s: header", what);
  uint64_t len = 0;
  if (size >= 8) memcpy(&len, data, 8); /* little-endian, as every host aqs runs on */
  json_error_t je;
  *out = size >= 8 && len <= size - 8 ? json_loadb((const char *)data + 8, (size_t)len, 0, &je) : NULL;
  free(data);
  if (!json_is_object(*out)) {
    json_decref(*out);
    *out = NULL;
    return aqs_errf(e, AQS_ERR_CORRUPT, "%s: the stored safetensors header is not a JSON object", what);
  }
  return AQS_OK;
}

/* Fills t from its header entry; nbytes is the shard manifest's. */
static aqs_status describe(const json_t *hdr, const char *name, uint64_t nbytes, const char *what,
                           aqs_st_tensor *t, aqs_err *e) {
  const json_t *ent = json_object_get(hdr, name), *shape = json_object_get(ent, "shape");
  aqs_status st = aqs_dtype_parse(json_string_value(json_object_get(ent, "dtype")), &t->dtype, e);
  if (st || !json_is_array(shape) || json_array_size(shape) > AQS_ST_MAX_DIMS)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor %s has no usable dtype/shape in its header", what, name);
  t->ndim = (int)json_array_size(shape);
  t->numel = 1;
  for (int k = 0; k < t->ndim; k++) {
    t->shape[k] = json_integer_value(json_array_get(shape, (size_t)k));
    if (t->shape[k] < 0) return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor %s has a negative dimension", what, name);
    t->numel *= (uint64_t)t->shape[k];
  }
  t->nbytes = t->numel * aqs_dtype_size(t->dtype);
  if (t->nbytes != nbytes)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor %s: header says %llu bytes, manifest %llu", what, name,
                    (unsigned long long)t->nbytes, (unsigned long long)nbytes);
  return AQS_OK;
}

static aqs_status add_tensor(aqs_store *s, aqs_ckpt_view *v, const json_t *hdr, const json_t *row,
                             const char *what, aqs_err *e) {
  const char *name = json_string_value(json_array_get(row, 0));
  aqs_digest d;
  aqs_status st = aqs_digest_parse(json_string_value(json_array_get(row, 1)), &d, e);
  if (st) return aqs_err_prefix(e, "%s: tensor %s", what, name);
  if (v->n == v->cap) {
    size_t cap = v->cap ? 2 * v->cap : 64;
    aqs_st_tensor *t = realloc(v->tensors, cap * sizeof *t);
    if (t) v->tensors = t;
    aqs_view *w = realloc(v->views, cap * sizeof *w);
    if (w) v->views = w;
    if (!t || !w) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
    v->cap = cap;
  }
  aqs_st_tensor *t = &v->tensors[v->n];
  memset(t, 0, sizeof *t);
  memset(&v->views[v->n], 0, sizeof v->views[v->n]);
  if ((st = describe(hdr, name, (uint64_t)json_integer_value(json_array_get(row, 2)), what, t, e))) return st;
  /* a mapped object is trusted through its verified stamp (hashed again only when it changed) */
  if ((st = aqs_object_check(s, &d, e)) || (st = aqs_object_view(s, &d, 0, &v->views[v->n], e)))
    return aqs_err_prefix(e, "%s: tensor %s", what, name);
  if (v->views[v->n].size != t->nbytes) {
    aqs_view_release(&v->views[v->n]);
    return aqs_errf(e, AQS_ERR_CORRUPT, "%s: tensor %s: object holds %zu bytes, expected %llu", what, name,
                    v->views[v->n].size, (unsigned long long)t->nbytes);
  }
  t->name = strdup(name);
  if (!t->name) {
    aqs_view_release(&v->views[v->n]);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  t->data = t->nbytes ? v->views[v->n].data : NULL;
  v->bytes += t->nbytes;
  v->n++;
  return AQS_OK;
}

static aqs_status add_shard(aqs_store *s, aqs_ckpt_view *v, const json_t *file, source_tensor *src,
                            size_t n_src, aqs_err *e) {
  char what[256];
  snprintf(what, sizeof what, "%s: %s", v->ck.dir, json_string_value(json_object_get(file, "name")));
  aqs_digest d;
  json_t *shard, *hdr = NULL;
  aqs_status st = aqs_digest_parse(json_string_value(json_object_get(file, "digest")), &d, e);
  if (!st) st = aqs_ckpt_load_manifest(s, &d, "aqs-shard", &shard, e);
  if (st) return aqs_err_prefix(e, "%s", what);
  size_t i;
  json_t *row;
  json_array_foreach(json_object_get(shard, "tensors"), i, row) {
    const char *name = json_string_value(json_array_get(row, 0)), *digest = json_string_value(json_array_get(row, 1));
    if (!name || !digest) {
      st = aqs_errf(e, AQS_ERR_CORRUPT, "%s: tensor entry %zu is malformed", what, i);
      break;
    }
    if (same_as_source(src, n_src, name, digest)) continue;
    if (!hdr && (st = load_header(s, shard, what, &hdr, e))) break;
    if ((st = add_tensor(s, v, hdr, row, what, e))) break;
  }
  json_decref(hdr);
  json_decref(shard);
  return st;
}

aqs_status aqs_ckpt_view_open(aqs_store *s, const aqs_digest *ckpt, const aqs_digest *source,
                              aqs_ckpt_view **out, aqs_err *e) {
  *out = NULL;
  aqs_ckpt_view *v = calloc(1, sizeof *v);
  char hex[AQS_DIGEST_STR_SIZE], dir[64];
  snprintf(dir, sizeof dir, "checkpoint %.19s", aqs_digest_str(ckpt, hex));
  if (!v || !(v->ck.dir = strdup(dir))) {
    free(v);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  json_t *src_doc = NULL, *doc = NULL;
  source_tensor *src = NULL;
  size_t n_src = 0;
  aqs_status st = aqs_ckpt_load_manifest(s, source, "aqs-model", &src_doc, e);
  if (!st) st = source_tensors(src_doc, &src, &n_src, e);
  if (!st) st = aqs_ckpt_load_manifest(s, ckpt, "aqs-checkpoint", &doc, e);
  size_t i;
  json_t *f;
  json_array_foreach(json_object_get(doc, "files"), i, f) {
    if (st) break;
    const char *type = json_string_value(json_object_get(f, "type"));
    if (type && strcmp(type, "shard") == 0) st = add_shard(s, v, f, src, n_src, e);
  }
  /* a tensor the checkpoint lacks would silently be the source's in the view: refused */
  for (size_t k = 0; !st && k < n_src; k++)
    if (!src[k].in_ckpt)
      st = aqs_errf(e, AQS_ERR_INVALID, "%s lacks tensor %s of its BF16 source", v->ck.dir, src[k].name);
  free(src);
  json_decref(src_doc);
  json_decref(doc);
  if (!st && !(v->ck.tensors = malloc((v->n ? v->n : 1) * sizeof *v->ck.tensors)))
    st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  if (st) {
    aqs_ckpt_view_close(v);
    return st;
  }
  for (size_t k = 0; k < v->n; k++) v->ck.tensors[k] = &v->tensors[k];
  v->ck.ntensors = v->n;
  qsort(v->ck.tensors, v->n, sizeof *v->ck.tensors, by_tensor_name);
  *out = v;
  return AQS_OK;
}

const aqs_ckpt *aqs_ckpt_view_ckpt(const aqs_ckpt_view *v) { return &v->ck; }

uint64_t aqs_ckpt_view_bytes(const aqs_ckpt_view *v) { return v->bytes; }

void aqs_ckpt_view_close(aqs_ckpt_view *v) {
  if (!v) return;
  for (size_t k = 0; k < v->n; k++) {
    free((char *)v->tensors[k].name);
    aqs_view_release(&v->views[k]);
  }
  free(v->tensors);
  free(v->views);
  free(v->ck.tensors);
  free(v->ck.dir);
  free(v);
}
