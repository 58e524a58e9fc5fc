/* dk_cuda.cu — the CUDA backend of the kernel library.
 *
 * cuBLAS for matrix products, cuDNN for convolution and batch
 * normalisation, own kernels for the rest (pooling included, so that
 * padding and tie-breaking match the CPU reference exactly). Everything
 * runs on the default stream; errors become DH_EDEVICE (DH_ENOMEM when out
 * of memory), never an exit. Per-element arithmetic comes from dk_elem.h,
 * shared with the CPU.
 *
 * Built into libdhcuda.so (with every other .cu file), which dk_core.c
 * loads at the first CUDA use (dh_cudaload.h): the functions of dk_impl.h's
 * DK_BACKEND_FUNCS(cuda) and dk_cuda_* are its exported entry points.
 */
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <cudnn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include "dk_impl.h"
#include "dk_elem.h"
#include "dh_cuda.h"
#include "dh_cudaload.h"

/* ---- state and error handling ----------------------------------------------------------- */
static cublasHandle_t g_cublas;
static cudnnHandle_t g_cudnn;
static int g_init;
static int g_tf32;
static int g_probe = -1; /* dk_cuda_probe: -1 not yet, else its result */
static dh_err g_probe_err;
static void *g_ws; /* cuDNN workspace */
static size_t g_ws_bytes;
static void *g_scratch; /* reductions, per-row results */
static size_t g_scratch_bytes;

#define CU(call) DH_CUDA_TRY((call), e, #call)
#define CUBLAS(call)                                                                                                   \
    do {                                                                                                               \
        cublasStatus_t st_ = (call);                                                                                   \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                                              \
            return dh_seterr(e, st_ == CUBLAS_STATUS_ALLOC_FAILED ? DH_ENOMEM : DH_EDEVICE, "cuBLAS: %s: %s", #call,   \
                             cublasGetStatusString(st_));                                                              \
    } while (0)
#define CUDNN(call)                                                                                                    \
    do {                                                                                                               \
        cudnnStatus_t st_ = (call);                                                                                    \
        if (st_ != CUDNN_STATUS_SUCCESS)                                                                               \
            return dh_seterr(e, st_ == CUDNN_STATUS_ALLOC_FAILED ? DH_ENOMEM : DH_EDEVICE, "cuDNN: %s: %s", #call,     \
                             cudnnGetErrorString(st_));                                                                \
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

int dhcu_abi_version(void) { return DH_CUDA_ABI; }

/* Device discovery, once: the runtime's/driver's own error when it fails
 * (no device, driver too old for this CUDA runtime, ...). */
int dk_cuda_probe(dh_err *e) {
    if (g_probe < 0) {
        int n = 0;
        cudaError_t st = cudaGetDeviceCount(&n);
        if (st != cudaSuccess) {
            cudaGetLastError();
            int drv = 0;
            cudaDriverGetVersion(&drv);
            dh_cuda_err(st, &g_probe_err, "no usable CUDA device: cudaGetDeviceCount");
            if (st == cudaErrorInsufficientDriver && drv > 0) {
                char tail[96];
                snprintf(tail, sizeof tail, "; the driver supports CUDA %d.%d, this build needs %d.%d", drv / 1000,
                         drv % 1000 / 10, CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
                strncat(g_probe_err.msg, tail, sizeof g_probe_err.msg - strlen(g_probe_err.msg) - 1);
            }
            g_probe_err.code = DH_EDEVICE;
            g_probe = DH_EDEVICE;
        } else if (n == 0) {
            g_probe = dh_seterr(&g_probe_err, DH_EDEVICE, "no CUDA device available (cudaGetDeviceCount found none)");
        } else {
            g_probe = 0;
        }
    }
    if (g_probe && e) *e = g_probe_err;
    return g_probe;
}

int dk_cuda_info(char *buf, size_t n, dh_err *e) {
    TRYC(dk_cuda_probe(e));
    int dev = 0, drv = 0, rt = 0;
    CU(cudaGetDevice(&dev));
    cudaDeviceProp p;
    CU(cudaGetDeviceProperties(&p, dev));
    CU(cudaDriverGetVersion(&drv));
    CU(cudaRuntimeGetVersion(&rt));
    int cublas_v = 0;
    if (g_init) cublasGetVersion(g_cublas, &cublas_v);
    size_t cudnn_v = cudnnGetVersion();
    snprintf(buf, n,
             "device %d: %s, compute capability %d.%d, %d SMs, %.1f GiB; driver CUDA %d.%d, runtime %d.%d (static); "
             "cuBLAS %d; cuDNN %zu.%zu.%zu (built with %d.%d.%d); TF32 %s",
             dev, p.name, p.major, p.minor, p.multiProcessorCount, (double)p.totalGlobalMem / (1 << 30), drv / 1000,
             drv % 1000 / 10, rt / 1000, rt % 1000 / 10, cublas_v, cudnn_v / 10000, cudnn_v / 100 % 100, cudnn_v % 100,
             CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL, g_tf32 ? "on" : "off");
    return 0;
}

void dk_cuda_set_tf32(int on) {
    g_tf32 = on ? 1 : 0;
    if (g_init) cublasSetMathMode(g_cublas, g_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
}

int dk_cuda_init(dh_err *e) {
    if (g_init) return 0;
    TRYC(dk_cuda_probe(e));
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
    char what[64];
    snprintf(what, sizeof what, "allocating %zu bytes", bytes);
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
        cudaGetLastError();
        return dh_cuda_err(err, e, what);
    }
    err = cudaMemset(p, 0, bytes);
    if (err != cudaSuccess) {
        cudaFree(p);
        return dh_cuda_err(err, e, "clearing a new allocation");
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
            return dh_cuda_err(err, e, "cuDNN workspace");
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
            return dh_cuda_err(err, e, "scratch buffer");
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

/* db[f] = sum over (N, P) of dy (N, F, P), in double, in a fixed order
 * (deterministic), with no division per element.
 * P == 1 (fully connected, dy (N, F)): block (32, 8), a warp's lanes read 32
 * neighbouring columns of a row (coalesced), the 8 rows of threads stride
 * down the rows; shared-memory sum over the 8.
 * P > 1 (convolution): grid (F, S): block (f, s) sums rows [s R, s R + R) of
 * channel f into part[f S + s], its threads covering (row, p) pairs with p
 * contiguous (one division per thread, at the start); then k_bias_grad_sum
 * adds the S partial sums of each channel in order. S splits the batch so
 * that a few channels still fill the GPU. */
__global__ void k_bias_grad_cols(const float *dy, float *db, int64_t N, int64_t F) {
    __shared__ double sh[8][33];
    const int64_t f = (int64_t)blockIdx.x * 32 + threadIdx.x;
    double s = 0;
    if (f < F)
        for (int64_t i = threadIdx.y; i < N; i += 8) s += dy[i * F + f];
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && f < F) {
        double t = 0;
        for (int r = 0; r < 8; r++) t += sh[r][threadIdx.x];
        db[f] = (float)t;
    }
}

__global__ void k_bias_grad_part(const float *dy, double *part, int64_t N, int64_t F, int64_t P, int64_t rows) {
    __shared__ double sh[256];
    const int64_t f = blockIdx.x, i0 = (int64_t)blockIdx.y * rows;
    const int64_t i1 = i0 + rows < N ? i0 + rows : N;
    double s = 0;
    if (P >= (int64_t)blockDim.x) {
        for (int64_t i = i0; i < i1; i++) {
            const float *row = dy + (i * F + f) * P;
            for (int64_t p = threadIdx.x; p < P; p += blockDim.x) s += row[p];
        }
    } else {
        const int per = (int)(blockDim.x / P); /* rows covered per step */
        const int p = (int)(threadIdx.x % P), r = (int)(threadIdx.x / P);
        if (r < per)
            for (int64_t i = i0 + r; i < i1; i += per) s += dy[(i * F + f) * P + p];
    }
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) part[f * gridDim.y + blockIdx.y] = sh[0];
}

__global__ void k_bias_grad_sum(const double *part, float *db, int64_t F, int S) {
    GRID_LOOP(f, F) {
        double t = 0;
        for (int s = 0; s < S; s++) t += part[f * S + s];
        db[f] = (float)t;
    }
}

int dk_bias_grad_cuda(const float *dy, float *db, int64_t N, int64_t F, int64_t P, dh_err *e) {
    TRYC(need_init(e));
    if (F == 0) return 0;
    if (N == 0 || P == 0) return dk_fill_cuda(db, F, 0.0f, e);
    if (P == 1) {
        if ((F + 31) / 32 > INT32_MAX) return dh_seterr(e, DH_ELIMIT, "bias gradient: too many channels");
        k_bias_grad_cols<<<(unsigned)((F + 31) / 32), dim3(32, 8)>>>(dy, db, N, F);
        LAUNCHED();
        return 0;
    }
    /* about 1024 blocks in all, each over at least 16K elements, at most 65535 splits */
    int64_t S = 1024 / F;
    int64_t maxs = (N * P) / 16384;
    if (S > maxs) S = maxs;
    if (S > N) S = N;
    if (S > 65535) S = 65535;
    if (S < 1) S = 1;
    int64_t rows = (N + S - 1) / S;
    S = (N + rows - 1) / rows;
    if (F > INT32_MAX) return dh_seterr(e, DH_ELIMIT, "bias gradient: too many channels");
    void *part = NULL;
    TRYC(scratch((size_t)(F * S) * sizeof(double), &part, e));
    k_bias_grad_part<<<dim3((unsigned)F, (unsigned)S), TPB>>>(dy, (double *)part, N, F, P, rows);
    LAUNCHED();
    k_bias_grad_sum<<<blocks_for(F), TPB>>>((const double *)part, db, F, (int)S);
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

/* Algorithm lists keyed by geometry, from cuDNN's heuristics (best first).
 * A call tries the list in order from the algorithm that worked last time:
 * one whose workspace cannot be had, or that cuDNN refuses at run time
 * (NOT_SUPPORTED, EXECUTION_FAILED or ALLOC_FAILED, which the heuristics do
 * not rule out), passes to the next; the first that runs is remembered.
 * $DH_CONV_ALGO_SKIP=N (tests) treats the first N of each list as refused. */
enum { CONV_FWD = 0, CONV_BWD_DATA = 1, CONV_BWD_FILTER = 2 };
#define MAX_ALGOS 16
struct algo_entry {
    int64_t key[10];
    int n[3];               /* -1: list not made yet */
    int algo[3][MAX_ALGOS]; /* candidates, best first */
    int chosen[3];          /* index into algo[] of the one that last ran */
};
#define ALGO_CACHE 128
static algo_entry g_algos[ALGO_CACHE];
static int g_nalgos;
static const char *const conv_dir_name[3] = { "forward", "backward data", "backward filter" };

static algo_entry *algo_lookup(const dk_tensor *x, const dk_tensor *w, int stride, int pad) {
    int64_t key[10] = { x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0],
                        w->shape[2], w->shape[3], stride,      pad,         g_tf32 };
    for (int i = 0; i < g_nalgos; i++)
        if (memcmp(g_algos[i].key, key, sizeof key) == 0) return &g_algos[i];
    int slot = g_nalgos < ALGO_CACHE ? g_nalgos++ : (int)(key[0] % ALGO_CACHE);
    algo_entry *a = &g_algos[slot];
    memset(a, 0, sizeof *a);
    memcpy(a->key, key, sizeof key);
    for (int d = 0; d < 3; d++) a->n[d] = -1;
    return a;
}

static const size_t WS_LIMIT = (size_t)2 << 30; /* 2 GiB */

/* Append algo to the list of direction dir unless it is there. */
static void algo_add(algo_entry *a, int dir, int algo) {
    for (int i = 0; i < a->n[dir]; i++)
        if (a->algo[dir][i] == algo) return;
    if (a->n[dir] < MAX_ALGOS) a->algo[dir][a->n[dir]++] = algo;
}

/* The algorithms that compute in another basis (FFT, FFT tiling, Winograd's
 * non-fused transforms) lose digits that FP32 keeps: on an H200 (cuDNN 9.14)
 * the heuristics' first backward-filter choice for LeNet's second layer (5x5,
 * 20 -> 50 channels on 12x12) was off by 0.056 absolute (sums of scale ~20),
 * against 5.7e-5 for the next algorithm: 1,000 times FP32's error. Without
 * TF32 (DH_TF32=1 allows both) they are left out: FP32 means FP32's accuracy. */
static int conv_lossy(int dir, int algo) {
    if (dir == CONV_FWD)
        return algo == CUDNN_CONVOLUTION_FWD_ALGO_FFT || algo == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
               algo == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
    if (dir == CONV_BWD_DATA)
        return algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT || algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING ||
               algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
    return algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT || algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING ||
           algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
}

/* DH_CONV_LOSSY=1 (tests, diagnosis): keep them in FP32 too. */
static int conv_keep_lossy(void) {
    static int keep = -1;
    if (keep < 0) {
        const char *s = getenv("DH_CONV_LOSSY");
        keep = s && strcmp(s, "1") == 0;
    }
    return keep;
}

/* The candidate list of one direction: the heuristics' usable results (in
 * their order), then the always-supported fallback. */
static int algo_list(algo_entry *a, int dir, const convdesc *d, dh_err *e) {
    if (a->n[dir] >= 0) return 0;
    int got = 0, status[MAX_ALGOS], algo[MAX_ALGOS];
    size_t mem[MAX_ALGOS];
    cudnnStatus_t st;
    if (dir == CONV_FWD) {
        cudnnConvolutionFwdAlgoPerf_t perf[MAX_ALGOS];
        st = cudnnGetConvolutionForwardAlgorithm_v7(g_cudnn, d->x, d->w, d->conv, d->y, MAX_ALGOS, &got, perf);
        for (int i = 0; i < got; i++) status[i] = perf[i].status, algo[i] = perf[i].algo, mem[i] = perf[i].memory;
    } else if (dir == CONV_BWD_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_ALGOS];
        st = cudnnGetConvolutionBackwardDataAlgorithm_v7(g_cudnn, d->w, d->y, d->conv, d->x, MAX_ALGOS, &got, perf);
        for (int i = 0; i < got; i++) status[i] = perf[i].status, algo[i] = perf[i].algo, mem[i] = perf[i].memory;
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_ALGOS];
        st = cudnnGetConvolutionBackwardFilterAlgorithm_v7(g_cudnn, d->x, d->y, d->conv, d->w, MAX_ALGOS, &got, perf);
        for (int i = 0; i < got; i++) status[i] = perf[i].status, algo[i] = perf[i].algo, mem[i] = perf[i].memory;
    }
    if (st != CUDNN_STATUS_SUCCESS)
        return dh_seterr(e, DH_EDEVICE, "cuDNN: choosing a %s convolution algorithm: %s", conv_dir_name[dir],
                         cudnnGetErrorString(st));
    a->n[dir] = 0;
    a->chosen[dir] = 0;
    for (int i = 0; i < got; i++)
        if (status[i] == CUDNN_STATUS_SUCCESS && mem[i] <= WS_LIMIT &&
            (g_tf32 || conv_keep_lossy() || !conv_lossy(dir, algo[i])))
            algo_add(a, dir, algo[i]);
    algo_add(a, dir,
             dir == CONV_FWD        ? (int)CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM
             : dir == CONV_BWD_DATA ? (int)CUDNN_CONVOLUTION_BWD_DATA_ALGO_1
                                    : (int)CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1);
    return 0;
}

/* The statuses after which the next algorithm is tried. */
static int conv_try_next(cudnnStatus_t st) {
    int cat = CUDNN_STATUS_CATEGORY((int)st);
    return cat == CUDNN_STATUS_NOT_SUPPORTED || cat == CUDNN_STATUS_EXECUTION_FAILED ||
           cat == CUDNN_STATUS_INTERNAL_ERROR; /* ALLOC_FAILED is an INTERNAL_ERROR subcode in cuDNN 9 */
}

static int conv_skip_for_tests(void) {
    static int skip = -1;
    if (skip < 0) {
        const char *s = getenv("DH_CONV_ALGO_SKIP");
        skip = s ? atoi(s) : 0;
        if (skip < 0) skip = 0;
    }
    return skip;
}

/* Run one direction: out = conv(in1, in2) with the cached list. */
static int conv_run(int dir, const convdesc *d, algo_entry *a, const void *in1, const void *in2, void *out, dh_err *e) {
    TRYC(algo_list(a, dir, d, e));
    const float one = 1.0f, zero = 0.0f;
    const int n = a->n[dir], start = a->chosen[dir], skip = conv_skip_for_tests();
    cudnnStatus_t last = CUDNN_STATUS_SUCCESS;
    int last_rc = 0;
    for (int t = 0; t < n; t++) {
        const int i = (start + t) % n, algo = a->algo[dir][i];
        if (i < skip) {
            last = CUDNN_STATUS_NOT_SUPPORTED;
            continue;
        }
        size_t wsb = 0;
        cudnnStatus_t st =
            dir == CONV_FWD ? cudnnGetConvolutionForwardWorkspaceSize(g_cudnn, d->x, d->w, d->conv, d->y,
                                                                      (cudnnConvolutionFwdAlgo_t)algo, &wsb)
            : dir == CONV_BWD_DATA
                ? cudnnGetConvolutionBackwardDataWorkspaceSize(g_cudnn, d->w, d->y, d->conv, d->x,
                                                               (cudnnConvolutionBwdDataAlgo_t)algo, &wsb)
                : cudnnGetConvolutionBackwardFilterWorkspaceSize(g_cudnn, d->x, d->y, d->conv, d->w,
                                                                 (cudnnConvolutionBwdFilterAlgo_t)algo, &wsb);
        if (st != CUDNN_STATUS_SUCCESS) {
            last = st;
            continue;
        }
        void *ws = NULL;
        if (wsb) {
            dh_err we;
            last_rc = workspace(wsb, &ws, &we);
            if (last_rc) { /* out of memory for this one: an algorithm with a smaller workspace may fit */
                if (e) *e = we;
                continue;
            }
        }
        st = dir == CONV_FWD ? cudnnConvolutionForward(g_cudnn, &one, d->x, in1, d->w, in2, d->conv,
                                                       (cudnnConvolutionFwdAlgo_t)algo, ws, wsb, &zero, d->y, out)
             : dir == CONV_BWD_DATA
                 ? cudnnConvolutionBackwardData(g_cudnn, &one, d->w, in1, d->y, in2, d->conv,
                                                (cudnnConvolutionBwdDataAlgo_t)algo, ws, wsb, &zero, d->x, out)
                 : cudnnConvolutionBackwardFilter(g_cudnn, &one, d->x, in1, d->y, in2, d->conv,
                                                  (cudnnConvolutionBwdFilterAlgo_t)algo, ws, wsb, &zero, d->w, out);
        if (st == CUDNN_STATUS_SUCCESS) {
            a->chosen[dir] = i;
            return 0;
        }
        cudaGetLastError(); /* a failed launch leaves a (non-sticky) error behind */
        last = st;
        last_rc = 0;
        if (!conv_try_next(st)) break;
    }
    if (last_rc) return last_rc;
    return dh_seterr(e, DH_EDEVICE, "cuDNN: convolution %s: no algorithm ran (%d tried): %s", conv_dir_name[dir], n,
                     cudnnGetErrorString(last));
}

int dk_conv2d_forward_cuda(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,
                           dk_tensor *y, dh_err *e) {
    TRYC(need_init(e));
    convdesc d;
    int rc = conv_make(&d, x, w, y, stride, pad, e);
    if (!rc) rc = conv_run(CONV_FWD, &d, algo_lookup(x, w, stride, pad), x->data, w->data, y->data, e);
    conv_destroy(&d);
    if (!rc && b) rc = dk_add_bias_cuda(y->data, b->data, y->shape[0], y->shape[1], y->shape[2] * y->shape[3], e);
    return rc;
}

int dk_conv2d_backward_data_cuda(const dk_tensor *dy, const dk_tensor *w, int stride, int pad, dk_tensor *dx,
                                 dh_err *e) {
    TRYC(need_init(e));
    convdesc d;
    int rc = conv_make(&d, dx, w, dy, stride, pad, e);
    if (!rc) rc = conv_run(CONV_BWD_DATA, &d, algo_lookup(dx, w, stride, pad), w->data, dy->data, dx->data, e);
    conv_destroy(&d);
    return rc;
}

int dk_conv2d_backward_filter_cuda(const dk_tensor *x, const dk_tensor *dy, int stride, int pad, dk_tensor *dw,
                                   dh_err *e) {
    TRYC(need_init(e));
    convdesc d;
    int rc = conv_make(&d, x, dw, dy, stride, pad, e);
    if (!rc) rc = conv_run(CONV_BWD_FILTER, &d, algo_lookup(x, dw, stride, pad), x->data, dy->data, dw->data, e);
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

/* cuDNN wants the backward call's epsilon to be the forward's. dk.h's
 * backward has no eps argument, so the forward remembers it by the address
 * of the saved mean it fills; a backward whose saved mean no forward here
 * filled uses 1e-5, the smallest dk_core.c accepts (and what net.c uses). */
struct bn_eps_entry {
    const void *smean;
    float eps;
};
#define BN_EPS_SLOTS 256
static bn_eps_entry g_bn_eps[BN_EPS_SLOTS];
static int g_bn_neps, g_bn_next;

static void bn_eps_remember(const void *smean, float eps) {
    for (int i = 0; i < g_bn_neps; i++)
        if (g_bn_eps[i].smean == smean) {
            g_bn_eps[i].eps = eps;
            return;
        }
    int slot = g_bn_neps < BN_EPS_SLOTS ? g_bn_neps++ : (g_bn_next++ % BN_EPS_SLOTS);
    g_bn_eps[slot].smean = smean;
    g_bn_eps[slot].eps = eps;
}

static double bn_eps_of(const void *smean) {
    for (int i = 0; i < g_bn_neps; i++)
        if (g_bn_eps[i].smean == smean) return (double)g_bn_eps[i].eps;
    return 1e-5;
}

int dk_bn_forward_train_cuda(const dk_tensor *x, const float *gamma, const float *beta, float *rmean, float *rvar,
                             float momentum, float eps, dk_tensor *y, float *smean, float *sinvstd, dh_err *e) {
    TRYC(need_init(e));
    bn_eps_remember(smean, eps);
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
        /* the forward's epsilon (cudnn_ops.h: "should be the same in forward and backward") */
        cudnnStatus_t st = cudnnBatchNormalizationBackward(g_cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero,
                                                           d.x, x->data, d.x, dy->data, d.x, dx->data, d.p, gamma,
                                                           dgamma, dbeta, bn_eps_of(smean), smean, sinvstd);
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
        return dh_cuda_err(err, e, "softmax_xent");
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
        /* flip | padding mode: the CPU loop's draws and source positions (dk_elem.h) */
        dk_aug_draw d = dk_aug_draws(seed, offset + (uint64_t)r, pad, flip);
        d.flip = dk_aug_flip(d.flip, seed, s, flip);
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
