/* hash_sdh.c — supervised discrete hashing (Shen, Shen, Liu & Shen, CVPR
 * 2015), following the authors' reference code:
 *   - RBF features phi(z) on M anchors (default 1000, random training
 *     points), plus a constant (bias) feature; kernel width as in KSH
 *     (2 s = twice the mean squared distance to the anchors) unless
 *     --sigma is given (the reference uses sigma = 0.4 on unit-norm data);
 *   - B (N, K) in {-1,+1} initialised at random, then `iterations` (default
 *     5) rounds of
 *       G-step  W = (B^T B + lambda I)^-1 B^T Y          (lambda = 1)
 *       F-step  P = (Phi^T Phi + lambda_F I)^-1 Phi^T B   (lambda_F = 0.01)
 *       B-step  discrete cyclic coordinate descent on
 *               |Y - B W|^2 + nu |B - Phi P|^2          (nu = 1e-5),
 *               at most 10 sweeps over the bits;
 *   Y is the one-hot label matrix. Bit k = [P_k . phi(z) + b_k > 0].
 * Params: nu, lambda_f (and --lambda for lambda). Transform "rbf".
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include <lapacke.h>
#include "hash_linalg.h"

int dh_fit_sdh(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts, dhs_model *out,
               dh_err *e) {
    int rc;
    int64_t M, iters, nsamp;
    double sigma, lambda, lambda_f, nu;
    if ((rc = hl_check_input("sdh", N, D, K, labels, 1, 2, e))) return rc;
    if ((rc = hl_opt_int(opts, opts ? opts->anchors : 0, "anchors", 1000, 1, 10000, &M, e))) return rc;
    if ((rc = hl_opt_int(opts, opts ? opts->iterations : 0, "iterations", 5, 1, 10000, &iters, e))) return rc;
    if ((rc = hl_opt_int(opts, opts ? opts->samples : 0, "samples", N, 2, INT64_MAX, &nsamp, e))) return rc;
    if ((rc = hl_opt_double(opts, opts ? opts->sigma : 0, "sigma", 0, 0, 1e30, &sigma, e))) return rc;
    if ((rc = hl_opt_double(opts, opts ? opts->lambda : 0, "lambda", 1, 0, 1e30, &lambda, e))) return rc;
    if ((rc = hl_opt_double(opts, 0, "lambda_f", 0.01, 0, 1e30, &lambda_f, e))) return rc;
    if ((rc = hl_opt_double(opts, 0, "nu", 1e-5, 0, 1e30, &nu, e))) return rc;
    if (N < M)
        return dh_seterr(e, DH_ESCHEMA, "too few samples (%lld) for %lld anchors (fewer with --anchors)", (long long)N,
                         (long long)M);
    if (nsamp > N) nsamp = N;
    if (nsamp < M)
        return dh_seterr(e, DH_EINVAL, "%lld training samples for %lld anchors is too few", (long long)nsamp,
                         (long long)M);
    if ((rc = hl_check_finite("sdh", z, N, D, e))) return rc;

    hl_rng r;
    hl_rng_seed(&r, opts ? opts->seed : 1);
    int64_t n = nsamp, M1 = M + 1;
    float *anchors = dh_malloc(e, (size_t)M * D, sizeof *anchors), *zs = NULL,
          *Phi = dh_malloc(e, (size_t)n * M1, sizeof *Phi), *B = dh_malloc(e, (size_t)n * K, sizeof *B),
          *F = dh_malloc(e, (size_t)n * K, sizeof *F), *Q = dh_malloc(e, (size_t)n * K, sizeof *Q),
          *Pf = dh_malloc(e, (size_t)M1 * K, sizeof *Pf), *PtB = dh_malloc(e, (size_t)M1 * K, sizeof *PtB),
          *Pout = dh_malloc(e, (size_t)K * M, sizeof *Pout), *bout = dh_malloc(e, (size_t)K, sizeof *bout),
          *kb = dh_malloc(e, (size_t)1024 * M, sizeof *kb);
    int64_t *idx = dh_malloc(e, (size_t)n, sizeof *idx);
    int32_t *cls = dh_malloc(e, (size_t)N, sizeof *cls);
    double *G = dh_malloc(e, (size_t)M1 * M1, sizeof *G), *Pd = dh_malloc(e, (size_t)M1 * K, sizeof *Pd);
    double *BtB = dh_malloc(e, (size_t)K * K, sizeof *BtB), *W = NULL, *WW = dh_malloc(e, (size_t)K * K, sizeof *WW);
    if (!anchors || !Phi || !B || !F || !Q || !Pf || !PtB || !Pout || !bout || !kb || !idx || !cls || !G || !Pd ||
        !BtB || !WW) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    int C = hl_label_classes(labels, N, cls, e);
    if (C < 0) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    W = dh_malloc(e, (size_t)K * C, sizeof *W);
    double *BtY = dh_malloc(e, (size_t)K * C, sizeof *BtY);
    if (!W || !BtY) {
        free(BtY);
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    if ((rc = hl_pick_anchors(&r, z, N, D, (int)M, anchors, e))) {
        free(BtY);
        goto out;
    }
    if (n < N) {
        if ((rc = hl_sample(&r, N, n, idx, e))) {
            free(BtY);
            goto out;
        }
    } else
        for (int64_t i = 0; i < n; i++) idx[i] = i;
    zs = dh_malloc(e, (size_t)(n < 1024 ? n : 1024) * D, sizeof *zs);
    if (!zs) {
        free(BtY);
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    double gamma = hl_rbf_gamma(z, N < 20000 ? N : 20000, D, anchors, (int)M, sigma);
    for (int64_t i0 = 0; i0 < n; i0 += 1024) {
        int64_t nb = n - i0 < 1024 ? n - i0 : 1024;
        hl_gather_rows(z, D, idx + i0, nb, zs);
        hl_rbf(zs, nb, D, anchors, (int)M, gamma, NULL, kb);
        for (int64_t i = 0; i < nb; i++) {
            memcpy(Phi + (i0 + i) * M1, kb + i * M, (size_t)M * sizeof *Phi);
            Phi[(i0 + i) * M1 + M] = 1.0f;
        }
    }
    /* G = Phi^T Phi + lambda_f I, Cholesky once */
    /* (accumulated in double: in float the Gram matrix of 60000 rows of
     * highly correlated RBF features is not numerically positive definite) */
    {
        const int64_t BS = 256;
        double *blk = dh_malloc(e, (size_t)BS * M1, sizeof *blk);
        if (!blk) {
            free(BtY);
            rc = e ? e->code : DH_ENOMEM;
            goto out;
        }
        memset(G, 0, (size_t)M1 * M1 * sizeof *G);
        for (int64_t i0 = 0; i0 < n; i0 += BS) {
            int64_t nb = n - i0 < BS ? n - i0 : BS;
            for (int64_t i = 0; i < nb * M1; i++) blk[i] = Phi[i0 * M1 + i];
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)M1, (int)nb, 1.0, blk, (int)M1, 1.0, G, (int)M1);
        }
        free(blk);
        for (int64_t a = 0; a < M1; a++)
            for (int64_t b = 0; b < a; b++) G[a * M1 + b] = G[b * M1 + a];
    }
    for (int64_t a = 0; a < M1; a++) G[a * M1 + a] += lambda_f;
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (int)M1, G, (int)M1) != 0) {
        rc = dh_seterr(e, DH_EFORMAT, "kernel Gram matrix is not positive definite (raise lambda_f)");
        free(BtY);
        goto out;
    }
    for (int64_t i = 0; i < n * K; i++) B[i] = hl_rng_normal(&r) >= 0 ? 1.0f : -1.0f;
    int sweeps_total = 0;
    for (int it = 0; it < iters; it++) {
        /* G-step: W (K, C) = (B^T B + lambda I)^-1 B^T Y */
        memset(BtY, 0, (size_t)K * C * sizeof *BtY);
        memset(BtB, 0, (size_t)K * K * sizeof *BtB);
        for (int64_t i = 0; i < n; i++) {
            const float *bi = B + i * K;
            int c = cls[idx[i]];
            for (int a = 0; a < K; a++) {
                BtY[a * C + c] += bi[a];
                for (int b = a; b < K; b++) BtB[a * K + b] += bi[a] * bi[b];
            }
        }
        for (int a = 0; a < K; a++) {
            BtB[a * K + a] += lambda;
            for (int b = 0; b < a; b++) BtB[a * K + b] = BtB[b * K + a];
        }
        memcpy(W, BtY, (size_t)K * C * sizeof *W);
        if (LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', K, C, BtB, K, W, C) != 0) {
            rc = dh_seterr(e, DH_EFORMAT, "G-step system is singular (raise --lambda)");
            free(BtY);
            goto out;
        }
        /* F-step: P = G^-1 Phi^T B; F = Phi P */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)M1, K, (int)n, 1.0f, Phi, (int)M1, B, K, 0.0f, PtB,
                    K);
        for (int64_t i = 0; i < M1 * K; i++) Pd[i] = PtB[i];
        LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'U', (int)M1, K, G, (int)M1, Pd, K);
        for (int64_t i = 0; i < M1 * K; i++) Pf[i] = (float)Pd[i];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, K, (int)M1, 1.0f, Phi, (int)M1, Pf, K, 0.0f, F,
                    K);
        /* B-step: Q = Y W^T + nu F; DCC over bits */
        for (int64_t i = 0; i < n; i++) {
            int c = cls[idx[i]];
            for (int k = 0; k < K; k++) Q[i * K + k] = (float)(W[k * C + c] + nu * F[i * K + k]);
        }
        /* WW = W W^T (K, K) */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, K, K, C, 1.0, W, C, W, C, 0.0, WW, K);
        for (int sweep = 0; sweep < 10; sweep++) {
            int64_t changed = 0;
            for (int k = 0; k < K; k++)
                for (int64_t i = 0; i < n; i++) {
                    float *bi = B + i * K;
                    double s = Q[i * K + k];
                    for (int j = 0; j < K; j++)
                        if (j != k) s -= bi[j] * WW[j * K + k];
                    float nb = s >= 0 ? 1.0f : -1.0f;
                    if (nb != bi[k]) {
                        bi[k] = nb;
                        changed++;
                    }
                }
            sweeps_total++;
            if (changed == 0) break;
        }
    }
    free(BtY);
    /* final F-step so that the hash functions fit the final B */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)M1, K, (int)n, 1.0f, Phi, (int)M1, B, K, 0.0f, PtB, K);
    for (int64_t i = 0; i < M1 * K; i++) Pd[i] = PtB[i];
    LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'U', (int)M1, K, G, (int)M1, Pd, K);
    for (int k = 0; k < K; k++) {
        for (int64_t j = 0; j < M; j++) Pout[(int64_t)k * M + j] = (float)Pd[j * K + k];
        bout[k] = (float)Pd[M * K + k];
    }
    hl_note(opts, "sdh: %lld anchors, %lld samples, %d classes, gamma %.4g, %d B-step sweeps", (long long)M,
            (long long)n, C, gamma, sweeps_total);
    if ((rc = dh_hash_model_begin(out, "sdh", "rbf", K, D, e))) goto out;
    if ((rc = hl_model_set_rbf(out, anchors, (int)M, D, gamma, NULL, Pout, bout, K, e))) goto out;
    rc = DH_OK;
out:
    free(anchors);
    free(zs);
    free(Phi);
    free(B);
    free(F);
    free(Q);
    free(Pf);
    free(PtB);
    free(Pout);
    free(bout);
    free(kb);
    free(idx);
    free(cls);
    free(G);
    free(Pd);
    free(BtB);
    free(W);
    free(WW);
    return rc;
}
