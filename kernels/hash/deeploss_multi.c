/* deeploss_multi.c — multiwise deep hashing losses: DTSH (triplets) and
 * MIHash (mutual information of the Hamming distance distribution).
 * Equations and defaults: man/dh-deep-methods.7.
 */
#include <stdlib.h>
#include <string.h>
#include "deeploss_impl.h"

/* ---- DTSH: theta_ij = u_i.u_j / 2; every triplet (q, p, n) of the batch
 *      with s_qp = 1 (p != q), s_qn = 0: l = -log sigma(theta_qp - theta_qn - margin);
 *      L = (sum_triplets l + lambda sum_i |b_i - u_i|^2) / T ---- */
int dl_dtsh_eval(dh_dloss *L, const dh_dloss_batch *b, const double *u, double *du, dh_dloss_stats *st, dh_err *e) {
    int B = b->rows, K = L->cfg.bits, C = L->cfg.classes;
    double margin = L->p[0], lambda = L->p[1], trip = 0, quant = 0;
    size_t bb = (size_t)B * B;
    double *th = dh_malloc(e, bb, sizeof(double)), *A = dh_calloc(e, bb, sizeof(double));
    uint8_t *S = dh_malloc(e, bb, 1);
    if (!th || !A || !S) {
        free(th);
        free(A);
        free(S);
        return DH_ENOMEM;
    }
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            th[(size_t)i * B + j] = 0.5 * dl_dot(u + (size_t)i * K, u + (size_t)j * K, K);
            S[(size_t)i * B + j] = (uint8_t)dl_similar(b, C, i, j);
        }
    int64_t T = 0;
    for (int q = 0; q < B; q++)
        for (int p = 0; p < B; p++) {
            if (p == q || !S[(size_t)q * B + p]) continue;
            for (int n = 0; n < B; n++) {
                if (S[(size_t)q * B + n]) continue;
                double x = th[(size_t)q * B + p] - th[(size_t)q * B + n] - margin;
                trip += dl_softplus(-x);
                double g = dl_sigmoid(x) - 1; /* dl/dx */
                A[(size_t)q * B + p] += g;
                A[(size_t)q * B + n] -= g;
                T++;
            }
        }
    double inv = 1.0 / (double)(T > 0 ? T : 1);
    for (int q = 0; q < B; q++)
        for (int j = 0; j < B; j++) {
            double a = A[(size_t)q * B + j] * inv * 0.5; /* dL/dtheta_qj * dtheta/d(u_q.u_j) */
            if (a == 0) continue;
            for (int k = 0; k < K; k++) {
                du[(size_t)q * K + k] += a * u[(size_t)j * K + k];
                du[(size_t)j * K + k] += a * u[(size_t)q * K + k];
            }
        }
    for (size_t t = 0; t < (size_t)B * K; t++) {
        double r = u[t] - dl_sign(u[t]);
        quant += r * r;
        du[t] += 2 * lambda * r * inv;
    }
    st->term[0] = trip * inv;
    st->term[1] = lambda * quant * inv;
    st->loss = st->term[0] + st->term[1];
    free(th);
    free(A);
    free(S);
    return DH_OK;
}

/* ---- MIHash: phi = 2 sigmoid(a u) - 1, D_ij = (K - phi_i.phi_j) / 2;
 *      per anchor i, soft histograms (triangular kernels of width
 *      Delta = K/nbins at 0, Delta, ..., K) of D_ij over its neighbours
 *      (p+), non-neighbours (p-) and all (pD = pi+ p+ + pi- p-);
 *      MI_i = H(pD) - pi+ H(p+) - pi- H(p-) (bits);  L = -(1/B) sum_i MI_i ---- */
int dl_mihash_init(dh_dloss *L, dh_err *e) {
    if (L->p[0] > L->cfg.bits)
        return dh_seterr(e, DH_EINVAL, "deep loss mihash: nbins=%g: more bins than bits (%d)", L->p[0], L->cfg.bits);
    return DH_OK;
}

static double entropy2(const double *p, int n) {
    double h = 0;
    for (int l = 0; l < n; l++)
        if (p[l] > 0) h -= p[l] * log2(p[l]);
    return h;
}
/* -dH/dp_l up to a constant (the constant cancels: the kernels' slopes sum to 0). */
static double mlog2(double p) { return p > 0 ? -log2(p) : 0; }

int dl_mihash_eval(dh_dloss *L, const dh_dloss_batch *b, const double *u, double *du, dh_dloss_stats *st, dh_err *e) {
    int B = b->rows, K = L->cfg.bits, C = L->cfg.classes, nb = (int)L->p[0], NL = nb + 1;
    double a = L->p[1], delta = (double)K / nb;
    size_t n = (size_t)B * K, bb = (size_t)B * B;
    double *phi = dh_malloc(e, n, sizeof(double)), *dphi = dh_calloc(e, n, sizeof(double));
    double *D = dh_malloc(e, bb, sizeof(double)), *G = dh_calloc(e, bb, sizeof(double));
    double *hp = dh_malloc(e, (size_t)NL * 3, sizeof(double));
    int *bin = dh_malloc(e, bb, sizeof(int));
    double *frac = dh_malloc(e, bb, sizeof(double));
    int rc = DH_OK;
    if (!phi || !dphi || !D || !G || !hp || !bin || !frac) {
        rc = DH_ENOMEM;
        goto out;
    }
    for (size_t t = 0; t < n; t++) phi[t] = 2 * dl_sigmoid(a * u[t]) - 1;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            size_t ij = (size_t)i * B + j;
            double d = 0.5 * (K - dl_dot(phi + (size_t)i * K, phi + (size_t)j * K, K)), x = d / delta;
            int l = (int)floor(x);
            if (l < 0) l = 0; /* d in [0, K]: only rounding can leave it */
            if (l > nb - 1) l = nb - 1;
            D[ij] = d;
            bin[ij] = l;
            frac[ij] = fmin(fmax(x - l, 0.0), 1.0); /* weight of bin l+1; 1 - frac on bin l */
        }
    double mi_sum = 0;
    double *pp = hp, *pn = hp + NL, *pd = hp + 2 * NL;
    for (int i = 0; i < B; i++) {
        int np = 0, nn = 0;
        memset(hp, 0, sizeof(double) * (size_t)NL * 3);
        for (int j = 0; j < B; j++) {
            if (j == i) continue;
            size_t ij = (size_t)i * B + j;
            double *h = dl_similar(b, C, i, j) ? (np++, pp) : (nn++, pn);
            h[bin[ij]] += 1 - frac[ij];
            h[bin[ij] + 1] += frac[ij];
        }
        if (np == 0 || nn == 0) continue; /* MI is 0: the distance says nothing about a single class */
        double pip = (double)np / (B - 1), pin = (double)nn / (B - 1);
        for (int l = 0; l < NL; l++) {
            pd[l] = (pp[l] + pn[l]) / (B - 1);
            pp[l] /= np;
            pn[l] /= nn;
        }
        mi_sum += entropy2(pd, NL) - pip * entropy2(pp, NL) - pin * entropy2(pn, NL);
        /* dMI/dD_ij = 1/(B-1) sum_l slope_l(D_ij) (H'(pD)_l - H'(p_class)_l) */
        for (int j = 0; j < B; j++) {
            if (j == i) continue;
            size_t ij = (size_t)i * B + j;
            const double *pc = dl_similar(b, C, i, j) ? pp : pn;
            int l = bin[ij];
            double dmi = ((mlog2(pd[l + 1]) - mlog2(pc[l + 1])) - (mlog2(pd[l]) - mlog2(pc[l]))) / delta / (B - 1);
            G[ij] += -dmi / B; /* L = -(1/B) sum MI */
        }
    }
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            double g = G[(size_t)i * B + j];
            if (g == 0) continue;
            for (int k = 0; k < K; k++) { /* dD_ij/dphi_i = -phi_j/2 */
                dphi[(size_t)i * K + k] -= 0.5 * g * phi[(size_t)j * K + k];
                dphi[(size_t)j * K + k] -= 0.5 * g * phi[(size_t)i * K + k];
            }
        }
    for (size_t t = 0; t < n; t++) du[t] += dphi[t] * a * 0.5 * (1 - phi[t] * phi[t]);
    st->loss = st->term[0] = -mi_sum / B;
out:
    free(phi);
    free(dphi);
    free(D);
    free(G);
    free(hp);
    free(bin);
    free(frac);
    return rc;
}
