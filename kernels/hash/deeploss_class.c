/* deeploss_class.c — losses towards class codewords or through a
 * classifier: CSQ (hash centres), OrthoHash (cosine to orthogonal
 * codewords), GreedyHash (classifier on sign(u), straight-through).
 * Equations and defaults: man/dh-deep-methods.7.
 */
#include <stdlib.h>
#include <string.h>
#include "deeploss_impl.h"
#include "dh_rng.h"

/* ---- the codebook shared by CSQ and OrthoHash: C x K codewords +-1 ---- */
static int codebook_make(dh_dloss *L, int kind, dh_err *e) {
    int C = L->cfg.classes, K = L->cfg.bits;
    float *cb = dh_malloc(e, (size_t)C * K, sizeof(float));
    if (!cb) return DH_ENOMEM;
    int rc = dl_codebook(C, K, kind, dh_splitmix64_at(L->cfg.seed, 0x63656e74ULL), L->m->name, cb, e);
    if (rc) {
        free(cb);
        return rc;
    }
    L->state = cb;
    return DH_OK;
}
int dl_csq_init(dh_dloss *L, dh_err *e) { return codebook_make(L, (int)L->p[1], e); }
int dl_codebook_init(dh_dloss *L, dh_err *e) { return codebook_make(L, (int)L->p[2], e); } /* orthohash */

const float *dl_codebook_tensor(const dh_dloss *L, const char *name, int64_t *rows, int *cols) {
    if (strcmp(name, "centres") != 0) return NULL;
    if (rows) *rows = L->cfg.classes;
    if (cols) *cols = L->cfg.bits;
    return L->state;
}

/* ---- CSQ: h = tanh(u); the row's centre c (its class's codeword; for
 *      multi-hot rows the sign of the sum of its classes' codewords, ties
 *      broken by a fixed random sign per bit);
 *      l_i = (1/K) sum_k BCE((h_ik + 1)/2, (c_k + 1)/2) + lambda sum_k log cosh(|h_ik| - 1);
 *      L = (1/B) sum_i l_i ---- */
int dl_csq_eval(dh_dloss *L, const dh_dloss_batch *b, const double *u, double *du, dh_dloss_stats *st, dh_err *e) {
    int B = b->rows, K = L->cfg.bits, C = L->cfg.classes;
    const float *cb = L->state;
    double lambda = L->p[0], bce = 0, quant = 0;
    double *c = dh_malloc(e, (size_t)K, sizeof(double));
    if (!c) return DH_ENOMEM;
    uint64_t tie = dh_splitmix64_at(L->cfg.seed, 0x746965ULL);
    for (int i = 0; i < B; i++) {
        const double *ui = u + (size_t)i * K;
        double *gi = du + (size_t)i * K;
        if (b->labels)
            for (int k = 0; k < K; k++) c[k] = cb[(size_t)b->labels[i] * K + k];
        else {
            int any = 0;
            for (int k = 0; k < K; k++) c[k] = 0;
            for (int y = 0; y < C; y++)
                if (b->multi[(size_t)i * C + y]) {
                    any = 1;
                    for (int k = 0; k < K; k++) c[k] += cb[(size_t)y * K + k];
                }
            if (!any) continue; /* a row without labels has no centre */
            for (int k = 0; k < K; k++)
                c[k] = c[k] > 0 ? 1 : c[k] < 0 ? -1 : ((dh_rng_u32(tie, (uint64_t)k) >> 31) ? 1 : -1);
        }
        for (int k = 0; k < K; k++) {
            /* (h+1)/2 = sigmoid(2u): BCE = log(1 + e^{2u}) - t 2u, t = (c+1)/2 */
            double t = 0.5 * (c[k] + 1), x = 2 * ui[k], h = tanh(ui[k]), a = fabs(h) - 1;
            bce += (dl_softplus(x) - t * x) / K;
            quant += dl_logcosh(a);
            gi[k] += (2 * (dl_sigmoid(x) - t) / K + lambda * tanh(a) * dl_sign(h) * (1 - h * h)) / B;
        }
    }
    st->term[0] = bce / B;
    st->term[1] = lambda * quant / B;
    st->loss = st->term[0] + st->term[1];
    free(c);
    return DH_OK;
}

/* ---- OrthoHash: cos_ic = u_i.c_c / (|u_i| sqrt(K)) to every codeword,
 *      logits z_ic = s (cos_ic - m y_ic), l_i = -sum_c t_ic log softmax(z_i)_c
 *      (t one-hot; multi-hot rows: y_i / |y_i|), plus quan (1 - cos(u_i, sign(u_i)));
 *      L = (1/B) sum_i l_i ---- */
int dl_orthohash_eval(dh_dloss *L, const dh_dloss_batch *b, const double *u, double *du, dh_dloss_stats *st,
                      dh_err *e) {
    int B = b->rows, K = L->cfg.bits, C = L->cfg.classes;
    const float *cb = L->state;
    double s = L->p[0], m = L->p[1], quan = L->p[3], ce = 0, qsum = 0, sk = sqrt((double)K);
    double *y = dh_malloc(e, (size_t)C * 3, sizeof(double));
    if (!y) return DH_ENOMEM;
    double *cs = y + C, *z = y + 2 * C;
    for (int i = 0; i < B; i++) {
        const double *ui = u + (size_t)i * K;
        double *gi = du + (size_t)i * K;
        double nu = fmax(sqrt(dl_dot(ui, ui, K)), 1e-12), ny = 0, zmax = -INFINITY, zs = 0;
        dl_label_vector(b, C, i, y);
        for (int c = 0; c < C; c++) ny += y[c];
        if (ny == 0) continue;
        for (int c = 0; c < C; c++) {
            double d = 0;
            for (int k = 0; k < K; k++) d += ui[k] * cb[(size_t)c * K + k];
            cs[c] = d / (nu * sk);
            z[c] = s * (cs[c] - m * y[c]);
            if (z[c] > zmax) zmax = z[c];
        }
        for (int c = 0; c < C; c++) zs += exp(z[c] - zmax);
        double lse = zmax + log(zs);
        for (int c = 0; c < C; c++) {
            double t = y[c] / ny, g = (exp(z[c] - lse) - t) * s / B; /* dL/dcos_ic */
            ce -= t * (z[c] - lse);
            if (g == 0) continue;
            for (int k = 0; k < K; k++) gi[k] += g * (cb[(size_t)c * K + k] / (nu * sk) - cs[c] * ui[k] / (nu * nu));
        }
        if (quan > 0) { /* cos(u, b) with b = sign(u) held fixed */
            double a = 0;
            for (int k = 0; k < K; k++) a += fabs(ui[k]);
            double cq = a / (nu * sk);
            qsum += 1 - cq;
            for (int k = 0; k < K; k++) gi[k] -= quan / B * (dl_sign(ui[k]) / (nu * sk) - cq * ui[k] / (nu * nu));
        }
    }
    st->term[0] = ce / B;
    st->term[1] = quan * qsum / B;
    st->loss = st->term[0] + st->term[1];
    free(y);
    return DH_OK;
}

/* ---- GreedyHash: b = sign(u) forward, dL/du = dL/db backward (straight
 *      through); a linear classifier W (K x C, no bias) on b with softmax
 *      cross-entropy, trained by its own SGD in learn mode;
 *      L = (1/B) sum_i CE(W^T b_i, y_i) + alpha (1/(B K)) sum |(|u| - 1)|^3 ---- */
typedef struct greedy_state {
    float *W;   /* (K, C) */
    float *mom; /* (K, C) momentum buffer */
} greedy_state;

int dl_greedy_init(dh_dloss *L, dh_err *e) {
    int K = L->cfg.bits, C = L->cfg.classes;
    size_t n = (size_t)K * C;
    greedy_state *g = dh_calloc(e, 1, sizeof *g + 2 * n * sizeof(float));
    if (!g) return DH_ENOMEM;
    g->W = (float *)(g + 1);
    g->mom = g->W + n;
    /* PyTorch's nn.Linear default: U(-1/sqrt(K), 1/sqrt(K)) */
    uint64_t seed = dh_splitmix64_at(L->cfg.seed, 0x636c73ULL);
    for (size_t t = 0; t < n; t++) g->W[t] = (2 * dh_rng_uniform(seed, t) - 1) / sqrtf((float)K);
    L->state = g;
    return DH_OK;
}

const float *dl_greedy_tensor(const dh_dloss *L, const char *name, int64_t *rows, int *cols) {
    const greedy_state *g = L->state;
    if (strcmp(name, "W") != 0) return NULL;
    if (rows) *rows = L->cfg.bits;
    if (cols) *cols = L->cfg.classes;
    return g->W;
}

int dl_greedy_state(dh_dloss *L, int i, dh_dloss_state *out) {
    greedy_state *g = L->state;
    int64_t n = (int64_t)L->cfg.bits * L->cfg.classes;
    if (i > 1) return -1;
    *out = (dh_dloss_state){ i ? "W.momentum" : "W", i ? (void *)g->mom : (void *)g->W, n, 0 };
    return 0;
}

int dl_greedy_eval(dh_dloss *L, const dh_dloss_batch *b, const double *u, double *du, dh_dloss_stats *st, dh_err *e) {
    int B = b->rows, K = L->cfg.bits, C = L->cfg.classes;
    greedy_state *gs = L->state;
    double alpha = L->p[0], lr = L->p[1], mom = L->p[2], wd = L->p[3], ce = 0, pen = 0;
    double *z = dh_malloc(e, (size_t)C, sizeof(double)), *h = dh_malloc(e, (size_t)K, sizeof(double));
    double *dW = b->learn ? dh_calloc(e, (size_t)K * C, sizeof(double)) : NULL;
    if (!z || !h || (b->learn && !dW)) {
        free(z);
        free(h);
        free(dW);
        return DH_ENOMEM;
    }
    for (int i = 0; i < B; i++) {
        const double *ui = u + (size_t)i * K;
        double *gi = du + (size_t)i * K, zmax = -INFINITY, zs = 0;
        int y = b->labels[i];
        for (int k = 0; k < K; k++) h[k] = b->relaxed ? ui[k] : dl_sign(ui[k]);
        for (int c = 0; c < C; c++) {
            z[c] = 0;
            for (int k = 0; k < K; k++) z[c] += h[k] * gs->W[(size_t)k * C + c];
            if (z[c] > zmax) zmax = z[c];
        }
        for (int c = 0; c < C; c++) zs += exp(z[c] - zmax);
        double lse = zmax + log(zs);
        ce += lse - z[y];
        for (int c = 0; c < C; c++) {
            double g = (exp(z[c] - lse) - (c == y)) / B; /* dL/dz_ic */
            for (int k = 0; k < K; k++) {
                gi[k] += g * gs->W[(size_t)k * C + c]; /* dL/db, passed straight to u */
                if (dW) dW[(size_t)k * C + c] += g * h[k];
            }
        }
        for (int k = 0; k < K; k++) {
            double a = fabs(ui[k]) - 1;
            pen += fabs(a * a * a);
            gi[k] += alpha * 3 * a * a * dl_sign(a) * dl_sign(ui[k]) / ((double)B * K);
        }
    }
    if (dW) /* PyTorch SGD: g += wd w; v = mom v + g; w -= lr v */
        for (size_t t = 0; t < (size_t)K * C; t++) {
            double g = dW[t] + wd * gs->W[t];
            gs->mom[t] = (float)(mom * gs->mom[t] + g);
            gs->W[t] = (float)(gs->W[t] - lr * gs->mom[t]);
        }
    st->term[0] = ce / B;
    st->term[1] = alpha * pen / ((double)B * K);
    st->loss = st->term[0] + st->term[1];
    free(z);
    free(h);
    free(dW);
    return DH_OK;
}
