/* hashfn.c — hash models: options, meta, binding, projection, packing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include "hashfn.h"

void dh_hash_opts_init(dh_hash_opts *o) {
    memset(o, 0, sizeof *o);
    o->seed = 1;
}

const char *dh_hash_param(const dh_hash_opts *o, const char *name) {
    size_t n = strlen(name);
    const char *found = NULL;
    for (int i = 0; o && i < o->nparams; i++) {
        const char *p = o->param[i];
        if (p && strncmp(p, name, n) == 0 && p[n] == '=') {
            found = p + n + 1; /* last wins */
            if (o->param_used) *o->param_used |= 1u << i;
        }
    }
    return found;
}

int dh_hash_param_double(const dh_hash_opts *o, const char *name, double def, double *out, dh_err *e) {
    const char *v = dh_hash_param(o, name);
    if (!v) {
        *out = def;
        return 0;
    }
    if (dh_parse_double(v, -1e300, 1e300, out) != 0) {
        dh_seterr(e, DH_EINVAL, "parameter %s: not a number: '%s'", name, v);
        return -1;
    }
    return 0;
}

int dh_hash_param_int(const dh_hash_opts *o, const char *name, int64_t def, int64_t *out, dh_err *e) {
    const char *v = dh_hash_param(o, name);
    if (!v) {
        *out = def;
        return 0;
    }
    if (dh_parse_i64(v, INT64_MIN, INT64_MAX, out) != 0) {
        dh_seterr(e, DH_EINVAL, "parameter %s: not an integer: '%s'", name, v);
        return -1;
    }
    return 0;
}

int dh_hash_model_begin(dhs_model *out, const char *method, const char *transform, int K, int D, dh_err *e) {
    if (dhs_meta_set_str(out->meta, "model", "hash") || dhs_meta_set_str(out->meta, "method", method) ||
        dhs_meta_set_int(out->meta, "bits", K) || dhs_meta_set_int(out->meta, "dim", D) ||
        dhs_meta_set_str(out->meta, "transform", transform))
        return dh_seterr(e, DH_ENOMEM, "out of memory");
    return DH_OK;
}

int dh_hash_model_set_linear(dhs_model *out, const char *prefix, const float *W, const float *b, const float *mean,
                             int K, int D, dh_err *e) {
    char name[80];
    int64_t sh[2] = { K, D };
    snprintf(name, sizeof name, "%sW", prefix ? prefix : "");
    if (!dhs_model_add(out, name, 2, sh, W, e)) return e ? e->code : DH_ENOMEM;
    if (b) {
        int64_t s1 = K;
        snprintf(name, sizeof name, "%sb", prefix ? prefix : "");
        if (!dhs_model_add(out, name, 1, &s1, b, e)) return e ? e->code : DH_ENOMEM;
    }
    if (mean) {
        int64_t s1 = D;
        snprintf(name, sizeof name, "%smean", prefix ? prefix : "");
        if (!dhs_model_add(out, name, 1, &s1, mean, e)) return e ? e->code : DH_ENOMEM;
    }
    return DH_OK;
}

static int meta_int_either(const dhs_meta *m, const char *k1, const char *k2, int64_t *v) {
    if (k1 && dhs_meta_int(m, k1, v) == 0) return 0;
    if (k2 && dhs_meta_int(m, k2, v) == 0) return 0;
    return -1;
}

int dh_hashfn_bind(dh_hashfn *h, const dhs_model *m, const char *prefix, dh_err *e) {
    memset(h, 0, sizeof *h);
    if (!prefix) prefix = "";
    if (strlen(prefix) >= sizeof h->prefix) return dh_seterr(e, DH_EINVAL, "prefix too long");
    strcpy(h->prefix, prefix);
    h->model = m;
    int pre = prefix[0] != 0;
    const char *kind = dhs_meta_str(m->meta, "model");
    if (!kind) return dh_seterr(e, DH_ESCHEMA, "not a model: meta \"model\" missing");
    if (!pre && strcmp(kind, "hash") != 0)
        return dh_seterr(e, DH_ESCHEMA, "model is a '%s' model, not a hash model", kind);
    const char *method = dhs_meta_str(m->meta, pre ? "hash_method" : "method");
    const char *transform = dhs_meta_str(m->meta, pre ? "hash_transform" : "transform");
    snprintf(h->method, sizeof h->method, "%s", method ? method : "unknown");
    snprintf(h->transform, sizeof h->transform, "%s", transform ? transform : "linear");

    char name[80];
    snprintf(name, sizeof name, "%sW", prefix);
    dhs_tensor *W = dhs_model_find(m, name);
    int64_t K = -1, D = -1;
    if (meta_int_either(m->meta, pre ? "hash_bits" : "bits", NULL, &K) != 0) {
        if (W && W->ndim == 2) K = W->shape[0];
    }
    if (meta_int_either(m->meta, pre ? "hash_dim" : "dim", NULL, &D) != 0) {
        if (W && W->ndim == 2) D = W->shape[1];
    }
    if (K < DH_HASH_MIN_BITS || K > DH_HASH_MAX_BITS)
        return dh_seterr(e, DH_ESCHEMA, "hash model: bits %lld out of range %d..%d", (long long)K, DH_HASH_MIN_BITS,
                         DH_HASH_MAX_BITS);
    if (D < 1 || D > (1 << 24)) return dh_seterr(e, DH_ESCHEMA, "hash model: bad feature dimension %lld", (long long)D);
    h->K = (int)K;
    h->D = (int)D;

    if (strcmp(h->transform, "linear") == 0) {
        int64_t sh[2] = { K, D };
        W = dhs_model_get(m, name, 2, sh, e);
        if (!W) return DH_ESCHEMA;
        h->W = W->data;
        snprintf(name, sizeof name, "%sb", prefix);
        if (dhs_model_find(m, name)) {
            dhs_tensor *b = dhs_model_get(m, name, 1, &K, e);
            if (!b) return DH_ESCHEMA;
            h->b = b->data;
        }
        snprintf(name, sizeof name, "%smean", prefix);
        if (dhs_model_find(m, name)) {
            dhs_tensor *mu = dhs_model_get(m, name, 1, &D, e);
            if (!mu) return DH_ESCHEMA;
            h->mean = mu->data;
        }
        return DH_OK;
    }
    h->project = dh_hash_transform_project(h->transform);
    if (!h->project)
        return dh_seterr(e, DH_EUNSUPPORTED, "hash model: unknown transform '%s' (method %s)", h->transform, h->method);
    return DH_OK;
}

void dh_linear_project(const float *W, const float *b, const float *mean, const float *z, int64_t n, int D, int K,
                       float *u) {
    /* u (n,K) = z (n,D) * W^T (D,K) */
    if (n <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, K, D, 1.0f, z, D, W, D, 0.0f, u, K);
    if (mean || b) {
        /* offset_k = b_k - W_k . mean */
        float off[DH_HASH_MAX_BITS];
        float *o = K <= DH_HASH_MAX_BITS ? off : malloc(sizeof(float) * (size_t)K);
        if (!o) return; /* K is bounded by the callers; cannot happen */
        for (int k = 0; k < K; k++) {
            double s = b ? b[k] : 0.0;
            if (mean)
                for (int d = 0; d < D; d++) s -= (double)W[(size_t)k * D + d] * mean[d];
            o[k] = (float)s;
        }
        for (int64_t i = 0; i < n; i++)
            for (int k = 0; k < K; k++) u[i * K + k] += o[k];
        if (o != off) free(o);
    }
}

int dh_hashfn_project(const dh_hashfn *h, const float *z, int64_t n, float *u, dh_err *e) {
    if (h->project) return h->project(h->model, h->prefix, z, n, h->D, h->K, u, e);
    dh_linear_project(h->W, h->b, h->mean, z, n, h->D, h->K, u);
    return DH_OK;
}

void dh_pack_signs(const float *u, int64_t n, int K, uint8_t *codes) {
    int nb = (K + 7) / 8;
    for (int64_t i = 0; i < n; i++) {
        uint8_t *c = codes + i * nb;
        memset(c, 0, (size_t)nb);
        for (int k = 0; k < K; k++)
            if (u[i * K + k] > 0.0f) c[k >> 3] |= (uint8_t)(1u << (k & 7));
    }
}

int dh_hashfn_encode(const dh_hashfn *h, const float *z, int64_t n, uint8_t *codes, dh_err *e) {
    float *u = dh_malloc(e, (size_t)(n > 0 ? n : 1), sizeof(float) * (size_t)h->K);
    if (!u) return DH_ENOMEM;
    int rc = dh_hashfn_project(h, z, n, u, e);
    if (rc == DH_OK) dh_pack_signs(u, n, h->K, codes);
    free(u);
    return rc;
}
