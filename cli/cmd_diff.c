/* cli/cmd_diff.c: `aqs diff A B`: compares two exported checkpoint directories tensor by tensor
 * and checks that they differ exactly where their plans do (engine/export/diff.h). A and B may
 * name builds: they are checked out into temporary directories, the report speaks of the names
 * typed, and it first says when the two builds differ in model, data or sensitivity run. */
#include "cli/cli.h"
#include "cli/cli_util.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/build_names_cli.h"
#include "common/path.h"
#include "engine/export/diff.h"
#include "engine/stages/build.h"
#include "engine/stages/ckpt_store.h"

static const char diff_usage[] =
    "usage: aqs diff [--json] [--tensors] [--quiet] [--model DIR] [--captions FILE] A B\n"
    "\n"
    "A and B are exported checkpoint directories (aqs export / aqs build outputs) or names of\n"
    "builds (aqs diff top10 top50: their checkpoints are checked out from the store; names resolve\n"
    "as in aqs show). When both are builds, aqs first says whether they differ in model, data or\n"
    "sensitivity run: then more than the plans may differ. Compares the two checkpoints: the\n"
    "SHA-256 of every tensor, and for tensors that differ the dequantized max-abs and relative L2\n"
    "difference, summarized per group. Then the proof: the groups that differ must be exactly the\n"
    "groups where the two plans (from each aqs-manifest.json) differ, nothing else may differ, and\n"
    "every tensor must match its own manifest. Exit 0 when the proof holds, 1 with the reason when\n"
    "it does not (including two different plans that produced identical weights).\n"
    "\n"
    "options:\n"
    "  --json            print the full report as JSON\n"
    "  --tensors         also list every differing tensor\n"
    "  --quiet           no progress on stderr\n"
    "  --model DIR       the model that picks among builds of a name ([model] path)\n"
    "  --captions FILE   the data that picks among builds of a name ([data] captions)\n";

/* A and B: directories as given, or builds checked out under the store's tmp/. */
typedef struct diff_side {
  const char *typed;       /* what the user typed */
  char dir[4400];          /* the directory compared */
  char tmp[4200];          /* temporary checkout parent ("" for a directory) */
  int is_build;
  aqs_build_entry build;
} diff_side;

typedef struct diff_inputs {
  aqs_workspace ws;
  aqs_store *store;        /* opened on the first build name */
  aqs_cli_scope_flags scope;
  diff_side side[2];
} diff_inputs;

static int resolve_side(diff_inputs *in, diff_side *sd) {
  struct stat sb;
  if (stat(sd->typed, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    snprintf(sd->dir, sizeof sd->dir, "%s", sd->typed);
    return 0;
  }
  if (!in->store && aqs_cli_open_store("diff", AQS_CLI_WRITE_IF_ALLOWED, &in->ws, &in->store))
    return AQS_EXIT_FAIL;
  if (aqs_cli_resolve_build("diff", in->store, &in->ws, &in->scope, sd->typed, &sd->build)) return AQS_EXIT_FAIL;
  sd->is_build = 1;
  aqs_err e = {0};
  aqs_digest ckpt;
  if (aqs_build_record_stage(sd->build.doc, "export", &ckpt, &e) != AQS_OK) return aqs_cli_fail_err("diff", &e);
  if (aqs_store_mkdtemp(in->store, "checkout", sd->tmp, sizeof sd->tmp, &e) != AQS_OK) {
    sd->tmp[0] = '\0';
    return aqs_cli_fail_err("diff", &e);
  }
  if (aqs_path_join(sd->dir, sizeof sd->dir, sd->tmp, "checkout")) return aqs_cli_fail("diff", "path too long: %s", sd->tmp);
  if (aqs_ckpt_materialize(in->store, &ckpt, sd->dir, AQS_LINK_REFLINK, &e) != AQS_OK) return aqs_cli_fail_err("diff", &e);
  return 0;
}

static void free_inputs(diff_inputs *in) {
  for (int k = 0; k < 2; k++) {
    diff_side *sd = &in->side[k];
    json_decref(sd->build.doc);
    if (!sd->tmp[0]) continue;
    /* A checkout is one directory of read-only files under the temporary parent. */
    char path[4400];
    DIR *d = opendir(sd->tmp);
    struct dirent *de;
    while (d && (de = readdir(d))) {
      if (de->d_name[0] == '.') continue;
      if (aqs_path_join(path, sizeof path, sd->tmp, de->d_name) == 0) aqs_rm_flat_dir(path);
    }
    if (d) closedir(d);
    rmdir(sd->tmp);
  }
  if (in->store) {
    aqs_store_close(in->store);
    aqs_workspace_free(&in->ws);
  }
}

/* Replaces every occurrence of from by to in text (size cap), in place. */
static void replace_all(char *text, size_t cap, const char *from, const char *to) {
  size_t lf = strlen(from), lt = strlen(to);
  if (!lf) return;
  char *p = text;
  while ((p = strstr(p, from))) {
    size_t tail = strlen(p + lf);
    if ((size_t)(p - text) + lt + tail + 1 > cap) return;
    memmove(p + lt, p + lf, tail + 1);
    memcpy(p, to, lt);
    p += lt;
  }
}

/* The directories compared are temporary checkouts: speak of the names the user typed. */
static void name_sides(const diff_inputs *in, aqs_diff_report *r, aqs_err *e) {
  for (int k = 0; k < 2; k++) {
    const diff_side *sd = &in->side[k];
    if (!sd->is_build) continue;
    replace_all(e->msg, sizeof e->msg, sd->dir, sd->typed);
    replace_all(r->verdict, sizeof r->verdict, sd->dir, sd->typed);
    for (size_t i = 0; i < r->nviolations; i++) {
      size_t cap = strlen(r->violations[i]) + 1;
      replace_all(r->violations[i], cap, sd->dir, sd->typed); /* shorter: always fits */
    }
    snprintf(k ? r->dir_b : r->dir_a, sizeof r->dir_a, "%s", sd->typed);
  }
}

/* "top10 and top50 differ in model (a vs b), data (...)": "" when they do not or A/B are dirs. */
static void identity_note(const diff_inputs *in, char *buf, size_t n) {
  buf[0] = '\0';
  const diff_side *a = &in->side[0], *b = &in->side[1];
  if (!a->is_build || !b->is_build) return;
  struct {
    const char *what;
    const aqs_digest *x, *y;
  } parts[] = {{"model", &a->build.model, &b->build.model},
               {"data (calib-set)", &a->build.data, &b->build.data},
               {"sensitivity run", &a->build.sensitivity, &b->build.sensitivity}};
  size_t used = 0;
  for (size_t i = 0; i < 3; i++) {
    if (aqs_digest_eq(parts[i].x, parts[i].y)) continue;
    char x[AQS_DIGEST_SHORT_LEN + 1], y[AQS_DIGEST_SHORT_LEN + 1];
    aqs_digest_short(parts[i].x, x);
    aqs_digest_short(parts[i].y, y);
    int k = snprintf(buf + used, n - used, "%s%s %s vs %s", used ? ", " : "", parts[i].what, x, y);
    if (k < 0 || (size_t)k >= n - used) break;
    used += (size_t)k;
  }
  if (!used) return;
  char tail[600];
  snprintf(tail, sizeof tail, "%s", buf);
  snprintf(buf, n, "%s and %s differ in %s: more than their plans may differ", a->typed, b->typed, tail);
}

static void print_num(double v) {
  if (isnan(v)) printf(" %10s", "-");
  else printf(" %10.3e", v);
}

static void print_report(const aqs_diff_report *r, int list_tensors) {
  printf("A: %s (%zu tensors)\nB: %s (%zu tensors)\n", r->dir_a, r->n_tensors_a, r->dir_b,
         r->n_tensors_b);
  printf("%zu identical tensors, %zu differing; plans differ in %zu group(s)\n", r->n_identical,
         r->ntensors, r->n_plan_diff);
  if (r->ngroups) {
    printf("\n%-14s %-5s %-5s %8s %10s %10s  %s\n", "group", "A", "B", "tensors", "max|A-B|",
           "rel L2", "");
    for (size_t i = 0; i < r->ngroups; i++) {
      const aqs_diff_group *g = &r->groups[i];
      printf("%-14s %-5s %-5s %8zu", g->id, aqs_format_name(g->format_a),
             aqs_format_name(g->format_b), g->n_differ);
      print_num(g->n_differ ? g->max_abs : NAN);
      print_num(g->n_differ ? g->rel_l2 : NAN);
      printf("  %s\n", g->in_plan_diff ? (g->n_differ ? "expected" : "EXPECTED BUT IDENTICAL")
                                       : "UNEXPECTED");
    }
  }
  if (list_tensors && r->ntensors) {
    static const char *const kinds[] = {"changed", "only A", "only B"};
    printf("\n%-60s %-12s %-8s %-8s %10s %10s\n", "tensor", "group", "A", "B", "max|A-B|", "rel L2");
    for (size_t i = 0; i < r->ntensors; i++) {
      const aqs_diff_tensor *t = &r->tensors[i];
      printf("%-60s %-12s %-8s %-8s", t->name, t->group[0] ? t->group : "(none)",
             t->dtype_a[0] ? t->dtype_a : "-", t->dtype_b[0] ? t->dtype_b : "-");
      print_num(t->max_abs);
      print_num(t->rel_l2);
      printf("  %s\n", kinds[t->kind]);
    }
  }
  if (r->nviolations) {
    printf("\nproblems:\n");
    for (size_t i = 0; i < r->nviolations; i++) printf("  - %s\n", r->violations[i]);
  }
  printf("\n%s\n", r->verdict);
}

static int run_diff(int argc, char **argv) {
  if (aqs_cli_wants_help(argc, argv)) {
    fputs(diff_usage, stdout);
    return AQS_EXIT_OK;
  }
  int as_json = 0, list_tensors = 0, quiet = 0;
  diff_inputs in;
  memset(&in, 0, sizeof in);
  static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
                                           {"tensors", no_argument, NULL, 't'},
                                           {"quiet", no_argument, NULL, 'q'},
                                           {"model", required_argument, NULL, 'M'},
                                           {"captions", required_argument, NULL, 'C'},
                                           {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (ch == 'j') as_json = 1;
    else if (ch == 't') list_tensors = 1;
    else if (ch == 'q') quiet = 1;
    else if (ch == 'M') in.scope.model_dir = optarg;
    else if (ch == 'C') in.scope.data_file = optarg;
    else return aqs_cli_bad_option("diff", longopts, argv);
  }
  if (argc - optind != 2) return aqs_cli_usage_error("diff", "expected two checkpoints A and B (directories or build names)");
  in.side[0].typed = argv[optind];
  in.side[1].typed = argv[optind + 1];
  int rc = resolve_side(&in, &in.side[0]);
  if (!rc) rc = resolve_side(&in, &in.side[1]);
  if (rc) {
    free_inputs(&in);
    return rc;
  }
  char note[1024];
  identity_note(&in, note, sizeof note);
  aqs_diff_report r;
  aqs_err e = {0};
  aqs_status st = aqs_export_diff(in.side[0].dir, in.side[1].dir, !quiet, &r, &e);
  name_sides(&in, &r, &e);
  free_inputs(&in);
  if (st != AQS_OK && st != AQS_ERR_MISMATCH) {
    aqs_diff_report_free(&r);
    if (note[0]) return aqs_cli_fail("diff", "%s; %s", note, e.msg);
    return aqs_cli_fail_err("diff", &e);
  }
  rc = st == AQS_OK ? AQS_EXIT_OK : AQS_EXIT_FAIL;
  if (as_json) {
    char *text = aqs_diff_report_to_json(&r);
    json_t *doc = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (doc) json_object_set_new(doc, "builds_differ", note[0] ? json_string(note) : json_null());
    if (aqs_cli_print_json("diff", doc)) rc = AQS_EXIT_FAIL;
  } else {
    if (note[0]) printf("note: %s\n\n", note);
    print_report(&r, list_tensors);
  }
  if (st == AQS_ERR_MISMATCH) {
    if (note[0]) fprintf(stderr, "aqs diff: %s; %s\n", note, e.msg);
    else fprintf(stderr, "aqs diff: %s\n", e.msg);
  }
  aqs_diff_report_free(&r);
  return rc;
}

const aqs_cmd aqs_cmd_diff = {"diff", "compare two exports and prove they differ exactly as their plans",
                              run_diff};
