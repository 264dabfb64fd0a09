/* engine/stages/ckpt_store.c: storing checkpoint directories as tensor-level trees and writing
 * them back out (see ckpt_store.h for the object layout and link modes). */
#include "engine/stages/ckpt_store.h"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/path.h"
#include "engine/model/safetensors.h"
#include "engine/stages/stage.h"
#include "store/canon_json.h"

#define CHECKOUT_MARKER ".aqs-checkout"

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Sorted regular-file names of dir (dot files skipped). */
static aqs_status list_files(const char *dir, char ***names_out, size_t *n_out, aqs_err *e) {
  DIR *d = opendir(dir);
  if (!d) return aqs_errno(e, errno == ENOENT ? AQS_ERR_NOT_FOUND : AQS_ERR_IO, errno, "%s", dir);
  size_t n = 0, cap = 16;
  char **names = malloc(cap * sizeof *names);
  struct dirent *de;
  aqs_status st = AQS_OK;
  while (names && (de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    struct stat sb;
    if (stat(path, &sb) != 0) {
      st = aqs_errno(e, AQS_ERR_IO, errno, "%s", path);
      break;
    }
    if (!S_ISREG(sb.st_mode)) {
      st = aqs_errf(e, AQS_ERR_UNSUPPORTED, "%s: not a regular file (checkpoints are flat directories)", path);
      break;
    }
    if (n == cap) {
      char **nn = realloc(names, (cap *= 2) * sizeof *nn);
      if (!nn) break;
      names = nn;
    }
    names[n++] = strdup(de->d_name);
  }
  closedir(d);
  if (!names) return aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", dir);
  if (st) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
  }
  qsort(names, n, sizeof *names, cmp_names);
  *names_out = names;
  *n_out = n;
  return AQS_OK;
}

static json_t *digest_json(const aqs_digest *d) {
  char buf[AQS_DIGEST_STR_SIZE];
  return json_string(aqs_digest_str(d, buf));
}

static void count_put(aqs_ckpt_ingest_stats *stats, const aqs_put_info *info) {
  if (stats && !info->deduped) stats->bytes_new += info->size_bytes;
}

/* Puts small bytes (zstd; manifest: 1 for a manifest) unless the store already holds them, checked
 * sound: then nothing is written. A put of a present object still commits a write transaction (its
 * access time and the dedup counters), an fsync each, under the store's one writer lock; a sweep's
 * later exports meet mostly shards an earlier export stored, so those cost reads only. */
static aqs_status put_small(aqs_store *s, const void *data, size_t len, int manifest, aqs_put_info *info, aqs_err *e) {
  aqs_digest d;
  aqs_sha256_buf(data, len, &d);
  if (aqs_object_check(s, &d, NULL) == AQS_OK) {
    *info = (aqs_put_info){.digest = d, .size_bytes = len, .deduped = 1};
    return AQS_OK;
  }
  aqs_put_opts opts = {.compress = AQS_COMPRESS_ZSTD, .manifest = manifest};
  return aqs_put_mem(s, data, len, &opts, info, e);
}

/* The shard manifest (see ckpt_store.h) from its header digest and tensors in file order. */
static aqs_status put_shard_manifest(aqs_store *s, const aqs_digest *header, size_t n, const char *const *names,
                                     const aqs_digest *digests, const uint64_t *nbytes, uint64_t file_bytes,
                                     aqs_digest *out, aqs_err *e) {
  json_t *tensors = json_array(), *children = json_array();
  json_array_append_new(children, digest_json(header));
  for (size_t i = 0; i < n; i++) {
    json_array_append_new(tensors, json_pack("[s o I]", names[i], digest_json(&digests[i]), (json_int_t)nbytes[i]));
    json_array_append_new(children, digest_json(&digests[i]));
  }
  json_t *doc = json_pack("{s:s, s:i, s:o, s:o, s:I, s:o}", "kind", "aqs-shard", "version", 1, "header",
                          digest_json(header), "tensors", tensors, "size", (json_int_t)file_bytes, "children",
                          children);
  char *text = NULL;
  size_t len = 0;
  aqs_put_info info;
  aqs_status st = aqs_json_canonical(doc, &text, &len, e);
  json_decref(doc);
  if (!st) st = put_small(s, text, len, 1, &info, e);
  free(text);
  if (!st) *out = info.digest;
  return st;
}

static aqs_status ingest_shard(aqs_store *s, const char *path, aqs_digest *out, uint64_t *size_out,
                               aqs_ckpt_ingest_stats *stats, aqs_err *e) {
  aqs_st_file *f;
  aqs_status st = aqs_st_open(path, &f, e);
  if (st) return st;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    aqs_st_close(f);
    return aqs_errno(e, AQS_ERR_IO, errno, "%s", path);
  }
  aqs_put_info info;
  aqs_put_opts small = {.compress = AQS_COMPRESS_ZSTD}, raw = {.compress = AQS_COMPRESS_RAW};
  /* The header: length prefix + JSON (+ padding), exactly as in the file. */
  st = aqs_put_fd(s, fd, 0, f->data_start, path, &small, &info, e);
  aqs_digest header = info.digest;
  if (!st) count_put(stats, &info);
  uint64_t expect_offset = f->data_start;
  for (size_t i = 0; !st && i < f->ntensors; i++) {
    if (f->tensors[i].file_offset != expect_offset)
      st = aqs_errf(e, AQS_ERR_UNSUPPORTED, "%s: tensor %s does not follow the previous one (gap in the data area)",
                    path, f->tensors[i].name);
    expect_offset += f->tensors[i].nbytes;
  }
  if (!st && expect_offset != f->file_bytes)
    st = aqs_errf(e, AQS_ERR_UNSUPPORTED, "%s: %llu bytes after the last tensor", path,
                  (unsigned long long)(f->file_bytes - expect_offset));
  /* Tensors are hashed and stored in parallel (the store is thread-safe); results are
   * assembled in file order afterwards, so the manifest does not depend on scheduling. */
  size_t nt = f->ntensors;
  aqs_put_info *infos = calloc(nt + 1, sizeof *infos);
  aqs_status *sts = calloc(nt + 1, sizeof *sts);
  aqs_err *errs = calloc(nt + 1, sizeof *errs);
  const char **names = calloc(nt + 1, sizeof *names);
  aqs_digest *digests = calloc(nt + 1, sizeof *digests);
  uint64_t *sizes = calloc(nt + 1, sizeof *sizes);
  if (!st && (!infos || !sts || !errs || !names || !digests || !sizes))
    st = aqs_errf(e, AQS_ERR_NOMEM, "%s: out of memory", path);
  if (!st) {
#pragma omp parallel for schedule(dynamic, 1)
    for (long i = 0; i < (long)nt; i++) {
      const aqs_st_tensor *t = &f->tensors[i];
      sts[i] = aqs_put_fd(s, fd, t->file_offset, t->nbytes, path,
                          t->nbytes >= AQS_CKPT_RAW_MIN_BYTES ? &raw : &small, &infos[i], &errs[i]);
    }
  }
  for (size_t i = 0; !st && i < nt; i++) {
    if (sts[i]) {
      st = sts[i];
      if (e) *e = errs[i];
      break;
    }
    count_put(stats, &infos[i]);
    names[i] = f->tensors[i].name;
    digests[i] = infos[i].digest;
    sizes[i] = f->tensors[i].nbytes;
    if (stats) stats->tensors++;
  }
  if (!st) st = put_shard_manifest(s, &header, nt, names, digests, sizes, f->file_bytes, out, e);
  if (!st) *size_out = f->file_bytes;
  free(infos);
  free(sts);
  free(errs);
  free(names);
  free(digests);
  free(sizes);
  close(fd);
  aqs_st_close(f);
  return st;
}

struct aqs_ckpt_builder {
  aqs_store *s;
  pthread_mutex_t lock;         /* guards files and stats: the exporter stores shards from several threads */
  json_t *files;                /* name -> {type, digest, size} */
  aqs_ckpt_ingest_stats stats;
};

aqs_status aqs_ckpt_builder_new(aqs_store *s, aqs_ckpt_builder **out, aqs_err *e) {
  *out = NULL;
  aqs_ckpt_builder *b = calloc(1, sizeof *b);
  if (!b || !(b->files = json_object())) {
    free(b);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  b->s = s;
  pthread_mutex_init(&b->lock, NULL);
  *out = b;
  return AQS_OK;
}

static aqs_status builder_add_locked(aqs_ckpt_builder *b, const char *path, const char *name, aqs_err *e);

aqs_status aqs_ckpt_builder_add(aqs_ckpt_builder *b, const char *path, const char *name, aqs_err *e) {
  if (!*name || strchr(name, '/') || name[0] == '.')
    return aqs_errf(e, AQS_ERR_INVALID, "%s: bad checkpoint file name", path);
  pthread_mutex_lock(&b->lock);
  aqs_status st = builder_add_locked(b, path, name, e);
  pthread_mutex_unlock(&b->lock);
  return st;
}

static aqs_status builder_add_locked(aqs_ckpt_builder *b, const char *path, const char *name, aqs_err *e) {
  aqs_digest d;
  uint64_t size = 0;
  const char *type;
  aqs_status st;
  if (ends_with(name, ".safetensors")) {
    type = "shard";
    st = ingest_shard(b->s, path, &d, &size, &b->stats, e);
    b->stats.shards++;
  } else {
    type = "blob";
    aqs_put_opts opts = {.compress = AQS_COMPRESS_ZSTD};
    aqs_put_info info = {0};
    /* A file the store holds already (tokenizer files, a config another scheme shares) is read,
     * not written (see put_small). */
    st = aqs_sha256_file(path, &info.digest, &info.size_bytes, e);
    if (!st && aqs_object_check(b->s, &info.digest, NULL) == AQS_OK) info.deduped = 1;
    else if (!st) st = aqs_put_file(b->s, path, &opts, &info, e);
    d = info.digest;
    size = info.size_bytes;
    if (!st) count_put(&b->stats, &info);
  }
  if (st) return st;
  b->stats.files++;
  b->stats.bytes_logical += size;
  json_object_set_new(b->files, name, json_pack("{s:s, s:o, s:I}", "type", type, "digest", digest_json(&d), "size",
                                                (json_int_t)size));
  return AQS_OK;
}

/* The SHA-256 of the file a shard manifest describes, cached as an action (shard -> a small
 * object holding the digest text): computing it means hashing every byte of the shard. No lease
 * is taken (unlike a stage): two builders hashing one shard at once cost less than the two index
 * writes a lease takes for every shard of every export. */
static aqs_status shard_file_digest(aqs_store *s, const aqs_digest *shard, const uint8_t *header, size_t header_bytes,
                                    const aqs_ckpt_mem_tensor *t, size_t n, aqs_digest *out, aqs_err *e) {
  json_t *inputs = json_pack("{s:o}", "shard", digest_json(shard));
  aqs_digest key;
  char *key_doc = NULL;
  aqs_action_info info = {0};
  aqs_status st = aqs_action_key("shard-sha256", "1", inputs, NULL, &key, &key_doc, e);
  json_decref(inputs);
  aqs_err miss = {0};
  int hit = !st && aqs_action_lookup(s, "shard-sha256", &key, &info, &miss) == AQS_OK;
  if (hit) {
    void *text;
    size_t len;
    st = aqs_get_mem(s, &info.result, &text, &len, e);
    if (!st) {
      char buf[AQS_DIGEST_STR_SIZE] = "";
      memcpy(buf, text, len < sizeof buf - 1 ? len : sizeof buf - 1);
      free(text);
      st = aqs_digest_parse(buf, out, e);
    }
  } else if (!st) {
    /* a miss (or a record whose result is gone): hash the shard */
    aqs_sha256 *h = aqs_sha256_new();
    if (!h) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
    if (!st) {
      aqs_sha256_update(h, header, header_bytes);
      for (size_t i = 0; i < n; i++) aqs_sha256_update(h, t[i].data, t[i].nbytes);
      aqs_sha256_final(h, out);
      aqs_sha256_free(h);
      char text[AQS_DIGEST_STR_SIZE];
      aqs_digest_str(out, text);
      aqs_put_opts opts = {.compress = AQS_COMPRESS_ZSTD};
      aqs_put_info put;
      st = aqs_put_mem(s, text, strlen(text), &opts, &put, e);
      if (!st) st = aqs_action_put(s, key_doc, &put.digest, 0.0, NULL, e);
    }
  }
  aqs_action_info_free(&info);
  free(key_doc);
  return st;
}

aqs_status aqs_ckpt_builder_add_shard_mem(aqs_ckpt_builder *b, const char *name, const uint8_t *header,
                                          size_t header_bytes, const aqs_ckpt_mem_tensor *t, size_t n,
                                          aqs_digest *file_digest, aqs_err *e) {
  aqs_put_opts small = {.compress = AQS_COMPRESS_ZSTD}, raw = {.compress = AQS_COMPRESS_RAW};
  aqs_put_info hinfo;
  aqs_status st = put_small(b->s, header, header_bytes, 0, &hinfo, e);
  if (st) return st;
  pthread_mutex_lock(&b->lock);
  count_put(&b->stats, &hinfo);
  pthread_mutex_unlock(&b->lock);
  const char **names = calloc(n + 1, sizeof *names);
  aqs_digest *digests = calloc(n + 1, sizeof *digests);
  uint64_t *sizes = calloc(n + 1, sizeof *sizes);
  aqs_status *sts = calloc(n + 1, sizeof *sts);
  aqs_err *errs = calloc(n + 1, sizeof *errs);
  aqs_put_info *infos = calloc(n + 1, sizeof *infos);
  if (!names || !digests || !sizes || !sts || !errs || !infos) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  uint64_t file_bytes = header_bytes;
  for (size_t i = 0; !st && i < n; i++) {
    names[i] = t[i].name;
    digests[i] = *t[i].digest;
    sizes[i] = t[i].nbytes;
    file_bytes += t[i].nbytes;
  }
  /* Tensors the store has already (copied BF16 tensors, FP8 groups another scheme shares) and
   * that check sound (a damaged copy is quarantined here, and ours replaces it) are neither hashed
   * nor written again: checked one by one (a stamp lookup each), while the others are put from
   * memory in parallel. In a sweep most tensors are present, and a team of threads per shard (the
   * exporter stores several shards at once) would cost more than the checks. */
  size_t *todo = calloc(n + 1, sizeof *todo), n_todo = 0;
  if (!st && !todo) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  for (size_t i = 0; !st && i < n; i++)
    if (aqs_object_check(b->s, t[i].digest, NULL) != AQS_OK) todo[n_todo++] = i;
  if (!st) {
#pragma omp parallel for schedule(dynamic, 1) if (n_todo > 1)
    for (long k = 0; k < (long)n_todo; k++) {
      size_t i = todo[k];
      sts[i] = aqs_put_mem(b->s, t[i].data, t[i].nbytes, t[i].nbytes >= AQS_CKPT_RAW_MIN_BYTES ? &raw : &small,
                           &infos[i], &errs[i]);
      if (!sts[i] && !aqs_digest_eq(&infos[i].digest, t[i].digest))
        sts[i] = aqs_errf(&errs[i], AQS_ERR_INTERNAL, "%s: tensor %s does not hash to the digest given for it",
                          name, t[i].name);
    }
  }
  pthread_mutex_lock(&b->lock);
  for (size_t i = 0; !st && i < n; i++) {
    if (sts[i]) {
      st = sts[i];
      if (e) *e = errs[i];
    }
    count_put(&b->stats, &infos[i]);
    b->stats.tensors++;
  }
  pthread_mutex_unlock(&b->lock);
  aqs_digest manifest;
  if (!st) st = put_shard_manifest(b->s, &hinfo.digest, n, names, digests, sizes, file_bytes, &manifest, e);
  if (!st) st = shard_file_digest(b->s, &manifest, header, header_bytes, t, n, file_digest, e);
  if (!st) {
    pthread_mutex_lock(&b->lock);
    b->stats.files++;
    b->stats.shards++;
    b->stats.bytes_logical += file_bytes;
    json_object_set_new(b->files, name, json_pack("{s:s, s:o, s:I}", "type", "shard", "digest", digest_json(&manifest),
                                                  "size", (json_int_t)file_bytes));
    pthread_mutex_unlock(&b->lock);
  }
  free(todo);
  free(names);
  free(digests);
  free(sizes);
  free(sts);
  free(errs);
  free(infos);
  return st ? aqs_err_prefix(e, "storing shard %s", name) : AQS_OK;
}

void aqs_ckpt_builder_free(aqs_ckpt_builder *b) {
  if (!b) return;
  pthread_mutex_destroy(&b->lock);
  json_decref(b->files);
  free(b);
}

aqs_status aqs_ckpt_builder_finish(aqs_ckpt_builder *b, aqs_digest *manifest_out, aqs_ckpt_ingest_stats *stats,
                                   aqs_err *e) {
  /* Files in name order, whatever order they were added in. */
  size_t n = json_object_size(b->files), k = 0;
  const char **names = malloc((n + 1) * sizeof *names);
  const char *name;
  json_t *v;
  json_object_foreach(b->files, name, v) names[k++] = name;
  qsort(names, n, sizeof *names, cmp_names);
  json_t *files = json_array(), *children = json_array();
  for (size_t i = 0; i < n; i++) {
    json_t *f = json_object_get(b->files, names[i]);
    json_array_append_new(files, json_pack("{s:s, s:O, s:O, s:O}", "name", names[i], "type", json_object_get(f, "type"),
                                           "digest", json_object_get(f, "digest"), "size", json_object_get(f, "size")));
    json_array_append(children, json_object_get(f, "digest"));
  }
  free(names);
  json_t *doc = json_pack("{s:s, s:i, s:o, s:o}", "kind", "aqs-checkpoint", "version", 1, "files", files,
                          "children", children);
  aqs_status st = aqs_put_json(b->s, doc, 1, manifest_out, e);
  json_decref(doc);
  if (stats) *stats = b->stats;
  aqs_ckpt_builder_free(b);
  return st;
}

aqs_status aqs_ckpt_ingest(aqs_store *s, const char *dir, aqs_digest *manifest_out,
                           aqs_ckpt_ingest_stats *stats, aqs_err *e) {
  char **names = NULL;
  size_t n = 0;
  aqs_ckpt_builder *b = NULL;
  aqs_status st = list_files(dir, &names, &n, e);
  if (st) return st;
  if ((st = aqs_ckpt_builder_new(s, &b, e))) goto out;
  for (size_t i = 0; !st && i < n; i++) {
    char path[AQS_PATH_MAX];
    if (aqs_path_join(path, sizeof path, dir, names[i]))
      st = aqs_errf(e, AQS_ERR_INVALID, "path too long: %s/%s", dir, names[i]);
    else
      st = aqs_ckpt_builder_add(b, path, names[i], e);
  }
  if (st) {
    aqs_ckpt_builder_free(b);
    aqs_err_prefix(e, "storing checkpoint %s", dir);
  } else {
    st = aqs_ckpt_builder_finish(b, manifest_out, stats, e);
  }
out:
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  return st;
}

aqs_status aqs_ckpt_load_manifest(aqs_store *s, const aqs_digest *d, const char *kind, json_t **out,
                                  aqs_err *e) {
  void *bytes;
  size_t len;
  aqs_status st = aqs_get_mem(s, d, &bytes, &len, e);
  if (st) return st;
  json_error_t jerr;
  json_t *doc = json_loadb(bytes, len, 0, &jerr);
  free(bytes);
  char hex[AQS_DIGEST_SHORT_LEN + 1];
  if (!doc) return aqs_errf(e, AQS_ERR_CORRUPT, "manifest sha256:%s is not JSON: %s", aqs_digest_short(d, hex), jerr.text);
  const char *k = json_string_value(json_object_get(doc, "kind"));
  if (kind && (!k || strcmp(k, kind) != 0)) {
    aqs_errf(e, AQS_ERR_INVALID, "object sha256:%s is %s%s, not %s", aqs_digest_short(d, hex), k ? "an " : "a ",
             k ? k : "plain object", kind);
    json_decref(doc); /* after the message: k points into doc */
    return AQS_ERR_INVALID;
  }
  *out = doc;
  return AQS_OK;
}

/* ---- materialization ---- */

static aqs_status parse_digest_field(const json_t *v, const char *what, aqs_digest *out, aqs_err *e) {
  const char *s = json_string_value(v);
  if (!s) return aqs_errf(e, AQS_ERR_CORRUPT, "%s: missing digest", what);
  return aqs_digest_parse(s, out, e);
}

/* Copies an object's bytes to fd at its current end: raw objects through copy_file_range
 * (clone or in-kernel copy), others by streaming. */
static aqs_status append_object(aqs_store *s, const aqs_digest *d, int out_fd, aqs_link_mode mode, aqs_err *e) {
  char path[4096];
  aqs_err ignore = {0};
  if (mode != AQS_LINK_COPY && aqs_object_path(s, d, path, sizeof path, &ignore) == AQS_OK) {
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in >= 0) {
      struct stat sb;
      fstat(in, &sb);
      off_t left = sb.st_size;
      while (left > 0) {
        ssize_t n = copy_file_range(in, NULL, out_fd, NULL, (size_t)left, 0);
        if (n <= 0) break;
        left -= n;
      }
      close(in);
      if (left == 0) return AQS_OK;
      if (left != sb.st_size) return aqs_errf(e, AQS_ERR_IO, "copying %s: short copy", path);
      /* Nothing copied (EXDEV, ENOSYS, ...): fall through to streaming. */
    }
  }
  return aqs_get_fd(s, d, out_fd, NULL, e);
}

static aqs_status write_shard(aqs_store *s, const json_t *shard, const char *path, aqs_link_mode mode, aqs_err *e) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return aqs_errno(e, AQS_ERR_IO, errno, "%s", path);
  aqs_digest d;
  aqs_status st = parse_digest_field(json_object_get(shard, "header"), path, &d, e);
  if (!st) st = aqs_get_fd(s, &d, fd, NULL, e);
  size_t i;
  json_t *t;
  json_array_foreach(json_object_get(shard, "tensors"), i, t) {
    if (st) break;
    st = parse_digest_field(json_array_get(t, 1), path, &d, e);
    if (!st) st = append_object(s, &d, fd, mode, e);
  }
  if (!st && fsync(fd) != 0) st = aqs_errno(e, AQS_ERR_IO, errno, "%s", path);
  close(fd);
  return st;
}

/* Hardlink mode: the whole shard file as a raw object, made once per shard manifest. */
static aqs_status shard_file_object(aqs_store *s, const aqs_digest *shard_digest, const json_t *shard,
                                    const char *scratch_path, aqs_digest *file_out, aqs_err *e) {
  json_t *inputs = json_pack("{s:o}", "shard", digest_json(shard_digest));
  aqs_stage_ctx ctx;
  aqs_status st = aqs_stage_lookup(s, "shard-file", "1", inputs, NULL, &ctx, e);
  json_decref(inputs);
  if (!st && ctx.hit) {
    *file_out = ctx.result;
  } else if (!st) {
    st = write_shard(s, shard, scratch_path, AQS_LINK_REFLINK, e);
    aqs_put_opts raw = {.compress = AQS_COMPRESS_RAW};
    aqs_put_info info;
    if (!st) st = aqs_put_file(s, scratch_path, &raw, &info, e);
    unlink(scratch_path);
    if (!st) st = aqs_stage_record(s, &ctx, &info.digest, e);
    if (!st) *file_out = info.digest;
  }
  aqs_stage_ctx_free(&ctx);
  return st;
}

int aqs_rm_flat_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    unlink(path);
  }
  closedir(d);
  return rmdir(dir);
}

/* 1 if dir may be replaced: missing, empty, or an aqs checkout. */
/* A file in an earlier checkout that the checkout did not write (so replacing the directory
 * would delete it): the first entry that is neither the marker nor a file of the checkpoint the
 * marker names. When that checkpoint is no longer in the store, files aqs wrote are known by
 * their mode (read-only). Returns 1 and fills name when there is one. */
static int foreign_file(aqs_store *s, const char *dir, char *name, size_t n) {
  char path[4096], have[AQS_DIGEST_STR_SIZE + 8] = "";
  snprintf(path, sizeof path, "%s/%s", dir, CHECKOUT_MARKER);
  FILE *m = fopen(path, "r");
  json_t *doc = NULL;
  if (m) {
    if (fgets(have, sizeof have, m)) {
      have[strcspn(have, "\n")] = '\0';
      aqs_digest d;
      aqs_err ignore = {0};
      if (aqs_digest_parse(have, &d, NULL) == AQS_OK) aqs_ckpt_load_manifest(s, &d, "aqs-checkpoint", &doc, &ignore);
    }
    fclose(m);
  }
  DIR *dd = opendir(dir);
  struct dirent *de;
  int found = 0;
  while (!found && dd && (de = readdir(dd))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, CHECKOUT_MARKER)) continue;
    int ours = 0;
    if (doc) {
      size_t i;
      json_t *f;
      json_array_foreach(json_object_get(doc, "files"), i, f) {
        const char *fname = json_string_value(json_object_get(f, "name"));
        if (fname && strcmp(fname, de->d_name) == 0) ours = 1;
      }
    } else {
      struct stat sb;
      snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
      ours = lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) && !(sb.st_mode & 0222);
    }
    if (!ours) {
      snprintf(name, n, "%s", de->d_name);
      found = 1;
    }
  }
  if (dd) closedir(dd);
  json_decref(doc);
  return found;
}

/* '', '.', '..', '/' and names ending in '.' or '..' cannot be renamed into place. */
static aqs_status check_target(const char *out_dir, aqs_err *e) {
  const char *last = strrchr(out_dir, '/');
  last = last ? last + 1 : out_dir;
  if (!last[0] || strcmp(last, ".") == 0 || strcmp(last, "..") == 0)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "'%s' cannot be a checkout directory: name a new directory (or an earlier checkout), "
                    "e.g. %s%sckpt", out_dir, out_dir, last[0] ? "/" : "");
  return AQS_OK;
}

static int replaceable(const char *dir, int *exists) {
  struct stat sb;
  *exists = stat(dir, &sb) == 0;
  if (!*exists) return 1;
  if (!S_ISDIR(sb.st_mode)) return 0;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, CHECKOUT_MARKER);
  if (access(path, F_OK) == 0) return 1;
  snprintf(path, sizeof path, "%s/aqs-manifest.json", dir);
  if (access(path, F_OK) == 0) return 1;
  DIR *d = opendir(dir);
  if (!d) return 0;
  struct dirent *de;
  int empty = 1;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) empty = 0;
  closedir(d);
  return empty;
}

/* A checkout file's stamp line in the marker: what its stat was right after aqs wrote it. Any
 * later write to the file (or to the store object a hardlink shares) changes mtime or ctime. */
static void stamp_line(const char *name, const struct stat *sb, char *out, size_t cap) {
  snprintf(out, cap, "%s\t%llu\t%lld\t%lld.%09ld\t%lld.%09ld\n", name,
           (unsigned long long)sb->st_ino, (long long)sb->st_size, (long long)sb->st_mtim.tv_sec,
           sb->st_mtim.tv_nsec, (long long)sb->st_ctim.tv_sec, sb->st_ctim.tv_nsec);
}

/* 1 when out_dir already holds this checkpoint: its marker names the manifest, and every file is
 * there with the stat the marker recorded when it was written (so a file changed since, damaged
 * in place or through a hardlinked store object, makes the checkout be rewritten). */
static int up_to_date(const char *out_dir, const aqs_digest *manifest, const json_t *doc) {
  char path[AQS_PATH_MAX], want[AQS_DIGEST_STR_SIZE];
  if (aqs_path_join(path, sizeof path, out_dir, CHECKOUT_MARKER)) return 0;
  char *marker = NULL;
  size_t marker_len = 0;
  FILE *m = fopen(path, "r");
  if (!m) return 0;
  char buf[8192];
  size_t n;
  int ok = 1;
  while (ok && (n = fread(buf, 1, sizeof buf, m)) > 0) {
    char *grown = realloc(marker, marker_len + n + 1);
    if (!grown) ok = 0;
    else {
      marker = grown;
      memcpy(marker + marker_len, buf, n);
      marker_len += n;
      marker[marker_len] = '\0';
    }
  }
  fclose(m);
  aqs_digest_str(manifest, want);
  ok = ok && marker && !strncmp(marker, want, strlen(want)) && marker[strlen(want)] == '\n';
  size_t i;
  json_t *f;
  json_array_foreach(json_object_get(doc, "files"), i, f) {
    if (!ok) break;
    struct stat sb;
    char line[AQS_PATH_MAX + 128];
    const char *name = json_string_value(json_object_get(f, "name"));
    if (!name || aqs_path_join(path, sizeof path, out_dir, name) || stat(path, &sb) != 0) {
      ok = 0;
      break;
    }
    stamp_line(name, &sb, line, sizeof line);
    ok = strstr(marker, line) != NULL;
  }
  free(marker);
  return ok;
}

/* Writes the marker: the manifest digest, then a stamp line per file written into dir. */
static void write_marker(const char *dir, const aqs_digest *manifest, const json_t *doc) {
  char marker[AQS_PATH_MAX], hex[AQS_DIGEST_STR_SIZE], path[AQS_PATH_MAX];
  aqs_path_join(marker, sizeof marker, dir, CHECKOUT_MARKER);
  FILE *m = fopen(marker, "w");
  if (!m) return;
  fprintf(m, "%s\n", aqs_digest_str(manifest, hex));
  size_t i;
  json_t *f;
  json_array_foreach(json_object_get(doc, "files"), i, f) {
    struct stat sb;
    char line[AQS_PATH_MAX + 128];
    const char *name = json_string_value(json_object_get(f, "name"));
    if (!name || aqs_path_join(path, sizeof path, dir, name) || stat(path, &sb) != 0) continue;
    stamp_line(name, &sb, line, sizeof line);
    fputs(line, m);
  }
  fclose(m);
}

/* Puts the finished tmp directory at out_dir atomically, so concurrent checkouts into one directory
 * all succeed and a reader sees the old or the new checkout, never a mix: a no-replace rename when
 * out_dir is absent, else an atomic exchange (the old checkout, now at tmp, is removed). Where the
 * filesystem lacks renameat2 flags: move aside, rename, remove. */
static aqs_status swap_into_place(const char *tmp, const char *out_dir, const char *old, aqs_err *e) {
  for (int attempt = 0; attempt < 100; attempt++) {
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out_dir, RENAME_NOREPLACE) == 0) return AQS_OK;
    if (errno == EINVAL || errno == ENOSYS) break;
    if (errno != EEXIST && errno != ENOTEMPTY)
      return aqs_errno(e, AQS_ERR_IO, errno, "renaming %s to %s", tmp, out_dir);
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out_dir, RENAME_EXCHANGE) == 0) {
      aqs_rm_flat_dir(tmp);
      return AQS_OK;
    }
    if (errno != ENOENT) return aqs_errno(e, AQS_ERR_IO, errno, "swapping %s and %s", tmp, out_dir);
    /* out_dir went away between the two calls (another checkout swapping): try again */
  }
  struct stat sb;
  int exists = stat(out_dir, &sb) == 0;
  if (exists && rename(out_dir, old) != 0) return aqs_errno(e, AQS_ERR_IO, errno, "moving aside %s", out_dir);
  if (rename(tmp, out_dir) != 0) {
    aqs_status st = aqs_errno(e, AQS_ERR_IO, errno, "renaming %s to %s", tmp, out_dir);
    if (exists) rename(old, out_dir);
    return st;
  }
  if (exists) aqs_rm_flat_dir(old);
  return AQS_OK;
}

/* One file of a checkpoint manifest written into dir tmp (materialize runs them concurrently). */
static aqs_status materialize_file(aqs_store *s, const json_t *f, size_t i, const char *tmp, aqs_link_mode mode,
                                   aqs_err *e) {
  aqs_status st = AQS_OK;
  const char *name = json_string_value(json_object_get(f, "name"));
  const char *type = json_string_value(json_object_get(f, "type"));
  if (!name || !type || strchr(name, '/') || name[0] == '.')
    return aqs_errf(e, AQS_ERR_CORRUPT, "checkpoint manifest: bad file entry %zu", i);
  char path[AQS_PATH_MAX];
  if (aqs_path_join(path, sizeof path, tmp, name)) return aqs_errf(e, AQS_ERR_INVALID, "path too long: %s/%s", tmp, name);
  aqs_digest d;
  if ((st = parse_digest_field(json_object_get(f, "digest"), name, &d, e))) return st;
  if (strcmp(type, "shard") == 0) {
    json_t *shard;
    if ((st = aqs_ckpt_load_manifest(s, &d, "aqs-shard", &shard, e))) return st;
    if (mode == AQS_LINK_HARDLINK) {
      char scratch[AQS_PATH_MAX];
      aqs_path_fmt(scratch, sizeof scratch, "%s/.%s.scratch", tmp, name);
      aqs_digest file_digest;
      st = shard_file_object(s, &d, shard, scratch, &file_digest, e);
      aqs_err link_err = {0};
      if (st == AQS_ERR_UNSUPPORTED) {
        /* A read-only store cannot make the shard object: copy instead. */
        aqs_err_clear(e);
        st = write_shard(s, shard, path, AQS_LINK_REFLINK, e);
      } else if (!st && aqs_object_link(s, &file_digest, path, &link_err) != AQS_OK) {
        /* Another filesystem or no permission: fall back to a copy-on-write/kernel copy. */
        st = write_shard(s, shard, path, AQS_LINK_REFLINK, e);
      }
    } else {
      st = write_shard(s, shard, path, mode, e);
    }
    json_decref(shard);
  } else {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return aqs_errno(e, AQS_ERR_IO, errno, "%s", path);
    st = aqs_get_fd(s, &d, fd, NULL, e);
    close(fd);
  }
  if (st) return st;
  /* Only when needed: a chmod of a hardlinked store object would change its ctime, which other
   * checkouts' markers recorded. */
  struct stat fsb;
  if (stat(path, &fsb) == 0 && (fsb.st_mode & 07777) != 0444) chmod(path, 0444);
  return AQS_OK;
}

aqs_status aqs_ckpt_materialize(aqs_store *s, const aqs_digest *manifest, const char *out_dir_arg,
                                aqs_link_mode mode, aqs_err *e) {
  if (!out_dir_arg || !out_dir_arg[0])
    return aqs_errf(e, AQS_ERR_INVALID, "empty checkout directory: name a directory to write");
  aqs_status st;
  /* "out/top50/" is "out/top50": the temporary and old names go beside it, not inside. */
  char out_dir[4096];
  snprintf(out_dir, sizeof out_dir, "%s", out_dir_arg);
  for (size_t len = strlen(out_dir); len > 1 && out_dir[len - 1] == '/'; len--) out_dir[len - 1] = '\0';
  if ((st = check_target(out_dir, e))) return st;
  int exists;
  if (!replaceable(out_dir, &exists))
    return aqs_errf(e, AQS_ERR_INVALID, "%s exists and is not an aqs checkout; refusing to replace it", out_dir);
  char foreign[256];
  if (exists && foreign_file(s, out_dir, foreign, sizeof foreign))
    return aqs_errf(e, AQS_ERR_INVALID,
                    "%s/%s was not written by aqs checkout; refusing to replace %s (move that file away, or check "
                    "out elsewhere)", out_dir, foreign, out_dir);
  json_t *doc;
  st = aqs_ckpt_load_manifest(s, manifest, "aqs-checkpoint", &doc, e);
  if (st) return st;
  if (exists && up_to_date(out_dir, manifest, doc)) {
    json_decref(doc);
    return AQS_OK;
  }
  char tmp[4200], old[4200];
  /* Parents first (mkdir -p): a checkout may go to a directory tree that does not exist yet. */
  snprintf(tmp, sizeof tmp, "%s", out_dir);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = '\0';
      mkdir(tmp, 0755);
      *p = '/';
    }
  snprintf(tmp, sizeof tmp, "%s.aqs-tmp.%ld", out_dir, (long)getpid());
  snprintf(old, sizeof old, "%s.aqs-old.%ld", out_dir, (long)getpid());
  aqs_rm_flat_dir(tmp);
  if (mkdir(tmp, 0755) != 0) {
    json_decref(doc);
    return aqs_errno(e, AQS_ERR_IO, errno, "creating %s", tmp);
  }
  json_t *files = json_object_get(doc, "files");
  long n_files = (long)json_array_size(files);
  aqs_status *sts = calloc((size_t)n_files + 1, sizeof *sts);
  aqs_err *errs = calloc((size_t)n_files + 1, sizeof *errs);
  if (!sts || !errs) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  /* Files are written concurrently (each one is copied, then fsync'd before the directory is
   * renamed into place: the flushes of several files overlap); the first error in file order wins. */
  if (!st) {
#pragma omp parallel for schedule(dynamic, 1)
    for (long i = 0; i < n_files; i++)
      sts[i] = materialize_file(s, json_array_get(files, (size_t)i), (size_t)i, tmp, mode, &errs[i]);
  }
  for (long i = 0; !st && i < n_files; i++)
    if (sts[i]) {
      st = sts[i];
      if (e) *e = errs[i];
    }
  free(sts);
  free(errs);
  if (!st) write_marker(tmp, manifest, doc);
  json_decref(doc);
  if (!st) st = swap_into_place(tmp, out_dir, old, e);
  if (st) aqs_rm_flat_dir(tmp);
  return st;
}
