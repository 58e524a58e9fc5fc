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

int main(void) {
    RUN(t_hand_ap);
    RUN(t_hand_ties);
    RUN(t_empty_relevant);
    RUN(t_fast_vs_reference_lengths);
    RUN(t_many_ties);
    RUN(t_one_item_db);
    RUN(t_tie_aware_monte_carlo);
    RUN(t_list_errors);
    return check_done();
}
