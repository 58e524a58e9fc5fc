/* dk_cpu.c — the CPU reference backend of the kernel library, and the CPU
 * engine's settings (backend, threads, precision).
 *
 * Plain C; matrix products through OpenBLAS (cblas_sgemm); convolution as
 * im2col + sgemm over a chunk of images at a time. This backend defines
 * the numerics that the CUDA backend and the oneDNN backend (dk_dnnl.c)
 * are tested against.
 *
 * Threads: loops over independent outputs (images, channels, rows,
 * elements) run on the OpenMP pool (PAR_FOR), which oneDNN shares; no
 * loop splits a sum, so they give the same bits for any thread count
 * (OpenBLAS's sgemm, given the same count, need not).
 * With the oneDNN backend selected, the operations it has (FAST) go there
 * first; it declines the cases it cannot do exactly and the reference
 * runs them.
 */
#define _GNU_SOURCE
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "dk_elem.h"
#include "dk_impl.h"
#if DH_USE_DNNL
#include "dk_dnnl.h"
#endif

/* ---- the engine: backend, threads, precision --------------------------------------- */
static dk_cpu_backend cpu_backend = DH_USE_DNNL ? DK_CPU_ONEDNN : DK_CPU_REF;
static int cpu_threads; /* 0: not set (OpenMP's and OpenBLAS's defaults) */
static int cpu_bf16;
static int64_t ws_allocs, ws_bytes;

/* Run `call` (a oneDNN twin) when that backend is selected; it returns
 * DK_DNNL_DECLINE for what the reference must do. */
#if DH_USE_DNNL
#define FAST(call)                                                                                                     \
    do {                                                                                                               \
        if (cpu_backend == DK_CPU_ONEDNN) {                                                                            \
            int rc_ = (call);                                                                                          \
            if (rc_ != DK_DNNL_DECLINE) return rc_;                                                                    \
        }                                                                                                              \
    } while (0)
#else
#define FAST(call)                                                                                                     \
    do {                                                                                                               \
    } while (0)
#endif

static int cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : (c > 1024 ? 1024 : (int)c);
}

int dk_set_threads(int n, dh_err *e) {
    if (n < 1 || n > 1024) return dh_seterr(e, DH_EINVAL, "%d threads (1 to 1024 allowed)", n);
    if (n == cpu_threads) return 0;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
#ifdef OPENBLAS_VERSION
    openblas_set_num_threads(n);
#endif
#if DH_USE_DNNL
    dk_dnnl_flush(); /* oneDNN's kernels are planned for a thread count */
#endif
    cpu_threads = n;
    return 0;
}

int dk_threads(void) {
    if (cpu_threads > 0) return cpu_threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int dk_cpu_has_onednn(void) { return DH_USE_DNNL; }
const char *dk_cpu_backend_name(dk_cpu_backend b) { return b == DK_CPU_ONEDNN ? "onednn" : "ref"; }
dk_cpu_backend dk_cpu_get_backend(void) { return cpu_backend; }

int dk_cpu_set_backend(dk_cpu_backend b, dh_err *e) {
    if (b == DK_CPU_REF) {
        cpu_backend = b;
        return 0;
    }
    if (b != DK_CPU_ONEDNN) return dh_seterr(e, DH_EINVAL, "unknown CPU backend %d", (int)b);
#if DH_USE_DNNL
    int rc = dk_dnnl_init(e);
    if (rc) return rc;
    cpu_backend = b;
    return 0;
#else
    return dh_seterr(e, DH_EUNSUPPORTED, "this build has no oneDNN backend (libdnnl-dev was not found)");
#endif
}

int dk_cpu_set_bf16(int on, dh_err *e) {
    if (!on) {
#if DH_USE_DNNL
        dk_dnnl_set_bf16(0);
#endif
        cpu_bf16 = 0;
        return 0;
    }
#if DH_USE_DNNL
    if (!dk_dnnl_bf16_supported())
        return dh_seterr(e, DH_EUNSUPPORTED, "bf16: this CPU has no AVX512-BF16%s",
                         getenv("ONEDNN_MAX_CPU_ISA") ? " for oneDNN (ONEDNN_MAX_CPU_ISA is set)" : "");
    dk_dnnl_set_bf16(1);
    cpu_bf16 = 1;
    return 0;
#else
    return dh_seterr(e, DH_EUNSUPPORTED, "bf16 needs the oneDNN backend, which this build does not have");
#endif
}

int dk_cpu_get_bf16(void) { return cpu_bf16; }
const char *dk_cpu_precision_name(void) { return cpu_bf16 ? "bf16" : "fp32"; }

void dk_cpu_get_stats(dk_cpu_stats *s) {
    s->allocs = ws_allocs;
    s->bytes = ws_bytes;
    s->primitives = 0;
#if DH_USE_DNNL
    int64_t a, b, p;
    dk_dnnl_stats(&a, &b, &p);
    s->allocs += a;
    s->bytes += b;
    s->primitives = p;
#endif
}

int dk_cpu_init(dh_err *e) {
    const char *s = getenv("DH_THREADS");
    int n = cores(), rc;
    if (s && *s && dh_parse_int(s, 1, 1024, &n))
        return dh_seterr(e, DH_EINVAL, "DH_THREADS='%s': expected a number of threads from 1 to 1024", s);
    if ((rc = dk_set_threads(n, e))) return rc;
    dk_cpu_backend b = DH_USE_DNNL ? DK_CPU_ONEDNN : DK_CPU_REF;
    s = getenv("DH_CPU");
    if (s && *s) {
        if (strcmp(s, "ref") == 0)
            b = DK_CPU_REF;
        else if (strcmp(s, "onednn") == 0)
            b = DK_CPU_ONEDNN;
        else
            return dh_seterr(e, DH_EINVAL, "DH_CPU='%s': expected ref or onednn", s);
    }
    if ((rc = dk_cpu_set_backend(b, e))) {
        dh_err_prefix(e, "DH_CPU=%s", dk_cpu_backend_name(b));
        return rc;
    }
    s = getenv("DH_PRECISION");
    int bf16 = 0;
    if (s && *s) {
        if (strcmp(s, "bf16") == 0)
            bf16 = 1;
        else if (strcmp(s, "fp32") != 0)
            return dh_seterr(e, DH_EINVAL, "DH_PRECISION='%s': expected fp32 or bf16", s);
    }
    if (bf16 && b != DK_CPU_ONEDNN)
        return dh_seterr(e, DH_EINVAL, "DH_PRECISION=bf16 needs the onednn CPU backend (DH_CPU=ref is fp32)");
    if ((rc = dk_cpu_set_bf16(bf16, e))) {
        dh_err_prefix(e, "DH_PRECISION=bf16");
        return rc;
    }
    return 0;
}

/* ---- workspace ----------------------------------------------------------------- */
static float *ws_cpu;
static size_t ws_cpu_n;

float *dk_cpu_workspace(size_t nfloats, dh_err *e) {
    if (nfloats <= ws_cpu_n) return ws_cpu;
    free(ws_cpu);
    ws_cpu = NULL;
    ws_cpu_n = 0;
    ws_cpu = dh_malloc(e, nfloats, sizeof(float));
    if (!ws_cpu) return NULL;
    ws_cpu_n = nfloats;
    ws_allocs++;
    ws_bytes += (int64_t)(nfloats * sizeof(float));
    return ws_cpu;
}

void dk_cpu_shutdown(void) {
    free(ws_cpu);
    ws_cpu = NULL;
    ws_cpu_n = 0;
#if DH_USE_DNNL
    dk_dnnl_shutdown();
#endif
}

/* ---- matrix products and elementwise -------------------------------------------- */
int dk_sgemm_cpu(int tA, int tB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc, dh_err *e) {
    if (M == 0 || N == 0) return 0;
    FAST(K > 0 ? dk_sgemm_dnnl(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, e) : DK_DNNL_DECLINE);
    if (K == 0) { /* C = beta C */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return 0;
    }
    cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, (blasint)M, (blasint)N,
                (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
    return 0;
}

int dk_fill_cpu(float *p, int64_t n, float v, dh_err *e) {
    PAR_FOR(n)
    for (int64_t i = 0; i < n; i++) p[i] = v;
    return 0;
}

int dk_scale_cpu(float *p, int64_t n, float a, dh_err *e) {
    PAR_FOR(n)
    for (int64_t i = 0; i < n; i++) p[i] *= a;
    return 0;
}

int dk_axpby_cpu(int64_t n, float a, const float *x, float b, float *y, dh_err *e) {
    if (b == 0.0f) {
        PAR_FOR(n)
        for (int64_t i = 0; i < n; i++) y[i] = a * x[i];
    } else {
        PAR_FOR(n)
        for (int64_t i = 0; i < n; i++) y[i] = a * x[i] + b * y[i];
    }
    return 0;
}

int dk_mul_cpu(int64_t n, const float *a, const float *b, float *out, dh_err *e) {
    PAR_FOR(n)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i];
    return 0;
}

int dk_sum_cpu(const float *x, int64_t n, int squares, double *out, dh_err *e) {
    double s = 0;
    if (squares)
        for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    else
        for (int64_t i = 0; i < n; i++) s += x[i];
    *out = s;
    return 0;
}

/* y (N, F, P) += b[f] */
int dk_add_bias_cpu(float *y, const float *b, int64_t N, int64_t F, int64_t P, dh_err *e) {
    PAR_FOR2(N * F * P)
    for (int64_t i = 0; i < N; i++)
        for (int64_t f = 0; f < F; f++) {
            float *row = y + (i * F + f) * P, bf = b[f];
            for (int64_t p = 0; p < P; p++) row[p] += bf;
        }
    return 0;
}

/* db (F) = sum over N, P of dy (N, F, P) */
int dk_bias_grad_cpu(const float *dy, float *db, int64_t N, int64_t F, int64_t P, dh_err *e) {
    PAR_FOR(N * F * P)
    for (int64_t f = 0; f < F; f++) {
        double s = 0;
        for (int64_t i = 0; i < N; i++) {
            const float *row = dy + (i * F + f) * P;
            /* 8 float lanes within a row (vectorisable), double across rows */
            float lane[8] = { 0, 0, 0, 0, 0, 0, 0, 0 };
            int64_t p = 0;
            for (; p + 8 <= P; p += 8)
                for (int l = 0; l < 8; l++) lane[l] += row[p + l];
            double r = 0;
            for (int l = 0; l < 8; l++) r += lane[l];
            for (; p < P; p++) r += row[p];
            s += r;
        }
        db[f] = (float)s;
    }
    return 0;
}

/* ---- convolution: im2col + sgemm ---------------------------------------------------- */
/* Geometry of one convolution. */
typedef struct {
    int64_t N, C, H, W, F, KH, KW, OH, OW;
    int stride, pad;
    int64_t CKK, P; /* C*KH*KW, OH*OW */
} convgeom;

static convgeom geom(const dk_tensor *x_or_dx, const dk_tensor *w_or_dw, const dk_tensor *y_or_dy, int stride,
                     int pad) {
    convgeom g;
    g.N = x_or_dx->shape[0];
    g.C = x_or_dx->shape[1];
    g.H = x_or_dx->shape[2];
    g.W = x_or_dx->shape[3];
    g.F = w_or_dw->shape[0];
    g.KH = w_or_dw->shape[2];
    g.KW = w_or_dw->shape[3];
    g.OH = y_or_dy->shape[2];
    g.OW = y_or_dy->shape[3];
    g.stride = stride;
    g.pad = pad;
    g.CKK = g.C * g.KH * g.KW;
    g.P = g.OH * g.OW;
    return g;
}

/* Images per chunk so that col (CKK, nb P) + tmp (F, nb P) stays under ~4 MB
 * (cache-sized: measured ~10% faster than 32 MB chunks on LeNet layers). */
static int64_t chunk_images(const convgeom *g) {
    const int64_t cap = 1024 * 1024; /* floats */
    int64_t per = (g->CKK + g->F) * g->P;
    int64_t nb = per > 0 ? cap / per : g->N;
    if (nb < 1) nb = 1;
    if (nb > g->N) nb = g->N;
    return nb;
}

/* The workspace for nb images: col (CKK, nb P), returned, then tmp (F, nb P).
 * NULL when it cannot be had. */
static float *conv_workspace(const convgeom *g, int64_t nb, float **tmp, dh_err *e) {
    float *ws = dk_cpu_workspace((size_t)((g->CKK + g->F) * nb * g->P), e);
    if (ws) *tmp = ws + g->CKK * nb * g->P;
    return ws;
}

/* col (CKK, nb*P) from images x[b0 .. b0+nb) */
static void im2col(const convgeom *g, const float *x, int64_t b0, int64_t nb, float *col) {
    const int64_t ldc = nb * g->P;
    DK_PRAGMA(omp parallel for collapse(3) schedule(static) if (g->CKK * ldc >= PAR_MIN))
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t kh = 0; kh < g->KH; kh++)
            for (int64_t kw = 0; kw < g->KW; kw++) {
                float *crow = col + ((c * g->KH + kh) * g->KW + kw) * ldc;
                for (int64_t b = 0; b < nb; b++) {
                    const float *img = x + ((b0 + b) * g->C + c) * g->H * g->W;
                    float *out = crow + b * g->P;
                    for (int64_t oh = 0; oh < g->OH; oh++) {
                        int64_t ih = oh * g->stride - g->pad + kh;
                        float *o = out + oh * g->OW;
                        if (ih < 0 || ih >= g->H) {
                            memset(o, 0, (size_t)g->OW * sizeof(float));
                            continue;
                        }
                        const float *irow = img + ih * g->W;
                        int64_t iw = kw - g->pad;
                        if (g->stride == 1) { /* valid ow: 0 <= ow + iw < W, one copy */
                            int64_t lo = iw < 0 ? -iw : 0, hi = g->W - iw < g->OW ? g->W - iw : g->OW;
                            if (lo > g->OW) lo = g->OW;
                            if (hi < lo) hi = lo;
                            for (int64_t ow = 0; ow < lo; ow++) o[ow] = 0.0f;
                            if (hi > lo) memcpy(o + lo, irow + iw + lo, (size_t)(hi - lo) * sizeof(float));
                            for (int64_t ow = hi; ow < g->OW; ow++) o[ow] = 0.0f;
                        } else {
                            for (int64_t ow = 0; ow < g->OW; ow++, iw += g->stride)
                                o[ow] = (iw >= 0 && iw < g->W) ? irow[iw] : 0.0f;
                        }
                    }
                }
            }
}

/* dx[b0 .. b0+nb) += col2im(col) */
static void col2im(const convgeom *g, const float *col, int64_t b0, int64_t nb, float *dx) {
    const int64_t ldc = nb * g->P;
    PAR_FOR(g->CKK * ldc)
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t kh = 0; kh < g->KH; kh++)
            for (int64_t kw = 0; kw < g->KW; kw++) {
                const float *crow = col + ((c * g->KH + kh) * g->KW + kw) * ldc;
                for (int64_t b = 0; b < nb; b++) {
                    float *img = dx + ((b0 + b) * g->C + c) * g->H * g->W;
                    const float *in = crow + b * g->P;
                    for (int64_t oh = 0; oh < g->OH; oh++) {
                        int64_t ih = oh * g->stride - g->pad + kh;
                        if (ih < 0 || ih >= g->H) continue;
                        float *irow = img + ih * g->W;
                        const float *o = in + oh * g->OW;
                        int64_t iw = kw - g->pad;
                        if (g->stride == 1) {
                            int64_t lo = iw < 0 ? -iw : 0, hi = g->W - iw < g->OW ? g->W - iw : g->OW;
                            float *dst = irow + iw;
                            for (int64_t ow = lo; ow < hi; ow++) dst[ow] += o[ow];
                            continue;
                        }
                        for (int64_t ow = 0; ow < g->OW; ow++, iw += g->stride)
                            if (iw >= 0 && iw < g->W) irow[iw] += o[ow];
                    }
                }
            }
}

int dk_conv2d_forward_cpu(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad, dk_tensor *y,
                          dh_err *e) {
    FAST(dk_conv2d_forward_dnnl(x, w, b, stride, pad, y, e));
    convgeom g = geom(x, w, y, stride, pad);
    int64_t nb = chunk_images(&g);
    float *tmp, *col = conv_workspace(&g, nb, &tmp, e);
    if (!col) return e ? e->code : DH_ENOMEM;
    for (int64_t b0 = 0; b0 < g.N; b0 += nb) {
        int64_t n = g.N - b0 < nb ? g.N - b0 : nb;
        im2col(&g, x->data, b0, n, col);
        if (n == 1) { /* straight into y (F, P) */
            dk_sgemm_cpu(0, 0, g.F, g.P, g.CKK, 1.0f, w->data, g.CKK, col, g.P, 0.0f, y->data + b0 * g.F * g.P, g.P, e);
            continue;
        }
        /* tmp (F, n P) = W (F, CKK) col (CKK, n P) */
        dk_sgemm_cpu(0, 0, g.F, n * g.P, g.CKK, 1.0f, w->data, g.CKK, col, n * g.P, 0.0f, tmp, n * g.P, e);
        PAR_FOR2(n * g.F * g.P)
        for (int64_t i = 0; i < n; i++)
            for (int64_t f = 0; f < g.F; f++)
                memcpy(y->data + ((b0 + i) * g.F + f) * g.P, tmp + f * n * g.P + i * g.P, (size_t)g.P * sizeof(float));
    }
    if (b) dk_add_bias_cpu(y->data, b->data, g.N, g.F, g.P, e);
    return 0;
}

int dk_conv2d_pool_forward_cpu(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,
                               int relu, int avg, int pk, int ps, int pp, const dk_bn_act *bn, const dk_tensor *t,
                               dk_tensor *y, int *done, dh_err *e) {
    *done = 0;
#if DH_USE_DNNL
    if (cpu_backend == DK_CPU_ONEDNN) {
        int rc = dk_conv2d_pool_forward_dnnl(x, w, b, stride, pad, relu, avg, pk, ps, pp, bn, t, y, e);
        if (rc != DK_DNNL_DECLINE) {
            *done = 1;
            return rc;
        }
    }
#else
    (void)x, (void)w, (void)b, (void)stride, (void)pad, (void)relu, (void)avg, (void)pk, (void)ps, (void)pp, (void)bn,
        (void)t, (void)y, (void)e;
#endif
    return 0;
}

int dk_conv2d_bn_forward_cpu(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,
                             const dk_bn_act *bn, const dk_tensor *t, dk_tensor *y, int *done, dh_err *e) {
    *done = 0;
#if DH_USE_DNNL
    if (cpu_backend == DK_CPU_ONEDNN) {
        int rc = dk_conv2d_bn_forward_dnnl(x, w, b, stride, pad, bn, t, y, e);
        if (rc != DK_DNNL_DECLINE) {
            *done = 1;
            return rc;
        }
    }
#else
    (void)x, (void)w, (void)b, (void)stride, (void)pad, (void)bn, (void)t, (void)y, (void)e;
#endif
    return 0;
}

/* dy[b0 .. b0+n) (n, F, P) as (F, n P): dy itself when n == 1, else
 * gathered into tmp. */
static const float *dy_block(const convgeom *g, const float *dy, int64_t b0, int64_t n, float *tmp) {
    if (n == 1) return dy + b0 * g->F * g->P;
    PAR_FOR2(n * g->F * g->P)
    for (int64_t i = 0; i < n; i++)
        for (int64_t f = 0; f < g->F; f++)
            memcpy(tmp + f * n * g->P + i * g->P, dy + ((b0 + i) * g->F + f) * g->P, (size_t)g->P * sizeof(float));
    return tmp;
}

int dk_conv2d_backward_data_cpu(const dk_tensor *dy, const dk_tensor *w, int stride, int pad, dk_tensor *dx,
                                dh_err *e) {
    FAST(dk_conv2d_backward_data_dnnl(dy, w, stride, pad, dx, e));
    convgeom g = geom(dx, w, dy, stride, pad);
    int64_t nb = chunk_images(&g);
    float *tmp, *col = conv_workspace(&g, nb, &tmp, e);
    if (!col) return e ? e->code : DH_ENOMEM;
    dk_fill_cpu(dx->data, dx->n, 0.0f, e);
    for (int64_t b0 = 0; b0 < g.N; b0 += nb) {
        int64_t n = g.N - b0 < nb ? g.N - b0 : nb;
        const float *dyt = dy_block(&g, dy->data, b0, n, tmp);
        /* col (CKK, n P) = W^T (CKK, F) dyt (F, n P) */
        dk_sgemm_cpu(1, 0, g.CKK, n * g.P, g.F, 1.0f, w->data, g.CKK, dyt, n * g.P, 0.0f, col, n * g.P, e);
        col2im(&g, col, b0, n, dx->data);
    }
    return 0;
}

int dk_conv2d_backward_filter_cpu(const dk_tensor *x, const dk_tensor *dy, int stride, int pad, dk_tensor *dw,
                                  dh_err *e) {
    FAST(dk_conv2d_backward_filter_dnnl(x, dy, stride, pad, dw, e));
    convgeom g = geom(x, dw, dy, stride, pad);
    int64_t nb = chunk_images(&g);
    float *tmp, *col = conv_workspace(&g, nb, &tmp, e);
    if (!col) return e ? e->code : DH_ENOMEM;
    for (int64_t b0 = 0; b0 < g.N; b0 += nb) {
        int64_t n = g.N - b0 < nb ? g.N - b0 : nb;
        im2col(&g, x->data, b0, n, col);
        const float *dyt = dy_block(&g, dy->data, b0, n, tmp);
        /* dW (F, CKK) (+)= dyt (F, n P) col^T (n P, CKK) */
        dk_sgemm_cpu(0, 1, g.F, g.CKK, n * g.P, 1.0f, dyt, n * g.P, col, n * g.P, b0 == 0 ? 0.0f : 1.0f, dw->data,
                     g.CKK, e);
    }
    if (g.N == 0) memset(dw->data, 0, (size_t)dw->n * sizeof(float));
    return 0;
}

/* ---- batch normalisation ---------------------------------------------------------------- */
int dk_bn_forward_train_cpu(const dk_tensor *x, const float *gamma, const float *beta, float *rmean, float *rvar,
                            float momentum, float eps, dk_tensor *y, float *smean, float *sinvstd, dh_err *e) {
    if (cpu_backend == DK_CPU_ONEDNN && x->n > 0)
        return dk_bn_forward_train_fast(x, gamma, beta, rmean, rvar, momentum, eps, y, smean, sinvstd, e);
    int64_t N, C, P;
    dk_nchw(x, &N, &C, &P);
    int64_t M = N * P;
    PAR_FOR(x->n)
    for (int64_t c = 0; c < C; c++) {
        double s = 0, ss = 0;
        for (int64_t i = 0; i < N; i++) {
            const float *p = x->data + (i * C + c) * P;
            for (int64_t k = 0; k < P; k++) s += p[k];
        }
        double mean = s / (double)M;
        for (int64_t i = 0; i < N; i++) {
            const float *p = x->data + (i * C + c) * P;
            for (int64_t k = 0; k < P; k++) {
                double d = p[k] - mean;
                ss += d * d;
            }
        }
        double var = ss / (double)M;
        float invstd = (float)(1.0 / sqrt(var + eps));
        float m = (float)mean, ga = gamma[c], be = beta[c];
        for (int64_t i = 0; i < N; i++) {
            const float *p = x->data + (i * C + c) * P;
            float *q = y->data + (i * C + c) * P;
            for (int64_t k = 0; k < P; k++) q[k] = ga * (p[k] - m) * invstd + be;
        }
        smean[c] = m;
        sinvstd[c] = invstd;
        double uvar = M > 1 ? var * (double)M / (double)(M - 1) : var;
        rmean[c] = (1.0f - momentum) * rmean[c] + momentum * m;
        rvar[c] = (1.0f - momentum) * rvar[c] + momentum * (float)uvar;
    }
    return 0;
}

int dk_bn_forward_infer_cpu(const dk_tensor *x, const float *gamma, const float *beta, const float *rmean,
                            const float *rvar, float eps, dk_tensor *y, dh_err *e) {
    FAST(dk_bn_forward_infer_dnnl(x, gamma, beta, rmean, rvar, eps, y, e));
    int64_t N, C, P;
    dk_nchw(x, &N, &C, &P);
    PAR_FOR(x->n)
    for (int64_t c = 0; c < C; c++) {
        float a = gamma[c] / sqrtf(rvar[c] + eps), m = rmean[c], be = beta[c];
        for (int64_t i = 0; i < N; i++) {
            const float *p = x->data + (i * C + c) * P;
            float *q = y->data + (i * C + c) * P;
            for (int64_t k = 0; k < P; k++) q[k] = a * (p[k] - m) + be;
        }
    }
    return 0;
}

int dk_bn_backward_cpu(const dk_tensor *x, const dk_tensor *dy, const float *gamma, const float *smean,
                       const float *sinvstd, dk_tensor *dx, float *dgamma, float *dbeta, dh_err *e) {
    if (cpu_backend == DK_CPU_ONEDNN && x->n > 0)
        return dk_bn_backward_fast(x, dy, gamma, smean, sinvstd, dx, dgamma, dbeta, e);
    int64_t N, C, P;
    dk_nchw(x, &N, &C, &P);
    double M = (double)(N * P);
    PAR_FOR(x->n)
    for (int64_t c = 0; c < C; c++) {
        double sdy = 0, sdyxh = 0;
        float m = smean[c], is = sinvstd[c];
        for (int64_t i = 0; i < N; i++) {
            const float *p = x->data + (i * C + c) * P, *d = dy->data + (i * C + c) * P;
            for (int64_t k = 0; k < P; k++) {
                sdy += d[k];
                sdyxh += d[k] * (p[k] - m) * is;
            }
        }
        dbeta[c] = (float)sdy;
        dgamma[c] = (float)sdyxh;
        /* dx = gamma invstd / M (M dy - sum dy - xhat sum dy xhat) */
        float a = gamma[c] * is, mdy = (float)(sdy / M), mdyx = (float)(sdyxh / M);
        for (int64_t i = 0; i < N; i++) {
            const float *p = x->data + (i * C + c) * P, *d = dy->data + (i * C + c) * P;
            float *q = dx->data + (i * C + c) * P;
            for (int64_t k = 0; k < P; k++) q[k] = a * (d[k] - mdy - (p[k] - m) * is * mdyx);
        }
    }
    return 0;
}

/* ---- activations --------------------------------------------------------------------------- */
int dk_unary_cpu(int op, const float *x, float *y, int64_t n, dh_err *e) {
    switch (op) {
    case DK_OP_RELU:
        PAR_FOR(n)
        for (int64_t i = 0; i < n; i++) y[i] = dk_relu_f(x[i]);
        break;
    case DK_OP_GELU:
        if (cpu_backend == DK_CPU_ONEDNN) return dk_gelu_forward_fast(x, y, n, e);
        PAR_FOR(n)
        for (int64_t i = 0; i < n; i++) y[i] = dk_gelu_f(x[i]);
        break;
    case DK_OP_SIGMOID:
        PAR_FOR(n)
        for (int64_t i = 0; i < n; i++) y[i] = dk_sigmoid_f(x[i]);
        break;
    case DK_OP_TANH:
        PAR_FOR(n)
        for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
        break;
    default: return dh_seterr(e, DH_EINVAL, "unknown unary op %d", op);
    }
    return 0;
}

/* a is the forward input (GELU) or output (ReLU, sigmoid, tanh). */
int dk_unary_grad_cpu(int op, const float *a, const float *dy, float *dx, int64_t n, dh_err *e) {
    switch (op) {
    case DK_OP_RELU:
        PAR_FOR(n)
        for (int64_t i = 0; i < n; i++) dx[i] = dk_relu_grad(a[i], dy[i]);
        break;
    case DK_OP_GELU:
        if (cpu_backend == DK_CPU_ONEDNN) return dk_gelu_backward_fast(a, dy, dx, n, e);
        PAR_FOR(n)
        for (int64_t i = 0; i < n; i++) dx[i] = dk_gelu_grad(a[i], dy[i]);
        break;
    case DK_OP_SIGMOID:
        PAR_FOR(n)
        for (int64_t i = 0; i < n; i++) dx[i] = dk_sigmoid_grad(a[i], dy[i]);
        break;
    case DK_OP_TANH:
        PAR_FOR(n)
        for (int64_t i = 0; i < n; i++) dx[i] = dk_tanh_grad(a[i], dy[i]);
        break;
    default: return dh_seterr(e, DH_EINVAL, "unknown unary op %d", op);
    }
    return 0;
}

/* ---- pooling ------------------------------------------------------------------------------- */
static dk_poolgeom pool_geom(const dk_tensor *x, const dk_tensor *y, int k, int stride, int pad) {
    dk_poolgeom g = { x->shape[2], x->shape[3], y->shape[2], y->shape[3], k, stride, pad };
    return g;
}

int dk_pool_forward_cpu(int avg, const dk_tensor *x, int k, int stride, int pad, dk_tensor *y, dh_err *e) {
    if (!avg && cpu_backend == DK_CPU_ONEDNN) return dk_maxpool_forward_fast(x, k, stride, pad, y, e);
    dk_poolgeom g = pool_geom(x, y, k, stride, pad);
    int64_t NC = x->shape[0] * x->shape[1];
    /* fast path: every window lies inside the image, no clipping. Its compare
     * is a branch, cheaper than dk_pool_maxval's select on the small unpadded
     * windows (lenet's 2x2); the padded path, where the branch was the cost,
     * takes dk_pool_out. */
    if (!avg && pad == 0) {
        PAR_FOR(x->n)
        for (int64_t nc = 0; nc < NC; nc++) {
            const float *img = x->data + nc * g.H * g.W;
            float *out = y->data + nc * g.OH * g.OW;
            for (int64_t oh = 0; oh < g.OH; oh++)
                for (int64_t ow = 0; ow < g.OW; ow++) {
                    const float *win = img + oh * stride * g.W + ow * stride;
                    float bv = win[0];
                    for (int i = 0; i < k; i++)
                        for (int j = 0; j < k; j++)
                            if (win[i * g.W + j] > bv) bv = win[i * g.W + j];
                    out[oh * g.OW + ow] = bv;
                }
        }
        return 0;
    }
    PAR_FOR(x->n)
    for (int64_t nc = 0; nc < NC; nc++) {
        const float *img = x->data + nc * g.H * g.W;
        float *out = y->data + nc * g.OH * g.OW;
        for (int64_t oh = 0; oh < g.OH; oh++)
            for (int64_t ow = 0; ow < g.OW; ow++) out[oh * g.OW + ow] = dk_pool_out(avg, img, g, oh, ow);
    }
    return 0;
}

/* The backward passes scatter from each window (the CUDA kernels gather per
 * input pixel with dk_pool_grad_pixel; the unit tests compare the two). */
int dk_maxpool_backward_cpu(const dk_tensor *x, const dk_tensor *y, const dk_tensor *dy, int k, int stride, int pad,
                            dk_tensor *dx, dh_err *e) {
    if (cpu_backend == DK_CPU_ONEDNN) return dk_maxpool_backward_fast(x, dy, k, stride, pad, dx, e);
    int64_t NC = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t OH = dy->shape[2], OW = dy->shape[3];
    PAR_FOR(x->n)
    for (int64_t nc = 0; nc < NC; nc++) {
        const float *img = x->data + nc * H * W;
        const float *d = dy->data + nc * OH * OW;
        float *g = dx->data + nc * H * W;
        memset(g, 0, (size_t)(H * W) * sizeof(float));
        if (pad == 0) { /* fast path, as in the forward: a branch here costs less than dk_pool_argmax's
                         * mask on 2x2 windows (lenet, DH_THREADS=1: 0.67 against 1.0 ms per batch) */
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    int64_t base = oh * stride * W + ow * stride, best = base;
                    float bv = img[base];
                    for (int i = 0; i < k; i++)
                        for (int j = 0; j < k; j++)
                            if (img[base + i * W + j] > bv) {
                                bv = img[base + i * W + j];
                                best = base + i * W + j;
                            }
                    g[best] += d[oh * OW + ow];
                }
            continue;
        }
        dk_poolgeom pg = { H, W, OH, OW, k, stride, pad };
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t best = dk_pool_argmax(img, pg, oh, ow);
                if (best >= 0) g[best] += d[oh * OW + ow];
            }
    }
    return 0;
}

int dk_avgpool_backward_cpu(const dk_tensor *dy, int k, int stride, int pad, dk_tensor *dx, dh_err *e) {
    int64_t NC = dx->shape[0] * dx->shape[1], H = dx->shape[2], W = dx->shape[3];
    int64_t OH = dy->shape[2], OW = dy->shape[3];
    float inv = 1.0f / (float)(k * k);
    PAR_FOR(dx->n)
    for (int64_t nc = 0; nc < NC; nc++) {
        const float *d = dy->data + nc * OH * OW;
        float *g = dx->data + nc * H * W;
        memset(g, 0, (size_t)(H * W) * sizeof(float));
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t h0 = oh * stride - pad, w0 = ow * stride - pad;
                float v = d[oh * OW + ow] * inv;
                for (int64_t i = h0; i < h0 + k; i++) {
                    if (i < 0 || i >= H) continue;
                    for (int64_t j = w0; j < w0 + k; j++)
                        if (j >= 0 && j < W) g[i * W + j] += v;
                }
            }
    }
    return 0;
}

int dk_gap_forward_cpu(const float *x, float *y, int64_t NC, int64_t P, dh_err *e) {
    PAR_FOR(NC * P)
    for (int64_t i = 0; i < NC; i++) {
        double s = 0;
        for (int64_t k = 0; k < P; k++) s += x[i * P + k];
        y[i] = (float)(s / (double)P);
    }
    return 0;
}

int dk_gap_backward_cpu(const float *dy, float *dx, int64_t NC, int64_t P, dh_err *e) {
    PAR_FOR(NC * P)
    for (int64_t i = 0; i < NC; i++) {
        float v = dy[i] / (float)P;
        for (int64_t k = 0; k < P; k++) dx[i * P + k] = v;
    }
    return 0;
}

/* ---- dropout, softmax, SGD, random ---------------------------------------------------------------- */
int dk_dropout_forward_cpu(const float *x, float p, uint64_t seed, uint64_t offset, float *y, float *mask, int64_t n,
                           dh_err *e) {
    PAR_FOR(n)
    for (int64_t i = 0; i < n; i++) {
        float m = dk_dropout_mask(seed, offset + (uint64_t)i, p);
        mask[i] = m;
        y[i] = x[i] * m;
    }
    return 0;
}

int dk_softmax_cpu(const float *logits, float *probs, int64_t N, int64_t K, dh_err *e) {
    PAR_FOR(N * K)
    for (int64_t i = 0; i < N; i++) dk_softmax_row(logits + i * K, probs + i * K, K);
    return 0;
}

int dk_softmax_xent_cpu(const float *logits, const int32_t *labels, int64_t N, int64_t K, float smoothing,
                        float grad_scale, double *loss, int64_t *correct, float *dlogits, dh_err *e) {
    for (int64_t i = 0; i < N; i++)
        if (labels[i] < 0 || labels[i] >= K)
            return dh_seterr(e, DH_EINVAL, "softmax_xent: row %lld: label %d outside [0, %lld)", (long long)i,
                             (int)labels[i], (long long)K);
    double total = 0;
    int64_t ncorrect = 0;
    float sc = grad_scale / (float)N;
    for (int64_t i = 0; i < N; i++) {
        int ok;
        total += dk_xent_row(logits + i * K, K, labels[i], smoothing, sc, dlogits ? dlogits + i * K : NULL, &ok);
        ncorrect += ok;
    }
    if (loss) *loss = N > 0 ? total / (double)N : 0.0;
    if (correct) *correct = ncorrect;
    return 0;
}

int dk_sgd_step_cpu(float *w, const float *g, float *v, int64_t n, float lr, float mom, float wd, int nesterov,
                    dh_err *e) {
    if (mom == 0.0f) {
        PAR_FOR(n)
        for (int64_t i = 0; i < n; i++) {
            float dummy = 0;
            dk_sgd_elem(&w[i], g[i], &dummy, lr, 0.0f, wd, 0);
        }
    } else {
        PAR_FOR(n)
        for (int64_t i = 0; i < n; i++) dk_sgd_elem(&w[i], g[i], &v[i], lr, mom, wd, nesterov);
    }
    return 0;
}

int dk_rand_uniform_cpu(float *p, int64_t n, float lo, float hi, uint64_t seed, uint64_t offset, dh_err *e) {
    PAR_FOR(n)
    for (int64_t i = 0; i < n; i++) p[i] = dk_lerp_rn(lo, hi, dh_rng_uniform(seed, offset + (uint64_t)i));
    return 0;
}

/* ---- images ----------------------------------------------------------------------------------------- */
int dk_images_augment_cpu(const uint8_t *src, int64_t S, int C, int H, int W, const int32_t *idx, int pad, int flip,
                          const float *mean, const float *std, uint64_t seed, uint64_t offset, dk_tensor *out,
                          dh_err *e) {
    int64_t N = out->shape[0];
    float scale[DK_MAXCHAN], shift[DK_MAXCHAN];
    for (int c = 0; c < C; c++) {
        scale[c] = 1.0f / (255.0f * std[c]);
        shift[c] = mean[c] / std[c];
    }
    for (int64_t r = 0; r < N; r++) {
        int64_t s = idx ? idx[r] : r;
        if (s < 0 || s >= S)
            return dh_seterr(e, DH_EINVAL, "images_augment: row %lld: index %lld outside [0, %lld)", (long long)r,
                             (long long)s, (long long)S);
    }
    PAR_FOR(out->n)
    for (int64_t r = 0; r < N; r++) {
        int64_t s = idx ? idx[r] : r;
        /* flip: a DK_FLIP_* mode | a DK_PAD_* mode; the source position (dk_elem.h) reflects with
         * DK_PAD_REFLECT, is -1 outside the image with DK_PAD_MEAN */
        dk_aug_draw d = dk_aug_draws(seed, offset + (uint64_t)r, pad, flip);
        d.flip = dk_aug_flip(d.flip, seed, s, flip);
        for (int c = 0; c < C; c++) {
            const uint8_t *img = src + ((size_t)s * C + c) * H * W;
            float *o = out->data + ((size_t)r * C + c) * H * W;
            for (int y = 0; y < H; y++) {
                int sy = dk_aug_src_y(d, y, pad, H);
                for (int x = 0; x < W; x++) {
                    int sx = dk_aug_src_x(d, x, pad, W);
                    o[y * W + x] =
                        (sy < 0 || sx < 0) ? 0.0f : dk_affine_rn((float)img[sy * W + sx], scale[c], shift[c]);
                }
            }
        }
    }
    return 0;
}

int dk_gather_i32_cpu(const int32_t *src, const int32_t *idx, int64_t n, int32_t *out, dh_err *e) {
    for (int64_t i = 0; i < n; i++) out[i] = src[idx[i]];
    return 0;
}
