/* rank_kernels.cu — the CUDA twin of dh_rank_cpu (rank.h).
 *
 * The database stays on the device. Per query (one block each):
 *   k_hist    histogram of Hamming distances
 *   k_cut     the cut distance for top R / radius and the row count
 *   k_scatter stable counting sort: rows at distance <= cut are written to
 *             their final position, off[d] + (their rank among the rows at
 *             distance d in database order); the rank within a tile comes
 *             from __match_any_sync within a warp plus per-warp counts.
 * Results are identical to the CPU reference.
 *
 * This file is part of libdhcuda.so (loaded at the first CUDA use,
 * dh_cudaload.h): its entry points are the dhcu_* below, which rank.c calls
 * after checking the arguments; nothing here calls libdeephash.a.
 *
 * Shared memory is indexed by distance (arrays of nb = bits + 1 entries per
 * query or per warp). A distance never exceeds bits: the host refuses codes
 * with padding bits set (dh_ham_check_padding, in rank.c), and ddist masks the last
 * word with the code's valid bits all the same, so a stray padding bit
 * that got past the host cannot index past the end.
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
extern "C" {
#include "dh_cuda.h"
#include "rank.h"
}

#define NT        256       /* threads per block */
#define NW        (NT / 32) /* warps per block */
#define MAX_WORDS (DH_RANK_CUDA_MAX_BITS / 64)

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

/* hist (nq, nb) */
__global__ void k_hist(const uint64_t *db, int64_t ndb, int W, uint64_t last, int nb, const uint64_t *q, int *hist) {
    extern __shared__ int sh[];
    __shared__ uint64_t qs[MAX_WORDS];
    int qi = blockIdx.x;
    for (int t = threadIdx.x; t < W; t += blockDim.x) qs[t] = q[(int64_t)qi * W + t];
    for (int t = threadIdx.x; t < nb; t += blockDim.x) sh[t] = 0;
    __syncthreads();
    for (int64_t j = threadIdx.x; j < ndb; j += blockDim.x) atomicAdd(&sh[ddist(qs, db, j, W, last)], 1);
    __syncthreads();
    for (int t = threadIdx.x; t < nb; t += blockDim.x) hist[(int64_t)qi * nb + t] = sh[t];
}

/* per query: cut distance, how many rows to take at it, rows in all */
__global__ void k_cut(const int *hist, int nb, int nq, int64_t R, int maxd, int *cutd, int *lim, int64_t *cnt) {
    int qi = blockIdx.x * blockDim.x + threadIdx.x;
    if (qi >= nq) return;
    const int *h = hist + (int64_t)qi * nb;
    int64_t cum = 0;
    int dR = -1;
    int64_t l = 0;
    for (int t = 0; t <= maxd; t++) {
        if (cum + h[t] >= R) {
            dR = t;
            l = R - cum;
            break;
        }
        cum += h[t];
    }
    if (dR < 0) {
        dR = maxd;
        l = h[maxd];
        cnt[qi] = cum;
    } else
        cnt[qi] = R;
    cutd[qi] = dR;
    lim[qi] = (int)l;
}

__global__ void k_scatter(const uint64_t *db, int64_t ndb, int W, uint64_t last, int nb, const uint64_t *q,
                          const int *hist, const int *cutd, const int *lim, const int64_t *qoff, int64_t *oidx,
                          int32_t *odist) {
    extern __shared__ int sm[];
    int *base = sm, *off = sm + nb, *wc = sm + 2 * nb; /* wc: (NW, nb) */
    __shared__ uint64_t qs[MAX_WORDS];
    int qi = blockIdx.x;
    int dR = cutd[qi], limR = lim[qi];
    for (int t = threadIdx.x; t < W; t += blockDim.x) qs[t] = q[(int64_t)qi * W + t];
    for (int t = threadIdx.x; t < nb; t += blockDim.x) base[t] = 0;
    for (int t = threadIdx.x; t < NW * nb; t += blockDim.x) wc[t] = 0;
    if (threadIdx.x == 0) {
        int c = 0;
        for (int t = 0; t <= dR; t++) {
            off[t] = c;
            c += hist[(int64_t)qi * nb + t];
        }
    }
    __syncthreads();
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    unsigned lt = (1u << lane) - 1;
    int64_t o0 = qoff[qi];
    for (int64_t t0 = 0; t0 < ndb; t0 += blockDim.x) {
        int64_t j = t0 + threadIdx.x;
        int d = j < ndb ? ddist(qs, db, j, W, last) : nb; /* nb: past the end, never wanted */
        int want = d <= dR;
        if (!__syncthreads_or(want)) continue;
        unsigned peers = __match_any_sync(0xffffffffu, want ? d : -1);
        int lr = __popc(peers & lt);
        int leader = 31 - __clz(peers);
        if (want && lane == leader) wc[w * nb + d] = __popc(peers);
        __syncthreads();
        if (want) {
            int r = base[d] + lr;
            for (int w2 = 0; w2 < w; w2++) r += wc[w2 * nb + d];
            if (d < dR || r < limR) {
                int64_t o = o0 + off[d] + r;
                oidx[o] = j;
                odist[o] = d;
            }
        }
        __syncthreads();
        for (int t = threadIdx.x; t <= dR; t += blockDim.x) {
            int s = 0;
            for (int w2 = 0; w2 < NW; w2++) {
                s += wc[w2 * nb + t];
                wc[w2 * nb + t] = 0;
            }
            base[t] += s;
        }
        __syncthreads();
    }
}

/* ---- the entry points of libdhcuda.so (rank.c checks the arguments) ---------------------------- */

struct rank_ctx {
    uint64_t *d_db;
    int64_t ndb;
    int bits, W;
};

extern "C" int dhcu_search_probe(dh_err *e) {
    int n = 0;
    cudaError_t st = cudaGetDeviceCount(&n);
    if (st != cudaSuccess) {
        cudaGetLastError();
        return dh_cuda_err(st, e, "counting devices");
    }
    return n > 0 ? DH_OK : dh_seterr(e, DH_EDEVICE, "no CUDA device");
}

extern "C" int dhcu_rank_open(void **ctx, const uint64_t *db, int64_t ndb, int bits, dh_err *e) {
    *ctx = NULL;
    rank_ctx *c = (rank_ctx *)calloc(1, sizeof *c);
    if (!c) return dh_seterr(e, DH_ENOMEM, "out of memory");
    c->ndb = ndb;
    c->bits = bits;
    c->W = dh_ham_words(bits);
    size_t sz = (size_t)ndb * c->W * sizeof(uint64_t);
    int rc = dh_cuda_err(cudaMalloc(&c->d_db, sz), e, "allocating the database");
    if (!rc) rc = dh_cuda_err(cudaMemcpy(c->d_db, db, sz, cudaMemcpyHostToDevice), e, "uploading the database");
    if (rc) {
        cudaFree(c->d_db);
        free(c);
        return rc;
    }
    *ctx = c;
    return DH_OK;
}

extern "C" void dhcu_rank_close(void *ctx) {
    rank_ctx *c = (rank_ctx *)ctx;
    if (!c) return;
    cudaFree(c->d_db);
    free(c);
}

static void result_free(dh_rank_result *r) {
    free(r->off);
    free(r->idx);
    free(r->dist);
    memset(r, 0, sizeof *r);
}

extern "C" int dhcu_rank_run(void *ctx, const uint64_t *q, int64_t nq, int64_t top, int radius, dh_rank_result *out,
                             dh_err *e) {
    rank_ctx *c = (rank_ctx *)ctx;
    memset(out, 0, sizeof *out);
    int W = c->W, nb = c->bits + 1;
    uint64_t last = last_mask(c->bits);
    int64_t ndb = c->ndb, R = top < ndb ? top : ndb;
    int maxd = (radius >= 0 && radius < c->bits) ? radius : c->bits;
    int64_t nqb = (int64_t)(512 << 20) / (R * 12 + 1);
    if (nqb < 1) nqb = 1;
    if (nqb > 16384) nqb = 16384;
    if (nqb > nq) nqb = nq > 0 ? nq : 1;
    uint64_t *dq = NULL;
    int *dhist = NULL, *dcut = NULL, *dlim = NULL;
    int64_t *dcnt = NULL, *doff = NULL, *doidx = NULL, *hcnt = NULL, *hoff = NULL, dcap = 0, hcap = 0;
    int32_t *dodist = NULL;
    int rc = DH_OK;
    out->nq = nq;
    out->off = (int64_t *)calloc((size_t)nq + 1, sizeof *out->off);
    hcnt = (int64_t *)malloc((size_t)nqb * sizeof *hcnt);
    hoff = (int64_t *)malloc(((size_t)nqb + 1) * sizeof *hoff);
    if (!out->off || !hcnt || !hoff) {
        rc = dh_seterr(e, DH_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = dh_cuda_err(cudaMalloc(&dq, (size_t)nqb * W * 8), e, "cudaMalloc"))) goto done;
    if ((rc = dh_cuda_err(cudaMalloc(&dhist, (size_t)nqb * nb * 4), e, "cudaMalloc"))) goto done;
    if ((rc = dh_cuda_err(cudaMalloc(&dcut, (size_t)nqb * 4), e, "cudaMalloc"))) goto done;
    if ((rc = dh_cuda_err(cudaMalloc(&dlim, (size_t)nqb * 4), e, "cudaMalloc"))) goto done;
    if ((rc = dh_cuda_err(cudaMalloc(&dcnt, (size_t)nqb * 8), e, "cudaMalloc"))) goto done;
    if ((rc = dh_cuda_err(cudaMalloc(&doff, ((size_t)nqb + 1) * 8), e, "cudaMalloc"))) goto done;
    for (int64_t b0 = 0; b0 < nq; b0 += nqb) {
        int n = (int)(nq - b0 < nqb ? nq - b0 : nqb);
        if ((rc = dh_cuda_err(cudaMemcpy(dq, q + b0 * W, (size_t)n * W * 8, cudaMemcpyHostToDevice), e, "upload")))
            goto done;
        k_hist<<<n, NT, nb * sizeof(int)>>>(c->d_db, ndb, W, last, nb, dq, dhist);
        k_cut<<<(n + 127) / 128, 128>>>(dhist, nb, n, R, maxd, dcut, dlim, dcnt);
        if ((rc = dh_cuda_err(cudaGetLastError(), e, "k_hist/k_cut launch"))) goto done;
        if ((rc = dh_cuda_err(cudaMemcpy(hcnt, dcnt, (size_t)n * 8, cudaMemcpyDeviceToHost), e, "k_hist/k_cut")))
            goto done;
        hoff[0] = 0;
        for (int i = 0; i < n; i++) hoff[i + 1] = hoff[i] + hcnt[i];
        int64_t tot = hoff[n];
        if (tot > dcap) {
            cudaFree(doidx);
            cudaFree(dodist);
            doidx = NULL;
            dodist = NULL;
            dcap = tot;
            if ((rc = dh_cuda_err(cudaMalloc(&doidx, (size_t)dcap * 8), e, "cudaMalloc"))) goto done;
            if ((rc = dh_cuda_err(cudaMalloc(&dodist, (size_t)dcap * 4), e, "cudaMalloc"))) goto done;
        }
        if ((rc = dh_cuda_err(cudaMemcpy(doff, hoff, ((size_t)n + 1) * 8, cudaMemcpyHostToDevice), e, "upload")))
            goto done;
        size_t shm = (size_t)(2 + NW) * nb * sizeof(int);
        k_scatter<<<n, NT, shm>>>(c->d_db, ndb, W, last, nb, dq, dhist, dcut, dlim, doff, doidx, dodist);
        if ((rc = dh_cuda_err(cudaGetLastError(), e, "k_scatter launch"))) goto done;
        int64_t base = out->off[b0];
        if (base + tot > hcap) {
            int64_t nc = hcap ? hcap : 1024;
            while (nc < base + tot) nc *= 2;
            int64_t *ni = (int64_t *)realloc(out->idx, (size_t)nc * 8);
            if (ni) out->idx = ni;
            int32_t *nd = (int32_t *)realloc(out->dist, (size_t)nc * 4);
            if (nd) out->dist = nd;
            if (!ni || !nd) {
                rc = dh_seterr(e, DH_ENOMEM, "out of memory");
                goto done;
            }
            hcap = nc;
        }
        if (tot > 0) {
            if ((rc = dh_cuda_err(cudaMemcpy(out->idx + base, doidx, (size_t)tot * 8, cudaMemcpyDeviceToHost), e,
                                  "k_scatter")))
                goto done;
            if ((rc = dh_cuda_err(cudaMemcpy(out->dist + base, dodist, (size_t)tot * 4, cudaMemcpyDeviceToHost), e,
                                  "download")))
                goto done;
        } else if ((rc = dh_cuda_err(cudaDeviceSynchronize(), e, "k_scatter")))
            goto done;
        for (int i = 0; i < n; i++) out->off[b0 + i + 1] = base + hoff[i + 1];
    }
    if (!out->idx) {
        out->idx = (int64_t *)malloc(8);
        out->dist = (int32_t *)malloc(4);
    }
    if (!out->idx || !out->dist) rc = dh_seterr(e, DH_ENOMEM, "out of memory");
done:
    cudaFree(dq);
    cudaFree(dhist);
    cudaFree(dcut);
    cudaFree(dlim);
    cudaFree(dcnt);
    cudaFree(doff);
    cudaFree(doidx);
    cudaFree(dodist);
    free(hcnt);
    free(hoff);
    if (rc) result_free(out);
    return rc;
}
