/* test_dk_ops.c — every CUDA op of the kernel library against its CPU twin
 * on the same random inputs. Prints the maximum absolute and relative error
 * per op and passes when |gpu - cpu| <= atol + rtol |cpu| everywhere.
 *
 * Tolerances: ops built from the shared per-element code with no
 * reductions (augmentation, dropout, uniform draws, ReLU, SGD) must be
 * exact; transcendental ones (GELU, sigmoid, tanh, softmax) within 1e-6
 * absolute + 1e-5 relative; reductions and cuBLAS/cuDNN products (FP32,
 * another summation order; TF32 is off unless DH_TF32=1) within 1e-4 +
 * 1e-3 relative.
 *
 * Needs a CUDA device; prints one SKIP line otherwise.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../unit/check.h"
#include "dk.h"

static uint64_t seedc = 100;

typedef struct {
    dk_tensor c, g;
} pair;

static void die_e(const dh_err *e) {
    fprintf(stderr, "test_dk_ops: %s\n", e->msg);
    exit(1);
}

static pair Z(int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    pair p;
    dh_err e;
    if (dk_tensor_alloc4(&p.c, DK_CPU, ndim, a, b, c, d, &e) || dk_tensor_alloc4(&p.g, DK_CUDA, ndim, a, b, c, d, &e))
        die_e(&e);
    return p;
}
/* uniform in [lo, hi) on both */
static pair U(int ndim, int64_t a, int64_t b, int64_t c, int64_t d, float lo, float hi) {
    pair p = Z(ndim, a, b, c, d);
    dh_err e;
    if (dk_rand_uniform(&p.c, lo, hi, seedc++, 0, &e) || dk_copy(&p.g, &p.c, &e)) die_e(&e);
    return p;
}
static void F(pair *p) {
    dk_tensor_free(&p->c);
    dk_tensor_free(&p->g);
}

/* Compare; prints "name: max abs A, max rel R" and returns 1 when within tolerance. */
static int cmp(const char *name, const pair *p, double atol, double rtol) {
    float *h = malloc((size_t)p->g.n * sizeof *h + 1);
    dh_err e;
    if (dk_download(&p->g, h, p->g.n, &e)) die_e(&e);
    double mabs = 0, mrel = 0, worst = 0;
    int64_t wi = 0;
    for (int64_t i = 0; i < p->c.n; i++) {
        double r = p->c.data[i], d = fabs((double)h[i] - r);
        if (!(d == d)) d = INFINITY;
        mabs = fmax(mabs, d);
        if (fabs(r) > 1e-6) mrel = fmax(mrel, d / fabs(r));
        double q = d / (atol + rtol * fabs(r));
        if (atol == 0 && rtol == 0) q = d > 0 ? INFINITY : 0;
        if (q > worst) {
            worst = q;
            wi = i;
        }
    }
    int ok = worst <= 1.0;
    printf("  %-28s max abs %.3g  max rel %.3g  (n %lld, tol %g + %g|ref|)%s\n", name, mabs, mrel, (long long)p->c.n,
           atol, rtol, ok ? "" : "  <-- over");
    if (!ok) printf("    worst at %lld: cpu %.9g gpu %.9g\n", (long long)wi, p->c.data[wi], h[wi]);
    free(h);
    return ok;
}
#define EXACT 0, 0
#define TRANS 1e-6, 1e-5
#define GEMM  1e-4, 1e-3
/* Both backends: the call with tensors picked by `.c`/`.g` through macro X. */
#define BOTH(expr_c, expr_g)                                                                                           \
    do {                                                                                                               \
        dh_err e_;                                                                                                     \
        if ((expr_c) != 0 || (expr_g) != 0) {                                                                          \
            CHECKF(0, "%s: %s", #expr_g, e_.msg);                                                                      \
            return;                                                                                                    \
        }                                                                                                              \
    } while (0)

/* ---- tests -------------------------------------------------------------------------------------------------- */
static void t_gemm(void) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int M = 67, N = 45, K = 129;
            pair A = ta ? U(2, K, M, 1, 1, -1, 1) : U(2, M, K, 1, 1, -1, 1);
            pair B = tb ? U(2, N, K, 1, 1, -1, 1) : U(2, K, N, 1, 1, -1, 1);
            pair C = U(2, M, N, 1, 1, -1, 1);
            BOTH(dk_matmul(&A.c, ta, &B.c, tb, 1.5f, 0.5f, &C.c, &e_),
                 dk_matmul(&A.g, ta, &B.g, tb, 1.5f, 0.5f, &C.g, &e_));
            char name[64];
            snprintf(name, sizeof name, "matmul tA=%d tB=%d", ta, tb);
            CHECK(cmp(name, &C, GEMM));
            F(&A);
            F(&B);
            F(&C);
        }
}

static void t_fc(void) {
    int N = 64, IN = 500, OUT = 10;
    pair x = U(2, N, IN, 1, 1, -1, 1), w = U(2, OUT, IN, 1, 1, -0.1f, 0.1f), b = U(1, OUT, 1, 1, 1, -1, 1);
    pair y = Z(2, N, OUT, 1, 1), dy = U(2, N, OUT, 1, 1, -1, 1);
    pair dx = Z(2, N, IN, 1, 1), dw = Z(2, OUT, IN, 1, 1), db = Z(1, OUT, 1, 1, 1);
    BOTH(dk_fc_forward(&x.c, &w.c, &b.c, &y.c, &e_), dk_fc_forward(&x.g, &w.g, &b.g, &y.g, &e_));
    BOTH(dk_fc_backward(&x.c, &w.c, &dy.c, &dx.c, &dw.c, &db.c, &e_),
         dk_fc_backward(&x.g, &w.g, &dy.g, &dx.g, &dw.g, &db.g, &e_));
    CHECK(cmp("fc_forward y", &y, GEMM));
    CHECK(cmp("fc_backward dx", &dx, GEMM));
    CHECK(cmp("fc_backward dw", &dw, GEMM));
    CHECK(cmp("fc_backward db", &db, GEMM));
    pair *all[] = { &x, &w, &b, &y, &dy, &dx, &dw, &db };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) F(all[i]);
}

static void conv_case(const char *tag, int N, int C, int H, int W, int Fo, int K, int s, int p) {
    int64_t OH = dk_out_size(H, K, s, p), OW = dk_out_size(W, K, s, p);
    pair x = U(4, N, C, H, W, -1, 1), w = U(4, Fo, C, K, K, -0.2f, 0.2f), b = U(1, Fo, 1, 1, 1, -1, 1);
    pair y = Z(4, N, Fo, OH, OW), dy = U(4, N, Fo, OH, OW, -1, 1);
    pair dx = Z(4, N, C, H, W), dw = Z(4, Fo, C, K, K), db = Z(1, Fo, 1, 1, 1);
    BOTH(dk_conv2d_forward(&x.c, &w.c, &b.c, s, p, &y.c, &e_), dk_conv2d_forward(&x.g, &w.g, &b.g, s, p, &y.g, &e_));
    BOTH(dk_conv2d_backward_data(&dy.c, &w.c, s, p, &dx.c, &e_),
         dk_conv2d_backward_data(&dy.g, &w.g, s, p, &dx.g, &e_));
    BOTH(dk_conv2d_backward_filter(&x.c, &dy.c, s, p, &dw.c, &e_),
         dk_conv2d_backward_filter(&x.g, &dy.g, s, p, &dw.g, &e_));
    BOTH(dk_conv2d_backward_bias(&dy.c, &db.c, &e_), dk_conv2d_backward_bias(&dy.g, &db.g, &e_));
    char name[96];
    snprintf(name, sizeof name, "conv %s forward", tag);
    CHECK(cmp(name, &y, GEMM));
    snprintf(name, sizeof name, "conv %s backward data", tag);
    CHECK(cmp(name, &dx, GEMM));
    snprintf(name, sizeof name, "conv %s backward filter", tag);
    CHECK(cmp(name, &dw, 1e-3, 1e-3));
    snprintf(name, sizeof name, "conv %s backward bias", tag);
    CHECK(cmp(name, &db, 1e-3, 1e-3));
    pair *all[] = { &x, &w, &b, &y, &dy, &dx, &dw, &db };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) F(all[i]);
}

static void t_conv(void) {
    conv_case("lenet1", 32, 1, 28, 28, 20, 5, 1, 0);
    conv_case("lenet2", 32, 20, 12, 12, 50, 5, 1, 0);
    conv_case("cifar", 16, 32, 16, 16, 64, 3, 1, 1);
    conv_case("s2p1", 8, 3, 15, 17, 8, 3, 2, 1);
    conv_case("5x5p2", 8, 3, 32, 32, 32, 5, 1, 2);
}

static void t_batchnorm(void) {
    for (int four = 0; four < 2; four++) {
        int N = 32, C = 16, H = four ? 8 : 1, W = four ? 8 : 1, nd = four ? 4 : 2;
        pair x = U(nd, N, C, H, W, -2, 3), g = U(1, C, 1, 1, 1, 0.5f, 1.5f), b = U(1, C, 1, 1, 1, -1, 1);
        pair rm = U(1, C, 1, 1, 1, -0.1f, 0.1f), rv = U(1, C, 1, 1, 1, 0.9f, 1.1f);
        pair y = Z(nd, N, C, H, W), sm = Z(1, C, 1, 1, 1), si = Z(1, C, 1, 1, 1), dy = U(nd, N, C, H, W, -1, 1);
        pair dx = Z(nd, N, C, H, W), dg = Z(1, C, 1, 1, 1), dbt = Z(1, C, 1, 1, 1), yi = Z(nd, N, C, H, W);
        BOTH(dk_batchnorm_forward_train(&x.c, &g.c, &b.c, &rm.c, &rv.c, 0.1f, 1e-5f, &y.c, &sm.c, &si.c, &e_),
             dk_batchnorm_forward_train(&x.g, &g.g, &b.g, &rm.g, &rv.g, 0.1f, 1e-5f, &y.g, &sm.g, &si.g, &e_));
        BOTH(dk_batchnorm_backward(&x.c, &dy.c, &g.c, &sm.c, &si.c, &dx.c, &dg.c, &dbt.c, &e_),
             dk_batchnorm_backward(&x.g, &dy.g, &g.g, &sm.g, &si.g, &dx.g, &dg.g, &dbt.g, &e_));
        BOTH(dk_batchnorm_forward_infer(&x.c, &g.c, &b.c, &rm.c, &rv.c, 1e-5f, &yi.c, &e_),
             dk_batchnorm_forward_infer(&x.g, &g.g, &b.g, &rm.g, &rv.g, 1e-5f, &yi.g, &e_));
        const char *t = four ? "bn4d" : "bn2d";
        char name[64];
        snprintf(name, sizeof name, "%s train y", t);
        CHECK(cmp(name, &y, GEMM));
        snprintf(name, sizeof name, "%s save_mean", t);
        CHECK(cmp(name, &sm, GEMM));
        snprintf(name, sizeof name, "%s save_invstd", t);
        CHECK(cmp(name, &si, GEMM));
        snprintf(name, sizeof name, "%s running_mean", t);
        CHECK(cmp(name, &rm, GEMM));
        snprintf(name, sizeof name, "%s running_var", t);
        CHECK(cmp(name, &rv, GEMM));
        snprintf(name, sizeof name, "%s backward dx", t);
        CHECK(cmp(name, &dx, GEMM));
        snprintf(name, sizeof name, "%s backward dgamma", t);
        CHECK(cmp(name, &dg, 1e-3, 1e-3));
        snprintf(name, sizeof name, "%s backward dbeta", t);
        CHECK(cmp(name, &dbt, 1e-3, 1e-3));
        snprintf(name, sizeof name, "%s infer y", t);
        CHECK(cmp(name, &yi, GEMM));
        pair *all[] = { &x, &g, &b, &rm, &rv, &y, &sm, &si, &dy, &dx, &dg, &dbt, &yi };
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) F(all[i]);
    }
}

static void t_activations(void) {
    const char *names[] = { "relu", "gelu", "sigmoid", "tanh" };
    for (int op = 0; op < 4; op++) {
        pair x = U(2, 1000, 37, 1, 1, -6, 6), y = Z(2, 1000, 37, 1, 1), dy = U(2, 1000, 37, 1, 1, -1, 1);
        pair dx = Z(2, 1000, 37, 1, 1);
        dh_err e_;
        int rc = 0;
        for (int d = 0; d < 2; d++) {
            dk_tensor *X = d ? &x.g : &x.c, *Y = d ? &y.g : &y.c, *DY = d ? &dy.g : &dy.c, *DX = d ? &dx.g : &dx.c;
            switch (op) {
            case 0: rc |= dk_relu_forward(X, Y, &e_) | dk_relu_backward(Y, DY, DX, &e_); break;
            case 1: rc |= dk_gelu_forward(X, Y, &e_) | dk_gelu_backward(X, DY, DX, &e_); break;
            case 2: rc |= dk_sigmoid_forward(X, Y, &e_) | dk_sigmoid_backward(Y, DY, DX, &e_); break;
            default: rc |= dk_tanh_forward(X, Y, &e_) | dk_tanh_backward(Y, DY, DX, &e_); break;
            }
        }
        REQUIRE(rc == 0);
        char name[64];
        snprintf(name, sizeof name, "%s forward", names[op]);
        CHECK(op == 0 ? cmp(name, &y, EXACT) : cmp(name, &y, TRANS));
        snprintf(name, sizeof name, "%s backward", names[op]);
        CHECK(op == 0 ? cmp(name, &dx, EXACT) : cmp(name, &dx, TRANS));
        F(&x);
        F(&y);
        F(&dy);
        F(&dx);
    }
}

static void pool_case(int avg, int N, int C, int H, int W, int k, int s, int p) {
    int64_t OH = dk_out_size(H, k, s, p), OW = dk_out_size(W, k, s, p);
    pair x = U(4, N, C, H, W, -1, 1), y = Z(4, N, C, OH, OW), dy = U(4, N, C, OH, OW, -1, 1), dx = Z(4, N, C, H, W);
    if (avg) {
        BOTH(dk_avgpool_forward(&x.c, k, s, p, &y.c, &e_), dk_avgpool_forward(&x.g, k, s, p, &y.g, &e_));
        BOTH(dk_avgpool_backward(&dy.c, k, s, p, &dx.c, &e_), dk_avgpool_backward(&dy.g, k, s, p, &dx.g, &e_));
    } else {
        BOTH(dk_maxpool_forward(&x.c, k, s, p, &y.c, &e_), dk_maxpool_forward(&x.g, k, s, p, &y.g, &e_));
        BOTH(dk_maxpool_backward(&x.c, &y.c, &dy.c, k, s, p, &dx.c, &e_),
             dk_maxpool_backward(&x.g, &y.g, &dy.g, k, s, p, &dx.g, &e_));
    }
    char name[64];
    snprintf(name, sizeof name, "%spool k%d s%d p%d forward", avg ? "avg" : "max", k, s, p);
    CHECK(avg ? cmp(name, &y, TRANS) : cmp(name, &y, EXACT));
    snprintf(name, sizeof name, "%spool k%d s%d p%d backward", avg ? "avg" : "max", k, s, p);
    CHECK(cmp(name, &dx, TRANS));
    F(&x);
    F(&y);
    F(&dy);
    F(&dx);
}

static void t_pooling(void) {
    pool_case(0, 16, 20, 24, 24, 2, 2, 0);
    pool_case(0, 8, 32, 32, 32, 3, 2, 1);
    pool_case(0, 4, 8, 15, 15, 3, 1, 1);
    pool_case(1, 8, 32, 16, 16, 3, 2, 1);
    pool_case(1, 8, 16, 8, 8, 2, 2, 0);
    pair x = U(4, 16, 64, 8, 8, -1, 1), y = Z(2, 16, 64, 1, 1), dy = U(2, 16, 64, 1, 1, -1, 1), dx = Z(4, 16, 64, 8, 8);
    BOTH(dk_gap_forward(&x.c, &y.c, &e_), dk_gap_forward(&x.g, &y.g, &e_));
    BOTH(dk_gap_backward(&dy.c, &dx.c, &e_), dk_gap_backward(&dy.g, &dx.g, &e_));
    CHECK(cmp("gap forward", &y, TRANS));
    CHECK(cmp("gap backward", &dx, TRANS));
    F(&x);
    F(&y);
    F(&dy);
    F(&dx);
}

static void t_dropout_softmax(void) {
    pair x = U(2, 300, 500, 1, 1, -1, 1), y = Z(2, 300, 500, 1, 1), m = Z(2, 300, 500, 1, 1);
    BOTH(dk_dropout_forward(&x.c, 0.5f, 9, 12345, &y.c, &m.c, &e_),
         dk_dropout_forward(&x.g, 0.5f, 9, 12345, &y.g, &m.g, &e_));
    CHECK(cmp("dropout mask", &m, EXACT));
    CHECK(cmp("dropout y", &y, EXACT));
    F(&x);
    F(&y);
    F(&m);
    int N = 256, K = 10;
    pair z = U(2, N, K, 1, 1, -5, 5), pr = Z(2, N, K, 1, 1), g = Z(2, N, K, 1, 1);
    int32_t lab[256], *dlab = NULL;
    for (int i = 0; i < N; i++) lab[i] = (i * 7) % K;
    dh_err e;
    REQUIRE(dk_mem_alloc(DK_CUDA, sizeof lab, (void **)&dlab, &e) == 0);
    REQUIRE(dk_mem_upload(DK_CUDA, dlab, lab, sizeof lab, &e) == 0);
    BOTH(dk_softmax_forward(&z.c, &pr.c, &e_), dk_softmax_forward(&z.g, &pr.g, &e_));
    CHECK(cmp("softmax forward", &pr, TRANS));
    double lc = 0, lg = 0;
    int64_t cc = 0, cg = 0;
    BOTH(dk_softmax_xent(&z.c, lab, 0.1f, 1.0f, &lc, &cc, &g.c, &e_),
         dk_softmax_xent(&z.g, dlab, 0.1f, 1.0f, &lg, &cg, &g.g, &e_));
    printf("  %-28s cpu %.9g gpu %.9g  correct cpu %lld gpu %lld\n", "softmax_xent loss", lc, lg, (long long)cc,
           (long long)cg);
    CHECK(fabs(lc - lg) <= 1e-5 * fmax(1.0, fabs(lc)));
    CHECK(cc == cg);
    CHECK(cmp("softmax_xent dlogits", &g, TRANS));
    dk_mem_free(DK_CUDA, dlab);
    F(&z);
    F(&pr);
    F(&g);
}

static void t_sgd_rng(void) {
    for (int nest = 0; nest < 2; nest++) {
        pair w = U(1, 10007, 1, 1, 1, -1, 1), g = U(1, 10007, 1, 1, 1, -1, 1), v = U(1, 10007, 1, 1, 1, -1, 1);
        for (int s = 0; s < 3; s++)
            BOTH(dk_sgd_step(&w.c, &g.c, &v.c, 0.05f, 0.9f, 5e-4f, nest, &e_),
                 dk_sgd_step(&w.g, &g.g, &v.g, 0.05f, 0.9f, 5e-4f, nest, &e_));
        CHECK(cmp(nest ? "sgd nesterov w" : "sgd w", &w, TRANS));
        CHECK(cmp(nest ? "sgd nesterov v" : "sgd v", &v, TRANS));
        F(&w);
        F(&g);
        F(&v);
    }
    pair r = Z(1, 100000, 1, 1, 1);
    BOTH(dk_rand_uniform(&r.c, -2, 3, 77, 5, &e_), dk_rand_uniform(&r.g, -2, 3, 77, 5, &e_));
    CHECK(cmp("rand_uniform", &r, EXACT));
    BOTH(dk_init_he(&r.c, 50, 8, &e_), dk_init_he(&r.g, 50, 8, &e_));
    CHECK(cmp("init_he (host normals)", &r, EXACT));
    BOTH(dk_init_xavier(&r.c, 50, 60, 8, &e_), dk_init_xavier(&r.g, 50, 60, 8, &e_));
    CHECK(cmp("init_xavier", &r, EXACT));
    F(&r);
}

static void t_elementwise(void) {
    pair a = U(1, 5000, 1, 1, 1, -1, 1), b = U(1, 5000, 1, 1, 1, -1, 1), o = Z(1, 5000, 1, 1, 1);
    BOTH(dk_axpby(0.3f, &a.c, 0.7f, &b.c, &e_), dk_axpby(0.3f, &a.g, 0.7f, &b.g, &e_));
    CHECK(cmp("axpby", &b, TRANS));
    /* mul and scale are exact on both devices: fresh inputs (b above differs
     * by axpby's rounding, fused on the GPU) */
    pair m = U(1, 5000, 1, 1, 1, -1, 1);
    BOTH(dk_mul(&a.c, &m.c, &o.c, &e_), dk_mul(&a.g, &m.g, &o.g, &e_));
    CHECK(cmp("mul", &o, EXACT));
    BOTH(dk_scale(&o.c, 3.0f, &e_), dk_scale(&o.g, 3.0f, &e_));
    CHECK(cmp("scale", &o, EXACT));
    double sc = 0, sg = 0, qc = 0, qg = 0;
    BOTH(dk_sum(&a.c, &sc, &e_), dk_sum(&a.g, &sg, &e_));
    BOTH(dk_sumsq(&a.c, &qc, &e_), dk_sumsq(&a.g, &qg, &e_));
    printf("  %-28s sum cpu %.12g gpu %.12g; sumsq cpu %.12g gpu %.12g\n", "sum/sumsq", sc, sg, qc, qg);
    CHECK(fabs(sc - sg) < 1e-9 * 5000 && fabs(qc - qg) < 1e-9 * 5000);
    BOTH(dk_fill(&o.c, 2.5f, &e_), dk_fill(&o.g, 2.5f, &e_));
    CHECK(cmp("fill", &o, EXACT));
    /* mixing devices is an argument error */
    dh_err e;
    CHECK(dk_axpby(1.0f, &a.c, 1.0f, &b.g, &e) == DH_EINVAL);
    F(&a);
    F(&b);
    F(&m);
    F(&o);
}

static void t_augment(void) {
    enum { S = 50, C = 3, H = 32, W = 32, N = 40 };
    size_t bytes = (size_t)S * C * H * W;
    uint8_t *img = malloc(bytes), *dimg = NULL;
    for (size_t i = 0; i < bytes; i++) img[i] = (uint8_t)(i * 2654435761u >> 13);
    int32_t idx[N], *didx = NULL, labs[S], *dlabs = NULL, out[N], *dout = NULL, outc[N];
    dk_permutation(idx, N, 4, 0);
    for (int i = 0; i < N; i++) idx[i] = (idx[i] * 7 + 3) % S;
    for (int i = 0; i < S; i++) labs[i] = i * 3;
    dh_err e;
    REQUIRE(dk_mem_alloc(DK_CUDA, bytes, (void **)&dimg, &e) == 0);
    REQUIRE(dk_mem_upload(DK_CUDA, dimg, img, bytes, &e) == 0);
    REQUIRE(dk_mem_alloc(DK_CUDA, sizeof idx, (void **)&didx, &e) == 0);
    REQUIRE(dk_mem_upload(DK_CUDA, didx, idx, sizeof idx, &e) == 0);
    float mean[3] = { 0.49f, 0.48f, 0.45f }, std[3] = { 0.25f, 0.24f, 0.26f };
    pair o = Z(4, N, C, H, W);
    BOTH(dk_images_augment(img, S, C, H, W, idx, 4, 1, mean, std, 11, 800, &o.c, &e_),
         dk_images_augment(dimg, S, C, H, W, didx, 4, 1, mean, std, 11, 800, &o.g, &e_));
    CHECK(cmp("images_augment crop+flip", &o, EXACT));
    BOTH(dk_images_augment(img, S, C, H, W, NULL, 0, 0, mean, std, 11, 0, &o.c, &e_),
         dk_images_augment(dimg, S, C, H, W, NULL, 0, 0, mean, std, 11, 0, &o.g, &e_));
    CHECK(cmp("images_augment normalise", &o, EXACT));
    BOTH(dk_images_augment(img, S, C, H, W, idx, 2, DK_FLIP_ALT_ODD, mean, std, 11, 96, &o.c, &e_),
         dk_images_augment(dimg, S, C, H, W, didx, 2, DK_FLIP_ALT_ODD, mean, std, 11, 96, &o.g, &e_));
    CHECK(cmp("images_augment translate+alternating flip", &o, EXACT));
    BOTH(dk_images_augment(img, S, C, H, W, NULL, 0, DK_FLIP_ALL, mean, std, 11, 0, &o.c, &e_),
         dk_images_augment(dimg, S, C, H, W, NULL, 0, DK_FLIP_ALL, mean, std, 11, 0, &o.g, &e_));
    CHECK(cmp("images_augment every row flipped", &o, EXACT));
    /* reflection padding (dh-pretrain --arch air): airbench's pad, and the most a side allows (H - 1) */
    BOTH(dk_images_augment(img, S, C, H, W, idx, 2, DK_FLIP_ALT_EVEN | DK_PAD_REFLECT, mean, std, 11, 96, &o.c, &e_),
         dk_images_augment(dimg, S, C, H, W, didx, 2, DK_FLIP_ALT_EVEN | DK_PAD_REFLECT, mean, std, 11, 96, &o.g, &e_));
    CHECK(cmp("images_augment reflect+alternating", &o, EXACT));
    BOTH(dk_images_augment(img, S, C, H, W, idx, H - 1, DK_FLIP_RANDOM | DK_PAD_REFLECT, mean, std, 11, 800, &o.c, &e_),
         dk_images_augment(dimg, S, C, H, W, didx, H - 1, DK_FLIP_RANDOM | DK_PAD_REFLECT, mean, std, 11, 800, &o.g,
                           &e_));
    CHECK(cmp("images_augment reflect pad H-1", &o, EXACT));
    REQUIRE(dk_mem_alloc(DK_CUDA, sizeof labs, (void **)&dlabs, &e) == 0);
    REQUIRE(dk_mem_upload(DK_CUDA, dlabs, labs, sizeof labs, &e) == 0);
    REQUIRE(dk_mem_alloc(DK_CUDA, sizeof out, (void **)&dout, &e) == 0);
    REQUIRE(dk_gather_i32(DK_CUDA, dlabs, didx, N, dout, &e) == 0);
    REQUIRE(dk_mem_download(DK_CUDA, out, dout, sizeof out, &e) == 0);
    REQUIRE(dk_gather_i32(DK_CPU, labs, idx, N, outc, &e) == 0);
    CHECK(memcmp(out, outc, sizeof out) == 0);
    printf("  %-28s %s\n", "gather_i32", memcmp(out, outc, sizeof out) == 0 ? "identical" : "DIFFERENT");
    dk_mem_free(DK_CUDA, dimg);
    dk_mem_free(DK_CUDA, didx);
    dk_mem_free(DK_CUDA, dlabs);
    dk_mem_free(DK_CUDA, dout);
    free(img);
    F(&o);
}

int main(void) {
    dh_err e;
    if (!dk_cuda_available()) {
        printf("SKIP dk_ops: no CUDA device available\n");
        return 0;
    }
    if (dk_init(DK_CUDA, &e)) {
        printf("FAIL dk_ops_init: %s\n", e.msg);
        return 1;
    }
    RUN(t_gemm);
    RUN(t_fc);
    RUN(t_conv);
    RUN(t_batchnorm);
    RUN(t_activations);
    RUN(t_pooling);
    RUN(t_dropout_softmax);
    RUN(t_sgd_rng);
    RUN(t_elementwise);
    RUN(t_augment);
    if (dk_sync(DK_CUDA, &e)) {
        printf("FAIL dk_ops_sync: %s\n", e.msg);
        return 1;
    }
    dk_shutdown();
    return check_done();
}
