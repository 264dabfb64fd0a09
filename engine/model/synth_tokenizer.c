/* engine/model/synth_tokenizer.c: writes the synthetic model's byte-level BPE tokenizer
 * (tokenizer.json in the Hugging Face `tokenizers` format, Qwen2's pre-tokenizer regex) and
 * tokenizer_config.json. Vocabulary: the 256 byte tokens (GPT-2 byte-to-unicode order), merges
 * spelling common English words, then deterministic filler merges up to the preset's regular
 * token count, then Qwen2.5-VL's 22 added tokens (<|endoftext|> ... <|file_sep|>). */
#include "engine/model/synth_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Qwen2.5-VL's added tokens, in id order after the regular vocabulary. */
static const struct {
  const char *content;
  int special;
} added_tokens[] = {
  {"<|endoftext|>", 1},    {"<|im_start|>", 1},     {"<|im_end|>", 1},
  {"<|object_ref_start|>", 1}, {"<|object_ref_end|>", 1}, {"<|box_start|>", 1},
  {"<|box_end|>", 1},      {"<|quad_start|>", 1},   {"<|quad_end|>", 1},
  {"<|vision_start|>", 1}, {"<|vision_end|>", 1},   {"<|vision_pad|>", 1},
  {"<|image_pad|>", 1},    {"<|video_pad|>", 1},    {"<tool_call>", 0},
  {"</tool_call>", 0},     {"<|fim_prefix|>", 0},   {"<|fim_middle|>", 0},
  {"<|fim_suffix|>", 0},   {"<|fim_pad|>", 0},      {"<|repo_name|>", 0},
  {"<|file_sep|>", 0},
};
#define N_ADDED ((int)(sizeof added_tokens / sizeof added_tokens[0]))

/* Words spelled by the first merges (with and without a leading space). */
static const char *const common_words[] = {
  "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be",
  "at", "by", "this", "are", "from", "or", "an", "image", "picture", "photo", "shows", "what",
  "color", "red", "blue", "green", "white", "black", "cat", "dog", "man", "woman", "person",
  "there", "which", "one", "two", "three", "a", "I", "you", "he", "she", "we", "they", "can",
  "not", "have", "has", "had", "will", "would", "there", "their", "about", "describe", "text",
  "model", "quant", "ization", "ing", "ed", "er", "es", "ly", "tion", "ment", "ness", "able",
  "The", "A", "In", "It", "This", "What", "How", "user", "assistant", "system", "helpful",
  NULL};

/* Characters appended by the filler merges, most frequent English letters first. */
static const char filler_chars[] = "etaoinshrdlcumwfgypbvkjxqz0123456789.,";

typedef struct vocab_builder {
  json_t *vocab;      /* token string -> id */
  json_t *merges;     /* ["A B", ...] */
  char **tokens;      /* id -> token string (owned by vocab keys' copies) */
  int ntokens, target;
} vocab_builder;

/* GPT-2 byte-to-unicode: printable bytes map to themselves, the rest to U+0100 + k. */
static void byte_to_utf8(int byte, char out[3]) {
  int cp;
  if ((byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174 && byte <= 255)) {
    cp = byte;
  } else {
    int k = 0;
    for (int b = 0; b < byte; b++)
      if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) k++;
    cp = 256 + k;
  }
  if (cp < 0x80) {
    out[0] = (char)cp;
    out[1] = 0;
  } else {
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    out[2] = 0;
  }
}

static int add_token(vocab_builder *b, const char *s) {
  if (b->ntokens >= b->target || json_object_get(b->vocab, s)) return 0;
  char *copy = strdup(s);
  if (!copy) return -1;
  b->tokens[b->ntokens] = copy;
  json_object_set_new(b->vocab, s, json_integer(b->ntokens));
  b->ntokens++;
  return 1;
}

/* Adds token left+right with merge "left right" (both must exist). */
static int add_merge(vocab_builder *b, const char *left, const char *right) {
  char joined[256], merge[256];
  size_t nl = strlen(left), nr = strlen(right);
  if (nl + nr + 1 >= sizeof joined) return 0;
  memcpy(joined, left, nl);
  memcpy(joined + nl, right, nr + 1);
  int added = add_token(b, joined);
  if (added == 1) {
    memcpy(merge, left, nl);
    merge[nl] = ' ';
    memcpy(merge + nl + 1, right, nr + 1);
    json_array_append_new(b->merges, json_string(merge));
  }
  return added;
}

/* Spells word (ASCII) left to right, adding each missing prefix as a merge. */
static void spell_word(vocab_builder *b, const char *word, int leading_space) {
  char cur[128] = "", ch[3];
  if (leading_space) byte_to_utf8(' ', cur);
  for (const char *p = word; *p && b->ntokens < b->target; p++) {
    byte_to_utf8((unsigned char)*p, ch);
    if (!cur[0]) {
      snprintf(cur, sizeof cur, "%s", ch);
      continue;
    }
    add_merge(b, cur, ch);
    size_t n = strlen(cur);
    if (n + strlen(ch) >= sizeof cur) return;
    strcat(cur, ch);
  }
}

static json_t *build_model(const aqs_qwen_config *cfg, int regular) {
  vocab_builder b = {json_object(), json_array(), calloc((size_t)regular, sizeof(char *)), 0, regular};
  json_t *model = NULL;
  if (!b.vocab || !b.merges || !b.tokens) goto done;
  static const int order_ranges[][2] = {{33, 126}, {161, 172}, {174, 255}};
  char ch[3];
  for (int r = 0; r < 3; r++)
    for (int c = order_ranges[r][0]; c <= order_ranges[r][1]; c++) {
      byte_to_utf8(c, ch);
      add_token(&b, ch);
    }
  for (int c = 0; c < 256; c++) {
    byte_to_utf8(c, ch);
    add_token(&b, ch);
  }
  for (int i = 0; common_words[i]; i++) {
    spell_word(&b, common_words[i], 1);
    spell_word(&b, common_words[i], 0);
  }
  /* Filler: extend every token (in id order, the list growing as we go) by frequent chars. */
  for (int k = 256; b.ntokens < b.target && k < b.ntokens; k++)
    for (const char *f = filler_chars; *f && b.ntokens < b.target; f++) {
      byte_to_utf8((unsigned char)*f, ch);
      add_merge(&b, b.tokens[k], ch);
    }
  (void)cfg;
  if (b.ntokens < b.target) goto done; /* vocabulary too small to fill: cannot happen for presets */
  model = json_pack("{s:s, s:n, s:n, s:s, s:s, s:b, s:b, s:b, s:O, s:O}", "type", "BPE", "dropout",
                    "unk_token", "continuing_subword_prefix", "", "end_of_word_suffix", "",
                    "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 0, "vocab", b.vocab,
                    "merges", b.merges);
done:
  for (int i = 0; i < b.ntokens; i++) free(b.tokens[i]);
  free(b.tokens);
  json_decref(b.vocab);
  json_decref(b.merges);
  return model;
}

/* Qwen2's split regex (contractions, letters, single digits, punctuation runs, newlines, spaces). */
static const char qwen_split_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static json_t *byte_level(void) {
  return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                   "trim_offsets", 0, "use_regex", 0);
}

static json_t *added_json(int regular) {
  json_t *arr = json_array();
  for (int i = 0; i < N_ADDED; i++)
    json_array_append_new(arr, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", regular + i,
                                         "content", added_tokens[i].content, "single_word", 0,
                                         "lstrip", 0, "rstrip", 0, "normalized", 0, "special",
                                         added_tokens[i].special));
  return arr;
}

static char *tokenizer_json(const aqs_qwen_config *cfg, int regular) {
  json_t *model = build_model(cfg, regular);
  if (!model) return NULL;
  json_t *split = json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex",
                            qwen_split_regex, "behavior", "Isolated", "invert", 0);
  json_t *root = json_pack("{s:s, s:n, s:n, s:o, s:{s:s}, s:{s:s, s:[o, o]}, s:o, s:o, s:o}",
                           "version", "1.0", "truncation", "padding", "added_tokens",
                           added_json(regular), "normalizer", "type", "NFC", "pre_tokenizer",
                           "type", "Sequence", "pretokenizers", split, byte_level(),
                           "post_processor", byte_level(), "decoder", byte_level(), "model", model);
  if (!root) return NULL;
  char *text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
  json_decref(root);
  return text;
}

/* A short Qwen-style chat template: system prompt, user/assistant turns, image placeholders. */
static const char chat_template[] =
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

static char *tokenizer_config_json(const aqs_qwen_config *cfg, int regular) {
  json_t *decoder = json_object();
  for (int i = 0; i < N_ADDED; i++) {
    char id[16];
    snprintf(id, sizeof id, "%d", regular + i);
    json_object_set_new(decoder, id,
                        json_pack("{s:s, s:b, s:b, s:b, s:b, s:b}", "content",
                                  added_tokens[i].content, "lstrip", 0, "normalized", 0, "rstrip", 0,
                                  "single_word", 0, "special", added_tokens[i].special));
  }
  json_t *extra = json_array();
  for (int i = 1; i < 14; i++) json_array_append_new(extra, json_string(added_tokens[i].content));
  json_t *root = json_pack(
      "{s:b, s:b, s:o, s:o, s:n, s:s, s:b, s:s, s:s, s:i, s:s, s:b, s:s, s:n}", "add_bos_token", 0,
      "add_prefix_space", 0, "added_tokens_decoder", decoder, "additional_special_tokens", extra,
      "bos_token", "chat_template", chat_template, "clean_up_tokenization_spaces", 0, "eos_token",
      "<|im_end|>", "errors", "replace", "model_max_length", cfg->text.max_position_embeddings,
      "pad_token", "<|endoftext|>", "split_special_tokens", 0, "tokenizer_class", "Qwen2Tokenizer",
      "unk_token");
  if (!root) return NULL;
  char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(root);
  return text;
}

int aqs_synth_regular_tokens(const aqs_qwen_config *cfg) {
  return cfg->bos_token_id; /* <|endoftext|> is the first added token */
}

aqs_status aqs_synth_write_tokenizer(const char *dir, const aqs_qwen_config *cfg, aqs_err *e) {
  int regular = aqs_synth_regular_tokens(cfg);
  if (regular < 512 || regular + N_ADDED > cfg->text.vocab_size)
    return aqs_errf(e, AQS_ERR_INVALID,
                    "synthetic tokenizer needs 512 <= regular tokens (%d) and regular + %d <= "
                    "vocab_size %d",
                    regular, N_ADDED, cfg->text.vocab_size);
  char *tok = tokenizer_json(cfg, regular);
  if (!tok) return aqs_errf(e, AQS_ERR_NOMEM, "%s/tokenizer.json: cannot build the vocabulary", dir);
  aqs_status st = aqs_synth_write_text(dir, "tokenizer.json", tok, e);
  free(tok);
  if (st) return st;
  char *conf = tokenizer_config_json(cfg, regular);
  if (!conf) return aqs_errf(e, AQS_ERR_NOMEM, "%s/tokenizer_config.json: out of memory", dir);
  st = aqs_synth_write_text(dir, "tokenizer_config.json", conf, e);
  free(conf);
  return st;
}
