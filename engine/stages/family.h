/* engine/stages/family.h: the family check after a multi-recipe build: two built checkpoints must
 * differ exactly where their plans differ, proven per tensor from the store's checkpoint trees
 * (no file is re-read): the set of groups with any differing tensor must equal the symmetric
 * difference of the two plans, and no tensor outside a group may differ. */
#ifndef AQS_STAGES_FAMILY_H
#define AQS_STAGES_FAMILY_H

#include <jansson.h>

#include "common/err.h"
#include "engine/export/plan.h"
#include "engine/model/qwen_config.h"
#include "store/store.h"

typedef struct aqs_family_pair {
  size_t plan_diff_groups;     /* groups whose planned format differs */
  size_t differing_groups;     /* groups with at least one differing tensor */
  size_t differing_tensors;
  size_t shared_tensors;       /* identical tensors (stored once) */
} aqs_family_pair;

/* The tensors of a checkpoint (name -> digest, name order), read once from its tree so that a
 * family of N checkpoints is loaded N times, not N*(N-1). */
typedef struct aqs_ckpt_tensors aqs_ckpt_tensors;
aqs_status aqs_ckpt_tensors_load(aqs_store *s, const aqs_digest *ckpt, aqs_ckpt_tensors **out, aqs_err *e);
void aqs_ckpt_tensors_free(aqs_ckpt_tensors *t);

/* Compares two checkpoints' tensors against their plans. names label the two sides in messages.
 * AQS_ERR_MISMATCH with a precise message when the proof fails; a specific message when the
 * plans differ but the weights are identical. stats optional. */
aqs_status aqs_family_check_tensors(const aqs_qwen_model *model, const char *name_a, const aqs_ckpt_tensors *a,
                                    const aqs_plan *plan_a, const char *name_b, const aqs_ckpt_tensors *b,
                                    const aqs_plan *plan_b, aqs_family_pair *stats, aqs_err *e);

/* The same for two checkpoint manifest digests (loads both). */
aqs_status aqs_family_check(aqs_store *s, const aqs_qwen_model *model, const char *name_a,
                            const aqs_digest *ckpt_a, const aqs_plan *plan_a, const char *name_b,
                            const aqs_digest *ckpt_b, const aqs_plan *plan_b, aqs_family_pair *stats,
                            aqs_err *e);

#endif
