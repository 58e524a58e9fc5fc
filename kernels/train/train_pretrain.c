/* train_pretrain.c — stage 1's recipe pieces beyond plain SGD (train.h):
 * the patch-whitening start from the training images, the per-parameter
 * settings of the fast CIFAR-10 recipe, the lookahead's decay, and the
 * evaluation with test-time flips. */
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

int train_images_eval_tta(net *n, const train_images *d, dk_tensor *x, double *acc, double *acc_tta, double *loss,
                          dh_err *e) {
    dh_err local;
    if (!e) e = &local;
    int64_t B = x->shape[0], correct = 0, correct_tta = 0;
    int K = n->nclasses;
    double lsum = 0;
    float *lg = dh_malloc(e, (size_t)(B * K), sizeof *lg), *lf = dh_malloc(e, (size_t)(B * K), sizeof *lf);
    int rc = lg && lf ? DH_OK : DH_ENOMEM;
    for (int64_t s = 0; s < d->S && !rc; s += B) {
        int64_t nb = d->S - s < B ? d->S - s : B, c;
        const uint8_t *pix = d->pix + (size_t)s * d->C * d->H * d->W;
        dk_tensor xb, L;
        double l;
        if ((rc = dk_tensor_rows(x, 0, nb, &xb, e)) ||
            (rc = dk_images_augment(pix, nb, d->C, d->H, d->W, NULL, 0, 0, n->mean, n->std, 0, 0, &xb, e)) ||
            (rc = net_eval_xent(n, &xb, d->lab + s, &l, &c, e)) || (rc = net_head_forward(n, &L, e)) ||
            (rc = dk_download(&L, lg, nb * K, e)) ||
            (rc = dk_images_augment(pix, nb, d->C, d->H, d->W, NULL, 0, DK_FLIP_ALL, n->mean, n->std, 0, 0, &xb, e)) ||
            (rc = net_forward_to_z(n, &xb, 0, &L, e)) || (rc = net_head_forward(n, &L, e)) ||
            (rc = dk_download(&L, lf, nb * K, e)))
            break;
        correct += c;
        lsum += l * nb;
        for (int64_t i = 0; i < nb; i++) {
            int best = 0;
            for (int k = 1; k < K; k++)
                if (lg[i * K + k] + lf[i * K + k] > lg[i * K + best] + lf[i * K + best]) best = k;
            correct_tta += best == d->hlab[s + i];
        }
    }
    free(lg);
    free(lf);
    if (rc) {
        dh_err_prefix(e, "%s", d->name);
        return rc;
    }
    *acc = (double)correct / d->S;
    *acc_tta = (double)correct_tta / d->S;
    *loss = lsum / d->S;
    return DH_OK;
}
