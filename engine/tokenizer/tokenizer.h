/* engine/tokenizer/tokenizer.h: byte-level BPE tokenizer read from a Hugging Face tokenizer.json
 * of the Qwen2 family (Qwen2, Qwen2.5, Qwen2.5-VL, Qwen3), equal to HF `tokenizers` token for token.
 * Pipeline: added/special tokens split out first, NFC, the file's split regex, byte-level, BPE. */
#ifndef AQS_ENGINE_TOKENIZER_H
#define AQS_ENGINE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* What a tokenizer.json may contain (anything else fails to load with AQS_ERR_UNSUPPORTED,
 * naming the file and the JSON path of the unsupported part):
 *   model: BPE with byte-level vocabulary (merges as "a b" strings or [a, b] pairs),
 *          ignore_merges, no dropout, no continuing_subword_prefix / end_of_word_suffix;
 *   normalizer: null, NFC, or a Sequence of those;
 *   pre_tokenizer: Sequence of Split (Regex or String pattern, behavior Isolated or Removed,
 *          invert false) and ByteLevel (use_regex false), or a lone ByteLevel (use_regex true
 *          means GPT-2's regex; add_prefix_space honoured);
 *   decoder: ByteLevel (or null: same byte-level mapping is applied);
 *   added_tokens: matched leftmost-longest before normalization (normalized=false) or after it
 *          (normalized=true); lstrip / rstrip honoured; single_word honoured.
 * post_processor ByteLevel (trim_offsets only) adds no tokens and is accepted. */

typedef struct aqs_tokenizer aqs_tokenizer;

/* A growable list of token ids. Zero-initialize, append with encode, release with
 * aqs_token_ids_free. ids[0..len) are valid; cap is the allocated capacity. */
typedef struct aqs_token_ids {
  int32_t *ids;
  size_t len;
  size_t cap;
} aqs_token_ids;

void aqs_token_ids_free(aqs_token_ids *ids);

/* Loads a tokenizer.json file. On success *out owns the tokenizer (free with aqs_tokenizer_free).
 * Errors: AQS_ERR_NOT_FOUND / AQS_ERR_IO (file), AQS_ERR_INVALID (bad JSON, bad merge, regex that
 * does not compile: message names the file and the JSON path), AQS_ERR_UNSUPPORTED (see above),
 * AQS_ERR_NOMEM. */
aqs_status aqs_tokenizer_load(const char *path, aqs_tokenizer **out, aqs_err *err);

/* Same from the file's bytes; source_name is used in error messages only. */
aqs_status aqs_tokenizer_load_json(const char *json_text, size_t json_len, const char *source_name,
                                   aqs_tokenizer **out, aqs_err *err);

void aqs_tokenizer_free(aqs_tokenizer *tok);

/* Encodes text[0..len) (UTF-8, may contain NUL bytes and newlines) and APPENDS the ids to *out.
 * Added tokens in the text ("<|im_start|>", "<|image_pad|>", ...) become their ids, as HF
 * `tokenizers` does by default; no BOS/EOS is added (Qwen adds none).
 * Errors: AQS_ERR_INVALID when text is not valid UTF-8 (message gives the byte offset),
 * AQS_ERR_NOMEM. On error *out keeps what it held before the call.
 * Not thread-safe: encode fills a per-tokenizer cache of pre-token -> ids. Use one tokenizer per
 * thread (loading is ~0.5 s for Qwen's 151k vocabulary). */
aqs_status aqs_tokenizer_encode(aqs_tokenizer *tok, const char *text, size_t len, aqs_token_ids *out,
                                aqs_err *err);

/* Decode flags. */
enum {
  AQS_DECODE_SKIP_SPECIAL = 1 /* drop added tokens marked "special": true (HF skip_special_tokens) */
};

/* Decodes ids[0..n) to UTF-8 text, as HF `tokenizers` decode(ids, skip_special_tokens) does:
 * byte-level tokens are mapped back to bytes, added tokens to their content, and byte sequences
 * that are not valid UTF-8 (a split multi-byte character) become U+FFFD per invalid part.
 * *text_out is malloc'd, NUL-terminated, owned by the caller; *len_out (may be NULL) gets its
 * length. Errors: AQS_ERR_INVALID for an id outside the vocabulary (message names the id and its
 * index), AQS_ERR_NOMEM. Thread-safe (reads only). */
aqs_status aqs_tokenizer_decode(const aqs_tokenizer *tok, const int32_t *ids, size_t n, int flags,
                                char **text_out, size_t *len_out, aqs_err *err);

/* Id of a token given by its vocabulary spelling (byte-level form for BPE tokens, e.g. "Ġthe",
 * literal content for added tokens, e.g. "<|im_end|>"); -1 if absent. */
int32_t aqs_tokenizer_token_to_id(const aqs_tokenizer *tok, const char *token);

/* Vocabulary spelling of an id (borrowed, valid while tok lives); NULL if the id is unused. */
const char *aqs_tokenizer_id_to_token(const aqs_tokenizer *tok, int32_t id);

/* One more than the largest id in the vocabulary or added tokens (151669 for the Qwen3 file). */
size_t aqs_tokenizer_vocab_size(const aqs_tokenizer *tok);

/* 1 when id is an added token marked "special": true, else 0. */
int aqs_tokenizer_is_special(const aqs_tokenizer *tok, int32_t id);

#endif
