/* store/lease.c: leases on actions being computed, so concurrent builders compute each action
 * once: the first takes the lease (an LMDB record: pid, host, process start, time), the others
 * wait and reuse its result. A lease of a process that no longer runs on this host is taken over;
 * aqs_action_put drops the lease of the key it records. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store_internal.h"

/* Leases of other hosts cannot be checked for liveness (a store is on one host's local disk, but
 * containers may share it): they are taken over after this long. */
#define FOREIGN_LEASE_NS (3600ll * 1000000000ll)

typedef struct lease_rec {
  int64_t pid;
  uint64_t proc_start;  /* /proc/<pid>/stat starttime: tells a reused pid from the holder */
  int64_t since_ns;
  char host[AQS_HOST_MAX];
} lease_rec;

/* Start time of process pid in clock ticks since boot (0 when unknown). */
static uint64_t proc_start_of(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  if (!p) return 0;
  unsigned long long start = 0;
  /* after ")": state(3) ... starttime is field 22 */
  int field = 2;
  char *save = NULL;
  for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
    if (++field == 22) {
      start = strtoull(tok, NULL, 10);
      break;
    }
  return start;
}

static void lease_self(lease_rec *r) {
  memset(r, 0, sizeof *r);
  r->pid = (int64_t)getpid();
  r->proc_start = proc_start_of(getpid());
  r->since_ns = now_ns();
  current_host(r->host, sizeof r->host);
}

/* 1 when the holder still runs (or cannot be shown dead). */
static int holder_alive(const lease_rec *r, const lease_rec *self) {
  if (strcmp(r->host, self->host) != 0) return now_ns() - r->since_ns < FOREIGN_LEASE_NS;
  if (kill((pid_t)r->pid, 0) != 0 && errno == ESRCH) return 0;
  uint64_t start = proc_start_of((pid_t)r->pid);
  return !(start && r->proc_start && start != r->proc_start);
}

typedef struct acquire_ctx {
  aqs_digest key;
  lease_rec self, holder;
  int taken;
} acquire_ctx;

static aqs_status acquire_body(wtx *w, void *ctx_, aqs_err *err) {
  acquire_ctx *c = ctx_;
  store_env *e = w->s->env;
  MDB_val k = {AQS_DIGEST_BYTES, c->key.bytes}, v;
  c->taken = 0;
  if (mdb_get(w->txn, e->db_lease, &k, &v) == 0 && v.mv_size == sizeof c->holder) {
    memcpy(&c->holder, v.mv_data, sizeof c->holder);
    c->holder.host[AQS_HOST_MAX - 1] = '\0';
    int ours = c->holder.pid == c->self.pid && !strcmp(c->holder.host, c->self.host) &&
               c->holder.proc_start == c->self.proc_start;
    if (!ours && holder_alive(&c->holder, &c->self)) return AQS_OK;
  }
  c->taken = 1;
  return wput(w, e->db_lease, c->key.bytes, AQS_DIGEST_BYTES, &c->self, sizeof c->self, 0, err);
}

static aqs_status lease_try(aqs_store *s, const aqs_digest *key, acquire_ctx *c, aqs_err *err) {
  c->key = *key;
  lease_self(&c->self);
  return store_write(s, acquire_body, c, err);
}

aqs_status lease_drop(wtx *w, const aqs_digest *key, aqs_err *err) {
  if (!w->s->env->db_lease) return AQS_OK;
  return wdel(w, w->s->env->db_lease, key->bytes, AQS_DIGEST_BYTES, NULL, 0, err);
}

typedef struct release_ctx {
  aqs_digest key;
  lease_rec self;
} release_ctx;

static aqs_status release_body(wtx *w, void *ctx_, aqs_err *err) {
  release_ctx *c = ctx_;
  MDB_val k = {AQS_DIGEST_BYTES, c->key.bytes}, v;
  lease_rec have;
  if (mdb_get(w->txn, w->s->env->db_lease, &k, &v) != 0 || v.mv_size != sizeof have) return AQS_OK;
  memcpy(&have, v.mv_data, sizeof have);
  if (have.pid != c->self.pid || have.proc_start != c->self.proc_start ||
      strncmp(have.host, c->self.host, sizeof have.host) != 0)
    return AQS_OK; /* taken over: not ours to drop */
  return lease_drop(w, &c->key, err);
}

void aqs_lease_release(aqs_store *s, const aqs_digest *key) {
  if (!s || (s->flags & AQS_STORE_RDONLY) || !s->env->db_lease) return;
  release_ctx c = {.key = *key};
  lease_self(&c.self);
  store_write(s, release_body, &c, NULL);
}

aqs_status aqs_action_claim(aqs_store *s, const char *stage, const aqs_digest *key,
                            aqs_action_info *info, aqs_err *err) {
  char hex[AQS_DIGEST_STR_SIZE];
  if ((s->flags & AQS_STORE_RDONLY) || !s->env->db_lease)
    return aqs_errf(err, AQS_ERR_NOT_FOUND, "no cached action %s", aqs_digest_str(key, hex));
  int64_t pause_us = 5000;
  int announced = 0;
  for (;;) {
    acquire_ctx c;
    aqs_status st = lease_try(s, key, &c, err);
    if (st != AQS_OK) return st;
    /* Recorded meanwhile (the holder finished between our lookup and now, or while we waited)? */
    aqs_err miss = {0};
    st = action_lookup_quiet(s, key, info, &miss);
    if (st == AQS_OK) {
      if (c.taken) aqs_lease_release(s, key);
      return AQS_OK;
    }
    if (st != AQS_ERR_NOT_FOUND) {
      if (c.taken) aqs_lease_release(s, key);
      if (err) *err = miss;
      return st;
    }
    if (c.taken) return aqs_errf(err, AQS_ERR_NOT_FOUND, "no cached action %s: leased to this process", aqs_digest_str(key, hex));
    if (!announced && s->notice) {
      char msg[AQS_HOST_MAX + 200];
      snprintf(msg, sizeof msg, "waiting for %s: computed by pid %lld on %s", stage ? stage : "an action",
               (long long)c.holder.pid, c.holder.host);
      s->notice(msg, s->notice_user);
      announced = 1;
    }
    struct timespec ts = {pause_us / 1000000, (pause_us % 1000000) * 1000};
    nanosleep(&ts, NULL);
    if (pause_us < 200000) pause_us *= 2;
  }
}
