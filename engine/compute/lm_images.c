/* engine/compute/lm_images.c: packed batches of image+text sequences for the language model:
 * image token checks, M-RoPE positions as transformers' Qwen2.5-VL get_rope_index computes them,
 * targets on text only, and the rows where the vision features go. */
#include <stdlib.h>
#include <string.h>

#include "engine/compute/lm_internal.h"

/* Host positions (3, N), targets (N) and image rows of the whole batch. */
static aqs_status layout(const aqs_lm *lm, const int32_t *ids, const int32_t *seq_lens, int n_seqs,
                         const aqs_lm_images *im, int32_t *pos, int32_t *targets, int32_t *rows,
                         int *n_rows, int *n_targets, aqs_err *e) {
  const aqs_qwen_config *cfg = &lm->model->cfg;
  const int m = im->merge_size;
  int64_t N = 0;
  for (int s = 0; s < n_seqs; s++) N += seq_lens[s];
  int img = 0, nr = 0, nt = 0;
  int64_t off = 0;
  for (int s = 0; s < n_seqs; s++) {
    int32_t p = 0; /* next text position */
    const int len = seq_lens[s];
    for (int i = 0; i < len;) {
      if (img < im->n_images && im->image_seq[img] == s && im->image_token_start[img] == i) {
        const int32_t *thw = im->image_grid_thw + 3 * (size_t)img;
        if (thw[0] < 1 || thw[1] < m || thw[2] < m || thw[1] % m || thw[2] % m)
          return aqs_errf(e, AQS_ERR_INVALID, "sequence %d image %d: bad grid %dx%dx%d", s, img,
                          thw[0], thw[1], thw[2]);
        const int lh = thw[1] / m, lw = thw[2] / m, n = thw[0] * lh * lw;
        if (i + n > len)
          return aqs_errf(e, AQS_ERR_INVALID,
                          "sequence %d image %d: %d image tokens from position %d run past the "
                          "sequence end (%d tokens)", s, img, n, i, len);
        for (int k = 0; k < n; k++) {
          int64_t r = off + i + k;
          if (ids[r] != cfg->image_token_id)
            return aqs_errf(e, AQS_ERR_INVALID,
                            "sequence %d image %d: position %d holds token %d, not <|image_pad|> "
                            "(%d)", s, img, i + k, ids[r], cfg->image_token_id);
          int hh = (k / lw) % lh, ww = k % lw;
          pos[r] = p;
          pos[N + r] = p + hh;
          pos[2 * N + r] = p + ww;
          rows[nr++] = (int32_t)r;
        }
        p += (lh > lw ? lh : lw);
        i += n;
        img++;
        continue;
      }
      int64_t r = off + i;
      if (ids[r] == cfg->image_token_id)
        return aqs_errf(e, AQS_ERR_INVALID,
                        "sequence %d position %d: <|image_pad|> outside every image's token range",
                        s, i);
      pos[r] = pos[N + r] = pos[2 * N + r] = p++;
      i++;
    }
    for (int i = 0; i < len; i++) {
      int64_t r = off + i;
      int32_t next = i + 1 < len ? ids[r + 1] : -1;
      int vision = next == cfg->image_token_id || next == cfg->vision_start_token_id ||
                   next == cfg->vision_end_token_id;
      targets[r] = (next < 0 || vision) ? -1 : next;
      nt += targets[r] >= 0;
    }
    off += len;
  }
  if (img != im->n_images)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "image %d (sequence %d, position %d) is not at a token of its sequence (images "
                    "must be sorted by sequence and position)", img, im->image_seq[img],
                    im->image_token_start[img]);
  *n_rows = nr;
  *n_targets = nt;
  return AQS_OK;
}

aqs_status aqs_lm_batch_make_images(const aqs_lm *lm, const int32_t *ids, const int32_t *seq_lens,
                                    int n_seqs, int max_seq_len, const aqs_lm_images *images,
                                    aqs_lm_batch *out, aqs_err *e) {
  aqs_status st = aqs_lm_batch_make(lm, ids, seq_lens, n_seqs, max_seq_len, out, e);
  if (st != AQS_OK) return st;
  aqs_backend *be = lm->be;
  const size_t N = (size_t)out->n_tokens;
  int32_t *pos = malloc(3 * N * sizeof *pos), *targets = malloc(N * sizeof *targets);
  int32_t *rows = malloc((N + 1) * sizeof *rows);
  int n_rows = 0, n_targets = 0;
  if (!pos || !targets || !rows) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  if (st == AQS_OK)
    st = layout(lm, ids, seq_lens, n_seqs, images, pos, targets, rows, &n_rows, &n_targets, e);
  void *p = NULL;
  if (st == AQS_OK && (st = be->ops->alloc(be, ((size_t)n_rows + 1) * sizeof *rows, &p, e)) == AQS_OK) {
    out->image_rows = p;
    out->n_image_rows = n_rows;
    out->n_targets = n_targets;
    be->ops->copy_h2d(be, out->pos, pos, 3 * N * sizeof *pos);
    be->ops->copy_h2d(be, out->targets, targets, N * sizeof *targets);
    be->ops->copy_h2d(be, out->image_rows, rows, (size_t)n_rows * sizeof *rows);
    st = be->ops->sync(be, e);
  }
  free(pos);
  free(targets);
  free(rows);
  if (st != AQS_OK) aqs_lm_batch_free(lm, out);
  return st;
}
