/* test_rank.c — Hamming ranking against a brute-force reference (full
 * distance array + stable sort), for many code lengths, tops and radii.
 *
 * Also a helper for the shell tests: `test_rank gen N BITS NCLASS SEED`
 * writes a codes stream of N random clustered codes on stdout (options:
 * `nolabel` drops the label field, `unlabelled=I` gives row I the label -1,
 * `sorted` stores the rows in class order (as dh-ingest does), `kind=X` sets
 * another stream kind).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "dhs.h"
#include "hamming.h"
#include "rank.h"
#include "rankings.h"
#include "dh_rng.h"

static uint64_t rng_s = 88172645463325252ull;
static uint64_t rnd(void) { return dh_splitmix64(&rng_s); }

/* n byte-packed codes (n, ceil(bits/8)) clustered around nclass random
 * centres (each bit flipped with probability 1/flipdiv), labels = class. */
static void make_codes(int64_t n, int bits, int nclass, int flipdiv, uint8_t *bytes, int32_t *lab,
                       const uint8_t *centres) {
    int nb = (bits + 7) / 8;
    for (int64_t i = 0; i < n; i++) {
        int c = (int)(rnd() % (uint64_t)nclass);
        if (lab) lab[i] = c;
        memset(bytes + i * nb, 0, (size_t)nb);
        for (int k = 0; k < bits; k++) {
            int b = (centres[c * bits + k] ^ (rnd() % (uint64_t)flipdiv == 0)) & 1;
            bytes[i * nb + k / 8] |= (uint8_t)(b << (k % 8));
        }
    }
}

static uint8_t *make_centres(int nclass, int bits) {
    uint8_t *c = malloc((size_t)nclass * bits);
    for (int i = 0; i < nclass * bits; i++) c[i] = rnd() & 1;
    return c;
}

/* ---- brute-force reference --------------------------------------------------- */
static int bitof(const uint8_t *row, int k) { return (row[k / 8] >> (k % 8)) & 1; }
static int ref_dist(const uint8_t *a, const uint8_t *b, int bits) {
    int d = 0;
    for (int k = 0; k < bits; k++) d += bitof(a, k) != bitof(b, k);
    return d;
}
typedef struct {
    int d;
    int64_t j;
} dj;
static int cmp_dj(const void *x, const void *y) {
    const dj *a = x, *b = y;
    if (a->d != b->d) return a->d < b->d ? -1 : 1;
    return a->j < b->j ? -1 : (a->j > b->j);
}

/* Check one configuration; returns 1 if everything matched. */
static int check_rank(int64_t nq, int64_t ndb, int bits, int64_t top, int radius, int threads, int flipdiv,
                      int nclass) {
    int nb = (bits + 7) / 8, W = dh_ham_words(bits);
    uint8_t *cen = make_centres(nclass, bits);
    uint8_t *qb = malloc((size_t)(nq * nb + 1)), *dbb = malloc((size_t)(ndb * nb + 1));
    make_codes(nq, bits, nclass, flipdiv, qb, NULL, cen);
    make_codes(ndb, bits, nclass, flipdiv, dbb, NULL, cen);
    /* set padding bits in the input: the packer must clear them */
    if (bits % 8)
        for (int64_t i = 0; i < ndb; i++) dbb[i * nb + nb - 1] |= (uint8_t)(0xff << (bits % 8));
    uint64_t *qw = malloc((size_t)(nq * W + 1) * 8), *dw = malloc((size_t)(ndb * W + 1) * 8);
    dh_ham_pack(qb, nq, bits, qw);
    dh_ham_pack(dbb, ndb, bits, dw);
    dh_rank_result res;
    dh_err e;
    int rc = dh_rank_cpu(qw, nq, dw, ndb, bits, top, radius, threads, &res, &e), ok = rc == DH_OK;
    dj *ref = malloc((size_t)(ndb + 1) * sizeof *ref);
    for (int64_t i = 0; ok && i < nq; i++) {
        for (int64_t j = 0; j < ndb; j++) {
            ref[j].d = ref_dist(qb + i * nb, dbb + j * nb, bits);
            ref[j].j = j;
        }
        qsort(ref, (size_t)ndb, sizeof *ref, cmp_dj);
        int64_t m = 0;
        while (m < ndb && m < top && (radius < 0 || ref[m].d <= radius)) m++;
        if (res.off[i + 1] - res.off[i] != m) {
            ok = 0;
            break;
        }
        for (int64_t k = 0; k < m; k++) {
            if (res.idx[res.off[i] + k] != ref[k].j || res.dist[res.off[i] + k] != ref[k].d) {
                ok = 0;
                break;
            }
        }
    }
    if (rc == DH_OK) dh_rank_result_free(&res);
    free(ref);
    free(cen);
    free(qb);
    free(dbb);
    free(qw);
    free(dw);
    return ok;
}

static const int lengths[] = { 1, 7, 8, 12, 24, 48, 63, 64, 65, 128, 200 };

static void t_pack_layout(void) {
    uint8_t b[9] = { 0x01, 0, 0, 0, 0, 0, 0, 0x80, 0xff };
    uint64_t w[2];
    dh_ham_pack(b, 1, 65, w);
    CHECK(w[0] == (UINT64_C(1) | (UINT64_C(1) << 63)));
    CHECK(w[1] == 1); /* bits 65..71 of the last byte are padding: cleared */
    CHECK(dh_ham_dist(w, (uint64_t[2]){ 0, 0 }, 2) == 3);
}

static void t_top_all_lengths(void) {
    for (size_t i = 0; i < sizeof lengths / sizeof *lengths; i++) {
        int bits = lengths[i];
        CHECKF(check_rank(7, 300, bits, 10, -1, 2, 4, 3), "top 10, bits %d", bits);
        CHECKF(check_rank(5, 257, bits, DH_RANK_ALL, -1, 2, 3, 4), "top all, bits %d", bits);
        CHECKF(check_rank(4, 200, bits, 1, -1, 1, 5, 2), "top 1, bits %d", bits);
    }
}

static void t_radius(void) {
    for (size_t i = 0; i < sizeof lengths / sizeof *lengths; i++) {
        int bits = lengths[i];
        int r = bits / 8;
        CHECKF(check_rank(6, 400, bits, DH_RANK_ALL, r, 2, 10, 3), "radius %d, bits %d", r, bits);
        CHECKF(check_rank(6, 400, bits, 5, r + 1, 2, 10, 3), "radius %d top 5, bits %d", r + 1, bits);
        CHECKF(check_rank(3, 50, bits, DH_RANK_ALL, 0, 1, 10, 1), "radius 0, bits %d", bits);
    }
}

static void t_ties_heavy(void) {
    /* 1- and 2-bit codes: everything ties; buffer compaction is exercised
     * with top much smaller than the database */
    CHECK(check_rank(9, 5000, 1, 3, -1, 2, 2, 2));
    CHECK(check_rank(9, 5000, 2, 700, -1, 2, 2, 2));
    CHECK(check_rank(9, 5000, 12, 37, -1, 2, 2, 5));
    CHECK(check_rank(3, 20000, 64, 100, -1, 2, 3, 10));
}

static void t_top_bigger_than_db(void) { CHECK(check_rank(3, 10, 16, 1000, -1, 1, 4, 2)); /* capped at the db size */ }

static void t_one_item_db(void) {
    CHECK(check_rank(5, 1, 24, 1, -1, 1, 4, 2));
    CHECK(check_rank(5, 1, 24, DH_RANK_ALL, 3, 2, 4, 2));
}

static void t_threads_agree(void) {
    CHECK(check_rank(33, 1000, 48, 20, -1, 3, 6, 4));
    CHECK(check_rank(33, 1000, 48, 20, -1, 1, 6, 4));
}

/* the portable loop (DH_NO_SIMD) and the AVX-512 one give the same */
static void t_portable_path(void) {
    setenv("DH_NO_SIMD", "1", 1);
    CHECK(check_rank(9, 3000, 64, 25, -1, 2, 3, 4));
    CHECK(check_rank(9, 3000, 33, 5, 9, 2, 3, 4));
    CHECK(check_rank(5, 2000, 3, 70, -1, 2, 2, 2));
    unsetenv("DH_NO_SIMD");
}

static void t_bad_args(void) {
    uint64_t w[2] = { 0, 0 };
    dh_rank_result r;
    dh_err e;
    CHECK(dh_rank_cpu(w, 1, w, 1, 0, 1, -1, 1, &r, &e) == DH_EINVAL);
    CHECK(dh_rank_cpu(w, 1, w, 1, 8, 0, -1, 1, &r, &e) == DH_EINVAL);
    CHECK(dh_rank_cpu(w, 0, w, 1, 8, 5, -1, 1, &r, &e) == DH_OK);
    CHECK(r.off[0] == 0);
    dh_rank_result_free(&r);
}

/* dh_ranker on the CPU gives dh_rank_cpu's rankings; CUDA asked for
 * without it is DH_EDEVICE; auto falls back to the CPU. */
static void t_ranker_dispatch(void) {
    const int bits = 40;
    int64_t nq = 20, ndb = 500;
    uint64_t *q = malloc((size_t)nq * 8), *db = malloc((size_t)ndb * 8);
    for (int64_t i = 0; i < nq; i++) q[i] = rnd() & ((UINT64_C(1) << bits) - 1);
    for (int64_t i = 0; i < ndb; i++) db[i] = rnd() & ((UINT64_C(1) << bits) - 1);
    dh_err e;
    dh_ranker *r;
    dh_rank_result a, b;
    REQUIRE(dh_ranker_open(&r, db, ndb, bits, DH_SEARCH_CPU, 2, &e) == DH_OK);
    CHECK(!strcmp(dh_ranker_device(r), "cpu"));
    REQUIRE(dh_ranker_run(r, q, nq, 30, 15, &a, &e) == DH_OK);
    REQUIRE(dh_rank_cpu(q, nq, db, ndb, bits, 30, 15, 1, &b, &e) == DH_OK);
    CHECK(a.off[nq] == b.off[nq] && !memcmp(a.idx, b.idx, (size_t)a.off[nq] * 8) &&
          !memcmp(a.dist, b.dist, (size_t)a.off[nq] * 4));
    dh_rank_result_free(&a);
    dh_rank_result_free(&b);
    dh_ranker_close(r);
    if (!dh_rank_cuda_available()) {
        CHECK(dh_ranker_open(&r, db, ndb, bits, DH_SEARCH_CUDA, 2, &e) == DH_EDEVICE && e.code == DH_EDEVICE && !r);
        REQUIRE(dh_ranker_open(&r, db, ndb, bits, DH_SEARCH_AUTO, 2, &e) == DH_OK);
        CHECK(!strcmp(dh_ranker_device(r), "cpu"));
        dh_ranker_close(r);
    }
    /* a padding bit (bit 40 of a 40-bit code) is refused, not ranked beyond the histograms */
    db[7] |= UINT64_C(1) << 41;
    CHECK(dh_rank_cpu(q, nq, db, ndb, bits, 5, -1, 1, &a, &e) == DH_EINVAL && strstr(e.msg, "database: row 7"));
    free(q);
    free(db);
}

/* The rankings stream: written as dh-rank writes it, read back as dh-map
 * reads it (labels, ids, lists, metadata). */
static void t_rankings_stream(void) {
    const int bits = 9;
    int64_t nq = 7, ndb = 60;
    uint64_t q[7], *db = malloc((size_t)ndb * 8);
    for (int64_t i = 0; i < nq; i++) q[i] = rnd() & 511;
    for (int64_t i = 0; i < ndb; i++) db[i] = rnd() & 511;
    dh_err e;
    dh_rank_result res;
    REQUIRE(dh_rank_cpu(q, nq, db, ndb, bits, 11, -1, 1, &res, &e) == DH_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    dh_rankings_meta m = { .bits = bits,
                           .db = "db.codes",
                           .db_rows = ndb,
                           .top = 11,
                           .radius = -1,
                           .labels = 1,
                           .program = "test_rank",
                           .command = "test_rank",
                           .device = "cpu" };
    dhs_writer *w = dh_rankings_writer_open(f, "mem", &m, &e);
    REQUIRE(w);
    int32_t lab[7] = { 3, 1, 4, 1, 5, 9, 2 };
    uint32_t idlen[7] = { 1, 0, 2, 1, 1, 1, 3 };
    const char *ids = "abcdefghij";
    dh_rank_result part = res; /* two batches: queries 0..2, then 3..6 */
    part.nq = 3;
    CHECK(dh_rankings_write(w, 0, 3, lab, ids, idlen, &part, &e) == DH_OK);
    int64_t off2[5];
    for (int i = 0; i < 5; i++) off2[i] = res.off[3 + i] - res.off[3];
    dh_rank_result part2 = { .nq = 4, .off = off2, .idx = res.idx + res.off[3], .dist = res.dist + res.off[3] };
    CHECK(dh_rankings_write(w, 3, 4, NULL, NULL, NULL, &part2, &e) == DH_OK);
    REQUIRE(dhs_writer_close(w, &e) == DH_OK);
    fclose(f);
    FILE *in = fmemopen(buf, len, "rb");
    dhs_reader *r = dhs_open(in, "mem", NULL, &e);
    REQUIRE(r);
    dh_rankings_reader rr;
    REQUIRE(dh_rankings_open(&rr, r, &e) == DH_OK);
    CHECK(rr.meta.bits == bits && rr.meta.db_rows == ndb && rr.meta.top == 11 && rr.meta.radius == -1 &&
          rr.meta.labels && !strcmp(rr.meta.db, "db.codes") && !strcmp(rr.meta.device, "cpu"));
    dh_ranking x;
    int64_t i = 0;
    int rc;
    while ((rc = dh_rankings_next(&rr, &x, &e)) == DH_OK) {
        CHECK(x.query == i && x.label == (i < 3 ? lab[i] : INT32_MIN) && x.n == res.off[i + 1] - res.off[i]);
        CHECK(!memcmp(x.idx, res.idx + res.off[i], (size_t)x.n * 8) &&
              !memcmp(x.dist, res.dist + res.off[i], (size_t)x.n * 4));
        i++;
    }
    CHECK(i == nq && rc == DH_EOF);
    dh_rankings_close(&rr);
    dhs_close(r);
    fclose(in);
    dh_rank_result_free(&res);
    free(buf);
    free(db);
}

/* ---- stream generator for the shell tests ---------------------------------------------- */
static int gen(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr,
                "usage: test_rank gen N BITS NCLASS SEED [nolabel] [unlabelled=I] [sorted] [kind=K] [flip=D]\n");
        return 2;
    }
    int64_t n = atoll(argv[2]);
    int bits = atoi(argv[3]), nclass = atoi(argv[4]), flip = 5, nolabel = 0, sorted = 0;
    int64_t unl = -1;
    const char *kind = "codes";
    rng_s = (uint64_t)atoll(argv[5]) * 7919 + 1;
    for (int i = 6; i < argc; i++) {
        if (!strcmp(argv[i], "nolabel"))
            nolabel = 1;
        else if (!strncmp(argv[i], "kind=", 5))
            kind = argv[i] + 5;
        else if (!strncmp(argv[i], "unlabelled=", 11))
            unl = atoll(argv[i] + 11);
        else if (!strcmp(argv[i], "sorted"))
            sorted = 1;
        else if (!strncmp(argv[i], "flip=", 5))
            flip = atoi(argv[i] + 5);
    }
    /* the centres do not depend on the seed, so queries and database match */
    uint64_t keep = rng_s;
    rng_s = 12345;
    uint8_t *cen = make_centres(nclass, bits);
    rng_s = keep;
    int nb = (bits + 7) / 8;
    uint8_t *b = malloc((size_t)(n * nb + 1));
    int32_t *lab = malloc((size_t)(n + 1) * 4);
    make_codes(n, bits, nclass, flip, b, lab, cen);
    if (sorted) { /* class order, stable: rows of class 0 first */
        uint8_t *b2 = malloc((size_t)(n * nb + 1));
        int32_t *l2 = malloc((size_t)(n + 1) * 4);
        int64_t m = 0;
        for (int c = 0; c < nclass; c++)
            for (int64_t i = 0; i < n; i++)
                if (lab[i] == c) {
                    memcpy(b2 + m * nb, b + i * nb, (size_t)nb);
                    l2[m++] = c;
                }
        free(b);
        free(lab);
        b = b2;
        lab = l2;
    }
    if (unl >= 0 && unl < n) lab[unl] = -1;
    char *ids = malloc((size_t)(n * 12 + 1));
    uint32_t *idlen = malloc((size_t)(n + 1) * 4);
    size_t o = 0;
    for (int64_t i = 0; i < n; i++) {
        int l = sprintf(ids + o, "r%lld", (long long)i);
        idlen[i] = (uint32_t)l;
        o += (size_t)l;
    }
    dhs_schema s;
    dh_err e;
    dhs_schema_init(&s, kind);
    int64_t shp = bits;
    dhs_schema_add(&s, "code", DHS_BITS, 1, &shp, &e);
    if (!nolabel) dhs_schema_add(&s, "label", DHS_I32, 0, NULL, &e);
    dhs_schema_add(&s, "id", DHS_STR, 0, NULL, &e);
    dhs_meta *m = dhs_meta_new();
    dhs_meta_set_int(m, "bits", bits);
    dhs_writer *w = dhs_writer_open(stdout, "<stdout>", &s, m, &e);
    if (!w) {
        fprintf(stderr, "gen: %s\n", e.msg);
        return 1;
    }
    const void *cols[3];
    const uint32_t *lens[3] = { NULL, NULL, NULL };
    int c = 0;
    cols[c++] = b;
    if (!nolabel) cols[c++] = lab;
    lens[c] = idlen;
    cols[c++] = ids;
    if (dhs_write_rows(w, n, cols, lens, &e) || dhs_writer_close(w, &e)) {
        fprintf(stderr, "gen: %s\n", e.msg);
        return 1;
    }
    dhs_meta_free(m);
    free(cen);
    free(b);
    free(lab);
    free(ids);
    free(idlen);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "gen")) return gen(argc, argv);
    RUN(t_pack_layout);
    RUN(t_top_all_lengths);
    RUN(t_radius);
    RUN(t_ties_heavy);
    RUN(t_top_bigger_than_db);
    RUN(t_one_item_db);
    RUN(t_threads_agree);
    RUN(t_portable_path);
    RUN(t_bad_args);
    RUN(t_ranker_dispatch);
    RUN(t_rankings_stream);
    return check_done();
}
