/* deeploss_pair.c — pairwise deep hashing losses: DPSH, DHN, HashNet, DCH
 * (likelihood / product), DSH (difference / margin), and the paper's own
 * loss (hashloss.h) behind the registry's interface.
 *
 * Pairs are the ordered pairs i != j of the mini-batch (P = B (B - 1));
 * every loss below is symmetric in (i, j), so each loop visits i < j once
 * and counts it twice. s_ij = 1 for pairs that share a label. Equations
 * and defaults: man/dh-deep-methods.7.
 */
#include <stdlib.h>
#include <string.h>
#include "deeploss_impl.h"
#include "hashloss.h"

/* ---- DPSH: theta = u_i.u_j / 2, l = log(1 + e^theta) - s theta,
 *      L = (sum_{i!=j} l_ij + eta sum_i |b_i - u_i|^2) / P ---- */
int dl_dpsh_eval(dh_dloss *L, const dh_dloss_batch *b, const double *u, double *du, dh_dloss_stats *st, dh_err *e) {
    int B = b->rows, K = L->cfg.bits, C = L->cfg.classes;
    double eta = L->p[0], P = (double)B * (B - 1), like = 0, quant = 0;
    for (int i = 0; i < B; i++)
        for (int j = i + 1; j < B; j++) {
            const double *ui = u + (size_t)i * K, *uj = u + (size_t)j * K;
            double th = 0.5 * dl_dot(ui, uj, K), s = dl_similar(b, C, i, j);
            like += 2 * (dl_softplus(th) - s * th);
            double g = 2 * (dl_sigmoid(th) - s) / P * 0.5; /* dL/d(u_i.u_j) over both orders */
            for (int k = 0; k < K; k++) {
                du[(size_t)i * K + k] += g * uj[k];
                du[(size_t)j * K + k] += g * ui[k];
            }
        }
    for (size_t t = 0; t < (size_t)B * K; t++) {
        double r = u[t] - dl_sign(u[t]);
        quant += r * r;
        du[t] += 2 * eta * r / P;
    }
    st->term[0] = like / P;
    st->term[1] = eta * quant / P;
    st->loss = st->term[0] + st->term[1];
    return DH_OK;
}

/* ---- DHN: z = tanh(u), l = log(1 + e^{z_i.z_j}) - s z_i.z_j, pairwise
 *      quantisation lambda (q_i + q_j), q_i = sum_k log cosh(|z_ik| - 1);
 *      L = sum_{i!=j} (l_ij + lambda (q_i + q_j)) / P ---- */
int dl_dhn_eval(dh_dloss *L, const dh_dloss_batch *b, const double *u, double *du, dh_dloss_stats *st, dh_err *e) {
    int B = b->rows, K = L->cfg.bits, C = L->cfg.classes;
    double lambda = L->p[0], P = (double)B * (B - 1), ce = 0, quant = 0;
    size_t n = (size_t)B * K;
    double *z = dh_malloc(e, n, sizeof(double)), *dz = dh_calloc(e, n, sizeof(double));
    if (!z || !dz) {
        free(z);
        free(dz);
        return DH_ENOMEM;
    }
    for (size_t t = 0; t < n; t++) z[t] = tanh(u[t]);
    for (int i = 0; i < B; i++)
        for (int j = i + 1; j < B; j++) {
            const double *zi = z + (size_t)i * K, *zj = z + (size_t)j * K;
            double ip = dl_dot(zi, zj, K), s = dl_similar(b, C, i, j);
            ce += 2 * (dl_softplus(ip) - s * ip);
            double g = 2 * (dl_sigmoid(ip) - s) / P;
            for (int k = 0; k < K; k++) {
                dz[(size_t)i * K + k] += g * zj[k];
                dz[(size_t)j * K + k] += g * zi[k];
            }
        }
    /* each row's q appears in 2 (B - 1) ordered pairs */
    double wq = lambda * 2.0 * (B - 1) / P;
    for (size_t t = 0; t < n; t++) {
        double a = fabs(z[t]) - 1;
        quant += dl_logcosh(a);
        dz[t] += wq * tanh(a) * dl_sign(z[t]);
        du[t] += dz[t] * (1 - z[t] * z[t]);
    }
    st->term[0] = ce / P;
    st->term[1] = wq * quant;
    st->loss = st->term[0] + st->term[1];
    free(z);
    free(dz);
    return DH_OK;
}

/* Pair weights of HashNet and DCH: |S|/|S1| on similar, |S|/|S0| on
 * dissimilar pairs (1 for all when either set is empty or balance is off). */
void dl_balance_weights(const dh_dloss_batch *b, int C, int on, double *w1, double *w0) {
    int64_t s1, s0;
    dl_pair_counts(b, C, &s1, &s0);
    *w1 = *w0 = 1;
    if (on && s1 > 0 && s0 > 0) {
        *w1 = (double)(s1 + s0) / (double)s1;
        *w0 = (double)(s1 + s0) / (double)s0;
    }
}

double dl_hashnet_beta(const dh_dloss *L, int64_t step) {
    double beta0 = L->p[1], gamma = L->p[2], power = L->p[3];
    int64_t step_size = (int64_t)L->p[4];
    double t = (double)(step / step_size * step_size);
    return beta0 * pow(1 + gamma * t, power);
}

/* ---- HashNet: h = tanh(beta u), x = alpha h_i.h_j,
 *      L = sum_{i!=j} w_ij (log(1 + e^x) - s x) / P,
 *      beta = beta0 (1 + gamma t)^power, t = step rounded down to step_size ---- */
int dl_hashnet_eval(dh_dloss *L, const dh_dloss_batch *b, const double *u, double *du, dh_dloss_stats *st, dh_err *e) {
    int B = b->rows, K = L->cfg.bits, C = L->cfg.classes;
    double alpha = L->p[0], beta = dl_hashnet_beta(L, b->step), P = (double)B * (B - 1), like = 0, w1, w0;
    dl_balance_weights(b, C, L->p[5] != 0, &w1, &w0);
    size_t n = (size_t)B * K;
    double *h = dh_malloc(e, n, sizeof(double)), *dh = dh_calloc(e, n, sizeof(double));
    if (!h || !dh) {
        free(h);
        free(dh);
        return DH_ENOMEM;
    }
    for (size_t q = 0; q < n; q++) h[q] = tanh(beta * u[q]);
    for (int i = 0; i < B; i++)
        for (int j = i + 1; j < B; j++) {
            const double *hi = h + (size_t)i * K, *hj = h + (size_t)j * K;
            double x = alpha * dl_dot(hi, hj, K), s = dl_similar(b, C, i, j), w = s ? w1 : w0;
            like += 2 * w * (dl_softplus(x) - s * x);
            double g = 2 * w * (dl_sigmoid(x) - s) * alpha / P;
            for (int k = 0; k < K; k++) {
                dh[(size_t)i * K + k] += g * hj[k];
                dh[(size_t)j * K + k] += g * hi[k];
            }
        }
    for (size_t q = 0; q < n; q++) du[q] += dh[q] * beta * (1 - h[q] * h[q]);
    st->term[0] = st->loss = like / P;
    st->scale = beta;
    free(h);
    free(dh);
    return DH_OK;
}

/* ---- DCH: h = tanh(u), d_ij = K/2 (1 - cos(h_i, h_j)),
 *      l = log(1 + d/gamma) if s, log(1 + gamma/d) otherwise (= s log(d/gamma) + log(1 + gamma/d)),
 *      Q_i = log(1 + d(|h_i|, 1)/gamma),
 *      L = (sum_{i!=j} w_ij l_ij + lambda sum_i Q_i) / P ---- */
#define DCH_DMIN 1e-6
int dl_dch_eval(dh_dloss *L, const dh_dloss_batch *b, const double *u, double *du, dh_dloss_stats *st, dh_err *e) {
    int B = b->rows, K = L->cfg.bits, C = L->cfg.classes;
    double gamma = L->p[0], lambda = L->p[1], P = (double)B * (B - 1), cau = 0, quant = 0, w1, w0;
    dl_balance_weights(b, C, 1, &w1, &w0);
    size_t n = (size_t)B * K;
    double *h = dh_malloc(e, n, sizeof(double)), *dh = dh_calloc(e, n, sizeof(double));
    double *nrm = dh_malloc(e, (size_t)B, sizeof(double));
    if (!h || !dh || !nrm) {
        free(h);
        free(dh);
        free(nrm);
        return DH_ENOMEM;
    }
    for (size_t q = 0; q < n; q++) h[q] = tanh(u[q]);
    for (int i = 0; i < B; i++) nrm[i] = fmax(sqrt(dl_dot(h + (size_t)i * K, h + (size_t)i * K, K)), 1e-12);
    double half = 0.5 * K;
    for (int i = 0; i < B; i++)
        for (int j = i + 1; j < B; j++) {
            const double *hi = h + (size_t)i * K, *hj = h + (size_t)j * K;
            double c = dl_dot(hi, hj, K) / (nrm[i] * nrm[j]), d = half * (1 - c);
            double s = dl_similar(b, C, i, j), w = s ? w1 : w0, dl_dd;
            if (d < DCH_DMIN) {
                d = DCH_DMIN;
                dl_dd = 0; /* clamped: no gradient */
            } else
                dl_dd = s ? 1 / (gamma + d) : -gamma / (d * (d + gamma));
            cau += 2 * w * (s ? log1p(d / gamma) : log1p(gamma / d));
            double g = 2 * w * dl_dd * (-half) / P; /* dL/dc */
            for (int k = 0; k < K; k++) {
                dh[(size_t)i * K + k] += g * (hj[k] / (nrm[i] * nrm[j]) - c * hi[k] / (nrm[i] * nrm[i]));
                dh[(size_t)j * K + k] += g * (hi[k] / (nrm[i] * nrm[j]) - c * hj[k] / (nrm[j] * nrm[j]));
            }
        }
    double sk = sqrt((double)K);
    for (int i = 0; i < B; i++) {
        const double *hi = h + (size_t)i * K;
        double a = 0;
        for (int k = 0; k < K; k++) a += fabs(hi[k]);
        double cq = a / (nrm[i] * sk), dq = half * (1 - cq);
        quant += log1p(dq / gamma);
        double g = lambda / P / (gamma + dq) * (-half); /* dL/dcq */
        for (int k = 0; k < K; k++)
            dh[(size_t)i * K + k] += g * (dl_sign(hi[k]) / (nrm[i] * sk) - cq * hi[k] / (nrm[i] * nrm[i]));
    }
    for (size_t q = 0; q < n; q++) du[q] += dh[q] * (1 - h[q] * h[q]);
    st->term[0] = cau / P;
    st->term[1] = lambda * quant / P;
    st->loss = st->term[0] + st->term[1];
    free(h);
    free(dh);
    free(nrm);
    return DH_OK;
}

/* ---- DSH: D = |u_i - u_j|^2, r_i = sum_k ||u_ik| - 1|,
 *      L = sum_{i!=j} (s D/2 + (1 - s) max(m - D, 0)/2 + alpha (r_i + r_j)) / P ---- */
int dl_dsh_eval(dh_dloss *L, const dh_dloss_batch *b, const double *u, double *du, dh_dloss_stats *st, dh_err *e) {
    int B = b->rows, K = L->cfg.bits, C = L->cfg.classes;
    double m = L->p[0], alpha = L->p[1], P = (double)B * (B - 1), con = 0, reg = 0;
    for (int i = 0; i < B; i++)
        for (int j = i + 1; j < B; j++) {
            const double *ui = u + (size_t)i * K, *uj = u + (size_t)j * K;
            double D = 0;
            for (int k = 0; k < K; k++) D += (ui[k] - uj[k]) * (ui[k] - uj[k]);
            double s = dl_similar(b, C, i, j), dL_dD;
            if (s) {
                con += 2 * 0.5 * D;
                dL_dD = 2 * 0.5 / P;
            } else if (D < m) {
                con += 2 * 0.5 * (m - D);
                dL_dD = -2 * 0.5 / P;
            } else
                dL_dD = 0;
            for (int k = 0; k < K; k++) {
                double g = dL_dD * 2 * (ui[k] - uj[k]);
                du[(size_t)i * K + k] += g;
                du[(size_t)j * K + k] -= g;
            }
        }
    double wr = alpha * 2.0 * (B - 1) / P; /* each row in 2 (B - 1) ordered pairs */
    for (size_t t = 0; t < (size_t)B * K; t++) {
        double a = fabs(u[t]) - 1;
        reg += fabs(a);
        du[t] += wr * dl_sign(a) * dl_sign(u[t]);
    }
    st->term[0] = con / P;
    st->term[1] = wr * reg;
    st->loss = st->term[0] + st->term[1];
    return DH_OK;
}

/* ---- the paper's loss (Mu & Liu 2017): dh_hashloss_cpu, unchanged ---- */
void dl_deephash_opts(const dh_dloss *L, dh_hashloss_opts *o) {
    int norm = (int)L->p[0], K = L->cfg.bits;
    o->norm = norm == 0 ? DH_HL_BALANCED : norm == 1 ? DH_HL_MEAN : DH_HL_SUM;
    o->scale = L->p[1] > 0 ? L->p[1] : (o->norm == DH_HL_SUM ? 1.0 : (double)K * K);
}

int dl_deephash_eval(dh_dloss *L, const dh_dloss_batch *b, const double *u, double *du, dh_dloss_stats *st, dh_err *e) {
    int B = b->rows, K = L->cfg.bits;
    dh_hashloss_opts o;
    dl_deephash_opts(L, &o);
    size_t n = (size_t)B * K;
    float *g = dh_malloc(e, n, sizeof(float));
    if (!g) return DH_ENOMEM;
    dh_hashloss_stats hs;
    int rc = dh_hashloss_cpu(b->u, b->labels, B, K, &o, g, &hs, e);
    if (rc == DH_OK) {
        for (size_t t = 0; t < n; t++) du[t] += g[t];
        st->loss = st->term[0] = hs.surrogate;
        st->term[1] = hs.q;
        st->term[2] = hs.right;
    }
    free(g);
    (void)u;
    return rc;
}
