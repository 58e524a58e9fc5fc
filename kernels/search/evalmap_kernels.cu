/* evalmap_kernels.cu — the CUDA twin of dh_map_cpu (evalmap.h).
 *
 * The database and its labels are uploaded once; per query (one block each):
 *   k_hist2 histograms of Hamming distances and of the relevant items;
 *   k_map   the stable per-distance rank of every row (__match_any_sync
 *           within a warp plus per-warp counts, in database order) gives
 *           each relevant row its position and the number of relevant rows
 *           before it: exact AP (database-order ties) without sorting, and
 *           the counts in the top R and top k.
 * This file is part of libdhcuda.so (loaded at the first CUDA use,
 * dh_cudaload.h): its entry points are the dhcu_map_* below; evalmap.c
 * checks the arguments, calls them a block of queries at a time and turns
 * what they return into metrics (dh_map_acc_add: the tie-aware values and
 * the precision-recall points come from the histograms, as for the CPU
 * path). AP sums differ from the CPU's only in the order of floating-point
 * additions.
 *
 * Shared memory is indexed by distance (nb = bits + 1 entries per array).
 * A distance never exceeds bits: the host refuses codes with padding bits
 * set (dh_ham_check_padding, in evalmap.c), and ddist masks the last word with the
 * code's valid bits all the same, so a stray padding bit cannot index past
 * the end; rows past the database get the distance nb, which no array is
 * indexed with (their writes are guarded by `valid`).
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
extern "C" {
#include "dh_cuda.h"
#include "evalmap.h"
}

#define NT        256       /* threads per block */
#define NW        (NT / 32) /* warps per block */
#define MAX_WORDS (DH_MAP_CUDA_MAX_BITS / 64)

/* The valid bits of the last word of a code (all ones when bits % 64 == 0). */
static uint64_t last_mask(int bits) { return bits % 64 ? (UINT64_C(1) << (bits % 64)) - 1 : ~UINT64_C(0); }

/* Distance of database row j to the query qs: 0..bits, the padding bits of
 * the last word masked off (see the top). */
__device__ __forceinline__ int ddist(const uint64_t *qs, const uint64_t *db, int64_t j, int W, uint64_t last) {
    const uint64_t *r = db + j * W;
    int d = 0;
    for (int w = 0; w < W - 1; w++) d += __popcll(qs[w] ^ r[w]);
    return d + __popcll((qs[W - 1] ^ r[W - 1]) & last);
}

/* hist (nq, nb) and relhist (nq, nb) */
__global__ void k_hist2(const uint64_t *db, const int32_t *dlab, int64_t ndb, int W, uint64_t last, int nb,
                        const uint64_t *q, const int32_t *qlab, int *hist, int *relhist) {
    extern __shared__ int sh[];
    __shared__ uint64_t qs[MAX_WORDS];
    int qi = blockIdx.x;
    for (int t = threadIdx.x; t < W; t += blockDim.x) qs[t] = q[(int64_t)qi * W + t];
    for (int t = threadIdx.x; t < 2 * nb; t += blockDim.x) sh[t] = 0;
    __syncthreads();
    int32_t ql = qlab[qi];
    for (int64_t j = threadIdx.x; j < ndb; j += blockDim.x) {
        int d = ddist(qs, db, j, W, last);
        atomicAdd(&sh[d], 1);
        if (dlab[j] == ql) atomicAdd(&sh[nb + d], 1);
    }
    __syncthreads();
    for (int t = threadIdx.x; t < nb; t += blockDim.x) {
        hist[(int64_t)qi * nb + t] = sh[t];
        relhist[(int64_t)qi * nb + t] = sh[nb + t];
    }
}

struct ks_t {
    long long v[DH_MAP_MAX_K];
};

__global__ void k_map(const uint64_t *db, const int32_t *dlab, int64_t ndb, int W, uint64_t last, int nb,
                      const uint64_t *q, const int32_t *qlab, const int *hist, const int *relhist, long long at_r,
                      int nk, ks_t ks, double *o_ap, double *o_apr, unsigned long long *o_relr,
                      unsigned long long *o_relk) {
    extern __shared__ int sm[];
    int *start = sm, *rstart = sm + nb, *base = sm + 2 * nb, *rbase = sm + 3 * nb;
    int *wc = sm + 4 * nb, *rwc = sm + 4 * nb + NW * nb;
    __shared__ uint64_t qs[MAX_WORDS];
    __shared__ double red1[NT], red2[NT];
    __shared__ unsigned long long s_relk[DH_MAP_MAX_K], s_relr;
    int qi = blockIdx.x;
    for (int t = threadIdx.x; t < W; t += blockDim.x) qs[t] = q[(int64_t)qi * W + t];
    for (int t = threadIdx.x; t < nb; t += blockDim.x) {
        base[t] = 0;
        rbase[t] = 0;
    }
    for (int t = threadIdx.x; t < NW * nb; t += blockDim.x) {
        wc[t] = 0;
        rwc[t] = 0;
    }
    for (int t = threadIdx.x; t < DH_MAP_MAX_K; t += blockDim.x) s_relk[t] = 0;
    if (threadIdx.x == 0) {
        int c = 0, rc = 0;
        for (int t = 0; t < nb; t++) {
            start[t] = c;
            rstart[t] = rc;
            c += hist[(int64_t)qi * nb + t];
            rc += relhist[(int64_t)qi * nb + t];
        }
        s_relr = 0;
    }
    __syncthreads();
    int32_t ql = qlab[qi];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    unsigned lt = (1u << lane) - 1;
    double ap = 0, apr = 0;
    unsigned long long relr = 0;
    for (int64_t t0 = 0; t0 < ndb; t0 += blockDim.x) {
        int64_t j = t0 + threadIdx.x;
        int valid = j < ndb;
        int d = valid ? ddist(qs, db, j, W, last) : nb;
        int rel = valid && dlab[j] == ql;
        unsigned peers = __match_any_sync(0xffffffffu, d);
        unsigned relm = __ballot_sync(0xffffffffu, rel);
        int lr = __popc(peers & lt), lrr = __popc(peers & relm & lt);
        if (valid && lane == 31 - __clz(peers)) {
            wc[w * nb + d] = __popc(peers);
            rwc[w * nb + d] = __popc(peers & relm);
        }
        __syncthreads();
        if (rel) {
            long long pos = (long long)start[d] + base[d] + lr;
            long long before = (long long)rstart[d] + rbase[d] + lrr;
            for (int w2 = 0; w2 < w; w2++) {
                pos += wc[w2 * nb + d];
                before += rwc[w2 * nb + d];
            }
            double term = (double)(before + 1) / (double)(pos + 1);
            ap += term;
            if (pos < at_r) {
                apr += term;
                relr++;
            }
            for (int k = 0; k < nk; k++)
                if (pos < ks.v[k]) atomicAdd(&s_relk[k], 1ull);
        }
        __syncthreads();
        for (int t = threadIdx.x; t < nb; t += blockDim.x) {
            int s = 0, rs = 0;
            for (int w2 = 0; w2 < NW; w2++) {
                s += wc[w2 * nb + t];
                rs += rwc[w2 * nb + t];
                wc[w2 * nb + t] = 0;
                rwc[w2 * nb + t] = 0;
            }
            base[t] += s;
            rbase[t] += rs;
        }
        __syncthreads();
    }
    red1[threadIdx.x] = ap;
    red2[threadIdx.x] = apr;
    atomicAdd(&s_relr, relr);
    __syncthreads();
    for (int s = NT / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            red1[threadIdx.x] += red1[threadIdx.x + s];
            red2[threadIdx.x] += red2[threadIdx.x + s];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        o_ap[qi] = red1[0];
        o_apr[qi] = red2[0];
        o_relr[qi] = s_relr;
        for (int k = 0; k < nk; k++) o_relk[(int64_t)qi * DH_MAP_MAX_K + k] = s_relk[k];
    }
}

/* ---- the entry points of libdhcuda.so (evalmap.c checks the arguments and accumulates) ------------ */

struct map_ctx {
    uint64_t *d_db, *dq;
    int32_t *d_dl, *dql;
    int64_t ndb, maxq;
    int bits, W, nb;
    int *dhist, *drel;
    double *dap, *dapr;
    unsigned long long *drelr, *drelk;
    cudaEvent_t ev0, ev1;
};

extern "C" void dhcu_map_close(void *ctx) {
    map_ctx *c = (map_ctx *)ctx;
    if (!c) return;
    if (c->ev0) cudaEventDestroy(c->ev0);
    if (c->ev1) cudaEventDestroy(c->ev1);
    cudaFree(c->d_db);
    cudaFree(c->d_dl);
    cudaFree(c->dq);
    cudaFree(c->dql);
    cudaFree(c->dhist);
    cudaFree(c->drel);
    cudaFree(c->dap);
    cudaFree(c->dapr);
    cudaFree(c->drelr);
    cudaFree(c->drelk);
    free(c);
}

/* The database and its labels on the device, and buffers for maxq queries. */
extern "C" int dhcu_map_open(void **ctx, const uint64_t *db, const int32_t *dl, int64_t ndb, int bits, int64_t maxq,
                             dh_err *e) {
    *ctx = NULL;
    map_ctx *c = (map_ctx *)calloc(1, sizeof *c);
    if (!c) return dh_seterr(e, DH_ENOMEM, "out of memory");
    c->ndb = ndb;
    c->bits = bits;
    c->W = dh_ham_words(bits);
    c->nb = bits + 1;
    c->maxq = maxq;
    size_t W = (size_t)c->W, nb = (size_t)c->nb, mq = (size_t)maxq;
    int rc = dh_cuda_err(cudaMalloc(&c->d_db, (size_t)ndb * W * 8), e, "allocating the database");
    if (!rc) rc = dh_cuda_err(cudaMalloc(&c->d_dl, (size_t)ndb * 4), e, "allocating the database labels");
    if (!rc)
        rc = dh_cuda_err(cudaMemcpy(c->d_db, db, (size_t)ndb * W * 8, cudaMemcpyHostToDevice), e,
                         "uploading the database");
    if (!rc)
        rc = dh_cuda_err(cudaMemcpy(c->d_dl, dl, (size_t)ndb * 4, cudaMemcpyHostToDevice), e,
                         "uploading the database labels");
    if (!rc) rc = dh_cuda_err(cudaMalloc(&c->dq, mq * W * 8), e, "allocating queries");
    if (!rc) rc = dh_cuda_err(cudaMalloc(&c->dql, mq * 4), e, "allocating query labels");
    if (!rc) rc = dh_cuda_err(cudaMalloc(&c->dhist, mq * nb * 4), e, "allocating histograms");
    if (!rc) rc = dh_cuda_err(cudaMalloc(&c->drel, mq * nb * 4), e, "allocating histograms");
    if (!rc) rc = dh_cuda_err(cudaMalloc(&c->dap, mq * 8), e, "allocating AP sums");
    if (!rc) rc = dh_cuda_err(cudaMalloc(&c->dapr, mq * 8), e, "allocating AP sums");
    if (!rc) rc = dh_cuda_err(cudaMalloc(&c->drelr, mq * 8), e, "allocating counts");
    if (!rc) rc = dh_cuda_err(cudaMalloc(&c->drelk, mq * DH_MAP_MAX_K * 8), e, "allocating counts");
    if (!rc) rc = dh_cuda_err(cudaEventCreate(&c->ev0), e, "creating an event");
    if (!rc) rc = dh_cuda_err(cudaEventCreate(&c->ev1), e, "creating an event");
    if (rc) {
        dhcu_map_close(c);
        return rc;
    }
    *ctx = c;
    return DH_OK;
}

/* n <= maxq queries: per query hist and relhist (n, bits+1), the AP sums
 * ap and apr, the relevant counts in the top R (relr) and top k (relk,
 * (n, DH_MAP_MAX_K)). *seconds: the time on the device, query upload and
 * downloads included. */
extern "C" int dhcu_map_run(void *ctx, const uint64_t *q, const int32_t *ql, int64_t n, const dh_map_opts *o,
                            int32_t *hist, int32_t *relhist, double *ap, double *apr, uint64_t *relr, uint64_t *relk,
                            double *seconds, dh_err *e) {
    map_ctx *c = (map_ctx *)ctx;
    *seconds = 0;
    if (n < 1) return DH_OK;
    if (n > c->maxq)
        return dh_seterr(e, DH_EINVAL, "%lld queries at once, at most %lld", (long long)n, (long long)c->maxq);
    int W = c->W, nb = c->nb;
    size_t sn = (size_t)n;
    ks_t ks;
    memset(&ks, 0, sizeof ks);
    for (int k = 0; k < o->nk; k++) ks.v[k] = o->ks[k];
    size_t shm = (size_t)(4 + 2 * NW) * nb * sizeof(int);
    cudaEventRecord(c->ev0);
    DH_CUDA_TRY(cudaMemcpy(c->dq, q, sn * W * 8, cudaMemcpyHostToDevice), e, "uploading queries");
    DH_CUDA_TRY(cudaMemcpy(c->dql, ql, sn * 4, cudaMemcpyHostToDevice), e, "uploading query labels");
    k_hist2<<<(unsigned)n, NT, 2 * nb * sizeof(int)>>>(c->d_db, c->d_dl, c->ndb, W, last_mask(c->bits), nb, c->dq,
                                                       c->dql, c->dhist, c->drel);
    k_map<<<(unsigned)n, NT, shm>>>(c->d_db, c->d_dl, c->ndb, W, last_mask(c->bits), nb, c->dq, c->dql, c->dhist,
                                    c->drel, (long long)o->at_r, o->nk, ks, c->dap, c->dapr, c->drelr, c->drelk);
    DH_CUDA_TRY(cudaGetLastError(), e, "launching k_hist2/k_map");
    DH_CUDA_TRY(cudaMemcpy(hist, c->dhist, sn * nb * 4, cudaMemcpyDeviceToHost), e, "k_hist2/k_map");
    DH_CUDA_TRY(cudaMemcpy(relhist, c->drel, sn * nb * 4, cudaMemcpyDeviceToHost), e, "downloading histograms");
    DH_CUDA_TRY(cudaMemcpy(ap, c->dap, sn * 8, cudaMemcpyDeviceToHost), e, "downloading AP sums");
    DH_CUDA_TRY(cudaMemcpy(apr, c->dapr, sn * 8, cudaMemcpyDeviceToHost), e, "downloading AP sums");
    DH_CUDA_TRY(cudaMemcpy(relr, c->drelr, sn * 8, cudaMemcpyDeviceToHost), e, "downloading counts");
    DH_CUDA_TRY(cudaMemcpy(relk, c->drelk, sn * DH_MAP_MAX_K * 8, cudaMemcpyDeviceToHost), e, "downloading counts");
    cudaEventRecord(c->ev1);
    cudaEventSynchronize(c->ev1);
    float ms = 0;
    cudaEventElapsedTime(&ms, c->ev0, c->ev1);
    *seconds = ms / 1e3;
    return DH_OK;
}
