/* bench_mih.c — multi-index hashing (kernels/search/mih.h) against the
 * linear scan (dh_rank_cpu), same codes, same machine.
 *
 *   bench_mih [--ndb N] [--nq N] [--bits 64,128] [--kind random,clustered]
 *             [--tables M] [--threads N] [--k 1,10,100] [--dir DIR]
 *
 * Databases of N codes (default 1,000,000), uniform random (the worst case
 * for MIH) or clustered (500 random centres, each bit flipped with
 * probability 1/16: about 4 bits of 64 differ from the centre, as real hash
 * codes of similar images do); queries from the same distribution. For
 * k = 1, 10, 100 the queries are ranked by the scan and by MIH and the
 * results compared (they must be identical); one line per figure:
 *   BENCH name value unit  (details)
 * Times are CPU seconds of this process (getrusage: on a loaded machine
 * wall time overstates the cost, CPU time does not), with --threads 1 by
 * default. With --dir, the codes are written there as raw uint64 rows
 * (DIR/BITS-KIND-db.u64, -q.u64) and MIH's top-k as text, for the FAISS
 * comparison in bench_mih.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "dh_rng.h"
#include "hamming.h"
#include "mih.h"
#include "rank.h"

static double cpu_s(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

static uint64_t rng_s = 4242;
static uint64_t rnd(void) { return dh_splitmix64(&rng_s); }

static uint64_t *make(int64_t n, int W, const uint64_t *cen, int ncen, uint64_t seed) {
    uint64_t *c = malloc((size_t)n * W * 8);
    rng_s = seed;
    for (int64_t i = 0; i < n; i++) {
        int k = cen ? (int)(rnd() % (uint64_t)ncen) : 0;
        for (int w = 0; w < W; w++) {
            uint64_t v;
            if (!cen)
                v = rnd();
            else { /* each bit flipped with p = 1/16: and of four random words */
                v = cen[k * W + w] ^ (rnd() & rnd() & rnd() & rnd());
            }
            c[i * W + w] = v;
        }
    }
    return c;
}

static int same(const dh_rank_result *a, const dh_rank_result *b) {
    if (a->nq != b->nq || a->off[a->nq] != b->off[b->nq]) return 0;
    for (int64_t i = 0; i <= a->nq; i++)
        if (a->off[i] != b->off[i]) return 0;
    int64_t n = a->off[a->nq];
    return !memcmp(a->idx, b->idx, (size_t)n * 8) && !memcmp(a->dist, b->dist, (size_t)n * 4);
}

static int has(const char *list, const char *item) {
    size_t n = strlen(item);
    for (const char *p = list; (p = strstr(p, item)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return 1;
    return 0;
}

int main(int argc, char **argv) {
    int64_t ndb = 1000000, nq = 1000;
    int threads = 1, tables = 0;
    const char *bitlist = "64,128", *kinds = "random,clustered", *dir = NULL, *klist = "1,10,100";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ndb") && i + 1 < argc)
            ndb = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--nq") && i + 1 < argc)
            nq = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--bits") && i + 1 < argc)
            bitlist = argv[++i];
        else if (!strcmp(argv[i], "--kind") && i + 1 < argc)
            kinds = argv[++i];
        else if (!strcmp(argv[i], "--tables") && i + 1 < argc)
            tables = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--k") && i + 1 < argc)
            klist = argv[++i];
        else {
            fprintf(stderr,
                    "usage: bench_mih [--ndb N] [--nq N] [--bits 64,128] [--kind random,clustered] [--tables M] "
                    "[--threads N] [--k 1,10,100] [--dir DIR]\n");
            return 2;
        }
    }
    static const int allbits[] = { 32, 48, 64, 128, 256 };
    static const int64_t ks[] = { 1, 10, 100 };
    for (size_t bi = 0; bi < sizeof allbits / sizeof *allbits; bi++) {
        int bits = allbits[bi], W = dh_ham_words(bits);
        char bname[8];
        snprintf(bname, sizeof bname, "%d", bits);
        if (!has(bitlist, bname)) continue;
        for (int kind = 0; kind < 2; kind++) {
            const char *kn = kind ? "clustered" : "random";
            if (!has(kinds, kn)) continue;
            uint64_t *cen = NULL;
            int ncen = 500;
            if (kind) {
                rng_s = 99;
                cen = malloc((size_t)ncen * W * 8);
                for (int i = 0; i < ncen * W; i++) cen[i] = rnd();
            }
            uint64_t *db = make(ndb, W, cen, ncen, 1), *q = make(nq, W, cen, ncen, 2);
            if (bits % 64)
                for (int64_t i = 0; i < ndb; i++) db[i * W + W - 1] &= (UINT64_C(1) << (bits % 64)) - 1;
            if (bits % 64)
                for (int64_t i = 0; i < nq; i++) q[i * W + W - 1] &= (UINT64_C(1) << (bits % 64)) - 1;
            free(cen);
            if (dir) {
                char p[4096];
                snprintf(p, sizeof p, "%s/%d-%s-db.u64", dir, bits, kn);
                FILE *f = fopen(p, "wb");
                if (f) fwrite(db, 8, (size_t)(ndb * W), f), fclose(f);
                snprintf(p, sizeof p, "%s/%d-%s-q.u64", dir, bits, kn);
                f = fopen(p, "wb");
                if (f) fwrite(q, 8, (size_t)(nq * W), f), fclose(f);
            }
            dh_err e;
            dh_mih *x;
            double c0 = cpu_s(), t0 = dh_now();
            if (dh_mih_build(&x, db, ndb, bits, tables, threads, &e) != DH_OK) {
                printf("BENCH mih_build failed: %s\n", e.msg);
                return 1;
            }
            double cb = cpu_s() - c0, tb = dh_now() - t0;
            /* the index file: write, then read back (checks and gathers included) */
            char path[] = "/tmp/bench_mih.XXXXXX";
            int fd = mkstemp(path);
            FILE *f = fd >= 0 ? fdopen(fd, "w+b") : NULL;
            double cl = -1, tl = -1;
            long fsize = -1;
            if (f && dh_mih_write(x, f, path, &e) == DH_OK) {
                fsize = ftell(f);
                rewind(f);
                dh_mih *y;
                c0 = cpu_s();
                t0 = dh_now();
                if (dh_mih_read(&y, f, path, db, ndb, bits, threads, &e) == DH_OK) {
                    cl = cpu_s() - c0;
                    tl = dh_now() - t0;
                    dh_mih_free(y);
                } else
                    printf("# index read failed: %s\n", e.msg);
            }
            if (f) fclose(f);
            if (fd >= 0) unlink(path);
            printf("BENCH mih_build_%dbit_%s_%lldk %.3f CPU-s  (%d tables, %.0f MB in memory; file %.0f MB, read back "
                   "and checked in %.3f CPU-s; %.3f s, %.3f s wall)\n",
                   bits, kn, (long long)ndb / 1000, cb, dh_mih_tables(x), dh_mih_bytes(x) / 1e6, fsize / 1e6, cl, tb,
                   tl);
            fflush(stdout);
            for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
                int64_t k = ks[ki];
                char kname[24];
                snprintf(kname, sizeof kname, "%lld", (long long)k);
                if (!has(klist, kname)) continue;
                dh_rank_result a, b;
                c0 = cpu_s();
                t0 = dh_now();
                if (dh_rank_cpu(q, nq, db, ndb, bits, k, -1, threads, &a, &e) != DH_OK) return 1;
                double cs = cpu_s() - c0, ts = dh_now() - t0;
                dh_mih_stats s0, s1;
                dh_mih_get_stats(x, &s0);
                c0 = cpu_s();
                t0 = dh_now();
                if (dh_mih_search(x, q, nq, k, -1, threads, &b, &e) != DH_OK) return 1;
                double cm = cpu_s() - c0, tm = dh_now() - t0;
                dh_mih_get_stats(x, &s1);
                int ok = same(&a, &b);
                double kth = 0;
                for (int64_t i = 0; i < nq; i++) kth += b.dist[b.off[i + 1] - 1];
                printf("BENCH mih_top%lld_%dbit_%s_%lldk %.0f queries/CPU-s  (scan %.0f queries/CPU-s: %.1fx; "
                       "%.0f probes, %.0f candidates a query, %lld of %lld queries scanned; mean k-th distance "
                       "%.1f; wall %.3f s vs %.3f s; identical: %s)\n",
                       (long long)k, bits, kn, (long long)ndb / 1000, nq / cm, nq / cs, cs / cm,
                       (double)(s1.probes - s0.probes) / nq, (double)(s1.candidates - s0.candidates) / nq,
                       (long long)(s1.scans - s0.scans), (long long)nq, kth / nq, tm, ts, ok ? "yes" : "NO");
                fflush(stdout);
                if (dir) {
                    char p[4096];
                    snprintf(p, sizeof p, "%s/%d-%s-top%lld.txt", dir, bits, kn, (long long)k);
                    FILE *o = fopen(p, "w");
                    for (int64_t i = 0; o && i < nq; i++)
                        for (int64_t j = b.off[i]; j < b.off[i + 1]; j++)
                            fprintf(o, "%lld %lld %d\n", (long long)i, (long long)b.idx[j], b.dist[j]);
                    if (o) fclose(o);
                }
                dh_rank_result_free(&a);
                dh_rank_result_free(&b);
                if (!ok) return 1;
            }
            dh_mih_free(x);
            free(db);
            free(q);
        }
    }
    return 0;
}
