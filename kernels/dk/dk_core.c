/* dk_core.c — devices, memory, tensors, argument checks and dispatch to the
 * CPU (dk_cpu.c) or CUDA (dk_cuda.cu) backend; schedules, initialisation
 * and permutations (host-side, pure).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dk_impl.h"
#include "dh_cudaload.h"
#include "dh_rng.h"

/* ---- dispatch ------------------------------------------------------------------- */
/* The CUDA backend is libdhcuda.so, loaded on first use (dh_cudaload.h);
 * without it (a CPU-only build, or a host without the driver, cuBLAS or
 * cuDNN) every CUDA call fails with the load error, naming what is missing. */
#define CUDA(fn, ...)         DH_CUDA_CALL(fn, e, __VA_ARGS__)
#define BACKEND(dev, fn, ...) ((dev) == DK_CUDA ? CUDA(fn##_cuda, __VA_ARGS__) : fn##_cpu(__VA_ARGS__))

/* 0 when a CUDA device can be used; else why not (the load or device error). */
static int cuda_usable(dh_err *e) {
    int rc = dh_cuda_load(e);
    return rc ? rc : CUDA(dk_cuda_probe, e);
}
static int no_cuda(dh_err *e) {
    int rc = cuda_usable(e);
    return rc ? rc : dh_seterr(e, DH_EDEVICE, "no CUDA device available");
}

/* ---- devices ---------------------------------------------------------------------- */
static int tf32_wanted = -1; /* dk_allow_tf32 before the backend was loaded */

int dk_cuda_available(void) {
    dh_err e;
    return cuda_usable(&e) == 0;
}

const char *dk_device_name(dk_device d) { return d == DK_CUDA ? "cuda" : "cpu"; }

int dk_device_parse(const char *s, dk_device *out, dh_err *e) {
    if (!s || !*s) s = getenv("DH_DEVICE");
    if (!s || !*s) s = "auto";
    if (strcmp(s, "cpu") == 0) {
        *out = DK_CPU;
        return 0;
    }
    if (strcmp(s, "cuda") == 0 || strcmp(s, "gpu") == 0) {
        if (!dk_cuda_available()) return no_cuda(e);
        *out = DK_CUDA;
        return 0;
    }
    if (strcmp(s, "auto") == 0) {
        *out = dk_cuda_available() ? DK_CUDA : DK_CPU;
        return 0;
    }
    return dh_seterr(e, DH_EINVAL, "unknown device '%s' (expected cpu, cuda or auto)", s);
}

int dk_init(dk_device dev, dh_err *e) {
    if (dev == DK_CPU) return dk_cpu_init(e);
    int rc = cuda_usable(e);
    if (!rc) rc = CUDA(dk_cuda_init, e);
    if (!rc && tf32_wanted >= 0) DH_CUDA_CALL_IF_LOADED(dk_cuda_set_tf32, tf32_wanted);
    return rc;
}

void dk_shutdown(void) {
    dk_cpu_shutdown();
    DH_CUDA_CALL_IF_LOADED(dk_cuda_shutdown);
}

int dk_sync(dk_device dev, dh_err *e) {
    if (dev == DK_CPU) return 0;
    return CUDA(dk_cuda_sync, e);
}

/* The handles and the TF32 switch: only once the backend is loaded (a CPU
 * run never loads it). */
void *dk_cublas_handle(void) {
    void *(*f)(void) = dh_cuda_loaded() ? (void *(*)(void))dh_cuda_sym("dk_cuda_cublas", NULL) : NULL;
    return f ? f() : NULL;
}

void dk_allow_tf32(int on) {
    tf32_wanted = on ? 1 : 0;
    DH_CUDA_CALL_IF_LOADED(dk_cuda_set_tf32, tf32_wanted);
}

void *dk_cudnn_handle(void) {
    void *(*f)(void) = dh_cuda_loaded() ? (void *(*)(void))dh_cuda_sym("dk_cuda_cudnn", NULL) : NULL;
    return f ? f() : NULL;
}

/* ---- raw memory ---------------------------------------------------------------------- */
int dk_mem_alloc(dk_device dev, size_t bytes, void **out, dh_err *e) {
    *out = NULL;
    if (dev == DK_CPU) {
        *out = dh_calloc(e, bytes ? bytes : 1, 1);
        return *out ? 0 : (e ? e->code : DH_ENOMEM);
    }
    return CUDA(dk_cuda_malloc, bytes ? bytes : 1, out, e);
}

void dk_mem_free(dk_device dev, void *p) {
    if (!p) return;
    if (dev == DK_CPU) {
        free(p);
        return;
    }
    DH_CUDA_CALL_IF_LOADED(dk_cuda_free, p);
}

/* dir: 0 host to device, 1 device to host (dk_cuda_memcpy's). */
static int mem_copy(dk_device dev, void *dst, const void *src, size_t bytes, int dir, dh_err *e) {
    if (bytes == 0) return 0;
    if (dev == DK_CPU) {
        memmove(dst, src, bytes);
        return 0;
    }
    return CUDA(dk_cuda_memcpy, dst, src, bytes, dir, e);
}

int dk_mem_upload(dk_device dev, void *dst, const void *src, size_t bytes, dh_err *e) {
    return mem_copy(dev, dst, src, bytes, 0, e);
}

int dk_mem_download(dk_device dev, void *dst, const void *src, size_t bytes, dh_err *e) {
    return mem_copy(dev, dst, src, bytes, 1, e);
}

/* ---- tensors ---------------------------------------------------------------------------- */
#define DK_MAX_ELEMS ((int64_t)1 << 40)

static int set_shape(dk_tensor *t, int ndim, const int64_t *shape, dh_err *e) {
    if (ndim < 1 || ndim > DK_MAXDIM)
        return dh_seterr(e, DH_EINVAL, "tensor: %d dimensions (1 to %d allowed)", ndim, DK_MAXDIM);
    int64_t n = 1;
    for (int i = 0; i < DK_MAXDIM; i++) {
        int64_t d = i < ndim ? shape[i] : 1;
        if (d < 0 || d > DK_MAX_ELEMS) return dh_seterr(e, DH_EINVAL, "tensor: dimension %d is %lld", i, (long long)d);
        t->shape[i] = d;
        n *= d;
        if (n > DK_MAX_ELEMS) return dh_seterr(e, DH_ELIMIT, "tensor: more than 2^40 elements");
    }
    t->ndim = ndim;
    t->n = n;
    return 0;
}

int dk_tensor_alloc(dk_tensor *t, dk_device dev, int ndim, const int64_t *shape, dh_err *e) {
    memset(t, 0, sizeof *t);
    int rc = set_shape(t, ndim, shape, e);
    if (rc) return rc;
    void *p = NULL;
    rc = dk_mem_alloc(dev, (size_t)t->n * sizeof(float), &p, e);
    if (rc) {
        memset(t, 0, sizeof *t);
        return rc;
    }
    t->dev = dev;
    t->data = p;
    t->owns = 1;
    return 0;
}

int dk_tensor_alloc4(dk_tensor *t, dk_device dev, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, dh_err *e) {
    int64_t s[4] = { d0, d1, d2, d3 };
    return dk_tensor_alloc(t, dev, ndim, s, e);
}

void dk_tensor_free(dk_tensor *t) {
    if (!t) return;
    if (t->owns) dk_mem_free(t->dev, t->data);
    memset(t, 0, sizeof *t);
}

/* A tensor in a backend's own layout (dk.h, inference chains) where only
 * NCHW float32 can be read. */
static int opaque_refused(dh_err *e, const char *op, const char *name) {
    return dh_seterr(e, DH_EUNSUPPORTED, "%s: %s is in a backend's own layout (a fused op's kept output)", op, name);
}

int dk_tensor_view(const dk_tensor *t, int ndim, const int64_t *shape, dk_tensor *view, dh_err *e) {
    if (t->fmt > 0) return opaque_refused(e, "view", "the tensor");
    dk_tensor v = *t;
    int rc = set_shape(&v, ndim, shape, e);
    if (rc) return rc;
    if (v.n != t->n) {
        char a[96];
        return dh_seterr(e, DH_EINVAL, "view: %lld elements cannot be viewed as %lld (from %s)", (long long)t->n,
                         (long long)v.n, dk_shape_str(t, a, sizeof a));
    }
    v.owns = 0;
    *view = v;
    return 0;
}

int64_t dk_tensor_rowsize(const dk_tensor *t) { return t->shape[0] > 0 ? t->n / t->shape[0] : 0; }

int dk_tensor_rows(const dk_tensor *t, int64_t start, int64_t count, dk_tensor *view, dh_err *e) {
    if (t->fmt > 0) return opaque_refused(e, "rows", "the tensor");
    if (start < 0 || count < 0 || start + count > t->shape[0])
        return dh_seterr(e, DH_EINVAL, "rows [%lld, %lld) outside a tensor of %lld rows", (long long)start,
                         (long long)(start + count), (long long)t->shape[0]);
    int64_t rs = dk_tensor_rowsize(t);
    dk_tensor v = *t;
    v.shape[0] = count;
    v.n = count * rs;
    v.data = t->data ? t->data + start * rs : NULL;
    v.owns = 0;
    *view = v;
    return 0;
}

const char *dk_shape_str(const dk_tensor *t, char *buf, size_t n) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "(");
    for (int i = 0; i < t->ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (o < n) snprintf(buf + o, n - o, ")");
    return buf;
}

/* ---- argument checks ----------------------------------------------------------------------- */
/* t must exist (data may be NULL only when empty). */
static int need(dh_err *e, const char *op, const char *name, const dk_tensor *t) {
    if (!t) return dh_seterr(e, DH_EINVAL, "%s: %s is missing", op, name);
    if (t->n > 0 && !t->data) return dh_seterr(e, DH_EINVAL, "%s: %s has no data", op, name);
    if (t->fmt > 0) return opaque_refused(e, op, name);
    return 0;
}

static int need_dev(dh_err *e, const char *op, const char *name, const dk_tensor *t, dk_device dev) {
    int rc = need(e, op, name, t);
    if (rc) return rc;
    if (t->dev != dev)
        return dh_seterr(e, DH_EINVAL, "%s: %s is on %s, expected %s", op, name, dk_device_name(t->dev),
                         dk_device_name(dev));
    return 0;
}

/* Shape check: ndim (0 = any) and dimensions (-1 = any). */
static int need_shape(dh_err *e, const char *op, const char *name, const dk_tensor *t, dk_device dev, int ndim,
                      int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int rc = need_dev(e, op, name, t, dev);
    if (rc) return rc;
    int64_t want[4] = { d0, d1, d2, d3 };
    int bad = ndim > 0 && t->ndim != ndim;
    for (int i = 0; i < 4 && !bad; i++)
        if (want[i] >= 0 && t->shape[i] != want[i]) bad = 1;
    if (bad) {
        char a[96], b[96];
        size_t o = 0;
        int nd = ndim > 0 ? ndim : t->ndim;
        o += (size_t)snprintf(b + o, sizeof b - o, "(");
        for (int i = 0; i < nd && o < sizeof b; i++) {
            if (want[i] >= 0)
                o += (size_t)snprintf(b + o, sizeof b - o, i ? ", %lld" : "%lld", (long long)want[i]);
            else
                o += (size_t)snprintf(b + o, sizeof b - o, i ? ", *" : "*");
        }
        if (o < sizeof b) snprintf(b + o, sizeof b - o, ")");
        return dh_seterr(e, DH_EINVAL, "%s: %s has shape %s, expected %s", op, name, dk_shape_str(t, a, sizeof a), b);
    }
    return 0;
}

static int need_n(dh_err *e, const char *op, const char *name, const dk_tensor *t, dk_device dev, int64_t n) {
    int rc = need_dev(e, op, name, t, dev);
    if (rc) return rc;
    if (t->n != n)
        return dh_seterr(e, DH_EINVAL, "%s: %s has %lld elements, expected %lld", op, name, (long long)t->n,
                         (long long)n);
    return 0;
}

#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        int rc_ = (x);                                                                                                 \
        if (rc_) return rc_;                                                                                           \
    } while (0)

/* ---- fill, copy ------------------------------------------------------------------------------- */
int dk_zero(dk_tensor *t, dh_err *e) { return dk_fill(t, 0.0f, e); }

int dk_fill(dk_tensor *t, float v, dh_err *e) {
    TRY(need(e, "fill", "tensor", t));
    return BACKEND(t->dev, dk_fill, t->data, t->n, v, e);
}

int dk_upload(dk_tensor *t, const float *host, int64_t n, dh_err *e) {
    TRY(need(e, "upload", "tensor", t));
    if (n != t->n)
        return dh_seterr(e, DH_EINVAL, "upload: %lld floats into a tensor of %lld", (long long)n, (long long)t->n);
    return dk_mem_upload(t->dev, t->data, host, (size_t)n * sizeof(float), e);
}

int dk_download(const dk_tensor *t, float *host, int64_t n, dh_err *e) {
    TRY(need(e, "download", "tensor", t));
    if (n != t->n)
        return dh_seterr(e, DH_EINVAL, "download: %lld floats from a tensor of %lld", (long long)n, (long long)t->n);
    return dk_mem_download(t->dev, host, t->data, (size_t)n * sizeof(float), e);
}

int dk_copy(dk_tensor *dst, const dk_tensor *src, dh_err *e) {
    TRY(need(e, "copy", "dst", dst));
    TRY(need(e, "copy", "src", src));
    if (dst->n != src->n)
        return dh_seterr(e, DH_EINVAL, "copy: %lld elements into %lld", (long long)src->n, (long long)dst->n);
    size_t bytes = (size_t)src->n * sizeof(float);
    if (bytes == 0) return 0;
    if (src->dev == DK_CPU && dst->dev == DK_CPU) {
        memmove(dst->data, src->data, bytes);
        return 0;
    }
    if (src->dev == DK_CPU) return dk_mem_upload(dst->dev, dst->data, src->data, bytes, e);
    if (dst->dev == DK_CPU) return dk_mem_download(src->dev, dst->data, src->data, bytes, e);
    return CUDA(dk_cuda_memcpy, dst->data, src->data, bytes, 2, e);
}

/* ---- elementwise and reductions ------------------------------------------------------------------ */
int dk_scale(dk_tensor *x, float a, dh_err *e) {
    TRY(need(e, "scale", "x", x));
    return BACKEND(x->dev, dk_scale, x->data, x->n, a, e);
}

int dk_axpby(float a, const dk_tensor *x, float b, dk_tensor *y, dh_err *e) {
    TRY(need(e, "axpby", "x", x));
    TRY(need_n(e, "axpby", "y", y, x->dev, x->n));
    return BACKEND(x->dev, dk_axpby, x->n, a, x->data, b, y->data, e);
}

int dk_mul(const dk_tensor *a, const dk_tensor *b, dk_tensor *out, dh_err *e) {
    TRY(need(e, "mul", "a", a));
    TRY(need_n(e, "mul", "b", b, a->dev, a->n));
    TRY(need_n(e, "mul", "out", out, a->dev, a->n));
    return BACKEND(a->dev, dk_mul, a->n, a->data, b->data, out->data, e);
}

int dk_sum(const dk_tensor *x, double *out, dh_err *e) {
    TRY(need(e, "sum", "x", x));
    return BACKEND(x->dev, dk_sum, x->data, x->n, 0, out, e);
}

int dk_sumsq(const dk_tensor *x, double *out, dh_err *e) {
    TRY(need(e, "sumsq", "x", x));
    return BACKEND(x->dev, dk_sum, x->data, x->n, 1, out, e);
}

/* ---- matrix products --------------------------------------------------------------------------------- */
int dk_sgemm(dk_device dev, int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
             int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, dh_err *e) {
    if (M < 0 || N < 0 || K < 0)
        return dh_seterr(e, DH_EINVAL, "sgemm: negative size (%lld, %lld, %lld)", (long long)M, (long long)N,
                         (long long)K);
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX || lda > INT32_MAX || ldb > INT32_MAX || ldc > INT32_MAX)
        return dh_seterr(e, DH_ELIMIT, "sgemm: dimension beyond 2^31");
    int64_t acols = transA ? M : K, bcols = transB ? K : N;
    if (lda < (acols > 1 ? acols : 1) || ldb < (bcols > 1 ? bcols : 1) || ldc < (N > 1 ? N : 1))
        return dh_seterr(e, DH_EINVAL, "sgemm: leading dimension too small");
    return BACKEND(dev, dk_sgemm, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, e);
}

int dk_matmul(const dk_tensor *A, int transA, const dk_tensor *B, int transB, float alpha, float beta, dk_tensor *C,
              dh_err *e) {
    TRY(need(e, "matmul", "A", A));
    TRY(need_dev(e, "matmul", "B", B, A->dev));
    TRY(need_dev(e, "matmul", "C", C, A->dev));
    int64_t ar = A->shape[0], ac = dk_tensor_rowsize(A);
    int64_t br = B->shape[0], bc = dk_tensor_rowsize(B);
    int64_t M = transA ? ac : ar, K = transA ? ar : ac;
    int64_t K2 = transB ? bc : br, N = transB ? br : bc;
    if (K != K2)
        return dh_seterr(e, DH_EINVAL, "matmul: inner dimensions differ (%lld vs %lld)", (long long)K, (long long)K2);
    if (C->shape[0] != M || dk_tensor_rowsize(C) != N)
        return dh_seterr(e, DH_EINVAL, "matmul: C is (%lld, %lld), expected (%lld, %lld)", (long long)C->shape[0],
                         (long long)dk_tensor_rowsize(C), (long long)M, (long long)N);
    return dk_sgemm(A->dev, transA, transB, M, N, K, alpha, A->data, ac > 0 ? ac : 1, B->data, bc > 0 ? bc : 1, beta,
                    C->data, N > 0 ? N : 1, e);
}

/* ---- fully connected ----------------------------------------------------------------------------------- */
/* x (N, IN ...) and w (OUT, IN) on x's device. */
static int fc_check(const char *op, const dk_tensor *x, const dk_tensor *w, int64_t *N, int64_t *IN, int64_t *OUT,
                    dh_err *e) {
    TRY(need(e, op, "x", x));
    *N = x->shape[0];
    *IN = dk_tensor_rowsize(x);
    TRY(need_shape(e, op, "w", w, x->dev, 2, -1, *IN, -1, -1));
    *OUT = w->shape[0];
    return 0;
}

int dk_fc_forward(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, dk_tensor *y, dh_err *e) {
    const char *op = "fc_forward";
    int64_t N, IN, OUT;
    TRY(fc_check(op, x, w, &N, &IN, &OUT, e));
    dk_device dev = x->dev;
    if (b) TRY(need_n(e, op, "b", b, dev, OUT));
    TRY(need_n(e, op, "y", y, dev, N * OUT));
    /* y (N, OUT) = x (N, IN) w^T */
    TRY(dk_sgemm(dev, 0, 1, N, OUT, IN, 1.0f, x->data, IN ? IN : 1, w->data, IN ? IN : 1, 0.0f, y->data, OUT ? OUT : 1,
                 e));
    if (b) return BACKEND(dev, dk_add_bias, y->data, b->data, N, OUT, 1, e);
    return 0;
}

int dk_fc_backward(const dk_tensor *x, const dk_tensor *w, const dk_tensor *dy, dk_tensor *dx, dk_tensor *dw,
                   dk_tensor *db, dh_err *e) {
    const char *op = "fc_backward";
    int64_t N, IN, OUT;
    TRY(fc_check(op, x, w, &N, &IN, &OUT, e));
    dk_device dev = x->dev;
    TRY(need_n(e, op, "dy", dy, dev, N * OUT));
    TRY(need_n(e, op, "dw", dw, dev, OUT * IN));
    if (dx) TRY(need_n(e, op, "dx", dx, dev, N * IN));
    if (db) TRY(need_n(e, op, "db", db, dev, OUT));
    int64_t li = IN ? IN : 1, lo = OUT ? OUT : 1;
    /* dw (OUT, IN) = dy^T (OUT, N) x (N, IN) */
    TRY(dk_sgemm(dev, 1, 0, OUT, IN, N, 1.0f, dy->data, lo, x->data, li, 0.0f, dw->data, li, e));
    /* dx (N, IN) = dy (N, OUT) w (OUT, IN) */
    if (dx) TRY(dk_sgemm(dev, 0, 0, N, IN, OUT, 1.0f, dy->data, lo, w->data, li, 0.0f, dx->data, li, e));
    if (db) return BACKEND(dev, dk_bias_grad, dy->data, db->data, N, OUT, 1, e);
    return 0;
}

/* ---- convolution ---------------------------------------------------------------------------------------- */
int64_t dk_out_size(int64_t in, int k, int stride, int pad) {
    if (stride < 1 || k < 1 || pad < 0) return 0;
    int64_t span = in + 2 * (int64_t)pad - k;
    if (span < 0) return 0;
    return span / stride + 1;
}

static int conv_check(const char *op, const dk_tensor *x, const dk_tensor *w, const dk_tensor *y, int stride, int pad,
                      dh_err *e) {
    TRY(need_shape(e, op, "input", x, x->dev, 4, -1, -1, -1, -1));
    TRY(need_shape(e, op, "filter", w, x->dev, 4, -1, x->shape[1], -1, -1));
    if (stride < 1 || pad < 0)
        return dh_seterr(e, DH_EINVAL, "%s: stride %d, pad %d (need stride >= 1, pad >= 0)", op, stride, pad);
    if (w->shape[2] > 1 << 20 || w->shape[3] > 1 << 20) return dh_seterr(e, DH_EINVAL, "%s: kernel too large", op);
    int64_t OH = dk_out_size(x->shape[2], (int)w->shape[2], stride, pad);
    int64_t OW = dk_out_size(x->shape[3], (int)w->shape[3], stride, pad);
    if (OH < 1 || OW < 1)
        return dh_seterr(e, DH_EINVAL, "%s: kernel %lldx%lld does not fit a %lldx%lld input with pad %d", op,
                         (long long)w->shape[2], (long long)w->shape[3], (long long)x->shape[2], (long long)x->shape[3],
                         pad);
    TRY(need_shape(e, op, "output", y, x->dev, 4, x->shape[0], w->shape[0], OH, OW));
    return 0;
}

int dk_conv2d_forward(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad, dk_tensor *y,
                      dh_err *e) {
    TRY(need(e, "conv2d_forward", "x", x));
    TRY(conv_check("conv2d_forward", x, w, y, stride, pad, e));
    if (b) TRY(need_n(e, "conv2d_forward", "bias", b, x->dev, w->shape[0]));
    if (x->n == 0 || y->n == 0) return dk_fill(y, 0.0f, e);
    return BACKEND(x->dev, dk_conv2d_forward, x, w, b, stride, pad, y, e);
}

int dk_conv2d_backward_data(const dk_tensor *dy, const dk_tensor *w, int stride, int pad, dk_tensor *dx, dh_err *e) {
    TRY(need(e, "conv2d_backward_data", "dx", dx));
    TRY(conv_check("conv2d_backward_data", dx, w, dy, stride, pad, e));
    if (dx->n == 0 || dy->n == 0) return dk_fill(dx, 0.0f, e);
    return BACKEND(dx->dev, dk_conv2d_backward_data, dy, w, stride, pad, dx, e);
}

int dk_conv2d_backward_filter(const dk_tensor *x, const dk_tensor *dy, int stride, int pad, dk_tensor *dw, dh_err *e) {
    TRY(need(e, "conv2d_backward_filter", "x", x));
    TRY(conv_check("conv2d_backward_filter", x, dw, dy, stride, pad, e));
    if (x->n == 0 || dy->n == 0) return dk_fill(dw, 0.0f, e);
    return BACKEND(x->dev, dk_conv2d_backward_filter, x, dy, stride, pad, dw, e);
}

int dk_conv2d_backward_bias(const dk_tensor *dy, dk_tensor *db, dh_err *e) {
    TRY(need_shape(e, "conv2d_backward_bias", "dy", dy, dy ? dy->dev : DK_CPU, 4, -1, -1, -1, -1));
    TRY(need_n(e, "conv2d_backward_bias", "db", db, dy->dev, dy->shape[1]));
    return BACKEND(dy->dev, dk_bias_grad, dy->data, db->data, dy->shape[0], dy->shape[1], dy->shape[2] * dy->shape[3],
                   e);
}

/* ---- batch normalisation ------------------------------------------------------------------------------------ */
static int bn_check(const char *op, const dk_tensor *x, dh_err *e) {
    TRY(need(e, op, "x", x));
    if (x->ndim < 2) return dh_seterr(e, DH_EINVAL, "%s: x needs at least 2 dimensions (N, C)", op);
    return 0;
}

/* bn_check, then the forward ops' per-channel parameters (C each). */
static int bn_check_params(const char *op, const dk_tensor *x, const dk_tensor *gamma, const dk_tensor *beta,
                           const dk_tensor *running_mean, const dk_tensor *running_var, dh_err *e) {
    TRY(bn_check(op, x, e));
    dk_device d = x->dev;
    int64_t C = x->shape[1];
    TRY(need_n(e, op, "gamma", gamma, d, C));
    TRY(need_n(e, op, "beta", beta, d, C));
    TRY(need_n(e, op, "running_mean", running_mean, d, C));
    TRY(need_n(e, op, "running_var", running_var, d, C));
    return 0;
}

int dk_batchnorm_forward_train(const dk_tensor *x, const dk_tensor *gamma, const dk_tensor *beta,
                               dk_tensor *running_mean, dk_tensor *running_var, float momentum, float eps, dk_tensor *y,
                               dk_tensor *save_mean, dk_tensor *save_invstd, dh_err *e) {
    const char *op = "batchnorm_forward_train";
    TRY(bn_check_params(op, x, gamma, beta, running_mean, running_var, e));
    dk_device d = x->dev;
    int64_t C = x->shape[1];
    TRY(need_n(e, op, "save_mean", save_mean, d, C));
    TRY(need_n(e, op, "save_invstd", save_invstd, d, C));
    TRY(need_n(e, op, "y", y, d, x->n));
    if (!(eps >= 1e-5f)) return dh_seterr(e, DH_EINVAL, "%s: eps %g below 1e-5", op, eps);
    if (!(momentum >= 0.0f && momentum <= 1.0f))
        return dh_seterr(e, DH_EINVAL, "%s: momentum %g outside [0, 1]", op, momentum);
    if (x->n == 0) return dh_seterr(e, DH_EINVAL, "%s: empty batch", op);
    /* The running variance is the unbiased one, M / (M - 1): one value per
     * channel has none (cuDNN would divide by zero; PyTorch refuses too). */
    if (C > 0 && x->n / C < 2)
        return dh_seterr(e, DH_EINVAL, "%s: one value per channel (N*H*W = 1): training needs at least 2", op);
    return BACKEND(d, dk_bn_forward_train, x, gamma->data, beta->data, running_mean->data, running_var->data, momentum,
                   eps, y, save_mean->data, save_invstd->data, e);
}

int dk_batchnorm_forward_infer(const dk_tensor *x, const dk_tensor *gamma, const dk_tensor *beta,
                               const dk_tensor *running_mean, const dk_tensor *running_var, float eps, dk_tensor *y,
                               dh_err *e) {
    const char *op = "batchnorm_forward_infer";
    TRY(bn_check_params(op, x, gamma, beta, running_mean, running_var, e));
    dk_device d = x->dev;
    TRY(need_n(e, op, "y", y, d, x->n));
    if (!(eps >= 1e-5f)) return dh_seterr(e, DH_EINVAL, "%s: eps %g below 1e-5", op, eps);
    if (x->n == 0) return 0;
    return BACKEND(d, dk_bn_forward_infer, x, gamma->data, beta->data, running_mean->data, running_var->data, eps, y,
                   e);
}

int dk_batchnorm_backward(const dk_tensor *x, const dk_tensor *dy, const dk_tensor *gamma, const dk_tensor *save_mean,
                          const dk_tensor *save_invstd, dk_tensor *dx, dk_tensor *dgamma, dk_tensor *dbeta, dh_err *e) {
    const char *op = "batchnorm_backward";
    TRY(bn_check(op, x, e));
    dk_device d = x->dev;
    int64_t C = x->shape[1];
    TRY(need_n(e, op, "dy", dy, d, x->n));
    TRY(need_n(e, op, "dx", dx, d, x->n));
    TRY(need_n(e, op, "gamma", gamma, d, C));
    TRY(need_n(e, op, "save_mean", save_mean, d, C));
    TRY(need_n(e, op, "save_invstd", save_invstd, d, C));
    TRY(need_n(e, op, "dgamma", dgamma, d, C));
    TRY(need_n(e, op, "dbeta", dbeta, d, C));
    if (x->n == 0) return dh_seterr(e, DH_EINVAL, "%s: empty batch", op);
    return BACKEND(d, dk_bn_backward, x, dy, gamma->data, save_mean->data, save_invstd->data, dx, dgamma->data,
                   dbeta->data, e);
}

/* ---- activations ---------------------------------------------------------------------------------------------- */
static int unary(const char *op, int code, const dk_tensor *x, dk_tensor *y, dh_err *e) {
    TRY(need(e, op, "x", x));
    TRY(need_n(e, op, "y", y, x->dev, x->n));
    return BACKEND(x->dev, dk_unary, code, x->data, y->data, x->n, e);
}

static int unary_grad(const char *op, int code, const dk_tensor *a, const dk_tensor *dy, dk_tensor *dx, dh_err *e) {
    TRY(need(e, op, "a", a));
    TRY(need_n(e, op, "dy", dy, a->dev, a->n));
    TRY(need_n(e, op, "dx", dx, a->dev, a->n));
    return BACKEND(a->dev, dk_unary_grad, code, a->data, dy->data, dx->data, a->n, e);
}

int dk_relu_forward(const dk_tensor *x, dk_tensor *y, dh_err *e) { return unary("relu_forward", DK_OP_RELU, x, y, e); }
int dk_relu_backward(const dk_tensor *y, const dk_tensor *dy, dk_tensor *dx, dh_err *e) {
    return unary_grad("relu_backward", DK_OP_RELU, y, dy, dx, e);
}
int dk_gelu_forward(const dk_tensor *x, dk_tensor *y, dh_err *e) { return unary("gelu_forward", DK_OP_GELU, x, y, e); }
int dk_gelu_backward(const dk_tensor *x, const dk_tensor *dy, dk_tensor *dx, dh_err *e) {
    return unary_grad("gelu_backward", DK_OP_GELU, x, dy, dx, e);
}
int dk_sigmoid_forward(const dk_tensor *x, dk_tensor *y, dh_err *e) {
    return unary("sigmoid_forward", DK_OP_SIGMOID, x, y, e);
}
int dk_sigmoid_backward(const dk_tensor *y, const dk_tensor *dy, dk_tensor *dx, dh_err *e) {
    return unary_grad("sigmoid_backward", DK_OP_SIGMOID, y, dy, dx, e);
}
int dk_tanh_forward(const dk_tensor *x, dk_tensor *y, dh_err *e) { return unary("tanh_forward", DK_OP_TANH, x, y, e); }
int dk_tanh_backward(const dk_tensor *y, const dk_tensor *dy, dk_tensor *dx, dh_err *e) {
    return unary_grad("tanh_backward", DK_OP_TANH, y, dy, dx, e);
}

/* ---- pooling ---------------------------------------------------------------------------------------------------- */
static int pool_check(const char *op, const dk_tensor *x, int k, int stride, int pad, const dk_tensor *y, dh_err *e) {
    TRY(need_shape(e, op, "input", x, x ? x->dev : DK_CPU, 4, -1, -1, -1, -1));
    if (k < 1 || stride < 1 || pad < 0 || pad >= k)
        return dh_seterr(e, DH_EINVAL, "%s: window %d, stride %d, pad %d (need k >= 1, stride >= 1, 0 <= pad < k)", op,
                         k, stride, pad);
    int64_t OH = dk_out_size(x->shape[2], k, stride, pad), OW = dk_out_size(x->shape[3], k, stride, pad);
    if (OH < 1 || OW < 1)
        return dh_seterr(e, DH_EINVAL, "%s: window %d does not fit a %lldx%lld input", op, k, (long long)x->shape[2],
                         (long long)x->shape[3]);
    return need_shape(e, op, "output", y, x->dev, 4, x->shape[0], x->shape[1], OH, OW);
}

int dk_maxpool_forward(const dk_tensor *x, int k, int stride, int pad, dk_tensor *y, dh_err *e) {
    TRY(pool_check("maxpool_forward", x, k, stride, pad, y, e));
    if (y->n == 0) return 0;
    return BACKEND(x->dev, dk_pool_forward, 0, x, k, stride, pad, y, e);
}

/* A fused op's normalisation tail: the parameters of C channels, a known activation. */
static int bn_act_check(const char *op, const dk_tensor *v, const dk_bn_act *bn, dh_err *e) {
    TRY(bn_check_params(op, v, bn->gamma, bn->beta, bn->mean, bn->var, e));
    if (bn->act != DK_ACT_NONE && bn->act != DK_ACT_RELU && bn->act != DK_ACT_GELU)
        return dh_seterr(e, DH_EINVAL, "%s: unknown activation %d", op, bn->act);
    if (!(bn->eps >= 1e-5f)) return dh_seterr(e, DH_EINVAL, "%s: eps %g below 1e-5", op, bn->eps);
    return 0;
}

/* A fused op's input x (maybe a kept output, dk.h) and output y (maybe
 * DK_FMT_KEEP, or 0) as plain views for the shape checks. A y in a
 * backend's layout is refused: an output is either asked to keep or not. */
static int chain_views(const char *op, const dk_tensor *x, const dk_tensor *y, dk_tensor *xp, dk_tensor *yp,
                       dh_err *e) {
    TRY(need(e, op, "y", y));
    if (!x) return need(e, op, "x", x);
    *xp = *x;
    *yp = *y;
    xp->fmt = yp->fmt = 0;
    return need(e, op, "x", xp);
}

/* y = bn's tail applied to v (the composition's last steps). */
static int bn_act_apply(const dk_tensor *v, const dk_bn_act *bn, dk_tensor *y, dh_err *e) {
    TRY(dk_batchnorm_forward_infer(v, bn->gamma, bn->beta, bn->mean, bn->var, bn->eps, y, e));
    if (bn->act == DK_ACT_RELU) return dk_relu_forward(y, y, e);
    if (bn->act == DK_ACT_GELU) return dk_gelu_forward(y, y, e);
    return 0;
}

int dk_conv2d_pool_forward(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad, int relu,
                           int avg, int pk, int ps, int pp, const dk_bn_act *bn, dk_tensor *t, dk_tensor *p,
                           dk_tensor *y, dh_err *e) {
    const char *op = "conv2d_pool_forward";
    dk_tensor xp, yp; /* x and y as their shapes, for the checks (dk.h: inference chains) */
    TRY(chain_views(op, x, y, &xp, &yp, e));
    TRY(conv_check(op, &xp, w, t, stride, pad, e));
    if (b) TRY(need_n(e, op, "bias", b, x->dev, w->shape[0]));
    TRY(pool_check(op, t, pk, ps, pp, &yp, e));
    if (bn) {
        TRY(bn_act_check(op, &yp, bn, e));
        TRY(need_shape(e, op, "p", p, x->dev, 4, y->shape[0], y->shape[1], y->shape[2], y->shape[3]));
    }
    if (x->dev == DK_CPU && x->n > 0 && y->n > 0) {
        int done = 0, rc = dk_conv2d_pool_forward_cpu(x, w, b, stride, pad, relu, avg, pk, ps, pp, bn, t, y, &done, e);
        if (done) return rc;
    }
    if (x->fmt > 0) return opaque_refused(e, op, "x");
    y->fmt = 0;
    TRY(dk_conv2d_forward(x, w, b, stride, pad, t, e));
    if (relu) TRY(dk_relu_forward(t, t, e));
    dk_tensor *q = bn ? p : y;
    TRY(avg ? dk_avgpool_forward(t, pk, ps, pp, q, e) : dk_maxpool_forward(t, pk, ps, pp, q, e));
    return bn ? bn_act_apply(p, bn, y, e) : 0;
}

int dk_conv2d_bn_forward(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,
                         const dk_bn_act *bn, dk_tensor *t, dk_tensor *y, dh_err *e) {
    const char *op = "conv2d_bn_forward";
    dk_tensor xp, yp;
    TRY(chain_views(op, x, y, &xp, &yp, e));
    TRY(conv_check(op, &xp, w, t, stride, pad, e));
    if (b) TRY(need_n(e, op, "bias", b, x->dev, w->shape[0]));
    if (!bn) return dh_seterr(e, DH_EINVAL, "%s: no normalisation", op);
    TRY(bn_act_check(op, t, bn, e));
    TRY(need_shape(e, op, "y", &yp, x->dev, 4, t->shape[0], t->shape[1], t->shape[2], t->shape[3]));
    if (x->dev == DK_CPU && x->n > 0 && y->n > 0) {
        int done = 0, rc = dk_conv2d_bn_forward_cpu(x, w, b, stride, pad, bn, t, y, &done, e);
        if (done) return rc;
    }
    if (x->fmt > 0) return opaque_refused(e, op, "x");
    y->fmt = 0;
    TRY(dk_conv2d_forward(x, w, b, stride, pad, t, e));
    return bn_act_apply(t, bn, y, e);
}

int dk_maxpool_backward(const dk_tensor *x, const dk_tensor *y, const dk_tensor *dy, int k, int stride, int pad,
                        dk_tensor *dx, dh_err *e) {
    TRY(pool_check("maxpool_backward", x, k, stride, pad, dy, e));
    TRY(need_n(e, "maxpool_backward", "y", y, x->dev, dy->n));
    TRY(need_n(e, "maxpool_backward", "dx", dx, x->dev, x->n));
    if (x->n == 0) return 0;
    return BACKEND(x->dev, dk_maxpool_backward, x, y, dy, k, stride, pad, dx, e);
}

int dk_avgpool_forward(const dk_tensor *x, int k, int stride, int pad, dk_tensor *y, dh_err *e) {
    TRY(pool_check("avgpool_forward", x, k, stride, pad, y, e));
    if (y->n == 0) return 0;
    return BACKEND(x->dev, dk_pool_forward, 1, x, k, stride, pad, y, e);
}

int dk_avgpool_backward(const dk_tensor *dy, int k, int stride, int pad, dk_tensor *dx, dh_err *e) {
    TRY(pool_check("avgpool_backward", dx, k, stride, pad, dy, e));
    if (dx->n == 0) return 0;
    return BACKEND(dx->dev, dk_avgpool_backward, dy, k, stride, pad, dx, e);
}

int dk_gap_forward(const dk_tensor *x, dk_tensor *y, dh_err *e) {
    TRY(need_shape(e, "gap_forward", "x", x, x ? x->dev : DK_CPU, 4, -1, -1, -1, -1));
    int64_t NC = x->shape[0] * x->shape[1], P = x->shape[2] * x->shape[3];
    TRY(need_n(e, "gap_forward", "y", y, x->dev, NC));
    if (P == 0) return dh_seterr(e, DH_EINVAL, "gap_forward: empty spatial size");
    if (NC == 0) return 0;
    return BACKEND(x->dev, dk_gap_forward, x->data, y->data, NC, P, e);
}

int dk_gap_backward(const dk_tensor *dy, dk_tensor *dx, dh_err *e) {
    TRY(need_shape(e, "gap_backward", "dx", dx, dx ? dx->dev : DK_CPU, 4, -1, -1, -1, -1));
    int64_t NC = dx->shape[0] * dx->shape[1], P = dx->shape[2] * dx->shape[3];
    TRY(need_n(e, "gap_backward", "dy", dy, dx->dev, NC));
    if (P == 0) return dh_seterr(e, DH_EINVAL, "gap_backward: empty spatial size");
    if (NC == 0) return 0;
    return BACKEND(dx->dev, dk_gap_backward, dy->data, dx->data, NC, P, e);
}

/* ---- dropout ------------------------------------------------------------------------------------------------------ */
int dk_dropout_forward(const dk_tensor *x, float p, uint64_t seed, uint64_t offset, dk_tensor *y, dk_tensor *mask,
                       dh_err *e) {
    TRY(need(e, "dropout_forward", "x", x));
    TRY(need_n(e, "dropout_forward", "y", y, x->dev, x->n));
    TRY(need_n(e, "dropout_forward", "mask", mask, x->dev, x->n));
    if (!(p >= 0.0f && p < 1.0f)) return dh_seterr(e, DH_EINVAL, "dropout: p = %g outside [0, 1)", p);
    if (x->n == 0) return 0;
    return BACKEND(x->dev, dk_dropout_forward, x->data, p, seed, offset, y->data, mask->data, x->n, e);
}

int dk_dropout_backward(const dk_tensor *dy, const dk_tensor *mask, dk_tensor *dx, dh_err *e) {
    return dk_mul(dy, mask, dx, e);
}

/* ---- softmax ------------------------------------------------------------------------------------------------------ */
int dk_softmax_forward(const dk_tensor *logits, dk_tensor *probs, dh_err *e) {
    TRY(need(e, "softmax", "logits", logits));
    TRY(need_n(e, "softmax", "probs", probs, logits->dev, logits->n));
    int64_t N = logits->shape[0], K = dk_tensor_rowsize(logits);
    if (N == 0) return 0;
    if (K == 0) return dh_seterr(e, DH_EINVAL, "softmax: rows of 0 classes");
    return BACKEND(logits->dev, dk_softmax, logits->data, probs->data, N, K, e);
}

int dk_softmax_xent(const dk_tensor *logits, const int32_t *labels, float smoothing, float grad_scale, double *loss_out,
                    int64_t *correct_out, dk_tensor *dlogits, dh_err *e) {
    const char *op = "softmax_xent";
    TRY(need(e, op, "logits", logits));
    int64_t N = logits->shape[0], K = dk_tensor_rowsize(logits);
    if (dlogits) TRY(need_n(e, op, "dlogits", dlogits, logits->dev, logits->n));
    if (!(smoothing >= 0.0f && smoothing < 1.0f))
        return dh_seterr(e, DH_EINVAL, "%s: label smoothing %g outside [0, 1)", op, smoothing);
    if (N > 0 && K == 0) return dh_seterr(e, DH_EINVAL, "%s: rows of 0 classes", op);
    if (N > 0 && !labels) return dh_seterr(e, DH_EINVAL, "%s: labels missing", op);
    if (N == 0) {
        if (loss_out) *loss_out = 0;
        if (correct_out) *correct_out = 0;
        return 0;
    }
    return BACKEND(logits->dev, dk_softmax_xent, logits->data, labels, N, K, smoothing, grad_scale, loss_out,
                   correct_out, dlogits ? dlogits->data : NULL, e);
}

/* ---- SGD ------------------------------------------------------------------------------------------------------------ */
int dk_sgd_step(dk_tensor *param, const dk_tensor *grad, dk_tensor *velocity, float lr, float momentum,
                float weight_decay, int nesterov, dh_err *e) {
    const char *op = "sgd_step";
    TRY(need(e, op, "param", param));
    TRY(need_n(e, op, "grad", grad, param->dev, param->n));
    if (momentum != 0.0f) TRY(need_n(e, op, "velocity", velocity, param->dev, param->n));
    if (!(momentum >= 0.0f) || !isfinite(lr) || !isfinite(weight_decay))
        return dh_seterr(e, DH_EINVAL, "%s: bad hyper-parameters (lr %g, momentum %g, weight decay %g)", op, lr,
                         momentum, weight_decay);
    if (nesterov && momentum == 0.0f) return dh_seterr(e, DH_EINVAL, "%s: Nesterov needs momentum > 0", op);
    if (param->n == 0) return 0;
    return BACKEND(param->dev, dk_sgd_step, param->data, grad->data, momentum != 0.0f ? velocity->data : NULL, param->n,
                   lr, momentum, weight_decay, nesterov, e);
}

/* ---- schedules --------------------------------------------------------------------------------------------------------- */
int dk_schedule_parse(const char *s, double base, dk_schedule *out, dh_err *e) {
    dk_schedule sc;
    memset(&sc, 0, sizeof sc);
    sc.base = base;
    sc.factor = 0.1;
    if (!s) s = "const";
    const char *colon = strchr(s, ':');
    size_t nlen = colon ? (size_t)(colon - s) : strlen(s);
    const char *args = colon ? colon + 1 : NULL;
    if (nlen == 5 && strncmp(s, "const", 5) == 0) {
        sc.kind = DK_SCHED_CONST;
        if (args) return dh_seterr(e, DH_EINVAL, "schedule '%s': const takes no arguments", s);
    } else if (nlen == 4 && strncmp(s, "step", 4) == 0) {
        sc.kind = DK_SCHED_STEP;
        const char *p = args;
        while (p && *p) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 0 || v > 1000000 || (*end && *end != ','))
                return dh_seterr(e, DH_EINVAL, "schedule '%s': expected step:E1,E2,... with epoch numbers", s);
            if (sc.ndrops == DK_SCHED_MAXDROPS)
                return dh_seterr(e, DH_EINVAL, "schedule '%s': more than %d drops", s, DK_SCHED_MAXDROPS);
            if (sc.ndrops > 0 && v <= sc.drops[sc.ndrops - 1])
                return dh_seterr(e, DH_EINVAL, "schedule '%s': drop epochs must increase", s);
            sc.drops[sc.ndrops++] = (int)v;
            p = *end ? end + 1 : end;
            if (*end == ',' && !*p) return dh_seterr(e, DH_EINVAL, "schedule '%s': trailing comma", s);
        }
    } else if ((nlen == 8 && strncmp(s, "onecycle", 8) == 0) || (nlen == 6 && strncmp(s, "cosine", 6) == 0)) {
        sc.kind = nlen == 8 ? DK_SCHED_ONECYCLE : DK_SCHED_COSINE;
        sc.warmup = nlen == 8 ? 0.2 : 0.05;
        sc.final = 0.0;
        if (args) {
            char *end;
            double w = strtod(args, &end);
            if (end == args || !(w >= 0.0 && w < 1.0) || (*end && *end != ':'))
                return dh_seterr(e, DH_EINVAL, "schedule '%s': warm-up fraction must be in [0, 1)", s);
            sc.warmup = w;
            if (*end == ':') {
                const char *q = end + 1;
                double f = strtod(q, &end);
                if (end == q || *end || !(f >= 0.0 && f <= 1.0))
                    return dh_seterr(e, DH_EINVAL, "schedule '%s': final fraction must be in [0, 1]", s);
                sc.final = f;
            }
        }
    } else {
        return dh_seterr(e, DH_EINVAL,
                         "unknown schedule '%s' (expected const, step[:E1,E2..], "
                         "onecycle[:WARMUP[:FINAL]] or cosine[:WARMUP[:FINAL]])",
                         s);
    }
    *out = sc;
    return 0;
}

double dk_schedule_lr(const dk_schedule *s, int64_t step, int64_t total, int64_t steps_per_epoch) {
    if (step < 0) step = 0;
    switch (s->kind) {
    case DK_SCHED_CONST: return s->base;
    case DK_SCHED_STEP: {
        int64_t epoch = steps_per_epoch > 0 ? step / steps_per_epoch : 0;
        double lr = s->base;
        for (int i = 0; i < s->ndrops; i++)
            if (s->drops[i] <= epoch) lr *= s->factor;
        return lr;
    }
    case DK_SCHED_ONECYCLE:
    case DK_SCHED_COSINE: {
        if (total < 1) total = 1;
        double w = s->warmup * (double)total;
        if ((double)step < w) return s->base * ((double)step + 1.0) / ceil(w);
        double t = total - w > 0 ? ((double)step - w) / ((double)total - w) : 1.0;
        if (t > 1.0) t = 1.0;
        if (t < 0.0) t = 0.0;
        double f = s->kind == DK_SCHED_ONECYCLE ? 1.0 - t : 0.5 * (1.0 + cos(M_PI * t));
        return s->base * (s->final + (1.0 - s->final) * f);
    }
    }
    return s->base;
}

/* ---- random numbers and initialisation ------------------------------------------------------------------------------------ */
int dk_rand_uniform(dk_tensor *t, float lo, float hi, uint64_t seed, uint64_t offset, dh_err *e) {
    TRY(need(e, "rand_uniform", "tensor", t));
    if (t->n == 0) return 0;
    return BACKEND(t->dev, dk_rand_uniform, t->data, t->n, lo, hi, seed, offset, e);
}

int dk_rand_normal(dk_tensor *t, float mean, float std, uint64_t seed, uint64_t offset, dh_err *e) {
    TRY(need(e, "rand_normal", "tensor", t));
    if (t->n == 0) return 0;
    float *h = t->dev == DK_CPU ? t->data : dh_malloc(e, (size_t)t->n, sizeof(float));
    if (!h) return e ? e->code : DH_ENOMEM;
    for (int64_t i = 0; i < t->n; i++) h[i] = mean + std * dh_rng_normal(seed, offset + (uint64_t)i);
    int rc = 0;
    if (t->dev != DK_CPU) {
        rc = dk_upload(t, h, t->n, e);
        free(h);
    }
    return rc;
}

int dk_init_he(dk_tensor *w, int64_t fan_in, uint64_t seed, dh_err *e) {
    if (fan_in < 1) return dh_seterr(e, DH_EINVAL, "init_he: fan_in %lld", (long long)fan_in);
    return dk_rand_normal(w, 0.0f, (float)sqrt(2.0 / (double)fan_in), seed, 0, e);
}

int dk_init_xavier(dk_tensor *w, int64_t fan_in, int64_t fan_out, uint64_t seed, dh_err *e) {
    if (fan_in < 1 || fan_out < 1)
        return dh_seterr(e, DH_EINVAL, "init_xavier: fan_in %lld, fan_out %lld", (long long)fan_in, (long long)fan_out);
    float a = (float)sqrt(6.0 / (double)(fan_in + fan_out));
    return dk_rand_uniform(w, -a, a, seed, 0, e);
}

void dk_permutation(int32_t *out, int64_t n, uint64_t seed, uint64_t stream) {
    for (int64_t i = 0; i < n; i++) out[i] = (int32_t)i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = dh_rng_below(seed, (stream << 32) + (uint64_t)i, (uint32_t)(i + 1));
        int32_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}

/* ---- images -------------------------------------------------------------------------------------------------------------------- */
int dk_images_augment(const uint8_t *src, int64_t S, int C, int H, int W, const int32_t *idx, int pad, int flip,
                      const float *mean, const float *std, uint64_t seed, uint64_t offset, dk_tensor *out, dh_err *e) {
    const char *op = "images_augment";
    TRY(need(e, op, "out", out));
    if (C < 1 || C > DK_MAXCHAN || H < 1 || W < 1 || S < 0)
        return dh_seterr(e, DH_EINVAL, "%s: bad image geometry (%d, %d, %d) (at most %d channels)", op, C, H, W,
                         DK_MAXCHAN);
    int reflect = flip >= 0 && (flip & DK_PAD_REFLECT);
    if (reflect) flip &= ~DK_PAD_REFLECT;
    if (flip < DK_FLIP_NONE || flip > DK_FLIP_ALL) return dh_seterr(e, DH_EINVAL, "%s: flip mode %d", op, flip);
    if (pad < 0 || pad > H || pad > W) return dh_seterr(e, DH_EINVAL, "%s: crop padding %d", op, pad);
    if (reflect && (pad >= H || pad >= W))
        return dh_seterr(e, DH_EINVAL, "%s: crop padding %d (reflection needs less than the image size %dx%d)", op, pad,
                         H, W);
    if (reflect && pad > 0) flip |= DK_PAD_REFLECT; /* pad 0: nothing is outside, the plain path */
    int64_t N = out->shape[0];
    TRY(need_shape(e, op, "out", out, out->dev, 4, N, C, H, W));
    if (!idx && N > S) return dh_seterr(e, DH_EINVAL, "%s: %lld rows from %lld images", op, (long long)N, (long long)S);
    if (!mean || !std) return dh_seterr(e, DH_EINVAL, "%s: mean/std missing", op);
    for (int c = 0; c < C; c++)
        if (!(std[c] > 0.0f) || !isfinite(mean[c]))
            return dh_seterr(e, DH_EINVAL, "%s: channel %d: bad normalisation (mean %g, std %g)", op, c, mean[c],
                             std[c]);
    if (N == 0) return 0;
    if (!src) return dh_seterr(e, DH_EINVAL, "%s: source images missing", op);
    return BACKEND(out->dev, dk_images_augment, src, S, C, H, W, idx, pad, flip, mean, std, seed, offset, out, e);
}

int dk_gather_i32(dk_device dev, const int32_t *src, const int32_t *idx, int64_t n, int32_t *out, dh_err *e) {
    if (n < 0) return dh_seterr(e, DH_EINVAL, "gather_i32: n = %lld", (long long)n);
    if (n == 0) return 0;
    if (!src || !idx || !out) return dh_seterr(e, DH_EINVAL, "gather_i32: missing array");
    return BACKEND(dev, dk_gather_i32, src, idx, n, out, e);
}
