/* hash_linalg.c — helpers shared by the baseline hashing methods (see
 * hash_linalg.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include <lapacke.h>
#include "hash_linalg.h"
#include "dh_rng.h"

/* ---- random numbers ------------------------------------------------------ */
void hl_rng_seed(hl_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = dh_splitmix64(&x);
    r->have_spare = 0;
    r->spare = 0;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t hl_rng_next(hl_rng *r) {
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

double hl_rng_uniform(hl_rng *r) { return (hl_rng_next(r) >> 11) * 0x1.0p-53; }

double hl_rng_normal(hl_rng *r) {
    if (r->have_spare) {
        r->have_spare = 0;
        return r->spare;
    }
    double u, v, s;
    do {
        u = 2 * hl_rng_uniform(r) - 1;
        v = 2 * hl_rng_uniform(r) - 1;
        s = u * u + v * v;
    } while (s >= 1 || s == 0);
    double f = sqrt(-2 * log(s) / s);
    r->spare = v * f;
    r->have_spare = 1;
    return u * f;
}

uint64_t hl_rng_below(hl_rng *r, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
    do x = hl_rng_next(r);
    while (x >= lim);
    return x % n;
}

int hl_sample(hl_rng *r, int64_t n, int64_t k, int64_t *idx, dh_err *e) {
    if (k > n || k < 0) return dh_seterr(e, DH_EINVAL, "cannot sample %lld of %lld", (long long)k, (long long)n);
    int64_t *p = dh_malloc(e, (size_t)n, sizeof *p);
    if (!p) return e ? e->code : DH_ENOMEM;
    for (int64_t i = 0; i < n; i++) p[i] = i;
    for (int64_t i = 0; i < k; i++) {
        int64_t j = i + (int64_t)hl_rng_below(r, (uint64_t)(n - i));
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
        idx[i] = p[i];
    }
    free(p);
    return DH_OK;
}

void hl_gather_rows(const float *x, int D, const int64_t *idx, int64_t k, float *out) {
    for (int64_t i = 0; i < k; i++) memcpy(out + i * D, x + idx[i] * D, (size_t)D * sizeof *out);
}

/* ---- labels ---------------------------------------------------------------- */
static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int hl_label_classes(const int32_t *labels, int64_t N, int32_t *cls, dh_err *e) {
    int32_t *s = dh_malloc(e, (size_t)(N ? N : 1), sizeof *s);
    if (!s) return -1;
    memcpy(s, labels, (size_t)N * sizeof *s);
    qsort(s, (size_t)N, sizeof *s, cmp_i32);
    int64_t C = 0;
    for (int64_t i = 0; i < N; i++)
        if (i == 0 || s[i] != s[C - 1]) s[C++] = s[i];
    for (int64_t i = 0; i < N; i++) {
        int32_t *f = bsearch(&labels[i], s, (size_t)C, sizeof *s, cmp_i32);
        cls[i] = (int32_t)(f - s);
    }
    free(s);
    if (C > INT32_MAX / 2) {
        dh_seterr(e, DH_ELIMIT, "too many classes");
        return -1;
    }
    return (int)C;
}

/* ---- statistics -------------------------------------------------------------- */
void hl_mean(const float *x, int64_t N, int D, double *mean) {
    for (int d = 0; d < D; d++) mean[d] = 0;
    for (int64_t i = 0; i < N; i++)
        for (int d = 0; d < D; d++) mean[d] += x[i * D + d];
    for (int d = 0; d < D; d++) mean[d] /= (double)(N > 0 ? N : 1);
}

int hl_scatter(const float *x, int64_t N, int D, const double *centres, const int32_t *cidx, const double *weight,
               double *C, dh_err *e) {
    const int64_t BS = 1024;
    double *buf = dh_malloc(e, (size_t)BS * D, sizeof *buf);
    if (!buf) return e ? e->code : DH_ENOMEM;
    memset(C, 0, (size_t)D * D * sizeof *C);
    for (int64_t i0 = 0; i0 < N; i0 += BS) {
        int64_t nb = N - i0 < BS ? N - i0 : BS;
        for (int64_t i = 0; i < nb; i++) {
            const double *c = centres + (cidx ? (int64_t)cidx[i0 + i] * D : 0);
            double w = weight ? sqrt(weight[i0 + i]) : 1.0;
            for (int d = 0; d < D; d++) buf[i * D + d] = w * ((double)x[(i0 + i) * D + d] - c[d]);
        }
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, D, (int)nb, 1.0, buf, D, 1.0, C, D);
    }
    free(buf);
    double s = 1.0 / (double)(N > 0 ? N : 1);
    for (int a = 0; a < D; a++)
        for (int b = a; b < D; b++) {
            C[a * D + b] *= s;
            C[b * D + a] = C[a * D + b];
        }
    return DH_OK;
}

int hl_sym_eig(int n, double *A, double *w, double *Z, dh_err *e) {
    lapack_int m = 0;
    lapack_int *isuppz = dh_malloc(e, 2 * (size_t)n, sizeof *isuppz);
    if (!isuppz) return e ? e->code : DH_ENOMEM;
    lapack_int info = LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'V', 'A', 'U', n, A, n, 0, 0, 0, 0, 0.0, &m, w, Z, n, isuppz);
    free(isuppz);
    if (info != 0 || m != n) return dh_seterr(e, DH_EFORMAT, "eigendecomposition failed (dsyevr info %d)", (int)info);
    return DH_OK;
}

int hl_svd(int m, int n, double *A, double *U, double *s, double *Vt, dh_err *e) {
    int k = m < n ? m : n;
    double *superb = dh_malloc(e, (size_t)(k > 1 ? k : 2), sizeof *superb);
    if (!superb) return e ? e->code : DH_ENOMEM;
    lapack_int info = LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'A', 'A', m, n, A, n, s, U, m, Vt, n, superb);
    free(superb);
    if (info != 0) return dh_seterr(e, DH_EFORMAT, "SVD failed (dgesvd info %d)", (int)info);
    return DH_OK;
}

static void fix_sign(double *v, int n, int stride) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (fabs(v[i * stride]) > fabs(v[best * stride])) best = i;
    if (v[best * stride] < 0)
        for (int i = 0; i < n; i++) v[i * stride] = -v[i * stride];
}

int hl_pca(const float *x, int64_t N, int D, int k, double *mean, double *P, double *ev, dh_err *e) {
    int rc;
    double *C = dh_malloc(e, (size_t)D * D, sizeof *C), *w = dh_malloc(e, (size_t)D, sizeof *w),
           *Z = dh_malloc(e, (size_t)D * D, sizeof *Z);
    if (!C || !w || !Z) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    hl_mean(x, N, D, mean);
    if ((rc = hl_scatter(x, N, D, mean, NULL, NULL, C, e))) goto out;
    if ((rc = hl_sym_eig(D, C, w, Z, e))) goto out;
    for (int j = 0; j < k; j++) {
        int col = D - 1 - j; /* descending */
        fix_sign(Z + col, D, D);
        for (int d = 0; d < D; d++) P[(int64_t)j * D + d] = Z[(int64_t)d * D + col];
        if (ev) ev[j] = w[col];
    }
    rc = DH_OK;
out:
    free(C);
    free(w);
    free(Z);
    return rc;
}

int hl_gen_eig(int n, double *A, double *B, double ridge, int k, int largest, double *V, double *l, dh_err *e) {
    int rc;
    double *w = dh_malloc(e, (size_t)n, sizeof *w), *Z = dh_malloc(e, (size_t)n * n, sizeof *Z),
           *S = dh_malloc(e, (size_t)n * n, sizeof *S), *T = dh_malloc(e, (size_t)n * n, sizeof *T);
    if (!w || !Z || !S || !T) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    double tr = 0;
    for (int i = 0; i < n; i++) tr += B[(int64_t)i * n + i];
    double reg = ridge * (tr > 0 ? tr / n : 1.0);
    for (int i = 0; i < n; i++) B[(int64_t)i * n + i] += reg;
    if ((rc = hl_sym_eig(n, B, w, Z, e))) goto out;
    /* S = Z diag(1/sqrt(w)): B^{-1/2} up to rotation; tiny eigenvalues floored */
    double wmax = w[n - 1] > 0 ? w[n - 1] : 1.0;
    for (int j = 0; j < n; j++) {
        double wj = w[j] > 1e-12 * wmax ? w[j] : 1e-12 * wmax;
        double f = 1.0 / sqrt(wj);
        for (int i = 0; i < n; i++) S[(int64_t)i * n + j] = Z[(int64_t)i * n + j] * f;
    }
    /* M = S^T A S */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, A, n, S, n, 0.0, T, n);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, n, 1.0, S, n, T, n, 0.0, A, n);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            double m = 0.5 * (A[(int64_t)i * n + j] + A[(int64_t)j * n + i]);
            A[(int64_t)i * n + j] = A[(int64_t)j * n + i] = m;
        }
    if ((rc = hl_sym_eig(n, A, w, Z, e))) goto out;
    for (int j = 0; j < k; j++) {
        int col = largest ? n - 1 - j : j;
        fix_sign(Z + col, n, n);
        if (l) l[j] = w[col];
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int t = 0; t < n; t++) s += S[(int64_t)i * n + t] * Z[(int64_t)t * n + col];
            V[(int64_t)i * k + j] = s;
        }
    }
    rc = DH_OK;
out:
    free(w);
    free(Z);
    free(S);
    free(T);
    return rc;
}

int hl_random_rotation(hl_rng *r, int K, double *R, dh_err *e) {
    double *G = dh_malloc(e, (size_t)K * K, sizeof *G), *U = dh_malloc(e, (size_t)K * K, sizeof *U),
           *s = dh_malloc(e, (size_t)K, sizeof *s);
    int rc;
    if (!G || !U || !s) {
        rc = e ? e->code : DH_ENOMEM;
        goto out;
    }
    for (int i = 0; i < K * K; i++) G[i] = hl_rng_normal(r);
    if ((rc = hl_svd(K, K, G, U, s, R, e))) goto out;
    memcpy(R, U, (size_t)K * K * sizeof *R); /* U is orthogonal */
out:
    free(G);
    free(U);
    free(s);
    return rc;
}

/* ---- RBF features ------------------------------------------------------------ */
void hl_sqdist(const float *z, int64_t n, int D, const float *a, int M, float *d2) {
    /* |z|^2 + |a|^2 - 2 z.a, the cross term with sgemm */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, M, D, -2.0f, z, D, a, D, 0.0f, d2, M);
    float *an = malloc((size_t)M * sizeof *an);
    for (int j = 0; j < M; j++) {
        double s = 0;
        for (int d = 0; d < D; d++) s += (double)a[(int64_t)j * D + d] * a[(int64_t)j * D + d];
        if (an) an[j] = (float)s;
    }
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int d = 0; d < D; d++) s += (double)z[i * D + d] * z[i * D + d];
        for (int j = 0; j < M; j++) {
            float v;
            if (an)
                v = d2[i * M + j] + (float)s + an[j];
            else {
                double t = 0;
                for (int d = 0; d < D; d++) {
                    double q = z[i * D + d] - a[(int64_t)j * D + d];
                    t += q * q;
                }
                v = (float)t;
            }
            d2[i * M + j] = v > 0 ? v : 0;
        }
    }
    free(an);
}

void hl_rbf(const float *z, int64_t n, int D, const float *a, int M, double gamma, const float *kmean, float *k) {
    hl_sqdist(z, n, D, a, M, k);
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < M; j++) {
            float v = (float)exp(-gamma * k[i * M + j]);
            k[i * M + j] = kmean ? v - kmean[j] : v;
        }
}

double hl_rbf_gamma(const float *z, int64_t n, int D, const float *a, int M, double sigma) {
    if (sigma > 0) return 1.0 / (2 * sigma * sigma);
    const int64_t BS = 512;
    float *d2 = malloc((size_t)BS * M * sizeof *d2);
    double s = 0;
    if (!d2) return 1.0;
    for (int64_t i0 = 0; i0 < n; i0 += BS) {
        int64_t nb = n - i0 < BS ? n - i0 : BS;
        hl_sqdist(z + i0 * D, nb, D, a, M, d2);
        for (int64_t i = 0; i < nb * M; i++) s += d2[i];
    }
    free(d2);
    double m = s / ((double)n * M);
    return m > 0 ? 1.0 / (2 * m) : 1.0;
}

int hl_pick_anchors(hl_rng *r, const float *x, int64_t N, int D, int M, float *anchors, dh_err *e) {
    int64_t *idx = dh_malloc(e, (size_t)M, sizeof *idx);
    if (!idx) return e ? e->code : DH_ENOMEM;
    int rc = hl_sample(r, N, M, idx, e);
    if (!rc) hl_gather_rows(x, D, idx, M, anchors);
    free(idx);
    return rc;
}

static int add_tensor(dhs_model *out, const char *name, int ndim, int64_t d0, int64_t d1, const float *data,
                      dh_err *e) {
    int64_t shape[2] = { d0, d1 };
    return dhs_model_add(out, name, ndim, shape, data, e) ? DH_OK : (e && e->code ? e->code : DH_ENOMEM);
}

int hl_model_set_rbf(dhs_model *out, const float *anchors, int M, int D, double gamma, const float *kmean,
                     const float *P, const float *b, int K, dh_err *e) {
    float g = (float)gamma;
    int rc;
    if (!isfinite(g) || !(g > 0)) /* a model dh-encode cannot use (bre --sigma 1e-300) */
        return dh_seterr(e, DH_EINVAL, "kernel width: gamma %g is not a positive float (--sigma too small?)", gamma);
    if ((rc = add_tensor(out, "anchors", 2, M, D, anchors, e))) return rc;
    if ((rc = add_tensor(out, "gamma", 1, 1, 0, &g, e))) return rc;
    if ((rc = add_tensor(out, "kmean", 1, M, 0, kmean, e))) return rc;
    if ((rc = add_tensor(out, "P", 2, K, M, P, e))) return rc;
    if ((rc = add_tensor(out, "b", 1, K, 0, b, e))) return rc;
    return dhs_meta_set_int(out->meta, "anchors", M) ? dh_seterr(e, DH_ENOMEM, "out of memory") : DH_OK;
}

static const dhs_tensor *get_t(const dhs_model *m, const char *prefix, const char *name, int ndim, const int64_t *shape,
                               dh_err *e) {
    char full[128];
    snprintf(full, sizeof full, "%s%s", prefix ? prefix : "", name);
    return dhs_model_get(m, full, ndim, shape, e);
}

int hl_rbf_project(const dhs_model *m, const char *prefix, const float *z, int64_t n, int D, int K, float *u,
                   dh_err *e) {
    char full[128];
    snprintf(full, sizeof full, "%sanchors", prefix ? prefix : "");
    const dhs_tensor *ta = dhs_model_find(m, full);
    if (!ta || ta->ndim != 2 || ta->shape[1] != D || ta->shape[0] < 1 || ta->shape[0] > (1 << 20))
        return dh_seterr(e, DH_ESCHEMA, "rbf hash model: tensor %s missing or not (M, %d)", full, D);
    int M = (int)ta->shape[0];
    int64_t s1[1] = { 1 }, sM[1] = { M }, sKM[2] = { K, M }, sK[1] = { K };
    const dhs_tensor *tg = get_t(m, prefix, "gamma", 1, s1, e);
    if (!tg) return e ? e->code : DH_ESCHEMA;
    const dhs_tensor *tk = get_t(m, prefix, "kmean", 1, sM, e);
    if (!tk) return e ? e->code : DH_ESCHEMA;
    const dhs_tensor *tp = get_t(m, prefix, "P", 2, sKM, e);
    if (!tp) return e ? e->code : DH_ESCHEMA;
    const dhs_tensor *tb = get_t(m, prefix, "b", 1, sK, e);
    if (!tb) return e ? e->code : DH_ESCHEMA;
    if (!(tg->data[0] > 0) || !isfinite(tg->data[0]))
        return dh_seterr(e, DH_EFORMAT, "rbf hash model: gamma %g is not a positive number", tg->data[0]);
    const int64_t BS = 256;
    float *k = dh_malloc(e, (size_t)(n < BS ? (n ? n : 1) : BS) * M, sizeof *k);
    if (!k) return e ? e->code : DH_ENOMEM;
    for (int64_t i0 = 0; i0 < n; i0 += BS) {
        int64_t nb = n - i0 < BS ? n - i0 : BS;
        hl_rbf(z + i0 * D, nb, D, ta->data, M, tg->data[0], tk->data, k);
        for (int64_t i = 0; i < nb; i++)
            for (int j = 0; j < K; j++) u[(i0 + i) * K + j] = tb->data[j];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, K, M, 1.0f, k, M, tp->data, M, 1.0f, u + i0 * K,
                    K);
    }
    free(k);
    return DH_OK;
}

/* ---- BLAS threading ---------------------------------------------------------- */
int hl_blas_single(void) {
#ifdef OPENBLAS_VERSION
    int n = openblas_get_num_threads();
    openblas_set_num_threads(1);
    return n;
#else
    return 1;
#endif
}

void hl_blas_restore(int nthreads) {
#ifdef OPENBLAS_VERSION
    if (nthreads > 0) openblas_set_num_threads(nthreads);
#else
    (void)nthreads;
#endif
}

/* ---- checks and options -------------------------------------------------------- */
int hl_check_input(const char *method, int64_t N, int D, int K, const int32_t *labels, int supervised, int64_t min_n,
                   dh_err *e) {
    if (D < 1) return dh_seterr(e, DH_ESCHEMA, "the features have no dimensions");
    if (K < 1 || K > DH_HASH_MAX_BITS)
        return dh_seterr(e, DH_EINVAL, "%d bits is out of range 1..%d", K, DH_HASH_MAX_BITS);
    if (supervised && !labels)
        return dh_seterr(e, DH_ESCHEMA, "a supervised method needs labels; the features have none");
    if (N < min_n)
        return dh_seterr(e, DH_ESCHEMA, "too few samples (%lld) for %d bits; need at least %lld", (long long)N, K,
                         (long long)min_n);
    return DH_OK;
}

int hl_check_finite(const char *method, const float *x, int64_t N, int D, dh_err *e) {
    for (int64_t i = 0; i < N * D; i++)
        if (!isfinite(x[i]))
            return dh_seterr(e, DH_EFORMAT, "feature row %lld has a non-finite value", (long long)(i / D));
    return DH_OK;
}

int hl_opt_int(const dh_hash_opts *o, int64_t generic, const char *name, int64_t def, int64_t lo, int64_t hi,
               int64_t *out, dh_err *e) {
    int64_t v = def;
    if (generic > 0)
        v = generic;
    else if (o && dh_hash_param_int(o, name, def, &v, e) != 0)
        return e ? e->code : DH_EINVAL;
    if (v < lo || v > hi)
        return dh_seterr(e, DH_EINVAL, "parameter %s: %lld is out of range %lld..%lld", name, (long long)v,
                         (long long)lo, (long long)hi);
    *out = v;
    return DH_OK;
}

int hl_opt_double(const dh_hash_opts *o, double generic, const char *name, double def, double lo, double hi,
                  double *out, dh_err *e) {
    double v = def;
    if (generic > 0)
        v = generic;
    else if (o && dh_hash_param_double(o, name, def, &v, e) != 0)
        return e ? e->code : DH_EINVAL;
    if (!(v >= lo && v <= hi))
        return dh_seterr(e, DH_EINVAL, "parameter %s: %g is out of range %g..%g", name, v, lo, hi);
    *out = v;
    return DH_OK;
}

void hl_note(const dh_hash_opts *o, const char *fmt, ...) {
    if (!o || !o->note) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    o->note(line);
}
