/* engine/export/plan.c: quantization plans (group id -> fp8 | bf16, optional scores and scope)
 * and their canonical JSON form (see plan.h). */
#include "engine/export/plan.h"

#include "common/file.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *aqs_format_name(aqs_format f) { return f == AQS_FMT_FP8 ? "fp8" : "bf16"; }

aqs_status aqs_format_parse(const char *s, aqs_format *out, aqs_err *e) {
  if (strcmp(s, "fp8") == 0) *out = AQS_FMT_FP8;
  else if (strcmp(s, "bf16") == 0) *out = AQS_FMT_BF16;
  else return aqs_errf(e, AQS_ERR_INVALID, "unknown format '%s' (expected \"fp8\" or \"bf16\")", s);
  return AQS_OK;
}

/* Decomposes a group id: tower 0 = lm, 1 = vis; layer (-1 for the stem and merger groups); kind
 * rank in the natural order (vis.patch_embed before the blocks: layer -1, rank -1; the merger
 * groups after them: ranks 5 and 6). Returns 0 when id is not a valid group id. */
static int parse_group_id(const char *id, int *tower, long *layer, int *kind_rank) {
  static const char *const lm_kinds[] = {"qkv", "o", NULL, "gate_up", "down"};
  static const char *const vis_kinds[] = {"qkv", NULL, "proj", "gate_up", "down"};
  const char *const *kinds;
  const char *p;
  if (strcmp(id, "vis.patch_embed") == 0) {
    *tower = 1, *layer = -1, *kind_rank = -1;
    return 1;
  }
  if (strcmp(id, "vis.merger.mlp.0") == 0 || strcmp(id, "vis.merger.mlp.2") == 0) {
    *tower = 1, *layer = -1, *kind_rank = id[15] == '0' ? 5 : 6;
    return 1;
  }
  if (strncmp(id, "lm.", 3) == 0) *tower = 0, kinds = lm_kinds, p = id + 3;
  else if (strncmp(id, "vis.", 4) == 0) *tower = 1, kinds = vis_kinds, p = id + 4;
  else return 0;
  if (*p < '0' || *p > '9') return 0;
  if (p[0] == '0' && p[1] != '.') return 0; /* no leading zeros: one spelling per group */
  char *end;
  errno = 0;
  *layer = strtol(p, &end, 10);
  if (errno || *end != '.' || *layer > 100000) return 0;
  for (int k = 0; k < 5; k++)
    if (kinds[k] && strcmp(end + 1, kinds[k]) == 0) {
      *kind_rank = k;
      return 1;
    }
  return 0;
}

int aqs_group_id_valid(const char *id) {
  int tower, kind;
  long layer;
  return id && parse_group_id(id, &tower, &layer, &kind);
}

int aqs_group_id_cmp(const char *a, const char *b) {
  int ta, tb, ka, kb;
  long la, lb;
  int va = parse_group_id(a, &ta, &la, &ka), vb = parse_group_id(b, &tb, &lb, &kb);
  if (va && vb) {
    if (ta != tb) return ta < tb ? -1 : 1;
    if (la < 0 || lb < 0) { /* stem before every block, merger groups after */
      int ra = la < 0 ? ka : 0, rb = lb < 0 ? kb : 0; /* a block sorts between -1 and 5 */
      if (ra != rb) return ra < rb ? -1 : 1;
      if (la != lb) return la < lb ? -1 : 1;
      return 0;
    }
    if (la != lb) return la < lb ? -1 : 1;
    if (ka != kb) return ka < kb ? -1 : 1;
    return 0;
  }
  if (va != vb) return va ? -1 : 1; /* valid ids before invalid ones */
  return strcmp(a, b);
}

aqs_plan *aqs_plan_new(void) { return calloc(1, sizeof(aqs_plan)); }

void aqs_plan_free(aqs_plan *p) {
  if (!p) return;
  for (size_t i = 0; i < p->n; i++) free(p->entries[i].group);
  free(p->entries);
  free(p);
}

/* Index of group in p (binary search), or the insertion point as -(pos + 1). */
static long plan_search(const aqs_plan *p, const char *group) {
  size_t lo = 0, hi = p->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = aqs_group_id_cmp(p->entries[mid].group, group);
    if (c == 0) return (long)mid;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -(long)lo - 1;
}

aqs_status aqs_plan_set(aqs_plan *p, const char *group, aqs_format format, aqs_err *e) {
  if (!aqs_group_id_valid(group))
    return aqs_errf(e, AQS_ERR_INVALID,
                    "malformed group id '%s' (expected lm.<L>.{qkv,o,gate_up,down}, "
                    "vis.<B>.{qkv,proj,gate_up,down}, vis.patch_embed, vis.merger.mlp.0 or vis.merger.mlp.2)", group);
  long at = plan_search(p, group);
  if (at >= 0) {
    p->entries[at].format = format;
    return AQS_OK;
  }
  size_t pos = (size_t)(-(at + 1));
  if (p->n == p->cap) {
    size_t cap = p->cap ? 2 * p->cap : 64;
    aqs_plan_entry *grown = realloc(p->entries, cap * sizeof *grown);
    if (!grown) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory growing a plan");
    p->entries = grown;
    p->cap = cap;
  }
  char *copy = strdup(group);
  if (!copy) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory growing a plan");
  memmove(p->entries + pos + 1, p->entries + pos, (p->n - pos) * sizeof *p->entries);
  p->entries[pos] = (aqs_plan_entry){.group = copy, .format = format};
  p->n++;
  return AQS_OK;
}

aqs_status aqs_plan_set_score(aqs_plan *p, const char *group, double score, aqs_err *e) {
  long at = plan_search(p, group);
  if (at < 0) return aqs_errf(e, AQS_ERR_NOT_FOUND, "score for group '%s' which is not in the plan", group);
  p->entries[at].has_score = 1;
  p->entries[at].score = score;
  return AQS_OK;
}

const aqs_plan_entry *aqs_plan_find(const aqs_plan *p, const char *group) {
  long at = plan_search(p, group);
  return at >= 0 ? &p->entries[at] : NULL;
}

aqs_format aqs_plan_format(const aqs_plan *p, const char *group) {
  const aqs_plan_entry *en = aqs_plan_find(p, group);
  return en ? en->format : AQS_FMT_BF16;
}

size_t aqs_plan_count(const aqs_plan *p, aqs_format f) {
  size_t n = 0;
  for (size_t i = 0; i < p->n; i++) n += p->entries[i].format == f;
  return n;
}

static aqs_status parse_groups(aqs_plan *p, json_t *groups, const char *source, aqs_err *e) {
  const char *id;
  json_t *val;
  json_object_foreach(groups, id, val) {
    aqs_format fmt = AQS_FMT_BF16;
    aqs_status st;
    json_t *fmt_json = json_is_object(val) ? json_object_get(val, "format") : val;
    if (!json_is_string(fmt_json))
      return aqs_errf(e, AQS_ERR_INVALID,
                      "%s: group '%s': value must be \"fp8\", \"bf16\" or {\"format\": ...}",
                      source, id);
    if ((st = aqs_format_parse(json_string_value(fmt_json), &fmt, e)) != AQS_OK) {
      if (e) aqs_err_prefix(e, "%s: group '%s'", source, id);
      return st;
    }
    if ((st = aqs_plan_set(p, id, fmt, e)) != AQS_OK) {
      if (e) aqs_err_prefix(e, "%s", source);
      return st;
    }
    json_t *score = json_is_object(val) ? json_object_get(val, "score") : NULL;
    if (score) {
      if (!json_is_number(score))
        return aqs_errf(e, AQS_ERR_INVALID, "%s: group '%s': score is not a number", source, id);
      aqs_plan_set_score(p, id, json_number_value(score), NULL);
    }
  }
  return AQS_OK;
}

aqs_status aqs_plan_parse(const char *json_text, size_t len, const char *source, aqs_plan **out,
                          aqs_err *e) {
  json_error_t jerr;
  json_t *root = json_loadb(json_text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: line %d: not valid JSON: %s", source, jerr.line,
                    jerr.text);
  aqs_status st = AQS_OK;
  aqs_plan *p = aqs_plan_new();
  if (!p) {
    json_decref(root);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory reading %s", source);
  }
  if (!json_is_object(root)) {
    st = aqs_errf(e, AQS_ERR_INVALID, "%s: a plan must be a JSON object", source);
    goto done;
  }
  json_t *groups = json_object_get(root, "groups");
  if (groups) {
    if (!json_is_object(groups)) {
      st = aqs_errf(e, AQS_ERR_INVALID, "%s: \"groups\" must be an object", source);
      goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
      if (strcmp(key, "groups") && strcmp(key, "scores") && strcmp(key, "scope")) {
        st = aqs_errf(e, AQS_ERR_INVALID,
                      "%s: unknown key '%s' (a plan has \"scope\", \"groups\", \"scores\")",
                      source, key);
        goto done;
      }
    }
  } else {
    groups = root;
  }
  if ((st = parse_groups(p, groups, source, e)) != AQS_OK) goto done;
  json_t *scope = groups != root ? json_object_get(root, "scope") : NULL;
  if (scope) {
    const char *s = json_string_value(scope);
    if (!s || (strcmp(s, "lm_only") && strcmp(s, "all_layers"))) {
      st = aqs_errf(e, AQS_ERR_INVALID, "%s: scope must be \"lm_only\" or \"all_layers\"", source);
      goto done;
    }
    snprintf(p->scope, sizeof p->scope, "%s", s);
  }
  json_t *scores = groups != root ? json_object_get(root, "scores") : NULL;
  if (scores) {
    const char *id;
    json_t *val;
    if (!json_is_object(scores)) {
      st = aqs_errf(e, AQS_ERR_INVALID, "%s: \"scores\" must be an object", source);
      goto done;
    }
    json_object_foreach(scores, id, val) {
      if (!json_is_number(val)) {
        st = aqs_errf(e, AQS_ERR_INVALID, "%s: score of '%s' is not a number", source, id);
        goto done;
      }
      if (!aqs_plan_find(p, id)) {
        st = aqs_errf(e, AQS_ERR_INVALID, "%s: score for group '%s' which is not in the plan's "
                      "\"groups\"", source, id);
        goto done;
      }
      aqs_plan_set_score(p, id, json_number_value(val), NULL);
    }
  }
done:
  json_decref(root);
  if (st != AQS_OK) {
    aqs_plan_free(p);
    return st;
  }
  *out = p;
  return AQS_OK;
}

aqs_status aqs_plan_load(const char *path, aqs_plan **out, aqs_err *e) {
  char *buf;
  size_t len;
  aqs_status st = aqs_file_read(path, "plan", &buf, &len, e);
  if (st) return st;
  st = aqs_plan_parse(buf, len, path, out, e);
  free(buf);
  return st;
}

char *aqs_plan_to_json(const aqs_plan *p) {
  json_t *root = json_object();
  json_t *groups = json_object();
  json_t *scores = json_object();
  int any_score = 0;
  if (p->scope[0]) json_object_set_new(root, "scope", json_string(p->scope));
  for (size_t i = 0; i < p->n; i++) {
    const aqs_plan_entry *en = &p->entries[i];
    json_object_set_new(groups, en->group, json_string(aqs_format_name(en->format)));
    if (en->has_score && isfinite(en->score)) {
      json_object_set_new(scores, en->group, json_real(en->score));
      any_score = 1;
    }
  }
  json_object_set_new(root, "groups", groups);
  if (any_score) json_object_set(root, "scores", scores);
  json_decref(scores);
  char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
  json_decref(root);
  return text;
}

aqs_status aqs_plan_save(const aqs_plan *p, const char *path, aqs_err *e) {
  char *text = aqs_plan_to_json(p);
  size_t len = text ? strlen(text) : 0;
  char *line = text ? realloc(text, len + 2) : NULL;
  if (!line) {
    free(text);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory writing %s", path);
  }
  line[len] = '\n';
  line[len + 1] = '\0';
  aqs_status st = aqs_file_write_atomic(path, line, len + 1, e);
  free(line);
  return st;
}

aqs_status aqs_plan_diff(const aqs_plan *a, const aqs_plan *b, const char ***ids_out,
                         size_t *n_out, aqs_err *e) {
  const char **ids = malloc((a->n + b->n + 1) * sizeof *ids);
  if (!ids) return aqs_errf(e, AQS_ERR_NOMEM, "out of memory comparing plans");
  size_t n = 0, i = 0, j = 0;
  while (i < a->n || j < b->n) { /* merge of two sorted lists */
    int c = i == a->n ? 1 : j == b->n ? -1 : aqs_group_id_cmp(a->entries[i].group, b->entries[j].group);
    if (c == 0) {
      if (a->entries[i].format != b->entries[j].format) ids[n++] = a->entries[i].group;
      i++, j++;
    } else if (c < 0) {
      if (a->entries[i].format != AQS_FMT_BF16) ids[n++] = a->entries[i].group;
      i++;
    } else {
      if (b->entries[j].format != AQS_FMT_BF16) ids[n++] = b->entries[j].group;
      j++;
    }
  }
  *ids_out = ids;
  *n_out = n;
  return AQS_OK;
}
