/* hash_ksh.c — kernel-based supervised hashing (Liu, Wang, Ji, Jiang &
 * Chang, CVPR 2012), following the authors' reference code:
 *   - M anchors (default 300) drawn at random from the training set; RBF
 *     kernel k_j(z) = exp(-|z - a_j|^2 / (2 s)) with s the mean squared
 *     distance from the training points to the anchors (or 2 sigma^2 when
 *     --sigma is given); kernel features centred by their training mean.
 *   - l labelled samples (--samples, default 1000) give the pairwise label
 *     matrix S = K * (+1 same class, -1 otherwise).
 *   - bits are learned one after the other: for bit k with residual
 *     R_{k-1} = S - sum_{t<k} b_t b_t^T, the spectral relaxation
 *     (Kl^T R Kl) a = lambda (Kl^T Kl) a (largest lambda; scaled so that
 *     |Kl a|^2 = l) starts an accelerated gradient descent (backtracking,
 *     at most `iterations` = 500 steps) on the smooth surrogate
 *     -phi(Kl a)^T R phi(Kl a), phi(x) = 2/(1+e^-x) - 1; whichever of the two
 *     gives the larger b^T R b with b = sign(Kl a) is kept.
 *   Bit k = [a_k . (k(z) - kmean) > 0]. Transform "rbf".
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include "hash_linalg.h"

/* y = phi(Kl a) (l), and f = -y^T R y */
static double ksh_cost(const double *Kl, int l, int M, const double *R, const double *a, double *y, double *Ry) {
    cblas_dgemv(CblasRowMajor, CblasNoTrans, l, M, 1.0, Kl, M, a, 1, 0.0, y, 1);
    for (int i = 0; i < l; i++) y[i] = 2.0 / (1.0 + exp(-y[i])) - 1.0;
    cblas_dsymv(CblasRowMajor, CblasUpper, l, 1.0, R, l, y, 1, 0.0, Ry, 1);
    return -cblas_ddot(l, y, 1, Ry, 1);
}

/* b^T R b with b = sign(Kl a) */
static double ksh_sign_score(const double *Kl, int l, int M, const double *R, const double *a, double *y, double *Ry) {
    cblas_dgemv(CblasRowMajor, CblasNoTrans, l, M, 1.0, Kl, M, a, 1, 0.0, y, 1);
    for (int i = 0; i < l; i++) y[i] = y[i] > 0 ? 1.0 : -1.0;
    cblas_dsymv(CblasRowMajor, CblasUpper, l, 1.0, R, l, y, 1, 0.0, Ry, 1);
    return cblas_ddot(l, y, 1, Ry, 1);
}

/* OptProjectionFast: Nesterov-accelerated gradient with backtracking. */
static void ksh_optimize(const double *Kl, int l, int M, const double *R, const double *a_init, int maxit, double *best,
                         double *work) {
    double *a0 = work, *a1 = a0 + M, *v = a1 + M, *g = v + M, *zz = g + M, *y = zz + M, *Ry = y + l, *ty = Ry + l;
    memcpy(a0, a_init, (size_t)M * sizeof *a0);
    memcpy(a1, a_init, (size_t)M * sizeof *a1);
    double cost_prev = ksh_cost(Kl, l, M, R, a0, y, Ry);
    double delta_prev = 0, delta = 1, beta = 1;
    memcpy(best, a1, (size_t)M * sizeof *best);
    for (int t = 0; t < maxit; t++) {
        double alpha = (delta_prev - 1) / delta;
        for (int j = 0; j < M; j++) v[j] = a1[j] + alpha * (a1[j] - a0[j]);
        double gv = ksh_cost(Kl, l, M, R, v, y, Ry);
        for (int i = 0; i < l; i++) ty[i] = Ry[i] * (1 - y[i] * y[i]);
        cblas_dgemv(CblasRowMajor, CblasTrans, l, M, -1.0, Kl, M, ty, 1, 0.0, g, 1);
        int ok = 0;
        double gz = 0;
        for (int j = 0; j <= 50; j++) {
            double b = ldexp(beta, j);
            double gd = 0, dd = 0;
            for (int q = 0; q < M; q++) {
                zz[q] = v[q] - g[q] / b;
                double d = zz[q] - v[q];
                gd += g[q] * d;
                dd += d * d;
            }
            gz = ksh_cost(Kl, l, M, R, zz, y, Ry);
            if (gz <= gv + gd + b * dd / 2) {
                ok = 1;
                beta = b;
                memcpy(a0, a1, (size_t)M * sizeof *a0);
                memcpy(a1, zz, (size_t)M * sizeof *a1);
                break;
            }
        }
        if (!ok) break;
        memcpy(best, a1, (size_t)M * sizeof *best);
        double dnext = (1 + sqrt(1 + 4 * delta * delta)) / 2;
        delta_prev = delta;
        delta = dnext;
        if (fabs(gz - cost_prev) / l <= 1e-2) break;
        cost_prev = gz;
    }
}

int dh_fit_ksh(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts, dhs_model *out,
               dh_err *e) {
    int rc;
    int64_t M, l, iters;
    double sigma;
    if ((rc = hl_check_input("ksh", N, D, K, labels, 1, 2, e))) return rc;
    if ((rc = hl_opt_int(opts, opts ? opts->anchors : 0, "anchors", 300, 1, 10000, &M, e))) return rc;
    if ((rc = hl_opt_int(opts, opts ? opts->samples : 0, "samples", 1000, 2, 20000, &l, e))) return rc;
    if ((rc = hl_opt_int(opts, opts ? opts->iterations : 0, "iterations", 500, 0, 100000, &iters, e))) return rc;
    if ((rc = hl_opt_double(opts, opts ? opts->sigma : 0, "sigma", 0, 0, 1e30, &sigma, e))) return rc;
    if (N < M)
        return dh_seterr(e, DH_ESCHEMA, "too few samples (%lld) for %lld anchors (fewer with --anchors)", (long long)N,
                         (long long)M);
    if (l > N) l = N;
    if ((rc = hl_check_finite("ksh", z, N, D, e))) return rc;

    hl_rng r;
    hl_rng_seed(&r, opts ? opts->seed : 1);
    float *anchors = dh_malloc(e, (size_t)M * D, sizeof *anchors), *kb = dh_malloc(e, (size_t)1024 * M, sizeof *kb),
          *kmean = dh_malloc(e, (size_t)M, sizeof *kmean), *Pf = dh_malloc(e, (size_t)K * M, sizeof *Pf),
          *zl = dh_malloc(e, (size_t)l * D, sizeof *zl);
    int64_t *idx = dh_malloc(e, (size_t)l, sizeof *idx);
    int32_t *cls = dh_malloc(e, (size_t)N, sizeof *cls);
    double *km = dh_calloc(e, (size_t)M, sizeof *km), *Kl = dh_malloc(e, (size_t)l * M, sizeof *Kl),
           *S = dh_malloc(e, (size_t)l * l, sizeof *S), *RM = dh_malloc(e, (size_t)M * M, sizeof *RM),
           *LM = dh_malloc(e, (size_t)M * M, sizeof *LM), *B2 = dh_malloc(e, (size_t)M * M, sizeof *B2),
           *T = dh_malloc(e, (size_t)l * M, sizeof *T), *a0 = dh_malloc(e, (size_t)M, sizeof *a0),
           *a1 = dh_malloc(e, (size_t)M, sizeof *a1), *y = dh_malloc(e, (size_t)l, sizeof *y),
           *Ry = dh_malloc(e, (size_t)l, sizeof *Ry), *y1 = dh_malloc(e, (size_t)l, sizeof *y1),
           *work = dh_malloc(e, (size_t)6 * M + 3 * l, sizeof *work);
    if (!anchors || !kb || !kmean || !Pf || !zl || !idx || !cls || !km || !Kl || !S || !RM || !LM || !B2 || !T || !a0 ||
        !a1 || !y || !Ry || !y1 || !work) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    if (hl_label_classes(labels, N, cls, e) < 0) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    if ((rc = hl_pick_anchors(&r, z, N, D, (int)M, anchors, e))) goto out;
    if ((rc = hl_sample(&r, N, l, idx, e))) goto out;
    double gamma = hl_rbf_gamma(z, N, D, anchors, (int)M, sigma);
    /* kernel mean over the whole training set */
    for (int64_t i0 = 0; i0 < N; i0 += 1024) {
        int64_t nb = N - i0 < 1024 ? N - i0 : 1024;
        hl_rbf(z + i0 * D, nb, D, anchors, (int)M, gamma, NULL, kb);
        for (int64_t i = 0; i < nb; i++)
            for (int j = 0; j < M; j++) km[j] += kb[i * M + j];
    }
    for (int j = 0; j < M; j++) {
        km[j] /= (double)N;
        kmean[j] = (float)km[j];
    }
    /* labelled kernel features Kl (l, M), centred */
    hl_gather_rows(z, D, idx, l, zl);
    for (int64_t i0 = 0; i0 < l; i0 += 1024) {
        int64_t nb = l - i0 < 1024 ? l - i0 : 1024;
        hl_rbf(zl + i0 * D, nb, D, anchors, (int)M, gamma, kmean, kb);
        for (int64_t i = 0; i < nb * M; i++) Kl[i0 * M + i] = kb[i];
    }
    for (int64_t i = 0; i < l; i++)
        for (int64_t j = 0; j < l; j++) S[i * l + j] = (cls[idx[i]] == cls[idx[j]] ? 1.0 : -1.0) * K;
    /* RM = Kl^T Kl */
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)M, (int)M, (int)l, 1.0, Kl, (int)M, Kl, (int)M, 0.0, RM,
                (int)M);
    int nkept_grad = 0;
    for (int k = 0; k < K; k++) {
        /* LM = Kl^T S Kl */
        cblas_dsymm(CblasRowMajor, CblasLeft, CblasUpper, (int)l, (int)M, 1.0, S, (int)l, Kl, (int)M, 0.0, T, (int)M);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)M, (int)M, (int)l, 1.0, Kl, (int)M, T, (int)M, 0.0,
                    LM, (int)M);
        memcpy(B2, RM, (size_t)M * M * sizeof *B2);
        if ((rc = hl_gen_eig((int)M, LM, B2, 1e-8, 1, 1, a0, NULL, e))) goto out;
        /* scale so that |Kl a|^2 = l (entries of order 1, as the reference code) */
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)l, (int)M, 1.0, Kl, (int)M, a0, 1, 0.0, y, 1);
        double nn = cblas_ddot((int)l, y, 1, y, 1);
        if (nn > 0) cblas_dscal((int)M, sqrt((double)l / nn), a0, 1);
        int blas_threads = hl_blas_single(); /* many small BLAS-2 calls */
        ksh_optimize(Kl, (int)l, (int)M, S, a0, (int)iters, a1, work);
        hl_blas_restore(blas_threads);
        double s0 = ksh_sign_score(Kl, (int)l, (int)M, S, a0, y, Ry);
        double s1 = ksh_sign_score(Kl, (int)l, (int)M, S, a1, y1, Ry);
        const double *a = a0;
        if (s1 > s0) {
            a = a1;
            memcpy(y, y1, (size_t)l * sizeof *y);
            nkept_grad++;
        } else
            ksh_sign_score(Kl, (int)l, (int)M, S, a0, y, Ry);
        for (int j = 0; j < M; j++) Pf[(int64_t)k * M + j] = (float)a[j];
        /* S -= y y^T */
        cblas_dger(CblasRowMajor, (int)l, (int)l, -1.0, y, 1, y, 1, S, (int)l);
    }
    hl_note(opts, "ksh: %lld anchors, %lld labelled samples, gamma %.4g; gradient step kept for %d of %d bits",
            (long long)M, (long long)l, gamma, nkept_grad, K);
    if ((rc = dh_hash_model_begin(out, "ksh", "rbf", K, D, e))) goto out;
    if ((rc = hl_model_set_rbf(out, anchors, (int)M, D, gamma, kmean, Pf, NULL, K, e))) goto out;
    dhs_meta_set_int(out->meta, "samples", l);
    rc = DH_OK;
out:
    free(anchors);
    free(kb);
    free(kmean);
    free(Pf);
    free(zl);
    free(idx);
    free(cls);
    free(km);
    free(Kl);
    free(S);
    free(RM);
    free(LM);
    free(B2);
    free(T);
    free(a0);
    free(a1);
    free(y);
    free(Ry);
    free(y1);
    free(work);
    return rc;
}
