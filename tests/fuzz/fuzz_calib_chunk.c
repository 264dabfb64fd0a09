/* tests/fuzz/fuzz_calib_chunk.c: libFuzzer entry for the calib chunk decoder
 * (engine/calib/calibset.c): bytes from a store object must decode consistently or be refused. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine/calib/calibset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  aqs_calib_chunk c;
  aqs_err err = {0};
  if (aqs_calib_chunk_decode(data, size, "fuzz", &c, &err) == AQS_OK) {
    uint8_t *again;
    size_t len;
    if (aqs_calib_chunk_encode(&c, &again, &len, &err) != AQS_OK || len != size) abort();
    free(again);
    aqs_calib_chunk_free(&c);
  }
  return 0;
}
