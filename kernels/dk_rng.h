/* dk_rng.h — counter-based random numbers, identical on the CPU and the GPU.
 *
 * Element i of a draw with seed s is a pure function of (s, i): a 64-bit
 * mix (two rounds of the splitmix64 / murmur3 finaliser) of the seed and
 * the counter. Integer and uniform draws are bit-identical on both
 * backends; dk_rng_normal uses logf/cosf and may differ by a few ulps on
 * the GPU (the library generates normals on the host for that reason).
 */
#ifndef DK_RNG_H
#define DK_RNG_H
#include <stdint.h>
#include <math.h>

#ifdef __CUDACC__
#define DK_HD __host__ __device__
#else
#define DK_HD
#endif

static inline DK_HD uint64_t dk_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* 32 random bits for (seed, counter). */
static inline DK_HD uint32_t dk_rng_u32(uint64_t seed, uint64_t i) {
    uint64_t z = dk_mix64(seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL);
    z = dk_mix64(z ^ (i * 0xd1b54a32d192ed03ULL + 0x8cb92ba72f3d8dd7ULL));
    return (uint32_t)(z >> 32);
}

/* Uniform in [0, 1) with 24 random bits. */
static inline DK_HD float dk_rng_uniform(uint64_t seed, uint64_t i) {
    return (float)(dk_rng_u32(seed, i) >> 8) * (1.0f / 16777216.0f);
}

/* Standard normal (Box-Muller on the counters 2i and 2i+1). */
static inline DK_HD float dk_rng_normal(uint64_t seed, uint64_t i) {
    float u1 = ((float)(dk_rng_u32(seed, 2 * i) >> 8) + 0.5f) * (1.0f / 16777216.0f); /* (0,1) */
    float u2 = dk_rng_uniform(seed, 2 * i + 1);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}

/* Integer in [0, n) (n > 0), by multiply-shift; bias < n / 2^32. */
static inline DK_HD uint32_t dk_rng_below(uint64_t seed, uint64_t i, uint32_t n) {
    return (uint32_t)(((uint64_t)dk_rng_u32(seed, i) * n) >> 32);
}
#endif
