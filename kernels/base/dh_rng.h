/* dh_rng.h — the project's one random number generator: splitmix64.
 *
 * Two ways to draw from it:
 *  - sequential: dh_splitmix64(&state) (Steele, Lea & Flood's splitmix64);
 *  - counter-based (below): element i of a draw is a pure function of
 *    (seed, i), identical on the CPU and the GPU.
 *
 * Counter-based: element i of a draw with seed s is a function of (s, i), a 64-bit
 * mix (two rounds of the splitmix64 / murmur3 finaliser) of the seed and
 * the counter. Integer and uniform draws are bit-identical on both
 * backends; dh_rng_normal uses logf/cosf and may differ by a few ulps on
 * the GPU (the library generates normals on the host for that reason).
 */
#ifndef DH_RNG_H
#define DH_RNG_H
#include <stdint.h>
#include <math.h>

#ifdef __CUDACC__
#define DH_HOSTDEV __host__ __device__
#else
#define DH_HOSTDEV
#endif

static inline DH_HOSTDEV uint64_t dh_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Sequential splitmix64: advance *state and return the next 64 bits. */
static inline DH_HOSTDEV uint64_t dh_splitmix64(uint64_t *state) { return dh_mix64(*state += 0x9e3779b97f4a7c15ULL); }

/* The k-th (k >= 0) output of splitmix64 started at seed, without the loop:
 * independent sub-seeds for the parts of one seeded computation. */
static inline DH_HOSTDEV uint64_t dh_splitmix64_at(uint64_t seed, uint64_t k) {
    return dh_mix64(seed + 0x9e3779b97f4a7c15ULL * (k + 1));
}

/* 32 random bits for (seed, counter). */
static inline DH_HOSTDEV uint32_t dh_rng_u32(uint64_t seed, uint64_t i) {
    uint64_t z = dh_mix64(seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL);
    z = dh_mix64(z ^ (i * 0xd1b54a32d192ed03ULL + 0x8cb92ba72f3d8dd7ULL));
    return (uint32_t)(z >> 32);
}

/* Uniform in [0, 1) with 24 random bits. */
static inline DH_HOSTDEV float dh_rng_uniform(uint64_t seed, uint64_t i) {
    return (float)(dh_rng_u32(seed, i) >> 8) * (1.0f / 16777216.0f);
}

/* Standard normal (Box-Muller on the counters 2i and 2i+1). */
static inline DH_HOSTDEV float dh_rng_normal(uint64_t seed, uint64_t i) {
    float u1 = ((float)(dh_rng_u32(seed, 2 * i) >> 8) + 0.5f) * (1.0f / 16777216.0f); /* (0,1) */
    float u2 = dh_rng_uniform(seed, 2 * i + 1);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}

/* Integer in [0, n) (n > 0), by multiply-shift; bias < n / 2^32. */
static inline DH_HOSTDEV uint32_t dh_rng_below(uint64_t seed, uint64_t i, uint32_t n) {
    return (uint32_t)(((uint64_t)dh_rng_u32(seed, i) * n) >> 32);
}
#endif
