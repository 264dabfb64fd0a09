/* common/progress.c: the stderr progress line of progress.h: an atomic counter any thread bumps,
 * a redraw throttled to ~10 Hz by whichever thread gets the draw lock, and a final summary line. */
#include "common/progress.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REDRAW_INTERVAL_NS 100000000LL /* 0.1 s */
#define LABEL_MAX 64
#define UNIT_MAX 16

struct aqs_progress {
  FILE *out;
  int live;                     /* redraw in place (tty) or only print the final line */
  char label[LABEL_MAX];
  char unit[UNIT_MAX];
  _Atomic uint64_t done;
  _Atomic uint64_t total;
  int64_t start_ns;
  _Atomic int64_t last_draw_ns;
  pthread_mutex_t draw_lock;
};

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* "512.0 MiB" for byte units, "1234" (count) otherwise. */
static void format_count(char *buf, size_t len, uint64_t n, int is_bytes) {
  if (!is_bytes) {
    snprintf(buf, len, "%" PRIu64, n);
    return;
  }
  static const char *const suffix[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = (double)n;
  size_t s = 0;
  while (v >= 1024.0 && s + 1 < sizeof suffix / sizeof suffix[0]) {
    v /= 1024.0;
    s++;
  }
  if (s == 0) snprintf(buf, len, "%" PRIu64 " B", n);
  else snprintf(buf, len, "%.1f %s", v, suffix[s]);
}

/* "256.0 MiB/s" for bytes, "48.0 tok/s" / "12.3k tok/s" / "4.1M tok/s" otherwise. */
static void format_rate(char *buf, size_t len, double per_s, const char *unit, int is_bytes) {
  if (is_bytes) {
    char c[32];
    format_count(c, sizeof c, (uint64_t)per_s, 1);
    snprintf(buf, len, "%s/s", c);
  } else if (per_s >= 1e6) {
    snprintf(buf, len, "%.1fM %s/s", per_s / 1e6, unit);
  } else if (per_s >= 1e4) {
    snprintf(buf, len, "%.1fk %s/s", per_s / 1e3, unit);
  } else {
    snprintf(buf, len, "%.1f %s/s", per_s, unit);
  }
}

/* "2s", "1m05s", "2h03m"; "1.5s" when fractional seconds matter (short totals). */
static void format_duration(char *buf, size_t len, double s, int with_tenths) {
  if (s < 0) s = 0;
  if (with_tenths && s < 60) {
    snprintf(buf, len, "%.1fs", s);
    return;
  }
  uint64_t secs = (uint64_t)(s + 0.5);
  if (secs < 60) snprintf(buf, len, "%" PRIu64 "s", secs);
  else if (secs < 3600) snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", secs / 60, secs % 60);
  else snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", secs / 3600, (secs % 3600) / 60);
}

char *aqs_progress_format(char *buf, size_t buf_len, const char *label, uint64_t done,
                          uint64_t total, const char *unit, double elapsed_s, int final) {
  int is_bytes = strcmp(unit, "B") == 0;
  char done_s[32], total_s[32], rate_s[48], time_s[32];
  format_count(done_s, sizeof done_s, done, is_bytes);
  double rate = elapsed_s > 0 ? (double)done / elapsed_s : 0.0;
  format_rate(rate_s, sizeof rate_s, rate, unit, is_bytes);
  /* Byte counts carry their own unit; plain counts are followed by the unit name. */
  const char *unit_sep = is_bytes ? "" : " ";
  const char *unit_shown = is_bytes ? "" : unit;
  if (total == 0) {
    if (final) {
      format_duration(time_s, sizeof time_s, elapsed_s, 1);
      snprintf(buf, buf_len, "%s  %s%s%s  %s  in %s", label, done_s, unit_sep, unit_shown,
               rate_s, time_s);
    } else {
      snprintf(buf, buf_len, "%s  %s%s%s  %s", label, done_s, unit_sep, unit_shown, rate_s);
    }
    return buf;
  }
  format_count(total_s, sizeof total_s, total, is_bytes);
  unsigned pct = (unsigned)(done >= total ? 100 : (done * 100.0) / (double)total);
  if (final) {
    format_duration(time_s, sizeof time_s, elapsed_s, 1);
    snprintf(buf, buf_len, "%s  %s/%s%s%s  %u%%  %s  in %s", label, done_s, total_s, unit_sep,
             unit_shown, pct, rate_s, time_s);
  } else {
    if (rate > 0 && done < total) {
      format_duration(time_s + 4, sizeof time_s - 4, (double)(total - done) / rate, 0);
      memcpy(time_s, "ETA ", 4);
    } else {
      snprintf(time_s, sizeof time_s, done >= total ? "ETA 0s" : "ETA ?");
    }
    snprintf(buf, buf_len, "%s  %s/%s%s%s  %u%%  %s  %s", label, done_s, total_s, unit_sep,
             unit_shown, pct, rate_s, time_s);
  }
  return buf;
}

static int progress_disabled(void) {
  const char *env = getenv("AQS_PROGRESS");
  return env && strcmp(env, "never") == 0;
}

aqs_progress *aqs_progress_start_on(FILE *out, int live, const char *label, uint64_t total,
                                    const char *unit) {
  aqs_progress *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->out = out;
  p->live = live;
  snprintf(p->label, sizeof p->label, "%s", label ? label : "");
  snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "");
  atomic_init(&p->done, 0);
  atomic_init(&p->total, total);
  p->start_ns = now_ns();
  atomic_init(&p->last_draw_ns, 0);
  pthread_mutex_init(&p->draw_lock, NULL);
  return p;
}

aqs_progress *aqs_progress_start(const char *label, uint64_t total, const char *unit) {
  if (progress_disabled()) return NULL;
  const char *env = getenv("AQS_PROGRESS");
  int live = (env && strcmp(env, "always") == 0) || isatty(STDERR_FILENO);
  return aqs_progress_start_on(stderr, live, label, total, unit);
}

static void draw(aqs_progress *p, int64_t t_ns, int final) {
  char line[256];
  aqs_progress_format(line, sizeof line, p->label, atomic_load(&p->done), atomic_load(&p->total),
                      p->unit, (double)(t_ns - p->start_ns) / 1e9, final);
  if (p->live) fprintf(p->out, "\r%s\033[K%s", line, final ? "\n" : "");
  else if (final) fprintf(p->out, "%s\n", line);
  fflush(p->out);
}

/* Redraws when live and the last draw is older than the interval; never blocks on the lock. */
static void maybe_draw(aqs_progress *p) {
  if (!p->live) return;
  int64_t t = now_ns();
  if (t - atomic_load(&p->last_draw_ns) < REDRAW_INTERVAL_NS) return;
  if (pthread_mutex_trylock(&p->draw_lock) != 0) return;
  if (t - atomic_load(&p->last_draw_ns) >= REDRAW_INTERVAL_NS) {
    atomic_store(&p->last_draw_ns, t);
    draw(p, t, 0);
  }
  pthread_mutex_unlock(&p->draw_lock);
}

void aqs_progress_add(aqs_progress *p, uint64_t n) {
  if (!p) return;
  atomic_fetch_add(&p->done, n);
  maybe_draw(p);
}

void aqs_progress_set(aqs_progress *p, uint64_t done) {
  if (!p) return;
  atomic_store(&p->done, done);
  maybe_draw(p);
}

void aqs_progress_set_total(aqs_progress *p, uint64_t total) {
  if (!p) return;
  atomic_store(&p->total, total);
}

static void progress_free(aqs_progress *p) {
  pthread_mutex_destroy(&p->draw_lock);
  free(p);
}

void aqs_progress_finish(aqs_progress *p) {
  if (!p) return;
  pthread_mutex_lock(&p->draw_lock);
  draw(p, now_ns(), 1);
  pthread_mutex_unlock(&p->draw_lock);
  progress_free(p);
}

void aqs_progress_abort(aqs_progress *p) {
  if (!p) return;
  pthread_mutex_lock(&p->draw_lock);
  if (p->live && atomic_load(&p->last_draw_ns) != 0) {
    fputs("\r\033[K", p->out);
    fflush(p->out);
  }
  pthread_mutex_unlock(&p->draw_lock);
  progress_free(p);
}
