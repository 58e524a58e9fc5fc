/* dk_elem.h — per-element arithmetic shared by the CPU and CUDA backends.
 *
 * Each function is `static inline DK_HD`, so the CPU reference and the CUDA
 * kernels run the same expression and the CPU unit tests exercise it.
 */
#ifndef DK_ELEM_H
#define DK_ELEM_H
#include <math.h>
#include <stdint.h>
#include "dk_rng.h"

#define DK_SQRT1_2   0.70710678118654752440f   /* 1/sqrt(2)      */
#define DK_INVSQRT2PI 0.39894228040143267794f  /* 1/sqrt(2 pi)   */

static inline DK_HD float dk_relu_f(float x) { return x > 0.0f ? x : 0.0f; }
static inline DK_HD float dk_relu_grad(float y, float dy) { return y > 0.0f ? dy : 0.0f; }

/* Exact GELU: x Phi(x). */
static inline DK_HD float dk_gelu_f(float x) { return 0.5f * x * (1.0f + erff(x * DK_SQRT1_2)); }
static inline DK_HD float dk_gelu_grad(float x, float dy) {
    float cdf = 0.5f * (1.0f + erff(x * DK_SQRT1_2));
    float pdf = DK_INVSQRT2PI * expf(-0.5f * x * x);
    return dy * (cdf + x * pdf);
}

static inline DK_HD float dk_sigmoid_f(float x) {
    /* stable for large |x| */
    if (x >= 0.0f) { float z = expf(-x); return 1.0f / (1.0f + z); }
    float z = expf(x); return z / (1.0f + z);
}
static inline DK_HD float dk_sigmoid_grad(float y, float dy) { return dy * y * (1.0f - y); }
static inline DK_HD float dk_tanh_grad(float y, float dy) { return dy * (1.0f - y * y); }

/* Inverted dropout mask value for element i. */
static inline DK_HD float dk_dropout_mask(uint64_t seed, uint64_t i, float p) {
    return dk_rng_uniform(seed, i) < p ? 0.0f : 1.0f / (1.0f - p);
}

/* One SGD element update (PyTorch semantics); updates *w and *v. */
static inline DK_HD void dk_sgd_elem(float *w, float g, float *v, float lr, float mom,
                                     float wd, int nesterov) {
    g += wd * *w;
    if (mom != 0.0f) {
        float vn = mom * *v + g;
        *v = vn;
        g = nesterov ? g + mom * vn : vn;
    }
    *w -= lr * g;
}

/* a*x - b without a fused multiply-add, so CPU and GPU round identically. */
static inline DK_HD float dk_affine_rn(float x, float a, float b) {
#ifdef __CUDA_ARCH__
    return __fsub_rn(__fmul_rn(x, a), b);
#else
    float t = x * a;
    return t - b;
#endif
}

/* lo + (hi - lo) u, without fused multiply-add (identical on both devices). */
static inline DK_HD float dk_lerp_rn(float lo, float hi, float u) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(lo, __fmul_rn(hi - lo, u));
#else
    float t = (hi - lo) * u;
    return lo + t;
#endif
}

/* Augmentation draws for output row r: crop offsets in [0, 2 pad] and flip. */
typedef struct { int oy, ox, flip; } dk_aug_draw;
static inline DK_HD dk_aug_draw dk_aug_draws(uint64_t seed, uint64_t row, int pad, int flip) {
    dk_aug_draw d;
    uint64_t base = 4 * row;
    d.oy = pad > 0 ? (int)dk_rng_below(seed, base + 0, (uint32_t)(2 * pad + 1)) : pad;
    d.ox = pad > 0 ? (int)dk_rng_below(seed, base + 1, (uint32_t)(2 * pad + 1)) : pad;
    d.flip = flip ? (int)(dk_rng_u32(seed, base + 2) >> 31) : 0;
    return d;
}
/* Source coordinates of output pixel (y, x) for a draw; -1 when outside. */
static inline DK_HD int dk_aug_src_y(dk_aug_draw d, int y, int pad, int H) {
    int sy = y + d.oy - pad;
    return (sy >= 0 && sy < H) ? sy : -1;
}
static inline DK_HD int dk_aug_src_x(dk_aug_draw d, int x, int pad, int W) {
    int xx = d.flip ? W - 1 - x : x;
    int sx = xx + d.ox - pad;
    return (sx >= 0 && sx < W) ? sx : -1;
}
#endif
