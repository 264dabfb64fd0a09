/* engine/stages/ckpt_store.h: checkpoints as trees in the store, and their materialization.
 *
 * A checkpoint directory is stored as (all canonical JSON manifests, store.h's "children" convention):
 *   checkpoint manifest  {"kind":"aqs-checkpoint","version":1,"files":[{"name","type","digest","size"}],
 *                         "children":[...]}  type "shard" (a safetensors file) or "blob" (any other file)
 *   shard manifest       {"kind":"aqs-shard","version":1,"header":<digest of the first 8+N bytes>,
 *                         "tensors":[[name, digest, nbytes], ...] in file order, "size":<file bytes>,
 *                         "children":[header, tensors...]}
 *   tensor objects       the tensor's bytes: raw files (linkable) from 64 KiB up, zstd inline below.
 * So a tensor that two checkpoints share (a BF16 tensor copied from the source, an FP8 group that
 * both schemes quantize) is stored once, whatever shard it sits in: a top10..top100 sweep stores
 * each tensor at most twice (BF16 and FP8).
 *
 * Materialization rebuilds each file from its objects (several files at once) into a temporary
 * directory beside the target, makes the files read-only and renames the directory into place (a reader never sees a
 * half-written checkpoint). Link modes (workspace [store] link_mode):
 *   reflink  — tensors are copied with copy_file_range, which clones extents on filesystems that
 *              can (XFS, btrfs) and copies in the kernel elsewhere;
 *   copy     — plain read/write copies;
 *   hardlink — each shard file is also kept whole as a raw object (once per distinct shard) and
 *              hard-linked: the fastest checkout, at the price of storing shard files too. */
#ifndef AQS_STAGES_CKPT_STORE_H
#define AQS_STAGES_CKPT_STORE_H

#include <jansson.h>

#include "common/err.h"
#include "common/workspace.h"
#include "store/store.h"

/* Tensors below this size are stored zstd-compressed (inline); others raw. */
#define AQS_CKPT_RAW_MIN_BYTES (64u * 1024u)

typedef struct aqs_ckpt_ingest_stats {
  uint64_t files, shards, tensors;
  uint64_t bytes_logical;   /* bytes of the directory's files */
  uint64_t bytes_new;       /* bytes of objects that were not in the store before */
} aqs_ckpt_ingest_stats;

/* Stores every regular file of dir (sorted by name; subdirectories are refused) and returns the
 * checkpoint manifest's digest. A safetensors file whose tensors leave gaps in the data area is
 * refused (AQS_ERR_UNSUPPORTED naming it). stats optional. */
aqs_status aqs_ckpt_ingest(aqs_store *s, const char *dir, aqs_digest *manifest_out,
                           aqs_ckpt_ingest_stats *stats, aqs_err *e);

/* The same, one file at a time (for files that appear one by one, e.g. while an export runs):
 * new -> add* -> finish (which frees the builder) or free. The manifest lists files by name,
 * whatever order they were added in. add and add_shard_mem may run in several threads at once
 * (the exporter stores several shards concurrently); finish and free in one thread after them. */
typedef struct aqs_ckpt_builder aqs_ckpt_builder;
aqs_status aqs_ckpt_builder_new(aqs_store *s, aqs_ckpt_builder **out, aqs_err *e);
/* Stores the file at path under name (a safetensors shard as a tree, anything else as a blob). */
aqs_status aqs_ckpt_builder_add(aqs_ckpt_builder *b, const char *path, const char *name, aqs_err *e);
/* A shard described in memory (e.g. by the exporter, aqs_export_opts.shard_sink): the file's
 * header bytes and its tensors in file order. Tensors the store holds already are neither hashed
 * nor written again; the others are put from memory and must hash to their digest. Returns the
 * SHA-256 of the file this describes (cached per shard manifest: hashing it reads every byte). */
typedef struct aqs_ckpt_mem_tensor {
  const char *name;
  const aqs_digest *digest;
  const void *data;
  uint64_t nbytes;
} aqs_ckpt_mem_tensor;
aqs_status aqs_ckpt_builder_add_shard_mem(aqs_ckpt_builder *b, const char *name, const uint8_t *header,
                                          size_t header_bytes, const aqs_ckpt_mem_tensor *t, size_t n,
                                          aqs_digest *file_digest, aqs_err *e);
aqs_status aqs_ckpt_builder_finish(aqs_ckpt_builder *b, aqs_digest *manifest_out, aqs_ckpt_ingest_stats *stats,
                                   aqs_err *e);
void aqs_ckpt_builder_free(aqs_ckpt_builder *b);

/* Loads a manifest object as JSON, checking its "kind" (NULL = any). Caller json_decref's. */
aqs_status aqs_ckpt_load_manifest(aqs_store *s, const aqs_digest *d, const char *kind, json_t **out,
                                  aqs_err *e);

/* Writes the checkpoint named by manifest to out_dir (see the header comment). An existing
 * out_dir is replaced only if it is empty or was materialized by aqs (holds aqs-manifest.json or
 * .aqs-checkout); otherwise AQS_ERR_INVALID naming it. */
aqs_status aqs_ckpt_materialize(aqs_store *s, const aqs_digest *manifest, const char *out_dir,
                                aqs_link_mode mode, aqs_err *e);

/* Removes a directory holding only files (no subdirectories); 0 on success. */
int aqs_rm_flat_dir(const char *dir);

#endif
