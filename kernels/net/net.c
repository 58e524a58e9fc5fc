/* net.c — network runtime over the kernel library (see net.h). */
#include "net.h"
#include "dh_rng.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct net_layer {
    dk_tensor out;                 /* (cap, C, H, W) output: own buffer, or a view of the input's (net.h) */
    dk_tensor grad;                /* (cap, C, H, W) d loss / d out: a view of a shared buffer, or own (res ends) */
    dk_tensor mask;                /* dropout mask (cap, C, H, W) */
    dk_tensor save_mean, save_inv; /* bn (C) */
    int pw, pb;                    /* params: weight (or bn gamma), bias (or bn beta); -1 */
    int rm, rv;                    /* state: bn running mean / var; -1 */
    int plain_in;                  /* 1: this layer's fused op refused a kept input (dk.h: inference chains) */
};

/* ---- helpers ------------------------------------------------------------- */

/* First `rows` rows of t viewed with a (rows, C, H, W) shape. */
static int rows4(const dk_tensor *t, int64_t rows, const int *chw, dk_tensor *v, dh_err *e) {
    dk_tensor r;
    int rc = dk_tensor_rows(t, 0, rows, &r, e);
    if (rc) return rc;
    int64_t sh[4] = { rows, chw[0], chw[1], chw[2] };
    return dk_tensor_view(&r, 4, sh, v, e);
}
static int rows2(const dk_tensor *t, int64_t rows, int64_t cols, dk_tensor *v, dh_err *e) {
    dk_tensor r;
    int rc = dk_tensor_rows(t, 0, rows, &r, e);
    if (rc) return rc;
    int64_t sh[2] = { rows, cols };
    return dk_tensor_view(&r, 2, sh, v, e);
}

static int add_param(net *n, const char *layer, const char *what, int ndim, const int64_t *shape, int group, int decay,
                     dh_err *e) {
    net_param *p = &n->params[n->nparams];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s.%s", layer, what);
    p->group = group;
    p->decay = decay;
    p->lr_scale = 1.0f;
    int rc = dk_tensor_alloc(&p->w, n->dev, ndim, shape, e);
    if (!rc) rc = dk_tensor_alloc(&p->g, n->dev, ndim, shape, e);
    if (!rc) rc = dk_tensor_alloc(&p->v, n->dev, ndim, shape, e);
    if (rc) {
        dk_tensor_free(&p->w);
        dk_tensor_free(&p->g);
        dk_tensor_free(&p->v);
        return -1;
    }
    return n->nparams++;
}

static int add_state(net *n, const char *layer, const char *what, int64_t c, dh_err *e) {
    net_state *s = &n->state[n->nstate];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s.%s", layer, what);
    if (dk_tensor_alloc(&s->t, n->dev, 1, &c, e)) return -1;
    return n->nstate++;
}

/* ---- creation -------------------------------------------------------------- */

void net_free(net *n) {
    if (!n) return;
    if (n->L) {
        for (int i = 0; i < n->spec.nlayers; i++) {
            net_layer *l = &n->L[i];
            dk_tensor_free(&l->out);
            dk_tensor_free(&l->grad);
            dk_tensor_free(&l->mask);
            dk_tensor_free(&l->save_mean);
            dk_tensor_free(&l->save_inv);
        }
        free(n->L);
    }
    for (int i = 0; i < n->nparams; i++) {
        dk_tensor_free(&n->params[i].w);
        dk_tensor_free(&n->params[i].g);
        dk_tensor_free(&n->params[i].v);
    }
    free(n->params);
    for (int i = 0; i < n->nstate; i++) dk_tensor_free(&n->state[i].t);
    free(n->state);
    for (int i = 0; i < n->nclass_names; i++) free(n->class_names[i]);
    free(n->class_names);
    dk_tensor_free(&n->gin);
    dk_tensor_free(&n->gbuf[0]);
    dk_tensor_free(&n->gbuf[1]);
    dk_tensor_free(&n->logits);
    dk_tensor_free(&n->dlogits);
    netspec_free(&n->spec);
    free(n);
}

static int copy_spec(const netspec *src, netspec *dst, dh_err *e) {
    /* Re-parse the text: a deep copy that cannot go stale. */
    return netspec_parse(src->text, "net", dst, e);
}

int net_create(const netspec *spec, int nclasses, dk_device dev, int64_t cap, net **out, dh_err *e) {
    *out = NULL;
    if (cap < 1) return dh_seterr(e, DH_EINVAL, "batch capacity must be at least 1");
    if (nclasses < 0 || nclasses > (1 << 20)) return dh_seterr(e, DH_EINVAL, "bad number of classes %d", nclasses);
    if (spec->in[0] > DK_MAXCHAN)
        return dh_seterr(e, DH_EUNSUPPORTED, "input has %d channels; at most %d supported", spec->in[0], DK_MAXCHAN);
    net *n = dh_calloc(e, 1, sizeof *n);
    if (!n) return DH_ENOMEM;
    int rc = copy_spec(spec, &n->spec, e);
    if (rc) {
        free(n);
        return rc;
    }
    n->dev = dev;
    n->cap = cap;
    n->nclasses = nclasses;
    n->zdim = n->spec.zdim;
    n->bn_momentum = 0.1f;
    n->bn_eps = 1e-5f;
    n->head_w = n->head_b = -1;
    for (int c = 0; c < DK_MAXCHAN; c++) {
        n->mean[c] = 0;
        n->std[c] = 1;
    }
    int nl = n->spec.nlayers;
    n->L = dh_calloc(e, nl, sizeof *n->L);
    n->params = dh_calloc(e, 2 * nl + 2, sizeof *n->params);
    n->state = dh_calloc(e, 2 * nl, sizeof *n->state);
    if (!n->L || !n->params || !n->state) {
        net_free(n);
        return DH_ENOMEM;
    }

    /* the two shared gradient buffers: cap x the largest layer output */
    int64_t maxsz = 1;
    for (int i = 0; i < nl; i++) {
        const int *sp = n->spec.layers[i].shape;
        int64_t sz = (int64_t)sp[0] * sp[1] * sp[2];
        if (sz > maxsz) maxsz = sz;
    }
    for (int k = 0; k < 2; k++) {
        int64_t gn = cap * maxsz;
        if ((rc = dk_tensor_alloc(&n->gbuf[k], dev, 1, &gn, e))) goto fail;
    }
    for (int i = 0; i < nl; i++) {
        const ns_layer *s = &n->spec.layers[i];
        net_layer *l = &n->L[i];
        l->pw = l->pb = l->rm = l->rv = -1;
        int64_t sh[4] = { cap, s->shape[0], s->shape[1], s->shape[2] };
        int prev = i > 0 ? (int)n->spec.layers[i - 1].type : -1;
        int inplace_relu = s->type == NS_RELU &&
                           (prev == NS_CONV || prev == NS_BN || prev == NS_FC || prev == NS_AVGPOOL || prev == NS_GAP);
        if (i > 0 && (inplace_relu || s->type == NS_RES || s->type == NS_FLATTEN))
            rc = dk_tensor_view(&n->L[i - 1].out, 4, sh, &l->out, e);
        else
            rc = dk_tensor_alloc(&l->out, dev, 4, sh, e);
        if (rc) goto fail;
        if (s->type == NS_END) {
            rc = dk_tensor_alloc(&l->grad, dev, 4, sh, e);
        } else {
            dk_tensor r;
            rc = dk_tensor_rows(&n->gbuf[i % 2], 0, cap * s->shape[0] * s->shape[1] * s->shape[2], &r, e);
            if (!rc) rc = dk_tensor_view(&r, 4, sh, &l->grad, e);
        }
        if (rc) goto fail;
        if (s->type == NS_DROPOUT && (rc = dk_tensor_alloc(&l->mask, dev, 4, sh, e))) goto fail;
        int64_t cin = s->in[0];
        if (s->type == NS_CONV) {
            int64_t ws[4] = { s->out, cin, s->k, s->k };
            if ((l->pw = add_param(n, s->name, "weight", 4, ws, NET_GROUP_BODY, 1, e)) < 0) {
                rc = e ? e->code : DH_ENOMEM;
                goto fail;
            }
            n->params[l->pw].frozen = s->whiten;
            int64_t bs = s->out;
            if (s->bias && (l->pb = add_param(n, s->name, "bias", 1, &bs, NET_GROUP_BODY, 0, e)) < 0) {
                rc = e ? e->code : DH_ENOMEM;
                goto fail;
            }
        } else if (s->type == NS_FC) {
            int64_t ws[2] = { s->out, cin * s->in[1] * s->in[2] };
            if ((l->pw = add_param(n, s->name, "weight", 2, ws, NET_GROUP_BODY, 1, e)) < 0) {
                rc = e ? e->code : DH_ENOMEM;
                goto fail;
            }
            int64_t bs = s->out;
            if (s->bias && (l->pb = add_param(n, s->name, "bias", 1, &bs, NET_GROUP_BODY, 0, e)) < 0) {
                rc = e ? e->code : DH_ENOMEM;
                goto fail;
            }
        } else if (s->type == NS_BN) {
            if ((l->pw = add_param(n, s->name, "weight", 1, &cin, NET_GROUP_BODY, 0, e)) < 0 ||
                (l->pb = add_param(n, s->name, "bias", 1, &cin, NET_GROUP_BODY, 0, e)) < 0 ||
                (l->rm = add_state(n, s->name, "running_mean", cin, e)) < 0 ||
                (l->rv = add_state(n, s->name, "running_var", cin, e)) < 0) {
                rc = e ? e->code : DH_ENOMEM;
                goto fail;
            }
            if ((rc = dk_tensor_alloc(&l->save_mean, dev, 1, &cin, e))) goto fail;
            if ((rc = dk_tensor_alloc(&l->save_inv, dev, 1, &cin, e))) goto fail;
        }
    }
    int64_t insh[4] = { cap, n->spec.in[0], n->spec.in[1], n->spec.in[2] };
    if ((rc = dk_tensor_alloc(&n->gin, dev, 4, insh, e))) goto fail;
    if (nclasses > 0) {
        int64_t ws[2] = { nclasses, n->zdim }, bs = nclasses;
        if ((n->head_w = add_param(n, "head", "weight", 2, ws, NET_GROUP_HEAD, 1, e)) < 0 ||
            (n->head_b = add_param(n, "head", "bias", 1, &bs, NET_GROUP_HEAD, 0, e)) < 0) {
            rc = e ? e->code : DH_ENOMEM;
            goto fail;
        }
        if ((rc = dk_tensor_alloc4(&n->logits, dev, 2, cap, nclasses, 1, 1, e))) goto fail;
        if ((rc = dk_tensor_alloc4(&n->dlogits, dev, 2, cap, nclasses, 1, 1, e))) goto fail;
    }
    /* bn running variance starts at 1 */
    for (int i = 0; i < nl; i++)
        if (n->L[i].rv >= 0 && (rc = dk_fill(&n->state[n->L[i].rv].t, 1.0f, e))) goto fail;
    *out = n;
    return DH_OK;
fail:
    if (!rc) rc = DH_ENOMEM;
    net_free(n);
    return rc;
}

int net_init(net *n, uint64_t seed, dh_err *e) {
    int rc;
    n->seed = seed;
    n->step = 0;
    for (int i = 0; i < n->spec.nlayers; i++) {
        const ns_layer *s = &n->spec.layers[i];
        net_layer *l = &n->L[i];
        if (s->type == NS_CONV || s->type == NS_FC) {
            int64_t fan_in = (int64_t)s->in[0] * (s->type == NS_CONV ? s->k * s->k : s->in[1] * s->in[2]);
            if ((rc = dk_init_he(&n->params[l->pw].w, fan_in, dh_splitmix64_at(seed, l->pw), e))) return rc;
            if (l->pb >= 0 && (rc = dk_zero(&n->params[l->pb].w, e))) return rc;
        } else if (s->type == NS_BN) {
            if ((rc = dk_fill(&n->params[l->pw].w, 1.0f, e))) return rc;
            if ((rc = dk_zero(&n->params[l->pb].w, e))) return rc;
            if ((rc = dk_zero(&n->state[l->rm].t, e))) return rc;
            if ((rc = dk_fill(&n->state[l->rv].t, 1.0f, e))) return rc;
        }
    }
    if (n->head_w >= 0) {
        if ((rc = dk_init_xavier(&n->params[n->head_w].w, n->zdim, n->nclasses, dh_splitmix64_at(seed, n->head_w), e)))
            return rc;
        if ((rc = dk_zero(&n->params[n->head_b].w, e))) return rc;
    }
    for (int i = 0; i < n->nparams; i++)
        if ((rc = dk_zero(&n->params[i].v, e))) return rc;
    return DH_OK;
}

int net_set_norm(net *n, const float *mean, const float *std, dh_err *e) {
    for (int c = 0; c < n->spec.in[0]; c++) {
        if (!(std[c] > 0)) return dh_seterr(e, DH_EINVAL, "normalisation: std of channel %d is not positive", c);
        n->mean[c] = mean[c];
        n->std[c] = std[c];
    }
    return DH_OK;
}

int net_set_classes(net *n, const char *const *names, int count, dh_err *e) {
    for (int i = 0; i < n->nclass_names; i++) free(n->class_names[i]);
    free(n->class_names);
    n->class_names = NULL;
    n->nclass_names = 0;
    if (!names || count <= 0) return DH_OK;
    n->class_names = dh_calloc(e, count, sizeof *n->class_names);
    if (!n->class_names) return DH_ENOMEM;
    for (int i = 0; i < count; i++) {
        n->class_names[i] = dh_strdup(e, names[i] ? names[i] : "");
        if (!n->class_names[i]) return DH_ENOMEM;
        n->nclass_names = i + 1;
    }
    return DH_OK;
}

int64_t net_nparams(const net *n) {
    int64_t s = 0;
    for (int i = 0; i < n->nparams; i++) s += n->params[i].w.n;
    return s;
}

/* ---- forward / backward ---------------------------------------------------- */

/* Layers j.. as the tail of a fused inference op, bn [relu|gelu]: the
 * index after it, or j when layer j is no batch normalisation. */
static int bn_tail(const net *n, int j, dk_bn_act *bn) {
    int nl = n->spec.nlayers;
    if (j >= nl || n->spec.layers[j].type != NS_BN) return j;
    const net_layer *bl = &n->L[j];
    *bn = (dk_bn_act){ &n->params[bl->pw].w, &n->params[bl->pb].w, &n->state[bl->rm].t, &n->state[bl->rv].t, n->bn_eps,
                       DK_ACT_NONE };
    j++;
    if (j < nl && n->spec.layers[j].type == NS_RELU)
        bn->act = DK_ACT_RELU, j++;
    else if (j < nl && n->spec.layers[j].type == NS_GELU)
        bn->act = DK_ACT_GELU, j++;
    return j;
}

/* Whether the convolution at layer i runs as a fused op in inference
 * (net_forward_to_z: followed by batch normalisation, or by pooling with or
 * without a ReLU between) that has not refused a kept input. */
static int conv_fused(const net *n, int i) {
    int nl = n->spec.nlayers, j = i + 1;
    if (i >= nl || n->spec.layers[i].type != NS_CONV || n->L[i].plain_in) return 0;
    if (j < nl && n->spec.layers[j].type == NS_BN) return 1;
    if (j < nl && n->spec.layers[j].type == NS_RELU) j++;
    return j < nl && (n->spec.layers[j].type == NS_MAXPOOL || n->spec.layers[j].type == NS_AVGPOOL);
}

/* The forward; chain: a fused op followed by another keeps its output in the
 * backend's layout where it can; *refused: the layer whose fused op refused
 * its kept input (DH_EUNSUPPORTED), else -1. */
static int forward(net *n, const dk_tensor *x, int train, int chain, int *refused, dk_tensor *z, dh_err *e) {
    int64_t N = x->shape[0];
    const int *in = n->spec.in;
    if (x->ndim != 4 || x->shape[1] != in[0] || x->shape[2] != in[1] || x->shape[3] != in[2]) {
        char b[64];
        return dh_seterr(e, DH_ESCHEMA, "net input %s, expected (N, %d, %d, %d)", dk_shape_str(x, b, sizeof b), in[0],
                         in[1], in[2]);
    }
    if (N < 1 || N > n->cap)
        return dh_seterr(e, DH_EINVAL, "batch of %lld rows, capacity %lld", (long long)N, (long long)n->cap);
    if (x->dev != n->dev) return dh_seterr(e, DH_EINVAL, "net input on the wrong device");
    n->xin = *x;
    n->xin.owns = 0;
    n->nb = N;
    n->fused = 0;
    int rc = DH_OK;
    dk_tensor X = *x, Y;
    X.owns = 0;
    for (int i = 0; i < n->spec.nlayers; i++) {
        const ns_layer *s = &n->spec.layers[i];
        net_layer *l = &n->L[i];
        if ((rc = rows4(&l->out, N, s->shape, &Y, e))) return rc;
        const dk_tensor *W = l->pw >= 0 ? &n->params[l->pw].w : NULL;
        const dk_tensor *B = l->pb >= 0 ? &n->params[l->pb].w : NULL;
        switch (s->type) {
        case NS_CONV: {
            /* inference: conv bn [relu|gelu] in one call (dk_conv2d_bn_forward), and
             * conv [relu] pool [bn [relu|gelu]] (dk_conv2d_pool_forward), the
             * outputs before the group's last left unwritten */
            int j = i + 1, relu = 0, nl = n->spec.nlayers, k;
            dk_bn_act bn;
            if (!train && (k = bn_tail(n, j, &bn)) > j) {
                dk_tensor G;
                if ((rc = rows4(&n->L[k - 1].out, N, n->spec.layers[k - 1].shape, &G, e))) return rc;
                if (chain && conv_fused(n, k)) G.fmt = DK_FMT_KEEP;
                rc = dk_conv2d_bn_forward(&X, W, B, s->s, s->p, &bn, &Y, &G, e);
                if (rc == DH_EUNSUPPORTED && X.fmt > 0) *refused = i;
                if (!rc) {
                    i = k - 1;
                    Y = G;
                    n->fused = 1;
                }
                break;
            }
            if (!train && j < nl && n->spec.layers[j].type == NS_RELU) relu = 1, j++;
            const ns_layer *ps = j < nl ? &n->spec.layers[j] : NULL;
            if (!train && ps && (ps->type == NS_MAXPOOL || ps->type == NS_AVGPOOL)) {
                dk_tensor P, G;
                k = bn_tail(n, j + 1, &bn);
                int has_bn = k > j + 1;
                /* conv maxpool relu as conv relu maxpool: the same values (ReLU is monotone) */
                if (k == j + 1 && !relu && ps->type == NS_MAXPOOL && k < nl && n->spec.layers[k].type == NS_RELU)
                    relu = 1, k++;
                if ((rc = rows4(&n->L[j].out, N, ps->shape, &P, e)) ||
                    (rc = rows4(&n->L[k - 1].out, N, n->spec.layers[k - 1].shape, &G, e)))
                    return rc;
                if (chain && conv_fused(n, k)) G.fmt = DK_FMT_KEEP;
                rc = dk_conv2d_pool_forward(&X, W, B, s->s, s->p, relu, ps->type == NS_AVGPOOL, ps->k, ps->s, ps->p,
                                            has_bn ? &bn : NULL, &Y, &P, &G, e);
                if (rc == DH_EUNSUPPORTED && X.fmt > 0) *refused = i;
                if (!rc) {
                    i = k - 1;
                    Y = G;
                    n->fused = 1;
                }
                break;
            }
            rc = dk_conv2d_forward(&X, W, B, s->s, s->p, &Y, e);
            break;
        }
        case NS_FC: {
            dk_tensor X2, Y2;
            if ((rc = rows2(&X, N, (int64_t)s->in[0] * s->in[1] * s->in[2], &X2, e))) return rc;
            if ((rc = rows2(&Y, N, s->out, &Y2, e))) return rc;
            rc = dk_fc_forward(&X2, W, B, &Y2, e);
            break;
        }
        case NS_BN:
            if (train) {
                dk_tensor *rm = &n->state[l->rm].t, *rv = &n->state[l->rv].t;
                if (N < 2 && s->in[1] * s->in[2] < 2)
                    return dh_seterr(e, DH_EINVAL,
                                     "%s: batch normalisation needs at least 2 values per channel in training",
                                     s->name);
                rc = dk_batchnorm_forward_train(&X, W, B, rm, rv, n->bn_momentum, n->bn_eps, &Y, &l->save_mean,
                                                &l->save_inv, e);
            } else {
                rc = dk_batchnorm_forward_infer(&X, W, B, &n->state[l->rm].t, &n->state[l->rv].t, n->bn_eps, &Y, e);
            }
            break;
        case NS_RELU: rc = dk_relu_forward(&X, &Y, e); break;
        case NS_GELU: rc = dk_gelu_forward(&X, &Y, e); break;
        case NS_MAXPOOL: rc = dk_maxpool_forward(&X, s->k, s->s, s->p, &Y, e); break;
        case NS_AVGPOOL: rc = dk_avgpool_forward(&X, s->k, s->s, s->p, &Y, e); break;
        case NS_GAP: {
            dk_tensor Y2;
            if ((rc = rows2(&Y, N, s->shape[0], &Y2, e))) return rc;
            rc = dk_gap_forward(&X, &Y2, e);
            break;
        }
        case NS_DROPOUT:
            if (train && s->f > 0) {
                dk_tensor M;
                if ((rc = rows4(&l->mask, N, s->shape, &M, e))) return rc;
                rc = dk_dropout_forward(&X, s->f, dh_splitmix64_at(n->seed, 1000 + i), n->step * (uint64_t)Y.n, &Y, &M,
                                        e);
            } else {
                rc = dk_copy(&Y, &X, e);
            }
            break;
        case NS_FLATTEN:
        case NS_RES: rc = Y.data == X.data ? 0 : dk_copy(&Y, &X, e); break; /* a view, but of the net's input */
        case NS_SCALE:
            if (!(rc = dk_copy(&Y, &X, e))) rc = dk_scale(&Y, s->f, e);
            break;
        case NS_END: {
            /* Y = X + (input of the res block) = X + out[match] */
            dk_tensor S;
            if ((rc = rows4(&n->L[s->match].out, N, s->shape, &S, e))) return rc;
            if (!(rc = dk_copy(&Y, &X, e))) rc = dk_axpby(1.0f, &S, 1.0f, &Y, e);
            break;
        }
        }
        if (rc) {
            dh_err_prefix(e, "%s (line %d)", s->name[0] ? s->name : ns_type_name(s->type), s->line);
            return rc;
        }
        X = Y;
    }
    if (train) n->step++;
    return rows2(&n->L[n->spec.nlayers - 1].out, N, n->zdim, z, e);
}

int net_forward_to_z(net *n, const dk_tensor *x, int train, dk_tensor *z, dh_err *e) {
    for (;;) {
        int refused = -1, rc = forward(n, x, train, !train && !n->nochain, &refused, z, e);
        if (refused < 0) return rc;
        /* that layer's fused op could not read a kept input (a shape its
         * backend declines, dk.h): its input goes in float32 NCHW from now on,
         * and the forward runs again (once per such layer at most) */
        n->L[refused].plain_in = 1;
    }
}

int net_dz(net *n, dk_tensor *dz, dh_err *e) {
    if (n->nb < 1) return dh_seterr(e, DH_EINVAL, "net_dz before a forward pass");
    return rows2(&n->L[n->spec.nlayers - 1].grad, n->nb, n->zdim, dz, e);
}

int net_backward_from_z(net *n, const dk_tensor *dz, dh_err *e) {
    int64_t N = n->nb;
    int rc;
    if (N < 1) return dh_seterr(e, DH_EINVAL, "backward before a forward pass");
    if (n->fused) return dh_seterr(e, DH_EINVAL, "backward after an inference-mode forward (it keeps no activations)");
    if (dz->n != N * n->zdim)
        return dh_seterr(e, DH_EINVAL, "dz has %lld elements, expected %lld x %d", (long long)dz->n, (long long)N,
                         n->zdim);
    int last = n->spec.nlayers - 1;
    dk_tensor G;
    if ((rc = rows4(&n->L[last].grad, N, n->spec.layers[last].shape, &G, e))) return rc;
    if (dz->data != G.data && (rc = dk_copy(&G, dz, e))) return rc;

    for (int i = last; i >= 0; i--) {
        const ns_layer *s = &n->spec.layers[i];
        net_layer *l = &n->L[i];
        dk_tensor X, Y, dY, dX;
        if (i > 0) {
            if ((rc = rows4(&n->L[i - 1].out, N, s->in, &X, e))) return rc;
            if ((rc = rows4(&n->L[i - 1].grad, N, s->in, &dX, e))) return rc;
        } else {
            X = n->xin;
            if ((rc = rows4(&n->gin, N, s->in, &dX, e))) return rc;
        }
        if ((rc = rows4(&l->out, N, s->shape, &Y, e))) return rc;
        if ((rc = rows4(&l->grad, N, s->shape, &dY, e))) return rc;
        net_param *W = l->pw >= 0 ? &n->params[l->pw] : NULL;
        net_param *B = l->pb >= 0 ? &n->params[l->pb] : NULL;
        switch (s->type) {
        case NS_CONV:
            if (!W->frozen) rc = dk_conv2d_backward_filter(&X, &dY, s->s, s->p, &W->g, e);
            if (!rc && B) rc = dk_conv2d_backward_bias(&dY, &B->g, e);
            if (!rc && i > 0) rc = dk_conv2d_backward_data(&dY, &W->w, s->s, s->p, &dX, e);
            break;
        case NS_FC: {
            dk_tensor X2, dX2, dY2;
            int64_t fin = (int64_t)s->in[0] * s->in[1] * s->in[2];
            if ((rc = rows2(&X, N, fin, &X2, e)) || (rc = rows2(&dX, N, fin, &dX2, e)) ||
                (rc = rows2(&dY, N, s->out, &dY2, e)))
                return rc;
            rc = dk_fc_backward(&X2, &W->w, &dY2, i > 0 ? &dX2 : NULL, &W->g, B ? &B->g : NULL, e);
            break;
        }
        case NS_BN:
            rc = dk_batchnorm_backward(&X, &dY, &W->w, &l->save_mean, &l->save_inv, &dX, &W->g, &B->g, e);
            break;
        case NS_RELU: rc = dk_relu_backward(&Y, &dY, &dX, e); break;
        case NS_GELU: rc = dk_gelu_backward(&X, &dY, &dX, e); break;
        case NS_MAXPOOL: rc = dk_maxpool_backward(&X, &Y, &dY, s->k, s->s, s->p, &dX, e); break;
        case NS_AVGPOOL: rc = dk_avgpool_backward(&dY, s->k, s->s, s->p, &dX, e); break;
        case NS_GAP: {
            dk_tensor dY2;
            if ((rc = rows2(&dY, N, s->shape[0], &dY2, e))) return rc;
            rc = dk_gap_backward(&dY2, &dX, e);
            break;
        }
        case NS_DROPOUT:
            if (s->f > 0) {
                dk_tensor M;
                if ((rc = rows4(&l->mask, N, s->shape, &M, e))) return rc;
                rc = dk_dropout_backward(&dY, &M, &dX, e);
            } else {
                rc = dk_copy(&dX, &dY, e);
            }
            break;
        case NS_FLATTEN:
        case NS_END: rc = dk_copy(&dX, &dY, e); break;
        case NS_SCALE:
            if (!(rc = dk_copy(&dX, &dY, e))) rc = dk_scale(&dX, s->f, e);
            break;
        case NS_RES: {
            /* out = input, used by the body and by the END's sum. */
            dk_tensor S;
            if ((rc = rows4(&n->L[s->match].grad, N, s->shape, &S, e))) return rc;
            if (!(rc = dk_copy(&dX, &dY, e))) rc = dk_axpby(1.0f, &S, 1.0f, &dX, e);
            break;
        }
        }
        if (rc) {
            dh_err_prefix(e, "%s backward (line %d)", s->name[0] ? s->name : ns_type_name(s->type), s->line);
            return rc;
        }
    }
    return DH_OK;
}

int net_head_forward(net *n, dk_tensor *logits, dh_err *e) {
    if (n->head_w < 0) return dh_seterr(e, DH_EINVAL, "the net has no classifier head");
    if (n->nb < 1) return dh_seterr(e, DH_EINVAL, "head forward before a forward pass");
    dk_tensor z;
    int rc;
    if ((rc = rows2(&n->L[n->spec.nlayers - 1].out, n->nb, n->zdim, &z, e))) return rc;
    if ((rc = rows2(&n->logits, n->nb, n->nclasses, logits, e))) return rc;
    return dk_fc_forward(&z, &n->params[n->head_w].w, &n->params[n->head_b].w, logits, e);
}

int net_grad_xent(net *n, const dk_tensor *x, const int32_t *labels, float smoothing, double *loss, int64_t *correct,
                  dh_err *e) {
    dk_tensor z, lg, dl, dz;
    int rc;
    if ((rc = net_forward_to_z(n, x, 1, &z, e))) return rc;
    if ((rc = net_head_forward(n, &lg, e))) return rc;
    if ((rc = rows2(&n->dlogits, n->nb, n->nclasses, &dl, e))) return rc;
    if ((rc = dk_softmax_xent(&lg, labels, smoothing, 1.0f, loss, correct, &dl, e))) return rc;
    if ((rc = net_dz(n, &dz, e))) return rc;
    net_param *hw = &n->params[n->head_w], *hb = &n->params[n->head_b];
    if ((rc = dk_fc_backward(&z, &hw->w, &dl, &dz, &hw->g, &hb->g, e))) return rc;
    return net_backward_from_z(n, &dz, e);
}

int net_head_xent_add(net *n, const int32_t *labels, float smoothing, float weight, double *loss, int64_t *correct,
                      dk_tensor *dz, dh_err *e) {
    dk_tensor z, lg, dl, ndz;
    int rc;
    if (n->fused) return dh_seterr(e, DH_EINVAL, "a classification term after an inference-mode forward");
    if ((rc = net_head_forward(n, &lg, e))) return rc;
    if (dz->n != n->nb * n->zdim)
        return dh_seterr(e, DH_EINVAL, "dz has %lld elements, expected %lld x %d", (long long)dz->n, (long long)n->nb,
                         n->zdim);
    if ((rc = rows2(&n->L[n->spec.nlayers - 1].out, n->nb, n->zdim, &z, e)) ||
        (rc = rows2(&n->dlogits, n->nb, n->nclasses, &dl, e)) || (rc = net_dz(n, &ndz, e)))
        return rc;
    if (ndz.data == dz->data) return dh_seterr(e, DH_EINVAL, "dz is the net's own buffer");
    if ((rc = dk_softmax_xent(&lg, labels, smoothing, weight, loss, correct, &dl, e))) return rc;
    net_param *hw = &n->params[n->head_w], *hb = &n->params[n->head_b];
    if ((rc = dk_fc_backward(&z, &hw->w, &dl, &ndz, &hw->g, &hb->g, e))) return rc;
    return dk_axpby(1.0f, &ndz, 1.0f, dz, e);
}

int net_eval_xent(net *n, const dk_tensor *x, const int32_t *labels, double *loss, int64_t *correct, dh_err *e) {
    dk_tensor z, lg;
    int rc;
    if ((rc = net_forward_to_z(n, x, 0, &z, e))) return rc;
    if ((rc = net_head_forward(n, &lg, e))) return rc;
    return dk_softmax_xent(&lg, labels, 0.0f, 1.0f, loss, correct, NULL, e);
}

int net_sgd_step(net *n, const float lr[NET_NGROUPS], float momentum, const float wd[NET_NGROUPS], int nesterov,
                 dh_err *e) {
    for (int i = 0; i < n->nparams; i++) {
        net_param *p = &n->params[i];
        int g = p->group;
        if (lr[g] == 0 || p->frozen) continue;
        int rc = dk_sgd_step(&p->w, &p->g, &p->v, lr[g] * p->lr_scale, momentum, p->decay ? wd[g] / p->lr_scale : 0.0f,
                             nesterov, e);
        if (rc) {
            dh_err_prefix(e, "%s", p->name);
            return rc;
        }
    }
    return DH_OK;
}

/* ---- models ---------------------------------------------------------------- */

static int save_tensor(dhs_model *m, const char *name, const dk_tensor *t, dh_err *e) {
    float *h = dh_malloc(e, (size_t)t->n, sizeof *h);
    if (!h) return DH_ENOMEM;
    int rc = dk_download(t, h, t->n, e);
    if (!rc && !dhs_model_add(m, name, t->ndim, t->shape, h, e)) rc = e ? e->code : DH_ENOMEM;
    free(h);
    return rc;
}

int net_to_model(const net *n, dhs_model *m, dh_err *e) {
    int rc;
    int C = n->spec.in[0];
    int64_t inshape[3] = { n->spec.in[0], n->spec.in[1], n->spec.in[2] };
    double mean[DK_MAXCHAN], std[DK_MAXCHAN];
    for (int c = 0; c < C; c++) {
        mean[c] = n->mean[c];
        std[c] = n->std[c];
    }
    if (!dhs_meta_has(m->meta, "model") && dhs_meta_set_str(m->meta, "model", "net")) goto nomem;
    if (dhs_meta_set_str(m->meta, "net", n->spec.text) || dhs_meta_set_intv(m->meta, "input", inshape, 3) ||
        dhs_meta_set_int(m->meta, "zdim", n->zdim) || dhs_meta_set_str(m->meta, "zname", n->spec.zname) ||
        dhs_meta_set_floatv(m->meta, "mean", mean, C) || dhs_meta_set_floatv(m->meta, "std", std, C))
        goto nomem;
    if (n->nclass_names > 0 &&
        dhs_meta_set_strv(m->meta, "classes", (const char *const *)n->class_names, n->nclass_names))
        goto nomem;
    for (int i = 0; i < n->nparams; i++)
        if ((rc = save_tensor(m, n->params[i].name, &n->params[i].w, e))) return rc;
    for (int i = 0; i < n->nstate; i++)
        if ((rc = save_tensor(m, n->state[i].name, &n->state[i].t, e))) return rc;
    return DH_OK;
nomem:
    return dh_seterr(e, DH_ENOMEM, "out of memory building the model metadata");
}

/* A tensor of the model that does not fit the network its specification
 * builds is bad data (DH_ESCHEMA, exit 1), never an argument error. */
static int load_tensor(const dhs_model *m, const char *name, dk_tensor *t, dh_err *e) {
    const dhs_tensor *s = dhs_model_get(m, name, t->ndim, t->shape, e); /* names the tensor and both shapes */
    if (!s) return DH_ESCHEMA;
    int rc = dk_upload(t, s->data, t->n, e);
    if (rc == DH_EINVAL) return dh_seterr(e, DH_ESCHEMA, "model tensor '%s' does not fit the network", name);
    return rc;
}

int net_from_model(const dhs_model *m, dk_device dev, int64_t cap, net **out, dh_err *e) {
    *out = NULL;
    const char *text = dhs_meta_str(m->meta, "net");
    if (!text) {
        const char *kind = dhs_meta_str(m->meta, "model");
        return dh_seterr(e, DH_ESCHEMA, "model has no network (no \"net\" in its metadata%s%s%s)",
                         kind ? "; it is a \"" : "", kind ? kind : "", kind ? "\" model" : "");
    }
    netspec spec;
    int rc = netspec_parse(text, "model:net", &spec, e);
    if (rc) return rc;
    int K = 0;
    const dhs_tensor *hw = dhs_model_find(m, "head.weight");
    if (hw) {
        if (hw->ndim != 2 || hw->shape[1] != spec.zdim || hw->shape[0] < 1 || hw->shape[0] > (1 << 20)) {
            char got[128] = "";
            for (int d = 0, o = 0; d < hw->ndim && o < (int)sizeof got; d++)
                o += snprintf(got + o, sizeof got - o, "%s%lld", d ? "x" : "", (long long)hw->shape[d]);
            int zdim = spec.zdim;
            netspec_free(&spec);
            return dh_seterr(e, DH_ESCHEMA, "model tensor 'head.weight' has shape %s, expected (classes)x%d", got,
                             zdim);
        }
        K = (int)hw->shape[0];
    }
    net *n;
    rc = net_create(&spec, K, dev, cap, &n, e);
    netspec_free(&spec);
    if (rc) return rc;
    /* normalisation */
    int C = n->spec.in[0];
    if (dhs_meta_len(m->meta, "mean") != C || dhs_meta_len(m->meta, "std") != C) {
        net_free(n);
        return dh_seterr(e, DH_ESCHEMA, "model: \"mean\"/\"std\" missing or not %d values", C);
    }
    for (int c = 0; c < C; c++) {
        double a, b;
        if (dhs_meta_float_at(m->meta, "mean", c, &a) || dhs_meta_float_at(m->meta, "std", c, &b) || !(b > 0)) {
            net_free(n);
            return dh_seterr(e, DH_ESCHEMA, "model: bad normalisation value for channel %d", c);
        }
        n->mean[c] = (float)a;
        n->std[c] = (float)b;
    }
    int nc = dhs_meta_len(m->meta, "classes");
    if (nc > 0) {
        const char **names = dh_calloc(e, nc, sizeof *names);
        if (!names) {
            net_free(n);
            return DH_ENOMEM;
        }
        for (int i = 0; i < nc; i++) names[i] = dhs_meta_str_at(m->meta, "classes", i);
        rc = net_set_classes(n, names, nc, e);
        free(names);
        if (rc) {
            net_free(n);
            return rc;
        }
    }
    for (int i = 0; i < n->nparams; i++)
        if ((rc = load_tensor(m, n->params[i].name, &n->params[i].w, e))) {
            if (rc != DH_ESCHEMA) dh_err_prefix(e, "model"); /* "model tensor ..." says so */
            net_free(n);
            return rc;
        }
    for (int i = 0; i < n->nstate; i++)
        if ((rc = load_tensor(m, n->state[i].name, &n->state[i].t, e))) {
            if (rc != DH_ESCHEMA) dh_err_prefix(e, "model"); /* "model tensor ..." says so */
            net_free(n);
            return rc;
        }
    *out = n;
    return DH_OK;
}
