/* fuzz.h — helpers shared by the fuzz targets (tests/fuzz/README.md).
 *
 * fz_open: the input as a read-only FILE in memory (no temporary files).
 * fz_fix_stream: recompute every checksum of a deephash stream in place
 *   (chunk "crc", trailer "rows" / "chunks" / "crc" / "header_crc"), so that
 *   mutated streams get past the checksums to the code behind them. The
 *   stream and model targets use it as a libFuzzer custom mutator on three
 *   mutations out of four (the fourth keeps the checksum paths exercised).
 * Built two ways: with clang's libFuzzer (DH_LIBFUZZER defined: the custom
 * mutator is compiled in) and with the ordinary compiler as a replay
 * program (tests/fuzz/replay.c) for tests/cli/fuzz_regress.sh.
 */
#ifndef DH_FUZZ_H
#define DH_FUZZ_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* fmemopen, open_memstream */
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static inline FILE *fz_open(const uint8_t *data, size_t size) {
    static const uint8_t empty[1];
    /* fmemopen refuses size 0; an empty stream is a stream that is at its end */
    FILE *f = fmemopen((void *)(size ? data : empty), size ? size : 1, "rb");
    if (f && !size) fgetc(f);
    return f;
}

/* ---- a small msgpack walker -------------------------------------------- */
static inline uint64_t fz_be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* Bytes of the msgpack object at p (n available), 0 if incomplete/invalid. */
static inline size_t fz_mp_skip(const uint8_t *p, size_t n, int depth) {
    if (!n || depth > 64) return 0;
    uint8_t c = p[0];
    uint64_t len = 0, cnt = 0;
    size_t hdr = 1;
    int kind = 0; /* 0 scalar of hdr+len bytes, 1 array of cnt, 2 map of cnt */
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) return 1;
    if ((c & 0xe0) == 0xa0)
        len = c & 0x1f;
    else if ((c & 0xf0) == 0x90)
        kind = 1, cnt = c & 0x0f;
    else if ((c & 0xf0) == 0x80)
        kind = 2, cnt = c & 0x0f;
    else {
        static const uint8_t fixed[] = { [0xca - 0xc0] = 4, [0xcb - 0xc0] = 8, [0xcc - 0xc0] = 1, [0xcd - 0xc0] = 2,
                                         [0xce - 0xc0] = 4, [0xcf - 0xc0] = 8, [0xd0 - 0xc0] = 1, [0xd1 - 0xc0] = 2,
                                         [0xd2 - 0xc0] = 4, [0xd3 - 0xc0] = 8, [0xd4 - 0xc0] = 2, [0xd5 - 0xc0] = 3,
                                         [0xd6 - 0xc0] = 5, [0xd7 - 0xc0] = 9, [0xd8 - 0xc0] = 17 };
        int w = 0;
        switch (c) {
        case 0xc4:
        case 0xd9: w = 1; break;
        case 0xc5:
        case 0xda: w = 2; break;
        case 0xc6:
        case 0xdb: w = 4; break;
        case 0xc7: w = 1, hdr = 2; break;
        case 0xc8: w = 2, hdr = 2; break;
        case 0xc9: w = 4, hdr = 2; break;
        case 0xdc: w = 2, kind = 1; break;
        case 0xdd: w = 4, kind = 1; break;
        case 0xde: w = 2, kind = 2; break;
        case 0xdf: w = 4, kind = 2; break;
        default:
            if (c >= 0xca && c <= 0xd8 && fixed[c - 0xc0]) return 1u + fixed[c - 0xc0] <= n ? 1u + fixed[c - 0xc0] : 0;
            return 0; /* 0xc1: never used */
        }
        if (n < 1u + (size_t)w) return 0;
        uint64_t v = fz_be(p + 1, w);
        hdr += (size_t)w;
        if (kind)
            cnt = v;
        else
            len = v;
    }
    if (!kind) return hdr + len <= n ? hdr + (size_t)len : 0;
    size_t o = hdr;
    for (uint64_t i = 0; i < cnt * (uint64_t)kind; i++) {
        size_t k = fz_mp_skip(p + o, n - o, depth + 1);
        if (!k) return 0;
        o += k;
    }
    return o;
}

/* Map at p: its entry count and header size; 0 if not a map. */
static inline size_t fz_mp_map(const uint8_t *p, size_t n, uint64_t *cnt) {
    if (!n) return 0;
    if ((p[0] & 0xf0) == 0x80) return *cnt = p[0] & 0x0f, 1;
    if (p[0] == 0xde && n >= 3) return *cnt = fz_be(p + 1, 2), 3;
    if (p[0] == 0xdf && n >= 5) return *cnt = fz_be(p + 1, 4), 5;
    return 0;
}

/* A str or bin at p: its payload and length; 0 if neither. */
static inline size_t fz_mp_bytes(const uint8_t *p, size_t n, const uint8_t **s, uint64_t *len) {
    size_t h;
    if (!n) return 0;
    if ((p[0] & 0xe0) == 0xa0)
        h = 1, *len = p[0] & 0x1f;
    else if ((p[0] == 0xd9 || p[0] == 0xc4) && n >= 2)
        h = 2, *len = p[1];
    else if ((p[0] == 0xda || p[0] == 0xc5) && n >= 3)
        h = 3, *len = fz_be(p + 1, 2);
    else if ((p[0] == 0xdb || p[0] == 0xc6) && n >= 5)
        h = 5, *len = fz_be(p + 1, 4);
    else
        return 0;
    if (h + *len > n) return 0;
    *s = p + h;
    return h;
}

static inline int fz_key_is(const uint8_t *p, size_t n, const char *k) {
    const uint8_t *s;
    uint64_t l;
    return fz_mp_bytes(p, n, &s, &l) && p[0] != 0xc4 && p[0] != 0xc5 && p[0] != 0xc6 && l == strlen(k) &&
           !memcmp(s, k, l);
}

static inline uint64_t fz_mp_uint(const uint8_t *p, size_t n) {
    if (!n) return 0;
    if (p[0] <= 0x7f) return p[0];
    if (p[0] >= 0xcc && p[0] <= 0xcf && n >= 1u + (1u << (p[0] - 0xcc))) return fz_be(p + 1, 1 << (p[0] - 0xcc));
    return 0;
}

static inline size_t fz_put_uint(uint8_t *o, uint64_t v, int wide) {
    o[0] = wide ? 0xcf : 0xce;
    int w = wide ? 8 : 4;
    for (int i = 0; i < w; i++) o[1 + i] = (uint8_t)(v >> (8 * (w - 1 - i)));
    return 1 + (size_t)w;
}

/* Rewrite data[0..size) with correct checksums; returns the new size, or
 * size unchanged when the result would not fit in max (data untouched). */
static inline size_t fz_fix_stream(uint8_t *data, size_t size, size_t max) {
    uint8_t *out = malloc(max + 16);
    if (!out) return size;
    size_t pos = 0, o = 0;
    uint32_t hcrc = 0, scrc = 0;
    uint64_t rows = 0, chunks = 0;
    int ok = 1;
    while (pos < size && ok) {
        const uint8_t *p = data + pos;
        size_t n = size - pos, len = fz_mp_skip(p, n, 0), mh;
        uint64_t cnt = 0;
        if (!len || !(mh = fz_mp_map(p, len, &cnt)) || cnt == 0) { /* copy the rest as it is */
            if (o + n > max)
                ok = 0;
            else
                memcpy(out + o, p, n), o += n;
            pos = size;
            break;
        }
        size_t start = o, q = mh;
        int is_chunk = fz_key_is(p + q, len - q, "rows"), is_end = fz_key_is(p + q, len - q, "end");
        int is_header = 0;
        for (size_t k = mh, i = 0; i < cnt && k < len; i++) {
            size_t kl = fz_mp_skip(p + k, len - k, 1);
            if (!kl) break;
            if (fz_key_is(p + k, kl, "format")) is_header = 1;
            k += kl;
            k += fz_mp_skip(p + k, len - k, 1);
        }
        if (o + len + 64 > max) {
            ok = 0;
            break;
        }
        memcpy(out + o, p, mh);
        o += mh;
        uint32_t crc = 0;
        uint64_t total = 0, nrows = 0;
        for (uint64_t i = 0; i < cnt; i++) {
            size_t kl = fz_mp_skip(p + q, len - q, 1);
            size_t vl = kl ? fz_mp_skip(p + q + kl, len - q - kl, 1) : 0;
            if (!kl || !vl) break;
            const uint8_t *k = p + q, *v = p + q + kl;
            if (o + kl + vl + 16 > max) {
                ok = 0;
                break;
            }
            memcpy(out + o, k, kl);
            o += kl;
            if (is_chunk && fz_key_is(k, kl, "rows")) nrows = fz_mp_uint(v, vl);
            if (is_chunk && fz_key_is(k, kl, "cols")) {
                uint64_t nc = 0;
                size_t h = 0, c = 1;
                if ((v[0] & 0xf0) == 0x90)
                    nc = v[0] & 0x0f;
                else if (v[0] == 0xdc && vl >= 3)
                    nc = fz_be(v + 1, 2), c = 3;
                else if (v[0] == 0xdd && vl >= 5)
                    nc = fz_be(v + 1, 4), c = 5;
                else
                    c = 0;
                for (uint64_t j = 0; c && j < nc && c < vl; j++) {
                    const uint8_t *s;
                    uint64_t l;
                    size_t el = fz_mp_skip(v + c, vl - c, 2);
                    if (!el) break;
                    if ((h = fz_mp_bytes(v + c, el, &s, &l))) {
                        crc = (uint32_t)crc32_z(crc, s, (size_t)l);
                        total += l;
                    }
                    c += el;
                }
            }
            if (is_chunk && fz_key_is(k, kl, "crc"))
                o += fz_put_uint(out + o, crc, 0);
            else if (is_end && fz_key_is(k, kl, "rows"))
                o += fz_put_uint(out + o, rows, 1);
            else if (is_end && fz_key_is(k, kl, "chunks"))
                o += fz_put_uint(out + o, chunks, 1);
            else if (is_end && fz_key_is(k, kl, "crc"))
                o += fz_put_uint(out + o, scrc, 0);
            else if (is_end && fz_key_is(k, kl, "header_crc"))
                o += fz_put_uint(out + o, hcrc, 0);
            else
                memcpy(out + o, v, vl), o += vl;
            q += kl + vl;
        }
        if (!ok) break;
        if (q < len) memcpy(out + o, p + q, len - q), o += len - q; /* whatever did not parse */
        if (is_header) {
            hcrc = (uint32_t)crc32_z(0, out + start, o - start);
            scrc = 0, rows = 0, chunks = 0;
        } else if (is_chunk) {
            scrc = chunks ? (uint32_t)crc32_combine(scrc, crc, (z_off_t)total) : crc;
            chunks++;
            rows += nrows;
        }
        pos += len;
    }
    if (ok && o <= max) {
        memcpy(data, out, o);
        size = o;
    }
    free(out);
    return size;
}

#ifdef DH_LIBFUZZER
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
#define FZ_STREAM_MUTATOR                                                                                              \
    size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {                   \
        size = LLVMFuzzerMutate(data, size, max_size);                                                                 \
        return seed % 4 ? fz_fix_stream(data, size, max_size) : size;                                                  \
    }
#else
#define FZ_STREAM_MUTATOR
#endif

#endif
