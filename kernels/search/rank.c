/* rank.c — CPU Hamming ranking (see rank.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dh_cudaload.h"
#include "rank.h"

void dh_rank_result_free(dh_rank_result *r) {
    if (!r) return;
    free(r->off);
    free(r->idx);
    free(r->dist);
    memset(r, 0, sizeof *r);
}

int dh_rank_default_threads(int *threads, dh_err *e) {
    const char *s = getenv("DH_THREADS");
    int n = 0;
    if (s) {
        if (dh_parse_int(s, 1, 1024, &n) != 0)
            return dh_seterr(e, DH_EINVAL, "DH_THREADS='%s': expected a number of threads from 1 to 1024", s);
        *threads = n > 256 ? 256 : n;
        return 0;
    }
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    *threads = c < 1 ? 1 : (c > 256 ? 256 : (int)c);
    return 0;
}

typedef struct par_arg {
    void (*fn)(void *, int64_t, int64_t, int);
    void *ctx;
    int64_t i0, i1;
    int tid;
} par_arg;

static void *par_main(void *p) {
    par_arg *a = p;
    a->fn(a->ctx, a->i0, a->i1, a->tid);
    return NULL;
}

int dh_rank_parallel(int nthreads, int64_t n, void (*fn)(void *ctx, int64_t i0, int64_t i1, int tid), void *ctx) {
    if (n <= 0) return 0;
    if (nthreads > n) nthreads = (int)n;
    if (nthreads <= 1) {
        fn(ctx, 0, n, 0);
        return 0;
    }
    pthread_t th[256];
    par_arg arg[256];
    if (nthreads > 256) nthreads = 256;
    int started = 0, rc = 0;
    for (int t = 0; t < nthreads; t++) {
        arg[t].fn = fn;
        arg[t].ctx = ctx;
        arg[t].tid = t;
        arg[t].i0 = n * t / nthreads;
        arg[t].i1 = n * (t + 1) / nthreads;
    }
    /* thread 0's range runs in the calling thread */
    for (int t = 1; t < nthreads; t++) {
        if (pthread_create(&th[t], NULL, par_main, &arg[t]) != 0) {
            rc = -1;
            break;
        }
        started = t;
    }
    fn(ctx, arg[0].i0, arg[0].i1, 0);
    for (int t = 1; t <= started; t++) pthread_join(th[t], NULL);
    for (int t = started + 1; t < nthreads; t++) fn(ctx, arg[t].i0, arg[t].i1, t);
    return rc;
}

/* ---- per-query streaming selection ----------------------------------------- */

typedef struct qsel {
    int64_t *cnt; // (bits+1) accepted rows per distance
    int bound;    // a row is accepted iff its distance < bound
    int64_t inb;  // accepted rows with distance < bound
    int64_t n, cap;
    int64_t *idx; // (cap) candidates in database order
    uint16_t *d;  // (cap)
    int oom;
} qsel;

typedef struct rank_job {
    const uint64_t *q, *db;
    int64_t nq, ndb;
    int bits, W;
    int64_t R; // rows wanted per query, 1..ndb
    int maxd;  // largest distance accepted (radius or bits)
    int64_t cap0;
    int qb;         // queries per block
    int64_t tile;   // database rows per tile
    int simd;       // use the AVX-512 tile loop
    int64_t *res_n; // (nq)
    int64_t **res_idx;
    uint16_t **res_d;
    int oom;
    pthread_mutex_t mu;
} rank_job;

/* Keep what can still be in the top R: rows below the bound, then the first
 * R - inb rows at the bound. */
static void qsel_compact(qsel *s, int64_t R) {
    int64_t keep_at = R - s->inb, m = 0;
    for (int64_t i = 0; i < s->n; i++) {
        int d = s->d[i];
        if (d < s->bound || (d == s->bound && keep_at-- > 0)) {
            s->idx[m] = s->idx[i];
            s->d[m] = s->d[i];
            m++;
        }
    }
    s->n = m;
}

static int qsel_grow(qsel *s, int64_t maxcap) {
    int64_t nc = s->cap * 2;
    if (nc > maxcap) nc = maxcap;
    if (nc <= s->cap) nc = s->cap + 1;
    int64_t *ni = realloc(s->idx, (size_t)nc * sizeof *ni);
    if (!ni) return -1;
    s->idx = ni;
    uint16_t *nd = realloc(s->d, (size_t)nc * sizeof *nd);
    if (!nd) return -1;
    s->d = nd;
    s->cap = nc;
    return 0;
}

static inline void qsel_accept(qsel *s, int64_t j, int d, int64_t R, int64_t ndb) {
    if (s->n == s->cap) {
        if (R < ndb && s->n > R) qsel_compact(s, R);
        if (s->n == s->cap && qsel_grow(s, ndb) != 0) {
            s->oom = 1;
            return;
        }
    }
    s->idx[s->n] = j;
    s->d[s->n] = (uint16_t)d;
    s->n++;
    s->cnt[d]++;
    s->inb++;
    while (s->inb >= R) {
        s->bound--;
        s->inb -= s->cnt[s->bound];
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define RANK_HAVE_AVX512 1
/* Codes of at most 64 bits, 8 database rows at a time with AVX-512
 * VPOPCNTQ; rows under the bound are accepted one by one in database
 * order (the bound is re-read, it may shrink within the 8). */
__attribute__((target("avx512f,avx512vpopcntdq"))) static void
rank_tile_w1_avx512(qsel *s, uint64_t a, const uint64_t *db, int64_t j0, int64_t j1, int64_t R, int64_t ndb) {
    __m512i qa = _mm512_set1_epi64((long long)a);
    int64_t j = j0;
    for (; j + 8 <= j1; j += 8) {
        __m512i d = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512((const void *)(db + j)), qa));
        __mmask8 m = _mm512_cmplt_epi64_mask(d, _mm512_set1_epi64(s->bound));
        if (m) {
            int64_t dd[8];
            _mm512_storeu_si512((void *)dd, d);
            while (m) {
                int k = __builtin_ctz(m);
                m &= (__mmask8)(m - 1);
                if (dd[k] < s->bound) qsel_accept(s, j + k, (int)dd[k], R, ndb);
            }
        }
    }
    for (; j < j1; j++) {
        int d = __builtin_popcountll(a ^ db[j]);
        if (d < s->bound) qsel_accept(s, j, d, R, ndb);
    }
}
#endif

/* AVX-512 VPOPCNTQ when the processor has it, unless DH_NO_SIMD is set. */
static int rank_use_avx512(void) {
#ifdef RANK_HAVE_AVX512
    const char *v = getenv("DH_NO_SIMD");
    if (v && *v && strcmp(v, "0") != 0) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
#else
    return 0;
#endif
}

/* One tile of the database against one query, distance computation
 * specialised on the word count so the inner loop stays tight. */
#define TILE_LOOP(DIST)                                                                                                \
    for (int64_t j = j0; j < j1; j++) {                                                                                \
        int d_ = (DIST);                                                                                               \
        if (d_ < s->bound) qsel_accept(s, j, d_, R, ndb);                                                              \
    }

static void rank_tile(const rank_job *jb, qsel *s, const uint64_t *qw, int64_t j0, int64_t j1) {
    const uint64_t *db = jb->db;
    int64_t R = jb->R, ndb = jb->ndb;
    int W = jb->W;
#ifdef RANK_HAVE_AVX512
    if (W == 1 && jb->simd) {
        rank_tile_w1_avx512(s, qw[0], db, j0, j1, R, ndb);
        return;
    }
#endif
    if (W == 1) {
        uint64_t a = qw[0];
        TILE_LOOP(__builtin_popcountll(a ^ db[j]))
    } else if (W == 2) {
        uint64_t a = qw[0], b = qw[1];
        TILE_LOOP(__builtin_popcountll(a ^ db[2 * j]) + __builtin_popcountll(b ^ db[2 * j + 1]))
    } else {
        TILE_LOOP(dh_ham_dist(qw, db + j * W, W))
    }
}

/* Stable counting sort of the candidates by distance; first min(R, n) go
 * to the result. */
static int qsel_finish(const rank_job *jb, qsel *s, int64_t qi) {
    int nb = jb->bits + 1;
    int64_t *pos = calloc((size_t)nb + 1, sizeof *pos);
    if (!pos) return -1;
    for (int64_t i = 0; i < s->n; i++) pos[s->d[i] + 1]++;
    for (int b = 0; b < nb; b++) pos[b + 1] += pos[b];
    int64_t m = s->n < jb->R ? s->n : jb->R;
    int64_t *oi = malloc((size_t)(m ? m : 1) * sizeof *oi);
    uint16_t *od = malloc((size_t)(m ? m : 1) * sizeof *od);
    if (!oi || !od) {
        free(pos);
        free(oi);
        free(od);
        return -1;
    }
    for (int64_t i = 0; i < s->n; i++) {
        int64_t p = pos[s->d[i]]++;
        if (p < m) {
            oi[p] = s->idx[i];
            od[p] = s->d[i];
        }
    }
    free(pos);
    jb->res_n[qi] = m;
    jb->res_idx[qi] = oi;
    jb->res_d[qi] = od;
    return 0;
}

static void rank_worker(void *ctx, int64_t q0, int64_t q1, int tid) {
    rank_job *jb = ctx;
    int qb = jb->qb, nb = jb->bits + 1;
    qsel *st = calloc((size_t)qb, sizeof *st);
    int oom = !st;
    for (int i = 0; !oom && i < qb; i++) {
        st[i].cnt = malloc((size_t)nb * sizeof(int64_t));
        st[i].idx = malloc((size_t)jb->cap0 * sizeof(int64_t));
        st[i].d = malloc((size_t)jb->cap0 * sizeof(uint16_t));
        if (!st[i].cnt || !st[i].idx || !st[i].d) oom = 1;
    }
    for (int64_t b0 = q0; !oom && b0 < q1; b0 += qb) {
        int64_t b1 = b0 + qb < q1 ? b0 + qb : q1;
        for (int64_t qi = b0; qi < b1; qi++) {
            qsel *s = &st[qi - b0];
            memset(s->cnt, 0, (size_t)nb * sizeof(int64_t));
            s->bound = jb->maxd + 1;
            s->inb = 0;
            s->n = 0;
            s->oom = 0;
            if (s->cap < jb->cap0) s->cap = jb->cap0;
        }
        for (int64_t j0 = 0; j0 < jb->ndb; j0 += jb->tile) {
            int64_t j1 = j0 + jb->tile < jb->ndb ? j0 + jb->tile : jb->ndb;
            for (int64_t qi = b0; qi < b1; qi++) rank_tile(jb, &st[qi - b0], jb->q + qi * jb->W, j0, j1);
        }
        for (int64_t qi = b0; qi < b1; qi++) {
            if (st[qi - b0].oom || qsel_finish(jb, &st[qi - b0], qi) != 0) {
                oom = 1;
                break;
            }
        }
    }
    if (st) {
        for (int i = 0; i < qb; i++) {
            free(st[i].cnt);
            free(st[i].idx);
            free(st[i].d);
        }
        free(st);
    }
    if (oom) {
        pthread_mutex_lock(&jb->mu);
        jb->oom = 1;
        pthread_mutex_unlock(&jb->mu);
    }
    (void)tid;
}

int dh_rank_cpu(const uint64_t *q, int64_t nq, const uint64_t *db, int64_t ndb, int bits, int64_t top, int radius,
                int nthreads, dh_rank_result *out, dh_err *e) {
    memset(out, 0, sizeof *out);
    if (bits < 1 || bits > DH_HAMMING_MAX_BITS)
        return dh_seterr(e, DH_EINVAL, "code length %d outside 1..%d", bits, DH_HAMMING_MAX_BITS);
    if (top < 1) return dh_seterr(e, DH_EINVAL, "top must be at least 1");
    if (nq < 0 || ndb < 0) return dh_seterr(e, DH_EINVAL, "negative row count");
    /* a padding bit would give a distance above bits: out of every per-distance array */
    if (dh_ham_check_padding(q, nq, bits, "queries", e) || dh_ham_check_padding(db, ndb, bits, "database", e))
        return DH_EINVAL;
    rank_job jb;
    memset(&jb, 0, sizeof jb);
    jb.q = q;
    jb.db = db;
    jb.nq = nq;
    jb.ndb = ndb;
    jb.bits = bits;
    jb.W = dh_ham_words(bits);
    jb.R = top < ndb ? top : ndb;
    jb.maxd = (radius >= 0 && radius < bits) ? radius : bits;
    out->nq = nq;
    out->off = dh_calloc(e, (size_t)nq + 1, sizeof *out->off);
    if (!out->off) return DH_ENOMEM;
    if (ndb == 0 || nq == 0) {
        out->idx = dh_malloc(e, 1, sizeof *out->idx);
        out->dist = dh_malloc(e, 1, sizeof *out->dist);
        if (!out->idx || !out->dist) {
            dh_rank_result_free(out);
            return DH_ENOMEM;
        }
        return DH_OK;
    }
    if (jb.R < ndb)
        jb.cap0 = 2 * jb.R < ndb ? 2 * jb.R : ndb;
    else
        jb.cap0 = ndb < 4096 ? ndb : 4096;
    /* queries per block: their candidate buffers should stay around 8 MiB */
    int64_t qb = (8 << 20) / (jb.cap0 * 10 + 1);
    jb.qb = (int)(qb < 1 ? 1 : (qb > 16 ? 16 : qb));
    jb.simd = rank_use_avx512();
    jb.tile = 32768 / (8 * jb.W);
    if (jb.tile < 64) jb.tile = 64;
    jb.res_n = dh_calloc(e, (size_t)nq, sizeof *jb.res_n);
    jb.res_idx = dh_calloc(e, (size_t)nq, sizeof *jb.res_idx);
    jb.res_d = dh_calloc(e, (size_t)nq, sizeof *jb.res_d);
    int rc = DH_OK;
    if (!jb.res_n || !jb.res_idx || !jb.res_d) {
        rc = DH_ENOMEM;
        goto done;
    }
    pthread_mutex_init(&jb.mu, NULL);
    if (nthreads < 1) nthreads = 1;
    dh_rank_parallel(nthreads, nq, rank_worker, &jb);
    pthread_mutex_destroy(&jb.mu);
    if (jb.oom) {
        rc = dh_seterr(e, DH_ENOMEM, "out of memory ranking %lld queries", (long long)nq);
        goto done;
    }
    for (int64_t i = 0; i < nq; i++) out->off[i + 1] = out->off[i] + jb.res_n[i];
    int64_t tot = out->off[nq];
    out->idx = dh_malloc(e, (size_t)(tot ? tot : 1), sizeof *out->idx);
    out->dist = dh_malloc(e, (size_t)(tot ? tot : 1), sizeof *out->dist);
    if (!out->idx || !out->dist) {
        rc = DH_ENOMEM;
        goto done;
    }
    for (int64_t i = 0; i < nq; i++) {
        int64_t o = out->off[i];
        memcpy(out->idx + o, jb.res_idx[i], (size_t)jb.res_n[i] * sizeof(int64_t));
        for (int64_t k = 0; k < jb.res_n[i]; k++) out->dist[o + k] = jb.res_d[i][k];
    }
done:
    if (jb.res_idx)
        for (int64_t i = 0; i < nq; i++) free(jb.res_idx[i]);
    if (jb.res_d)
        for (int64_t i = 0; i < nq; i++) free(jb.res_d[i]);
    free(jb.res_n);
    free(jb.res_idx);
    free(jb.res_d);
    if (rc != DH_OK) dh_rank_result_free(out);
    return rc;
}

int dh_search_dev_parse(const char *s, dh_search_dev *dev, dh_err *e) {
    if (!s || !strcmp(s, "auto"))
        *dev = DH_SEARCH_AUTO;
    else if (!strcmp(s, "cuda"))
        *dev = DH_SEARCH_CUDA;
    else if (!strcmp(s, "cpu"))
        *dev = DH_SEARCH_CPU;
    else
        return dh_seterr(e, DH_EINVAL, "'%s' is not cpu, cuda or auto", s);
    return DH_OK;
}

/* ---- ranking dispatched by device --------------------------------------------- */

struct dh_ranker {
    const uint64_t *db;
    int64_t ndb;
    int bits, nthreads;
    dh_rank_cuda *cuda; /* NULL: the CPU */
};

int dh_ranker_open(dh_ranker **out, const uint64_t *db, int64_t ndb, int bits, dh_search_dev dev, int nthreads,
                   dh_err *e) {
    *out = NULL;
    dh_ranker *r = dh_calloc(e, 1, sizeof *r);
    if (!r) return DH_ENOMEM;
    r->db = db;
    r->ndb = ndb;
    r->bits = bits;
    r->nthreads = nthreads;
    if (dev == DH_SEARCH_CUDA || (dev == DH_SEARCH_AUTO && dh_rank_cuda_available())) {
        int rc = dh_rank_cuda_open(&r->cuda, db, ndb, bits, NULL, e);
        if (rc != DH_OK && dev == DH_SEARCH_CUDA) {
            if (rc == DH_EUNSUPPORTED) { /* asked for CUDA: not a data error */
                rc = DH_EDEVICE;
                if (e) e->code = rc;
            }
            free(r);
            return rc;
        }
        if (rc != DH_OK) r->cuda = NULL; /* auto: the CPU takes what CUDA cannot */
    }
    *out = r;
    return DH_OK;
}

int dh_ranker_run(dh_ranker *r, const uint64_t *q, int64_t nq, int64_t top, int radius, dh_rank_result *out,
                  dh_err *e) {
    if (r->cuda) return dh_rank_cuda_run(r->cuda, q, nq, top, radius, out, e);
    return dh_rank_cpu(q, nq, r->db, r->ndb, r->bits, top, radius, r->nthreads, out, e);
}

const char *dh_ranker_device(const dh_ranker *r) { return r->cuda ? "cuda" : "cpu"; }

void dh_ranker_close(dh_ranker *r) {
    if (!r) return;
    dh_rank_cuda_close(r->cuda);
    free(r);
}

/* ---- CUDA: the C side of rank_kernels.cu (libdhcuda.so, dh_cudaload.h) ------------------------ */

struct dh_rank_cuda {
    void *h; /* libdhcuda.so's context */
    int bits;
    int64_t ndb;
};

int dh_rank_cuda_available(void) {
    dh_err e;
    return dh_cuda_load(&e) == DH_OK && DH_CUDA_CALL(dhcu_search_probe, &e, &e) == DH_OK;
}

int dh_rank_cuda_open(dh_rank_cuda **ctx, const uint64_t *db, int64_t ndb, int bits, const int32_t *labels, dh_err *e) {
    *ctx = NULL;
    (void)labels;
    if (bits < 1 || bits > DH_RANK_CUDA_MAX_BITS)
        return dh_seterr(e, DH_EUNSUPPORTED, "the CUDA ranking handles codes of 1..%d bits", DH_RANK_CUDA_MAX_BITS);
    if (ndb < 1 || ndb > INT32_MAX) return dh_seterr(e, DH_EINVAL, "database of %lld rows for CUDA", (long long)ndb);
    int rc = dh_ham_check_padding(db, ndb, bits, "database", e);
    if (!rc) rc = dh_cuda_load(e);
    if (!rc) rc = DH_CUDA_CALL(dhcu_search_probe, e, e);
    if (rc) return rc;
    dh_rank_cuda *c = dh_calloc(e, 1, sizeof *c);
    if (!c) return DH_ENOMEM;
    c->bits = bits;
    c->ndb = ndb;
    if ((rc = DH_CUDA_CALL(dhcu_rank_open, e, &c->h, db, ndb, bits, e)) != DH_OK) {
        free(c);
        return rc;
    }
    *ctx = c;
    return DH_OK;
}

int dh_rank_cuda_run(dh_rank_cuda *c, const uint64_t *q, int64_t nq, int64_t top, int radius, dh_rank_result *out,
                     dh_err *e) {
    memset(out, 0, sizeof *out);
    if (top < 1) return dh_seterr(e, DH_EINVAL, "top must be at least 1");
    if (nq < 0) return dh_seterr(e, DH_EINVAL, "negative row count");
    if (dh_ham_check_padding(q, nq, c->bits, "queries", e)) return DH_EINVAL;
    return DH_CUDA_CALL(dhcu_rank_run, e, c->h, q, nq, top, radius, out, e);
}

void dh_rank_cuda_close(dh_rank_cuda *c) {
    if (!c) return;
    DH_CUDA_CALL_IF_LOADED(dhcu_rank_close, c->h);
    free(c);
}
