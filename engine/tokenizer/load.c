/* engine/tokenizer/load.c: reads a Hugging Face tokenizer.json (jansson) into an aqs_tokenizer:
 * vocabulary, merges, added tokens, normalizer, pre-tokenizer chain and decoder. Anything the
 * encoder would not reproduce exactly is refused with AQS_ERR_UNSUPPORTED naming its JSON path. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "engine/tokenizer/tok_internal.h"
#include "engine/tokenizer/utf8.h"

typedef struct load_ctx {
  const char *source; /* file name for messages */
  aqs_err *err;
} load_ctx;

static const char *type_of(json_t *obj) {
  json_t *t = json_object_get(obj, "type");
  return json_is_string(t) ? json_string_value(t) : NULL;
}

static int flag_of(json_t *obj, const char *key, int default_value) {
  json_t *v = json_object_get(obj, key);
  return v && json_is_boolean(v) ? json_is_true(v) : default_value;
}

static aqs_status load_normalizer(aqs_tokenizer *tok, json_t *norm, const char *path, load_ctx *lc) {
  if (!norm || json_is_null(norm)) return AQS_OK;
  const char *type = type_of(norm);
  if (type && strcmp(type, "NFC") == 0) {
    tok->nfc = 1;
    return AQS_OK;
  }
  if (type && strcmp(type, "Sequence") == 0) {
    json_t *list = json_object_get(norm, "normalizers");
    size_t i;
    json_t *item;
    char sub[256];
    json_array_foreach(list, i, item) {
      snprintf(sub, sizeof sub, "%s.normalizers[%zu]", path, i);
      aqs_status st = load_normalizer(tok, item, sub, lc);
      if (st) return st;
    }
    return AQS_OK;
  }
  return aqs_errf(lc->err, AQS_ERR_UNSUPPORTED, "%s: %s: normalizer type '%s' is not supported",
                  lc->source, path, type ? type : "?");
}

static aqs_status load_split(aqs_tokenizer *tok, json_t *split, const char *path, load_ctx *lc) {
  json_t *pattern = json_object_get(split, "pattern");
  json_t *regex = json_object_get(pattern, "Regex");
  json_t *literal = json_object_get(pattern, "String");
  json_t *text = json_is_string(regex) ? regex : literal;
  if (!json_is_string(text))
    return aqs_errf(lc->err, AQS_ERR_INVALID, "%s: %s.pattern: expected {\"Regex\": ...} or "
                    "{\"String\": ...}", lc->source, path);
  json_t *behavior_json = json_object_get(split, "behavior");
  const char *behavior = json_is_string(behavior_json) ? json_string_value(behavior_json) : "?";
  tok_split_behavior b;
  if (strcmp(behavior, "Isolated") == 0) b = TOK_SPLIT_ISOLATED;
  else if (strcmp(behavior, "Removed") == 0) b = TOK_SPLIT_REMOVED;
  else
    return aqs_errf(lc->err, AQS_ERR_UNSUPPORTED, "%s: %s.behavior: '%s' is not supported "
                    "(Isolated, Removed)", lc->source, path, behavior);
  if (flag_of(split, "invert", 0))
    return aqs_errf(lc->err, AQS_ERR_UNSUPPORTED, "%s: %s.invert: true is not supported",
                    lc->source, path);
  char where[512];
  snprintf(where, sizeof where, "%s: %s.pattern", lc->source, path);
  return tok_pretok_add_step(&tok->pretok, json_string_value(text), json_string_length(text),
                             text == literal, b, 0, where, lc->err);
}

/* One pre-tokenizer; *saw_bytelevel is set when it is (or contains) a ByteLevel step. */
static aqs_status load_pretok(aqs_tokenizer *tok, json_t *pre, const char *path, int *saw_bytelevel,
                              load_ctx *lc) {
  const char *type = type_of(pre);
  if (type && strcmp(type, "Sequence") == 0) {
    json_t *list = json_object_get(pre, "pretokenizers");
    size_t i;
    json_t *item;
    char sub[256];
    json_array_foreach(list, i, item) {
      snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", path, i);
      aqs_status st = load_pretok(tok, item, sub, saw_bytelevel, lc);
      if (st) return st;
    }
    return AQS_OK;
  }
  if (type && strcmp(type, "Split") == 0) return load_split(tok, pre, path, lc);
  if (type && strcmp(type, "ByteLevel") == 0) {
    *saw_bytelevel = 1;
    int use_regex = flag_of(pre, "use_regex", 1);
    char where[512];
    snprintf(where, sizeof where, "%s: %s", lc->source, path);
    return tok_pretok_add_step(&tok->pretok, use_regex ? tok_gpt2_pattern : NULL,
                               use_regex ? strlen(tok_gpt2_pattern) : 0, 0, TOK_SPLIT_ISOLATED,
                               flag_of(pre, "add_prefix_space", 0), where, lc->err);
  }
  return aqs_errf(lc->err, AQS_ERR_UNSUPPORTED, "%s: %s: pre-tokenizer type '%s' is not supported",
                  lc->source, path, type ? type : "?");
}

static aqs_status check_model_options(json_t *model, load_ctx *lc) {
  const char *type = type_of(model);
  if (type && strcmp(type, "BPE") != 0)
    return aqs_errf(lc->err, AQS_ERR_UNSUPPORTED, "%s: model.type: '%s' is not supported (BPE)",
                    lc->source, type);
  json_t *dropout = json_object_get(model, "dropout");
  if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0)
    return aqs_errf(lc->err, AQS_ERR_UNSUPPORTED, "%s: model.dropout: BPE dropout is not supported",
                    lc->source);
  static const char *const must_be_empty[] = {"continuing_subword_prefix", "end_of_word_suffix"};
  for (size_t i = 0; i < 2; i++) {
    json_t *v = json_object_get(model, must_be_empty[i]);
    if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
      return aqs_errf(lc->err, AQS_ERR_UNSUPPORTED, "%s: model.%s: must be empty for byte-level "
                      "BPE", lc->source, must_be_empty[i]);
  }
  if (flag_of(model, "byte_fallback", 0))
    return aqs_errf(lc->err, AQS_ERR_UNSUPPORTED, "%s: model.byte_fallback: true is not supported",
                    lc->source);
  return AQS_OK;
}

typedef struct vocab_id {
  json_int_t id;
  const char *token;
} vocab_id;

static int cmp_vocab_id(const void *a, const void *b) {
  const vocab_id *x = a, *y = b;
  if (x->id != y->id) return x->id < y->id ? -1 : 1;
  return strcmp(x->token, y->token);
}

/* Two tokens with one id would make decoding ambiguous (which spelling is id N?): refused. */
static aqs_status check_unique_ids(json_t *vocab, load_ctx *lc) {
  size_t n = json_object_size(vocab), i = 0;
  vocab_id *ids = malloc((n ? n : 1) * sizeof *ids);
  if (!ids) return aqs_errf(lc->err, AQS_ERR_NOMEM, "%s: out of memory loading the vocabulary", lc->source);
  const char *key;
  json_t *value;
  json_object_foreach(vocab, key, value) ids[i++] = (vocab_id){json_integer_value(value), key};
  qsort(ids, n, sizeof *ids, cmp_vocab_id);
  aqs_status st = AQS_OK;
  for (i = 1; i < n && st == AQS_OK; i++)
    if (ids[i].id == ids[i - 1].id)
      st = aqs_errf(lc->err, AQS_ERR_INVALID, "%s: model.vocab: id %lld is given to both \"%s\" and \"%s\"",
                    lc->source, (long long)ids[i].id, ids[i - 1].token, ids[i].token);
  free(ids);
  return st;
}

static aqs_status load_vocab(aqs_tokenizer *tok, json_t *vocab, load_ctx *lc) {
  if (!json_is_object(vocab))
    return aqs_errf(lc->err, AQS_ERR_INVALID, "%s: model.vocab: expected an object", lc->source);
  const char *key;
  json_t *value;
  json_object_foreach(vocab, key, value) {
    json_int_t id = json_is_integer(value) ? json_integer_value(value) : -1;
    if (id < 0 || id >= INT32_MAX)
      return aqs_errf(lc->err, AQS_ERR_INVALID, "%s: model.vocab[\"%s\"]: id must be an integer "
                      "in [0, 2^31)", lc->source, key);
    if (tok_strmap_put(&tok->vocab, key, strlen(key), (int32_t)id) != 0)
      return aqs_errf(lc->err, AQS_ERR_NOMEM, "%s: out of memory loading the vocabulary",
                      lc->source);
    if ((size_t)id + 1 > tok->vocab_size) tok->vocab_size = (size_t)id + 1;
  }
  return check_unique_ids(vocab, lc);
}

static aqs_status load_added(aqs_tokenizer *tok, json_t *list, load_ctx *lc) {
  if (!list || json_is_null(list)) return AQS_OK;
  if (!json_is_array(list))
    return aqs_errf(lc->err, AQS_ERR_INVALID, "%s: added_tokens: expected an array", lc->source);
  tok->added = calloc(json_array_size(list) + 1, sizeof *tok->added);
  if (!tok->added) return aqs_errf(lc->err, AQS_ERR_NOMEM, "%s: out of memory", lc->source);
  size_t i;
  json_t *item;
  json_array_foreach(list, i, item) {
    json_t *content = json_object_get(item, "content");
    json_t *id = json_object_get(item, "id");
    if (!json_is_string(content) || !json_is_integer(id) || json_integer_value(id) < 0 ||
        json_integer_value(id) >= INT32_MAX)
      return aqs_errf(lc->err, AQS_ERR_INVALID, "%s: added_tokens[%zu]: needs a string content "
                      "and an integer id", lc->source, i);
    tok_added_token *t = &tok->added[tok->added_count++];
    t->content = strdup(json_string_value(content));
    if (!t->content) return aqs_errf(lc->err, AQS_ERR_NOMEM, "%s: out of memory", lc->source);
    t->len = strlen(t->content);
    t->id = (int32_t)json_integer_value(id);
    t->special = (unsigned)flag_of(item, "special", 0);
    t->lstrip = (unsigned)flag_of(item, "lstrip", 0);
    t->rstrip = (unsigned)flag_of(item, "rstrip", 0);
    t->single_word = (unsigned)flag_of(item, "single_word", 0);
    t->normalized = (unsigned)flag_of(item, "normalized", !t->special);
    if (t->normalized && tok->nfc) { /* HF matches the normalized form of such a token */
      char *nfc = NULL;
      size_t nfc_len = 0;
      if (tok_nfc(t->content, t->len, &nfc, &nfc_len) != 0)
        return aqs_errf(lc->err, AQS_ERR_NOMEM, "%s: out of memory", lc->source);
      if (nfc) {
        free(t->content);
        t->content = nfc;
        t->len = nfc_len;
      }
    }
    if ((size_t)t->id + 1 > tok->vocab_size) tok->vocab_size = (size_t)t->id + 1;
  }
  return AQS_OK;
}

/* One merge as "left right" or ["left", "right"]. */
static aqs_status merge_parts(json_t *item, size_t i, const char **left, size_t *left_len,
                              const char **right, size_t *right_len, load_ctx *lc) {
  if (json_is_array(item) && json_array_size(item) == 2 &&
      json_is_string(json_array_get(item, 0)) && json_is_string(json_array_get(item, 1))) {
    *left = json_string_value(json_array_get(item, 0));
    *left_len = json_string_length(json_array_get(item, 0));
    *right = json_string_value(json_array_get(item, 1));
    *right_len = json_string_length(json_array_get(item, 1));
    return AQS_OK;
  }
  if (json_is_string(item)) {
    const char *s = json_string_value(item);
    const char *space = strchr(s, ' ');
    if (space && !strchr(space + 1, ' ')) {
      *left = s;
      *left_len = (size_t)(space - s);
      *right = space + 1;
      *right_len = strlen(space + 1);
      return AQS_OK;
    }
  }
  return aqs_errf(lc->err, AQS_ERR_INVALID, "%s: model.merges[%zu]: expected \"a b\" or [\"a\", "
                  "\"b\"]", lc->source, i);
}

static aqs_status load_merges(aqs_tokenizer *tok, json_t *merges, load_ctx *lc) {
  if (!json_is_array(merges))
    return aqs_errf(lc->err, AQS_ERR_INVALID, "%s: model.merges: expected an array", lc->source);
  if (tok_bpe_init(&tok->bpe, json_array_size(merges)) != 0)
    return aqs_errf(lc->err, AQS_ERR_NOMEM, "%s: out of memory for merges", lc->source);
  char *joined = NULL;
  size_t joined_cap = 0;
  aqs_status st = AQS_OK;
  size_t i;
  json_t *item;
  json_array_foreach(merges, i, item) {
    const char *left = NULL, *right = NULL;
    size_t left_len = 0, right_len = 0;
    if ((st = merge_parts(item, i, &left, &left_len, &right, &right_len, lc))) break;
    if (left_len + right_len > joined_cap) {
      joined_cap = 2 * (left_len + right_len) + 64;
      char *grown = realloc(joined, joined_cap);
      if (!grown) {
        st = aqs_errf(lc->err, AQS_ERR_NOMEM, "%s: out of memory", lc->source);
        break;
      }
      joined = grown;
    }
    memcpy(joined, left, left_len);
    memcpy(joined + left_len, right, right_len);
    int32_t left_id = tok_strmap_get(&tok->vocab, left, left_len);
    int32_t right_id = tok_strmap_get(&tok->vocab, right, right_len);
    int32_t merged_id = tok_strmap_get(&tok->vocab, joined, left_len + right_len);
    if (left_id < 0 || right_id < 0 || merged_id < 0) {
      st = aqs_errf(lc->err, AQS_ERR_INVALID, "%s: model.merges[%zu]: '%.*s' + '%.*s': %s is not "
                    "in the vocabulary", lc->source, i, (int)left_len, left, (int)right_len, right,
                    left_id < 0 ? "left part" : right_id < 0 ? "right part" : "the merged token");
      break;
    }
    if (tok_bpe_add_merge(&tok->bpe, left_id, right_id, (uint32_t)i, merged_id) != 0) {
      st = aqs_errf(lc->err, AQS_ERR_NOMEM, "%s: out of memory for merges", lc->source);
      break;
    }
  }
  free(joined);
  return st;
}

/* id -> spelling and id -> flags tables, once every map is final. */
static aqs_status build_id_tables(aqs_tokenizer *tok, load_ctx *lc) {
  tok->id_token = calloc(tok->vocab_size + 1, sizeof *tok->id_token);
  tok->id_flags = calloc(tok->vocab_size + 1, 1);
  if (!tok->id_token || !tok->id_flags)
    return aqs_errf(lc->err, AQS_ERR_NOMEM, "%s: out of memory", lc->source);
  for (size_t i = 0; i < tok->vocab.slot_count; i++) {
    const tok_strmap_slot *s = &tok->vocab.slots[i];
    if (s->hash) tok->id_token[s->value] = tok->vocab.arena + s->key_offset;
  }
  for (size_t i = 0; i < tok->added_count; i++) {
    const tok_added_token *t = &tok->added[i];
    tok->id_token[t->id] = t->content;
    tok->id_flags[t->id] = TOK_ID_ADDED | (t->special ? TOK_ID_SPECIAL : 0);
  }
  return AQS_OK;
}

static aqs_status load_byte_ids(aqs_tokenizer *tok, json_t *model, load_ctx *lc) {
  tok_bytelevel_init(&tok->bytelevel);
  for (int b = 0; b < 256; b++) {
    char spelling[4];
    size_t n = tok_utf8_encode(tok->bytelevel.byte_cp[b], spelling);
    tok->bpe.byte_id[b] = tok_strmap_get(&tok->vocab, spelling, n);
  }
  json_t *unk = json_object_get(model, "unk_token");
  if (json_is_string(unk)) {
    tok->bpe.unk_id = tok_strmap_get(&tok->vocab, json_string_value(unk), json_string_length(unk));
    if (tok->bpe.unk_id < 0)
      return aqs_errf(lc->err, AQS_ERR_INVALID, "%s: model.unk_token: '%s' is not in the "
                      "vocabulary", lc->source, json_string_value(unk));
  }
  tok->bpe.fuse_unk = flag_of(model, "fuse_unk", 0);
  tok->bpe.ignore_merges = flag_of(model, "ignore_merges", 0);
  tok->bpe.vocab = &tok->vocab;
  tok->bpe.bytelevel = &tok->bytelevel;
  return AQS_OK;
}

static aqs_status check_decoder(json_t *root, load_ctx *lc) {
  json_t *dec = json_object_get(root, "decoder");
  const char *type = type_of(dec);
  if (dec && !json_is_null(dec) && !(type && strcmp(type, "ByteLevel") == 0))
    return aqs_errf(lc->err, AQS_ERR_UNSUPPORTED, "%s: decoder: type '%s' is not supported "
                    "(ByteLevel)", lc->source, type ? type : "?");
  json_t *post = json_object_get(root, "post_processor");
  type = type_of(post);
  if (post && !json_is_null(post) && !(type && strcmp(type, "ByteLevel") == 0))
    return aqs_errf(lc->err, AQS_ERR_UNSUPPORTED, "%s: post_processor: type '%s' is not supported "
                    "(ByteLevel or null)", lc->source, type ? type : "?");
  return AQS_OK;
}

static aqs_status load_root(aqs_tokenizer *tok, json_t *root, load_ctx *lc) {
  json_t *model = json_object_get(root, "model");
  if (!json_is_object(model))
    return aqs_errf(lc->err, AQS_ERR_INVALID, "%s: no \"model\" object", lc->source);
  aqs_status st;
  if ((st = check_model_options(model, lc)) || (st = check_decoder(root, lc)) ||
      (st = load_normalizer(tok, json_object_get(root, "normalizer"), "normalizer", lc)))
    return st;
  int saw_bytelevel = 0;
  json_t *pre = json_object_get(root, "pre_tokenizer");
  if (pre && !json_is_null(pre) &&
      (st = load_pretok(tok, pre, "pre_tokenizer", &saw_bytelevel, lc)))
    return st;
  if (!saw_bytelevel)
    return aqs_errf(lc->err, AQS_ERR_UNSUPPORTED, "%s: pre_tokenizer: no ByteLevel step: only "
                    "byte-level BPE is supported", lc->source);
  if ((st = load_vocab(tok, json_object_get(model, "vocab"), lc)) ||
      (st = load_merges(tok, json_object_get(model, "merges"), lc)) ||
      (st = load_byte_ids(tok, model, lc)) ||
      (st = load_added(tok, json_object_get(root, "added_tokens"), lc)) ||
      (st = build_id_tables(tok, lc)))
    return st;
  if (tok_added_matcher_build(&tok->added_raw, tok->added, tok->added_count, 0) != 0 ||
      tok_added_matcher_build(&tok->added_normalized, tok->added, tok->added_count, 1) != 0)
    return aqs_errf(lc->err, AQS_ERR_NOMEM, "%s: out of memory", lc->source);
  return AQS_OK;
}

aqs_status aqs_tokenizer_load_json(const char *json_text, size_t json_len, const char *source_name,
                                   aqs_tokenizer **out, aqs_err *err) {
  *out = NULL;
  load_ctx lc = {source_name ? source_name : "tokenizer.json", err};
  json_error_t jerr;
  json_t *root = json_loadb(json_text, json_len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    return aqs_errf(err, AQS_ERR_INVALID, "%s: line %d column %d: %s", lc.source, jerr.line,
                    jerr.column, jerr.text);
  aqs_tokenizer *tok = calloc(1, sizeof *tok);
  if (!tok) {
    json_decref(root);
    return aqs_errf(err, AQS_ERR_NOMEM, "%s: out of memory", lc.source);
  }
  tok->bpe.unk_id = -1;
  aqs_status st = json_is_object(root)
                      ? load_root(tok, root, &lc)
                      : aqs_errf(err, AQS_ERR_INVALID, "%s: not a JSON object", lc.source);
  json_decref(root);
  if (st) {
    aqs_tokenizer_free(tok);
    return st;
  }
  *out = tok;
  return AQS_OK;
}

aqs_status aqs_tokenizer_load(const char *path, aqs_tokenizer **out, aqs_err *err) {
  *out = NULL;
  char *text;
  size_t len;
  aqs_status st = aqs_file_read_input(path, AQS_INPUT_TOKENIZER, &text, &len, err);
  if (st) return st;
  st = aqs_tokenizer_load_json(text, len, path, out, err);
  free(text);
  return st;
}
