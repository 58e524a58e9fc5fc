/* bench_rank.c — figures for Hamming ranking and evaluation.
 *
 *   bench_rank [--gpu] [--threads N] [map|topk|all] [--nq N] [--ndb N]
 *
 * map : 10,000 queries x 50,000 database codes at 48 bits (10 classes,
 *       clustered codes), full mAP with the fast path (every metric dh-map
 *       reports). Prints the CPU time of the computation; with --gpu also
 *       the GPU time of the computation itself (database upload excluded).
 * topk: top-100 search over 1,000,000 random 64-bit codes with 10,000
 *       queries: queries/s on the CPU (and GPU with --gpu). Writes the
 *       codes to $BENCH_DIR (if set) as raw files for the FAISS comparison
 *       (tests/bench/bench_rank.sh).
 * Timings exclude data generation. One line per figure:
 *   BENCH name value unit  (details)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "evalmap.h"
#include "hamming.h"
#include "rank.h"
#include "dh_rng.h"

/* CPU seconds used by this process so far (user + system, all threads):
 * on a loaded machine wall time overstates the cost, CPU time does not. */
static double cpu_s(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

static uint64_t rng_s = 42;
static uint64_t rnd(void) { return dh_splitmix64(&rng_s); }

/* 48-bit codes around 10 class centres, each bit flipped with p = 1/4 */
static void clustered(int64_t n, uint64_t *w, int32_t *lab, const uint64_t *cen) {
    for (int64_t i = 0; i < n; i++) {
        int c = (int)(rnd() % 10);
        uint64_t flip = rnd() & rnd() & ((UINT64_C(1) << 48) - 1);
        w[i] = cen[c] ^ flip;
        lab[i] = c;
    }
}

static int bench_map(int64_t nq, int64_t ndb, int threads, int gpu) {
    uint64_t cen[10];
    for (int c = 0; c < 10; c++) cen[c] = rnd() & ((UINT64_C(1) << 48) - 1);
    uint64_t *q = malloc((size_t)nq * 8), *db = malloc((size_t)ndb * 8);
    int32_t *ql = malloc((size_t)nq * 4), *dl = malloc((size_t)ndb * 4);
    clustered(nq, q, ql, cen);
    clustered(ndb, db, dl, cen);
    dh_map_opts o = { .at_r = 1000, .nk = 4, .ks = { 1, 10, 100, 1000 }, .radius = 2 };
    dh_err e;
    double t0 = dh_now();
    double *H = dh_map_harmonic(ndb, &e);
    dh_map_acc acc;
    dh_map_result r;
    dh_map_acc_init(&acc, 48, ndb, &o, H, &e);
    double t1 = dh_now(), c1 = cpu_s();
    if (dh_map_cpu(q, ql, nq, db, dl, ndb, 48, threads, &acc, &e) != DH_OK) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    double t2 = dh_now(), c2 = cpu_s();
    dh_map_acc_result(&acc, &r, &e);
    printf("BENCH map_cpu_48bit_%lldx%lld %.3f s  (wall, computation only, %d threads; %.3f CPU-s; setup %.3f s; mAP "
           "%.4f, tie-aware %.4f, mAP@1000 %.4f)\n",
           (long long)nq, (long long)ndb, t2 - t1, threads, c2 - c1, t1 - t0, r.map, r.map_tie, r.map_r);
    double cpu_map = r.map;
    dh_map_result_free(&r);
    dh_map_acc_free(&acc);
    if (gpu) {
        dh_map_acc_init(&acc, 48, ndb, &o, H, &e);
        double gs = 0, t3 = dh_now();
        int rc = dh_map_cuda(q, ql, nq, db, dl, ndb, 48, &acc, &gs, &e);
        double t4 = dh_now();
        if (rc != DH_OK)
            printf("BENCH map_gpu_48bit skipped (%s)\n", e.msg);
        else {
            dh_map_acc_result(&acc, &r, &e);
            printf("BENCH map_gpu_48bit_%lldx%lld %.2f ms  (computation on the device; %.3f s with upload and "
                   "start-up; mAP %.4f, |gpu-cpu| %.2g)\n",
                   (long long)nq, (long long)ndb, gs * 1e3, t4 - t3, r.map, r.map - cpu_map);
            dh_map_result_free(&r);
        }
        dh_map_acc_free(&acc);
    }
    free(H);
    free(q);
    free(db);
    free(ql);
    free(dl);
    return 0;
}

static int bench_topk(int64_t nq, int64_t ndb, int threads, int gpu) {
    uint64_t *q = malloc((size_t)nq * 8), *db = malloc((size_t)ndb * 8);
    for (int64_t i = 0; i < nq; i++) q[i] = rnd();
    for (int64_t i = 0; i < ndb; i++) db[i] = rnd();
    const char *dir = getenv("BENCH_DIR");
    if (dir) {
        char p[4096];
        snprintf(p, sizeof p, "%s/q.u64", dir);
        FILE *f = fopen(p, "wb");
        if (f) {
            fwrite(q, 8, (size_t)nq, f);
            fclose(f);
        }
        snprintf(p, sizeof p, "%s/db.u64", dir);
        f = fopen(p, "wb");
        if (f) {
            fwrite(db, 8, (size_t)ndb, f);
            fclose(f);
        }
    }
    dh_err e;
    dh_rank_result r;
    double t0 = dh_now(), c0 = cpu_s();
    if (dh_rank_cpu(q, nq, db, ndb, 64, 100, -1, threads, &r, &e) != DH_OK) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    double t1 = dh_now(), c1 = cpu_s();
    printf("BENCH topk100_cpu_64bit_%lldq_%lldk %.0f queries/s  (%.3f s wall, %d threads; %.0f queries per CPU-second; "
           "first result %lld at %d)\n",
           (long long)nq, (long long)ndb / 1000, (double)nq / (t1 - t0), t1 - t0, threads, (double)nq / (c1 - c0),
           (long long)r.idx[0], r.dist[0]);
    if (dir) {
        char p[4096];
        snprintf(p, sizeof p, "%s/dh_top.txt", dir);
        FILE *f = fopen(p, "w");
        for (int64_t i = 0; f && i < (nq < 100 ? nq : 100); i++)
            for (int64_t k = r.off[i]; k < r.off[i + 1]; k++)
                fprintf(f, "%lld %lld %d\n", (long long)i, (long long)r.idx[k], r.dist[k]);
        if (f) fclose(f);
    }
    if (gpu) {
        dh_rank_cuda *ctx;
        double t2 = dh_now();
        if (dh_rank_cuda_open(&ctx, db, ndb, 64, NULL, &e) != DH_OK)
            printf("BENCH topk100_gpu skipped (%s)\n", e.msg);
        else {
            double t3 = dh_now();
            dh_rank_result g;
            int rc = dh_rank_cuda_run(ctx, q, nq, 100, -1, &g, &e);
            double t4 = dh_now();
            if (rc != DH_OK)
                printf("BENCH topk100_gpu failed (%s)\n", e.msg);
            else {
                int same = g.off[nq] == r.off[nq] && !memcmp(g.idx, r.idx, (size_t)r.off[nq] * 8) &&
                           !memcmp(g.dist, r.dist, (size_t)r.off[nq] * 4);
                printf("BENCH topk100_gpu_64bit_%lldq_%lldk %.0f queries/s  (%.3f s incl. result download; db upload "
                       "%.3f s; identical to CPU: %s)\n",
                       (long long)nq, (long long)ndb / 1000, (double)nq / (t4 - t3), t4 - t3, t3 - t2,
                       same ? "yes" : "NO");
                dh_rank_result_free(&g);
            }
            dh_rank_cuda_close(ctx);
        }
    }
    dh_rank_result_free(&r);
    free(q);
    free(db);
    return 0;
}

int main(int argc, char **argv) {
    int gpu = 0, threads = 1;
    dh_err te;
    if (dh_rank_default_threads(&threads, &te) != DH_OK) {
        fprintf(stderr, "bench_rank: %s\n", te.msg);
        return 2;
    }
    const char *what = "all";
    int64_t nq = 0, ndb = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--gpu"))
            gpu = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--nq") && i + 1 < argc)
            nq = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--ndb") && i + 1 < argc)
            ndb = atoll(argv[++i]);
        else
            what = argv[i];
    }
    int rc = 0;
    if (!strcmp(what, "map") || !strcmp(what, "all")) rc |= bench_map(nq ? nq : 10000, ndb ? ndb : 50000, threads, gpu);
    if (!strcmp(what, "topk") || !strcmp(what, "all"))
        rc |= bench_topk(nq ? nq : 10000, ndb ? ndb : 1000000, threads, gpu);
    return rc;
}
