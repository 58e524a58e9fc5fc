/* hash_linalg.h — numerical helpers shared by the baseline hashing methods
 * (kernels/hash_<method>.c: lsh, pcah, sh, itq, ldah, bre, mlh, ksh, sdh),
 * and the methods' core functions (exposed so that tests can check each
 * method's defining property without going through a model stream).
 *
 * Conventions: data matrices are row-major; float for the big (N, D) and
 * (N, M) matrices, double for the small (D, D), (M, M), (K, K) systems.
 * Eigen- and singular-value problems go to LAPACKE (dsyevr, dgesvd),
 * products to OpenBLAS. Nothing here prints or exits.
 *
 * The "rbf" transform (used by ksh, sdh and bre) stores
 *   anchors (M, D), gamma (1), kmean (M), P (K, M), b (K)
 * and computes u = P (k(z) - kmean) + b with k_j(z) = exp(-gamma |z - a_j|^2).
 * The "sh" transform (spectral hashing) stores
 *   pc (C, D), mn (C), omega (K, C)
 * and computes u_k = prod_c sin(pi/2 + omega[k,c] (pc_c . z - mn_c)).
 */
#ifndef DH_HASH_LINALG_H
#define DH_HASH_LINALG_H
#include <stdint.h>
#include "dh_util.h"
#include "hashfn.h"

/* ---- deterministic random numbers (xoshiro256**, seeded by splitmix64) -- */
typedef struct hl_rng {
    uint64_t s[4];
    int have_spare;
    double spare;
} hl_rng;
void hl_rng_seed(hl_rng *r, uint64_t seed);
uint64_t hl_rng_next(hl_rng *r);
double hl_rng_uniform(hl_rng *r);             /* [0, 1) */
double hl_rng_normal(hl_rng *r);              /* N(0, 1) */
uint64_t hl_rng_below(hl_rng *r, uint64_t n); /* uniform in [0, n), n > 0 */
/* k distinct indices of [0, n) in random order (k <= n). */
int hl_sample(hl_rng *r, int64_t n, int64_t k, int64_t *idx /* (k) */, dh_err *e);
/* Copy rows idx[0..k) of x (N, D) into out (k, D). */
void hl_gather_rows(const float *x, int D, const int64_t *idx, int64_t k, float *out);

/* ---- labels ------------------------------------------------------------ */
/* Map arbitrary i32 labels to 0..C-1 (in increasing label order). cls (N).
 * Returns the number of classes C, or -1 with e set. */
int hl_label_classes(const int32_t *labels, int64_t N, int32_t *cls, dh_err *e);

/* ---- statistics and factorisations ------------------------------------- */
void hl_mean(const float *x /* (N, D) */, int64_t N, int D, double *mean /* (D) */);
/* C (D, D) = (1/N) sum_i w_i (x_i - c_i)(x_i - c_i)^T where c_i = centre row
 * `cidx[i]` of centres (or `mean` for all rows when cidx is NULL) and w_i =
 * weight[i] (1 when weight is NULL). Blocked, double accumulation. */
int hl_scatter(const float *x, int64_t N, int D, const double *centres, const int32_t *cidx, const double *weight,
               double *C /* (D, D) */, dh_err *e);
/* Symmetric eigendecomposition of A (n, n) (destroyed): eigenvalues w
 * ascending, eigenvectors as the columns of Z (n, n), row-major. */
int hl_sym_eig(int n, double *A, double *w, double *Z, dh_err *e);
/* SVD of A (m, n) (destroyed): A = U diag(s) Vt; U (m, m), s (min), Vt (n, n). */
int hl_svd(int m, int n, double *A, double *U, double *s, double *Vt, dh_err *e);
/* Top-k principal directions of x: P (k, D) rows, unit, descending
 * variance (ev (k) when non-NULL), sign fixed so that each row's largest
 * |component| is positive; mean (D) filled. */
int hl_pca(const float *x, int64_t N, int D, int k, double *mean, double *P, double *ev, dh_err *e);
/* Solve the symmetric-definite generalised problem A v = l B v for the k
 * largest (largest=1) or smallest eigenvalues: B is regularised by
 * ridge * trace(B)/n on its diagonal and whitened with dsyevr. V (n, k) column
 * j = eigenvector j (B-orthonormal), l (k). A and B are destroyed. */
int hl_gen_eig(int n, double *A, double *B, double ridge, int k, int largest, double *V, double *l, dh_err *e);
/* Random K x K orthogonal matrix (Q of a Gaussian matrix, via SVD). */
int hl_random_rotation(hl_rng *r, int K, double *R /* (K, K) */, dh_err *e);

/* ---- RBF kernel features ------------------------------------------------ */
/* d2 (n, M) = |z_i - a_j|^2 (clamped at 0). */
void hl_sqdist(const float *z /* (n, D) */, int64_t n, int D, const float *a /* (M, D) */, int M,
               float *d2 /* (n, M) */);
/* k (n, M) = exp(-gamma |z_i - a_j|^2) - kmean_j (kmean may be NULL). */
void hl_rbf(const float *z, int64_t n, int D, const float *a, int M, double gamma, const float *kmean,
            float *k /* (n, M) */);
/* Kernel width as in Liu et al. 2012 (KSH): gamma = 1 / (2 mean |z - a|^2)
 * over the rows given; or 1 / (2 sigma^2) when sigma > 0. */
double hl_rbf_gamma(const float *z, int64_t n, int D, const float *a, int M, double sigma);
/* Pick M anchors from x (N, D) at random (M <= N). anchors (M, D). */
int hl_pick_anchors(hl_rng *r, const float *x, int64_t N, int D, int M, float *anchors, dh_err *e);
/* Write the rbf transform's tensors into out (after dh_hash_model_begin). */
int hl_model_set_rbf(dhs_model *out, const float *anchors, int M, int D, double gamma,
                     const float *kmean /* (M) or NULL = 0 */, const float *P /* (K, M) */,
                     const float *b /* (K) or NULL = 0 */, int K, dh_err *e);
int hl_rbf_project(const dhs_model *m, const char *prefix, const float *z, int64_t n, int D, int K, float *u,
                   dh_err *e);

/* ---- BLAS threading ------------------------------------------------------ */
/* Loops of many small BLAS calls (ksh, mlh) run far faster on one BLAS
 * thread, above all on a loaded machine: hl_blas_single() switches OpenBLAS
 * to one thread and returns the previous count for hl_blas_restore(). */
int hl_blas_single(void);
void hl_blas_restore(int nthreads);

/* ---- common checks ------------------------------------------------------ */
/* Size checks shared by all methods: N >= min_n, K in range, D >= 1,
 * labels when supervised. Messages name the method. */
int hl_check_input(const char *method, int64_t N, int D, int K, const int32_t *labels, int supervised, int64_t min_n,
                   dh_err *e);
/* Rows (n) of float matrix all finite? */
int hl_check_finite(const char *method, const float *x, int64_t N, int D, dh_err *e);
/* Method parameter helpers: value from the generic field when > 0, else
 * param `name`, else def. */
int hl_opt_int(const dh_hash_opts *o, int64_t generic, const char *name, int64_t def, int64_t lo, int64_t hi,
               int64_t *out, dh_err *e);
int hl_opt_double(const dh_hash_opts *o, double generic, const char *name, double def, double lo, double hi,
                  double *out, dh_err *e);
void hl_note(const dh_hash_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the methods (fit functions registered in hash_methods.c) ---------- */
int dh_fit_lsh(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts, dhs_model *out,
               dh_err *e);
int dh_fit_pcah(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts,
                dhs_model *out, dh_err *e);
int dh_fit_itq(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts, dhs_model *out,
               dh_err *e);
int dh_fit_sh(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts, dhs_model *out,
              dh_err *e);
int dh_sh_project(const dhs_model *m, const char *prefix, const float *z, int64_t n, int D, int K, float *u, dh_err *e);
int dh_fit_ldah(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts,
                dhs_model *out, dh_err *e);
int dh_fit_bre(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts, dhs_model *out,
               dh_err *e);
int dh_fit_mlh(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts, dhs_model *out,
               dh_err *e);
int dh_fit_ksh(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts, dhs_model *out,
               dh_err *e);
int dh_fit_sdh(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts, dhs_model *out,
               dh_err *e);

/* Cores exposed for tests. */
/* ITQ rotation of V (N, K): R (K, K) with V R ~ B; loss[t] (iters) =
 * |B_t - V R_t|_F^2 after iteration t's B-step (non-increasing). */
int hl_itq_rotate(const float *V, int64_t N, int K, int iters, hl_rng *r, double *R, double *loss, dh_err *e);
/* MLH loss-adjusted inference: (g, g2) in {-1,+1}^K maximising
 * loss(|g - g2|_H, sim) + g.a + g2.a2, with loss(m, 1) = max(m - rho + 1, 0),
 * loss(m, 0) = lam max(rho - m + 1, 0). tmp: K scratch entries. */
typedef struct {
    double c;
    int k;
} mlh_bit;
void hl_mlh_infer(const double *a, const double *a2, int K, int sim, int rho, double lam, double *g, double *g2,
                  mlh_bit *tmp);
/* BRE objective of codes B (n, K) in {-1,+1} against targets given by
 * class ids (0 same class, 1 otherwise), over all pairs i<j: for tests. */
double hl_bre_objective(const float *B, int64_t n, int K, const int32_t *cls);

#endif
