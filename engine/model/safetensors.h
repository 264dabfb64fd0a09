/* engine/model/safetensors.h: memory-mapped safetensors reader (single file or sharded checkpoint
 * via model.safetensors.index.json) with zero-copy tensor views, and a streaming writer (header,
 * then tensor bytes in declaration order; tmp + rename) whose files Python `safetensors` reads.
 *
 * File format: u64 little-endian header length N, N bytes of UTF-8 JSON
 *   {"__metadata__": {str: str}, "<tensor>": {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}}
 * then the data area; offsets are relative to the data area start (8 + N).
 *
 * Validation done by aqs_st_open before any tensor is exposed (each defect is its own message
 * naming the file and, where there is one, the tensor):
 *   - file shorter than 8 bytes; header length 0, > AQS_ST_MAX_HEADER_BYTES, or past end of file
 *   - header not valid UTF-8, not JSON, not a JSON object
 *   - __metadata__ not an object of string values
 *   - tensor entry not an object / missing or mistyped dtype, shape, data_offsets
 *   - unknown dtype (see dtype.h), negative or non-integer dimension, > AQS_ST_MAX_DIMS dims,
 *     element count overflow
 *   - data_offsets begin > end, shape x dtype size != end - begin
 *   - a range past the end of the data area, two tensors' ranges overlapping
 * A truncated file therefore fails with "... extends past end of data" instead of crashing. */
#ifndef AQS_MODEL_SAFETENSORS_H
#define AQS_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/model/dtype.h"

#define AQS_ST_MAX_DIMS 8
#define AQS_ST_MAX_HEADER_BYTES (100u * 1024u * 1024u) /* 100 MiB, as the Rust reference */

/* One tensor of an open file or checkpoint. Everything points into memory owned by the open
 * aqs_st_file; valid until aqs_st_close / aqs_ckpt_close. */
typedef struct aqs_st_tensor {
  const char *name;             /* "model.language_model.layers.0.self_attn.q_proj.weight" */
  aqs_dtype dtype;
  int ndim;                     /* 0 = scalar (numel 1) */
  int64_t shape[AQS_ST_MAX_DIMS];
  uint64_t numel;               /* product of shape (1 for a scalar) */
  uint64_t nbytes;              /* numel * aqs_dtype_size(dtype) */
  uint64_t file_offset;         /* absolute byte offset of the data in its file */
  const void *data;             /* zero-copy view into the read-only mapping (NULL if nbytes == 0) */
  struct aqs_st_file *file;     /* the file that holds it */
} aqs_st_tensor;

/* One open .safetensors file (read-only mapping). Fields are read-only for callers. */
typedef struct aqs_st_file {
  char *path;                   /* as given to aqs_st_open */
  uint64_t file_bytes;          /* total file size */
  uint64_t header_bytes;        /* N (JSON length, including any trailing spaces) */
  uint64_t data_start;          /* 8 + N */
  const uint8_t *map;           /* whole-file mapping (NULL for an empty data area) */
  size_t ntensors;
  aqs_st_tensor *tensors;       /* sorted by data offset (file order) */
  size_t nmeta;                 /* __metadata__ entries, in header order */
  char **meta_keys;
  char **meta_values;
  const aqs_st_tensor **by_name;/* internal: tensors sorted by name, for aqs_st_find */
} aqs_st_file;

/* Opens and validates path (see the list above). On success *out owns the mapping; close with
 * aqs_st_close. Errors: AQS_ERR_IO / AQS_ERR_NOT_FOUND (open/stat/mmap), AQS_ERR_INVALID (any
 * header defect), AQS_ERR_UNSUPPORTED (unknown dtype). Messages start with the path. */
aqs_status aqs_st_open(const char *path, aqs_st_file **out, aqs_err *e);
void aqs_st_close(aqs_st_file *f);
/* Tensor by exact name, NULL if absent (binary search on an internal name index). */
const aqs_st_tensor *aqs_st_find(const aqs_st_file *f, const char *name);
/* __metadata__ value for key, NULL if absent. */
const char *aqs_st_meta(const aqs_st_file *f, const char *key);

/* A whole checkpoint: one file, or the shards listed by model.safetensors.index.json. */
typedef struct aqs_ckpt {
  char *dir;                    /* directory holding the files */
  char *index_path;             /* path of model.safetensors.index.json, NULL for a single file */
  size_t nfiles;
  aqs_st_file **files;          /* in sorted shard-name order */
  size_t ntensors;
  const aqs_st_tensor **tensors;/* all tensors of all files, sorted by name (strcmp) */
} aqs_ckpt;

/* Opens a checkpoint. path may be:
 *   - a directory with model.safetensors.index.json (sharded): every shard named in weight_map is
 *     opened; a tensor listed for shard X must be in X, every tensor of every shard must be listed;
 *   - a directory with exactly model.safetensors;
 *   - a directory with no index but *.safetensors files (all are opened);
 *   - a path to one .safetensors file, or to an index.json.
 * A tensor name present in two files is AQS_ERR_INVALID naming both files.
 * Errors name the index, shard or tensor. Close with aqs_ckpt_close. */
aqs_status aqs_ckpt_open(const char *path, aqs_ckpt **out, aqs_err *e);
void aqs_ckpt_close(aqs_ckpt *c);
/* Tensor by exact name across all shards, NULL if absent. */
const aqs_st_tensor *aqs_ckpt_find(const aqs_ckpt *c, const char *name);
/* Like aqs_ckpt_find but AQS_ERR_NOT_FOUND naming the tensor and the checkpoint dir when absent. */
aqs_status aqs_ckpt_get(const aqs_ckpt *c, const char *name, const aqs_st_tensor **out,
                        aqs_err *e);

/* ---- writer ------------------------------------------------------------------------------
 * Usage: open -> (set_meta)* -> (add)* -> begin_data -> (write)* -> finish  (or abort at any
 * point). Tensors are laid out back to back in the order they were added; the header is padded
 * with spaces to a multiple of 8 bytes (so the data area is 8-aligned, as Python safetensors
 * writes it). The file is written as "<path>.tmp.<pid>" and renamed onto path by finish, after
 * fsync; abort (or any error) unlinks the tmp file. Output bytes depend only on the calls made
 * (no clocks, no paths inside), so identical inputs give identical digests. */
typedef struct aqs_st_writer aqs_st_writer;

aqs_status aqs_st_writer_open(const char *path, aqs_st_writer **out, aqs_err *e);
/* A writer that builds only the header, in memory (no file): open_mem -> set_meta/add ->
 * begin_data -> aqs_st_writer_header -> abort. The header bytes are exactly those a file writer
 * given the same calls writes, so a caller holding the tensor bytes elsewhere (the store) can
 * describe the file without writing it. */
aqs_status aqs_st_writer_open_mem(const char *name, aqs_st_writer **out, aqs_err *e);
/* The 8-byte length + JSON header (+ padding) of a memory writer after begin_data; owned by w. */
aqs_status aqs_st_writer_header(const aqs_st_writer *w, const uint8_t **bytes, size_t *len, aqs_err *e);
/* Adds a __metadata__ string pair (written first in the header, in call order). */
aqs_status aqs_st_writer_set_meta(aqs_st_writer *w, const char *key, const char *value,
                                  aqs_err *e);
/* Declares the next tensor. ndim 0..AQS_ST_MAX_DIMS. Duplicate names -> AQS_ERR_INVALID. */
aqs_status aqs_st_writer_add(aqs_st_writer *w, const char *name, aqs_dtype dtype, int ndim,
                             const int64_t *shape, aqs_err *e);
/* Writes the 8-byte length + JSON header; no more add/set_meta after this. */
aqs_status aqs_st_writer_begin_data(aqs_st_writer *w, aqs_err *e);
/* Appends raw tensor bytes (any chunking; tensors are consecutive in add order). Writing more
 * than the declared total is AQS_ERR_INVALID. */
aqs_status aqs_st_writer_write(aqs_st_writer *w, const void *bytes, size_t nbytes, aqs_err *e);
/* Checks that exactly the declared bytes were written, fsyncs, renames into place, frees w.
 * On error w is freed too (tmp file removed). */
aqs_status aqs_st_writer_finish(aqs_st_writer *w, aqs_err *e);
/* Discards the tmp file and frees w (NULL is fine). */
void aqs_st_writer_abort(aqs_st_writer *w);
/* Bytes of the data area declared so far (sum of nbytes). */
uint64_t aqs_st_writer_data_bytes(const aqs_st_writer *w);

/* One-call writer for tensors already in memory. */
typedef struct aqs_st_write_item {
  const char *name;
  aqs_dtype dtype;
  int ndim;
  const int64_t *shape;
  const void *data;             /* numel * dtype size bytes */
} aqs_st_write_item;
aqs_status aqs_st_write_file(const char *path, const aqs_st_write_item *items, size_t nitems,
                             const char *const *meta_kv /* key,value,...,NULL or NULL */,
                             aqs_err *e);

/* Writes <dir>/model.safetensors.index.json: {"metadata": {"total_size": total_size},
 * "weight_map": {tensor: shard file name}} with keys sorted; tmp + rename.
 * tensor_names[i] lives in shard_names[i]. */
aqs_status aqs_st_write_index(const char *dir, const char *const *tensor_names,
                              const char *const *shard_names, size_t n, uint64_t total_size,
                              aqs_err *e);

#endif
