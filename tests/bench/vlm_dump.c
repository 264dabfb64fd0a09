/* tests/bench/vlm_dump.c: conformance helper (not a test): runs the whole model on one image+text
 * batch given as raw files and writes what tests/conformance/vision_conformance.py compares with
 * transformers: the vision features (M, out_hidden) and logits (N, V) F32 and, in F32 mode, the amax table and all_layers gradient
 * scores (JSON).
 *   vlm_dump MODEL_DIR IN_DIR OUT_DIR BACKEND PRECISION
 * IN_DIR: lens.i32 (B), ids.i32 (N), grid.i32 (I x 3), img_seq.i32, img_start.i32 (I),
 * patches.f32 (sum t*h*w, 1176), all little-endian. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/compute/vlm.h"
#include "kernels/backend.h"
#include "vlm_chunk_files.h"

static void check(aqs_status st, const aqs_err *e, const char *what) {
  if (st == AQS_OK) return;
  fprintf(stderr, "vlm_dump: %s: %s\n", what, e->msg);
  exit(1);
}

static void write_text(const char *dir, const char *name, const char *text) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
    fprintf(stderr, "vlm_dump: cannot write %s\n", path);
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: vlm_dump MODEL_DIR IN_DIR OUT_DIR cpu|cuda f32|bf16\n");
    return 2;
  }
  const char *model = argv[1], *in = argv[2], *out = argv[3];
  aqs_err e = {0};
  aqs_precision prec;
  check(aqs_precision_parse(argv[5], &prec, &e), &e, "precision");
  aqs_backend *be;
  check(aqs_backend_open(argv[4], prec, &be, &e), &e, "backend");
  aqs_vlm *m;
  check(aqs_vlm_load(be, model, &m, &e), &e, "load");
  aqs_calib_chunk c;
  vlm_chunk_files_read(in, &c);
  /* logits of the plain forward */
  aqs_vlm_batch b;
  check(aqs_vlm_batch_of_chunk(m, &c, 0, &b, &e), &e, "batch");
  {
    /* M-RoPE positions (3, N) as the language model uses them */
    int32_t *pos = malloc(3 * (size_t)b.lm.n_tokens * sizeof *pos);
    be->ops->copy_d2h(be, pos, b.lm.pos, 3 * (size_t)b.lm.n_tokens * sizeof *pos);
    char ppath[4096];
    snprintf(ppath, sizeof ppath, "%s/pos.i32", out);
    FILE *pf = fopen(ppath, "wb");
    if (!pf || fwrite(pos, sizeof *pos, 3 * (size_t)b.lm.n_tokens, pf) != 3 * (size_t)b.lm.n_tokens ||
        fclose(pf) != 0)
      return 1;
    free(pos);
  }
  aqs_vision_ws *vws;
  aqs_lm_ws *lws;
  check(aqs_vision_ws_alloc(m->vis, &b.vis, 0, &vws, &e), &e, "vision ws");
  check(aqs_lm_ws_alloc(m->lm, &b.lm, 0, 0, &lws, &e), &e, "lm ws");
  check(aqs_vision_forward(m->vis, &b.vis, vws, NULL, NULL, NULL, &e), &e, "vision forward");
  b.lm.image_embeds = aqs_vision_ws_output(vws);
  {
    size_t nv = (size_t)b.vis.n_merged * (size_t)m->vis->cfg.out_hidden_size;
    float *feat = malloc(nv * sizeof *feat);
    be->ops->copy_d2h(be, feat, aqs_vision_ws_output(vws), nv * sizeof *feat);
    char vpath[4096];
    snprintf(vpath, sizeof vpath, "%s/vision.f32", out);
    FILE *vf = fopen(vpath, "wb");
    if (!vf || fwrite(feat, sizeof *feat, nv, vf) != nv || fclose(vf) != 0) {
      fprintf(stderr, "vlm_dump: cannot write %s\n", vpath);
      return 1;
    }
    free(feat);
  }
  check(aqs_lm_forward(m->lm, &b.lm, lws, NULL, NULL, &e), &e, "forward");
  size_t nl = (size_t)b.lm.n_tokens * (size_t)m->lm->cfg.vocab_size;
  float *logits = malloc(nl * sizeof *logits);
  be->ops->copy_d2h(be, logits, aqs_lm_ws_logits(lws), nl * sizeof *logits);
  check(be->ops->sync(be, &e), &e, "sync");
  char path[4096];
  snprintf(path, sizeof path, "%s/logits.f32", out);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(logits, sizeof *logits, nl, f) != nl || fclose(f) != 0) {
    fprintf(stderr, "vlm_dump: cannot write %s\n", path);
    return 1;
  }
  aqs_lm_ws_free(m->lm, lws);
  aqs_vision_ws_free(m->vis, vws);
  aqs_vlm_batch_free(m, &b);
  /* amax and gradient scores (all_layers), F32 only: what the build's compute stages run */
  if (prec != AQS_PREC_F32) {
    printf("vlm_dump: %d tokens, %d images (logits only)\n", (int)c.n_tokens, c.n_images);
    return 0;
  }
  aqs_amax_table t = {0};
  char *text = NULL;
  check(aqs_vlm_calibrate_chunk(m, &c, 0, &t, &e), &e, "calibrate");
  check(aqs_amax_to_json(&t, &text, &e), &e, "amax json");
  write_text(out, "amax.json", text);
  free(text);
  check(aqs_vlm_set_amax(m, &t, &e), &e, "set amax");
  aqs_scores s;
  double loss;
  check(aqs_vlm_sensitivity_chunk(m, &c, AQS_SENS_GRADIENT, AQS_SCOPE_ALL_LAYERS, 0, &s, &loss, &e), &e,
        "scores");
  check(aqs_scores_to_json(&s, &text, &e), &e, "scores json");
  write_text(out, "scores.json", text);
  printf("vlm_dump: %d tokens, %d images, loss %.6f\n", (int)c.n_tokens, c.n_images, loss);
  free(text);
  aqs_scores_free(&s);
  aqs_amax_free(&t);
  free(logits);
  vlm_chunk_files_free(&c);
  aqs_vlm_free(m);
  aqs_backend_close(be);
  return 0;
}
