/* test_dk_onednn.c — the CPU engine: the oneDNN backend against the
 * reference op by op and on whole networks (forward, every gradient, a few
 * training steps), printing the maximum absolute and relative error of
 * each; the reference's own loops independent of the thread count; both
 * backends deterministic; DH_THREADS / DH_CPU / DH_PRECISION validated.
 *
 * Passes when |onednn - ref| <= atol + rtol |ref| everywhere. Tolerances:
 * ops the oneDNN backend leaves to the reference's code (pooling,
 * activations, elementwise, SGD, augmentation) must be exact; convolution,
 * batch norm and matrix products (fp32, another summation order) within
 * 1e-4 + 1e-3 relative, filter and bias gradients (sums over the batch)
 * 1e-3 + 1e-3; whole networks 1e-3 + 1e-2 after the errors of a dozen
 * layers add up. bf16 convolutions: within 1% of the largest output (the
 * inputs keep 8-bit mantissas).
 *
 * SKIPs the comparisons in a build without oneDNN.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "dk.h"
#include "net.h"

static uint64_t seedc = 100;

/* One output computed twice: r by the reference, f by oneDNN. */
typedef struct {
    dk_tensor r, f;
} pair;

static void die_e(const dh_err *e) {
    fprintf(stderr, "test_dk_onednn: %s\n", e->msg);
    exit(1);
}

static pair Z(int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    pair p;
    dh_err e;
    if (dk_tensor_alloc4(&p.r, DK_CPU, ndim, a, b, c, d, &e) || dk_tensor_alloc4(&p.f, DK_CPU, ndim, a, b, c, d, &e))
        die_e(&e);
    return p;
}
static pair U(int ndim, int64_t a, int64_t b, int64_t c, int64_t d, float lo, float hi) {
    pair p = Z(ndim, a, b, c, d);
    dh_err e;
    if (dk_rand_uniform(&p.r, lo, hi, seedc++, 0, &e) || dk_copy(&p.f, &p.r, &e)) die_e(&e);
    return p;
}
static void F(pair *p) {
    dk_tensor_free(&p->r);
    dk_tensor_free(&p->f);
}

static void backend(dk_cpu_backend b) {
    dh_err e;
    if (dk_cpu_set_backend(b, &e)) die_e(&e);
}

static int cmp_raw(const char *name, const float *r, const float *f, int64_t n, double atol, double rtol) {
    double mabs = 0, mrel = 0, worst = 0;
    int64_t wi = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)f[i] - r[i]);
        if (!(d == d)) d = INFINITY;
        mabs = fmax(mabs, d);
        if (fabs(r[i]) > 1e-6) mrel = fmax(mrel, d / fabs(r[i]));
        double q = (atol == 0 && rtol == 0) ? (d > 0 ? INFINITY : 0) : d / (atol + rtol * fabs(r[i]));
        if (q > worst) {
            worst = q;
            wi = i;
        }
    }
    int ok = worst <= 1.0;
    printf("  %-34s max abs %.3g  max rel %.3g  (n %lld, tol %g + %g|ref|)%s\n", name, mabs, mrel, (long long)n, atol,
           rtol, ok ? "" : "  <-- over");
    if (!ok) printf("    worst at %lld: ref %.9g onednn %.9g\n", (long long)wi, r[wi], f[wi]);
    return ok;
}
static int cmp(const char *name, const pair *p, double atol, double rtol) {
    return cmp_raw(name, p->r.data, p->f.data, p->r.n, atol, rtol);
}
/* sc = 0: fp32, the given tolerances; sc > 0 (bf16): |f - r| <= sc max|ref|,
 * since bf16 errors grow with the magnitude of the sums, not of each output. */
static int cmp_sc(const char *name, const pair *p, double atol, double rtol, double sc) {
    if (sc == 0) return cmp(name, p, atol, rtol);
    double m = 0;
    for (int64_t i = 0; i < p->r.n; i++) m = fmax(m, fabs(p->r.data[i]));
    return cmp(name, p, sc * m, 0);
}
#define EXACT 0, 0
#define GEMM  1e-4, 1e-3
#define SUMS  1e-3, 1e-3

/* The same call on .r under the reference, then on .f under oneDNN. */
#define BOTH(expr_r, expr_f)                                                                                           \
    do {                                                                                                               \
        dh_err e_;                                                                                                     \
        backend(DK_CPU_REF);                                                                                           \
        int rr_ = (expr_r);                                                                                            \
        backend(DK_CPU_ONEDNN);                                                                                        \
        int rf_ = (expr_f);                                                                                            \
        if (rr_ != 0 || rf_ != 0) {                                                                                    \
            CHECKF(0, "%s: %s", rr_ ? #expr_r : #expr_f, e_.msg);                                                      \
            return;                                                                                                    \
        }                                                                                                              \
    } while (0)

#define NEED_ONEDNN()                                                                                                  \
    do {                                                                                                               \
        if (!dk_cpu_has_onednn()) SKIP_TEST("this build has no oneDNN backend");                                       \
    } while (0)

/* ---- op by op ---------------------------------------------------------------------------------------------------- */
static void t_gemm(void) {
    NEED_ONEDNN();
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int M = 67, N = 45, K = 129;
            pair A = ta ? U(2, K, M, 1, 1, -1, 1) : U(2, M, K, 1, 1, -1, 1);
            pair B = tb ? U(2, N, K, 1, 1, -1, 1) : U(2, K, N, 1, 1, -1, 1);
            pair C = U(2, M, N, 1, 1, -1, 1);
            BOTH(dk_matmul(&A.r, ta, &B.r, tb, 1.5f, 0.5f, &C.r, &e_),
                 dk_matmul(&A.f, ta, &B.f, tb, 1.5f, 0.5f, &C.f, &e_));
            char name[64];
            snprintf(name, sizeof name, "matmul tA=%d tB=%d", ta, tb);
            CHECK(cmp(name, &C, GEMM));
            F(&A);
            F(&B);
            F(&C);
        }
}

static void t_fc(void) {
    NEED_ONEDNN();
    int N = 64, IN = 800, OUT = 500;
    pair x = U(2, N, IN, 1, 1, -1, 1), w = U(2, OUT, IN, 1, 1, -0.1f, 0.1f), b = U(1, OUT, 1, 1, 1, -1, 1);
    pair y = Z(2, N, OUT, 1, 1), dy = U(2, N, OUT, 1, 1, -1, 1);
    pair dx = Z(2, N, IN, 1, 1), dw = Z(2, OUT, IN, 1, 1), db = Z(1, OUT, 1, 1, 1);
    BOTH(dk_fc_forward(&x.r, &w.r, &b.r, &y.r, &e_), dk_fc_forward(&x.f, &w.f, &b.f, &y.f, &e_));
    BOTH(dk_fc_backward(&x.r, &w.r, &dy.r, &dx.r, &dw.r, &db.r, &e_),
         dk_fc_backward(&x.f, &w.f, &dy.f, &dx.f, &dw.f, &db.f, &e_));
    CHECK(cmp("fc_forward y", &y, GEMM));
    CHECK(cmp("fc_backward dx", &dx, GEMM));
    CHECK(cmp("fc_backward dw", &dw, SUMS));
    CHECK(cmp("fc_backward db", &db, EXACT));
    pair *all[] = { &x, &w, &b, &y, &dy, &dx, &dw, &db };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) F(all[i]);
}

static void conv_case(const char *tag, int N, int C, int H, int W, int Fo, int K, int s, int p, int bias, double sc) {
    int64_t OH = dk_out_size(H, K, s, p), OW = dk_out_size(W, K, s, p);
    pair x = U(4, N, C, H, W, -1, 1), w = U(4, Fo, C, K, K, -0.2f, 0.2f), b = U(1, Fo, 1, 1, 1, -1, 1);
    pair y = Z(4, N, Fo, OH, OW), dy = U(4, N, Fo, OH, OW, -1, 1);
    pair dx = Z(4, N, C, H, W), dw = Z(4, Fo, C, K, K), db = Z(1, Fo, 1, 1, 1);
    BOTH(dk_conv2d_forward(&x.r, &w.r, bias ? &b.r : NULL, s, p, &y.r, &e_),
         dk_conv2d_forward(&x.f, &w.f, bias ? &b.f : NULL, s, p, &y.f, &e_));
    BOTH(dk_conv2d_backward_data(&dy.r, &w.r, s, p, &dx.r, &e_),
         dk_conv2d_backward_data(&dy.f, &w.f, s, p, &dx.f, &e_));
    BOTH(dk_conv2d_backward_filter(&x.r, &dy.r, s, p, &dw.r, &e_),
         dk_conv2d_backward_filter(&x.f, &dy.f, s, p, &dw.f, &e_));
    BOTH(dk_conv2d_backward_bias(&dy.r, &db.r, &e_), dk_conv2d_backward_bias(&dy.f, &db.f, &e_));
    char name[96];
    snprintf(name, sizeof name, "conv %s forward", tag);
    CHECK(cmp_sc(name, &y, GEMM, sc));
    snprintf(name, sizeof name, "conv %s backward data", tag);
    CHECK(cmp_sc(name, &dx, GEMM, sc));
    snprintf(name, sizeof name, "conv %s backward filter", tag);
    CHECK(cmp_sc(name, &dw, SUMS, sc));
    snprintf(name, sizeof name, "conv %s backward bias", tag);
    CHECK(cmp(name, &db, EXACT));
    pair *all[] = { &x, &w, &b, &y, &dy, &dx, &dw, &db };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) F(all[i]);
}

/* The convolutions of the built-in nets, and odd geometries. */
static void conv_cases(double sc) {
    conv_case("lenet1 1->20 k5", 32, 1, 28, 28, 20, 5, 1, 0, 1, sc);
    conv_case("lenet2 20->50 k5", 32, 20, 12, 12, 50, 5, 1, 0, 1, sc);
    conv_case("cifar1 3->32 k5p2", 16, 3, 32, 32, 32, 5, 1, 2, 1, sc);
    conv_case("cifar3 32->64 k5p2", 16, 32, 8, 8, 64, 5, 1, 2, 1, sc);
    conv_case("fast 64->128 k3p1 (chunks 17+16)", 33, 64, 32, 32, 128, 3, 1, 1, 0, sc);
    conv_case("fast 512->512 k3p1", 8, 512, 4, 4, 512, 3, 1, 1, 0, sc);
    conv_case("s2p1 3->8 15x17", 8, 3, 15, 17, 8, 3, 2, 1, 1, sc);
    conv_case("s2 floor 3->5 k3 8x8", 4, 3, 8, 8, 5, 3, 2, 0, 1, sc); /* drops a row: the reference's */
    conv_case("2->3 k3p1 6x6", 4, 2, 6, 6, 3, 3, 1, 1, 1, sc);
    conv_case("3->4 k2 3x3", 4, 3, 3, 3, 4, 2, 1, 0, 1, sc);
}

static void t_conv(void) {
    NEED_ONEDNN();
    conv_cases(0);
}

/* Batch norm: the fast backend's (dk_fast.c) against the reference; the
 * cases cover 2-D input, more images than its 64 groups, planes longer
 * than its 1,024-value blocks and of odd length, and a mean 1,000 times
 * the spread (the one-pass statistics must not cancel). */
static void t_batchnorm(void) {
    NEED_ONEDNN();
    static const struct {
        const char *tag;
        int nd, N, C, H, W;
        float lo, hi;
    } cases[] = { { "bn2d", 2, 32, 16, 1, 1, -2, 3 },
                  { "bn4d", 4, 32, 16, 8, 8, -2, 3 },
                  { "bn4d 130 images, 33x35 planes", 4, 130, 3, 33, 35, -2, 3 },
                  { "bn4d 7x7, mean 1000", 4, 70, 5, 7, 7, 999, 1001 },
                  { "bn2d 2 images", 2, 2, 8, 1, 1, -1, 1 } };
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        int N = cases[ci].N, C = cases[ci].C, H = cases[ci].H, W = cases[ci].W, nd = cases[ci].nd;
        pair x = U(nd, N, C, H, W, cases[ci].lo, cases[ci].hi), g = U(1, C, 1, 1, 1, 0.5f, 1.5f), b = U(1, C, 1, 1, 1, -1, 1);
        pair rm = U(1, C, 1, 1, 1, -0.1f, 0.1f), rv = U(1, C, 1, 1, 1, 0.9f, 1.1f);
        pair y = Z(nd, N, C, H, W), sm = Z(1, C, 1, 1, 1), si = Z(1, C, 1, 1, 1), dy = U(nd, N, C, H, W, -1, 1);
        pair dx = Z(nd, N, C, H, W), dg = Z(1, C, 1, 1, 1), dbt = Z(1, C, 1, 1, 1), yi = Z(nd, N, C, H, W);
        BOTH(dk_batchnorm_forward_train(&x.r, &g.r, &b.r, &rm.r, &rv.r, 0.1f, 1e-5f, &y.r, &sm.r, &si.r, &e_),
             dk_batchnorm_forward_train(&x.f, &g.f, &b.f, &rm.f, &rv.f, 0.1f, 1e-5f, &y.f, &sm.f, &si.f, &e_));
        BOTH(dk_batchnorm_backward(&x.r, &dy.r, &g.r, &sm.r, &si.r, &dx.r, &dg.r, &dbt.r, &e_),
             dk_batchnorm_backward(&x.f, &dy.f, &g.f, &sm.f, &si.f, &dx.f, &dg.f, &dbt.f, &e_));
        BOTH(dk_batchnorm_forward_infer(&x.r, &g.r, &b.r, &rm.r, &rv.r, 1e-5f, &yi.r, &e_),
             dk_batchnorm_forward_infer(&x.f, &g.f, &b.f, &rm.f, &rv.f, 1e-5f, &yi.f, &e_));
        const char *t = cases[ci].tag;
        char name[96];
        const struct {
            const char *what;
            pair *p;
            double atol, rtol;
        } outs[] = { { "train y", &y, GEMM },          { "save_mean", &sm, GEMM },       { "save_invstd", &si, GEMM },
                     { "running_mean", &rm, GEMM },    { "running_var", &rv, GEMM },     { "backward dx", &dx, GEMM },
                     { "backward dgamma", &dg, SUMS }, { "backward dbeta", &dbt, SUMS }, { "infer y", &yi, GEMM } };
        for (size_t i = 0; i < sizeof outs / sizeof *outs; i++) {
            snprintf(name, sizeof name, "%s %s", t, outs[i].what);
            CHECK(cmp(name, outs[i].p, outs[i].atol, outs[i].rtol));
        }
        pair *all[] = { &x, &g, &b, &rm, &rv, &y, &sm, &si, &dy, &dx, &dg, &dbt, &yi };
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) F(all[i]);
    }
}

/* GELU: the fast backend's polynomial erf (dk_fast.c) against the
 * reference's erff, over [-10, 10] and beyond (where Phi saturates), plus
 * exact zeros; the backward with dx aliasing dy, as the nets run it. */
static void t_gelu(void) {
    NEED_ONEDNN();
    int64_t n = 200003;
    pair x = U(1, n, 1, 1, 1, -10, 10), y = Z(1, n, 1, 1, 1), dy = U(1, n, 1, 1, 1, -1, 1);
    for (int64_t i = 0; i < n; i += 97) x.r.data[i] = x.f.data[i] = (i % 2 ? 1 : -1) * (float)(i % 40);
    for (int64_t i = 1; i < n; i += 1001) x.r.data[i] = x.f.data[i] = 0.0f;
    BOTH(dk_gelu_forward(&x.r, &y.r, &e_), dk_gelu_forward(&x.f, &y.f, &e_));
    CHECK(cmp("gelu forward", &y, 1e-6, 1e-5));
    BOTH(dk_gelu_backward(&x.r, &dy.r, &dy.r, &e_), dk_gelu_backward(&x.f, &dy.f, &dy.f, &e_));
    CHECK(cmp("gelu backward", &dy, 1e-6, 1e-5));
    F(&x);
    F(&y);
    F(&dy);
}

static void pool_case(int avg, int N, int C, int H, int W, int k, int s, int p) {
    int64_t OH = dk_out_size(H, k, s, p), OW = dk_out_size(W, k, s, p);
    pair x = U(4, N, C, H, W, -1, 1), y = Z(4, N, C, OH, OW), dy = U(4, N, C, OH, OW, -1, 1), dx = Z(4, N, C, H, W);
    /* ties: a quarter of the values repeat, so max-pool windows hold equal maxima */
    for (int64_t i = 0; i < x.r.n; i += 4) x.r.data[i] = x.f.data[i] = 0.5f;
    if (avg) {
        BOTH(dk_avgpool_forward(&x.r, k, s, p, &y.r, &e_), dk_avgpool_forward(&x.f, k, s, p, &y.f, &e_));
        BOTH(dk_avgpool_backward(&dy.r, k, s, p, &dx.r, &e_), dk_avgpool_backward(&dy.f, k, s, p, &dx.f, &e_));
    } else {
        BOTH(dk_maxpool_forward(&x.r, k, s, p, &y.r, &e_), dk_maxpool_forward(&x.f, k, s, p, &y.f, &e_));
        BOTH(dk_maxpool_backward(&x.r, &y.r, &dy.r, k, s, p, &dx.r, &e_),
             dk_maxpool_backward(&x.f, &y.f, &dy.f, k, s, p, &dx.f, &e_));
    }
    char name[64];
    snprintf(name, sizeof name, "%spool k%d s%d p%d forward", avg ? "avg" : "max", k, s, p);
    CHECK(cmp(name, &y, EXACT));
    snprintf(name, sizeof name, "%spool k%d s%d p%d backward", avg ? "avg" : "max", k, s, p);
    CHECK(cmp(name, &dx, EXACT));
    F(&x);
    F(&y);
    F(&dy);
    F(&dx);
}

/* Convolution [ReLU] pooling [batch norm. [activation]] in one call
 * (inference): oneDNN pools its blocked output and normalises as the
 * pooling's post-ops (t and p untouched, which shows the fused path ran)
 * against the reference's composition of the single ops. bnact: -1 no
 * normalisation, else its DK_ACT_*. */
static void conv_pool_case(const char *tag, int N, int C, int H, int W, int Fo, int K, int cp, int relu, int avg,
                           int pk, int ps, int pp, int bnact, double sc) {
    int64_t OH = dk_out_size(H, K, 1, cp), OW = dk_out_size(W, K, 1, cp);
    int64_t PH = dk_out_size(OH, pk, ps, pp), PW = dk_out_size(OW, pk, ps, pp);
    pair x = U(4, N, C, H, W, -1, 1), w = U(4, Fo, C, K, K, -0.2f, 0.2f), b = U(1, Fo, 1, 1, 1, -1, 1);
    pair g = U(1, Fo, 1, 1, 1, -1.5f, 1.5f), be = U(1, Fo, 1, 1, 1, -1, 1), rm = U(1, Fo, 1, 1, 1, -0.5f, 0.5f),
         rv = U(1, Fo, 1, 1, 1, 0.2f, 3);
    pair t = Z(4, N, Fo, OH, OW), p = Z(4, N, Fo, PH, PW), y = Z(4, N, Fo, PH, PW);
    dh_err e;
    REQUIRE(dk_fill(&t.f, NAN, &e) == 0 && dk_fill(&p.f, NAN, &e) == 0);
    dk_bn_act bnr = { &g.r, &be.r, &rm.r, &rv.r, 1e-5f, bnact }, bnf = { &g.f, &be.f, &rm.f, &rv.f, 1e-5f, bnact };
    int bn = bnact >= 0;
    BOTH(dk_conv2d_pool_forward(&x.r, &w.r, &b.r, 1, cp, relu, avg, pk, ps, pp, bn ? &bnr : NULL, &t.r,
                                bn ? &p.r : NULL, &y.r, &e_),
         dk_conv2d_pool_forward(&x.f, &w.f, &b.f, 1, cp, relu, avg, pk, ps, pp, bn ? &bnf : NULL, &t.f,
                                bn ? &p.f : NULL, &y.f, &e_));
    static const char *an[] = { " bn", " bn+relu", " bn+gelu" };
    char name[112];
    snprintf(name, sizeof name, "conv%s %spool%s %s", relu ? "+relu" : "", avg ? "avg" : "max", bn ? an[bnact] : "",
             tag);
    CHECK(cmp_sc(name, &y, GEMM, sc));
    int64_t untouched = 0;
    for (int64_t i = 0; i < t.f.n; i++) untouched += isnan(t.f.data[i]);
    for (int64_t i = 0; i < p.f.n; i++) untouched += isnan(p.f.data[i]);
    CHECKF(untouched == t.f.n + p.f.n, "%s: the fused path wrote %lld of the convolution's and pooling's outputs", name,
           (long long)(t.f.n + p.f.n - untouched));
    pair *all[] = { &x, &w, &b, &g, &be, &rm, &rv, &t, &p, &y };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) F(all[i]);
}

static void conv_pool_cases(double sc) {
    conv_pool_case("cifar1 3->32 k5p2, k3 s2 p1", 16, 3, 32, 32, 32, 5, 2, 0, 0, 3, 2, 1, -1, sc);
    conv_pool_case("cifar2 32->32 k5p2, k3 s2 p1", 16, 32, 16, 16, 32, 5, 2, 1, 1, 3, 2, 1, -1, sc);
    conv_pool_case("lenet1 1->20 k5, k2 s2", 16, 1, 28, 28, 20, 5, 0, 0, 0, 2, 2, 0, -1, sc);
    conv_pool_case("odd 3->6 k3p1 9x7, k3 s2 p1", 5, 3, 9, 7, 6, 3, 1, 1, 0, 3, 2, 1, -1, sc);
    conv_pool_case("chunks 64->64 k3p1 32x32, k2 s2", 60, 64, 32, 32, 64, 3, 1, 1, 1, 2, 2, 0, -1, sc);
    conv_pool_case("fast 64->128 k3p1 16x16, k2 s2", 8, 64, 16, 16, 128, 3, 1, 0, 0, 2, 2, 0, DK_ACT_RELU, sc);
    conv_pool_case("odd 3->6 k3p1 9x7, k3 s2 p1", 5, 3, 9, 7, 6, 3, 1, 1, 0, 3, 2, 1, DK_ACT_NONE, sc);
    conv_pool_case("air-like 24->64 k3p1 16x16, k2 s2", 6, 24, 16, 16, 64, 3, 1, 0, 0, 2, 2, 0, DK_ACT_GELU, sc);
    /* floors that drop the convolution's last row and column (air's 31 -> 15, 15 -> 7, 7 -> 3): it computes only
     * what the pooling reads */
    conv_pool_case("air floor 24->64 k3p1 31x31, k2 s2", 3, 24, 31, 31, 64, 3, 1, 0, 0, 2, 2, 0, DK_ACT_GELU, sc);
    conv_pool_case("air floor 64->32 k3p1 7x9, k2 s2", 5, 64, 7, 9, 32, 3, 1, 0, 0, 2, 2, 0, DK_ACT_GELU, sc);
    conv_pool_case("floor 8->16 k3p1 12x12, k3 s2, relu", 4, 8, 12, 12, 16, 3, 1, 1, 1, 3, 2, 0, -1, sc);
    conv_pool_case("chunks 64->64 k3p1 32x32, k2 s2", 61, 64, 32, 32, 64, 3, 1, 0, 1, 2, 2, 0, DK_ACT_RELU, sc);
}

/* Convolution, batch norm. (running statistics) and activation in one call
 * (inference): oneDNN's folded filter with the activation as post-op (t
 * untouched) against the reference's composition of the single ops. */
static void conv_bn_case(const char *tag, int N, int C, int H, int W, int Fo, int K, int cp, int bias, int act,
                         double sc) {
    int64_t OH = dk_out_size(H, K, 1, cp), OW = dk_out_size(W, K, 1, cp);
    pair x = U(4, N, C, H, W, -1, 1), w = U(4, Fo, C, K, K, -0.2f, 0.2f), b = U(1, Fo, 1, 1, 1, -1, 1);
    pair g = U(1, Fo, 1, 1, 1, -1.5f, 1.5f), be = U(1, Fo, 1, 1, 1, -1, 1), rm = U(1, Fo, 1, 1, 1, -0.5f, 0.5f),
         rv = U(1, Fo, 1, 1, 1, 0.2f, 3);
    pair t = Z(4, N, Fo, OH, OW), y = Z(4, N, Fo, OH, OW);
    dh_err e;
    REQUIRE(dk_fill(&t.f, NAN, &e) == 0);
    dk_bn_act bnr = { &g.r, &be.r, &rm.r, &rv.r, 1e-5f, act }, bnf = { &g.f, &be.f, &rm.f, &rv.f, 1e-5f, act };
    BOTH(dk_conv2d_bn_forward(&x.r, &w.r, bias ? &b.r : NULL, 1, cp, &bnr, &t.r, &y.r, &e_),
         dk_conv2d_bn_forward(&x.f, &w.f, bias ? &b.f : NULL, 1, cp, &bnf, &t.f, &y.f, &e_));
    static const char *an[] = { "", "+relu", "+gelu" };
    char name[112];
    snprintf(name, sizeof name, "conv+bn%s %s", an[act], tag);
    CHECK(cmp_sc(name, &y, GEMM, sc));
    int64_t untouched = 0;
    for (int64_t i = 0; i < t.f.n; i++) untouched += isnan(t.f.data[i]);
    CHECKF(untouched == t.f.n, "%s: the fused path wrote %lld of the convolution's outputs", name,
           (long long)(t.f.n - untouched));
    pair *all[] = { &x, &w, &b, &g, &be, &rm, &rv, &t, &y };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) F(all[i]);
}

static void conv_bn_cases(double sc) {
    conv_bn_case("prep 3->64 k3p1 32x32", 8, 3, 32, 32, 64, 3, 1, 0, DK_ACT_RELU, sc);
    conv_bn_case("res 64->64 k3p1 16x16, bias", 8, 64, 16, 16, 64, 3, 1, 1, DK_ACT_NONE, sc);
    conv_bn_case("air 24->64 k3p1 15x15", 6, 24, 15, 15, 64, 3, 1, 0, DK_ACT_GELU, sc);
    conv_bn_case("odd 5->20 k5 12x9, bias", 3, 5, 12, 9, 20, 5, 0, 1, DK_ACT_RELU, sc);
    conv_bn_case("chunks 64->64 k3p1 32x32", 61, 64, 32, 32, 64, 3, 1, 0, DK_ACT_RELU, sc);
}

static void t_conv_bn(void) {
    NEED_ONEDNN();
    conv_bn_cases(0);
    dh_err e;
    if (dk_cpu_set_bf16(1, &e)) {
        printf("  bf16 cases skipped: %s\n", e.msg);
        return;
    }
    conv_bn_cases(1e-2);
    CHECK(dk_cpu_set_bf16(0, &e) == 0);
}

static void t_conv_pool(void) {
    NEED_ONEDNN();
    conv_pool_cases(0);
    dh_err e;
    if (dk_cpu_set_bf16(1, &e)) {
        printf("  bf16 cases skipped: %s\n", e.msg);
        return;
    }
    conv_pool_cases(1e-2);
    CHECK(dk_cpu_set_bf16(0, &e) == 0);
}

static void t_pooling_and_rest(void) {
    NEED_ONEDNN();
    pool_case(0, 16, 20, 24, 24, 2, 2, 0);
    pool_case(0, 8, 32, 32, 32, 3, 2, 1);
    pool_case(0, 4, 8, 15, 15, 3, 1, 1);
    pool_case(0, 4, 512, 4, 4, 4, 4, 0);
    pool_case(1, 8, 32, 16, 16, 3, 2, 1);
    pool_case(1, 8, 16, 8, 8, 2, 2, 0);
    pair x = U(2, 300, 500, 1, 1, -1, 1), y = Z(2, 300, 500, 1, 1), m = Z(2, 300, 500, 1, 1);
    BOTH(dk_dropout_forward(&x.r, 0.5f, 9, 12345, &y.r, &m.r, &e_),
         dk_dropout_forward(&x.f, 0.5f, 9, 12345, &y.f, &m.f, &e_));
    CHECK(cmp("dropout y", &y, EXACT));
    BOTH(dk_relu_forward(&x.r, &y.r, &e_) || dk_relu_backward(&y.r, &x.r, &m.r, &e_),
         dk_relu_forward(&x.f, &y.f, &e_) || dk_relu_backward(&y.f, &x.f, &m.f, &e_));
    CHECK(cmp("relu forward", &y, EXACT));
    CHECK(cmp("relu backward", &m, EXACT));
    BOTH(dk_sgd_step(&x.r, &y.r, &m.r, 0.05f, 0.9f, 5e-4f, 1, &e_),
         dk_sgd_step(&x.f, &y.f, &m.f, 0.05f, 0.9f, 5e-4f, 1, &e_));
    CHECK(cmp("sgd nesterov w", &x, EXACT));
    F(&x);
    F(&y);
    F(&m);
}

static void t_bf16(void) {
    NEED_ONEDNN();
    dh_err e;
    if (dk_cpu_set_bf16(1, &e)) SKIP_TEST("%s", e.msg);
    /* bf16 keeps 8 bits of mantissa (0.4% per rounded input): errors within 1% of the largest output */
    conv_cases(1e-2);
    CHECK(dk_cpu_set_bf16(0, &e) == 0);
}

/* ---- both backends repeat; the reference's own loops (batch norm, pooling) give the same bits for any thread count.
 * Its convolutions need not: OpenBLAS's sgemm splits a product among its threads, and some of its kernels (Haswell's,
 * chosen on CPUs it does not know, such as Zen 5 under 0.3.21) then sum in another order; that is printed, not
 * required (kernels/dk/dk.h). ---------------------------------------------------------------------------------------- */
static int same(const dk_tensor *a, const dk_tensor *b) { return a->n == b->n && !memcmp(a->data, b->data, a->n * 4); }

static void t_threads_and_repeat(void) {
    dh_err e;
    int t0 = dk_threads(), t1 = t0 > 1 ? 1 : 2;
    int N = 16, C = 8, H = 12, W = 12, Fo = 12, Cb = 16; /* Cb: 16*16*12*12 = 36,864 elements, over PAR_MIN */
    dk_tensor x, w, u, du, ga, be, y[3], dw[3], rm[3], rv[3], yb[3], sm[3], si[3], dx[3], dg[3], db[3], mp[3], dmp[3];
    REQUIRE(dk_tensor_alloc4(&x, DK_CPU, 4, N, C, H, W, &e) == 0 &&
            dk_tensor_alloc4(&w, DK_CPU, 4, Fo, C, 3, 3, &e) == 0 &&
            dk_tensor_alloc4(&u, DK_CPU, 4, N, Cb, H, W, &e) == 0 &&
            dk_tensor_alloc4(&du, DK_CPU, 4, N, Cb, H, W, &e) == 0 &&
            dk_tensor_alloc4(&ga, DK_CPU, 1, Cb, 1, 1, 1, &e) == 0 &&
            dk_tensor_alloc4(&be, DK_CPU, 1, Cb, 1, 1, 1, &e) == 0);
    dk_rand_uniform(&x, -1, 1, 5, 0, &e);
    dk_rand_uniform(&w, -1, 1, 6, 0, &e);
    dk_rand_uniform(&u, -2, 3, 7, 0, &e);
    dk_rand_uniform(&du, -1, 1, 8, 0, &e);
    dk_rand_uniform(&ga, 0.5f, 1.5f, 9, 0, &e);
    dk_rand_uniform(&be, -0.5f, 0.5f, 10, 0, &e);
    for (int b = 0; b < 2; b++) {
        if (b == 1 && !dk_cpu_has_onednn()) break;
        backend(b ? DK_CPU_ONEDNN : DK_CPU_REF);
        for (int r = 0; r < 3; r++) {
            REQUIRE(dk_tensor_alloc4(&y[r], DK_CPU, 4, N, Fo, H, W, &e) == 0 &&
                    dk_tensor_alloc4(&dw[r], DK_CPU, 4, Fo, C, 3, 3, &e) == 0 &&
                    dk_tensor_alloc4(&yb[r], DK_CPU, 4, N, Cb, H, W, &e) == 0 &&
                    dk_tensor_alloc4(&dx[r], DK_CPU, 4, N, Cb, H, W, &e) == 0 &&
                    dk_tensor_alloc4(&mp[r], DK_CPU, 4, N, Cb, H / 2, W / 2, &e) == 0 &&
                    dk_tensor_alloc4(&dmp[r], DK_CPU, 4, N, Cb, H, W, &e) == 0);
            dk_tensor *cs[] = { &rm[r], &rv[r], &sm[r], &si[r], &dg[r], &db[r] };
            for (int k = 0; k < 6; k++) REQUIRE(dk_tensor_alloc4(cs[k], DK_CPU, 1, Cb, 1, 1, 1, &e) == 0);
            dk_fill(&rm[r], 0.0f, &e);
            dk_fill(&rv[r], 1.0f, &e);
            /* runs 0 and 1 on one thread count, run 2 on another */
            REQUIRE(dk_set_threads(r == 2 ? t1 : t0, &e) == 0);
            REQUIRE(dk_conv2d_forward(&x, &w, NULL, 1, 1, &y[r], &e) == 0);
            REQUIRE(dk_conv2d_backward_filter(&x, &y[r], 1, 1, &dw[r], &e) == 0);
            REQUIRE(dk_batchnorm_forward_train(&u, &ga, &be, &rm[r], &rv[r], 0.1f, 1e-5f, &yb[r], &sm[r], &si[r], &e) ==
                    0);
            REQUIRE(dk_batchnorm_backward(&u, &du, &ga, &sm[r], &si[r], &dx[r], &dg[r], &db[r], &e) == 0);
            REQUIRE(dk_maxpool_forward(&yb[r], 2, 2, 0, &mp[r], &e) == 0);
            REQUIRE(dk_maxpool_backward(&yb[r], &mp[r], &mp[r], 2, 2, 0, &dmp[r], &e) == 0);
        }
        REQUIRE(dk_set_threads(t0, &e) == 0);
        int conv_rep = same(&y[0], &y[1]) && same(&dw[0], &dw[1]);
        int conv_thr = same(&y[0], &y[2]) && same(&dw[0], &dw[2]);
        int own[2] = { 1, 1 }; /* [0] repeat, [1] other thread count */
        for (int q = 0; q < 2; q++) {
            int r = q + 1;
            own[q] = same(&yb[0], &yb[r]) && same(&rm[0], &rm[r]) && same(&rv[0], &rv[r]) && same(&dx[0], &dx[r]) &&
                     same(&dg[0], &dg[r]) && same(&db[0], &db[r]) && same(&mp[0], &mp[r]) && same(&dmp[0], &dmp[r]);
        }
        printf(
            "  %-7s repeated run bit-identical: conv %s, bn+pool %s; %d vs %d threads bit-identical: conv %s, bn+pool "
            "%s\n",
            b ? "onednn" : "ref", conv_rep ? "yes" : "NO", own[0] ? "yes" : "NO", t0, t1, conv_thr ? "yes" : "no",
            own[1] ? "yes" : "no");
        CHECK(conv_rep);
        CHECK(own[0]);
        if (b == 0) CHECK(own[1]);
        for (int r = 0; r < 3; r++) {
            dk_tensor *all[] = { &y[r],  &dw[r], &rm[r], &rv[r], &yb[r], &sm[r],
                                 &si[r], &dx[r], &dg[r], &db[r], &mp[r], &dmp[r] };
            for (int k = 0; k < 12; k++) dk_tensor_free(all[k]);
        }
    }
    dk_tensor *in[] = { &x, &w, &u, &du, &ga, &be };
    for (int k = 0; k < 6; k++) dk_tensor_free(in[k]);
}

/* ---- settings from the environment --------------------------------------------------------------------------------- */
static int init_with(const char *var, const char *val, dh_err *e) {
    const char *old = getenv(var);
    char *keep = old ? strdup(old) : NULL;
    setenv(var, val, 1);
    int rc = dk_init(DK_CPU, e);
    if (keep) {
        setenv(var, keep, 1);
        free(keep);
    } else {
        unsetenv(var);
    }
    return rc;
}

static void t_environment(void) {
    dh_err e;
    const char *bad_threads[] = { "0", "-1", "abc", "2x", "1025", "2.5" };
    for (size_t i = 0; i < sizeof bad_threads / sizeof *bad_threads; i++) {
        int rc = init_with("DH_THREADS", bad_threads[i], &e);
        CHECKF(rc == DH_EINVAL, "DH_THREADS='%s' gave %d", bad_threads[i], rc);
        if (i == 2) printf("  DH_THREADS=abc: %s\n", e.msg);
    }
    CHECK(init_with("DH_THREADS", "3", &e) == 0 && dk_threads() == 3);
    CHECK(init_with("DH_CPU", "fast", &e) == DH_EINVAL);
    CHECK(init_with("DH_CPU", "ref", &e) == 0 && dk_cpu_get_backend() == DK_CPU_REF);
    int rc = init_with("DH_CPU", "onednn", &e);
    CHECK(dk_cpu_has_onednn() ? (rc == 0 && dk_cpu_get_backend() == DK_CPU_ONEDNN) : rc == DH_EUNSUPPORTED);
    CHECK(init_with("DH_PRECISION", "fp16", &e) == DH_EINVAL);
    CHECK(dk_set_threads(0, &e) == DH_EINVAL);
    REQUIRE(dk_init(DK_CPU, &e) == 0); /* back to the environment's settings */
    CHECK(dk_cpu_get_bf16() == 0 || getenv("DH_PRECISION"));
}

/* ---- inference chains (dk.h): a fused op's output kept in oneDNN's layout and read by the next fused op gives the
 * same bits as the unchained pair through float32 NCHW; every other reader refuses it; the reference never keeps. -- */
static void chain_pair(int bf16) {
    dh_err e;
    int N = 9, C = 5, H = 12, W = 12, F1 = 32, F2 = 24;
    pair x = U(4, N, C, H, W, -1, 1), w1 = U(4, F1, C, 3, 3, -0.3f, 0.3f), w2 = U(4, F2, F1, 3, 3, -0.2f, 0.2f);
    pair g = U(1, F1, 1, 1, 1, 0.5f, 1.5f), be = U(1, F1, 1, 1, 1, -1, 1), rm = U(1, F1, 1, 1, 1, -0.5f, 0.5f),
         rv = U(1, F1, 1, 1, 1, 0.2f, 3), b2 = U(1, F2, 1, 1, 1, -1, 1);
    pair t1 = Z(4, N, F1, H, W), y1 = Z(4, N, F1, H, W), t2 = Z(4, N, F2, H, W), y2 = Z(4, N, F2, H / 2, W / 2);
    dk_bn_act bn = { &g.f, &be.f, &rm.f, &rv.f, 1e-5f, DK_ACT_GELU };
    backend(DK_CPU_ONEDNN);
    /* unchained (r) and chained (f): conv bn gelu, then conv relu maxpool */
    y1.f.fmt = DK_FMT_KEEP;
    REQUIRE(dk_conv2d_bn_forward(&x.f, &w1.f, NULL, 1, 1, &bn, &t1.f, &y1.r, &e) == 0);
    REQUIRE(dk_conv2d_bn_forward(&x.f, &w1.f, NULL, 1, 1, &bn, &t1.f, &y1.f, &e) == 0);
    CHECKF(y1.r.fmt == 0 && y1.f.fmt > 0, "bf16 %d: kept %d, not asked %d", bf16, y1.f.fmt, y1.r.fmt);
    dk_tensor v, o = y1.r;
    o.data = t1.r.data;
    CHECK(dk_relu_forward(&y1.f, &o, &e) == DH_EUNSUPPORTED);
    printf("  refused: %s\n", e.msg);
    CHECK(dk_tensor_rows(&y1.f, 0, 2, &v, &e) == DH_EUNSUPPORTED);
    CHECK(dk_copy(&o, &y1.f, &e) == DH_EUNSUPPORTED);
    REQUIRE(dk_conv2d_pool_forward(&y1.r, &w2.f, &b2.f, 1, 1, 1, 0, 2, 2, 0, NULL, &t2.f, NULL, &y2.r, &e) == 0);
    int rc = dk_conv2d_pool_forward(&y1.f, &w2.f, &b2.f, 1, 1, 1, 0, 2, 2, 0, NULL, &t2.f, NULL, &y2.f, &e);
    CHECKF(rc == 0, "chained conv+pool: %s", e.msg);
    CHECKF(y2.f.fmt == 0 && same(&y2.r, &y2.f), "bf16 %d: chained conv+pool differs from unchained", bf16);
    /* kept again: a conv+pool's pooled output, read by conv+bn */
    y2.f.fmt = DK_FMT_KEEP;
    REQUIRE(dk_conv2d_pool_forward(&y1.f, &w2.f, &b2.f, 1, 1, 1, 0, 2, 2, 0, NULL, &t2.f, NULL, &y2.f, &e) == 0);
    CHECK(y2.f.fmt > 0);
    pair w3 = U(4, F1, F2, 3, 3, -0.2f, 0.2f), y3 = Z(4, N, F1, H / 2, W / 2), t3 = Z(4, N, F1, H / 2, W / 2);
    REQUIRE(dk_conv2d_bn_forward(&y2.r, &w3.f, NULL, 1, 1, &bn, &t3.f, &y3.r, &e) == 0);
    REQUIRE(dk_conv2d_bn_forward(&y2.f, &w3.f, NULL, 1, 1, &bn, &t3.f, &y3.f, &e) == 0);
    CHECKF(same(&y3.r, &y3.f), "bf16 %d: conv+bn on a kept pooled input differs", bf16);
    /* a consumer oneDNN declines (a right pad < 0: 12x12, k2 s3 p0 -> 4x4 drops a row) composes, and refuses */
    pair w4 = U(4, 8, F1, 2, 2, -0.2f, 0.2f), t4 = Z(4, N, 8, 4, 4), y4 = Z(4, N, 8, 4, 4);
    dk_bn_act bn8 = { &g.f, &be.f, &rm.f, &rv.f, 1e-5f, DK_ACT_NONE };
    dk_tensor g8, be8, rm8, rv8;
    REQUIRE(dk_tensor_rows(&g.f, 0, 8, &g8, &e) == 0 && dk_tensor_rows(&be.f, 0, 8, &be8, &e) == 0 &&
            dk_tensor_rows(&rm.f, 0, 8, &rm8, &e) == 0 && dk_tensor_rows(&rv.f, 0, 8, &rv8, &e) == 0);
    bn8.gamma = &g8, bn8.beta = &be8, bn8.mean = &rm8, bn8.var = &rv8;
    CHECK(dk_conv2d_bn_forward(&y1.f, &w4.f, NULL, 3, 0, &bn8, &t4.f, &y4.f, &e) == DH_EUNSUPPORTED);
    printf("  declined: %s\n", e.msg);
    /* the reference never keeps */
    backend(DK_CPU_REF);
    y1.r.fmt = DK_FMT_KEEP;
    REQUIRE(dk_conv2d_bn_forward(&x.f, &w1.f, NULL, 1, 1, &bn, &t1.f, &y1.r, &e) == 0);
    CHECK(y1.r.fmt == 0);
    backend(DK_CPU_ONEDNN);
    y1.f.fmt = y2.f.fmt = 0;
    pair *all[] = { &x, &w1, &w2, &g, &be, &rm, &rv, &b2, &t1, &y1, &t2, &y2, &w3, &y3, &t3, &w4, &t4, &y4 };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) F(all[i]);
}

/* A net of every link (conv+bn into conv+pool, conv+pool into conv+bn and conv+pool, channels not a multiple of 16),
 * the same with a last link oneDNN declines (the net runs that link unchained), and the built-in nets. */
static const char *spec_chains = "input 3 20 20\n"
                                 "conv 16 k3 p1 nobias\n"
                                 "bn\n"
                                 "relu\n"
                                 "conv 32 k3 p1\n"
                                 "relu\n"
                                 "maxpool k2          # 32x10x10\n"
                                 "conv 32 k3 p1 nobias\n"
                                 "bn\n"
                                 "gelu\n"
                                 "conv 48 k3 p1 nobias\n"
                                 "maxpool k2          # 48x5x5\n"
                                 "bn\n"
                                 "relu\n"
                                 "conv 24 k3 p1\n"
                                 "avgpool k3 s2 p1    # 24x3x3\n"
                                 "conv 20 k3 p1 nobias\n"
                                 "bn\n"
                                 "relu\n"
                                 "%s"
                                 "flatten\n"
                                 "fc 12 name=z\n"
                                 "feature z\n";

static void chain_net(const char *tag, const char *tail) {
    char text[1024];
    const char *builtin = netspec_builtin_text(tail);
    if (!builtin) snprintf(text, sizeof text, spec_chains, tail);
    netspec ns;
    dh_err e;
    REQUIRE(netspec_parse(builtin ? builtin : text, tag, &ns, &e) == 0);
    net *n;
    dk_tensor x, z;
    int64_t N = 11;
    REQUIRE(net_create(&ns, 0, DK_CPU, N, &n, &e) == 0 && net_init(n, 5, &e) == 0);
    REQUIRE(dk_tensor_alloc4(&x, DK_CPU, 4, N, ns.in[0], ns.in[1], ns.in[2], &e) == 0 &&
            dk_rand_normal(&x, 0, 1, 77, 0, &e) == 0);
    float *zc = malloc((size_t)(N * n->zdim) * sizeof *zc);
    REQUIRE(zc);
    REQUIRE(net_forward_to_z(n, &x, 0, &z, &e) == 0);
    memcpy(zc, z.data, (size_t)z.n * sizeof *zc);
    n->nochain = 1;
    REQUIRE(net_forward_to_z(n, &x, 0, &z, &e) == 0);
    CHECKF(!memcmp(zc, z.data, (size_t)z.n * sizeof *zc), "%s: chained z differs from unchained", tag);
    printf("  %s: z of %lld x %d the same bits chained and unchained\n", tag, (long long)N, n->zdim);
    free(zc);
    net_free(n);
    dk_tensor_free(&x);
    netspec_free(&ns);
}

static void t_chains(void) {
    NEED_ONEDNN();
    dh_err e;
    for (int bf16 = 0; bf16 < 2; bf16++) {
        if (bf16 && dk_cpu_set_bf16(1, &e)) {
            printf("  bf16 skipped: %s\n", e.msg);
            break;
        }
        chain_pair(bf16);
        chain_net(bf16 ? "chains bf16" : "chains", "");
        chain_net(bf16 ? "declined bf16" : "declined", "conv 16 k2 s2 nobias\nbn\n");
        const char *builtins[] = { "lenet", "cifar", "fast", "air" };
        for (int i = 0; i < 4; i++) chain_net(builtins[i], builtins[i]);
    }
    CHECK(dk_cpu_set_bf16(0, &e) == 0);
}

/* ---- whole networks ----------------------------------------------------------------------------------------------------- */
static const char *spec_small_fast = "input 3 16 16\n"
                                     "conv 16 k3 p1 nobias\n"
                                     "bn\n"
                                     "relu\n"
                                     "conv 32 k3 p1 nobias\n"
                                     "maxpool k2          # 32x8x8\n"
                                     "bn\n"
                                     "relu\n"
                                     "res\n"
                                     "  conv 32 k3 p1 nobias\n"
                                     "  bn\n"
                                     "  relu\n"
                                     "end\n"
                                     "maxpool k3 s2 p1    # 32x4x4\n"
                                     "avgpool k3 s2 p1    # 32x2x2\n"
                                     "flatten\n"
                                     "fc 24 name=z\n"
                                     "gelu\n"
                                     "dropout 0.25\n"
                                     "scale 0.5\n"
                                     "feature z\n";

/* Train a copy of one net on each backend for `steps` SGD steps on the
 * same batches; compare z, the gradients of the last step and the final
 * parameters. */
static void net_compare(const char *tag, const char *text, int nclasses, int64_t N, int steps) {
    netspec ns;
    dh_err e;
    const char *builtin = netspec_builtin_text(text);
    REQUIRE(netspec_parse(builtin ? builtin : text, tag, &ns, &e) == 0);
    net *n[2];
    dk_tensor x, z[2];
    int32_t *lab = malloc((size_t)N * sizeof *lab);
    REQUIRE(lab && dk_tensor_alloc4(&x, DK_CPU, 4, N, ns.in[0], ns.in[1], ns.in[2], &e) == 0);
    for (int64_t i = 0; i < N; i++) lab[i] = (int32_t)(i % nclasses);
    double loss[2] = { 0, 0 };
    for (int b = 0; b < 2; b++) {
        backend(b ? DK_CPU_ONEDNN : DK_CPU_REF);
        REQUIRE(net_create(&ns, nclasses, DK_CPU, N, &n[b], &e) == 0 && net_init(n[b], 11, &e) == 0);
        for (int s = 0; s < steps; s++) {
            dk_rand_normal(&x, 0, 1, 1000 + s, 0, &e);
            int64_t correct;
            REQUIRE(net_grad_xent(n[b], &x, lab, 0.1f, &loss[b], &correct, &e) == 0);
            if (s == steps - 1) break; /* keep the last step's gradients */
            float lr[NET_NGROUPS] = { 0.02f, 0.02f }, wd[NET_NGROUPS] = { 5e-4f, 5e-4f };
            REQUIRE(net_sgd_step(n[b], lr, 0.9f, wd, 1, &e) == 0);
        }
        REQUIRE(net_forward_to_z(n[b], &x, 0, &z[b], &e) == 0); /* inference on the last batch */
    }
    printf("  %s: %d steps of %lld, loss ref %.7f onednn %.7f\n", tag, steps, (long long)N, loss[0], loss[1]);
    char name[96];
    snprintf(name, sizeof name, "%s z (inference)", tag);
    int ok = cmp_raw(name, z[0].data, z[1].data, z[0].n, 1e-3, 1e-2);
    double worst = 0;
    const char *wname = "";
    for (int i = 0; i < n[0]->nparams; i++) {
        const net_param *p = &n[0]->params[i], *q = &n[1]->params[i];
        double scale = 0, d = 0, dv = 0, sv = 0;
        for (int64_t j = 0; j < p->g.n; j++) {
            scale = fmax(scale, fabs(p->g.data[j]));
            d = fmax(d, fabs(p->g.data[j] - q->g.data[j]));
            sv = fmax(sv, fabs(p->w.data[j]));
            dv = fmax(dv, fabs(p->w.data[j] - q->w.data[j]));
        }
        /* gradient error relative to the tensor's largest gradient */
        double rel = d / (scale > 0 ? scale : 1);
        printf("    %-22s grad max abs %.3g (rel to max %.3g)  param max abs %.3g\n", p->name, d, rel, dv);
        if (rel > worst) {
            worst = rel;
            wname = p->name;
        }
        ok &= dv <= 1e-4 + 1e-3 * sv;
    }
    printf("  %s: worst gradient error %.3g of the tensor's largest gradient (%s)\n", tag, worst, wname);
    CHECK(ok);
    CHECKF(worst < 1e-2, "%s: gradient of %s off by %.3g of its largest", tag, wname, worst);
    CHECK(fabs(loss[0] - loss[1]) < 1e-3 * fmax(1, fabs(loss[0])));
    for (int b = 0; b < 2; b++) net_free(n[b]);
    dk_tensor_free(&x);
    free(lab);
    netspec_free(&ns);
}

static void t_net_lenet(void) {
    NEED_ONEDNN();
    net_compare("lenet", "lenet", 10, 16, 3);
}
static void t_net_cifar(void) {
    NEED_ONEDNN();
    net_compare("cifar", "cifar", 10, 8, 3);
}
static void t_net_air(void) {
    NEED_ONEDNN();
    net_compare("air", "air", 10, 16, 2);
}
static void t_net_fastlike(void) {
    NEED_ONEDNN();
    net_compare("fast-like", spec_small_fast, 5, 12, 3);
}

int main(void) {
    RUN(t_environment);
    RUN(t_threads_and_repeat);
    RUN(t_gemm);
    RUN(t_fc);
    RUN(t_conv);
    RUN(t_batchnorm);
    RUN(t_pooling_and_rest);
    RUN(t_gelu);
    RUN(t_conv_pool);
    RUN(t_conv_bn);
    RUN(t_bf16);
    RUN(t_chains);
    RUN(t_net_lenet);
    RUN(t_net_cifar);
    RUN(t_net_fastlike);
    RUN(t_net_air);
    dk_shutdown();
    return check_done();
}
