/* tests/fuzz/fuzz_jpeg.c: libFuzzer entry for the JPEG decoder (engine/image/jpeg.c). Any input
 * must decode or fail with an aqs_err; never crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>

#include "engine/image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  aqs_image img;
  aqs_err err = {0};
  if (aqs_image_decode_jpeg(data, size, "fuzz.jpg", 1 << 18, &img, &err) == AQS_OK) aqs_image_free(&img);
  return 0;
}
