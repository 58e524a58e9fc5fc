/* dk_dnnl.h — internal: the oneDNN CPU backend (dk_dnnl.c), built when
 * the Makefile finds oneDNN (DH_USE_DNNL=1).
 *
 * dk_cpu.c calls these first when the CPU backend is DK_CPU_ONEDNN; a
 * function returns DK_DNNL_DECLINE for a case it leaves to the reference
 * (a geometry oneDNN cannot express, or no implementation), which then
 * runs. Arguments were checked by dk_core.c. Not installed for users.
 *
 * Each operation's primitives (and the reorders between our NCHW / OIHW
 * buffers and the layouts oneDNN picks) are created once per shape and
 * cached; their transient buffers and scratchpads share one arena, grown
 * on demand, so that a steady training or inference loop allocates nothing.
 */
#ifndef DK_DNNL_H
#define DK_DNNL_H
#include "dk_impl.h"

#define DK_DNNL_DECLINE (-1)

/* Engine and stream (once); the arena and cache are freed by shutdown. */
int dk_dnnl_init(dh_err *e);
void dk_dnnl_shutdown(void);
/* Drop every cached primitive (e.g. the thread count changed). */
void dk_dnnl_flush(void);
/* Bytes and count of the backend's own allocations so far (arena growth,
 * primitives created). */
void dk_dnnl_stats(int64_t *allocs, int64_t *bytes, int64_t *primitives);
/* bf16: convolutions and matrix products take bf16 inputs (rounded from
 * fp32), accumulate in fp32 and write fp32. */
void dk_dnnl_set_bf16(int on);
int dk_dnnl_bf16_supported(void);

int dk_sgemm_dnnl(int tA, int tB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc, dh_err *e);
int dk_conv2d_forward_dnnl(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,
                           dk_tensor *y, dh_err *e);
int dk_conv2d_backward_data_dnnl(const dk_tensor *dy, const dk_tensor *w, int stride, int pad, dk_tensor *dx,
                                 dh_err *e);
int dk_conv2d_backward_filter_dnnl(const dk_tensor *x, const dk_tensor *dy, int stride, int pad, dk_tensor *dw,
                                   dh_err *e);
/* Inference: the convolution (with ReLU as its post-op) into the arena in
 * its blocked layout, pooled there, and only the pooled output reordered to
 * NCHW (t, the convolution's output, is not written; its shape gives the
 * geometry). */
int dk_conv2d_pool_forward_dnnl(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,
                                int relu, int avg, int pk, int ps, int pp, const dk_bn_act *bn, const dk_tensor *t,
                                dk_tensor *y, dh_err *e);
/* Inference: the batch normalisation folded into the filter and bias (in
 * the op's own buffer), the activation (DK_ACT_*) as the convolution's
 * post-op (t is not written; its shape gives the geometry). */
int dk_conv2d_bn_forward_dnnl(const dk_tensor *x, const dk_tensor *w, const dk_tensor *b, int stride, int pad,
                              const dk_bn_act *bn, const dk_tensor *t, dk_tensor *y, dh_err *e);
int dk_bn_forward_infer_dnnl(const dk_tensor *x, const float *gamma, const float *beta, const float *rmean,
                             const float *rvar, float eps, dk_tensor *y, dh_err *e);

#endif
