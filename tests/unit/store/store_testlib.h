/* tests/unit/store/store_testlib.h: helpers shared by the store tests: a fresh store in a temp
 * dir with small settings, deterministic pseudo-random bytes, and assertion shorthands. */
#ifndef AQS_STORE_TESTLIB_H
#define AQS_STORE_TESTLIB_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "testutil.h"

#define INLINE_MAX_TEST 4096

/* Asserts st == AQS_OK, printing the error message otherwise. */
#define ASSERT_OK(expr)                                                                    \
  do {                                                                                     \
    aqs_status st_ = (expr);                                                               \
    if (st_ != AQS_OK) fail_msg("%s -> %s: %s", #expr, aqs_status_name(st_), err.msg);    \
  } while (0)

/* A new store under a temp dir: returns the store path (malloc'd); dir_out gets the temp dir. */
static inline char *tl_new_store(const char *tag, char **dir_out, uint64_t map_size) {
  char *dir = tu_mkdtemp(tag);
  char *path = malloc(4200);
  snprintf(path, 4200, "%s/store", dir);
  aqs_store_config cfg;
  aqs_store_config_defaults(&cfg);
  cfg.inline_max_bytes = INLINE_MAX_TEST;
  cfg.zstd_level = 3;
  if (map_size) cfg.map_size_bytes = map_size;
  aqs_err err;
  aqs_err_clear(&err);
  if (aqs_store_init(path, &cfg, &err) != AQS_OK) fail_msg("init: %s", err.msg);
  *dir_out = dir;
  return path;
}

static inline aqs_store *tl_open(const char *path) {
  aqs_store *s = NULL;
  aqs_err err;
  aqs_err_clear(&err);
  if (aqs_store_open(path, 0, &s, &err) != AQS_OK) fail_msg("open: %s", err.msg);
  return s;
}

/* Deterministic bytes (xorshift) of len for seed. */
static inline void tl_fill(uint8_t *buf, size_t len, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    buf[i] = (uint8_t)(x >> 24);
  }
}

static inline void tl_cleanup(char *dir, char *path) {
  tu_rm_rf(dir);
  free(dir);
  free(path);
}

#endif
