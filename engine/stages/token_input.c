/* engine/stages/token_input.c: reading token batches (calib chunk or JSON lines; see
 * token_input.h). Batches are rebuilt as views once all files are read. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "engine/calib/calibset.h"
#include "engine/stages/token_input.h"

/* Internally a batch is recorded by (first sequence, count, first token); views are rebuilt
 * after every append because the arrays may move. */
typedef struct batch_span {
  int64_t first_seq, first_tok;
  int n_seqs;
} batch_span;

static aqs_status push_seq(aqs_token_batches *tb, const int32_t *ids, int32_t len, aqs_err *e) {
  int32_t *ni = realloc(tb->ids, (size_t)(tb->n_tokens + len) * sizeof *ni);
  if (!ni) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory reading tokens");
  tb->ids = ni;
  int32_t *nl = realloc(tb->lens, (size_t)(tb->n_seqs + 1) * sizeof *nl);
  if (!nl) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory reading tokens");
  tb->lens = nl;
  memcpy(tb->ids + tb->n_tokens, ids, (size_t)len * sizeof *ids);
  tb->lens[tb->n_seqs++] = len;
  tb->n_tokens += len;
  return AQS_OK;
}

static aqs_status push_batch(aqs_token_batches *tb, batch_span **spans, int64_t first_seq,
                             int n_seqs, aqs_err *e) {
  batch_span *ns = realloc(*spans, (tb->n + 1) * sizeof *ns);
  if (!ns) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  *spans = ns;
  int64_t tok = 0;
  for (int64_t s = 0; s < first_seq; s++) tok += tb->lens[s];
  ns[tb->n].first_seq = first_seq;
  ns[tb->n].first_tok = tok;
  ns[tb->n].n_seqs = n_seqs;
  tb->n++;
  return AQS_OK;
}

/* Recovers spans from existing views (prior calls) so appends can rebuild them. */
static batch_span *spans_of(const aqs_token_batches *tb) {
  batch_span *sp = malloc((tb->n ? tb->n : 1) * sizeof *sp);
  if (!sp) return NULL;
  for (size_t i = 0; i < tb->n; i++) {
    sp[i].first_seq = tb->batches[i].seq_lens - tb->lens;
    sp[i].first_tok = tb->batches[i].token_ids - tb->ids;
    sp[i].n_seqs = tb->batches[i].n_seqs;
  }
  return sp;
}

static aqs_status rebuild_views(aqs_token_batches *tb, const batch_span *spans, aqs_err *e) {
  aqs_token_batch *nb = realloc(tb->batches, (tb->n ? tb->n : 1) * sizeof *nb);
  if (!nb) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  tb->batches = nb;
  for (size_t i = 0; i < tb->n; i++) {
    nb[i] = (aqs_token_batch){.n_seqs = spans[i].n_seqs, .seq_lens = tb->lens + spans[i].first_seq,
                              .token_ids = tb->ids + spans[i].first_tok};
  }
  return AQS_OK;
}

aqs_status aqs_token_batch_of_chunk(const aqs_calib_chunk *c, aqs_token_batch *out, aqs_err *e) {
  if (c->n_images > 0)
    return aqs_errf(e, AQS_ERR_UNSUPPORTED,
                    "calib chunk %lld holds %d images: the compute engine runs the language model "
                    "only (text calib sets)", (long long)c->first_seq, c->n_images);
  *out = (aqs_token_batch){.n_seqs = c->n_seqs, .seq_lens = c->seq_lens, .token_ids = c->token_ids};
  return AQS_OK;
}

static aqs_status read_chunk(const char *path, const uint8_t *buf, size_t len,
                             aqs_token_batches *tb, batch_span **spans, aqs_err *e) {
  aqs_calib_chunk c;
  memset(&c, 0, sizeof c);
  aqs_status st = aqs_calib_chunk_decode(buf, len, path, &c, e);
  if (st != AQS_OK) return st;
  aqs_token_batch view;
  if ((st = aqs_token_batch_of_chunk(&c, &view, e)) != AQS_OK) {
    aqs_calib_chunk_free(&c);
    return aqs_err_prefix(e, "%s", path);
  }
  int64_t first = tb->n_seqs;
  for (int s = 0; s < c.n_seqs && st == AQS_OK; s++)
    st = push_seq(tb, c.token_ids + c.seq_offsets[s], c.seq_lens[s], e);
  if (st == AQS_OK) st = push_batch(tb, spans, first, c.n_seqs, e);
  aqs_calib_chunk_free(&c);
  return st;
}

static aqs_status read_jsonl(const char *path, char *text, int batch_seqs,
                             aqs_token_batches *tb, batch_span **spans, aqs_err *e) {
  int64_t first = tb->n_seqs, before = tb->n_seqs;
  int in_batch = 0;
  int32_t *row = NULL;
  size_t line_no = 0;
  aqs_status st = AQS_OK;
  for (char *line = text; line && *line && st == AQS_OK;) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = '\0';
    line_no++;
    char *p = line;
    while (*p == ' ' || *p == '\t' || *p == '\r') p++;
    if (*p) {
      json_error_t jerr;
      json_t *arr = json_loads(p, 0, &jerr);
      size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
      if (!json_is_array(arr) || n == 0 || n > INT32_MAX) {
        st = aqs_errf(e, AQS_ERR_INVALID, "%s:%zu: expected a non-empty JSON array of token ids",
                      path, line_no);
      } else {
        int32_t *g = realloc(row, n * sizeof *g);
        if (!g) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
        else row = g;
        for (size_t i = 0; st == AQS_OK && i < n; i++) {
          json_t *v = json_array_get(arr, i);
          if (!json_is_integer(v) || json_integer_value(v) < 0 ||
              json_integer_value(v) > INT32_MAX)
            st = aqs_errf(e, AQS_ERR_INVALID, "%s:%zu: element %zu is not a token id", path,
                          line_no, i);
          else row[i] = (int32_t)json_integer_value(v);
        }
        if (st == AQS_OK) st = push_seq(tb, row, (int32_t)n, e);
        if (st == AQS_OK && ++in_batch == batch_seqs) {
          st = push_batch(tb, spans, first, in_batch, e);
          first = tb->n_seqs;
          in_batch = 0;
        }
      }
      json_decref(arr);
    }
    line = nl ? nl + 1 : NULL;
  }
  if (st == AQS_OK && in_batch > 0) st = push_batch(tb, spans, first, in_batch, e);
  if (st == AQS_OK && tb->n_seqs == before)
    st = aqs_errf(e, AQS_ERR_INVALID, "%s: no token sequences", path);
  free(row);
  return st;
}

aqs_status aqs_token_batches_read(const char *path, int batch_seqs, aqs_token_batches *tb,
                                  aqs_err *e) {
  if (batch_seqs < 1) return aqs_errf(e, AQS_ERR_INVALID, "batch size must be >= 1");
  char *buf;
  size_t len;
  aqs_status rd = aqs_file_read_input(path, AQS_INPUT_TOKENS, &buf, &len, e);
  if (rd) return rd;
  batch_span *spans = spans_of(tb);
  aqs_status st = spans ? AQS_OK : aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  if (st == AQS_OK) {
    if (len >= 8 && memcmp(buf, "AQSCALC1", 8) == 0)
      st = read_chunk(path, (const uint8_t *)buf, len, tb, &spans, e);
    else
      st = read_jsonl(path, buf, batch_seqs, tb, &spans, e);
  }
  if (st == AQS_OK) st = rebuild_views(tb, spans, e);
  free(spans);
  free(buf);
  return st;
}

void aqs_token_batches_free(aqs_token_batches *tb) {
  free(tb->batches);
  free(tb->ids);
  free(tb->lens);
  memset(tb, 0, sizeof *tb);
}

static aqs_status batch_of(void *ctx, size_t i, aqs_token_batch *batch, const aqs_lm **lm, aqs_err *e) {
  (void)e;
  const aqs_token_batches_ctx *c = ctx;
  *batch = c->tb->batches[i];
  *lm = c->lm;
  return AQS_OK;
}

void aqs_token_batches_loop(aqs_token_batches_ctx *ctx, aqs_batch_loop *loop) {
  *loop = (aqs_batch_loop){.n = ctx->tb->n, .unit = "batch", .progress_total = (uint64_t)ctx->tb->n_tokens,
                           .ctx = ctx, .batch = batch_of};
}
