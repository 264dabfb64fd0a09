/* tests/fuzz/fuzz_config.c: libFuzzer entry for the model config.json parser
 * (aqs_qwen_config_parse in engine/model/qwen_config.c): parse or fail with an aqs_err. */
#include <stddef.h>
#include <stdint.h>

#include "engine/model/qwen_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  aqs_qwen_config cfg;
  aqs_err err = {0};
  aqs_qwen_config_parse((const char *)data, size, "fuzz/config.json", &cfg, &err);
  return 0;
}
