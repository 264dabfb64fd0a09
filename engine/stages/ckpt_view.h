/* engine/stages/ckpt_view.h: a stored checkpoint read in place, without writing any file: the
 * tensors of a checkpoint manifest (ckpt_store.h) that differ from its BF16 source (by digest,
 * against the source stage's model manifest), each a view of its store object (raw objects
 * memory-mapped, small ones decompressed). Eval loads a scheme this way: what the export wrote
 * (FP8 weights, their scales, KV cache scales) comes from here, everything else is the source's. */
#ifndef AQS_STAGES_CKPT_VIEW_H
#define AQS_STAGES_CKPT_VIEW_H

#include "common/err.h"
#include "engine/model/safetensors.h"
#include "store/store.h"

typedef struct aqs_ckpt_view aqs_ckpt_view;

/* Opens the tensors of checkpoint manifest ckpt whose name is absent from the model manifest
 * source (the source stage's result) or whose digest differs there. Their dtype and shape come
 * from the stored shard headers. Errors: AQS_ERR_NOT_FOUND / AQS_ERR_CORRUPT (a manifest or object
 * missing or damaged, named), AQS_ERR_INVALID (a header entry that does not describe the tensor,
 * or a source tensor the checkpoint lacks: the view would otherwise serve the source's in its
 * place; named), AQS_ERR_NOMEM. The view and everything it points into live until aqs_ckpt_view_close.
 * Threads: one caller per store handle, as store.h. */
aqs_status aqs_ckpt_view_open(aqs_store *s, const aqs_digest *ckpt, const aqs_digest *source,
                              aqs_ckpt_view **out, aqs_err *e);
/* The differing tensors as a checkpoint (aqs_ckpt_find / aqs_ckpt_get work on it; it has no files;
 * its dir names the checkpoint digest for messages). Owned by the view. */
const aqs_ckpt *aqs_ckpt_view_ckpt(const aqs_ckpt_view *v);
/* Bytes of the differing tensors (what eval reads of the checkpoint). */
uint64_t aqs_ckpt_view_bytes(const aqs_ckpt_view *v);
void aqs_ckpt_view_close(aqs_ckpt_view *v);

#endif
