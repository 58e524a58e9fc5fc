/* dk_impl.h — internal: the backend functions behind dk.h.
 *
 * dk_core.c checks arguments (shapes, devices) and dispatches to
 * <op>_cpu (dk_cpu.c) or <op>_cuda (dk_cuda.cu). Backend functions may
 * assume their arguments were checked. Not installed for users.
 */
#ifndef DK_IMPL_H
#define DK_IMPL_H
#include "dk.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DK_BACKEND_FUNCS(S)                                                                                            \
    int dk_sgemm_##S(int tA, int tB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,        \
                     const float *B, int64_t ldb, float beta, float *C, int64_t ldc, dh_err *e);                       \
    int dk_fill_##S(float *p, int64_t n, float v, dh_err *e);                                                          \
    int dk_scale_##S(float *p, int64_t n, float a, dh_err *e);                                                         \
    int dk_axpby_##S(int64_t n, float a, const float *x, float b, float *y, dh_err *e);                                \
    int dk_mul_##S(int64_t n, const float *a, const float *b, float *out, dh_err *e);                                  \
    int dk_sum_##S(const float *x, int64_t n, int squares, double *out, dh_err *e);                                    \
    int dk_add_bias_##S(float *y, const float *b, int64_t N, int64_t F, int64_t P, dh_err *e);                         \
    int dk_bias_grad_##S(const float *dy, float *db, int64_t N, int64_t F, int64_t P, dh_err *e);                      \
    int dk_conv2d_forward_##S(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,         \
                              dk_tensor *y, dh_err *e);                                                                \
    int dk_conv2d_backward_data_##S(const dk_tensor *dy, const dk_tensor *w, int stride, int pad, dk_tensor *dx,       \
                                    dh_err *e);                                                                        \
    int dk_conv2d_backward_filter_##S(const dk_tensor *x, const dk_tensor *dy, int stride, int pad, dk_tensor *dw,     \
                                      dh_err *e);                                                                      \
    int dk_bn_forward_train_##S(const dk_tensor *x, const float *gamma, const float *beta, float *rmean, float *rvar,  \
                                float momentum, float eps, dk_tensor *y, float *smean, float *sinvstd, dh_err *e);     \
    int dk_bn_forward_infer_##S(const dk_tensor *x, const float *gamma, const float *beta, const float *rmean,         \
                                const float *rvar, float eps, dk_tensor *y, dh_err *e);                                \
    int dk_bn_backward_##S(const dk_tensor *x, const dk_tensor *dy, const float *gamma, const float *smean,            \
                           const float *sinvstd, dk_tensor *dx, float *dgamma, float *dbeta, dh_err *e);               \
    int dk_unary_##S(int op, const float *x, float *y, int64_t n, dh_err *e);                                          \
    int dk_unary_grad_##S(int op, const float *a, const float *dy, float *dx, int64_t n, dh_err *e);                   \
    int dk_pool_forward_##S(int avg, const dk_tensor *x, int k, int stride, int pad, dk_tensor *y, dh_err *e);         \
    int dk_maxpool_backward_##S(const dk_tensor *x, const dk_tensor *y, const dk_tensor *dy, int k, int stride,        \
                                int pad, dk_tensor *dx, dh_err *e);                                                    \
    int dk_avgpool_backward_##S(const dk_tensor *dy, int k, int stride, int pad, dk_tensor *dx, dh_err *e);            \
    int dk_gap_forward_##S(const float *x, float *y, int64_t NC, int64_t P, dh_err *e);                                \
    int dk_gap_backward_##S(const float *dy, float *dx, int64_t NC, int64_t P, dh_err *e);                             \
    int dk_dropout_forward_##S(const float *x, float p, uint64_t seed, uint64_t offset, float *y, float *mask,         \
                               int64_t n, dh_err *e);                                                                  \
    int dk_softmax_##S(const float *logits, float *probs, int64_t N, int64_t K, dh_err *e);                            \
    int dk_softmax_xent_##S(const float *logits, const int32_t *labels, int64_t N, int64_t K, float smoothing,         \
                            float grad_scale, double *loss, int64_t *correct, float *dlogits, dh_err *e);              \
    int dk_sgd_step_##S(float *w, const float *g, float *v, int64_t n, float lr, float mom, float wd, int nesterov,    \
                        dh_err *e);                                                                                    \
    int dk_rand_uniform_##S(float *p, int64_t n, float lo, float hi, uint64_t seed, uint64_t offset, dh_err *e);       \
    int dk_images_augment_##S(const uint8_t *src, int64_t S_, int C, int H, int W, const int32_t *idx, int pad,        \
                              int flip, const float *mean, const float *std, uint64_t seed, uint64_t offset,           \
                              dk_tensor *out, dh_err *e);                                                              \
    int dk_gather_i32_##S(const int32_t *src, const int32_t *idx, int64_t n, int32_t *out, dh_err *e);

/* unary op codes for dk_unary_* */
enum { DK_OP_RELU = 0, DK_OP_GELU, DK_OP_SIGMOID, DK_OP_TANH };

DK_BACKEND_FUNCS(cpu)

/* The CUDA backend: defined in libdhcuda.so (dk_cuda.cu), never linked;
 * dk_core.c calls them through DH_CUDA_CALL (dh_cudaload.h). */
DK_BACKEND_FUNCS(cuda)
int dk_cuda_probe(dh_err *e); /* 0 when a CUDA device can be used, else why not */
int dk_cuda_init(dh_err *e);
void dk_cuda_shutdown(void);
int dk_cuda_sync(dh_err *e);
void *dk_cuda_cublas(void);
void dk_cuda_set_tf32(int on);
void *dk_cuda_cudnn(void);
int dk_cuda_malloc(size_t bytes, void **out, dh_err *e);
void dk_cuda_free(void *p);
int dk_cuda_memcpy(void *dst, const void *src, size_t bytes, int kind, dh_err *e); /* 0 h2d, 1 d2h, 2 d2d */
/* Device, driver, runtime, cuBLAS and cuDNN versions, one line (reports). */
int dk_cuda_info(char *buf, size_t n, dh_err *e);
int dhcu_abi_version(void);

/* CPU engine: backend, threads and precision from DH_CPU, DH_THREADS,
 * DH_PRECISION (dk_cpu.c; dk_init(DK_CPU) calls it). */
int dk_cpu_init(dh_err *e);
/* The CPU engine's fused convolution + pooling (dk_conv2d_pool_forward):
 * *done = 1 when a fast backend ran it (or failed: the return code), 0 when
 * dk_core.c is to compose it from the single ops. */
int dk_conv2d_pool_forward_cpu(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,
                               int relu, int avg, int pk, int ps, int pp, const dk_bn_act *bn, const dk_tensor *t,
                               dk_tensor *y, int *done, dh_err *e);
/* The same for the fused convolution + batch norm. + activation (dk_conv2d_bn_forward). */
int dk_conv2d_bn_forward_cpu(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,
                             const dk_bn_act *bn, const dk_tensor *t, dk_tensor *y, int *done, dh_err *e);
/* A parallel loop over independent iterations, when there is enough work
 * (`work` elements touched) to pay for waking the threads. */
#define DK_PRAGMA(x) _Pragma(#x)
#define PAR_FOR(work)  DK_PRAGMA(omp parallel for schedule(static) if ((work) >= PAR_MIN))
#define PAR_FOR2(work) DK_PRAGMA(omp parallel for collapse(2) schedule(static) if ((work) >= PAR_MIN))
#define PAR_MIN 32768

/* Images N, channels C and values per plane P of an NCHW tensor ((N, C)
 * and (N, C, L) as planes of 1 and L values). */
static inline void dk_nchw(const dk_tensor *t, int64_t *N, int64_t *C, int64_t *P) {
    *N = t->shape[0];
    *C = t->shape[1];
    *P = t->ndim >= 4 ? t->shape[2] * t->shape[3] : (t->ndim == 3 ? t->shape[2] : 1);
}

/* Plain-C fast paths of the fast CPU backend (dk_fast.c): batch
 * normalisation in training, the reference's contract and numerics to
 * within rounding, the same bits for any thread count. N*H*W > 0. */
int dk_bn_forward_train_fast(const dk_tensor *x, const float *gamma, const float *beta, float *rmean, float *rvar,
                             float momentum, float eps, dk_tensor *y, float *smean, float *sinvstd, dh_err *e);
int dk_bn_backward_fast(const dk_tensor *x, const dk_tensor *dy, const float *gamma, const float *smean,
                        const float *sinvstd, dk_tensor *dx, float *dgamma, float *dbeta, dh_err *e);
/* Max pooling by the fast path: the reference's results bit for bit. */
int dk_maxpool_forward_fast(const dk_tensor *x, int k, int stride, int pad, dk_tensor *y, dh_err *e);
int dk_maxpool_backward_fast(const dk_tensor *x, const dk_tensor *dy, int k, int stride, int pad, dk_tensor *dx,
                             dh_err *e);
/* GELU by the fast path (a polynomial erf, within 5e-7 of the reference). */
int dk_gelu_forward_fast(const float *x, float *y, int64_t n, dh_err *e);
int dk_gelu_backward_fast(const float *x, const float *dy, float *dx, int64_t n, dh_err *e);
/* CPU scratch space of at least nfloats floats (grown on demand). */
float *dk_cpu_workspace(size_t nfloats, dh_err *e);
void dk_cpu_shutdown(void);

#ifdef __cplusplus
}
#endif
#endif
