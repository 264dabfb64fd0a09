/* cli/cmd_gc.c: `aqs gc`: evicts least-recently-used objects that no ref reaches until the store
 * fits its size limit, and removes orphan temporary files; --dry-run lists what would go. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <inttypes.h>
#include <string.h>

static const char gc_usage[] =
    "usage: aqs gc [--limit SIZE] [--dry-run] [--verbose] [--json]\n"
    "\n"
    "Evicts objects not reachable from any ref (refs pin their targets and everything their\n"
    "manifests list), least recently used first, until the stored bytes fit the size limit.\n"
    "Evicting an object also evicts the manifests that list it and the actions whose result it\n"
    "was. Also removes orphan temporary files left by interrupted writes.\n"
    "\n"
    "The limit is --limit, else [store] size_limit in .aqstore, else size_limit in the store's\n"
    "aqs.conf; with no limit anywhere nothing is evicted (orphans are still removed).\n"
    "\n"
    "options:\n"
    "  --limit SIZE  bytes, or with a K/M/G/T suffix (binary: 10G = 10 GiB); 0 evicts every\n"
    "                unpinned object\n"
    "  --dry-run     change nothing; list the objects that would be evicted\n"
    "  --verbose     list evicted objects (a dry run always lists them)\n"
    "  --json        print the report and the evicted digests as JSON\n";

typedef struct gc_listing {
  int print;        /* print one line per victim */
  int dry_run;
  json_t *victims;  /* JSON array, or NULL */
} gc_listing;

static void on_victim(const aqs_object_info *victim, void *user) {
  gc_listing *l = user;
  char digest[AQS_DIGEST_STR_SIZE];
  aqs_digest_str(&victim->digest, digest);
  if (l->victims)
    json_array_append_new(l->victims,
                          json_pack("{s:s, s:I, s:I, s:s}", "digest", digest, "size",
                                    (json_int_t)victim->size_bytes, "stored",
                                    (json_int_t)victim->stored_bytes, "kind",
                                    aqs_cli_kind_name(victim->kind)));
  if (l->print) {
    char stored[32];
    printf("%s %s  %s  %s\n", l->dry_run ? "would evict" : "evicted", digest,
           aqs_cli_bytes(stored, sizeof stored, victim->stored_bytes),
           aqs_cli_kind_name(victim->kind));
  }
}

static json_t *report_json(const aqs_gc_report *r, int64_t limit, int dry_run, json_t *victims) {
  json_t *doc = json_object();
  if (!doc) {
    json_decref(victims);
    return NULL;
  }
  json_object_set_new(doc, "dry_run", json_boolean(dry_run));
  json_object_set_new(doc, "limit", limit >= 0 ? json_integer(limit) : json_null());
  const struct {
    const char *name;
    uint64_t value;
  } counts[] = {
    {"objects_before", r->objects_before},   {"bytes_before", r->bytes_before},
    {"pinned_objects", r->pinned_objects},   {"pinned_bytes", r->pinned_bytes},
    {"evicted_objects", r->evicted_objects}, {"evicted_bytes", r->evicted_bytes},
    {"bytes_after", r->bytes_after},         {"actions_removed", r->actions_removed},
    {"orphan_files_removed", r->orphan_files_removed},
  };
  for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
    json_object_set_new(doc, counts[i].name, json_integer((json_int_t)counts[i].value));
  json_object_set_new(doc, "evicted", victims);
  return doc;
}

static void report_text(const aqs_gc_report *r, int64_t limit, int dry_run) {
  char a[32], b[32], c[32];
  if (limit < 0) printf("no size limit set (--limit or [store] size_limit): nothing evicted\n");
  else printf("limit       %s\n", aqs_cli_bytes(a, sizeof a, (uint64_t)limit));
  printf("before      %" PRIu64 " objects, %s stored\n", r->objects_before,
         aqs_cli_bytes(a, sizeof a, r->bytes_before));
  printf("pinned      %" PRIu64 " objects, %s (reachable from refs)\n", r->pinned_objects,
         aqs_cli_bytes(b, sizeof b, r->pinned_bytes));
  printf("%s %" PRIu64 " objects, %s; %" PRIu64 " actions\n",
         dry_run ? "would evict" : "evicted    ", r->evicted_objects,
         aqs_cli_bytes(c, sizeof c, r->evicted_bytes), r->actions_removed);
  printf("after       %s stored%s\n", aqs_cli_bytes(a, sizeof a, r->bytes_after),
         limit >= 0 && r->bytes_after > (uint64_t)limit ? " (still over the limit: the rest is pinned)" : "");
  printf("orphans     %" PRIu64 " temporary files %s\n", r->orphan_files_removed,
         dry_run ? "would be removed" : "removed");
}

static int cmd_gc_run(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(gc_usage, stdout);
    return AQS_EXIT_OK;
  }
  static const struct option longopts[] = {
    {"limit", required_argument, NULL, 'l'},
    {"dry-run", no_argument, NULL, 'n'},
    {"verbose", no_argument, NULL, 'v'},
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
  };
  int dry_run = 0, verbose = 0, as_json = 0, c;
  const char *limit_text = NULL;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
    switch (c) {
    case 'l': limit_text = optarg; break;
    case 'n': dry_run = 1; break;
    case 'v': verbose = 1; break;
    case 'j': as_json = 1; break;
    case ':': return aqs_cli_usage_error("gc", "option '%s' needs a value", argv[optind - 1]);
    default: return aqs_cli_bad_option("gc", longopts, argv);
    }
  }
  if (optind < argc) return aqs_cli_usage_error("gc", "unexpected argument '%s'", argv[optind]);
  uint64_t limit_bytes = 0;
  if (limit_text && (aqs_parse_size(limit_text, &limit_bytes) != 0 || limit_bytes > INT64_MAX))
    return aqs_cli_usage_error("gc", "--limit wants a size like 0, 500M or 10G, not '%s'",
                               limit_text);

  aqs_workspace ws;
  aqs_store *store;
  int rc = aqs_cli_open_store("gc", dry_run ? AQS_STORE_RDONLY : 0, &ws, &store);
  if (rc) return rc;
  aqs_gc_opts opts = {.size_limit_bytes = -1, .dry_run = dry_run, .orphan_grace_s = -1};
  if (limit_text) opts.size_limit_bytes = (int64_t)limit_bytes;
  else if (aqs_workspace_get(&ws, "store", "size_limit"))
    opts.size_limit_bytes = (int64_t)ws.size_limit_bytes;
  /* The limit in force, for the report: -1 when there is none anywhere. */
  int64_t limit = opts.size_limit_bytes;
  if (limit < 0) {
    uint64_t store_limit = aqs_store_get_config(store)->size_limit_bytes;
    limit = store_limit ? (int64_t)store_limit : -1;
  }
  gc_listing listing = {.print = !as_json && (dry_run || verbose), .dry_run = dry_run,
                        .victims = as_json ? json_array() : NULL};
  aqs_err err = {0};
  aqs_gc_report report;
  memset(&report, 0, sizeof report);
  if (aqs_gc(store, &opts, on_victim, &listing, &report, &err) != AQS_OK) {
    rc = aqs_cli_fail_err("gc", &err);
    json_decref(listing.victims);
  } else if (as_json) {
    rc = aqs_cli_print_json("gc", report_json(&report, limit, dry_run, listing.victims));
  } else {
    report_text(&report, limit, dry_run);
  }
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_gc = {
  .name = "gc",
  .summary = "evict least-recently-used unpinned objects down to the size limit",
  .run = cmd_gc_run,
};
