/* store/index_check.c: the structural check of index/data.mdb run before aqs trusts LMDB with it.
 * LMDB has no checksums and maps the file: a truncated file raises SIGBUS, a flipped byte in a page
 * header or a node makes it assert or write out of bounds. So each process walks the current
 * snapshot once with pread (never through the map) before any LMDB call reads a page: meta pages,
 * file size against the last page, every reachable page's header, node bounds, key order, depth
 * and counts, overflow runs, sub-databases and sub-pages, and the free list (no free page may be
 * reachable). The page layout is LMDB 0.9's on-disk format (version 1). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/index_check.h"

#define MDB_MAGIC 0xBEEFC0DEu
#define MDB_DATA_VERSION 1u
#define PAGEHDRSZ 16u
#define NODESIZE 8u
#define P_BRANCH 0x01u
#define P_LEAF 0x02u
#define P_OVERFLOW 0x04u
#define P_META 0x08u
#define P_LEAF2 0x20u
#define P_SUBP 0x40u
#define F_BIGDATA 0x01u
#define F_SUBDATA 0x02u
#define F_DUPDATA 0x04u
#define DB_INTEGERKEY 0x08u
#define DB_DUPSORT 0x04u
#define DB_DUPFIXED 0x10u
#define DB_REC_SIZE 48u /* MDB_db on disk */
#define P_INVALID (~(uint64_t)0)
#define MAX_KEY 511u
#define MAX_DEPTH 32

typedef struct db_rec {
  uint32_t pad;  /* key size of DUPFIXED sub-databases; page size in the FREE_DBI slot of a meta */
  uint16_t flags;
  uint16_t depth;
  uint64_t branch_pages, leaf_pages, overflow_pages, entries, root;
} db_rec;

typedef struct walker {
  int fd;
  uint64_t psize, file_pages, last_pg;
  uint8_t *seen; /* one bit per page of [0, last_pg] */
  char *why;
  size_t why_cap;
  /* counts of the database being walked */
  uint64_t n_branch, n_leaf, n_overflow, n_entries;
  /* the free list (pgnos), collected while walking FREE_DBI */
  uint64_t *free_pgs;
  size_t n_free, cap_free;
} walker;

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static int bad(walker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(walker *w, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->why, w->why_cap, fmt, ap);
  va_end(ap);
  return -1;
}

static void db_decode(const uint8_t *p, db_rec *d) {
  d->pad = rd32(p);
  d->flags = rd16(p + 4);
  d->depth = rd16(p + 6);
  d->branch_pages = rd64(p + 8);
  d->leaf_pages = rd64(p + 16);
  d->overflow_pages = rd64(p + 24);
  d->entries = rd64(p + 32);
  d->root = rd64(p + 40);
}

static int read_page(walker *w, uint64_t pgno, uint8_t *buf) {
  if (pgno > w->last_pg) return bad(w, "page %llu is past the last page %llu",
                                   (unsigned long long)pgno, (unsigned long long)w->last_pg);
  ssize_t n = pread(w->fd, buf, w->psize, (off_t)(pgno * w->psize));
  if (n != (ssize_t)w->psize)
    return bad(w, "truncated: page %llu lies past the end of the file (%llu pages)", (unsigned long long)pgno,
               (unsigned long long)w->file_pages);
  return 0;
}

/* Marks pgno reached; a page reached twice (or free and reached) is damage. */
static int mark(walker *w, uint64_t pgno) {
  if (pgno < 2 || pgno > w->last_pg)
    return bad(w, "page number %llu is out of range 2..%llu", (unsigned long long)pgno,
               (unsigned long long)w->last_pg);
  uint8_t bit = (uint8_t)(1u << (pgno & 7));
  if (w->seen[pgno >> 3] & bit)
    return bad(w, "page %llu is reached twice", (unsigned long long)pgno);
  w->seen[pgno >> 3] |= bit;
  return 0;
}

/* LMDB's default order (mdb_cmp_memn): bytes, then the shorter first. */
static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, int intkey) {
  if (intkey && alen == 8 && blen == 8) {
    uint64_t x = rd64(a), y = rd64(b);
    return x < y ? -1 : x > y;
  }
  int c = memcmp(a, b, alen < blen ? alen : blen);
  if (c) return c;
  return alen < blen ? -1 : alen > blen;
}

typedef struct key_ref {
  const uint8_t *p;
  size_t len;
} key_ref;

/* Keys of a page must ascend strictly and lie in [lo, hi) (a NULL bound is open). */
static int check_order(walker *w, const key_ref *prev, const key_ref *k, const key_ref *lo,
                       const key_ref *hi, int intkey, uint64_t pgno) {
  if (intkey && k->len != 8) return bad(w, "page %llu: integer key of %zu bytes",
                                        (unsigned long long)pgno, k->len);
  if (prev && key_cmp(prev->p, prev->len, k->p, k->len, intkey) >= 0)
    return bad(w, "page %llu: keys out of order", (unsigned long long)pgno);
  if (lo && key_cmp(lo->p, lo->len, k->p, k->len, intkey) > 0)
    return bad(w, "page %llu: key below its parent's bound", (unsigned long long)pgno);
  if (hi && key_cmp(k->p, k->len, hi->p, hi->len, intkey) >= 0)
    return bad(w, "page %llu: key above its parent's bound", (unsigned long long)pgno);
  return 0;
}

/* Reads an overflow run starting at pgno holding len bytes; marks its pages. out (optional, len
 * bytes) receives the data. */
static int walk_overflow(walker *w, uint64_t pgno, uint64_t len, uint8_t *out) {
  uint8_t *buf = malloc(w->psize);
  if (!buf) return bad(w, "out of memory");
  int rc = read_page(w, pgno, buf);
  if (rc == 0 && !(rd16(buf + 10) & P_OVERFLOW))
    rc = bad(w, "page %llu should be an overflow page", (unsigned long long)pgno);
  if (rc == 0 && rd64(buf) != pgno)
    rc = bad(w, "page %llu holds the number %llu", (unsigned long long)pgno,
             (unsigned long long)rd64(buf));
  uint64_t pages = rc == 0 ? rd32(buf + 12) : 0;
  if (rc == 0 && (pages == 0 || pages > w->last_pg || pgno + pages - 1 > w->last_pg ||
                  len > pages * w->psize - PAGEHDRSZ))
    rc = bad(w, "overflow page %llu: bad run of %llu pages for %llu bytes",
             (unsigned long long)pgno, (unsigned long long)pages, (unsigned long long)len);
  for (uint64_t i = 0; rc == 0 && i < pages; i++) rc = mark(w, pgno + i);
  if (rc == 0 && out && len) {
    if (pread(w->fd, out, len, (off_t)(pgno * w->psize + PAGEHDRSZ)) != (ssize_t)len)
      rc = bad(w, "overflow page %llu cannot be read", (unsigned long long)pgno);
  }
  w->n_overflow += pages;
  free(buf);
  return rc;
}

static int walk_db(walker *w, const db_rec *db, int is_main, int is_free, const char *name);

/* Free-list values: a count then that many page numbers. */
static int collect_free(walker *w, const uint8_t *v, uint64_t len) {
  if (len < 8 || len % 8) return bad(w, "free list entry of %llu bytes", (unsigned long long)len);
  uint64_t n = rd64(v);
  if (n != len / 8 - 1) return bad(w, "free list entry counts %llu pages in %llu bytes",
                                   (unsigned long long)n, (unsigned long long)len);
  for (uint64_t i = 0; i < n; i++) {
    if (w->n_free == w->cap_free) {
      size_t cap = w->cap_free ? w->cap_free * 2 : 256;
      uint64_t *p = realloc(w->free_pgs, cap * sizeof *p);
      if (!p) return bad(w, "out of memory");
      w->free_pgs = p;
      w->cap_free = cap;
    }
    w->free_pgs[w->n_free++] = rd64(v + 8 * (i + 1));
  }
  return 0;
}

/* The node area of a page (or sub-page) of size area: pointer array from PAGEHDRSZ to lower,
 * nodes between upper and area. */
static int check_header(walker *w, const uint8_t *p, size_t area, uint64_t pgno, uint16_t *nkeys) {
  uint16_t lower = rd16(p + 12), upper = rd16(p + 14);
  if (lower < PAGEHDRSZ || (lower - PAGEHDRSZ) % 2 || lower > upper || upper > area)
    return bad(w, "page %llu: bad bounds lower %u upper %u", (unsigned long long)pgno, lower,
               upper);
  *nkeys = (uint16_t)((lower - PAGEHDRSZ) / 2);
  return 0;
}

typedef struct page_ctx {
  const db_rec *db;
  int is_main, is_free, in_sub;
  const key_ref *lo, *hi;
} page_ctx;

static int walk_subpage(walker *w, const uint8_t *p, size_t area, const db_rec *db, uint64_t pgno,
                        uint64_t *entries);

/* One leaf node's value. */
static int check_leaf_value(walker *w, const page_ctx *c, const uint8_t *node, size_t avail,
                            uint16_t nflags, uint64_t dsize, uint64_t pgno) {
  const uint8_t *data = node + NODESIZE + rd16(node + 6);
  if ((c->is_main && nflags != F_SUBDATA) || (c->is_free && (nflags & ~F_BIGDATA)))
    return bad(w, "page %llu: bad node flags 0x%x", (unsigned long long)pgno, nflags);
  if (nflags & F_BIGDATA) {
    if (avail < 8) return bad(w, "page %llu: overflow node cut short", (unsigned long long)pgno);
    if (nflags & (F_SUBDATA | F_DUPDATA))
      return bad(w, "page %llu: bad node flags", (unsigned long long)pgno);
    uint8_t *val = NULL;
    if (c->is_free) {
      if (dsize > (w->last_pg + 1) * 8 + 8) return bad(w, "free list entry too large");
      val = malloc(dsize ? dsize : 1);
      if (!val) return bad(w, "out of memory");
    }
    int rc = walk_overflow(w, rd64(data), dsize, val);
    if (rc == 0 && c->is_free) rc = collect_free(w, val, dsize);
    free(val);
    return rc;
  }
  if (dsize > avail) return bad(w, "page %llu: node runs past the page", (unsigned long long)pgno);
  if (c->is_free) return collect_free(w, data, dsize);
  if (nflags & F_SUBDATA) {
    if (dsize != DB_REC_SIZE || !(c->is_main || (nflags & F_DUPDATA)))
      return bad(w, "page %llu: bad sub-database record", (unsigned long long)pgno);
    db_rec sub;
    db_decode(data, &sub);
    if (c->is_main) {
      char name[64];
      uint16_t ks = rd16(node + 6);
      snprintf(name, sizeof name, "%.*s", ks < 63 ? ks : 63, (const char *)node + NODESIZE);
      return walk_db(w, &sub, 0, 0, name);
    }
    /* A DUPSORT key's values in their own tree: keys only, fixed size when DUPFIXED. */
    if (!(c->db->flags & DB_DUPFIXED) != !(sub.flags & DB_DUPFIXED) || sub.flags & DB_DUPSORT)
      return bad(w, "page %llu: duplicate tree flags do not match", (unsigned long long)pgno);
    int rc = walk_db(w, &sub, 0, 0, NULL);
    if (rc == 0) w->n_entries += sub.entries - 1; /* the caller counted the node once */
    return rc;
  }
  if (nflags & F_DUPDATA) {
    if (!(c->db->flags & DB_DUPSORT) || c->in_sub)
      return bad(w, "page %llu: duplicates in a plain database", (unsigned long long)pgno);
    uint64_t entries = 0;
    int rc = walk_subpage(w, data, dsize, c->db, pgno, &entries);
    if (rc == 0) w->n_entries += entries - 1;
    return rc;
  }
  if (c->is_main) return bad(w, "main database holds a plain value");
  return 0;
}

/* Walks the nodes of a branch or leaf page (p of size area). */
static int walk_nodes(walker *w, const page_ctx *c, const uint8_t *p, size_t area, uint64_t pgno,
                      int depth_left, uint64_t *entries);

static int walk_page(walker *w, const page_ctx *c, uint64_t pgno, int depth_left) {
  if (mark(w, pgno)) return -1;
  uint8_t *p = malloc(w->psize);
  if (!p) return bad(w, "out of memory");
  int rc = read_page(w, pgno, p);
  if (rc == 0 && rd64(p) != pgno)
    rc = bad(w, "page %llu holds the number %llu", (unsigned long long)pgno,
             (unsigned long long)rd64(p));
  uint64_t entries = 0;
  if (rc == 0) rc = walk_nodes(w, c, p, w->psize, pgno, depth_left, &entries);
  free(p);
  return rc;
}

static int walk_nodes(walker *w, const page_ctx *c, const uint8_t *p, size_t area, uint64_t pgno,
                      int depth_left, uint64_t *entries) {
  uint16_t flags = rd16(p + 10), nkeys = 0;
  int intkey = (c->db->flags & DB_INTEGERKEY) != 0;
  int leaf2 = (flags & P_LEAF2) != 0;
  uint16_t kinds = flags & (P_BRANCH | P_LEAF | P_OVERFLOW | P_META);
  if (kinds != P_BRANCH && kinds != P_LEAF)
    return bad(w, "page %llu: unexpected page type 0x%x", (unsigned long long)pgno, flags);
  if ((kinds == P_BRANCH) != (depth_left > 1))
    return bad(w, "page %llu: tree depth does not match", (unsigned long long)pgno);
  if (leaf2 && (!c->in_sub || !(c->db->flags & DB_DUPFIXED) || kinds != P_LEAF))
    return bad(w, "page %llu: fixed-size page where none belongs", (unsigned long long)pgno);
  if (c->in_sub && (c->db->flags & DB_DUPFIXED) && kinds == P_LEAF && !leaf2)
    return bad(w, "page %llu: fixed-size duplicates on a plain page", (unsigned long long)pgno);
  if (check_header(w, p, area, pgno, &nkeys)) return -1;
  if (nkeys == 0)
    return bad(w, "page %llu: no keys", (unsigned long long)pgno);
  if (kinds == P_BRANCH) w->n_branch++;
  else w->n_leaf++;
  if (leaf2) {
    uint32_t ks = c->db->pad;
    if (ks == 0 || ks > MAX_KEY || PAGEHDRSZ + (uint64_t)nkeys * ks > area)
      return bad(w, "page %llu: fixed-size keys do not fit", (unsigned long long)pgno);
    key_ref prev = {0};
    for (uint16_t i = 0; i < nkeys; i++) {
      key_ref k = {p + PAGEHDRSZ + (size_t)i * ks, ks};
      if (check_order(w, i ? &prev : NULL, &k, c->lo, c->hi, 0, pgno)) return -1;
      prev = k;
    }
    *entries += nkeys;
    w->n_entries += nkeys;
    return 0;
  }
  key_ref prev = {0};
  uint16_t upper = rd16(p + 14);
  for (uint16_t i = 0; i < nkeys; i++) {
    uint16_t off = rd16(p + PAGEHDRSZ + 2u * i);
    if (off < upper || (size_t)off + NODESIZE > area)
      return bad(w, "page %llu: node %u outside the page", (unsigned long long)pgno, i);
    const uint8_t *node = p + off;
    uint16_t ksize = rd16(node + 6);
    if (ksize > MAX_KEY || (size_t)off + NODESIZE + ksize > area)
      return bad(w, "page %llu: key %u runs past the page", (unsigned long long)pgno, i);
    key_ref k = {node + NODESIZE, ksize};
    /* A branch page's first key is implicitly the lowest: LMDB leaves it empty. */
    if (!(kinds == P_BRANCH && i == 0) &&
        check_order(w, i > (kinds == P_BRANCH) ? &prev : NULL, &k, c->lo, c->hi, intkey, pgno))
      return -1;
    if (kinds == P_BRANCH) {
      uint64_t child = (uint64_t)rd16(node) | (uint64_t)rd16(node + 2) << 16 |
                       (uint64_t)rd16(node + 4) << 32;
      key_ref lo_k = k, hi_k = {0};
      const key_ref *lo = i == 0 ? c->lo : &lo_k, *hi = c->hi;
      if (i + 1 < nkeys) {
        uint16_t noff = rd16(p + PAGEHDRSZ + 2u * (i + 1));
        if (noff < upper || (size_t)noff + NODESIZE > area ||
            (size_t)noff + NODESIZE + rd16(p + noff + 6) > area)
          return bad(w, "page %llu: node %u outside the page", (unsigned long long)pgno, i + 1);
        hi_k.p = p + noff + NODESIZE;
        hi_k.len = rd16(p + noff + 6);
        hi = &hi_k;
      }
      page_ctx cc = *c;
      cc.lo = lo;
      cc.hi = hi;
      if (walk_page(w, &cc, child, depth_left - 1)) return -1;
    } else {
      uint16_t nflags = rd16(node + 4);
      uint64_t dsize = (uint64_t)rd16(node) | (uint64_t)rd16(node + 2) << 16;
      size_t avail = area - off - NODESIZE - ksize;
      if (c->in_sub && (nflags || dsize))
        return bad(w, "page %llu: duplicate value with data", (unsigned long long)pgno);
      w->n_entries++;
      (*entries)++;
      if (check_leaf_value(w, c, node, avail, nflags, dsize, pgno)) return -1;
    }
    prev = k;
  }
  return 0;
}

static int walk_subpage(walker *w, const uint8_t *p, size_t area, const db_rec *db, uint64_t pgno,
                        uint64_t *entries) {
  if (area < PAGEHDRSZ || area > w->psize || !(rd16(p + 10) & P_SUBP) ||
      !(rd16(p + 10) & P_LEAF))
    return bad(w, "page %llu: bad duplicate sub-page", (unsigned long long)pgno);
  db_rec dup = *db;
  dup.flags = db->flags & DB_DUPFIXED;
  /* A fixed-size sub-page keeps its key size in the page header's pad field. */
  dup.pad = rd16(p + 8);
  page_ctx c = {.db = &dup, .in_sub = 1};
  uint64_t saved[4] = {w->n_branch, w->n_leaf, w->n_overflow, w->n_entries};
  int rc = walk_nodes(w, &c, p, area, pgno, 1, entries);
  w->n_branch = saved[0];
  w->n_leaf = saved[1];
  w->n_overflow = saved[2];
  w->n_entries = saved[3];
  return rc;
}

static int walk_db(walker *w, const db_rec *db, int is_main, int is_free, const char *name) {
  const char *what = is_free ? "the free list" : is_main ? "the main database" : name ? name
                                                                                  : "a duplicate tree";
  uint16_t allowed = is_free ? DB_INTEGERKEY : is_main ? 0 : name ? DB_DUPSORT | DB_DUPFIXED
                                                                  : DB_DUPFIXED;
  if ((db->flags & ~allowed) != 0 || (is_free && db->flags != DB_INTEGERKEY))
    return bad(w, "%s: bad flags 0x%x", what, db->flags);
  if (db->root == P_INVALID) {
    if (db->depth || db->entries || db->branch_pages || db->leaf_pages || db->overflow_pages)
      return bad(w, "%s: empty but counts pages or entries", what);
    return 0;
  }
  if (db->depth == 0 || db->depth > MAX_DEPTH) return bad(w, "%s: depth %u", what, db->depth);
  uint64_t saved[4] = {w->n_branch, w->n_leaf, w->n_overflow, w->n_entries};
  w->n_branch = w->n_leaf = w->n_overflow = w->n_entries = 0;
  page_ctx c = {.db = db, .is_main = is_main, .is_free = is_free, .in_sub = !is_main && !is_free && !name};
  int rc = walk_page(w, &c, db->root, db->depth);
  if (rc == 0 && (w->n_branch != db->branch_pages || w->n_leaf != db->leaf_pages ||
                  w->n_overflow != db->overflow_pages || w->n_entries != db->entries))
    rc = bad(w, "%s: page or entry counts do not match its record", what);
  w->n_branch = saved[0];
  w->n_leaf = saved[1];
  w->n_overflow = saved[2];
  w->n_entries = saved[3];
  return rc;
}

typedef struct meta {
  uint64_t txnid, last_pg, mapsize;
  db_rec free_db, main_db;
} meta;

/* Reads and checks meta page i (0 or 1) with page size psize. */
static int read_meta(walker *w, int i, meta *m) {
  uint8_t buf[160];
  if (pread(w->fd, buf, sizeof buf, (off_t)(i * w->psize)) != (ssize_t)sizeof buf)
    return bad(w, "meta page %d cannot be read (file too short)", i);
  if (rd64(buf) != (uint64_t)i || !(rd16(buf + 10) & P_META))
    return bad(w, "meta page %d is not a meta page", i);
  if (rd32(buf + 16) != MDB_MAGIC) return bad(w, "meta page %d: bad magic", i);
  if (rd32(buf + 20) != MDB_DATA_VERSION) return bad(w, "meta page %d: format version %u", i, rd32(buf + 20));
  m->mapsize = rd64(buf + 32);
  db_decode(buf + 40, &m->free_db);
  db_decode(buf + 88, &m->main_db);
  m->last_pg = rd64(buf + 136);
  m->txnid = rd64(buf + 144);
  if (m->free_db.pad != w->psize) return bad(w, "meta page %d: page size %u", i, m->free_db.pad);
  /* The file may end before last_pg: LMDB never writes pages allocated and freed by one
   * transaction ("loose" pages; they go to the free list unwritten), so after a large deletion (a
   * gc) the last pages can be free pages past the end. Only pages a tree reaches are read, and the
   * snapshot walk checks each of those lies inside the file (read_page). A cut through the
   * pages of a tree is reported there as "truncated". */
  if (m->last_pg < 1) return bad(w, "meta page %d: last page %llu", i, (unsigned long long)m->last_pg);
  if (m->mapsize / w->psize < m->last_pg + 1) return bad(w, "meta page %d: map size too small", i);
  return 0;
}

int aqs_index_check_metas(int fd, uint64_t *psize_out, char *why, size_t why_cap) {
  walker w = {.fd = fd, .why = why, .why_cap = why_cap};
  struct stat sb;
  if (fstat(fd, &sb) != 0) return bad(&w, "stat: %s", strerror(errno));
  uint8_t head[48];
  if (pread(fd, head, sizeof head, 0) != (ssize_t)sizeof head)
    return bad(&w, "truncated: %lld bytes, not even a meta page", (long long)sb.st_size);
  w.psize = rd32(head + 40);
  if (w.psize < 512 || w.psize > 65536 || (w.psize & (w.psize - 1)))
    return bad(&w, "meta page 0: page size %llu", (unsigned long long)w.psize);
  w.file_pages = (uint64_t)sb.st_size / w.psize;
  if (w.file_pages < 2) return bad(&w, "truncated: %lld bytes, less than two meta pages",
                                   (long long)sb.st_size);
  meta m[2];
  for (int i = 0; i < 2; i++)
    if (read_meta(&w, i, &m[i])) return -1;
  if (psize_out) *psize_out = w.psize;
  return 0;
}

int aqs_index_check_snapshot(int fd, uint64_t txnid, char *why, size_t why_cap) {
  walker w = {.fd = fd, .why = why, .why_cap = why_cap};
  if (aqs_index_check_metas(fd, &w.psize, why, why_cap)) return -1;
  struct stat sb;
  if (fstat(fd, &sb) != 0) return bad(&w, "stat: %s", strerror(errno));
  w.file_pages = (uint64_t)sb.st_size / w.psize;
  meta m[2], *cur = NULL;
  for (int i = 0; i < 2; i++) {
    if (read_meta(&w, i, &m[i])) return -1;
    if (m[i].txnid == txnid) cur = &m[i];
  }
  if (!cur) return 1; /* the snapshot moved on: the caller takes a new one */
  w.last_pg = cur->last_pg;
  w.seen = calloc(w.last_pg / 8 + 1, 1);
  if (!w.seen) return bad(&w, "out of memory");
  int rc = walk_db(&w, &cur->free_db, 0, 1, NULL);
  if (rc == 0) rc = walk_db(&w, &cur->main_db, 1, 0, NULL);
  for (size_t i = 0; rc == 0 && i < w.n_free; i++)
    if (mark(&w, w.free_pgs[i]))
      rc = bad(&w, "free page %llu is in use or listed twice", (unsigned long long)w.free_pgs[i]);
  free(w.seen);
  free(w.free_pgs);
  return rc;
}
