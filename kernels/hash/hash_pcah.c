/* hash_pcah.c — PCA hashing: bit k = [p_k . (z - mean) > 0] with p_k the
 * k-th principal direction (eigenvectors of the covariance by dsyevr,
 * descending eigenvalue). K <= D; at least K+1 samples.
 */
#include <stdlib.h>
#include "hash_linalg.h"

int dh_fit_pcah(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts,
                dhs_model *out, dh_err *e) {
    int rc;
    if ((rc = hl_check_input("pcah", N, D, K, labels, 0, (int64_t)K + 1, e))) return rc;
    if (K > D)
        return dh_seterr(e, DH_EINVAL, "%d bits need at least %d feature dimensions; the features have %d", K, K, D);
    if ((rc = hl_check_finite("pcah", z, N, D, e))) return rc;
    double *mean = dh_malloc(e, (size_t)D, sizeof *mean), *P = dh_malloc(e, (size_t)K * D, sizeof *P);
    float *W = dh_malloc(e, (size_t)K * D, sizeof *W), *mf = dh_malloc(e, (size_t)D, sizeof *mf);
    if (!mean || !P || !W || !mf) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    if ((rc = hl_pca(z, N, D, K, mean, P, NULL, e))) goto out;
    for (int64_t i = 0; i < (int64_t)K * D; i++) W[i] = (float)P[i];
    for (int d = 0; d < D; d++) mf[d] = (float)mean[d];
    if ((rc = dh_hash_model_begin(out, "pcah", "linear", K, D, e))) goto out;
    rc = dh_hash_model_set_linear(out, "", W, NULL, mf, K, D, e);
out:
    free(mean);
    free(P);
    free(W);
    free(mf);
    return rc;
}
