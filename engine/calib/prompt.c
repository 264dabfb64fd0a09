/* engine/calib/prompt.c: prompt assembly for calibration sequences (see prompt.h). The whole
 * prompt is built as text (placeholders spelled as their added tokens, then the captions.h
 * template) and encoded once, so the ids are exactly what HF `tokenizers` gives for that string. */
#include "engine/calib/prompt.h"

#include "engine/calib/captions.h"

#include <stdlib.h>
#include <string.h>

#define VISION_START "<|vision_start|>"
#define IMAGE_PAD "<|image_pad|>"
#define VISION_END "<|vision_end|>"

void aqs_vision_ids_lookup(const aqs_tokenizer *tok, aqs_vision_ids *ids) {
  ids->vision_start = aqs_tokenizer_token_to_id(tok, VISION_START);
  ids->image_pad = aqs_tokenizer_token_to_id(tok, IMAGE_PAD);
  ids->vision_end = aqs_tokenizer_token_to_id(tok, VISION_END);
}

aqs_status aqs_calib_prompt_encode(aqs_tokenizer *tok, const char *template_text, const char *caption,
                                   size_t caption_len, int64_t n_image_tokens, int32_t max_len,
                                   aqs_token_ids *out, int32_t *image_start, aqs_err *err) {
  out->len = 0;
  if (image_start) *image_start = -1;
  aqs_vision_ids vids;
  aqs_vision_ids_lookup(tok, &vids);
  if (n_image_tokens >= 0 && (vids.vision_start < 0 || vids.image_pad < 0 || vids.vision_end < 0))
    return aqs_errf(err, AQS_ERR_UNSUPPORTED,
                    "tokenizer has no %s / %s / %s tokens: not a Qwen2-VL tokenizer", VISION_START,
                    IMAGE_PAD, VISION_END);
  if (n_image_tokens > (int64_t)max_len)
    return aqs_errf(err, AQS_ERR_INVALID, "image needs %lld tokens, more than --max-len %d",
                    (long long)n_image_tokens + 2, max_len);
  size_t pads = n_image_tokens > 0 ? (size_t)n_image_tokens : 0;
  size_t cap = caption_len + pads * strlen(IMAGE_PAD) + strlen(VISION_START) + strlen(VISION_END) + 1;
  char *body = malloc(cap), *p = body;
  if (!body) return aqs_errf(err, AQS_ERR_NOMEM, "prompt: out of memory");
#define APPEND(s, n) (memcpy(p, (s), (n)), p += (n))
  if (n_image_tokens >= 0) {
    APPEND(VISION_START, strlen(VISION_START));
    for (size_t i = 0; i < pads; i++) APPEND(IMAGE_PAD, strlen(IMAGE_PAD));
    APPEND(VISION_END, strlen(VISION_END));
  }
  APPEND(caption, caption_len);
#undef APPEND
  char *text = NULL;
  size_t text_len = 0;
  aqs_status tst = aqs_caption_template_apply(template_text, body, (size_t)(p - body), &text, &text_len, err);
  free(body);
  if (tst != AQS_OK) return tst;
  aqs_status st = aqs_tokenizer_encode(tok, text, text_len, out, err);
  free(text);
  if (st != AQS_OK) return st;
  /* The vision placeholder is aqs's: a caption holding vision tokens of its own would put image
   * pads where no image features go (or a second image the row does not have). */
  size_t n_pad = 0, n_start = 0, n_end = 0;
  for (size_t i = 0; i < out->len; i++) {
    n_pad += out->ids[i] == vids.image_pad && vids.image_pad >= 0;
    n_start += out->ids[i] == vids.vision_start && vids.vision_start >= 0;
    n_end += out->ids[i] == vids.vision_end && vids.vision_end >= 0;
  }
  size_t want_marks = n_image_tokens >= 0 ? 1 : 0;
  if (n_pad != pads || n_start != want_marks || n_end != want_marks)
    return aqs_errf(err, AQS_ERR_INVALID,
                    "caption holds vision tokens of its own (%zu %s, %zu %s, %zu %s beyond the "
                    "image placeholder aqs inserts): remove them from the caption",
                    n_pad - (n_pad >= pads ? pads : n_pad), IMAGE_PAD, n_start - (n_start >= want_marks ? want_marks : n_start),
                    VISION_START, n_end - (n_end >= want_marks ? want_marks : n_end), VISION_END);
  if (n_image_tokens >= 0) {
    size_t first = 0;
    while (first < out->len && out->ids[first] != vids.image_pad) first++;
    size_t need = first + pads + 1; /* through <|vision_end|> */
    if (need > (size_t)max_len)
      return aqs_errf(err, AQS_ERR_INVALID, "image needs %zu tokens, more than --max-len %d", need,
                      max_len);
    if (image_start) *image_start = (int32_t)first;
  }
  if (out->len > (size_t)max_len) out->len = (size_t)max_len;
  if (out->len == 0) return aqs_errf(err, AQS_ERR_INVALID, "caption encodes to no tokens");
  return AQS_OK;
}
