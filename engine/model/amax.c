/* engine/model/amax.c: the calibration amax table (see amax.h): lookup, max-reduce over chunks
 * and the JSON form (jansson, sorted keys, 17 significant digits). */
#include "engine/model/amax.h"

#include "common/file.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void aqs_amax_free(aqs_amax_table *t) {
  if (!t) return;
  free(t->entries);
  memset(t, 0, sizeof *t);
}

/* Copies module into buf without a trailing ".weight". */
static void strip_weight(const char *module, char *buf, size_t n) {
  snprintf(buf, n, "%s", module);
  size_t len = strlen(buf);
  if (len > 7 && strcmp(buf + len - 7, ".weight") == 0) buf[len - 7] = '\0';
}

/* Index of the first entry >= name (binary search). */
static size_t lower_bound(const aqs_amax_table *t, const char *name) {
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (strcmp(t->entries[mid].module, name) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const aqs_amax_entry *aqs_amax_find(const aqs_amax_table *t, const char *module) {
  char name[AQS_AMAX_NAME_MAX + 8];
  strip_weight(module, name, sizeof name);
  size_t i = lower_bound(t, name);
  return i < t->n && strcmp(t->entries[i].module, name) == 0 ? &t->entries[i] : NULL;
}

aqs_status aqs_amax_set(aqs_amax_table *t, const char *module, float input_amax,
                        float weight_amax, aqs_err *e) {
  char name[AQS_AMAX_NAME_MAX + 8];
  strip_weight(module, name, sizeof name);
  if (strlen(name) >= AQS_AMAX_NAME_MAX)
    return aqs_errf(e, AQS_ERR_INVALID, "amax: module name too long: %s", name);
  size_t i = lower_bound(t, name);
  if (i < t->n && strcmp(t->entries[i].module, name) == 0) {
    t->entries[i].input_amax = input_amax;
    t->entries[i].weight_amax = weight_amax;
    return AQS_OK;
  }
  aqs_amax_entry *grown = realloc(t->entries, (t->n + 1) * sizeof *grown);
  if (!grown) return aqs_errf(e, AQS_ERR_NOMEM, "amax: out of memory");
  t->entries = grown;
  memmove(&t->entries[i + 1], &t->entries[i], (t->n - i) * sizeof *grown);
  memset(&t->entries[i], 0, sizeof *grown);
  memcpy(t->entries[i].module, name, strlen(name) + 1); /* length checked above */
  t->entries[i].input_amax = input_amax;
  t->entries[i].weight_amax = weight_amax;
  t->n++;
  return AQS_OK;
}

/* max that propagates NaN. */
static float max_nan(float a, float b) {
  if (isnan(a) || isnan(b)) return NAN;
  return a > b ? a : b;
}

aqs_status aqs_amax_reduce(const aqs_amax_table *const *parts, size_t n, aqs_amax_table *out,
                           aqs_err *e) {
  for (size_t p = 0; p < n; p++) {
    out->n_tokens += parts[p]->n_tokens;
    out->n_seqs += parts[p]->n_seqs;
    for (size_t i = 0; i < parts[p]->n; i++) {
      const aqs_amax_entry *src = &parts[p]->entries[i];
      const aqs_amax_entry *cur = aqs_amax_find(out, src->module);
      float in = cur ? max_nan(cur->input_amax, src->input_amax) : src->input_amax;
      float w = cur ? max_nan(cur->weight_amax, src->weight_amax) : src->weight_amax;
      aqs_status st = aqs_amax_set(out, src->module, in, w, e);
      if (st != AQS_OK) return st;
    }
  }
  return AQS_OK;
}

aqs_status aqs_amax_to_json(const aqs_amax_table *t, char **out, aqs_err *e) {
  *out = NULL;
  json_t *root = json_object(), *mods = json_object();
  json_object_set_new(root, "format", json_string("aqs-amax-1"));
  json_object_set_new(root, "algorithm", json_string("max"));
  json_object_set_new(root, "n_tokens", json_integer(t->n_tokens));
  json_object_set_new(root, "n_seqs", json_integer(t->n_seqs));
  for (size_t i = 0; i < t->n; i++) {
    const aqs_amax_entry *en = &t->entries[i];
    if (!isfinite(en->input_amax) || !isfinite(en->weight_amax)) {
      json_decref(mods);
      json_decref(root);
      return aqs_errf(e, AQS_ERR_NUMERIC, "amax: non-finite amax for %s (input %g, weight %g)",
                      en->module, en->input_amax, en->weight_amax);
    }
    json_object_set_new(mods, en->module,
                        json_pack("{s:f,s:f}", "input_amax", (double)en->input_amax,
                                  "weight_amax", (double)en->weight_amax));
  }
  json_object_set_new(root, "modules", mods);
  char *text = json_dumps(root, JSON_SORT_KEYS | JSON_INDENT(1) | JSON_REAL_PRECISION(17));
  json_decref(root);
  if (!text) return aqs_errf(e, AQS_ERR_NOMEM, "amax: out of memory serializing");
  size_t len = strlen(text);
  char *withnl = realloc(text, len + 2);
  if (!withnl) {
    free(text);
    return aqs_errf(e, AQS_ERR_NOMEM, "amax: out of memory serializing");
  }
  withnl[len] = '\n';
  withnl[len + 1] = '\0';
  *out = withnl;
  return AQS_OK;
}

/* Reads a non-negative finite number field of obj. */
static aqs_status get_amax(json_t *obj, const char *field, const char *what, const char *module,
                           float *out, aqs_err *e) {
  json_t *v = json_object_get(obj, field);
  if (!v || !json_is_number(v))
    return aqs_errf(e, AQS_ERR_INVALID, "%s: module %s: missing or non-numeric %s", what, module,
                    field);
  double d = json_number_value(v);
  if (!isfinite(d) || d < 0)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: module %s: %s = %g is not a finite amax >= 0",
                    what, module, field, d);
  *out = (float)d;
  return AQS_OK;
}

aqs_status aqs_amax_from_json(const char *json, size_t len, const char *what,
                              aqs_amax_table *out, aqs_err *e) {
  memset(out, 0, sizeof *out);
  json_error_t jerr;
  json_t *root = json_loadb(json, len, 0, &jerr);
  if (!root)
    return aqs_errf(e, AQS_ERR_INVALID, "%s: not JSON (line %d: %s)", what, jerr.line, jerr.text);
  aqs_status st = AQS_OK;
  const char *fmt = json_string_value(json_object_get(root, "format"));
  json_t *mods = json_object_get(root, "modules");
  if (!fmt || strcmp(fmt, "aqs-amax-1") != 0) {
    st = aqs_errf(e, AQS_ERR_INVALID, "%s: not an aqs amax table (format '%s', expected "
                  "'aqs-amax-1')", what, fmt ? fmt : "(missing)");
    goto done;
  }
  if (!json_is_object(mods)) {
    st = aqs_errf(e, AQS_ERR_INVALID, "%s: missing \"modules\" object", what);
    goto done;
  }
  out->n_tokens = json_integer_value(json_object_get(root, "n_tokens"));
  out->n_seqs = json_integer_value(json_object_get(root, "n_seqs"));
  const char *module;
  json_t *val;
  json_object_foreach(mods, module, val) {
    float in = 0.0f, w = 0.0f;
    if (!json_is_object(val)) {
      st = aqs_errf(e, AQS_ERR_INVALID, "%s: module %s: expected an object", what, module);
      goto done;
    }
    if ((st = get_amax(val, "input_amax", what, module, &in, e)) != AQS_OK) goto done;
    if ((st = get_amax(val, "weight_amax", what, module, &w, e)) != AQS_OK) goto done;
    if ((st = aqs_amax_set(out, module, in, w, e)) != AQS_OK) goto done;
  }
done:
  json_decref(root);
  if (st != AQS_OK) aqs_amax_free(out);
  return st;
}

aqs_status aqs_amax_save(const aqs_amax_table *t, const char *path, aqs_err *e) {
  char *text;
  aqs_status st = aqs_amax_to_json(t, &text, e);
  if (st != AQS_OK) return st;
  st = aqs_file_write_atomic(path, text, strlen(text), e);
  free(text);
  return st;
}

aqs_status aqs_amax_load(const char *path, aqs_amax_table *out, aqs_err *e) {
  memset(out, 0, sizeof *out);
  char *buf;
  size_t len;
  aqs_status st = aqs_file_read(path, NULL, &buf, &len, e);
  if (st) return st;
  st = aqs_amax_from_json(buf, len, path, out, e);
  free(buf);
  return st;
}
