/* test_net_recipe.c — the fast CIFAR-10 recipe's pieces (dh-pretrain --arch
 * air): the symmetric eigen-decomposition, the patch-whitening start (its
 * outputs on the training patches are whitened), the "whiten" conv's
 * frozen weight, per-parameter learning-rate scales, the lookahead's
 * arithmetic, decay and delayed start, the partial identity start, the
 * alternating and test-time flips of dk_images_augment (deterministic, per
 * image), the crops with reflection at the borders, the warm-up from a
 * fraction of the peak rate, the head started as nn.Linear(bias=False), and
 * airbench94's test-time augmentation (level 2: flips and translations). */
#include "check.h"
#include "dh_rng.h"
#include "dk_elem.h"
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
    train_recipe r = { 0.4f, 8.0f, 1, 0, 0, 0, 0, 0, 0 };
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

/* pixel v normalised with mean 0, std 1, as dk_images_augment does */
static float nrm(uint8_t v) {
    float t = (float)v * (1.0f / 255.0f);
    return t - 0.0f;
}

/* train_image_shift_reflect by hand: PyTorch's F.pad 'reflect' then a crop */
static void t_shift_reflect(void) {
    enum { C = 2, H = 3, W = 4 };
    uint8_t img[C * H * W];
    for (int i = 0; i < C * H * W; i++) img[i] = (uint8_t)(10 * i);
    float mean[C] = { 0, 0 }, std[C] = { 1, 1 }, o[C * H * W];
    /* value of pixel (c, y, x) normalised: 10 (c H W + y W + x) / 255 */
    static const int ry_m1[H] = { 1, 0, 1 }, ry_p1[H] = { 1, 2, 1 }, rx_m1[W] = { 1, 0, 1, 2 },
                     rx_p1[W] = { 1, 2, 3, 2 };
    /* up-left by one: padded[0:H, 0:W] of the image padded by 1 */
    train_image_shift_reflect(img, C, H, W, -1, -1, 0, mean, std, o);
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) CHECK(o[(c * H + y) * W + x] == nrm(img[(c * H + ry_m1[y]) * W + rx_m1[x]]));
    /* down-right by one: padded[2:H+2, 2:W+2] */
    train_image_shift_reflect(img, C, H, W, 1, 1, 0, mean, std, o);
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) CHECK(o[(c * H + y) * W + x] == nrm(img[(c * H + ry_p1[y]) * W + rx_p1[x]]));
    /* flip: the mirror image of the shifted crop (airbench flips the translated views) */
    train_image_shift_reflect(img, C, H, W, 0, 1, 1, mean, std, o);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) CHECK(o[y * W + x] == nrm(img[y * W + rx_p1[W - 1 - x]]));
    /* by two (the training pad): -2 -> 2, W+1 -> W-3 */
    train_image_shift_reflect(img, 1, H, W, 0, -2, 0, mean, std, o);
    CHECK(o[0] == nrm(img[2]) && o[1] == nrm(img[1]) && o[2] == nrm(img[0]) && o[3] == nrm(img[1]));
    train_image_shift_reflect(img, 1, H, W, 0, 2, 0, mean, std, o);
    CHECK(o[0] == nrm(img[2]) && o[1] == nrm(img[3]) && o[2] == nrm(img[2]) && o[3] == nrm(img[1]));
}

/* Crops with reflection (dh-pretrain --arch air): dk_images_augment with
 * DK_PAD_REFLECT is, to the bit, what the host-made crops were: for each row
 * the mean-padded op's draws (dk_aug_draws, dk_aug_flip), then
 * train_image_shift_reflect by (oy - pad, ox - pad); the same pixels inside
 * the image as with mean padding, mirrored ones outside. */
static void t_augment_reflect(void) {
    enum { S = 5, C = 3, H = 6, W = 7, N = 40, PAD = 2 };
    uint8_t img[S * C * H * W];
    for (int i = 0; i < S * C * H * W; i++) img[i] = (uint8_t)(1 + i * 37 % 250); /* never 0 */
    int32_t idx[N];
    for (int r = 0; r < N; r++) idx[r] = (r * 3) % S;
    /* a mean no pixel equals: the zero of dk_images_augment's padding is no pixel */
    float mean[C] = { 0.001f, 0.002f, 0.003f }, std[C] = { 0.5f, 1, 2 };
    size_t row = (size_t)C * H * W;
    dk_tensor rf, zr;
    dh_err e;
    REQUIRE(dk_tensor_alloc4(&rf, DK_CPU, 4, N, C, H, W, &e) == DH_OK);
    REQUIRE(dk_tensor_alloc4(&zr, DK_CPU, 4, N, C, H, W, &e) == DH_OK);
    int modes[] = { DK_FLIP_RANDOM, DK_FLIP_ALT_ODD, DK_FLIP_ALT_EVEN, DK_FLIP_NONE };
    float *want = malloc(row * sizeof *want);
    REQUIRE(want != NULL);
    for (int m = 0; m < 4; m++) {
        REQUIRE(dk_images_augment(img, S, C, H, W, idx, PAD, modes[m] | DK_PAD_REFLECT, mean, std, 9, 77, &rf, &e) ==
                DH_OK);
        REQUIRE(dk_images_augment(img, S, C, H, W, idx, PAD, modes[m] | DK_PAD_MEAN, mean, std, 9, 77, &zr, &e) ==
                DH_OK);
        int shifts = 0, outside = 0, flips = 0;
        for (int r = 0; r < N; r++) {
            const float *a = rf.data + r * row, *z = zr.data + r * row;
            dk_aug_draw d = dk_aug_draws(9, 77 + (uint64_t)r, PAD, modes[m]);
            int fl = dk_aug_flip(d.flip, 9, idx[r], modes[m]), dy = d.oy - PAD, dx = d.ox - PAD;
            train_image_shift_reflect(img + (size_t)idx[r] * row, C, H, W, dy, dx, fl, mean, std, want);
            CHECKF(!memcmp(want, a, row * sizeof *a), "mode %d row %d: not the host crop with reflection", modes[m], r);
            shifts |= 1 << ((dy + PAD) * 5 + dx + PAD);
            flips += fl;
            /* inside the image both paddings agree to the bit; the mean-padded crop has 0 outside */
            for (size_t i = 0; i < row; i++) {
                int y = (int)(i / W % H), x = (int)(i % W), xx = fl ? W - 1 - x : x;
                int in = y + dy >= 0 && y + dy < H && xx + dx >= 0 && xx + dx < W;
                CHECK(in ? z[i] == a[i] : z[i] == 0.0f && a[i] != 0.0f);
                outside += !in;
            }
        }
        CHECK(__builtin_popcount((unsigned)shifts) > 5 && outside > 0); /* the offsets vary */
        CHECK(modes[m] == DK_FLIP_NONE ? flips == 0 : flips > 0 && flips < N);
    }
    /* the same bits again; no padding: plain normalisation in both modes */
    float *first = malloc(N * row * sizeof *first);
    REQUIRE(first != NULL);
    memcpy(first, rf.data, N * row * sizeof *first);
    REQUIRE(dk_images_augment(img, S, C, H, W, idx, PAD, DK_FLIP_NONE | DK_PAD_REFLECT, mean, std, 9, 77, &rf, &e) ==
            DH_OK);
    CHECK(memcmp(first, rf.data, N * row * sizeof *first) == 0);
    REQUIRE(dk_images_augment(img, S, C, H, W, idx, 0, DK_FLIP_RANDOM | DK_PAD_REFLECT, mean, std, 9, 77, &rf, &e) ==
            DH_OK);
    REQUIRE(dk_images_augment(img, S, C, H, W, idx, 0, DK_FLIP_RANDOM, mean, std, 9, 77, &zr, &e) == DH_OK);
    CHECK(memcmp(zr.data, rf.data, N * row * sizeof *first) == 0);
    /* errors: reflection needs a padding below the image's sides (the mean colour allows H); a bad index */
    CHECK(dk_images_augment(img, S, C, H, W, idx, H, DK_PAD_REFLECT, mean, std, 9, 77, &rf, &e) == DH_EINVAL);
    CHECK(dk_images_augment(img, S, C, H, W, idx, H, DK_PAD_MEAN, mean, std, 9, 77, &rf, &e) == DH_OK);
    CHECK(dk_images_augment(img, S, C, H, W, idx, 1, DK_FLIP_ALL + 1 + DK_PAD_REFLECT, mean, std, 9, 77, &rf, &e) ==
          DH_EINVAL);
    CHECK(dk_images_augment(img, S, C, H, W, idx, 1, 16, mean, std, 9, 77, &rf, &e) == DH_EINVAL);
    idx[3] = S;
    CHECK(dk_images_augment(img, S, C, H, W, idx, 1, DK_PAD_REFLECT, mean, std, 9, 77, &rf, &e) == DH_EINVAL);
    free(first);
    free(want);
    dk_tensor_free(&rf);
    dk_tensor_free(&zr);
}

/* airbench's triangle: 0.2 x peak at the first step, the peak at step
 * floor(0.23 T), 0.07 x peak after the last */
static void t_warmup(void) {
    dk_schedule s;
    dh_err e;
    REQUIRE(dk_schedule_parse("onecycle:0.23:0.07", 1.5, &s, &e) == DH_OK);
    const int64_t T = 476, P = 109; /* floor(0.23 x 476) */
    CHECK_NEAR(train_schedule_lr(&s, 0.2, 0, T, 48), 0.3, 1e-12);
    CHECK_NEAR(train_schedule_lr(&s, 0.2, P, T, 48), 1.5, 1e-12);
    CHECK_NEAR(train_schedule_lr(&s, 0.2, P / 2, T, 48), 1.5 * (0.2 + 0.8 * (double)(P / 2) / P), 1e-12);
    CHECK_NEAR(train_schedule_lr(&s, 0.2, T - 1, T, 48), 1.5 * (0.07 + 0.93 / (T - P)), 1e-12);
    CHECK_NEAR(train_schedule_lr(&s, 0.2, T, T, 48), 1.5 * 0.07, 1e-12);
    for (int64_t i = 1; i < T; i++) {
        double a = train_schedule_lr(&s, 0.2, i - 1, T, 48), b = train_schedule_lr(&s, 0.2, i, T, 48);
        CHECK(i <= P ? b > a : b < a);
    }
    /* start 0, or a schedule without warm-up: dk_schedule_lr's */
    for (int64_t i = 0; i < T; i += 7) CHECK(train_schedule_lr(&s, 0, i, T, 48) == dk_schedule_lr(&s, i, T, 48));
    REQUIRE(dk_schedule_parse("step:2", 1.5, &s, &e) == DH_OK);
    CHECK(train_schedule_lr(&s, 0.2, 100, T, 48) == dk_schedule_lr(&s, 100, T, 48));
    REQUIRE(dk_schedule_parse("cosine:0.25", 1.0, &s, &e) == DH_OK);
    CHECK_NEAR(train_schedule_lr(&s, 0.5, 0, 100, 10), 0.5, 1e-12);
    CHECK_NEAR(train_schedule_lr(&s, 0.5, 25, 100, 10), 1.0, 1e-12);
    CHECK_NEAR(train_schedule_lr(&s, 0.5, 100, 100, 10), 0.0, 1e-12);
}

/* The delayed lookahead start: the first multiple of 5 among the step
 * counts of epoch 3 (airbench94: 48 steps per epoch, the copy at 145) */
static void t_lookahead_start(void) {
    train_recipe r;
    memset(&r, 0, sizeof r);
    CHECK(train_lookahead_started(&r, 0, 48) == 1);
    r.lookahead_start = 3;
    CHECK(train_lookahead_started(&r, 144, 48) == 0);
    CHECK(train_lookahead_started(&r, 145, 48) == 1);
    CHECK(train_lookahead_started(&r, 400, 48) == 1);
    CHECK(train_lookahead_started(&r, 149, 49) == 0); /* epoch 3 begins at 148: 150 */
    CHECK(train_lookahead_started(&r, 150, 49) == 1);
}

/* The head as PyTorch's nn.Linear(bias=False): within +-1/sqrt(z), bias 0 and never trained */
static void t_head_torch(void) {
    netspec ns;
    dh_err e;
    REQUIRE(netspec_parse("input 1 4 4\nfc 64\nfeature\n", "t", &ns, &e) == DH_OK);
    net *n;
    REQUIRE(net_create(&ns, 10, DK_CPU, 4, &n, &e) == DH_OK);
    REQUIRE(net_init(n, 1, &e) == DH_OK);
    train_recipe r;
    memset(&r, 0, sizeof r);
    r.head_torch = 1;
    REQUIRE(train_recipe_apply(n, &r, &e) == DH_OK);
    dk_tensor *w = &n->params[n->head_w].w;
    float *h = malloc((size_t)w->n * sizeof *h), big = 0;
    REQUIRE(h && dk_download(w, h, w->n, &e) == DH_OK);
    for (int64_t i = 0; i < w->n; i++) big = fabsf(h[i]) > big ? fabsf(h[i]) : big;
    CHECK(big <= 0.125f + 1e-6f && big > 0.1f); /* 1/sqrt(64), nearly reached by 640 draws */
    CHECK(n->params[n->head_b].frozen == 1 && at(&n->params[n->head_b].w, 0) == 0.0f);
    CHECK(n->params[1].decay == 0); /* fc1.bias: no weight decay, unless decay_all */
    r.head_torch = 0, r.decay_all = 1;
    REQUIRE(train_recipe_apply(n, &r, &e) == DH_OK);
    CHECK(n->params[1].decay == 1 && n->params[0].decay == 1);
    free(h);
    net_free(n);
    netspec_free(&ns);
}

/* Level 2 combines as airbench94: 1/4 each of the image and its mirror,
 * 1/8 each of the four translated views */
static void t_tta_combine(void) {
    enum { n = 2, K = 3 };
    float v[6][n * K], out[n * K];
    const float *views[6];
    for (int j = 0; j < 6; j++) {
        for (int i = 0; i < n * K; i++) v[j][i] = (float)((j + 1) * (i + 1) % 7) - 2.5f * (j == 3);
        views[j] = v[j];
    }
    train_tta_combine(TRAIN_TTA_FULL, views, n, K, out);
    for (int i = 0; i < n * K; i++)
        CHECK_NEAR(out[i], 0.25 * (v[0][i] + v[1][i]) + 0.125 * (v[2][i] + v[3][i] + v[4][i] + v[5][i]), 1e-6);
    train_tta_combine(TRAIN_TTA_FLIP, views, n, K, out);
    for (int i = 0; i < n * K; i++) CHECK_NEAR(out[i], 0.5 * (v[0][i] + v[1][i]), 1e-6);
    CHECK(train_tta_views(TRAIN_TTA_NONE) == 1 && train_tta_views(TRAIN_TTA_FLIP) == 2 &&
          train_tta_views(TRAIN_TTA_FULL) == 6);
    int want[6][3] = { { 0, 0, 0 }, { 0, 0, 1 }, { -1, -1, 0 }, { -1, -1, 1 }, { 1, 1, 0 }, { 1, 1, 1 } };
    for (int j = 0; j < 6; j++) {
        int dy, dx, fl;
        train_tta_view(j, &dy, &dx, &fl);
        CHECK(dy == want[j][0] && dx == want[j][1] && fl == want[j][2]);
    }
}

/* train_images_eval_tta on a tiny affine net: its logits are affine in the
 * pixels, so the combined logits are those of the combined image, which
 * gives the accuracy with test-time augmentation independently */
static void t_eval_tta(void) {
    enum { S = 23, C = 1, H = 5, W = 6, K = 3, B = 8 };
    netspec ns;
    dh_err e;
    REQUIRE(netspec_parse("input 1 5 6\nfc 4\nfeature\n", "t", &ns, &e) == DH_OK);
    net *n;
    REQUIRE(net_create(&ns, K, DK_CPU, B, &n, &e) == DH_OK);
    REQUIRE(net_init(n, 5, &e) == DH_OK);
    float mean[1] = { 0.4f }, std[1] = { 0.3f };
    REQUIRE(net_set_norm(n, mean, std, &e) == DH_OK);
    static uint8_t pix[S * H * W];
    static int32_t lab[S];
    for (int i = 0; i < S * H * W; i++) pix[i] = (uint8_t)(dh_rng_u32(3, (uint64_t)i) >> 24);
    for (int i = 0; i < S; i++) lab[i] = (int32_t)(dh_rng_u32(4, (uint64_t)i) % K);
    train_images d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "tiny");
    d.dev = DK_CPU, d.S = S, d.C = C, d.H = H, d.W = W, d.pix = pix, d.lab = lab, d.hlab = lab, d.nclasses = K;
    dk_tensor x, L;
    REQUIRE(dk_tensor_alloc4(&x, DK_CPU, 4, B, C, H, W, &e) == DH_OK);
    double acc, acc1, acc2, loss, loss2;
    REQUIRE(train_images_eval_tta(n, &d, &x, TRAIN_TTA_FLIP, &acc, &acc1, &loss, &e) == DH_OK);
    REQUIRE(train_images_eval_tta(n, &d, &x, TRAIN_TTA_FULL, &acc, &acc2, &loss2, &e) == DH_OK);
    CHECK(loss == loss2);
    /* by hand, one image at a time */
    int right1 = 0, right2 = 0;
    float v[6][H * W], avg1[H * W], avg2[H * W];
    for (int s = 0; s < S; s++) {
        for (int j = 0; j < 6; j++) {
            int dy, dx, fl;
            train_tta_view(j, &dy, &dx, &fl);
            train_image_shift_reflect(pix + s * H * W, C, H, W, dy, dx, fl, mean, std, v[j]);
        }
        for (int i = 0; i < H * W; i++) {
            avg1[i] = 0.5f * (v[0][i] + v[1][i]);
            avg2[i] = 0.25f * (v[0][i] + v[1][i]) + 0.125f * (v[2][i] + v[3][i] + v[4][i] + v[5][i]);
        }
        for (int t = 0; t < 2; t++) {
            dk_tensor xr, z;
            REQUIRE(dk_tensor_rows(&x, 0, 1, &xr, &e) == DH_OK);
            REQUIRE(dk_upload(&xr, t ? avg2 : avg1, H * W, &e) == DH_OK);
            REQUIRE(net_forward_to_z(n, &xr, 0, &z, &e) == DH_OK && net_head_forward(n, &L, &e) == DH_OK);
            int best = 0;
            for (int k = 1; k < K; k++)
                if (L.data[k] > L.data[best]) best = k;
            *(t ? &right2 : &right1) += best == lab[s];
        }
    }
    CHECK_NEAR(acc1, (double)right1 / S, 1e-12);
    CHECK_NEAR(acc2, (double)right2 / S, 1e-12);
    dk_tensor_free(&x);
    net_free(n);
    netspec_free(&ns);
}

/* train_tta_z_batch: z of each image combined over its views, against the
 * views made one by one on the host (train_image_shift_reflect) and run
 * through the network; a non-linear net (conv, relu, pool), so the mean of
 * z is not z of the mean image. Batches shorter than the buffers, and the
 * refusals. */
static void t_tta_z(void) {
    enum { S = 11, C = 2, H = 6, W = 5, B = 4 };
    netspec ns;
    dh_err e;
    REQUIRE(netspec_parse("input 2 6 5\nconv 3 k3 p1\nrelu\nmaxpool k2\nfc 4\nrelu\nfeature\n", "t", &ns, &e) == DH_OK);
    net *n;
    REQUIRE(net_create(&ns, 0, DK_CPU, B, &n, &e) == DH_OK);
    REQUIRE(net_init(n, 7, &e) == DH_OK);
    float mean[2] = { 0.4f, 0.5f }, std[2] = { 0.3f, 0.2f };
    REQUIRE(net_set_norm(n, mean, std, &e) == DH_OK);
    int D = n->zdim;
    static uint8_t pix[S * C * H * W];
    for (int i = 0; i < S * C * H * W; i++) pix[i] = (uint8_t)(dh_rng_u32(9, (uint64_t)i) >> 24);
    dk_tensor x, x1, z1;
    REQUIRE(dk_tensor_alloc4(&x, DK_CPU, 4, B, C, H, W, &e) == DH_OK);
    REQUIRE(dk_tensor_alloc4(&x1, DK_CPU, 4, 1, C, H, W, &e) == DH_OK);
    float zb[B * 8], v[6][8], want[8], img[C * H * W];
    REQUIRE(D <= 8);
    for (int level = TRAIN_TTA_NONE; level <= TRAIN_TTA_FULL; level++) {
        train_tta_z t;
        REQUIRE(train_tta_z_init(&t, n, B, level, &e) == DH_OK);
        double maxerr = 0;
        for (int s0 = 0; s0 < S; s0 += B) {
            int nb = S - s0 < B ? S - s0 : B;
            REQUIRE(train_tta_z_batch(&t, n, pix + s0 * C * H * W, nb, &x, zb, &e) == DH_OK);
            for (int i = 0; i < nb; i++) {
                const float *views[6];
                for (int j = 0; j < train_tta_views(level); j++) {
                    int dy, dx, fl;
                    train_tta_view(j, &dy, &dx, &fl);
                    train_image_shift_reflect(pix + (s0 + i) * C * H * W, C, H, W, dy, dx, fl, mean, std, img);
                    REQUIRE(dk_upload(&x1, img, C * H * W, &e) == DH_OK);
                    REQUIRE(net_forward_to_z(n, &x1, 0, &z1, &e) == DH_OK);
                    REQUIRE(dk_download(&z1, v[j], D, &e) == DH_OK);
                    views[j] = v[j];
                }
                train_tta_combine(level, views, 1, D, want);
                for (int k = 0; k < D; k++) {
                    double d = fabs((double)zb[i * D + k] - want[k]);
                    if (d > maxerr) maxerr = d;
                }
            }
        }
        printf("# tta %s: max |z - views combined| %.2e\n", train_tta_name(level), maxerr);
        CHECK(maxerr <= 1e-5);
        CHECK(train_tta_parse(train_tta_name(level)) == level);
        CHECK(train_tta_z_batch(&t, n, pix, B + 1, &x, zb, &e) == DH_EINVAL);
        train_tta_z_free(&t);
    }
    /* the flip differs from the image alone: the test above compares something */
    train_tta_z t0, t1;
    float za[B * 8];
    REQUIRE(train_tta_z_init(&t0, n, B, TRAIN_TTA_NONE, &e) == DH_OK && train_tta_z_init(&t1, n, B, TRAIN_TTA_FLIP, &e) == DH_OK);
    REQUIRE(train_tta_z_batch(&t0, n, pix, B, &x, za, &e) == DH_OK && train_tta_z_batch(&t1, n, pix, B, &x, zb, &e) == DH_OK);
    double diff = 0;
    for (int i = 0; i < B * D; i++) diff += fabs((double)za[i] - zb[i]);
    CHECK(diff > 1e-3);
    train_tta_z_free(&t0);
    train_tta_z_free(&t1);
    CHECK(train_tta_parse("flips") == -1 && train_tta_parse("") == -1);
    CHECK(train_tta_z_init(&t0, n, B, 3, &e) == DH_EINVAL);
    dk_tensor_free(&x);
    dk_tensor_free(&x1);
    net_free(n);
    netspec_free(&ns);
    /* translations of images one pixel wide are refused */
    REQUIRE(netspec_parse("input 1 1 4\nfc 2\nfeature\n", "t", &ns, &e) == DH_OK);
    REQUIRE(net_create(&ns, 0, DK_CPU, B, &n, &e) == DH_OK);
    CHECK(train_tta_z_init(&t0, n, B, TRAIN_TTA_FULL, &e) == DH_EINVAL);
    CHECK(strstr(e.msg, "1x4") != NULL);
    CHECK(train_tta_z_init(&t0, n, B, TRAIN_TTA_FLIP, &e) == DH_OK);
    train_tta_z_free(&t0);
    net_free(n);
    netspec_free(&ns);
}

int main(void) {
    RUN(t_sym_eig);
    RUN(t_whiten);
    RUN(t_lr_scale);
    RUN(t_lookahead);
    RUN(t_dirac);
    RUN(t_flips);
    RUN(t_shift_reflect);
    RUN(t_augment_reflect);
    RUN(t_warmup);
    RUN(t_lookahead_start);
    RUN(t_head_torch);
    RUN(t_tta_combine);
    RUN(t_eval_tta);
    RUN(t_tta_z);
    return check_done();
}
