/* dk_vexp.h — internal: exp(x) for x <= 0 in plain float arithmetic that
 * the compiler vectorises (no libm call), for the CPU fast paths
 * (kernels/hash/hashloss.c, kernels/dk/dk_fast.c).
 *
 * exp(x) = 2^n e^r with n = round(x / ln 2), |r| <= ln2 / 2 (ln 2 split in
 * two for an exact reduction), e^r by its degree-6 Taylor polynomial:
 * about 2 ulp. x below -87 is taken as -87 (e^-87 ~ 1.6e-38, so n stays
 * in -126..0, a valid exponent), as is a NaN. Always inlined: GCC does
 * not inline into a caller with other optimisation attributes (the fast
 * paths' no-trapping-math clones), and a call keeps the loop scalar.
 */
#ifndef DK_VEXP_H
#define DK_VEXP_H
#include <stdint.h>

static inline __attribute__((always_inline)) float dk_vexp_neg(float x) {
    x = x >= -87.0f ? x : -87.0f;
    float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union {
        uint32_t i;
        float f;
    } sc = { .i = (uint32_t)((int32_t)n + 127) << 23 };
    return p * sc.f;
}
#endif
