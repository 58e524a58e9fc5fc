/* train_finetune.c — stage 3 (train.h): the hash layer trained on cached
 * features, or on the z of a network that is trained with it; the models
 * it writes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "train.h"
#include "hashfn.h"

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
    const int D = t->D;
    t->m = dh_calloc(e, (size_t)D, sizeof(float));
    t->order = dh_malloc(e, (size_t)t->N, sizeof(int32_t));
    t->lab = dh_malloc(e, (size_t)B, sizeof(int32_t));
    t->zh = dh_malloc(e, (size_t)B * D, sizeof(float));
    int rc = t->m && t->order && t->lab && t->zh ? DH_OK : DH_ENOMEM;
    if (rc == DH_OK && (f ? dk_tensor_alloc4(&t->z, dev, 2, B, D, 1, 1, e)
                          : dk_tensor_alloc4(&t->x, dev, 4, B, im->C, im->H, im->W, e)))
        rc = e->code;
    if (rc == DH_OK && o->precond && f) train_zstats(f->z, t->N, D, t->m, &t->r2);
    if (rc == DH_OK && o->precond && !f)
        rc = train_zstats_net(nw, im, (t->N < 4096 ? t->N : 4096) / B * B, &t->x, t->m, &t->r2, e);
    train_hash_opts ho = { o->loss, (float)o->momentum, (float)o->hash_wd, o->precond ? t->m : NULL, t->r2 };
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
    if (dk_images_augment(d->pix, d->S, d->C, d->H, d->W, d->order + s0, t->o.pad, t->o.flip, t->nw->mean, t->nw->std,
                          t->o.seed, (uint64_t)t->step * (uint64_t)B, &t->x, e) ||
        net_forward_to_z(t->nw, &t->x, train, z, e))
        return e->code;
    return DH_OK;
}

int train_finetune_epoch(train_finetune *t, int epoch, train_finetune_stats *st,
                         void (*progress)(void *arg, int64_t rows), void *arg, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    const train_finetune_opts *o = &t->o;
    const int B = t->B, train = t->nw && o->backbone_lr > 0;
    const int32_t *lab = t->f ? t->f->lab : t->im->hlab;
    int64_t spe = t->N / B, total = spe * o->epochs;
    double f = 1.0;
    memset(st, 0, sizeof *st);
    train_epoch_order(t->order, t->N, epoch, o->seed, o->skip, &t->cursor);
    if (t->im && train_images_order(t->im, t->order, e)) return e->code;
    for (int64_t s0 = 0; s0 + B <= t->N; s0 += B, t->step++) {
        for (int i = 0; i < B; i++) t->lab[i] = lab[t->order[s0 + i]];
        dk_tensor z;
        train_hash_stats hs;
        f = dk_schedule_lr(&o->sched, t->step, total, spe);
        if (batch_z(t, s0, train, &z, e) || train_hash_step(&t->th, &z, t->lab, (float)(o->lr * f), train, &hs, e))
            return e->code;
        if (!isfinite(hs.surrogate))
            return dh_seterr(e, DH_EFORMAT, "training diverged at epoch %d (try a smaller --lr)", epoch + 1);
        /* the backbone, from the gradient the hash layer passed down */
        float lrs[NET_NGROUPS] = { (float)(o->backbone_lr * f), 0.0f }, wds[NET_NGROUPS] = { (float)o->wd, 0.0f };
        if (train &&
            (net_backward_from_z(t->nw, &t->th.dz, e) || net_sgd_step(t->nw, lrs, (float)o->momentum, wds, 0, e)))
            return e->code;
        st->q += hs.q;
        st->surrogate += hs.surrogate;
        st->right += hs.right;
        st->absu += hs.absu;
        st->batches++;
        st->rows += B;
        if (progress) progress(arg, st->rows);
    }
    if (dk_sync(t->th.dev, e)) return e->code;
    double nb = st->batches ? (double)st->batches : 1.0;
    st->q /= nb;
    st->surrogate /= nb;
    st->right /= nb;
    st->absu /= nb;
    st->lr = o->lr * f;
    st->backbone_lr = t->nw ? o->backbone_lr * f : 0.0;
    return DH_OK;
}

void train_finetune_free(train_finetune *t) {
    train_hash_free(&t->th);
    dk_tensor_free(&t->x);
    dk_tensor_free(&t->z);
    free(t->m);
    free(t->order);
    free(t->lab);
    free(t->zh);
    t->m = t->zh = NULL;
    t->order = t->lab = NULL;
}

int train_hash_model(dhs_model *out, const net *nw, const float *W, const float *b, int K, int D, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    if (!nw) {
        if (dh_hash_model_begin(out, "deephash", "linear", K, D, e) ||
            dh_hash_model_set_linear(out, "", W, b, NULL, K, D, e))
            return e->code;
        return DH_OK;
    }
    if (net_to_model(nw, out, e) || dh_hash_model_set_linear(out, "hash.", W, b, NULL, K, D, e)) return e->code;
    dhs_meta *m = out->meta;
    if (dhs_meta_set_str(m, "model", "deephash") || dhs_meta_set_int(m, "hash_bits", K) ||
        dhs_meta_set_int(m, "hash_dim", D) || dhs_meta_set_str(m, "hash_method", "deephash") ||
        dhs_meta_set_str(m, "hash_transform", "linear"))
        return dh_seterr(e, DH_ENOMEM, "out of memory");
    return DH_OK;
}
