// deeploss_kernels.cu — the device path of the deep hashing losses
// (deeploss_cuda.h; the C side, deeploss_device.c, checks the batch and
// computes the host-label scalars first). Everything is computed in double,
// as the CPU reference (deeploss_pair.c, deeploss_class.c,
// deeploss_multi.c): the GPU differs from it only by the order of the sums.
//
// The pairwise family (DPSH, DHN, HashNet, DCH, DSH; DTSH, MIHash) in three kernels:
//   dl_prep   one block per row: x = the method's transform of u (u, tanh u,
//             tanh(beta u), 2 sigmoid(a u) - 1) in double, the row's norm and its per-row
//             regulariser sum;
//   dl_pairs  one block per row i, a warp per partner j: x_i.x_j (and
//             |x_i - x_j|^2 for DSH) by a warp reduction, then the pair's
//             loss and its weight G_ij, the coefficient of x_j in dL/dx_i
//             (both orders of the pair); the coefficient of x_i itself
//             (DSH, DCH) is summed over j in a fixed order into G_ii. Row
//             i's loss goes to a per-row slot (no atomics: deterministic);
//   dl_rows   one thread per (i, k): dL/dx_ik = sum_j G_ij x_jk, plus the
//             element's regulariser, times dx/du.
// DTSH adds dl_triplets between dl_pairs (which then stores theta and the
// similarity) and dl_rows (which symmetrises its weights A); MIHash adds
// dl_mihash (dl_pairs stores the distances; per anchor, the soft histograms
// and dL/dD_ij, symmetrised by dl_rows). CSQ and
// OrthoHash are per row (dl_csq, dl_ortho: one block per row against the
// codebook). The paper's loss is dhcu_hashloss (hashloss_kernels.cu).
// Buffers (x, G, per-row slots, labels, codebook) are kept between calls
// and grown on demand: no cudaMalloc per step once the batch size is seen.
#include <cuda_runtime.h>
#include <math.h>
#include <string.h>
extern "C" {
#include "dh_cuda.h"
#include "deeploss_cuda.h"
#include "deeploss_elem.h"
#include "hashloss.h"
}

#define DL_THREADS    128
#define DL_PAIR_WARPS 8
/* per-row slots: 0 the pairs' (triplets') loss, 1 the regulariser's, 2 the
 * norm of x_i, 3 DCH's cq (DTSH: the anchor's triplets), 4 DCH's dL/dcq */
#define DL_NROW  5
#define DCH_DMIN 1e-6

// ---- the CPU reference's scalar helpers, in double ------------------------------------------------------------------
// dl_sign, dl_sigmoid, dl_softplus, dl_logcosh: deeploss_elem.h (the same code as the CPU reference)

__device__ __forceinline__ double warp_sum(double v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}
/* Sum over the block (blockDim.x a multiple of 32, at most 1024), in a fixed
 * order; every thread gets the result. sh: 32 doubles of shared memory. */
__device__ double block_sum(double v, double *sh) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = warp_sum(v);
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    double s = 0;
    for (int w = 0; w < nw; w++) s += sh[w];
    return s;
}
__device__ double block_max(double v, double *sh) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    for (int off = 16; off > 0; off >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, off));
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    double s = -INFINITY;
    for (int w = 0; w < nw; w++) s = fmax(s, sh[w]);
    return s;
}

/* 1 when rows i and j share a label, as dl_similar; called by a whole warp
 * (multi-hot rows: the lanes split the classes). */
__device__ __forceinline__ int warp_similar(const int32_t *lab, const uint8_t *multi, int C, int i, int j, int lane) {
    if (lab) return lab[i] == lab[j];
    int any = 0;
    for (int c = lane; c < C; c += 32) any |= multi[(size_t)i * C + c] && multi[(size_t)j * C + c];
    return __any_sync(0xffffffffu, any) ? 1 : 0;
}

/* dl_cu_args without the host pointers, for the kernels */
struct dl_kargs {
    int method, B, K, C;
    double s[DL_CU_NSCAL];
};

// ---- dl_prep: the transform, norms, per-row regulariser sums --------------------------------------------------------
__global__ void dl_prep(dl_kargs a, const float *__restrict__ u, double *__restrict__ x, double *__restrict__ row) {
    __shared__ double sh[32];
    const int i = blockIdx.x, K = a.K;
    double nn = 0, reg = 0, sabs = 0;
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        double v = u[(size_t)i * K + k], t;
        switch (a.method) {
        case DL_CU_DHN:
        case DL_CU_DCH: t = tanh(v); break;
        case DL_CU_HASHNET: t = tanh(a.s[1] * v); break;
        case DL_CU_MIHASH: t = 2 * dl_sigmoid(a.s[1] * v) - 1; break;
        default: t = v;
        }
        x[(size_t)i * K + k] = t;
        nn += t * t;
        sabs += fabs(t);
        switch (a.method) {
        case DL_CU_DPSH:
        case DL_CU_DTSH: {
            double r = v - dl_sign(v);
            reg += r * r;
        } break;
        case DL_CU_DHN: reg += dl_logcosh(fabs(t) - 1); break;
        case DL_CU_DSH: reg += fabs(fabs(v) - 1); break;
        default: break;
        }
    }
    nn = block_sum(nn, sh);
    reg = block_sum(reg, sh);
    sabs = block_sum(sabs, sh);
    if (threadIdx.x == 0) {
        double *r = row + (size_t)i * DL_NROW;
        r[1] = reg;
        r[2] = fmax(sqrt(nn), 1e-12); /* the row's norm (DCH) */
        if (a.method == DL_CU_DCH) {  /* Cauchy quantisation: its loss and its dL/dcq */
            double gamma = a.s[0], lambda = a.s[1], P = a.s[4], half = 0.5 * K;
            double cq = sabs / (r[2] * sqrt((double)K)), dq = half * (1 - cq);
            r[1] = log1p(dq / gamma);
            r[3] = cq;
            r[4] = lambda / P / (gamma + dq) * (-half);
        }
    }
}

// ---- dl_pairs: one block per row i, a warp per partner j -----------------------------------------------------------
__global__ void dl_pairs(dl_kargs a, const double *__restrict__ x, const int32_t *__restrict__ lab,
                         const uint8_t *__restrict__ multi, double *__restrict__ G, uint8_t *__restrict__ S,
                         double *__restrict__ row) {
    __shared__ double sl[DL_PAIR_WARPS], sd[DL_PAIR_WARPS];
    const int i = blockIdx.x, B = a.B, K = a.K;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const double *xi = x + (size_t)i * K;
    const double ni = row[(size_t)i * DL_NROW + 2], half = 0.5 * K;
    double lsum = 0, dsum = 0; /* lane 0's: the row's loss, the coefficient of x_i */
    for (int j = warp; j < B; j += DL_PAIR_WARPS) {
        if (j == i && a.method != DL_CU_DTSH) continue;
        const double *xj = x + (size_t)j * K;
        double dot = 0, dd = 0;
        for (int k = lane; k < K; k += 32) {
            dot += xi[k] * xj[k];
            if (a.method == DL_CU_DSH) dd += (xi[k] - xj[k]) * (xi[k] - xj[k]);
        }
        dot = warp_sum(dot);
        if (a.method == DL_CU_DSH) dd = warp_sum(dd);
        const int sim = warp_similar(lab, multi, a.C, i, j, lane);
        /* every lane has the sums: the pair's arithmetic in all of them (no
         * divergence before the next shuffle), lane 0 writes */
        const double s = sim;
        double l = 0, g = 0, gd = 0;
        switch (a.method) {
        case DL_CU_DPSH: {
            double th = 0.5 * dot, P = a.s[1];
            l = dl_softplus(th) - s * th;
            g = (dl_sigmoid(th) - s) / P;
        } break;
        case DL_CU_DHN: {
            double P = a.s[1];
            l = dl_softplus(dot) - s * dot;
            g = 2 * (dl_sigmoid(dot) - s) / P;
        } break;
        case DL_CU_HASHNET: {
            double alpha = a.s[0], w = sim ? a.s[2] : a.s[3], P = a.s[4], xx = alpha * dot;
            l = w * (dl_softplus(xx) - s * xx);
            g = 2 * w * (dl_sigmoid(xx) - s) * alpha / P;
        } break;
        case DL_CU_DCH: {
            double gamma = a.s[0], w = sim ? a.s[2] : a.s[3], P = a.s[4];
            double nj = row[(size_t)j * DL_NROW + 2], c = dot / (ni * nj), d = half * (1 - c), dl_dd;
            if (d < DCH_DMIN) {
                d = DCH_DMIN;
                dl_dd = 0;
            } else
                dl_dd = sim ? 1 / (gamma + d) : -gamma / (d * (d + gamma));
            l = w * (sim ? log1p(d / gamma) : log1p(gamma / d));
            double gc = 2 * w * dl_dd * (-half) / P; /* dL/dc, both orders */
            g = gc / (ni * nj);
            gd = -gc * c / (ni * ni);
        } break;
        case DL_CU_DSH: {
            double m = a.s[0], P = a.s[2], gD;
            if (sim) {
                l = 0.5 * dd;
                gD = 1 / P;
            } else if (dd < m) {
                l = 0.5 * (m - dd);
                gD = -1 / P;
            } else
                gD = 0;
            g = -2 * gD;
            gd = 2 * gD;
        } break;
        case DL_CU_DTSH: g = 0.5 * dot; break;         /* theta, for dl_triplets */
        case DL_CU_MIHASH: g = 0.5 * (K - dot); break; /* the distance, for dl_mihash */
        }
        if (lane == 0) {
            G[(size_t)i * B + j] = g;
            if (a.method == DL_CU_DTSH || a.method == DL_CU_MIHASH) S[(size_t)i * B + j] = (uint8_t)sim;
            lsum += l;
            dsum += gd;
        }
    }
    if (lane == 0) {
        sl[warp] = lsum;
        sd[warp] = dsum;
    }
    __syncthreads();
    if (threadIdx.x == 0 && a.method != DL_CU_DTSH) {
        double l = 0, d = 0;
        for (int w = 0; w < DL_PAIR_WARPS; w++) {
            l += sl[w];
            d += sd[w];
        }
        G[(size_t)i * B + i] = d;
        row[(size_t)i * DL_NROW + 0] = l;
    }
}

// ---- dl_triplets (DTSH): one block per anchor q, a thread per row j ------------------------------------------------
/* A_qj = sum of g over the triplets where j is the positive, minus the sum
 * where j is the negative; g = sigma(x) - 1, x = theta_qp - theta_qn - margin
 * (th: theta from dl_pairs; A into At). */
__global__ void dl_triplets(dl_kargs a, const double *__restrict__ th, const uint8_t *__restrict__ S,
                            double *__restrict__ At, double *__restrict__ row) {
    __shared__ double sh[32];
    const int q = blockIdx.x, B = a.B;
    const double margin = a.s[0];
    const double *tq = th + (size_t)q * B;
    const uint8_t *sq = S + (size_t)q * B;
    double loss = 0, np = 0, nn = 0;
    for (int j = threadIdx.x; j < B; j += blockDim.x) {
        double acc = 0;
        if (j != q && sq[j]) { /* j is a positive */
            np += 1;
            for (int n = 0; n < B; n++) {
                if (sq[n]) continue;
                double xx = tq[j] - tq[n] - margin;
                loss += dl_softplus(-xx);
                acc += dl_sigmoid(xx) - 1;
            }
        }
        if (!sq[j]) { /* j is a negative */
            nn += 1;
            for (int p = 0; p < B; p++) {
                if (p == q || !sq[p]) continue;
                double xx = tq[p] - tq[j] - margin;
                acc -= dl_sigmoid(xx) - 1;
            }
        }
        At[(size_t)q * B + j] = acc;
    }
    loss = block_sum(loss, sh);
    np = block_sum(np, sh);
    nn = block_sum(nn, sh);
    if (threadIdx.x == 0) {
        row[(size_t)q * DL_NROW + 0] = loss;
        row[(size_t)q * DL_NROW + 3] = np * nn; /* triplets anchored at q */
    }
}

/* DTSH's 1 / T (T: every anchor's triplets), in one thread: a fixed order. */
__global__ void dl_triplet_count(int B, double *row, double *inv) {
    if (threadIdx.x || blockIdx.x) return;
    double T = 0;
    for (int q = 0; q < B; q++) T += row[(size_t)q * DL_NROW + 3];
    inv[0] = 1.0 / (T > 0 ? T : 1);
    inv[1] = T;
}

// ---- dl_mihash (MIHash): one block per anchor i ------------------------------------------------------------------------
/* The anchor's soft histograms of the distances D_ij (dl_pairs) to its
 * neighbours and non-neighbours, in the order of the CPU reference (one
 * thread, j ascending: the same sums), its mutual information into row slot
 * 0, then dL/dD_ij into At (row i; 0 when the anchor has a single class). */
__device__ __forceinline__ double d_mlog2(double p) { return p > 0 ? -log2(p) : 0; }
__device__ double d_entropy2(const double *p, int n) {
    double h = 0;
    for (int l = 0; l < n; l++)
        if (p[l] > 0) h -= p[l] * log2(p[l]);
    return h;
}
__device__ __forceinline__ void mi_bin(double d, double delta, int nb, int *l, double *frac) {
    double xx = d / delta;
    int b = (int)floor(xx);
    if (b < 0) b = 0;
    if (b > nb - 1) b = nb - 1;
    *l = b;
    *frac = fmin(fmax(xx - b, 0.0), 1.0);
}
__global__ void dl_mihash(dl_kargs a, const double *__restrict__ D, const uint8_t *__restrict__ S,
                          double *__restrict__ H, double *__restrict__ At, double *__restrict__ row) {
    __shared__ int skip;
    const int i = blockIdx.x, B = a.B, nb = (int)a.s[0], NL = nb + 1;
    const double delta = (double)a.K / nb;
    const double *Di = D + (size_t)i * B;
    const uint8_t *Si = S + (size_t)i * B;
    double *pp = H + (size_t)i * 3 * NL, *pn = pp + NL, *pd = pn + NL;
    if (threadIdx.x == 0) {
        int np = 0, nn = 0;
        for (int l = 0; l < 3 * NL; l++) pp[l] = 0;
        for (int j = 0; j < B; j++) {
            if (j == i) continue;
            int l;
            double frac;
            mi_bin(Di[j], delta, nb, &l, &frac);
            double *h = Si[j] ? (np++, pp) : (nn++, pn);
            h[l] += 1 - frac;
            h[l + 1] += frac;
        }
        skip = np == 0 || nn == 0;
        double mi = 0;
        if (!skip) {
            double pip = (double)np / (B - 1), pin = (double)nn / (B - 1);
            for (int l = 0; l < NL; l++) {
                pd[l] = (pp[l] + pn[l]) / (B - 1);
                pp[l] /= np;
                pn[l] /= nn;
            }
            mi = d_entropy2(pd, NL) - pip * d_entropy2(pp, NL) - pin * d_entropy2(pn, NL);
        }
        row[(size_t)i * DL_NROW + 0] = mi;
    }
    __syncthreads();
    for (int j = threadIdx.x; j < B; j += blockDim.x) {
        double g = 0;
        if (!skip && j != i) {
            const double *pc = Si[j] ? pp : pn;
            int l;
            double frac;
            mi_bin(Di[j], delta, nb, &l, &frac);
            double dmi =
                ((d_mlog2(pd[l + 1]) - d_mlog2(pc[l + 1])) - (d_mlog2(pd[l]) - d_mlog2(pc[l]))) / delta / (B - 1);
            g = -dmi / B;
        }
        At[(size_t)i * B + j] = g;
    }
}

// ---- dl_rows: dL/du_ik = (sum_j G_ij x_jk + the element's terms) dx/du ----------------------------------------------
__global__ void dl_rows(dl_kargs a, const float *__restrict__ u, const double *__restrict__ x,
                        const double *__restrict__ G, const double *__restrict__ At, const double *__restrict__ row,
                        const double *__restrict__ inv, float *__restrict__ du) {
    const int i = blockIdx.x, B = a.B, K = a.K;
    const int k = blockIdx.y * blockDim.x + threadIdx.x;
    if (k >= K) return;
    const double *Gi = G + (size_t)i * B;
    double dx = 0;
    if (a.method == DL_CU_DTSH) { /* G_ij = (A_ij + A_ji) / (2 T) */
        for (int j = 0; j < B; j++) dx += (At[(size_t)i * B + j] + At[(size_t)j * B + i]) * x[(size_t)j * K + k];
        dx *= 0.5 * inv[0];
    } else if (a.method == DL_CU_MIHASH) { /* dD_ij/dphi_i = -phi_j / 2, from both anchors */
        for (int j = 0; j < B; j++) dx += (At[(size_t)i * B + j] + At[(size_t)j * B + i]) * x[(size_t)j * K + k];
        dx *= -0.5;
    } else
        for (int j = 0; j < B; j++) dx += Gi[j] * x[(size_t)j * K + k];
    const double v = u[(size_t)i * K + k], t = x[(size_t)i * K + k];
    double g;
    switch (a.method) {
    case DL_CU_DPSH: g = dx + 2 * a.s[0] * (v - dl_sign(v)) / a.s[1]; break;
    case DL_CU_DTSH: g = dx + 2 * a.s[1] * (v - dl_sign(v)) * inv[0]; break;
    case DL_CU_DHN: {
        double wq = a.s[0] * 2.0 * (B - 1) / a.s[1], am = fabs(t) - 1;
        g = (dx + wq * tanh(am) * dl_sign(t)) * (1 - t * t);
    } break;
    case DL_CU_HASHNET: g = dx * a.s[1] * (1 - t * t); break;
    case DL_CU_MIHASH: g = dx * a.s[1] * 0.5 * (1 - t * t); break;
    case DL_CU_DCH: {
        const double *r = row + (size_t)i * DL_NROW;
        double ni = r[2], cq = r[3], gq = r[4];
        g = (dx + gq * (dl_sign(t) / (ni * sqrt((double)K)) - cq * t / (ni * ni))) * (1 - t * t);
    } break;
    case DL_CU_DSH: {
        double wr = a.s[1] * 2.0 * (B - 1) / a.s[2];
        g = dx + wr * dl_sign(fabs(v) - 1) * dl_sign(v);
    } break;
    default: g = 0;
    }
    du[(size_t)i * K + k] = (float)g;
}

// ---- CSQ: one block per row, against its centre ---------------------------------------------------------------------
__global__ void dl_csq(dl_kargs a, const float *__restrict__ u, const int32_t *__restrict__ lab,
                       const uint8_t *__restrict__ multi, const float *__restrict__ cb, const float *__restrict__ tie,
                       float *__restrict__ du, double *__restrict__ row) {
    __shared__ double sh[32];
    __shared__ int any;
    const int i = blockIdx.x, K = a.K, C = a.C, B = a.B;
    const double lambda = a.s[0];
    if (threadIdx.x == 0) {
        any = 1;
        if (!lab) {
            any = 0;
            for (int y = 0; y < C; y++) any |= multi[(size_t)i * C + y] != 0;
        }
    }
    __syncthreads();
    double bce = 0, quant = 0;
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        double g = 0;
        if (any) {
            double c;
            if (lab)
                c = cb[(size_t)lab[i] * K + k];
            else {
                c = 0;
                for (int y = 0; y < C; y++)
                    if (multi[(size_t)i * C + y]) c += cb[(size_t)y * K + k];
                c = c > 0 ? 1 : c < 0 ? -1 : tie[k];
            }
            double v = u[(size_t)i * K + k], t = 0.5 * (c + 1), xx = 2 * v, h = tanh(v), am = fabs(h) - 1;
            bce += dl_softplus(xx) - t * xx;
            quant += dl_logcosh(am);
            g = (2 * (dl_sigmoid(xx) - t) / K + lambda * tanh(am) * dl_sign(h) * (1 - h * h)) / B;
        }
        if (du) du[(size_t)i * K + k] = (float)g;
    }
    bce = block_sum(bce, sh);
    quant = block_sum(quant, sh);
    if (threadIdx.x == 0) {
        row[(size_t)i * DL_NROW + 0] = bce;
        row[(size_t)i * DL_NROW + 1] = quant;
    }
}

// ---- OrthoHash: one block per row, a warp per codeword; the logits (then dL/dcos) and the cosines in scratch (B, 2C) -
__global__ void dl_ortho(dl_kargs a, const float *__restrict__ u, const int32_t *__restrict__ lab,
                         const uint8_t *__restrict__ multi, const float *__restrict__ cb, double *__restrict__ zs,
                         float *__restrict__ du, double *__restrict__ row) {
    __shared__ double sh[32];
    const int i = blockIdx.x, K = a.K, C = a.C, B = a.B;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    const double s = a.s[0], m = a.s[1], quan = a.s[2], sk = sqrt((double)K);
    const float *ui = u + (size_t)i * K;
    double *z = zs + (size_t)i * 2 * C, *cs = z + C; /* logits, then dL/dcos; cosines */
    double nn = 0, sabs = 0, ny = 0;
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        double v = ui[k];
        nn += v * v;
        sabs += fabs(v);
    }
    for (int c = threadIdx.x; c < C; c += blockDim.x) ny += lab ? (lab[i] == c) : (multi[(size_t)i * C + c] ? 1 : 0);
    const double nu = fmax(sqrt(block_sum(nn, sh)), 1e-12);
    sabs = block_sum(sabs, sh);
    ny = block_sum(ny, sh);
    if (ny == 0) { /* a row without labels: no loss, no gradient */
        for (int k = threadIdx.x; k < K; k += blockDim.x)
            if (du) du[(size_t)i * K + k] = 0.0f;
        if (threadIdx.x == 0) row[(size_t)i * DL_NROW + 0] = row[(size_t)i * DL_NROW + 1] = 0;
        return;
    }
    for (int c = warp; c < C; c += nw) {
        double d = 0;
        for (int k = lane; k < K; k += 32) d += (double)ui[k] * cb[(size_t)c * K + k];
        d = warp_sum(d);
        if (lane == 0) {
            double y = lab ? (lab[i] == c) : (multi[(size_t)i * C + c] ? 1 : 0);
            cs[c] = d / (nu * sk);
            z[c] = s * (cs[c] - m * y);
        }
    }
    __syncthreads();
    double zmax = -INFINITY;
    for (int c = threadIdx.x; c < C; c += blockDim.x) zmax = fmax(zmax, z[c]);
    zmax = block_max(zmax, sh);
    double ze = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) ze += exp(z[c] - zmax);
    const double lse = zmax + log(block_sum(ze, sh));
    double ce = 0, gcs = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        double y = lab ? (lab[i] == c) : (multi[(size_t)i * C + c] ? 1 : 0), t = y / ny;
        ce -= t * (z[c] - lse);
        z[c] = (exp(z[c] - lse) - t) * s / B; /* dL/dcos_ic */
        gcs += z[c] * cs[c];
    }
    ce = block_sum(ce, sh); /* its __syncthreads: z is complete */
    gcs = block_sum(gcs, sh);
    const double cq = sabs / (nu * sk);
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        double g = 0, v = ui[k];
        for (int c = 0; c < C; c++) g += z[c] * cb[(size_t)c * K + k];
        g = g / (nu * sk) - gcs * v / (nu * nu);
        if (quan > 0) g -= quan / B * (dl_sign(v) / (nu * sk) - cq * v / (nu * nu));
        if (du) du[(size_t)i * K + k] = (float)g;
    }
    if (threadIdx.x == 0) {
        row[(size_t)i * DL_NROW + 0] = ce;
        row[(size_t)i * DL_NROW + 1] = quan > 0 ? 1 - cq : 0;
    }
}

// ---- buffers kept between calls ---------------------------------------------------------------------------------------
static double *g_x, *g_G, *g_At, *g_row, *g_inv, *g_zs, *g_H;
static uint8_t *g_S, *g_multi;
static int32_t *g_lab;
static float *g_cb, *g_tie;
static size_t g_cap_x, g_cap_G, g_cap_At, g_cap_row, g_cap_inv, g_cap_zs, g_cap_H, g_cap_S, g_cap_multi, g_cap_lab,
    g_cap_cb, g_cap_tie;

#define GROW(p, n, what) dh_cuda_grow((void **)&g_##p, &g_cap_##p, (n), e, what)

extern "C" void dhcu_dloss_release(void) {
    void *ps[] = { g_x, g_G, g_At, g_row, g_inv, g_zs, g_H, g_S, g_multi, g_lab, g_cb, g_tie };
    for (size_t t = 0; t < sizeof ps / sizeof ps[0]; t++) cudaFree(ps[t]);
    g_x = g_G = g_At = g_row = g_inv = g_zs = g_H = NULL;
    g_S = g_multi = NULL;
    g_lab = NULL;
    g_cb = g_tie = NULL;
    g_cap_x = g_cap_G = g_cap_At = g_cap_row = g_cap_inv = g_cap_zs = g_cap_H = g_cap_S = g_cap_multi = g_cap_lab =
        g_cap_cb = g_cap_tie = 0;
}

static double sum_slot(const double *row, int B, int slot) {
    double s = 0;
    for (int i = 0; i < B; i++) s += row[(size_t)i * DL_NROW + slot];
    return s;
}

extern "C" int dhcu_dloss(const dl_cu_args *a, double *term, dh_err *e) {
    const int B = a->B, K = a->K, C = a->C, me = a->method;
    const int pairwise = me == DL_CU_DPSH || me == DL_CU_DHN || me == DL_CU_HASHNET || me == DL_CU_DCH ||
                         me == DL_CU_DSH || me == DL_CU_DTSH || me == DL_CU_MIHASH;
    if (me <= DL_CU_NONE || me > DL_CU_MIHASH || B < 2 || K < 1 || !a->u || (!a->labels && !a->multi))
        return dh_seterr(e, DH_EINVAL, "deep loss (CUDA): bad arguments (method %d, %d x %d)", me, B, K);
    const double bb = (double)B * B * sizeof(double) * (me == DL_CU_DTSH || me == DL_CU_MIHASH ? 2 : 1);
    if (pairwise && bb > 16.0 * (1u << 30))
        return dh_seterr(e, DH_ELIMIT,
                         "deep loss (CUDA): a batch of %d rows needs %.0f GiB of B x B matrices (at most 16 GiB)", B,
                         bb / (1u << 30));
    for (int t = 0; t < DL_CU_NTERMS; t++) term[t] = 0;
    int rc = 0;
    /* the labels */
    if (a->labels) {
        rc = GROW(lab, sizeof(int32_t) * (size_t)B, "deep loss: device buffer");
        if (rc) return rc;
        DH_CUDA_TRY(cudaMemcpy(g_lab, a->labels, sizeof(int32_t) * (size_t)B, cudaMemcpyHostToDevice), e,
                    "deep loss: copying the labels");
    } else {
        rc = GROW(multi, (size_t)B * C, "deep loss: device buffer");
        if (rc) return rc;
        DH_CUDA_TRY(cudaMemcpy(g_multi, a->multi, (size_t)B * C, cudaMemcpyHostToDevice), e,
                    "deep loss: copying the labels");
    }
    const int32_t *lab = a->labels ? g_lab : NULL;
    const uint8_t *multi = a->labels ? NULL : g_multi;
    if (me == DL_CU_DEEPHASH) {
        if (!lab) return dh_seterr(e, DH_EUNSUPPORTED, "deep loss deephash (CUDA): single-label only");
        dh_hashloss_stats hs;
        memset(&hs, 0, sizeof hs);
        rc = dhcu_hashloss(a->u, lab, B, K, a->s[0], a->s[1], a->du, &hs, e);
        if (rc) return rc;
        term[0] = hs.surrogate;
        term[1] = hs.q;
        term[2] = hs.right;
        return DH_OK;
    }
    dl_kargs ka;
    ka.method = me;
    ka.B = B;
    ka.K = K;
    ka.C = C;
    memcpy(ka.s, a->s, sizeof ka.s);
    rc = GROW(row, sizeof(double) * (size_t)B * DL_NROW, "deep loss: device buffer");
    if (rc) return rc;
    if (me == DL_CU_CSQ || me == DL_CU_ORTHOHASH) {
        if (!a->codebook || C < 1) return dh_seterr(e, DH_EINVAL, "deep loss (CUDA): no codebook");
        rc = GROW(cb, sizeof(float) * (size_t)C * K, "deep loss: device buffer");
        if (!rc && a->tie) rc = GROW(tie, sizeof(float) * (size_t)K, "deep loss: device buffer");
        if (!rc && me == DL_CU_ORTHOHASH) rc = GROW(zs, sizeof(double) * 2 * (size_t)B * C, "deep loss: device buffer");
        if (rc) return rc;
        DH_CUDA_TRY(cudaMemcpy(g_cb, a->codebook, sizeof(float) * (size_t)C * K, cudaMemcpyHostToDevice), e,
                    "deep loss: copying the codebook");
        if (a->tie)
            DH_CUDA_TRY(cudaMemcpy(g_tie, a->tie, sizeof(float) * (size_t)K, cudaMemcpyHostToDevice), e,
                        "deep loss: copying the codebook");
        if (me == DL_CU_CSQ)
            dl_csq<<<B, DL_THREADS>>>(ka, a->u, lab, multi, g_cb, a->tie ? g_tie : NULL, a->du, g_row);
        else
            dl_ortho<<<B, DL_THREADS>>>(ka, a->u, lab, multi, g_cb, g_zs, a->du, g_row);
        DH_CUDA_TRY(cudaGetLastError(), e, "deep loss kernel");
    } else {
        rc = GROW(x, sizeof(double) * (size_t)B * K, "deep loss: device buffer");
        if (!rc) rc = GROW(G, sizeof(double) * (size_t)B * B, "deep loss: device buffer");
        const int two = me == DL_CU_DTSH || me == DL_CU_MIHASH; /* a second B x B matrix and the similarities */
        if (!rc && two) rc = GROW(At, sizeof(double) * (size_t)B * B, "deep loss: device buffer");
        if (!rc && two) rc = GROW(S, (size_t)B * B, "deep loss: device buffer");
        if (!rc && me == DL_CU_DTSH) rc = GROW(inv, 2 * sizeof(double), "deep loss: device buffer");
        if (!rc && me == DL_CU_MIHASH)
            rc = GROW(H, sizeof(double) * 3 * (size_t)B * ((size_t)a->s[0] + 1), "deep loss: device buffer");
        if (rc) return rc;
        dl_prep<<<B, DL_THREADS>>>(ka, a->u, g_x, g_row);
        dl_pairs<<<B, 32 * DL_PAIR_WARPS>>>(ka, g_x, lab, multi, g_G, g_S, g_row);
        if (me == DL_CU_DTSH) {
            dl_triplets<<<B, DL_THREADS>>>(ka, g_G, g_S, g_At, g_row);
            dl_triplet_count<<<1, 32>>>(B, g_row, g_inv);
        }
        if (me == DL_CU_MIHASH) dl_mihash<<<B, DL_THREADS>>>(ka, g_G, g_S, g_H, g_At, g_row);
        if (a->du) {
            dim3 grid(B, (K + DL_THREADS - 1) / DL_THREADS);
            dl_rows<<<grid, DL_THREADS>>>(ka, a->u, g_x, g_G, g_At, g_row, g_inv, a->du);
        }
        DH_CUDA_TRY(cudaGetLastError(), e, "deep loss kernel");
    }
    double *row = (double *)malloc(sizeof(double) * (size_t)B * DL_NROW);
    if (!row) return dh_seterr(e, DH_ENOMEM, "deep loss (CUDA): out of memory");
    cudaError_t st = cudaMemcpy(row, g_row, sizeof(double) * (size_t)B * DL_NROW, cudaMemcpyDeviceToHost);
    if (st != cudaSuccess) {
        free(row);
        return dh_cuda_err(st, e, "deep loss kernel");
    }
    const double l0 = sum_slot(row, B, 0), l1 = sum_slot(row, B, 1);
    switch (me) {
    case DL_CU_DPSH:
        term[0] = l0 / a->s[1];
        term[1] = a->s[0] * l1 / a->s[1];
        break;
    case DL_CU_DHN:
        term[0] = l0 / a->s[1];
        term[1] = a->s[0] * 2.0 * (B - 1) / a->s[1] * l1;
        break;
    case DL_CU_HASHNET: term[0] = l0 / a->s[4]; break;
    case DL_CU_DCH:
        term[0] = l0 / a->s[4];
        term[1] = a->s[1] * l1 / a->s[4];
        break;
    case DL_CU_DSH:
        term[0] = l0 / a->s[2];
        term[1] = a->s[1] * 2.0 * (B - 1) / a->s[2] * l1;
        break;
    case DL_CU_DTSH: {
        double T = sum_slot(row, B, 3), inv = 1.0 / (T > 0 ? T : 1);
        term[0] = l0 * inv;
        term[1] = a->s[1] * l1 * inv;
    } break;
    case DL_CU_MIHASH: term[0] = -l0 / B; break;
    case DL_CU_CSQ:
        term[0] = l0 / K / B;
        term[1] = a->s[0] * l1 / B;
        break;
    case DL_CU_ORTHOHASH:
        term[0] = l0 / B;
        term[1] = a->s[2] * l1 / B;
        break;
    }
    free(row);
    return DH_OK;
}
