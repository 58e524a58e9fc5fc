/* dk_cuda.cu — the CUDA backend of the kernel library.
 *
 * cuBLAS for matrix products, cuDNN for convolution and batch
 * normalisation, own kernels for the rest (pooling included, so that
 * padding and tie-breaking match the CPU reference exactly). Everything
 * runs on the default stream; errors become DH_EDEVICE, never an exit.
 * Per-element arithmetic comes from dk_elem.h, shared with the CPU.
 */
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <cudnn.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include "dk_impl.h"
#include "dk_elem.h"

/* ---- state and error handling ----------------------------------------------------------- */
static cublasHandle_t g_cublas;
static cudnnHandle_t g_cudnn;
static int g_init;
static int g_tf32;
static int g_avail = -1;
static void *g_ws; /* cuDNN workspace */
static size_t g_ws_bytes;
static void *g_scratch; /* reductions, per-row results */
static size_t g_scratch_bytes;

#define CU(call)                                                                                                       \
    do {                                                                                                               \
        cudaError_t err_ = (call);                                                                                     \
        if (err_ != cudaSuccess) return dh_seterr(e, DH_EDEVICE, "CUDA: %s: %s", #call, cudaGetErrorString(err_));     \
    } while (0)
#define CUBLAS(call)                                                                                                   \
    do {                                                                                                               \
        cublasStatus_t st_ = (call);                                                                                   \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                                              \
            return dh_seterr(e, DH_EDEVICE, "cuBLAS: %s: %s", #call, cublasGetStatusString(st_));                      \
    } while (0)
#define CUDNN(call)                                                                                                    \
    do {                                                                                                               \
        cudnnStatus_t st_ = (call);                                                                                    \
        if (st_ != CUDNN_STATUS_SUCCESS)                                                                               \
            return dh_seterr(e, DH_EDEVICE, "cuDNN: %s: %s", #call, cudnnGetErrorString(st_));                         \
    } while (0)
#define LAUNCHED() CU(cudaGetLastError())
#define TRYC(x)                                                                                                        \
    do {                                                                                                               \
        int rc_ = (x);                                                                                                 \
        if (rc_) return rc_;                                                                                           \
    } while (0)

static const int TPB = 256;
static unsigned blocks_for(int64_t n) {
    int64_t b = (n + TPB - 1) / TPB;
    if (b < 1) b = 1;
    if (b > (1 << 20)) b = 1 << 20; /* grid-stride loops cover the rest */
    return (unsigned)b;
}
#define GRID_LOOP(i, n)                                                                                                \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)

int dk_cuda_available_impl(void) {
    if (g_avail < 0) {
        int n = 0;
        g_avail = (cudaGetDeviceCount(&n) == cudaSuccess && n > 0) ? 1 : 0;
        cudaGetLastError(); /* clear a "no device" error */
    }
    return g_avail;
}

void dk_cuda_set_tf32(int on) {
    g_tf32 = on ? 1 : 0;
    if (g_init) cublasSetMathMode(g_cublas, g_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
}

int dk_cuda_init(dh_err *e) {
    if (g_init) return 0;
    if (!dk_cuda_available_impl()) return dh_seterr(e, DH_EDEVICE, "no CUDA device available");
    CU(cudaSetDevice(0));
    CUBLAS(cublasCreate(&g_cublas));
    cudnnStatus_t st = cudnnCreate(&g_cudnn);
    if (st != CUDNN_STATUS_SUCCESS) {
        cublasDestroy(g_cublas);
        return dh_seterr(e, DH_EDEVICE, "cuDNN: cudnnCreate: %s", cudnnGetErrorString(st));
    }
    const char *tf = getenv("DH_TF32");
    if (tf && strcmp(tf, "1") == 0) g_tf32 = 1;
    g_init = 1;
    dk_cuda_set_tf32(g_tf32);
    return 0;
}

void dk_cuda_shutdown(void) {
    if (!g_init) return;
    cudaFree(g_ws);
    g_ws = NULL;
    g_ws_bytes = 0;
    cudaFree(g_scratch);
    g_scratch = NULL;
    g_scratch_bytes = 0;
    cudnnDestroy(g_cudnn);
    cublasDestroy(g_cublas);
    g_init = 0;
}

int dk_cuda_sync(dh_err *e) {
    CU(cudaDeviceSynchronize());
    CU(cudaGetLastError());
    return 0;
}

void *dk_cuda_cublas(void) { return g_init ? (void *)g_cublas : NULL; }
void *dk_cuda_cudnn(void) { return g_init ? (void *)g_cudnn : NULL; }

static int need_init(dh_err *e) {
    if (!g_init) return dh_seterr(e, DH_EDEVICE, "CUDA backend used before dk_init(DK_CUDA)");
    return 0;
}

int dk_cuda_malloc(size_t bytes, void **out, dh_err *e) {
    *out = NULL;
    TRYC(need_init(e));
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
        cudaGetLastError();
        return dh_seterr(e, err == cudaErrorMemoryAllocation ? DH_ENOMEM : DH_EDEVICE, "CUDA: allocating %zu bytes: %s",
                         bytes, cudaGetErrorString(err));
    }
    err = cudaMemset(p, 0, bytes);
    if (err != cudaSuccess) {
        cudaFree(p);
        return dh_seterr(e, DH_EDEVICE, "CUDA: memset: %s", cudaGetErrorString(err));
    }
    *out = p;
    return 0;
}

void dk_cuda_free(void *p) {
    if (p) cudaFree(p);
}

int dk_cuda_memcpy(void *dst, const void *src, size_t bytes, int kind, dh_err *e) {
    TRYC(need_init(e));
    cudaMemcpyKind k = kind == 0   ? cudaMemcpyHostToDevice
                       : kind == 1 ? cudaMemcpyDeviceToHost
                                   : cudaMemcpyDeviceToDevice;
    CU(cudaMemcpy(dst, src, bytes, k));
    return 0;
}

static int workspace(size_t bytes, void **out, dh_err *e) {
    if (bytes > g_ws_bytes) {
        cudaFree(g_ws);
        g_ws = NULL;
        g_ws_bytes = 0;
        cudaError_t err = cudaMalloc(&g_ws, bytes);
        if (err != cudaSuccess) {
            cudaGetLastError();
            g_ws = NULL;
            return dh_seterr(e, DH_ENOMEM, "CUDA: workspace of %zu bytes: %s", bytes, cudaGetErrorString(err));
        }
        g_ws_bytes = bytes;
    }
    *out = g_ws;
    return 0;
}

static int scratch(size_t bytes, void **out, dh_err *e) {
    if (bytes > g_scratch_bytes) {
        cudaFree(g_scratch);
        g_scratch = NULL;
        g_scratch_bytes = 0;
        size_t want = bytes < (1 << 20) ? (1 << 20) : bytes;
        cudaError_t err = cudaMalloc(&g_scratch, want);
        if (err != cudaSuccess) {
            cudaGetLastError();
            g_scratch = NULL;
            return dh_seterr(e, DH_ENOMEM, "CUDA: scratch of %zu bytes: %s", want, cudaGetErrorString(err));
        }
        g_scratch_bytes = want;
    }
    *out = g_scratch;
    return 0;
}

/* ---- matrix products ----------------------------------------------------------------------- */
int dk_sgemm_cuda(int tA, int tB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc, dh_err *e) {
    TRYC(need_init(e));
    if (M == 0 || N == 0) return 0;
    /* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T. */
    CUBLAS(cublasSgemm(g_cublas, tB ? CUBLAS_OP_T : CUBLAS_OP_N, tA ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M, (int)K,
                       &alpha, B, (int)ldb, A, (int)lda, &beta, C, (int)ldc));
    return 0;
}

/* ---- elementwise ------------------------------------------------------------------------------ */
__global__ void k_fill(float *p, int64_t n, float v) { GRID_LOOP(i, n) p[i] = v; }
__global__ void k_scale(float *p, int64_t n, float a) { GRID_LOOP(i, n) p[i] *= a; }
__global__ void k_axpby(int64_t n, float a, const float *x, float b, float *y) {
    GRID_LOOP(i, n) y[i] = b == 0.0f ? a * x[i] : a * x[i] + b * y[i];
}
__global__ void k_mul(int64_t n, const float *a, const float *b, float *o) { GRID_LOOP(i, n) o[i] = a[i] * b[i]; }

int dk_fill_cuda(float *p, int64_t n, float v, dh_err *e) {
    TRYC(need_init(e));
    if (n == 0) return 0;
    if (v == 0.0f) {
        CU(cudaMemsetAsync(p, 0, (size_t)n * sizeof(float)));
        return 0;
    }
    k_fill<<<blocks_for(n), TPB>>>(p, n, v);
    LAUNCHED();
    return 0;
}

int dk_scale_cuda(float *p, int64_t n, float a, dh_err *e) {
    TRYC(need_init(e));
    if (n == 0) return 0;
    k_scale<<<blocks_for(n), TPB>>>(p, n, a);
    LAUNCHED();
    return 0;
}

int dk_axpby_cuda(int64_t n, float a, const float *x, float b, float *y, dh_err *e) {
    TRYC(need_init(e));
    if (n == 0) return 0;
    k_axpby<<<blocks_for(n), TPB>>>(n, a, x, b, y);
    LAUNCHED();
    return 0;
}

int dk_mul_cuda(int64_t n, const float *a, const float *b, float *out, dh_err *e) {
    TRYC(need_init(e));
    if (n == 0) return 0;
    k_mul<<<blocks_for(n), TPB>>>(n, a, b, out);
    LAUNCHED();
    return 0;
}

/* Block partial sums in double: out[blockIdx.x]. */
__global__ void k_sum(const float *x, int64_t n, int squares, double *out) {
    __shared__ double sh[256];
    double s = 0;
    GRID_LOOP(i, n) {
        double v = x[i];
        s += squares ? v * v : v;
    }
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = sh[0];
}

int dk_sum_cuda(const float *x, int64_t n, int squares, double *out, dh_err *e) {
    TRYC(need_init(e));
    *out = 0;
    if (n == 0) return 0;
    unsigned nb = blocks_for(n);
    if (nb > 1024) nb = 1024;
    void *s = NULL;
    TRYC(scratch(nb * sizeof(double), &s, e));
    k_sum<<<nb, TPB>>>(x, n, squares, (double *)s);
    LAUNCHED();
    double part[1024];
    CU(cudaMemcpy(part, s, nb * sizeof(double), cudaMemcpyDeviceToHost));
    double t = 0;
    for (unsigned i = 0; i < nb; i++) t += part[i];
    *out = t;
    return 0;
}

/* y (N, F, P) += b[f] */
__global__ void k_add_bias(float *y, const float *b, int64_t n, int64_t F, int64_t P) {
    GRID_LOOP(i, n) y[i] += b[(i / P) % F];
}

int dk_add_bias_cuda(float *y, const float *b, int64_t N, int64_t F, int64_t P, dh_err *e) {
    TRYC(need_init(e));
    int64_t n = N * F * P;
    if (n == 0) return 0;
    k_add_bias<<<blocks_for(n), TPB>>>(y, b, n, F, P);
    LAUNCHED();
    return 0;
}

/* db[f] = sum over (N, P) of dy (N, F, P): one block per f. */
__global__ void k_bias_grad(const float *dy, float *db, int64_t N, int64_t F, int64_t P) {
    __shared__ double sh[256];
    int64_t f = blockIdx.x;
    double s = 0;
    for (int64_t j = threadIdx.x; j < N * P; j += blockDim.x) {
        int64_t i = j / P, p = j % P;
        s += dy[(i * F + f) * P + p];
    }
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) db[f] = (float)sh[0];
}

int dk_bias_grad_cuda(const float *dy, float *db, int64_t N, int64_t F, int64_t P, dh_err *e) {
    TRYC(need_init(e));
    if (F == 0) return 0;
    if (F > INT32_MAX) return dh_seterr(e, DH_ELIMIT, "bias gradient: too many channels");
    k_bias_grad<<<(unsigned)F, TPB>>>(dy, db, N, F, P);
    LAUNCHED();
    return 0;
}

/* ---- convolution (cuDNN) ------------------------------------------------------------------------ */
struct convdesc {
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
};

static void conv_destroy(convdesc *d) {
    if (d->x) cudnnDestroyTensorDescriptor(d->x);
    if (d->y) cudnnDestroyTensorDescriptor(d->y);
    if (d->w) cudnnDestroyFilterDescriptor(d->w);
    if (d->conv) cudnnDestroyConvolutionDescriptor(d->conv);
}

static int too_big(const dk_tensor *t) {
    for (int i = 0; i < 4; i++)
        if (t->shape[i] > INT32_MAX) return 1;
    return t->n > INT32_MAX;
}

/* x (N, C, H, W), w (F, C, KH, KW), y (N, F, OH, OW) */
static int conv_make(convdesc *d, const dk_tensor *x, const dk_tensor *w, const dk_tensor *y, int stride, int pad,
                     dh_err *e) {
    memset(d, 0, sizeof *d);
    if (too_big(x) || too_big(w) || too_big(y))
        return dh_seterr(e, DH_ELIMIT, "convolution: tensor beyond 2^31 elements for cuDNN");
    CUDNN(cudnnCreateTensorDescriptor(&d->x));
    CUDNN(cudnnCreateTensorDescriptor(&d->y));
    CUDNN(cudnnCreateFilterDescriptor(&d->w));
    CUDNN(cudnnCreateConvolutionDescriptor(&d->conv));
    CUDNN(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)x->shape[0], (int)x->shape[1],
                                     (int)x->shape[2], (int)x->shape[3]));
    CUDNN(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)y->shape[0], (int)y->shape[1],
                                     (int)y->shape[2], (int)y->shape[3]));
    CUDNN(cudnnSetFilter4dDescriptor(d->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, (int)w->shape[0], (int)w->shape[1],
                                     (int)w->shape[2], (int)w->shape[3]));
    CUDNN(cudnnSetConvolution2dDescriptor(d->conv, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                          CUDNN_DATA_FLOAT));
    /* DEFAULT permits TF32 on Ampere+; FMA forbids it. (ALLOW_CONVERSION would
     * also let cuDNN down-convert FP32 to FP16, not just TF32.) */
    CUDNN(cudnnSetConvolutionMathType(d->conv, g_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    return 0;
}

/* Algorithm cache keyed by geometry, filled from cuDNN's heuristics. */
struct algo_entry {
    int64_t key[10];
    int fwd, bwd_data, bwd_filter; /* -1: not chosen yet */
};
#define ALGO_CACHE 128
static algo_entry g_algos[ALGO_CACHE];
static int g_nalgos;

static algo_entry *algo_lookup(const dk_tensor *x, const dk_tensor *w, int stride, int pad) {
    int64_t key[10] = { x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0],
                        w->shape[2], w->shape[3], stride,      pad,         g_tf32 };
    for (int i = 0; i < g_nalgos; i++)
        if (memcmp(g_algos[i].key, key, sizeof key) == 0) return &g_algos[i];
    int slot = g_nalgos < ALGO_CACHE ? g_nalgos++ : (int)(key[0] % ALGO_CACHE);
    algo_entry *a = &g_algos[slot];
    memcpy(a->key, key, sizeof key);
    a->fwd = a->bwd_data = a->bwd_filter = -1;
    return a;
}

static const size_t WS_LIMIT = (size_t)2 << 30; /* 2 GiB */

int dk_conv2d_forward_cuda(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,
                           dk_tensor *y, dh_err *e) {
    TRYC(need_init(e));
    convdesc d;
    int rc = conv_make(&d, x, w, y, stride, pad, e);
    algo_entry *a = algo_lookup(x, w, stride, pad);
    if (!rc && a->fwd < 0) {
        cudnnConvolutionFwdAlgoPerf_t perf[8];
        int got = 0;
        cudnnStatus_t st = cudnnGetConvolutionForwardAlgorithm_v7(g_cudnn, d.x, d.w, d.conv, d.y, 8, &got, perf);
        if (st != CUDNN_STATUS_SUCCESS)
            rc = dh_seterr(e, DH_EDEVICE, "cuDNN: choosing a forward algorithm: %s", cudnnGetErrorString(st));
        for (int i = 0; !rc && i < got; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= WS_LIMIT) {
                a->fwd = perf[i].algo;
                break;
            }
        if (!rc && a->fwd < 0) a->fwd = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
    }
    size_t wsb = 0;
    void *ws = NULL;
    if (!rc) {
        cudnnStatus_t st = cudnnGetConvolutionForwardWorkspaceSize(g_cudnn, d.x, d.w, d.conv, d.y,
                                                                   (cudnnConvolutionFwdAlgo_t)a->fwd, &wsb);
        if (st != CUDNN_STATUS_SUCCESS)
            rc = dh_seterr(e, DH_EDEVICE, "cuDNN: forward workspace size: %s", cudnnGetErrorString(st));
    }
    if (!rc && wsb) rc = workspace(wsb, &ws, e);
    if (!rc) {
        const float one = 1.0f, zero = 0.0f;
        cudnnStatus_t st = cudnnConvolutionForward(g_cudnn, &one, d.x, x->data, d.w, w->data, d.conv,
                                                   (cudnnConvolutionFwdAlgo_t)a->fwd, ws, wsb, &zero, d.y, y->data);
        if (st != CUDNN_STATUS_SUCCESS)
            rc = dh_seterr(e, DH_EDEVICE, "cuDNN: convolution forward: %s", cudnnGetErrorString(st));
    }
    conv_destroy(&d);
    if (!rc && b) rc = dk_add_bias_cuda(y->data, b->data, y->shape[0], y->shape[1], y->shape[2] * y->shape[3], e);
    return rc;
}

int dk_conv2d_backward_data_cuda(const dk_tensor *dy, const dk_tensor *w, int stride, int pad, dk_tensor *dx,
                                 dh_err *e) {
    TRYC(need_init(e));
    convdesc d;
    int rc = conv_make(&d, dx, w, dy, stride, pad, e);
    algo_entry *a = algo_lookup(dx, w, stride, pad);
    if (!rc && a->bwd_data < 0) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[8];
        int got = 0;
        cudnnStatus_t st = cudnnGetConvolutionBackwardDataAlgorithm_v7(g_cudnn, d.w, d.y, d.conv, d.x, 8, &got, perf);
        if (st != CUDNN_STATUS_SUCCESS)
            rc = dh_seterr(e, DH_EDEVICE, "cuDNN: choosing a backward-data algorithm: %s", cudnnGetErrorString(st));
        for (int i = 0; !rc && i < got; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= WS_LIMIT) {
                a->bwd_data = perf[i].algo;
                break;
            }
        if (!rc && a->bwd_data < 0) a->bwd_data = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
    }
    size_t wsb = 0;
    void *ws = NULL;
    if (!rc) {
        cudnnStatus_t st = cudnnGetConvolutionBackwardDataWorkspaceSize(
            g_cudnn, d.w, d.y, d.conv, d.x, (cudnnConvolutionBwdDataAlgo_t)a->bwd_data, &wsb);
        if (st != CUDNN_STATUS_SUCCESS)
            rc = dh_seterr(e, DH_EDEVICE, "cuDNN: backward-data workspace size: %s", cudnnGetErrorString(st));
    }
    if (!rc && wsb) rc = workspace(wsb, &ws, e);
    if (!rc) {
        const float one = 1.0f, zero = 0.0f;
        cudnnStatus_t st =
            cudnnConvolutionBackwardData(g_cudnn, &one, d.w, w->data, d.y, dy->data, d.conv,
                                         (cudnnConvolutionBwdDataAlgo_t)a->bwd_data, ws, wsb, &zero, d.x, dx->data);
        if (st != CUDNN_STATUS_SUCCESS)
            rc = dh_seterr(e, DH_EDEVICE, "cuDNN: convolution backward data: %s", cudnnGetErrorString(st));
    }
    conv_destroy(&d);
    return rc;
}

int dk_conv2d_backward_filter_cuda(const dk_tensor *x, const dk_tensor *dy, int stride, int pad, dk_tensor *dw,
                                   dh_err *e) {
    TRYC(need_init(e));
    convdesc d;
    int rc = conv_make(&d, x, dw, dy, stride, pad, e);
    algo_entry *a = algo_lookup(x, dw, stride, pad);
    if (!rc && a->bwd_filter < 0) {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[8];
        int got = 0;
        cudnnStatus_t st = cudnnGetConvolutionBackwardFilterAlgorithm_v7(g_cudnn, d.x, d.y, d.conv, d.w, 8, &got, perf);
        if (st != CUDNN_STATUS_SUCCESS)
            rc = dh_seterr(e, DH_EDEVICE, "cuDNN: choosing a backward-filter algorithm: %s", cudnnGetErrorString(st));
        for (int i = 0; !rc && i < got; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= WS_LIMIT) {
                a->bwd_filter = perf[i].algo;
                break;
            }
        if (!rc && a->bwd_filter < 0) a->bwd_filter = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
    }
    size_t wsb = 0;
    void *ws = NULL;
    if (!rc) {
        cudnnStatus_t st = cudnnGetConvolutionBackwardFilterWorkspaceSize(
            g_cudnn, d.x, d.y, d.conv, d.w, (cudnnConvolutionBwdFilterAlgo_t)a->bwd_filter, &wsb);
        if (st != CUDNN_STATUS_SUCCESS)
            rc = dh_seterr(e, DH_EDEVICE, "cuDNN: backward-filter workspace size: %s", cudnnGetErrorString(st));
    }
    if (!rc && wsb) rc = workspace(wsb, &ws, e);
    if (!rc) {
        const float one = 1.0f, zero = 0.0f;
        cudnnStatus_t st = cudnnConvolutionBackwardFilter(g_cudnn, &one, d.x, x->data, d.y, dy->data, d.conv,
                                                          (cudnnConvolutionBwdFilterAlgo_t)a->bwd_filter, ws, wsb,
                                                          &zero, d.w, dw->data);
        if (st != CUDNN_STATUS_SUCCESS)
            rc = dh_seterr(e, DH_EDEVICE, "cuDNN: convolution backward filter: %s", cudnnGetErrorString(st));
    }
    conv_destroy(&d);
    return rc;
}

/* ---- batch normalisation (cuDNN, spatial mode) ------------------------------------------------------ */
struct bndesc {
    cudnnTensorDescriptor_t x, p;
};

static void bn_destroy(bndesc *d) {
    if (d->x) cudnnDestroyTensorDescriptor(d->x);
    if (d->p) cudnnDestroyTensorDescriptor(d->p);
}

static int bn_make(bndesc *d, const dk_tensor *x, dh_err *e) {
    memset(d, 0, sizeof *d);
    int64_t N = x->shape[0], C = x->shape[1];
    int64_t H = x->ndim >= 3 ? x->shape[2] : 1, W = x->ndim >= 4 ? x->shape[3] : 1;
    if (x->n > INT32_MAX) return dh_seterr(e, DH_ELIMIT, "batch norm: tensor beyond 2^31 elements for cuDNN");
    CUDNN(cudnnCreateTensorDescriptor(&d->x));
    CUDNN(cudnnCreateTensorDescriptor(&d->p));
    CUDNN(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)N, (int)C, (int)H, (int)W));
    CUDNN(cudnnDeriveBNTensorDescriptor(d->p, d->x, CUDNN_BATCHNORM_SPATIAL));
    return 0;
}

int dk_bn_forward_train_cuda(const dk_tensor *x, const float *gamma, const float *beta, float *rmean, float *rvar,
                             float momentum, float eps, dk_tensor *y, float *smean, float *sinvstd, dh_err *e) {
    TRYC(need_init(e));
    bndesc d;
    int rc = bn_make(&d, x, e);
    if (!rc) {
        const float one = 1.0f, zero = 0.0f;
        cudnnStatus_t st = cudnnBatchNormalizationForwardTraining(
            g_cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, d.x, x->data, d.x, y->data, d.p, gamma, beta,
            (double)momentum, rmean, rvar, (double)eps, smean, sinvstd);
        if (st != CUDNN_STATUS_SUCCESS)
            rc = dh_seterr(e, DH_EDEVICE, "cuDNN: batch norm forward: %s", cudnnGetErrorString(st));
    }
    bn_destroy(&d);
    return rc;
}

int dk_bn_forward_infer_cuda(const dk_tensor *x, const float *gamma, const float *beta, const float *rmean,
                             const float *rvar, float eps, dk_tensor *y, dh_err *e) {
    TRYC(need_init(e));
    bndesc d;
    int rc = bn_make(&d, x, e);
    if (!rc) {
        const float one = 1.0f, zero = 0.0f;
        cudnnStatus_t st =
            cudnnBatchNormalizationForwardInference(g_cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, d.x, x->data, d.x,
                                                    y->data, d.p, gamma, beta, rmean, rvar, (double)eps);
        if (st != CUDNN_STATUS_SUCCESS)
            rc = dh_seterr(e, DH_EDEVICE, "cuDNN: batch norm inference: %s", cudnnGetErrorString(st));
    }
    bn_destroy(&d);
    return rc;
}

int dk_bn_backward_cuda(const dk_tensor *x, const dk_tensor *dy, const float *gamma, const float *smean,
                        const float *sinvstd, dk_tensor *dx, float *dgamma, float *dbeta, dh_err *e) {
    TRYC(need_init(e));
    bndesc d;
    int rc = bn_make(&d, x, e);
    if (!rc) {
        const float one = 1.0f, zero = 0.0f;
        /* The saved statistics are given, so epsilon only has to be valid. */
        cudnnStatus_t st = cudnnBatchNormalizationBackward(g_cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero,
                                                           d.x, x->data, d.x, dy->data, d.x, dx->data, d.p, gamma,
                                                           dgamma, dbeta, CUDNN_BN_MIN_EPSILON, smean, sinvstd);
        if (st != CUDNN_STATUS_SUCCESS)
            rc = dh_seterr(e, DH_EDEVICE, "cuDNN: batch norm backward: %s", cudnnGetErrorString(st));
    }
    bn_destroy(&d);
    return rc;
}

/* ---- activations ------------------------------------------------------------------------------------------ */
template <int OP> __global__ void k_unary(const float *x, float *y, int64_t n) {
    GRID_LOOP(i, n) {
        float v = x[i];
        y[i] = OP == DK_OP_RELU      ? dk_relu_f(v)
               : OP == DK_OP_GELU    ? dk_gelu_f(v)
               : OP == DK_OP_SIGMOID ? dk_sigmoid_f(v)
                                     : tanhf(v);
    }
}
template <int OP> __global__ void k_unary_grad(const float *a, const float *dy, float *dx, int64_t n) {
    GRID_LOOP(i, n) {
        float v = a[i], g = dy[i];
        dx[i] = OP == DK_OP_RELU      ? dk_relu_grad(v, g)
                : OP == DK_OP_GELU    ? dk_gelu_grad(v, g)
                : OP == DK_OP_SIGMOID ? dk_sigmoid_grad(v, g)
                                      : dk_tanh_grad(v, g);
    }
}

int dk_unary_cuda(int op, const float *x, float *y, int64_t n, dh_err *e) {
    TRYC(need_init(e));
    if (n == 0) return 0;
    unsigned nb = blocks_for(n);
    switch (op) {
    case DK_OP_RELU: k_unary<DK_OP_RELU><<<nb, TPB>>>(x, y, n); break;
    case DK_OP_GELU: k_unary<DK_OP_GELU><<<nb, TPB>>>(x, y, n); break;
    case DK_OP_SIGMOID: k_unary<DK_OP_SIGMOID><<<nb, TPB>>>(x, y, n); break;
    case DK_OP_TANH: k_unary<DK_OP_TANH><<<nb, TPB>>>(x, y, n); break;
    default: return dh_seterr(e, DH_EINVAL, "unknown unary op %d", op);
    }
    LAUNCHED();
    return 0;
}

int dk_unary_grad_cuda(int op, const float *a, const float *dy, float *dx, int64_t n, dh_err *e) {
    TRYC(need_init(e));
    if (n == 0) return 0;
    unsigned nb = blocks_for(n);
    switch (op) {
    case DK_OP_RELU: k_unary_grad<DK_OP_RELU><<<nb, TPB>>>(a, dy, dx, n); break;
    case DK_OP_GELU: k_unary_grad<DK_OP_GELU><<<nb, TPB>>>(a, dy, dx, n); break;
    case DK_OP_SIGMOID: k_unary_grad<DK_OP_SIGMOID><<<nb, TPB>>>(a, dy, dx, n); break;
    case DK_OP_TANH: k_unary_grad<DK_OP_TANH><<<nb, TPB>>>(a, dy, dx, n); break;
    default: return dh_seterr(e, DH_EINVAL, "unknown unary op %d", op);
    }
    LAUNCHED();
    return 0;
}

/* ---- pooling (own kernels: the CPU's exact padding and tie rules, dk_elem.h) ------------------------------ */
static dk_poolgeom pgeom(const dk_tensor *x, const dk_tensor *y, int k, int s, int p) {
    dk_poolgeom g = { x->shape[2], x->shape[3], y->shape[2], y->shape[3], k, s, p };
    return g;
}

__global__ void k_pool_fwd(int avg, const float *x, float *y, int64_t NC, dk_poolgeom g) {
    int64_t n = NC * g.OH * g.OW;
    GRID_LOOP(t, n) {
        int64_t ow = t % g.OW, oh = (t / g.OW) % g.OH, nc = t / (g.OW * g.OH);
        y[t] = dk_pool_out(avg, x + nc * g.H * g.W, g, oh, ow);
    }
}

/* One thread per input pixel: gather from every window that contains it. */
__global__ void k_pool_bwd(int avg, const float *x, const float *dy, float *dx, int64_t NC, dk_poolgeom g) {
    int64_t n = NC * g.H * g.W;
    GRID_LOOP(t, n) {
        int64_t iw = t % g.W, ih = (t / g.W) % g.H, nc = t / (g.W * g.H);
        dx[t] = dk_pool_grad_pixel(avg, x ? x + nc * g.H * g.W : NULL, dy + nc * g.OH * g.OW, g, ih, iw);
    }
}

int dk_pool_forward_cuda(int avg, const dk_tensor *x, int k, int stride, int pad, dk_tensor *y, dh_err *e) {
    TRYC(need_init(e));
    k_pool_fwd<<<blocks_for(y->n), TPB>>>(avg, x->data, y->data, x->shape[0] * x->shape[1],
                                          pgeom(x, y, k, stride, pad));
    LAUNCHED();
    return 0;
}

int dk_maxpool_backward_cuda(const dk_tensor *x, const dk_tensor *y, const dk_tensor *dy, int k, int stride, int pad,
                             dk_tensor *dx, dh_err *e) {
    TRYC(need_init(e));
    k_pool_bwd<<<blocks_for(dx->n), TPB>>>(0, x->data, dy->data, dx->data, x->shape[0] * x->shape[1],
                                           pgeom(x, dy, k, stride, pad));
    LAUNCHED();
    return 0;
}

int dk_avgpool_backward_cuda(const dk_tensor *dy, int k, int stride, int pad, dk_tensor *dx, dh_err *e) {
    TRYC(need_init(e));
    k_pool_bwd<<<blocks_for(dx->n), TPB>>>(1, NULL, dy->data, dx->data, dx->shape[0] * dx->shape[1],
                                           pgeom(dx, dy, k, stride, pad));
    LAUNCHED();
    return 0;
}

__global__ void k_gap_fwd(const float *x, float *y, int64_t NC, int64_t P) {
    GRID_LOOP(i, NC) {
        double s = 0; /* as the CPU: double accumulation, (float)(s / P) */
        for (int64_t k = 0; k < P; k++) s += x[i * P + k];
        y[i] = (float)(s / (double)P);
    }
}
__global__ void k_gap_bwd(const float *dy, float *dx, int64_t NC, int64_t P) {
    GRID_LOOP(t, NC * P) dx[t] = dy[t / P] / (float)P;
}

int dk_gap_forward_cuda(const float *x, float *y, int64_t NC, int64_t P, dh_err *e) {
    TRYC(need_init(e));
    k_gap_fwd<<<blocks_for(NC), TPB>>>(x, y, NC, P);
    LAUNCHED();
    return 0;
}

int dk_gap_backward_cuda(const float *dy, float *dx, int64_t NC, int64_t P, dh_err *e) {
    TRYC(need_init(e));
    k_gap_bwd<<<blocks_for(NC * P), TPB>>>(dy, dx, NC, P);
    LAUNCHED();
    return 0;
}

/* ---- dropout, softmax, SGD, random ------------------------------------------------------------------------------- */
__global__ void k_dropout(const float *x, float p, uint64_t seed, uint64_t offset, float *y, float *mask, int64_t n) {
    GRID_LOOP(i, n) {
        float m = dk_dropout_mask(seed, offset + (uint64_t)i, p);
        mask[i] = m;
        y[i] = x[i] * m;
    }
}

int dk_dropout_forward_cuda(const float *x, float p, uint64_t seed, uint64_t offset, float *y, float *mask, int64_t n,
                            dh_err *e) {
    TRYC(need_init(e));
    k_dropout<<<blocks_for(n), TPB>>>(x, p, seed, offset, y, mask, n);
    LAUNCHED();
    return 0;
}

__global__ void k_softmax(const float *z, float *p, int64_t N, int64_t K) {
    GRID_LOOP(i, N) dk_softmax_row(z + i * K, p + i * K, K);
}

int dk_softmax_cuda(const float *logits, float *probs, int64_t N, int64_t K, dh_err *e) {
    TRYC(need_init(e));
    k_softmax<<<blocks_for(N), TPB>>>(logits, probs, N, K);
    LAUNCHED();
    return 0;
}

/* One thread per row: loss_i, correct_i, and the gradient row (dk_xent_row). */
__global__ void k_xent(const float *z, const int32_t *labels, int64_t N, int64_t K, float smoothing, float gscale,
                       double *rowloss, int *rowcorrect, float *g) {
    GRID_LOOP(i, N) {
        int32_t y = labels[i];
        if (y < 0 || y >= K) { /* the CPU rejects these; here the row is ignored */
            rowloss[i] = 0;
            rowcorrect[i] = 0;
            if (g)
                for (int64_t k = 0; k < K; k++) g[i * K + k] = 0.0f;
            continue;
        }
        int ok;
        rowloss[i] = dk_xent_row(z + i * K, K, y, smoothing, gscale / (float)N, g ? g + i * K : NULL, &ok);
        rowcorrect[i] = ok;
    }
}

int dk_softmax_xent_cuda(const float *logits, const int32_t *labels, int64_t N, int64_t K, float smoothing,
                         float grad_scale, double *loss, int64_t *correct, float *dlogits, dh_err *e) {
    TRYC(need_init(e));
    size_t bytes = (size_t)N * (sizeof(double) + sizeof(int));
    void *s = NULL;
    TRYC(scratch(bytes, &s, e));
    double *rl = (double *)s;
    int *rc = (int *)(rl + N);
    k_xent<<<blocks_for(N), TPB>>>(logits, labels, N, K, smoothing, grad_scale, rl, rc, dlogits);
    LAUNCHED();
    if (!loss && !correct) return 0;
    double *hl = (double *)malloc(bytes);
    if (!hl) return dh_seterr(e, DH_ENOMEM, "softmax_xent: out of host memory");
    cudaError_t err = cudaMemcpy(hl, s, bytes, cudaMemcpyDeviceToHost);
    if (err != cudaSuccess) {
        free(hl);
        return dh_seterr(e, DH_EDEVICE, "CUDA: softmax_xent: %s", cudaGetErrorString(err));
    }
    int *hc = (int *)(hl + N);
    double t = 0;
    int64_t c = 0;
    for (int64_t i = 0; i < N; i++) {
        t += hl[i];
        c += hc[i];
    }
    free(hl);
    if (loss) *loss = t / (double)N;
    if (correct) *correct = c;
    return 0;
}

__global__ void k_sgd(float *w, const float *g, float *v, int64_t n, float lr, float mom, float wd, int nesterov) {
    GRID_LOOP(i, n) {
        float vv = v ? v[i] : 0.0f;
        dk_sgd_elem(&w[i], g[i], &vv, lr, mom, wd, nesterov);
        if (v) v[i] = vv;
    }
}

int dk_sgd_step_cuda(float *w, const float *g, float *v, int64_t n, float lr, float mom, float wd, int nesterov,
                     dh_err *e) {
    TRYC(need_init(e));
    k_sgd<<<blocks_for(n), TPB>>>(w, g, v, n, lr, mom, wd, nesterov);
    LAUNCHED();
    return 0;
}

__global__ void k_rand_uniform(float *p, int64_t n, float lo, float hi, uint64_t seed, uint64_t offset) {
    GRID_LOOP(i, n) p[i] = dk_lerp_rn(lo, hi, dh_rng_uniform(seed, offset + (uint64_t)i));
}

int dk_rand_uniform_cuda(float *p, int64_t n, float lo, float hi, uint64_t seed, uint64_t offset, dh_err *e) {
    TRYC(need_init(e));
    k_rand_uniform<<<blocks_for(n), TPB>>>(p, n, lo, hi, seed, offset);
    LAUNCHED();
    return 0;
}

/* ---- images ------------------------------------------------------------------------------------------------------------- */
struct augparams {
    float scale[DK_MAXCHAN], shift[DK_MAXCHAN];
};

__global__ void k_augment(const uint8_t *src, int64_t S, int C, int H, int W, const int32_t *idx, int pad, int flip,
                          augparams ap, uint64_t seed, uint64_t offset, float *out, int64_t n) {
    GRID_LOOP(t, n) {
        int x = (int)(t % W), y = (int)((t / W) % H), c = (int)((t / ((int64_t)W * H)) % C);
        int64_t r = t / ((int64_t)W * H * C);
        int64_t s = idx ? idx[r] : r;
        if (s < 0 || s >= S) {
            out[t] = 0.0f;
            continue;
        }
        dk_aug_draw d = dk_aug_draws(seed, offset + (uint64_t)r, pad, flip);
        int sy = dk_aug_src_y(d, y, pad, H), sx = dk_aug_src_x(d, x, pad, W);
        out[t] = (sy < 0 || sx < 0)
                     ? 0.0f
                     : dk_affine_rn((float)src[((s * C + c) * H + sy) * W + sx], ap.scale[c], ap.shift[c]);
    }
}

int dk_images_augment_cuda(const uint8_t *src, int64_t S, int C, int H, int W, const int32_t *idx, int pad, int flip,
                           const float *mean, const float *std, uint64_t seed, uint64_t offset, dk_tensor *out,
                           dh_err *e) {
    TRYC(need_init(e));
    augparams ap;
    memset(&ap, 0, sizeof ap);
    for (int c = 0; c < C; c++) {
        ap.scale[c] = 1.0f / (255.0f * std[c]);
        ap.shift[c] = mean[c] / std[c];
    }
    k_augment<<<blocks_for(out->n), TPB>>>(src, S, C, H, W, idx, pad, flip, ap, seed, offset, out->data, out->n);
    LAUNCHED();
    return 0;
}

__global__ void k_gather_i32(const int32_t *src, const int32_t *idx, int64_t n, int32_t *out) {
    GRID_LOOP(i, n) out[i] = src[idx[i]];
}

int dk_gather_i32_cuda(const int32_t *src, const int32_t *idx, int64_t n, int32_t *out, dh_err *e) {
    TRYC(need_init(e));
    k_gather_i32<<<blocks_for(n), TPB>>>(src, idx, n, out);
    LAUNCHED();
    return 0;
}
