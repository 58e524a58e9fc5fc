/* dh-finetune — stage 3: train the network and the hash layer jointly with
 * the exponentiated code-product loss (Mu & Liu 2017, Eqs. 6-11).
 *
 *   dh-finetune -m net.dhm --hash hash0.dhm < train.dhs > deephash.dhm
 *   dh-finetune --arch lenet < train.dhs > deephash.dhm      ("random init.")
 *   dh-finetune --features --hash hash0.dhm < feats.dhs > hash1.dhm
 *
 * With --features the backbone is frozen by construction: the input is a
 * features stream (cached z) and the output a hash model for dh-encode on
 * features. Otherwise the input is an images stream and the output a deep
 * hash model: the network's tensors plus "hash.W" (K, D) and "hash.b" (K),
 * meta "model":"deephash".
 *
 * Loss (kernels/hashloss.h): pairs i != j of each mini-batch,
 *   --loss paper     Q = Σ_ij exp(-Y_ij b_i∘b_j), plain sum (the paper's);
 *                    one learning rate and weight decay for every layer
 *   --loss scaled    the same loss averaged over pairs and multiplied by K²;
 *                    per-group learning rates (hash layer --lr, backbone
 *                    --backbone-lr), no weight decay on the hash layer, the
 *                    hash layer trained on normalised z (--precondition norm)
 *   --loss balanced  like scaled, positive and negative pairs each carrying
 *                    half of the weight (the default)
 * See dh-finetune(1) for the evidence behind the defaults.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dh_prog.h"
#include "dhs.h"
#include "dk.h"
#include "dk_prog.h"
#include "dh_rng.h"
#include "net.h"
#include "netspec.h"
#include "hashfn.h"
#include "hashloss.h"
#include <cblas.h>

enum { LOSS_PAPER, LOSS_SCALED, LOSS_BALANCED };
enum { SCHED_STEP, SCHED_COSINE, SCHED_CONST };
enum { SAMP_SHUFFLE, SAMP_PAPER };

typedef struct ft_opts {
    const char *net_path, *hash_path, *arch, *out, *in, *device;
    int features;
    int loss;
    double loss_scale; /* 0 = the loss's default */
    double lr, backbone_lr, momentum, wd, hash_wd;
    int lr_set, backbone_lr_set, wd_set, hash_wd_set, bits_set;
    int freeze;
    int epochs, batch;
    int sched;
    int sampling;
    int skip_max;
    int pad, flip, augment_set;
    uint64_t seed;
    int K;       /* random init only */
    int precond; /* 1: hash layer trained on (z - m) / r (see znorm_stats) */
    int precond_set;
} ft_opts;

static ft_opts O;

/* ---------------------------------------------------------------------------- */
static double lr_factor(const ft_opts *o, int64_t step, int64_t total_steps, int epoch) {
    switch (o->sched) {
    case SCHED_STEP: { /* the paper's: x0.1 at 50% and 75% of the epochs */
        double f = 1.0;
        if (epoch >= (o->epochs + 1) / 2 && o->epochs > 1) f *= 0.1;
        if (epoch >= (3 * o->epochs + 3) / 4 && o->epochs > 3) f *= 0.1;
        return f;
    }
    case SCHED_COSINE: return total_steps > 0 ? 0.5 * (1.0 + cos(M_PI * (double)step / (double)total_steps)) : 1.0;
    default: return 1.0;
    }
}

/* Rows of one epoch's batches: shuffle (a fresh permutation each epoch) or
 * the paper's sampling (walk the data in order, skipping a random 0..skip_max
 * rows after each pick). order (N). */
static void epoch_order(const ft_opts *o, int32_t *order, int64_t N, int epoch, int64_t *cursor) {
    if (o->sampling == SAMP_SHUFFLE) {
        dk_permutation(order, N, o->seed, 1000 + (uint64_t)epoch);
        return;
    }
    int64_t p = *cursor;
    for (int64_t i = 0; i < N; i++) {
        order[i] = (int32_t)p;
        p = (p + 1 +
             dh_rng_below(o->seed ^ 0xabcdefULL, (uint64_t)epoch * (uint64_t)N + (uint64_t)i,
                          (uint32_t)o->skip_max + 1)) %
            N;
    }
    *cursor = p;
}

static dh_hashloss_opts loss_opts(const ft_opts *o, int K) {
    dh_hashloss_opts lo;
    lo.norm = o->loss == LOSS_PAPER ? DH_HL_SUM : o->loss == LOSS_BALANCED ? DH_HL_BALANCED : DH_HL_MEAN;
    lo.scale = o->loss_scale > 0 ? o->loss_scale : (o->loss == LOSS_PAPER ? 1.0 : (double)K * K);
    return lo;
}

/* Load the stage-2 hash layer as W (K, D), b (K) (a "mean" is folded into b). */
static void load_hash(const char *path, dhs_model *hm, float **W, float **b, int *K, int *D) {
    dh_err e;
    dh_hashfn h;
    if (dhs_model_load(path, hm, &e)) dh_die_err(&e, NULL);
    if (dh_hashfn_bind(&h, hm, "", &e)) dh_die_err(&e, path);
    if (strcmp(h.transform, "linear") != 0)
        dh_die(DH_EXIT_FAIL, "%s: a '%s' hash model (transform %s): fine-tuning needs a linear hash layer", path,
               h.method, h.transform);
    if (O.bits_set && O.K != h.K) /* it would be silently ignored */
        dh_usage_error("--bits %d: the hash model %s has %d bits", O.K, path, h.K);
    *K = h.K;
    *D = h.D;
    *W = dh_malloc(&e, (size_t)h.K * h.D, sizeof(float));
    *b = dh_calloc(&e, (size_t)h.K, sizeof(float));
    if (!*W || !*b) dh_die_err(&e, NULL);
    memcpy(*W, h.W, sizeof(float) * (size_t)h.K * h.D);
    for (int k = 0; k < h.K; k++) {
        double s = h.b ? h.b[k] : 0.0;
        if (h.mean)
            for (int d = 0; d < h.D; d++) s -= (double)h.W[(size_t)k * h.D + d] * h.mean[d];
        (*b)[k] = (float)s;
    }
}

/* Preconditioning of the hash layer (--precondition norm, the default of
 * the scaled and balanced losses): SGD runs in the coordinates
 *   x = (z - m) / r,   r^2 = E|z - m|^2   (m, r from the data at the start)
 * i.e. u = W' x + c with W = W' / r and b = c - W m. A learning rate then
 * moves u by about the same amount whatever the scale, offset and
 * dimension of z (features of ReLU nets are all positive and their norm
 * depends on the net). Equivalently, in z coordinates:
 *   W -= lr / r^2 * momentum-SGD(gW - gb m^T),   c -= lr * momentum-SGD(gb). */
static void znorm_stats(const double *s1, double s2tot, int64_t n, int D, float *m, double *r2) {
    double mm = 0;
    for (int d = 0; d < D; d++) {
        m[d] = (float)(s1[d] / (double)n);
        mm += (double)m[d] * m[d];
    }
    *r2 = s2tot / (double)n - mm;
    if (!(*r2 > 1e-20)) *r2 = 1.0;
}

/* Open the training stream (O.in): a `kind` stream (else "INPUT: a 'KIND'
 * stream: why") with a field `name` of type dt and ndim dimensions, whose
 * index goes to *f. */
static dhs_reader *open_input(const char *kind, const char *why, const char *name, dhs_dtype dt, int ndim, int *f) {
    dh_err e;
    const char *iname = dh_in_name(O.in);
    dhs_reader *r = dhs_open_path(O.in, NULL, &e);
    if (!r) dh_die_err(&e, NULL);
    const dhs_schema *s = dhs_reader_schema(r);
    if (strcmp(s->kind, kind) != 0) dh_die(DH_EXIT_FAIL, "%s: a '%s' stream: %s", iname, s->kind, why);
    *f = dhs_require_field(s, name, dt, ndim, &e);
    if (*f < 0) dh_die_err(&e, iname);
    return r;
}

/* The index of the i32 label field the hashing loss needs. */
static int label_field(const dhs_schema *s, const char *iname) {
    int fl = dhs_field_index(s, "label");
    if (fl < 0 || s->fields[fl].dtype != DHS_I32 || s->fields[fl].ndim != 0)
        dh_die(DH_EXIT_FAIL, "%s: no i32 label field: the hashing loss needs labels", iname);
    return fl;
}

/* The hashing loss needs at least 2 rows and at least 2 classes among them. */
static void check_labels(const int32_t *lab, int64_t N, const char *iname) {
    if (N < 2) dh_die(DH_EXIT_FAIL, "%s: %lld rows: need at least 2", iname, (long long)N);
    int one_class = 1;
    for (int64_t i = 1; i < N && one_class; i++) one_class = lab[i] == lab[0];
    if (one_class)
        dh_die(DH_EXIT_FAIL, "%s: a single class (label %d): no dissimilar pairs to learn from", iname, lab[0]);
}

typedef struct epoch_stats {
    double q, sur, right, absu;
    int64_t batches, rows;
} epoch_stats;

/* The start of epoch ep: its rows in order (epoch_order), zeroed statistics
 * and the progress line, labelled in what (which must last the epoch). */
static void epoch_start(const ft_opts *o, int ep, int32_t *order, int64_t N, int B, int64_t *cursor, epoch_stats *es,
                        dh_progress *pr, char what[64]) {
    memset(es, 0, sizeof *es);
    epoch_order(o, order, N, ep, cursor);
    snprintf(what, 64, "epoch %d/%d", ep + 1, o->epochs);
    dh_progress_start(pr, what, o->features ? "rows" : "images", N / B * B);
}

/* One batch into the epoch's statistics (loss statistics st, hash outputs
 * u (B, K)) and progress line. */
static void epoch_add(epoch_stats *es, dh_progress *pr, const dh_hashloss_stats *st, const float *u, int B, int K) {
    double au = 0;
    for (int64_t i = 0; i < (int64_t)B * K; i++) au += fabsf(u[i]);
    es->q += st->q;
    es->sur += st->surrogate;
    es->right += st->right;
    es->absu += au / ((double)B * K);
    es->batches++;
    es->rows += B;
    dh_progress_update(pr, es->rows);
}

static void report_epoch(int ep, int epochs, const epoch_stats *s, double lr, double lrb, double secs) {
    double nb = s->batches ? (double)s->batches : 1.0;
    dh_note("epoch %d/%d: Q %.5g  surrogate %.5g  right-sign pairs %.4f  mean|u| %.3g  lr %.3g/%.3g  %.0f rows/s",
            ep + 1, epochs, s->q / nb, s->sur / nb, s->right / nb, s->absu / nb, lr, lrb,
            secs > 0 ? (double)s->rows / secs : 0.0);
}

/* ---------------------------------------------------------------------------- */
/* --features: train the hash layer alone on cached z (frozen backbone). */
static int run_features(void) {
    ft_opts *o = &O;
    dh_err e;
    const char *iname = dh_in_name(o->in);
    if (o->net_path) dh_usage_error("--features trains the hash layer on cached features: -m is not used");
    dk_device dev = dk_prog_device_parse(o->device);

    int fz;
    dhs_reader *r = open_input("features", "--features needs a features stream", "z", DHS_F32, 1, &fz);
    const dhs_schema *s = dhs_reader_schema(r);
    if (s->fields[fz].variable) dh_die(DH_EXIT_FAIL, "%s: field z must have a fixed size", iname);
    int fl = label_field(s, iname);
    int D = (int)s->fields[fz].shape[0];

    static dhs_model hm;
    float *W = NULL, *b = NULL;
    int K = o->K, HD = D;
    if (o->hash_path) {
        load_hash(o->hash_path, &hm, &W, &b, &K, &HD);
        if (HD != D)
            dh_die(DH_EXIT_FAIL, "%s: the hash model %s expects %d-D features, the stream has %d", iname, o->hash_path,
                   HD, D);
    } else {
        /* random init.: W ~ N(0, 1/D) on standardised scale is unknown here; use 1/sqrt(D) */
        dhs_model_init(&hm);
        W = dh_malloc(&e, (size_t)K * D, sizeof(float));
        b = dh_calloc(&e, (size_t)K, sizeof(float));
        if (!W || !b) dh_die_err(&e, NULL);
        for (size_t t = 0; t < (size_t)K * D; t++) W[t] = dh_rng_normal(o->seed, t) / sqrtf((float)D);
    }
    static dhs_table t;
    if (dhs_read_table(r, &t, 0, &e)) dh_die_err(&e, NULL);
    dhs_close(r);
    const int64_t N = t.nrows;
    const float *z = t.col[fz];
    const int32_t *lab = t.col[fl];
    check_labels(lab, N, iname);
    for (int64_t i = 0; i < N * D; i++)
        if (!isfinite(z[i]))
            dh_die(DH_EXIT_FAIL, "%s: row %lld: non-finite feature value (dimension %lld)", iname, (long long)(i / D),
                   (long long)(i % D));
    if (!o->hash_path) {
        /* random init: scale W so that RMS(u) is about 1 on this data */
        float *u = dh_malloc(&e, (size_t)(N < 4096 ? N : 4096) * K, sizeof(float));
        if (!u) dh_die_err(&e, NULL);
        int64_t n = N < 4096 ? N : 4096;
        dh_linear_project(W, NULL, NULL, z, n, D, K, u);
        double ss = 0;
        for (int64_t i = 0; i < n * K; i++) ss += (double)u[i] * u[i];
        float f = ss > 0 ? (float)(1.0 / sqrt(ss / (double)(n * K))) : 1.0f;
        for (size_t i = 0; i < (size_t)K * D; i++) W[i] *= f;
        free(u);
    }

    int B = o->batch < N ? o->batch : (int)N;
    dh_hashloss_opts lo = loss_opts(o, K);
    float *zb = dh_malloc(&e, (size_t)B * D, sizeof(float)), *u = dh_malloc(&e, (size_t)B * K, sizeof(float));
    float *du = dh_malloc(&e, (size_t)B * K, sizeof(float)), *gW = dh_malloc(&e, (size_t)K * D, sizeof(float));
    float *vW = dh_calloc(&e, (size_t)K * D, sizeof(float)), *vb = dh_calloc(&e, (size_t)K, sizeof(float));
    int32_t *lb = dh_malloc(&e, (size_t)B, sizeof(int32_t)), *order = dh_malloc(&e, (size_t)N, sizeof(int32_t));
    if (!zb || !u || !du || !gW || !vW || !vb || !lb || !order) dh_die_err(&e, NULL);
    double hwd = o->hash_wd_set ? o->hash_wd : (o->loss == LOSS_PAPER ? o->wd : 0.0);
    int64_t steps_per_epoch = N / B, total = steps_per_epoch * o->epochs, step = 0, cursor = 0;
    /* --precondition norm: train W' = W r, c = b + W m on x = (z - m) / r */
    float *zm = dh_calloc(&e, (size_t)D, sizeof(float));
    double r2 = 1.0, rr = 1.0;
    if (!zm) dh_die_err(&e, NULL);
    if (o->precond) {
        double *s1 = dh_calloc(&e, (size_t)D, sizeof(double)), s2 = 0;
        if (!s1) dh_die_err(&e, NULL);
        for (int64_t i = 0; i < N; i++)
            for (int d = 0; d < D; d++) {
                double v = z[i * D + d];
                s1[d] += v;
                s2 += v * v;
            }
        znorm_stats(s1, s2, N, D, zm, &r2);
        free(s1);
        rr = sqrt(r2);
        for (int k = 0; k < K; k++) {
            double off = 0;
            for (int d = 0; d < D; d++) off += (double)W[(size_t)k * D + d] * zm[d];
            b[k] = (float)(b[k] + off);
            for (int d = 0; d < D; d++) W[(size_t)k * D + d] *= (float)rr;
        }
    }
    const float ir = (float)(1.0 / rr);
    dh_note("fine-tuning the hash layer on %lld cached %d-D features: %d bits, loss %s (scale %g), batch %d, %d "
            "epochs, device %s",
            (long long)N, D, K,
            o->loss == LOSS_PAPER      ? "paper"
            : o->loss == LOSS_BALANCED ? "balanced"
                                       : "scaled",
            lo.scale, B, o->epochs, dk_device_name(dev));
    for (int ep = 0; ep < o->epochs; ep++) {
        epoch_stats es;
        double t0 = dh_now(), lr = o->lr;
        dh_progress pr;
        char what[64];
        epoch_start(o, ep, order, N, B, &cursor, &es, &pr, what);
        for (int64_t s0 = 0; s0 + B <= N; s0 += B, step++) {
            for (int i = 0; i < B; i++) {
                const float *zr = z + (size_t)order[s0 + i] * D;
                for (int d = 0; d < D; d++) zb[(size_t)i * D + d] = (zr[d] - zm[d]) * ir;
                lb[i] = lab[order[s0 + i]];
            }
            dh_linear_project(W, b, NULL, zb, B, D, K, u);
            dh_hashloss_stats st;
            int rc;
#if DH_USE_CUDA
            if (dev == DK_CUDA)
                rc = dh_hashloss_cuda_host(u, lb, B, K, &lo, du, &st, &e);
            else
#endif
                rc = dh_hashloss_cpu(u, lb, B, K, &lo, du, &st, &e);
            if (rc) dh_die_err(&e, "hash loss");
            epoch_add(&es, &pr, &st, u, B, K);
            /* dW = du^T zb (K, D), db = column sums */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, D, B, 1.0f, du, K, zb, D, 0.0f, gW, D);
            lr = o->lr * lr_factor(o, step, total, ep);
            float fl_ = (float)lr, fm = (float)o->momentum, fw = (float)hwd;
            for (size_t i = 0; i < (size_t)K * D; i++) {
                vW[i] = fm * vW[i] + gW[i] + fw * W[i];
                W[i] -= fl_ * vW[i];
            }
            for (int k = 0; k < K; k++) {
                double g = 0;
                for (int i = 0; i < B; i++) g += du[(size_t)i * K + k];
                vb[k] = fm * vb[k] + (float)g;
                b[k] -= fl_ * vb[k];
            }
            if (!isfinite(st.surrogate))
                dh_die(DH_EXIT_FAIL, "training diverged at epoch %d (try a smaller --lr)", ep + 1);
        }
        dh_progress_end(&pr, es.rows);
        report_epoch(ep, o->epochs, &es, lr, 0.0, dh_now() - t0);
    }

    /* back to z coordinates: W = W' / r, b = c - W m */
    for (int k = 0; k < K; k++) {
        double off = 0;
        for (int d = 0; d < D; d++) {
            W[(size_t)k * D + d] *= ir;
            off += (double)W[(size_t)k * D + d] * zm[d];
        }
        b[k] = (float)(b[k] - off);
    }
    /* output: a hash model */
    dhs_model out;
    dhs_model_init(&out);
    if (dh_hash_model_begin(&out, "deephash", "linear", K, D, &e) ||
        dh_hash_model_set_linear(&out, "", W, b, NULL, K, D, &e))
        dh_die_err(&e, NULL);
    dhs_meta_set_str(out.meta, "program", "dh-finetune");
    dhs_meta_set_str(out.meta, "cmdline", dh_cmdline());
    dhs_meta_set_str(out.meta, "stage", "finetune-features");
    dhs_meta_set_int(out.meta, "seed", (int64_t)o->seed);
    if (o->hash_path) {
        dhs_meta_set_str(out.meta, "init_hash", o->hash_path);
        const char *cls = dhs_meta_str(hm.meta, "method");
        if (cls) dhs_meta_set_str(out.meta, "init_method", cls);
    }
    if (dh_model_save(o->out, &out, &e)) dh_die_err(&e, o->out ? o->out : "<stdout>");
    dhs_model_free(&out);
    dhs_model_free(&hm);
    dhs_table_free(&t);
    free(zm);
    free(W);
    free(b);
    free(zb);
    free(u);
    free(du);
    free(gW);
    free(vW);
    free(vb);
    free(lb);
    free(order);
    return DH_EXIT_OK;
}

/* ---------------------------------------------------------------------------- */
/* Images: the network and the hash layer trained jointly. */
static int run_images(void) {
    ft_opts *o = &O;
    dh_err e;
    const char *iname = dh_in_name(o->in);
    if (o->net_path && !o->hash_path)
        dh_usage_error(
            "-m NET needs --hash HASH (the stage-2 hash layer); for \"random init.\" give neither, with --arch");
    if (!o->net_path && o->hash_path)
        dh_usage_error("--hash without -m: give the stage-1 network with -m (or use --features)");
    if (!o->net_path && !o->arch)
        dh_usage_error("no network: give -m NET --hash HASH, or --arch NAME for random initialisation (or --features)");
    dk_device dev = dk_prog_device_open(o->device);

    int fp;
    dhs_reader *r =
        open_input("images", "expected images (or use --features for a features stream)", "pixels", DHS_U8, 3, &fp);
    const dhs_schema *s = dhs_reader_schema(r);
    int fl = label_field(s, iname);
    const int C = (int)s->fields[fp].shape[0], H = (int)s->fields[fp].shape[1], Wd = (int)s->fields[fp].shape[2];
    const int64_t rowb = s->fields[fp].row_bytes;

    static dhs_model nm, hm;
    net *nw = NULL;
    float *hW = NULL, *hb = NULL;
    int K = o->K, D = 0;
    static dhs_table t;
    if (dhs_read_table(r, &t, 0, &e)) dh_die_err(&e, NULL);
    dhs_close(r);
    const int64_t N = t.nrows;
    const int32_t *lab = t.col[fl];
    check_labels(lab, N, iname);
    int B = o->batch < N ? o->batch : (int)N;

    if (o->net_path) {
        if (dhs_model_load(o->net_path, &nm, &e)) dh_die_err(&e, NULL);
        if (net_from_model(&nm, dev, B, &nw, &e)) dh_die_err(&e, o->net_path);
        load_hash(o->hash_path, &hm, &hW, &hb, &K, &D);
        if (D != nw->zdim)
            dh_die(DH_EXIT_FAIL, "%s: the hash layer expects %d-D features, the network %s has z of %d", o->hash_path,
                   D, o->net_path, nw->zdim);
    } else {
        netspec ns;
        if (netspec_builtin(o->arch, &ns, &e)) {
            if (netspec_load(o->arch, &ns, &e))
                dh_die(DH_EXIT_USAGE, "--arch: '%s' is neither a built-in (%s) nor a readable spec file", o->arch,
                       netspec_builtin_names());
        }
        if (net_create(&ns, 0, dev, B, &nw, &e)) dh_die_err(&e, o->arch);
        netspec_free(&ns);
        if (net_init(nw, o->seed, &e)) dh_die_err(&e, o->arch);
        /* input normalisation from the data: per-channel mean and std of pixel/255 */
        float mean[DK_MAXCHAN] = { 0 }, sd[DK_MAXCHAN] = { 0 };
        if (C > DK_MAXCHAN) dh_die(DH_EXIT_FAIL, "%s: %d channels (at most %d)", iname, C, DK_MAXCHAN);
        int64_t nrow = N < 10000 ? N : 10000;
        for (int c = 0; c < C; c++) {
            double s1 = 0, s2 = 0;
            for (int64_t i = 0; i < nrow; i++) {
                const uint8_t *p = (const uint8_t *)t.col[fp] + i * rowb + (size_t)c * H * Wd;
                for (int j = 0; j < H * Wd; j++) {
                    double v = p[j] / 255.0;
                    s1 += v;
                    s2 += v * v;
                }
            }
            double m = s1 / ((double)nrow * H * Wd), var = s2 / ((double)nrow * H * Wd) - m * m;
            mean[c] = (float)m;
            sd[c] = var > 1e-12 ? (float)sqrt(var) : 1.0f;
        }
        if (net_set_norm(nw, mean, sd, &e)) dh_die_err(&e, NULL);
        D = nw->zdim;
        hW = dh_malloc(&e, (size_t)K * D, sizeof(float));
        hb = dh_calloc(&e, (size_t)K, sizeof(float));
        if (!hW || !hb) dh_die_err(&e, NULL);
        for (size_t i = 0; i < (size_t)K * D; i++)
            hW[i] = dh_rng_normal(o->seed ^ 0x4a5bULL, i) * sqrtf(1.0f / (float)D);
    }
    if (nw->spec.in[0] != C || nw->spec.in[1] != H || nw->spec.in[2] != Wd)
        dh_die(DH_EXIT_FAIL, "%s: images are %dx%dx%d, the network expects %dx%dx%d", iname, C, H, Wd, nw->spec.in[0],
               nw->spec.in[1], nw->spec.in[2]);
    if (!o->augment_set) {
        o->pad = C == 3 ? 4 : 0;
        o->flip = C == 3;
    }

    /* device buffers */
    uint8_t *dpix = NULL;
    int32_t *didx = NULL, *dlab = NULL, *hidx = NULL, *order = NULL, *hlab = NULL;
    dk_tensor x = { 0 }, Wt = { 0 }, bt = { 0 }, ct = { 0 }, mt = { 0 }, gWt = { 0 }, gbt = { 0 }, vWt = { 0 },
              vbt = { 0 }, ut = { 0 }, dut = { 0 }, dzt = { 0 };
    if (dk_mem_alloc(dev, (size_t)(N * rowb), (void **)&dpix, &e) ||
        dk_mem_upload(dev, dpix, t.col[fp], (size_t)(N * rowb), &e) ||
        dk_mem_alloc(dev, sizeof(int32_t) * (size_t)B, (void **)&didx, &e) ||
        dk_mem_alloc(dev, sizeof(int32_t) * (size_t)B, (void **)&dlab, &e) ||
        dk_tensor_alloc4(&x, dev, 4, B, C, H, Wd, &e) || dk_tensor_alloc4(&Wt, dev, 2, K, D, 1, 1, &e) ||
        dk_tensor_alloc4(&bt, dev, 1, K, 1, 1, 1, &e) || dk_tensor_alloc4(&gWt, dev, 2, K, D, 1, 1, &e) ||
        dk_tensor_alloc4(&gbt, dev, 1, K, 1, 1, 1, &e) || dk_tensor_alloc4(&vWt, dev, 2, K, D, 1, 1, &e) ||
        dk_tensor_alloc4(&vbt, dev, 1, K, 1, 1, 1, &e) || dk_tensor_alloc4(&ut, dev, 2, B, K, 1, 1, &e) ||
        dk_tensor_alloc4(&dut, dev, 2, B, K, 1, 1, &e) || dk_tensor_alloc4(&dzt, dev, 2, B, D, 1, 1, &e) ||
        dk_tensor_alloc4(&ct, dev, 1, K, 1, 1, 1, &e) || dk_tensor_alloc4(&mt, dev, 1, D, 1, 1, 1, &e) ||
        dk_upload(&Wt, hW, (int64_t)K * D, &e) || dk_upload(&bt, hb, K, &e))
        dh_die_err(&e, "device buffers");
    hidx = dh_malloc(&e, (size_t)B, sizeof(int32_t));
    hlab = dh_malloc(&e, (size_t)B, sizeof(int32_t));
    order = dh_malloc(&e, (size_t)N, sizeof(int32_t));
    float *hu = dh_malloc(&e, (size_t)B * K, sizeof(float)), *hdu = dh_malloc(&e, (size_t)B * K, sizeof(float));
    if (!hidx || !hlab || !order || !hu || !hdu) dh_die_err(&e, NULL);

    /* --precondition norm (see znorm_stats): m and r^2 of z from a pass over
     * the first images (inference mode); c = b + W m */
    double r2 = 1.0;
    float *zm = dh_calloc(&e, (size_t)D, sizeof(float)), *zh = dh_malloc(&e, (size_t)B * D, sizeof(float));
    if (!zm || !zh) dh_die_err(&e, NULL);
    if (o->precond) {
        int64_t n0 = (N < 4096 ? N : 4096) / B * B;
        double *s1 = dh_calloc(&e, (size_t)D, sizeof(double)), s2 = 0;
        if (!s1) dh_die_err(&e, NULL);
        for (int64_t s0 = 0; s0 < n0; s0 += B) {
            dk_tensor zt;
            for (int i = 0; i < B; i++) hidx[i] = (int32_t)(s0 + i);
            if (dk_mem_upload(dev, didx, hidx, sizeof(int32_t) * (size_t)B, &e) ||
                dk_images_augment(dpix, N, C, H, Wd, didx, 0, 0, nw->mean, nw->std, 0, 0, &x, &e) ||
                net_forward_to_z(nw, &x, 0, &zt, &e) || dk_download(&zt, zh, (int64_t)B * D, &e))
                dh_die_err(&e, "feature statistics");
            for (int64_t i = 0; i < (int64_t)B * D; i++) {
                s1[i % D] += zh[i];
                s2 += (double)zh[i] * zh[i];
            }
        }
        znorm_stats(s1, s2, n0, D, zm, &r2);
        free(s1);
    }
    for (int k = 0; k < K; k++) {
        double off = 0;
        for (int d = 0; d < D; d++) off += (double)hW[(size_t)k * D + d] * zm[d];
        hu[k] = (float)(hb[k] + off); /* c, staged in hu */
    }
    if (dk_upload(&ct, hu, K, &e) || dk_upload(&mt, zm, D, &e)) dh_die_err(&e, "upload");
    dh_hashloss_opts lo = loss_opts(o, K);
    double blr = o->freeze ? 0.0 : o->backbone_lr;
    double hwd = o->hash_wd_set ? o->hash_wd : (o->loss == LOSS_PAPER ? o->wd : 0.0);
    int64_t steps_per_epoch = N / B, total = steps_per_epoch * o->epochs, step = 0, cursor = 0;
    dh_note("fine-tuning %s + %d-bit hash layer on %lld images: loss %s (scale %g), lr %g (hash) / %g (backbone), "
            "batch %d, %d epochs, augment pad %d flip %d, device %s",
            o->net_path ? o->net_path : o->arch, K, (long long)N,
            o->loss == LOSS_PAPER      ? "paper"
            : o->loss == LOSS_BALANCED ? "balanced"
                                       : "scaled",
            lo.scale, o->lr, blr, B, o->epochs, o->pad, o->flip, dk_device_name(dev));
    for (int ep = 0; ep < o->epochs; ep++) {
        epoch_stats es;
        double t0 = dh_now(), f = 1.0;
        dh_progress pr;
        char what[64];
        epoch_start(o, ep, order, N, B, &cursor, &es, &pr, what);
        for (int64_t s0 = 0; s0 + B <= N; s0 += B, step++) {
            for (int i = 0; i < B; i++) {
                hidx[i] = order[s0 + i];
                hlab[i] = lab[order[s0 + i]];
            }
            dk_tensor zt;
            dh_hashloss_stats st;
            int train = blr > 0;
            f = lr_factor(o, step, total, ep);
            if (dk_mem_upload(dev, didx, hidx, sizeof(int32_t) * (size_t)B, &e) ||
                dk_mem_upload(dev, dlab, hlab, sizeof(int32_t) * (size_t)B, &e) ||
                dk_images_augment(dpix, N, C, H, Wd, didx, o->pad, o->flip, nw->mean, nw->std, o->seed,
                                  (uint64_t)step * (uint64_t)B, &x, &e) ||
                net_forward_to_z(nw, &x, train, &zt, &e) || dk_fc_forward(&zt, &Wt, &bt, &ut, &e))
                dh_die_err(&e, "forward");
            int rc;
#if DH_USE_CUDA
            if (dev == DK_CUDA) {
                dh_hashloss_stats w0;
                dh_hashloss_weights(hlab, B, &lo, &w0);
                rc = dh_hashloss_cuda(ut.data, dlab, B, K, w0.wpos, w0.wneg, dut.data, &st, &e);
                if (rc == DH_OK && dk_download(&ut, hu, (int64_t)B * K, &e)) rc = e.code;
            } else
#endif
            {
                rc = dk_download(&ut, hu, (int64_t)B * K, &e);
                if (rc == DH_OK) rc = dh_hashloss_cpu(hu, hlab, B, K, &lo, hdu, &st, &e);
                if (rc == DH_OK) rc = dk_upload(&dut, hdu, (int64_t)B * K, &e);
            }
            if (rc) dh_die_err(&e, "hash loss");
            epoch_add(&es, &pr, &st, hu, B, K);
            if (!isfinite(st.surrogate))
                dh_die(DH_EXIT_FAIL, "training diverged at epoch %d (try a smaller --lr)", ep + 1);
            /* backward: hash layer, then (unless frozen) the body */
            if (dk_fc_backward(&zt, &Wt, &dut, train ? &dzt : NULL, &gWt, &gbt, &e)) dh_die_err(&e, "backward");
            if (train) {
                dk_tensor dzv;
                float lrs[NET_NGROUPS] = { (float)(blr * f), 0.0f }, wds[NET_NGROUPS] = { (float)o->wd, 0.0f };
                if (dk_tensor_rows(&dzt, 0, B, &dzv, &e) || net_backward_from_z(nw, &dzv, &e) ||
                    net_sgd_step(nw, lrs, (float)o->momentum, wds, 0, &e))
                    dh_die_err(&e, "backbone update");
            }
            /* hash layer SGD in x = (z - m) / r coordinates (plain SGD when m = 0, r = 1):
             * vW = mom vW + (gW - gb m^T) + wd W;  W -= lr / r^2 vW;
             * vc = mom vc + gb;  c -= lr vc;  b = c - W m */
            float hl = (float)(o->lr * f);
            if ((o->precond && dk_sgemm(dev, 0, 0, K, D, 1, -1.0f, gbt.data, 1, mt.data, D, 1.0f, gWt.data, D, &e)) ||
                dk_axpby(1.0f, &gWt, (float)o->momentum, &vWt, &e) ||
                (hwd > 0 && dk_axpby((float)hwd, &Wt, 1.0f, &vWt, &e)) ||
                dk_axpby((float)(-hl / r2), &vWt, 1.0f, &Wt, &e) ||
                dk_axpby(1.0f, &gbt, (float)o->momentum, &vbt, &e) || dk_axpby(-hl, &vbt, 1.0f, &ct, &e) ||
                dk_copy(&bt, &ct, &e) ||
                (o->precond && dk_sgemm(dev, 0, 0, K, 1, D, -1.0f, Wt.data, D, mt.data, 1, 1.0f, bt.data, 1, &e)))
                dh_die_err(&e, "hash layer update");
        }
        if (dk_sync(dev, &e)) dh_die_err(&e, "device");
        dh_progress_end(&pr, es.rows);
        report_epoch(ep, o->epochs, &es, o->lr * f, blr * f, dh_now() - t0);
    }

    /* output: network + hash layer */
    if (dk_download(&Wt, hW, (int64_t)K * D, &e) || dk_download(&bt, hb, K, &e)) dh_die_err(&e, "download");
    dhs_model out;
    dhs_model_init(&out);
    if (net_to_model(nw, &out, &e)) dh_die_err(&e, "saving the network");
    if (dh_hash_model_set_linear(&out, "hash.", hW, hb, NULL, K, D, &e)) dh_die_err(&e, NULL);
    dhs_meta *m = out.meta;
    dhs_meta_set_str(m, "model", "deephash");
    dhs_meta_set_int(m, "hash_bits", K);
    dhs_meta_set_int(m, "hash_dim", D);
    dhs_meta_set_str(m, "hash_method", "deephash");
    dhs_meta_set_str(m, "hash_transform", "linear");
    dhs_meta_set_str(m, "program", "dh-finetune");
    dhs_meta_set_str(m, "cmdline", dh_cmdline());
    dhs_meta_set_str(m, "stage", o->net_path ? "finetune" : "random-init");
    dhs_meta_set_int(m, "seed", (int64_t)o->seed);
    if (o->net_path) {
        dhs_meta_set_str(m, "init_net", o->net_path);
        dhs_meta_set_str(m, "init_hash", o->hash_path);
    }
    if (dh_model_save(o->out, &out, &e)) dh_die_err(&e, o->out ? o->out : "<stdout>");
    dhs_model_free(&out);
    dhs_model_free(&nm);
    dhs_model_free(&hm);
    dhs_table_free(&t);
    dk_tensor *ts[] = { &x, &Wt, &bt, &ct, &mt, &gWt, &gbt, &vWt, &vbt, &ut, &dut, &dzt };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dk_tensor_free(ts[i]);
    dk_mem_free(dev, dpix);
    dk_mem_free(dev, didx);
    dk_mem_free(dev, dlab);
    net_free(nw);
    dk_shutdown();
    free(zm);
    free(zh);
    free(hW);
    free(hb);
    free(hidx);
    free(hlab);
    free(order);
    free(hu);
    free(hdu);
    return DH_EXIT_OK;
}

/* ---------------------------------------------------------------------------- */
static void usage(void) {
    printf("Usage: %s -m NET --hash HASH [OPTION]... [IMAGES]\n"
           "   or: %s --arch NAME [OPTION]... [IMAGES]           (\"random init.\")\n"
           "   or: %s --features [--hash HASH] [OPTION]... [FEATURES]\n"
           "Stage 3: train the network and the K-bit hash layer jointly with the\n"
           "exponentiated code-product loss; write a deep hash model (or, with\n"
           "--features, a hash model). Input defaults to standard input.\n\n"
           "  -m, --net FILE          stage-1 network (dh-pretrain)\n"
           "  -H, --hash FILE         stage-2 hash model (dh-inithash; linear methods)\n"
           "  -a, --arch NAME         random initialisation of this architecture (%s or a spec file)\n"
           "  -b, --bits K            code length for random initialisation (default 48)\n"
           "  -f, --features          train the hash layer alone on a features stream (frozen backbone)\n"
           "  -L, --loss NAME         balanced (default), scaled or paper\n"
           "      --loss-scale X      multiply the loss by X (default: K^2 for scaled/balanced, 1 for paper)\n"
           "  -l, --lr X              hash-layer learning rate (default 3, in the --precondition\n"
           "                          norm coordinates; paper loss: 0.001)\n"
           "      --backbone-lr X     backbone learning rate (default 1e-4, 1e-3 with --arch;\n"
           "                          paper loss: same as --lr)\n"
           "      --freeze-backbone   backbone learning rate 0 (inference-mode forward)\n"
           "      --momentum X        SGD momentum (default 0.9)\n"
           "      --wd X              backbone weight decay (default 5e-4)\n"
           "      --hash-wd X         hash-layer weight decay (default 0; paper loss: --wd)\n"
           "      --precondition P    norm (default; paper loss: none): train the hash layer on\n"
           "                          z centred and scaled to unit mean squared norm\n"
           "  -e, --epochs N          epochs (default 10)\n"
           "  -B, --batch N           mini-batch size (default 256; pairs per batch: B(B-1))\n"
           "      --schedule S        step (x0.1 at 50%% and 75%% of the epochs, the paper's),\n"
           "                          cosine (default) or constant\n"
           "      --sampling S        shuffle (a fresh permutation each epoch; default) or paper\n"
           "                          (in order, skipping a random 0..--skip rows after each pick)\n"
           "      --skip N            the paper sampling's maximum skip (default 200)\n"
           "      --augment A         none or crop-flip (pad 4 + horizontal flip); default\n"
           "                          crop-flip for 3-channel images, none otherwise\n"
           "  -s, --seed N            random seed (default 1)\n"
           "  -d, --device DEV        cpu, cuda or auto (default $DH_DEVICE, else auto)\n"
           "  -o, --output FILE       write the model to FILE atomically (default: stdout)\n"
           "  -q, --quiet             no progress or per-epoch report\n"
           "      --progress          progress line within each epoch even when stderr is not a terminal\n"
           "  -h, --help              show this help and exit\n"
           "  -V, --version           show the version and exit\n\nSee dh-finetune(1).\n",
           dh_progname, dh_progname, dh_progname, netspec_builtin_names());
}

int main(int argc, char **argv) {
    dh_prog_init("dh-finetune", argc, argv);
    ft_opts *o = &O;
    o->loss = LOSS_BALANCED;
    o->lr = 3.0;
    o->backbone_lr = 1e-4;
    o->momentum = 0.9;
    o->wd = 5e-4;
    o->hash_wd = 0;
    o->epochs = 10;
    o->batch = 256;
    o->sched = SCHED_COSINE;
    o->sampling = SAMP_SHUFFLE;
    o->skip_max = 200;
    o->seed = 1;
    o->K = 48;
    enum {
        O_PRECOND = 300,
        O_BLR = 256,
        O_FREEZE,
        O_MOM,
        O_WD,
        O_HWD,
        O_SCHED,
        O_SAMP,
        O_SKIP,
        O_AUG,
        O_PROG,
        O_LSCALE
    };
    static const struct option lo[] = { { "net", 1, 0, 'm' },
                                        { "model", 1, 0, 'm' },
                                        { "hash", 1, 0, 'H' },
                                        { "arch", 1, 0, 'a' },
                                        { "bits", 1, 0, 'b' },
                                        { "features", 0, 0, 'f' },
                                        { "loss", 1, 0, 'L' },
                                        { "loss-scale", 1, 0, O_LSCALE },
                                        { "lr", 1, 0, 'l' },
                                        { "backbone-lr", 1, 0, O_BLR },
                                        { "freeze-backbone", 0, 0, O_FREEZE },
                                        { "momentum", 1, 0, O_MOM },
                                        { "wd", 1, 0, O_WD },
                                        { "hash-wd", 1, 0, O_HWD },
                                        { "epochs", 1, 0, 'e' },
                                        { "batch", 1, 0, 'B' },
                                        { "schedule", 1, 0, O_SCHED },
                                        { "sampling", 1, 0, O_SAMP },
                                        { "skip", 1, 0, O_SKIP },
                                        { "augment", 1, 0, O_AUG },
                                        { "precondition", 1, 0, O_PRECOND },
                                        { "seed", 1, 0, 's' },
                                        { "device", 1, 0, 'd' },
                                        { "output", 1, 0, 'o' },
                                        DH_COMMON_LONGOPTS(O_PROG) };
    int c;
    int64_t v;
    while ((c = getopt_long(argc, argv, "m:H:a:b:fL:l:e:B:s:d:o:qhV", lo, NULL)) != -1) {
        switch (c) {
        case 'm': o->net_path = optarg; break;
        case 'H': o->hash_path = optarg; break;
        case 'a': o->arch = optarg; break;
        case 'b':
            if (dh_parse_int(optarg, DH_HASH_MIN_BITS, DH_HASH_MAX_BITS, &o->K))
                dh_usage_error("--bits: '%s' is not an integer in %d..%d", optarg, DH_HASH_MIN_BITS, DH_HASH_MAX_BITS);
            o->bits_set = 1;
            break;
        case 'f': o->features = 1; break;
        case 'L':
            if (!strcmp(optarg, "paper"))
                o->loss = LOSS_PAPER;
            else if (!strcmp(optarg, "scaled"))
                o->loss = LOSS_SCALED;
            else if (!strcmp(optarg, "balanced"))
                o->loss = LOSS_BALANCED;
            else
                dh_usage_error("--loss: '%s' is not scaled, balanced or paper", optarg);
            break;
        case O_LSCALE:
            if (dh_parse_double(optarg, 1e-30, 1e30, &o->loss_scale))
                dh_usage_error("--loss-scale: bad value '%s'", optarg);
            break;
        case 'l':
            if (dh_parse_double(optarg, 0, 1e6, &o->lr)) dh_usage_error("--lr: bad value '%s'", optarg);
            o->lr_set = 1;
            break;
        case O_BLR:
            if (dh_parse_double(optarg, 0, 1e6, &o->backbone_lr))
                dh_usage_error("--backbone-lr: bad value '%s'", optarg);
            o->backbone_lr_set = 1;
            break;
        case O_FREEZE: o->freeze = 1; break;
        case O_MOM:
            if (dh_parse_double(optarg, 0, 0.999999, &o->momentum))
                dh_usage_error("--momentum: bad value '%s' (0 <= m < 1)", optarg);
            break;
        case O_WD:
            if (dh_parse_double(optarg, 0, 1, &o->wd)) dh_usage_error("--wd: bad value '%s'", optarg);
            o->wd_set = 1;
            break;
        case O_HWD:
            if (dh_parse_double(optarg, 0, 1, &o->hash_wd)) dh_usage_error("--hash-wd: bad value '%s'", optarg);
            o->hash_wd_set = 1;
            break;
        case 'e':
            if (dh_parse_int(optarg, 1, 100000, &o->epochs)) dh_usage_error("--epochs: bad value '%s'", optarg);
            break;
        case 'B':
            if (dh_parse_int(optarg, 2, 1 << 20, &o->batch))
                dh_usage_error("--batch: '%s' is not an integer in 2..%d", optarg, 1 << 20);
            break;
        case O_SCHED:
            if (!strcmp(optarg, "step"))
                o->sched = SCHED_STEP;
            else if (!strcmp(optarg, "cosine"))
                o->sched = SCHED_COSINE;
            else if (!strcmp(optarg, "constant"))
                o->sched = SCHED_CONST;
            else
                dh_usage_error("--schedule: '%s' is not step, cosine or constant", optarg);
            break;
        case O_SAMP:
            if (!strcmp(optarg, "shuffle"))
                o->sampling = SAMP_SHUFFLE;
            else if (!strcmp(optarg, "paper"))
                o->sampling = SAMP_PAPER;
            else
                dh_usage_error("--sampling: '%s' is not shuffle or paper", optarg);
            break;
        case O_SKIP:
            if (dh_parse_int(optarg, 0, 1 << 30, &o->skip_max)) dh_usage_error("--skip: bad value '%s'", optarg);
            break;
        case O_AUG:
            o->augment_set = 1;
            if (!strcmp(optarg, "none")) {
                o->pad = 0;
                o->flip = 0;
            } else if (!strcmp(optarg, "crop-flip")) {
                o->pad = 4;
                o->flip = 1;
            } else
                dh_usage_error("--augment: '%s' is not none or crop-flip", optarg);
            break;
        case O_PRECOND:
            o->precond_set = 1;
            if (!strcmp(optarg, "norm"))
                o->precond = 1;
            else if (!strcmp(optarg, "none"))
                o->precond = 0;
            else
                dh_usage_error("--precondition: '%s' is not norm or none", optarg);
            break;
        case 's':
            if (dh_parse_i64(optarg, 0, INT64_MAX, &v)) dh_usage_error("--seed: bad value '%s'", optarg);
            o->seed = (uint64_t)v;
            break;
        case 'd': o->device = optarg; break;
        case 'o': o->out = optarg; break;
        default:
            if (!dh_common_option(c, O_PROG, usage)) dh_usage_error("bad option (see --help)");
        }
    }
    o->in = dh_input_arg(argc, argv);
    /* options the other initialisation would silently ignore */
    if (o->net_path && o->arch)
        dh_usage_error("-m NET and --arch NAME exclude each other (--arch is the random initialisation)");
    if (o->loss == LOSS_PAPER) {
        /* the paper's setting: one learning rate for every layer, weight decay everywhere */
        if (!o->lr_set) o->lr = 0.001;
        if (!o->backbone_lr_set) o->backbone_lr = o->lr;
    }
    if (!o->precond_set) o->precond = o->loss != LOSS_PAPER;
    /* "random init.": the network has everything to learn (measured on
     * Fashion-MNIST, lenet, 2 epochs: 1e-4 0.527, 1e-3 0.683, 1e-2 collapse) */
    if (!o->net_path && !o->features && !o->backbone_lr_set && o->loss != LOSS_PAPER) o->backbone_lr = 1e-3;
    if (o->features) return run_features();
    return run_images();
}
