/* deeploss_impl.h — internal to kernels/hash/deeploss*.c: the loss object
 * and the helpers the methods share. Not installed for library users. */
#ifndef DH_DEEPLOSS_IMPL_H
#define DH_DEEPLOSS_IMPL_H
#include <math.h>
#include <stdint.h>
#include "deeploss.h"
#include "deeploss_elem.h"
#include "hashloss.h"

struct dh_dloss {
    const dh_dloss_method *m;
    dh_dloss_config cfg;
    double p[DH_DLOSS_MAX_PARAMS]; /* parameter values, in the method's order */
    void *state;                   /* the method's own                        */
    int64_t db_n;                  /* dh_dloss_set_database: N rows           */
    int32_t *db_labels;            /* (N) or NULL                             */
    uint8_t *db_multi;             /* (N, C) or NULL                          */
};

/* dl_sign, dl_sigmoid, dl_softplus, dl_logcosh: deeploss_elem.h (shared with the CUDA kernels) */
static inline double dl_dot(const double *a, const double *b, int K) {
    double s = 0;
    for (int k = 0; k < K; k++) s += a[k] * b[k];
    return s;
}

/* 1 when rows i and j of the batch share a label (same class, or a common
 * label of multi-hot rows). */
int dl_similar(const dh_dloss_batch *b, int C, int i, int j);
/* Row i's labels as a 0/1 vector y (C). */
void dl_label_vector(const dh_dloss_batch *b, int C, int i, double *y);
/* Ordered pairs i != j of the batch: number of similar (*s1) and
 * dissimilar (*s0) ones. */
void dl_pair_counts(const dh_dloss_batch *b, int C, int64_t *s1, int64_t *s0);
/* C codewords of K bits (+-1, row-major C x K): kind 0 auto (Hadamard when
 * K is a power of two and C <= 2K, else Bernoulli), 1 Hadamard (rows of
 * [H_K; -H_K]), 2 Bernoulli(1/2) (best of 100 draws by minimum pairwise
 * Hamming distance). */
int dl_codebook(int C, int K, int kind, uint64_t seed, const char *who, float *out, dh_err *e);
/* The batch checks of dh_dloss_eval; host_u 0: b->u is not looked at (the
 * device path, whose u is on the GPU). */
int dl_check_batch(const dh_dloss *L, const dh_dloss_batch *b, int host_u, dh_err *e);
/* HashNet's and DCH's pair weights: |S|/|S1| on similar, |S|/|S0| on
 * dissimilar pairs (1 for all when either set is empty or on is 0). */
void dl_balance_weights(const dh_dloss_batch *b, int C, int on, double *w1, double *w0);
/* HashNet's beta at a step: beta0 (1 + gamma t)^power, t the step rounded
 * down to step_size. */
double dl_hashnet_beta(const dh_dloss *L, int64_t step);
/* The paper's loss as the registry's "deephash" configures it (norm, scale). */
void dl_deephash_opts(const dh_dloss *L, dh_hashloss_opts *o);
/* Symmetric positive definite solve A X = R (A n x n, R n x m, both
 * row-major, overwritten: X in R). Returns 0, or -1 if A is not SPD. */
int dl_spd_solve(double *A, int n, double *R, int m);

/* ---- the methods (deeploss_pair.c, deeploss_multi.c, deeploss_class.c,
 * deeploss_discrete.c) ---- */
#define DL_EVAL(f)                                                                                                     \
    int f(dh_dloss *L, const dh_dloss_batch *b, const double *u, double *du, dh_dloss_stats *st, dh_err *e)
DL_EVAL(dl_dpsh_eval);
DL_EVAL(dl_dhn_eval);
DL_EVAL(dl_hashnet_eval);
DL_EVAL(dl_dch_eval);
DL_EVAL(dl_dsh_eval);
DL_EVAL(dl_dtsh_eval);
DL_EVAL(dl_mihash_eval);
DL_EVAL(dl_csq_eval);
DL_EVAL(dl_orthohash_eval);
DL_EVAL(dl_greedy_eval);
DL_EVAL(dl_dsdh_eval);
DL_EVAL(dl_adsh_eval);
DL_EVAL(dl_deephash_eval);
int dl_codebook_init(dh_dloss *L, dh_err *e); /* csq, orthohash */
int dl_greedy_init(dh_dloss *L, dh_err *e);
int dl_dsdh_init(dh_dloss *L, dh_err *e);
int dl_dsdh_epoch_end(dh_dloss *L, dh_err *e);
int dl_adsh_init(dh_dloss *L, dh_err *e);
int dl_adsh_epoch_end(dh_dloss *L, dh_err *e);
int dl_mihash_init(dh_dloss *L, dh_err *e);
int dl_csq_init(dh_dloss *L, dh_err *e);
void dl_state_free(dh_dloss *L); /* free(L->state) */
/* The state tensors (deeploss.c asks the method file). */
const float *dl_codebook_tensor(const dh_dloss *L, const char *name, int64_t *rows, int *cols);
const float *dl_greedy_tensor(const dh_dloss *L, const char *name, int64_t *rows, int *cols);
const float *dl_dsdh_tensor(const dh_dloss *L, const char *name, int64_t *rows, int *cols);
const float *dl_adsh_tensor(const dh_dloss *L, const char *name, int64_t *rows, int *cols);
/* Their state for checkpoints (dh_dloss_state_at), and ADSH's sums after a restore. */
int dl_greedy_state(dh_dloss *L, int i, dh_dloss_state *out);
int dl_dsdh_state(dh_dloss *L, int i, dh_dloss_state *out);
int dl_adsh_state(dh_dloss *L, int i, dh_dloss_state *out);
void dl_adsh_restored(dh_dloss *L);
void dl_dsdh_destroy(dh_dloss *L);
void dl_adsh_destroy(dh_dloss *L);
#endif
