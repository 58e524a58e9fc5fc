/* hamming.c — repacking byte-packed codes into uint64 words. */
#include <string.h>
#include "hamming.h"

void dh_ham_pack(const uint8_t *bytes, int64_t n, int64_t bits, uint64_t *out) {
    int W = dh_ham_words(bits);
    int64_t nb = (bits + 7) / 8; /* bytes per input row */
    int tail = (int)(bits % 64); /* valid bits in the last word, 0 = all */
    uint64_t lastmask = tail ? ((UINT64_C(1) << tail) - 1) : ~UINT64_C(0);
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *src = bytes + i * nb;
        uint64_t *dst = out + i * W;
        for (int w = 0; w < W; w++) {
            uint64_t v = 0;
            for (int b = 0; b < 8; b++) {
                int64_t k = (int64_t)w * 8 + b;
                if (k < nb) v |= (uint64_t)src[k] << (8 * b);
            }
            dst[w] = v;
        }
        if (W > 0) dst[W - 1] &= lastmask;
    }
}

int dh_ham_check_padding(const uint64_t *w, int64_t n, int bits, const char *what, dh_err *e) {
    int W = dh_ham_words(bits), tail = bits % 64;
    if (!tail || n <= 0) return DH_OK;
    uint64_t pad = ~((UINT64_C(1) << tail) - 1);
    for (int64_t i = 0; i < n; i++)
        if (w[i * W + W - 1] & pad)
            return dh_seterr(e, DH_EINVAL,
                             "%s: row %lld has padding bits set beyond bit %d (codes must be packed by dh_ham_pack)",
                             what, (long long)i, bits);
    return DH_OK;
}
