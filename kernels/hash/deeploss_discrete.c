/* deeploss_discrete.c — losses whose binary codes are learned by discrete
 * steps beside the network: DSDH (codes B and classifier W of the training
 * rows) and ADSH (the database codes V, used as the database's codes).
 * Both keep per-row state indexed by batch.idx, remember the outputs of the
 * rows a learn-mode batch brings, and run their discrete steps in
 * dh_dloss_epoch_end. Equations and defaults: man/dh-deep-methods.7.
 */
#include <stdlib.h>
#include <string.h>
#include "deeploss_impl.h"

/* ================================ DSDH ================================ */
typedef struct dsdh_state {
    int64_t N;
    float *U;      /* (N, K) last outputs of each row                  */
    float *Bc;     /* (N, K) codes +-1; 0 before the row is first seen */
    uint8_t *Y;    /* (N, C) labels of the rows seen                   */
    uint8_t *seen; /* (N)                                               */
    float *W;      /* (K, C) classifier, 0 before the first epoch end   */
} dsdh_state;

int dl_dsdh_init(dh_dloss *L, dh_err *e) {
    int64_t N = L->cfg.db_size;
    int K = L->cfg.bits, C = L->cfg.classes;
    dsdh_state *s = dh_calloc(e, 1, sizeof *s);
    if (!s) return DH_ENOMEM;
    L->state = s;
    s->N = N;
    s->U = dh_calloc(e, (size_t)N * K, sizeof(float));
    s->Bc = s->U ? dh_calloc(e, (size_t)N * K, sizeof(float)) : NULL;
    s->Y = s->Bc ? dh_calloc(e, (size_t)N * C, 1) : NULL;
    s->seen = s->Y ? dh_calloc(e, (size_t)N, 1) : NULL;
    s->W = s->seen ? dh_calloc(e, (size_t)K * C, sizeof(float)) : NULL;
    return s->W ? DH_OK : DH_ENOMEM;
}

void dl_dsdh_destroy(dh_dloss *L) {
    dsdh_state *s = L->state;
    if (!s) return;
    free(s->U);
    free(s->Bc);
    free(s->Y);
    free(s->seen);
    free(s->W);
    free(s);
    L->state = NULL;
}

const float *dl_dsdh_tensor(const dh_dloss *L, const char *name, int64_t *rows, int *cols) {
    const dsdh_state *s = L->state;
    if (strcmp(name, "B") == 0) {
        if (rows) *rows = s->N;
        if (cols) *cols = L->cfg.bits;
        return s->Bc;
    }
    if (strcmp(name, "W") == 0) {
        if (rows) *rows = L->cfg.bits;
        if (cols) *cols = L->cfg.classes;
        return s->W;
    }
    return NULL;
}

int dl_dsdh_state(dh_dloss *L, int i, dh_dloss_state *out) {
    dsdh_state *s = L->state;
    int64_t N = s->N, K = L->cfg.bits, C = L->cfg.classes;
    switch (i) {
    case 0: *out = (dh_dloss_state){ "U", s->U, N * K, 0 }; return 0;
    case 1: *out = (dh_dloss_state){ "B", s->Bc, N * K, 0 }; return 0;
    case 2: *out = (dh_dloss_state){ "Y", s->Y, N * C, 1 }; return 0;
    case 3: *out = (dh_dloss_state){ "seen", s->seen, N, 1 }; return 0;
    case 4: *out = (dh_dloss_state){ "W", s->W, K * C, 0 }; return 0;
    default: return -1;
    }
}

/* theta = u_i.u_j / 2 over the batch's pairs, b_i the row's current code:
 *   L = (sum_{i!=j} (log(1 + e^theta) - s theta) + eta sum_i |b_i - u_i|^2
 *        + mu sum_i |y_i - W^T b_i|^2) / P
 * (the last term does not depend on u: it is reported, not differentiated). */
int dl_dsdh_eval(dh_dloss *L, const dh_dloss_batch *b, const double *u, double *du, dh_dloss_stats *st, dh_err *e) {
    dsdh_state *s = L->state;
    int B = b->rows, K = L->cfg.bits, C = L->cfg.classes;
    double mu = L->p[0], eta = L->p[2], P = (double)B * (B - 1), like = 0, quant = 0, cls = 0;
    double *y = dh_malloc(e, (size_t)C, sizeof(double));
    if (!y) return DH_ENOMEM;
    for (int i = 0; i < B; i++)
        for (int j = i + 1; j < B; j++) {
            const double *ui = u + (size_t)i * K, *uj = u + (size_t)j * K;
            double th = 0.5 * dl_dot(ui, uj, K), sim = dl_similar(b, C, i, j);
            like += 2 * (dl_softplus(th) - sim * th);
            double g = (dl_sigmoid(th) - sim) / P; /* 2 orders x 1/2 */
            for (int k = 0; k < K; k++) {
                du[(size_t)i * K + k] += g * uj[k];
                du[(size_t)j * K + k] += g * ui[k];
            }
        }
    for (int i = 0; i < B; i++) {
        const float *bc = s->Bc + (size_t)b->idx[i] * K;
        const double *ui = u + (size_t)i * K;
        int have = bc[0] != 0;
        for (int k = 0; k < K; k++) {
            double bk = have ? bc[k] : dl_sign(ui[k]), r = ui[k] - bk;
            quant += r * r;
            du[(size_t)i * K + k] += 2 * eta * r / P;
        }
        dl_label_vector(b, C, i, y);
        for (int c = 0; c < C; c++) {
            double f = 0;
            for (int k = 0; k < K; k++) f += s->W[(size_t)k * C + c] * (have ? bc[k] : dl_sign(ui[k]));
            cls += (y[c] - f) * (y[c] - f);
        }
    }
    if (b->learn)
        for (int i = 0; i < B; i++) {
            int64_t r = b->idx[i];
            float *ur = s->U + (size_t)r * K, *bc = s->Bc + (size_t)r * K;
            for (int k = 0; k < K; k++) ur[k] = (float)u[(size_t)i * K + k];
            if (bc[0] == 0)
                for (int k = 0; k < K; k++) bc[k] = (float)dl_sign(u[(size_t)i * K + k]);
            dl_label_vector(b, C, i, y);
            for (int c = 0; c < C; c++) s->Y[(size_t)r * C + c] = y[c] != 0;
            s->seen[r] = 1;
        }
    st->term[0] = like / P;
    st->term[1] = eta * quant / P;
    st->term[2] = mu * cls / P;
    st->loss = st->term[0] + st->term[1] + st->term[2];
    free(y);
    return DH_OK;
}

/* Over the rows seen so far, dcc_iter times:
 *   W-step  W = (B B^T + nu/mu I)^-1 B Y^T                    (K x C)
 *   B-step  P = W Y + eta/mu U; for each bit k in turn:
 *           b_k = sign(p_k - B'^T W' w_k)  (the other bits held; sign(0) keeps b_k) */
int dl_dsdh_epoch_end(dh_dloss *L, dh_err *e) {
    dsdh_state *s = L->state;
    int K = L->cfg.bits, C = L->cfg.classes, iters = (int)L->p[3];
    double mu = L->p[0], nu = L->p[1], eta = L->p[2];
    double *A = dh_malloc(e, (size_t)K * K, sizeof(double)), *R = dh_malloc(e, (size_t)K * C, sizeof(double));
    double *M = dh_malloc(e, (size_t)K * K, sizeof(double)), *p = dh_malloc(e, (size_t)K, sizeof(double));
    int rc = DH_OK;
    if (!A || !R || !M || !p) {
        rc = DH_ENOMEM;
        goto out;
    }
    for (int it = 0; it < iters; it++) {
        /* W-step */
        memset(A, 0, sizeof(double) * (size_t)K * K);
        memset(R, 0, sizeof(double) * (size_t)K * C);
        int64_t nseen = 0;
        for (int64_t r = 0; r < s->N; r++) {
            if (!s->seen[r]) continue;
            nseen++;
            const float *bc = s->Bc + (size_t)r * K;
            const uint8_t *yr = s->Y + (size_t)r * C;
            for (int a = 0; a < K; a++) {
                for (int c = 0; c < K; c++) A[(size_t)a * K + c] += (double)bc[a] * bc[c];
                for (int c = 0; c < C; c++)
                    if (yr[c]) R[(size_t)a * C + c] += bc[a];
            }
        }
        if (nseen == 0) break;
        double ridge = nu / mu, tr = 0;
        for (int a = 0; a < K; a++) tr += A[(size_t)a * K + a];
        if (ridge < 1e-9 * tr / K) ridge = 1e-9 * tr / K; /* nu = 0: keep the system solvable */
        for (int a = 0; a < K; a++) A[(size_t)a * K + a] += ridge;
        if (dl_spd_solve(A, K, R, C)) {
            rc = dh_seterr(e, DH_EINVAL, "deep loss dsdh: W-step: singular system");
            goto out;
        }
        for (size_t t = 0; t < (size_t)K * C; t++) s->W[t] = (float)R[t];
        /* B-step: M = W W^T */
        for (int a = 0; a < K; a++)
            for (int c = 0; c < K; c++) {
                double d = 0;
                for (int y = 0; y < C; y++) d += (double)s->W[(size_t)a * C + y] * s->W[(size_t)c * C + y];
                M[(size_t)a * K + c] = d;
            }
        for (int64_t r = 0; r < s->N; r++) {
            if (!s->seen[r]) continue;
            float *bc = s->Bc + (size_t)r * K;
            const float *ur = s->U + (size_t)r * K;
            const uint8_t *yr = s->Y + (size_t)r * C;
            for (int k = 0; k < K; k++) {
                double wy = 0;
                for (int c = 0; c < C; c++)
                    if (yr[c]) wy += s->W[(size_t)k * C + c];
                p[k] = wy + eta / mu * ur[k];
            }
            for (int k = 0; k < K; k++) {
                double x = p[k];
                for (int k2 = 0; k2 < K; k2++)
                    if (k2 != k) x -= M[(size_t)k * K + k2] * bc[k2];
                if (x != 0) bc[k] = x > 0 ? 1.0f : -1.0f;
            }
        }
    }
out:
    free(A);
    free(R);
    free(M);
    free(p);
    return rc;
}

/* ================================ ADSH ================================ */
typedef struct adsh_state {
    int64_t N;
    float *V;      /* (N, K) database codes (0 before the first V-step)   */
    float *Ub;     /* (N, K) tanh outputs of the rows seen this epoch (Omega) */
    uint8_t *seen; /* (N)                                                  */
    double *cs;    /* (C, K) per-class sums of V                           */
    double *vs;    /* (K) sum of V                                          */
    double *G;     /* (K, K) V^T V                                          */
} adsh_state;

static void adsh_sums(dh_dloss *L) {
    adsh_state *s = L->state;
    int K = L->cfg.bits, C = L->cfg.classes;
    memset(s->cs, 0, sizeof(double) * (size_t)C * K);
    memset(s->vs, 0, sizeof(double) * (size_t)K);
    memset(s->G, 0, sizeof(double) * (size_t)K * K);
    for (int64_t j = 0; j < s->N; j++) {
        const float *v = s->V + (size_t)j * K;
        double *c = s->cs + (size_t)L->db_labels[j] * K;
        for (int a = 0; a < K; a++) {
            c[a] += v[a];
            s->vs[a] += v[a];
            for (int b = 0; b < K; b++) s->G[(size_t)a * K + b] += (double)v[a] * v[b];
        }
    }
}

int dl_adsh_init(dh_dloss *L, dh_err *e) {
    int64_t N = L->cfg.db_size;
    int K = L->cfg.bits, C = L->cfg.classes;
    adsh_state *s = dh_calloc(e, 1, sizeof *s);
    if (!s) return DH_ENOMEM;
    L->state = s;
    s->N = N;
    s->V = dh_calloc(e, (size_t)N * K, sizeof(float));
    s->Ub = s->V ? dh_calloc(e, (size_t)N * K, sizeof(float)) : NULL;
    s->seen = s->Ub ? dh_calloc(e, (size_t)N, 1) : NULL;
    s->cs = s->seen ? dh_calloc(e, (size_t)C * K, sizeof(double)) : NULL;
    s->vs = s->cs ? dh_calloc(e, (size_t)K, sizeof(double)) : NULL;
    s->G = s->vs ? dh_calloc(e, (size_t)K * K, sizeof(double)) : NULL;
    return s->G ? DH_OK : DH_ENOMEM;
}

void dl_adsh_destroy(dh_dloss *L) {
    adsh_state *s = L->state;
    if (!s) return;
    free(s->V);
    free(s->Ub);
    free(s->seen);
    free(s->cs);
    free(s->vs);
    free(s->G);
    free(s);
    L->state = NULL;
}

const float *dl_adsh_tensor(const dh_dloss *L, const char *name, int64_t *rows, int *cols) {
    const adsh_state *s = L->state;
    if (strcmp(name, "V") != 0) return NULL;
    if (rows) *rows = s->N;
    if (cols) *cols = L->cfg.bits;
    return s->V;
}

int dl_adsh_state(dh_dloss *L, int i, dh_dloss_state *out) {
    adsh_state *s = L->state;
    int64_t N = s->N, K = L->cfg.bits;
    switch (i) {
    case 0: *out = (dh_dloss_state){ "V", s->V, N * K, 0 }; return 0;
    case 1: *out = (dh_dloss_state){ "U", s->Ub, N * K, 0 }; return 0;
    case 2: *out = (dh_dloss_state){ "seen", s->seen, N, 1 }; return 0;
    default: return -1;
    }
}

/* The sums of V are derived from V (the same order of additions: the same bits). */
void dl_adsh_restored(dh_dloss *L) { adsh_sums(L); }

/* h = tanh(u), S_ij = +1 for the same class, -1 otherwise, over the whole
 * database j = 1..N:
 *   L = (sum_i sum_j (h_i.v_j - K S_ij)^2 + gamma sum_i |v_{idx_i} - h_i|^2) / (N B)
 * computed exactly through the class sums of V:
 *   sum_j (h.v_j - K S_ij)^2 = h^T G h - 2K h.(2 cs[y_i] - vs) + K^2 N. */
int dl_adsh_eval(dh_dloss *L, const dh_dloss_batch *b, const double *u, double *du, dh_dloss_stats *st, dh_err *e) {
    adsh_state *s = L->state;
    int B = b->rows, K = L->cfg.bits;
    double gamma = L->p[0], N = (double)s->N, nrm = 1.0 / (N * B), sq = 0, quant = 0;
    double *h = dh_malloc(e, (size_t)K * 3, sizeof(double));
    if (!h) return DH_ENOMEM;
    double *Gh = h + K, *t = h + 2 * K;
    for (int i = 0; i < B; i++) {
        const double *ui = u + (size_t)i * K;
        const float *v = s->V + (size_t)b->idx[i] * K;
        const double *c = s->cs + (size_t)b->labels[i] * K;
        for (int k = 0; k < K; k++) h[k] = tanh(ui[k]);
        for (int a = 0; a < K; a++) {
            Gh[a] = 0;
            for (int k = 0; k < K; k++) Gh[a] += s->G[(size_t)a * K + k] * h[k];
            t[a] = 2 * c[a] - s->vs[a]; /* sum_j S_ij v_j */
        }
        sq += dl_dot(h, Gh, K) - 2.0 * K * dl_dot(h, t, K) + (double)K * K * N;
        for (int k = 0; k < K; k++) {
            double r = v[k] - h[k];
            quant += r * r;
            double g = (2 * Gh[k] - 2.0 * K * t[k] - 2 * gamma * r) * nrm;
            du[(size_t)i * K + k] += g * (1 - h[k] * h[k]);
        }
        if (b->learn) {
            float *ub = s->Ub + (size_t)b->idx[i] * K;
            for (int k = 0; k < K; k++) ub[k] = (float)h[k];
            s->seen[b->idx[i]] = 1;
        }
    }
    st->term[0] = sq * nrm;
    st->term[1] = gamma * quant * nrm;
    st->loss = st->term[0] + st->term[1];
    free(h);
    return DH_OK;
}

/* V-step over Omega = the rows seen since the last one (the paper's
 * sampled query set), Ubar = their h (0 elsewhere):
 *   Q = -2K S^T Ubar - 2 gamma Ubar,  M = U_Omega^T U_Omega,
 *   for each bit k in turn: V_{*k} = -sign(2 V_{*,-k} M_{-k,k} + Q_{*k}). */
int dl_adsh_epoch_end(dh_dloss *L, dh_err *e) {
    adsh_state *s = L->state;
    int K = L->cfg.bits, C = L->cfg.classes;
    double gamma = L->p[0];
    double *us = dh_calloc(e, (size_t)(C + 1) * K, sizeof(double)), *M = dh_calloc(e, (size_t)K * K, sizeof(double));
    double *q = dh_malloc(e, (size_t)K, sizeof(double));
    if (!us || !M || !q) {
        free(us);
        free(M);
        free(q);
        return DH_ENOMEM;
    }
    double *ut = us + (size_t)C * K;
    int64_t nseen = 0;
    for (int64_t j = 0; j < s->N; j++) {
        if (!s->seen[j]) continue;
        nseen++;
        const float *ub = s->Ub + (size_t)j * K;
        double *c = us + (size_t)L->db_labels[j] * K;
        for (int a = 0; a < K; a++) {
            c[a] += ub[a];
            ut[a] += ub[a];
            for (int b = 0; b < K; b++) M[(size_t)a * K + b] += (double)ub[a] * ub[b];
        }
    }
    if (nseen > 0) {
        for (int64_t j = 0; j < s->N; j++) {
            float *v = s->V + (size_t)j * K;
            const float *ub = s->Ub + (size_t)j * K;
            const double *c = us + (size_t)L->db_labels[j] * K;
            for (int k = 0; k < K; k++) q[k] = -2.0 * K * (2 * c[k] - ut[k]) - (s->seen[j] ? 2 * gamma * ub[k] : 0);
            for (int k = 0; k < K; k++) {
                double x = q[k];
                for (int k2 = 0; k2 < K; k2++)
                    if (k2 != k) x += 2 * (double)v[k2] * M[(size_t)k2 * K + k];
                v[k] = x > 0 ? -1.0f : x < 0 ? 1.0f : (v[k] != 0 ? v[k] : 1.0f);
            }
        }
        adsh_sums(L);
        memset(s->seen, 0, (size_t)s->N);
    }
    free(us);
    free(M);
    free(q);
    return DH_OK;
}
