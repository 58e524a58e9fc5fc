/* train_finetune.c — stage 3 (train.h): the hash layer trained on cached
 * features, or on the z of a network that is trained with it, with the
 * paper's loss or a registry loss; the models (and ADSH's database codes)
 * it writes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "train.h"
#include "train_dist.h"
#include "hashfn.h"

/* Whether the spec "NAME:a=1,b=2" sets parameter `name`. */
static int spec_sets(const char *spec, const char *name) {
    const char *p = strchr(spec, ':');
    size_t n = strlen(name);
    while (p) {
        p++;
        if (strncmp(p, name, n) == 0 && p[n] == '=') return 1;
        p = strchr(p, ',');
    }
    return 0;
}

const dh_dloss_method *train_loss_method(const char *spec) {
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(spec, ":"), spec);
    return dh_dloss_find(name);
}

/* dh-finetune's rates for this trainer (preconditioned features, momentum
 * 0.9, cosine:0): for each method the best of lr_hint x {0.03, 0.1, 0.3,
 * 1, 3, 10, 30, 100, 300} (rounded, and below the cliff where a larger
 * rate collapses the codes), measured at 48 bits on Fashion-MNIST lenet
 * features, 5,000 training rows, 4 epochs, 1,000 validation queries from the
 * test split outside the comparison's queries (dh-finetune(1)). */
static const struct {
    const char *name;
    double lr;
} default_lr[] = { { "deephash", 3 },     { "dpsh", 3 },         { "dhn", 3 },    { "hashnet", 3 }, { "dch", 3 },
                   { "dsh", 3 },          { "dtsh", 3 },         { "mihash", 3 }, { "dsdh", 1 },    { "csq", 0.03 },
                   { "orthohash", 0.03 }, { "greedyhash", 0.1 }, { "adsh", 0.1 } };

double train_default_lr(const dh_dloss_method *m) {
    for (size_t i = 0; i < sizeof default_lr / sizeof default_lr[0]; i++)
        if (!strcmp(default_lr[i].name, m->name)) return default_lr[i].lr;
    return 10 * m->lr_hint; /* a method not measured yet */
}

int train_loss_check(const char *spec, int K, dh_err *e) {
    dh_dloss_config c = { .bits = K, .classes = 2, .seed = 1, .db_size = 1 };
    dh_dloss *L = NULL;
    int rc = dh_dloss_create_spec(spec, &c, &L, e);
    dh_dloss_free(L);
    return rc;
}

/* The registry loss of t->o.loss_spec for the training labels lab (N). */
static int make_dloss(train_finetune *t, const int32_t *lab, int nclasses, dh_err *e) {
    const char *spec = t->o.loss_spec;
    int maxl = -1;
    for (int64_t i = 0; i < t->N; i++) {
        if (lab[i] < 0)
            return dh_seterr(e, DH_EFORMAT, "row %lld: label %d: the loss needs class indices 0, 1, ...", (long long)i,
                             lab[i]);
        if (lab[i] > maxl) maxl = lab[i];
    }
    t->classes = nclasses > maxl ? nclasses : maxl + 1;
    char buf[512];
    const dh_dloss_method *me = train_loss_method(spec);
    if (me && !strcmp(me->name, "greedyhash") && !spec_sets(spec, "lr")) {
        /* its classifier learns at the hash layer's rate (dh-deep-methods(7)) */
        snprintf(buf, sizeof buf, "%s%slr=%.17g", spec, strchr(spec, ':') ? "," : ":", t->o.lr);
        spec = buf;
    }
    dh_dloss_config c = { .bits = t->K, .classes = t->classes, .seed = t->o.seed, .db_size = t->N };
    if (dh_dloss_create_spec(spec, &c, &t->dloss, e)) return e->code;
    if ((dh_dloss_method_of(t->dloss)->flags & DH_DLOSS_NEEDS_DB) &&
        dh_dloss_set_database(t->dloss, lab, NULL, t->N, e))
        return e->code;
    return DH_OK;
}

/* The classification term's needs: a network with a head that covers the labels, device labels. */
static int aux_init(train_finetune *t, dk_device dev, dh_err *e) {
    if (!t->nw) return dh_seterr(e, DH_EINVAL, "a classification term needs images and a network (not features)");
    if (train_check_head(t->nw, t->im->hlab, t->N, e)) return e->code;
    return dk_mem_alloc(dev, sizeof(int32_t) * (size_t)t->B, (void **)&t->dlab, e);
}

int train_finetune_init(train_finetune *t, const train_finetune_opts *o, dk_device dev, const train_features *f,
                        train_images *im, net *nw, int B, const float *W, const float *b, int K, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    memset(t, 0, sizeof *t);
    t->o = *o;
    t->f = f;
    t->im = im;
    t->nw = nw;
    t->N = f ? f->N : im->S;
    t->B = B;
    t->K = K;
    t->D = f ? f->D : nw->zdim;
    t->r2 = 1.0;
    t->ep_loaded = -1;
    const int D = t->D;
    t->m = dh_calloc(e, (size_t)D, sizeof(float));
    t->order = dh_malloc(e, (size_t)t->N, sizeof(int32_t));
    t->lab = dh_malloc(e, (size_t)B, sizeof(int32_t));
    t->zh = dh_malloc(e, (size_t)B * D, sizeof(float));
    t->idx = dh_malloc(e, (size_t)B, sizeof(int64_t));
    t->signs = dh_calloc(e, (size_t)K, 1);
    int rc = t->m && t->order && t->lab && t->zh && t->idx && t->signs ? DH_OK : DH_ENOMEM;
    /* several ranks: each takes its slice of a batch through the net, z is gathered (t->z), the hash layer runs
     * whole on every rank and the net's gradients are summed (train_dist.h) */
    t->r0 = 0, t->bl = B;
    if (rc == DH_OK && o->dist && !f &&
        (train_dist_slice(o->dist, B, &t->r0, &t->bl, e) || train_dist_bcast_net(o->dist, nw, e)))
        rc = e->code;
    if (rc == DH_OK && o->aux_xent > 0) rc = aux_init(t, dev, e);
    if (rc == DH_OK && o->loss_spec) rc = make_dloss(t, f ? f->lab : im->hlab, f ? 0 : im->nclasses, e);
    if (rc == DH_OK && (f ? dk_tensor_alloc4(&t->z, dev, 2, B, D, 1, 1, e)
                          : dk_tensor_alloc4(&t->x, dev, 4, t->bl, im->C, im->H, im->W, e)))
        rc = e->code;
    if (rc == DH_OK && t->bl < B && dk_tensor_alloc4(&t->z, dev, 2, B, D, 1, 1, e)) rc = e->code;
    if (rc == DH_OK && o->precond && f) train_zstats(f->z, t->N, D, t->m, &t->r2);
    if (rc == DH_OK && o->precond && !f)
        rc = train_zstats_net(nw, im, (t->N < 4096 ? t->N : 4096) / B * B, &t->x, t->m, &t->r2, e);
    train_hash_opts ho = { o->loss, (float)o->momentum, (float)o->hash_wd, o->precond ? t->m : NULL, t->r2, t->dloss };
    if (rc == DH_OK) rc = train_hash_init(&t->th, dev, K, D, B, W, b, &ho, e);
    if (rc) train_finetune_free(t);
    return rc;
}

/* z for the batch order[s0 .. s0 + B): the rows of the features, or the
 * images augmented and through the network (*z: a view of its buffer). */
static int batch_z(train_finetune *t, int64_t s0, int train, dk_tensor *z, dh_err *e) {
    const int B = t->B, D = t->D;
    if (t->f) {
        for (int i = 0; i < B; i++)
            memcpy(t->zh + (size_t)i * D, t->f->z + (size_t)t->order[s0 + i] * D, sizeof(float) * (size_t)D);
        *z = t->z;
        return dk_upload(&t->z, t->zh, (int64_t)B * D, e);
    }
    const train_images *d = t->im;
    dk_tensor zp; /* this rank's rows */
    if (dk_images_augment(d->pix, d->S, d->C, d->H, d->W, d->order + s0 + t->r0, t->o.pad, t->o.flip, t->nw->mean,
                          t->nw->std, t->o.seed, (uint64_t)t->step * (uint64_t)B + (uint64_t)t->r0, &t->x, e) ||
        net_forward_to_z(t->nw, &t->x, train, t->bl < B ? &zp : z, e) ||
        (t->bl < B && train_dist_allgather(t->o.dist, &zp, &t->z, e)))
        return e->code;
    if (t->bl < B) *z = t->z;
    return DH_OK;
}

int train_finetune_epoch(train_finetune *t, int epoch, train_finetune_stats *st,
                         void (*progress)(void *arg, int64_t rows), void *arg, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    const train_finetune_opts *o = &t->o;
    const int B = t->B, train = t->nw && o->backbone_lr > 0;
    const int32_t *lab = t->f ? t->f->lab : t->im->hlab;
    int64_t spe = t->N / B, total = spe * o->epochs, first = (int64_t)epoch * spe;
    double f = 1.0;
    if (t->step < first || t->step >= first + spe)
        return dh_seterr(e, DH_EINVAL, "epoch %d: the run is at step %lld, outside it", epoch + 1, (long long)t->step);
    if (t->ep_loaded != epoch) { /* the epoch's first call in this process */
        memset(st, 0, sizeof *st);
        memset(t->signs, 0, (size_t)t->K);
        t->ep_cursor = t->cursor;
        train_epoch_order(t->order, t->N, epoch, o->seed, o->skip, &t->cursor);
        if (t->im && train_images_order(t->im, t->order, e)) return e->code;
        t->ep_loaded = epoch;
    }
    st->paused = 0;
    int64_t s0 = (t->step - first) * B, from = s0;
    for (; s0 + B <= t->N; s0 += B, t->step++) {
        if (s0 > from && t->pause && t->pause(t->pause_arg)) { /* between two steps, never at the epoch's ends */
            st->paused = 1;
            return DH_OK;
        }
        for (int i = 0; i < B; i++) t->lab[i] = lab[t->order[s0 + i]], t->idx[i] = t->order[s0 + i];
        dk_tensor z;
        train_hash_stats hs;
        train_hash_pos pos = { t->idx, t->step, epoch };
        f = dk_schedule_lr(&o->sched, t->step, total, spe);
        if (batch_z(t, s0, train, &z, e) ||
            train_hash_step(&t->th, &z, t->lab, &pos, (float)(o->lr * f), train, &hs, e))
            return e->code;
        if (!isfinite(hs.loss))
            return dh_seterr(e, DH_EFORMAT, "training diverged at epoch %d (try a smaller --lr)", epoch + 1);
        for (int i = 0; i < B; i++) /* the codes' signs (u on the host after every step: train_hash_step) */
            for (int k = 0; k < t->K; k++) t->signs[k] |= t->th.hu[(int64_t)i * t->K + k] > 0 ? 1 : 2;
        /* the backbone, from the gradient the hash layer passed down (plus the classification term's: the mean
         * over this rank's rows, weighted by its share of the batch, as the ranks' gradients are summed) */
        const int aux = train && o->aux_xent > 0;
        float lrs[NET_NGROUPS] = { (float)(o->backbone_lr * f), aux ? (float)(o->backbone_lr * f) : 0.0f },
              wds[NET_NGROUPS] = { (float)o->wd, aux ? (float)o->wd : 0.0f };
        dk_tensor dz = t->th.dz;
        double xl = 0;
        int64_t corr = 0;
        if (train && ((t->bl < B && dk_tensor_rows(&t->th.dz, t->r0, t->bl, &dz, e)) ||
                      (aux && (dk_mem_upload(t->im->dev, t->dlab, t->lab + t->r0, sizeof(int32_t) * (size_t)t->bl, e) ||
                               net_head_xent_add(t->nw, t->dlab, 0.0f, (float)(o->aux_xent * (double)t->bl / B), &xl,
                                                 &corr, &dz, e))) ||
                      net_backward_from_z(t->nw, &dz, e) || (t->bl < B && train_dist_grads(o->dist, t->nw, 0, e)) ||
                      net_sgd_step(t->nw, lrs, (float)o->momentum, wds, 0, e)))
            return e->code;
        if (aux && !isfinite(xl))
            return dh_seterr(e, DH_EFORMAT, "training diverged at epoch %d (try a smaller --aux-xent)", epoch + 1);
        st->xent += xl;
        st->correct += corr;
        st->q += hs.q;
        st->surrogate += hs.surrogate;
        st->right += hs.right;
        st->absu += hs.absu;
        st->loss += hs.loss;
        for (int k = 0; k < DH_DLOSS_MAX_TERMS; k++) st->term[k] += hs.term[k];
        st->scale = hs.scale;
        st->batches++;
        st->rows += B;
        if (progress) progress(arg, st->rows);
    }
    if ((train && t->bl < B && train_dist_sync(o->dist, t->nw, e)) || dk_sync(t->th.dev, e) ||
        (t->dloss && dh_dloss_epoch_end(t->dloss, e)))
        return e->code;
    double nb = st->batches ? (double)st->batches : 1.0;
    st->loss /= nb;
    for (int k = 0; k < DH_DLOSS_MAX_TERMS; k++) st->term[k] /= nb;
    st->q /= nb;
    st->surrogate /= nb;
    st->right /= nb;
    st->absu /= nb;
    st->xent /= nb;
    st->acc = st->batches ? (double)st->correct / ((double)st->batches * (double)t->bl) : 0.0;
    st->constant_bits = 0;
    for (int k = 0; k < t->K; k++) st->constant_bits += st->batches && t->signs[k] != 3;
    st->lr = o->lr * f;
    st->backbone_lr = t->nw ? o->backbone_lr * f : 0.0;
    return DH_OK;
}

void train_finetune_free(train_finetune *t) {
    if (t->dlab) dk_mem_free(t->im->dev, t->dlab); /* only with images */
    t->dlab = NULL;
    train_hash_free(&t->th);
    dk_tensor_free(&t->x);
    dk_tensor_free(&t->z);
    free(t->m);
    free(t->order);
    free(t->lab);
    free(t->zh);
    free(t->idx);
    free(t->signs);
    t->signs = NULL;
    dh_dloss_free(t->dloss);
    t->dloss = NULL;
    t->idx = NULL;
    t->m = t->zh = NULL;
    t->order = t->lab = NULL;
}

void train_finetune_describe(const train_finetune *t, const char *loss, const char *netname, char *buf, size_t n) {
    const train_finetune_opts *o = &t->o;
    char scale[32] = "";
    if (!t->dloss) snprintf(scale, sizeof scale, " (scale %g)", o->loss.scale);
    if (t->f)
        snprintf(buf, n,
                 "fine-tuning the hash layer on %lld cached %d-D features: %d bits, loss %s%s, lr %g, batch %d, "
                 "%d epochs",
                 (long long)t->N, t->D, t->K, loss, scale, o->lr, t->B, o->epochs);
    else {
        char aux[48] = "";
        if (t->dlab && o->backbone_lr > 0) snprintf(aux, sizeof aux, " + %g x classification", o->aux_xent);
        snprintf(buf, n,
                 "fine-tuning %s + %d-bit hash layer on %lld images: loss %s%s%s, lr %g (hash) / %g (backbone), "
                 "batch %d, %d epochs, augment pad %d flip %d",
                 netname, t->K, (long long)t->N, loss, scale, aux, o->lr, o->backbone_lr, t->B, o->epochs, o->pad,
                 o->flip);
    }
}

void train_finetune_report(const train_finetune *t, const train_finetune_stats *st, char *buf, size_t n) {
    size_t o;
    if (!t->dloss) {
        o = (size_t)snprintf(buf, n, "Q %.5g  surrogate %.5g  right-sign pairs %.4f  mean|u| %.3g", st->q,
                             st->surrogate, st->right, st->absu);
    } else {
        const dh_dloss_method *me = dh_dloss_method_of(t->dloss);
        o = (size_t)snprintf(buf, n, "loss %.5g", st->loss);
        for (int k = 0; k < DH_DLOSS_MAX_TERMS && me->terms[k] && o < n; k++)
            o += (size_t)snprintf(buf + o, n - o, "  %s %.5g", me->terms[k], st->term[k]);
        if (st->scale != 0 && o < n) o += (size_t)snprintf(buf + o, n - o, "  beta %.4g", st->scale);
        if (o < n) o += (size_t)snprintf(buf + o, n - o, "  mean|u| %.3g", st->absu);
    }
    if (t->dlab && t->o.backbone_lr > 0 && o < n) /* the term ran */
        o += (size_t)snprintf(buf + o, n - o, "  xent %.4f  train acc %.2f%%", st->xent, 100 * st->acc);
    if (st->constant_bits > 0 && o < n) /* a bit that never changes sign carries nothing */
        snprintf(buf + o, n - o, "  constant bits %d/%d", st->constant_bits, t->K);
}

int train_finetune_db_codes(const train_finetune *t, FILE *f, const char *name, const dhs_meta *meta, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    int64_t rows = 0;
    int cols = 0;
    const float *V = t->dloss ? dh_dloss_tensor(t->dloss, "V", &rows, &cols) : NULL;
    if (!V || !(dh_dloss_method_of(t->dloss)->flags & DH_DLOSS_ASYM))
        return dh_seterr(e, DH_EUNSUPPORTED, "the loss learns no database codes (only adsh does)");
    if (rows != t->N || cols != t->K)
        return dh_seterr(e, DH_EINVAL, "database codes of %lld x %d, expected %lld x %d", (long long)rows, cols,
                         (long long)t->N, t->K);
    /* the ids: the features' id column, or the images' */
    const char *ids = NULL;
    const uint64_t *off = NULL;
    if (t->f) {
        int fi = dhs_field_index(&t->f->t.schema, "id");
        if (fi >= 0 && t->f->t.schema.fields[fi].dtype == DHS_STR) ids = t->f->t.col[fi], off = t->f->t.off[fi];
    } else if (t->im->ids) {
        ids = t->im->ids, off = t->im->idoff;
    }
    const int32_t *lab = t->f ? t->f->lab : t->im->hlab;
    dhs_schema s;
    int64_t kk = t->K;
    dhs_schema_init(&s, "codes");
    if (dhs_schema_add(&s, "code", DHS_BITS, 1, &kk, e) < 0 || dhs_schema_add(&s, "label", DHS_I32, 0, NULL, e) < 0 ||
        (ids && dhs_schema_add(&s, "id", DHS_STR, 0, NULL, e) < 0))
        return e->code;
    const int64_t R = 4096, nb = (t->K + 7) / 8;
    uint8_t *codes = dh_malloc(e, (size_t)(R * nb), 1);
    uint32_t *len = dh_malloc(e, (size_t)R, sizeof(uint32_t));
    dhs_meta *m = meta ? dhs_meta_copy(meta) : dhs_meta_new();
    int rc = codes && len && m ? DH_OK : dh_seterr(e, DH_ENOMEM, "out of memory");
    if (rc == DH_OK &&
        (dhs_meta_set_int(m, "bits", t->K) || dhs_meta_set_str(m, "hash_method", dh_dloss_method_of(t->dloss)->name) ||
         dhs_meta_set_str(m, "codes", "learned")))
        rc = dh_seterr(e, DH_ENOMEM, "out of memory");
    dhs_writer *w = rc == DH_OK ? dhs_writer_open(f, name, &s, m, e) : NULL;
    if (rc == DH_OK && !w) rc = e->code;
    dhs_meta_free(m);
    for (int64_t r0 = 0; rc == DH_OK && r0 < t->N; r0 += R) {
        int64_t n = t->N - r0 < R ? t->N - r0 : R;
        dh_pack_signs(V + r0 * t->K, n, t->K, codes);
        const void *c[3] = { codes, lab + r0, ids ? ids + off[r0] : NULL };
        const uint32_t *lens[3] = { NULL, NULL, ids ? len : NULL };
        for (int64_t i = 0; ids && i < n; i++) len[i] = (uint32_t)(off[r0 + i + 1] - off[r0 + i]);
        rc = dhs_write_rows(w, n, c, lens, e);
    }
    if (w && rc == DH_OK)
        rc = dhs_writer_close(w, e);
    else if (w)
        dhs_writer_abort(w);
    free(codes);
    free(len);
    return rc;
}

int train_hash_model(dhs_model *out, const net *nw, const char *method, const float *W, const float *b, int K, int D,
                     dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    if (!method) method = "deephash";
    if (!nw) {
        if (dh_hash_model_begin(out, method, "linear", K, D, e) ||
            dh_hash_model_set_linear(out, "", W, b, NULL, K, D, e))
            return e->code;
        return DH_OK;
    }
    if (net_to_model(nw, out, e) || dh_hash_model_set_linear(out, "hash.", W, b, NULL, K, D, e)) return e->code;
    dhs_meta *m = out->meta;
    if (dhs_meta_set_str(m, "model", "deephash") || dhs_meta_set_int(m, "hash_bits", K) ||
        dhs_meta_set_int(m, "hash_dim", D) || dhs_meta_set_str(m, "hash_method", method) ||
        dhs_meta_set_str(m, "hash_transform", "linear"))
        return dh_seterr(e, DH_ENOMEM, "out of memory");
    return DH_OK;
}

int train_finetune_model(const train_finetune *t, const net *nw, const train_model_info *info, float *W, float *b,
                         dhs_model *out, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    const char *method = t->dloss ? dh_dloss_method_of(t->dloss)->name : NULL;
    if (train_hash_get(&t->th, W, b, e) || train_hash_model(out, nw, method, W, b, t->K, t->D, e)) return e->code;
    const char *kv[][2] = {
        { "program", info->program },   { "cmdline", info->cmdline },     { "stage", info->stage },
        { "init_net", info->init_net }, { "init_hash", info->init_hash }, { "init_method", info->init_method },
        { "loss", info->loss },         { "device", info->device },       { "precision", info->precision }
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (kv[i][1] && dhs_meta_set_str(out->meta, kv[i][0], kv[i][1]))
            return dh_seterr(e, DH_ENOMEM, "out of memory");
    if (dhs_meta_set_int(out->meta, "seed", (int64_t)t->o.seed)) return dh_seterr(e, DH_ENOMEM, "out of memory");
    return DH_OK;
}
