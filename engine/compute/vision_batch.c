/* engine/compute/vision_batch.c: image batches of the vision tower: the window geometry of
 * transformers' get_window_index and rot_pos_emb (host), the upload in window order, and the
 * per-batch workspace. */
#include <stdlib.h>
#include <string.h>

#include "engine/compute/vision_internal.h"

void aqs_vision_windows_free(aqs_vision_windows *w) {
  free(w->window_index);
  free(w->cu_window);
  free(w->cu_full);
  free(w->pos_hw);
  memset(w, 0, sizeof *w);
}

aqs_status aqs_vision_windows_make(const aqs_qwen_vision_config *cfg, const int32_t *grid_thw,
                                   int n_images, aqs_vision_windows *out, aqs_err *e) {
  memset(out, 0, sizeof *out);
  const int m = cfg->spatial_merge_size, mu = m * m;
  /* window side in merged tokens (112 px / 14 px / 2 = 4 for Qwen2.5-VL) */
  const int vw = cfg->window_size / m / cfg->patch_size;
  if (vw < 1)
    return aqs_errf(e, AQS_ERR_INVALID, "vision window_size %d is smaller than one merged patch",
                    cfg->window_size);
  int64_t N = 0, n_windows = 0, n_frames = 0;
  for (int i = 0; i < n_images; i++) {
    const int32_t t = grid_thw[3 * i], h = grid_thw[3 * i + 1], w = grid_thw[3 * i + 2];
    if (t < 1 || h < 1 || w < 1 || h % m || w % m)
      return aqs_errf(e, AQS_ERR_INVALID,
                      "image %d: grid (t %d, h %d, w %d) is not a positive multiple of the "
                      "merge size %d", i, t, h, w, m);
    N += (int64_t)t * h * w;
    if (N > INT32_MAX / 4)
      return aqs_errf(e, AQS_ERR_INVALID, "image %d: more than %d patches in one batch", i,
                      INT32_MAX / 4);
    n_windows += (int64_t)t * (h / m / vw + 1) * (w / m / vw + 1);
    n_frames += t;
  }
  out->n_tokens = (int)N;
  out->n_merged = (int)(N / mu);
  out->window_index = malloc(((size_t)N / mu + 1) * sizeof(int32_t));
  out->cu_window = malloc(((size_t)n_windows + 1) * sizeof(int32_t));
  out->cu_full = malloc(((size_t)n_frames + 1) * sizeof(int32_t));
  out->pos_hw = malloc(2 * ((size_t)N + 1) * sizeof(int32_t));
  if (!out->window_index || !out->cu_window || !out->cu_full || !out->pos_hw) {
    aqs_vision_windows_free(out);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory (window index of %lld patches)",
                    (long long)N);
  }
  int32_t base = 0, nwin = 0, nfr = 0, k = 0;
  out->cu_window[0] = out->cu_full[0] = 0;
  for (int i = 0; i < n_images; i++) {
    const int32_t t = grid_thw[3 * i], lh = grid_thw[3 * i + 1] / m, lw = grid_thw[3 * i + 2] / m;
    /* get_window_index pads to a whole number of windows, plus one empty row/column of windows
     * when the side is already a multiple; empty windows add no segment. */
    const int nwh = (lh + vw - lh % vw) / vw, nww = (lw + vw - lw % vw) / vw;
    for (int32_t tt = 0; tt < t; tt++) {
      for (int wh = 0; wh < nwh; wh++)
        for (int ww = 0; ww < nww; ww++) {
          int count = 0;
          for (int r = wh * vw; r < (wh + 1) * vw && r < lh; r++)
            for (int c = ww * vw; c < (ww + 1) * vw && c < lw; c++, count++)
              out->window_index[k++] = base + (tt * lh + r) * lw + c;
          if (count > 0) {
            out->cu_window[nwin + 1] = out->cu_window[nwin] + count * mu;
            if (count * mu > out->max_window) out->max_window = count * mu;
            nwin++;
          }
        }
      out->cu_full[nfr + 1] = out->cu_full[nfr] + lh * lw * mu;
      if (lh * lw * mu > out->max_frame) out->max_frame = lh * lw * mu;
      nfr++;
    }
    base += t * lh * lw;
  }
  out->n_windows = nwin;
  out->n_frames = nfr;
  /* Rotary positions: merged token g of an image frame holds the m x m patches of merged row
   * g / lw and column g % lw (processor order), in window order here. */
  base = 0;
  int32_t img = 0, img_end = 0, lw_img = 0, frame_tokens = 0;
  for (int i = 0; i < out->n_merged; i++) {
    int32_t g = out->window_index[i];
    /* find the image of merged token g (images are contiguous ranges) */
    if (g < base || g >= img_end) {
      base = 0;
      for (img = 0; img < n_images; img++) {
        int32_t cnt = grid_thw[3 * img] * (grid_thw[3 * img + 1] / m) * (grid_thw[3 * img + 2] / m);
        if (g < base + cnt) break;
        base += cnt;
      }
      img_end = base + grid_thw[3 * img] * (grid_thw[3 * img + 1] / m) * (grid_thw[3 * img + 2] / m);
      lw_img = grid_thw[3 * img + 2] / m;
      frame_tokens = (grid_thw[3 * img + 1] / m) * lw_img;
    }
    int32_t local = (g - base) % frame_tokens, br = local / lw_img, bc = local % lw_img;
    for (int r = 0; r < m; r++)
      for (int c = 0; c < m; c++) {
        size_t p = (size_t)i * mu + (size_t)(r * m + c);
        out->pos_hw[p] = br * m + r;
        out->pos_hw[(size_t)N + p] = bc * m + c;
      }
  }
  return AQS_OK;
}

aqs_status aqs_vision_batch_make(const aqs_vision *vis, const int32_t *grid_thw, int n_images,
                                 const float *patches, aqs_vision_batch *out, aqs_err *e) {
  memset(out, 0, sizeof *out);
  aqs_backend *be = vis->be;
  if (n_images < 1) return aqs_errf(e, AQS_ERR_INVALID, "empty image batch");
  aqs_status st = aqs_vision_windows_make(&vis->cfg, grid_thw, n_images, &out->win, e);
  if (st != AQS_OK) return st;
  const aqs_vision_windows *w = &out->win;
  const int N = w->n_tokens, M = w->n_merged, P = vis->patch_dim, mu = vis->merge_unit;
  out->n_images = n_images;
  out->n_tokens = N;
  out->n_merged = M;
  /* check patches per image, then reorder them into window order on the host */
  int64_t off = 0;
  for (int i = 0; i < n_images; i++) {
    int64_t n = (int64_t)grid_thw[3 * i] * grid_thw[3 * i + 1] * grid_thw[3 * i + 2] * P;
    for (int64_t j = 0; j < n; j++)
      if (!(patches[off + j] == patches[off + j]) || patches[off + j] > 3.4e38f ||
          patches[off + j] < -3.4e38f) {
        aqs_vision_batch_free(vis, out);
        return aqs_errf(e, AQS_ERR_INVALID, "image %d: pixel patch value %lld is not finite", i,
                        (long long)j);
      }
    off += n;
  }
  float *host = malloc((size_t)N * (size_t)P * sizeof *host);
  int32_t *qkv_rows = malloc(3 * (size_t)N * sizeof *qkv_rows);
  if (!host || !qkv_rows) {
    free(host);
    free(qkv_rows);
    aqs_vision_batch_free(vis, out);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory (%d patches)", N);
  }
  for (int i = 0; i < M; i++)
    memcpy(host + (size_t)i * mu * P, patches + (size_t)w->window_index[i] * mu * P,
           (size_t)mu * P * sizeof *host);
  for (int i = 0; i < N; i++)
    for (int s = 0; s < 3; s++) qkv_rows[(size_t)s * N + i] = 3 * i + s;
  void *p;
  struct { void **dst; size_t bytes; const void *src; } up[] = {
    {(void **)&out->patches, (size_t)N * P * sizeof(float), host},
    {(void **)&out->pos_hw, 2 * (size_t)N * sizeof(int32_t), w->pos_hw},
    {(void **)&out->cu_window, ((size_t)w->n_windows + 1) * sizeof(int32_t), w->cu_window},
    {(void **)&out->cu_full, ((size_t)w->n_frames + 1) * sizeof(int32_t), w->cu_full},
    {(void **)&out->window_index, (size_t)M * sizeof(int32_t), w->window_index},
    {(void **)&out->qkv_rows, 3 * (size_t)N * sizeof(int32_t), qkv_rows},
  };
  for (size_t i = 0; i < sizeof up / sizeof up[0] && st == AQS_OK; i++) {
    if ((st = be->ops->alloc(be, up[i].bytes, &p, e)) != AQS_OK) break;
    *up[i].dst = p;
    be->ops->copy_h2d(be, p, up[i].src, up[i].bytes);
  }
  /* transformers casts pixel_values to the weights' dtype before the Conv3d */
  if (st == AQS_OK && be->precision == AQS_PREC_BF16)
    be->ops->round_bf16(be, out->patches, (size_t)N * P);
  if (st == AQS_OK) st = be->ops->sync(be, e);
  free(host);
  free(qkv_rows);
  if (st != AQS_OK) aqs_vision_batch_free(vis, out);
  return st;
}

void aqs_vision_batch_free(const aqs_vision *vis, aqs_vision_batch *b) {
  aqs_backend *be = vis->be;
  be->ops->free(be, b->patches);
  be->ops->free(be, b->pos_hw);
  be->ops->free(be, b->cu_window);
  be->ops->free(be, b->cu_full);
  be->ops->free(be, b->window_index);
  be->ops->free(be, b->qkv_rows);
  aqs_vision_windows_free(&b->win);
  memset(b, 0, sizeof *b);
}

static aqs_status ws_buf(const aqs_vision *vis, aqs_vision_ws *ws, size_t bytes, void *out,
                         aqs_err *e) {
  void *p;
  aqs_status st = vis->be->ops->alloc(vis->be, bytes, &p, e);
  if (st != AQS_OK) return aqs_err_prefix(e, "vision workspace");
  ws->bufs[ws->nbufs++] = p;
  memcpy(out, &p, sizeof p);
  return AQS_OK;
}

aqs_status aqs_vision_ws_alloc(const aqs_vision *vis, const aqs_vision_batch *b, int with_grads,
                               aqs_vision_ws **out, aqs_err *e) {
  *out = NULL;
  aqs_vision_ws *ws = calloc(1, sizeof *ws);
  if (!ws) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  const aqs_qwen_vision_config *c = &vis->cfg;
  const size_t N = (size_t)b->n_tokens, M = (size_t)b->n_merged, C = (size_t)c->hidden_size,
               I = (size_t)c->intermediate_size, O = (size_t)c->out_hidden_size,
               H = (size_t)c->num_heads, F = sizeof(float), MC = (size_t)vis->merge_unit * C;
  ws->N = (int)N;
  ws->M = (int)M;
  size_t max_in = (size_t)vis->patch_dim, max_out = 3 * C;
  if (I > max_in) max_in = I;
  if (MC > max_in) max_in = MC;
  if (I > max_out) max_out = I;
  if (MC > max_out) max_out = MC;
  if (O > max_out) max_out = O;
  struct { void *slot; size_t bytes; int grad; } plan[] = {
    {&ws->ckpt, ((size_t)c->depth + 1) * N * C * F, 0},
    {&ws->ln1, N * C * F, 0}, {&ws->rstd1, N * F, 0}, {&ws->qkv, 3 * N * C * F, 0},
    {&ws->q, N * C * F, 0}, {&ws->k, N * C * F, 0}, {&ws->v, N * C * F, 0},
    {&ws->qr, N * C * F, 0}, {&ws->kr, N * C * F, 0}, {&ws->attn, N * C * F, 0},
    {&ws->lse, N * H * F, 0}, {&ws->proj, N * C * F, 0}, {&ws->hmid, N * C * F, 0},
    {&ws->ln2, N * C * F, 0}, {&ws->rstd2, N * F, 0}, {&ws->gate, N * I * F, 0},
    {&ws->up, N * I * F, 0}, {&ws->act, N * I * F, 0}, {&ws->down, N * C * F, 0},
    {&ws->xa, N * C * F, 0}, {&ws->lnq, N * C * F, 0}, {&ws->rstdq, N * F, 0},
    {&ws->m0, M * MC * F, 0}, {&ws->gel, M * MC * F, 0}, {&ws->m2, M * O * F, 0},
    {&ws->out, M * O * F, 0}, {&ws->xq, (N > M ? N : M) * max_in, 0},
    {&ws->wq, max_out * max_in, 0}, {&ws->yq, (N > M ? N : M) * max_out * F, 0},
    {&ws->d_out, M * O * F, 1}, {&ws->d_m2, M * O * F, 1}, {&ws->d_gel, M * MC * F, 1},
    {&ws->d_m0, M * MC * F, 1}, {&ws->d_x, N * C * F, 1}, {&ws->d_h, N * C * F, 1},
    {&ws->d_ln, N * C * F, 1}, {&ws->d_qkv, 3 * N * C * F, 1}, {&ws->d_q, N * C * F, 1},
    {&ws->d_k, N * C * F, 1}, {&ws->d_v, N * C * F, 1}, {&ws->d_attn, N * C * F, 1},
    {&ws->d_act, N * I * F, 1}, {&ws->d_gate, N * I * F, 1}, {&ws->d_up, N * I * F, 1},
  };
  for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
    if (plan[i].grad && !with_grads) continue;
    aqs_status st = ws_buf(vis, ws, plan[i].bytes, plan[i].slot, e);
    if (st != AQS_OK) {
      aqs_vision_ws_free(vis, ws);
      return st;
    }
  }
  *out = ws;
  return AQS_OK;
}

void aqs_vision_ws_free(const aqs_vision *vis, aqs_vision_ws *ws) {
  if (!ws) return;
  for (int i = 0; i < ws->nbufs; i++) vis->be->ops->free(vis->be, ws->bufs[i]);
  free(ws);
}

float *aqs_vision_ws_output(aqs_vision_ws *ws) { return ws->out; }

float *aqs_vision_ws_linear_fp8(const aqs_vision *vis, aqs_vision_ws *ws,
                                const aqs_lm_linear *lin, const float *x, int rows) {
  aqs_linear_fp8(vis->be, lin, ws->yq, x, rows, ws->xq, ws->wq);
  return ws->yq;
}
float *aqs_vision_ws_doutput(aqs_vision_ws *ws) { return ws->d_out; }
