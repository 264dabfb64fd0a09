/* tests/fuzz/fuzz_safetensors.c: libFuzzer entry for the safetensors reader (aqs_st_open in
 * engine/model/safetensors_read.c): the input is a whole file (8-byte length, JSON header,
 * data). It must open or fail with an aqs_err; an opened file's tensors must lie inside it. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/model/safetensors.h"
#include "fuzz_memfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  aqs_st_file *f = NULL;
  aqs_err err = {0};
  if (aqs_st_open(fuzz_memfile(data, size), &f, &err) != AQS_OK) return 0;
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < f->ntensors; i++) {
    const aqs_st_tensor *t = &f->tensors[i];
    const uint8_t *bytes = t->data;
    if (t->nbytes) sink ^= bytes[0] ^ bytes[t->nbytes - 1]; /* ASan checks the bounds */
    if (aqs_st_find(f, t->name) == NULL) abort();
  }
  (void)sink;
  aqs_st_close(f);
  return 0;
}
