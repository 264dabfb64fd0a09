/* engine/stages/chunk_workers.h: calibration and sensitivity chunks computed concurrently by
 * worker processes, one per listed device (`aqs build --devices 0,1` on GPUs, `--devices cpu,cpu`
 * on the CPU backend), with the same bits as one device.
 *
 * How: when a chunked stage misses two chunks or more, the build (the parent) starts one worker per
 * device before its own chunk loop: each worker is this same program run again with the parent's
 * arguments and AQS_CHUNK_WORKER=<stage>:<stage key>:<chunk indices, runs as i-j> (plus
 * AQS_CUDA_DEVICE for a GPU). A worker walks the same graph (every stage before the target hits), computes and records
 * only its chunks as ordinary chunk actions, and exits. The parent then runs its loop as always:
 * every chunk hits and is reduced in chunk order, so the result cannot depend on who computed
 * what. Processes, not threads: each worker has its own backend (a CUDA context, an OpenMP pool)
 * and the store already serves concurrent writers. The device is provenance, never in a key.
 * Threads: called from the build's one thread. Errors: aqs_status + *e (common/err.h). */
#ifndef AQS_STAGES_CHUNK_WORKERS_H
#define AQS_STAGES_CHUNK_WORKERS_H

#include <stddef.h>

#include "common/err.h"
#include "store/store.h"

#define AQS_DEVICES_MAX 16

/* --devices LIST: comma-separated CUDA device indices ("0,1", "0,0" = two workers on GPU 0) or
 * "cpu" entries ("cpu,cpu" = two CPU workers). Mixing, an empty entry, a negative index or more
 * than AQS_DEVICES_MAX entries is AQS_ERR_INVALID naming the entry. *is_cpu says which. */
typedef struct aqs_devices {
  int n;
  int is_cpu;
  int index[AQS_DEVICES_MAX]; /* CUDA device indices (-1 for cpu entries) */
} aqs_devices;
aqs_status aqs_devices_parse(const char *list, aqs_devices *out, aqs_err *e);

/* A worker's assignment, from AQS_CHUNK_WORKER (child side). */
typedef struct aqs_chunk_worker {
  char stage[32];      /* "calibrate", "sensitivity" */
  aqs_digest key;      /* the stage action whose chunks it computes */
  size_t *chunks;      /* chunk indices, ascending */
  size_t n_chunks;
  int done;            /* set once its chunks are recorded: the build stops there */
} aqs_chunk_worker;

/* Parses $AQS_CHUNK_WORKER into *out (*found = 0 when unset). AQS_ERR_INVALID when malformed.
 * Started by aqs_chunk_spread_run, the worker also asks for SIGTERM when the build exits
 * (Linux PR_SET_PDEATHSIG); AQS_ERR_IO when that build has already exited. */
aqs_status aqs_chunk_worker_from_env(aqs_chunk_worker *out, int *found, aqs_err *e);
void aqs_chunk_worker_free(aqs_chunk_worker *w);
/* Whether chunk i is the worker's. */
int aqs_chunk_worker_owns(const aqs_chunk_worker *w, size_t i);

/* Parent side: runs argv (run as this very program, /proc/self/exe) once per device, worker w of
 * n computing the block missing[w * n_missing / n .. (w + 1) * n_missing / n); waits for all of them. Workers' stdout is
 * discarded, their stderr is the parent's (their errors show as they happen). A worker that fails
 * is AQS_ERR_IO naming the stage, the worker and its device; the others are then sent SIGTERM and
 * reaped (none outlives the call). Workers end with the build if it is killed (see above).
 * SIGCHLD is set to its default while they run when it was ignored (restored before returning). */
typedef struct aqs_chunk_spread {
  const char *stage;            /* stage name, e.g. "calibrate" */
  const aqs_digest *key;        /* its action key */
  const size_t *missing;        /* chunk indices to compute, ascending */
  size_t n_missing;
  const aqs_devices *devices;
  char *const *argv;            /* the build's own command line (NULL-terminated) */
} aqs_chunk_spread;
aqs_status aqs_chunk_spread_run(const aqs_chunk_spread *s, aqs_err *e);
/* AQS_CHUNK_WORKER's value for worker w of n (malloc'd; NULL when out of memory). */
char *aqs_chunk_assignment(const aqs_chunk_spread *s, size_t w, size_t n);

#endif
