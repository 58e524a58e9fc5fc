/* test_hashloss.c — the exponentiated code-product loss: the CPU reference
 * against the definition and finite differences, the CPU engine's fast path
 * against the reference. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "check.h"
#include "hashloss.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static void fill(float *u, int n, double amp) {
    for (int i = 0; i < n; i++) {
        double v = (urand() * 2 - 1) * amp;
        if (v > -0.05 && v < 0.05)
            v = v < 0 ? -0.05 - urand() * 0.1 : 0.05 + urand() * 0.1; /* keep signs stable under FD */
        u[i] = (float)v;
    }
}

/* Direct evaluation of Q from packed codes, straight from the definition. */
static double direct_q(const float *u, const int32_t *lab, int B, int K, double wpos, double wneg, double *right) {
    double q = 0;
    int64_t r = 0, n = 0;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            if (i == j) continue;
            double p = 0;
            for (int k = 0; k < K; k++) {
                int bi = u[i * K + k] > 0 ? 1 : -1, bj = u[j * K + k] > 0 ? 1 : -1;
                p += bi * bj;
            }
            p /= K;
            double y = lab[i] == lab[j] ? 1 : -1;
            q += (y > 0 ? wpos : wneg) * exp(-y * p);
            r += y * p > 0;
            n++;
        }
    *right = (double)r / n;
    return q;
}

static void t_exact_q_matches_direct(void) {
    int Ks[] = { 1, 7, 12, 48, 65 };
    for (int t = 0; t < 5; t++) {
        int B = 13, K = Ks[t];
        float *u = malloc(sizeof(float) * B * K);
        int32_t lab[13];
        fill(u, B * K, 1.0);
        for (int i = 0; i < B; i++) lab[i] = (int32_t)(urand() * 3);
        for (int norm = 0; norm < 3; norm++) {
            dh_hashloss_opts o = { (dh_hl_norm)norm, norm == 1 ? 4.0 : 0.0 };
            dh_hashloss_stats st;
            dh_err e;
            if (dh_hashloss_cpu(u, lab, B, K, &o, NULL, &st, &e) != DH_OK) {
                CHECK(0);
                break;
            }
            double right, q = direct_q(u, lab, B, K, st.wpos, st.wneg, &right);
            CHECK_NEAR(st.q, q, 1e-9 * fabs(q) + 1e-12);
            CHECK_NEAR(st.right, right, 1e-12);
            CHECK(st.pairs == (int64_t)B * (B - 1));
        }
        free(u);
    }
}

static void t_weights(void) {
    int32_t lab[6] = { 0, 0, 1, 1, 1, 2 };
    dh_hashloss_stats st;
    dh_hashloss_opts o = { DH_HL_BALANCED, 2.0 };
    dh_hashloss_weights(lab, 6, &o, &st);
    CHECK(st.pairs == 30);
    CHECK(st.pos_pairs == 2 + 6);
    CHECK_NEAR(st.wpos * st.pos_pairs, 1.0, 1e-12); /* 0.5 * scale 2 */
    CHECK_NEAR(st.wneg * (st.pairs - st.pos_pairs), 1.0, 1e-12);
    o.norm = DH_HL_MEAN;
    o.scale = 0;
    dh_hashloss_weights(lab, 6, &o, &st);
    CHECK_NEAR(st.wpos, 1.0 / 30, 1e-15);
    CHECK_NEAR(st.wneg, 1.0 / 30, 1e-15);
}

/* The analytic surrogate gradient against central finite differences (R held
 * constant is automatic: small steps never flip a sign). */
typedef int (*hl_fn)(const float *, const int32_t *, int, int, const dh_hashloss_opts *, float *, dh_hashloss_stats *,
                     dh_err *);
static void surrogate_gradient_fd(hl_fn f, const char *name) {
    int B = 9, K = 10;
    float u[90], du[90];
    int32_t lab[9] = { 0, 1, 2, 0, 1, 2, 0, 0, 1 };
    fill(u, B * K, 1.5);
    dh_hashloss_opts o = { DH_HL_SUM, 0 };
    dh_hashloss_stats st;
    dh_err e;
    REQUIRE(f(u, lab, B, K, &o, du, &st, &e) == DH_OK);
    double maxerr = 0;
    for (int t = 0; t < B * K; t++) {
        float keep = u[t], h = 1e-2f;
        dh_hashloss_stats sp, sm;
        u[t] = keep + h;
        f(u, lab, B, K, &o, NULL, &sp, &e);
        u[t] = keep - h;
        f(u, lab, B, K, &o, NULL, &sm, &e);
        u[t] = keep;
        double fd = (sp.surrogate - sm.surrogate) / (2.0 * h);
        double err = fabs(fd - du[t]) / (1e-3 + fabs(fd));
        if (err > maxerr) maxerr = err;
        CHECKF(err < 2e-2, "du[%d]: analytic %g, finite difference %g", t, du[t], fd);
    }
    printf("# %s: surrogate gradient vs finite differences: max relative error %.3g\n", name, maxerr);
}
/* The reference only: the fast path sums a pair's surrogate in float, too
 * coarse for differences of 1e-2 steps, and is held to the reference below. */
static void t_surrogate_gradient_fd(void) { surrogate_gradient_fd(dh_hashloss_ref, "reference"); }

/* The fast path (threads, vectorised bit loop, polynomial exp) against the
 * reference: q and the fraction right agree to rounding, the surrogate and
 * every gradient element within 1e-5 relative (of the largest); at one and
 * at two threads; the same bits run to run; DH_CPU=ref is the reference. */
static void t_fast_matches_ref(void) {
    int Bs[] = { 2, 3, 13, 64, 200 }, Ks[] = { 1, 7, 12, 48, 65, 300 };
    double worst_s = 0, worst_g = 0;
    for (int bi = 0; bi < 5; bi++)
        for (int ki = 0; ki < 6; ki++) {
            int B = Bs[bi], K = Ks[ki];
            size_t n = (size_t)B * K;
            float *u = malloc(sizeof(float) * n * 4), *g0 = u + n, *g1 = u + 2 * n, *g2 = u + 3 * n;
            int32_t *lab = malloc(sizeof(int32_t) * B);
            REQUIRE(u && lab);
            fill(u, (int)n, bi % 2 ? 3.0 : 0.7);
            if (ki == 2) u[0] = 95.0f, u[n - 1] = -95.0f; /* saturated products: exp far below -87 */
            for (int i = 0; i < B; i++) lab[i] = (int32_t)(urand() * 4);
            for (int norm = 0; norm < 3; norm++)
                for (int threads = 1; threads <= 2; threads++) {
#ifdef _OPENMP
                    omp_set_num_threads(threads);
#endif
                    dh_hashloss_opts o = { (dh_hl_norm)norm, norm == 2 ? 0.0 : 3.0 };
                    dh_hashloss_stats r, f, f2;
                    dh_err e;
                    REQUIRE(dh_hashloss_ref(u, lab, B, K, &o, g0, &r, &e) == DH_OK);
                    REQUIRE(dh_hashloss_cpu(u, lab, B, K, &o, g1, &f, &e) == DH_OK);
                    REQUIRE(dh_hashloss_cpu(u, lab, B, K, &o, g2, &f2, &e) == DH_OK);
                    CHECKF(!memcmp(g1, g2, sizeof(float) * n) && f.surrogate == f2.surrogate,
                           "B %d K %d: two calls differ", B, K);
                    CHECK_NEAR(f.q, r.q, 1e-12 * fabs(r.q) + 1e-300);
                    CHECK(f.right == r.right && f.pairs == r.pairs && f.pos_pairs == r.pos_pairs);
                    double es = fabs(f.surrogate - r.surrogate) / (fabs(r.surrogate) + 1e-30);
                    if (es > worst_s) worst_s = es;
                    CHECKF(es <= 1e-5, "B %d K %d norm %d: surrogate %.9g vs reference %.9g", B, K, norm, f.surrogate,
                           r.surrogate);
                    double big = 0, eg = 0;
                    for (size_t t = 0; t < n; t++) big = fmax(big, fabs(g0[t]));
                    for (size_t t = 0; t < n; t++) eg = fmax(eg, fabs(g1[t] - g0[t]) / (big + 1e-30));
                    if (eg > worst_g) worst_g = eg;
                    CHECKF(eg <= 1e-5, "B %d K %d norm %d threads %d: gradient off by %.3g of its largest", B, K, norm,
                           threads, eg);
                }
            setenv("DH_CPU", "ref", 1);
            dh_hashloss_opts o = { DH_HL_BALANCED, 0 };
            dh_hashloss_stats r, f;
            dh_err e;
            dh_hashloss_ref(u, lab, B, K, &o, g0, &r, &e);
            dh_hashloss_cpu(u, lab, B, K, &o, g1, &f, &e);
            CHECKF(!memcmp(g0, g1, sizeof(float) * n) && r.surrogate == f.surrogate, "DH_CPU=ref: not the reference");
            unsetenv("DH_CPU");
            free(u);
            free(lab);
        }
    /* a NaN in u gives the reference's NaN surrogate (how a trainer sees divergence) */
    {
        float u[8] = { 1, -1, 0.5f, NAN, 2, -2, 1, 1 }, g[8];
        int32_t lab[2] = { 0, 1 };
        dh_hashloss_stats st;
        dh_err e;
        CHECK(dh_hashloss_cpu(u, lab, 2, 4, NULL, g, &st, &e) == DH_OK && isnan(st.surrogate));
    }
    printf("# fast path vs reference: surrogate max relative error %.3g, gradient %.3g (of the largest element)\n",
           worst_s, worst_g);
}

/* With saturated products the surrogate equals the exact loss (Eq. 7 exactly). */
static void t_surrogate_limit_is_exact(void) {
    int B = 8, K = 16;
    float u[128];
    int32_t lab[8] = { 0, 1, 0, 1, 2, 2, 0, 1 };
    fill(u, B * K, 1.0);
    for (int t = 0; t < B * K; t++) u[t] = u[t] > 0 ? 40.0f : -40.0f;
    dh_hashloss_opts o = { DH_HL_MEAN, 0 };
    dh_hashloss_stats st;
    dh_err e;
    REQUIRE(dh_hashloss_cpu(u, lab, B, K, &o, NULL, &st, &e) == DH_OK);
    CHECK_NEAR(st.surrogate, st.q, 1e-5 * st.q);
}

/* Gradient descent on the surrogate lowers the exact loss on a toy problem. */
static void t_descent_lowers_q(void) {
    int B = 20, K = 16;
    float u[320], du[320];
    int32_t lab[20];
    for (int i = 0; i < B; i++) lab[i] = i % 4;
    fill(u, B * K, 1.0);
    dh_hashloss_opts o = { DH_HL_MEAN, (double)K * K };
    dh_hashloss_stats s0, s;
    dh_err e;
    REQUIRE(dh_hashloss_cpu(u, lab, B, K, &o, du, &s0, &e) == DH_OK);
    for (int it = 0; it < 200; it++) {
        dh_hashloss_cpu(u, lab, B, K, &o, du, &s, &e);
        for (int t = 0; t < B * K; t++) u[t] -= 0.05f * du[t];
    }
    dh_hashloss_cpu(u, lab, B, K, &o, NULL, &s, &e);
    CHECKF(s.q < s0.q, "Q %g -> %g", s0.q, s.q);
    CHECKF(s.right > s0.right, "right %g -> %g", s0.right, s.right);
}

/* The fast path keeps its buffers: after the first batch of a size, the same
 * or a smaller batch grows nothing; a larger one grows once. */
static void t_fast_keeps_buffers(void) {
    int B = 64, K = 48;
    float *u = malloc(sizeof(float) * B * K), *g = malloc(sizeof(float) * B * K);
    int32_t *lab = malloc(sizeof(int32_t) * B);
    dh_err e;
    dh_hashloss_stats st;
    fill(u, B * K, 1.0);
    for (int i = 0; i < B; i++) lab[i] = i % 5;
    dh_hashloss_cpu_release();
    REQUIRE(dh_hashloss_cpu(u, lab, B, K, NULL, g, &st, &e) == DH_OK);
    int64_t g0 = dh_hashloss_cpu_grows();
    double q0 = st.q;
    for (int it = 0; it < 5; it++) {
        REQUIRE(dh_hashloss_cpu(u, lab, it % 2 ? B : B / 2, K, NULL, it % 3 ? g : NULL, &st, &e) == DH_OK);
        if (it == 3) CHECK(st.q == q0); /* the same batch again: the same sums (buffers cleared) */
    }
    CHECK(dh_hashloss_cpu_grows() == g0);
    printf(" (grows after the first batch: %lld)", (long long)(dh_hashloss_cpu_grows() - g0));
    float *u2 = malloc(sizeof(float) * 2 * B * K), *g2 = malloc(sizeof(float) * 2 * B * K);
    int32_t *lab2 = malloc(sizeof(int32_t) * 2 * B);
    fill(u2, 2 * B * K, 1.0);
    for (int i = 0; i < 2 * B; i++) lab2[i] = i % 5;
    REQUIRE(dh_hashloss_cpu(u2, lab2, 2 * B, K, NULL, g2, &st, &e) == DH_OK);
    CHECK(dh_hashloss_cpu_grows() == g0 + 1);
    dh_hashloss_cpu_release();
    free(u), free(g), free(lab), free(u2), free(g2), free(lab2);
}

static void t_bad_args(void) {
    float u[4] = { 1, 2, 3, 4 };
    int32_t lab[2] = { 0, 1 };
    dh_err e;
    CHECK(dh_hashloss_cpu(u, lab, 1, 4, NULL, NULL, NULL, &e) == DH_EINVAL);
    CHECK(dh_hashloss_cpu(u, lab, 2, 0, NULL, NULL, NULL, &e) == DH_EINVAL);
    CHECK(dh_hashloss_ref(u, lab, 1, 4, NULL, NULL, NULL, &e) == DH_EINVAL);
    CHECK(dh_hashloss_ref(u, lab, 2, DH_HL_MAX_BITS + 1, NULL, NULL, NULL, &e) == DH_EINVAL);
}

int main(void) {
    RUN(t_exact_q_matches_direct);
    RUN(t_weights);
    RUN(t_surrogate_gradient_fd);
    RUN(t_fast_matches_ref);
    RUN(t_surrogate_limit_is_exact);
    RUN(t_descent_lowers_q);
    RUN(t_fast_keeps_buffers);
    RUN(t_bad_args);
    return check_done();
}
