/* tests/fuzz/fuzz_aqstore.c: libFuzzer entry for the workspace config parser
 * (aqs_workspace_parse_file in common/workspace.c): parse .aqstore text or fail with an aqs_err
 * naming file and line. */
#include <stddef.h>
#include <stdint.h>

#include "common/workspace.h"
#include "fuzz_memfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  aqs_workspace ws;
  aqs_err err = {0};
  if (aqs_workspace_init_defaults(&ws, &err) != AQS_OK) return 0;
  aqs_workspace_parse_file(&ws, fuzz_memfile(data, size), &err);
  aqs_workspace_free(&ws);
  return 0;
}
