/* evalmap.c — retrieval metrics (see evalmap.h). CPU reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "dh_cudaload.h"
#include "evalmap.h"
#include "rank.h"

double *dh_map_harmonic(int64_t n, dh_err *e) {
    double *H = dh_malloc(e, (size_t)n + 1, sizeof *H);
    if (!H) return NULL;
    H[0] = 0;
    for (int64_t i = 1; i <= n; i++) H[i] = H[i - 1] + 1.0 / (double)i;
    return H;
}

int dh_map_acc_init(dh_map_acc *a, int bits, int64_t ndb, const dh_map_opts *o, const double *H, dh_err *e) {
    memset(a, 0, sizeof *a);
    a->bits = bits;
    a->ndb = ndb;
    a->opt = *o;
    a->H = H;
    a->min_len = INT64_MAX;
    a->min_complete = bits;
    if (!H) a->H = a->H_own = dh_map_harmonic(ndb, e);
    a->pr_p = dh_calloc(e, (size_t)bits + 1, sizeof *a->pr_p);
    a->pr_r = dh_calloc(e, (size_t)bits + 1, sizeof *a->pr_r);
    if (!a->H || !a->pr_p || !a->pr_r) {
        dh_map_acc_free(a);
        return DH_ENOMEM;
    }
    return DH_OK;
}

void dh_map_acc_free(dh_map_acc *a) {
    free(a->pr_p);
    free(a->pr_r);
    free(a->H_own);
    a->pr_p = a->pr_r = a->H_own = NULL;
    a->H = NULL;
}

/* The expected sum of precision at the relevant items of a group of n
 * items, m of them relevant, in random order, after Nb items of which Rb
 * are relevant (McSherry & Najork 2008; see evalmap.h). */
static double group_ap(int64_t Nb, int64_t Rb, int64_t n, int64_t m, const double *H) {
    if (m <= 0) return 0.0;
    double beta = n > 1 ? (double)(m - 1) / (double)(n - 1) : 0.0;
    double c = (double)(Rb + 1) - (double)(Nb + 1) * beta;
    return ((double)m / (double)n) * (c * (H[Nb + n] - H[Nb]) + (double)n * beta);
}

/* Expected AP under random order within equal distances, times Rel. */
static double tie_ap_sum(const int64_t *hist, const int64_t *relhist, int bits, const double *H) {
    int64_t Nb = 0, Rb = 0;
    double s = 0;
    for (int d = 0; d <= bits; d++) {
        s += group_ap(Nb, Rb, hist[d], relhist[d], H);
        Nb += hist[d];
        Rb += relhist[d];
    }
    return s;
}

/* The group that holds rank k (1-based) among the distances 0..top whose
 * counts are complete: its distance, or -1 when rank k is beyond them.
 * *Nb, *Rb: items and relevant items before it. */
static int group_of(const int64_t *hist, const int64_t *relhist, int top, int64_t k, int64_t *Nb, int64_t *Rb) {
    *Nb = *Rb = 0;
    for (int d = 0; d <= top; d++) {
        if (*Nb + hist[d] >= k) return d;
        *Nb += hist[d];
        *Rb += relhist[d];
    }
    return -1;
}

/* Expected relevant items in ranks 1..k (k <= N); 0 when unknown. */
static int tie_rel_at(const int64_t *hist, const int64_t *relhist, int top, int64_t k, double *out) {
    int64_t Nb, Rb;
    int g = group_of(hist, relhist, top, k, &Nb, &Rb);
    if (g < 0) return 0;
    *out = (double)Rb + (double)(k - Nb) * (double)relhist[g] / (double)hist[g];
    return 1;
}

/* Expected AP@R (R <= N) under random order among equal distances (see
 * evalmap.h): the groups before the one that holds rank R add their
 * expected sums; in that group X ~ Hypergeometric(n, m, t) relevant items
 * fall among its t ranks in the top R, weighted here by their exact
 * probabilities (log-space recurrence, normalised). 0 when unknown. */
static int tie_apr(const int64_t *hist, const int64_t *relhist, int top, int64_t R, const double *H, double *out) {
    int64_t Nb, Rb;
    int g = group_of(hist, relhist, top, R, &Nb, &Rb);
    if (g < 0) return 0;
    double Sb = 0;
    int64_t N0 = 0, R0 = 0;
    for (int d = 0; d < g; d++) {
        Sb += group_ap(N0, R0, hist[d], relhist[d], H);
        N0 += hist[d];
        R0 += relhist[d];
    }
    int64_t n = hist[g], m = relhist[g], t = R - Nb;
    int64_t x0 = t - (n - m) > 0 ? t - (n - m) : 0, x1 = t < m ? t : m;
    /* log weights: P(x+1)/P(x) = (m-x)(t-x) / ((x+1)(n-m-t+x+1)) */
    double lw = 0, lmax = 0, sw = 0, sv = 0;
    for (int pass = 0; pass < 2; pass++) {
        lw = 0;
        for (int64_t x = x0; x <= x1; x++) {
            if (x > x0) lw += log((double)(m - x + 1) * (double)(t - x + 1) / ((double)x * (double)(n - m - t + x)));
            if (pass == 0) {
                if (x == x0 || lw > lmax) lmax = lw;
                continue;
            }
            double w = exp(lw - lmax);
            int64_t rel = Rb + x;
            sw += w;
            if (rel > 0) sv += w * (Sb + group_ap(Nb, Rb, t, x, H)) / (double)rel;
        }
    }
    *out = sv / sw;
    return 1;
}

void dh_map_acc_add(dh_map_acc *a, const dh_map_qraw *r) {
    const dh_map_opts *o = &a->opt;
    int bits = a->bits;
    a->nq++;
    if (r->len < a->min_len) a->min_len = r->len;
    if (r->complete_upto < a->min_complete) a->min_complete = r->complete_upto;
    int64_t Rel = r->rel_total;
    if (Rel == 0) a->nq_norel++;
    if (Rel > 0) {
        a->ap += r->ap_sum / (double)Rel;
        if (r->complete_upto >= bits && a->H) a->ap_tie += tie_ap_sum(r->hist, r->relhist, bits, a->H) / (double)Rel;
    }
    int top = r->complete_upto < bits ? r->complete_upto : bits;
    if (o->at_r > 0 && r->rel_at_r > 0) a->apr += r->apr_sum / (double)r->rel_at_r;
    double v;
    if (o->at_r > 0 && !a->apr_tie_missing) {
        if (a->H && tie_apr(r->hist, r->relhist, top, o->at_r < a->ndb ? o->at_r : a->ndb, a->H, &v))
            a->apr_tie += v;
        else
            a->apr_tie_missing = 1;
    }
    for (int i = 0; i < o->nk; i++) {
        int64_t den = o->ks[i] < a->ndb ? o->ks[i] : a->ndb;
        if (den > 0) a->pk[i] += (double)r->rel_k[i] / (double)den;
        if (Rel > 0) a->rk[i] += (double)r->rel_k[i] / (double)Rel;
        if (a->k_tie_missing[i] || den <= 0) continue;
        if (!tie_rel_at(r->hist, r->relhist, top, den, &v)) {
            a->k_tie_missing[i] = 1;
            continue;
        }
        a->pk_tie[i] += v / (double)den;
        if (Rel > 0) a->rk_tie[i] += v / (double)Rel;
    }
    int64_t cum = 0, rcum = 0;
    int rad = o->radius < bits ? o->radius : bits;
    for (int d = 0; d <= top; d++) {
        cum += r->hist[d];
        rcum += r->relhist[d];
        double p = cum ? (double)rcum / (double)cum : 0.0;
        if (d == rad) a->prad += p;
        a->pr_p[d] += p;
        a->pr_r[d] += Rel ? (double)rcum / (double)Rel : 0.0;
    }
}

int dh_map_acc_result(const dh_map_acc *a, dh_map_result *res, dh_err *e) {
    memset(res, 0, sizeof *res);
    const dh_map_opts *o = &a->opt;
    double nq = a->nq ? (double)a->nq : 1.0;
    int complete = a->min_complete >= a->bits;
    res->bits = a->bits;
    res->nq = a->nq;
    res->ndb = a->ndb;
    res->nq_norel = a->nq_norel;
    res->have_map = complete && a->nq > 0;
    res->map = a->ap / nq;
    res->map_tie = a->ap_tie / nq;
    res->at_r = o->at_r;
    int64_t rcut = o->at_r < a->ndb ? o->at_r : a->ndb;
    res->have_map_r = o->at_r > 0 && a->nq > 0 && (complete || a->min_len >= rcut);
    res->map_r = a->apr / nq;
    res->have_map_r_tie = o->at_r > 0 && a->nq > 0 && !a->apr_tie_missing;
    res->map_r_tie = a->apr_tie / nq;
    res->radius = o->radius;
    res->have_prad = a->nq > 0 && o->radius >= 0 && a->min_complete >= (o->radius < a->bits ? o->radius : a->bits);
    res->prad = a->prad / nq;
    res->nk = o->nk;
    for (int i = 0; i < o->nk; i++) {
        int64_t kc = o->ks[i] < a->ndb ? o->ks[i] : a->ndb;
        res->ks[i] = o->ks[i];
        res->have_k[i] = a->nq > 0 && (complete || a->min_len >= kc);
        res->pk[i] = a->pk[i] / nq;
        res->rk[i] = a->rk[i] / nq;
        res->have_k_tie[i] = a->nq > 0 && !a->k_tie_missing[i];
        res->pk_tie[i] = a->pk_tie[i] / nq;
        res->rk_tie[i] = a->rk_tie[i] / nq;
    }
    res->pr_n = a->nq > 0 ? (a->min_complete < a->bits ? a->min_complete : a->bits) + 1 : 0;
    if (res->pr_n < 0) res->pr_n = 0;
    res->pr_p = dh_calloc(e, (size_t)res->pr_n + 1, sizeof *res->pr_p);
    res->pr_r = dh_calloc(e, (size_t)res->pr_n + 1, sizeof *res->pr_r);
    if (!res->pr_p || !res->pr_r) {
        dh_map_result_free(res);
        return DH_ENOMEM;
    }
    for (int d = 0; d < res->pr_n; d++) {
        res->pr_p[d] = a->pr_p[d] / nq;
        res->pr_r[d] = a->pr_r[d] / nq;
    }
    return DH_OK;
}

void dh_map_result_free(dh_map_result *r) {
    free(r->pr_p);
    free(r->pr_r);
    r->pr_p = r->pr_r = NULL;
}

int dh_map_list(const int64_t *idx, const int32_t *dist, int64_t n, int32_t ql, const int32_t *dl, int64_t ndb,
                int bits, int64_t rel_total, int complete_upto, const dh_map_opts *o, dh_map_qraw *raw, dh_err *e) {
    int64_t *hist = raw->hist, *relhist = raw->relhist;
    memset(raw, 0, sizeof *raw);
    raw->hist = hist;
    raw->relhist = relhist;
    memset(hist, 0, ((size_t)bits + 1) * sizeof *hist);
    memset(relhist, 0, ((size_t)bits + 1) * sizeof *relhist);
    raw->rel_total = rel_total;
    raw->len = n;
    raw->complete_upto = complete_upto;
    int64_t relc = 0;
    int prev = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t j = idx[i];
        int d = dist[i];
        if (j < 0 || j >= ndb)
            return dh_seterr(e, DH_EFORMAT, "database row %lld out of range (database has %lld rows)", (long long)j,
                             (long long)ndb);
        if (d < 0 || d > bits) return dh_seterr(e, DH_EFORMAT, "distance %d outside 0..%d", d, bits);
        if (d < prev) return dh_seterr(e, DH_EFORMAT, "ranking not ordered by distance (%d after %d)", d, prev);
        prev = d;
        int rel = dl[j] == ql;
        hist[d]++;
        if (!rel) continue;
        relhist[d]++;
        relc++;
        double term = (double)relc / (double)(i + 1);
        raw->ap_sum += term;
        if (i < o->at_r) {
            raw->apr_sum += term;
            raw->rel_at_r++;
        }
        for (int k = 0; k < o->nk; k++)
            if (i < o->ks[k]) raw->rel_k[k]++;
    }
    if (relc > rel_total) return dh_seterr(e, DH_EFORMAT, "ranking lists a database row twice");
    return DH_OK;
}

/* ---- fast path ----------------------------------------------------------------- */

typedef struct map_job {
    const uint64_t *q, *db;
    const int32_t *ql, *dl;
    int64_t ndb;
    int bits, W;
    const dh_map_opts *o;
    dh_map_qraw *raw; // (block) results of the current block
    int64_t b0;       // first query of the block
    int oom;
} map_job;

/* One query: distances, per-distance counters, relevant items as (d, s). */
static void map_one(const map_job *jb, int64_t qi, dh_map_qraw *raw, uint32_t *cnt, uint16_t *rd, uint32_t *rs,
                    int64_t *start, int64_t *rstart, uint32_t *rcur) {
    const uint64_t *db = jb->db, *qw = jb->q + qi * jb->W;
    const int32_t *dl = jb->dl;
    int32_t ql = jb->ql[qi];
    int64_t ndb = jb->ndb, nr = 0;
    int bits = jb->bits, W = jb->W;
    const dh_map_opts *o = jb->o;
    memset(cnt, 0, ((size_t)bits + 1) * sizeof *cnt);
#define MAP_LOOP(DIST)                                                                                                 \
    for (int64_t j = 0; j < ndb; j++) {                                                                                \
        int d_ = (DIST);                                                                                               \
        uint32_t s_ = cnt[d_]++;                                                                                       \
        rd[nr] = (uint16_t)d_;                                                                                         \
        rs[nr] = s_;                                                                                                   \
        nr += (dl[j] == ql);                                                                                           \
    }
    if (W == 1) {
        uint64_t a = qw[0];
        MAP_LOOP(__builtin_popcountll(a ^ db[j]))
    } else if (W == 2) {
        uint64_t a = qw[0], b = qw[1];
        MAP_LOOP(__builtin_popcountll(a ^ db[2 * j]) + __builtin_popcountll(b ^ db[2 * j + 1]))
    } else {
        MAP_LOOP(dh_ham_dist(qw, db + j * W, W))
    }
#undef MAP_LOOP
    int64_t *hist = raw->hist, *relhist = raw->relhist;
    memset(raw, 0, sizeof *raw);
    raw->hist = hist;
    raw->relhist = relhist;
    raw->rel_total = nr;
    raw->len = ndb;
    raw->complete_upto = bits;
    memset(relhist, 0, ((size_t)bits + 1) * sizeof *relhist);
    for (int64_t i = 0; i < nr; i++) relhist[rd[i]]++;
    int64_t s0 = 0, r0 = 0;
    for (int d = 0; d <= bits; d++) {
        hist[d] = cnt[d];
        start[d] = s0;
        rstart[d] = r0;
        rcur[d] = 0;
        s0 += cnt[d];
        r0 += relhist[d];
    }
    double ap = 0, apr = 0;
    int64_t relr = 0;
    for (int64_t i = 0; i < nr; i++) {
        int d = rd[i];
        int64_t pos = start[d] + rs[i];         /* 0-based rank */
        int64_t before = rstart[d] + rcur[d]++; /* relevant ranked before it */
        double term = (double)(before + 1) / (double)(pos + 1);
        ap += term;
        if (pos < o->at_r) {
            apr += term;
            relr++;
        }
        for (int k = 0; k < o->nk; k++) raw->rel_k[k] += pos < o->ks[k];
    }
    raw->ap_sum = ap;
    raw->apr_sum = apr;
    raw->rel_at_r = relr;
}

static void map_worker(void *ctx, int64_t i0, int64_t i1, int tid) {
    map_job *jb = ctx;
    int nb = jb->bits + 1;
    uint32_t *cnt = malloc((size_t)nb * sizeof *cnt);
    uint32_t *rcur = malloc((size_t)nb * sizeof *rcur);
    int64_t *start = malloc((size_t)nb * sizeof *start);
    int64_t *rstart = malloc((size_t)nb * sizeof *rstart);
    uint16_t *rd = malloc((size_t)jb->ndb * sizeof *rd);
    uint32_t *rs = malloc((size_t)jb->ndb * sizeof *rs);
    if (!cnt || !rcur || !start || !rstart || !rd || !rs)
        __atomic_store_n(&jb->oom, 1, __ATOMIC_RELAXED);
    else
        for (int64_t i = i0; i < i1; i++) map_one(jb, jb->b0 + i, &jb->raw[i], cnt, rd, rs, start, rstart, rcur);
    free(cnt);
    free(rcur);
    free(start);
    free(rstart);
    free(rd);
    free(rs);
    (void)tid;
}

int dh_map_cpu(const uint64_t *q, const int32_t *ql, int64_t nq, const uint64_t *db, const int32_t *dl, int64_t ndb,
               int bits, int nthreads, dh_map_acc *acc, dh_err *e) {
    if (bits < 1 || bits > DH_HAMMING_MAX_BITS)
        return dh_seterr(e, DH_EINVAL, "code length %d outside 1..%d", bits, DH_HAMMING_MAX_BITS);
    if (ndb < 1 || ndb > (int64_t)UINT32_MAX)
        return dh_seterr(e, DH_EINVAL, "database of %lld rows: need 1..%lu", (long long)ndb, (unsigned long)UINT32_MAX);
    /* a padding bit would give a distance above bits: out of every per-distance array */
    if (dh_ham_check_padding(q, nq, bits, "queries", e) || dh_ham_check_padding(db, ndb, bits, "database", e))
        return DH_EINVAL;
    const int64_t QB = 1024;
    int nb = bits + 1;
    map_job jb = {
        .q = q, .db = db, .ql = ql, .dl = dl, .ndb = ndb, .bits = bits, .W = dh_ham_words(bits), .o = &acc->opt
    };
    jb.raw = dh_calloc(e, (size_t)QB, sizeof *jb.raw);
    int64_t *hbuf = dh_malloc(e, (size_t)QB * 2 * nb, sizeof *hbuf);
    if (!jb.raw || !hbuf) {
        free(jb.raw);
        free(hbuf);
        return DH_ENOMEM;
    }
    for (int64_t i = 0; i < QB; i++) {
        jb.raw[i].hist = hbuf + i * 2 * nb;
        jb.raw[i].relhist = hbuf + i * 2 * nb + nb;
    }
    if (nthreads < 1) nthreads = 1;
    for (int64_t b0 = 0; b0 < nq && !jb.oom; b0 += QB) {
        int64_t n = nq - b0 < QB ? nq - b0 : QB;
        jb.b0 = b0;
        dh_rank_parallel(nthreads, n, map_worker, &jb);
        if (jb.oom) break;
        for (int64_t i = 0; i < n; i++) dh_map_acc_add(acc, &jb.raw[i]);
    }
    free(jb.raw);
    free(hbuf);
    if (jb.oom) return dh_seterr(e, DH_ENOMEM, "out of memory evaluating %lld queries", (long long)nq);
    return DH_OK;
}

/* ---- the fast path dispatched by device ---------------------------------------------------------------- */

int dh_map_codes(const dh_codeset *q, const dh_codeset *db, dh_map_run *run, dh_map_acc *acc, dh_err *e) {
    int rc = DH_EUNSUPPORTED;
    run->used = "cpu";
    run->seconds = 0;
    if (run->dev == DH_SEARCH_CUDA || (run->dev == DH_SEARCH_AUTO && dh_rank_cuda_available())) {
        run->used = "cuda";
        rc = dh_map_cuda(q->w, q->label, q->n, db->w, db->label, db->n, db->bits, acc, &run->seconds, e);
        if (rc == DH_EUNSUPPORTED && run->dev == DH_SEARCH_CUDA) {
            if (e) e->code = DH_EDEVICE; /* asked for CUDA: not a data error */
            return DH_EDEVICE;
        }
        if (rc != DH_EUNSUPPORTED) return rc; /* else codes too long for the kernels: the CPU */
    }
    /* in slices, for the progress line; results do not depend on the slicing */
    run->used = "cpu";
    double t0 = dh_now();
    const int64_t slice = 4096;
    rc = DH_OK;
    for (int64_t i0 = 0; i0 < q->n && rc == DH_OK; i0 += slice) {
        int64_t n = q->n - i0 < slice ? q->n - i0 : slice;
        rc = dh_map_cpu(q->w + i0 * q->W, q->label + i0, n, db->w, db->label, db->n, db->bits, run->nthreads, acc, e);
        if (run->progress) run->progress(run->ctx, i0 + n);
    }
    run->seconds = dh_now() - t0;
    return rc;
}

/* ---- ranked lists ------------------------------------------------------------------------------------ */

int dh_map_complete_upto(const int32_t *dist, int64_t n, int64_t ndb, int64_t top, int radius, int bits) {
    int64_t topn = top < 0 ? ndb : top;
    int cu;
    if (n >= ndb)
        cu = bits; /* the whole database */
    else if (n < topn)
        cu = radius >= 0 ? radius : bits; /* cut by the radius only */
    else
        cu = n > 0 ? dist[n - 1] - 1 : -1; /* cut at top R: the last distance may be partial */
    return cu > bits ? bits : cu;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* number of entries equal to v in sorted array a[0..n) */
static int64_t count_eq(const int32_t *a, int64_t n, int32_t v) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t m = (lo + hi) / 2;
        if (a[m] < v)
            lo = m + 1;
        else
            hi = m;
    }
    int64_t s = lo;
    hi = n;
    while (lo < hi) {
        int64_t m = (lo + hi) / 2;
        if (a[m] <= v)
            lo = m + 1;
        else
            hi = m;
    }
    return lo - s;
}

int dh_map_lists_init(dh_map_lists *l, const int32_t *dl, int64_t ndb, int bits, int64_t top, int radius, dh_err *e) {
    memset(l, 0, sizeof *l);
    l->bits = bits;
    l->ndb = ndb;
    l->top = top;
    l->radius = radius;
    l->dl = dl;
    l->sorted = dh_malloc(e, (size_t)(ndb ? ndb : 1), sizeof *l->sorted);
    l->hist = dh_malloc(e, (size_t)bits + 1, sizeof *l->hist);
    l->relhist = dh_malloc(e, (size_t)bits + 1, sizeof *l->relhist);
    if (!l->sorted || !l->hist || !l->relhist) {
        dh_map_lists_free(l);
        return DH_ENOMEM;
    }
    memcpy(l->sorted, dl, (size_t)ndb * sizeof *l->sorted);
    qsort(l->sorted, (size_t)ndb, sizeof *l->sorted, cmp_i32);
    return DH_OK;
}

int dh_map_lists_add(dh_map_lists *l, dh_map_acc *acc, int32_t ql, const int64_t *idx, const int32_t *dist, int64_t n,
                     dh_err *e) {
    if (n > l->ndb)
        return dh_seterr(e, DH_EFORMAT, "%lld rows ranked, the database has %lld", (long long)n, (long long)l->ndb);
    if (ql == DH_NO_LABEL || ql == INT32_MIN) /* INT32_MIN: dh-rank's queries without a label field */
        return dh_seterr(e, DH_EFORMAT, "the query is unlabelled (label %d): relevance needs labelled queries", ql);
    int cu = dh_map_complete_upto(dist, n, l->ndb, l->top, l->radius, l->bits);
    dh_map_qraw raw = { .hist = l->hist, .relhist = l->relhist };
    int rc =
        dh_map_list(idx, dist, n, ql, l->dl, l->ndb, l->bits, count_eq(l->sorted, l->ndb, ql), cu, &acc->opt, &raw, e);
    if (rc == DH_OK) dh_map_acc_add(acc, &raw);
    return rc;
}

const char *dh_map_lists_note(const dh_map_lists *l) {
    if (l->top >= 0 && l->top < l->ndb)
        return "rankings cut at --top: whole-ranking metrics need 'dh-rank --top all' or the fast path";
    if (l->radius >= 0 && l->radius < l->bits)
        return "rankings cut at --radius: whole-ranking metrics need 'dh-rank --top all' or the fast path";
    return NULL;
}

void dh_map_lists_free(dh_map_lists *l) {
    free(l->sorted);
    free(l->hist);
    free(l->relhist);
    l->sorted = NULL;
    l->hist = l->relhist = NULL;
}

/* ---- CUDA: the C side of evalmap_kernels.cu (libdhcuda.so, dh_cudaload.h) ------------------------ */

int dh_map_cuda(const uint64_t *q, const int32_t *ql, int64_t nq, const uint64_t *db, const int32_t *dl, int64_t ndb,
                int bits, dh_map_acc *acc, double *gpu_seconds, dh_err *e) {
    *gpu_seconds = 0;
    if (bits < 1 || bits > DH_MAP_CUDA_MAX_BITS)
        return dh_seterr(e, DH_EUNSUPPORTED, "the CUDA evaluation handles codes of 1..%d bits", DH_MAP_CUDA_MAX_BITS);
    if (ndb < 1 || ndb > INT32_MAX) return dh_seterr(e, DH_EINVAL, "database of %lld rows for CUDA", (long long)ndb);
    if (nq < 0) return dh_seterr(e, DH_EINVAL, "negative row count");
    int rc = dh_ham_check_padding(q, nq, bits, "queries", e);
    if (!rc) rc = dh_ham_check_padding(db, ndb, bits, "database", e);
    if (!rc) rc = dh_cuda_load(e);
    if (!rc) rc = DH_CUDA_CALL(dhcu_search_probe, e, e);
    if (rc) return rc;
    const int W = dh_ham_words(bits), nb = bits + 1;
    const int64_t nqb = nq < 8192 ? (nq > 0 ? nq : 1) : 8192;
    int32_t *hh = dh_malloc(e, (size_t)nqb * nb, sizeof *hh), *hr = dh_malloc(e, (size_t)nqb * nb, sizeof *hr);
    double *ap = dh_malloc(e, (size_t)nqb, sizeof *ap), *apr = dh_malloc(e, (size_t)nqb, sizeof *apr);
    uint64_t *relr = dh_malloc(e, (size_t)nqb, sizeof *relr);
    uint64_t *relk = dh_malloc(e, (size_t)nqb * DH_MAP_MAX_K, sizeof *relk);
    int64_t *h64 = dh_malloc(e, (size_t)nb, sizeof *h64), *r64 = dh_malloc(e, (size_t)nb, sizeof *r64);
    void *h = NULL;
    rc = hh && hr && ap && apr && relr && relk && h64 && r64 ? DH_OK : DH_ENOMEM;
    if (!rc) rc = DH_CUDA_CALL(dhcu_map_open, e, &h, db, dl, ndb, bits, nqb, e);
    for (int64_t b0 = 0; b0 < nq && rc == DH_OK; b0 += nqb) {
        int64_t n = nq - b0 < nqb ? nq - b0 : nqb;
        double s = 0;
        rc = DH_CUDA_CALL(dhcu_map_run, e, h, q + b0 * W, ql + b0, n, &acc->opt, hh, hr, ap, apr, relr, relk, &s, e);
        *gpu_seconds += s;
        for (int64_t i = 0; i < n && rc == DH_OK; i++) {
            dh_map_qraw raw = { .hist = h64, .relhist = r64, .len = ndb, .complete_upto = bits };
            for (int d = 0; d < nb; d++) {
                h64[d] = hh[i * nb + d];
                r64[d] = hr[i * nb + d];
                raw.rel_total += r64[d];
            }
            raw.ap_sum = ap[i];
            raw.apr_sum = apr[i];
            raw.rel_at_r = (int64_t)relr[i];
            for (int k = 0; k < acc->opt.nk; k++) raw.rel_k[k] = (int64_t)relk[i * DH_MAP_MAX_K + k];
            dh_map_acc_add(acc, &raw);
        }
    }
    if (h) DH_CUDA_CALL_IF_LOADED(dhcu_map_close, h);
    free(hh);
    free(hr);
    free(ap);
    free(apr);
    free(relr);
    free(relk);
    free(h64);
    free(r64);
    return rc;
}
