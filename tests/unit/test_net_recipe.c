/* test_net_recipe.c — the fast CIFAR-10 recipe's pieces (dh-pretrain --arch
 * air): the symmetric eigen-decomposition, the patch-whitening start (its
 * outputs on the training patches are whitened), the "whiten" conv's
 * frozen weight, per-parameter learning-rate scales, the lookahead's
 * arithmetic and decay, the partial identity start, and the alternating
 * and test-time flips of dk_images_augment (deterministic, per image). */
#include "check.h"
#include "dh_rng.h"
#include "net.h"
#include "train.h"

/* Element i of a tensor (dk_download takes whole tensors). */
static float at(const dk_tensor *t, int64_t i) {
    float *h = malloc((size_t)t->n * sizeof *h), v = NAN;
    if (h && dk_download(t, h, t->n, NULL) == DH_OK) v = h[i];
    free(h);
    return v;
}

static void t_sym_eig(void) {
    enum { D = 6 };
    double A[D * D], w[D], V[D * D];
    /* A = B B^T + I for a random B: symmetric positive definite */
    double Bm[D * D];
    for (int i = 0; i < D * D; i++) Bm[i] = dh_rng_normal(5, (uint64_t)i);
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double s = i == j;
            for (int k = 0; k < D; k++) s += Bm[i * D + k] * Bm[j * D + k];
            A[i * D + j] = s;
        }
    dh_err e;
    REQUIRE(net_sym_eig(A, D, w, V, &e) == DH_OK);
    for (int i = 1; i < D; i++) CHECK(w[i - 1] >= w[i]);
    /* A v_i = w_i v_i, V orthonormal */
    for (int i = 0; i < D; i++) {
        for (int r = 0; r < D; r++) {
            double s = 0;
            for (int k = 0; k < D; k++) s += A[r * D + k] * V[i * D + k];
            CHECK_NEAR(s, w[i] * V[i * D + r], 1e-9 * w[0]);
        }
        for (int j = 0; j < D; j++) {
            double s = 0;
            for (int k = 0; k < D; k++) s += V[i * D + k] * V[j * D + k];
            CHECK_NEAR(s, i == j, 1e-12);
        }
    }
    CHECK(net_sym_eig(A, 0, w, V, &e) == DH_EINVAL);
}

/* Images with correlated channels and neighbouring pixels. */
static void smooth_images(float *x, int N, int C, int H, int W, uint64_t seed) {
    for (int i = 0; i < N; i++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++) {
                uint64_t k = ((uint64_t)i * H + y) * W + xx;
                double base = dh_rng_normal(seed, 2 * k) + (xx > 0 ? 0.8 * x[((i * C) * H + y) * W + xx - 1] : 0);
                for (int c = 0; c < C; c++)
                    x[((i * C + c) * H + y) * W + xx] =
                        (float)(base * (1 + 0.3 * c) + 0.5 * dh_rng_normal(seed + 1 + c, k));
            }
}

static void t_whiten(void) {
    enum { N = 40, C = 3, H = 9, W = 9, OUT = 24 };
    const char *text = "input 3 9 9\nconv 24 k2 whiten name=wh\nfeature\n";
    netspec ns;
    dh_err e;
    REQUIRE(netspec_parse(text, "t", &ns, &e) == DH_OK);
    CHECK(ns.layers[0].whiten == 1);
    net *n;
    REQUIRE(net_create(&ns, 0, DK_CPU, N, &n, &e) == DH_OK);
    REQUIRE(net_init(n, 3, &e) == DH_OK);
    CHECK(n->params[0].frozen == 1 && n->params[1].frozen == 0);
    static float x[N * C * H * W];
    smooth_images(x, N, C, H, W, 11);
    const double eps = 1e-4;
    REQUIRE(net_whiten_init(n, x, N, eps, &e) == DH_OK);
    dk_tensor X, z;
    REQUIRE(dk_tensor_alloc4(&X, DK_CPU, 4, N, C, H, W, &e) == DH_OK);
    REQUIRE(dk_upload(&X, x, X.n, &e) == DH_OK);
    REQUIRE(net_forward_to_z(n, &X, 0, &z, &e) == DH_OK);
    /* outputs (N, 24, 8, 8): channel m+i is minus channel i; channels 0..11
     * over every position have second moments diag(l / (l + eps)) ~ I */
    int P = (H - 1) * (W - 1), m = OUT / 2;
    double cov[12][12] = { { 0 } };
    for (int i = 0; i < N; i++)
        for (int p = 0; p < P; p++)
            for (int a = 0; a < m; a++) {
                float va = z.data[((size_t)i * OUT + a) * P + p];
                CHECK_NEAR(z.data[((size_t)i * OUT + m + a) * P + p], -va, 1e-5);
                for (int b = 0; b < m; b++) cov[a][b] += va * z.data[((size_t)i * OUT + b) * P + p];
            }
    for (int a = 0; a < m; a++)
        for (int b = 0; b < m; b++) {
            cov[a][b] /= (double)N * P;
            if (a != b) CHECKF(fabs(cov[a][b]) < 1e-3, "cov[%d][%d] = %g", a, b, cov[a][b]);
        }
    /* the leading directions are whitened to 1 (eps is tiny beside them) */
    for (int a = 0; a < 6; a++) CHECKF(fabs(cov[a][a] - 1) < 0.02, "var[%d] = %g", a, cov[a][a]);
    for (int a = 0; a < m; a++) CHECK(cov[a][a] < 1 + 1e-3);
    /* a whiten layer is never trained: the step skips it */
    float w0 = at(&n->params[0].w, 0), w1;
    dk_fill(&n->params[0].g, 1.0f, NULL);
    dk_fill(&n->params[1].g, 1.0f, NULL);
    float lr[NET_NGROUPS] = { 0.1f, 0.1f }, wd[NET_NGROUPS] = { 0, 0 };
    REQUIRE(net_sgd_step(n, lr, 0.0f, wd, 0, &e) == DH_OK);
    w1 = at(&n->params[0].w, 0);
    CHECK(w0 == w1 && isfinite(w0));
    CHECK_NEAR(at(&n->params[1].w, 0), -0.1, 1e-7);
    /* the spec's rules */
    netspec bad;
    CHECK(netspec_parse("input 3 9 9\nconv 26 k2 whiten\nfeature\n", "t", &bad, &e) == DH_EFORMAT);
    CHECK(netspec_parse("input 3 9 9\nconv 7 k2 whiten\nfeature\n", "t", &bad, &e) == DH_EFORMAT);
    CHECK(netspec_parse("input 3 9 9\nrelu\nconv 8 k2 whiten\nfeature\n", "t", &bad, &e) == DH_EFORMAT);
    CHECK(strstr(e.msg, "first layer") != NULL);
    dk_tensor_free(&X);
    net_free(n);
    netspec_free(&ns);
}

static void t_lr_scale(void) {
    netspec ns;
    dh_err e;
    REQUIRE(netspec_parse("input 1 2 2\nfc 2\nbn\nfeature\n", "t", &ns, &e) == DH_OK);
    net *n;
    REQUIRE(net_create(&ns, 0, DK_CPU, 4, &n, &e) == DH_OK);
    REQUIRE(net_init(n, 1, &e) == DH_OK);
    train_recipe r = { 0.4f, 8.0f, 1, 0, 0, 0 };
    REQUIRE(train_recipe_apply(n, &r, &e) == DH_OK);
    CHECK(n->bn_momentum == 0.4f);
    /* params: fc1.weight, fc1.bias, bn1.weight (frozen), bn1.bias (x8, decayed) */
    CHECK(n->params[2].frozen == 1 && n->params[3].lr_scale == 8.0f && n->params[3].decay == 1);
    for (int i = 0; i < n->nparams; i++) {
        dk_fill(&n->params[i].w, 1.0f, NULL);
        dk_fill(&n->params[i].g, 0.5f, NULL);
    }
    float lr[NET_NGROUPS] = { 0.1f, 0.1f }, wd[NET_NGROUPS] = { 0.2f, 0.2f }, v[4];
    REQUIRE(net_sgd_step(n, lr, 0.0f, wd, 0, &e) == DH_OK);
    for (int i = 0; i < 4; i++) v[i] = at(&n->params[i].w, 0);
    CHECK_NEAR(v[0], 1 - 0.1 * (0.5 + 0.2), 1e-6);     /* weight: decayed */
    CHECK_NEAR(v[1], 1 - 0.1 * 0.5, 1e-6);             /* bias: no decay */
    CHECK(v[2] == 1.0f);                               /* frozen */
    CHECK_NEAR(v[3], 1 - 0.8 * (0.5 + 0.2 / 8), 1e-6); /* lr x 8, decay per step lr x wd */
    net_free(n);
    netspec_free(&ns);
}

static void t_lookahead(void) {
    netspec ns;
    dh_err e;
    REQUIRE(netspec_parse("input 1 2 2\nfc 3\nbn\nfeature\n", "t", &ns, &e) == DH_OK);
    net *n;
    REQUIRE(net_create(&ns, 2, DK_CPU, 4, &n, &e) == DH_OK);
    REQUIRE(net_init(n, 1, &e) == DH_OK);
    net_ema a;
    REQUIRE(net_ema_init(&a, n, &e) == DH_OK);
    CHECK(a.np == n->nparams && a.ns == n->nstate);
    float w0[12], w1[12], r[12];
    dk_download(&n->params[0].w, w0, 12, NULL);
    for (int i = 0; i < 12; i++) w1[i] = w0[i] + 1.0f + i;
    dk_upload(&n->params[0].w, w1, 12, NULL);
    dk_fill(&n->state[0].t, 2.0f, NULL); /* bn1.running_mean: 0 -> 2 */
    REQUIRE(net_ema_lookahead(&a, n, 0.75f, &e) == DH_OK);
    dk_download(&n->params[0].w, r, 12, NULL);
    for (int i = 0; i < 12; i++) CHECK_NEAR(r[i], 0.75 * w0[i] + 0.25 * w1[i], 1e-6);
    dk_download(&a.p[0], r, 12, NULL);
    for (int i = 0; i < 12; i++) CHECK_NEAR(r[i], 0.75 * w0[i] + 0.25 * w1[i], 1e-6);
    CHECK_NEAR(at(&n->state[0].t, 0), 0.5, 1e-7);
    /* decay 1: the net gets the average whatever it holds */
    dk_fill(&n->params[0].w, 9.0f, NULL);
    REQUIRE(net_ema_lookahead(&a, n, 1.0f, &e) == DH_OK);
    CHECK_NEAR(at(&n->params[0].w, 0), 0.75 * w0[0] + 0.25 * w1[0], 1e-6);
    CHECK(net_ema_lookahead(&a, n, 1.5f, &e) == DH_EINVAL);
    /* the decay: none at the start, 0.95^5 at the end, cubic between */
    CHECK(train_lookahead_decay(0, 100) == 0);
    CHECK_NEAR(train_lookahead_decay(100, 100), pow(0.95, 5), 1e-12);
    CHECK_NEAR(train_lookahead_decay(50, 100), pow(0.95, 5) / 8, 1e-12);
    net_ema_free(&a);
    net_free(n);
    netspec_free(&ns);
}

static void t_dirac(void) {
    netspec ns;
    dh_err e;
    REQUIRE(netspec_parse("input 2 5 5\nconv 3 k3 p1 nobias\nfeature\n", "t", &ns, &e) == DH_OK);
    net *n;
    REQUIRE(net_create(&ns, 0, DK_CPU, 2, &n, &e) == DH_OK);
    REQUIRE(net_init(n, 1, &e) == DH_OK);
    REQUIRE(net_init_dirac(n, &e) == DH_OK);
    dk_tensor X, z;
    REQUIRE(dk_tensor_alloc4(&X, DK_CPU, 4, 2, 2, 5, 5, &e) == DH_OK);
    dk_rand_normal(&X, 0, 1, 4, 0, NULL);
    REQUIRE(net_forward_to_z(n, &X, 0, &z, &e) == DH_OK);
    /* outputs 0 and 1 are the inputs; output 2 keeps its random filter */
    for (int i = 0; i < 2; i++)
        for (int c = 0; c < 2; c++)
            for (int p = 0; p < 25; p++) CHECK(z.data[(i * 3 + c) * 25 + p] == X.data[(i * 2 + c) * 25 + p]);
    double s;
    dk_tensor w2;
    dk_tensor_rows(&n->params[0].w, 2, 1, &w2, NULL);
    dk_sumsq(&w2, &s, NULL);
    CHECK(s > 0);
    dk_tensor_free(&X);
    net_free(n);
    netspec_free(&ns);
}

static void t_flips(void) {
    enum { S = 6, C = 2, H = 3, W = 4, N = 5 };
    uint8_t img[S * C * H * W];
    for (int i = 0; i < S * C * H * W; i++) img[i] = (uint8_t)(i * 37 % 251);
    int32_t idx[N] = { 4, 0, 5, 2, 3 }, idx2[N] = { 3, 2, 5, 0, 4 };
    float mean[C] = { 0, 0 }, std[C] = { 1, 1 };
    dk_tensor even, odd, all, plain, again;
    dh_err e;
    dk_tensor *ts[] = { &even, &odd, &all, &plain, &again };
    for (int t = 0; t < 5; t++) REQUIRE(dk_tensor_alloc4(ts[t], DK_CPU, 4, N, C, H, W, &e) == DH_OK);
    REQUIRE(dk_images_augment(img, S, C, H, W, idx, 0, DK_FLIP_ALT_EVEN, mean, std, 7, 0, &even, &e) == DH_OK);
    REQUIRE(dk_images_augment(img, S, C, H, W, idx, 0, DK_FLIP_ALT_ODD, mean, std, 7, 100, &odd, &e) == DH_OK);
    REQUIRE(dk_images_augment(img, S, C, H, W, idx, 0, DK_FLIP_ALL, mean, std, 7, 0, &all, &e) == DH_OK);
    REQUIRE(dk_images_augment(img, S, C, H, W, idx, 0, DK_FLIP_NONE, mean, std, 7, 0, &plain, &e) == DH_OK);
    /* the same images in another order and at another offset: the same flips */
    REQUIRE(dk_images_augment(img, S, C, H, W, idx2, 0, DK_FLIP_ALT_EVEN, mean, std, 7, 555, &again, &e) == DH_OK);
    size_t row = (size_t)C * H * W;
    int nflip = 0;
    for (int r = 0; r < N; r++) {
        const float *pe = even.data + r * row, *po = odd.data + r * row, *pa = all.data + r * row,
                    *pp = plain.data + r * row;
        int fe = memcmp(pe, pp, row * sizeof *pe) != 0, fo = memcmp(po, pp, row * sizeof *po) != 0;
        CHECK(fe != fo); /* each image is flipped in exactly one of two consecutive epochs */
        CHECK(memcmp(fe ? pe : po, pa, row * sizeof *pa) == 0);
        nflip += fe;
        for (int c = 0; c < C; c++) /* a flip mirrors the row */
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) CHECK(pa[(c * H + y) * W + x] == pp[(c * H + y) * W + W - 1 - x]);
        for (int r2 = 0; r2 < N; r2++)
            if (idx2[r2] == idx[r]) CHECK(memcmp(again.data + r2 * row, pe, row * sizeof *pe) == 0);
    }
    CHECK(nflip > 0 && nflip < N); /* a coin per image (for this seed both sides come up) */
    CHECK(dk_images_augment(img, S, C, H, W, idx, 0, 5, mean, std, 7, 0, &even, &e) == DH_EINVAL);
    for (int t = 0; t < 5; t++) dk_tensor_free(ts[t]);
}

int main(void) {
    RUN(t_sym_eig);
    RUN(t_whiten);
    RUN(t_lr_scale);
    RUN(t_lookahead);
    RUN(t_dirac);
    RUN(t_flips);
    return check_done();
}
