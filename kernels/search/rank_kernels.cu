/* rank_kernels.cu — CUDA twins of dh_rank_cpu and dh_map_cpu.
 *
 * The database stays on the device. Per query (one block each):
 *   k_hist    histogram of Hamming distances (and of relevant items)
 *   k_cut     the cut distance for top R / radius and the row count
 *   k_scatter stable counting sort: rows at distance <= cut are written to
 *             their final position, off[d] + (their rank among the rows at
 *             distance d in database order); the rank within a tile comes
 *             from __match_any_sync within a warp plus per-warp counts.
 *   k_map     the same stable per-distance rank for every row gives each
 *             relevant row its position and the number of relevant rows
 *             before it: exact AP (database-order ties) without sorting.
 * Results are identical to the CPU reference for rankings; AP sums differ
 * only in the order of floating-point additions within a query.
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
extern "C" {
#include "evalmap.h"
#include "rank.h"
}

#define NT            256       /* threads per block */
#define NW            (NT / 32) /* warps per block */
#define RANK_MAX_BITS 1024
#define MAP_MAX_BITS  512
#define MAX_WORDS     (RANK_MAX_BITS / 64)

static int ck(cudaError_t err, const char *what, dh_err *e) {
    if (err == cudaSuccess) return DH_OK;
    return dh_seterr(e, err == cudaErrorMemoryAllocation ? DH_ENOMEM : DH_EDEVICE, "CUDA %s: %s", what,
                     cudaGetErrorString(err));
}

__device__ __forceinline__ int ddist(const uint64_t *qs, const uint64_t *db, int64_t j, int W) {
    int d = 0;
    for (int w = 0; w < W; w++) d += __popcll(qs[w] ^ db[j * W + w]);
    return d;
}

/* hist (nq, nb) and, when dlab is given, relhist (nq, nb) */
__global__ void k_hist(const uint64_t *db, const int32_t *dlab, int64_t ndb, int W, int nb, const uint64_t *q,
                       const int32_t *qlab, int *hist, int *relhist) {
    extern __shared__ int sh[];
    __shared__ uint64_t qs[MAX_WORDS];
    int qi = blockIdx.x;
    for (int t = threadIdx.x; t < W; t += blockDim.x) qs[t] = q[(int64_t)qi * W + t];
    for (int t = threadIdx.x; t < 2 * nb; t += blockDim.x) sh[t] = 0;
    __syncthreads();
    int32_t ql = dlab ? qlab[qi] : 0;
    for (int64_t j = threadIdx.x; j < ndb; j += blockDim.x) {
        int d = ddist(qs, db, j, W);
        atomicAdd(&sh[d], 1);
        if (dlab && dlab[j] == ql) atomicAdd(&sh[nb + d], 1);
    }
    __syncthreads();
    for (int t = threadIdx.x; t < nb; t += blockDim.x) {
        hist[(int64_t)qi * nb + t] = sh[t];
        if (dlab) relhist[(int64_t)qi * nb + t] = sh[nb + t];
    }
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

__global__ void k_scatter(const uint64_t *db, int64_t ndb, int W, int nb, const uint64_t *q, const int *hist,
                          const int *cutd, const int *lim, const int64_t *qoff, int64_t *oidx, int32_t *odist) {
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
        int d = j < ndb ? ddist(qs, db, j, W) : nb;
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

struct ks_t {
    long long v[DH_MAP_MAX_K];
};

__global__ void k_map(const uint64_t *db, const int32_t *dlab, int64_t ndb, int W, int nb, const uint64_t *q,
                      const int32_t *qlab, const int *hist, const int *relhist, long long at_r, int nk, ks_t ks,
                      double *o_ap, double *o_apr, unsigned long long *o_relr, unsigned long long *o_relk) {
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
        int d = valid ? ddist(qs, db, j, W) : nb;
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

/* ---- ranking context ----------------------------------------------------------------- */

struct dh_rank_cuda {
    uint64_t *d_db;
    int64_t ndb;
    int bits, W;
};

extern "C" int dh_rank_cuda_available(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n > 0;
}

extern "C" int dh_rank_cuda_open(dh_rank_cuda **ctx, const uint64_t *db, int64_t ndb, int bits, const int32_t *labels,
                                 dh_err *e) {
    *ctx = NULL;
    if (!dh_rank_cuda_available()) return dh_seterr(e, DH_EDEVICE, "no CUDA device");
    if (bits > RANK_MAX_BITS)
        return dh_seterr(e, DH_EUNSUPPORTED, "the CUDA ranking handles codes of at most %d bits", RANK_MAX_BITS);
    if (ndb < 1 || ndb > INT32_MAX) return dh_seterr(e, DH_EINVAL, "database of %lld rows for CUDA", (long long)ndb);
    dh_rank_cuda *c = (dh_rank_cuda *)calloc(1, sizeof *c);
    if (!c) return dh_seterr(e, DH_ENOMEM, "out of memory");
    c->ndb = ndb;
    c->bits = bits;
    c->W = dh_ham_words(bits);
    size_t sz = (size_t)ndb * c->W * sizeof(uint64_t);
    int rc = ck(cudaMalloc(&c->d_db, sz), "cudaMalloc", e);
    if (!rc) rc = ck(cudaMemcpy(c->d_db, db, sz, cudaMemcpyHostToDevice), "upload", e);
    if (rc) {
        cudaFree(c->d_db);
        free(c);
        return rc;
    }
    *ctx = c;
    (void)labels;
    return DH_OK;
}

extern "C" void dh_rank_cuda_close(dh_rank_cuda *c) {
    if (!c) return;
    cudaFree(c->d_db);
    free(c);
}

extern "C" int dh_rank_cuda_run(dh_rank_cuda *c, const uint64_t *q, int64_t nq, int64_t top, int radius,
                                dh_rank_result *out, dh_err *e) {
    memset(out, 0, sizeof *out);
    if (top < 1) return dh_seterr(e, DH_EINVAL, "top must be at least 1");
    int W = c->W, nb = c->bits + 1;
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
    if ((rc = ck(cudaMalloc(&dq, (size_t)nqb * W * 8), "cudaMalloc", e))) goto done;
    if ((rc = ck(cudaMalloc(&dhist, (size_t)nqb * nb * 4), "cudaMalloc", e))) goto done;
    if ((rc = ck(cudaMalloc(&dcut, (size_t)nqb * 4), "cudaMalloc", e))) goto done;
    if ((rc = ck(cudaMalloc(&dlim, (size_t)nqb * 4), "cudaMalloc", e))) goto done;
    if ((rc = ck(cudaMalloc(&dcnt, (size_t)nqb * 8), "cudaMalloc", e))) goto done;
    if ((rc = ck(cudaMalloc(&doff, ((size_t)nqb + 1) * 8), "cudaMalloc", e))) goto done;
    for (int64_t b0 = 0; b0 < nq; b0 += nqb) {
        int n = (int)(nq - b0 < nqb ? nq - b0 : nqb);
        if ((rc = ck(cudaMemcpy(dq, q + b0 * W, (size_t)n * W * 8, cudaMemcpyHostToDevice), "upload", e))) goto done;
        k_hist<<<n, NT, 2 * nb * sizeof(int)>>>(c->d_db, NULL, ndb, W, nb, dq, NULL, dhist, NULL);
        k_cut<<<(n + 127) / 128, 128>>>(dhist, nb, n, R, maxd, dcut, dlim, dcnt);
        if ((rc = ck(cudaGetLastError(), "k_hist/k_cut launch", e))) goto done;
        if ((rc = ck(cudaMemcpy(hcnt, dcnt, (size_t)n * 8, cudaMemcpyDeviceToHost), "k_hist/k_cut", e))) goto done;
        hoff[0] = 0;
        for (int i = 0; i < n; i++) hoff[i + 1] = hoff[i] + hcnt[i];
        int64_t tot = hoff[n];
        if (tot > dcap) {
            cudaFree(doidx);
            cudaFree(dodist);
            doidx = NULL;
            dodist = NULL;
            dcap = tot;
            if ((rc = ck(cudaMalloc(&doidx, (size_t)dcap * 8), "cudaMalloc", e))) goto done;
            if ((rc = ck(cudaMalloc(&dodist, (size_t)dcap * 4), "cudaMalloc", e))) goto done;
        }
        if ((rc = ck(cudaMemcpy(doff, hoff, ((size_t)n + 1) * 8, cudaMemcpyHostToDevice), "upload", e))) goto done;
        size_t shm = (size_t)(2 + NW) * nb * sizeof(int);
        k_scatter<<<n, NT, shm>>>(c->d_db, ndb, W, nb, dq, dhist, dcut, dlim, doff, doidx, dodist);
        if ((rc = ck(cudaGetLastError(), "k_scatter launch", e))) goto done;
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
            if ((rc = ck(cudaMemcpy(out->idx + base, doidx, (size_t)tot * 8, cudaMemcpyDeviceToHost), "k_scatter", e)))
                goto done;
            if ((rc = ck(cudaMemcpy(out->dist + base, dodist, (size_t)tot * 4, cudaMemcpyDeviceToHost), "download", e)))
                goto done;
        } else if ((rc = ck(cudaDeviceSynchronize(), "k_scatter", e)))
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
    if (rc) dh_rank_result_free(out);
    return rc;
}

/* ---- evaluation fast path --------------------------------------------------------------- */

extern "C" int dh_map_cuda(const uint64_t *q, const int32_t *ql, int64_t nq, const uint64_t *db, const int32_t *dl,
                           int64_t ndb, int bits, dh_map_acc *acc, double *gpu_seconds, dh_err *e) {
    *gpu_seconds = 0;
    if (!dh_rank_cuda_available()) return dh_seterr(e, DH_EDEVICE, "no CUDA device");
    if (bits < 1 || bits > MAP_MAX_BITS)
        return dh_seterr(e, DH_EUNSUPPORTED, "the CUDA evaluation handles codes of 1..%d bits", MAP_MAX_BITS);
    if (ndb < 1 || ndb > INT32_MAX) return dh_seterr(e, DH_EINVAL, "database of %lld rows for CUDA", (long long)ndb);
    const dh_map_opts *o = &acc->opt;
    int W = dh_ham_words(bits), nb = bits + 1;
    int64_t nqb = nq < 8192 ? (nq > 0 ? nq : 1) : 8192;
    uint64_t *d_db = NULL, *dq = NULL;
    int32_t *d_dl = NULL, *dql = NULL;
    int *dhist = NULL, *drel = NULL, *hh = NULL, *hr = NULL;
    double *dap = NULL, *dapr = NULL, *hap = NULL, *hapr = NULL;
    unsigned long long *drelr = NULL, *drelk = NULL, *hrelr = NULL, *hrelk = NULL;
    int64_t *h64 = NULL, *r64 = NULL;
    cudaEvent_t ev0 = NULL, ev1 = NULL;
    ks_t ks;
    memset(&ks, 0, sizeof ks);
    for (int k = 0; k < o->nk; k++) ks.v[k] = o->ks[k];
    int rc = DH_OK;
    size_t shm = (size_t)(4 + 2 * NW) * nb * sizeof(int);
    hh = (int *)malloc((size_t)nqb * nb * 4);
    hr = (int *)malloc((size_t)nqb * nb * 4);
    hap = (double *)malloc((size_t)nqb * 8);
    hapr = (double *)malloc((size_t)nqb * 8);
    hrelr = (unsigned long long *)malloc((size_t)nqb * 8);
    hrelk = (unsigned long long *)malloc((size_t)nqb * DH_MAP_MAX_K * 8);
    h64 = (int64_t *)malloc((size_t)nb * 8);
    r64 = (int64_t *)malloc((size_t)nb * 8);
    if (!hh || !hr || !hap || !hapr || !hrelr || !hrelk || !h64 || !r64) {
        rc = dh_seterr(e, DH_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = ck(cudaMalloc(&d_db, (size_t)ndb * W * 8), "cudaMalloc", e))) goto done;
    if ((rc = ck(cudaMalloc(&d_dl, (size_t)ndb * 4), "cudaMalloc", e))) goto done;
    if ((rc = ck(cudaMemcpy(d_db, db, (size_t)ndb * W * 8, cudaMemcpyHostToDevice), "upload", e))) goto done;
    if ((rc = ck(cudaMemcpy(d_dl, dl, (size_t)ndb * 4, cudaMemcpyHostToDevice), "upload", e))) goto done;
    if ((rc = ck(cudaMalloc(&dq, (size_t)nqb * W * 8), "cudaMalloc", e))) goto done;
    if ((rc = ck(cudaMalloc(&dql, (size_t)nqb * 4), "cudaMalloc", e))) goto done;
    if ((rc = ck(cudaMalloc(&dhist, (size_t)nqb * nb * 4), "cudaMalloc", e))) goto done;
    if ((rc = ck(cudaMalloc(&drel, (size_t)nqb * nb * 4), "cudaMalloc", e))) goto done;
    if ((rc = ck(cudaMalloc(&dap, (size_t)nqb * 8), "cudaMalloc", e))) goto done;
    if ((rc = ck(cudaMalloc(&dapr, (size_t)nqb * 8), "cudaMalloc", e))) goto done;
    if ((rc = ck(cudaMalloc(&drelr, (size_t)nqb * 8), "cudaMalloc", e))) goto done;
    if ((rc = ck(cudaMalloc(&drelk, (size_t)nqb * DH_MAP_MAX_K * 8), "cudaMalloc", e))) goto done;
    if ((rc = ck(cudaEventCreate(&ev0), "event", e)) || (rc = ck(cudaEventCreate(&ev1), "event", e))) goto done;
    for (int64_t b0 = 0; b0 < nq; b0 += nqb) {
        int n = (int)(nq - b0 < nqb ? nq - b0 : nqb);
        cudaEventRecord(ev0);
        if ((rc = ck(cudaMemcpy(dq, q + b0 * W, (size_t)n * W * 8, cudaMemcpyHostToDevice), "upload", e))) goto done;
        if ((rc = ck(cudaMemcpy(dql, ql + b0, (size_t)n * 4, cudaMemcpyHostToDevice), "upload", e))) goto done;
        k_hist<<<n, NT, 2 * nb * sizeof(int)>>>(d_db, d_dl, ndb, W, nb, dq, dql, dhist, drel);
        k_map<<<n, NT, shm>>>(d_db, d_dl, ndb, W, nb, dq, dql, dhist, drel, (long long)o->at_r, o->nk, ks, dap, dapr,
                              drelr, drelk);
        if ((rc = ck(cudaGetLastError(), "kernel launch", e))) goto done;
        if ((rc = ck(cudaMemcpy(hh, dhist, (size_t)n * nb * 4, cudaMemcpyDeviceToHost), "k_hist/k_map", e))) goto done;
        if ((rc = ck(cudaMemcpy(hr, drel, (size_t)n * nb * 4, cudaMemcpyDeviceToHost), "download", e))) goto done;
        if ((rc = ck(cudaMemcpy(hap, dap, (size_t)n * 8, cudaMemcpyDeviceToHost), "download", e))) goto done;
        if ((rc = ck(cudaMemcpy(hapr, dapr, (size_t)n * 8, cudaMemcpyDeviceToHost), "download", e))) goto done;
        if ((rc = ck(cudaMemcpy(hrelr, drelr, (size_t)n * 8, cudaMemcpyDeviceToHost), "download", e))) goto done;
        if ((rc = ck(cudaMemcpy(hrelk, drelk, (size_t)n * DH_MAP_MAX_K * 8, cudaMemcpyDeviceToHost), "download", e)))
            goto done;
        cudaEventRecord(ev1);
        cudaEventSynchronize(ev1);
        float ms = 0;
        cudaEventElapsedTime(&ms, ev0, ev1);
        *gpu_seconds += ms / 1e3;
        for (int i = 0; i < n; i++) {
            dh_map_qraw raw;
            memset(&raw, 0, sizeof raw);
            int64_t tot = 0;
            for (int d = 0; d < nb; d++) {
                h64[d] = hh[(int64_t)i * nb + d];
                r64[d] = hr[(int64_t)i * nb + d];
                tot += r64[d];
            }
            raw.hist = h64;
            raw.relhist = r64;
            raw.rel_total = tot;
            raw.len = ndb;
            raw.complete_upto = bits;
            raw.ap_sum = hap[i];
            raw.apr_sum = hapr[i];
            raw.rel_at_r = (int64_t)hrelr[i];
            for (int k = 0; k < o->nk; k++) raw.rel_k[k] = (int64_t)hrelk[(int64_t)i * DH_MAP_MAX_K + k];
            dh_map_acc_add(acc, &raw);
        }
    }
done:
    if (ev0) cudaEventDestroy(ev0);
    if (ev1) cudaEventDestroy(ev1);
    cudaFree(d_db);
    cudaFree(d_dl);
    cudaFree(dq);
    cudaFree(dql);
    cudaFree(dhist);
    cudaFree(drel);
    cudaFree(dap);
    cudaFree(dapr);
    cudaFree(drelr);
    cudaFree(drelk);
    free(hh);
    free(hr);
    free(hap);
    free(hapr);
    free(hrelr);
    free(hrelk);
    free(h64);
    free(r64);
    return rc;
}
