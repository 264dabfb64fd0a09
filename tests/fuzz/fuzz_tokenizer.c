/* tests/fuzz/fuzz_tokenizer.c: libFuzzer entry for the tokenizer.json loader
 * (aqs_tokenizer_load_json, engine/tokenizer/load.c). A tokenizer that loads must also encode a
 * fixed text and decode the ids back without faults (loaded tables are used, not only parsed). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  aqs_tokenizer *tok = NULL;
  aqs_err err = {0};
  if (aqs_tokenizer_load_json((const char *)data, size, "fuzz/tokenizer.json", &tok, &err) != AQS_OK) return 0;
  static const char text[] = "Hello wörld 123, a caption <|im_start|>user\n  tabs\there 😀";
  aqs_token_ids ids = {0};
  if (aqs_tokenizer_encode(tok, text, sizeof text - 1, &ids, &err) == AQS_OK) {
    char *back = NULL;
    if (aqs_tokenizer_decode(tok, ids.ids, ids.len, 0, &back, NULL, &err) == AQS_OK) free(back);
    aqs_token_ids_free(&ids);
  }
  aqs_tokenizer_free(tok);
  return 0;
}
