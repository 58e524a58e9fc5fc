/* test_mih.c — multi-index hashing (kernels/search/mih.h) against the
 * linear scan (dh_rank_cpu, itself tested against a brute-force reference
 * in test_rank.c): the same rows, distances and tie order, on random and
 * clustered codes, for many code lengths, table counts, tops and radii,
 * with the scan fallback off, on and forced; the index file written and
 * read back, and every kind of damaged or mismatched index refused.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include "check.h"
#include "dh_rng.h"
#include "hamming.h"
#include "mih.h"
#include "rank.h"

static uint64_t rng_s = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { return dh_splitmix64(&rng_s); }

static uint64_t lastmask(int bits) { return bits % 64 ? (UINT64_C(1) << (bits % 64)) - 1 : ~UINT64_C(0); }

/* n codes: uniform (ncen 0), or around ncen random centres with each bit
 * flipped with probability 1/flipdiv (duplicates and ties galore). */
static uint64_t *codes(int64_t n, int bits, int ncen, int flipdiv, uint64_t seed) {
    int W = dh_ham_words(bits);
    uint64_t keep = rng_s;
    rng_s = 777; /* centres shared by queries and database */
    uint64_t *cen = malloc((size_t)(ncen + 1) * W * 8);
    for (int64_t i = 0; i < (int64_t)ncen * W; i++) cen[i] = rnd();
    rng_s = seed;
    uint64_t *c = malloc((size_t)(n ? n : 1) * W * 8);
    for (int64_t i = 0; i < n; i++) {
        int k = ncen ? (int)(rnd() % (uint64_t)ncen) : 0;
        for (int w = 0; w < W; w++) {
            uint64_t v;
            if (!ncen)
                v = rnd();
            else {
                v = cen[k * W + w];
                for (int b = 0; b < 64; b++)
                    if (rnd() % (uint64_t)flipdiv == 0) v ^= UINT64_C(1) << b;
            }
            c[i * W + w] = v;
        }
        c[i * W + W - 1] &= lastmask(bits);
    }
    free(cen);
    rng_s = keep;
    return c;
}

static int same(const dh_rank_result *a, const dh_rank_result *b) {
    if (a->nq != b->nq) return 0;
    for (int64_t i = 0; i <= a->nq; i++)
        if (a->off[i] != b->off[i]) return 0;
    int64_t n = a->off[a->nq];
    return !memcmp(a->idx, b->idx, (size_t)n * 8) && !memcmp(a->dist, b->dist, (size_t)n * 4);
}

/* MIH = scan for one database, every (top, radius) given, with the scan
 * budget off, default and forced. Returns 1 when all agree. */
static int agree(const uint64_t *q, int64_t nq, const uint64_t *db, int64_t n, int bits, int tables, int threads,
                 const int64_t *tops, int ntops, const int *radii, int nradii, char *why, size_t whylen) {
    dh_err e;
    dh_mih *x;
    if (dh_mih_build(&x, db, n, bits, tables, threads, &e) != DH_OK) {
        snprintf(why, whylen, "build: %s", e.msg);
        return 0;
    }
    const double budgets[3] = { 0, 1.0, -1 };
    int ok = 1;
    for (int a = 0; ok && a < ntops; a++)
        for (int b = 0; ok && b < nradii; b++) {
            dh_rank_result ref, got;
            if (dh_rank_cpu(q, nq, db, n, bits, tops[a], radii[b], 1, &ref, &e) != DH_OK) {
                snprintf(why, whylen, "scan: %s", e.msg);
                ok = 0;
                break;
            }
            for (int k = 0; ok && k < 3; k++) {
                dh_mih_set_scan_budget(x, budgets[k]);
                if (dh_mih_search(x, q, nq, tops[a], radii[b], threads, &got, &e) != DH_OK) {
                    snprintf(why, whylen, "search: %s", e.msg);
                    ok = 0;
                    break;
                }
                if (!same(&ref, &got)) {
                    snprintf(why, whylen, "bits %d, %d tables, n %lld, top %lld, radius %d, budget %g: differs", bits,
                             dh_mih_tables(x), (long long)n, (long long)tops[a], radii[b], budgets[k]);
                    ok = 0;
                }
                dh_rank_result_free(&got);
            }
            dh_rank_result_free(&ref);
        }
    dh_mih_free(x);
    return ok;
}

static const int64_t tops_std[] = { 1, 10, 100, DH_RANK_ALL };
static const int radii_std[] = { -1, 0, 2, 6 };

static void t_random_codes(void) {
    static const int lengths[] = { 8, 16, 32, 48, 63, 64, 65, 100, 128 };
    char why[256];
    for (size_t i = 0; i < sizeof lengths / sizeof *lengths; i++) {
        int bits = lengths[i];
        uint64_t *db = codes(3000, bits, 0, 0, 11 + i), *q = codes(12, bits, 0, 0, 99 + i);
        int m0 = dh_mih_default_tables(3000, bits);
        int ms[] = { 0, m0 > 1 ? m0 - 1 : 1, m0 + 1, (bits + 23) / 24 };
        for (int k = 0; k < 4; k++)
            CHECKF(agree(q, 12, db, 3000, bits, ms[k], 2, tops_std, 4, radii_std, 4, why, sizeof why), "%s", why);
        free(db);
        free(q);
    }
}

/* clustered codes: a few hundred centres, a few bits flipped: many equal
 * distances and duplicate codes, big buckets */
static void t_clustered_codes(void) {
    static const int lengths[] = { 16, 24, 64, 128, 200 };
    char why[256];
    for (size_t i = 0; i < sizeof lengths / sizeof *lengths; i++) {
        int bits = lengths[i];
        uint64_t *db = codes(5000, bits, 300, 24, 5 + i), *q = codes(15, bits, 300, 24, 55 + i);
        for (int m = 0; m <= 4; m++) {
            int tables = m == 0 ? 0 : (bits + 23) / 24 + m - 1;
            CHECKF(agree(q, 15, db, 5000, bits, tables, 3, tops_std, 4, radii_std, 4, why, sizeof why), "%s", why);
        }
        free(db);
        free(q);
    }
}

/* every row equal, or two codes only: ties decide everything */
static void t_ties(void) {
    char why[256];
    int64_t n = 2000;
    uint64_t *db = codes(n, 64, 2, 1000000, 3), *q = codes(5, 64, 2, 1000000, 4);
    const int64_t tops[] = { 1, 7, 999, 1000, 1001, DH_RANK_ALL };
    const int radii[] = { -1, 0, 1 };
    CHECKF(agree(q, 5, db, n, 64, 4, 2, tops, 6, radii, 3, why, sizeof why), "%s", why);
    for (int64_t i = 0; i < n; i++) db[i] = 0x5a5a;
    CHECKF(agree(q, 5, db, n, 64, 3, 1, tops, 6, radii, 3, why, sizeof why), "%s", why);
    free(db);
    free(q);
}

/* small databases, more tables than useful, one-bit substrings */
static void t_small_and_odd(void) {
    char why[256];
    const int64_t tops[] = { 1, 3, 50 };
    const int radii[] = { -1, 1 };
    for (int n = 1; n <= 40; n += 13) {
        uint64_t *db = codes(n, 12, 0, 0, (uint64_t)n), *q = codes(4, 12, 0, 0, 1000 + (uint64_t)n);
        for (int m = 1; m <= 12; m += 5)
            CHECKF(agree(q, 4, db, n, 12, m, 1, tops, 3, radii, 2, why, sizeof why), "n %d m %d: %s", n, m, why);
        free(db);
        free(q);
    }
    uint64_t *db = codes(500, 5, 0, 0, 1), *q = codes(7, 5, 0, 0, 2);
    CHECKF(agree(q, 7, db, 500, 5, 5, 2, tops, 3, radii, 2, why, sizeof why), "%s", why);
    free(db);
    free(q);
}

/* a database where top-100 needs a large radius: random 64-bit codes */
static void t_larger(void) {
    char why[256];
    int64_t n = 60000;
    uint64_t *db = codes(n, 64, 0, 0, 8), *q = codes(20, 64, 0, 0, 9);
    const int64_t tops[] = { 1, 10, 100 };
    const int radii[] = { -1, 10 };
    CHECKF(agree(q, 20, db, n, 64, 0, 2, tops, 3, radii, 2, why, sizeof why), "%s", why);
    CHECKF(agree(q, 20, db, n, 64, 5, 2, tops, 3, radii, 2, why, sizeof why), "%s", why);
    free(db);
    free(q);
}

static void t_default_tables(void) {
    CHECK(dh_mih_default_tables(1000000, 64) == 4);
    CHECK(dh_mih_default_tables(1000000, 128) == 8);
    CHECK(dh_mih_default_tables(10, 64) == 16);
    CHECK(dh_mih_default_tables(1, 3) == 1);
    CHECK(dh_mih_default_tables(INT64_C(1) << 40, 1024) == 43);
    for (int bits = 1; bits <= DH_MIH_MAX_BITS; bits += 37) {
        int m = dh_mih_default_tables(5000, bits);
        CHECKF(m >= 1 && m <= bits && (bits + m - 1) / m <= DH_MIH_MAX_SUBBITS, "bits %d m %d", bits, m);
    }
}

static void t_bad_args(void) {
    dh_err e;
    dh_mih *x;
    uint64_t db[4] = { 1, 2, 3, 4 };
    CHECK(dh_mih_build(&x, db, 4, 64, 2, 1, &e) == DH_EINVAL && strstr(e.msg, "at most 24"));
    CHECK(dh_mih_build(&x, db, 4, 8, 9, 1, &e) == DH_EINVAL);
    CHECK(dh_mih_build(&x, db, 4, 2000, 0, 1, &e) == DH_EUNSUPPORTED);
    db[2] = 0x1ff; /* a padding bit of an 8-bit code */
    CHECK(dh_mih_build(&x, db, 4, 8, 2, 1, &e) == DH_EINVAL && strstr(e.msg, "padding"));
    db[2] = 3;
    REQUIRE(dh_mih_build(&x, db, 4, 8, 2, 1, &e) == DH_OK);
    dh_rank_result r;
    CHECK(dh_mih_search(x, db, 1, 0, -1, 1, &r, &e) == DH_EINVAL);
    uint64_t bad = 0x100;
    CHECK(dh_mih_search(x, &bad, 1, 1, -1, 1, &r, &e) == DH_EINVAL);
    dh_mih_free(x);
}

/* ---- the index file --------------------------------------------------------------------- */

static char *write_index(dh_mih *x, size_t *len) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    dh_err e;
    int rc = dh_mih_write(x, f, "mem", &e);
    fclose(f);
    if (rc) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* read an index from bytes through a temporary file */
static int read_index(const char *buf, size_t len, const uint64_t *db, int64_t n, int bits, dh_mih **x, dh_err *e) {
    char path[] = "/tmp/test_mih.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "w+b");
    fwrite(buf, 1, len, f);
    fflush(f);
    rewind(f);
    int rc = dh_mih_read(x, f, "idx", db, n, bits, 2, e);
    fclose(f);
    unlink(path);
    return rc;
}

static uint32_t rd32(const char *p) {
    const uint8_t *u = (const uint8_t *)p;
    return u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}
static void wr32(char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (char)(v >> (8 * i));
}
/* recompute the checksums after an edit (a forged, not a damaged, file) */
static void reseal(char *buf, int64_t n) {
    uint32_t m = rd32(buf + 28);
    int hb = 64 + 16 * (int)m;
    size_t o = (size_t)hb;
    for (uint32_t t = 0; t < m; t++) {
        uint32_t len = rd32(buf + 64 + 16 * t + 4);
        size_t sz = 4 * (((size_t)1 << len) + 1 + (size_t)n);
        wr32(buf + 64 + 16 * t + 8, (uint32_t)crc32(0, (const Bytef *)buf + o, (uInt)sz));
        o += sz;
    }
    uLong c = crc32(0, (const Bytef *)buf, 60);
    wr32(buf + 60, (uint32_t)crc32(c, (const Bytef *)buf + 64, (uInt)(hb - 64)));
}

static void t_file_roundtrip(void) {
    int bits = 40;
    int64_t n = 3000;
    uint64_t *db = codes(n, bits, 50, 10, 21), *q = codes(30, bits, 50, 10, 22);
    dh_err e;
    dh_mih *x, *y;
    REQUIRE(dh_mih_build(&x, db, n, bits, 3, 2, &e) == DH_OK);
    size_t len;
    char *buf = write_index(x, &len);
    REQUIRE(buf);
    CHECK(!memcmp(buf, "DHMIHIDX", 8) && rd32(buf + 8) == 1 && rd32(buf + 28) == 3);
    CHECK(len == 64 + 3 * 16 + 4 * (3 * (size_t)n + (1 << 13) + (1 << 14) + (1 << 13) + 3));
    REQUIRE(read_index(buf, len, db, n, bits, &y, &e) == DH_OK);
    CHECK(dh_mih_tables(y) == 3);
    dh_rank_result a, b;
    REQUIRE(dh_mih_search(x, q, 30, 25, -1, 2, &a, &e) == DH_OK);
    REQUIRE(dh_mih_search(y, q, 30, 25, -1, 2, &b, &e) == DH_OK);
    CHECK(same(&a, &b));
    dh_rank_result_free(&a);
    dh_rank_result_free(&b);
    /* the same bytes again: the file is a function of the database and m */
    size_t len2;
    char *buf2 = write_index(y, &len2);
    CHECK(buf2 && len2 == len && !memcmp(buf, buf2, len));
    free(buf2);
    dh_mih_free(y);
    dh_mih_free(x);
    free(buf);
    free(db);
    free(q);
}

/* read bytes edited by fn; expect code rc and a message containing what */
static int refused(const char *buf, size_t len, const uint64_t *db, int64_t n, int bits, int want, const char *what,
                   char *msg, size_t msglen) {
    dh_err e = { 0 };
    dh_mih *x = NULL;
    int rc = read_index(buf, len, db, n, bits, &x, &e);
    snprintf(msg, msglen, "rc %d (%s)", rc, e.msg);
    if (x) dh_mih_free(x);
    return rc == want && x == NULL && strstr(e.msg, what) && !strncmp(e.msg, "idx: ", 5);
}

static void t_file_damage(void) {
    int bits = 64;
    int64_t n = 500;
    uint64_t *db = codes(n, bits, 0, 0, 31);
    dh_err e;
    dh_mih *x;
    REQUIRE(dh_mih_build(&x, db, n, bits, 4, 1, &e) == DH_OK);
    size_t len;
    char *buf = write_index(x, &len);
    REQUIRE(buf);
    char *c = malloc(len + 16), msg[1200];
    size_t hb = 64 + 4 * 16;
#define TRY(want, what, len_, edit)                                                                                    \
    do {                                                                                                               \
        memcpy(c, buf, len);                                                                                           \
        edit;                                                                                                          \
        CHECKF(refused(c, len_, db, n, bits, want, what, msg, sizeof msg), "%s: %s", #edit, msg);                      \
    } while (0)
    TRY(DH_EFORMAT, "not a deephash", len, c[0] = 'X');
    TRY(DH_EFORMAT, "not a deephash", 0, (void)0);
    TRY(DH_ETRUNC, "inside its header", 30, (void)0);
    TRY(DH_EFORMAT, "version 2", len, wr32(c + 8, 2));
    TRY(DH_ECHECKSUM, "header is damaged", len, c[20] ^= 1);
    TRY(DH_ECHECKSUM, "header is damaged", len, c[64 + 16 + 8] ^= 1);
    TRY(DH_ECHECKSUM, "table 0 is damaged", len, c[hb + 100] ^= 4);
    TRY(DH_ECHECKSUM, "table 3 is damaged", len, c[len - 1] ^= 0x80);
    TRY(DH_ETRUNC, "truncated", len - 1, (void)0);
    TRY(DH_ETRUNC, "truncated", hb + 10, (void)0);
    TRY(DH_EFORMAT, "trailing data", len + 3, (void)0);
    TRY(DH_EFORMAT, "bad header", len, wr32(c + 28, 65));
    TRY(DH_EFORMAT, "bad header", len, wr32(c + 12, 65));
    /* forged: checksums recomputed after the edit */
    TRY(DH_EFORMAT, "make substrings of 32 bits", len, (wr32(c + 28, 2), wr32(c + 12, 64 + 32), reseal(c, 0)));
    TRY(DH_EFORMAT, "bits 0..+17", len, (wr32(c + 64 + 4, 17), reseal(c, n)));
    TRY(DH_EFORMAT, "header says", len, (wr32(c + 40, 7), reseal(c, n)));
    TRY(DH_EFORMAT, "offsets do not span", len, (wr32(c + hb, 1), reseal(c, n)));
    TRY(DH_EFORMAT, "offsets decrease", len, (wr32(c + hb + 4 * 5, 400), reseal(c, n)));
    size_t rows0 = hb + 4 * ((1 << 16) + 1);
    TRY(DH_EFORMAT, "beyond the 500 rows", len, (wr32(c + rows0 + 8, 500), reseal(c, n)));
    TRY(DH_EFORMAT, "listed twice", len, (wr32(c + rows0 + 8, rd32(c + rows0 + 12)), reseal(c, n)));
    /* two rows of different buckets swapped: every row once, in the wrong bucket */
    TRY(DH_EFORMAT, "not in its bucket", len,
        (wr32(c + rows0, rd32(buf + rows0 + 4 * 7)), wr32(c + rows0 + 4 * 7, rd32(buf + rows0)), reseal(c, n)));
    /* another database: other codes, other size, other length */
    uint64_t *db2 = codes(n, bits, 0, 0, 32);
    dh_mih *y = NULL;
    CHECK(read_index(buf, len, db2, n, bits, &y, &e) == DH_ESCHEMA && strstr(e.msg, "another database") && !y);
    CHECK(read_index(buf, len, db, n - 1, bits, &y, &e) == DH_ESCHEMA && strstr(e.msg, "500 rows of 64 bits") && !y);
    CHECK(read_index(buf, len, db, n, 63, &y, &e) == DH_ESCHEMA && !y);
    /* the database checksum is the CRC-32 of the stream's bytes */
    CHECK(dh_mih_db_crc(db, 1, 64) == (uint32_t)crc32(0, (const Bytef *)db, 8));
    /* not a regular file */
    FILE *p = popen("cat /dev/null", "r");
    if (p) {
        CHECK(dh_mih_read(&y, p, "pipe", db, n, bits, 1, &e) == DH_EIO && strstr(e.msg, "regular file"));
        pclose(p);
    }
    free(db2);
    free(c);
    free(buf);
    dh_mih_free(x);
    free(db);
#undef TRY
}

static void t_stats_and_fallback(void) {
    int64_t n = 20000;
    uint64_t *db = codes(n, 64, 0, 0, 41), *q = codes(8, 64, 0, 0, 42);
    dh_err e;
    dh_mih *x;
    REQUIRE(dh_mih_build(&x, db, n, 64, 4, 1, &e) == DH_OK);
    dh_rank_result r;
    dh_mih_stats s;
    dh_mih_set_scan_budget(x, 0);
    REQUIRE(dh_mih_search(x, q, 8, 5, -1, 1, &r, &e) == DH_OK);
    dh_rank_result_free(&r);
    dh_mih_get_stats(x, &s);
    CHECK(s.queries == 8 && s.scans == 0 && s.probes > 0 && s.candidates > 0 && s.candidates < 8 * n);
    dh_mih_set_scan_budget(x, 1e-6);
    REQUIRE(dh_mih_search(x, q, 8, 5, -1, 1, &r, &e) == DH_OK);
    dh_rank_result_free(&r);
    dh_mih_get_stats(x, &s);
    CHECK(s.queries == 16 && s.scans == 8);
    CHECK(dh_mih_bytes(x) == 4 * ((INT64_C(1) << 16) * 4 + 4 + n * 12));
    dh_mih_free(x);
    free(db);
    free(q);
}

int main(void) {
    RUN(t_default_tables);
    RUN(t_random_codes);
    RUN(t_clustered_codes);
    RUN(t_ties);
    RUN(t_small_and_odd);
    RUN(t_larger);
    RUN(t_bad_args);
    RUN(t_file_roundtrip);
    RUN(t_file_damage);
    RUN(t_stats_and_fallback);
    return check_done();
}
