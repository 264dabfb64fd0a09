/* engine/stages/demo_data.h: the synthetic caption file of `aqs demo` and the integration tests:
 * COCO-like English captions from small word lists, deterministic in (n, seed). */
#ifndef AQS_STAGES_DEMO_DATA_H
#define AQS_STAGES_DEMO_DATA_H

#include <stdint.h>

#include "common/err.h"

/* Writes n captions, one per line, to path (tmp + rename). */
aqs_status aqs_demo_write_captions(const char *path, int n, uint64_t seed, aqs_err *e);

#endif
