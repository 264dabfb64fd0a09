/* store/remote.c: the HTTP client of the remote cache (remote.h) on libcurl: one kept-alive handle
 * behind a lock, GET/HEAD/PUT of /cas/<hex> and /ac/<hex>, retries with exponential backoff on
 * transport errors, timeouts and 5xx, and digest verification of every CAS body as it streams in.
 * What a status or body means is decided in remote_response.c. */
#include "store/remote.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/remote_response.h"

#define BACKOFF_MAX_MS 5000

struct aqs_remote {
  char *url;
  char *token_env;              /* for messages only */
  struct curl_slist *headers;   /* Authorization (when a token is set), "Expect:" */
  int attempts, timeout_s, backoff_ms;
  CURL *curl;
  pthread_mutex_t lock;
  aqs_remote_stats stats;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;
static void curl_init_once(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

aqs_status aqs_remote_open(const aqs_remote_opts *opts, aqs_remote **out, aqs_err *err) {
  *out = NULL;
  const char *url = opts ? opts->url : NULL;
  if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
    return aqs_errf(err, AQS_ERR_INVALID, "remote url '%s' must start with http:// or https://",
                    url ? url : "");
  pthread_once(&curl_once, curl_init_once);
  if (curl_init_rc != CURLE_OK)
    return aqs_errf(err, AQS_ERR_IO, "libcurl: %s", curl_easy_strerror(curl_init_rc));
  aqs_remote *r = calloc(1, sizeof *r);
  if (!r) return aqs_errf(err, AQS_ERR_NOMEM, "out of memory");
  r->url = strdup(url);
  r->token_env = strdup(opts->token_env ? opts->token_env : "");
  r->attempts = opts->attempts > 0 ? opts->attempts : 4;
  r->timeout_s = opts->timeout_s > 0 ? opts->timeout_s : 30;
  r->backoff_ms = opts->backoff_ms > 0 ? opts->backoff_ms : 200;
  r->curl = curl_easy_init();
  int ok = r->url && r->token_env && r->curl;
  if (ok) {
    size_t n = strlen(r->url);
    while (n > 0 && r->url[n - 1] == '/') r->url[--n] = '\0';
    /* No "Expect: 100-continue" round trip before large PUTs. */
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    if (h && opts->token && opts->token[0]) {
      char *auth = NULL;
      if (asprintf(&auth, "Authorization: Bearer %s", opts->token) < 0) auth = NULL;
      struct curl_slist *h2 = auth ? curl_slist_append(h, auth) : NULL;
      if (auth) {
        memset(auth, 0, strlen(auth)); /* the token lives only in the header list */
        free(auth);
      }
      if (!h2) {
        curl_slist_free_all(h);
        h = NULL;
      }
    }
    r->headers = h;
    ok = h != NULL;
  }
  if (!ok) {
    aqs_remote_close(r);
    return aqs_errf(err, AQS_ERR_NOMEM, "out of memory setting up the remote %s", url);
  }
  pthread_mutex_init(&r->lock, NULL);
  *out = r;
  return AQS_OK;
}

void aqs_remote_close(aqs_remote *r) {
  if (!r) return;
  if (r->curl) curl_easy_cleanup(r->curl);
  curl_slist_free_all(r->headers);
  if (r->curl) pthread_mutex_destroy(&r->lock);
  free(r->url);
  free(r->token_env);
  free(r);
}

const char *aqs_remote_url(const aqs_remote *r) { return r->url; }

void aqs_remote_get_stats(aqs_remote *r, aqs_remote_stats *out) {
  pthread_mutex_lock(&r->lock);
  *out = r->stats;
  pthread_mutex_unlock(&r->lock);
}

/* ---- one request with retries ---- */

typedef enum method { M_HEAD, M_GET, M_PUT } method;

/* Where a GET body goes: a file (fd >= 0) or memory (bounded by max), hashed when check is set. */
typedef struct body_sink {
  int fd;
  char *mem;
  size_t len, cap, max;
  aqs_sha256 *hash;
  int failed_errno;  /* write to fd failed */
  int too_large;
} body_sink;

typedef struct body_source {
  const unsigned char *data;
  size_t len, pos;
} body_source;

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *user) {
  body_sink *s = user;
  size_t n = size * nmemb;
  if (s->len + n > s->max) {
    s->too_large = 1;
    return 0;
  }
  if (s->fd >= 0) {
    size_t done = 0;
    while (done < n) {
      ssize_t w = write(s->fd, ptr + done, n - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        s->failed_errno = w < 0 ? errno : EIO;
        return 0;
      }
      done += (size_t)w;
    }
  } else {
    if (s->len + n + 1 > s->cap) {
      size_t cap = s->cap ? s->cap : 4096;
      while (cap < s->len + n + 1) cap *= 2;
      char *m = realloc(s->mem, cap);
      if (!m) {
        s->failed_errno = ENOMEM;
        return 0;
      }
      s->mem = m;
      s->cap = cap;
    }
    memcpy(s->mem + s->len, ptr, n);
    s->mem[s->len + n] = '\0';
  }
  if (s->hash) aqs_sha256_update(s->hash, ptr, n);
  s->len += n;
  return n;
}

static size_t read_cb(char *buf, size_t size, size_t nitems, void *user) {
  body_source *src = user;
  size_t n = size * nitems, left = src->len - src->pos;
  if (n > left) n = left;
  memcpy(buf, src->data + src->pos, n);
  src->pos += n;
  return n;
}

static aqs_status sink_reset(body_sink *s, aqs_err *err) {
  s->len = 0;
  s->too_large = 0;
  s->failed_errno = 0;
  if (s->hash) aqs_sha256_reset(s->hash);
  if (s->fd >= 0 && (ftruncate(s->fd, 0) != 0 || lseek(s->fd, 0, SEEK_SET) != 0))
    return aqs_errno(err, AQS_ERR_IO, errno, "preparing the download file");
  return AQS_OK;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static const char *method_name(method m) { return m == M_HEAD ? "HEAD" : m == M_GET ? "GET" : "PUT"; }

/* Runs one request (kind "cas" or "ac") with retries. expect (GET only, may be NULL): the digest the
 * body must hash to. *status_out: the final HTTP status (404 = missing). Returns AQS_OK for a 2xx
 * or 404 (caller checks status), else the error after the last try. */
static aqs_status request(aqs_remote *r, method m, const char *kind, const aqs_digest *id,
                          body_source *up, body_sink *down, const aqs_digest *expect, aqs_remote_check_fn check,
                          void *check_user, long *status_out, aqs_err *err) {
  char hex[AQS_DIGEST_HEX_LEN + 1], url[8192];
  snprintf(url, sizeof url, "%s/%s/%s", r->url, kind, aqs_digest_hex(id, hex));
  char why[AQS_ERR_MSG_MAX] = "";
  aqs_status final = AQS_ERR_IO;
  int delay = r->backoff_ms;
  pthread_mutex_lock(&r->lock);
  for (int attempt = 1; attempt <= r->attempts; attempt++) {
    if (attempt > 1) {
      r->stats.retries++;
      sleep_ms(delay);
      delay = delay < BACKOFF_MAX_MS / 2 ? delay * 2 : BACKOFF_MAX_MS;
    }
    r->stats.requests++;
    if (down && sink_reset(down, err) != AQS_OK) {
      pthread_mutex_unlock(&r->lock);
      return AQS_ERR_IO;
    }
    if (up) up->pos = 0;
    CURL *c = r->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)r->timeout_s);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)r->timeout_s);
    if (m == M_HEAD) {
      curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (m == M_PUT) {
      curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
      curl_easy_setopt(c, CURLOPT_READDATA, up);
      curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)up->len);
    }
    body_sink discard = {.fd = -1, .max = 1u << 16};
    body_sink *sink = m == M_GET ? down : &discard;
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    free(discard.mem);
    if (m == M_GET) r->stats.bytes_down += down->len;
    if (m == M_PUT) r->stats.bytes_up += up->pos;
    if (rc != CURLE_OK) {
      if (m == M_GET && down->failed_errno) {
        pthread_mutex_unlock(&r->lock);
        return aqs_errf(err, AQS_ERR_IO, "remote GET %s: storing the body failed: %s", url,
                        strerror(down->failed_errno));
      }
      if (m == M_GET && down->too_large && aqs_remote_classify(status) == AQS_REMOTE_OK) {
        pthread_mutex_unlock(&r->lock);
        return aqs_errf(err, AQS_ERR_INVALID, "remote GET %s: the body is larger than %zu bytes", url,
                        down->max);
      }
      if (rc == CURLE_WRITE_ERROR && aqs_remote_classify(status) != AQS_REMOTE_OK) rc = CURLE_OK;
    }
    if (rc != CURLE_OK) {
      snprintf(why, sizeof why, "%s", curl_easy_strerror(rc));
      final = AQS_ERR_IO;
      continue; /* transport error, timeout, body cut short: retry */
    }
    aqs_remote_class cls = aqs_remote_classify(status);
    if (cls == AQS_REMOTE_OK && m == M_GET && expect) {
      aqs_digest got;
      aqs_sha256_final(down->hash, &got);
      if (!aqs_digest_eq(&got, expect)) {
        char gtext[AQS_DIGEST_STR_SIZE];
        snprintf(why, sizeof why, "the body (%zu bytes) hashes to %s, not the requested digest",
                 down->len, aqs_digest_str(&got, gtext));
        final = AQS_ERR_CORRUPT;
        continue; /* a wrong body may be a transient proxy fault: retry */
      }
    }
    if (cls == AQS_REMOTE_OK && m == M_GET && check) {
      aqs_err bad = {0};
      if (check(down->mem ? down->mem : "", down->len, check_user, &bad) != AQS_OK) {
        snprintf(why, sizeof why, "%s", bad.msg);
        final = AQS_ERR_CORRUPT;
        continue;
      }
    }
    if (cls == AQS_REMOTE_OK || cls == AQS_REMOTE_MISSING) {
      *status_out = status;
      pthread_mutex_unlock(&r->lock);
      return AQS_OK;
    }
    if (cls == AQS_REMOTE_RETRY) {
      snprintf(why, sizeof why, "HTTP %ld", status);
      final = AQS_ERR_IO;
      continue;
    }
    pthread_mutex_unlock(&r->lock);
    if (cls == AQS_REMOTE_AUTH && r->token_env[0])
      return aqs_errf(err, AQS_ERR_IO, "remote %s %s: HTTP %ld: access refused (check the token in $%s)",
                      method_name(m), url, status, r->token_env);
    if (cls == AQS_REMOTE_AUTH)
      return aqs_errf(err, AQS_ERR_IO, "remote %s %s: HTTP %ld: access refused (no token sent: set [remote] "
                      "token_env to the variable that holds it)", method_name(m), url, status);
    if (status == 400 && m == M_PUT && strcmp(kind, "ac") == 0)
      return aqs_errf(err, AQS_ERR_IO,
                      "remote PUT %s: HTTP 400: the server refused the action record (bazel-remote must run "
                      "with --disable_http_ac_validation: aqs records are JSON, not REAPI ActionResults)",
                      url);
    return aqs_errf(err, AQS_ERR_IO, "remote %s %s: unexpected HTTP %ld", method_name(m), url, status);
  }
  pthread_mutex_unlock(&r->lock);
  return aqs_errf(err, final, "remote %s %s: %s (after %d tries)", method_name(m), url, why, r->attempts);
}

/* ---- the operations ---- */

aqs_status aqs_remote_cas_has(aqs_remote *r, const aqs_digest *d, int *present, aqs_err *err) {
  long status = 0;
  aqs_status st = request(r, M_HEAD, "cas", d, NULL, NULL, NULL, NULL, NULL, &status, err);
  *present = st == AQS_OK && status != 404;
  return st;
}

static aqs_status get(aqs_remote *r, const char *kind, const aqs_digest *id, const aqs_digest *expect,
                      aqs_remote_check_fn check, void *check_user, body_sink *sink, aqs_err *err) {
  if (expect && !(sink->hash = aqs_sha256_new())) return aqs_errf(err, AQS_ERR_NOMEM, "out of memory");
  long status = 0;
  aqs_status st = request(r, M_GET, kind, id, NULL, sink, expect, check, check_user, &status, err);
  aqs_sha256_free(sink->hash);
  sink->hash = NULL;
  if (st == AQS_OK && status == 404) {
    char text[AQS_DIGEST_STR_SIZE];
    st = aqs_errf(err, AQS_ERR_NOT_FOUND, "%s %s not found in remote %s", kind[0] == 'c' ? "object" : "record",
                  aqs_digest_str(id, text), r->url);
  }
  return st;
}

aqs_status aqs_remote_cas_get_fd(aqs_remote *r, const aqs_digest *d, int fd, uint64_t *size_out,
                                 aqs_err *err) {
  body_sink sink = {.fd = fd, .max = SIZE_MAX};
  aqs_status st = get(r, "cas", d, d, NULL, NULL, &sink, err);
  if (st == AQS_OK && size_out) *size_out = sink.len;
  return st;
}

aqs_status aqs_remote_cas_get_mem(aqs_remote *r, const aqs_digest *d, size_t max_bytes,
                                  void **data_out, size_t *size_out, aqs_err *err) {
  *data_out = NULL;
  *size_out = 0;
  body_sink sink = {.fd = -1, .max = max_bytes};
  aqs_status st = get(r, "cas", d, d, NULL, NULL, &sink, err);
  if (st == AQS_OK && !sink.mem) sink.mem = malloc(1);
  if (st == AQS_OK && !sink.mem) st = aqs_errf(err, AQS_ERR_NOMEM, "out of memory");
  if (st != AQS_OK) {
    free(sink.mem);
    return st;
  }
  *data_out = sink.mem;
  *size_out = sink.len;
  return AQS_OK;
}

aqs_status aqs_remote_ac_get(aqs_remote *r, const aqs_digest *key, size_t max_bytes, aqs_remote_check_fn check,
                             void *check_user, char **body_out, size_t *len_out, aqs_err *err) {
  *body_out = NULL;
  *len_out = 0;
  body_sink sink = {.fd = -1, .max = max_bytes};
  aqs_status st = get(r, "ac", key, NULL, check, check_user, &sink, err);
  if (st == AQS_OK && !sink.mem) sink.mem = calloc(1, 1);
  if (st == AQS_OK && !sink.mem) st = aqs_errf(err, AQS_ERR_NOMEM, "out of memory");
  if (st != AQS_OK) {
    free(sink.mem);
    return st;
  }
  *body_out = sink.mem;
  *len_out = sink.len;
  return AQS_OK;
}

static aqs_status put(aqs_remote *r, const char *kind, const aqs_digest *id, const void *data, size_t len,
                      aqs_err *err) {
  body_source src = {data, len, 0};
  long status = 0;
  aqs_status st = request(r, M_PUT, kind, id, &src, NULL, NULL, NULL, NULL, &status, err);
  if (st == AQS_OK && status == 404)
    st = aqs_errf(err, AQS_ERR_IO, "remote PUT %s/%s/...: HTTP 404 (does the server accept PUT here?)", r->url,
                  kind);
  return st;
}

aqs_status aqs_remote_cas_put(aqs_remote *r, const aqs_digest *d, const void *data, size_t len,
                              aqs_err *err) {
  return put(r, "cas", d, data, len, err);
}

aqs_status aqs_remote_ac_put(aqs_remote *r, const aqs_digest *key, const void *body, size_t len,
                             aqs_err *err) {
  return put(r, "ac", key, body, len, err);
}
