/* test_train.c — kernels/train: the channel-statistics rule, images read
 * onto the device, schedules as the programs spell them, epoch orders, the
 * preconditioning (statistics, and that the step in z's coordinates is the
 * plain step in the normalised ones), the stage-3 trainer lowering the
 * loss on a small separable problem, and the registry losses through the
 * same trainer (each separates the classes; batch rows, steps and epoch
 * ends reach the loss; ADSH's database codes; bad specs and labels);
 * checkpoints (a run paused between two steps, saved, restored into a
 * fresh trainer and finished gives the same bits; what a resume refuses).
 * CPU only. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "dh_rng.h"
#include "hashfn.h"
#include "train_ckpt.h"

/* ---- channel statistics -------------------------------------------------------------------------------------- */
static void t_channel_stats_rule(void) {
    /* 2 images, 2 channels of 2x2: channel 0 half 0 and half 255, channel 1 constant */
    uint8_t px[2 * 2 * 4] = { 0, 255, 0, 255, 7, 7, 7, 7, 255, 0, 255, 0, 7, 7, 7, 7 };
    float m[2], s[2];
    train_channel_stats(px, 2, 2, 2, 2, m, s);
    CHECK_NEAR(m[0], 0.5, 1e-7);
    CHECK_NEAR(s[0], 0.5, 1e-7);
    CHECK_NEAR(m[1], 7 / 255.0, 1e-7);
    CHECK(s[1] == 1.0f); /* constant: std 1 */
    /* one pixel in 10,000 off by one: variance 1.5e-9 <= TRAIN_MIN_VAR, std 1 too */
    uint8_t *q = malloc(10000);
    REQUIRE(q);
    memset(q, 100, 10000);
    q[17] = 101;
    train_channel_stats(q, 1, 1, 100, 100, m, s);
    CHECK_NEAR(m[0], (100 * 10000.0 + 1) / 10000 / 255, 1e-7);
    CHECK(s[0] == 1.0f);
    /* every row counts: rows of one pixel 0, 255, 100 */
    q[0] = 0, q[1] = 255;
    float m3, s3;
    train_channel_stats(q, 3, 1, 1, 1, &m3, &s3);
    CHECK_NEAR(m3, 355 / 3.0 / 255, 1e-6);
    CHECK_NEAR(s3, sqrt((0 + 255.0 * 255 + 100 * 100) / 3 - (355 / 3.0) * (355 / 3.0)) / 255, 1e-6);
    free(q);
}

/* An images stream in memory: n rows of pixels u8 (1, 2, 2) with value
 * 10 * i + j, labels i % 3, and meta classes when nc > 0. */
static char *images_stream(int n, int nc, const int32_t *labels, size_t *size) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, size);
    dhs_schema s;
    int64_t shp[3] = { 1, 2, 2 };
    dhs_schema_init(&s, "images");
    dhs_schema_add(&s, "pixels", DHS_U8, 3, shp, NULL);
    dhs_schema_add(&s, "label", DHS_I32, 0, NULL, NULL);
    dhs_meta *meta = dhs_meta_new();
    const char *names[] = { "a", "b", "c" };
    if (nc > 0) dhs_meta_set_strv(meta, "classes", names, nc);
    uint8_t px[64 * 4];
    int32_t lab[64];
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < 4; j++) px[i * 4 + j] = (uint8_t)(10 * i + j);
        lab[i] = labels ? labels[i] : i % 3;
    }
    const void *cols[2] = { px, lab };
    dhs_writer *w = dhs_writer_open(f, "mem", &s, meta, NULL);
    if (w) dhs_write_rows(w, n, cols, NULL, NULL);
    if (w) dhs_writer_close(w, NULL);
    dhs_meta_free(meta);
    fclose(f);
    return buf;
}

static int read_images(const char *buf, size_t size, int flags, train_images *d, dh_err *e) {
    FILE *f = fmemopen((void *)buf, size, "rb");
    dhs_reader *r = dhs_open(f, "mem.dhs", NULL, e);
    int rc = r ? train_images_read(r, DK_CPU, flags, d, e) : (int)e->code;
    dhs_close(r);
    fclose(f);
    return rc;
}

static void t_images_read(void) {
    size_t size;
    dh_err e;
    char *buf = images_stream(5, 3, NULL, &size);
    train_images d;
    REQUIRE(buf && read_images(buf, size, TRAIN_CLASS_LABELS, &d, &e) == DH_OK);
    CHECK(d.S == 5 && d.C == 1 && d.H == 2 && d.W == 2 && d.nclasses == 3 && !strcmp(d.classes[2], "c"));
    CHECK(d.pix[4 * 3 + 1] == 31 && d.hlab[4] == 1 && d.lab[4] == 1);
    float m, s;
    train_channel_stats(d.pix, 5, 1, 2, 2, &m, &s);
    CHECK(m == d.mean[0] && s == d.std[0]);
    CHECK(!strcmp(d.name, "mem.dhs"));
    train_images_free(&d);
    free(buf);
    /* a label beyond the classes: an error with TRAIN_CLASS_LABELS only */
    int32_t bad[3] = { 0, 1, 3 };
    buf = images_stream(3, 3, bad, &size);
    CHECK(read_images(buf, size, TRAIN_CLASS_LABELS, &d, &e) == DH_EFORMAT);
    CHECKF(strstr(e.msg, "mem.dhs: row 2: label 3 out of range"), "%s", e.msg);
    train_images_free(&d);
    CHECK(read_images(buf, size, 0, &d, &e) == DH_OK && d.nclasses == 3);
    train_images_free(&d);
    free(buf);
    /* without classes: max label + 1 */
    buf = images_stream(4, 0, NULL, &size);
    CHECK(read_images(buf, size, TRAIN_CLASS_LABELS, &d, &e) == DH_OK && d.nclasses == 3 && !d.classes);
    train_images_free(&d);
    free(buf);
}

/* ---- schedules and epochs ------------------------------------------------------------------------------------------ */
static void t_schedule_step_rounding(void) {
    const int epochs[] = { 1, 2, 3, 8, 10, 12, 40 };
    const char *want[] = { "step:1,2", "step:1,2", "step:1,2", "step:4,6", "step:5,7", "step:6,9", "step:20,30" };
    dk_schedule s;
    char r[64];
    dh_err e;
    for (int i = 0; i < 7; i++) {
        CHECK(train_schedule("step", 1.0, epochs[i], &s, r, sizeof r, &e) == DH_OK);
        CHECKF(!strcmp(r, want[i]), "%d epochs: %s, expected %s", epochs[i], r, want[i]);
    }
    /* 10 epochs of 3 steps: x0.1 from epoch 5 (step 15), x0.01 from epoch 7 (step 21) */
    CHECK(train_schedule("step", 2.0, 10, &s, NULL, 0, &e) == DH_OK);
    CHECK_NEAR(dk_schedule_lr(&s, 14, 30, 3), 2.0, 1e-12);
    CHECK_NEAR(dk_schedule_lr(&s, 15, 30, 3), 0.2, 1e-12);
    CHECK_NEAR(dk_schedule_lr(&s, 20, 30, 3), 0.2, 1e-12);
    CHECK_NEAR(dk_schedule_lr(&s, 21, 30, 3), 0.02, 1e-12);
    /* constant is const; cosine:0 is cosine from the base to 0 without warm-up */
    CHECK(train_schedule("constant", 0.5, 3, &s, r, sizeof r, &e) == DH_OK && !strcmp(r, "const"));
    CHECK(dk_schedule_lr(&s, 7, 9, 3) == 0.5);
    CHECK(train_schedule("cosine:0", 1.0, 3, &s, NULL, 0, &e) == DH_OK);
    for (int st = 0; st < 12; st++) CHECK_NEAR(dk_schedule_lr(&s, st, 12, 4), 0.5 * (1 + cos(M_PI * st / 12.0)), 1e-12);
    CHECK(train_schedule("zigzag", 1.0, 3, &s, NULL, 0, &e) == DH_EINVAL);
    CHECK(train_schedule("step:3,2", 1.0, 3, &s, NULL, 0, &e) == DH_EINVAL);
}

static void t_epoch_order(void) {
    int32_t o[50], seen[50];
    int64_t cursor = 0;
    train_epoch_order(o, 50, 0, 7, -1, &cursor); /* shuffle: a permutation */
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 50; i++) CHECK(o[i] >= 0 && o[i] < 50 && !seen[o[i]]++);
    int32_t o2[50];
    train_epoch_order(o2, 50, 1, 7, -1, &cursor);
    CHECK(memcmp(o, o2, sizeof o) != 0); /* a fresh one each epoch */
    /* the paper's sampling: in order, skipping 0..skip rows after each pick, on from the cursor */
    train_epoch_order(o, 50, 0, 7, 3, &cursor);
    CHECK(o[0] == 0);
    for (int i = 1; i < 50; i++) {
        int d = (o[i] - o[i - 1] + 50) % 50;
        CHECKF(d >= 1 && d <= 4, "step %d: %d", i, d);
    }
    int64_t c1 = cursor;
    train_epoch_order(o2, 50, 1, 7, 3, &cursor);
    CHECK(o2[0] == c1);
}

static void t_check_pairs(void) {
    int32_t one[3] = { 2, 2, 2 }, two[3] = { 2, 2, 5 };
    dh_err e;
    CHECK(train_check_pairs(one, 3, &e) == DH_EFORMAT && strstr(e.msg, "single class"));
    CHECK(train_check_pairs(two, 1, &e) == DH_EFORMAT);
    CHECK(train_check_pairs(two, 3, &e) == DH_OK);
}

/* ---- preconditioning and the trainer ------------------------------------------------------------------------------ */
static void t_zstats(void) {
    const float z[3 * 2] = { 1, 10, 3, 10, 5, 13 }; /* mean (3, 11); |z - m|^2: 4+1, 0+1, 4+4 */
    float m[2];
    double r2;
    train_zstats(z, 3, 2, m, &r2);
    CHECK_NEAR(m[0], 3, 1e-6);
    CHECK_NEAR(m[1], 11, 1e-6);
    CHECK_NEAR(r2, 14.0 / 3, 1e-5);
    const float c[2 * 2] = { 4, 4, 4, 4 }; /* constant: no scale */
    train_zstats(c, 2, 2, m, &r2);
    CHECK(r2 == 1.0);
}

/* Separable features: class k around a random centre of scale 3, unit noise. */
static void blobs(float *z, int32_t *lab, int N, int D, int C, uint64_t seed) {
    for (int i = 0; i < N; i++) {
        lab[i] = i % C;
        for (int d = 0; d < D; d++)
            z[i * D + d] =
                3 * dh_rng_normal(seed, (uint64_t)lab[i] * D + d) + 5 + dh_rng_normal(seed + 1, (uint64_t)i * D + d);
    }
}

/* One preconditioned step on z equals the plain step on x = (z - m) / r,
 * mapped back: W = W' / r, b = c - W m (train.h). */
static void t_precondition_is_plain_sgd_on_normalised_z(void) {
    enum { N = 32, D = 6, K = 8 };
    float z[N * D], x[N * D], W[K * D], b[K], W1[K * D], c1[K], m[D], Wp[K * D], bp[K];
    int32_t lab[N];
    double r2;
    dh_err e;
    blobs(z, lab, N, D, 4, 3);
    train_zstats(z, N, D, m, &r2);
    double r = sqrt(r2);
    for (int i = 0; i < N * D; i++) x[i] = (float)((z[i] - m[i % D]) / r);
    train_hash_random(W, b, K, D, 5, z, N);
    for (int k = 0; k < K; k++) {
        b[k] = 0.1f * (k - 4);
        double off = 0;
        for (int d = 0; d < D; d++) {
            W1[k * D + d] = (float)(W[k * D + d] * r);
            off += (double)W[k * D + d] * m[d];
        }
        c1[k] = (float)(b[k] + off);
    }
    dh_hashloss_opts lo = { DH_HL_BALANCED, (double)K * K };
    train_hash_opts pre = { lo, 0.9f, 0.0f, m, r2, NULL }, plain = { lo, 0.9f, 0.0f, NULL, 1.0, NULL };
    train_hash a, p;
    dk_tensor zt = { 0 }, xt = { 0 };
    REQUIRE(train_hash_init(&a, DK_CPU, K, D, N, W, b, &pre, &e) == DH_OK);
    REQUIRE(train_hash_init(&p, DK_CPU, K, D, N, W1, c1, &plain, &e) == DH_OK);
    REQUIRE(dk_tensor_alloc4(&zt, DK_CPU, 2, N, D, 1, 1, &e) == DH_OK && dk_upload(&zt, z, N * D, &e) == DH_OK);
    REQUIRE(dk_tensor_alloc4(&xt, DK_CPU, 2, N, D, 1, 1, &e) == DH_OK && dk_upload(&xt, x, N * D, &e) == DH_OK);
    train_hash_stats sa, sp;
    for (int step = 0; step < 3; step++) {
        CHECK(train_hash_step(&a, &zt, lab, NULL, 0.5f, 0, &sa, &e) == DH_OK);
        CHECK(train_hash_step(&p, &xt, lab, NULL, 0.5f, 0, &sp, &e) == DH_OK);
        CHECK_NEAR(sa.q, sp.q, 1e-4 * sp.q); /* the same u, so the same loss */
    }
    CHECK(train_hash_get(&a, Wp, bp, &e) == DH_OK && train_hash_get(&p, W1, c1, &e) == DH_OK);
    double err = 0, ref = 0;
    for (int k = 0; k < K; k++) {
        double off = 0;
        for (int d = 0; d < D; d++) {
            double w = W1[k * D + d] / r;
            err = fmax(err, fabs(Wp[k * D + d] - w));
            ref = fmax(ref, fabs(w));
            off += w * m[d];
        }
        err = fmax(err, fabs(bp[k] - (c1[k] - off)));
    }
    CHECKF(err <= 1e-5 * (1 + ref), "max difference %g (scale %g)", err, ref);
    train_hash_free(&a);
    train_hash_free(&p);
    dk_tensor_free(&zt);
    dk_tensor_free(&xt);
}

/* dz, the gradient passed to the backbone, is du W with the W of the forward. */
static void t_dz_is_du_times_w(void) {
    enum { N = 16, D = 5, K = 8 };
    float z[N * D], W[K * D], b[K], du[N * K], dz[N * D];
    int32_t lab[N];
    dh_err e;
    blobs(z, lab, N, D, 3, 9);
    train_hash_random(W, b, K, D, 2, z, N);
    train_hash_opts o = { { DH_HL_MEAN, (double)K * K }, 0.9f, 0.0f, NULL, 1.0, NULL };
    train_hash t;
    dk_tensor zt = { 0 };
    REQUIRE(train_hash_init(&t, DK_CPU, K, D, N, W, b, &o, &e) == DH_OK);
    REQUIRE(dk_tensor_alloc4(&zt, DK_CPU, 2, N, D, 1, 1, &e) == DH_OK && dk_upload(&zt, z, N * D, &e) == DH_OK);
    REQUIRE(train_hash_step(&t, &zt, lab, NULL, 0.1f, 1, NULL, &e) == DH_OK);
    REQUIRE(dk_download(&t.du, du, N * K, &e) == DH_OK && dk_download(&t.dz, dz, N * D, &e) == DH_OK);
    double err = 0;
    for (int i = 0; i < N; i++)
        for (int d = 0; d < D; d++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)du[i * K + k] * W[k * D + d];
            err = fmax(err, fabs(dz[i * D + d] - s));
        }
    CHECKF(err < 1e-5, "max |dz - du W| %g", err);
    train_hash_free(&t);
    dk_tensor_free(&zt);
}

/* Stage 3 on cached features, C classes of separable blobs: the first and
 * the last epoch's reports, and the learnt layer in *W, *b. */
static int finetune_blobs(int C, int epochs, train_finetune_stats *first, train_finetune_stats *last, float *z,
                          int32_t *lab, float *W, float *b) {
    enum { N = 256, D = 12, K = 16 };
    dh_err e;
    blobs(z, lab, N, D, C, 11);
    train_features f;
    memset(&f, 0, sizeof f);
    f.N = N, f.D = D, f.z = z, f.lab = lab;
    train_hash_random(W, b, K, D, 1, z, N);
    train_finetune_opts o;
    memset(&o, 0, sizeof o);
    o.loss = (dh_hashloss_opts){ DH_HL_BALANCED, (double)K * K };
    o.precond = 1, o.lr = 1.0, o.momentum = 0.9, o.epochs = epochs, o.skip = -1, o.seed = 1;
    train_finetune t;
    if (train_schedule("cosine:0", 1.0, o.epochs, &o.sched, NULL, 0, &e) ||
        train_finetune_init(&t, &o, DK_CPU, &f, NULL, NULL, 32, W, b, K, &e))
        return e.code;
    int rc = DH_OK;
    for (int ep = 0; rc == DH_OK && ep < o.epochs; ep++) {
        train_finetune_stats *st = ep ? last : first;
        rc = train_finetune_epoch(&t, ep, st, NULL, NULL, &e);
        if (rc == DH_OK && (st->batches != N / 32 || st->rows != N)) rc = DH_EINVAL;
    }
    if (rc == DH_OK) rc = train_hash_get(&t.th, W, b, &e);
    train_finetune_free(&t);
    return rc;
}

static void t_finetune_separates_two_classes(void) {
    enum { N = 256, D = 12, K = 16 };
    static float z[N * D];
    static int32_t lab[N];
    float W[K * D], b[K];
    train_finetune_stats first, last;
    REQUIRE(finetune_blobs(2, 6, &first, &last, z, lab, W, b) == DH_OK);
    double qmin = K * K * exp(-1.0); /* every pair right with |b_i.b_j| = 1 */
    CHECKF(last.right == 1.0 && last.q < 1.01 * qmin && first.q > 1.2 * qmin, "Q %g -> %g (minimum %g), right %g",
           first.q, last.q, qmin, last.right);
    CHECK(last.lr < 0.1 && last.backbone_lr == 0); /* the cosine's end; no backbone */
    CHECKF(first.constant_bits == 0 && last.constant_bits == 0, "constant bits %d, %d", first.constant_bits,
           last.constant_bits);
    /* the learnt layer: one code per class, the two opposite */
    for (int i = 0; i < N; i++)
        for (int k = 0; k < K; k++) {
            double u = b[k], u0 = b[k];
            for (int d = 0; d < D; d++) u += W[k * D + d] * z[i * D + d], u0 += W[k * D + d] * z[(i % 2) * D + d];
            CHECKF((u > 0) == (u0 > 0), "row %d bit %d", i, k);
        }
    for (int k = 0; k < K; k++) {
        double u0 = b[k], u1 = b[k];
        for (int d = 0; d < D; d++) u0 += W[k * D + d] * z[d], u1 += W[k * D + d] * z[D + d];
        CHECKF((u0 > 0) != (u1 > 0), "bit %d agrees across the classes", k);
    }
}

static void t_finetune_lowers_the_loss(void) {
    enum { N = 256, D = 12, K = 16 };
    static float z[N * D];
    static int32_t lab[N];
    float W[K * D], b[K];
    train_finetune_stats first, last;
    REQUIRE(finetune_blobs(4, 6, &first, &last, z, lab, W, b) == DH_OK);
    CHECKF(last.q < 0.85 * first.q && last.right > first.right + 0.1, "Q %g -> %g, right-sign pairs %g -> %g", first.q,
           last.q, first.right, last.right);
}

/* A small run: two blobs of SN rows, SD-D, SK bits. */
enum { SN = 64, SD = 4, SK = 8 };
static float small_z[SN * SD];
static int32_t small_lab[SN];

/* One epoch of the small run (the mean loss, a constant rate lr, batches of
 * 16) from W (SK, SD), b: the trainer in *t (the caller frees it when it was
 * initialised: the epoch ran, with its return code; its report in *st). */
static int small_epoch(const float *W, const float *b, double lr, train_finetune *t, train_finetune_stats *st,
                       dh_err *e) {
    static train_features f;
    memset(&f, 0, sizeof f);
    f.N = SN, f.D = SD, f.z = small_z, f.lab = small_lab;
    train_finetune_opts o;
    memset(&o, 0, sizeof o);
    o.loss = (dh_hashloss_opts){ DH_HL_MEAN, 1.0 };
    o.lr = lr, o.epochs = 1, o.skip = -1;
    if (train_schedule("const", 1.0, 1, &o.sched, NULL, 0, e) ||
        train_finetune_init(t, &o, DK_CPU, &f, NULL, NULL, 16, W, b, SK, e))
        return e->code;
    return train_finetune_epoch(t, 0, st, NULL, NULL, e);
}

static void t_diverged(void) {
    float W[SK * SD], b[SK];
    dh_err e;
    train_finetune t;
    train_finetune_stats st;
    blobs(small_z, small_lab, SN, SD, 2, 4);
    train_hash_random(W, b, SK, SD, 1, small_z, SN);
    W[0] = NAN;
    REQUIRE(small_epoch(W, b, 0.1, &t, &st, &e) == DH_EFORMAT);
    CHECK(strstr(e.msg, "diverged at epoch 1"));
    train_finetune_free(&t);
}

/* The epoch counts the bits whose sign never changed: with lr 0 the layer
 * stays as given, so the bits of a zero row are constant, and a layer of
 * such rows gives every row the same code (collapse). */
static void t_constant_bits(void) {
    blobs(small_z, small_lab, SN, SD, 2, 4);
    for (int dead = 3; dead <= SK; dead += SK - 3) {
        float W[SK * SD] = { 0 }, b[SK];
        for (int k = 0; k < SK; k++) { /* a dead bit: u = +-1; a live one: a feature less its mean (both signs) */
            double m = 0;
            for (int i = 0; i < SN; i++) m += small_z[i * SD + k % SD];
            W[k * SD + k % SD] = k < dead ? 0.0f : 1.0f;
            b[k] = k < dead ? (k % 2 ? 1.0f : -1.0f) : (float)(-m / SN);
        }
        dh_err e;
        train_finetune t;
        train_finetune_stats st;
        char rep[256], want[32];
        REQUIRE(small_epoch(W, b, 0.0, &t, &st, &e) == DH_OK);
        train_finetune_report(&t, &st, rep, sizeof rep);
        snprintf(want, sizeof want, "  constant bits %d/%d", dead, SK);
        CHECKF(st.constant_bits == dead && strstr(rep, want), "%d dead rows: %d constant bits, report: %s", dead,
               st.constant_bits, rep);
        train_finetune_free(&t);
    }
}

/* ---- the registry losses through the trainer ---------------------------------------------------------------------- */
/* mAP of queries qc (nq, K) against database codes dc (nd, K), both as
 * signs of floats, relevance = same label, ties by database order. */
static double map_signs(const float *qc, const int32_t *ql, int nq, const float *dc, const int32_t *dl, int nd, int K) {
    int *dist = malloc(sizeof(int) * (size_t)nd), *order = malloc(sizeof(int) * (size_t)nd);
    double sum = 0;
    for (int q = 0; dist && order && q < nq; q++) {
        for (int j = 0; j < nd; j++) {
            int d = 0;
            for (int k = 0; k < K; k++) d += (qc[q * K + k] > 0) != (dc[j * K + k] > 0);
            dist[j] = d;
        }
        int o = 0;
        for (int d = 0; d <= K; d++)
            for (int j = 0; j < nd; j++)
                if (dist[j] == d) order[o++] = j;
        double hits = 0, ap = 0;
        for (int r = 0; r < nd; r++)
            if (dl[order[r]] == ql[q]) ap += ++hits / (r + 1);
        sum += hits > 0 ? ap / hits : 0;
    }
    free(dist);
    free(order);
    return sum / nq;
}

enum { RN = 256, RD = 12, RK = 16, RB = 32, RC = 4 };

/* A registry loss on 4 classes of blobs, cached features, preconditioned
 * momentum SGD at the registry's lr_hint for the method (dh-finetune's
 * defaults are for real features); t is left initialised (the caller
 * frees it). */
static int registry_run(const char *spec, int epochs, train_features *f, float *z, int32_t *lab, float *W, float *b,
                        train_finetune *t, train_finetune_stats *first, train_finetune_stats *last, dh_err *e) {
    blobs(z, lab, RN, RD, RC, 11);
    memset(f, 0, sizeof *f);
    f->N = RN, f->D = RD, f->z = z, f->lab = lab;
    train_hash_random(W, b, RK, RD, 1, z, RN);
    train_finetune_opts o;
    memset(&o, 0, sizeof o);
    const dh_dloss_method *me = train_loss_method(spec);
    o.loss_spec = spec;
    o.precond = 1, o.lr = me ? me->lr_hint : 0.1, o.momentum = 0.9, o.epochs = epochs, o.skip = -1;
    o.seed = 1;
    memset(t, 0, sizeof *t);
    if (train_schedule("cosine:0", 1.0, o.epochs, &o.sched, NULL, 0, e) ||
        train_finetune_init(t, &o, DK_CPU, f, NULL, NULL, RB, W, b, RK, e))
        return e->code;
    for (int ep = 0; ep < epochs; ep++)
        if (train_finetune_epoch(t, ep, ep ? last : first, NULL, NULL, e)) return e->code;
    return train_hash_get(&t->th, W, b, e);
}

/* Every registry method, at its default rate, separates 4 blobs: the
 * training rows' codes retrieve their class (ADSH: against its learned V). */
static void t_registry_losses_separate_blobs(void) {
    static float z[RN * RD], u[RN * RK];
    static int32_t lab[RN];
    float W[RK * RD], b[RK];
    for (int m = 0; m < dh_dloss_count(); m++) {
        const dh_dloss_method *me = dh_dloss_method_at(m);
        train_features f;
        train_finetune t;
        train_finetune_stats first, last;
        dh_err e;
        int rc = registry_run(me->name, 8, &f, z, lab, W, b, &t, &first, &last, &e);
        CHECKF(rc == DH_OK, "%s: %s", me->name, e.msg);
        if (rc) {
            train_finetune_free(&t);
            continue;
        }
        dh_linear_project(W, b, NULL, z, RN, RD, RK, u);
        const float *db = u;
        int64_t rows;
        int cols;
        if (me->flags & DH_DLOSS_ASYM) db = dh_dloss_tensor(t.dloss, "V", &rows, &cols);
        double map = map_signs(u, lab, RN, db, lab, RN, RK);
        printf("# %-10s lr %-5g loss %.4g -> %.4g, mAP %.4f\n", me->name, t.o.lr, first.loss, last.loss, map);
        CHECKF(map >= 0.9, "%s: mAP %.4f", me->name, map);
        CHECKF(isnan(last.q) && isfinite(last.loss) && last.batches == RN / RB, "%s: report", me->name);
        train_finetune_free(&t);
    }
}

/* The batch's place in the run reaches the loss: HashNet's beta grows with
 * the global step; the report names the method's terms. */
static void t_registry_positions_and_report(void) {
    static float z[RN * RD];
    static int32_t lab[RN];
    float W[RK * RD], b[RK];
    train_features f;
    train_finetune t;
    train_finetune_stats first, last;
    dh_err e;
    /* step_size 1: beta = (1 + 0.005 t)^0.5; 8 steps an epoch, the last step of epoch 3 is t = 23 */
    REQUIRE(registry_run("hashnet:step_size=1", 3, &f, z, lab, W, b, &t, &first, &last, &e) == DH_OK);
    CHECK_NEAR(first.scale, sqrt(1 + 0.005 * 7), 1e-9);
    CHECK_NEAR(last.scale, sqrt(1 + 0.005 * 23), 1e-9);
    char rep[256];
    train_finetune_report(&t, &last, rep, sizeof rep);
    CHECKF(strstr(rep, "loss ") && strstr(rep, "likelihood ") && strstr(rep, "beta 1.056") && strstr(rep, "mean|u|"),
           "%s", rep);
    train_finetune_free(&t);
    /* the exponentiated loss's report is unchanged */
    REQUIRE(registry_run("dpsh", 1, &f, z, lab, W, b, &t, &first, &last, &e) == DH_OK);
    train_finetune_report(&t, &first, rep, sizeof rep);
    CHECKF(strstr(rep, "likelihood ") && strstr(rep, "quantisation ") && !strstr(rep, "beta"), "%s", rep);
    train_finetune_free(&t);
}

/* GreedyHash's classifier learns at the hash layer's rate unless lr= says
 * otherwise; ADSH has the training labels; bad specs and labels. */
static void t_registry_setup(void) {
    static float z[RN * RD];
    static int32_t lab[RN];
    float W[RK * RD], b[RK];
    train_features f;
    train_finetune t;
    train_finetune_stats first, last;
    dh_err e;
    REQUIRE(registry_run("greedyhash", 1, &f, z, lab, W, b, &t, &first, &last, &e) == DH_OK);
    CHECK(dh_dloss_param_value(t.dloss, "lr") == t.o.lr && t.classes == RC);
    train_finetune_free(&t);
    REQUIRE(registry_run("GreedyHash:alpha=0.2,lr=0.05", 1, &f, z, lab, W, b, &t, &first, &last, &e) == DH_OK);
    CHECK(dh_dloss_param_value(t.dloss, "lr") == 0.05 && dh_dloss_param_value(t.dloss, "alpha") == 0.2);
    train_finetune_free(&t);
    CHECK(registry_run("nosuch", 1, &f, z, lab, W, b, &t, &first, &last, &e) == DH_EINVAL &&
          strstr(e.msg, "unknown method 'nosuch'"));
    train_finetune_free(&t);
    CHECK(registry_run("dpsh:eta=-1", 1, &f, z, lab, W, b, &t, &first, &last, &e) == DH_EINVAL &&
          strstr(e.msg, "eta=-1"));
    train_finetune_free(&t);
    CHECK(train_loss_check("dsh:m=24", 48, &e) == DH_OK);
    CHECK(train_loss_check("dsh:q=1", 48, &e) == DH_EINVAL && strstr(e.msg, "unknown parameter 'q'"));
    CHECK(train_loss_check("csq:centres=hadamard", 48, &e) == DH_EINVAL);
    CHECK(train_loss_method("HashNet:alpha=1") == dh_dloss_find("hashnet") && !train_loss_method("balanced"));
    for (int m = 0; m < dh_dloss_count(); m++) /* a default rate for every method */
        CHECK(train_default_lr(dh_dloss_method_at(m)) > 0);
    CHECK(train_default_lr(dh_dloss_find("dpsh")) == 3 && train_default_lr(dh_dloss_find("csq")) == 0.03);
    /* a negative label: refused when the loss is created */
    blobs(z, lab, RN, RD, RC, 11);
    lab[9] = -1;
    memset(&f, 0, sizeof f);
    f.N = RN, f.D = RD, f.z = z, f.lab = lab;
    train_finetune_opts o;
    memset(&o, 0, sizeof o);
    o.loss_spec = "dpsh", o.lr = 0.1, o.epochs = 1, o.skip = -1;
    REQUIRE(train_schedule("const", 1.0, 1, &o.sched, NULL, 0, &e) == DH_OK);
    CHECK(train_finetune_init(&t, &o, DK_CPU, &f, NULL, NULL, RB, W, b, RK, &e) == DH_EFORMAT &&
          strstr(e.msg, "row 9: label -1"));
    train_finetune_free(&t);
    /* divergence: non-finite u is reported as such, not as a loss error */
    lab[9] = 1;
    W[0] = NAN;
    REQUIRE(train_finetune_init(&t, &o, DK_CPU, &f, NULL, NULL, RB, W, b, RK, &e) == DH_OK);
    CHECK(train_finetune_epoch(&t, 0, &first, NULL, NULL, &e) == DH_EFORMAT && strstr(e.msg, "diverged at epoch 1"));
    train_finetune_free(&t);
}

/* ADSH's database codes: the signs of V, one row per training row in order,
 * with the labels and ids; other losses have none. */
static void t_registry_db_codes(void) {
    static float z[RN * RD];
    static int32_t lab[RN];
    float W[RK * RD], b[RK];
    train_features f;
    train_finetune t;
    train_finetune_stats first, last;
    dh_err e;
    REQUIRE(registry_run("adsh", 2, &f, z, lab, W, b, &t, &first, &last, &e) == DH_OK);
    int64_t rows;
    int cols;
    const float *V = dh_dloss_tensor(t.dloss, "V", &rows, &cols);
    REQUIRE(V && rows == RN && cols == RK);
    char *buf = NULL;
    size_t size = 0;
    FILE *mf = open_memstream(&buf, &size);
    REQUIRE(mf);
    dhs_meta *meta = dhs_meta_new();
    dhs_meta_set_str(meta, "source", "blobs");
    CHECKF(train_finetune_db_codes(&t, mf, "mem", meta, &e) == DH_OK, "%s", e.msg);
    fclose(mf);
    dhs_meta_free(meta);
    FILE *in = fmemopen(buf, size, "rb");
    dhs_reader *r = in ? dhs_open(in, "mem", NULL, &e) : NULL;
    dhs_table tb;
    memset(&tb, 0, sizeof tb);
    REQUIRE(r && dhs_read_table(r, &tb, 0, &e) == DH_OK);
    const dhs_schema *s = &tb.schema;
    int fc = dhs_field_index(s, "code"), fl = dhs_field_index(s, "label");
    CHECK(!strcmp(s->kind, "codes") && tb.nrows == RN && fc >= 0 && fl >= 0 && dhs_field_index(s, "id") < 0);
    int64_t bits = 0;
    const char *hm = dhs_meta_str(tb.meta, "hash_method"), *src = dhs_meta_str(tb.meta, "source");
    CHECK(dhs_meta_int(tb.meta, "bits", &bits) == 0 && bits == RK && hm && !strcmp(hm, "adsh") && src &&
          !strcmp(src, "blobs"));
    const uint8_t *c = tb.col[fc];
    int bad = 0;
    for (int i = 0; fc >= 0 && fl >= 0 && i < RN; i++) {
        bad += ((const int32_t *)tb.col[fl])[i] != lab[i];
        for (int k = 0; k < RK; k++) bad += ((c[i * 2 + k / 8] >> (k % 8)) & 1) != (V[i * RK + k] > 0);
    }
    CHECKF(bad == 0, "%d mismatches", bad);
    dhs_table_free(&tb);
    dhs_close(r);
    fclose(in);
    free(buf);
    train_finetune_free(&t);
    REQUIRE(registry_run("dpsh", 1, &f, z, lab, W, b, &t, &first, &last, &e) == DH_OK);
    CHECK(train_finetune_db_codes(&t, stdout, "x", NULL, &e) == DH_EUNSUPPORTED);
    train_finetune_free(&t);
}

/* ---- checkpoints ----------------------------------------------------------------------------------------------- */
static int pause_at_; /* pause when the run reaches this step */
static int pause_cb(void *arg) { return *(const int64_t *)arg == pause_at_; }

/* A stage-3 run of `spec` (NULL: the exponentiated loss) on blobs for 3
 * epochs, from a fresh trainer: straight (pause_at < 0), or paused at step
 * pause_at, checkpointed, freed, and restored into a new trainer that
 * finishes it. W, b (and V for ADSH) at the end. */
static int ckpt_run(const char *spec, int skip, int pause_at, float *W, float *b, float *V, dh_err *e) {
    static float z[RN * RD];
    static int32_t lab[RN];
    float W0[RK * RD], b0[RK];
    train_features f;
    train_finetune t;
    train_finetune_stats st;
    train_finetune_opts o;
    blobs(z, lab, RN, RD, RC, 11);
    memset(&f, 0, sizeof f);
    f.N = RN, f.D = RD, f.z = z, f.lab = lab;
    train_hash_random(W0, b0, RK, RD, 1, z, RN);
    memset(&o, 0, sizeof o);
    o.loss_spec = spec, o.loss.norm = DH_HL_BALANCED, o.loss.scale = RK * RK;
    o.precond = 1, o.lr = spec ? train_loss_method(spec)->lr_hint : 0.3, o.momentum = 0.9, o.epochs = 3;
    o.skip = skip, o.seed = 5;
    if (train_schedule("cosine:0", 1.0, o.epochs, &o.sched, NULL, 0, e) ||
        train_finetune_init(&t, &o, DK_CPU, &f, NULL, NULL, RB, W0, b0, RK, e))
        return e->code;
    const int64_t spe = RN / RB;
    pause_at_ = pause_at;
    t.pause = pause_cb, t.pause_arg = &t.step;
    for (int ep = (int)(t.step / spe); ep < o.epochs; ep++) {
        if (train_finetune_epoch(&t, ep, &st, NULL, NULL, e)) return e->code;
        if (!st.paused) continue;
        dhs_model ck;
        dhs_model_init(&ck);
        int64_t step;
        if (train_ckpt_begin(&ck, "test", "test", t.step, NULL, e) || train_finetune_ckpt(&t, &ck, e)) return e->code;
        train_finetune_free(&t);
        if (train_finetune_init(&t, &o, DK_CPU, &f, NULL, NULL, RB, W0, b0, RK, e) ||
            train_ckpt_check(&ck, "ck", "test", NULL, &step, e) || train_finetune_restore(&t, &ck, e))
            return e->code;
        dhs_model_free(&ck);
        if (step != pause_at || t.step != pause_at)
            return dh_seterr(e, DH_EINVAL, "restored at step %lld", (long long)t.step);
        t.pause = pause_cb, t.pause_arg = &t.step;
        ep--; /* the same epoch again, from where it paused */
    }
    int rc = train_hash_get(&t.th, W, b, e);
    int64_t rows;
    int cols;
    const float *v = t.dloss ? dh_dloss_tensor(t.dloss, "V", &rows, &cols) : NULL;
    if (V && v) memcpy(V, v, sizeof(float) * (size_t)RN * RK);
    train_finetune_free(&t);
    return rc;
}

static void t_checkpoint_resume_is_exact(void) {
    static const struct {
        const char *spec;
        int skip;
    } runs[] = { { NULL, -1 }, { NULL, 3 }, { "dsdh", -1 }, { "adsh", -1 }, { "greedyhash", -1 }, { "hashnet", -1 } };
    static float V0[RN * RK], V1[RN * RK];
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        float W0[RK * RD], b0[RK], W1[RK * RD], b1[RK];
        dh_err e;
        const char *nm = runs[i].spec ? runs[i].spec : "balanced";
        memset(V0, 0, sizeof V0), memset(V1, 0, sizeof V1);
        int rc = ckpt_run(runs[i].spec, runs[i].skip, -1, W0, b0, V0, &e);
        CHECKF(rc == DH_OK, "%s straight: %s", nm, e.msg);
        for (int at = 3; rc == DH_OK && at <= 13; at += 10) { /* in epoch 1, in epoch 2 (8 steps an epoch) */
            int rc2 = ckpt_run(runs[i].spec, runs[i].skip, at, W1, b1, V1, &e);
            CHECKF(rc2 == DH_OK, "%s paused at %d: %s", nm, at, e.msg);
            CHECKF(rc2 || (!memcmp(W0, W1, sizeof W0) && !memcmp(b0, b1, sizeof b0) && !memcmp(V0, V1, sizeof V0)),
                   "%s (skip %d) paused at step %d and resumed: other bits", nm, runs[i].skip, at);
        }
    }
}

static void t_checkpoint_refusals(void) {
    dhs_model ck, other;
    dhs_meta *want = dhs_meta_new(), *have = dhs_meta_new();
    dh_err e;
    int64_t step;
    REQUIRE(want && have);
    dhs_model_init(&ck), dhs_model_init(&other);
    REQUIRE(train_ckpt_match(have, "batch", "%d", 64) == 0 && train_ckpt_match(have, "seed", "1") == 0);
    REQUIRE(train_ckpt_begin(&ck, "dh-finetune", "cmd", 7, have, &e) == DH_OK);
    REQUIRE(train_ckpt_match(want, "batch", "%d", 64) == 0 && train_ckpt_match(want, "seed", "1") == 0);
    CHECK(train_ckpt_check(&ck, "ck.dhm", "dh-finetune", want, &step, &e) == DH_OK && step == 7);
    train_ckpt_match(want, "batch", "%d", 32);
    CHECKF(train_ckpt_check(&ck, "ck.dhm", "dh-finetune", want, &step, &e) == DH_ESCHEMA &&
               strstr(e.msg, "ck.dhm: a checkpoint of another run: batch 64 there, 32 here"),
           "%s", e.msg);
    train_ckpt_match(want, "batch", "%d", 64);
    train_ckpt_match(want, "arch", "lenet"); /* a key the checkpoint lacks */
    CHECK(train_ckpt_check(&ck, "ck.dhm", "dh-finetune", want, &step, &e) == DH_ESCHEMA && strstr(e.msg, "arch"));
    CHECK(train_ckpt_check(&ck, "ck.dhm", "dh-pretrain", NULL, &step, &e) == DH_ESCHEMA &&
          strstr(e.msg, "a checkpoint of dh-finetune, not of dh-pretrain"));
    dhs_meta_set_str(other.meta, "model", "net");
    CHECK(train_ckpt_check(&other, "net.dhm", "dh-pretrain", NULL, &step, &e) == DH_ESCHEMA &&
          strstr(e.msg, "not a checkpoint (a 'net' model)"));
    dhs_meta_set_int(ck.meta, "checkpoint_version", 99);
    CHECK(train_ckpt_check(&ck, "ck.dhm", "dh-finetune", NULL, &step, &e) == DH_ESCHEMA && strstr(e.msg, "version 99"));
    /* tensors: sizes are checked */
    float x[3] = { 1, 2, 3 }, y[4];
    REQUIRE(train_ckpt_put_host(&ck, "extra:ema", x, 3, &e) == DH_OK);
    CHECK(train_ckpt_get_host(&ck, "extra:ema", y, 3, &e) == DH_OK && y[2] == 3);
    CHECK(train_ckpt_get_host(&ck, "extra:ema", y, 4, &e) == DH_ESCHEMA && strstr(e.msg, "3 values"));
    CHECK(train_ckpt_get_host(&ck, "nosuch", y, 3, &e) == DH_ESCHEMA);
    dhs_model_free(&ck), dhs_model_free(&other), dhs_meta_free(want), dhs_meta_free(have);
}

int main(void) {
    dh_err e;
    if (dk_init(DK_CPU, &e)) {
        printf("FAIL dk_init: %s\n", e.msg);
        return 1;
    }
    RUN(t_channel_stats_rule);
    RUN(t_images_read);
    RUN(t_schedule_step_rounding);
    RUN(t_epoch_order);
    RUN(t_check_pairs);
    RUN(t_zstats);
    RUN(t_precondition_is_plain_sgd_on_normalised_z);
    RUN(t_dz_is_du_times_w);
    RUN(t_finetune_separates_two_classes);
    RUN(t_finetune_lowers_the_loss);
    RUN(t_diverged);
    RUN(t_constant_bits);
    RUN(t_registry_losses_separate_blobs);
    RUN(t_registry_positions_and_report);
    RUN(t_registry_setup);
    RUN(t_registry_db_codes);
    RUN(t_checkpoint_resume_is_exact);
    RUN(t_checkpoint_refusals);
    dk_shutdown();
    return check_done();
}
