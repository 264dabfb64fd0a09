/* engine/stages/token_input.h: token batches for the calibrate / sensitivity commands, read
 * from a file: either one encoded calib-set chunk (engine/calib/calibset.h, magic "AQSCALC1"),
 * or JSON lines (one JSON array of token ids per line = one sequence; blank lines skipped),
 * which are cut into batches of batch_seqs consecutive sequences. */
#ifndef AQS_STAGES_TOKEN_INPUT_H
#define AQS_STAGES_TOKEN_INPUT_H

#include "common/err.h"
#include "engine/calib/calibset.h"
#include "engine/compute/batch_loop.h"

typedef struct aqs_token_batches {
  size_t n;                     /* number of batches */
  aqs_token_batch *batches;     /* views into the arrays below */
  int32_t *ids;                 /* all tokens, packed */
  int32_t *lens;                /* all sequence lengths */
  int64_t n_tokens, n_seqs;
} aqs_token_batches;

/* Appends the batches of `path` to *tb (zero-initialize tb before the first call).
 * batch_seqs >= 1 applies to JSON lines files (a chunk file is one batch). Errors name the file
 * and line: AQS_ERR_INVALID for a line that is not an array of integers in [0, 2^31), an
 * empty array, or a corrupt chunk. */
aqs_status aqs_token_batches_read(const char *path, int batch_seqs, aqs_token_batches *tb,
                                  aqs_err *e);
void aqs_token_batches_free(aqs_token_batches *tb);

/* A loop (engine/compute/batch_loop.h) computing every batch of tb with lm, progress in tokens
 * (label unset). ctx must outlive the loop. */
typedef struct aqs_token_batches_ctx {
  const aqs_token_batches *tb;
  const aqs_lm *lm;
} aqs_token_batches_ctx;
void aqs_token_batches_loop(aqs_token_batches_ctx *ctx, aqs_batch_loop *loop);

/* View of a text calib chunk as a token batch (no copy: valid while c is). Image chunks:
 * AQS_ERR_UNSUPPORTED (the vision tower is not computed; the text tokens alone would mis-state
 * the inputs). */
aqs_status aqs_token_batch_of_chunk(const aqs_calib_chunk *c, aqs_token_batch *out, aqs_err *e);

#endif
