/* test_map.c — retrieval metrics: the fast path (dh_map_cpu) and the
 * ranked-list path (dh_map_list) against a textbook reference (full
 * distance array, stable sort by distance then database position, AP by
 * its definition), hand-computed examples, ties, empty relevant sets,
 * one-item databases, and the tie-aware mAP against exact enumeration and
 * a Monte-Carlo average over random orders within ties. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "evalmap.h"
#include "hamming.h"
#include "json.h"
#include "map_report.h"
#include "rank.h"
#include "dh_rng.h"

static uint64_t rng_s = 0x1234567887654321ull;
static uint64_t rnd(void) { return dh_splitmix64(&rng_s); }

typedef struct {
    int d;
    int64_t j;
} dj;
static int cmp_dj(const void *x, const void *y) {
    const dj *a = x, *b = y;
    if (a->d != b->d) return a->d < b->d ? -1 : 1;
    return a->j < b->j ? -1 : (a->j > b->j);
}
static int bitof(const uint8_t *row, int k) { return (row[k / 8] >> (k % 8)) & 1; }
static int ref_dist(const uint8_t *a, const uint8_t *b, int bits) {
    int d = 0;
    for (int k = 0; k < bits; k++) d += bitof(a, k) != bitof(b, k);
    return d;
}

/* Textbook AP of a 0/1 relevance sequence of length n (over the first cut
 * items, normalised by `norm`; norm 0 -> 0). */
static double seq_ap(const int *rel, int64_t n, int64_t cut, double norm) {
    double s = 0;
    int64_t c = 0;
    for (int64_t i = 0; i < n && i < cut; i++)
        if (rel[i]) {
            c++;
            s += (double)c / (double)(i + 1);
        }
    return norm > 0 ? s / norm : 0.0;
}

typedef struct refm {
    double map, mapr, prad, pk[4], rk[4], *pr_p, *pr_r;
} refm;

/* Reference metrics for byte-packed codes. */
static void reference(const uint8_t *qb, const int32_t *ql, int64_t nq, const uint8_t *dbb, const int32_t *dl,
                      int64_t ndb, int bits, const dh_map_opts *o, refm *m) {
    int nb = (bits + 7) / 8;
    dj *r = malloc((size_t)ndb * sizeof *r);
    int *rel = malloc((size_t)ndb * sizeof *rel);
    memset(m, 0, sizeof *m);
    m->pr_p = calloc((size_t)bits + 1, sizeof(double));
    m->pr_r = calloc((size_t)bits + 1, sizeof(double));
    for (int64_t i = 0; i < nq; i++) {
        for (int64_t j = 0; j < ndb; j++) {
            r[j].d = ref_dist(qb + i * nb, dbb + j * nb, bits);
            r[j].j = j;
        }
        qsort(r, (size_t)ndb, sizeof *r, cmp_dj);
        int64_t R = 0;
        for (int64_t j = 0; j < ndb; j++) {
            rel[j] = dl[r[j].j] == ql[i];
            R += rel[j];
        }
        m->map += seq_ap(rel, ndb, ndb, (double)R);
        int64_t inr = 0;
        for (int64_t j = 0; j < ndb && j < o->at_r; j++) inr += rel[j];
        m->mapr += seq_ap(rel, ndb, o->at_r, (double)inr);
        for (int k = 0; k < o->nk; k++) {
            int64_t c = 0, kk = o->ks[k] < ndb ? o->ks[k] : ndb;
            for (int64_t j = 0; j < kk; j++) c += rel[j];
            m->pk[k] += (double)c / (double)kk;
            m->rk[k] += R ? (double)c / (double)R : 0;
        }
        for (int rad = 0; rad <= bits; rad++) {
            int64_t c = 0, t = 0;
            for (int64_t j = 0; j < ndb; j++)
                if (r[j].d <= rad) {
                    t++;
                    c += rel[j];
                }
            double p = t ? (double)c / (double)t : 0;
            if (rad == (o->radius < bits ? o->radius : bits)) m->prad += p;
            m->pr_p[rad] += p;
            m->pr_r[rad] += R ? (double)c / (double)R : 0;
        }
    }
    m->map /= nq;
    m->mapr /= nq;
    m->prad /= nq;
    for (int k = 0; k < o->nk; k++) {
        m->pk[k] /= nq;
        m->rk[k] /= nq;
    }
    for (int rad = 0; rad <= bits; rad++) {
        m->pr_p[rad] /= nq;
        m->pr_r[rad] /= nq;
    }
    free(r);
    free(rel);
}

static void random_set(int64_t n, int bits, int nclass, int flipdiv, const uint8_t *cen, uint8_t *b, int32_t *lab) {
    int nb = (bits + 7) / 8;
    for (int64_t i = 0; i < n; i++) {
        int c = (int)(rnd() % (uint64_t)nclass);
        lab[i] = c;
        memset(b + i * nb, 0, (size_t)nb);
        for (int k = 0; k < bits; k++) {
            int v = (cen[c * bits + k] ^ (rnd() % (uint64_t)flipdiv == 0)) & 1;
            b[i * nb + k / 8] |= (uint8_t)(v << (k % 8));
        }
    }
}

static dh_map_opts opts4(int64_t at_r) {
    dh_map_opts o = { .at_r = at_r, .nk = 4, .ks = { 1, 5, 50, 1000 }, .radius = 2 };
    return o;
}

#define TOL 1e-9

/* Compare fast path, list path (full and top-R lists) and reference. */
static void check_config(int64_t nq, int64_t ndb, int bits, int nclass, int flipdiv, int threads) {
    int nb = (bits + 7) / 8, W = dh_ham_words(bits);
    uint8_t *cen = malloc((size_t)nclass * bits);
    for (int i = 0; i < nclass * bits; i++) cen[i] = rnd() & 1;
    uint8_t *qb = malloc((size_t)(nq * nb)), *dbb = malloc((size_t)(ndb * nb));
    int32_t *ql = malloc((size_t)nq * 4), *dl = malloc((size_t)ndb * 4);
    random_set(nq, bits, nclass, flipdiv, cen, qb, ql);
    random_set(ndb, bits, nclass, flipdiv, cen, dbb, dl);
    if (nq > 1) ql[nq - 1] = nclass + 7; /* a query with no relevant item */
    uint64_t *qw = malloc((size_t)(nq * W) * 8), *dw = malloc((size_t)(ndb * W) * 8);
    dh_ham_pack(qb, nq, bits, qw);
    dh_ham_pack(dbb, ndb, bits, dw);
    dh_map_opts o = opts4(37);
    refm ref;
    reference(qb, ql, nq, dbb, dl, ndb, bits, &o, &ref);
    dh_err e;
    double *H = dh_map_harmonic(ndb, &e);
    dh_map_acc acc;
    dh_map_result res, res2, res3;
    REQUIRE(dh_map_acc_init(&acc, bits, ndb, &o, H, &e) == DH_OK);
    REQUIRE(dh_map_cpu(qw, ql, nq, dw, dl, ndb, bits, threads, &acc, &e) == DH_OK);
    REQUIRE(dh_map_acc_result(&acc, &res, &e) == DH_OK);
    dh_map_acc_free(&acc);
    CHECKF(res.have_map && res.have_map_r && res.have_prad, "availability");
    CHECKF(fabs(res.map - ref.map) < TOL, "bits %d: mAP %.12f vs ref %.12f", bits, res.map, ref.map);
    CHECKF(fabs(res.map_r - ref.mapr) < TOL, "bits %d: mAP@R %.12f vs %.12f", bits, res.map_r, ref.mapr);
    CHECKF(fabs(res.prad - ref.prad) < TOL, "bits %d: P@r2 %.12f vs %.12f", bits, res.prad, ref.prad);
    CHECK(res.nq_norel >= (nq > 1 ? 1 : 0));
    for (int k = 0; k < 4; k++) {
        CHECKF(fabs(res.pk[k] - ref.pk[k]) < TOL, "bits %d: P@%lld", bits, (long long)o.ks[k]);
        CHECKF(fabs(res.rk[k] - ref.rk[k]) < TOL, "bits %d: R@%lld", bits, (long long)o.ks[k]);
    }
    CHECK(res.pr_n == bits + 1);
    for (int d = 0; d <= bits; d++) {
        CHECKF(fabs(res.pr_p[d] - ref.pr_p[d]) < TOL, "bits %d: P(r=%d)", bits, d);
        CHECKF(fabs(res.pr_r[d] - ref.pr_r[d]) < TOL, "bits %d: R(r=%d)", bits, d);
    }
    /* the list path over full rankings gives the same numbers, tie-aware included */
    dh_rank_result rk;
    REQUIRE(dh_rank_cpu(qw, nq, dw, ndb, bits, DH_RANK_ALL, -1, threads, &rk, &e) == DH_OK);
    int64_t *hist = malloc((size_t)(bits + 1) * 8), *relhist = malloc((size_t)(bits + 1) * 8);
    dh_map_acc acc2, acc3;
    dh_map_opts o3 = o;
    o3.nk = 2; /* top-37 lists: k = 1, 5 only */
    dh_map_acc_init(&acc2, bits, ndb, &o, H, &e);
    dh_map_acc_init(&acc3, bits, ndb, &o3, H, &e);
    dh_rank_result rk3;
    REQUIRE(dh_rank_cpu(qw, nq, dw, ndb, bits, 37, -1, threads, &rk3, &e) == DH_OK);
    for (int64_t i = 0; i < nq; i++) {
        int64_t R = 0;
        for (int64_t j = 0; j < ndb; j++) R += dl[j] == ql[i];
        dh_map_qraw raw = { .hist = hist, .relhist = relhist };
        int64_t n = rk.off[i + 1] - rk.off[i];
        CHECK(dh_map_list(rk.idx + rk.off[i], rk.dist + rk.off[i], n, ql[i], dl, ndb, bits, R, bits, &o, &raw, &e) ==
              DH_OK);
        dh_map_acc_add(&acc2, &raw);
        int64_t n3 = rk3.off[i + 1] - rk3.off[i];
        int cu = n3 == ndb ? bits : rk3.dist[rk3.off[i] + n3 - 1] - 1;
        CHECK(dh_map_list(rk3.idx + rk3.off[i], rk3.dist + rk3.off[i], n3, ql[i], dl, ndb, bits, R, cu, &o3, &raw,
                          &e) == DH_OK);
        dh_map_acc_add(&acc3, &raw);
    }
    dh_map_acc_result(&acc2, &res2, &e);
    dh_map_acc_result(&acc3, &res3, &e);
    CHECKF(fabs(res2.map - res.map) < TOL && fabs(res2.map_tie - res.map_tie) < TOL,
           "list path mAP %.12f/%.12f vs fast %.12f/%.12f", res2.map, res2.map_tie, res.map, res.map_tie);
    CHECK(fabs(res2.map_r - res.map_r) < TOL && fabs(res2.prad - res.prad) < TOL);
    CHECK(res3.have_map == (ndb <= 37) && res3.have_map_r);
    CHECKF(fabs(res3.map_r - res.map_r) < TOL, "top-R list mAP@R %.12f vs %.12f", res3.map_r, res.map_r);
    CHECK(fabs(res3.pk[1] - res.pk[1]) < TOL && fabs(res3.rk[1] - res.rk[1]) < TOL);
    dh_map_acc_free(&acc2);
    dh_map_acc_free(&acc3);
    dh_map_result_free(&res);
    dh_map_result_free(&res2);
    dh_map_result_free(&res3);
    dh_rank_result_free(&rk);
    dh_rank_result_free(&rk3);
    free(hist);
    free(relhist);
    free(H);
    free(ref.pr_p);
    free(ref.pr_r);
    free(cen);
    free(qb);
    free(dbb);
    free(ql);
    free(dl);
    free(qw);
    free(dw);
}

static void t_fast_vs_reference_lengths(void) {
    static const int lengths[] = { 1, 7, 8, 12, 24, 48, 63, 64, 65, 128, 200 };
    for (size_t i = 0; i < sizeof lengths / sizeof *lengths; i++) {
        check_config(9, 301, lengths[i], 4, 4, 2);
        if (check_failed_) return;
    }
}

static void t_many_ties(void) {
    check_config(12, 500, 3, 3, 2, 2);
    check_config(5, 2000, 8, 10, 2, 1);
}

static void t_one_item_db(void) {
    check_config(4, 1, 16, 2, 4, 1);
    check_config(1, 1, 5, 1, 4, 1);
}

/* Hand-computed: relevance pattern 1 0 1 0 0 1 at distances 0..5:
 * AP = (1/1 + 2/3 + 3/6) / 3 = 13/18. */
static void t_hand_ap(void) {
    uint64_t q = 0, db[6];
    int32_t ql = 7, dl[6] = { 7, 1, 7, 2, 3, 7 };
    for (int j = 0; j < 6; j++) db[j] = (UINT64_C(1) << j) - 1; /* distance j */
    dh_map_opts o = { .at_r = 3, .nk = 2, .ks = { 2, 6 }, .radius = 2 };
    dh_err e;
    double *H = dh_map_harmonic(6, &e);
    dh_map_acc a;
    dh_map_result r;
    dh_map_acc_init(&a, 8, 6, &o, H, &e);
    REQUIRE(dh_map_cpu(&q, &ql, 1, db, dl, 6, 8, 1, &a, &e) == DH_OK);
    dh_map_acc_result(&a, &r, &e);
    CHECK_NEAR(r.map, 13.0 / 18.0, 1e-12);
    CHECK_NEAR(r.map_tie, 13.0 / 18.0, 1e-12);     /* no ties */
    CHECK_NEAR(r.map_r, (1 + 2.0 / 3) / 2, 1e-12); /* two relevant in the top 3 */
    CHECK_NEAR(r.pk[0], 0.5, 1e-12);
    CHECK_NEAR(r.pk[1], 0.5, 1e-12);
    CHECK_NEAR(r.rk[0], 1.0 / 3, 1e-12);
    CHECK_NEAR(r.prad, 2.0 / 3, 1e-12); /* distances 0,1,2: two relevant */
    CHECK_NEAR(r.pr_p[0], 1.0, 1e-12);
    CHECK_NEAR(r.pr_r[5], 1.0, 1e-12);
    dh_map_result_free(&r);
    dh_map_acc_free(&a);
    free(H);
}

/* Three items at the same distance, labels x q q: database order gives
 * AP = (1/2 + 2/3)/2 = 7/12; the expected AP over the 3 orders is
 * (7/12 + 5/6 + 1)/3 = 29/36. */
static void t_hand_ties(void) {
    uint64_t q = 0, db[3] = { 1, 2, 4 };
    int32_t ql = 1, dl[3] = { 0, 1, 1 };
    dh_map_opts o = { .at_r = 0, .nk = 0, .radius = 2 };
    dh_err e;
    double *H = dh_map_harmonic(3, &e);
    dh_map_acc a;
    dh_map_result r;
    dh_map_acc_init(&a, 4, 3, &o, H, &e);
    REQUIRE(dh_map_cpu(&q, &ql, 1, db, dl, 3, 4, 1, &a, &e) == DH_OK);
    dh_map_acc_result(&a, &r, &e);
    CHECK_NEAR(r.map, 7.0 / 12.0, 1e-12);
    CHECK_NEAR(r.map_tie, 29.0 / 36.0, 1e-12);
    CHECK_NEAR(r.prad, 2.0 / 3, 1e-12);
    dh_map_result_free(&r);
    dh_map_acc_free(&a);
    free(H);
}

/* The same three tied items (labels x q q) for the other tie-aware
 * metrics: P@1 = P@2 = 2/3, R@1 = 1/3; AP@1 = P(first is relevant) = 2/3;
 * AP@2 over the three places of x: (1/2 + 1 + 1)/3 = 5/6. */
static void t_hand_ties_k(void) {
    uint64_t q = 0, db[3] = { 1, 2, 4 };
    int32_t ql = 1, dl[3] = { 0, 1, 1 };
    dh_err e;
    for (int R = 1; R <= 3; R++) {
        dh_map_opts o = { .at_r = R, .nk = 3, .ks = { 1, 2, 3 }, .radius = 2 };
        dh_map_acc a;
        dh_map_result r;
        dh_map_acc_init(&a, 4, 3, &o, NULL, &e);
        REQUIRE(dh_map_cpu(&q, &ql, 1, db, dl, 3, 4, 1, &a, &e) == DH_OK);
        dh_map_acc_result(&a, &r, &e);
        CHECK(r.have_map_r_tie && r.have_k_tie[0] && r.have_k_tie[2]);
        CHECK_NEAR(r.map_r_tie, R == 1 ? 2.0 / 3 : R == 2 ? 5.0 / 6 : 29.0 / 36, 1e-12);
        CHECK_NEAR(r.pk_tie[0], 2.0 / 3, 1e-12);
        CHECK_NEAR(r.pk_tie[1], 2.0 / 3, 1e-12);
        CHECK_NEAR(r.pk_tie[2], 2.0 / 3, 1e-12);
        CHECK_NEAR(r.rk_tie[0], 1.0 / 3, 1e-12);
        CHECK_NEAR(r.rk_tie[2], 1.0, 1e-12);
        CHECK_NEAR(r.pk[0], 0.0, 1e-12); /* database order: x first */
        dh_map_result_free(&r);
        dh_map_acc_free(&a);
    }
}

/* Database-order metrics of queries q against db in the row order perm. */
static void metrics_in_order(const uint64_t *q, const int32_t *ql, int64_t nq, const uint64_t *db, const int32_t *dl,
                             int64_t ndb, int bits, const int64_t *perm, const dh_map_opts *o, dh_map_result *r) {
    uint64_t pw[16];
    int32_t pl[16];
    for (int64_t j = 0; j < ndb; j++) {
        pw[j] = db[perm[j]];
        pl[j] = dl[perm[j]];
    }
    dh_err e;
    dh_map_acc a;
    dh_map_acc_init(&a, bits, ndb, o, NULL, &e);
    dh_map_cpu(q, ql, nq, pw, pl, ndb, bits, 1, &a, &e);
    dh_map_acc_result(&a, r, &e);
    dh_map_acc_free(&a);
}

/* Tie-aware values are the average of the database-order ones over every
 * order of the database (7! orders, exactly), and do not depend on the
 * order they are computed from. */
static void t_tie_aware_all_orders(void) {
    enum { NDB = 7, NQ = 3 };
    const int bits = 3;
    uint64_t db[NDB] = { 0, 1, 2, 4, 3, 5, 0 }, q[NQ] = { 0, 1, 6 };
    int32_t dl[NDB] = { 0, 1, 0, 1, 1, 0, 1 }, ql[NQ] = { 0, 1, 1 };
    dh_map_opts o = { .at_r = 3, .nk = 4, .ks = { 1, 2, 4, 6 }, .radius = 1 };
    int64_t perm[NDB];
    for (int j = 0; j < NDB; j++) perm[j] = j;
    dh_map_result ref, r;
    metrics_in_order(q, ql, NQ, db, dl, NDB, bits, perm, &o, &ref);
    double s_map = 0, s_mapr = 0, s_pk[4] = { 0 }, s_rk[4] = { 0 };
    int64_t n = 0;
    int ok = 1;
    for (;;) { /* every permutation, in lexicographic order */
        metrics_in_order(q, ql, NQ, db, dl, NDB, bits, perm, &o, &r);
        s_map += r.map;
        s_mapr += r.map_r;
        for (int k = 0; k < 4; k++) s_pk[k] += r.pk[k], s_rk[k] += r.rk[k];
        ok &= r.map_tie == ref.map_tie && r.map_r_tie == ref.map_r_tie && r.pk_tie[0] == ref.pk_tie[0] &&
              r.pk_tie[3] == ref.pk_tie[3] && r.rk_tie[2] == ref.rk_tie[2];
        dh_map_result_free(&r);
        n++;
        int i = NDB - 2;
        while (i >= 0 && perm[i] > perm[i + 1]) i--;
        if (i < 0) break;
        int j = NDB - 1;
        while (perm[j] < perm[i]) j--;
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        for (int a = i + 1, b = NDB - 1; a < b; a++, b--) t = perm[a], perm[a] = perm[b], perm[b] = t;
    }
    CHECK(n == 5040);
    CHECKF(ok, "tie-aware values depend on the database order");
    CHECK_NEAR(ref.map_tie, s_map / n, 1e-12);
    CHECK_NEAR(ref.map_r_tie, s_mapr / n, 1e-12);
    for (int k = 0; k < 4; k++) {
        CHECKF(fabs(ref.pk_tie[k] - s_pk[k] / n) < 1e-12, "P@%lld: tie-aware %.15f, mean over orders %.15f",
               (long long)o.ks[k], ref.pk_tie[k], s_pk[k] / n);
        CHECKF(fabs(ref.rk_tie[k] - s_rk[k] / n) < 1e-12, "R@%lld", (long long)o.ks[k]);
    }
    dh_map_result_free(&ref);
}

/* A class-sorted database (as dh-ingest writes one): the database-order
 * P@k favours the classes stored first among ties; the tie-aware values
 * are the same as on a shuffled copy, and the mean of the database-order
 * values over random shuffles of the database (Monte-Carlo). */
static void t_tie_aware_class_sorted(void) {
    const int bits = 5, nclass = 4;
    const int64_t ndb = 300, nq = 40, T = 400;
    uint8_t cen[20], qb[40], dbb[300];
    int32_t ql[40], dl0[300], dl[300], dls[300];
    for (int i = 0; i < nclass * bits; i++) cen[i] = rnd() & 1;
    random_set(nq, bits, nclass, 3, cen, qb, ql);
    random_set(ndb, bits, nclass, 3, cen, dbb, dl0);
    uint64_t qw[40], w0[300], dw[300], dws[300];
    dh_ham_pack(qb, nq, bits, qw);
    dh_ham_pack(dbb, ndb, bits, w0);
    int64_t ord[300];
    for (int64_t j = 0; j < ndb; j++) ord[j] = j;
    int64_t m = 0; /* class-sorted, database order within a class */
    for (int c = 0; c < nclass; c++)
        for (int64_t j = 0; j < ndb; j++)
            if (dl0[j] == c) ord[m++] = j;
    for (int64_t j = 0; j < ndb; j++) dw[j] = w0[ord[j]], dl[j] = dl0[ord[j]];
    dh_map_opts o = { .at_r = 50, .nk = 3, .ks = { 1, 10, 100 }, .radius = 1 };
    dh_err e;
    dh_map_acc a;
    dh_map_result sorted, shuf, r;
    dh_map_acc_init(&a, bits, ndb, &o, NULL, &e);
    REQUIRE(dh_map_cpu(qw, ql, nq, dw, dl, ndb, bits, 2, &a, &e) == DH_OK);
    dh_map_acc_result(&a, &sorted, &e);
    dh_map_acc_free(&a);
    double m_pk[3] = { 0 }, m2_pk[3] = { 0 }, m_r = 0, m2_r = 0;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t j = 0; j < ndb; j++) ord[j] = j;
        for (int64_t j = ndb - 1; j > 0; j--) {
            int64_t u = (int64_t)(rnd() % (uint64_t)(j + 1)), x = ord[j];
            ord[j] = ord[u];
            ord[u] = x;
        }
        for (int64_t j = 0; j < ndb; j++) dws[j] = dw[ord[j]], dls[j] = dl[ord[j]];
        dh_map_acc_init(&a, bits, ndb, &o, NULL, &e);
        dh_map_cpu(qw, ql, nq, dws, dls, ndb, bits, 2, &a, &e);
        dh_map_acc_result(&a, t ? &r : &shuf, &e);
        dh_map_acc_free(&a);
        dh_map_result *x = t ? &r : &shuf;
        for (int k = 0; k < 3; k++) m_pk[k] += x->pk[k], m2_pk[k] += x->pk[k] * x->pk[k];
        m_r += x->map_r;
        m2_r += x->map_r * x->map_r;
        if (t) {
            CHECK(fabs(r.pk_tie[0] - sorted.pk_tie[0]) < 1e-12 && fabs(r.map_r_tie - sorted.map_r_tie) < 1e-12);
            dh_map_result_free(&r);
        }
    }
    /* invariance */
    CHECK(fabs(shuf.map_tie - sorted.map_tie) < 1e-12 && fabs(shuf.map_r_tie - sorted.map_r_tie) < 1e-12);
    for (int k = 0; k < 3; k++)
        CHECKF(fabs(shuf.pk_tie[k] - sorted.pk_tie[k]) < 1e-12 && fabs(shuf.rk_tie[k] - sorted.rk_tie[k]) < 1e-12,
               "tie-aware P@%lld differs between the class-sorted and a shuffled database", (long long)o.ks[k]);
    /* the mean over shuffles */
    for (int k = 0; k < 3; k++) {
        double mu = m_pk[k] / T, se = sqrt((m2_pk[k] / T - mu * mu) / T);
        CHECKF(fabs(sorted.pk_tie[k] - mu) < 4 * se + 1e-9,
               "P@%lld: tie-aware %.6f, mean over %lld shuffles %.6f (se %.2g)", (long long)o.ks[k], sorted.pk_tie[k],
               (long long)T, mu, se);
    }
    double mu = m_r / T, se = sqrt((m2_r / T - mu * mu) / T);
    CHECKF(fabs(sorted.map_r_tie - mu) < 4 * se + 1e-9, "mAP@R: tie-aware %.6f, mean over shuffles %.6f (se %.2g)",
           sorted.map_r_tie, mu, se);
    printf("# class-sorted database: P@1 %.4f in database order, %.4f tie-aware, %.4f mean over %lld shuffles\n",
           sorted.pk[0], sorted.pk_tie[0], m_pk[0] / T, (long long)T);
    dh_map_result_free(&sorted);
    dh_map_result_free(&shuf);
}

/* Empty relevant set: AP 0, counted in the mean, reported. */
static void t_empty_relevant(void) {
    uint64_t q[2] = { 0, 0 }, db[3] = { 1, 2, 4 };
    int32_t ql[2] = { 9, 0 }, dl[3] = { 0, 1, 1 };
    dh_map_opts o = { .at_r = 2, .nk = 1, .ks = { 1 }, .radius = 2 };
    dh_err e;
    double *H = dh_map_harmonic(3, &e);
    dh_map_acc a;
    dh_map_result r;
    dh_map_acc_init(&a, 4, 3, &o, H, &e);
    REQUIRE(dh_map_cpu(q, ql, 2, db, dl, 3, 4, 2, &a, &e) == DH_OK);
    dh_map_acc_result(&a, &r, &e);
    CHECK(r.nq_norel == 1);
    CHECK_NEAR(r.map, 0.5, 1e-12); /* (0 + 1) / 2 */
    /* the second query ties with all three: E[1/rank of its one relevant
     * item] = (1 + 1/2 + 1/3)/3 = 11/18 */
    CHECK_NEAR(r.map_tie, 11.0 / 36.0, 1e-12);
    CHECK_NEAR(r.pk[0], 0.5, 1e-12);
    dh_map_result_free(&r);
    dh_map_acc_free(&a);
    free(H);
}

/* Tie-aware mAP against a Monte-Carlo average over random orders within
 * equal distances (8-bit clustered codes: many ties). */
static void t_tie_aware_monte_carlo(void) {
    const int bits = 6, nclass = 3;
    const int64_t ndb = 60, nq = 4, T = 20000;
    uint8_t cen[18], qb[4], dbb[60];
    int32_t ql[4], dl[60];
    for (int i = 0; i < nclass * bits; i++) cen[i] = rnd() & 1;
    random_set(nq, bits, nclass, 3, cen, qb, ql);
    random_set(ndb, bits, nclass, 3, cen, dbb, dl);
    uint64_t qw[4], dw[60];
    dh_ham_pack(qb, nq, bits, qw);
    dh_ham_pack(dbb, ndb, bits, dw);
    dh_map_opts o = { .radius = 2 };
    dh_err e;
    double *H = dh_map_harmonic(ndb, &e);
    dh_map_acc a;
    dh_map_result r;
    dh_map_acc_init(&a, bits, ndb, &o, H, &e);
    REQUIRE(dh_map_cpu(qw, ql, nq, dw, dl, ndb, bits, 1, &a, &e) == DH_OK);
    dh_map_acc_result(&a, &r, &e);
    double mc = 0, mc2 = 0;
    for (int64_t i = 0; i < nq; i++) {
        dj rr[60];
        int rel[60];
        int64_t R = 0;
        for (int64_t j = 0; j < ndb; j++) {
            rr[j].d = ref_dist(qb + i, dbb + j, bits);
            rr[j].j = j;
            R += dl[j] == ql[i];
        }
        qsort(rr, (size_t)ndb, sizeof *rr, cmp_dj);
        double s = 0, s2 = 0;
        for (int64_t t = 0; t < T; t++) {
            /* shuffle each run of equal distances */
            for (int64_t g = 0; g < ndb;) {
                int64_t h = g;
                while (h < ndb && rr[h].d == rr[g].d) h++;
                for (int64_t k = h - 1; k > g; k--) {
                    int64_t m = g + (int64_t)(rnd() % (uint64_t)(k - g + 1));
                    dj tmp = rr[k];
                    rr[k] = rr[m];
                    rr[m] = tmp;
                }
                g = h;
            }
            for (int64_t j = 0; j < ndb; j++) rel[j] = dl[rr[j].j] == ql[i];
            double ap = seq_ap(rel, ndb, ndb, (double)R);
            s += ap;
            s2 += ap * ap;
        }
        mc += s / T / nq;
        double var = s2 / T - (s / T) * (s / T);
        mc2 += var / T / ((double)nq * nq);
    }
    double se = sqrt(mc2);
    CHECKF(fabs(r.map_tie - mc) < 4 * se + 1e-9, "tie-aware %.6f vs Monte-Carlo %.6f (se %.2g)", r.map_tie, mc, se);
    printf("# tie-aware mAP %.6f, Monte-Carlo %.6f +- %.6f, database order %.6f\n", r.map_tie, mc, se, r.map);
    dh_map_result_free(&r);
    dh_map_acc_free(&a);
    free(H);
}

static void t_list_errors(void) {
    int64_t idx[3] = { 0, 5, 1 }, h[9], rh[9];
    int32_t dist[3] = { 0, 1, 1 }, dl[3] = { 0, 0, 0 };
    dh_map_opts o = { .radius = 2 };
    dh_map_qraw raw = { .hist = h, .relhist = rh };
    dh_err e;
    CHECK(dh_map_list(idx, dist, 3, 0, dl, 3, 8, 3, 8, &o, &raw, &e) == DH_EFORMAT); /* row 5 */
    idx[1] = 2;
    dist[2] = 0;
    CHECK(dh_map_list(idx, dist, 3, 0, dl, 3, 8, 3, 8, &o, &raw, &e) == DH_EFORMAT); /* order */
    dist[2] = 9;
    CHECK(dh_map_list(idx, dist, 3, 0, dl, 3, 8, 3, 8, &o, &raw, &e) == DH_EFORMAT); /* > bits */
    dist[2] = 1;
    idx[2] = 0;
    CHECK(dh_map_list(idx, dist, 3, 0, dl, 3, 8, 2, 8, &o, &raw, &e) == DH_EFORMAT); /* twice */
}

/* The rankings path as dh-map runs it (dh_map_lists: the cut rule and the
 * relevant counts) gives the fast path's numbers for whole rankings, and
 * for rankings cut by top R or a radius what the lists determine. */
static void t_lists_cut_rule(void) {
    const int bits = 12, nclass = 4;
    const int64_t nq = 15, ndb = 700;
    int nb = (bits + 7) / 8, W = dh_ham_words(bits);
    uint8_t cen[48], *qb = malloc((size_t)(nq * nb)), *dbb = malloc((size_t)(ndb * nb));
    int32_t ql[15], *dl = malloc((size_t)ndb * 4);
    for (int i = 0; i < nclass * bits; i++) cen[i] = rnd() & 1;
    random_set(nq, bits, nclass, 4, cen, qb, ql);
    random_set(ndb, bits, nclass, 4, cen, dbb, dl);
    uint64_t qw[15], *dw = malloc((size_t)(ndb * W) * 8);
    dh_ham_pack(qb, nq, bits, qw);
    dh_ham_pack(dbb, ndb, bits, dw);
    dh_map_opts o = opts4(37);
    dh_err e;
    dh_map_acc fa;
    dh_map_result fr;
    REQUIRE(dh_map_acc_init(&fa, bits, ndb, &o, NULL, &e) == DH_OK);
    REQUIRE(dh_map_cpu(qw, ql, nq, dw, dl, ndb, bits, 2, &fa, &e) == DH_OK);
    REQUIRE(dh_map_acc_result(&fa, &fr, &e) == DH_OK);
    struct {
        int64_t top;
        int radius;
    } cuts[] = { { -1, -1 }, { 100, -1 }, { -1, 3 }, { 50, 4 }, { 1, -1 } };
    for (size_t c = 0; c < sizeof cuts / sizeof *cuts; c++) {
        int64_t top = cuts[c].top;
        int radius = cuts[c].radius;
        dh_rank_result rk;
        REQUIRE(dh_rank_cpu(qw, nq, dw, ndb, bits, top < 0 ? DH_RANK_ALL : top, radius, 2, &rk, &e) == DH_OK);
        dh_map_lists l;
        dh_map_acc a;
        dh_map_result r;
        REQUIRE(dh_map_lists_init(&l, dl, ndb, bits, top, radius, &e) == DH_OK);
        REQUIRE(dh_map_acc_init(&a, bits, ndb, &o, NULL, &e) == DH_OK);
        for (int64_t i = 0; i < nq; i++)
            CHECK(dh_map_lists_add(&l, &a, ql[i], rk.idx + rk.off[i], rk.dist + rk.off[i], rk.off[i + 1] - rk.off[i],
                                   &e) == DH_OK);
        REQUIRE(dh_map_acc_result(&a, &r, &e) == DH_OK);
        int whole = top < 0 && radius < 0;
        CHECKF((dh_map_lists_note(&l) == NULL) == whole, "note for top %lld radius %d", (long long)top, radius);
        CHECKF(r.have_map == whole, "mAP availability, top %lld radius %d", (long long)top, radius);
        if (whole) CHECK(fabs(r.map - fr.map) < TOL && fabs(r.map_tie - fr.map_tie) < TOL);
        CHECK(r.have_prad == (radius < 0 || radius >= o.radius) || top >= 0);
        if (r.have_prad) CHECKF(fabs(r.prad - fr.prad) < TOL, "P@r2 top %lld radius %d", (long long)top, radius);
        if (r.have_map_r) CHECK(fabs(r.map_r - fr.map_r) < TOL);
        for (int k = 0; k < o.nk; k++)
            if (r.have_k[k])
                CHECKF(fabs(r.pk[k] - fr.pk[k]) < TOL, "P@%lld, top %lld", (long long)o.ks[k], (long long)top);
        for (int d = 0; d < r.pr_n; d++) CHECK(fabs(r.pr_p[d] - fr.pr_p[d]) < TOL);
        /* tie-aware values from cut lists: where the lists hold the whole tie group, the fast path's */
        for (int k = 0; k < o.nk; k++)
            if (r.have_k_tie[k])
                CHECKF(fabs(r.pk_tie[k] - fr.pk_tie[k]) < TOL && fabs(r.rk_tie[k] - fr.rk_tie[k]) < TOL,
                       "tie-aware P@%lld, top %lld radius %d", (long long)o.ks[k], (long long)top, radius);
        if (r.have_map_r_tie) CHECK(fabs(r.map_r_tie - fr.map_r_tie) < TOL);
        if (whole) CHECK(r.have_map_r_tie && r.have_k_tie[0] && r.have_k_tie[3]);
        if (radius == 3 && top < 0) CHECK(r.have_k_tie[0]); /* everything within distance 3 is listed */
        if (top == 100) CHECK(r.have_k[0] && r.have_k[1] && r.have_k[2] && !r.have_k[3] && r.have_map_r);
        if (radius == 3 && top < 0) CHECK(r.pr_n == 4 && r.have_prad);
        dh_map_result_free(&r);
        dh_map_acc_free(&a);
        dh_map_lists_free(&l);
        dh_rank_result_free(&rk);
    }
    /* the cut rule itself */
    int32_t dist[5] = { 0, 1, 1, 3, 3 };
    CHECK(dh_map_complete_upto(dist, 5, 5, -1, -1, 8) == 8); /* the whole database */
    CHECK(dh_map_complete_upto(dist, 5, 9, 5, -1, 8) == 2);  /* top 5: distance 3 may go on */
    CHECK(dh_map_complete_upto(dist, 5, 9, 7, 3, 8) == 3);   /* fewer than top: the radius cut */
    CHECK(dh_map_complete_upto(dist, 0, 9, 7, 0, 8) == 0);   /* nothing within radius 0 */
    /* a list that is not a ranking of this database */
    dh_map_lists l;
    dh_map_acc a;
    REQUIRE(dh_map_lists_init(&l, dl, ndb, bits, -1, -1, &e) == DH_OK);
    REQUIRE(dh_map_acc_init(&a, bits, ndb, &o, NULL, &e) == DH_OK);
    int64_t idx[2] = { 0, 1 };
    int32_t dd[2] = { 0, 0 };
    CHECK(dh_map_lists_add(&l, &a, 0, idx, dd, ndb + 1, &e) == DH_EFORMAT);
    idx[1] = ndb;
    CHECK(dh_map_lists_add(&l, &a, 0, idx, dd, 2, &e) == DH_EFORMAT);
    CHECK(a.nq == 0);
    dh_map_acc_free(&a);
    dh_map_lists_free(&l);
    dh_map_result_free(&fr);
    dh_map_acc_free(&fa);
    free(qb);
    free(dbb);
    free(dl);
    free(dw);
}

/* dh_map_codes: the CPU gives dh_map_cpu's numbers with progress calls;
 * CUDA asked for in a build or on a machine without it is DH_EDEVICE. */
static void count_progress(void *ctx, int64_t done) { *(int64_t *)ctx = done; }
static void t_codes_dispatch(void) {
    const int bits = 24;
    int64_t nq = 5000, ndb = 50;
    uint64_t *q = malloc((size_t)nq * 8), db[50];
    int32_t *ql = malloc((size_t)nq * 4), dl[50];
    for (int64_t i = 0; i < nq; i++) q[i] = rnd() & 0xffffff, ql[i] = (int32_t)(rnd() % 3);
    for (int64_t i = 0; i < ndb; i++) db[i] = rnd() & 0xffffff, dl[i] = (int32_t)(rnd() % 3);
    dh_codeset qs = { .n = nq, .bits = bits, .W = 1, .w = q, .label = ql },
               ds = { .n = ndb, .bits = bits, .W = 1, .w = db, .label = dl };
    dh_map_opts o = opts4(10);
    dh_err e;
    dh_map_acc a, b;
    dh_map_result ra, rb;
    int64_t done = 0;
    dh_map_run run = { .dev = DH_SEARCH_CPU, .nthreads = 2, .progress = count_progress, .ctx = &done };
    REQUIRE(dh_map_acc_init(&a, bits, ndb, &o, NULL, &e) == DH_OK && dh_map_acc_init(&b, bits, ndb, &o, NULL, &e) == 0);
    REQUIRE(dh_map_codes(&qs, &ds, &run, &a, &e) == DH_OK);
    CHECK(done == nq && !strcmp(run.used, "cpu") && run.seconds >= 0);
    REQUIRE(dh_map_cpu(q, ql, nq, db, dl, ndb, bits, 1, &b, &e) == DH_OK);
    dh_map_acc_result(&a, &ra, &e);
    dh_map_acc_result(&b, &rb, &e);
    CHECK(ra.map == rb.map && ra.map_tie == rb.map_tie && ra.pk[0] == rb.pk[0]); /* same order of additions */
    dh_map_result_free(&ra);
    dh_map_result_free(&rb);
    if (!dh_rank_cuda_available()) {
        run.dev = DH_SEARCH_CUDA;
        CHECK(dh_map_codes(&qs, &ds, &run, &b, &e) == DH_EDEVICE && e.code == DH_EDEVICE);
        run.dev = DH_SEARCH_AUTO;
        dh_map_acc_free(&b);
        dh_map_acc_init(&b, bits, ndb, &o, NULL, &e);
        CHECK(dh_map_codes(&qs, &ds, &run, &b, &e) == DH_OK && !strcmp(run.used, "cpu") && b.nq == nq);
    }
    dh_search_dev dev;
    CHECK(dh_search_dev_parse("cuda", &dev, &e) == DH_OK && dev == DH_SEARCH_CUDA);
    CHECK(dh_search_dev_parse(NULL, &dev, &e) == DH_OK && dev == DH_SEARCH_AUTO);
    CHECK(dh_search_dev_parse("tpu", &dev, &e) == DH_EINVAL && strstr(e.msg, "tpu"));
    /* a padding bit set: refused, never a distance above bits */
    q[3] |= UINT64_C(1) << 30;
    CHECK(dh_map_cpu(q, ql, nq, db, dl, ndb, bits, 1, &b, &e) == DH_EINVAL && strstr(e.msg, "row 3"));
    dh_map_acc_free(&a);
    dh_map_acc_free(&b);
    free(q);
    free(ql);
}

/* The JSON reader: values, escapes, errors with line and column. */
static void t_json(void) {
    const char *t = " {\"a\": [1, -2.5e3, true, false, null], \"s\": \"x\\\"\\\\\\/\\n\\u00e9\\ud83d\\ude00\","
                    " \"o\": {}, \"e\": []}\n";
    dh_json *v;
    dh_err e;
    REQUIRE(dh_json_parse(t, strlen(t), &v, &e) == DH_OK);
    const dh_json *a = dh_json_get(v, "a"), *s = dh_json_get(v, "s");
    CHECK(a && a->type == DH_JSON_ARR && a->n == 5 && a->kid[1].num == -2500 && a->kid[2].b == 1 &&
          a->kid[3].type == DH_JSON_BOOL && !a->kid[3].b && a->kid[4].type == DH_JSON_NULL);
    CHECK(s && s->type == DH_JSON_STR && !strcmp(s->str, "x\"\\/\n\xc3\xa9\xf0\x9f\x98\x80"));
    CHECK(dh_json_get(v, "o")->n == 0 && dh_json_get(v, "e")->type == DH_JSON_ARR && !dh_json_get(v, "zz"));
    dh_json_free(v);
    static const char *const bad[] = { "",         "{",           "[1,]",        "{\"a\" 1}", "01",  "1.",
                                       "\"\\x\"",  "\"\\ud800\"", "\"\\u0000\"", "[1] x",     "nul", "{1: 2}",
                                       "\"a\nb\"", "-",           "[\"abc",      "\"\\u12\"" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECKF(dh_json_parse(bad[i], strlen(bad[i]), &v, &e) == DH_EFORMAT && !v, "'%s' parsed", bad[i]);
        CHECKF(!strncmp(e.msg, "line ", 5), "'%s': %s", bad[i], e.msg);
    }
    CHECK(dh_json_parse("[\n  1,\n  ?]", 11, &v, &e) == DH_EFORMAT && strstr(e.msg, "line 3, column 3"));
    char deep[600];
    memset(deep, '[', 300);
    memset(deep + 300, ']', 300);
    CHECK(dh_json_parse(deep, 600, &v, &e) == DH_EFORMAT && strstr(e.msg, "deeply"));
    /* 2^22 values parse, one more is the reader's limit (not gigabytes of tree) */
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = (size_t)(1 << 22) - 1 + (size_t)extra; /* elements; the array itself is one value more */
        char *big = malloc(2 * n + 2);
        REQUIRE(big);
        big[0] = '[';
        for (size_t i = 0; i < n; i++) big[1 + 2 * i] = '0', big[2 + 2 * i] = ',';
        big[2 * n] = ']';
        int rc = dh_json_parse(big, 2 * n + 1, &v, &e);
        if (!extra) {
            CHECKF(rc == DH_OK && v && v->n == (int)n, "%zu values: rc %d", n + 1, rc);
            dh_json_free(v);
        } else
            CHECKF(rc == DH_ELIMIT && !v && strstr(e.msg, "limit"), "%zu values: rc %d (%s)", n + 1, rc, e.msg);
        free(big);
    }
}

/* The JSON result written by dh-map reads back (to its 6 decimals). */
static void t_report_round_trip(void) {
    dh_map_result r = { .bits = 16,
                        .nq = 3,
                        .ndb = 9,
                        .nq_norel = 1,
                        .have_map = 1,
                        .map = 0.25,
                        .map_tie = 0.5,
                        .have_map_r = 0,
                        .at_r = 5,
                        .radius = 2,
                        .have_prad = 1,
                        .prad = 1.0 / 3,
                        .nk = 2,
                        .ks = { 1, 10 },
                        .have_k = { 1, 0 },
                        .pk = { 0.125, 0 },
                        .rk = { 0.75, 0 },
                        .pr_n = 3 };
    double pp[3] = { 1, 0.5, 0.25 }, pr[3] = { 0.1, 0.2, 1 };
    r.pr_p = pp;
    r.pr_r = pr;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    dh_map_write_json(f, &r, "a \"label\"\n", "a note");
    fclose(f);
    dh_map_result b;
    char *label;
    dh_err e;
    REQUIRE(dh_map_read_json(buf, len, &b, &label, &e) == DH_OK);
    CHECK(!strcmp(label, "a \"label\"\n") && b.bits == 16 && b.nq == 3 && b.ndb == 9 && b.nq_norel == 1);
    CHECK(b.have_map && b.map == 0.25 && b.map_tie == 0.5 && !b.have_map_r && b.at_r == 5 && b.have_prad);
    CHECK_NEAR(b.prad, 1.0 / 3, 1e-6);
    CHECK(b.nk == 2 && b.ks[1] == 10 && b.have_k[0] && !b.have_k[1] && b.pk[0] == 0.125 && b.rk[0] == 0.75);
    CHECK(b.pr_n == 3 && b.pr_p[2] == 0.25 && b.pr_r[0] == 0.1);
    dh_map_result_free(&b);
    free(label);
    /* not a result */
    const char *other = "{\"program\": \"dh-map\", \"pr_curve\": [{\"precision\": 1}], \"precision_at_k\": []}";
    CHECK(dh_map_read_json(other, strlen(other), &b, &label, &e) == DH_EFORMAT && strstr(e.msg, "'recall' is missing"));
    CHECK(dh_map_read_json("[]", 2, &b, &label, &e) == DH_EFORMAT && !label);
    CHECK(dh_map_read_json("{", 1, &b, &label, &e) == DH_EFORMAT && !strncmp(e.msg, "not JSON: line 1", 16));
    free(buf);
}

int main(void) {
    RUN(t_hand_ap);
    RUN(t_hand_ties);
    RUN(t_hand_ties_k);
    RUN(t_tie_aware_all_orders);
    RUN(t_tie_aware_class_sorted);
    RUN(t_empty_relevant);
    RUN(t_fast_vs_reference_lengths);
    RUN(t_many_ties);
    RUN(t_one_item_db);
    RUN(t_tie_aware_monte_carlo);
    RUN(t_list_errors);
    RUN(t_lists_cut_rule);
    RUN(t_codes_dispatch);
    RUN(t_json);
    RUN(t_report_round_trip);
    return check_done();
}
