/* engine/stages/build.c: the build walks the stage table (stage.h): for each recipe, each stage in
 * graph order gets the results of its inputs and runs as a cached action (aqs_stage_exec); a plan
 * stops each branch at its first miss. Then the build is recorded, and a family of recipes is
 * checked pairwise. Stages marked concurrent run for the later recipes at once (build_pool.h).
 * Nothing here knows what a stage computes. */
#include "engine/stages/build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/stages/build_pool.h"
#include "engine/stages/chunk_workers.h"
#include "engine/stages/ckpt_store.h"
#include "engine/stages/family.h"
#include "engine/stages/stage_env.h"

static int wants_rebuild(const aqs_build_opts *o, const char *stage) {
  for (size_t i = 0; i < o->n_rebuild; i++)
    if (strcmp(o->rebuild[i], "all") == 0 || strcmp(o->rebuild[i], stage) == 0) return 1;
  return 0;
}

static int find_stage(const aqs_build_report *rep, size_t upto, const char *name) {
  for (size_t j = 0; j < upto; j++)
    if (strcmp(rep->stage_names[j], name) == 0) return (int)j;
  return -1;
}

const aqs_digest *aqs_build_report_result(const aqs_build_report *r, const char *stage) {
  int i = find_stage(r, r->n_stages, stage);
  if (i < 0 || !r->stages[i].done || !r->stages[i].has_result) return NULL;
  return &r->stages[i].result;
}

/* Fills job->in from the outcomes of def's inputs. Returns the name of the stage that blocks it
 * (an input not reached or not available in a plan), or NULL. */
static const char *gather_inputs(const aqs_stage_def *def, const aqs_build_report *rep, size_t i,
                                 aqs_stage_job *job, aqs_err *e, aqs_status *st) {
  for (int k = 0; def->inputs[k]; k++) {
    int j = find_stage(rep, i, def->inputs[k]);
    if (j < 0) {
      *st = aqs_errf(e, AQS_ERR_INTERNAL, "stage %s reads %s, which is not before it in the table", def->name,
                     def->inputs[k]);
      return NULL;
    }
    const aqs_stage_outcome *in = &rep->stages[j];
    if (!in->done) return in->blocked_by;
    if (!aqs_build_report_result(rep, def->inputs[k])) return rep->stage_names[j];
    job->in[k] = in->result;
  }
  return NULL;
}

/* Where one recipe's walk of the table stands: the next table entry and report slot. */
typedef struct recipe_walk {
  const aqs_recipe *r;
  aqs_build_report *rep;
  size_t t, slot;
} recipe_walk;

static void print_diag(const aqs_stage_job *job) {
  if (job->diag[0]) fprintf(stderr, "%s\n", job->diag);
}

/* Walks w's recipe through the table from where it stands, then records the build. With item,
 * stops instead before a concurrent stage (stage.h) whose inputs are ready, leaving its job in
 * *item for the pool (build_pool.h); walking w again resumes after it. */
static aqs_status walk(aqs_stage_env *env, const aqs_stage_def *const *table, size_t n_table, recipe_walk *w,
                       aqs_pool_item *item, aqs_err *e) {
  const aqs_build_opts *o = env->o;
  aqs_build_report *rep = w->rep;
  for (; w->t < n_table; w->t++) {
    const aqs_stage_def *def = table[w->t];
    aqs_stage_job job = {.store = env->store, .env = env, .recipe = w->r, .report = rep,
                         .rebuild = wants_rebuild(o, def->name)};
    if (def->wanted && !def->wanted(&job)) continue;
    aqs_stage_outcome *out = &rep->stages[w->slot];
    rep->stage_names[w->slot] = def->name;
    rep->n_stages = ++w->slot;
    aqs_status st = AQS_OK;
    const char *blocked = gather_inputs(def, rep, w->slot - 1, &job, e, &st);
    if (st) return st;
    if (blocked) {
      snprintf(out->blocked_by, sizeof out->blocked_by, "%s", blocked);
      continue;
    }
    if (item && def->concurrent) {
      job.pooled = 1;
      *item = (aqs_pool_item){.def = def, .job = job, .out = out};
      w->t++;
      return AQS_OK;
    }
    st = aqs_stage_exec(def, &job, o->dry_run, out, e);
    print_diag(&job);
    if (st) return aqs_err_prefix(e, "recipe %s", w->r->name);
    out->done = 1;
    if (o->worker && o->worker->done) return AQS_OK;
  }
  return o->dry_run || o->worker ? AQS_OK : aqs_build_record_put(env->store, w->r, rep, e);
}

/* The recipes of a build, each walked in order; the concurrent stages of every recipe after the
 * first (the first fills the caches the others share, e.g. the FP8 codes) wait for the pool,
 * which runs them at once; then each of those recipes finishes its walk, in recipe order. A
 * failure stops the build at the lowest recipe that failed, as one walk after another would:
 * recipes before it are complete and recorded. */
static aqs_status walk_all(aqs_stage_env *env, const aqs_stage_def *const *table, size_t n_table,
                           const aqs_recipe *recipes, size_t n, aqs_build_report *reports, aqs_err *e) {
  const aqs_build_opts *o = env->o;
  recipe_walk *walks = calloc(n + 1, sizeof *walks);
  aqs_pool_item *items = calloc(n + 1, sizeof *items), **deferred = calloc(n + 1, sizeof *deferred);
  if (!walks || !items || !deferred) {
    free(walks);
    free(items);
    free(deferred);
    return aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  }
  int pooled = !o->dry_run && !o->worker && n >= 3 && aqs_build_pool_threads(n - 1) > 1;
  aqs_status st = AQS_OK;
  size_t walked = 0, n_deferred = 0;
  for (; !st && walked < n && !(o->worker && o->worker->done); walked++) {
    memset(&reports[walked], 0, sizeof reports[walked]);
    snprintf(reports[walked].recipe, sizeof reports[walked].recipe, "%s", recipes[walked].name);
    walks[walked] = (recipe_walk){.r = &recipes[walked], .rep = &reports[walked]};
    aqs_pool_item *item = pooled && walked > 0 ? &items[walked] : NULL;
    st = walk(env, table, n_table, &walks[walked], item, e);
    if (item && item->def) deferred[n_deferred++] = item;
  }
  if (n_deferred) {
    aqs_err later = {0}; /* a failure of the walks above is of a recipe after every deferred one */
    if (st && e) later = *e;
    aqs_build_pool_run(deferred, n_deferred, aqs_build_pool_threads(n_deferred),
                       o->progress ? deferred[0]->def->name : NULL);
    aqs_status first = AQS_OK;
    for (size_t k = 0; !first && k < n_deferred; k++) {
      aqs_pool_item *it = deferred[k];
      recipe_walk *w = &walks[it - items];
      print_diag(&it->job);
      if (it->st) {
        first = it->st;
        if (e) {
          *e = it->err;
          aqs_err_prefix(e, "recipe %s", w->r->name);
        }
        break;
      }
      it->out->done = 1;
      first = walk(env, table, n_table, w, NULL, e);
    }
    if (!first && st && e) *e = later;
    if (first) st = first;
  }
  free(walks);
  free(items);
  free(deferred);
  return st;
}

static int same_result(const aqs_build_report *a, const aqs_build_report *b, const char *stage) {
  const aqs_digest *x = aqs_build_report_result(a, stage), *y = aqs_build_report_result(b, stage);
  return x && y && aqs_digest_eq(x, y);
}

/* Recipes built together on the same model and calibration differ exactly as their plans do
 * (recipes calibrated otherwise differ everywhere by design: they are not compared). */
static aqs_status family_check(aqs_stage_env *env, const aqs_recipe *recipes, size_t n, aqs_build_report *reports,
                               aqs_err *e) {
  aqs_plan **plans = calloc(n, sizeof *plans);
  aqs_ckpt_tensors **tensors = calloc(n, sizeof *tensors);
  aqs_status st = plans && tensors ? AQS_OK : aqs_errf(e, AQS_ERR_NOMEM, "out of memory");
  for (size_t i = 0; !st && i < n; i++) {
    const aqs_digest *plan = aqs_build_report_result(&reports[i], "slice");
    const aqs_digest *ckpt = aqs_build_report_result(&reports[i], "export");
    if (!plan || !ckpt) goto out; /* a table without slice or export: nothing to compare */
    st = aqs_build_load_plan(env->store, plan, &plans[i], e);
    if (!st) st = aqs_ckpt_tensors_load(env->store, ckpt, &tensors[i], e);
  }
  for (size_t i = 0; !st && i < n; i++)
    for (size_t j = i + 1; !st && j < n; j++)
      if (same_result(&reports[i], &reports[j], "source") && same_result(&reports[i], &reports[j], "calibrate"))
        st = aqs_family_check_tensors(env->model, recipes[i].name, tensors[i], plans[i], recipes[j].name, tensors[j],
                                    plans[j], NULL, e);
out:
  for (size_t i = 0; i < n; i++) {
    if (plans) aqs_plan_free(plans[i]);
    if (tensors) aqs_ckpt_tensors_free(tensors[i]);
  }
  free(plans);
  free(tensors);
  return st ? aqs_err_prefix(e, "family check failed") : AQS_OK;
}

aqs_status aqs_build_run_stage(const aqs_build_opts *opts, const char *stage, const aqs_recipe *r,
                               const aqs_digest *in, aqs_stage_outcome *out, aqs_err *e) {
  int i = aqs_stage_index(stage);
  if (i < 0) return aqs_errf(e, AQS_ERR_INVALID, "no stage %s", stage);
  size_t n_table;
  const aqs_stage_def *def = aqs_stage_table(&n_table)[i];
  aqs_stage_env env;
  aqs_stage_env_init(&env, opts, opts->store);
  aqs_stage_job job = {.store = opts->store, .env = &env, .recipe = r, .rebuild = wants_rebuild(opts, stage)};
  for (int k = 0; in && def->inputs[k]; k++) job.in[k] = in[k];
  memset(out, 0, sizeof *out);
  aqs_status st = aqs_stage_exec(def, &job, opts->dry_run, out, e);
  out->done = !st;
  aqs_stage_env_free(&env);
  return st;
}

aqs_status aqs_build_recipes(const aqs_build_opts *opts, const aqs_recipe *recipes, size_t n,
                             aqs_build_report *reports, aqs_err *e) {
  if (!opts->model_dir) return aqs_errf(e, AQS_ERR_INVALID, "no model: pass --model DIR or set [model] path in .aqstore");
  size_t n_table = opts->n_table;
  const aqs_stage_def *const *table = opts->table ? opts->table : aqs_stage_table(&n_table);
  if (n_table > AQS_STAGE_MAX) return aqs_errf(e, AQS_ERR_INTERNAL, "more than %d stages", AQS_STAGE_MAX);
  for (size_t k = 0; k < opts->n_rebuild; k++) {
    int known = strcmp(opts->rebuild[k], "all") == 0;
    for (size_t i = 0; !known && i < n_table; i++) known = strcmp(table[i]->name, opts->rebuild[k]) == 0;
    if (!known) return aqs_errf(e, AQS_ERR_INVALID, "--rebuild %s: no such stage (aqs build --help lists them)",
                                opts->rebuild[k]);
  }
  aqs_stage_env env;
  aqs_stage_env_init(&env, opts, opts->store);
  aqs_status st = aqs_qwen_model_open(opts->model_dir, &env.model, NULL, e);
  aqs_chunk_worker *w = opts->worker;
  if (!st) st = walk_all(&env, table, n_table, recipes, n, reports, e);
  if (!st && w && !w->done)
    st = aqs_errf(e, AQS_ERR_INTERNAL, "chunk worker: the build never reached its %s stage", w->stage);
  if (!st && !w && !opts->dry_run && !opts->skip_family_check && n >= 2)
    st = family_check(&env, recipes, n, reports, e);
  aqs_stage_env_free(&env);
  return st;
}
