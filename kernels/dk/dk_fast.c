/* dk_fast.c — plain-C fast paths of the CPU engine, for the operations
 * where the fast backend (DH_CPU=onednn) does better without oneDNN.
 *
 * Batch normalisation in training, forward and backward, on NCHW tensors.
 * oneDNN 2.6 runs NCHW batch norm through its generic "ncsp" code, slower
 * than the reference's own loops (fast's batch 512 of 64x32x32: 64 ms
 * forward and 75 ms backward against the reference's 48 and 41 on the
 * 2-core box), and a blocked layout would cost two reorders per call.
 * Here the statistics take one pass over x (the reference's forward takes
 * two) that streams through memory image by image instead of striding
 * channel by channel:
 *
 *   - the images are split into DK_BN_GROUPS fixed groups (a function of N
 *     only, never of the thread count); the groups run in parallel, each
 *     keeping per-channel statistics in double;
 *   - within an image, a channel's plane is read in blocks of at most
 *     DK_BN_BLOCK values: the block's sum and sum of squared deviations
 *     from its own mean in 16 float lanes (vectorised), merged into the
 *     group's running (count, mean, M2) by Chan et al.'s update, which
 *     keeps the variance exact when the mean is large against the spread;
 *   - the groups merge in group order, so the result is the same bit for
 *     bit for any thread count, and each run the same.
 *
 * The normalisation then maps each plane with its channel's constants:
 * y = (x - mean) a + beta, dx = a (dy - mean(dy) - (x - mean) k), the
 * reference's formulas with the per-channel products hoisted. Agreement
 * with the reference is tested (test_dk_onednn: bn*, ≤ 1e-4 + 1e-3 |ref|,
 * maximum error printed); DH_CPU=ref runs the reference.
 */
#include <math.h>
#include <string.h>
#include "dk_elem.h"
#include "dk_impl.h"
#include "dk_vexp.h"

#define LANES 16
#define DK_BN_BLOCK 1024
#define DK_BN_GROUPS 64

/* Group g of G over N images: [lo, hi). */
static void group_range(int64_t N, int64_t G, int64_t g, int64_t *lo, int64_t *hi) {
    *lo = N * g / G;
    *hi = N * (g + 1) / G;
}

/* Sum of p[0..n), in lanes. */
static double block_sum(const float *p, int64_t n) {
    float acc[LANES] = { 0 };
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += p[k + j];
    double s = 0;
    for (int j = 0; j < LANES; j++) s += acc[j];
    for (; k < n; k++) s += p[k];
    return s;
}

/* Sum of (p - m)^2 and of (p - m) over p[0..n), in lanes. */
static void block_dev(const float *p, int64_t n, float m, double *sq, double *lin) {
    float a2[LANES] = { 0 }, a1[LANES] = { 0 };
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int j = 0; j < LANES; j++) {
            float d = p[k + j] - m;
            a1[j] += d;
            a2[j] += d * d;
        }
    double s2 = 0, s1 = 0;
    for (int j = 0; j < LANES; j++) {
        s2 += a2[j];
        s1 += a1[j];
    }
    for (; k < n; k++) {
        double d = (double)(p[k] - m);
        s1 += d;
        s2 += d * d;
    }
    *sq = s2;
    *lin = s1;
}

/* Sum of dy and of dy (x - m) over a block, in lanes. */
static void block_grad(const float *x, const float *dy, int64_t n, float m, double *sdy, double *sdyx) {
    float a1[LANES] = { 0 }, a2[LANES] = { 0 };
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int j = 0; j < LANES; j++) {
            a1[j] += dy[k + j];
            a2[j] += dy[k + j] * (x[k + j] - m);
        }
    double s1 = 0, s2 = 0;
    for (int j = 0; j < LANES; j++) {
        s1 += a1[j];
        s2 += a2[j];
    }
    for (; k < n; k++) {
        s1 += dy[k];
        s2 += (double)dy[k] * (double)(x[k] - m);
    }
    *sdy = s1;
    *sdyx = s2;
}

static int64_t ngroups(int64_t N) { return N < DK_BN_GROUPS ? N : DK_BN_GROUPS; }

int dk_bn_forward_train_fast(const dk_tensor *x, const float *gamma, const float *beta, float *rmean, float *rvar,
                             float momentum, float eps, dk_tensor *y, float *smean, float *sinvstd, dh_err *e) {
    int64_t N, C, P;
    dk_nchw(x, &N, &C, &P);
    int64_t G = ngroups(N), M = N * P;
    /* per group and channel: count, mean, M2 (doubles in the float workspace) */
    double *st = (double *)dk_cpu_workspace((size_t)(G * C * 3 * 2), e);
    if (!st) return e ? e->code : DH_ENOMEM;
    PAR_FOR(x->n)
    for (int64_t g = 0; g < G; g++) {
        double *cnt = st + g * C * 3, *mean = cnt + C, *m2 = mean + C;
        for (int64_t c = 0; c < C; c++) cnt[c] = mean[c] = m2[c] = 0;
        int64_t lo, hi;
        group_range(N, G, g, &lo, &hi);
        for (int64_t i = lo; i < hi; i++)
            for (int64_t c = 0; c < C; c++) {
                const float *p = x->data + (i * C + c) * P;
                for (int64_t k0 = 0; k0 < P; k0 += DK_BN_BLOCK) {
                    int64_t nb = P - k0 < DK_BN_BLOCK ? P - k0 : DK_BN_BLOCK;
                    double mb = block_sum(p + k0, nb) / (double)nb, sq, lin;
                    float mf = (float)mb;
                    block_dev(p + k0, nb, mf, &sq, &lin);
                    /* sum (p - mb)^2 = sum (p - mf)^2 - (sum (p - mf))^2 / nb */
                    double m2b = sq - lin * lin / (double)nb, mbx = (double)mf + lin / (double)nb;
                    if (m2b < 0) m2b = 0;
                    double n0 = cnt[c], n1 = n0 + (double)nb, d = mbx - mean[c];
                    mean[c] += d * (double)nb / n1;
                    m2[c] += m2b + d * d * n0 * (double)nb / n1;
                    cnt[c] = n1;
                }
            }
    }
    /* merge the groups in order; the channel's constants in group 0's rows */
    for (int64_t c = 0; c < C; c++) {
        double n = st[c], mean = st[C + c], m2 = st[2 * C + c];
        for (int64_t g = 1; g < G; g++) {
            const double *r = st + g * C * 3;
            double nb = r[c], n1 = n + nb;
            if (nb == 0) continue;
            double d = r[C + c] - mean;
            mean += d * nb / n1;
            m2 += r[2 * C + c] + d * d * n * nb / n1;
            n = n1;
        }
        double var = m2 / (double)M;
        float invstd = (float)(1.0 / sqrt(var + eps)), m = (float)mean;
        smean[c] = m;
        sinvstd[c] = invstd;
        double uvar = M > 1 ? var * (double)M / (double)(M - 1) : var;
        rmean[c] = (1.0f - momentum) * rmean[c] + momentum * m;
        rvar[c] = (1.0f - momentum) * rvar[c] + momentum * (float)uvar;
    }
    PAR_FOR2(x->n)
    for (int64_t i = 0; i < N; i++)
        for (int64_t c = 0; c < C; c++) {
            const float *p = x->data + (i * C + c) * P;
            float *q = y->data + (i * C + c) * P;
            float m = smean[c], a = gamma[c] * sinvstd[c], be = beta[c];
            for (int64_t k = 0; k < P; k++) q[k] = (p[k] - m) * a + be;
        }
    return 0;
}

int dk_bn_backward_fast(const dk_tensor *x, const dk_tensor *dy, const float *gamma, const float *smean,
                        const float *sinvstd, dk_tensor *dx, float *dgamma, float *dbeta, dh_err *e) {
    int64_t N, C, P;
    dk_nchw(x, &N, &C, &P);
    int64_t G = ngroups(N);
    double M = (double)(N * P);
    /* per group and channel: sum dy, sum dy (x - mean); then per channel
     * the constants a, mean(dy), k of dx (floats, after the sums) */
    double *st = (double *)dk_cpu_workspace((size_t)(G * C * 2 * 2 + 3 * C), e);
    if (!st) return e ? e->code : DH_ENOMEM;
    float *ka = (float *)(st + G * C * 2), *kd = ka + C, *kx = kd + C;
    PAR_FOR(x->n)
    for (int64_t g = 0; g < G; g++) {
        double *s1 = st + g * C * 2, *s2 = s1 + C;
        for (int64_t c = 0; c < C; c++) s1[c] = s2[c] = 0;
        int64_t lo, hi;
        group_range(N, G, g, &lo, &hi);
        for (int64_t i = lo; i < hi; i++)
            for (int64_t c = 0; c < C; c++) {
                int64_t off = (i * C + c) * P;
                for (int64_t k0 = 0; k0 < P; k0 += DK_BN_BLOCK) {
                    int64_t nb = P - k0 < DK_BN_BLOCK ? P - k0 : DK_BN_BLOCK;
                    double a, b;
                    block_grad(x->data + off + k0, dy->data + off + k0, nb, smean[c], &a, &b);
                    s1[c] += a;
                    s2[c] += b;
                }
            }
    }
    for (int64_t c = 0; c < C; c++) {
        double sdy = st[c], sdyx = st[C + c];
        for (int64_t g = 1; g < G; g++) {
            sdy += st[g * C * 2 + c];
            sdyx += st[g * C * 2 + C + c];
        }
        float is = sinvstd[c];
        double sdyxh = sdyx * is;
        dbeta[c] = (float)sdy;
        dgamma[c] = (float)sdyxh;
        /* dx = gamma invstd / M (M dy - sum dy - xhat sum dy xhat) */
        ka[c] = gamma[c] * is;
        kd[c] = (float)(sdy / M);
        kx[c] = is * (float)(sdyxh / M);
    }
    PAR_FOR2(x->n)
    for (int64_t i = 0; i < N; i++)
        for (int64_t c = 0; c < C; c++) {
            const float *p = x->data + (i * C + c) * P, *d = dy->data + (i * C + c) * P;
            float *q = dx->data + (i * C + c) * P;
            float m = smean[c], a = ka[c], md = kd[c], k = kx[c];
            for (int64_t j = 0; j < P; j++) q[j] = a * (d[j] - md - (p[j] - m) * k);
        }
    return 0;
}

/* ---- max pooling, forward and backward -------------------------------------------------------
 * The windows wholly inside the image (all of them without padding) by
 * loops with the window's offsets fixed per row of outputs, for 3x3 and 2x2
 * windows unrolled; the others (clipped by the padding) by the reference's
 * dk_pool_out / dk_pool_argmax. The same pixels in the same row-major chain
 * as the reference (first pixel, then each strictly greater one), so the
 * same bits: the tests compare them exactly. The cifar net's 3x3, stride 2,
 * padding 1 pool of 128x32x32x32 (bench_dk, 2 threads): forward 2.3 ->
 * 0.9 ms, backward 4.4 -> 3.2 ms. (Finding the index after the maximum, by
 * equality from the last pixel back, was slower: 4.7 ms.) */

/* Outputs [*lo, *hi) along one axis whose windows lie inside [0, n). */
static void interior(int64_t n, int64_t on, int k, int s, int p, int64_t *lo, int64_t *hi) {
    int64_t a = (p + s - 1) / s, b = n - k + p >= 0 ? (n - k + p) / s + 1 : 0;
    if (b > on) b = on;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

#define MAXSEL(v)                                                                                                      \
    do {                                                                                                               \
        float v_ = (v);                                                                                                \
        bv = v_ > bv ? v_ : bv;                                                                                        \
    } while (0)

static void maxpool_plane(const float *img, float *out, dk_poolgeom g, int64_t lo_h, int64_t hi_h, int64_t lo_w,
                          int64_t hi_w) {
    const int64_t W = g.W;
    for (int64_t oh = 0; oh < g.OH; oh++) {
        float *o = out + oh * g.OW;
        if (oh < lo_h || oh >= hi_h) {
            for (int64_t ow = 0; ow < g.OW; ow++) o[ow] = dk_pool_out(0, img, g, oh, ow);
            continue;
        }
        for (int64_t ow = 0; ow < lo_w; ow++) o[ow] = dk_pool_out(0, img, g, oh, ow);
        const float *row = img + (oh * g.s - g.p) * W - g.p;
        if (g.k == 3) {
            for (int64_t ow = lo_w; ow < hi_w; ow++) {
                const float *w = row + ow * g.s;
                float bv = w[0];
                MAXSEL(w[1]);
                MAXSEL(w[2]);
                MAXSEL(w[W]);
                MAXSEL(w[W + 1]);
                MAXSEL(w[W + 2]);
                MAXSEL(w[2 * W]);
                MAXSEL(w[2 * W + 1]);
                MAXSEL(w[2 * W + 2]);
                o[ow] = bv;
            }
        } else if (g.k == 2) {
            for (int64_t ow = lo_w; ow < hi_w; ow++) {
                const float *w = row + ow * g.s;
                float bv = w[0];
                MAXSEL(w[1]);
                MAXSEL(w[W]);
                MAXSEL(w[W + 1]);
                o[ow] = bv;
            }
        } else {
            for (int64_t ow = lo_w; ow < hi_w; ow++) {
                const float *w = row + ow * g.s;
                float bv = w[0];
                for (int i = 0; i < g.k; i++)
                    for (int j = 0; j < g.k; j++) MAXSEL(w[i * W + j]);
                o[ow] = bv;
            }
        }
        for (int64_t ow = hi_w; ow < g.OW; ow++) o[ow] = dk_pool_out(0, img, g, oh, ow);
    }
}

int dk_maxpool_forward_fast(const dk_tensor *x, int k, int stride, int pad, dk_tensor *y, dh_err *e) {
    dk_poolgeom g = { x->shape[2], x->shape[3], y->shape[2], y->shape[3], k, stride, pad };
    int64_t NC = x->shape[0] * x->shape[1], lo_h, hi_h, lo_w, hi_w;
    interior(g.H, g.OH, k, stride, pad, &lo_h, &hi_h);
    interior(g.W, g.OW, k, stride, pad, &lo_w, &hi_w);
    PAR_FOR(x->n)
    for (int64_t nc = 0; nc < NC; nc++)
        maxpool_plane(x->data + nc * g.H * g.W, y->data + nc * g.OH * g.OW, g, lo_h, hi_h, lo_w, hi_w);
    return 0;
}

/* The chain's index: where a strictly greater value takes over (a mask, no
 * branch, as dk_pool_argmax). */
#define ARGSEL(off)                                                                                                    \
    do {                                                                                                               \
        int64_t o_ = (off);                                                                                            \
        float v_ = w[o_];                                                                                              \
        int64_t gt_ = -(int64_t)(v_ > bv);                                                                             \
        best ^= (best ^ o_) & gt_;                                                                                     \
        bv = v_ > bv ? v_ : bv;                                                                                        \
    } while (0)

int dk_maxpool_backward_fast(const dk_tensor *x, const dk_tensor *dy, int k, int stride, int pad, dk_tensor *dx,
                             dh_err *e) {
    dk_poolgeom g = { x->shape[2], x->shape[3], dy->shape[2], dy->shape[3], k, stride, pad };
    int64_t NC = x->shape[0] * x->shape[1], lo_h, hi_h, lo_w, hi_w, W = g.W;
    interior(g.H, g.OH, k, stride, pad, &lo_h, &hi_h);
    interior(g.W, g.OW, k, stride, pad, &lo_w, &hi_w);
    PAR_FOR(x->n)
    for (int64_t nc = 0; nc < NC; nc++) {
        const float *img = x->data + nc * g.H * g.W, *d = dy->data + nc * g.OH * g.OW;
        float *gx = dx->data + nc * g.H * g.W;
        memset(gx, 0, (size_t)(g.H * g.W) * sizeof(float));
        for (int64_t oh = 0; oh < g.OH; oh++) {
            int inside = oh >= lo_h && oh < hi_h;
            int64_t a = inside ? lo_w : g.OW, b = inside ? hi_w : g.OW;
            for (int64_t ow = 0; ow < a; ow++) {
                int64_t best = dk_pool_argmax(img, g, oh, ow);
                if (best >= 0) gx[best] += d[oh * g.OW + ow];
            }
            int64_t base = (oh * g.s - g.p) * W - g.p;
            for (int64_t ow = a; ow < b; ow++) {
                const float *w = img + base + ow * g.s;
                int64_t best = 0;
                float bv = w[0];
                if (g.k == 3) {
                    ARGSEL(1);
                    ARGSEL(2);
                    ARGSEL(W);
                    ARGSEL(W + 1);
                    ARGSEL(W + 2);
                    ARGSEL(2 * W);
                    ARGSEL(2 * W + 1);
                    ARGSEL(2 * W + 2);
                } else if (g.k == 2) {
                    ARGSEL(1);
                    ARGSEL(W);
                    ARGSEL(W + 1);
                } else {
                    for (int i = 0; i < g.k; i++)
                        for (int j = 0; j < g.k; j++) ARGSEL(i * W + j);
                }
                gx[base + ow * g.s + best] += d[oh * g.OW + ow];
            }
            for (int64_t ow = b; ow < g.OW; ow++) {
                int64_t best = dk_pool_argmax(img, g, oh, ow);
                if (best >= 0) gx[best] += d[oh * g.OW + ow];
            }
        }
    }
    return 0;
}

/* ---- GELU, forward and backward -------------------------------------------------------------
 * The reference calls libm's erff (and expf for the gradient) per element:
 * 11% of the air net's training in erff and expf alone, 17% with the loops
 * around them. Here Phi(x) = (1 + erf(x/√2)) / 2 comes from Abramowitz &
 * Stegun 7.1.26: for z = |x|/√2, erfc(z) = t (a1 + t (a2 + t (a3 + t (a4 +
 * t a5)))) e^{-z^2}, t = 1/(1 + p z), absolute error below 1.5e-7, with
 * e^{-z^2} by dk_vexp_neg; the same e^{-z^2} = e^{-x^2/2} gives the
 * density for the gradient. Vectorised, no libm call: 16.8 million values
 * in 10 ms forward and 13 ms backward against the reference's 304 and 350
 * (2 threads, a box shared with a training run). Within 5e-7 of the
 * reference (test_dk_onednn `gelu`, maximum error printed). */
/* The sign bit of v (an integer select vectorises where a float compare,
 * which may trap, does not). */
static inline uint32_t sign_bit(float v) {
    union {
        float f;
        uint32_t u;
    } b = { v };
    return b.u >> 31;
}

/* Phi(-|x|) (half of erfc(|x|/√2)) and e^{-x^2/2}. */
#define GELU_PARTS(xv, half, ez)                                                                                       \
    float z_ = __builtin_fabsf(xv) * DK_SQRT1_2;                                                                       \
    float ez = dk_vexp_neg(-z_ * z_);                                                                                  \
    float t_ = 1.0f / (1.0f + 0.3275911f * z_);                                                                        \
    float q_ = t_ * (0.254829592f + t_ * (-0.284496736f + t_ * (1.421413741f + t_ * (-1.453152027f + t_ * 1.061405429f)))); \
    float half = 0.5f * q_ * ez

/* One span of either pass (grad = NULL: the forward into out; else the
 * backward dx = grad (Phi + x phi)); without trapping math and in clones
 * for AVX-512, AVX2 and the baseline, so that the selects vectorise (as in
 * kernels/hash/hashloss.c). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-trapping-math"), target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void gelu_span(const float *x, const float *grad, float *out, int64_t n) {
    if (!grad) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            GELU_PARTS(v, half, ez);
            (void)ez;
            float c = sign_bit(v) ? half : 1.0f - half;
            out[i] = v * c;
        }
        return;
    }
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        GELU_PARTS(v, half, ez);
        float c = sign_bit(v) ? half : 1.0f - half;
        out[i] = grad[i] * (c + v * (DK_INVSQRT2PI * ez));
    }
}

#define GELU_SPAN 4096

int dk_gelu_forward_fast(const float *x, float *y, int64_t n, dh_err *e) {
    PAR_FOR(n)
    for (int64_t b = 0; b < n; b += GELU_SPAN) gelu_span(x + b, NULL, y + b, n - b < GELU_SPAN ? n - b : GELU_SPAN);
    return 0;
}

/* dx may alias dy (each element is read before it is written). */
int dk_gelu_backward_fast(const float *x, const float *dy, float *dx, int64_t n, dh_err *e) {
    PAR_FOR(n)
    for (int64_t b = 0; b < n; b += GELU_SPAN) gelu_span(x + b, dy + b, dx + b, n - b < GELU_SPAN ? n - b : GELU_SPAN);
    return 0;
}
