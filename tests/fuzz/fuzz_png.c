/* tests/fuzz/fuzz_png.c: libFuzzer entry for the PNG decoder (engine/image/png.c). Any input must
 * decode or fail with an aqs_err; never crash, leak or read out of bounds. Build: tests/fuzz/build.sh. */
#include <stddef.h>
#include <stdint.h>

#include "engine/image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  aqs_image img;
  aqs_err err = {0};
  /* A small pixel limit keeps each run fast; the limit path itself is exercised too. */
  if (aqs_image_decode_png(data, size, "fuzz.png", 1 << 22, &img, &err) == AQS_OK) aqs_image_free(&img);
  return 0;
}
