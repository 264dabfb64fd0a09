/* engine/export/diff.h: compares two exported checkpoint directories (aqs export / build output)
 * tensor by tensor and proves that they differ exactly as their plans do.
 *
 * What is compared: every tensor of both directories, by the SHA-256 of its bytes as read from
 * the shards (never trusting the manifests for this), plus each directory against its own
 * aqs-manifest.json (a tensor changed after export is caught even inside a group that is allowed
 * to differ). For each differing tensor: the dequantized (F8 codes x weight_scale, BF16/F32 as
 * is) max-abs difference and the relative L2 difference ||a - b|| / ||a||.
 *
 * The proof (all must hold, else AQS_ERR_MISMATCH):
 *   - the set of groups with a differing tensor == the symmetric difference of the two plans
 *     (groups whose format differs), using the plans and group members from the manifests;
 *   - no differing tensor outside every group, no differing bias, no tensor only on one side
 *     except the weight_scale / input_scale of a group that is FP8 on that side only;
 *   - where a plan says fp8 the weight is F8_E4M3, where it says bf16 it is not;
 *   - every tensor matches its own manifest digest.
 * When the plans differ but no tensor does, the error says so specifically ("plans differ in N
 * groups ... but the two checkpoints have identical weights"). */
#ifndef AQS_EXPORT_DIFF_H
#define AQS_EXPORT_DIFF_H

#include <stddef.h>

#include "common/err.h"
#include "engine/export/plan.h"

typedef enum aqs_diff_kind {
  AQS_DIFF_CHANGED = 0, /* in both, bytes differ */
  AQS_DIFF_ONLY_A = 1,
  AQS_DIFF_ONLY_B = 2
} aqs_diff_kind;

typedef struct aqs_diff_tensor {
  char name[256];
  char group[32];        /* "" when the tensor belongs to no group */
  aqs_diff_kind kind;
  char dtype_a[12], dtype_b[12]; /* "" on the side where it is absent */
  double max_abs;        /* dequantized max |a - b|; NaN when only on one side / shapes differ */
  double rel_l2;         /* ||a - b||_2 / ||a||_2 (NaN as above; inf when a == 0) */
} aqs_diff_tensor;

typedef struct aqs_diff_group {
  char id[32];
  aqs_format format_a, format_b;
  int in_plan_diff;      /* format_a != format_b */
  size_t n_differ;       /* differing tensors attributed to the group */
  double max_abs;        /* max over its differing tensors */
  double rel_l2;         /* max over its differing tensors */
} aqs_diff_group;

typedef struct aqs_diff_report {
  char dir_a[4096], dir_b[4096];
  size_t n_tensors_a, n_tensors_b, n_identical;
  size_t ntensors;
  aqs_diff_tensor *tensors;      /* differing tensors, by name */
  size_t ngroups;
  aqs_diff_group *groups;        /* groups that differ or whose plans differ, natural order */
  size_t n_plan_diff;            /* size of the plans' symmetric difference */
  int proof_holds;
  size_t nviolations;
  char **violations;             /* one precise sentence each */
  char verdict[1024];            /* one-line conclusion (also the error message on mismatch) */
} aqs_diff_report;

/* Compares dir_a and dir_b (see above) and fills r (free with aqs_diff_report_free).
 * Returns AQS_OK when the proof holds; AQS_ERR_MISMATCH with the verdict as message when it does
 * not (r is still filled); AQS_ERR_NOT_FOUND / AQS_ERR_IO / AQS_ERR_INVALID when a directory,
 * manifest or shard cannot be read (message naming it). progress = 1 shows hashing on stderr. */
aqs_status aqs_export_diff(const char *dir_a, const char *dir_b, int progress, aqs_diff_report *r,
                           aqs_err *e);
void aqs_diff_report_free(aqs_diff_report *r);
/* The report as JSON text (malloc'd, trailing newline):
 * {"a":dir,"b":dir,"tensors_a":n,"tensors_b":n,"identical":n,"proof_holds":bool,
 *  "plan_diff":[ids],"groups":[{"id","a","b","in_plan_diff","differing_tensors","max_abs",
 *  "rel_l2"}],"tensors":[{"name","group","kind","dtype_a","dtype_b","max_abs","rel_l2"}],
 *  "violations":[...],"verdict":"..."}  (NaN/inf written as null). NULL on OOM. */
char *aqs_diff_report_to_json(const aqs_diff_report *r);

#endif
