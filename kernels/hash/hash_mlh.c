/* hash_mlh.c — minimal loss hashing (Norouzi & Fleet, ICML 2011).
 * Linear hash b(x) = sign(W [x; 1]) on centred features scaled to unit mean
 * norm. For a pair (x, x') with s = 1 (same class) or 0, the hinge loss on
 * the Hamming distance m is
 *   l(m, 1) = max(m - rho + 1, 0),   l(m, 0) = lambda max(rho - m + 1, 0);
 * its convex-concave upper bound is minimised by stochastic gradient descent
 * with loss-adjusted inference:
 *   (g, g') = argmax_{g,g'} l(|g - g'|_H, s) + g^T W x + g'^T W x'
 * (exact in O(K log K): choose how many bits differ, cheapest first), and
 *   W <- W - eta [ (g - b(x)) x^T + (g' - b(x')) x'^T ] / batch - eta wd W
 * with momentum 0.9. Defaults: rho = max(1, round(K/4)) (the paper tunes rho
 * on validation data), lambda = 0.5, eta = 1 (--lr; chosen among 0.01, 0.1, 1, 3
 * on Fashion-MNIST pixels at 24 bits), wd = 1e-4, batches of
 * 100 pairs (--batch), half of them positive (the original draws pairs from
 * neighbour lists), `iterations` = 5000 batches (or --pairs P: P/batch); W starts as unit-norm
 * random rows (LSH). Params: rho, loss_lambda, wd, momentum, pos_fraction.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include "hash_linalg.h"

static int cmp_bit(const void *a, const void *b) {
    const mlh_bit *x = a, *y = b;
    if (x->c != y->c) return x->c < y->c ? -1 : 1;
    return x->k - y->k;
}

/* Loss-adjusted inference for projections a, a2 (K); writes g, g2 in {-1,+1}. */
void hl_mlh_infer(const double *a, const double *a2, int K, int sim, int rho, double lam, double *g, double *g2,
                  mlh_bit *tmp) {
    double base = 0;
    for (int k = 0; k < K; k++) {
        double agree = fabs(a[k] + a2[k]), differ = fabs(a[k] - a2[k]);
        base += agree;
        tmp[k].c = agree - differ; /* score lost by making bit k differ */
        tmp[k].k = k;
    }
    qsort(tmp, (size_t)K, sizeof *tmp, cmp_bit);
    double best = -1e300, cum = 0;
    int bm = 0;
    for (int m = 0; m <= K; m++) {
        if (m > 0) cum += tmp[m - 1].c;
        double loss = sim ? (m - rho + 1 > 0 ? m - rho + 1 : 0) : lam * (rho - m + 1 > 0 ? rho - m + 1 : 0);
        double sc = base - cum + loss;
        if (sc > best) {
            best = sc;
            bm = m;
        }
    }
    for (int t = 0; t < K; t++) {
        int k = tmp[t].k;
        if (t < bm) { /* differ */
            double s = a[k] - a2[k] >= 0 ? 1 : -1;
            g[k] = s;
            g2[k] = -s;
        } else {
            double s = a[k] + a2[k] >= 0 ? 1 : -1;
            g[k] = s;
            g2[k] = s;
        }
    }
}

int dh_fit_mlh(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts, dhs_model *out,
               dh_err *e) {
    int rc;
    int64_t iters, batch, rho;
    double lr, lam, wd, mom, posf;
    if ((rc = hl_check_input("mlh", N, D, K, labels, 1, 2, e))) return rc;
    if ((rc = hl_opt_int(opts, opts ? opts->iterations : 0, "iterations", 5000, 0, 100000000, &iters, e))) return rc;
    if ((rc = hl_opt_int(opts, opts ? opts->batch : 0, "batch", 100, 1, 100000, &batch, e))) return rc;
    if (opts && opts->pairs > 0) { /* --pairs: pairs in all, within the --iterations bound */
        iters = opts->pairs / batch + (opts->pairs % batch != 0);
        if (iters > 100000000)
            return dh_seterr(e, DH_EINVAL, "pairs: %lld is out of range 1..%lld (batch %lld)", (long long)opts->pairs,
                             (long long)100000000 * batch, (long long)batch);
    }
    if ((rc = hl_opt_int(opts, 0, "rho", K / 4 > 1 ? (K + 2) / 4 : 1, 1, K, &rho, e))) return rc;
    if ((rc = hl_opt_double(opts, opts ? opts->lr : 0, "lr", 1.0, 0, 1e6, &lr, e))) return rc;
    if ((rc = hl_opt_double(opts, 0, "loss_lambda", 0.5, 0, 1e6, &lam, e))) return rc;
    if ((rc = hl_opt_double(opts, 0, "wd", 1e-4, 0, 1e6, &wd, e))) return rc;
    if ((rc = hl_opt_double(opts, 0, "momentum", 0.9, 0, 0.9999, &mom, e))) return rc;
    if ((rc = hl_opt_double(opts, 0, "pos_fraction", 0.5, 0, 1, &posf, e))) return rc;
    if ((rc = hl_check_finite("mlh", z, N, D, e))) return rc;

    const int D1 = D + 1;
    hl_rng r;
    hl_rng_seed(&r, opts ? opts->seed : 1);
    int32_t *cls = dh_malloc(e, (size_t)N, sizeof *cls);
    int64_t *cnt = NULL, *start = NULL, *members = dh_malloc(e, (size_t)N, sizeof *members);
    double *mean = dh_malloc(e, (size_t)D, sizeof *mean), *W = dh_malloc(e, (size_t)K * D1, sizeof *W),
           *V = dh_calloc(e, (size_t)K * D1, sizeof *V), *G = dh_malloc(e, (size_t)K * D1, sizeof *G),
           *X = dh_malloc(e, (size_t)(2 * batch) * D1, sizeof *X),
           *A = dh_malloc(e, (size_t)(2 * batch) * K, sizeof *A), *g = dh_malloc(e, (size_t)K, sizeof *g),
           *g2 = dh_malloc(e, (size_t)K, sizeof *g2);
    float *Wf = dh_malloc(e, (size_t)K * D, sizeof *Wf), *bf = dh_malloc(e, (size_t)K, sizeof *bf),
          *mf = dh_malloc(e, (size_t)D, sizeof *mf);
    mlh_bit *tmp = dh_malloc(e, (size_t)K, sizeof *tmp);
    int8_t *psim = dh_malloc(e, (size_t)batch, sizeof *psim);
    if (!cls || !members || !mean || !W || !V || !G || !X || !A || !psim || !g || !g2 || !Wf || !bf || !mf || !tmp) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    int C = hl_label_classes(labels, N, cls, e);
    if (C < 0) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    cnt = dh_calloc(e, (size_t)C, sizeof *cnt);
    start = dh_calloc(e, (size_t)C + 1, sizeof *start);
    if (!cnt || !start) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    for (int64_t i = 0; i < N; i++) cnt[cls[i]]++;
    for (int c = 0; c < C; c++) start[c + 1] = start[c] + cnt[c];
    for (int c = 0; c < C; c++) cnt[c] = 0;
    for (int64_t i = 0; i < N; i++) members[start[cls[i]] + cnt[cls[i]]++] = i;
    int has_pos = 0;
    for (int c = 0; c < C; c++) has_pos |= cnt[c] >= 2;
    if (!has_pos) posf = 0;
    if (C < 2) posf = 1;
    if (!has_pos && C < 2) {
        rc = dh_seterr(e, DH_EINVAL, "no pairs to learn from");
        goto out;
    }
    hl_mean(z, N, D, mean);
    double sn = 0;
    for (int64_t i = 0; i < N; i++) {
        double t = 0;
        for (int d = 0; d < D; d++) {
            double v = z[i * D + d] - mean[d];
            t += v * v;
        }
        sn += sqrt(t);
    }
    double scale = sn > 0 ? N / sn : 1.0; /* x = (z - mean) * scale has unit mean norm */
    for (int k = 0; k < K; k++) {
        double t = 0;
        for (int d = 0; d < D; d++) {
            W[(int64_t)k * D1 + d] = hl_rng_normal(&r);
            t += W[(int64_t)k * D1 + d] * W[(int64_t)k * D1 + d];
        }
        for (int d = 0; d < D; d++) W[(int64_t)k * D1 + d] /= sqrt(t);
        W[(int64_t)k * D1 + D] = 0;
    }
    double loss_avg = 0;
    int blas_threads = hl_blas_single();
    for (int64_t it = 0; it < iters; it++) {
        double loss_b = 0;
        /* rows 2p, 2p+1 of X (2B, D1) are the pair's points */
        for (int64_t p = 0; p < batch; p++) {
            int sim = hl_rng_uniform(&r) < posf;
            int64_t i, j;
            if (sim) {
                int c;
                do {
                    i = (int64_t)hl_rng_below(&r, (uint64_t)N);
                    c = cls[i];
                } while (cnt[c] < 2);
                do j = members[start[c] + (int64_t)hl_rng_below(&r, (uint64_t)cnt[c])];
                while (j == i);
            } else {
                i = (int64_t)hl_rng_below(&r, (uint64_t)N);
                do j = (int64_t)hl_rng_below(&r, (uint64_t)N);
                while (cls[j] == cls[i]);
            }
            psim[p] = sim;
            double *xa = X + (2 * p) * D1, *xb = X + (2 * p + 1) * D1;
            for (int d = 0; d < D; d++) {
                xa[d] = (z[i * D + d] - mean[d]) * scale;
                xb[d] = (z[j * D + d] - mean[d]) * scale;
            }
            xa[D] = 1;
            xb[D] = 1;
        }
        /* A (2B, K) = X W^T */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(2 * batch), K, D1, 1.0, X, D1, W, D1, 0.0, A, K);
        for (int64_t p = 0; p < batch; p++) {
            double *aa = A + (2 * p) * K, *ab = A + (2 * p + 1) * K;
            hl_mlh_infer(aa, ab, K, psim[p], (int)rho, lam, g, g2, tmp);
            int m = 0;
            for (int k = 0; k < K; k++) {
                double h = aa[k] >= 0 ? 1 : -1, h2 = ab[k] >= 0 ? 1 : -1;
                m += h != h2;
                aa[k] = g[k] - h;
                ab[k] = g2[k] - h2; /* A now holds (g - b(x)) */
            }
            loss_b += psim[p] ? (m - rho + 1 > 0 ? m - rho + 1 : 0) : lam * (rho - m + 1 > 0 ? rho - m + 1 : 0);
        }
        /* G (K, D1) = A^T X */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, D1, (int)(2 * batch), 1.0, A, K, X, D1, 0.0, G, D1);
        loss_avg = it == 0 ? loss_b / batch : 0.99 * loss_avg + 0.01 * loss_b / batch;
        for (int64_t q = 0; q < (int64_t)K * D1; q++) {
            V[q] = mom * V[q] - lr * (G[q] / batch + wd * W[q]);
            W[q] += V[q];
        }
        if ((it + 1) % 1000 == 0)
            hl_note(opts, "mlh: batch %lld: pair loss (running mean) %.4f", (long long)it + 1, loss_avg);
    }
    hl_blas_restore(blas_threads);
    /* u = W [ (z - mean) scale ; 1 ] = (W scale)(z - mean) + W_:,D */
    for (int k = 0; k < K; k++) {
        for (int d = 0; d < D; d++) Wf[(int64_t)k * D + d] = (float)(W[(int64_t)k * D1 + d] * scale);
        bf[k] = (float)W[(int64_t)k * D1 + D];
    }
    for (int d = 0; d < D; d++) mf[d] = (float)mean[d];
    if ((rc = dh_hash_model_begin(out, "mlh", "linear", K, D, e))) goto out;
    if ((rc = dh_hash_model_set_linear(out, "", Wf, bf, mf, K, D, e))) goto out;
    dhs_meta_set_int(out->meta, "rho", rho);
    dhs_meta_set_int(out->meta, "iterations", iters);
    rc = DH_OK;
out:
    free(cls);
    free(cnt);
    free(start);
    free(members);
    free(mean);
    free(W);
    free(V);
    free(G);
    free(X);
    free(A);
    free(psim);
    free(g);
    free(g2);
    free(Wf);
    free(bf);
    free(mf);
    free(tmp);
    return rc;
}
