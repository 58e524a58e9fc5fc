/* evalmap.h — retrieval metrics over Hamming rankings.
 *
 * Protocol (the paper's): a database item is relevant to a query when
 * their labels are equal. The ranking of a query is the whole database
 * sorted by Hamming distance, ties broken by database position (a stable
 * sort). Per query, with Rel relevant items in the database:
 *   AP      = (1/Rel) * sum over relevant items at rank r (1-based) of
 *             (relevant items in ranks 1..r) / r;  0 when Rel == 0.
 *   AP@R    = the same sum over ranks 1..R, divided by the number of
 *             relevant items in ranks 1..R (0 when there is none) — the
 *             usual "mAP@R" of the hashing literature.
 *   P@k     = relevant in ranks 1..k / min(k, N);  R@k = that / Rel.
 *   P(r)    = relevant at distance <= r / items at distance <= r (0 when
 *             no item is that close); R(r) = relevant at distance <= r / Rel.
 * Tie-aware values: the database order decides among equal distances, so
 * a database stored in class order (as dh-ingest writes it) moves P@k and
 * mAP@R. Each metric above is also reported as its exact expected value
 * when equal-distance items come in a uniformly random order, computed
 * from the per-distance counts (no sampling). With, for the distance group
 * that holds rank k, N_b items and R_b relevant items before it, n items
 * and m relevant in it, and t = k - N_b of its items in the top k:
 *   P@k_tie = (R_b + t*m/n) / min(k, N)   (the hypergeometric mean);
 *             R@k_tie = the same numerator / Rel.
 *   AP_tie  = the expected AP (McSherry & Najork 2008): each group adds
 *             S(N_b, R_b, n, m) = (m/n) * [ (R_b + 1 - (N_b+1)*beta) *
 *             (H(N_b+n) - H(N_b)) + n*beta ], beta = (m-1)/(n-1) (0 when
 *             n == 1), H the harmonic numbers; then divided by Rel.
 *   AP@R_tie = sum over x of P(X = x) * (S_b + S(N_b, R_b, t, x)) / (R_b + x)
 *             (0 when R_b + x == 0), for the group that holds rank R: S_b
 *             the sum of S over the groups before it, X ~ Hypergeometric(n,
 *             m, t) the relevant items among its t ranks in the top R (given
 *             X = x they are uniformly placed among those t ranks).
 *   P(r), the precision within a radius, and the PR points do not depend
 *             on the order: the tie-aware value is the database-order one.
 * From lists cut at top R, a tie-aware P@k or mAP@R needs the whole group
 * that holds rank k (or R): otherwise it is not available.
 * Means are over all queries; a query with no relevant item counts with
 * AP = 0 (and is reported), so it can only lower the mean.
 *
 * Fast path (dh_map_cpu, dh_map_cuda): per query one pass over the database
 * computes each item's distance d and its index s among the items at
 * distance d so far (a per-distance counter); relevant items are remembered
 * as (d, s). With the per-distance counts, an item's rank is
 * start[d] + s, and the relevant items before it number relstart[d] +
 * (its index among relevant items at d): exact AP in O(N + K) per query,
 * never sorting or materialising the ranking.
 */
#ifndef DH_EVALMAP_H
#define DH_EVALMAP_H
#include <stdint.h>
#include "dh_util.h"
#include "hamming.h"
#include "rank.h"
#include "rank_codes.h"

#define DH_MAP_MAX_K 64 /* at most this many precision@k cut-offs */

typedef struct dh_map_opts {
    int64_t at_r; /* mAP@R: R (0 = not computed) */
    int nk;       /* precision/recall@k cut-offs */
    int64_t ks[DH_MAP_MAX_K];
    int radius; /* precision within this Hamming radius (2) */
} dh_map_opts;

/* Per-query raw statistics, filled by the fast paths (CPU or CUDA) or from
 * a ranked list; dh_map_acc_add turns them into metrics. */
typedef struct dh_map_qraw {
    int64_t rel_total;           /* relevant items in the whole database */
    int64_t len;                 /* items ranked (N for the fast path) */
    int complete_upto;           /* every item at distance <= this is in the list
                             (bits for a full ranking) */
    double ap_sum;               /* sum over ranked relevant items of prec@rank */
    double apr_sum;              /* the same over ranks 1..at_r */
    int64_t rel_at_r;            /* relevant in ranks 1..at_r */
    int64_t rel_k[DH_MAP_MAX_K]; /* relevant in ranks 1..k */
    int64_t *hist;               /* (bits+1) items at each distance (valid up to complete_upto) */
    int64_t *relhist;            /* (bits+1) relevant items at each distance */
} dh_map_qraw;

/* Accumulated metrics over queries. */
typedef struct dh_map_acc {
    int bits;
    int64_t ndb;
    dh_map_opts opt;
    int64_t nq, nq_norel;
    int64_t min_len;              /* shortest ranked list */
    int min_complete;             /* smallest complete_upto */
    double ap, ap_tie, apr, prad; /* sums over queries */
    double pk[DH_MAP_MAX_K], rk[DH_MAP_MAX_K];
    double apr_tie, pk_tie[DH_MAP_MAX_K], rk_tie[DH_MAP_MAX_K]; /* tie-aware sums */
    int apr_tie_missing, k_tie_missing[DH_MAP_MAX_K];           /* some query could not give them */
    double *pr_p, *pr_r;                                        /* (bits+1) sums of P(r), R(r) */
    const double *H;                                            /* harmonic numbers H[0..ndb] */
    double *H_own;                                              /* H when the accumulator made it */
} dh_map_acc;

/* Harmonic numbers H[0..n] (H[0] = 0). Caller frees. */
double *dh_map_harmonic(int64_t n, dh_err *e);

/* H: harmonic numbers H[0..ndb] (borrowed, to share them between
 * accumulators), or NULL to have the accumulator make its own. */
int dh_map_acc_init(dh_map_acc *a, int bits, int64_t ndb, const dh_map_opts *o, const double *H, dh_err *e);
void dh_map_acc_free(dh_map_acc *a);
/* Add one query's statistics (in query order, for reproducible sums). */
void dh_map_acc_add(dh_map_acc *a, const dh_map_qraw *r);

/* Final metrics (means), and which are available. */
typedef struct dh_map_result {
    int bits;
    int64_t nq, ndb, nq_norel;
    int have_map, have_map_r, have_prad;
    double map, map_tie, map_r, prad;
    int have_map_r_tie; /* map_tie shares have_map; prad has no tie-aware twin (order-free) */
    double map_r_tie;
    int64_t at_r;
    int radius;
    int nk;
    int64_t ks[DH_MAP_MAX_K];
    int have_k[DH_MAP_MAX_K];
    double pk[DH_MAP_MAX_K], rk[DH_MAP_MAX_K];
    int have_k_tie[DH_MAP_MAX_K];
    double pk_tie[DH_MAP_MAX_K], rk_tie[DH_MAP_MAX_K];
    int pr_n;            /* PR points for radius 0..pr_n-1 */
    double *pr_p, *pr_r; /* (pr_n) */
} dh_map_result;
int dh_map_acc_result(const dh_map_acc *a, dh_map_result *res, dh_err *e);
void dh_map_result_free(dh_map_result *r);

/* Fast path on the CPU: queries q (nq, W) with labels ql (nq), database db
 * (ndb, W) with labels dl (ndb). Adds every query to acc, in order. */
int dh_map_cpu(const uint64_t *q, const int32_t *ql, int64_t nq, const uint64_t *db, const int32_t *dl, int64_t ndb,
               int bits, int nthreads, dh_map_acc *acc, dh_err *e);

/* Statistics of one query from a ranked list (database rows idx with their
 * distances, in rank order); dl are the database labels, rel_total the
 * number of database items with label ql. complete_upto as in dh_map_qraw.
 * raw->hist and raw->relhist must point to bits+1 entries each. */
int dh_map_list(const int64_t *idx, const int32_t *dist, int64_t n, int32_t ql, const int32_t *dl, int64_t ndb,
                int bits, int64_t rel_total, int complete_upto, const dh_map_opts *o, dh_map_qraw *raw, dh_err *e);

/* Fast path on the GPU (evalmap_kernels.cu, part of libdhcuda.so, loaded
 * at the first CUDA use: dh_cudaload.h): same results as dh_map_cpu up to
 * the order of floating-point additions within a query (|diff| < 1e-12).
 * *gpu_seconds gets the time of the computation itself (upload of the
 * database excluded). DH_EUNSUPPORTED for codes of more than
 * DH_MAP_CUDA_MAX_BITS bits; DH_EDEVICE without the CUDA backend or a
 * device, naming what is missing ("this build has no CUDA backend", ...). */
#define DH_MAP_CUDA_MAX_BITS 512
int dh_map_cuda(const uint64_t *q, const int32_t *ql, int64_t nq, const uint64_t *db, const int32_t *dl, int64_t ndb,
                int bits, dh_map_acc *acc, double *gpu_seconds, dh_err *e);

/* Internal: the entry points of libdhcuda.so behind dh_map_cuda (see
 * evalmap_kernels.cu; arguments checked by evalmap.c). */
int dhcu_map_open(void **ctx, const uint64_t *db, const int32_t *dl, int64_t ndb, int bits, int64_t maxq, dh_err *e);
int dhcu_map_run(void *ctx, const uint64_t *q, const int32_t *ql, int64_t n, const dh_map_opts *o, int32_t *hist,
                 int32_t *relhist, double *ap, double *apr, uint64_t *relr, uint64_t *relk, double *seconds, dh_err *e);
void dhcu_map_close(void *ctx);

/* The fast path dispatched by device: queries q against the database db
 * (both with labels), every query added to acc in order. DH_SEARCH_AUTO
 * uses CUDA when a device is present and the codes are within its limits;
 * DH_SEARCH_CUDA that cannot run is DH_EDEVICE. */
typedef struct dh_map_run {
    dh_search_dev dev;
    int nthreads;                              /* CPU threads */
    void (*progress)(void *ctx, int64_t done); /* queries done, after each slice (may be NULL) */
    void *ctx;
    const char *used; /* out: "cpu" or "cuda" */
    double seconds;   /* out: time of the computation (on the device for CUDA) */
} dh_map_run;
int dh_map_codes(const dh_codeset *q, const dh_codeset *db, dh_map_run *run, dh_map_acc *acc, dh_err *e);

/* ---- rankings (dh-rank's lists, possibly cut) --------------------------------------------------- */

/* The largest distance d such that every database item at distance <= d is
 * in a list of n rows (distances dist, non-decreasing) ranked against ndb
 * rows with top R (-1: all) and radius (-1: none); -1 when none is. */
int dh_map_complete_upto(const int32_t *dist, int64_t n, int64_t ndb, int64_t top, int radius, int bits);

/* Evaluation of ranked lists against the database labels dl (borrowed). */
typedef struct dh_map_lists {
    int bits, radius;
    int64_t ndb, top;
    const int32_t *dl;
    int32_t *sorted; /* (ndb) the labels sorted: relevant counts per query */
    int64_t *hist, *relhist;
} dh_map_lists;
int dh_map_lists_init(dh_map_lists *l, const int32_t *dl, int64_t ndb, int bits, int64_t top, int radius, dh_err *e);
/* Add the list of one query (label ql) to acc; DH_EFORMAT for a list that is
 * not a ranking of this database, or an unlabelled query (DH_NO_LABEL, or
 * INT32_MIN as dh-rank writes queries without labels). */
int dh_map_lists_add(dh_map_lists *l, dh_map_acc *acc, int32_t ql, const int64_t *idx, const int32_t *dist, int64_t n,
                     dh_err *e);
/* What the cut leaves out, for the report, or NULL for whole rankings. */
const char *dh_map_lists_note(const dh_map_lists *l);
void dh_map_lists_free(dh_map_lists *l);

#endif
