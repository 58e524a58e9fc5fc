/* hash_lsh.c — locality-sensitive hashing by random hyperplanes
 * (Charikar 2002): bit k = [w_k . (z - mean) > 0] with w_k ~ N(0, I).
 * For two vectors at angle theta the probability that a bit agrees is
 * 1 - theta/pi. The data mean is subtracted first (param center=1, the
 * usual practice for non-negative CNN features); center=0 hashes z itself.
 */
#include <stdlib.h>
#include "hash_linalg.h"

int dh_fit_lsh(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts, dhs_model *out,
               dh_err *e) {
    int rc;
    int64_t center;
    if ((rc = hl_check_input("lsh", N, D, K, labels, 0, 1, e))) return rc;
    if ((rc = hl_opt_int(opts, 0, "center", 1, 0, 1, &center, e))) return rc;
    if ((rc = hl_check_finite("lsh", z, N, D, e))) return rc;
    float *W = dh_malloc(e, (size_t)K * D, sizeof *W), *mean = dh_calloc(e, (size_t)D, sizeof *mean);
    double *m = dh_malloc(e, (size_t)D, sizeof *m);
    if (!W || !mean || !m) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    hl_rng r;
    hl_rng_seed(&r, opts ? opts->seed : 1);
    for (int64_t i = 0; i < (int64_t)K * D; i++) W[i] = (float)hl_rng_normal(&r);
    if (center) {
        hl_mean(z, N, D, m);
        for (int d = 0; d < D; d++) mean[d] = (float)m[d];
    }
    if ((rc = dh_hash_model_begin(out, "lsh", "linear", K, D, e))) goto out;
    if ((rc = dh_hash_model_set_linear(out, "", W, NULL, center ? mean : NULL, K, D, e))) goto out;
    dhs_meta_set_int(out->meta, "center", center);
    rc = DH_OK;
out:
    free(W);
    free(mean);
    free(m);
    return rc;
}
