/* engine/compute/token_input.h: token batches for the calibrate / sensitivity commands, read
 * from a file: either one encoded calib-set chunk (engine/calib/calibset.h, magic "AQSCALC1"),
 * or JSON lines (one JSON array of token ids per line = one sequence; blank lines skipped),
 * which are cut into batches of batch_seqs consecutive sequences. */
#ifndef AQS_COMPUTE_TOKEN_INPUT_H
#define AQS_COMPUTE_TOKEN_INPUT_H

#include "common/err.h"
#include "engine/compute/calibrate.h"

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

#endif
