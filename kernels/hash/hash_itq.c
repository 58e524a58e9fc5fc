/* hash_itq.c — iterative quantisation (Gong, Lazebnik, Gordo & Perronnin,
 * TPAMI 2013), the PCA-ITQ variant: V = (z - mean) P^T with P the top K
 * principal directions, then a rotation R (K, K) found by alternating
 *   B = sign(V R)                      (fixed R)
 *   C = B^T V = S W Sh^T (SVD), R = Sh S^T   (fixed B: orthogonal Procrustes)
 * for `iterations` rounds (default 50 as in the paper), starting from a
 * random orthogonal R (seeded). The quantisation loss |B - V R|_F^2 never
 * increases. The hash is linear: W = R^T P.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include "hash_linalg.h"

int hl_itq_rotate(const float *V, int64_t N, int K, int iters, hl_rng *r, double *R, double *loss, dh_err *e) {
    int rc;
    float *Rf = dh_malloc(e, (size_t)K * K, sizeof *Rf), *Z = dh_malloc(e, (size_t)N * K, sizeof *Z),
          *Cf = dh_malloc(e, (size_t)K * K, sizeof *Cf);
    double *C = dh_malloc(e, (size_t)K * K, sizeof *C), *U = dh_malloc(e, (size_t)K * K, sizeof *U),
           *s = dh_malloc(e, (size_t)K, sizeof *s), *Vt = dh_malloc(e, (size_t)K * K, sizeof *Vt);
    if (!Rf || !Z || !Cf || !C || !U || !s || !Vt) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    if ((rc = hl_random_rotation(r, K, R, e))) goto out;
    for (int t = 0; t < iters; t++) {
        for (int i = 0; i < K * K; i++) Rf[i] = (float)R[i];
        /* Z = V R, then B = sign(Z) stored in Z; loss = |B - V R|^2 */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, K, K, 1.0f, V, K, Rf, K, 0.0f, Z, K);
        double l = 0;
        for (int64_t i = 0; i < N * K; i++) {
            float b = Z[i] >= 0 ? 1.0f : -1.0f;
            double d = b - Z[i];
            l += d * d;
            Z[i] = b;
        }
        if (loss) loss[t] = l;
        /* C = B^T V (K, K) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, K, (int)N, 1.0f, Z, K, V, K, 0.0f, Cf, K);
        for (int i = 0; i < K * K; i++) C[i] = Cf[i];
        if ((rc = hl_svd(K, K, C, U, s, Vt, e))) goto out;
        /* C = U S Vt; R = Vt^T U^T */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasTrans, K, K, K, 1.0, Vt, K, U, K, 0.0, R, K);
    }
    rc = DH_OK;
out:
    free(Rf);
    free(Z);
    free(Cf);
    free(C);
    free(U);
    free(s);
    free(Vt);
    return rc;
}

int dh_fit_itq(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts, dhs_model *out,
               dh_err *e) {
    int rc;
    int64_t iters;
    if ((rc = hl_check_input("itq", N, D, K, labels, 0, (int64_t)K + 1, e))) return rc;
    if (K > D)
        return dh_seterr(e, DH_EINVAL, "%d bits need at least %d feature dimensions; the features have %d", K, K, D);
    if ((rc = hl_opt_int(opts, opts ? opts->iterations : 0, "iterations", 50, 0, 100000, &iters, e))) return rc;
    if ((rc = hl_check_finite("itq", z, N, D, e))) return rc;
    double *mean = dh_malloc(e, (size_t)D, sizeof *mean), *P = dh_malloc(e, (size_t)K * D, sizeof *P),
           *R = dh_malloc(e, (size_t)K * K, sizeof *R), *loss = dh_malloc(e, (size_t)(iters ? iters : 1), sizeof *loss);
    float *W = dh_malloc(e, (size_t)K * D, sizeof *W), *mf = dh_malloc(e, (size_t)D, sizeof *mf),
          *Pf = dh_malloc(e, (size_t)K * D, sizeof *Pf), *V = dh_malloc(e, (size_t)N * K, sizeof *V);
    if (!mean || !P || !R || !loss || !W || !mf || !Pf || !V) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    if ((rc = hl_pca(z, N, D, K, mean, P, NULL, e))) goto out;
    for (int64_t i = 0; i < (int64_t)K * D; i++) Pf[i] = (float)P[i];
    for (int d = 0; d < D; d++) mf[d] = (float)mean[d];
    /* V = (z - mean) P^T, block by block */
    for (int64_t i0 = 0; i0 < N; i0 += 1024) {
        int64_t nb = N - i0 < 1024 ? N - i0 : 1024;
        dh_linear_project(Pf, NULL, mf, z + i0 * D, nb, D, K, V + i0 * K);
    }
    hl_rng r;
    hl_rng_seed(&r, opts ? opts->seed : 1);
    if ((rc = hl_itq_rotate(V, N, K, (int)iters, &r, R, loss, e))) goto out;
    /* W = R^T P */
    double *Wd = P; /* reuse: compute into a temporary */
    double *T = dh_malloc(e, (size_t)K * D, sizeof *T);
    if (!T) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, D, K, 1.0, R, K, Wd, D, 0.0, T, D);
    for (int64_t i = 0; i < (int64_t)K * D; i++) W[i] = (float)T[i];
    free(T);
    if (iters > 0)
        hl_note(opts, "itq: quantisation loss %.6g -> %.6g over %lld iterations", loss[0], loss[iters - 1],
                (long long)iters);
    if ((rc = dh_hash_model_begin(out, "itq", "linear", K, D, e))) goto out;
    if ((rc = dh_hash_model_set_linear(out, "", W, NULL, mf, K, D, e))) goto out;
    dhs_meta_set_int(out->meta, "iterations", iters);
    if (iters > 0) dhs_meta_set_float(out->meta, "quantisation_loss", loss[iters - 1] / (double)N);
    rc = DH_OK;
out:
    free(mean);
    free(P);
    free(R);
    free(loss);
    free(W);
    free(mf);
    free(Pf);
    free(V);
    return rc;
}
