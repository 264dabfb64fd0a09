/* engine/stages/chunk_workers.c: --devices parsing, the worker's assignment from its environment,
 * and starting and waiting for the worker processes (see chunk_workers.h). */
#include "engine/stages/chunk_workers.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>


extern char **environ;

#define WORKER_ENV "AQS_CHUNK_WORKER"
#define PARENT_ENV "AQS_CHUNK_WORKER_PARENT" /* the build's pid: a worker dies with it */

aqs_status aqs_devices_parse(const char *list, aqs_devices *out, aqs_err *e) {
  memset(out, 0, sizeof *out);
  int cpu = 0, gpu = 0;
  const char *p = list ? list : "";
  for (;;) {
    size_t len = strcspn(p, ",");
    char entry[32];
    if (len == 0 || len >= sizeof entry)
      return aqs_errf(e, AQS_ERR_INVALID, "--devices '%s': empty or overlong entry (expected e.g. 0,1 or cpu,cpu)",
                      list ? list : "");
    memcpy(entry, p, len);
    entry[len] = '\0';
    if (out->n == AQS_DEVICES_MAX)
      return aqs_errf(e, AQS_ERR_INVALID, "--devices '%s': more than %d entries", list, AQS_DEVICES_MAX);
    char *end;
    long v = strtol(entry, &end, 10);
    if (strcmp(entry, "cpu") == 0) {
      cpu = 1;
      out->index[out->n++] = -1;
    } else if (entry[0] >= '0' && entry[0] <= '9' && *end == '\0' && v < 1024) {
      gpu = 1;
      out->index[out->n++] = (int)v;
    } else {
      return aqs_errf(e, AQS_ERR_INVALID, "--devices '%s': bad entry '%s' (a CUDA device index or 'cpu')", list,
                      entry);
    }
    if (!p[len]) break;
    p += len + 1;
  }
  if (cpu && gpu)
    return aqs_errf(e, AQS_ERR_INVALID, "--devices '%s': mixes 'cpu' and GPU indices (one backend per build)", list);
  out->is_cpu = cpu;
  return AQS_OK;
}

aqs_status aqs_chunk_worker_from_env(aqs_chunk_worker *out, int *found, aqs_err *e) {
  memset(out, 0, sizeof *out);
  *found = 0;
  const char *env = getenv(WORKER_ENV);
  if (!env || !*env) return AQS_OK;
  /* <stage>:sha256:<hex>:<i,j-k,...> (j-k: every chunk from j to k) */
  const char *colon = strchr(env, ':');
  size_t slen = colon ? (size_t)(colon - env) : 0;
  if (!colon || slen == 0 || slen >= sizeof out->stage || strlen(colon + 1) < AQS_DIGEST_STR_SIZE)
    return aqs_errf(e, AQS_ERR_INVALID, "%s='%s': expected STAGE:sha256:HEX:I,J,...", WORKER_ENV, env);
  memcpy(out->stage, env, slen);
  char key[AQS_DIGEST_STR_SIZE];
  memcpy(key, colon + 1, AQS_DIGEST_STR_SIZE - 1);
  key[AQS_DIGEST_STR_SIZE - 1] = '\0';
  aqs_status st = aqs_digest_parse(key, &out->key, e);
  const char *p = colon + AQS_DIGEST_STR_SIZE;
  if (!st && *p != ':') st = aqs_errf(e, AQS_ERR_INVALID, "%s: no chunk list after the key", WORKER_ENV);
  size_t cap = 0;
  char sep = ':'; /* the list follows a ':', its entries are separated by ',' */
  while (!st && *p == sep) {
    p++;
    sep = ',';
    char *end;
    errno = 0;
    unsigned long v = strtoul(p, &end, 10), last = v;
    int bad = end == p || errno;
    if (!bad && *end == '-') {
      const char *q = end + 1;
      last = strtoul(q, &end, 10);
      bad = end == q || errno || last < v || last - v > 100000000;
    }
    if (bad || (*end && *end != ',') || (out->n_chunks && v <= out->chunks[out->n_chunks - 1])) {
      st = aqs_errf(e, AQS_ERR_INVALID, "%s: bad chunk list at '%s' (ascending indices)", WORKER_ENV, p);
      break;
    }
    for (unsigned long i = v; !st && i <= last; i++) {
      if (out->n_chunks == cap) {
        size_t *grown = realloc(out->chunks, (cap = cap ? 2 * cap : 16) * sizeof *grown);
        if (!grown) {
          st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
          break;
        }
        out->chunks = grown;
      }
      out->chunks[out->n_chunks++] = (size_t)i;
    }
    p = end;
  }
  /* A worker must not outlive the build that reduces its chunks (killed, or interrupted):
   * SIGTERM when its parent exits, and no start at all when the parent is already gone. */
  const char *parent = getenv(PARENT_ENV);
  if (!st && parent) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != (pid_t)atol(parent))
      st = aqs_errf(e, AQS_ERR_IO, "chunk worker: the build that started it (pid %s) has exited", parent);
  }
  if (st) aqs_chunk_worker_free(out);
  else *found = 1;
  return st;
}

void aqs_chunk_worker_free(aqs_chunk_worker *w) {
  free(w->chunks);
  w->chunks = NULL;
  w->n_chunks = 0;
}

int aqs_chunk_worker_owns(const aqs_chunk_worker *w, size_t i) {
  size_t lo = 0, hi = w->n_chunks;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (w->chunks[mid] == i) return 1;
    if (w->chunks[mid] < i) lo = mid + 1;
    else hi = mid;
  }
  return 0;
}

/* "NAME=value" for a child's environment (malloc'd). */
static char *env_entry(const char *name, const char *value) {
  size_t n = strlen(name) + strlen(value) + 2;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s=%s", name, value);
  return s;
}

/* The parent's environment without the variables set for the worker, then theirs. */
static char **worker_env(char **extra, size_t n_extra) {
  size_t n = 0;
  while (environ[n]) n++;
  char **env = calloc(n + n_extra + 1, sizeof *env);
  if (!env) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    int replaced = 0;
    for (size_t j = 0; j < n_extra && !replaced; j++) {
      size_t len = strcspn(extra[j], "=") + 1;
      replaced = strncmp(environ[i], extra[j], len) == 0;
    }
    if (!replaced) env[k++] = environ[i];
  }
  for (size_t j = 0; j < n_extra; j++) env[k++] = extra[j];
  return env;
}

char *aqs_chunk_assignment(const aqs_chunk_spread *s, size_t w, size_t n) {
  /* a block of the missing chunks: runs of consecutive indices are written j-k, so a worker's
   * value stays short (one environment string is capped at 128 KiB) */
  size_t lo = w * s->n_missing / n, hi = (w + 1) * s->n_missing / n;
  size_t cap = strlen(s->stage) + AQS_DIGEST_STR_SIZE + 8 + 42 * (hi - lo + 1);
  char *text = malloc(cap), key[AQS_DIGEST_STR_SIZE];
  if (!text) return NULL;
  size_t len = (size_t)snprintf(text, cap, "%s:%s:", s->stage, aqs_digest_str(s->key, key));
  for (size_t k = lo; k < hi;) {
    size_t run = k;
    while (run + 1 < hi && s->missing[run + 1] == s->missing[run] + 1) run++;
    len += (size_t)snprintf(text + len, cap - len, "%s%zu", k == lo ? "" : ",", s->missing[k]);
    if (run > k) len += (size_t)snprintf(text + len, cap - len, "-%zu", s->missing[run]);
    k = run + 1;
  }
  return text;
}

/* Starts worker w on device d; *pid on success. */
static aqs_status spawn_worker(const aqs_chunk_spread *s, size_t w, size_t n, pid_t *pid, aqs_err *e) {
  /* Resolved in the new process, which still runs this program: the same code even once its file
   * was replaced or deleted (a path would start the new binary, or nothing). */
  const char *exe = "/proc/self/exe";
  char device[24], threads[24], parent[24];
  int dev = s->devices->index[w];
  char *extra[5] = {NULL, NULL, NULL, NULL, NULL}, *value = aqs_chunk_assignment(s, w, n);
  size_t n_extra = 1;
  extra[0] = value ? env_entry(WORKER_ENV, value) : NULL;
  free(value);
  extra[n_extra++] = env_entry("AQS_PROGRESS", "never");
  snprintf(parent, sizeof parent, "%ld", (long)getpid());
  extra[n_extra++] = env_entry(PARENT_ENV, parent);
  if (dev >= 0) {
    snprintf(device, sizeof device, "%d", dev);
    extra[n_extra++] = env_entry("AQS_CUDA_DEVICE", device);
  } else if (!getenv("OMP_NUM_THREADS")) {
    /* CPU workers share the cores (the CPU backend's bits do not depend on its thread count) */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(threads, sizeof threads, "%ld", cores / (long)n > 1 ? cores / (long)n : 1);
    extra[n_extra++] = env_entry("OMP_NUM_THREADS", threads);
  }
  char **env = worker_env(extra, n_extra);
  aqs_status st = AQS_OK;
  for (size_t j = 0; j < n_extra; j++)
    if (!extra[j]) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  if (!env && !st) st = aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  if (!st) {
    int rc = posix_spawn(pid, exe, &fa, NULL, s->argv, env);
    if (rc) st = aqs_errno(e, AQS_ERR_IO, rc, "cannot start chunk worker %zu (%s)", w, exe);
  }
  posix_spawn_file_actions_destroy(&fa);
  free(env);
  for (size_t j = 0; j < n_extra; j++) free(extra[j]);
  return st;
}

static void device_name(const aqs_devices *d, size_t w, char *buf, size_t n) {
  if (d->index[w] < 0) snprintf(buf, n, "cpu");
  else snprintf(buf, n, "cuda:%d", d->index[w]);
}

/* Stops the workers still running (SIGCONT too: a stopped one would hold SIGTERM pending). */
static void stop_workers(const pid_t *pids, const int *running, size_t n) {
  for (size_t w = 0; w < n; w++)
    if (running[w]) {
      kill(pids[w], SIGTERM);
      kill(pids[w], SIGCONT);
    }
}

/* Reaps the next worker to end, whichever it is (pidfds: other children of this process are left
 * alone); in start order where pidfds are missing. Returns its index, *status its wait status. */
static size_t reap_next(const pid_t *pids, int *running, struct pollfd *fds, size_t n, int *status) {
  size_t w = n;
  int polled = 0;
  for (size_t k = 0; k < n; k++) polled |= running[k] && fds[k].fd >= 0;
  while (polled && w == n) {
    if (poll(fds, (nfds_t)n, -1) < 0 && errno != EINTR) break;
    for (size_t k = 0; k < n && w == n; k++)
      if (running[k] && fds[k].fd >= 0 && fds[k].revents) w = k;
  }
  for (size_t k = 0; k < n && w == n; k++)
    if (running[k]) w = k;
  while (waitpid(pids[w], status, 0) < 0 && errno == EINTR) {
  }
  running[w] = 0;
  if (fds[w].fd >= 0) close(fds[w].fd);
  fds[w].fd = -1;
  return w;
}

aqs_status aqs_chunk_spread_run(const aqs_chunk_spread *s, aqs_err *e) {
  size_t n = (size_t)s->devices->n < s->n_missing ? (size_t)s->devices->n : s->n_missing;
  pid_t pids[AQS_DEVICES_MAX];
  int running[AQS_DEVICES_MAX] = {0};
  struct pollfd fds[AQS_DEVICES_MAX];
  size_t started = 0;
  aqs_status st = AQS_OK;
  /* SIGCHLD ignored (inherited from a caller, or SA_NOCLDWAIT) makes the kernel reap the workers:
   * their exit status would be lost and a failed worker taken for a finished one. */
  struct sigaction chld, dfl = {.sa_handler = SIG_DFL};
  sigemptyset(&dfl.sa_mask);
  int reset = sigaction(SIGCHLD, NULL, &chld) == 0 && (chld.sa_handler == SIG_IGN || (chld.sa_flags & SA_NOCLDWAIT));
  if (reset) sigaction(SIGCHLD, &dfl, NULL);
  for (; started < n && !st; started++) {
    st = spawn_worker(s, started, n, &pids[started], e);
    if (st) break;
    running[started] = 1;
    fds[started] = (struct pollfd){.fd = pidfd_open(pids[started], 0), .events = POLLIN};
  }
  /* The first worker to fail ends the others (their chunks are wasted work): reaped in the order
   * they end, and waited for all the same: none outlives the build. */
  if (st) stop_workers(pids, running, started);
  for (size_t left = started; left > 0; left--) {
    int status = 0;
    size_t w = reap_next(pids, running, fds, started, &status);
    if (st) continue;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      char dev[16];
      device_name(s->devices, w, dev, sizeof dev);
      if (WIFSIGNALED(status))
        st = aqs_errf(e, AQS_ERR_IO, "%s: chunk worker %zu (%s) was killed by signal %d", s->stage, w, dev,
                      WTERMSIG(status));
      else
        st = aqs_errf(e, AQS_ERR_IO, "%s: chunk worker %zu (%s) failed (exit status %d; its error is above)",
                      s->stage, w, dev, WEXITSTATUS(status));
      stop_workers(pids, running, started);
    }
  }
  if (reset) sigaction(SIGCHLD, &chld, NULL);
  return st;
}
