/* test_hash_methods.c — the baseline hashing methods (kernels/hash_<m>.c):
 * each method's defining property on small synthetic data, supervised
 * methods against LSH by mAP, bad inputs, determinism, and model round trips.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "dhs.h"
#include "hashfn.h"
#include "hash_linalg.h"

/* ---- helpers ---------------------------------------------------------------- */

/* C classes; the class signal lives in the first `sig` dimensions (means
 * N(0, sep^2)), the other D - sig dimensions are N(0, noise^2) clutter. */
static void make_classes(int64_t N, int D, int C, int sig, double sep, double noise, uint64_t seed, float *x,
                         int32_t *lab) {
    hl_rng r;
    hl_rng_seed(&r, 12345); /* class means fixed, samples vary with seed */
    double *mu = malloc(sizeof(double) * C * D);
    for (int c = 0; c < C; c++)
        for (int d = 0; d < D; d++) mu[c * D + d] = d < sig ? sep * hl_rng_normal(&r) : 0;
    hl_rng_seed(&r, seed);
    for (int64_t i = 0; i < N; i++) {
        int c = (int)(i % C);
        lab[i] = 10 + 3 * c; /* arbitrary label values */
        for (int d = 0; d < D; d++) x[i * D + d] = (float)(mu[c * D + d] + (d < sig ? 1.0 : noise) * hl_rng_normal(&r));
    }
    free(mu);
}

static int fit(const char *method, const float *x, const int32_t *lab, int64_t N, int D, int K, const dh_hash_opts *o,
               dhs_model *m, dh_err *e) {
    const dh_hash_method *hm = dh_hash_method_find(method);
    if (!hm) return dh_seterr(e, DH_EINVAL, "no method %s", method);
    dhs_model_init(m);
    return hm->fit(x, lab, N, D, K, o, m, e);
}

/* codes (n, K) as 0/1 bytes through the generic binding */
static int encode(const dhs_model *m, const float *x, int64_t n, uint8_t *bits, int K, dh_err *e) {
    dh_hashfn h;
    int rc = dh_hashfn_bind(&h, m, "", e);
    if (rc) return rc;
    int nb = (K + 7) / 8;
    uint8_t *packed = malloc((size_t)n * nb);
    rc = dh_hashfn_encode(&h, x, n, packed, e);
    for (int64_t i = 0; i < n && !rc; i++)
        for (int k = 0; k < K; k++) bits[i * K + k] = (packed[i * nb + k / 8] >> (k % 8)) & 1;
    free(packed);
    return rc;
}

/* mAP of Hamming ranking: queries q against database db, ties by db order */
static double map_score(const uint8_t *qb, const int32_t *ql, int64_t nq, const uint8_t *db, const int32_t *dl,
                        int64_t nd, int K) {
    int *dist = malloc(sizeof(int) * nd);
    int64_t *cnt = calloc((size_t)K + 2, sizeof *cnt);
    int64_t *order = malloc(sizeof(int64_t) * nd);
    double total = 0;
    for (int64_t q = 0; q < nq; q++) {
        memset(cnt, 0, sizeof(int64_t) * (K + 2));
        for (int64_t i = 0; i < nd; i++) {
            int h = 0;
            for (int k = 0; k < K; k++) h += qb[q * K + k] != db[i * K + k];
            dist[i] = h;
            cnt[h + 1]++;
        }
        for (int k = 1; k <= K + 1; k++) cnt[k] += cnt[k - 1];
        for (int64_t i = 0; i < nd; i++) order[cnt[dist[i]]++] = i; /* stable counting sort */
        double ap = 0;
        int64_t rel = 0;
        for (int64_t t = 0; t < nd; t++)
            if (dl[order[t]] == ql[q]) {
                rel++;
                ap += (double)rel / (t + 1);
            }
        total += rel ? ap / rel : 0;
    }
    free(dist);
    free(cnt);
    free(order);
    return total / nq;
}

static double bit_fraction(const uint8_t *b, int64_t n, int K, int k) {
    int64_t s = 0;
    for (int64_t i = 0; i < n; i++) s += b[i * K + k];
    return (double)s / n;
}

/* ---- PCAH ------------------------------------------------------------------- */
static void t_pcah_top_principal_directions(void) {
    const int64_t N = 4000;
    const int D = 8, K = 3;
    double sd[8] = { 5, 3, 2, 1, 0.5, 0.4, 0.3, 0.2 };
    hl_rng r;
    hl_rng_seed(&r, 7);
    double Q[64]; /* random orthogonal basis: columns are the true directions */
    dh_err e = { 0 };
    REQUIRE(hl_random_rotation(&r, D, Q, &e) == 0);
    float *x = malloc(sizeof(float) * N * D);
    for (int64_t i = 0; i < N; i++) {
        double g[8];
        for (int j = 0; j < D; j++) g[j] = sd[j] * hl_rng_normal(&r);
        for (int d = 0; d < D; d++) {
            double v = 3.0; /* offset: PCA must centre */
            for (int j = 0; j < D; j++) v += Q[d * D + j] * g[j];
            x[i * D + d] = (float)v;
        }
    }
    dh_hash_opts o;
    dh_hash_opts_init(&o);
    dhs_model m;
    REQUIRE(fit("pcah", x, NULL, N, D, K, &o, &m, &e) == 0);
    dhs_tensor *W = dhs_model_find(&m, "W");
    REQUIRE(W && W->n == K * D);
    for (int k = 0; k < K; k++) {
        double dot = 0, nrm = 0;
        for (int d = 0; d < D; d++) {
            dot += W->data[k * D + d] * Q[d * D + k];
            nrm += W->data[k * D + d] * W->data[k * D + d];
        }
        CHECK_NEAR(nrm, 1.0, 1e-4);
        CHECKF(fabs(dot) > 0.99, "direction %d: |cos| = %g", k, fabs(dot));
    }
    dhs_tensor *mean = dhs_model_find(&m, "mean");
    REQUIRE(mean);
    CHECK_NEAR(mean->data[0], 3.0, 0.3);
    dhs_model_free(&m);
    free(x);
}

/* ---- ITQ -------------------------------------------------------------------- */
static void t_itq_loss_nonincreasing(void) {
    const int64_t N = 800;
    const int K = 8, T = 30;
    hl_rng r;
    hl_rng_seed(&r, 3);
    float *V = malloc(sizeof(float) * N * K);
    for (int64_t i = 0; i < N * K; i++) V[i] = (float)(hl_rng_normal(&r) * (1 + (i % K)) * 0.3);
    double R[64], loss[30];
    dh_err e = { 0 };
    REQUIRE(hl_itq_rotate(V, N, K, T, &r, R, loss, &e) == 0);
    for (int t = 1; t < T; t++)
        CHECKF(loss[t] <= loss[t - 1] * (1 + 1e-5), "loss rose at %d: %g -> %g", t, loss[t - 1], loss[t]);
    CHECKF(loss[T - 1] < loss[0], "no progress: %g -> %g", loss[0], loss[T - 1]);
    /* R orthogonal */
    for (int a = 0; a < K; a++)
        for (int b = 0; b < K; b++) {
            double s = 0;
            for (int c = 0; c < K; c++) s += R[c * K + a] * R[c * K + b];
            CHECK_NEAR(s, a == b ? 1.0 : 0.0, 1e-8);
        }
    printf("# itq loss %g -> %g over %d iterations\n", loss[0], loss[T - 1], T);
    free(V);
}

static void t_itq_model_rotates_pca(void) {
    /* the ITQ hash is W = R^T P: rows orthonormal, spanning the PCA subspace */
    const int64_t N = 1000;
    const int D = 12, K = 4;
    float *x = malloc(sizeof(float) * N * D);
    int32_t *lab = malloc(sizeof(int32_t) * N);
    make_classes(N, D, 4, 12, 3.0, 1.0, 5, x, lab);
    dh_hash_opts o;
    dh_hash_opts_init(&o);
    dhs_model mi, mp;
    dh_err e = { 0 };
    REQUIRE(fit("itq", x, NULL, N, D, K, &o, &mi, &e) == 0);
    REQUIRE(fit("pcah", x, NULL, N, D, K, &o, &mp, &e) == 0);
    const float *Wi = dhs_model_find(&mi, "W")->data, *Wp = dhs_model_find(&mp, "W")->data;
    for (int a = 0; a < K; a++) {
        double inspan = 0;
        for (int b = 0; b < K; b++) {
            double s = 0, dp = 0;
            for (int d = 0; d < D; d++) {
                s += Wi[a * D + d] * Wi[b * D + d];
                dp += Wi[a * D + d] * Wp[b * D + d];
            }
            CHECK_NEAR(s, a == b ? 1.0 : 0.0, 1e-4);
            inspan += dp * dp;
        }
        CHECK_NEAR(inspan, 1.0, 1e-4);
    }
    int64_t it;
    CHECK(dhs_meta_int(mi.meta, "iterations", &it) == 0 && it == 50);
    dhs_model_free(&mi);
    dhs_model_free(&mp);
    free(x);
    free(lab);
}

/* ---- LSH -------------------------------------------------------------------- */
static void t_lsh_agreement_tracks_angle(void) {
    const int D = 24, K = 256, NS = 4;
    const double angles[4] = { M_PI / 6, M_PI / 3, M_PI / 2, 2 * M_PI / 3 };
    float x[8 * 24];
    hl_rng r;
    hl_rng_seed(&r, 11);
    for (int p = 0; p < 4; p++) {
        /* orthonormal u, v; pair (u, cos a u + sin a v) */
        double u[24], v[24], nu = 0, dv = 0, nv = 0;
        for (int d = 0; d < D; d++) {
            u[d] = hl_rng_normal(&r);
            nu += u[d] * u[d];
        }
        for (int d = 0; d < D; d++) u[d] /= sqrt(nu);
        for (int d = 0; d < D; d++) {
            v[d] = hl_rng_normal(&r);
            dv += v[d] * u[d];
        }
        for (int d = 0; d < D; d++) {
            v[d] -= dv * u[d];
            nv += v[d] * v[d];
        }
        for (int d = 0; d < D; d++) {
            v[d] /= sqrt(nv);
            x[(2 * p) * D + d] = (float)u[d];
            x[(2 * p + 1) * D + d] = (float)(cos(angles[p]) * u[d] + sin(angles[p]) * v[d]);
        }
    }
    double agree[4] = { 0 };
    dh_err e = { 0 };
    for (int s = 0; s < NS; s++) {
        dh_hash_opts o;
        dh_hash_opts_init(&o);
        o.seed = 100 + s;
        o.param[o.nparams++] = "center=0";
        dhs_model m;
        REQUIRE(fit("lsh", x, NULL, 8, D, K, &o, &m, &e) == 0);
        REQUIRE(dhs_model_find(&m, "mean") == NULL);
        uint8_t b[8 * 256];
        REQUIRE(encode(&m, x, 8, b, K, &e) == 0);
        for (int p = 0; p < 4; p++)
            for (int k = 0; k < K; k++) agree[p] += b[(2 * p) * K + k] == b[(2 * p + 1) * K + k];
        dhs_model_free(&m);
    }
    for (int p = 0; p < 4; p++) {
        double a = agree[p] / (K * NS), want = 1 - angles[p] / M_PI;
        CHECKF(fabs(a - want) < 0.05, "angle %.3f: agreement %.3f, expected %.3f", angles[p], a, want);
        printf("# lsh angle %.3f: agreement %.3f (1 - angle/pi = %.3f)\n", angles[p], a, want);
    }
}

/* ---- SH --------------------------------------------------------------------- */
static void t_sh_bits_balanced_on_uniform(void) {
    const int64_t N = 4000;
    const int D = 4, K = 8;
    const double side[4] = { 4, 2, 1, 0.5 };
    float *x = malloc(sizeof(float) * N * D);
    hl_rng r;
    hl_rng_seed(&r, 9);
    for (int64_t i = 0; i < N; i++)
        for (int d = 0; d < D; d++) x[i * D + d] = (float)(side[d] * hl_rng_uniform(&r));
    dh_hash_opts o;
    dh_hash_opts_init(&o);
    dhs_model m;
    dh_err e = { 0 };
    REQUIRE(fit("sh", x, NULL, N, D, K, &o, &m, &e) == 0);
    uint8_t *b = malloc((size_t)N * K);
    REQUIRE(encode(&m, x, N, b, K, &e) == 0);
    for (int k = 0; k < K; k++) {
        double f = bit_fraction(b, N, K, k);
        CHECKF(fabs(f - 0.5) < 0.08, "bit %d: fraction of ones %.3f", k, f);
    }
    /* the first bit is the lowest mode of the longest side: splits it in half */
    dhs_tensor *om = dhs_model_find(&m, "omega");
    REQUIRE(om && om->ndim == 2 && om->shape[0] == K);
    int C = (int)om->shape[1], nz = 0;
    for (int c = 0; c < C; c++) nz += om->data[c] != 0;
    CHECK(nz == 1);
    CHECK_NEAR(om->data[0], M_PI / 4, 0.05); /* pi / (mx - mn) with range ~4 */
    dhs_model_free(&m);
    free(x);
    free(b);
}

/* ---- supervised methods beat LSH ------------------------------------------- */
static void t_supervised_beat_lsh(void) {
    const int64_t N = 600, NQ = 150;
    const int D = 24, K = 16, C = 4;
    float *x = malloc(sizeof(float) * N * D), *q = malloc(sizeof(float) * NQ * D);
    int32_t *lab = malloc(sizeof(int32_t) * N), *ql = malloc(sizeof(int32_t) * NQ);
    make_classes(N, D, C, 4, 2.5, 3.0, 1, x, lab);
    make_classes(NQ, D, C, 4, 2.5, 3.0, 2, q, ql);
    uint8_t *db = malloc((size_t)N * K), *qb = malloc((size_t)NQ * K);
    const char *methods[] = { "lsh", "pcah", "itq", "sh", "ldah", "bre", "mlh", "ksh", "sdh" };
    double map[9];
    for (int i = 0; i < 9; i++) {
        dh_hash_opts o;
        dh_hash_opts_init(&o);
        o.seed = 4;
        o.anchors = 60;
        o.samples = 300;
        if (!strcmp(methods[i], "bre")) {
            o.iterations = 2;
            o.param[o.nparams++] = "linesearch=30";
        }
        if (!strcmp(methods[i], "mlh")) o.iterations = 1500;
        dhs_model m;
        dh_err e = { 0 };
        double t0 = dh_now();
        int rc = fit(methods[i], x, lab, N, D, K, &o, &m, &e);
        CHECKF(rc == 0, "%s: %s", methods[i], e.msg);
        if (rc) {
            map[i] = 0;
            continue;
        }
        rc = encode(&m, x, N, db, K, &e);
        if (!rc) rc = encode(&m, q, NQ, qb, K, &e);
        CHECKF(rc == 0, "%s encode: %s", methods[i], e.msg);
        map[i] = rc ? 0 : map_score(qb, ql, NQ, db, lab, N, K);
        printf("# %-5s mAP %.4f  (fit %.2fs)\n", methods[i], map[i], dh_now() - t0);
        dhs_model_free(&m);
    }
    for (int i = 4; i < 9; i++)
        CHECKF(map[i] > map[0] + 0.1, "%s mAP %.4f does not beat lsh %.4f by 0.1", methods[i], map[i], map[0]);
    free(x);
    free(q);
    free(lab);
    free(ql);
    free(db);
    free(qb);
}

/* ---- BRE objective ------------------------------------------------------------ */
static void t_bre_objective_decreases(void) {
    const int64_t N = 200;
    const int D = 8, K = 8;
    float *x = malloc(sizeof(float) * N * D);
    int32_t *lab = malloc(sizeof(int32_t) * N), *cls = malloc(sizeof(int32_t) * N);
    make_classes(N, D, 3, 8, 2.0, 1.0, 8, x, lab);
    dh_hash_opts o;
    dh_hash_opts_init(&o);
    o.samples = N;
    o.anchors = 40;
    o.iterations = 2;
    dhs_model m;
    dh_err e = { 0 };
    REQUIRE(fit("bre", x, lab, N, D, K, &o, &m, &e) == 0);
    double o0, o1;
    REQUIRE(dhs_meta_float(m.meta, "objective_initial", &o0) == 0);
    REQUIRE(dhs_meta_float(m.meta, "objective_final", &o1) == 0);
    CHECKF(o1 < 0.8 * o0, "objective %g -> %g", o0, o1);
    /* the recorded objective is that of the codes the model gives */
    uint8_t *b = malloc((size_t)N * K);
    float *bf = malloc(sizeof(float) * N * K);
    REQUIRE(encode(&m, x, N, b, K, &e) == 0);
    for (int64_t i = 0; i < N * K; i++) bf[i] = b[i] ? 1.0f : -1.0f;
    REQUIRE(hl_label_classes(lab, N, cls, &e) == 2 + 1);
    double oc = hl_bre_objective(bf, N, K, cls);
    CHECKF(fabs(oc - o1) <= 0.02 * o1 + 1, "objective of encoded codes %g, recorded %g", oc, o1);
    printf("# bre objective %g -> %g (codes: %g)\n", o0, o1, oc);
    dhs_model_free(&m);
    free(x);
    free(lab);
    free(cls);
    free(b);
    free(bf);
}

/* ---- MLH loss-adjusted inference is exact (brute force over all codes) -------- */
static double mlh_value(const double *a, const double *a2, const double *g, const double *g2, int K, int sim, int rho,
                        double lam) {
    double v = 0;
    int m = 0;
    for (int k = 0; k < K; k++) {
        v += g[k] * a[k] + g2[k] * a2[k];
        m += g[k] != g2[k];
    }
    return v + (sim ? (m - rho + 1 > 0 ? m - rho + 1 : 0) : lam * (rho - m + 1 > 0 ? rho - m + 1 : 0));
}

static void t_mlh_inference_exact(void) {
    const int K = 5;
    hl_rng r;
    hl_rng_seed(&r, 21);
    mlh_bit tmp[5];
    for (int trial = 0; trial < 200; trial++) {
        double a[5], a2[5], g[5], g2[5], bg[5], bg2[5];
        double scale = trial % 3 == 0 ? 0.1 : trial % 3 == 1 ? 1.0 : 5.0;
        for (int k = 0; k < K; k++) {
            a[k] = scale * hl_rng_normal(&r);
            a2[k] = scale * hl_rng_normal(&r);
        }
        int sim = trial & 1, rho = 1 + trial % 4;
        hl_mlh_infer(a, a2, K, sim, rho, 0.5, g, g2, tmp);
        double got = mlh_value(a, a2, g, g2, K, sim, rho, 0.5), best = -1e300;
        for (int c1 = 0; c1 < 1 << K; c1++)
            for (int c2 = 0; c2 < 1 << K; c2++) {
                for (int k = 0; k < K; k++) {
                    bg[k] = (c1 >> k) & 1 ? 1 : -1;
                    bg2[k] = (c2 >> k) & 1 ? 1 : -1;
                }
                double v = mlh_value(a, a2, bg, bg2, K, sim, rho, 0.5);
                if (v > best) best = v;
            }
        CHECKF(fabs(got - best) < 1e-9, "trial %d: inference %g, brute force %g", trial, got, best);
        if (check_failed_) return;
    }
}

/* ---- LDAH: with K = C - 1 bits the projections span the class-mean subspace --- */
static void t_ldah_finds_discriminant_subspace(void) {
    const int64_t N = 900;
    const int D = 8, K = 2;
    float *x = malloc(sizeof(float) * N * D);
    int32_t *lab = malloc(sizeof(int32_t) * N);
    /* 3 classes whose means differ in dims 0 and 1 only; dims 2.. have larger variance */
    hl_rng r;
    hl_rng_seed(&r, 31);
    const double mu[3][2] = { { 0, 0 }, { 3, 0 }, { 0, 3 } };
    for (int64_t i = 0; i < N; i++) {
        int c = (int)(i % 3);
        lab[i] = c;
        for (int d = 0; d < D; d++)
            x[i * D + d] = (float)((d < 2 ? mu[c][d] : 0) + (d < 2 ? 1.0 : 4.0) * hl_rng_normal(&r));
    }
    dh_hash_opts o;
    dh_hash_opts_init(&o);
    dhs_model m;
    dh_err e = { 0 };
    REQUIRE(fit("ldah", x, lab, N, D, K, &o, &m, &e) == 0);
    const float *W = dhs_model_find(&m, "W")->data;
    for (int k = 0; k < K; k++) {
        double in = 0, all = 0;
        for (int d = 0; d < D; d++) {
            all += W[k * D + d] * W[k * D + d];
            if (d < 2) in += W[k * D + d] * W[k * D + d];
        }
        CHECKF(in / all > 0.95, "bit %d: %.3f of the projection in the discriminant subspace", k, in / all);
    }
    /* thresholds split the classes: the two bits separate the three classes */
    /* (K = 2 is below the bind's minimum of 8 bits: project directly) */
    uint8_t *b = malloc((size_t)N * K);
    float *u = malloc(sizeof(float) * N * K);
    const dhs_tensor *tb = dhs_model_find(&m, "b"), *tm = dhs_model_find(&m, "mean");
    CHECK(tb && tm);
    dh_linear_project(W, tb ? tb->data : NULL, tm ? tm->data : NULL, x, N, D, K, u);
    for (int64_t i = 0; i < N * K; i++) b[i] = u[i] > 0;
    free(u);
    int64_t agree = 0, pairs = 0;
    for (int64_t i = 0; i < 300; i++)
        for (int64_t j = i + 1; j < 300; j++) {
            int same = lab[i] == lab[j], code = b[i * K] == b[j * K] && b[i * K + 1] == b[j * K + 1];
            agree += same == code;
            pairs++;
        }
    CHECKF((double)agree / pairs > 0.75, "codes agree with labels on %.3f of pairs", (double)agree / pairs);
    dhs_model_free(&m);
    free(x);
    free(lab);
    free(b);
}

/* ---- bad input ---------------------------------------------------------------- */
static void t_bad_inputs(void) {
    const int64_t N = 300;
    const int D = 6;
    float *x = malloc(sizeof(float) * N * D);
    int32_t *lab = malloc(sizeof(int32_t) * N);
    make_classes(N, D, 3, 6, 2.0, 1.0, 3, x, lab);
    dh_hash_opts o;
    dh_hash_opts_init(&o);
    dhs_model m;
    dh_err e = { 0 };
    /* more bits than dimensions */
    CHECK(fit("pcah", x, NULL, N, D, 8, &o, &m, &e) == DH_EINVAL && strstr(e.msg, "dimensions"));
    dhs_model_free(&m);
    CHECK(fit("itq", x, NULL, N, D, 8, &o, &m, &e) == DH_EINVAL && strstr(e.msg, "dimensions"));
    dhs_model_free(&m);
    CHECK(fit("ldah", x, lab, N, D, 8, &o, &m, &e) == DH_EINVAL);
    dhs_model_free(&m);
    /* too few samples */
    CHECK(fit("pcah", x, NULL, 3, D, 4, &o, &m, &e) == DH_ESCHEMA && strstr(e.msg, "too few samples"));
    dhs_model_free(&m);
    CHECK(fit("sh", x, NULL, 1, D, 8, &o, &m, &e) == DH_ESCHEMA && strstr(e.msg, "too few samples"));
    dhs_model_free(&m);
    CHECK(fit("ksh", x, lab, 100, D, 8, &o, &m, &e) == DH_ESCHEMA && strstr(e.msg, "anchors")); /* 300 anchors */
    dhs_model_free(&m);
    CHECK(fit("sdh", x, lab, N, D, 8, &o, &m, &e) == DH_ESCHEMA && strstr(e.msg, "anchors")); /* 1000 anchors */
    dhs_model_free(&m);
    /* sizes beyond the bounds */
    o.anchors = 20000;
    CHECK(fit("ksh", x, lab, N, D, 8, &o, &m, &e) == DH_EINVAL && strstr(e.msg, "out of range"));
    dhs_model_free(&m);
    o.anchors = 0;
    /* supervised without labels */
    const char *sup[] = { "ldah", "bre", "mlh", "ksh", "sdh" };
    for (int i = 0; i < 5; i++) {
        e.msg[0] = 0;
        CHECKF(fit(sup[i], x, NULL, N, D, 8, &o, &m, &e) == DH_ESCHEMA && strstr(e.msg, "labels"),
               "%s without labels: %s", sup[i], e.msg);
        dhs_model_free(&m);
    }
    /* one class only */
    int32_t *one = calloc((size_t)N, sizeof *one);
    CHECK(fit("ldah", x, one, N, D, 4, &o, &m, &e) == DH_EFORMAT && strstr(e.msg, "2 classes"));
    dhs_model_free(&m);
    /* non-finite features */
    x[5] = NAN;
    CHECK(fit("itq", x, NULL, N, D, 4, &o, &m, &e) == DH_EFORMAT && strstr(e.msg, "non-finite"));
    dhs_model_free(&m);
    x[5] = 0;
    /* bad method parameter */
    o.param[o.nparams++] = "center=maybe";
    CHECK(fit("lsh", x, NULL, N, D, 8, &o, &m, &e) == DH_EINVAL);
    dhs_model_free(&m);
    o.nparams = 0;
    o.param[o.nparams++] = "variant=qda";
    CHECK(fit("ldah", x, lab, N, D, 4, &o, &m, &e) == DH_EINVAL && strstr(e.msg, "variant"));
    dhs_model_free(&m);
    free(x);
    free(lab);
    free(one);
}

/* ---- determinism and model round trip ------------------------------------------ */
static int models_equal(const dhs_model *a, const dhs_model *b) {
    if (a->ntensors != b->ntensors) return 0;
    for (int i = 0; i < a->ntensors; i++) {
        dhs_tensor *t = dhs_model_find(b, a->t[i].name);
        if (!t || t->n != a->t[i].n || memcmp(t->data, a->t[i].data, sizeof(float) * t->n)) return 0;
    }
    return 1;
}

static void t_deterministic_with_seed(void) {
    const int64_t N = 400;
    const int D = 10, K = 8;
    float *x = malloc(sizeof(float) * N * D);
    int32_t *lab = malloc(sizeof(int32_t) * N);
    make_classes(N, D, 4, 10, 2.0, 1.0, 6, x, lab);
    const char *methods[] = { "lsh", "itq", "sh", "ldah", "bre", "mlh", "ksh", "sdh" };
    for (int i = 0; i < 8; i++) {
        dh_hash_opts o;
        dh_hash_opts_init(&o);
        o.seed = 77;
        o.anchors = 30;
        o.samples = 150;
        o.iterations = 3;
        dhs_model a, b, c;
        dh_err e = { 0 };
        REQUIRE(fit(methods[i], x, lab, N, D, K, &o, &a, &e) == 0);
        REQUIRE(fit(methods[i], x, lab, N, D, K, &o, &b, &e) == 0);
        o.seed = 78;
        REQUIRE(fit(methods[i], x, lab, N, D, K, &o, &c, &e) == 0);
        CHECKF(models_equal(&a, &b), "%s: same seed, different models", methods[i]);
        if (strcmp(methods[i], "sh") != 0) /* sh has no randomness */
            CHECKF(!models_equal(&a, &c), "%s: the seed changes nothing", methods[i]);
        dhs_model_free(&a);
        dhs_model_free(&b);
        dhs_model_free(&c);
    }
    free(x);
    free(lab);
}

static void t_model_roundtrip_nonlinear(void) {
    /* sh and rbf models written as streams and read back encode identically */
    const int64_t N = 300;
    const int D = 6, K = 12;
    float *x = malloc(sizeof(float) * N * D);
    int32_t *lab = malloc(sizeof(int32_t) * N);
    make_classes(N, D, 3, 6, 2.0, 1.0, 2, x, lab);
    const char *methods[] = { "sh", "ksh", "sdh", "bre" };
    for (int i = 0; i < 4; i++) {
        dh_hash_opts o;
        dh_hash_opts_init(&o);
        o.anchors = 20;
        o.samples = 100;
        o.iterations = 1;
        dhs_model m, m2;
        dh_err e = { 0 };
        REQUIRE(fit(methods[i], x, lab, N, D, K, &o, &m, &e) == 0);
        FILE *f = tmpfile();
        REQUIRE(f);
        REQUIRE(dhs_model_write(f, "tmp", &m, &e) == 0);
        rewind(f);
        dhs_reader *r = dhs_open(f, "tmp", NULL, &e);
        REQUIRE(r);
        CHECKF(dhs_model_read(r, &m2, &e) == 0, "%s: %s", methods[i], e.msg);
        dhs_close(r);
        fclose(f);
        uint8_t *b1 = malloc((size_t)N * K), *b2 = malloc((size_t)N * K);
        CHECK(encode(&m, x, N, b1, K, &e) == 0);
        CHECKF(encode(&m2, x, N, b2, K, &e) == 0, "%s: %s", methods[i], e.msg);
        CHECKF(memcmp(b1, b2, (size_t)N * K) == 0, "%s: codes differ after the round trip", methods[i]);
        const char *tr = dhs_meta_str(m2.meta, "transform");
        CHECK(tr && strcmp(tr, i == 0 ? "sh" : "rbf") == 0);
        /* a damaged model: missing tensor */
        dhs_model m3;
        dhs_model_init(&m3);
        dhs_meta_set_str(m3.meta, "model", "hash");
        dhs_meta_set_str(m3.meta, "transform", tr);
        dhs_meta_set_int(m3.meta, "bits", K);
        dhs_meta_set_int(m3.meta, "dim", D);
        CHECK(encode(&m3, x, 1, b2, K, &e) == DH_ESCHEMA);
        dhs_model_free(&m3);
        free(b1);
        free(b2);
        dhs_model_free(&m);
        dhs_model_free(&m2);
    }
    free(x);
    free(lab);
}

int main(void) {
    RUN(t_pcah_top_principal_directions);
    RUN(t_itq_loss_nonincreasing);
    RUN(t_itq_model_rotates_pca);
    RUN(t_lsh_agreement_tracks_angle);
    RUN(t_sh_bits_balanced_on_uniform);
    RUN(t_supervised_beat_lsh);
    RUN(t_bre_objective_decreases);
    RUN(t_mlh_inference_exact);
    RUN(t_ldah_finds_discriminant_subspace);
    RUN(t_bad_inputs);
    RUN(t_deterministic_with_seed);
    RUN(t_model_roundtrip_nonlinear);
    return check_done();
}
