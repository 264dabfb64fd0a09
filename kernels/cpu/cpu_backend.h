/* kernels/cpu/cpu_backend.h: the CPU backend's private state (the op table is aqs_cpu_ops). */
#ifndef AQS_KERNELS_CPU_BACKEND_H
#define AQS_KERNELS_CPU_BACKEND_H

#include <stddef.h>

#include "kernels/ops.h"

typedef struct cpu_state {
  size_t bytes_in_use;
  size_t bytes_peak;
} cpu_state;

extern const aqs_ops aqs_cpu_ops;

#endif
