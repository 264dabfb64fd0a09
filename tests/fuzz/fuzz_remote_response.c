/* tests/fuzz/fuzz_remote_response.c: libFuzzer entry for what a remote cache server sends back
 * (store/remote_response.c). The first byte picks the check: 0 an /ac action record (checked
 * against the key its own key_doc hashes to, so the accepting path is reached too), 1 a ref
 * record, 2 manifest recognition of downloaded object bytes, 3 an HTTP status. Accepted values
 * must be self-consistent; nothing may crash or leak. Seeds: tests/fuzz/corpus/remote_response. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/remote_response.h"

static void check_action(const uint8_t *data, size_t size) {
  aqs_digest key, result, parsed;
  aqs_sha256_buf(data, size, &key);
  json_t *doc = json_loadb((const char *)data, size, 0, NULL);
  json_t *kd = json_object_get(doc, "key_doc");
  if (json_is_string(kd)) aqs_sha256_buf(json_string_value(kd), json_string_length(kd), &key);
  aqs_err err = {0};
  if (aqs_remote_action_check(&key, data, size, &result, &err) == AQS_OK) {
    /* Accepted: the result is the record's "result" digest. */
    const char *text = json_string_value(json_object_get(doc, "result"));
    if (!text || aqs_digest_parse(text, &parsed, NULL) != AQS_OK || !aqs_digest_eq(&parsed, &result)) abort();
  } else if (!err.msg[0]) {
    abort(); /* a refusal always says why */
  }
  json_decref(doc);
}

static void check_ref(const uint8_t *data, size_t size) {
  aqs_remote_ref rec;
  aqs_err err = {0};
  if (aqs_remote_ref_check("recipe/top50", data, size, &rec, &err) != AQS_OK) return;
  /* Accepted: encoding it again must give a record that is accepted with the same values. */
  char *again = aqs_remote_ref_encode("recipe/top50", rec.ref, &rec.target, rec.actions, rec.n_actions);
  aqs_remote_ref back;
  if (!again || aqs_remote_ref_check("recipe/top50", again, strlen(again), &back, &err) != AQS_OK) abort();
  if (strcmp(back.ref, rec.ref) != 0 || !aqs_digest_eq(&back.target, &rec.target) || back.n_actions != rec.n_actions)
    abort();
  for (size_t i = 0; i < rec.n_actions; i++)
    if (!aqs_digest_eq(&back.actions[i], &rec.actions[i])) abort();
  free(again);
  aqs_remote_ref_free(&back);
  aqs_remote_ref_free(&rec);
}

static void check_manifest(const uint8_t *data, size_t size) {
  aqs_digest *children = NULL;
  size_t n = 0;
  int m = aqs_remote_manifest_children(data, size, &children, &n);
  if (m != 1 && (children || n)) abort();
  if (m == 1 && n && !children) abort();
  free(children);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  uint8_t mode = data[0] % 4;
  data++;
  size--;
  if (mode == 0) check_action(data, size);
  else if (mode == 1) check_ref(data, size);
  else if (mode == 2) check_manifest(data, size);
  else if (size >= 4) {
    long status = (long)((int32_t)((uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                                   (uint32_t)data[3] << 24));
    aqs_remote_class c = aqs_remote_classify(status);
    if (c < AQS_REMOTE_OK || c > AQS_REMOTE_REJECTED) abort();
  }
  return 0;
}
