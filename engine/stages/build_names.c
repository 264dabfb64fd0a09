/* engine/stages/build_names.c: build identity: the per-build ref layout, listing every build,
 * and resolving the names users type (see build_names.h). */
#include "engine/stages/build_names.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/stages/calib_set.h"
#include "engine/stages/ckpt_store.h"

void aqs_build_ref_name(const char *recipe, const aqs_digest *model, const aqs_digest *data, char *buf, size_t n) {
  char m[AQS_DIGEST_STR_SIZE], d[AQS_DIGEST_STR_SIZE];
  aqs_digest_str(model, m);
  aqs_digest_str(data, d);
  snprintf(buf, n, "recipe/%s/%.*s-%.*s", recipe, AQS_BUILD_ID_HEX, m + 7, AQS_BUILD_ID_HEX, d + 7);
}

int aqs_natural_cmp(const char *a, const char *b) {
  while (*a && *b) {
    if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
      while (*a == '0') a++;
      while (*b == '0') b++;
      size_t la = 0, lb = 0;
      while (isdigit((unsigned char)a[la])) la++;
      while (isdigit((unsigned char)b[lb])) lb++;
      if (la != lb) return la < lb ? -1 : 1;
      int c = strncmp(a, b, la);
      if (c) return c;
      a += la;
      b += lb;
    } else {
      if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
      a++;
      b++;
    }
  }
  return (unsigned char)*a - (unsigned char)*b;
}

static int stage_digest(const json_t *doc, const char *stage, aqs_digest *out) {
  const char *text = json_string_value(json_object_get(json_object_get(doc, "stages"), stage));
  return text && aqs_digest_parse(text, out, NULL) == AQS_OK;
}

typedef struct list_ctx {
  aqs_store *s;
  aqs_build_entry *items;
  size_t n, cap;
  aqs_status st;
  aqs_err *e;
} list_ctx;

static int newest_log(const aqs_reflog_entry *entry, void *user) {
  aqs_build_entry *b = user;
  b->time_ns = entry->time_ns;
  snprintf(b->user, sizeof b->user, "%s", entry->user);
  return 1; /* newest only */
}

/* Fills b from the record d names; 0 when d is not a build record. */
static int load_entry(aqs_store *s, const char *ref, const aqs_digest *d, aqs_build_entry *b) {
  memset(b, 0, sizeof *b);
  aqs_err ignore = {0};
  if (aqs_ckpt_load_manifest(s, d, "aqs-build", &b->doc, &ignore) != AQS_OK) return 0;
  const char *recipe = json_string_value(json_object_get(b->doc, "recipe"));
  if (!recipe || !stage_digest(b->doc, "source", &b->model) || !stage_digest(b->doc, AQS_CALIB_STAGE_NAME, &b->data)) {
    json_decref(b->doc);
    b->doc = NULL;
    return 0;
  }
  stage_digest(b->doc, "sensitivity", &b->sensitivity);
  snprintf(b->recipe, sizeof b->recipe, "%s", recipe);
  snprintf(b->ref, sizeof b->ref, "%s", ref ? ref : "");
  b->record = *d;
  if (ref) aqs_ref_log(s, ref, newest_log, b, &ignore);
  return 1;
}

static int on_ref(const char *name, const aqs_digest *target, void *user) {
  list_ctx *c = user;
  if (strncmp(name, "recipe/", 7) != 0) return 0;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 32;
    aqs_build_entry *ni = realloc(c->items, cap * sizeof *ni);
    if (!ni) {
      c->st = aqs_errf(c->e, AQS_ERR_NOMEM, "out of memory listing builds");
      return 1;
    }
    c->items = ni;
    c->cap = cap;
  }
  if (load_entry(c->s, name, target, &c->items[c->n])) c->n++;
  return 0;
}

static int by_recipe_newest(const void *pa, const void *pb) {
  const aqs_build_entry *a = pa, *b = pb;
  int c = aqs_natural_cmp(a->recipe, b->recipe);
  if (c) return c;
  if (a->time_ns != b->time_ns) return a->time_ns > b->time_ns ? -1 : 1;
  return strcmp(a->ref, b->ref);
}

aqs_status aqs_build_list(aqs_store *s, aqs_build_entry **out, size_t *n_out, aqs_err *e) {
  list_ctx c = {.s = s, .e = e};
  aqs_status st = aqs_ref_foreach(s, on_ref, &c, e);
  if (!st) st = c.st;
  if (st) {
    aqs_build_list_free(c.items, c.n);
    return st;
  }
  /* An old-layout ref and a new one may name the same record: keep one (the new layout). */
  size_t w = 0;
  for (size_t i = 0; i < c.n; i++) {
    int dup = 0;
    for (size_t j = 0; j < c.n && !dup; j++)
      dup = j != i && aqs_digest_eq(&c.items[j].record, &c.items[i].record) &&
            (strlen(c.items[j].ref) > strlen(c.items[i].ref) || (j < i && strlen(c.items[j].ref) == strlen(c.items[i].ref)));
    if (dup) json_decref(c.items[i].doc);
    else c.items[w++] = c.items[i];
  }
  if (w) qsort(c.items, w, sizeof *c.items, by_recipe_newest);
  *out = c.items;
  *n_out = w;
  return AQS_OK;
}

void aqs_build_list_free(aqs_build_entry *list, size_t n) {
  for (size_t i = 0; list && i < n; i++) json_decref(list[i].doc);
  free(list);
}

/* ---- resolution ---- */

/* 1 when the hex text (optionally "sha256:"-prefixed) is a prefix of d's hex. */
static int hex_prefix_of(const char *hex, size_t len, const aqs_digest *d) {
  char full[AQS_DIGEST_STR_SIZE];
  aqs_digest_str(d, full);
  if (len >= 7 && strncmp(hex, "sha256:", 7) == 0) {
    hex += 7;
    len -= 7;
  }
  if (len == 0 || len > 64) return 0;
  for (size_t i = 0; i < len; i++)
    if (tolower((unsigned char)hex[i]) != full[7 + i]) return 0;
  return 1;
}

typedef struct dataset_ctx {
  const aqs_digest *calib_set;
  aqs_digest dataset;
  int found;
} dataset_ctx;

static int on_calib_action(const aqs_action_info *info, void *user) {
  dataset_ctx *c = user;
  if (!aqs_digest_eq(&info->result, c->calib_set) || !info->key_doc) return 0;
  json_t *doc = json_loads(info->key_doc, 0, NULL);
  const char *text = json_string_value(json_object_get(json_object_get(doc, "inputs"), "dataset"));
  if (text && aqs_digest_parse(text, &c->dataset, NULL) == AQS_OK) c->found = 1;
  json_decref(doc);
  return c->found;
}

/* The dataset file a calib-set was built from (through the calib-set action that made it). */
static int dataset_of(aqs_store *s, const aqs_digest *calib_set, aqs_digest *out) {
  dataset_ctx c = {.calib_set = calib_set};
  aqs_err ignore = {0};
  aqs_action_foreach(s, AQS_CALIB_STAGE_NAME, on_calib_action, &c, &ignore);
  if (c.found) *out = c.dataset;
  return c.found;
}

/* Appends "\n  <selector>   (model <m>, data <d>, built by <user>)" for each candidate to msg; the
 * selector names the data too when another candidate has the same model. */
static void list_candidates(const aqs_build_entry *const *cand, size_t n, char *msg, size_t cap) {
  size_t used = strlen(msg);
  for (size_t i = 0; i < n && used + 1 < cap; i++) {
    int with_data = 0;
    for (size_t j = 0; j < n; j++) with_data |= j != i && aqs_digest_eq(&cand[j]->model, &cand[i]->model);
    char m[AQS_DIGEST_STR_SIZE], d[AQS_DIGEST_STR_SIZE];
    aqs_digest_str(&cand[i]->model, m);
    aqs_digest_str(&cand[i]->data, d);
    int k = with_data ? snprintf(msg + used, cap - used, "\n  %s@%.12s+%.12s", cand[i]->recipe, m + 7, d + 7)
                      : snprintf(msg + used, cap - used, "\n  %s@%.12s", cand[i]->recipe, m + 7);
    if (k < 0) break;
    used += (size_t)k;
    if (used >= cap) break;
    k = snprintf(msg + used, cap - used, "   (model %.12s, data %.12s%s%s)", m + 7, d + 7, cand[i]->user[0] ? ", built by " : "",
                 cand[i]->user);
    if (k < 0) break;
    used += (size_t)k;
  }
}

static aqs_status take(aqs_build_entry *list, size_t n, const aqs_build_entry *pick, aqs_build_entry *out) {
  *out = *pick;
  for (size_t i = 0; i < n; i++)
    if (&list[i] == pick) list[i].doc = NULL;
  return AQS_OK;
}

aqs_status aqs_build_resolve(aqs_store *s, const char *name, const aqs_build_scope *scope, aqs_build_entry *out,
                             aqs_err *e) {
  memset(out, 0, sizeof *out);
  aqs_build_entry *list = NULL;
  size_t n = 0;
  aqs_status st = aqs_build_list(s, &list, &n, e);
  if (st) return st;
  char recipe[AQS_RECIPE_NAME_MAX];
  const char *at = strchr(name, '@');
  const char *model_sel = NULL, *data_sel = NULL;
  size_t model_len = 0, data_len = 0;
  snprintf(recipe, sizeof recipe, "%.*s", at ? (int)(at - name) : (int)strlen(name), name);
  if (at) {
    model_sel = at + 1;
    const char *plus = strchr(model_sel, '+');
    model_len = plus ? (size_t)(plus - model_sel) : strlen(model_sel);
    if (plus) {
      data_sel = plus + 1;
      data_len = strlen(data_sel);
    }
  }
  const aqs_build_entry **cand = calloc(n + 1, sizeof *cand);
  if (!cand) {
    aqs_build_list_free(list, n);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  size_t nc = 0, n_recipe = 0;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(list[i].recipe, recipe) != 0) continue;
    n_recipe++;
    if (model_sel && !hex_prefix_of(model_sel, model_len, &list[i].model)) continue;
    if (data_sel && !hex_prefix_of(data_sel, data_len, &list[i].data)) continue;
    cand[nc++] = &list[i];
  }
  /* Several builds of one recipe: keep those of the workspace's current model, then data. */
  int narrowed_model = 0, narrowed_data = 0;
  if (nc > 1 && !model_sel && scope && scope->has_model) {
    size_t w = 0;
    for (size_t i = 0; i < nc; i++)
      if (aqs_digest_eq(&cand[i]->model, &scope->model)) cand[w++] = cand[i];
    if (w) {
      nc = w;
      narrowed_model = 1;
    }
  }
  if (nc > 1 && !data_sel && scope && scope->has_dataset) {
    size_t w = 0;
    for (size_t i = 0; i < nc; i++) {
      aqs_digest ds;
      if (dataset_of(s, &cand[i]->data, &ds) && aqs_digest_eq(&ds, &scope->dataset)) cand[w++] = cand[i];
    }
    if (w) {
      nc = w;
      narrowed_data = 1;
    }
  }
  if (nc == 1) {
    st = take(list, n, cand[0], out);
  } else if (nc > 1) {
    char msg[AQS_ERR_MSG_MAX];
    snprintf(msg, sizeof msg, "'%s' names %zu builds%s; pick one:", name, nc,
             narrowed_model && narrowed_data ? " of this workspace's model and data"
             : narrowed_model                ? " of this workspace's model"
                                             : " (different models or data)");
    list_candidates(cand, nc, msg, sizeof msg - 100);
    size_t used = strlen(msg);
    if (!narrowed_model && !(scope && scope->has_model))
      snprintf(msg + used, sizeof msg - used, "\n(or set [model] path and [data] captions in .aqstore, or pass --model and --captions)");
    st = aqs_errf(e, AQS_ERR_AMBIGUOUS, "%s", msg);
  } else if (n_recipe && at) {
    st = aqs_errf(e, AQS_ERR_NOT_FOUND, "no build of %s matches '%s' (aqs ls lists the builds)", recipe, at);
  } else {
    /* A full ref name or a build record digest. */
    aqs_digest d;
    aqs_err ignore = {0};
    if (aqs_ref_get(s, name, &d, &ignore) == AQS_OK && load_entry(s, name, &d, out)) {
      st = AQS_OK;
    } else if (aqs_store_resolve(s, name, &d, &ignore) == AQS_OK && load_entry(s, NULL, &d, out)) {
      st = AQS_OK;
    } else {
      st = aqs_errf(e, AQS_ERR_NOT_FOUND, "no build named '%s' in %s", name, aqs_store_path(s));
    }
  }
  free(cand);
  aqs_build_list_free(list, n);
  return st;
}
