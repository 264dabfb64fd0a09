/* tests/bench/store_bench.c: store throughput. Hashing GB/s on one core; put/get MB/s for
 * SIZE MiB (default 1024) of random bytes and of BF16-like weights, raw and zstd 1/3/9; compared
 * in the same run with `sha256sum` and `cp` (and `cp` + `sync`, since puts fsync) of the same file.
 * Usage: store_bench [size_mib] [work_dir]. Reports wall time and CPU time (the CI box is shared). */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "testutil.h"

typedef struct timing {
  double wall_s;
  double cpu_s; /* this process + waited-for children */
} timing;

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_now(void) {
  struct rusage self, kids;
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &kids);
  return (double)(self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec +
                  kids.ru_stime.tv_sec) +
         (double)(self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec +
                  kids.ru_stime.tv_usec) * 1e-6;
}

static timing start_timer(void) { return (timing){wall_now(), cpu_now()}; }

static timing stop_timer(timing t0) { return (timing){wall_now() - t0.wall_s, cpu_now() - t0.cpu_s}; }

static void die(const char *what, const aqs_err *err) {
  fprintf(stderr, "store_bench: %s: %s\n", what, err ? err->msg : "failed");
  exit(1);
}

/* Random bytes (xorshift64*). */
static void fill_random(uint8_t *buf, size_t len, uint64_t seed) {
  uint64_t x = seed | 1;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    uint64_t v = x * 0x2545F4914F6CDD1Dull;
    memcpy(buf + i, &v, 8);
  }
  for (; i < len; i++) buf[i] = (uint8_t)i;
}

/* BF16-like weights: the top 16 bits of float32 samples of N(0, 0.02) (Box-Muller). */
static void fill_bf16(uint8_t *buf, size_t len, uint64_t seed) {
  uint64_t x = seed | 1;
  for (size_t i = 0; i + 4 <= len; i += 4) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    uint64_t r = x * 0x2545F4914F6CDD1Dull;
    double u1 = ((double)(r >> 40) + 1.0) / 16777217.0, u2 = (double)((r >> 16) & 0xFFFFFF) / 16777216.0;
    double mag = sqrt(-2.0 * log(u1)) * 0.02;
    float a = (float)(mag * cos(6.283185307179586 * u2)), b = (float)(mag * sin(6.283185307179586 * u2));
    uint32_t ua, ub;
    memcpy(&ua, &a, 4);
    memcpy(&ub, &b, 4);
    uint16_t ha = (uint16_t)(ua >> 16), hb = (uint16_t)(ub >> 16);
    memcpy(buf + i, &ha, 2);
    memcpy(buf + i + 2, &hb, 2);
  }
}

static void write_file(const char *path, const uint8_t *data, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die(path, NULL);
  size_t done = 0;
  while (done < len) {
    ssize_t n = write(fd, data + done, len - done);
    if (n <= 0) die(path, NULL);
    done += (size_t)n;
  }
  fsync(fd);
  close(fd);
}

static timing run_shell(const char *cmd) {
  timing t0 = start_timer();
  if (system(cmd) != 0) {
    fprintf(stderr, "store_bench: '%s' failed\n", cmd);
    exit(1);
  }
  return stop_timer(t0);
}

static double mb_s(uint64_t bytes, double s) { return s > 0 ? (double)bytes / 1e6 / s : 0; }

typedef struct mode {
  const char *name;
  aqs_compress compress;
  int level;
} mode;

int main(int argc, char **argv) {
  uint64_t size_mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 1024;
  char *work = argc > 2 ? strdup(argv[2]) : tu_mkdtemp("store-bench");
  uint64_t size = size_mib << 20;
  uint8_t *buf = malloc(size);
  if (!buf) die("allocating the data", NULL);
  aqs_err err;
  aqs_err_clear(&err);
  printf("store_bench: %llu MiB per data set, work dir %s\n", (unsigned long long)size_mib, work);

  /* 1. Hashing on one core, in memory and vs sha256sum on the same file (page cache). */
  fill_random(buf, size, 1);
  char random_path[4300], bf16_path[4300], cmd[9000];
  snprintf(random_path, sizeof random_path, "%s/random.bin", work);
  snprintf(bf16_path, sizeof bf16_path, "%s/bf16.bin", work);
  write_file(random_path, buf, size);
  aqs_digest d;
  timing t0 = start_timer();
  aqs_sha256_buf(buf, size, &d);
  timing hash_mem = stop_timer(t0);
  t0 = start_timer();
  int fd = open(random_path, O_RDONLY);
  if (aqs_sha256_fd(fd, 0, AQS_TO_EOF, random_path, &d, NULL, &err) != AQS_OK) die("hash", &err);
  close(fd);
  timing hash_file = stop_timer(t0);
  snprintf(cmd, sizeof cmd, "cat %s > /dev/null && sha256sum %s > /dev/null", random_path,
           random_path);
  run_shell(cmd); /* warm the page cache */
  snprintf(cmd, sizeof cmd, "sha256sum %s > /dev/null", random_path);
  timing sha256sum = run_shell(cmd);
  printf("\nhashing (1 core)          wall GB/s   cpu GB/s\n");
  printf("  aqs sha256 (memory)       %7.2f    %7.2f\n", (double)size / 1e9 / hash_mem.wall_s,
         (double)size / 1e9 / hash_mem.cpu_s);
  printf("  aqs sha256 (file)         %7.2f    %7.2f\n", (double)size / 1e9 / hash_file.wall_s,
         (double)size / 1e9 / hash_file.cpu_s);
  printf("  sha256sum (file)          %7.2f    %7.2f\n", (double)size / 1e9 / sha256sum.wall_s,
         (double)size / 1e9 / sha256sum.cpu_s);
  printf("  ratio aqs/sha256sum       %7.2fx   %7.2fx\n", sha256sum.wall_s / hash_file.wall_s,
         sha256sum.cpu_s / hash_file.cpu_s);

  fill_bf16(buf, size, 2);
  write_file(bf16_path, buf, size);
  free(buf);

  const char *datasets[2] = {random_path, bf16_path};
  const char *names[2] = {"random", "bf16"};
  mode modes[] = {{"raw", AQS_COMPRESS_RAW, 0},
                  {"zstd-1", AQS_COMPRESS_ZSTD, 1},
                  {"zstd-3", AQS_COMPRESS_ZSTD, 3},
                  {"zstd-9", AQS_COMPRESS_ZSTD, 9}};
  for (int ds = 0; ds < 2; ds++) {
    char copy_path[4400];
    snprintf(copy_path, sizeof copy_path, "%s/copy.bin", work);
    snprintf(cmd, sizeof cmd, "cat %s > /dev/null", datasets[ds]);
    run_shell(cmd);
    snprintf(cmd, sizeof cmd, "cp %s %s", datasets[ds], copy_path);
    timing cp = run_shell(cmd);
    unlink(copy_path);
    snprintf(cmd, sizeof cmd, "cp %s %s && sync %s", datasets[ds], copy_path, copy_path);
    timing cp_sync = run_shell(cmd);
    unlink(copy_path);
    printf("\n%s data                 put wall MB/s (cpu)   get wall MB/s (cpu)   stored/size   "
           "put vs cp (vs cp+sync)\n",
           names[ds]);
    printf("  cp                      %8.0f (%6.0f)\n", mb_s(size, cp.wall_s), mb_s(size, cp.cpu_s));
    printf("  cp + sync               %8.0f (%6.0f)\n", mb_s(size, cp_sync.wall_s),
           mb_s(size, cp_sync.cpu_s));
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
      char store_path[4400];
      snprintf(store_path, sizeof store_path, "%s/store-%s-%s", work, names[ds], modes[m].name);
      aqs_store_config cfg;
      aqs_store_config_defaults(&cfg);
      if (modes[m].level) cfg.zstd_level = modes[m].level;
      aqs_store *s = NULL;
      if (aqs_store_init(store_path, &cfg, &err) != AQS_OK ||
          aqs_store_open(store_path, 0, &s, &err) != AQS_OK)
        die(store_path, &err);
      aqs_put_opts opts = {.compress = modes[m].compress, .zstd_level = modes[m].level};
      aqs_put_info info;
      fd = open(datasets[ds], O_RDONLY);
      t0 = start_timer();
      if (aqs_put_fd(s, fd, 0, AQS_TO_EOF, datasets[ds], &opts, &info, &err) != AQS_OK)
        die("put", &err);
      timing put = stop_timer(t0);
      close(fd);
      int out = open(copy_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      t0 = start_timer();
      uint64_t written = 0;
      if (aqs_get_fd(s, &info.digest, out, &written, &err) != AQS_OK) die("get", &err);
      timing get = stop_timer(t0);
      close(out);
      unlink(copy_path);
      printf("  aqs %-8s            %8.0f (%6.0f)     %8.0f (%6.0f)      %6.3f        %5.0f%% (%5.0f%%)\n",
             modes[m].name, mb_s(size, put.wall_s), mb_s(size, put.cpu_s), mb_s(size, get.wall_s),
             mb_s(size, get.cpu_s), (double)info.stored_bytes / (double)size,
             100.0 * cp.wall_s / put.wall_s, 100.0 * cp_sync.wall_s / put.wall_s);
      fflush(stdout);
      aqs_store_close(s);
      tu_rm_rf(store_path);
    }
  }
  unlink(random_path);
  unlink(bf16_path);
  if (argc <= 2) tu_rm_rf(work);
  free(work);
  return 0;
}
