/* hash_sh.c — spectral hashing (Weiss, Torralba & Fergus, NIPS 2008), as in
 * the authors' trainSH/compressSH: PCA to C = min(K, D) directions (no
 * centring: the box offsets absorb it), a uniform distribution fitted to
 * the box [mn_c, mx_c] of each projected dimension, and the K analytical
 * one-dimensional eigenfunctions with the smallest eigenvalues
 * (omega = m pi / (mx_c - mn_c), m = 1, 2, ..., excluding the constant one):
 *   u_k = prod_c sin(pi/2 + omega[k,c] (pc_c . z - mn_c)),   bit = [u_k > 0].
 * Transform "sh": tensors pc (C, D), mn (C), omega (K, C).
 */
#include <math.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>
#include "hash_linalg.h"

typedef struct {
    double ev;
    int dim, mode;
} sh_mode;

static int cmp_mode(const void *a, const void *b) {
    const sh_mode *x = a, *y = b;
    if (x->ev != y->ev) return x->ev < y->ev ? -1 : 1;
    /* stable order as in the reference: by dimension, then mode */
    if (x->dim != y->dim) return x->dim - y->dim;
    return x->mode - y->mode;
}

int dh_fit_sh(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts, dhs_model *out,
              dh_err *e) {
    int rc;
    if ((rc = hl_check_input("sh", N, D, K, labels, 0, 2, e))) return rc;
    if ((rc = hl_check_finite("sh", z, N, D, e))) return rc;
    int C = K < D ? K : D;
    double *mean = dh_malloc(e, (size_t)D, sizeof *mean), *P = dh_malloc(e, (size_t)C * D, sizeof *P),
           *mn = dh_malloc(e, (size_t)C, sizeof *mn), *mx = dh_malloc(e, (size_t)C, sizeof *mx);
    float *pcf = dh_malloc(e, (size_t)C * D, sizeof *pcf), *mnf = dh_malloc(e, (size_t)C, sizeof *mnf),
          *om = dh_calloc(e, (size_t)K * C, sizeof *om), *proj = dh_malloc(e, (size_t)1024 * C, sizeof *proj);
    sh_mode *modes = NULL;
    if (!mean || !P || !mn || !mx || !pcf || !mnf || !om || !proj) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    if ((rc = hl_pca(z, N, D, C, mean, P, NULL, e))) goto out;
    for (int64_t i = 0; i < (int64_t)C * D; i++) pcf[i] = (float)P[i];
    for (int c = 0; c < C; c++) {
        mn[c] = INFINITY;
        mx[c] = -INFINITY;
    }
    for (int64_t i0 = 0; i0 < N; i0 += 1024) {
        int64_t nb = N - i0 < 1024 ? N - i0 : 1024;
        dh_linear_project(pcf, NULL, NULL, z + i0 * D, nb, D, C, proj);
        for (int64_t i = 0; i < nb; i++)
            for (int c = 0; c < C; c++) {
                double v = proj[i * C + c];
                if (v < mn[c]) mn[c] = v;
                if (v > mx[c]) mx[c] = v;
            }
    }
    double Rmax = 0;
    for (int c = 0; c < C; c++) {
        double s = fabs(mn[c]) + fabs(mx[c]) + 1.0;
        mn[c] -= DBL_EPSILON * s;
        mx[c] += DBL_EPSILON * s;
        if (mx[c] - mn[c] > Rmax) Rmax = mx[c] - mn[c];
    }
    if (!(Rmax > 0)) {
        rc = dh_seterr(e, DH_EFORMAT, "the features are all equal");
        goto out;
    }
    /* enumerate modes 1..maxMode_c-1 of each dimension */
    int64_t nmodes = 0;
    for (int c = 0; c < C; c++) nmodes += (int64_t)ceil((K + 1) * (mx[c] - mn[c]) / Rmax);
    modes = dh_malloc(e, (size_t)nmodes + 1, sizeof *modes);
    if (!modes) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    int64_t nm = 0;
    for (int c = 0; c < C; c++) {
        double R = mx[c] - mn[c];
        int maxmode = (int)ceil((K + 1) * R / Rmax);
        for (int m = 1; m < maxmode; m++) {
            double w = m * M_PI / R;
            modes[nm].ev = w * w;
            modes[nm].dim = c;
            modes[nm].mode = m;
            nm++;
        }
    }
    if (nm < K) {
        rc = dh_seterr(e, DH_EFORMAT, "only %lld eigenfunctions for %d bits", (long long)nm, K);
        goto out;
    }
    qsort(modes, (size_t)nm, sizeof *modes, cmp_mode);
    for (int k = 0; k < K; k++) {
        int c = modes[k].dim;
        om[(int64_t)k * C + c] = (float)(modes[k].mode * M_PI / (mx[c] - mn[c]));
    }
    for (int c = 0; c < C; c++) mnf[c] = (float)mn[c];
    if ((rc = dh_hash_model_begin(out, "sh", "sh", K, D, e))) goto out;
    int64_t s_pc[2] = { C, D }, s_mn[1] = { C }, s_om[2] = { K, C };
    if (!dhs_model_add(out, "pc", 2, s_pc, pcf, e) || !dhs_model_add(out, "mn", 1, s_mn, mnf, e) ||
        !dhs_model_add(out, "omega", 2, s_om, om, e)) {
        rc = e && e->code ? e->code : DH_ENOMEM;
        goto out;
    }
    rc = DH_OK;
out:
    free(mean);
    free(P);
    free(mn);
    free(mx);
    free(pcf);
    free(mnf);
    free(om);
    free(proj);
    free(modes);
    return rc;
}

int dh_sh_project(const dhs_model *m, const char *prefix, const float *z, int64_t n, int D, int K, float *u,
                  dh_err *e) {
    char name[128];
    snprintf(name, sizeof name, "%spc", prefix ? prefix : "");
    const dhs_tensor *tpc = dhs_model_find(m, name);
    if (!tpc || tpc->ndim != 2 || tpc->shape[1] != D || tpc->shape[0] < 1 || tpc->shape[0] > D)
        return dh_seterr(e, DH_ESCHEMA, "sh hash model: tensor %s missing or not (C, %d)", name, D);
    int C = (int)tpc->shape[0];
    int64_t s_mn[1] = { C }, s_om[2] = { K, C };
    snprintf(name, sizeof name, "%smn", prefix ? prefix : "");
    const dhs_tensor *tmn = dhs_model_get(m, name, 1, s_mn, e);
    if (!tmn) return e ? e->code : DH_ESCHEMA;
    snprintf(name, sizeof name, "%somega", prefix ? prefix : "");
    const dhs_tensor *tom = dhs_model_get(m, name, 2, s_om, e);
    if (!tom) return e ? e->code : DH_ESCHEMA;
    const int64_t BS = 256;
    float *p = dh_malloc(e, (size_t)BS * C, sizeof *p);
    if (!p) return e ? e->code : DH_ENOMEM;
    for (int64_t i0 = 0; i0 < n; i0 += BS) {
        int64_t nb = n - i0 < BS ? n - i0 : BS;
        dh_linear_project(tpc->data, NULL, NULL, z + i0 * D, nb, D, C, p);
        for (int64_t i = 0; i < nb; i++)
            for (int c = 0; c < C; c++) p[i * C + c] -= tmn->data[c];
        for (int64_t i = 0; i < nb; i++)
            for (int k = 0; k < K; k++) {
                double v = 1;
                const float *w = tom->data + (int64_t)k * C;
                for (int c = 0; c < C; c++)
                    if (w[c] != 0) v *= cos((double)w[c] * p[i * C + c]); /* sin(pi/2 + x) */
                u[(i0 + i) * K + k] = (float)v;
            }
    }
    free(p);
    return DH_OK;
}
