/* hash_ldah.c — LDAHash (Strecha, Bronstein, Bronstein & Fua, TPAMI 2012).
 * Projections: with Sigma_P the covariance of differences x - x' over pairs
 * of the same class and Sigma_N over pairs of different classes (both in
 * closed form from the class scatters, i.e. over all pairs),
 *   variant "lda" (default): the K smallest generalised eigenvectors of
 *       Sigma_P p = l Sigma_N p  (minimise E|p.(x-x')|^2 over positives
 *       relative to negatives; Sigma_N regularised by ridge 1e-4 tr/D);
 *   variant "dif": the K smallest eigenvectors of Sigma_P - alpha Sigma_N.
 * Thresholds: for each bit, t_k minimises FN(t) + FP(t), the rates of
 * positive pairs split and negative pairs kept together by the bit, over
 * `pairs` (default 10000) random positive and as many negative pairs.
 * Bit k = [p_k . (z - mean) - t_k > 0]. K <= D. Params: variant, alpha, ridge.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "hash_linalg.h"

typedef struct {
    float v;
    int8_t d;
    int8_t neg;
} ev_t;

static int cmp_ev(const void *a, const void *b) {
    const ev_t *x = a, *y = b;
    return (x->v > y->v) - (x->v < y->v);
}

/* Best threshold for values y over pairs (pi[i], pj[i]), the first np positive. */
static float best_threshold(const float *y, int K, const int64_t *pi, const int64_t *pj, int64_t np, int64_t nn,
                            ev_t *ev) {
    int64_t m = 0;
    for (int64_t i = 0; i < np + nn; i++) {
        float a = y[pi[i] * K], b = y[pj[i] * K];
        float lo = a < b ? a : b, hi = a < b ? b : a;
        if (lo == hi) continue; /* never split by any threshold */
        int8_t neg = i >= np;
        ev[m].v = lo;
        ev[m].d = 1;
        ev[m].neg = neg;
        m++;
        ev[m].v = hi;
        ev[m].d = -1;
        ev[m].neg = neg;
        m++;
    }
    if (m == 0) return 0;
    qsort(ev, (size_t)m, sizeof *ev, cmp_ev);
    /* score(t) = split_neg/nn - split_pos/np, maximised */
    int64_t sp = 0, sn = 0;
    double best = -1e300;
    float bt = ev[0].v;
    for (int64_t i = 0; i < m;) {
        float v = ev[i].v;
        for (; i < m && ev[i].v == v; i++) {
            if (ev[i].neg)
                sn += ev[i].d;
            else
                sp += ev[i].d;
        }
        double s = (nn ? (double)sn / nn : 0) - (np ? (double)sp / np : 0);
        if (s > best) {
            best = s;
            bt = v;
        }
    }
    return bt;
}

int dh_fit_ldah(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts,
                dhs_model *out, dh_err *e) {
    int rc;
    int64_t npairs;
    double alpha, ridge;
    const char *variant = opts ? dh_hash_param(opts, "variant") : NULL;
    if (!variant) variant = "lda";
    if (strcmp(variant, "lda") != 0 && strcmp(variant, "dif") != 0)
        return dh_seterr(e, DH_EINVAL, "variant must be lda or dif, not '%s'", variant);
    if ((rc = hl_check_input("ldah", N, D, K, labels, 1, (int64_t)K + 1, e))) return rc;
    if (K > D)
        return dh_seterr(e, DH_EINVAL, "%d bits need at least %d feature dimensions; the features have %d", K, K, D);
    if ((rc = hl_opt_int(opts, opts ? opts->pairs : 0, "pairs", 10000, 1, 10000000, &npairs, e))) return rc;
    if ((rc = hl_opt_double(opts, 0, "alpha", 1.0, 0, 1e30, &alpha, e))) return rc;
    if ((rc = hl_opt_double(opts, 0, "ridge", 1e-4, 0, 1e30, &ridge, e))) return rc;
    if ((rc = hl_check_finite("ldah", z, N, D, e))) return rc;

    int32_t *cls = dh_malloc(e, (size_t)N, sizeof *cls);
    double *mean = dh_malloc(e, (size_t)D, sizeof *mean), *SP = dh_malloc(e, (size_t)D * D, sizeof *SP),
           *ST = dh_malloc(e, (size_t)D * D, sizeof *ST), *V = dh_malloc(e, (size_t)D * K, sizeof *V),
           *w = dh_malloc(e, (size_t)N, sizeof *w), *cm = NULL;
    float *W = dh_malloc(e, (size_t)K * D, sizeof *W), *mf = dh_malloc(e, (size_t)D, sizeof *mf),
          *b = dh_malloc(e, (size_t)K, sizeof *b), *y = dh_malloc(e, (size_t)N * K, sizeof *y),
          *ycol = dh_malloc(e, (size_t)N, sizeof *ycol);
    int64_t *cnt = NULL, *start = NULL, *members = NULL;
    int64_t *pi = dh_malloc(e, (size_t)npairs * 2, sizeof *pi), *pj = dh_malloc(e, (size_t)npairs * 2, sizeof *pj);
    ev_t *ev = dh_malloc(e, (size_t)npairs * 4, sizeof *ev);
    if (!cls || !mean || !SP || !ST || !V || !w || !W || !mf || !b || !y || !ycol || !pi || !pj || !ev) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    int C = hl_label_classes(labels, N, cls, e);
    if (C < 0) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    if (C < 2) {
        rc = dh_seterr(e, DH_EFORMAT, "needs at least 2 classes; the labels have %d", C);
        goto out;
    }
    cm = dh_calloc(e, (size_t)C * D, sizeof *cm);
    cnt = dh_calloc(e, (size_t)C, sizeof *cnt);
    start = dh_calloc(e, (size_t)C + 1, sizeof *start);
    members = dh_malloc(e, (size_t)N, sizeof *members);
    if (!cm || !cnt || !start || !members) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    for (int64_t i = 0; i < N; i++) {
        cnt[cls[i]]++;
        for (int d = 0; d < D; d++) cm[(int64_t)cls[i] * D + d] += z[i * D + d];
    }
    for (int c = 0; c < C; c++)
        for (int d = 0; d < D; d++) cm[(int64_t)c * D + d] /= (double)cnt[c];
    /* sum_c 2 n_c S_c  = 2 N * scatter weighted by n_c (hl_scatter divides by N) */
    for (int64_t i = 0; i < N; i++) w[i] = (double)cnt[cls[i]];
    if ((rc = hl_scatter(z, N, D, cm, cls, w, SP, e))) goto out;
    hl_mean(z, N, D, mean);
    if ((rc = hl_scatter(z, N, D, mean, NULL, NULL, ST, e))) goto out;
    double npos = 0, nsq = 0;
    for (int c = 0; c < C; c++) {
        npos += (double)cnt[c] * (cnt[c] - 1);
        nsq += (double)cnt[c] * cnt[c];
    }
    double nneg = (double)N * N - nsq;
    if (npos <= 0) {
        rc = dh_seterr(e, DH_EFORMAT, "no two samples share a label");
        goto out;
    }
    /* SP = sum 2 n_c S_c / npos ; SN (in ST) = (2 N S_T - sum 2 n_c S_c) / nneg */
    for (int64_t i = 0; i < (int64_t)D * D; i++) {
        double within = 2.0 * N * SP[i];    /* sum_c 2 n_c S_c */
        double total = 2.0 * N * N * ST[i]; /* 2 N * (N * Cov) */
        SP[i] = within / npos;
        ST[i] = (total - within) / nneg;
    }
    if (strcmp(variant, "lda") == 0) {
        if ((rc = hl_gen_eig(D, SP, ST, ridge, K, 0, V, NULL, e))) goto out;
        /* normalise each projection to unit length (thresholds are per bit) */
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int d = 0; d < D; d++) s += V[(int64_t)d * K + k] * V[(int64_t)d * K + k];
            s = s > 0 ? 1.0 / sqrt(s) : 1.0;
            for (int d = 0; d < D; d++) W[(int64_t)k * D + d] = (float)(V[(int64_t)d * K + k] * s);
        }
    } else {
        double *Z = dh_malloc(e, (size_t)D * D, sizeof *Z), *ew = dh_malloc(e, (size_t)D, sizeof *ew);
        if (!Z || !ew) {
            free(Z);
            free(ew);
            rc = e ? e->code : DH_ENOMEM;
            goto out;
        }
        for (int64_t i = 0; i < (int64_t)D * D; i++) SP[i] -= alpha * ST[i];
        rc = hl_sym_eig(D, SP, ew, Z, e);
        for (int k = 0; k < K && !rc; k++)
            for (int d = 0; d < D; d++) W[(int64_t)k * D + d] = (float)Z[(int64_t)d * D + k];
        free(Z);
        free(ew);
        if (rc) goto out;
    }
    for (int d = 0; d < D; d++) mf[d] = (float)mean[d];
    /* pairs: npairs positive then npairs negative */
    for (int c = 0; c < C; c++) start[c + 1] = start[c] + cnt[c];
    for (int c = 0; c < C; c++) cnt[c] = 0;
    for (int64_t i = 0; i < N; i++) members[start[cls[i]] + cnt[cls[i]]++] = i;
    hl_rng r;
    hl_rng_seed(&r, opts ? opts->seed : 1);
    int64_t np = 0, nn = 0, tries = 0;
    while (np < npairs && tries++ < 100 * npairs) {
        int64_t i = (int64_t)hl_rng_below(&r, (uint64_t)N);
        int c = cls[i];
        if (cnt[c] < 2) continue;
        int64_t j;
        do j = members[start[c] + (int64_t)hl_rng_below(&r, (uint64_t)cnt[c])];
        while (j == i);
        pi[np] = i;
        pj[np] = j;
        np++;
    }
    for (int64_t t = 0; t < npairs; t++) {
        int64_t i = (int64_t)hl_rng_below(&r, (uint64_t)N), j;
        do j = (int64_t)hl_rng_below(&r, (uint64_t)N);
        while (cls[j] == cls[i]);
        pi[np + t] = i;
        pj[np + t] = j;
    }
    nn = npairs;
    for (int64_t i0 = 0; i0 < N; i0 += 1024) {
        int64_t nb = N - i0 < 1024 ? N - i0 : 1024;
        dh_linear_project(W, NULL, mf, z + i0 * D, nb, D, K, y + i0 * K);
    }
    for (int k = 0; k < K; k++) b[k] = -best_threshold(y + k, K, pi, pj, np, nn, ev);
    if ((rc = dh_hash_model_begin(out, "ldah", "linear", K, D, e))) goto out;
    if ((rc = dh_hash_model_set_linear(out, "", W, b, mf, K, D, e))) goto out;
    dhs_meta_set_str(out->meta, "variant", variant);
    dhs_meta_set_int(out->meta, "pairs", npairs);
    rc = DH_OK;
out:
    free(cls);
    free(mean);
    free(SP);
    free(ST);
    free(V);
    free(w);
    free(cm);
    free(W);
    free(mf);
    free(b);
    free(y);
    free(ycol);
    free(cnt);
    free(start);
    free(members);
    free(pi);
    free(pj);
    free(ev);
    return rc;
}
