/* tests/gpu/test_rank.c — CUDA ranking and evaluation against the CPU
 * reference: rankings must be identical (same rows, same order, same
 * distances); metrics, database-order and tie-aware, within |gpu-ref| <=
 * 1e-12 + 1e-12*|ref| (only the order of floating-point additions
 * differs). Prints the largest error. Also: codes with padding bits set are
 * refused by the CUDA entry points, as by the CPU's. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../unit/check.h"
#include "evalmap.h"
#include "hamming.h"
#include "rank.h"
#include "dh_rng.h"

static uint64_t rng_s = 99;
static uint64_t rnd(void) { return dh_splitmix64(&rng_s); }

/* clustered codes in word form, padding bits clear */
static void make(int64_t n, int bits, int nclass, uint64_t *w, int32_t *lab, const uint64_t *cen) {
    int W = dh_ham_words(bits);
    for (int64_t i = 0; i < n; i++) {
        int c = (int)(rnd() % (uint64_t)nclass);
        if (lab) lab[i] = c;
        for (int k = 0; k < W; k++) {
            uint64_t v = cen[c * W + k] ^ (rnd() & rnd());
            if (k == W - 1 && bits % 64) v &= (UINT64_C(1) << (bits % 64)) - 1;
            w[i * W + k] = v;
        }
    }
}

static int same_rankings(int64_t nq, int64_t ndb, int bits, int64_t top, int radius) {
    int W = dh_ham_words(bits);
    uint64_t *cen = malloc((size_t)8 * W * 8), *q = malloc((size_t)nq * W * 8), *db = malloc((size_t)ndb * W * 8);
    for (int i = 0; i < 8 * W; i++) cen[i] = rnd();
    make(nq, bits, 8, q, NULL, cen);
    make(ndb, bits, 8, db, NULL, cen);
    dh_rank_result a, b;
    dh_err e;
    dh_rank_cuda *ctx = NULL;
    int ok = dh_rank_cpu(q, nq, db, ndb, bits, top, radius, 2, &a, &e) == DH_OK;
    if (ok && dh_rank_cuda_open(&ctx, db, ndb, bits, NULL, &e) != DH_OK) {
        printf("# %s\n", e.msg);
        ok = 0;
    }
    if (ok && dh_rank_cuda_run(ctx, q, nq, top, radius, &b, &e) != DH_OK) {
        printf("# %s\n", e.msg);
        ok = 0;
        dh_rank_result_free(&a);
    }
    if (ok) {
        ok = a.off[nq] == b.off[nq] && !memcmp(a.off, b.off, (size_t)(nq + 1) * 8) &&
             !memcmp(a.idx, b.idx, (size_t)a.off[nq] * 8) && !memcmp(a.dist, b.dist, (size_t)a.off[nq] * 4);
        printf("# rank bits %d top %lld radius %d: %lld results, identical: %s\n", bits, (long long)top, radius,
               (long long)a.off[nq], ok ? "yes" : "NO");
        dh_rank_result_free(&a);
        dh_rank_result_free(&b);
    }
    dh_rank_cuda_close(ctx);
    free(cen);
    free(q);
    free(db);
    return ok;
}

static void t_rank_identical(void) {
    if (!dh_rank_cuda_available()) SKIP_TEST("no CUDA device");
    static const int lengths[] = { 1, 7, 8, 12, 24, 48, 63, 64, 65, 128, 200 };
    for (size_t i = 0; i < sizeof lengths / sizeof *lengths; i++) {
        int bits = lengths[i];
        CHECKF(same_rankings(50, 3000, bits, 100, -1), "top 100, bits %d", bits);
        CHECKF(same_rankings(20, 1000, bits, DH_RANK_ALL, -1), "all, bits %d", bits);
        CHECKF(same_rankings(30, 2000, bits, DH_RANK_ALL, bits / 4), "radius, bits %d", bits);
        CHECKF(same_rankings(7, 1, bits, 1, -1), "one-item db, bits %d", bits);
    }
    CHECK(same_rankings(1000, 200000, 64, 100, -1));
}

/* |gpu-ref| / (1 + |ref|): atol = rtol = the tolerance */
static double rel_err(double g, double r) {
    double d = fabs(g - r) / (1.0 + fabs(r));
    return d == d ? d : INFINITY; /* a NaN would pass the "> maxerr" test */
}

static void t_map_close(void) {
    if (!dh_rank_cuda_available()) SKIP_TEST("no CUDA device");
    static const int lengths[] = { 1, 8, 12, 48, 64, 65, 128, 200 };
    double maxerr = 0;
    for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
        int bits = lengths[li], W = dh_ham_words(bits);
        int64_t nq = 300, ndb = 5000;
        uint64_t *cen = malloc((size_t)10 * W * 8), *q = malloc((size_t)nq * W * 8), *db = malloc((size_t)ndb * W * 8);
        int32_t *ql = malloc((size_t)nq * 4), *dl = malloc((size_t)ndb * 4);
        for (int i = 0; i < 10 * W; i++) cen[i] = rnd();
        make(nq, bits, 10, q, ql, cen);
        make(ndb, bits, 10, db, dl, cen);
        ql[0] = 77; /* no relevant item */
        dh_map_opts o = { .at_r = 100, .nk = 3, .ks = { 1, 10, 1000 }, .radius = 2 };
        dh_err e;
        double *H = dh_map_harmonic(ndb, &e), gs = 0;
        dh_map_acc a, b;
        dh_map_result ra, rb;
        dh_map_acc_init(&a, bits, ndb, &o, H, &e);
        dh_map_acc_init(&b, bits, ndb, &o, H, &e);
        REQUIRE(dh_map_cpu(q, ql, nq, db, dl, ndb, bits, 2, &a, &e) == DH_OK);
        int rc = dh_map_cuda(q, ql, nq, db, dl, ndb, bits, &b, &gs, &e);
        CHECKF(rc == DH_OK, "dh_map_cuda: %s", e.msg);
        if (rc != DH_OK) return;
        dh_map_acc_result(&a, &ra, &e);
        dh_map_acc_result(&b, &rb, &e);
        /* the tie-aware values come from the histograms, the same on both paths */
        double errs[] = { rel_err(rb.map, ra.map),
                          rel_err(rb.map_tie, ra.map_tie),
                          rel_err(rb.map_r, ra.map_r),
                          rel_err(rb.map_r_tie, ra.map_r_tie),
                          rel_err(rb.prad, ra.prad),
                          rel_err(rb.pk[0], ra.pk[0]),
                          rel_err(rb.pk[2], ra.pk[2]),
                          rel_err(rb.rk[1], ra.rk[1]),
                          rel_err(rb.pk_tie[0], ra.pk_tie[0]),
                          rel_err(rb.rk_tie[2], ra.rk_tie[2]) };
        for (size_t k = 0; k < sizeof errs / sizeof *errs; k++)
            if (errs[k] > maxerr) maxerr = errs[k];
        for (int d = 0; d <= bits; d++)
            if (rb.pr_p[d] != ra.pr_p[d] || rb.pr_r[d] != ra.pr_r[d]) maxerr = 1;
        CHECKF(rb.nq_norel == ra.nq_norel, "queries without relevant items");
        CHECKF(rb.have_map_r_tie == ra.have_map_r_tie && rb.have_k_tie[2] == ra.have_k_tie[2],
               "tie-aware availability");
        printf("# map bits %d: cpu %.12f gpu %.12f (%.3f ms on the device)\n", bits, ra.map, rb.map, gs * 1e3);
        dh_map_result_free(&ra);
        dh_map_result_free(&rb);
        dh_map_acc_free(&a);
        dh_map_acc_free(&b);
        free(H);
        free(cen);
        free(q);
        free(db);
        free(ql);
        free(dl);
    }
    printf("# max relative error gpu vs cpu: %.3g (tolerance 1e-12)\n", maxerr);
    CHECK(maxerr <= 1e-12);
}

/* padding bits beyond the code length: refused before any kernel runs */
static void t_padding_refused(void) {
    if (!dh_rank_cuda_available()) SKIP_TEST("no CUDA device");
    uint64_t db[4] = { 1, 2, 3, UINT64_C(1) << 20 }, q[1] = { 0 };
    int32_t dl[4] = { 0, 1, 0, 1 }, ql[1] = { 0 };
    dh_err e;
    dh_rank_cuda *ctx = NULL;
    CHECK(dh_rank_cuda_open(&ctx, db, 4, 12, NULL, &e) == DH_EINVAL && !ctx);
    dh_map_opts o = { .radius = 2 };
    dh_map_acc a;
    double gs;
    dh_map_acc_init(&a, 12, 4, &o, NULL, &e);
    CHECK(dh_map_cuda(q, ql, 1, db, dl, 4, 12, &a, &gs, &e) == DH_EINVAL && a.nq == 0);
    dh_map_acc_free(&a);
}

int main(void) {
    RUN(t_rank_identical);
    RUN(t_padding_refused);
    RUN(t_map_close);
    return check_done();
}
