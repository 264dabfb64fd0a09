/* engine/calib/prompt.h: turning one caption (and optionally one image's token count) into the
 * token ids of a calibration sequence: the template, the Qwen2-VL vision placeholder
 * <|vision_start|> + n x <|image_pad|> + <|vision_end|> before the caption, and truncation. */
#ifndef AQS_CALIB_PROMPT_H
#define AQS_CALIB_PROMPT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/tokenizer/tokenizer.h"

/* Templates are those of engine/calib/captions.h (aqs_caption_template_resolve): "none", "chat",
 * "chat-system" or any text holding "{caption}" once; for image rows the vision placeholder is
 * part of what replaces {caption}. */

/* Special token ids the image prompt needs (-1 when the tokenizer lacks them). */
typedef struct aqs_vision_ids {
  int32_t vision_start, image_pad, vision_end;
} aqs_vision_ids;
void aqs_vision_ids_lookup(const aqs_tokenizer *tok, aqs_vision_ids *ids);

/* Encodes one sequence into out (cleared first); template_text is a resolved template. n_image_tokens < 0: text only; otherwise the
 * vision placeholder with that many pads precedes the caption and *image_start receives the
 * position of the first <|image_pad|>. Sequences longer than max_len are truncated at the end;
 * an image placeholder that would not fit whole is AQS_ERR_INVALID ("needs N tokens, more than
 * --max-len M"). Errors from the tokenizer (invalid UTF-8) pass through. */
aqs_status aqs_calib_prompt_encode(aqs_tokenizer *tok, const char *template_text, const char *caption,
                                   size_t caption_len, int64_t n_image_tokens, int32_t max_len,
                                   aqs_token_ids *out, int32_t *image_start, aqs_err *err);

#endif
