/* net_recipe.c — the pieces of the fast CIFAR-10 recipe that live on the
 * network (net.h): patch-whitening start of the first layer, partial
 * identity start of the convolutions, lookahead (an exponential moving
 * average of the weights copied back into the net). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "net.h"

/* ---- a symmetric eigen-decomposition (cyclic Jacobi) --------------------------------------------- */
int net_sym_eig(const double *A, int d, double *w, double *V, dh_err *e) {
    if (d < 1 || d > 1024) return dh_seterr(e, DH_EINVAL, "eigen-decomposition of a %dx%d matrix", d, d);
    double *a = dh_malloc(e, (size_t)d * d, sizeof *a), *v = dh_malloc(e, (size_t)d * d, sizeof *v);
    int *ord = dh_malloc(e, (size_t)d, sizeof *ord);
    if (!a || !v || !ord) {
        free(a);
        free(v);
        free(ord);
        return DH_ENOMEM;
    }
    memcpy(a, A, (size_t)d * d * sizeof *a);
    for (int i = 0; i < d * d; i++) v[i] = (i % (d + 1)) == 0;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, tot = 0;
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) {
                tot += a[i * d + j] * a[i * d + j];
                if (i != j) off += a[i * d + j] * a[i * d + j];
            }
        if (off <= 1e-30 * tot || off == 0) break;
        for (int p = 0; p < d - 1; p++)
            for (int q = p + 1; q < d; q++) {
                double apq = a[p * d + q];
                if (apq == 0) continue;
                /* rotation that zeroes a[p][q] (Golub & Van Loan 8.4.2) */
                double tau = (a[q * d + q] - a[p * d + p]) / (2 * apq);
                double t = (tau >= 0 ? 1 : -1) / (fabs(tau) + sqrt(1 + tau * tau));
                double c = 1 / sqrt(1 + t * t), s = t * c;
                for (int k = 0; k < d; k++) { /* columns p, q */
                    double akp = a[k * d + p], akq = a[k * d + q];
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for (int k = 0; k < d; k++) { /* rows p, q */
                    double apk = a[p * d + k], aqk = a[q * d + k];
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < d; k++) { /* eigenvectors: columns of v */
                    double vkp = v[k * d + p], vkq = v[k * d + q];
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
    }
    /* descending order (a stable selection: ties keep their index order) */
    for (int i = 0; i < d; i++) ord[i] = i;
    for (int i = 0; i < d; i++) {
        int best = i;
        for (int j = i + 1; j < d; j++)
            if (a[ord[j] * d + ord[j]] > a[ord[best] * d + ord[best]]) best = j;
        int t = ord[i];
        ord[i] = ord[best];
        ord[best] = t;
    }
    for (int i = 0; i < d; i++) {
        int k = ord[i];
        w[i] = a[k * d + k];
        /* sign: the largest component positive, so the result does not
         * depend on the rotation order's accidents */
        int big = 0;
        for (int j = 1; j < d; j++)
            if (fabs(v[j * d + k]) > fabs(v[big * d + k])) big = j;
        double sg = v[big * d + k] < 0 ? -1 : 1;
        for (int j = 0; j < d; j++) V[i * d + j] = sg * v[j * d + k];
    }
    free(a);
    free(v);
    free(ord);
    return DH_OK;
}

static net_param *find_param(net *n, const char *layer, const char *what) {
    char want[sizeof n->params[0].name];
    snprintf(want, sizeof want, "%s.%s", layer, what);
    for (int i = 0; i < n->nparams; i++)
        if (!strcmp(n->params[i].name, want)) return &n->params[i];
    return NULL;
}

/* ---- patch whitening ------------------------------------------------------------------------------ */
int net_whiten_init(net *n, const float *x, int64_t N, double eps, dh_err *e) {
    const ns_layer *s = &n->spec.layers[0];
    if (n->spec.nlayers < 1 || s->type != NS_CONV || !s->whiten) return DH_OK;
    if (N < 1 || !x) return dh_seterr(e, DH_EINVAL, "patch whitening needs at least one image");
    if (!(eps > 0)) return dh_seterr(e, DH_EINVAL, "patch whitening: eps %g must be positive", eps);
    int C = s->in[0], H = s->in[1], W = s->in[2], K = s->k, st = s->s, d = C * K * K, m = s->out / 2;
    int OH = (H - K) / st + 1, OW = (W - K) / st + 1; /* patches inside the image (no padding) */
    if (OH < 1 || OW < 1) return dh_seterr(e, DH_EINVAL, "patch whitening: no %dx%d patch in %dx%d images", K, K, H, W);
    double *S = dh_calloc(e, (size_t)d * d, sizeof *S), *w = dh_malloc(e, (size_t)d, sizeof *w),
           *V = dh_malloc(e, (size_t)d * d, sizeof *V), *p = dh_malloc(e, (size_t)d, sizeof *p);
    float *wt = dh_calloc(e, (size_t)s->out * d, sizeof *wt);
    int rc = DH_ENOMEM;
    if (!S || !w || !V || !p || !wt) goto out;
    /* Sigma: the mean outer product of the patches, summed in a fixed order */
    for (int64_t i = 0; i < N; i++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                int j = 0;
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < K; ky++)
                        for (int kx = 0; kx < K; kx++) p[j++] = x[((i * C + c) * H + oy * st + ky) * W + ox * st + kx];
                for (int a = 0; a < d; a++)
                    for (int b = a; b < d; b++) S[a * d + b] += p[a] * p[b];
            }
    double cnt = (double)N * OH * OW;
    for (int a = 0; a < d; a++)
        for (int b = a; b < d; b++) S[b * d + a] = S[a * d + b] /= cnt;
    if ((rc = net_sym_eig(S, d, w, V, e))) goto out;
    /* weight layout (OUT, C, K, K) matches the patch order above */
    for (int i = 0; i < m; i++) {
        double sc = 1 / sqrt((w[i] > 0 ? w[i] : 0) + eps);
        for (int j = 0; j < d; j++) {
            wt[(size_t)i * d + j] = (float)(V[i * d + j] * sc);
            wt[(size_t)(m + i) * d + j] = (float)(-V[i * d + j] * sc);
        }
    }
    net_param *pw = find_param(n, s->name, "weight"), *pb = find_param(n, s->name, "bias");
    rc = pw ? dk_upload(&pw->w, wt, pw->w.n, e) : dh_seterr(e, DH_EINVAL, "no weight tensor");
    if (!rc && pb) rc = dk_zero(&pb->w, e);
out:
    free(S);
    free(w);
    free(V);
    free(p);
    free(wt);
    if (rc) dh_err_prefix(e, "patch whitening");
    return rc;
}

/* ---- partial identity start ------------------------------------------------------------------------ */
int net_init_dirac(net *n, dh_err *e) {
    for (int i = 0; i < n->spec.nlayers; i++) {
        const ns_layer *s = &n->spec.layers[i];
        if (s->type != NS_CONV || s->whiten || s->out < s->in[0] || s->k % 2 == 0) continue;
        net_param *pw = find_param(n, s->name, "weight");
        if (!pw) return dh_seterr(e, DH_EINVAL, "%s: no weight tensor", s->name);
        int C = s->in[0], K = s->k;
        size_t per = (size_t)C * K * K;
        float *h = dh_malloc(e, (size_t)pw->w.n, sizeof *h);
        if (!h) return DH_ENOMEM;
        int rc = dk_download(&pw->w, h, pw->w.n, e);
        if (!rc) {
            memset(h, 0, (size_t)C * per * sizeof *h);
            for (int o = 0; o < C; o++) h[o * per + (size_t)o * K * K + (K / 2) * K + K / 2] = 1.0f;
            rc = dk_upload(&pw->w, h, pw->w.n, e);
        }
        free(h);
        if (rc) {
            dh_err_prefix(e, "%s", s->name);
            return rc;
        }
    }
    return DH_OK;
}

/* ---- lookahead ------------------------------------------------------------------------------------- */
void net_ema_free(net_ema *a) {
    if (!a) return;
    for (int i = 0; i < a->np; i++) dk_tensor_free(&a->p[i]);
    for (int i = 0; i < a->ns; i++) dk_tensor_free(&a->s[i]);
    free(a->p);
    free(a->s);
    memset(a, 0, sizeof *a);
}

int net_ema_init(net_ema *a, const net *n, dh_err *e) {
    memset(a, 0, sizeof *a);
    a->p = dh_calloc(e, (size_t)n->nparams + 1, sizeof *a->p);
    a->s = dh_calloc(e, (size_t)n->nstate + 1, sizeof *a->s);
    if (!a->p || !a->s) {
        net_ema_free(a);
        return DH_ENOMEM;
    }
    int rc = DH_OK;
    for (int i = 0; i < n->nparams && !rc; i++, a->np++) {
        const dk_tensor *w = &n->params[i].w;
        if (!(rc = dk_tensor_alloc(&a->p[i], n->dev, w->ndim, w->shape, e))) rc = dk_copy(&a->p[i], w, e);
    }
    for (int i = 0; i < n->nstate && !rc; i++, a->ns++) {
        const dk_tensor *t = &n->state[i].t;
        if (!(rc = dk_tensor_alloc(&a->s[i], n->dev, t->ndim, t->shape, e))) rc = dk_copy(&a->s[i], t, e);
    }
    if (rc) net_ema_free(a);
    return rc;
}

int net_ema_lookahead(net_ema *a, net *n, float decay, dh_err *e) {
    if (a->np != n->nparams || a->ns != n->nstate)
        return dh_seterr(e, DH_EINVAL, "lookahead: the average was made for another net");
    if (!(decay >= 0 && decay <= 1)) return dh_seterr(e, DH_EINVAL, "lookahead: decay %g outside [0, 1]", decay);
    int rc = DH_OK;
    for (int i = 0; i < a->np + a->ns && !rc; i++) {
        dk_tensor *avg = i < a->np ? &a->p[i] : &a->s[i - a->np];
        dk_tensor *w = i < a->np ? &n->params[i].w : &n->state[i - a->np].t;
        if (decay < 1) rc = dk_axpby(1.0f - decay, w, decay, avg, e);
        if (!rc) rc = dk_copy(w, avg, e);
    }
    return rc;
}
