/* train_pretrain.c — stage 1's recipe pieces beyond plain SGD (train.h):
 * the patch-whitening start from the training images, the per-parameter
 * settings of the fast CIFAR-10 recipe, the lookahead's decay and start,
 * the warm-up from a fraction of the peak rate, and the evaluation with
 * test-time augmentation (flips, and airbench94's translations). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "train.h"

int train_whiten(net *n, const train_images *d, int64_t count, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    if (n->spec.nlayers < 1 || n->spec.layers[0].type != NS_CONV || !n->spec.layers[0].whiten) return DH_OK;
    int64_t N = count < d->S ? count : d->S, CHW = (int64_t)d->C * d->H * d->W;
    if (N < 1) return dh_seterr(e, DH_EINVAL, "%s: no images for the patch whitening", d->name);
    /* rows spread evenly over the stream (streams are often in class order) */
    int32_t *idx = dh_malloc(e, (size_t)N, sizeof *idx), *didx = NULL;
    float *host = dh_malloc(e, (size_t)(N * CHW), sizeof *host);
    dk_tensor x = { 0 };
    int rc = DH_ENOMEM;
    if (!idx || !host) goto out;
    for (int64_t i = 0; i < N; i++) idx[i] = (int32_t)(i * d->S / N);
    if ((rc = dk_mem_alloc(d->dev, (size_t)N * sizeof *idx, (void **)&didx, e)) ||
        (rc = dk_mem_upload(d->dev, didx, idx, (size_t)N * sizeof *idx, e)) ||
        (rc = dk_tensor_alloc4(&x, d->dev, 4, N, d->C, d->H, d->W, e)) ||
        (rc = dk_images_augment(d->pix, d->S, d->C, d->H, d->W, didx, 0, 0, n->mean, n->std, 0, 0, &x, e)) ||
        (rc = dk_download(&x, host, x.n, e)))
        goto out;
    rc = net_whiten_init(n, host, N, TRAIN_WHITEN_EPS, e);
out:
    free(idx);
    free(host);
    dk_mem_free(d->dev, didx);
    dk_tensor_free(&x);
    if (rc) dh_err_prefix(e, "%s", d->name);
    return rc;
}

int train_recipe_apply(net *n, const train_recipe *r, dh_err *e) {
    if (r->bn_momentum > 0) n->bn_momentum = r->bn_momentum;
    for (int l = 0; l < n->spec.nlayers && r->conv_scale > 0; l++) {
        const ns_layer *s = &n->spec.layers[l];
        size_t ln = strlen(s->name);
        if (s->type != NS_CONV || s->whiten) continue;
        for (int i = 0; i < n->nparams; i++)
            if (!strncmp(n->params[i].name, s->name, ln) && !strcmp(n->params[i].name + ln, ".weight")) {
                int rc = dk_scale(&n->params[i].w, r->conv_scale, e);
                if (rc) return rc;
            }
    }
    if (r->dirac) {
        int rc = net_init_dirac(n, e);
        if (rc) return rc;
    }
    if (r->head_torch && n->head_w >= 0) {
        /* the Xavier start U(-sqrt(6 / (z + K)), ...) rescaled to PyTorch's nn.Linear U(-1/sqrt(z), ...) */
        double a = sqrt(6.0 / (double)(n->zdim + n->nclasses)), b = 1.0 / sqrt((double)n->zdim);
        int rc = dk_scale(&n->params[n->head_w].w, (float)(b / a), e);
        if (!rc) rc = dk_zero(&n->params[n->head_b].w, e);
        if (rc) return rc;
        n->params[n->head_b].frozen = 1;
    }
    for (int l = 0; l < n->spec.nlayers; l++) {
        const ns_layer *s = &n->spec.layers[l];
        if (s->type != NS_BN) continue;
        for (int i = 0; i < n->nparams; i++) {
            net_param *p = &n->params[i];
            size_t ln = strlen(s->name);
            if (strncmp(p->name, s->name, ln) || p->name[ln] != '.') continue;
            if (!strcmp(p->name + ln + 1, "weight") && r->bn_scale_frozen) p->frozen = 1;
            if (!strcmp(p->name + ln + 1, "bias") && r->bn_bias_lr > 0) {
                p->lr_scale = r->bn_bias_lr;
                p->decay = 1;
            }
        }
    }
    for (int i = 0; i < n->nparams && r->decay_all; i++)
        if (!n->params[i].frozen) n->params[i].decay = 1;
    return DH_OK;
}

void train_recipe_epoch(net *n, const train_recipe *r, int epoch) {
    /* the whitening layer's bias trains for the first epochs only */
    if (r->whiten_bias_epochs > 0 && epoch >= r->whiten_bias_epochs && n->spec.nlayers > 0 && n->spec.layers[0].whiten)
        for (int i = 0; i < n->nparams; i++) {
            size_t ln = strlen(n->spec.layers[0].name);
            if (!strncmp(n->params[i].name, n->spec.layers[0].name, ln) && !strcmp(n->params[i].name + ln, ".bias"))
                n->params[i].frozen = 1;
        }
}

double train_lookahead_decay(int64_t step, int64_t total) {
    if (total < 1) return 0;
    double f = (double)step / (double)total;
    if (f > 1) f = 1;
    return pow(0.95, TRAIN_LOOKAHEAD_EVERY) * f * f * f;
}

int train_lookahead_started(const train_recipe *r, int64_t steps, int64_t spe) {
    if (r->lookahead_start <= 0) return 1;
    if (spe < 1) spe = 1;
    /* the first multiple of EVERY among the step counts of epoch E on: E spe + 1, ... */
    int64_t first = ((int64_t)r->lookahead_start * spe / TRAIN_LOOKAHEAD_EVERY + 1) * TRAIN_LOOKAHEAD_EVERY;
    return steps >= first;
}

double train_schedule_lr(const dk_schedule *s, double start, int64_t step, int64_t total, int64_t spe) {
    if (!(start > 0) || (s->kind != DK_SCHED_ONECYCLE && s->kind != DK_SCHED_COSINE))
        return dk_schedule_lr(s, step, total, spe);
    if (total < 1) total = 1;
    if (step < 0) step = 0;
    if (step > total) step = total;
    int64_t P = (int64_t)floor(s->warmup * (double)total);
    if (step < P) return s->base * (start + (1.0 - start) * (double)step / (double)P);
    double t = total > P ? (double)(step - P) / (double)(total - P) : 1.0;
    double f = s->kind == DK_SCHED_ONECYCLE ? 1.0 - t : 0.5 * (1.0 + cos(M_PI * t));
    return s->base * (s->final + (1.0 - s->final) * f);
}

int train_tta_views(int level) { return level >= TRAIN_TTA_FULL ? 6 : level == TRAIN_TTA_FLIP ? 2 : 1; }

void train_tta_view(int v, int *dy, int *dx, int *flip) {
    int sh = v < 2 ? 0 : v < 4 ? -1 : 1;
    *dy = sh, *dx = sh, *flip = v & 1;
}

void train_tta_combine(int level, const float *const *view, int64_t n, int K, float *out) {
    for (int64_t i = 0; i < n * K; i++) {
        if (level >= TRAIN_TTA_FULL) {
            float a = 0.5f * view[0][i] + 0.5f * view[1][i];
            float b = 0.5f * view[2][i] + 0.5f * view[3][i], c = 0.5f * view[4][i] + 0.5f * view[5][i];
            out[i] = 0.5f * a + 0.5f * (0.5f * b + 0.5f * c);
        } else if (level == TRAIN_TTA_FLIP)
            out[i] = 0.5f * view[0][i] + 0.5f * view[1][i];
        else
            out[i] = view[0][i];
    }
}

/* The network input of view v of nb images into xb: the image or its mirror
 * image made on the device from dpix; a translation made on the host from
 * pix (a host copy of the pixels) through img (nb x C x H x W floats). */
static int tta_view_input(const net *n, int v, const uint8_t *dpix, const uint8_t *pix, float *img, int64_t nb,
                          int C, int H, int W, dk_tensor *xb, dh_err *e) {
    if (v < 2) return dk_images_augment(dpix, nb, C, H, W, NULL, 0, v ? DK_FLIP_ALL : 0, n->mean, n->std, 0, 0, xb, e);
    int dy, dx, fl;
    int64_t row = (int64_t)C * H * W;
    train_tta_view(v, &dy, &dx, &fl);
    for (int64_t i = 0; i < nb; i++)
        train_image_shift_reflect(pix + i * row, C, H, W, dy, dx, fl, n->mean, n->std, img + i * row);
    return dk_upload(xb, img, nb * row, e);
}

/* The host buffers of the translated views (levels above flip) for B
 * images: *pix, *img; nothing for lower levels. */
static int tta_host_buffers(int level, int64_t B, int C, int H, int W, uint8_t **pix, float **img, dh_err *e) {
    *pix = NULL, *img = NULL;
    if (train_tta_views(level) <= 2) return DH_OK;
    if (H > 4096 || W > 4096 || H < 2 || W < 2)
        return dh_seterr(e, DH_EINVAL, "test-time translations of %dx%d images", H, W);
    size_t row = (size_t)C * H * W;
    if (!(*pix = dh_malloc(e, (size_t)B * row, 1)) || !(*img = dh_malloc(e, (size_t)B * row, sizeof **img))) {
        free(*pix);
        *pix = NULL;
        return DH_ENOMEM;
    }
    return DH_OK;
}

int train_images_eval_tta(net *n, const train_images *d, dk_tensor *x, int level, double *acc, double *acc_tta,
                          double *loss, dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    if (level <= TRAIN_TTA_NONE) {
        *acc_tta = -1;
        return train_images_eval(n, d, x, acc, loss, e);
    }
    int64_t B = x->shape[0], correct = 0, correct_tta = 0, row = (int64_t)d->C * d->H * d->W;
    int K = n->nclasses, nv = train_tta_views(level);
    double lsum = 0;
    float *lg[TRAIN_TTA_MAXVIEWS] = { 0 }, *comb = dh_malloc(e, (size_t)(B * K), sizeof *comb), *img = NULL;
    uint8_t *pix = NULL;
    int rc = comb ? DH_OK : DH_ENOMEM;
    for (int v = 0; v < nv && !rc; v++)
        if (!(lg[v] = dh_malloc(e, (size_t)(B * K), sizeof *lg[v]))) rc = DH_ENOMEM;
    if (!rc) rc = tta_host_buffers(level, B, d->C, d->H, d->W, &pix, &img, e);
    for (int64_t s = 0; s < d->S && !rc; s += B) {
        int64_t nb = d->S - s < B ? d->S - s : B, c;
        const uint8_t *dpix = d->pix + (size_t)s * row;
        dk_tensor xb, L;
        double l;
        if ((rc = dk_tensor_rows(x, 0, nb, &xb, e)) || (rc = tta_view_input(n, 0, dpix, pix, img, nb, d->C, d->H, d->W, &xb, e)) ||
            (rc = net_eval_xent(n, &xb, d->lab + s, &l, &c, e)) || (rc = net_head_forward(n, &L, e)) ||
            (rc = dk_download(&L, lg[0], nb * K, e)))
            break;
        if (nv > 2 && (rc = dk_mem_download(d->dev, pix, dpix, (size_t)(nb * row), e))) break;
        for (int v = 1; v < nv && !rc; v++)
            if (!(rc = tta_view_input(n, v, dpix, pix, img, nb, d->C, d->H, d->W, &xb, e)) &&
                !(rc = net_forward_to_z(n, &xb, 0, &L, e)) && !(rc = net_head_forward(n, &L, e)))
                rc = dk_download(&L, lg[v], nb * K, e);
        if (rc) break;
        correct += c;
        lsum += l * nb;
        train_tta_combine(level, (const float *const *)lg, nb, K, comb);
        for (int64_t i = 0; i < nb; i++) {
            int best = 0;
            for (int k = 1; k < K; k++)
                if (comb[i * K + k] > comb[i * K + best]) best = k;
            correct_tta += best == d->hlab[s + i];
        }
    }
    for (int v = 0; v < nv; v++) free(lg[v]);
    free(comb);
    free(pix);
    free(img);
    if (rc) {
        dh_err_prefix(e, "%s", d->name);
        return rc;
    }
    *acc = (double)correct / d->S;
    *acc_tta = (double)correct_tta / d->S;
    *loss = lsum / d->S;
    return DH_OK;
}

int train_tta_parse(const char *s) {
    return !strcmp(s, "none") ? TRAIN_TTA_NONE : !strcmp(s, "flip") ? TRAIN_TTA_FLIP : !strcmp(s, "full") ? TRAIN_TTA_FULL : -1;
}

const char *train_tta_name(int level) {
    return level >= TRAIN_TTA_FULL ? "full" : level == TRAIN_TTA_FLIP ? "flip" : "none";
}

int train_tta_z_init(train_tta_z *t, const net *n, int64_t B, int level, dh_err *e) {
    memset(t, 0, sizeof *t);
    if (level < TRAIN_TTA_NONE || level > TRAIN_TTA_FULL)
        return dh_seterr(e, DH_EINVAL, "test-time augmentation level %d (0..%d)", level, TRAIN_TTA_FULL);
    if (B < 1) return dh_seterr(e, DH_EINVAL, "test-time augmentation of batches of %lld", (long long)B);
    t->level = level, t->nv = train_tta_views(level), t->B = B, t->D = n->zdim;
    t->C = n->spec.in[0], t->H = n->spec.in[1], t->W = n->spec.in[2];
    int rc = DH_OK;
    for (int v = 0; v < t->nv && t->nv > 1 && !rc; v++)
        if (!(t->view[v] = dh_malloc(e, (size_t)B * t->D, sizeof *t->view[v]))) rc = DH_ENOMEM;
    if (!rc) rc = tta_host_buffers(level, B, t->C, t->H, t->W, &t->pix, &t->img, e);
    if (rc) train_tta_z_free(t);
    return rc;
}

int train_tta_z_batch(train_tta_z *t, net *n, const uint8_t *dpix, int64_t nb, dk_tensor *x, float *z, dh_err *e) {
    if (nb < 1 || nb > t->B || x->shape[0] < nb)
        return dh_seterr(e, DH_EINVAL, "a batch of %lld images for buffers of %lld", (long long)nb, (long long)t->B);
    int64_t row = (int64_t)t->C * t->H * t->W;
    dk_tensor xb, zt;
    int rc = dk_tensor_rows(x, 0, nb, &xb, e);
    if (!rc && t->nv > 2) rc = dk_mem_download(n->dev, t->pix, dpix, (size_t)(nb * row), e);
    for (int v = 0; v < t->nv && !rc; v++)
        if (!(rc = tta_view_input(n, v, dpix, t->pix, t->img, nb, t->C, t->H, t->W, &xb, e)) &&
            !(rc = net_forward_to_z(n, &xb, 0, &zt, e)))
            rc = dk_download(&zt, t->nv > 1 ? t->view[v] : z, nb * t->D, e);
    if (!rc && t->nv > 1) train_tta_combine(t->level, (const float *const *)t->view, nb, t->D, z);
    return rc;
}

void train_tta_z_free(train_tta_z *t) {
    for (int v = 0; v < TRAIN_TTA_MAXVIEWS; v++) free(t->view[v]);
    free(t->pix);
    free(t->img);
    memset(t, 0, sizeof *t);
}
