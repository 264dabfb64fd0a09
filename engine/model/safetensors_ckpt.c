/* engine/model/safetensors_ckpt.c: a checkpoint = one .safetensors file or the shards named by
 * model.safetensors.index.json, opened together with one name-sorted tensor table. Checks that
 * the index and the shards agree (every listed tensor where the index says, nothing unlisted). */
#include "common/file.h"
#include "engine/model/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define INDEX_NAME "model.safetensors.index.json"

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_tensor_name(const void *a, const void *b) {
  const aqs_st_tensor *const *x = a, *const *y = b;
  return strcmp((*x)->name, (*y)->name);
}

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static char *join(const char *dir, const char *name) {
  char *p = NULL;
  if (asprintf(&p, "%s/%s", dir, name) < 0) return NULL;
  return p;
}

/* Shard file names (malloc'd, sorted, unique) from the index's weight_map. */
static aqs_status index_shards(const char *index_path, json_t *weight_map, char ***names_out,
                               size_t *n_out, aqs_err *e) {
  size_t cap = 8, n = 0;
  char **names = malloc(cap * sizeof *names);
  if (!names) return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", index_path);
  const char *tensor;
  json_t *jshard;
  aqs_status st = AQS_OK;
  json_object_foreach(weight_map, tensor, jshard) {
    if (!json_is_string(jshard)) {
      st = aqs_errf(e, AQS_ERR_INVALID, "%s: weight_map entry for \"%s\" is not a string",
                    index_path, tensor);
      break;
    }
    const char *shard = json_string_value(jshard);
    if (!shard[0] || strchr(shard, '/') || strcmp(shard, "..") == 0 || strcmp(shard, ".") == 0) {
      st = aqs_errf(e, AQS_ERR_INVALID,
                    "%s: weight_map entry for \"%s\" names \"%s\", not a file in the same directory",
                    index_path, tensor, shard);
      break;
    }
    int seen = 0;
    for (size_t i = 0; i < n && !seen; i++) seen = strcmp(names[i], shard) == 0;
    if (seen) continue;
    if (n == cap) {
      char **grown = realloc(names, (cap *= 2) * sizeof *names);
      if (!grown) {
        st = aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", index_path);
        break;
      }
      names = grown;
    }
    if (!(names[n++] = strdup(shard))) {
      st = aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", index_path);
      break;
    }
  }
  if (st) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
  }
  qsort(names, n, sizeof *names, cmp_str);
  *names_out = names;
  *n_out = n;
  return AQS_OK;
}

/* *.safetensors in dir, sorted. */
static aqs_status dir_shards(const char *dir, char ***names_out, size_t *n_out, aqs_err *e) {
  DIR *d = opendir(dir);
  if (!d) return aqs_errno(e, errno == ENOENT ? AQS_ERR_NOT_FOUND : AQS_ERR_IO, errno, "%s", dir);
  size_t cap = 8, n = 0;
  char **names = malloc(cap * sizeof *names);
  struct dirent *de;
  while (names && (de = readdir(d))) {
    if (!has_suffix(de->d_name, ".safetensors") || de->d_name[0] == '.') continue;
    if (n == cap) {
      char **grown = realloc(names, (cap *= 2) * sizeof *names);
      if (!grown) break;
      names = grown;
    }
    names[n++] = strdup(de->d_name);
  }
  closedir(d);
  if (!names) return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", dir);
  if (n == 0) {
    free(names);
    return aqs_errf(e, AQS_ERR_NOT_FOUND, "%s: no " INDEX_NAME " and no *.safetensors file", dir);
  }
  qsort(names, n, sizeof *names, cmp_str);
  *names_out = names;
  *n_out = n;
  return AQS_OK;
}

/* Builds the global name-sorted table; a name in two files is an error naming both. */
static aqs_status build_table(aqs_ckpt *c, aqs_err *e) {
  size_t total = 0;
  for (size_t i = 0; i < c->nfiles; i++) total += c->files[i]->ntensors;
  c->tensors = malloc((total ? total : 1) * sizeof *c->tensors);
  if (!c->tensors) return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", c->dir);
  for (size_t i = 0; i < c->nfiles; i++)
    for (size_t j = 0; j < c->files[i]->ntensors; j++)
      c->tensors[c->ntensors++] = &c->files[i]->tensors[j];
  qsort(c->tensors, c->ntensors, sizeof *c->tensors, cmp_tensor_name);
  for (size_t i = 1; i < c->ntensors; i++)
    if (strcmp(c->tensors[i - 1]->name, c->tensors[i]->name) == 0)
      return aqs_errf(e, AQS_ERR_INVALID, "tensor \"%s\" is in both %s and %s",
                      c->tensors[i]->name, c->tensors[i - 1]->file->path,
                      c->tensors[i]->file->path);
  return AQS_OK;
}

/* Index vs shards: each listed tensor in its shard, each shard tensor listed for that shard. */
static aqs_status check_index(aqs_ckpt *c, json_t *weight_map, aqs_err *e) {
  const char *tensor;
  json_t *jshard;
  json_object_foreach(weight_map, tensor, jshard) {
    const char *shard = json_string_value(jshard);
    const aqs_st_tensor *t = aqs_ckpt_find(c, tensor);
    if (!t)
      return aqs_errf(e, AQS_ERR_NOT_FOUND, "%s: tensor \"%s\" is listed for %s but not found there",
                      c->index_path, tensor, shard);
    const char *base = strrchr(t->file->path, '/');
    base = base ? base + 1 : t->file->path;
    if (strcmp(base, shard) != 0)
      return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor \"%s\" is listed for %s but found in %s",
                      c->index_path, tensor, shard, t->file->path);
  }
  for (size_t i = 0; i < c->ntensors; i++)
    if (!json_object_get(weight_map, c->tensors[i]->name))
      return aqs_errf(e, AQS_ERR_INVALID, "%s: tensor \"%s\" in %s is not listed in the index",
                      c->index_path, c->tensors[i]->name, c->tensors[i]->file->path);
  return AQS_OK;
}

static aqs_status open_files(aqs_ckpt *c, char **names, size_t n, aqs_err *e) {
  c->files = calloc(n ? n : 1, sizeof *c->files);
  if (!c->files) return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", c->dir);
  for (size_t i = 0; i < n; i++) {
    char *p = join(c->dir, names[i]);
    if (!p) return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", c->dir);
    aqs_status st = aqs_st_open(p, &c->files[i], e);
    free(p);
    if (st) return st;
    c->nfiles++;
  }
  return AQS_OK;
}

static aqs_status open_indexed(aqs_ckpt *c, aqs_err *e) {
  json_error_t jerr;
  char *text;
  size_t len;
  aqs_status rd = aqs_file_read_input(c->index_path, AQS_INPUT_CONFIG, &text, &len, e);
  if (rd) return rd;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  free(text);
  if (!root) return aqs_errf(e, AQS_ERR_INVALID, "%s: line %d: %s", c->index_path, jerr.line, jerr.text);
  aqs_status st = AQS_OK;
  char **names = NULL;
  size_t n = 0;
  json_t *weight_map = json_object_get(root, "weight_map");
  if (!json_is_object(weight_map)) {
    st = aqs_errf(e, AQS_ERR_INVALID, "%s: missing \"weight_map\" object", c->index_path);
    goto done;
  }
  st = index_shards(c->index_path, weight_map, &names, &n, e);
  if (st) goto done;
  st = open_files(c, names, n, e);
  if (!st) st = build_table(c, e);
  if (!st) st = check_index(c, weight_map, e);
done:
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  json_decref(root);
  return st;
}

aqs_status aqs_ckpt_open(const char *path, aqs_ckpt **out, aqs_err *e) {
  *out = NULL;
  struct stat sb;
  if (stat(path, &sb) != 0)
    return aqs_errno(e, errno == ENOENT ? AQS_ERR_NOT_FOUND : AQS_ERR_IO, errno, "%s", path);
  aqs_ckpt *c = calloc(1, sizeof *c);
  if (!c) return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", path);
  aqs_status st = AQS_OK;
  char *single = NULL;
  if (S_ISDIR(sb.st_mode)) {
    c->dir = strdup(path);
    char *idx = join(path, INDEX_NAME);
    struct stat ib;
    if (idx && stat(idx, &ib) == 0) c->index_path = idx;
    else free(idx);
  } else {
    const char *slash = strrchr(path, '/');
    c->dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
    if (has_suffix(path, ".json")) c->index_path = strdup(path);
    else single = strdup(slash ? slash + 1 : path);
    if (!c->index_path && !single) st = aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", path);
  }
  if (!st && !c->dir) st = aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", path);
  if (st) goto done;
  if (c->index_path) {
    st = open_indexed(c, e);
  } else {
    char **names = NULL;
    size_t n = 0;
    if (single) {
      names = &single;
      n = 1;
    } else {
      st = dir_shards(c->dir, &names, &n, e);
    }
    if (!st) st = open_files(c, names, n, e);
    if (!st) st = build_table(c, e);
    if (!single && names) {
      for (size_t i = 0; i < n; i++) free(names[i]);
      free(names);
    }
  }
done:
  free(single);
  if (st) {
    aqs_ckpt_close(c);
    return st;
  }
  *out = c;
  return AQS_OK;
}

void aqs_ckpt_close(aqs_ckpt *c) {
  if (!c) return;
  for (size_t i = 0; i < c->nfiles; i++) aqs_st_close(c->files[i]);
  free(c->files);
  free(c->tensors);
  free(c->index_path);
  free(c->dir);
  free(c);
}

const aqs_st_tensor *aqs_ckpt_find(const aqs_ckpt *c, const char *name) {
  size_t lo = 0, hi = c->ntensors;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int r = strcmp(name, c->tensors[mid]->name);
    if (r == 0) return c->tensors[mid];
    if (r < 0) hi = mid;
    else lo = mid + 1;
  }
  return NULL;
}

aqs_status aqs_ckpt_get(const aqs_ckpt *c, const char *name, const aqs_st_tensor **out,
                        aqs_err *e) {
  *out = aqs_ckpt_find(c, name);
  if (!*out)
    return aqs_errf(e, AQS_ERR_NOT_FOUND, "tensor \"%s\" not found in checkpoint %s", name,
                    c->dir);
  return AQS_OK;
}
