/* tests/fuzz/fuzz_memfile.h: for harnesses whose parser reads a path (mapped safetensors, INI
 * files): one memfd (a regular file in memory) rewritten per input and reached by a /proc path,
 * so the real open/fstat/limit path runs with no disk I/O. */
#ifndef AQS_FUZZ_MEMFILE_H
#define AQS_FUZZ_MEMFILE_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Returns "/proc/self/fd/N" holding exactly data[0..size); aborts if the memfd cannot be made. */
static const char *fuzz_memfile(const uint8_t *data, size_t size) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("aqs-fuzz", 0);
    if (fd < 0) abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
  return path;
}

#endif
