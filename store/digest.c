/* store/digest.c: SHA-256 digests: hex text forms, parsing (full and abbreviated) and hashing of
 * buffers, file descriptors and files through OpenSSL EVP (SHA-NI when available). */
#include "store/digest.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"

#define HASH_BLOCK_BYTES (1u << 20)

static const char hex_digits[] = "0123456789abcdef";

char *aqs_digest_hex(const aqs_digest *d, char out[AQS_DIGEST_HEX_LEN + 1]) {
  for (int i = 0; i < AQS_DIGEST_BYTES; i++) {
    out[2 * i] = hex_digits[d->bytes[i] >> 4];
    out[2 * i + 1] = hex_digits[d->bytes[i] & 15];
  }
  out[AQS_DIGEST_HEX_LEN] = '\0';
  return out;
}

char *aqs_digest_str(const aqs_digest *d, char out[AQS_DIGEST_STR_SIZE]) {
  memcpy(out, AQS_DIGEST_PREFIX, 7);
  aqs_digest_hex(d, out + 7);
  return out;
}

char *aqs_digest_short(const aqs_digest *d, char out[AQS_DIGEST_SHORT_LEN + 1]) {
  char hex[AQS_DIGEST_HEX_LEN + 1];
  aqs_digest_hex(d, hex);
  memcpy(out, hex, AQS_DIGEST_SHORT_LEN);
  out[AQS_DIGEST_SHORT_LEN] = '\0';
  return out;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Strips an optional "sha256:" and returns the hex part. */
static const char *skip_prefix(const char *text) {
  return strncmp(text, AQS_DIGEST_PREFIX, 7) == 0 ? text + 7 : text;
}

aqs_status aqs_digest_parse_prefix(const char *text, aqs_digest *prefix, int *n_hex_digits,
                                   aqs_err *err) {
  if (!text) return aqs_errf(err, AQS_ERR_INVALID, "missing digest");
  const char *hex = skip_prefix(text);
  size_t n = strlen(hex);
  if (n < AQS_DIGEST_MIN_ABBREV || n > AQS_DIGEST_HEX_LEN)
    return aqs_errf(err, AQS_ERR_INVALID,
                    "'%s' is not a digest (want sha256:<hex>, %d to %d hex digits)", text,
                    AQS_DIGEST_MIN_ABBREV, AQS_DIGEST_HEX_LEN);
  memset(prefix, 0, sizeof *prefix);
  for (size_t i = 0; i < n; i++) {
    int v = hex_value(hex[i]);
    if (v < 0)
      return aqs_errf(err, AQS_ERR_INVALID, "'%s' is not a digest: '%c' is not a hex digit",
                      text, hex[i]);
    prefix->bytes[i / 2] |= (uint8_t)(i % 2 == 0 ? v << 4 : v);
  }
  *n_hex_digits = (int)n;
  return AQS_OK;
}

aqs_status aqs_digest_parse(const char *text, aqs_digest *out, aqs_err *err) {
  int n = 0;
  aqs_digest d;
  aqs_status st = aqs_digest_parse_prefix(text, &d, &n, err);
  if (st != AQS_OK) return st;
  if (n != AQS_DIGEST_HEX_LEN)
    return aqs_errf(err, AQS_ERR_INVALID,
                    "'%s' is not a full digest (%d of 64 hex digits; abbreviations need a store)",
                    text, n);
  *out = d;
  return AQS_OK;
}

int aqs_digest_has_prefix(const aqs_digest *d, const aqs_digest *prefix, int n_hex_digits) {
  int full_bytes = n_hex_digits / 2;
  if (memcmp(d->bytes, prefix->bytes, (size_t)full_bytes) != 0) return 0;
  if (n_hex_digits % 2) return (d->bytes[full_bytes] >> 4) == (prefix->bytes[full_bytes] >> 4);
  return 1;
}

int aqs_digest_cmp(const aqs_digest *a, const aqs_digest *b) {
  return memcmp(a->bytes, b->bytes, AQS_DIGEST_BYTES);
}

int aqs_digest_eq(const aqs_digest *a, const aqs_digest *b) { return aqs_digest_cmp(a, b) == 0; }

struct aqs_sha256 {
  EVP_MD_CTX *ctx;
};

aqs_sha256 *aqs_sha256_new(void) {
  aqs_sha256 *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->ctx = EVP_MD_CTX_new();
  if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(h->ctx);
    free(h);
    return NULL;
  }
  return h;
}

void aqs_sha256_update(aqs_sha256 *h, const void *data, size_t len) {
  if (len) EVP_DigestUpdate(h->ctx, data, len);
}

void aqs_sha256_final(aqs_sha256 *h, aqs_digest *out) {
  unsigned int n = 0;
  EVP_DigestFinal_ex(h->ctx, out->bytes, &n);
}

void aqs_sha256_reset(aqs_sha256 *h) { EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL); }

void aqs_sha256_free(aqs_sha256 *h) {
  if (!h) return;
  EVP_MD_CTX_free(h->ctx);
  free(h);
}

void aqs_sha256_buf(const void *data, size_t len, aqs_digest *out) {
  unsigned int n = 0;
  EVP_Digest(data, len, out->bytes, &n, EVP_sha256(), NULL);
}

aqs_status aqs_sha256_fd(int fd, uint64_t offset, uint64_t length, const char *what,
                         aqs_digest *out, uint64_t *size_out, aqs_err *err) {
  const char *name = what ? what : "input";
  uint8_t *block = malloc(HASH_BLOCK_BYTES);
  aqs_sha256 *h = aqs_sha256_new();
  if (!block || !h) {
    free(block);
    aqs_sha256_free(h);
    return aqs_errf(err, AQS_ERR_NOMEM, "hashing %s: out of memory", name);
  }
  aqs_status st = AQS_OK;
  uint64_t done = 0;
  while (length == AQS_TO_EOF || done < length) {
    size_t want = HASH_BLOCK_BYTES;
    if (length != AQS_TO_EOF && length - done < want) want = (size_t)(length - done);
    ssize_t got = pread(fd, block, want, (off_t)(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      st = aqs_errno(err, AQS_ERR_IO, errno, "reading %s", name);
      break;
    }
    if (got == 0) {
      if (length != AQS_TO_EOF)
        st = aqs_errf(err, AQS_ERR_IO, "reading %s: end of file after %llu of %llu bytes", name,
                      (unsigned long long)done, (unsigned long long)length);
      break;
    }
    aqs_sha256_update(h, block, (size_t)got);
    done += (uint64_t)got;
  }
  if (st == AQS_OK) {
    aqs_sha256_final(h, out);
    if (size_out) *size_out = done;
  }
  aqs_sha256_free(h);
  free(block);
  return st;
}

aqs_status aqs_sha256_file(const char *path, aqs_digest *out, uint64_t *size_out, aqs_err *err) {
  int fd;
  aqs_status st = aqs_file_open_input(path, AQS_INPUT_HASHED, &fd, NULL, err);
  if (st != AQS_OK) return st;
  st = aqs_sha256_fd(fd, 0, AQS_TO_EOF, path, out, size_out, err);
  close(fd);
  return st;
}
