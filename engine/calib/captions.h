/* engine/calib/captions.h: the caption calibration input: a UTF-8 text file with one caption per
 * line -> validated captions (every bad line named by its number) -> a seeded sample -> optional
 * chat template -> token sequences cut to a maximum length -> calib-set chunks (calibset.h). */
#ifndef AQS_CALIB_CAPTIONS_H
#define AQS_CALIB_CAPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/calib/calibset.h"
#include "engine/tokenizer/tokenizer.h"

/* ---- reading ---- */

/* Longest caption line accepted by default, in bytes (without its line ending). */
#define AQS_CAPTION_DEFAULT_MAX_LINE_BYTES 65536

/* Why a line is not a usable caption. */
typedef enum aqs_caption_problem {
  AQS_CAPTION_INVALID_UTF8 = 1, /* not valid UTF-8, or holds a NUL byte (byte_offset says where) */
  AQS_CAPTION_EMPTY = 2,        /* nothing, or only white space */
  AQS_CAPTION_TOO_LONG = 3      /* more than max_line_bytes bytes */
} aqs_caption_problem;

/* "invalid UTF-8", "empty", "too long". */
const char *aqs_caption_problem_name(aqs_caption_problem p);

typedef struct aqs_caption_issue {
  int64_t line;               /* 1-based line number */
  aqs_caption_problem problem;
  size_t byte_offset;         /* INVALID_UTF8: offset of the bad byte within the line */
  size_t line_bytes;          /* length of the line (without its line ending) */
} aqs_caption_issue;

typedef struct aqs_caption_read_opts {
  size_t max_line_bytes; /* 0 = AQS_CAPTION_DEFAULT_MAX_LINE_BYTES */
  int skip_bad;          /* 1: bad lines are skipped and listed in issues; 0: they are an error */
} aqs_caption_read_opts;

typedef struct aqs_caption {
  int64_t line; /* 1-based line number in the file */
  char *text;   /* NUL-terminated UTF-8, without "\n" / "\r\n" (and without a leading BOM) */
  size_t len;
} aqs_caption;

typedef struct aqs_captions {
  aqs_caption *items;        /* (n) good captions in file order */
  int64_t n;
  int64_t n_lines;           /* lines read (a final line without '\n' counts) */
  aqs_caption_issue *issues; /* (n_issues) bad lines in file order: skipped ones under skip_bad */
  int64_t n_issues;
  int64_t n_invalid_utf8, n_too_long; /* issues by problem */
  int64_t n_empty;           /* blank (empty or white-space) lines: not captions, skipped silently */
} aqs_captions;

/* Parses a caption file. Lines end at '\n'; a trailing '\r' is dropped (CRLF files), a UTF-8 BOM
 * at the start of the file is dropped; the text is otherwise kept byte for byte (no trimming).
 * Blank lines (empty or white space only) are not captions: they are skipped and counted in
 * n_empty, never an issue.
 * Without skip_bad, any bad line makes the call fail with AQS_ERR_INVALID and a message listing
 * the bad lines ("captions.txt:7: invalid UTF-8 at byte 12; captions.txt:9: line too long ... (N bad
 * lines; --skip-bad skips them)"); *out is then empty. With skip_bad they are left out, listed in
 * out->issues and counted. Errors also: AQS_ERR_NOT_FOUND / AQS_ERR_IO naming the file,
 * AQS_ERR_NOMEM. Free with aqs_captions_free. */
aqs_status aqs_captions_read(const char *path, const aqs_caption_read_opts *opts, aqs_captions *out,
                             aqs_err *err);
/* Same over bytes in memory; source_name names them in messages. */
aqs_status aqs_captions_parse(const char *data, size_t len, const char *source_name,
                              const aqs_caption_read_opts *opts, aqs_captions *out, aqs_err *err);
void aqs_captions_free(aqs_captions *caps);

/* ---- templates ---- */

/* Resolves a template name or text to its text. Names: "none" (or NULL) = "{caption}";
 * "chat" = "<|im_start|>user\n{caption}<|im_end|>\n" (one Qwen chat user turn); "chat-system" =
 * Qwen2.5's default system turn ("You are a helpful assistant."), the user turn and the assistant
 * generation prompt "<|im_start|>assistant\n". Any other text must hold "{caption}" exactly once
 * and is used as is. Returns the template (static or spec itself); AQS_ERR_INVALID otherwise. */
aqs_status aqs_caption_template_resolve(const char *spec, const char **template_out, aqs_err *err);

/* template with "{caption}" replaced by caption[0..caption_len); *out malloc'd, NUL-terminated. */
aqs_status aqs_caption_template_apply(const char *template_text, const char *caption,
                                      size_t caption_len, char **out, size_t *out_len, aqs_err *err);

/* ---- sampling and tokenization ---- */

typedef struct aqs_caption_seq_opts {
  int64_t samples;        /* captions to take; 0 = all of them (in sampled order) */
  uint64_t seed;          /* sampling seed */
  const char *template_spec; /* see aqs_caption_template_resolve; NULL = "none" */
  int32_t max_seq_len;    /* sequences longer than this are cut at the end; 0 = no limit */
} aqs_caption_seq_opts;

/* Token sequences of the sampled captions, packed: sequence s is
 * token_ids[seq_offsets[s] .. seq_offsets[s] + seq_lens[s]). */
typedef struct aqs_caption_seqs {
  int64_t n_seqs;
  int32_t *seq_lens;      /* (n_seqs), each >= 1 */
  int64_t *seq_offsets;   /* (n_seqs + 1) prefix sums */
  int32_t *token_ids;     /* (n_tokens) */
  int64_t n_tokens;
  int64_t *source_line;   /* (n_seqs) line of the caption in the file */
  int64_t n_truncated;    /* sequences cut to max_seq_len */
} aqs_caption_seqs;

/* Sample order: sequence s is caption caps->items[order[s]], order from aqs_calib_sample_order
 * (seeded forward Fisher-Yates over splitmix64, prefix-stable: the first 128 of 256 samples are
 * the 128 samples of the same seed). Each caption goes through the template, then
 * aqs_tokenizer_encode, then the cut to max_seq_len. Errors: AQS_ERR_INVALID when samples exceeds
 * the usable captions ("asked for 500 samples; captions.txt has 320 usable captions"), a bad
 * template, or a caption that encodes to no tokens; AQS_ERR_NOMEM. Free with
 * aqs_caption_seqs_free. */
aqs_status aqs_captions_to_seqs(const aqs_captions *caps, aqs_tokenizer *tok,
                                const aqs_caption_seq_opts *opts, aqs_caption_seqs *out,
                                aqs_err *err);
void aqs_caption_seqs_free(aqs_caption_seqs *seqs);

/* Packs sequences [first_seq, first_seq + n_seqs) into a text chunk of the calib-set format
 * (n_images = 0, patch_dim = 0; first_seq recorded). AQS_ERR_INVALID for a range outside seqs,
 * AQS_ERR_NOMEM. Free with aqs_calib_chunk_free. */
aqs_status aqs_caption_seqs_chunk(const aqs_caption_seqs *seqs, int64_t first_seq, int32_t n_seqs,
                                  aqs_calib_chunk *chunk, aqs_err *err);

#endif
