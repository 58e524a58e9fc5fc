/* dk.h — the deephash kernel library: tensors on a device and the
 * operations that training and inference need, with a CPU reference
 * backend (plain C + OpenBLAS; it defines the numerics) and a CUDA backend
 * (cuBLAS, cuDNN, own kernels) chosen at run time.
 *
 * Conventions (see kernels/README.md):
 *  - Every function that can fail returns 0 (DH_OK) or a dh_code and fills
 *    the dh_err (which may be NULL). Nothing prints, nothing exits.
 *  - Float32 everywhere, NCHW layout for images/activations, row-major for
 *    matrices. Shapes are written next to each argument as (N, C, H, W).
 *  - All tensors given to one call must live on the same device; a tensor's
 *    `dev` decides which backend runs. A mismatch is DH_EINVAL.
 *  - Output tensors are allocated by the caller with the documented shape
 *    (checked: a wrong element count is DH_EINVAL). Outputs are
 *    OVERWRITTEN, never accumulated into (use dk_axpby to accumulate).
 *  - Gradients of parameters (dw, db, dgamma, dbeta) are overwritten too.
 *  - Weight layout: conv (F, C, KH, KW); fully connected (OUT, IN), i.e.
 *    y = x W^T + b, like PyTorch/Caffe.
 *  - CUDA calls are asynchronous on the default stream; dk_download,
 *    dk_sync and functions that return a host value (loss, counts, sums)
 *    synchronise. A kernel failure may therefore be reported by a later
 *    call, always as DH_EDEVICE.
 *  - Randomness comes from a counter-based generator (dh_rng.h): element i
 *    of a draw with seed s is a pure function of (s, offset + i), so the CPU
 *    and the GPU produce the same numbers and results do not depend on
 *    thread scheduling.
 *  - The library keeps one scratch workspace per device (grown on demand,
 *    freed by dk_shutdown); calls are therefore not thread-safe.
 */
#ifndef DK_H
#define DK_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" { /* also for dh_util.h, which has no guards of its own */
#endif
#include "dh_util.h"

/* ---- devices -------------------------------------------------------------- */
typedef enum { DK_CPU = 0, DK_CUDA = 1 } dk_device;

/* 1 if this build has the CUDA backend and a usable GPU is present. */
int dk_cuda_available(void);
/* s: "cpu", "cuda" (alias "gpu"), "auto", or NULL/"" meaning the environment variable
 * DH_DEVICE, else "auto". "auto" picks CUDA when available, else the CPU.
 * "cuda" without a usable GPU (or in a CPU-only build) is DH_EDEVICE
 * "no CUDA device available"; anything else is DH_EINVAL. */
int dk_device_parse(const char *s, dk_device *out, dh_err *e);
const char *dk_device_name(dk_device d); /* "cpu" / "cuda" */
/* Initialise the backend (CUDA: select device 0, create the cuBLAS and
 * cuDNN handles once). Idempotent. Must be called before using `dev`. */
int dk_init(dk_device dev, dh_err *e);
/* Free workspaces and handles of every backend. */
void dk_shutdown(void);
/* Wait for queued device work; reports asynchronous failures. */
int dk_sync(dk_device dev, dh_err *e);
/* The cublasHandle_t / cudnnHandle_t (as void*), NULL before dk_init(DK_CUDA)
 * or in a CPU-only build: for other CUDA code that wants to share them. */
void *dk_cublas_handle(void);
/* Allow TF32 tensor-core math in cuBLAS and cuDNN (faster on Ampere and
 * later, about 1e-3 relative error). Off by default: the CUDA backend then
 * computes in full FP32 like the CPU. The environment variable DH_TF32=1
 * turns it on at dk_init. No effect on the CPU. */
void dk_allow_tf32(int on);
void *dk_cudnn_handle(void);

/* ---- the CPU engine ---------------------------------------------------------- */
/* Two CPU backends: DK_CPU_REF, the plain-C reference that defines the
 * numerics, and DK_CPU_ONEDNN (built when oneDNN was found; the default
 * then): oneDNN for convolution, batch norm and matrix products, the
 * reference's own loops for the rest. Both run on one pool of threads
 * (OpenMP, shared with oneDNN; OpenBLAS is given the same count).
 * dk_init(DK_CPU) reads DH_CPU ("ref" or "onednn"), DH_THREADS (1..1024;
 * default: every core) and DH_PRECISION ("fp32" or "bf16"); a bad value is
 * DH_EINVAL, DH_CPU=onednn or bf16 in a build or on a CPU without them
 * DH_EUNSUPPORTED. Results are bit-identical run to run for a backend, a
 * thread count and a precision. The reference's own loops give the same
 * bits for any thread count, OpenBLAS's and oneDNN's products need not. */
typedef enum { DK_CPU_REF = 0, DK_CPU_ONEDNN = 1 } dk_cpu_backend;
int dk_cpu_set_backend(dk_cpu_backend b, dh_err *e);
dk_cpu_backend dk_cpu_get_backend(void);
const char *dk_cpu_backend_name(dk_cpu_backend b); /* "ref" / "onednn" */
int dk_cpu_has_onednn(void);                       /* built in */
int dk_set_threads(int n, dh_err *e);              /* 1..1024 */
int dk_threads(void);
/* bf16 on the oneDNN backend: convolution and matrix-product inputs are
 * rounded to bfloat16, products accumulate and are stored in fp32 (needs
 * AVX512-BF16 or AMX). */
int dk_cpu_set_bf16(int on, dh_err *e);
int dk_cpu_get_bf16(void);
/* "bf16" or "fp32": the CPU precision in force, as models and reports name it. */
const char *dk_cpu_precision_name(void);
/* The CPU engine's own allocations so far (workspaces, cached oneDNN
 * primitives): a steady training or inference loop leaves them unchanged. */
typedef struct dk_cpu_stats {
    int64_t allocs, bytes, primitives;
} dk_cpu_stats;
void dk_cpu_get_stats(dk_cpu_stats *s);

/* ---- raw device memory (for u8 images, i32 labels/indices, ...) ----------- */
int dk_mem_alloc(dk_device dev, size_t bytes, void **out, dh_err *e); /* zeroed */
void dk_mem_free(dk_device dev, void *p);                             /* NULL ok */
int dk_mem_upload(dk_device dev, void *dst, const void *host_src, size_t bytes, dh_err *e);
int dk_mem_download(dk_device dev, void *host_dst, const void *src, size_t bytes, dh_err *e);

/* ---- tensors ---------------------------------------------------------------- */
#define DK_MAXDIM 4
typedef struct dk_tensor {
    dk_device dev;
    int ndim;                 /* 1..4 */
    int64_t shape[DK_MAXDIM]; /* unused trailing entries are 1 */
    int64_t n;                /* product of shape[0..ndim) */
    float *data;              /* on dev (host memory for DK_CPU) */
    int owns;                 /* 1: dk_tensor_free frees data; 0: a view */
    int fmt;                  /* 0: NCHW float32 (all but DK_FMT_KEEP below); see "inference chains" */
} dk_tensor;
/* Inference chains. Where a fused inference op (dk_conv2d_bn_forward,
 * dk_conv2d_pool_forward) feeds the next fused op and nothing else, its
 * output may stay in the layout and precision the backend computes in
 * (oneDNN: channel-blocked, bf16 under DH_PRECISION=bf16), which saves the
 * copies into NCHW float32 and back. The caller asks by setting the
 * output's fmt to DK_FMT_KEEP; the op sets it to 0 when it wrote NCHW
 * float32 (every backend but oneDNN, and shapes oneDNN cannot keep), else
 * to a code > 0 only the backend reads. Such a tensor is the input x of the
 * next fused op and nothing else: any other op, a view or rows of it, and
 * a fused op that would have to compose the reference's steps (a shape
 * oneDNN declines) refuse it with DH_EUNSUPPORTED; the caller then runs
 * the chain again without keeping. Results equal the unchained ones bit
 * for bit (the next op rounds its input to its own precision anyway). */
#define DK_FMT_KEEP (-1)

/* Allocate a zero-filled tensor. A zero-initialised dk_tensor (= {0}) is
 * "empty" and may be freed. */
int dk_tensor_alloc(dk_tensor *t, dk_device dev, int ndim, const int64_t *shape, dh_err *e);
/* Convenience: shape (d0, d1, ...) with ndim of them used. */
int dk_tensor_alloc4(dk_tensor *t, dk_device dev, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, dh_err *e);
void dk_tensor_free(dk_tensor *t); /* no-op for views; resets to {0} */
/* A non-owning view of the same data with another shape (same element
 * count, else DH_EINVAL). */
int dk_tensor_view(const dk_tensor *t, int ndim, const int64_t *shape, dk_tensor *view, dh_err *e);
/* A non-owning view of rows [start, start+count) along dimension 0. */
int dk_tensor_rows(const dk_tensor *t, int64_t start, int64_t count, dk_tensor *view, dh_err *e);
/* Elements per row: n / shape[0]. */
int64_t dk_tensor_rowsize(const dk_tensor *t);
/* "(128, 3, 32, 32)" into buf, for messages. */
const char *dk_shape_str(const dk_tensor *t, char *buf, size_t n);

int dk_zero(dk_tensor *t, dh_err *e);
int dk_fill(dk_tensor *t, float v, dh_err *e);
/* Copy n floats host <-> tensor (n must equal t->n). */
int dk_upload(dk_tensor *t, const float *host, int64_t n, dh_err *e);
int dk_download(const dk_tensor *t, float *host, int64_t n, dh_err *e);
/* dst <- src, same element count; devices may differ (host<->device copy). */
int dk_copy(dk_tensor *dst, const dk_tensor *src, dh_err *e);

/* ---- elementwise and reductions ---------------------------------------------- */
int dk_scale(dk_tensor *x, float a, dh_err *e);                                /* x *= a */
int dk_axpby(float a, const dk_tensor *x, float b, dk_tensor *y, dh_err *e);   /* y = a x + b y */
int dk_mul(const dk_tensor *a, const dk_tensor *b, dk_tensor *out, dh_err *e); /* out = a*b (may alias) */
/* Sum and sum of squares over all elements (double accumulation; synchronises). */
int dk_sum(const dk_tensor *x, double *out, dh_err *e);
int dk_sumsq(const dk_tensor *x, double *out, dh_err *e);

/* ---- matrix products ------------------------------------------------------------ */
/* Row-major sgemm on raw device pointers:
 *   C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C
 * op(A) = A (M, K) with lda >= K, or if transA, A is (K, M) with lda >= M.
 * op(B) = B (K, N) with ldb >= N, or if transB, B is (N, K) with ldb >= K. */
int dk_sgemm(dk_device dev, int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
             int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, dh_err *e);
/* The same on tensors viewed as 2-D matrices (shape[0], n / shape[0]). */
int dk_matmul(const dk_tensor *A, int transA, const dk_tensor *B, int transB, float alpha, float beta, dk_tensor *C,
              dh_err *e);

/* ---- fully connected: y = x W^T + b ------------------------------------------- */
/* x (N, IN) (any shape with n = N*IN; N = shape[0]), w (OUT, IN), b (OUT) or
 * NULL, y (N, OUT). */
int dk_fc_forward(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, dk_tensor *y, dh_err *e);
/* dy (N, OUT) -> dx (N, IN) or NULL, dw (OUT, IN), db (OUT) or NULL. */
int dk_fc_backward(const dk_tensor *x, const dk_tensor *w, const dk_tensor *dy, dk_tensor *dx, dk_tensor *dw,
                   dk_tensor *db, dh_err *e);

/* ---- 2-D convolution (cross-correlation, like every framework) ------------------ */
/* Output size along one axis: (in + 2 pad - k) / stride + 1 (floor);
 * returns <= 0 when the kernel does not fit. */
int64_t dk_out_size(int64_t in, int k, int stride, int pad);
/* x (N, C, H, W), w (F, C, KH, KW), b (F) or NULL, y (N, F, OH, OW) with
 * OH = dk_out_size(H, KH, stride, pad), OW likewise. Same stride and pad
 * on both axes. */
int dk_conv2d_forward(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad, dk_tensor *y,
                      dh_err *e);
/* dy (N, F, OH, OW), w (F, C, KH, KW) -> dx (N, C, H, W). */
int dk_conv2d_backward_data(const dk_tensor *dy, const dk_tensor *w, int stride, int pad, dk_tensor *dx, dh_err *e);
/* x (N, C, H, W), dy (N, F, OH, OW) -> dw (F, C, KH, KW). */
int dk_conv2d_backward_filter(const dk_tensor *x, const dk_tensor *dy, int stride, int pad, dk_tensor *dw, dh_err *e);
/* dy (N, F, OH, OW) -> db (F): sum over N, OH, OW. */
int dk_conv2d_backward_bias(const dk_tensor *dy, dk_tensor *db, dh_err *e);

/* ---- batch normalisation (per channel; 2-D inputs (N, C) are treated as
 *      (N, C, 1, 1)) ---------------------------------------------------------------- */
/* Training mode: normalise with the batch statistics, biased variance;
 *   y = gamma * (x - mean) * invstd + beta,  invstd = 1 / sqrt(var + eps)
 * and update the running statistics (PyTorch convention):
 *   running_mean = (1 - momentum) running_mean + momentum * mean
 *   running_var  = (1 - momentum) running_var  + momentum * var * M/(M-1)
 * with M = N*H*W (unbiased running variance). eps >= 1e-5 (cuDNN's minimum).
 * x, y (N, C, H, W); gamma, beta, running_mean, running_var,
 * save_mean, save_invstd (C). save_* are kept for the backward pass. */
int dk_batchnorm_forward_train(const dk_tensor *x, const dk_tensor *gamma, const dk_tensor *beta,
                               dk_tensor *running_mean, dk_tensor *running_var, float momentum, float eps, dk_tensor *y,
                               dk_tensor *save_mean, dk_tensor *save_invstd, dh_err *e);
/* Inference: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta. */
int dk_batchnorm_forward_infer(const dk_tensor *x, const dk_tensor *gamma, const dk_tensor *beta,
                               const dk_tensor *running_mean, const dk_tensor *running_var, float eps, dk_tensor *y,
                               dh_err *e);
/* Backward of the training-mode forward: dx (N, C, H, W), dgamma, dbeta (C). */
int dk_batchnorm_backward(const dk_tensor *x, const dk_tensor *dy, const dk_tensor *gamma, const dk_tensor *save_mean,
                          const dk_tensor *save_invstd, dk_tensor *dx, dk_tensor *dgamma, dk_tensor *dbeta, dh_err *e);

/* ---- activations (elementwise, any shape; y may alias x, dx may alias dy) ----------- */
int dk_relu_forward(const dk_tensor *x, dk_tensor *y, dh_err *e);
/* Uses the OUTPUT y (so the forward may run in place): dx = dy * (y > 0). */
int dk_relu_backward(const dk_tensor *y, const dk_tensor *dy, dk_tensor *dx, dh_err *e);
/* Exact GELU: y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)). */
int dk_gelu_forward(const dk_tensor *x, dk_tensor *y, dh_err *e);
/* Uses the INPUT x: dx = dy * (Phi(x) + x phi(x)). dx may alias dy, not x
 * unless x is no longer needed. */
int dk_gelu_backward(const dk_tensor *x, const dk_tensor *dy, dk_tensor *dx, dh_err *e);
/* y = 1 / (1 + exp(-x)); backward uses the output: dx = dy * y (1 - y). */
int dk_sigmoid_forward(const dk_tensor *x, dk_tensor *y, dh_err *e);
int dk_sigmoid_backward(const dk_tensor *y, const dk_tensor *dy, dk_tensor *dx, dh_err *e);
/* y = tanh(x); backward uses the output: dx = dy * (1 - y^2). */
int dk_tanh_forward(const dk_tensor *x, dk_tensor *y, dh_err *e);
int dk_tanh_backward(const dk_tensor *y, const dk_tensor *dy, dk_tensor *dx, dh_err *e);

/* ---- pooling (square window k, same stride and pad on both axes) ------------------- */
/* Output OH = dk_out_size(H, k, stride, pad), OW likewise.
 * Max pool: padded positions never win (treated as -inf); ties go to the
 * first position in row-major window order.
 * Average pool: divides by k*k, padded positions count as zeros
 * (cuDNN's COUNT_INCLUDE_PADDING, PyTorch's count_include_pad=True).
 * x, dx (N, C, H, W); y, dy (N, C, OH, OW). */
int dk_maxpool_forward(const dk_tensor *x, int k, int stride, int pad, dk_tensor *y, dh_err *e);
/* Needs the forward input and output. */
int dk_maxpool_backward(const dk_tensor *x, const dk_tensor *y, const dk_tensor *dy, int k, int stride, int pad,
                        dk_tensor *dx, dh_err *e);
int dk_avgpool_forward(const dk_tensor *x, int k, int stride, int pad, dk_tensor *y, dh_err *e);
int dk_avgpool_backward(const dk_tensor *dy, int k, int stride, int pad, dk_tensor *dx, dh_err *e);
/* The tail of a fused inference op: batch normalisation with the running
 * statistics (as dk_batchnorm_forward_infer: (v - mean) gamma /
 * sqrt(var + eps) + beta per channel), then an activation. */
enum { DK_ACT_NONE = 0, DK_ACT_RELU = 1, DK_ACT_GELU = 2 };
typedef struct {
    const dk_tensor *gamma, *beta, *mean, *var; /* (C) each */
    float eps;
    int act; /* DK_ACT_NONE, DK_ACT_RELU or DK_ACT_GELU (exact) */
} dk_bn_act;
/* Convolution, optional ReLU, pooling and an optional normalisation in one
 * call, for inference:
 *   p = pool(act(conv(x, w) + b)),  act = ReLU when relu, else the identity,
 *   y = p without bn, else bn's tail applied to p,
 * pool = max (avg = 0) or average (avg = 1) with window pk, stride ps, pad pp.
 * t (N, F, OH, OW), the convolution's output, and p (N, F, PH, PW), the
 * pooled one (only with bn; else NULL), are scratch: the reference (and
 * CUDA) compose dk_conv2d_forward, dk_relu_forward, the pooling,
 * dk_batchnorm_forward_infer and the activation through them; the oneDNN
 * backend pools the convolution's own blocked output, normalises and
 * activates as the pooling's post-ops, and leaves t and p unwritten, saving
 * the layout copy of the largest tensor. Equal to the composition up to the
 * convolution's rounding (oneDNN: max pooling exact, average pooling summed
 * in its own order). */
int dk_conv2d_pool_forward(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad, int relu,
                           int avg, int pk, int ps, int pp, const dk_bn_act *bn, dk_tensor *t, dk_tensor *p,
                           dk_tensor *y, dh_err *e);
/* Convolution, batch normalisation with the running statistics and an
 * optional activation in one call, for inference:
 *   y = bn's tail applied to conv(x, w) + b.
 * t (N, F, OH, OW) is the convolution's output as scratch: the reference
 * (and CUDA) compose dk_conv2d_forward, dk_batchnorm_forward_infer and the
 * activation through it; the oneDNN backend folds the normalisation into
 * the filter and bias (w gamma / sqrt(var + eps) per output channel), runs
 * the activation as the convolution's post-op and leaves t unwritten.
 * Equal to the composition up to rounding (the folded filter's). */
int dk_conv2d_bn_forward(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,
                         const dk_bn_act *bn, dk_tensor *t, dk_tensor *y, dh_err *e);
/* Global average pool: x (N, C, H, W) -> y (N, C); dy (N, C) -> dx (N, C, H, W). */
int dk_gap_forward(const dk_tensor *x, dk_tensor *y, dh_err *e);
int dk_gap_backward(const dk_tensor *dy, dk_tensor *dx, dh_err *e);

/* ---- dropout ----------------------------------------------------------------------- */
/* Inverted dropout: element i is dropped iff dh_rng_uniform(seed, offset + i)
 * < p; mask[i] = 0 if dropped else 1/(1-p); y = x * mask. 0 <= p < 1.
 * Use a fresh offset (or seed) per step, e.g. offset = step * x->n.
 * x, y, mask: same shape (y may alias x). */
int dk_dropout_forward(const dk_tensor *x, float p, uint64_t seed, uint64_t offset, dk_tensor *y, dk_tensor *mask,
                       dh_err *e);
/* dx = dy * mask (dx may alias dy). */
int dk_dropout_backward(const dk_tensor *dy, const dk_tensor *mask, dk_tensor *dx, dh_err *e);

/* ---- softmax and cross-entropy ------------------------------------------------------- */
/* Row-wise softmax: logits, probs (N, K); probs may alias logits. */
int dk_softmax_forward(const dk_tensor *logits, dk_tensor *probs, dh_err *e);
/* Softmax cross-entropy with label smoothing s in [0, 1):
 *   target_k = (1 - s) [k == label] + s / K
 *   loss     = mean over rows of  -sum_k target_k log softmax(logits)_k
 * logits (N, K); labels: N int32 in [0, K) on the same device (a label out
 * of range is DH_EINVAL on the CPU; on CUDA the row counts as loss 0);
 * loss_out: mean loss (host, may be NULL); correct_out: number of rows whose
 * first argmax equals the label (host, may be NULL); dlogits (N, K) or NULL:
 * gradient of the MEAN loss, (softmax - target) / N, times grad_scale
 * (pass 1). dlogits may alias logits. */
int dk_softmax_xent(const dk_tensor *logits, const int32_t *labels, float smoothing, float grad_scale, double *loss_out,
                    int64_t *correct_out, dk_tensor *dlogits, dh_err *e);

/* ---- optimiser ----------------------------------------------------------------------- */
/* One SGD step, PyTorch semantics (dampening 0):
 *   g = grad + weight_decay * param
 *   v = momentum * v + g
 *   g = nesterov ? g + momentum * v : v
 *   param -= lr * g
 * param, grad, velocity: same shape (velocity zero at the start; may be
 * NULL when momentum == 0). lr and weight_decay are per call, so parameter
 * groups are just different arguments. */
int dk_sgd_step(dk_tensor *param, const dk_tensor *grad, dk_tensor *velocity, float lr, float momentum,
                float weight_decay, int nesterov, dh_err *e);

/* ---- learning-rate schedules (pure functions) ----------------------------------------- */
typedef enum {
    DK_SCHED_CONST = 0, /* base                                                  */
    DK_SCHED_STEP,      /* base * factor^(number of drop epochs <= epoch)        */
    DK_SCHED_ONECYCLE,  /* linear 0 -> base over warmup, then linear -> base*final */
    DK_SCHED_COSINE     /* linear 0 -> base over warmup, then cosine -> base*final */
} dk_sched_kind;
#define DK_SCHED_MAXDROPS 16
typedef struct dk_schedule {
    dk_sched_kind kind;
    double base; /* peak / initial learning rate */
    int ndrops;  /* STEP: epochs at which lr *= factor */
    int drops[DK_SCHED_MAXDROPS];
    double factor; /* STEP: default 0.1 */
    double warmup; /* ONECYCLE/COSINE: fraction of total steps, [0,1) */
    double final;  /* ONECYCLE/COSINE: final lr as a fraction of base */
} dk_schedule;
/* Parse "const", "step", "step:E1,E2,..." (default drops: none),
 * "onecycle[:WARMUP[:FINAL]]" (defaults 0.2, 0.0),
 * "cosine[:WARMUP[:FINAL]]" (defaults 0.05, 0.0). base is set to `base`.
 * DH_EINVAL with a message on anything else. */
int dk_schedule_parse(const char *s, double base, dk_schedule *out, dh_err *e);
/* Learning rate for optimiser step `step` (0-based) of `total` steps, with
 * steps_per_epoch used by STEP (epoch = step / steps_per_epoch). */
double dk_schedule_lr(const dk_schedule *s, int64_t step, int64_t total, int64_t steps_per_epoch);

/* ---- random numbers, initialisation, permutations -------------------------------------- */
/* Counter-based: see dh_rng.h for the per-element functions
 * dh_rng_u32(seed, i), dh_rng_uniform(seed, i) in [0,1), dh_rng_normal(seed, i). */
/* t[i] = uniform in [lo, hi) from (seed, offset + i). */
int dk_rand_uniform(dk_tensor *t, float lo, float hi, uint64_t seed, uint64_t offset, dh_err *e);
/* t[i] = mean + std * normal(seed, offset + i). Generated on the host and
 * uploaded, so bit-identical on both devices. */
int dk_rand_normal(dk_tensor *t, float mean, float std, uint64_t seed, uint64_t offset, dh_err *e);
/* He (Kaiming) normal: std = sqrt(2 / fan_in). */
int dk_init_he(dk_tensor *w, int64_t fan_in, uint64_t seed, dh_err *e);
/* Xavier (Glorot) uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)). */
int dk_init_xavier(dk_tensor *w, int64_t fan_in, int64_t fan_out, uint64_t seed, dh_err *e);
/* Host: a uniformly random permutation of 0..n-1 (Fisher-Yates driven by
 * dk_rng(seed, stream * 2^32 + k)); e.g. stream = epoch. */
void dk_permutation(int32_t *out, int64_t n, uint64_t seed, uint64_t stream);

/* ---- images: gather, augment, normalise (on the device) --------------------------------- */
#define DK_MAXCHAN 16
/* Flip modes of dk_images_augment. */
enum {
    DK_FLIP_NONE = 0,
    DK_FLIP_RANDOM = 1,   /* a coin per row: counter 4 (offset + r) + 2 */
    DK_FLIP_ALT_EVEN = 2, /* alternating flips: image s flipped iff its coin, counter 4 s + 3, is 1 */
    DK_FLIP_ALT_ODD = 3,  /* ... iff its coin is 0: alternate epochs see every image both ways */
    DK_FLIP_ALL = 4       /* every row (test-time augmentation) */
};
/* Padding modes of dk_images_augment, or'ed into its flip argument (e.g.
 * DK_FLIP_ALT_EVEN | DK_PAD_REFLECT): what a crop sees beyond the border. */
enum {
    DK_PAD_MEAN = 0,    /* 0.0 after normalisation, the mean colour (the default) */
    DK_PAD_REFLECT = 8, /* the image mirrored about its edge pixel (PyTorch's F.pad 'reflect') */
    DK_FLIP_MASK = 7    /* flip & DK_FLIP_MASK: the DK_FLIP_* mode */
};
/* For each output row r (0 <= r < out->shape[0] = N), take source image
 * s = idx ? idx[r] : r from src (u8 images (S, C, H, W), S rows, on the
 * device), and write
 *   out[r, c, y, x] = (src[s, c, y', x'] / 255 - mean[c]) / std[c]
 * where, with pad > 0, a crop offset (oy, ox) in [0, 2 pad]^2 is drawn per
 * row, and with flip a horizontal flip with probability 1/2:
 *   x'' = flip_r ? W-1-x : x,  y' = y + oy - pad,  x' = x'' + ox - pad;
 * positions outside the source image give 0.0 (zero padding in the
 * normalised space, i.e. the mean colour), or with DK_PAD_REFLECT the pixel
 * mirrored about the edge without repeating it (y' = -1 -> 1, H -> H-2;
 * airbench's crops of the image padded by reflection), which needs
 * pad < H and pad < W. Draws for row r use the RNG counters
 * 4 (offset + r) + {0: oy, 1: ox, 2: flip} (dk_aug_draws in dk_elem.h), so
 * pass e.g. offset = step * N; both padding modes draw the same. flip is a
 * DK_FLIP_* mode (1: random), or'ed with a DK_PAD_* mode (default mean);
 * the alternating modes draw per source image, not per row (dk_aug_flip).
 * pad = 0 and flip = 0 is plain normalisation.
 * idx: N int32 on the device (or NULL); each must be in [0, S) (checked on
 * the CPU only). mean, std: host arrays of C floats (C <= DK_MAXCHAN).
 * out (N, C, H, W). */
int dk_images_augment(const uint8_t *src, int64_t S, int C, int H, int W, const int32_t *idx, int pad, int flip,
                      const float *mean, const float *std, uint64_t seed, uint64_t offset, dk_tensor *out, dh_err *e);
/* out[r] = src[idx[r]] for r < n; int32 arrays on `dev`. */
int dk_gather_i32(dk_device dev, const int32_t *src, const int32_t *idx, int64_t n, int32_t *out, dh_err *e);

#ifdef __cplusplus
}
#endif
#endif
