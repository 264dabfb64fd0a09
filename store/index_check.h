/* store/index_check.h: structural checks of an LMDB data file (index/data.mdb) done with pread
 * before LMDB maps it, so a damaged or truncated index gives an error instead of SIGBUS, an LMDB
 * assertion or an out-of-bounds write. Private to store/ (store_open.c calls it). Thread-safe:
 * no shared state. */
#ifndef AQS_STORE_INDEX_CHECK_H
#define AQS_STORE_INDEX_CHECK_H

#include <stddef.h>
#include <stdint.h>

/* Checks both meta pages (page flags, magic, format version, page size, map size) and that the
 * file holds every page they claim. 0 when sound; -1 with a reason in why. *psize_out
 * (optional) receives the page size. */
int aqs_index_check_metas(int fd, uint64_t *psize_out, char *why, size_t why_cap);

/* Walks the snapshot whose transaction id is txnid (the caller holds a read transaction on it so
 * its pages cannot be reused): every reachable page, node bounds, key order within and across
 * pages, tree depth, the page and entry counts each database record states, overflow runs,
 * sub-databases, duplicate sub-pages and the free list (in range, never reachable, never twice).
 * 0 when sound, 1 when neither meta page holds txnid any more (take a new read transaction and
 * call again), -1 with a reason in why. */
int aqs_index_check_snapshot(int fd, uint64_t txnid, char *why, size_t why_cap);

#endif
