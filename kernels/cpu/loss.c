/* kernels/cpu/loss.c: cross-entropy (loss + logits gradient), log-softmax and KL divergence
 * over (N, V) logits (CPU reference, F32 math, double row sums added in row order). */
#include <stdlib.h>

#include "kernels/cpu/cpu_common.h"

/* Row max and log-sum-exp of one row (F32). */
static float row_lse(const float *row, int V) {
  float mx = -INFINITY;
  for (int v = 0; v < V; v++)
    if (row[v] > mx) mx = row[v];
  float sum = 0.0f;
  for (int v = 0; v < V; v++) sum += expf(row[v] - mx);
  return mx + logf(sum);
}

void cpu_cross_entropy(aqs_backend *be, float *dlogits, const float *logits,
                       const int32_t *targets, int N, int V, float grad_scale, double *loss_sum) {
  double *row_loss = malloc(((size_t)N + 1) * sizeof *row_loss);
  if (!row_loss) abort();
#pragma omp parallel for schedule(static) if ((size_t)N * (size_t)V >= CPU_PAR_MIN)
  for (int r = 0; r < N; r++) {
    const float *lr = logits + (size_t)r * (size_t)V;
    int t = targets[r];
    if (t < 0) {
      row_loss[r] = 0.0;
      if (dlogits)
        for (int v = 0; v < V; v++) dlogits[(size_t)r * (size_t)V + v] = 0.0f;
      continue;
    }
    float lse = row_lse(lr, V);
    row_loss[r] = (double)(lse - lr[t]);
    if (dlogits) {
      float *dr = dlogits + (size_t)r * (size_t)V;
      for (int v = 0; v < V; v++) {
        float p = expf(lr[v] - lse);
        dr[v] = cpu_rnd(be, grad_scale * (v == t ? p - 1.0f : p));
      }
    }
  }
  double sum = 0.0;
  for (int r = 0; r < N; r++) sum += row_loss[r];
  free(row_loss);
  *loss_sum = sum;
}

void cpu_log_softmax(aqs_backend *be, float *out, const float *logits, int N, int V) {
  (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * (size_t)V >= CPU_PAR_MIN)
  for (int r = 0; r < N; r++) {
    const float *lr = logits + (size_t)r * (size_t)V;
    float lse = row_lse(lr, V);
    float *o = out + (size_t)r * (size_t)V;
    for (int v = 0; v < V; v++) o[v] = lr[v] - lse;
  }
}

/* KL(p_ref || softmax(lr)) of one row: F32 terms, double sum in column order. */
static double row_kl(const float *pr, const float *lr, int V) {
  float lse = row_lse(lr, V);
  double acc = 0.0;
  for (int v = 0; v < V; v++) {
    if (pr[v] == -INFINITY) continue;
    float lq = lr[v] - lse;
    acc += (double)(expf(pr[v]) * (pr[v] - lq));
  }
  return acc;
}

void cpu_kl_div(aqs_backend *be, const float *logp_ref, const float *logits, int N, int V,
                double *kl_sum) {
  (void)be;
  double *rows = malloc(((size_t)N + 1) * sizeof *rows);
  if (!rows) abort();
#pragma omp parallel for schedule(static) if ((size_t)N * (size_t)V >= CPU_PAR_MIN)
  for (int r = 0; r < N; r++)
    rows[r] = row_kl(logp_ref + (size_t)r * (size_t)V, logits + (size_t)r * (size_t)V, V);
  double sum = 0.0;
  for (int r = 0; r < N; r++) sum += rows[r];
  free(rows);
  *kl_sum = sum;
}

void cpu_kl_argmax_rows(aqs_backend *be, const float *logp_ref, const float *logits, int N, int V,
                        double *row_kl_out, int32_t *argmax) {
  (void)be;
#pragma omp parallel for schedule(static) if ((size_t)N * (size_t)V >= CPU_PAR_MIN)
  for (int r = 0; r < N; r++) {
    const float *lr = logits + (size_t)r * (size_t)V;
    row_kl_out[r] = row_kl(logp_ref + (size_t)r * (size_t)V, lr, V);
    int best = 0;
    for (int v = 1; v < V; v++)
      if (lr[v] > lr[best]) best = v;
    argmax[r] = best;
  }
}
