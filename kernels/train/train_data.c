/* train_data.c — datasets for training: images onto a device with their
 * channel statistics, cached features on the host, the order of an epoch
 * (train.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "train.h"
#include "dh_rng.h"
#include "dk_elem.h"

/* ---- images ------------------------------------------------------------------------------------------------------- */
void train_channel_stats(const uint8_t *pix, int64_t S, int C, int H, int W, float *mean, float *std) {
    size_t plane = (size_t)H * W;
    for (int c = 0; c < C; c++) {
        double s1 = 0, s2 = 0;
        for (int64_t i = 0; i < S; i++) {
            const uint8_t *p = pix + ((size_t)i * C + c) * plane;
            uint64_t a = 0, b = 0; /* exact within a row */
            for (size_t j = 0; j < plane; j++) {
                a += p[j];
                b += (uint64_t)p[j] * p[j];
            }
            s1 += (double)a;
            s2 += (double)b;
        }
        double n = (double)S * plane, m = s1 / n / 255.0;
        double var = s2 / n / (255.0 * 255.0) - m * m;
        mean[c] = (float)m;
        std[c] = (float)(var > TRAIN_MIN_VAR ? sqrt(var) : 1.0);
    }
}

/* Class names from the stream's meta "classes" (none: d->classes NULL). */
static int read_classes(const dhs_meta *meta, train_images *d, dh_err *e) {
    int nc = dhs_meta_len(meta, "classes");
    if (nc <= 0) return DH_OK;
    d->classes = dh_calloc(e, (size_t)nc, sizeof *d->classes);
    if (!d->classes) return DH_ENOMEM;
    d->nclasses = nc;
    for (int i = 0; i < nc; i++) {
        const char *c = dhs_meta_str_at(meta, "classes", i);
        if (!(d->classes[i] = dh_strdup(e, c ? c : ""))) return DH_ENOMEM;
    }
    return DH_OK;
}

int train_images_read(dhs_reader *r, dk_device dev, int flags, train_images *d, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    memset(d, 0, sizeof *d);
    d->dev = dev;
    snprintf(d->name, sizeof d->name, "%s", dhs_reader_name(r));
    const char *nm = d->name;
    const dhs_schema *s = dhs_reader_schema(r);
    if (strcmp(s->kind, "images") != 0)
        return dh_seterr(e, DH_ESCHEMA, "%s: a '%s' stream, expected images", nm, s->kind);
    int fp = dhs_require_field(s, "pixels", DHS_U8, 3, e),
        fl = fp < 0 ? -1 : dhs_require_field(s, "label", DHS_I32, 0, e);
    if (fp < 0 || fl < 0) {
        dh_err_prefix(e, "%s", nm);
        return DH_ESCHEMA;
    }
    if (s->fields[fp].variable) return dh_seterr(e, DH_ESCHEMA, "%s: pixels must have a fixed shape", nm);
    d->C = (int)s->fields[fp].shape[0];
    d->H = (int)s->fields[fp].shape[1];
    d->W = (int)s->fields[fp].shape[2];
    if (d->C > DK_MAXCHAN) return dh_seterr(e, DH_ESCHEMA, "%s: %d channels (at most %d)", nm, d->C, DK_MAXCHAN);
    if (read_classes(dhs_reader_meta(r), d, e)) return e->code;
    dhs_table t;
    memset(&t, 0, sizeof t);
    int rc = dhs_read_table(r, &t, 0, e);
    d->S = t.nrows;
    if (rc == DH_OK && d->S < 1) rc = dh_seterr(e, DH_EFORMAT, "%s: no images", nm);
    const int32_t *lab = rc == DH_OK ? t.col[fl] : NULL;
    int maxl = -1, nc = d->nclasses, check = flags & TRAIN_CLASS_LABELS;
    for (int64_t i = 0; rc == DH_OK && i < d->S; i++) {
        if (check && (lab[i] < 0 || (nc > 0 && lab[i] >= nc)))
            rc = dh_seterr(e, DH_EFORMAT, "%s: row %lld: label %d out of range%s", nm, (long long)i, lab[i],
                           nc > 0 ? " (not one of the stream's classes)" : "");
        if (lab[i] > maxl) maxl = lab[i];
    }
    if (nc <= 0) d->nclasses = maxl + 1;
    size_t pb = (size_t)d->S * d->C * d->H * d->W, lb = (size_t)d->S * sizeof(int32_t);
    if (rc == DH_OK) {
        train_channel_stats(t.col[fp], d->S, d->C, d->H, d->W, d->mean, d->std);
        d->hlab = dh_malloc(e, (size_t)d->S, sizeof(int32_t));
        rc = d->hlab ? DH_OK : DH_ENOMEM;
    }
    int fi = dhs_field_index(s, "id");
    if (rc == DH_OK && fi >= 0 && s->fields[fi].dtype == DHS_STR) { /* kept for the codes a loss learns (ADSH) */
        d->ids = t.col[fi], d->idoff = t.off[fi];
        t.col[fi] = NULL, t.off[fi] = NULL;
    }
    if (rc == DH_OK) {
        memcpy(d->hlab, lab, lb);
        if (dk_mem_alloc(dev, pb, (void **)&d->pix, e) || dk_mem_upload(dev, d->pix, t.col[fp], pb, e) ||
            dk_mem_alloc(dev, lb, (void **)&d->lab, e) || dk_mem_upload(dev, d->lab, lab, lb, e) ||
            dk_mem_alloc(dev, lb, (void **)&d->order, e))
            rc = e->code;
    }
    dhs_table_free(&t);
    return rc;
}

void train_images_free(train_images *d) {
    dk_mem_free(d->dev, d->pix);
    dk_mem_free(d->dev, d->lab);
    dk_mem_free(d->dev, d->order);
    free(d->hlab);
    free(d->ids);
    free(d->idoff);
    for (int i = 0; d->classes && i < d->nclasses; i++) free(d->classes[i]);
    free(d->classes);
    memset(d, 0, sizeof *d);
}

int train_images_match(const train_images *d, const train_images *tr, dh_err *e) {
    if (d->C != tr->C || d->H != tr->H || d->W != tr->W)
        return dh_seterr(e, DH_ESCHEMA, "%s: images are %dx%dx%d, the training images %dx%dx%d", d->name, d->C, d->H,
                         d->W, tr->C, tr->H, tr->W);
    int same = !d->classes || !tr->classes || d->nclasses == tr->nclasses;
    for (int i = 0; same && d->classes && tr->classes && i < d->nclasses; i++)
        same = !strcmp(d->classes[i], tr->classes[i]);
    if (!same) return dh_seterr(e, DH_ESCHEMA, "%s: its classes differ from the training stream's", d->name);
    if (d->nclasses > tr->nclasses)
        return dh_seterr(e, DH_EFORMAT, "%s: labels up to %d, the training stream has %d classes", d->name,
                         d->nclasses - 1, tr->nclasses);
    return DH_OK;
}

int train_images_order(train_images *d, const int32_t *order, dh_err *e) {
    return dk_mem_upload(d->dev, d->order, order, (size_t)d->S * sizeof(int32_t), e);
}

int train_images_eval(net *n, const train_images *d, dk_tensor *x, double *acc, double *loss, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    int64_t B = x->shape[0], correct = 0;
    double lsum = 0;
    for (int64_t s = 0; s < d->S; s += B) {
        int64_t nb = d->S - s < B ? d->S - s : B, c;
        dk_tensor xb;
        double l;
        if (dk_tensor_rows(x, 0, nb, &xb, e) ||
            dk_images_augment(d->pix + (size_t)s * d->C * d->H * d->W, nb, d->C, d->H, d->W, NULL, 0, 0, n->mean,
                              n->std, 0, 0, &xb, e) ||
            net_eval_xent(n, &xb, d->lab + s, &l, &c, e)) {
            dh_err_prefix(e, "%s", d->name);
            return e->code;
        }
        correct += c;
        lsum += l * nb;
    }
    *acc = (double)correct / d->S;
    *loss = lsum / d->S;
    return DH_OK;
}

/* ---- augmentation with reflection at the borders -------------------------------------------------------------- */
/* Test-time views (train_pretrain.c); the training crops are dk_images_augment's, DK_PAD_REFLECT. */
void train_image_shift_reflect(const uint8_t *img, int C, int H, int W, int dy, int dx, int flip, const float *mean,
                               const float *std, float *out) {
    for (int c = 0; c < C; c++) {
        /* the normalisation of dk_images_augment, to the bit */
        float scale = 1.0f / (255.0f * std[c]), shift = mean[c] / std[c];
        const uint8_t *p = img + (size_t)c * H * W;
        float *o = out + (size_t)c * H * W;
        for (int y = 0; y < H; y++) {
            const uint8_t *row = p + (size_t)dk_aug_reflect(y + dy, H) * W;
            for (int x = 0; x < W; x++)
                o[(size_t)y * W + x] = dk_affine_rn((float)row[dk_aug_reflect((flip ? W - 1 - x : x) + dx, W)], scale, shift);
        }
    }
}

/* ---- features ----------------------------------------------------------------------------------------------------- */
int train_features_read(dhs_reader *r, train_features *f, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    memset(f, 0, sizeof *f);
    const char *nm = dhs_reader_name(r);
    const dhs_schema *s = dhs_reader_schema(r);
    if (strcmp(s->kind, "features") != 0)
        return dh_seterr(e, DH_ESCHEMA, "%s: a '%s' stream, expected features", nm, s->kind);
    int fz = dhs_require_field(s, "z", DHS_F32, 1, e);
    if (fz < 0) {
        dh_err_prefix(e, "%s", nm);
        return DH_ESCHEMA;
    }
    if (s->fields[fz].variable) return dh_seterr(e, DH_ESCHEMA, "%s: field z must have a fixed size", nm);
    int fl = dhs_field_index(s, "label");
    if (fl < 0 || s->fields[fl].dtype != DHS_I32 || s->fields[fl].ndim != 0)
        return dh_seterr(e, DH_ESCHEMA, "%s: no i32 label field: the hashing loss needs labels", nm);
    f->D = (int)s->fields[fz].shape[0];
    if (dhs_read_table(r, &f->t, 0, e)) return e->code;
    f->N = f->t.nrows;
    f->z = f->t.col[fz];
    f->lab = f->t.col[fl];
    for (int64_t i = 0; i < f->N * f->D; i++)
        if (!isfinite(f->z[i]))
            return dh_seterr(e, DH_EFORMAT, "%s: row %lld: non-finite feature value (dimension %lld)", nm,
                             (long long)(i / f->D), (long long)(i % f->D));
    return DH_OK;
}

void train_features_free(train_features *f) {
    dhs_table_free(&f->t);
    memset(f, 0, sizeof *f);
}

int train_check_head(const net *nw, const int32_t *lab, int64_t N, dh_err *e) {
    if (nw->head_w < 0 || nw->nclasses < 2) return dh_seterr(e, DH_EINVAL, "the network has no classifier head");
    for (int64_t i = 0; i < N; i++)
        if (lab[i] < 0 || lab[i] >= nw->nclasses)
            return dh_seterr(e, DH_EINVAL, "row %lld: label %d is not one of the %d classes of the classifier head",
                             (long long)i, lab[i], nw->nclasses);
    return DH_OK;
}

int train_check_pairs(const int32_t *lab, int64_t N, dh_err *e) {
    if (N < 2) return dh_seterr(e, DH_EFORMAT, "%lld rows: need at least 2", (long long)N);
    for (int64_t i = 1; i < N; i++)
        if (lab[i] != lab[0]) return DH_OK;
    return dh_seterr(e, DH_EFORMAT, "a single class (label %d): no dissimilar pairs to learn from", lab[0]);
}

/* ---- epochs ------------------------------------------------------------------------------------------------------- */
void train_epoch_order(int32_t *order, int64_t N, int epoch, uint64_t seed, int skip, int64_t *cursor) {
    if (skip < 0) {
        dk_permutation(order, N, seed, 1000 + (uint64_t)epoch);
        return;
    }
    int64_t p = *cursor;
    for (int64_t i = 0; i < N; i++) {
        order[i] = (int32_t)p;
        p = (p + 1 +
             dh_rng_below(seed ^ 0xabcdefULL, (uint64_t)epoch * (uint64_t)N + (uint64_t)i, (uint32_t)skip + 1)) %
            N;
    }
    *cursor = p;
}

/* ---- networks ----------------------------------------------------------------------------------------------------- */
int train_net_new(const netspec *spec, int nclasses, dk_device dev, int64_t B, uint64_t seed, const train_images *d,
                  net **out, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    *out = NULL;
    net *n = NULL;
    if (net_create(spec, nclasses, dev, B, &n, e) || net_init(n, seed, e) || net_set_norm(n, d->mean, d->std, e) ||
        train_whiten(n, d, TRAIN_WHITEN_IMAGES, e) ||
        (nclasses > 0 && d->classes && net_set_classes(n, (const char *const *)d->classes, d->nclasses, e))) {
        net_free(n);
        return e->code;
    }
    *out = n;
    return DH_OK;
}
