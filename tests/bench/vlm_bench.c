/* tests/bench/vlm_bench.c: image+caption calibration and all_layers gradient scoring throughput of
 * the whole model (vision tower + language model) on one chunk given as raw files (the form of
 * tests/bench/vlm_chunk_files.h; tests/bench/image_bench.py writes it and runs the torch peer on
 * the same rows). Each timed step is what one build chunk costs: upload, passes, results on the
 * host. Prints one JSON object (also to --json FILE).
 *   vlm_bench --model DIR --in DIR [--backend cuda] [--precision bf16|f32] [--warmup N]
 *             [--steps N] [--json FILE] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/compute/vlm.h"
#include "kernels/backend.h"
#include "vlm_chunk_files.h"

static const char usage[] =
    "usage: vlm_bench --model DIR --in DIR [--backend cpu|cuda] [--precision f32|bf16]\n"
    "                 [--warmup N] [--steps N] [--json FILE]\n"
    "Times image+caption calibration (aqs_vlm_calibrate_chunk) and all_layers gradient scoring\n"
    "(aqs_vlm_sensitivity_chunk) of the chunk in --in (lens.i32, ids.i32, grid.i32, img_seq.i32,\n"
    "img_start.i32, patches.f32): tokens/s (text and image tokens), images/s, peak backend memory.\n";

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void check(aqs_status st, const aqs_err *e, const char *what) {
  if (st == AQS_OK) return;
  fprintf(stderr, "vlm_bench: %s: %s\n", what, e->msg);
  exit(1);
}

int main(int argc, char **argv) {
  const char *model = NULL, *in = NULL, *backend = "cuda", *precision = "bf16", *json_path = NULL;
  int warmup = 1, steps = 3;
  static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"in", required_argument, 0, 'i'},
                                       {"backend", required_argument, 0, 'b'},
                                       {"precision", required_argument, 0, 'p'},
                                       {"warmup", required_argument, 0, 'w'}, {"steps", required_argument, 0, 's'},
                                       {"json", required_argument, 0, 'j'}, {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (ch) {
      case 'm': model = optarg; break;
      case 'i': in = optarg; break;
      case 'b': backend = optarg; break;
      case 'p': precision = optarg; break;
      case 'w': warmup = atoi(optarg); break;
      case 's': steps = atoi(optarg); break;
      case 'j': json_path = optarg; break;
      case 'h': fputs(usage, stdout); return 0;
      default: fputs(usage, stderr); return 2;
    }
  }
  if (!model || !in || steps < 1 || warmup < 0) {
    fputs(usage, stderr);
    return 2;
  }
  aqs_err e = {0};
  aqs_precision prec;
  check(aqs_precision_parse(precision, &prec, &e), &e, "precision");
  aqs_backend *be;
  check(aqs_backend_open(backend, prec, &be, &e), &e, "backend");
  double t0 = now_s();
  aqs_vlm *m;
  check(aqs_vlm_load(be, model, &m, &e), &e, "load");
  double load_s = now_s() - t0;
  aqs_calib_chunk c;
  vlm_chunk_files_read(in, &c);
  int64_t image_tokens = 0;
  const int merge2 = m->vis->cfg.spatial_merge_size * m->vis->cfg.spatial_merge_size;
  for (int i = 0; i < c.n_images; i++)
    image_tokens += (int64_t)c.image_grid_thw[3 * i] * c.image_grid_thw[3 * i + 1] * c.image_grid_thw[3 * i + 2] /
                    merge2;

  /* calibration: a fresh table per step, as each build chunk */
  double calib_s = 0;
  aqs_amax_table t = {0};
  for (int s = 0; s < warmup + steps; s++) {
    aqs_amax_free(&t);
    memset(&t, 0, sizeof t);
    double s0 = now_s();
    check(aqs_vlm_calibrate_chunk(m, &c, 0, &t, &e), &e, "calibrate");
    if (s >= warmup) calib_s += now_s() - s0;
  }
  check(aqs_vlm_set_amax(m, &t, &e), &e, "set amax");
  /* all_layers gradient scores */
  double score_s = 0, loss = 0;
  for (int s = 0; s < warmup + steps; s++) {
    aqs_scores sc;
    double s0 = now_s();
    check(aqs_vlm_sensitivity_chunk(m, &c, AQS_SENS_GRADIENT, AQS_SCOPE_ALL_LAYERS, 0, &sc, &loss, &e), &e,
          "gradient scores");
    if (s >= warmup) score_s += now_s() - s0;
    aqs_scores_free(&sc);
  }
  size_t in_use = 0, peak = 0;
  if (be->ops->mem_stats) be->ops->mem_stats(be, &in_use, &peak);
  char out[2048];
  snprintf(out, sizeof out,
           "{\"side\": \"aqs\", \"backend\": \"%s\", \"precision\": \"%s\", \"load_s\": %.3f, \"seqs\": %d, "
           "\"tokens\": %lld, \"image_tokens\": %lld, \"images\": %d, \"patches\": %lld, \"steps\": %d,\n"
           " \"calib\": {\"s_per_step\": %.5f, \"tokens_per_s\": %.1f, \"images_per_s\": %.2f},\n"
           " \"score_gradient_all_layers\": {\"s_per_step\": %.5f, \"tokens_per_s\": %.1f, \"images_per_s\": %.2f, "
           "\"loss\": %.6f},\n \"peak_backend_gib\": %.3f}\n",
           backend, precision, load_s, c.n_seqs, (long long)c.n_tokens, (long long)image_tokens, c.n_images,
           (long long)c.n_patches, steps, calib_s / steps, (double)c.n_tokens * steps / calib_s,
           (double)c.n_images * steps / calib_s, score_s / steps, (double)c.n_tokens * steps / score_s,
           (double)c.n_images * steps / score_s, loss, (double)peak / (1 << 30));
  fputs(out, stdout);
  if (json_path) {
    FILE *f = fopen(json_path, "w");
    if (!f || fputs(out, f) < 0 || fclose(f) != 0) {
      fprintf(stderr, "vlm_bench: cannot write %s\n", json_path);
      return 1;
    }
  }
  aqs_amax_free(&t);
  vlm_chunk_files_free(&c);
  aqs_vlm_free(m);
  aqs_backend_close(be);
  return 0;
}
