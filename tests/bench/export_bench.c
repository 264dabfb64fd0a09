/* tests/bench/export_bench.c: throughput of the FP8 export on a synthetic model (the 3b preset
 * by default): FP8 quantize GB/s (BF16 bytes in) and safetensors write GB/s, compared in the same
 * run with `dd` writing the same byte count (conv=fsync, as the exporter fsyncs every shard).
 *
 * Three measurements: (1) quantize: amax + E4M3 conversion of the model's largest FP8 weights
 * held in memory (compute only); (2) the whole export with the source already in the page
 * cache (quantize + per-tensor/per-file SHA-256 + safetensors writes with fsync); (3) dd.
 * CPU seconds and the load average are printed too: on a shared machine wall times are noisy.
 *
 * usage: export_bench [--model DIR | --preset 3b --seed N] [--work DIR] [--keep]
 *   --model DIR   existing checkpoint; otherwise --preset (default 3b) is generated under --work
 *   --work DIR    scratch directory (default $TMPDIR or /tmp); everything written is deleted
 *                 at the end unless --keep
 * Prints one JSON object on stdout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/export/export.h"
#include "engine/model/safetensors.h"
#include "kernels/fp8.h"
#include "engine/model/synth.h"
#include "testutil.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
         1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void die(const char *what, const aqs_err *e) {
  fprintf(stderr, "export_bench: %s: %s\n", what, e ? e->msg : strerror(errno));
  exit(1);
}

static double dd_cpu_s; /* CPU seconds of the last dd */

/* Source tensor digests as the build's source stage has them (computed untimed here). */
typedef struct src_digests {
  aqs_ckpt *ck;
  aqs_digest *d;
} src_digests;

static int lookup_digest(void *ctx, const char *name, aqs_digest *out) {
  src_digests *sd = ctx;
  for (size_t lo = 0, hi = sd->ck->ntensors; lo < hi;) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(sd->ck->tensors[mid]->name, name);
    if (c == 0) {
      *out = sd->d[mid];
      return 1;
    }
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return 0;
}

/* dd of `bytes` zero bytes into path with fsync; returns seconds. */
static double run_dd(const char *path, uint64_t bytes) {
  uint64_t block = 4u << 20, count = (bytes + block - 1) / block;
  char cmd[4400];
  snprintf(cmd, sizeof cmd, "dd if=/dev/zero of='%s' bs=%llu count=%llu conv=fsync status=none",
           path, (unsigned long long)block, (unsigned long long)count);
  struct rusage before, after;
  getrusage(RUSAGE_CHILDREN, &before);
  double t0 = now_s();
  if (system(cmd) != 0) die("dd failed", NULL);
  double dt = now_s() - t0;
  getrusage(RUSAGE_CHILDREN, &after);
  dd_cpu_s = (double)(after.ru_utime.tv_sec - before.ru_utime.tv_sec) +
             (double)(after.ru_stime.tv_sec - before.ru_stime.tv_sec) +
             1e-6 * (double)(after.ru_utime.tv_usec - before.ru_utime.tv_usec +
                             after.ru_stime.tv_usec - before.ru_stime.tv_usec);
  unlink(path);
  return dt * (double)bytes / (double)(count * block); /* same byte count */
}

int main(int argc, char **argv) {
  const char *model = NULL, *preset = "3b", *work = getenv("TMPDIR");
  uint64_t seed = 1;
  int keep = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
    else if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[++i];
    else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--work") && i + 1 < argc) work = argv[++i];
    else if (!strcmp(argv[i], "--keep")) keep = 1;
    else {
      fprintf(stderr, "usage: export_bench [--model DIR | --preset P --seed N] [--work DIR] [--keep]\n");
      return 2;
    }
  }
  if (!work || !*work) work = "/tmp";
  aqs_err e;
  aqs_err_clear(&e);
  char root[4096], src[4200], out[4200], dd_path[4200];
  snprintf(root, sizeof root, "%s/export-bench-%ld", work, (long)getpid());
  if (mkdir(root, 0777) != 0) die(root, NULL);
  double gen_s = 0;
  if (!model) {
    snprintf(src, sizeof src, "%s/src", root);
    aqs_synth_opts so = {.preset = preset, .seed = seed, .out_dir = src, .naming = AQS_NAMING_HF5,
                         .progress = 1};
    double t0 = now_s();
    if (aqs_synth_write(&so, &e)) die("synth-model", &e);
    gen_s = now_s() - t0;
    model = src;
  }
  aqs_qwen_model *m;
  if (aqs_qwen_model_open(model, &m, NULL, &e)) die(model, &e);
  aqs_amax_table amax = {0};
  aqs_plan *plan = aqs_plan_new();
  snprintf(plan->scope, sizeof plan->scope, "lm_only");
  for (size_t g = 0; g < m->n_lm_groups; g++) {
    aqs_plan_set(plan, m->groups[g].id, AQS_FMT_FP8, NULL);
    for (int k = 0; k < m->groups[g].nmembers; k++)
      aqs_amax_set(&amax, m->groups[g].members[k].module, 4.0f, 0.0f, NULL);
  }
  /* (1) in-memory quantize of the FP8 candidates' weights, up to 2 GB of BF16 */
  aqs_ckpt *ck;
  if (aqs_ckpt_open(model, &ck, &e)) die(model, &e);
  uint64_t q_bytes = 0;
  double q_wall = 0;
  volatile uint64_t warm = 0;
  for (size_t g = 0; g < m->n_lm_groups && q_bytes < 2000000000ull; g++)
    for (int k = 0; k < m->groups[g].nmembers; k++) {
      char name[300];
      snprintf(name, sizeof name, "%s.weight", m->groups[g].members[k].module);
      const aqs_st_tensor *t = aqs_ckpt_find(ck, name);
      uint16_t *copy = malloc(t->nbytes);
      uint8_t *q = malloc(t->numel);
      memcpy(copy, t->data, t->nbytes); /* untimed: read from disk / page cache */
      double t0 = now_s();
      float scale;
      aqs_fp8_scale_from_amax(aqs_fp8_amax_bf16(copy, t->numel), &scale, NULL);
      aqs_fp8_quantize_bf16(copy, t->numel, scale, AQS_FP8_REF_TORCH_CUDA, q);
      q_wall += now_s() - t0;
      warm += q[t->numel / 2];
      q_bytes += t->nbytes;
      free(copy);
      free(q);
    }
  /* warm the page cache with the whole source so (2) measures the export, not the disk read */
  for (size_t i = 0; i < ck->ntensors; i++)
    for (uint64_t off = 0; off < ck->tensors[i]->nbytes; off += 4096)
      warm += ((const uint8_t *)ck->tensors[i]->data)[off];
  src_digests sd = {.ck = ck, .d = calloc(ck->ntensors + 1, sizeof(aqs_digest))};
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t i = 0; i < ck->ntensors; i++)
    aqs_sha256_buf(ck->tensors[i]->data, ck->tensors[i]->nbytes, &sd.d[i]);
  snprintf(out, sizeof out, "%s/out", root);
  double cpu0 = cpu_s();
  aqs_export_opts o = {.model_dir = model, .amax = &amax, .plan = plan, .out_dir = out,
                       .source_digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                       .amax_digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                       .progress = 1};
  aqs_export_result r;
  if (aqs_export_run(&o, &r, &e)) die("export", &e);
  double export_cpu = cpu_s() - cpu0;
  /* (2b) the same export as the build stage runs it: copied tensors' digests known */
  char out2[4300];
  snprintf(out2, sizeof out2, "%s/out2", root);
  o.out_dir = out2;
  o.source_tensor_digest = lookup_digest;
  o.source_tensor_digest_ctx = &sd;
  aqs_export_result r2;
  cpu0 = cpu_s();
  if (aqs_export_run(&o, &r2, &e)) die("export with source digests", &e);
  double export2_cpu = cpu_s() - cpu0;
  aqs_ckpt_close(ck);
  free(sd.d);
  snprintf(dd_path, sizeof dd_path, "%s/dd.bin", root);
  double dd_s = run_dd(dd_path, r.tensor_bytes);

  double gb = 1e9;
  double quant_gbs = (double)q_bytes / q_wall / gb;
  double export_quant_gbs = 2.0 * (double)r.quantized_params / r.seconds_quantize / gb;
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  double write_gbs = (double)r.tensor_bytes / r.seconds_write / gb;
  double total_gbs = (double)r.tensor_bytes / r.seconds_total / gb;
  double dd_gbs = (double)r.tensor_bytes / dd_s / gb;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  printf("{\"model\":\"%s\",\"preset\":\"%s\",\"cpus\":%ld,\"loadavg1\":%.2f,\"generate_s\":%.2f,"
         "\"quantize_bench_bytes\":%llu,\"quantize_bench_s\":%.3f,\"export_cpu_s\":%.2f,"
         "\"export_quantize_GBps\":%.3f,\"dd_cpu_s\":%.2f,"
         "\"tensor_bytes\":%llu,\"quantized_params\":%llu,\"files\":%zu,"
         "\"quantize_s\":%.3f,\"hash_s\":%.3f,\"write_s\":%.3f,\"total_s\":%.3f,\"dd_s\":%.3f,"
         "\"quantize_GBps\":%.3f,\"write_GBps\":%.3f,\"export_total_GBps\":%.3f,\"dd_GBps\":%.3f,"
         "\"write_vs_dd\":%.3f,\"total_vs_dd\":%.3f,\"with_source_digests\":{\"total_s\":%.3f,"
         "\"cpu_s\":%.2f,\"hash_s\":%.3f,\"total_vs_dd\":%.3f}}\n",
         model, preset, cpus, load[0], gen_s, (unsigned long long)q_bytes, q_wall, export_cpu,
         export_quant_gbs, dd_cpu_s, (unsigned long long)r.tensor_bytes,
         (unsigned long long)r.quantized_params, r.nfiles, r.seconds_quantize, r.seconds_hash,
         r.seconds_write, r.seconds_total, dd_s, quant_gbs, write_gbs, total_gbs, dd_gbs,
         write_gbs / dd_gbs, total_gbs / dd_gbs, r2.seconds_total, export2_cpu, r2.seconds_hash,
         dd_s / r2.seconds_total);
  aqs_export_result_free(&r2);
  aqs_export_result_free(&r);
  aqs_plan_free(plan);
  aqs_amax_free(&amax);
  aqs_qwen_model_free(m);
  if (!keep) tu_rm_rf(root);
  return 0;
}
