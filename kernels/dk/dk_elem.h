/* dk_elem.h — per-element arithmetic shared by the CPU and CUDA backends.
 *
 * Each function is `static inline DH_HOSTDEV`, so the CPU reference and the CUDA
 * kernels run the same expression and the CPU unit tests exercise it.
 */
#ifndef DK_ELEM_H
#define DK_ELEM_H
#include <math.h>
#include <stdint.h>
#include "dh_rng.h"
#include "dk.h"

#define DK_SQRT1_2    0.70710678118654752440f /* 1/sqrt(2)      */
#define DK_INVSQRT2PI 0.39894228040143267794f /* 1/sqrt(2 pi)   */

static inline DH_HOSTDEV float dk_relu_f(float x) { return x > 0.0f ? x : 0.0f; }
static inline DH_HOSTDEV float dk_relu_grad(float y, float dy) { return y > 0.0f ? dy : 0.0f; }

/* Exact GELU: x Phi(x). */
static inline DH_HOSTDEV float dk_gelu_f(float x) { return 0.5f * x * (1.0f + erff(x * DK_SQRT1_2)); }
static inline DH_HOSTDEV float dk_gelu_grad(float x, float dy) {
    float cdf = 0.5f * (1.0f + erff(x * DK_SQRT1_2));
    float pdf = DK_INVSQRT2PI * expf(-0.5f * x * x);
    return dy * (cdf + x * pdf);
}

static inline DH_HOSTDEV float dk_sigmoid_f(float x) {
    /* stable for large |x| */
    if (x >= 0.0f) {
        float z = expf(-x);
        return 1.0f / (1.0f + z);
    }
    float z = expf(x);
    return z / (1.0f + z);
}
static inline DH_HOSTDEV float dk_sigmoid_grad(float y, float dy) { return dy * y * (1.0f - y); }
static inline DH_HOSTDEV float dk_tanh_grad(float y, float dy) { return dy * (1.0f - y * y); }

/* Inverted dropout mask value for element i. */
static inline DH_HOSTDEV float dk_dropout_mask(uint64_t seed, uint64_t i, float p) {
    return dh_rng_uniform(seed, i) < p ? 0.0f : 1.0f / (1.0f - p);
}

/* One SGD element update (PyTorch semantics); updates *w and *v. */
static inline DH_HOSTDEV void dk_sgd_elem(float *w, float g, float *v, float lr, float mom, float wd, int nesterov) {
    g += wd * *w;
    if (mom != 0.0f) {
        float vn = mom * *v + g;
        *v = vn;
        g = nesterov ? g + mom * vn : vn;
    }
    *w -= lr * g;
}

/* a*x - b without a fused multiply-add, so CPU and GPU round identically. */
static inline DH_HOSTDEV float dk_affine_rn(float x, float a, float b) {
#ifdef __CUDA_ARCH__
    return __fsub_rn(__fmul_rn(x, a), b);
#else
    float t = x * a;
    return t - b;
#endif
}

/* lo + (hi - lo) u, without fused multiply-add (identical on both devices). */
static inline DH_HOSTDEV float dk_lerp_rn(float lo, float hi, float u) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(lo, __fmul_rn(hi - lo, u));
#else
    float t = (hi - lo) * u;
    return lo + t;
#endif
}

/* Augmentation draws for output row r: crop offsets in [0, 2 pad] and flip;
 * flip is dk_images_augment's argument (a DK_FLIP_* mode | a DK_PAD_* mode),
 * and the padding mode changes no draw. */
typedef struct {
    int oy, ox, flip, reflect;
} dk_aug_draw;
static inline DH_HOSTDEV dk_aug_draw dk_aug_draws(uint64_t seed, uint64_t row, int pad, int flip) {
    dk_aug_draw d;
    uint64_t base = 4 * row;
    d.oy = pad > 0 ? (int)dh_rng_below(seed, base + 0, (uint32_t)(2 * pad + 1)) : pad;
    d.ox = pad > 0 ? (int)dh_rng_below(seed, base + 1, (uint32_t)(2 * pad + 1)) : pad;
    d.flip = (flip & DK_FLIP_MASK) == DK_FLIP_RANDOM ? (int)(dh_rng_u32(seed, base + 2) >> 31) : 0;
    d.reflect = (flip & DK_PAD_REFLECT) != 0;
    return d;
}
/* The flip of the modes that depend on the source image s rather than the
 * row (dk.h): alternating (a coin per image, counter 4 s + 3, inverted in odd
 * epochs) and every row; the row's own draw otherwise. */
static inline DH_HOSTDEV int dk_aug_flip(int drawn, uint64_t seed, int64_t s, int flip) {
    flip &= DK_FLIP_MASK;
    if (flip == DK_FLIP_ALL) return 1;
    if (flip == DK_FLIP_ALT_EVEN || flip == DK_FLIP_ALT_ODD)
        return (int)(dh_rng_u32(seed, 4 * (uint64_t)s + 3) >> 31) ^ (flip == DK_FLIP_ALT_ODD);
    return drawn;
}
/* Position i of a side of n pixels reflected about the edge pixel without
 * repeating it (PyTorch's F.pad 'reflect': -1 -> 1, n -> n-2); for
 * -n < i < 2n - 1 (a padding below n), n >= 2 when i is outside. */
static inline DH_HOSTDEV int dk_aug_reflect(int i, int n) { return i < 0 ? -i : i >= n ? 2 * n - 2 - i : i; }
/* Source coordinates of output pixel (y, x) for a draw; -1 when outside
 * (mean padding), the reflected position with d.reflect (pad < H, W). */
static inline DH_HOSTDEV int dk_aug_src_y(dk_aug_draw d, int y, int pad, int H) {
    int sy = y + d.oy - pad;
    if (d.reflect) return dk_aug_reflect(sy, H);
    return (sy >= 0 && sy < H) ? sy : -1;
}
static inline DH_HOSTDEV int dk_aug_src_x(dk_aug_draw d, int x, int pad, int W) {
    int xx = d.flip ? W - 1 - x : x;
    int sx = xx + d.ox - pad;
    if (d.reflect) return dk_aug_reflect(sx, W);
    return (sx >= 0 && sx < W) ? sx : -1;
}
/* ---- pooling: one output value, and one input pixel's gradient (gather form) ---- */
typedef struct {
    int64_t H, W, OH, OW;
    int k, s, p;
} dk_poolgeom;

/* The rows [*a, *b) and columns [*c, *d) of the image that window (oh, ow)
 * covers: its k x k positions clipped to the image (padding dropped). */
static inline DH_HOSTDEV void dk_pool_window(dk_poolgeom g, int64_t oh, int64_t ow, int64_t *a, int64_t *b,
                                             int64_t *c, int64_t *d) {
    int64_t h0 = oh * g.s - g.p, w0 = ow * g.s - g.p;
    *a = h0 > 0 ? h0 : 0;
    *b = h0 + g.k < g.H ? h0 + g.k : g.H;
    *c = w0 > 0 ? w0 : 0;
    *d = w0 + g.k < g.W ? w0 + g.k : g.W;
}

/* The maximum of the non-empty clipped window: its first pixel, then each
 * strictly greater one in row-major order (a NaN never wins, unless first).
 * The update is a select (maxss), not a branch: a branch per pixel is
 * mispredicted half the time on real activations. */
static inline DH_HOSTDEV float dk_pool_maxval(const float *img, int64_t W, int64_t ha, int64_t hb, int64_t wa,
                                              int64_t wb) {
    float bv = img[ha * W + wa];
    for (int64_t i = ha; i < hb; i++)
        for (int64_t j = wa; j < wb; j++) {
            float v = img[i * W + j];
            bv = v > bv ? v : bv;
        }
    return bv;
}

/* Index within the image of the first maximum of window (oh, ow) in row-major
 * order: where the chain of dk_pool_maxval stops (its first pixel, then each
 * strictly greater one); -1 if the window holds no real pixel. Padded
 * positions never win. The index follows the chain through a mask, again
 * without a branch. */
static inline DH_HOSTDEV int64_t dk_pool_argmax(const float *img, dk_poolgeom g, int64_t oh, int64_t ow) {
    int64_t ha, hb, wa, wb;
    dk_pool_window(g, oh, ow, &ha, &hb, &wa, &wb);
    if (ha >= hb || wa >= wb) return -1;
    int64_t best = ha * g.W + wa;
    float bv = img[best];
    for (int64_t i = ha; i < hb; i++)
        for (int64_t j = wa; j < wb; j++) {
            float v = img[i * g.W + j];
            int64_t gt = -(int64_t)(v > bv); /* all ones where v wins */
            best ^= (best ^ (i * g.W + j)) & gt;
            bv = v > bv ? v : bv;
        }
    return best;
}

/* Output (oh, ow): the maximum (the value at dk_pool_argmax, 0 for a window
 * of padding only), or the sum over the window in row-major order divided by
 * k*k (padded positions count as zeros). */
static inline DH_HOSTDEV float dk_pool_out(int avg, const float *img, dk_poolgeom g, int64_t oh, int64_t ow) {
    int64_t ha, hb, wa, wb;
    dk_pool_window(g, oh, ow, &ha, &hb, &wa, &wb);
    if (!avg) return ha < hb && wa < wb ? dk_pool_maxval(img, g.W, ha, hb, wa, wb) : 0.0f;
    float acc = 0.0f;
    for (int64_t i = ha; i < hb; i++)
        for (int64_t j = wa; j < wb; j++) acc += img[i * g.W + j];
    return acc * (1.0f / (float)(g.k * g.k));
}

/* Gradient of input pixel (ih, iw) from every window containing it, in
 * ascending (oh, ow) order. d: the output gradient (OH, OW); img: the
 * forward input (max pooling only). */
static inline DH_HOSTDEV float dk_pool_grad_pixel(int avg, const float *img, const float *d, dk_poolgeom g, int64_t ih,
                                                  int64_t iw) {
    /* windows with oh*s - p <= ih < oh*s - p + k */
    int64_t lo_h = ih + g.p - g.k + 1, lo_w = iw + g.p - g.k + 1;
    int64_t oh_lo = lo_h <= 0 ? 0 : (lo_h + g.s - 1) / g.s, oh_hi = (ih + g.p) / g.s;
    int64_t ow_lo = lo_w <= 0 ? 0 : (lo_w + g.s - 1) / g.s, ow_hi = (iw + g.p) / g.s;
    if (oh_hi > g.OH - 1) oh_hi = g.OH - 1;
    if (ow_hi > g.OW - 1) ow_hi = g.OW - 1;
    float acc = 0.0f;
    for (int64_t oh = oh_lo; oh <= oh_hi; oh++)
        for (int64_t ow = ow_lo; ow <= ow_hi; ow++) {
            if (avg)
                acc += d[oh * g.OW + ow];
            else if (dk_pool_argmax(img, g, oh, ow) == ih * g.W + iw)
                acc += d[oh * g.OW + ow];
        }
    return avg ? acc * (1.0f / (float)(g.k * g.k)) : acc;
}

/* ---- softmax cross-entropy of one row (K logits z, label y) -------------------------
 * Loss (in double) and whether the first argmax is y; if g is non-NULL it
 * receives (softmax - target) * scale; g may alias z. */
static inline DH_HOSTDEV double dk_xent_row(const float *z, int64_t K, int32_t y, float smoothing, float scale,
                                            float *g, int *correct) {
    float off = smoothing / (float)K, on = 1.0f - smoothing + off;
    float mx = z[0];
    int64_t am = 0;
    for (int64_t k = 1; k < K; k++)
        if (z[k] > mx) {
            mx = z[k];
            am = k;
        }
    double s = 0, tz = 0;
    for (int64_t k = 0; k < K; k++) {
        s += exp((double)(z[k] - mx));
        tz += (double)(k == y ? on : off) * (z[k] - mx);
    }
    *correct = am == y;
    if (g) {
        float inv = (float)(1.0 / s);
        for (int64_t k = 0; k < K; k++) {
            float p = expf(z[k] - mx) * inv; /* z[k] is read before g[k] is written */
            g[k] = (p - (k == y ? on : off)) * scale;
        }
    }
    return log(s) - tz; /* sum_k target_k = 1 */
}

/* Softmax of one row; p may alias z. */
static inline DH_HOSTDEV void dk_softmax_row(const float *z, float *p, int64_t K) {
    float mx = z[0];
    for (int64_t k = 1; k < K; k++) mx = z[k] > mx ? z[k] : mx;
    double s = 0;
    for (int64_t k = 0; k < K; k++) {
        float v = expf(z[k] - mx);
        p[k] = v;
        s += v;
    }
    float inv = (float)(1.0 / s);
    for (int64_t k = 0; k < K; k++) p[k] *= inv;
}
#endif
