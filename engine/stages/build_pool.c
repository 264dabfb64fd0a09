/* engine/stages/build_pool.c: a few threads taking a build's deferred stage runs in order (see
 * build_pool.h). A sweep's later exports are mostly SHA-256 of shards with a new mix of formats,
 * one sequential stream each, and stores into the index: several exports at once overlap the
 * hashing, while the index's commits stay one at a time. */
#include "engine/stages/build_pool.h"

#include <pthread.h>
#include <stdlib.h>

#include "common/progress.h"

typedef struct pool {
  aqs_pool_item *const *items;
  size_t n, next;
  int failed;
  pthread_mutex_t lock;
  aqs_progress *prog;
} pool;

int aqs_build_pool_threads(size_t n) {
  /* One by default: on the H200 machine (16 cores, ext4 on a virtio disk) 8 exports at once took
   * a 3b sweep's later exports from 4.0 s to 5.6 s. Their stores serialize on the index's single
   * writer (an fsync'd commit per object put) more than their hashing overlaps. */
  const char *env = getenv("AQS_EXPORT_SCHEMES");
  long t = env && *env ? strtol(env, NULL, 10) : 1;
  if (t < 1) t = 1;
  if (t > 64) t = 64;
  return (size_t)t > n ? (int)(n ? n : 1) : (int)t;
}

static void *pool_thread(void *arg) {
  pool *p = arg;
  for (;;) {
    pthread_mutex_lock(&p->lock);
    aqs_pool_item *it = !p->failed && p->next < p->n ? p->items[p->next++] : NULL;
    if (it) it->started = 1;
    pthread_mutex_unlock(&p->lock);
    if (!it) return NULL;
    aqs_err_clear(&it->err);
    it->st = aqs_stage_exec(it->def, &it->job, 0, it->out, &it->err);
    aqs_progress_add(p->prog, 1);
    if (it->st) {
      pthread_mutex_lock(&p->lock);
      p->failed = 1;
      pthread_mutex_unlock(&p->lock);
    }
  }
}

void aqs_build_pool_run(aqs_pool_item *const *items, size_t n, int threads, const char *progress_label) {
  pool p = {.items = items, .n = n};
  pthread_mutex_init(&p.lock, NULL);
  p.prog = progress_label && n ? aqs_progress_start(progress_label, n, "schemes") : NULL;
  pthread_t *tids = calloc((size_t)(threads > 1 ? threads - 1 : 1), sizeof *tids);
  int started = 0;
  for (int i = 0; tids && i < threads - 1; i++, started++)
    if (pthread_create(&tids[i], NULL, pool_thread, &p) != 0) break;
  pool_thread(&p); /* the calling thread is one of the pool */
  for (int i = 0; i < started; i++) pthread_join(tids[i], NULL);
  free(tids);
  if (p.failed) aqs_progress_abort(p.prog);
  else aqs_progress_finish(p.prog);
  pthread_mutex_destroy(&p.lock);
}
