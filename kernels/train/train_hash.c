/* train_hash.c — the hash layer of stage 3 (train.h): loading or drawing
 * it, the preconditioning statistics, and the trainer (forward, the
 * exponentiated loss on the tensors' device or a registry loss on the host,
 * backward, momentum SGD). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "train.h"
#include "dh_rng.h"
#include "hashfn.h"

int train_hash_load(const char *path, dhs_model *m, float **W, float **b, int *K, int *D, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    dh_hashfn h;
    *W = *b = NULL;
    if (dhs_model_load(path, m, e)) return e->code;
    if (dh_hashfn_bind(&h, m, "", e)) {
        dh_err_prefix(e, "%s", path);
        return e->code;
    }
    if (strcmp(h.transform, "linear") != 0)
        return dh_seterr(e, DH_ESCHEMA, "%s: a '%s' hash model (transform %s): fine-tuning needs a linear hash layer",
                         path, h.method, h.transform);
    *K = h.K;
    *D = h.D;
    *W = dh_malloc(e, (size_t)h.K * h.D, sizeof(float));
    *b = dh_calloc(e, (size_t)h.K, sizeof(float));
    if (!*W || !*b) {
        free(*W);
        free(*b);
        *W = *b = NULL;
        return DH_ENOMEM;
    }
    memcpy(*W, h.W, sizeof(float) * (size_t)h.K * h.D);
    for (int k = 0; k < h.K; k++) { /* u = W (z - mean) + b = W z + (b - W mean) */
        double s = h.b ? h.b[k] : 0.0;
        if (h.mean)
            for (int d = 0; d < h.D; d++) s -= (double)h.W[(size_t)k * h.D + d] * h.mean[d];
        (*b)[k] = (float)s;
    }
    return DH_OK;
}

int train_hash_start(const char *path, dhs_model *m, int D, const float *z, int64_t n, uint64_t seed, float **W,
                     float **b, int *K, int *HD, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    if (path) return train_hash_load(path, m, W, b, K, HD, e);
    *HD = D;
    *W = dh_malloc(e, (size_t)*K * D, sizeof(float));
    *b = dh_malloc(e, (size_t)*K, sizeof(float));
    if (!*W || !*b) {
        free(*W), free(*b);
        *W = *b = NULL;
        return DH_ENOMEM;
    }
    train_hash_random(*W, *b, *K, D, seed, z, z ? (n < 4096 ? n : 4096) : 0);
    return DH_OK;
}

void train_hash_random(float *W, float *b, int K, int D, uint64_t seed, const float *z, int64_t n) {
    for (size_t i = 0; i < (size_t)K * D; i++) W[i] = dh_rng_normal(seed ^ 0x4a5bULL, i) * sqrtf(1.0f / (float)D);
    memset(b, 0, sizeof(float) * (size_t)K);
    if (!z || n <= 0) return;
    float *u = malloc(sizeof(float) * (size_t)n * K);
    if (!u) return; /* unscaled: still a valid start */
    dh_linear_project(W, NULL, NULL, z, n, D, K, u);
    double ss = 0;
    for (int64_t i = 0; i < n * K; i++) ss += (double)u[i] * u[i];
    float f = ss > 0 ? (float)(1.0 / sqrt(ss / (double)(n * K))) : 1.0f;
    for (size_t i = 0; i < (size_t)K * D; i++) W[i] *= f;
    free(u);
}

/* ---- preconditioning statistics ----------------------------------------------------------------------------------- */
typedef struct zacc {
    double *s1, s2; /* per-dimension sums, sum of squares */
    int64_t n;
} zacc;

static void zacc_add(zacc *a, const float *z, int64_t n, int D) {
    for (int64_t i = 0; i < n; i++)
        for (int d = 0; d < D; d++) {
            double v = z[i * D + d];
            a->s1[d] += v;
            a->s2 += v * v;
        }
    a->n += n;
}

static void zacc_end(const zacc *a, int D, float *m, double *r2) {
    double mm = 0;
    for (int d = 0; d < D; d++) {
        m[d] = (float)(a->s1[d] / (double)a->n);
        mm += (double)m[d] * m[d];
    }
    *r2 = a->s2 / (double)a->n - mm;
    if (!(*r2 > 1e-20)) *r2 = 1.0;
}

void train_zstats(const float *z, int64_t n, int D, float *m, double *r2) {
    zacc a = { calloc((size_t)D, sizeof(double)), 0, 0 };
    if (!a.s1 || n <= 0) { /* no statistics: no preconditioning */
        memset(m, 0, sizeof(float) * (size_t)D);
        *r2 = 1.0;
    } else {
        zacc_add(&a, z, n, D);
        zacc_end(&a, D, m, r2);
    }
    free(a.s1);
}

int train_zstats_net(net *nw, const train_images *d, int64_t n, dk_tensor *x, float *m, double *r2, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    int64_t B = x->shape[0], D = nw->zdim;
    zacc a = { dh_calloc(e, (size_t)D, sizeof(double)), 0, 0 };
    float *zh = dh_malloc(e, (size_t)(B * D), sizeof(float));
    int rc = a.s1 && zh ? DH_OK : DH_ENOMEM;
    for (int64_t s0 = 0; rc == DH_OK && s0 + B <= n; s0 += B) {
        dk_tensor zt;
        if (dk_images_augment(d->pix + (size_t)s0 * d->C * d->H * d->W, B, d->C, d->H, d->W, NULL, 0, 0, nw->mean,
                              nw->std, 0, 0, x, e) ||
            net_forward_to_z(nw, x, 0, &zt, e) || dk_download(&zt, zh, B * D, e))
            rc = e->code;
        else
            zacc_add(&a, zh, B, (int)D);
    }
    if (rc == DH_OK && a.n > 0) zacc_end(&a, (int)D, m, r2);
    if (rc == DH_OK && a.n == 0) {
        memset(m, 0, sizeof(float) * (size_t)D);
        *r2 = 1.0;
    }
    free(a.s1);
    free(zh);
    return rc;
}

/* ---- the trainer -------------------------------------------------------------------------------------------------- */
int train_hash_init(train_hash *t, dk_device dev, int K, int D, int B, const float *W, const float *b,
                    const train_hash_opts *o, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    memset(t, 0, sizeof *t);
    t->dev = dev;
    t->K = K;
    t->D = D;
    t->B = B;
    t->loss = o->loss;
    t->dloss = o->dloss;
    t->momentum = o->momentum;
    t->wd = o->wd;
    t->precond = o->m != NULL;
    t->r2 = o->m ? o->r2 : 1.0;
    t->hu = dh_malloc(e, (size_t)B * K, sizeof(float));
    t->hdu = dh_malloc(e, (size_t)B * K, sizeof(float));
    float *hc = dh_malloc(e, (size_t)K, sizeof(float)), *hm = dh_calloc(e, (size_t)D, sizeof(float));
    if (!t->hu || !t->hdu || !hc || !hm) {
        free(hc);
        free(hm);
        train_hash_free(t);
        return DH_ENOMEM;
    }
    if (o->m) memcpy(hm, o->m, sizeof(float) * (size_t)D);
    for (int k = 0; k < K; k++) { /* c = b + W m */
        double off = 0;
        for (int d = 0; d < D; d++) off += (double)W[(size_t)k * D + d] * hm[d];
        hc[k] = (float)(b[k] + off);
    }
    int rc = DH_OK;
    if (dk_tensor_alloc4(&t->W, dev, 2, K, D, 1, 1, e) || dk_tensor_alloc4(&t->b, dev, 1, K, 1, 1, 1, e) ||
        dk_tensor_alloc4(&t->c, dev, 1, K, 1, 1, 1, e) || dk_tensor_alloc4(&t->m, dev, 1, D, 1, 1, 1, e) ||
        dk_tensor_alloc4(&t->gW, dev, 2, K, D, 1, 1, e) || dk_tensor_alloc4(&t->gb, dev, 1, K, 1, 1, 1, e) ||
        dk_tensor_alloc4(&t->vW, dev, 2, K, D, 1, 1, e) || dk_tensor_alloc4(&t->vb, dev, 1, K, 1, 1, 1, e) ||
        dk_tensor_alloc4(&t->u, dev, 2, B, K, 1, 1, e) || dk_tensor_alloc4(&t->du, dev, 2, B, K, 1, 1, e) ||
        dk_tensor_alloc4(&t->dz, dev, 2, B, D, 1, 1, e) ||
        dk_mem_alloc(dev, sizeof(int32_t) * (size_t)B, (void **)&t->dlab, e) ||
        dk_upload(&t->W, W, (int64_t)K * D, e) || dk_upload(&t->b, b, K, e) || dk_upload(&t->c, hc, K, e) ||
        dk_upload(&t->m, hm, D, e))
        rc = e->code;
    free(hc);
    free(hm);
    if (rc) train_hash_free(t);
    return rc;
}

/* The loss and its gradient du for the u of the last forward, on the
 * trainer's device (u is copied to the host for the statistics). A registry
 * loss runs on the GPU when the trainer is on CUDA and the method has a
 * device path (DH_DLOSS_DEVICE: dh_dloss_eval_cuda, no du upload); the
 * others (greedyhash, dsdh, adsh, whose state the host updates at every
 * batch) run on the host for either device. *finite: whether u was finite
 * (when not, no loss is computed). */
static int hash_loss(train_hash *t, const int32_t *labels, const train_hash_pos *pos, train_hash_stats *hs, int *finite,
                     dh_err *e) {
    const int B = t->B, K = t->K;
    *finite = 1;
    if (t->dloss) {
        if (dk_download(&t->u, t->hu, (int64_t)B * K, e)) return e->code;
        for (int64_t i = 0; i < (int64_t)B * K; i++)
            if (!isfinite(t->hu[i])) {
                *finite = 0;
                return DH_OK;
            }
        dh_dloss_batch bt = { .u = t->hu,
                              .rows = B,
                              .labels = labels,
                              .idx = pos ? pos->idx : NULL,
                              .step = pos ? pos->step : 0,
                              .epoch = pos ? pos->epoch : 0,
                              .learn = 1 };
        dh_dloss_stats ds;
        const int on_dev = t->dev == DK_CUDA && (dh_dloss_method_of(t->dloss)->flags & DH_DLOSS_DEVICE);
        if (on_dev ? dh_dloss_eval_cuda(t->dloss, &bt, t->u.data, t->du.data, &ds, e)
                   : dh_dloss_eval(t->dloss, &bt, t->hdu, &ds, e))
            return e->code;
        hs->loss = ds.loss;
        memcpy(hs->term, ds.term, sizeof hs->term);
        hs->scale = ds.scale;
        hs->q = hs->surrogate = hs->right = NAN;
        return on_dev ? DH_OK : dk_upload(&t->du, t->hdu, (int64_t)B * K, e);
    }
    dh_hashloss_stats lsv, *ls = &lsv;
    memset(ls, 0, sizeof *ls);
    int rc = DH_OK;
    if (t->dev == DK_CUDA) { /* the pair weights from the host labels, the rest on the device */
        dh_hashloss_stats w;
        dh_hashloss_weights(labels, B, &t->loss, &w);
        if (dk_mem_upload(t->dev, t->dlab, labels, sizeof(int32_t) * (size_t)B, e) ||
            dh_hashloss_cuda(t->u.data, t->dlab, B, K, w.wpos, w.wneg, t->du.data, ls, e) ||
            dk_download(&t->u, t->hu, (int64_t)B * K, e))
            rc = e->code;
    } else if (dk_download(&t->u, t->hu, (int64_t)B * K, e) ||
               dh_hashloss_cpu(t->hu, labels, B, K, &t->loss, t->hdu, ls, e) ||
               dk_upload(&t->du, t->hdu, (int64_t)B * K, e))
        rc = e->code;
    hs->q = ls->q;
    hs->surrogate = hs->loss = ls->surrogate;
    hs->right = ls->right;
    return rc;
}

int train_hash_step(train_hash *t, const dk_tensor *z, const int32_t *labels, const train_hash_pos *pos, float lr,
                    int want_dz, train_hash_stats *st, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    const int K = t->K, D = t->D;
    const dk_device dev = t->dev;
    train_hash_stats hs;
    memset(&hs, 0, sizeof hs);
    int finite;
    if (dk_fc_forward(z, &t->W, &t->b, &t->u, e) || hash_loss(t, labels, pos, &hs, &finite, e)) return e->code;
    double au = 0;
    for (int64_t i = 0; i < (int64_t)t->B * K; i++) au += fabsf(t->hu[i]);
    hs.absu = au / ((double)t->B * K);
    if (!finite) hs.loss = hs.q = hs.surrogate = NAN;
    if (st) *st = hs;
    if (!finite) return DH_OK; /* nothing to learn from: the caller reports the divergence */
    if (dk_fc_backward(z, &t->W, &t->du, want_dz ? &t->dz : NULL, &t->gW, &t->gb, e)) return e->code;
    /* momentum SGD in x = (z - m) / r (train.h); plain when m = 0, r = 1 */
    if ((t->precond && dk_sgemm(dev, 0, 0, K, D, 1, -1.0f, t->gb.data, 1, t->m.data, D, 1.0f, t->gW.data, D, e)) ||
        dk_axpby(1.0f, &t->gW, t->momentum, &t->vW, e) || (t->wd > 0 && dk_axpby(t->wd, &t->W, 1.0f, &t->vW, e)) ||
        dk_axpby((float)(-lr / t->r2), &t->vW, 1.0f, &t->W, e) || dk_axpby(1.0f, &t->gb, t->momentum, &t->vb, e) ||
        dk_axpby(-lr, &t->vb, 1.0f, &t->c, e) || dk_copy(&t->b, &t->c, e) ||
        (t->precond && dk_sgemm(dev, 0, 0, K, 1, D, -1.0f, t->W.data, D, t->m.data, 1, 1.0f, t->b.data, 1, e)))
        return e->code;
    return DH_OK;
}

int train_hash_get(const train_hash *t, float *W, float *b, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    if (dk_download(&t->W, W, (int64_t)t->K * t->D, e) || dk_download(&t->b, b, t->K, e)) return e->code;
    return DH_OK;
}

void train_hash_free(train_hash *t) {
    dk_tensor *ts[] = { &t->W, &t->b, &t->c, &t->m, &t->gW, &t->gb, &t->vW, &t->vb, &t->u, &t->du, &t->dz };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dk_tensor_free(ts[i]);
    dk_mem_free(t->dev, t->dlab);
    free(t->hu);
    free(t->hdu);
    t->hu = t->hdu = NULL;
    t->dlab = NULL;
    dh_hashloss_cpu_release();
}
