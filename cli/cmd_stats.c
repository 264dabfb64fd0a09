/* cli/cmd_stats.c: `aqs stats`: what the store holds (objects by kind, logical vs stored bytes,
 * dedups) and how well it served (action lookups, hits, misses and hit rate per stage). */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <getopt.h>
#include <inttypes.h>
#include <string.h>

static const char stats_usage[] =
    "usage: aqs stats [--json]\n"
    "\n"
    "Shows the store's location and settings, its objects (inline, zstd files, raw files,\n"
    "manifests), logical bytes (as put) against stored bytes (what they take on disk, after\n"
    "compression), dedups (puts of bytes already stored and the bytes they saved), and for each\n"
    "stage the action-cache lookups, hits, misses and hit rate.\n"
    "\n"
    "options:\n"
    "  --json   the same as one JSON object: path, objects, bytes_logical, bytes_stored, ...,\n"
    "           stages: [{stage, lookups, hits, misses, hit_rate}]\n";

static double ratio(uint64_t num, uint64_t den) { return den ? (double)num / (double)den : 0.0; }

static json_t *stats_json(const aqs_store *store, const aqs_store_stats *st) {
  const aqs_store_config *cfg = aqs_store_get_config(store);
  json_t *stages = json_array();
  for (size_t i = 0; i < st->n_stages; i++) {
    const aqs_stage_stats *s = &st->stages[i];
    json_array_append_new(stages, json_pack("{s:s, s:I, s:I, s:I, s:f}", "stage", s->stage,
                                            "lookups", (json_int_t)s->lookups, "hits",
                                            (json_int_t)s->hits, "misses", (json_int_t)s->misses,
                                            "hit_rate", ratio(s->hits, s->lookups)));
  }
  json_t *doc = json_object();
  if (!doc) {
    json_decref(stages);
    return NULL;
  }
  json_object_set_new(doc, "path", json_string(aqs_store_path(store)));
  json_object_set_new(doc, "shared", json_boolean(cfg->shared));
  json_object_set_new(doc, "compression_ratio", json_real(ratio(st->bytes_logical, st->bytes_stored)));
  const struct {
    const char *name;
    uint64_t value;
  } counts[] = {
    {"size_limit", cfg->size_limit_bytes},    {"objects", st->objects},
    {"objects_inline", st->objects_inline},   {"objects_file_zstd", st->objects_file_zstd},
    {"objects_file_raw", st->objects_file_raw}, {"manifests", st->manifests},
    {"bytes_logical", st->bytes_logical},     {"bytes_stored", st->bytes_stored},
    {"puts", st->puts},                       {"dedups", st->dedups},
    {"dedup_bytes", st->dedup_bytes},         {"gets", st->gets},
    {"evictions", st->evictions},             {"corrupt_found", st->corrupt_found},
    {"actions", st->actions},                 {"refs", st->refs},
    {"statcache_entries", st->statcache_entries}, {"index_bytes", st->index_bytes},
  };
  for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
    json_object_set_new(doc, counts[i].name, json_integer((json_int_t)counts[i].value));
  json_object_set_new(doc, "stages", stages);
  return doc;
}

static void stats_text(const aqs_store *store, const aqs_store_stats *st) {
  const aqs_store_config *cfg = aqs_store_get_config(store);
  char a[32], b[32], c[32];
  printf("store       %s%s\n", aqs_store_path(store), cfg->shared ? " (shared)" : "");
  printf("size limit  %s\n",
         cfg->size_limit_bytes ? aqs_cli_bytes(a, sizeof a, cfg->size_limit_bytes) : "none");
  printf("objects     %" PRIu64 " (%" PRIu64 " inline, %" PRIu64 " zstd files, %" PRIu64
         " raw files; %" PRIu64 " manifests)\n",
         st->objects, st->objects_inline, st->objects_file_zstd, st->objects_file_raw,
         st->manifests);
  printf("bytes       %s logical, %s stored (%.2fx), index %s\n",
         aqs_cli_bytes(a, sizeof a, st->bytes_logical), aqs_cli_bytes(b, sizeof b, st->bytes_stored),
         ratio(st->bytes_logical, st->bytes_stored), aqs_cli_bytes(c, sizeof c, st->index_bytes));
  printf("puts        %" PRIu64 " stored, %" PRIu64 " dedups (%s not stored again)\n", st->puts,
         st->dedups, aqs_cli_bytes(a, sizeof a, st->dedup_bytes));
  printf("reads       %" PRIu64 " gets; %" PRIu64 " evictions; %" PRIu64 " corrupt found\n",
         st->gets, st->evictions, st->corrupt_found);
  printf("index       %" PRIu64 " actions, %" PRIu64 " refs, %" PRIu64 " stat-cache entries\n",
         st->actions, st->refs, st->statcache_entries);
  if (st->n_stages == 0) {
    printf("stages      no action lookups yet\n");
    return;
  }
  printf("\n%-20s %10s %10s %10s %9s\n", "stage", "lookups", "hits", "misses", "hit rate");
  uint64_t lookups = 0, hits = 0, misses = 0;
  for (size_t i = 0; i < st->n_stages; i++) {
    const aqs_stage_stats *s = &st->stages[i];
    printf("%-20s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %8.1f%%\n", s->stage, s->lookups,
           s->hits, s->misses, 100.0 * ratio(s->hits, s->lookups));
    lookups += s->lookups;
    hits += s->hits;
    misses += s->misses;
  }
  printf("%-20s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %8.1f%%\n", "total", lookups, hits,
         misses, 100.0 * ratio(hits, lookups));
}

static int cmd_stats_run(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(stats_usage, stdout);
    return AQS_EXIT_OK;
  }
  static const struct option longopts[] = {
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
  };
  int as_json = 0, c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (c == 'j') as_json = 1;
    else return aqs_cli_bad_option("stats", longopts, argv);
  }
  if (optind < argc) return aqs_cli_usage_error("stats", "unexpected argument '%s'", argv[optind]);

  aqs_workspace ws;
  aqs_store *store;
  int rc = aqs_cli_open_store("stats", AQS_STORE_RDONLY, &ws, &store);
  if (rc) return rc;
  aqs_err err = {0};
  aqs_store_stats st;
  if (aqs_store_stats_get(store, &st, &err) != AQS_OK) {
    rc = aqs_cli_fail_err("stats", &err);
  } else {
    if (as_json) rc = aqs_cli_print_json("stats", stats_json(store, &st));
    else stats_text(store, &st);
    aqs_store_stats_free(&st);
  }
  aqs_store_close(store);
  aqs_workspace_free(&ws);
  return rc;
}

const aqs_cmd aqs_cmd_stats = {
  .name = "stats",
  .summary = "store contents, logical vs stored bytes, dedups, hit rates per stage",
  .run = cmd_stats_run,
};
