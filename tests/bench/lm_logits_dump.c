/* tests/bench/lm_logits_dump.c: conformance helper (not a ctest): runs the language model
 * forward on the CPU backend over JSON-lines token sequences and writes the logits of every
 * token as raw little-endian float32 (N, V), sequences in file order, for
 * tests/conformance/hf_reference.py to compare with transformers.
 * usage: lm_logits_dump MODEL_DIR TOKENS.jsonl f32|bf16 OUT.bin */
#include <stdio.h>
#include <stdlib.h>

#include "engine/compute/lm.h"
#include "engine/stages/token_input.h"
#include "kernels/backend.h"

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s MODEL_DIR TOKENS.jsonl f32|bf16 OUT.bin\n", argv[0]);
    return 2;
  }
  aqs_err e = {0};
  aqs_precision prec;
  aqs_token_batches tb = {0};
  aqs_backend *be = NULL;
  aqs_lm *lm = NULL;
  FILE *out = NULL;
  int rc = 1;
  if (aqs_precision_parse(argv[3], &prec, &e) != AQS_OK) goto done;
  if (aqs_token_batches_read(argv[2], 8, &tb, &e) != AQS_OK) goto done;
  if (aqs_backend_open("cpu", prec, &be, &e) != AQS_OK) goto done;
  if (aqs_lm_load(be, argv[1], &lm, &e) != AQS_OK) goto done;
  if (!(out = fopen(argv[4], "wb"))) {
    perror(argv[4]);
    goto done;
  }
  for (size_t i = 0; i < tb.n; i++) {
    aqs_lm_batch b;
    aqs_lm_ws *ws;
    if (aqs_lm_batch_make(lm, tb.batches[i].token_ids, tb.batches[i].seq_lens,
                          tb.batches[i].n_seqs, 0, &b, &e) != AQS_OK)
      goto done;
    if (aqs_lm_ws_alloc(lm, &b, 0, 0, &ws, &e) != AQS_OK ||
        aqs_lm_forward(lm, &b, ws, NULL, NULL, &e) != AQS_OK)
      goto done;
    size_t n = (size_t)b.n_tokens * (size_t)lm->cfg.vocab_size;
    if (fwrite(aqs_lm_ws_logits(ws), sizeof(float), n, out) != n) {
      perror(argv[4]);
      goto done;
    }
    aqs_lm_ws_free(lm, ws);
    aqs_lm_batch_free(lm, &b);
  }
  rc = 0;
done:
  if (rc && e.code) fprintf(stderr, "lm_logits_dump: %s\n", e.msg);
  if (out && fclose(out) != 0) rc = 1;
  aqs_lm_free(lm);
  aqs_backend_close(be);
  aqs_token_batches_free(&tb);
  return rc;
}
