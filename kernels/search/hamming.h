/* hamming.h — packed binary codes and Hamming distances.
 *
 * Codes travel in streams as DHS_BITS [K]: ceil(K/8) bytes a row, bit k of a
 * row is bit (k % 8) of byte k / 8, padding bits 0. For computation they are
 * repacked into W = ceil(K/64) little-endian uint64 words a row, so that bit
 * k is bit (k % 64) of word k / 64 (the same bit order, read 8 bytes at a
 * time); the padding bits are forced to 0, so the distance between two rows
 * is the popcount of their XOR summed over the W words.
 *
 * The per-element helpers are __host__ __device__ so that the CPU code and
 * the CUDA kernels share them.
 */
#ifndef DH_HAMMING_H
#define DH_HAMMING_H
#include <stdint.h>
#include <stddef.h>
#include "dh_util.h"

#ifdef __CUDACC__
#define DH_HD static inline __host__ __device__
#else
#define DH_HD static inline
#endif

/* Largest code length the ranking and evaluation code accepts: distances
 * are stored as uint16 and per-distance histograms have K+1 bins. */
#define DH_HAMMING_MAX_BITS 4096

DH_HD int dh_ham_words(int64_t bits) { return (int)((bits + 63) / 64); }

DH_HD int dh_popcount64(uint64_t x) {
#ifdef __CUDA_ARCH__
    return __popcll(x);
#else
    return __builtin_popcountll(x);
#endif
}

/* Hamming distance between two rows of W words. */
DH_HD int dh_ham_dist(const uint64_t *a, const uint64_t *b, int W) {
    int d = 0;
    for (int w = 0; w < W; w++) d += dh_popcount64(a[w] ^ b[w]);
    return d;
}

/* Repack n rows of byte-packed codes (ceil(bits/8) bytes each) into
 * uint64 words: out (n, W). Padding bits beyond `bits` are cleared even if
 * the input has them set. */
void dh_ham_pack(const uint8_t *bytes, int64_t n, int64_t bits, uint64_t *out);

/* DH_OK when the n rows (W words each) have every padding bit (bits and
 * beyond in the last word) clear; DH_EINVAL naming the first row that has
 * one. what names the rows in the message ("queries", "database"). */
int dh_ham_check_padding(const uint64_t *w, int64_t n, int bits, const char *what, dh_err *e);

#endif
