/* test_deeploss.c — the deep hashing loss registry (kernels/hash/deeploss.h):
 * every method's gradient against central finite differences, a tiny
 * separable retrieval problem every method must solve, bad parameters,
 * determinism, and the methods' discrete steps. */
#include <stdint.h>
#include <stdlib.h>
#include "check.h"
#include "deeploss.h"
#include "hashloss.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void) {
    double a = urand() + 1e-12, b = urand();
    return sqrt(-2 * log(a)) * cos(6.283185307179586 * b);
}
/* |u| in [0.2, 0.8] or [1.2, 1.8]: away from the kinks at 0 and |u| = 1
 * (sign(u), |u| - 1) of the methods' regularisers. */
static void fill_u(float *u, int n) {
    for (int i = 0; i < n; i++) {
        double m = 0.2 + 0.6 * urand() + (urand() < 0.5 ? 0 : 1.0);
        u[i] = (float)(urand() < 0.5 ? -m : m);
    }
}

enum { NB = 20 }; /* database rows for the stateful methods */

typedef struct setup {
    dh_dloss *L;
    int K, C;
    int32_t db[NB];
} setup;

static int make(const char *name, const char *const *params, int np, int K, int C, uint64_t seed, setup *s) {
    dh_dloss_config c = { K, C, seed, NB };
    dh_err e;
    s->K = K;
    s->C = C;
    for (int i = 0; i < NB; i++) s->db[i] = i % C;
    if (dh_dloss_create(name, params, np, &c, &s->L, &e)) {
        printf("# %s: %s\n", name, e.msg);
        return -1;
    }
    if (dh_dloss_set_database(s->L, s->db, NULL, NB, &e)) {
        printf("# %s: %s\n", name, e.msg);
        dh_dloss_free(s->L);
        return -1;
    }
    return 0;
}

static double loss_at(dh_dloss *L, dh_dloss_batch *b) {
    dh_dloss_stats st;
    dh_err e;
    if (dh_dloss_eval(L, b, NULL, &st, &e)) return NAN;
    return st.loss;
}

/* Largest |fd - analytic| over the coordinates, relative to the largest
 * |analytic| entry; -1 on an evaluation error. */
static double fd_error(dh_dloss *L, dh_dloss_batch *b, float *u, int n, float h) {
    float *g = malloc(sizeof(float) * n);
    dh_dloss_stats st;
    dh_err e;
    double gmax = 0, emax = 0;
    if (dh_dloss_eval(L, b, g, &st, &e)) {
        printf("# eval: %s\n", e.msg);
        free(g);
        return -1;
    }
    for (int t = 0; t < n; t++) gmax = fmax(gmax, fabs(g[t]));
    for (int t = 0; t < n; t++) {
        float keep = u[t], up = keep + h, um = keep - h;
        u[t] = up;
        double lp = loss_at(L, b);
        u[t] = um;
        double lm = loss_at(L, b);
        u[t] = keep;
        double fd = (lp - lm) / ((double)up - (double)um);
        emax = fmax(emax, fabs(fd - g[t]));
    }
    free(g);
    return gmax > 0 ? emax / gmax : emax;
}

/* A batch of B rows of the database (rows 0..B-1 of a seeded permutation). */
static void make_batch(dh_dloss_batch *b, float *u, int32_t *lab, uint8_t *multi, int64_t *idx, const setup *s, int B,
                       int use_multi) {
    int perm[NB];
    for (int i = 0; i < NB; i++) perm[i] = i;
    for (int i = NB - 1; i > 0; i--) {
        int j = (int)(urand() * (i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int i = 0; i < B; i++) {
        idx[i] = perm[i];
        lab[i] = s->db[perm[i]];
        for (int c = 0; c < s->C; c++) multi[i * s->C + c] = (c == lab[i]) || urand() < 0.25;
    }
    fill_u(u, B * s->K);
    memset(b, 0, sizeof *b);
    b->u = u;
    b->rows = B;
    b->labels = use_multi ? NULL : lab;
    b->multi = use_multi ? multi : NULL;
    b->idx = idx;
}

/* Give the stateful methods some state: two learn-mode batches and an epoch end. */
static void warm_state(setup *s) {
    float u[NB * 64];
    int32_t lab[NB];
    uint8_t multi[NB * 8];
    int64_t idx[NB];
    dh_dloss_batch b;
    dh_err e;
    for (int r = 0; r < 2; r++) {
        make_batch(&b, u, lab, multi, idx, s, NB, 0);
        b.learn = 1;
        dh_dloss_eval(s->L, &b, NULL, NULL, &e);
    }
    dh_dloss_epoch_end(s->L, &e);
}

static void t_gradients_fd(void) {
    int K = 12, C = 3, B = 8;
    for (int m = 0; m < dh_dloss_count(); m++) {
        const dh_dloss_method *me = dh_dloss_method_at(m);
        int is_paper = strcmp(me->name, "deephash") == 0;
        float h = is_paper ? 1.0f / 128 : 1.0f / 4096;
        double tol = is_paper ? 2e-2 : 1e-4, worst = 0;
        for (int point = 0; point < 4; point++) {
            int use_multi = point == 3;
            if (use_multi && !(me->flags & DH_DLOSS_MULTILABEL)) continue;
            setup s;
            const char *p16[] = { "centres=bernoulli" };
            REQUIRE(make(me->name, strcmp(me->name, "csq") == 0 ? p16 : NULL, strcmp(me->name, "csq") == 0, K, C,
                         11 + point, &s) == 0);
            warm_state(&s);
            float u[8 * 12];
            int32_t lab[8];
            uint8_t multi[8 * 3];
            int64_t idx[8];
            dh_dloss_batch b;
            make_batch(&b, u, lab, multi, idx, &s, B, use_multi);
            b.step = point == 2 ? 3000 : 0; /* HashNet's continuation: beta = sqrt(16) */
            b.relaxed = 1;                  /* GreedyHash: the function its gradient differentiates */
            double err = fd_error(s.L, &b, u, B * K, h);
            CHECKF(err >= 0 && err < tol, "%s point %d: gradient error %g (tolerance %g)", me->name, point, err, tol);
            worst = fmax(worst, err);
            dh_dloss_free(s.L);
        }
        printf("# gradient %-10s max |fd - analytic| / max |analytic| = %.2e\n", me->name, worst);
    }
}

/* GreedyHash's straight-through gradient is the relaxed gradient at
 * sign(u) plus the penalty's own derivative. */
static void t_greedyhash_straight_through(void) {
    int K = 12, C = 3, B = 8;
    setup s;
    REQUIRE(make("greedyhash", NULL, 0, K, C, 5, &s) == 0);
    float u[8 * 12], us[8 * 12], g[8 * 12], gs[8 * 12];
    int32_t lab[8];
    uint8_t multi[8 * 3];
    int64_t idx[8];
    dh_dloss_batch b, bs;
    dh_err e;
    make_batch(&b, u, lab, multi, idx, &s, B, 0);
    REQUIRE(dh_dloss_eval(s.L, &b, g, NULL, &e) == DH_OK);
    for (int t = 0; t < B * K; t++) us[t] = u[t] > 0 ? 1.0f : -1.0f;
    bs = b;
    bs.u = us;
    bs.relaxed = 1;
    REQUIRE(dh_dloss_eval(s.L, &bs, gs, NULL, &e) == DH_OK);
    double alpha = dh_dloss_param_value(s.L, "alpha");
    for (int t = 0; t < B * K; t++) {
        double a = fabs(u[t]) - 1, pen = alpha * 3 * a * fabs(a) * (u[t] > 0 ? 1 : -1) / (B * K);
        CHECK_NEAR(g[t] - pen, gs[t], 1e-6);
    }
    dh_dloss_free(s.L);
}

/* The adapter returns exactly what dh_hashloss_cpu returns. */
static void t_deephash_adapter(void) {
    int K = 16, C = 4, B = 10;
    const char *norms[] = { "norm=balanced", "norm=mean", "norm=sum" };
    dh_hl_norm hn[] = { DH_HL_BALANCED, DH_HL_MEAN, DH_HL_SUM };
    for (int n = 0; n < 3; n++) {
        setup s;
        REQUIRE(make("deephash", &norms[n], 1, K, C, 3, &s) == 0);
        float u[10 * 16], g[10 * 16], g2[10 * 16];
        int32_t lab[10];
        uint8_t multi[10 * 4];
        int64_t idx[10];
        dh_dloss_batch b;
        dh_dloss_stats st;
        dh_hashloss_stats hs;
        dh_err e;
        make_batch(&b, u, lab, multi, idx, &s, B, 0);
        REQUIRE(dh_dloss_eval(s.L, &b, g, &st, &e) == DH_OK);
        dh_hashloss_opts o = { hn[n], hn[n] == DH_HL_SUM ? 1.0 : (double)K * K };
        REQUIRE(dh_hashloss_cpu(u, lab, B, K, &o, g2, &hs, &e) == DH_OK);
        CHECK(memcmp(g, g2, sizeof g) == 0);
        CHECK(st.loss == hs.surrogate && st.term[1] == hs.q);
        dh_dloss_free(s.L);
    }
}

/* ---- the tiny separable problem: 4 Gaussian blobs in 16-D, a linear hash
 * layer u = W x + c trained by plain SGD on each loss's gradient ---- */
enum { D = 16, NC = 4, NTR = 400, NQ = 100, KB = 16, BATCH = 50 };

static double map_hamming(const float *qc, const int32_t *ql, int nq, const float *dc, const int32_t *dl, int nd,
                          int K) {
    int *dist = malloc(sizeof(int) * nd), *order = malloc(sizeof(int) * nd);
    double sum = 0;
    for (int q = 0; q < nq; q++) {
        for (int j = 0; j < nd; j++) {
            int d = 0;
            for (int k = 0; k < K; k++) d += (qc[q * K + k] > 0) != (dc[j * K + k] > 0);
            dist[j] = d;
        }
        int o = 0; /* counting sort by distance, database order within ties */
        for (int d = 0; d <= K; d++)
            for (int j = 0; j < nd; j++)
                if (dist[j] == d) order[o++] = j;
        double hits = 0, ap = 0;
        for (int r = 0; r < nd; r++)
            if (dl[order[r]] == ql[q]) {
                hits++;
                ap += hits / (r + 1);
            }
        sum += hits > 0 ? ap / hits : 0;
    }
    free(dist);
    free(order);
    return sum / nq;
}

typedef struct blobs {
    float xtr[NTR * D], xq[NQ * D];
    int32_t ytr[NTR], yq[NQ];
} blobs;

static void make_blobs(blobs *bl) {
    float mean[NC * D];
    rng = 0x1234567887654321ull;
    for (int t = 0; t < NC * D; t++) mean[t] = (float)nrand();
    for (int i = 0; i < NTR + NQ; i++) {
        int c = i % NC;
        float *x = i < NTR ? bl->xtr + i * D : bl->xq + (i - NTR) * D;
        if (i < NTR)
            bl->ytr[i] = c;
        else
            bl->yq[i - NTR] = c;
        for (int d = 0; d < D; d++) x[d] = mean[c * D + d] + (float)nrand();
    }
}

/* Trains a method on the blobs; returns the queries' mAP against the
 * training set (ADSH: against its learned database codes V). */
static double train_blobs(const blobs *bl, const char *name, const char *const *params, int np, double lr, int epochs,
                          uint64_t seed, double *loss0, double *loss1) {
    dh_dloss_config c = { KB, NC, seed, NTR };
    dh_dloss *L;
    dh_err e;
    if (dh_dloss_create(name, params, np, &c, &L, &e) || dh_dloss_set_database(L, bl->ytr, NULL, NTR, &e)) {
        printf("# %s: %s\n", name, e.msg);
        return -1;
    }
    float W[KB * D], cb[KB], u[BATCH * KB], du[BATCH * KB], xb[BATCH * D];
    int32_t yb[BATCH];
    int64_t idx[BATCH];
    int perm[NTR];
    uint64_t r = seed * 0x9e3779b97f4a7c15ull + 1;
    for (int t = 0; t < KB * D; t++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        W[t] = (float)(((double)(r >> 11) / 9007199254740992.0 - 0.5) * 0.5);
    }
    memset(cb, 0, sizeof cb);
    for (int i = 0; i < NTR; i++) perm[i] = i;
    int64_t step = 0;
    double first = NAN, last = 0;
    for (int ep = 0; ep < epochs; ep++) {
        for (int i = NTR - 1; i > 0; i--) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            int j = (int)(r % (uint64_t)(i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        double sum = 0;
        for (int s0 = 0; s0 + BATCH <= NTR; s0 += BATCH) {
            for (int i = 0; i < BATCH; i++) {
                int row = perm[s0 + i];
                idx[i] = row;
                yb[i] = bl->ytr[row];
                memcpy(xb + i * D, bl->xtr + row * D, sizeof(float) * D);
                for (int k = 0; k < KB; k++) {
                    double a = cb[k];
                    for (int d = 0; d < D; d++) a += W[k * D + d] * xb[i * D + d];
                    u[i * KB + k] = (float)a;
                }
            }
            dh_dloss_batch b = {
                .u = u, .rows = BATCH, .labels = yb, .idx = idx, .step = step++, .epoch = ep, .learn = 1
            };
            dh_dloss_stats st;
            if (dh_dloss_eval(L, &b, du, &st, &e)) {
                printf("# %s: %s\n", name, e.msg);
                dh_dloss_free(L);
                return -1;
            }
            sum += st.loss;
            for (int k = 0; k < KB; k++) {
                double gc = 0;
                for (int i = 0; i < BATCH; i++) gc += du[i * KB + k];
                cb[k] -= (float)(lr * gc);
                for (int d = 0; d < D; d++) {
                    double g = 0;
                    for (int i = 0; i < BATCH; i++) g += du[i * KB + k] * xb[i * D + d];
                    W[k * D + d] -= (float)(lr * g);
                }
            }
        }
        if (dh_dloss_epoch_end(L, &e)) {
            printf("# %s: %s\n", name, e.msg);
            dh_dloss_free(L);
            return -1;
        }
        if (ep == 0) first = sum / (NTR / BATCH);
        last = sum / (NTR / BATCH);
    }
    static float qc[NQ * KB], dcodes[NTR * KB];
    for (int i = 0; i < NQ + NTR; i++) {
        const float *x = i < NQ ? bl->xq + i * D : bl->xtr + (i - NQ) * D;
        float *o = i < NQ ? qc + i * KB : dcodes + (i - NQ) * KB;
        for (int k = 0; k < KB; k++) {
            double a = cb[k];
            for (int d = 0; d < D; d++) a += W[k * D + d] * x[d];
            o[k] = (float)a;
        }
    }
    if (dh_dloss_method_of(L)->flags & DH_DLOSS_ASYM) {
        int64_t rows;
        int cols;
        const float *V = dh_dloss_tensor(L, "V", &rows, &cols);
        if (V && rows == NTR && cols == KB) memcpy(dcodes, V, sizeof dcodes);
    }
    double map = map_hamming(qc, bl->yq, NQ, dcodes, bl->ytr, NTR, KB);
    if (loss0) *loss0 = first;
    if (loss1) *loss1 = last;
    dh_dloss_free(L);
    return map;
}

static void t_tiny_problem_map(void) {
    static blobs bl;
    make_blobs(&bl);
    double base = -1;
    { /* the random initial hash layer, for reference */
        base = train_blobs(&bl, "dpsh", NULL, 0, 0.0, 1, 1, NULL, NULL);
        printf("# tiny problem: random linear hash layer mAP %.4f\n", base);
    }
    for (int m = 0; m < dh_dloss_count(); m++) {
        const dh_dloss_method *me = dh_dloss_method_at(m);
        const char *gp[] = { "lr=0.1" }; /* GreedyHash's classifier: same scale as the hash layer */
        int is_greedy = strcmp(me->name, "greedyhash") == 0;
        double l0, l1;
        double map = train_blobs(&bl, me->name, is_greedy ? gp : NULL, is_greedy, me->lr_hint, 30, 7, &l0, &l1);
        printf("# tiny problem %-10s lr %-5g mAP %.4f (loss %.4g -> %.4g)\n", me->name, me->lr_hint, map, l0, l1);
        CHECKF(map >= 0.9, "%s: mAP %.4f < 0.9 (random layer %.4f)", me->name, map, base);
    }
}

/* ---- parameters and batches refused ---- */
static int refused(const char *spec, int K, int C, int64_t N, dh_code code, const char *needle) {
    dh_dloss_config c = { K, C, 1, N };
    dh_dloss *L = NULL;
    dh_err e;
    e.msg[0] = 0;
    int rc = dh_dloss_create_spec(spec, &c, &L, &e);
    int ok = rc == (int)code && L == NULL && strstr(e.msg, needle) && !strchr(e.msg, '\n');
    if (!ok) printf("# %s: rc %d, '%s'\n", spec, rc, e.msg);
    dh_dloss_free(L);
    return ok;
}

static void t_bad_parameters(void) {
    CHECK(refused("nosuch", 16, 4, 0, DH_EINVAL, "unknown method 'nosuch'"));
    CHECK(refused("", 16, 4, 0, DH_EINVAL, "empty"));
    CHECK(refused("dpsh:foo=1", 16, 4, 0, DH_EINVAL, "unknown parameter 'foo' (parameters: eta)"));
    CHECK(refused("dpsh:eta=-1", 16, 4, 0, DH_EINVAL, "eta=-1: not a number in [0, 1e+06]"));
    CHECK(refused("dpsh:eta=abc", 16, 4, 0, DH_EINVAL, "eta=abc"));
    CHECK(refused("dpsh:eta=nan", 16, 4, 0, DH_EINVAL, "eta=nan"));
    CHECK(refused("dpsh:eta=", 16, 4, 0, DH_EINVAL, "eta="));
    CHECK(refused("dpsh:eta", 16, 4, 0, DH_EINVAL, "not NAME=VALUE"));
    CHECK(refused("dpsh:eta=1,eta=2", 16, 4, 0, DH_EINVAL, "given twice"));
    CHECK(refused("hashnet:step_size=2.5", 16, 4, 0, DH_EINVAL, "not an integer"));
    CHECK(refused("hashnet:alpha=0", 16, 4, 0, DH_EINVAL, "alpha=0"));
    CHECK(refused("csq:centres=gauss", 16, 4, 0, DH_EINVAL, "not one of auto,hadamard,bernoulli"));
    CHECK(refused("csq:centres=hadamard", 12, 4, 0, DH_EINVAL, "K a power of 2"));
    CHECK(refused("csq:centres=hadamard", 16, 40, 0, DH_EINVAL, "at most 2K classes"));
    CHECK(refused("csq", 16, 0, 0, DH_EINVAL, "number of classes"));
    CHECK(refused("mihash:nbins=20", 16, 4, 0, DH_EINVAL, "more bins than bits"));
    CHECK(refused("adsh", 16, 4, 0, DH_EINVAL, "database size"));
    CHECK(refused("dsdh", 16, 4, 0, DH_EINVAL, "database size"));
    CHECK(refused("dpsh", 0, 4, 0, DH_EINVAL, "bits 0"));
    CHECK(refused("deephash:norm=median", 16, 4, 0, DH_EINVAL, "not one of balanced,mean,sum"));
    /* accepted: names are case-insensitive, values in range */
    dh_dloss_config c = { 16, 4, 1, 0 };
    dh_dloss *L;
    dh_err e;
    REQUIRE(dh_dloss_create_spec("HashNet:alpha=0.5,step_size=100", &c, &L, &e) == DH_OK);
    CHECK(dh_dloss_param_value(L, "alpha") == 0.5 && dh_dloss_param_value(L, "step_size") == 100);
    CHECK(fabs(dh_dloss_param_value(L, "power") - 0.5) < 1e-15 && isnan(dh_dloss_param_value(L, "nope")));
    dh_dloss_free(L);
}

static void t_bad_batches(void) {
    setup s;
    dh_err e;
    REQUIRE(make("dpsh", NULL, 0, 8, 3, 1, &s) == 0);
    float u[4 * 8];
    int32_t lab[4] = { 0, 1, 2, 0 };
    uint8_t multi[4 * 3] = { 0 };
    int64_t idx[4] = { 0, 1, 2, 3 };
    fill_u(u, 32);
    dh_dloss_batch b = { .u = u, .rows = 1, .labels = lab };
    CHECK(dh_dloss_eval(s.L, &b, NULL, NULL, &e) == DH_EINVAL && strstr(e.msg, "2.."));
    b.rows = 4;
    lab[2] = 3;
    CHECK(dh_dloss_eval(s.L, &b, NULL, NULL, &e) == DH_EINVAL && strstr(e.msg, "label 3 out of range"));
    lab[2] = 2;
    b.multi = multi;
    CHECK(dh_dloss_eval(s.L, &b, NULL, NULL, &e) == DH_EINVAL && strstr(e.msg, "exactly one"));
    b.multi = NULL;
    u[5] = NAN;
    CHECK(dh_dloss_eval(s.L, &b, NULL, NULL, &e) == DH_EINVAL && strstr(e.msg, "not finite"));
    u[5] = 0.5f;
    CHECK(dh_dloss_eval(s.L, &b, NULL, NULL, &e) == DH_OK);
    dh_dloss_free(s.L);
    /* single-label methods refuse multi-hot labels */
    REQUIRE(make("greedyhash", NULL, 0, 8, 3, 1, &s) == 0);
    b.labels = NULL;
    b.multi = multi;
    CHECK(dh_dloss_eval(s.L, &b, NULL, NULL, &e) == DH_EUNSUPPORTED && strstr(e.msg, "single-label"));
    dh_dloss_free(s.L);
    /* DSDH needs the rows' database indices, in range */
    REQUIRE(make("dsdh", NULL, 0, 8, 3, 1, &s) == 0);
    b.labels = lab;
    b.multi = NULL;
    CHECK(dh_dloss_eval(s.L, &b, NULL, NULL, &e) == DH_EINVAL && strstr(e.msg, "idx"));
    idx[3] = NB;
    b.idx = idx;
    CHECK(dh_dloss_eval(s.L, &b, NULL, NULL, &e) == DH_EINVAL && strstr(e.msg, "out of range"));
    idx[3] = 3;
    CHECK(dh_dloss_eval(s.L, &b, NULL, NULL, &e) == DH_OK);
    dh_dloss_free(s.L);
    /* ADSH needs the database's labels first */
    dh_dloss_config c = { 8, 3, 1, NB };
    dh_dloss *L;
    REQUIRE(dh_dloss_create("adsh", NULL, 0, &c, &L, &e) == DH_OK);
    CHECK(dh_dloss_eval(L, &b, NULL, NULL, &e) == DH_EINVAL && strstr(e.msg, "database's labels"));
    int32_t db[NB] = { 0 };
    CHECK(dh_dloss_set_database(L, db, NULL, NB - 1, &e) == DH_EINVAL);
    db[4] = 7;
    CHECK(dh_dloss_set_database(L, db, NULL, NB, &e) == DH_EINVAL && strstr(e.msg, "label 7"));
    dh_dloss_free(L);
}

/* ---- determinism ---- */
static void t_determinism(void) {
    for (int m = 0; m < dh_dloss_count(); m++) {
        const dh_dloss_method *me = dh_dloss_method_at(m);
        float g[2][8 * 12];
        double loss[2];
        for (int run = 0; run < 2; run++) {
            setup s;
            rng = 42;
            REQUIRE(make(me->name, NULL, 0, 12, 3, 99, &s) == 0);
            warm_state(&s);
            float u[8 * 12];
            int32_t lab[8];
            uint8_t multi[8 * 3];
            int64_t idx[8];
            dh_dloss_batch b;
            dh_dloss_stats st;
            dh_err e;
            make_batch(&b, u, lab, multi, idx, &s, 8, 0);
            b.learn = 1;
            REQUIRE(dh_dloss_eval(s.L, &b, g[run], &st, &e) == DH_OK);
            loss[run] = st.loss;
            dh_dloss_free(s.L);
        }
        CHECKF(memcmp(g[0], g[1], sizeof g[0]) == 0 && loss[0] == loss[1], "%s: two runs differ", me->name);
    }
    /* the seed reaches the codebooks and the classifier */
    const char *names[] = { "csq", "orthohash", "greedyhash" }, *tensors[] = { "centres", "centres", "W" };
    const char *pb[] = { "centres=bernoulli" };
    for (int t = 0; t < 3; t++) {
        dh_dloss_config c1 = { 12, 5, 1, 0 }, c2 = { 12, 5, 2, 0 };
        dh_dloss *a, *b2;
        dh_err e;
        REQUIRE(dh_dloss_create(names[t], t == 0 ? pb : NULL, t == 0, &c1, &a, &e) == DH_OK);
        REQUIRE(dh_dloss_create(names[t], t == 0 ? pb : NULL, t == 0, &c2, &b2, &e) == DH_OK);
        int64_t r1, r2;
        int k1, k2;
        const float *x = dh_dloss_tensor(a, tensors[t], &r1, &k1), *y = dh_dloss_tensor(b2, tensors[t], &r2, &k2);
        REQUIRE(x && y && r1 == r2 && k1 == k2);
        CHECKF(memcmp(x, y, sizeof(float) * (size_t)(r1 * k1)) != 0, "%s: seeds 1 and 2 give the same %s", names[t],
               tensors[t]);
        dh_dloss_free(a);
        dh_dloss_free(b2);
    }
}

/* ---- codebooks ---- */
static void t_codebooks(void) {
    dh_dloss_config c = { 16, 4, 1, 0 };
    dh_dloss *L;
    dh_err e;
    int64_t rows;
    int cols;
    REQUIRE(dh_dloss_create("csq", NULL, 0, &c, &L, &e) == DH_OK); /* auto: Hadamard */
    const float *cb = dh_dloss_tensor(L, "centres", &rows, &cols);
    REQUIRE(cb && rows == 4 && cols == 16);
    for (int a = 0; a < 4; a++)
        for (int b = a + 1; b < 4; b++) {
            int d = 0;
            for (int k = 0; k < 16; k++) d += cb[a * 16 + k] != cb[b * 16 + k];
            CHECK(d == 8); /* rows of a Hadamard matrix: half the bits differ */
        }
    dh_dloss_free(L);
    c.classes = 20; /* 20 > 2K? no: 20 <= 32 -> [H; -H] rows */
    REQUIRE(dh_dloss_create("csq", NULL, 0, &c, &L, &e) == DH_OK);
    cb = dh_dloss_tensor(L, "centres", &rows, &cols);
    for (int k = 0; k < 16; k++) CHECK(cb[16 * 16 + k] == -cb[0 * 16 + k]);
    dh_dloss_free(L);
    c.bits = 12; /* not a power of 2: Bernoulli, codewords distinct */
    c.classes = 10;
    REQUIRE(dh_dloss_create("csq", NULL, 0, &c, &L, &e) == DH_OK);
    cb = dh_dloss_tensor(L, "centres", &rows, &cols);
    int mind = 12;
    for (int a = 0; a < 10; a++)
        for (int b = a + 1; b < 10; b++) {
            int d = 0;
            for (int k = 0; k < 12; k++) d += cb[a * 12 + k] != cb[b * 12 + k];
            if (d < mind) mind = d;
        }
    printf("# csq Bernoulli centres, 10 classes at 12 bits: closest pair %d bits apart\n", mind);
    CHECK(mind >= 3);
    dh_dloss_free(L);
}

/* HashNet's continuation: beta = (1 + 0.005 t)^0.5, t rounded down to 200 steps. */
static void t_hashnet_continuation(void) {
    setup s;
    REQUIRE(make("hashnet", NULL, 0, 8, 3, 1, &s) == 0);
    float u[4 * 8];
    int32_t lab[4] = { 0, 1, 2, 0 };
    fill_u(u, 32);
    int64_t steps[] = { 0, 199, 200, 1000, 100000 };
    double want[] = { 1, 1, sqrt(2.0), sqrt(6.0), sqrt(501.0) };
    for (int i = 0; i < 5; i++) {
        dh_dloss_batch b = { .u = u, .rows = 4, .labels = lab, .step = steps[i] };
        dh_dloss_stats st;
        dh_err e;
        REQUIRE(dh_dloss_eval(s.L, &b, NULL, &st, &e) == DH_OK);
        CHECK_NEAR(st.scale, want[i], 1e-12);
    }
    dh_dloss_free(s.L);
}

/* ADSH: the class-sum evaluation equals the definition's double sum over
 * the database, and each V-step does not increase the V objective. */
static double adsh_direct(const float *V, const int32_t *db, int N, const float *u, const int32_t *lab,
                          const int64_t *idx, int B, int K, double gamma) {
    double s = 0;
    for (int i = 0; i < B; i++) {
        for (int j = 0; j < N; j++) {
            double ip = 0;
            for (int k = 0; k < K; k++) ip += tanh(u[i * K + k]) * V[j * K + k];
            double r = ip - K * (lab[i] == db[j] ? 1.0 : -1.0);
            s += r * r;
        }
        for (int k = 0; k < K; k++) {
            double r = V[idx[i] * K + k] - tanh(u[i * K + k]);
            s += gamma * r * r;
        }
    }
    return s / ((double)N * B);
}

static void t_adsh_exact_and_monotone(void) {
    setup s;
    REQUIRE(make("adsh", NULL, 0, 8, 3, 1, &s) == 0);
    int64_t rows;
    int cols;
    double gamma = dh_dloss_param_value(s.L, "gamma");
    float u[NB * 8];
    int32_t lab[NB];
    uint8_t multi[NB * 3];
    int64_t idx[NB];
    dh_dloss_batch b;
    dh_dloss_stats st;
    dh_err e;
    make_batch(&b, u, lab, multi, idx, &s, NB, 0);
    b.learn = 1;
    REQUIRE(dh_dloss_eval(s.L, &b, NULL, &st, &e) == DH_OK);
    double prev = INFINITY;
    for (int it = 0; it < 3; it++) {
        b.learn = 1;
        REQUIRE(dh_dloss_eval(s.L, &b, NULL, &st, &e) == DH_OK); /* Omega = the whole batch */
        REQUIRE(dh_dloss_epoch_end(s.L, &e) == DH_OK);
        const float *V = dh_dloss_tensor(s.L, "V", &rows, &cols);
        REQUIRE(V && rows == NB && cols == 8);
        for (int t = 0; t < NB * 8; t++) CHECK(V[t] == 1 || V[t] == -1);
        b.learn = 0;
        REQUIRE(dh_dloss_eval(s.L, &b, NULL, &st, &e) == DH_OK);
        double direct = adsh_direct(V, s.db, NB, u, lab, idx, NB, 8, gamma);
        CHECK_NEAR(st.loss, direct, 1e-9 * fabs(direct));
        CHECKF(st.loss <= prev + 1e-9 * fabs(prev), "V-step %d raised the objective %g -> %g", it, prev, st.loss);
        prev = st.loss;
    }
    dh_dloss_free(s.L);
}

/* DSDH: the W- and B-steps do not increase mu |Y - W^T B|^2 + nu |W|^2 + eta |B - U|^2. */
static double dsdh_objective(dh_dloss *L, const setup *s, const float *u, const int64_t *idx, int n) {
    int64_t rb, rw;
    int kb, cw;
    const float *Bc = dh_dloss_tensor(L, "B", &rb, &kb), *W = dh_dloss_tensor(L, "W", &rw, &cw);
    double mu = dh_dloss_param_value(L, "mu"), nu = dh_dloss_param_value(L, "nu"), eta = dh_dloss_param_value(L, "eta");
    double o = 0;
    int K = s->K, C = s->C;
    for (int i = 0; i < n; i++) {
        const float *b = Bc + idx[i] * K;
        for (int c = 0; c < C; c++) {
            double f = 0;
            for (int k = 0; k < K; k++) f += W[k * C + c] * b[k];
            double r = (s->db[idx[i]] == c) - f;
            o += mu * r * r;
        }
        for (int k = 0; k < K; k++) o += eta * (b[k] - u[i * K + k]) * (b[k] - u[i * K + k]);
    }
    for (int t = 0; t < K * C; t++) o += nu * W[t] * W[t];
    return o;
}

static void t_dsdh_steps_monotone(void) {
    setup s;
    REQUIRE(make("dsdh", NULL, 0, 8, 3, 1, &s) == 0);
    float u[NB * 8];
    int32_t lab[NB];
    uint8_t multi[NB * 3];
    int64_t idx[NB];
    dh_dloss_batch b;
    dh_err e;
    make_batch(&b, u, lab, multi, idx, &s, NB, 0);
    b.learn = 1;
    REQUIRE(dh_dloss_eval(s.L, &b, NULL, NULL, &e) == DH_OK);
    REQUIRE(dh_dloss_epoch_end(s.L, &e) == DH_OK); /* first W from B = sign(U) */
    double prev = dsdh_objective(s.L, &s, u, idx, NB);
    for (int it = 0; it < 3; it++) {
        REQUIRE(dh_dloss_epoch_end(s.L, &e) == DH_OK);
        double o = dsdh_objective(s.L, &s, u, idx, NB);
        CHECKF(o <= prev + 1e-6 * fabs(prev), "epoch end %d raised the objective %g -> %g", it, prev, o);
        prev = o;
    }
    dh_dloss_free(s.L);
}

static void t_registry(void) {
    CHECK(dh_dloss_count() >= 13);
    const char *need[] = { "deephash", "dpsh", "dhn",       "hashnet", "dch",        "dsh", "dtsh",
                           "mihash",   "csq",  "orthohash", "dsdh",    "greedyhash", "adsh" };
    for (int i = 0; i < 13; i++) CHECKF(dh_dloss_find(need[i]) != NULL, "%s missing", need[i]);
    CHECK(dh_dloss_find("DPSH") == dh_dloss_find("dpsh") && dh_dloss_find("x") == NULL);
    for (int m = 0; m < dh_dloss_count(); m++) {
        const dh_dloss_method *me = dh_dloss_method_at(m);
        CHECK(me->title && me->summary && me->input && me->group && me->eval && me->lr_hint > 0);
        for (int p = 0; p < me->nparams; p++) {
            const dh_dloss_param *pa = &me->params[p];
            CHECKF(pa->doc && (pa->choices ||
                               (dh_dloss_param_default(pa, 48) >= pa->lo && dh_dloss_param_default(pa, 48) <= pa->hi)),
                   "%s.%s: default outside its range", me->name, pa->name);
        }
    }
    CHECK_NEAR(dh_dloss_param_default(&dh_dloss_find("hashnet")->params[0], 16), 0.625, 1e-15);
    CHECK(dh_dloss_param_default(&dh_dloss_find("mihash")->params[0], 48) == 24);
    CHECK(dh_dloss_param_default(&dh_dloss_find("dsh")->params[0], 48) == 96);
    static char buf[16384];
    CHECK(dh_dloss_describe(buf, sizeof buf) == 0 && strstr(buf, "adsh") && strstr(buf, "alpha=10*K^-1"));
}

/* The device path's contract as far as a host can check it: which methods
 * are flagged, the refusal of the others and of bad batches before any
 * CUDA call, and DH_EDEVICE from a build without the CUDA backend (the GPU
 * comparison is tests/gpu/test_deeploss.c). */
static void t_device_path(void) {
    const char *dev[] = { "deephash", "dpsh", "dhn", "hashnet", "dch", "dsh", "dtsh", "mihash", "csq", "orthohash" };
    const char *host[] = { "greedyhash", "dsdh", "adsh" };
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        CHECKF(dh_dloss_find(dev[i]) && (dh_dloss_find(dev[i])->flags & DH_DLOSS_DEVICE), "%s not flagged", dev[i]);
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        CHECKF(dh_dloss_find(host[i]) && !(dh_dloss_find(host[i])->flags & DH_DLOSS_DEVICE), "%s flagged", host[i]);
    CHECK(dh_dloss_count() == 13);
    int32_t lab[4] = { 0, 1, 0, 1 };
    int64_t idx[4] = { 0, 1, 2, 3 };
    float fake = 0;
    dh_err e;
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) {
        setup s;
        REQUIRE(make(host[i], NULL, 0, 16, 2, 3, &s) == 0);
        dh_dloss_batch b = { .rows = 4, .labels = lab, .idx = idx };
        CHECKF(dh_dloss_eval_cuda(s.L, &b, &fake, NULL, NULL, &e) == DH_EUNSUPPORTED, "%s: %s", host[i], e.msg);
        dh_dloss_free(s.L);
    }
    setup s;
    REQUIRE(make("dpsh", NULL, 0, 16, 2, 3, &s) == 0);
    dh_dloss_batch one = { .rows = 1, .labels = lab };
    CHECK(dh_dloss_eval_cuda(s.L, &one, &fake, NULL, NULL, &e) == DH_EINVAL); /* one row: the batch check */
    dh_dloss_batch bad = { .rows = 4, .labels = lab };
    CHECK(dh_dloss_eval_cuda(s.L, &bad, NULL, NULL, NULL, &e) == DH_EINVAL); /* no device u */
#if !DH_USE_CUDA
    dh_dloss_batch b = { .rows = 4, .labels = lab };
    CHECKF(dh_dloss_eval_cuda(s.L, &b, &fake, NULL, NULL, &e) == DH_EDEVICE, "%s", e.msg);
#endif
    dh_dloss_free(s.L);
    dh_dloss_cuda_release(); /* never loads the backend */
}

int main(void) {
    RUN(t_registry);
    RUN(t_device_path);
    RUN(t_gradients_fd);
    RUN(t_greedyhash_straight_through);
    RUN(t_deephash_adapter);
    RUN(t_bad_parameters);
    RUN(t_bad_batches);
    RUN(t_determinism);
    RUN(t_codebooks);
    RUN(t_hashnet_continuation);
    RUN(t_adsh_exact_and_monotone);
    RUN(t_dsdh_steps_monotone);
    RUN(t_tiny_problem_map);
    return check_done();
}
