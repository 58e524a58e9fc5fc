/* test_dk_grad.c — the CPU kernel library: forward passes against naive
 * loops, every backward pass against central finite differences, SGD,
 * schedules, RNG, augmentation, argument errors.
 *
 * Gradient checks use the scalar L = sum_i y_i r_i with a fixed random r,
 * so dL/dy = r; analytic gradients are compared to (L(p+eps) - L(p-eps)) /
 * 2 eps element by element with |a - num| <= atol + rtol max(|a|, |num|).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "dk.h"
#include "dk_elem.h"
#include "dh_rng.h"

static uint64_t seed_ctr = 1;

static dk_tensor T(int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    dk_tensor t;
    dh_err e;
    if (dk_tensor_alloc4(&t, DK_CPU, ndim, a, b, c, d, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        abort();
    }
    return t;
}
static dk_tensor R(int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    dk_tensor t = T(ndim, a, b, c, d);
    dk_rand_uniform(&t, -1.0f, 1.0f, seed_ctr++, 0, NULL);
    return t;
}
static double dot(const dk_tensor *y, const dk_tensor *r) {
    double s = 0;
    for (int64_t i = 0; i < y->n; i++) s += (double)y->data[i] * r->data[i];
    return s;
}

/* ---- generic finite-difference check ------------------------------------------------ */
typedef double (*lossfn)(void *ctx);
/* Returns the worst ratio |a-num| / (atol + rtol max(|a|,|num|)) (<= 1 passes). */
static double fd_check(float *p, int64_t n, const float *analytic, lossfn f, void *ctx, float eps, double atol,
                       double rtol, int64_t *worst_i) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        float keep = p[i];
        p[i] = keep + eps;
        double lp = f(ctx);
        p[i] = keep - eps;
        double lm = f(ctx);
        p[i] = keep;
        double num = (lp - lm) / (2.0 * (double)eps), a = analytic[i];
        double r = fabs(a - num) / (atol + rtol * fmax(fabs(a), fabs(num)));
        if (r > worst) {
            worst = r;
            if (worst_i) *worst_i = i;
        }
    }
    return worst;
}
#define FD(p, n, an, f, ctx, eps) FDT(p, n, an, f, ctx, eps, 2e-2)
/* rtol 2e-2 for nonlinear layers; linear ones (conv, fc) are checked at 2e-3 */
#define FDT(p, n, an, f, ctx, eps, rtol)                                                                               \
    do {                                                                                                               \
        int64_t wi_ = -1;                                                                                              \
        double w_ = fd_check((p), (n), (an), (f), (ctx), (eps), 2e-3, (rtol), &wi_);                                   \
        CHECKF(w_ <= 1.0, "%s: finite-difference mismatch at %lld (ratio %.3g): analytic %g", #an, (long long)wi_, w_, \
               (double)(an)[wi_ < 0 ? 0 : wi_]);                                                                       \
    } while (0)

/* ---- convolution ------------------------------------------------------------------------ */
static void conv_naive(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int s, int p, dk_tensor *y) {
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t F = w->shape[0], KH = w->shape[2], KW = w->shape[3], OH = y->shape[2], OW = y->shape[3];
    for (int64_t n = 0; n < N; n++)
        for (int64_t f = 0; f < F; f++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double acc = b ? b->data[f] : 0.0;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t kh = 0; kh < KH; kh++)
                            for (int64_t kw = 0; kw < KW; kw++) {
                                int64_t ih = oh * s - p + kh, iw = ow * s - p + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                acc += (double)x->data[((n * C + c) * H + ih) * W + iw] *
                                       w->data[((f * C + c) * KH + kh) * KW + kw];
                            }
                    y->data[((n * F + f) * OH + oh) * OW + ow] = (float)acc;
                }
}

static void conv_fwd_case(int N, int C, int H, int W, int F, int K, int s, int p, int bias) {
    int64_t OH = dk_out_size(H, K, s, p), OW = dk_out_size(W, K, s, p);
    dk_tensor x = R(4, N, C, H, W), w = R(4, F, C, K, K), b = R(1, F, 1, 1, 1);
    dk_tensor y = T(4, N, F, OH, OW), yr = T(4, N, F, OH, OW);
    dh_err e;
    int rc = dk_conv2d_forward(&x, &w, bias ? &b : NULL, s, p, &y, &e);
    CHECKF(rc == 0, "conv forward: %s", e.msg);
    conv_naive(&x, &w, bias ? &b : NULL, s, p, &yr);
    double md = 0;
    for (int64_t i = 0; i < y.n; i++) md = fmax(md, fabs(y.data[i] - yr.data[i]));
    CHECKF(md < 1e-4, "conv N%d C%d %dx%d F%d K%d s%d p%d: max diff %g", N, C, H, W, F, K, s, p, md);
    dk_tensor_free(&x);
    dk_tensor_free(&w);
    dk_tensor_free(&b);
    dk_tensor_free(&y);
    dk_tensor_free(&yr);
}

static void t_conv_forward_naive(void) {
    conv_fwd_case(1, 1, 5, 5, 1, 3, 1, 0, 0);
    conv_fwd_case(3, 2, 7, 6, 4, 3, 1, 1, 1);
    conv_fwd_case(2, 3, 8, 8, 5, 3, 2, 1, 1);
    conv_fwd_case(1, 3, 9, 7, 2, 5, 2, 2, 1);
    conv_fwd_case(4, 2, 6, 6, 3, 1, 1, 0, 1);
    conv_fwd_case(2, 1, 28, 28, 4, 5, 1, 0, 1); /* LeNet conv1 geometry */
    conv_fwd_case(2, 2, 1, 1, 3, 5, 1, 2, 1);   /* padding wider than the image */
    conv_fwd_case(1, 1, 2, 3, 2, 5, 1, 3, 1);
}

struct convctx {
    dk_tensor x, w, b, y, r;
    int s, p;
};
static double conv_loss(void *v) {
    struct convctx *c = v;
    dk_conv2d_forward(&c->x, &c->w, &c->b, c->s, c->p, &c->y, NULL);
    return dot(&c->y, &c->r);
}

static void conv_grad_case(int N, int C, int H, int W, int F, int K, int s, int p) {
    struct convctx c;
    int64_t OH = dk_out_size(H, K, s, p), OW = dk_out_size(W, K, s, p);
    c.x = R(4, N, C, H, W);
    c.w = R(4, F, C, K, K);
    c.b = R(1, F, 1, 1, 1);
    c.y = T(4, N, F, OH, OW);
    c.r = R(4, N, F, OH, OW);
    c.s = s;
    c.p = p;
    dk_tensor dx = T(4, N, C, H, W), dw = T(4, F, C, K, K), db = T(1, F, 1, 1, 1);
    dh_err e;
    REQUIRE(dk_conv2d_backward_data(&c.r, &c.w, s, p, &dx, &e) == 0);
    REQUIRE(dk_conv2d_backward_filter(&c.x, &c.r, s, p, &dw, &e) == 0);
    REQUIRE(dk_conv2d_backward_bias(&c.r, &db, &e) == 0);
    FDT(c.x.data, c.x.n, dx.data, conv_loss, &c, 1e-2f, 2e-3);
    FDT(c.w.data, c.w.n, dw.data, conv_loss, &c, 1e-2f, 2e-3);
    FDT(c.b.data, c.b.n, db.data, conv_loss, &c, 1e-2f, 2e-3);
    dk_tensor_free(&c.x);
    dk_tensor_free(&c.w);
    dk_tensor_free(&c.b);
    dk_tensor_free(&c.y);
    dk_tensor_free(&c.r);
    dk_tensor_free(&dx);
    dk_tensor_free(&dw);
    dk_tensor_free(&db);
}

static void t_conv_backward_fd(void) {
    conv_grad_case(2, 2, 5, 5, 3, 3, 1, 1);
    conv_grad_case(1, 2, 6, 5, 2, 3, 2, 1); /* one image: the unbatched path */
    conv_grad_case(3, 1, 7, 7, 2, 5, 2, 2);
    conv_grad_case(2, 3, 4, 4, 2, 1, 1, 0);
    conv_grad_case(2, 2, 1, 2, 2, 5, 1, 2); /* padding wider than the image */
}

/* Layers big enough that the CPU backend splits the batch into im2col
 * chunks (2 + 2 + 1 images): forward vs naive, backward vs image by image. */
static void t_conv_chunked(void) {
    int N = 5, C = 16, H = 32, W = 32, Fo = 8, K = 5, s = 1, p = 2;
    conv_fwd_case(N, C, H, W, Fo, K, s, p, 1);
    dk_tensor x = R(4, N, C, H, W), w = R(4, Fo, C, K, K), dy = R(4, N, Fo, H, W);
    dk_tensor dx = T(4, N, C, H, W), dw = T(4, Fo, C, K, K), dx1 = T(4, 1, C, H, W), dw1 = T(4, Fo, C, K, K);
    dk_tensor dwsum = T(4, Fo, C, K, K);
    dh_err e;
    REQUIRE(dk_conv2d_backward_data(&dy, &w, s, p, &dx, &e) == 0);
    REQUIRE(dk_conv2d_backward_filter(&x, &dy, s, p, &dw, &e) == 0);
    double mdx = 0, mdw = 0;
    for (int i = 0; i < N; i++) {
        dk_tensor xi, dyi;
        REQUIRE(dk_tensor_rows(&x, i, 1, &xi, &e) == 0 && dk_tensor_rows(&dy, i, 1, &dyi, &e) == 0);
        REQUIRE(dk_conv2d_backward_data(&dyi, &w, s, p, &dx1, &e) == 0);
        REQUIRE(dk_conv2d_backward_filter(&xi, &dyi, s, p, &dw1, &e) == 0);
        for (int64_t k = 0; k < dx1.n; k++) mdx = fmax(mdx, fabs(dx1.data[k] - dx.data[i * dx1.n + k]));
        REQUIRE(dk_axpby(1.0f, &dw1, 1.0f, &dwsum, &e) == 0);
    }
    for (int64_t k = 0; k < dw.n; k++) mdw = fmax(mdw, fabs(dw.data[k] - dwsum.data[k]));
    CHECKF(mdx < 1e-4 && mdw < 1e-3, "chunked backward: dx diff %g, dw diff %g", mdx, mdw);
    dk_tensor *all[] = { &x, &w, &dy, &dx, &dw, &dx1, &dw1, &dwsum };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dk_tensor_free(all[i]);
}

/* ---- matmul and fully connected -------------------------------------------------------------- */
static void t_matmul_transposes(void) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int M = 4, N = 3, K = 5;
            dk_tensor A = ta ? R(2, K, M, 1, 1) : R(2, M, K, 1, 1);
            dk_tensor B = tb ? R(2, N, K, 1, 1) : R(2, K, N, 1, 1);
            dk_tensor C = R(2, M, N, 1, 1), C0 = T(2, M, N, 1, 1);
            dk_copy(&C0, &C, NULL);
            dh_err e;
            REQUIRE(dk_matmul(&A, ta, &B, tb, 2.0f, 0.5f, &C, &e) == 0);
            double md = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double s = 0;
                    for (int k = 0; k < K; k++)
                        s += (double)(ta ? A.data[k * M + i] : A.data[i * K + k]) *
                             (tb ? B.data[j * K + k] : B.data[k * N + j]);
                    md = fmax(md, fabs(C.data[i * N + j] - (2 * s + 0.5 * C0.data[i * N + j])));
                }
            CHECKF(md < 1e-5, "matmul ta=%d tb=%d: max diff %g", ta, tb, md);
            dk_tensor bad = T(2, M + 1, N, 1, 1);
            CHECK(dk_matmul(&A, ta, &B, tb, 1, 0, &bad, &e) == DH_EINVAL);
            dk_tensor_free(&A);
            dk_tensor_free(&B);
            dk_tensor_free(&C);
            dk_tensor_free(&C0);
            dk_tensor_free(&bad);
        }
}

struct fcctx {
    dk_tensor x, w, b, y, r;
};
static double fc_loss(void *v) {
    struct fcctx *c = v;
    dk_fc_forward(&c->x, &c->w, &c->b, &c->y, NULL);
    return dot(&c->y, &c->r);
}

static void t_fc_forward_backward(void) {
    struct fcctx c;
    int N = 3, IN = 2 * 2 * 2, OUT = 5;
    c.x = R(4, N, 2, 2, 2);
    c.w = R(2, OUT, IN, 1, 1);
    c.b = R(1, OUT, 1, 1, 1);
    c.y = T(2, N, OUT, 1, 1);
    c.r = R(2, N, OUT, 1, 1);
    dh_err e;
    REQUIRE(dk_fc_forward(&c.x, &c.w, &c.b, &c.y, &e) == 0);
    double md = 0;
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OUT; o++) {
            double s = c.b.data[o];
            for (int k = 0; k < IN; k++) s += (double)c.x.data[i * IN + k] * c.w.data[o * IN + k];
            md = fmax(md, fabs(s - c.y.data[i * OUT + o]));
        }
    CHECKF(md < 1e-5, "fc forward max diff %g", md);
    dk_tensor dx = T(4, N, 2, 2, 2), dw = T(2, OUT, IN, 1, 1), db = T(1, OUT, 1, 1, 1);
    REQUIRE(dk_fc_backward(&c.x, &c.w, &c.r, &dx, &dw, &db, &e) == 0);
    FDT(c.x.data, c.x.n, dx.data, fc_loss, &c, 1e-2f, 2e-3);
    FDT(c.w.data, c.w.n, dw.data, fc_loss, &c, 1e-2f, 2e-3);
    FDT(c.b.data, c.b.n, db.data, fc_loss, &c, 1e-2f, 2e-3);
    dk_tensor wbad = T(2, OUT, IN + 1, 1, 1);
    CHECK(dk_fc_forward(&c.x, &wbad, NULL, &c.y, &e) == DH_EINVAL);
    CHECK(strstr(e.msg, "fc_forward: w has shape (5, 9)") != NULL);
    dk_tensor_free(&wbad);
    dk_tensor_free(&c.x);
    dk_tensor_free(&c.w);
    dk_tensor_free(&c.b);
    dk_tensor_free(&c.y);
    dk_tensor_free(&c.r);
    dk_tensor_free(&dx);
    dk_tensor_free(&dw);
    dk_tensor_free(&db);
}

/* ---- batch norm ------------------------------------------------------------------------------------ */
struct bnctx {
    dk_tensor x, g, b, rm, rv, y, sm, si, r;
};
static double bn_loss(void *v) {
    struct bnctx *c = v;
    dk_batchnorm_forward_train(&c->x, &c->g, &c->b, &c->rm, &c->rv, 0.1f, 1e-5f, &c->y, &c->sm, &c->si, NULL);
    return dot(&c->y, &c->r);
}

static void bn_case(int ndim, int N, int C, int H, int W) {
    struct bnctx c;
    c.x = R(ndim, N, C, H, W);
    c.g = R(1, C, 1, 1, 1);
    c.b = R(1, C, 1, 1, 1);
    c.rm = T(1, C, 1, 1, 1);
    c.rv = T(1, C, 1, 1, 1);
    dk_fill(&c.rv, 1.0f, NULL);
    c.y = T(ndim, N, C, H, W);
    c.sm = T(1, C, 1, 1, 1);
    c.si = T(1, C, 1, 1, 1);
    c.r = R(ndim, N, C, H, W);
    for (int64_t i = 0; i < c.x.n; i++) c.x.data[i] = 2.0f * c.x.data[i] + 0.5f;
    dh_err e;
    REQUIRE(dk_batchnorm_forward_train(&c.x, &c.g, &c.b, &c.rm, &c.rv, 0.1f, 1e-5f, &c.y, &c.sm, &c.si, &e) == 0);
    /* statistics of channel 0, and the running update */
    int64_t P = c.x.n / (N * C), M = N * P;
    double s = 0, ss = 0;
    for (int n = 0; n < N; n++)
        for (int64_t k = 0; k < P; k++) s += c.x.data[(n * C) * P + k];
    double mean = s / M;
    for (int n = 0; n < N; n++)
        for (int64_t k = 0; k < P; k++) {
            double d = c.x.data[(n * C) * P + k] - mean;
            ss += d * d;
        }
    CHECK_NEAR(c.sm.data[0], mean, 1e-5);
    CHECK_NEAR(c.si.data[0], 1.0 / sqrt(ss / M + 1e-5), 1e-3);
    CHECK_NEAR(c.rm.data[0], 0.1 * mean, 1e-5);
    CHECK_NEAR(c.rv.data[0], 0.9 + 0.1 * ss / (M - 1), 1e-5);
    /* inference with running stats equal to the batch stats reproduces training output */
    dk_tensor rm2 = T(1, C, 1, 1, 1), rv2 = T(1, C, 1, 1, 1), y2 = T(ndim, N, C, H, W);
    for (int ch = 0; ch < C; ch++) {
        rm2.data[ch] = c.sm.data[ch];
        rv2.data[ch] = 1.0f / (c.si.data[ch] * c.si.data[ch]) - 1e-5f;
    }
    REQUIRE(dk_batchnorm_forward_infer(&c.x, &c.g, &c.b, &rm2, &rv2, 1e-5f, &y2, &e) == 0);
    double md = 0;
    for (int64_t i = 0; i < c.y.n; i++) md = fmax(md, fabs(c.y.data[i] - y2.data[i]));
    CHECKF(md < 1e-3, "bn infer vs train max diff %g", md);
    /* gradients */
    dk_tensor dx = T(ndim, N, C, H, W), dg = T(1, C, 1, 1, 1), dbt = T(1, C, 1, 1, 1);
    REQUIRE(dk_batchnorm_backward(&c.x, &c.r, &c.g, &c.sm, &c.si, &dx, &dg, &dbt, &e) == 0);
    FD(c.x.data, c.x.n, dx.data, bn_loss, &c, 1e-2f);
    FD(c.g.data, c.g.n, dg.data, bn_loss, &c, 1e-2f);
    FD(c.b.data, c.b.n, dbt.data, bn_loss, &c, 1e-2f);
    dk_tensor *all[] = { &c.x, &c.g, &c.b, &c.rm, &c.rv, &c.y, &c.sm, &c.si, &c.r, &rm2, &rv2, &y2, &dx, &dg, &dbt };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dk_tensor_free(all[i]);
}

static void t_batchnorm(void) {
    bn_case(4, 3, 2, 3, 3);
    bn_case(2, 6, 4, 1, 1);
    dk_tensor x = R(4, 2, 3, 2, 2), g = T(1, 2, 1, 1, 1);
    dh_err e;
    CHECK(dk_batchnorm_forward_infer(&x, &g, &g, &g, &g, 1e-5f, &x, &e) == DH_EINVAL);
    dk_tensor_free(&x);
    dk_tensor_free(&g);
}

/* ---- activations ------------------------------------------------------------------------------------ */
struct actctx {
    dk_tensor x, y, r;
    int op;
};
static int act_fwd(int op, const dk_tensor *x, dk_tensor *y) {
    switch (op) {
    case 0: return dk_relu_forward(x, y, NULL);
    case 1: return dk_gelu_forward(x, y, NULL);
    case 2: return dk_sigmoid_forward(x, y, NULL);
    default: return dk_tanh_forward(x, y, NULL);
    }
}
static double act_loss(void *v) {
    struct actctx *c = v;
    act_fwd(c->op, &c->x, &c->y);
    return dot(&c->y, &c->r);
}

static void t_activations(void) {
    const char *names[] = { "relu", "gelu", "sigmoid", "tanh" };
    for (int op = 0; op < 4; op++) {
        struct actctx c;
        c.x = R(2, 6, 7, 1, 1);
        c.y = T(2, 6, 7, 1, 1);
        c.r = R(2, 6, 7, 1, 1);
        c.op = op;
        for (int64_t i = 0; i < c.x.n; i++) { /* stay away from ReLU's kink; cover a wide range */
            float v = c.x.data[i] * 3.0f;
            c.x.data[i] = fabsf(v) < 0.05f ? 0.3f : v;
        }
        dk_tensor dx = T(2, 6, 7, 1, 1);
        REQUIRE(act_fwd(op, &c.x, &c.y) == 0);
        const dk_tensor *a = op == 1 ? &c.x : &c.y; /* GELU uses the input, the others the output */
        int rc = op == 0   ? dk_relu_backward(a, &c.r, &dx, NULL)
                 : op == 1 ? dk_gelu_backward(a, &c.r, &dx, NULL)
                 : op == 2 ? dk_sigmoid_backward(a, &c.r, &dx, NULL)
                           : dk_tanh_backward(a, &c.r, &dx, NULL);
        REQUIRE(rc == 0);
        int64_t wi = -1;
        double w = fd_check(c.x.data, c.x.n, dx.data, act_loss, &c, 1e-3f, 2e-3, 2e-2, &wi);
        CHECKF(w <= 1.0, "%s: finite-difference mismatch at %lld (ratio %g)", names[op], (long long)wi, w);
        dk_tensor_free(&c.x);
        dk_tensor_free(&c.y);
        dk_tensor_free(&c.r);
        dk_tensor_free(&dx);
    }
    /* known values */
    CHECK_NEAR(dk_gelu_f(1.0f), 0.8413447, 1e-6);
    CHECK_NEAR(dk_gelu_f(-2.0f), -0.0455003, 1e-6);
    CHECK_NEAR(dk_sigmoid_f(-100.0f), 0.0, 1e-30);
    CHECK_NEAR(dk_sigmoid_f(0.0f), 0.5, 0);
}

/* ---- pooling ------------------------------------------------------------------------------------------ */
struct poolctx {
    dk_tensor x, y, r;
    int k, s, p, avg;
};
static double pool_loss(void *v) {
    struct poolctx *c = v;
    if (c->avg == 2)
        dk_gap_forward(&c->x, &c->y, NULL);
    else if (c->avg)
        dk_avgpool_forward(&c->x, c->k, c->s, c->p, &c->y, NULL);
    else
        dk_maxpool_forward(&c->x, c->k, c->s, c->p, &c->y, NULL);
    return dot(&c->y, &c->r);
}

static void pool_case(int avg, int N, int C, int H, int W, int k, int s, int p) {
    struct poolctx c;
    int64_t OH = avg == 2 ? 1 : dk_out_size(H, k, s, p), OW = avg == 2 ? 1 : dk_out_size(W, k, s, p);
    c.x = T(4, N, C, H, W);
    c.k = k;
    c.s = s;
    c.p = p;
    c.avg = avg;
    /* distinct values well apart, so max pooling is differentiable at eps */
    int32_t *perm = malloc((size_t)c.x.n * sizeof *perm);
    dk_permutation(perm, c.x.n, 77, 0);
    for (int64_t i = 0; i < c.x.n; i++) c.x.data[i] = 0.1f * (float)perm[i] - 1.0f;
    free(perm);
    if (avg == 2) {
        c.y = T(2, N, C, 1, 1);
        c.r = R(2, N, C, 1, 1);
    } else {
        c.y = T(4, N, C, OH, OW);
        c.r = R(4, N, C, OH, OW);
    }
    dh_err e;
    pool_loss(&c); /* forward */
    /* forward vs naive */
    double md = 0;
    for (int64_t nc = 0; nc < (int64_t)N * C; nc++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                double acc = avg ? 0 : -1e30;
                int kk = avg == 2 ? H : k, ss = avg == 2 ? 1 : s, pp = avg == 2 ? 0 : p;
                for (int i = 0; i < kk; i++)
                    for (int j = 0; j < (avg == 2 ? W : k); j++) {
                        int64_t ih = oh * ss - pp + i, iw = ow * ss - pp + j;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        double v = c.x.data[nc * H * W + ih * W + iw];
                        acc = avg ? acc + v : fmax(acc, v);
                    }
                if (avg == 1) acc /= k * k;
                if (avg == 2) acc /= H * W;
                md = fmax(md, fabs(acc - c.y.data[nc * OH * OW + oh * OW + ow]));
            }
    CHECKF(md < 1e-5, "pool(avg=%d) forward max diff %g", avg, md);
    if (avg < 2 && c.y.dev == DK_CPU) { /* the CPU path: the same bits as the per-output definition (dk_elem.h) */
        dk_poolgeom g = { H, W, OH, OW, k, s, p };
        int64_t diff = 0;
        for (int64_t nc = 0; nc < (int64_t)N * C; nc++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    float ref = dk_pool_out(avg, c.x.data + nc * H * W, g, oh, ow);
                    diff += memcmp(&ref, &c.y.data[nc * OH * OW + oh * OW + ow], sizeof ref) != 0;
                }
        CHECKF(diff == 0, "pool(avg=%d) forward: %lld outputs differ from dk_pool_out", avg, (long long)diff);
    }
    dk_tensor dx = T(4, N, C, H, W);
    int rc = avg == 2 ? dk_gap_backward(&c.r, &dx, &e)
             : avg    ? dk_avgpool_backward(&c.r, k, s, p, &dx, &e)
                      : dk_maxpool_backward(&c.x, &c.y, &c.r, k, s, p, &dx, &e);
    REQUIRE(rc == 0);
    FD(c.x.data, c.x.n, dx.data, pool_loss, &c, 1e-3f);
    if (avg < 2) { /* the CUDA kernels' gather form (dk_pool_grad_pixel) equals the CPU scatter */
        dk_poolgeom g = { H, W, OH, OW, k, s, p };
        double gd = 0;
        for (int64_t nc = 0; nc < (int64_t)N * C; nc++)
            for (int64_t ih = 0; ih < H; ih++)
                for (int64_t iw = 0; iw < W; iw++) {
                    float v = dk_pool_grad_pixel(avg, c.x.data + nc * H * W, c.r.data + nc * OH * OW, g, ih, iw);
                    gd = fmax(gd, fabs(v - dx.data[(nc * H + ih) * W + iw]));
                }
        CHECKF(gd < 1e-6, "pool(avg=%d k%d s%d p%d): gather form differs from scatter by %g", avg, k, s, p, gd);
    }
    dk_tensor_free(&c.x);
    dk_tensor_free(&c.y);
    dk_tensor_free(&c.r);
    dk_tensor_free(&dx);
}

/* Max pooling where ties, signed zeros and NaN decide: the forward value and
 * the position the backward sends the gradient to are the first maximum in
 * row-major order (the first real pixel, then each strictly greater one), as
 * written here the plain way, on every path (fast, padded; forward, backward,
 * and the CUDA kernels' gather form). */
static void pool_ties_case(int H, int W, int k, int s, int p) {
    const float vals[] = { -1.0f, -0.0f, 0.0f, 1.0f, NAN, 1.0f, 2.0f, -INFINITY };
    int64_t OH = dk_out_size(H, k, s, p), OW = dk_out_size(W, k, s, p);
    dk_tensor x = T(4, 2, 3, H, W), y = T(4, 2, 3, OH, OW), dy = T(4, 2, 3, OH, OW), dx = T(4, 2, 3, H, W);
    uint64_t seed = 1234 + (uint64_t)(k * 100 + s * 10 + p);
    for (int64_t i = 0; i < x.n; i++) x.data[i] = vals[dh_rng_u32(seed, (uint64_t)i) % 8];
    for (int64_t i = 0; i < dy.n; i++) dy.data[i] = (float)(i % 7 + 1); /* small integers: exact sums */
    dh_err e;
    REQUIRE(dk_maxpool_forward(&x, k, s, p, &y, &e) == 0);
    REQUIRE(dk_maxpool_backward(&x, &y, &dy, k, s, p, &dx, &e) == 0);
    dk_poolgeom g = { H, W, OH, OW, k, s, p };
    int64_t bad_val = 0, bad_grad = 0, bad_gather = 0;
    float *want = calloc((size_t)x.n, sizeof *want);
    REQUIRE(want);
    for (int64_t nc = 0; nc < 6; nc++) {
        const float *img = x.data + nc * H * W;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t best = -1;
                for (int64_t i = oh * s - p; i < oh * s - p + k; i++)
                    for (int64_t j = ow * s - p; j < ow * s - p + k; j++) {
                        if (i < 0 || i >= H || j < 0 || j >= W) continue;
                        if (best < 0 || img[i * W + j] > img[best]) best = i * W + j;
                    }
                float v = best < 0 ? 0.0f : img[best], got = y.data[(nc * OH + oh) * OW + ow];
                bad_val += memcmp(&v, &got, sizeof v) != 0;
                if (best >= 0) want[nc * H * W + best] += dy.data[(nc * OH + oh) * OW + ow];
            }
        for (int64_t ih = 0; ih < H; ih++)
            for (int64_t iw = 0; iw < W; iw++) {
                float w = want[nc * H * W + ih * W + iw];
                bad_grad += w != dx.data[nc * H * W + ih * W + iw];
                bad_gather += w != dk_pool_grad_pixel(0, img, dy.data + nc * OH * OW, g, ih, iw);
            }
    }
    CHECKF(bad_val == 0 && bad_grad == 0 && bad_gather == 0,
           "maxpool k%d s%d p%d with ties and NaN: %lld values, %lld gradients, %lld gathered gradients differ", k, s,
           p, (long long)bad_val, (long long)bad_grad, (long long)bad_gather);
    free(want);
    dk_tensor_free(&x);
    dk_tensor_free(&y);
    dk_tensor_free(&dy);
    dk_tensor_free(&dx);
}

static void t_pooling(void) {
    pool_case(0, 2, 2, 6, 6, 2, 2, 0);
    pool_case(0, 1, 2, 7, 7, 3, 2, 1);
    pool_case(0, 2, 1, 5, 4, 3, 1, 1);
    pool_case(1, 2, 2, 6, 6, 2, 2, 0);
    pool_case(1, 1, 2, 7, 7, 3, 2, 1);
    pool_case(0, 1, 2, 9, 8, 3, 3, 1);
    pool_case(1, 2, 1, 9, 9, 4, 3, 2);
    pool_case(0, 1, 1, 6, 6, 3, 1, 2);
    pool_case(2, 2, 3, 4, 5, 0, 0, 0);
    /* rows longer than the CPU path's run of 256 outputs */
    pool_case(0, 1, 1, 2, 300, 3, 1, 1);
    pool_case(1, 1, 1, 2, 300, 3, 1, 1);
    pool_case(1, 1, 1, 2, 530, 2, 2, 0);
    pool_ties_case(8, 8, 2, 2, 0);
    pool_ties_case(9, 7, 3, 2, 1);
    pool_ties_case(6, 6, 3, 1, 2);
    pool_ties_case(10, 9, 4, 3, 2);
    dk_tensor x = R(4, 1, 1, 4, 4), y = T(4, 1, 1, 3, 3);
    dh_err e;
    CHECK(dk_maxpool_forward(&x, 2, 2, 0, &y, &e) == DH_EINVAL); /* output should be 2x2 */
    CHECK(dk_maxpool_forward(&x, 2, 2, 2, &y, &e) == DH_EINVAL); /* pad >= k */
    dk_tensor_free(&x);
    dk_tensor_free(&y);
}

/* ---- dropout ---------------------------------------------------------------------------------------------- */
static void t_dropout(void) {
    dk_tensor x = R(2, 100, 100, 1, 1), y = T(2, 100, 100, 1, 1), m = T(2, 100, 100, 1, 1);
    dk_tensor y2 = T(2, 100, 100, 1, 1), m2 = T(2, 100, 100, 1, 1);
    dh_err e;
    REQUIRE(dk_dropout_forward(&x, 0.3f, 42, 1000, &y, &m, &e) == 0);
    REQUIRE(dk_dropout_forward(&x, 0.3f, 42, 1000, &y2, &m2, &e) == 0);
    CHECK(memcmp(y.data, y2.data, (size_t)y.n * 4) == 0);
    int64_t dropped = 0;
    for (int64_t i = 0; i < m.n; i++) {
        CHECK(m.data[i] == 0.0f || fabsf(m.data[i] - 1.0f / 0.7f) < 1e-6f);
        if (m.data[i] == 0.0f) dropped++;
        CHECK(y.data[i] == x.data[i] * m.data[i]);
    }
    CHECKF(llabs(dropped - 3000) < 200, "dropped %lld of 10000 at p=0.3", (long long)dropped);
    REQUIRE(dk_dropout_forward(&x, 0.3f, 42, 1001, &y2, &m2, &e) == 0);
    CHECK(memcmp(m.data + 1, m2.data, (size_t)(m.n - 1) * 4) == 0); /* counter-based: offset shifts */
    /* backward with the fixed mask: the gradient of sum(y r) is r * mask */
    dk_tensor r = R(2, 100, 100, 1, 1), dx = T(2, 100, 100, 1, 1);
    REQUIRE(dk_dropout_backward(&r, &m, &dx, &e) == 0);
    for (int64_t i = 0; i < m.n; i++) CHECK(dx.data[i] == r.data[i] * m.data[i]);
    CHECK(dk_dropout_forward(&x, 1.0f, 42, 0, &y, &m, &e) == DH_EINVAL);
    dk_tensor *all[] = { &x, &y, &m, &y2, &m2, &r, &dx };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dk_tensor_free(all[i]);
}

/* ---- softmax cross-entropy --------------------------------------------------------------------------------- */
struct xectx {
    dk_tensor z;
    int32_t *lab;
    float s;
};
static double xe_loss(void *v) {
    struct xectx *c = v;
    double l = 0;
    dk_softmax_xent(&c->z, c->lab, c->s, 1.0f, &l, NULL, NULL, NULL);
    return l;
}

static void t_softmax_xent(void) {
    int N = 5, K = 4;
    int32_t lab[5] = { 0, 3, 1, 1, 2 };
    for (int si = 0; si < 2; si++) {
        struct xectx c = { R(2, N, K, 1, 1), lab, si ? 0.1f : 0.0f };
        for (int64_t i = 0; i < c.z.n; i++) c.z.data[i] *= 3.0f;
        double loss = -1;
        int64_t correct = -1;
        dk_tensor g = T(2, N, K, 1, 1);
        dh_err e;
        REQUIRE(dk_softmax_xent(&c.z, lab, c.s, 1.0f, &loss, &correct, &g, &e) == 0);
        double ref = 0;
        int64_t rc = 0;
        for (int i = 0; i < N; i++) {
            double mx = -1e30, s = 0;
            int am = 0;
            for (int k = 0; k < K; k++)
                if (c.z.data[i * K + k] > mx) {
                    mx = c.z.data[i * K + k];
                    am = k;
                }
            for (int k = 0; k < K; k++) s += exp(c.z.data[i * K + k] - mx);
            for (int k = 0; k < K; k++) {
                double t = (k == lab[i] ? 1.0 - c.s : 0.0) + c.s / K;
                ref -= t * (c.z.data[i * K + k] - mx - log(s));
            }
            if (am == lab[i]) rc++;
        }
        ref /= N;
        CHECK_NEAR(loss, ref, 1e-6);
        CHECK(correct == rc);
        FD(c.z.data, c.z.n, g.data, xe_loss, &c, 1e-2f);
        /* in place: dlogits aliasing logits gives the same gradient */
        dk_tensor z2 = T(2, N, K, 1, 1);
        dk_copy(&z2, &c.z, NULL);
        REQUIRE(dk_softmax_xent(&z2, lab, c.s, 1.0f, NULL, NULL, &z2, &e) == 0);
        CHECK(memcmp(z2.data, g.data, (size_t)g.n * 4) == 0);
        /* softmax forward rows sum to one */
        REQUIRE(dk_softmax_forward(&c.z, &z2, &e) == 0);
        for (int i = 0; i < N; i++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += z2.data[i * K + k];
            CHECK_NEAR(s, 1.0, 1e-6);
        }
        int32_t bad[5] = { 0, 4, 1, 1, 2 };
        CHECK(dk_softmax_xent(&c.z, bad, 0, 1, &loss, NULL, NULL, &e) == DH_EINVAL);
        dk_tensor_free(&c.z);
        dk_tensor_free(&g);
        dk_tensor_free(&z2);
    }
}

/* ---- SGD --------------------------------------------------------------------------------------------------- */
static void t_sgd_hand(void) {
    dk_tensor w = T(1, 1, 1, 1, 1), g = T(1, 1, 1, 1, 1), v = T(1, 1, 1, 1, 1);
    dh_err e;
    /* plain momentum: w=1, g=0.5, lr=0.1, mom=0.9, wd=0.01
     * step 1: g'=0.51, v=0.51, w=1-0.051=0.949
     * step 2: g'=0.5+0.00949=0.50949, v=0.9*0.51+0.50949=0.96849, w=0.949-0.096849=0.852151 */
    w.data[0] = 1;
    g.data[0] = 0.5f;
    REQUIRE(dk_sgd_step(&w, &g, &v, 0.1f, 0.9f, 0.01f, 0, &e) == 0);
    CHECK_NEAR(w.data[0], 0.949, 1e-6);
    CHECK_NEAR(v.data[0], 0.51, 1e-6);
    REQUIRE(dk_sgd_step(&w, &g, &v, 0.1f, 0.9f, 0.01f, 0, &e) == 0);
    CHECK_NEAR(w.data[0], 0.852151, 1e-6);
    CHECK_NEAR(v.data[0], 0.96849, 1e-6);
    /* Nesterov: step 1: g'=0.51, v=0.51, update 0.51+0.9*0.51=0.969, w=1-0.0969=0.9031 */
    w.data[0] = 1;
    v.data[0] = 0;
    REQUIRE(dk_sgd_step(&w, &g, &v, 0.1f, 0.9f, 0.01f, 1, &e) == 0);
    CHECK_NEAR(w.data[0], 0.9031, 1e-6);
    /* no momentum, no velocity tensor */
    w.data[0] = 1;
    REQUIRE(dk_sgd_step(&w, &g, NULL, 0.1f, 0.0f, 0.0f, 0, &e) == 0);
    CHECK_NEAR(w.data[0], 0.95, 1e-7);
    CHECK(dk_sgd_step(&w, &g, NULL, 0.1f, 0.9f, 0.0f, 0, &e) == DH_EINVAL);
    dk_tensor_free(&w);
    dk_tensor_free(&g);
    dk_tensor_free(&v);
}

/* ---- schedules ----------------------------------------------------------------------------------------------- */
static void t_schedules(void) {
    dk_schedule s;
    dh_err e;
    REQUIRE(dk_schedule_parse("step:10,20", 0.1, &s, &e) == 0);
    CHECK_NEAR(dk_schedule_lr(&s, 0, 3000, 100), 0.1, 1e-12);
    CHECK_NEAR(dk_schedule_lr(&s, 999, 3000, 100), 0.1, 1e-12);
    CHECK_NEAR(dk_schedule_lr(&s, 1000, 3000, 100), 0.01, 1e-12);
    CHECK_NEAR(dk_schedule_lr(&s, 2500, 3000, 100), 0.001, 1e-12);
    REQUIRE(dk_schedule_parse("onecycle:0.25:0.1", 1.0, &s, &e) == 0);
    CHECK_NEAR(dk_schedule_lr(&s, 0, 100, 10), 1.0 / 25, 1e-12);
    CHECK_NEAR(dk_schedule_lr(&s, 24, 100, 10), 1.0, 1e-12);
    CHECK_NEAR(dk_schedule_lr(&s, 25, 100, 10), 1.0, 1e-12);
    CHECK_NEAR(dk_schedule_lr(&s, 100, 100, 10), 0.1, 1e-12);
    CHECK_NEAR(dk_schedule_lr(&s, 62, 100, 10), 1.0 - 0.9 * 37.0 / 75.0, 1e-12);
    REQUIRE(dk_schedule_parse("cosine:0:0", 2.0, &s, &e) == 0);
    CHECK_NEAR(dk_schedule_lr(&s, 0, 100, 10), 2.0, 1e-12);
    CHECK_NEAR(dk_schedule_lr(&s, 50, 100, 10), 1.0, 1e-12);
    CHECK_NEAR(dk_schedule_lr(&s, 100, 100, 10), 0.0, 1e-12);
    REQUIRE(dk_schedule_parse("const", 0.3, &s, &e) == 0);
    CHECK_NEAR(dk_schedule_lr(&s, 12345, 10, 1), 0.3, 0);
    CHECK(dk_schedule_parse("step:20,10", 0.1, &s, &e) == DH_EINVAL);
    CHECK(dk_schedule_parse("step:1,", 0.1, &s, &e) == DH_EINVAL);
    CHECK(dk_schedule_parse("onecycle:1.5", 0.1, &s, &e) == DH_EINVAL);
    CHECK(dk_schedule_parse("linear", 0.1, &s, &e) == DH_EINVAL);
    CHECK(strstr(e.msg, "unknown schedule 'linear'") != NULL);
}

/* ---- RNG and initialisation --------------------------------------------------------------------------------- */
static void t_rng(void) {
    CHECK(dh_rng_u32(1, 0) == dh_rng_u32(1, 0));
    CHECK(dh_rng_u32(1, 0) != dh_rng_u32(2, 0));
    CHECK(dh_rng_u32(1, 0) != dh_rng_u32(1, 1));
    /* moments */
    double s = 0, ss = 0, ns = 0, nss = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double u = dh_rng_uniform(7, (uint64_t)i), z = dh_rng_normal(7, (uint64_t)i);
        CHECK(u >= 0.0 && u < 1.0);
        s += u;
        ss += u * u;
        ns += z;
        nss += z * z;
    }
    CHECK_NEAR(s / n, 0.5, 0.005);
    CHECK_NEAR(ss / n - (s / n) * (s / n), 1.0 / 12, 0.002);
    CHECK_NEAR(ns / n, 0.0, 0.01);
    CHECK_NEAR(nss / n, 1.0, 0.02);
    /* init */
    dk_tensor w = T(2, 300, 400, 1, 1), w2 = T(2, 300, 400, 1, 1);
    REQUIRE(dk_init_he(&w, 400, 5, NULL) == 0);
    REQUIRE(dk_init_he(&w2, 400, 5, NULL) == 0);
    CHECK(memcmp(w.data, w2.data, (size_t)w.n * 4) == 0);
    double var;
    dk_sumsq(&w, &var, NULL);
    CHECK_NEAR(var / w.n, 2.0 / 400, 0.05 * 2.0 / 400);
    REQUIRE(dk_init_xavier(&w, 400, 300, 5, NULL) == 0);
    float a = sqrtf(6.0f / 700), mx = 0;
    for (int64_t i = 0; i < w.n; i++) mx = fmaxf(mx, fabsf(w.data[i]));
    CHECK(mx <= a && mx > 0.99f * a);
    dk_tensor_free(&w);
    dk_tensor_free(&w2);
    /* permutation */
    int32_t p[1000], q[1000];
    int seen[1000] = { 0 };
    dk_permutation(p, 1000, 3, 1);
    dk_permutation(q, 1000, 3, 1);
    CHECK(memcmp(p, q, sizeof p) == 0);
    int fixed = 0;
    for (int i = 0; i < 1000; i++) {
        REQUIRE(p[i] >= 0 && p[i] < 1000);
        seen[p[i]]++;
        fixed += p[i] == i;
    }
    for (int i = 0; i < 1000; i++) CHECK(seen[i] == 1);
    CHECK(fixed < 10);
    dk_permutation(q, 1000, 3, 2);
    CHECK(memcmp(p, q, sizeof p) != 0);
}

/* ---- augmentation ------------------------------------------------------------------------------------------ */
static void t_augment(void) {
    enum { S = 6, C = 3, H = 5, W = 7 };
    uint8_t img[S * C * H * W];
    for (int i = 0; i < S * C * H * W; i++) img[i] = (uint8_t)(i * 37 + 11);
    float mean[3] = { 0.5f, 0.4f, 0.3f }, std[3] = { 0.25f, 0.2f, 0.3f };
    int32_t idx[4] = { 5, 0, 3, 3 };
    dk_tensor o = T(4, 4, C, H, W), o2 = T(4, 4, C, H, W);
    dh_err e;
    /* plain normalisation */
    REQUIRE(dk_images_augment(img, S, C, H, W, idx, 0, 0, mean, std, 1, 0, &o, &e) == 0);
    double md = 0;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < H * W; k++) {
                double ref = (img[(idx[r] * C + c) * H * W + k] / 255.0 - mean[c]) / std[c];
                md = fmax(md, fabs(ref - o.data[(r * C + c) * H * W + k]));
            }
    CHECKF(md < 1e-5, "normalise max diff %g", md);
    /* crop + flip: deterministic, and each row is a shifted (mirrored) copy with zeros outside */
    int pad = 2;
    REQUIRE(dk_images_augment(img, S, C, H, W, idx, pad, 1, mean, std, 9, 40, &o, &e) == 0);
    REQUIRE(dk_images_augment(img, S, C, H, W, idx, pad, 1, mean, std, 9, 40, &o2, &e) == 0);
    CHECK(memcmp(o.data, o2.data, (size_t)o.n * 4) == 0);
    int flips = 0, shifted = 0;
    for (int r = 0; r < 4; r++) {
        dk_aug_draw d = dk_aug_draws(9, 40 + r, pad, 1);
        CHECK(d.oy >= 0 && d.oy <= 2 * pad && d.ox >= 0 && d.ox <= 2 * pad);
        flips += d.flip;
        shifted += d.oy != pad || d.ox != pad;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int sy = y + d.oy - pad, xx = d.flip ? W - 1 - x : x, sx = xx + d.ox - pad;
                    double ref = (sy < 0 || sy >= H || sx < 0 || sx >= W)
                                     ? 0.0
                                     : (img[((idx[r] * C + c) * H + sy) * W + sx] / 255.0 - mean[c]) / std[c];
                    md = fmax(md, fabs(ref - o.data[((r * C + c) * H + y) * W + x]));
                }
    }
    CHECKF(md < 1e-5, "crop/flip max diff %g", md);
    /* over many rows both flips and several offsets occur */
    int nflip = 0, offs[5] = { 0 };
    for (int r = 0; r < 1000; r++) {
        dk_aug_draw d = dk_aug_draws(3, r, 2, 1);
        nflip += d.flip;
        offs[d.ox]++;
    }
    CHECKF(nflip > 400 && nflip < 600, "%d flips of 1000", nflip);
    for (int i = 0; i < 5; i++) CHECKF(offs[i] > 120, "offset %d drawn %d times of 1000", i, offs[i]);
    /* errors */
    int32_t badidx[4] = { 0, 1, 6, 2 };
    CHECK(dk_images_augment(img, S, C, H, W, badidx, 0, 0, mean, std, 1, 0, &o, &e) == DH_EINVAL);
    float badstd[3] = { 0.2f, 0.0f, 0.3f };
    CHECK(dk_images_augment(img, S, C, H, W, idx, 0, 0, mean, badstd, 1, 0, &o, &e) == DH_EINVAL);
    dk_tensor_free(&o);
    dk_tensor_free(&o2);
    /* label gather */
    int32_t labs[6] = { 10, 11, 12, 13, 14, 15 }, out[4];
    REQUIRE(dk_gather_i32(DK_CPU, labs, idx, 4, out, &e) == 0);
    CHECK(out[0] == 15 && out[1] == 10 && out[2] == 13 && out[3] == 13);
}

/* Reflection padding (DK_PAD_REFLECT) against a hand-computed image: 2 channels
 * of 3x4 pixels padded by 2 (the most a side of 3 allows) as PyTorch's
 * F.pad(mode='reflect') pads them; each output row is the crop at the row's
 * drawn offset (oy, ox) of that padded image, mirrored when its coin says. */
static void t_augment_reflect(void) {
    enum { C = 2, H = 3, W = 4, PAD = 2, N = 200 };
    /* pixel index y W + x of each padded position: rows 2 1 | 0 1 2 | 1 0, columns 2 1 | 0 1 2 3 | 2 1 */
    /* clang-format off */
    static const int P[H + 2 * PAD][W + 2 * PAD] = {
        { 10, 9,  8, 9, 10, 11,  10, 9 },
        {  6, 5,  4, 5,  6,  7,   6, 5 },
        {  2, 1,  0, 1,  2,  3,   2, 1 },
        {  6, 5,  4, 5,  6,  7,   6, 5 },
        { 10, 9,  8, 9, 10, 11,  10, 9 },
        {  6, 5,  4, 5,  6,  7,   6, 5 },
        {  2, 1,  0, 1,  2,  3,   2, 1 },
    };
    /* clang-format on */
    uint8_t img[C * H * W];
    for (int i = 0; i < C * H * W; i++) img[i] = (uint8_t)(20 * i + 3);
    float mean[C] = { 0.0f, 0.5f }, std[C] = { 1.0f, 0.25f };
    int32_t idx[N] = { 0 }; /* every row the one image */
    dk_tensor o = T(4, N, C, H, W), z = T(4, N, C, H, W);
    dh_err e;
    REQUIRE(dk_images_augment(img, 1, C, H, W, idx, PAD, DK_FLIP_RANDOM | DK_PAD_REFLECT, mean, std, 21, 5, &o, &e) ==
            0);
    REQUIRE(dk_images_augment(img, 1, C, H, W, idx, PAD, DK_FLIP_RANDOM, mean, std, 21, 5, &z, &e) == 0);
    int seen[2 * PAD + 1][2 * PAD + 1] = { { 0 } }, flips = 0, bad = 0, zeros = 0;
    for (int r = 0; r < N; r++) {
        dk_aug_draw d = dk_aug_draws(21, 5 + (uint64_t)r, PAD, DK_FLIP_RANDOM);
        seen[d.oy][d.ox] = 1;
        flips += d.flip;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int xx = d.flip ? W - 1 - x : x, k = P[y + d.oy][xx + d.ox];
                    float want = dk_affine_rn((float)img[c * H * W + k], 1.0f / (255.0f * std[c]), mean[c] / std[c]);
                    size_t i = (((size_t)r * C + c) * H + y) * W + x;
                    bad += o.data[i] != want;
                    /* the mean-padded crop: the same pixel inside, 0 outside */
                    int in = y + d.oy >= PAD && y + d.oy < H + PAD && xx + d.ox >= PAD && xx + d.ox < W + PAD;
                    bad += z.data[i] != (in ? want : 0.0f);
                    zeros += !in;
                }
    }
    CHECKF(bad == 0, "%d values differ from the hand-padded image", bad);
    int offsets = 0;
    for (int i = 0; i <= 2 * PAD; i++)
        for (int j = 0; j <= 2 * PAD; j++) offsets += seen[i][j];
    CHECKF(offsets == 25 && flips > 50 && flips < 150 && zeros > 0, "%d offsets, %d flips", offsets, flips);
    /* the padding must stay below each side: 3 rows allow 2, not 3; a width of 2 allows 1 */
    CHECK(dk_images_augment(img, 1, C, H, W, idx, H, DK_PAD_REFLECT, mean, std, 21, 5, &o, &e) == DH_EINVAL);
    CHECK(dk_images_augment(img, 1, C, H, W, idx, H, DK_PAD_MEAN, mean, std, 21, 5, &o, &e) == 0);
    dk_tensor n2 = T(4, 1, 1, 4, 2);
    CHECK(dk_images_augment(img, 1, 1, 4, 2, idx, 2, DK_PAD_REFLECT, mean, std, 21, 5, &n2, &e) == DH_EINVAL);
    CHECK(dk_images_augment(img, 1, 1, 4, 2, idx, 1, DK_FLIP_ALL | DK_PAD_REFLECT, mean, std, 21, 5, &n2, &e) == 0);
    CHECK(dk_images_augment(img, 1, 1, 4, 2, idx, 1, DK_FLIP_ALL + 1 + DK_PAD_REFLECT, mean, std, 21, 5, &n2, &e) ==
          DH_EINVAL);
    dk_tensor_free(&n2);
    dk_tensor_free(&o);
    dk_tensor_free(&z);
}

/* ---- devices, tensors, errors ------------------------------------------------------------------------------- */
static void t_devices_and_tensors(void) {
    dk_device d;
    dh_err e;
    CHECK(dk_device_parse("cpu", &d, &e) == 0 && d == DK_CPU);
    CHECK(dk_device_parse("auto", &d, &e) == 0);
    if (!dk_cuda_available()) {
        CHECK(d == DK_CPU);
        CHECK(dk_device_parse("cuda", &d, &e) == DH_EDEVICE);
        /* the reason: this build has no CUDA backend, or the library / device that is missing */
        CHECK(strstr(e.msg, "CUDA") != NULL);
        CHECK(dk_init(DK_CUDA, &e) == DH_EDEVICE);
    }
    CHECK(dk_device_parse("tpu", &d, &e) == DH_EINVAL);
    CHECK(dk_init(DK_CPU, &e) == 0);
    dk_tensor t = T(3, 2, 3, 4, 1), v, rows;
    for (int64_t i = 0; i < t.n; i++) t.data[i] = (float)i;
    int64_t s2[2] = { 6, 4 }, s3[2] = { 5, 5 };
    REQUIRE(dk_tensor_view(&t, 2, s2, &v, &e) == 0);
    CHECK(v.n == 24 && v.owns == 0 && v.data == t.data);
    CHECK(dk_tensor_view(&t, 2, s3, &v, &e) == DH_EINVAL);
    REQUIRE(dk_tensor_rows(&t, 1, 1, &rows, &e) == 0);
    CHECK(rows.n == 12 && rows.data[0] == 12.0f);
    CHECK(dk_tensor_rows(&t, 1, 2, &rows, &e) == DH_EINVAL);
    char buf[64];
    CHECK(strcmp(dk_shape_str(&t, buf, sizeof buf), "(2, 3, 4)") == 0);
    float host[24];
    CHECK(dk_download(&t, host, 23, &e) == DH_EINVAL);
    REQUIRE(dk_download(&t, host, 24, &e) == 0);
    CHECK(host[23] == 23.0f);
    double s;
    dk_sum(&t, &s, NULL);
    CHECK_NEAR(s, 276, 0);
    dk_tensor u = T(3, 2, 3, 4, 1);
    REQUIRE(dk_axpby(2.0f, &t, 0.0f, &u, &e) == 0);
    CHECK(u.data[5] == 10.0f);
    dk_tensor_free(&v); /* a view: nothing freed */
    dk_tensor_free(&t);
    dk_tensor_free(&u);
    dk_tensor empty = { 0 };
    dk_tensor_free(&empty);
    int64_t huge[4] = { 1 << 20, 1 << 20, 1 << 20, 1 };
    CHECK(dk_tensor_alloc(&t, DK_CPU, 4, huge, &e) == DH_ELIMIT);
    int64_t neg[1] = { -1 };
    CHECK(dk_tensor_alloc(&t, DK_CPU, 1, neg, &e) == DH_EINVAL);
    /* conv argument errors */
    dk_tensor x = T(4, 1, 2, 5, 5), w = T(4, 3, 1, 3, 3), y = T(4, 1, 3, 3, 3);
    CHECK(dk_conv2d_forward(&x, &w, NULL, 1, 0, &y, &e) == DH_EINVAL); /* channel mismatch */
    CHECK(strstr(e.msg, "conv2d_forward: filter has shape (3, 1, 3, 3), expected (*, 2, *, *)") != NULL);
    dk_tensor w2 = T(4, 3, 2, 7, 7);
    CHECK(dk_conv2d_forward(&x, &w2, NULL, 1, 0, &y, &e) == DH_EINVAL); /* kernel does not fit */
    dk_tensor_free(&x);
    dk_tensor_free(&w);
    dk_tensor_free(&y);
    dk_tensor_free(&w2);
    dk_shutdown();
}

/* ---- integration: a small MLP learns three Gaussian blobs ------------------------------------------- */
static void t_tiny_training(void) {
    enum { N = 96, D = 2, H = 16, K = 3 };
    dk_tensor x = T(2, N, D, 1, 1), w1 = T(2, H, D, 1, 1), b1 = T(1, H, 1, 1, 1), h = T(2, N, H, 1, 1);
    dk_tensor w2 = T(2, K, H, 1, 1), b2 = T(1, K, 1, 1, 1), z = T(2, N, K, 1, 1), gz = T(2, N, K, 1, 1);
    dk_tensor gh = T(2, N, H, 1, 1), gw1 = T(2, H, D, 1, 1), gb1 = T(1, H, 1, 1, 1), gw2 = T(2, K, H, 1, 1),
              gb2 = T(1, K, 1, 1, 1);
    dk_tensor v[4] = { T(2, H, D, 1, 1), T(1, H, 1, 1, 1), T(2, K, H, 1, 1), T(1, K, 1, 1, 1) };
    int32_t lab[N];
    const float cx[K] = { -2, 2, 0 }, cy[K] = { -1, -1, 2 };
    for (int i = 0; i < N; i++) {
        lab[i] = i % K;
        x.data[i * 2] = cx[lab[i]] + 0.7f * dh_rng_normal(5, 2 * (uint64_t)i);
        x.data[i * 2 + 1] = cy[lab[i]] + 0.7f * dh_rng_normal(5, 2 * (uint64_t)i + 1);
    }
    dh_err e;
    REQUIRE(dk_init_he(&w1, D, 1, &e) == 0 && dk_init_xavier(&w2, H, K, 2, &e) == 0);
    double loss0 = -1, loss = 0;
    int64_t correct = 0;
    dk_tensor *P[4] = { &w1, &b1, &w2, &b2 }, *G[4] = { &gw1, &gb1, &gw2, &gb2 };
    for (int step = 0; step < 300; step++) {
        REQUIRE(dk_fc_forward(&x, &w1, &b1, &h, &e) == 0 && dk_relu_forward(&h, &h, &e) == 0 &&
                dk_fc_forward(&h, &w2, &b2, &z, &e) == 0 &&
                dk_softmax_xent(&z, lab, 0.0f, 1.0f, &loss, &correct, &gz, &e) == 0 &&
                dk_fc_backward(&h, &w2, &gz, &gh, &gw2, &gb2, &e) == 0 && dk_relu_backward(&h, &gh, &gh, &e) == 0 &&
                dk_fc_backward(&x, &w1, &gh, NULL, &gw1, &gb1, &e) == 0);
        if (loss0 < 0) loss0 = loss;
        for (int i = 0; i < 4; i++) REQUIRE(dk_sgd_step(P[i], G[i], &v[i], 0.05f, 0.9f, 1e-4f, 1, &e) == 0);
    }
    CHECKF(loss < 0.3 * loss0 && correct >= N * 9 / 10, "loss %g -> %g, %lld/%d correct", loss0, loss,
           (long long)correct, N);
    dk_tensor *all[] = { &x, &w1, &b1, &h, &w2, &b2, &z, &gz, &gh, &gw1, &gb1, &gw2, &gb2, &v[0], &v[1], &v[2], &v[3] };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dk_tensor_free(all[i]);
}

int main(void) {
    RUN(t_conv_forward_naive);
    RUN(t_conv_backward_fd);
    RUN(t_conv_chunked);
    RUN(t_matmul_transposes);
    RUN(t_fc_forward_backward);
    RUN(t_batchnorm);
    RUN(t_activations);
    RUN(t_pooling);
    RUN(t_dropout);
    RUN(t_softmax_xent);
    RUN(t_sgd_hand);
    RUN(t_schedules);
    RUN(t_rng);
    RUN(t_augment);
    RUN(t_augment_reflect);
    RUN(t_devices_and_tensors);
    RUN(t_tiny_training);
    dk_shutdown();
    return check_done();
}
