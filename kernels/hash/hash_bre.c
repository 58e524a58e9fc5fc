/* hash_bre.c — binary reconstructive embeddings (Kulis & Darrell, NIPS
 * 2009), supervised form: hash functions h_k(z) = [sum_q W_kq kappa(a_q, z) > 0]
 * over s kernel points a_q, trained so that the normalised Hamming distance
 * (1/K) |h(x_i) - h(x_j)|_1 reconstructs the target distance of every pair of
 * the n training points: 0 for the same class, 1 otherwise, minimising
 *   O(W) = sum_{i<j} ((1/K) H_ij - T_ij)^2
 * by coordinate descent on one W_kq at a time with a line search over the
 * points where a bit flips (the objective is piecewise constant in W_kq).
 * Choices (the originals' defaults where they are stated):
 *   samples n = 1000 training points (random), all n(n-1)/2 pairs among them;
 *   anchors s = 300 kernel points drawn from those n, shared by all bits;
 *   RBF kernel with the KSH width heuristic, centred by its mean over the n
 *     points (so that bits start balanced); W initialised N(0, 1);
 *   iterations = 3 sweeps over all (k, q);
 *   the line search is exact: it visits every breakpoint on both sides of
 *     the current value (param linesearch=L limits it to the nearest L) and
 *     moves to the middle of the best interval. Each flip's effect on the
 *     objective is one dot product with a per-bit matrix, so a coordinate
 *     costs O(n^2) and a sweep O(K s n^2).
 * Transform "rbf"; meta records the objective before and after training.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include "hash_linalg.h"

typedef struct {
    double d;
    int64_t i;
} bp_t;

static int cmp_bp(const void *a, const void *b) {
    const bp_t *x = a, *y = b;
    return (x->d > y->d) - (x->d < y->d);
}

double hl_bre_objective(const float *B, int64_t n, int K, const int32_t *cls) {
    double o = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            int h = 0;
            for (int k = 0; k < K; k++) h += (B[i * K + k] > 0) != (B[j * K + k] > 0);
            double r = (double)h / K - (cls[i] == cls[j] ? 0.0 : 1.0);
            o += r * r;
        }
    return o;
}

/* For one bit k, with the other bits fixed: A_ij = H'_ij / K - T_ij (H' the
 * Hamming distance without bit k) and P_ij = 2 A_ij / K + 1 / K^2 (P_ii = 0).
 * With c_i = +-1 the current bit k of point i, flipping point i changes the
 * objective by c_i sum_j c_j P_ij: one dot product. */
static double flip_gain(const float *P, const float *c, int64_t n, int64_t i) {
    const float *p = P + i * n;
    double g = 0;
    for (int64_t j = 0; j < n; j++) g += p[j] * c[j];
    return c[i] * g;
}

int dh_fit_bre(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts, dhs_model *out,
               dh_err *e) {
    int rc;
    int64_t n, s, sweeps, ls;
    double sigma;
    if ((rc = hl_check_input("bre", N, D, K, labels, 1, 2, e))) return rc;
    if ((rc = hl_opt_int(opts, opts ? opts->samples : 0, "samples", 1000, 2, 20000, &n, e))) return rc;
    if ((rc = hl_opt_int(opts, opts ? opts->anchors : 0, "anchors", 300, 1, 10000, &s, e))) return rc;
    if ((rc = hl_opt_int(opts, opts ? opts->iterations : 0, "iterations", 3, 0, 10000, &sweeps, e))) return rc;
    if ((rc = hl_opt_int(opts, 0, "linesearch", 0, 0, 1000000000, &ls, e))) return rc;
    if ((rc = hl_opt_double(opts, opts ? opts->sigma : 0, "sigma", 0, 0, 1e30, &sigma, e))) return rc;
    if (n > N) n = N;
    if (s > n)
        return dh_seterr(e, DH_ESCHEMA, "too few samples (%lld) for %lld kernel points", (long long)n, (long long)s);
    if ((rc = hl_check_finite("bre", z, N, D, e))) return rc;

    hl_rng r;
    hl_rng_seed(&r, opts ? opts->seed : 1);
    int64_t *idx = dh_malloc(e, (size_t)n, sizeof *idx);
    int32_t *cls = dh_malloc(e, (size_t)N, sizeof *cls), *scls = dh_malloc(e, (size_t)n, sizeof *scls);
    float *zs = dh_malloc(e, (size_t)n * D, sizeof *zs), *anchors = dh_malloc(e, (size_t)s * D, sizeof *anchors),
          *Kf = dh_malloc(e, (size_t)n * s, sizeof *Kf), *kmean = dh_calloc(e, (size_t)s, sizeof *kmean),
          *Wf = dh_malloc(e, (size_t)K * s, sizeof *Wf);
    double *W = dh_malloc(e, (size_t)K * s, sizeof *W), *u = dh_malloc(e, (size_t)n, sizeof *u);
    bp_t *bp = dh_malloc(e, (size_t)n, sizeof *bp);
    int64_t *fl = dh_malloc(e, (size_t)n, sizeof *fl);
    int8_t *bits = dh_malloc(e, (size_t)n * K, sizeof *bits); /* (n, K) 0/1 */
    int16_t *H = dh_malloc(e, (size_t)n * n, sizeof *H);      /* (n, n) Hamming distances */
    float *P = dh_malloc(e, (size_t)n * n, sizeof *P), *c = dh_malloc(e, (size_t)n, sizeof *c);
    if (!idx || !cls || !scls || !zs || !anchors || !Kf || !kmean || !Wf || !W || !u || !bp || !fl || !bits || !H ||
        !P || !c) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    if (hl_label_classes(labels, N, cls, e) < 0) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    if ((rc = hl_sample(&r, N, n, idx, e))) goto out;
    hl_gather_rows(z, D, idx, n, zs);
    for (int64_t i = 0; i < n; i++) scls[i] = cls[idx[i]];
    memcpy(anchors, zs, (size_t)s * D * sizeof *anchors); /* idx is a random order */
    double gamma = hl_rbf_gamma(zs, n, D, anchors, (int)s, sigma);
    hl_rbf(zs, n, D, anchors, (int)s, gamma, NULL, Kf);
    for (int64_t i = 0; i < n; i++)
        for (int q = 0; q < s; q++) kmean[q] += Kf[i * s + q];
    for (int q = 0; q < s; q++) kmean[q] /= (float)n;
    for (int64_t i = 0; i < n; i++)
        for (int q = 0; q < s; q++) Kf[i * s + q] -= kmean[q];
    for (int64_t i = 0; i < (int64_t)K * s; i++) W[i] = hl_rng_normal(&r);
    /* initial bits and Hamming distances */
    for (int k = 0; k < K; k++)
        for (int64_t i = 0; i < n; i++) {
            double v = 0;
            for (int q = 0; q < s; q++) v += W[(int64_t)k * s + q] * Kf[i * s + q];
            bits[i * K + k] = v > 0;
        }
    double obj = 0;
    for (int64_t i = 0; i < n; i++) {
        H[i * n + i] = 0;
        for (int64_t j = i + 1; j < n; j++) {
            int h = 0;
            for (int k = 0; k < K; k++) h += bits[i * K + k] != bits[j * K + k];
            H[i * n + j] = H[j * n + i] = (int16_t)h;
            double rr = (double)h / K - (scls[i] == scls[j] ? 0.0 : 1.0);
            obj += rr * rr;
        }
    }
    const double obj0 = obj, invK = 1.0 / K;
    int64_t moves = 0;
    for (int64_t sw = 0; sw < sweeps; sw++) {
        for (int k = 0; k < K; k++) {
            double *wk = W + (int64_t)k * s;
            /* P for bit k; c = current bit k as +-1; u = projections */
            for (int64_t i = 0; i < n; i++) c[i] = bits[i * K + k] ? 1.0f : -1.0f;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < n; j++) {
                    if (j == i) {
                        P[i * n + j] = 0;
                        continue;
                    }
                    double hp = H[i * n + j] - (c[i] != c[j]);
                    double A = hp * invK - (scls[i] == scls[j] ? 0.0 : 1.0);
                    P[i * n + j] = (float)(2 * A * invK + invK * invK);
                }
            for (int64_t i = 0; i < n; i++) {
                double v = 0;
                for (int q = 0; q < s; q++) v += wk[q] * Kf[i * s + q];
                u[i] = v;
            }
            for (int q = 0; q < s; q++) {
                /* breakpoints: u_i + d K_iq = 0 */
                double best_gain = 0, best_d = 0;
                for (int side = 0; side < 2; side++) {
                    int64_t m = 0;
                    for (int64_t i = 0; i < n; i++) {
                        double kq = Kf[i * s + q];
                        if (kq == 0) continue;
                        double d = -u[i] / kq;
                        if (side == 0 ? d > 0 : d < 0) {
                            bp[m].d = side == 0 ? d : -d;
                            bp[m].i = i;
                            m++;
                        } else if (d == 0) { /* u_i == 0 (bit 0): the move that makes u_i > 0 flips it at once */
                            if ((side == 0) == (kq > 0)) {
                                bp[m].d = 0;
                                bp[m].i = i;
                                m++;
                            }
                        }
                    }
                    if (m == 0) continue;
                    qsort(bp, (size_t)m, sizeof *bp, cmp_bp);
                    int64_t lim = (ls > 0 && m > ls) ? ls : m, nf = 0;
                    double cum = 0;
                    for (int64_t t = 0; t < lim; t++) {
                        cum += flip_gain(P, c, n, bp[t].i);
                        c[bp[t].i] = -c[bp[t].i];
                        fl[nf++] = bp[t].i;
                        /* only a stop between distinct breakpoints is reachable */
                        if (t + 1 < m && bp[t + 1].d == bp[t].d) continue;
                        if (cum < best_gain - 1e-9) {
                            double nxt = t + 1 < m ? bp[t + 1].d : bp[t].d * 1.5 + 1e-6;
                            best_gain = cum;
                            best_d = (side == 0 ? 1 : -1) * 0.5 * (bp[t].d + nxt);
                        }
                    }
                    for (int64_t t = 0; t < nf; t++) c[fl[t]] = -c[fl[t]];
                }
                if (best_d != 0) {
                    for (int64_t i = 0; i < n; i++) {
                        u[i] += best_d * Kf[i * s + q];
                        c[i] = u[i] > 0 ? 1.0f : -1.0f;
                    }
                    wk[q] += best_d;
                    obj += best_gain;
                    moves++;
                }
            }
            /* commit bit k: update H and the bits */
            for (int64_t i = 0; i < n; i++) {
                int8_t nb = c[i] > 0;
                if (nb == bits[i * K + k]) continue;
                for (int64_t j = 0; j < n; j++) {
                    if (j == i) continue;
                    int16_t dlt = (bits[j * K + k] == bits[i * K + k]) ? 1 : -1; /* were equal: now differ */
                    H[i * n + j] += dlt;
                    H[j * n + i] += dlt;
                }
                bits[i * K + k] = nb;
            }
        }
        hl_note(opts, "bre: sweep %lld: objective %.6g (initial %.6g), %lld moves", (long long)sw + 1, obj, obj0,
                (long long)moves);
    }
    for (int64_t i = 0; i < (int64_t)K * s; i++) Wf[i] = (float)W[i];
    if ((rc = dh_hash_model_begin(out, "bre", "rbf", K, D, e))) goto out;
    if ((rc = hl_model_set_rbf(out, anchors, (int)s, D, gamma, kmean, Wf, NULL, K, e))) goto out;
    dhs_meta_set_float(out->meta, "objective_initial", obj0);
    dhs_meta_set_float(out->meta, "objective_final", obj);
    dhs_meta_set_int(out->meta, "samples", n);
    rc = DH_OK;
out:
    free(idx);
    free(cls);
    free(scls);
    free(zs);
    free(anchors);
    free(Kf);
    free(kmean);
    free(Wf);
    free(W);
    free(u);
    free(bp);
    free(fl);
    free(bits);
    free(H);
    free(P);
    free(c);
    return rc;
}
