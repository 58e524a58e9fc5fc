// hashloss_kernels.cu — CUDA twin of hashloss.c (in libdhcuda.so; hashloss.c
// checks the arguments and calls these through dh_cudaload.h).
//
// One block per row i; its 8 warps walk the partners j (j = warp, warp+8, ...),
// the 32 lanes of a warp cover the bits k = lane + 32 t. The code product
// P_ij is a warp reduction of sign agreements. Each lane keeps its bits'
// gradient in registers; at the end the warps' partial gradients are summed
// through shared memory in a fixed order (deterministic). Memory O(B K): no
// B x B x K.
//   K <= 256: one pass (hashloss_rows): 8 bits per lane in registers.
//   K <= 4096 (DH_HL_MAX_BITS, as the CPU): hashloss_rows_tiled: first the
//   code products of row i with every j (B shorts in dynamic shared memory,
//   with Q and the agreement count), then the bits in tiles of 256 with the
//   one-pass arithmetic per tile.
// The three sums (Q, surrogate, pairs right) go to a device buffer kept
// between calls; dhcu_hashloss_host keeps its copies of u, labels and du too
// (allocated once, grown on demand): no cudaMalloc/cudaFree per step.
#include <cuda_runtime.h>
#include <string.h>
extern "C" {
#include "dh_cuda.h"
#include "hashloss.h"
}

#define HL_WARPS 8
#define HL_MAXT  8 // bits per lane per tile: a tile is 32 * HL_MAXT = 256 bits
#define HL_TILE  (32 * HL_MAXT)

__global__ void hashloss_rows(const float *__restrict__ u, const int32_t *__restrict__ labels, int B, int K, float wpos,
                              float wneg, float *__restrict__ du, double *__restrict__ sums /* q, surrogate, right */) {
    __shared__ float sgrad[HL_WARPS][HL_TILE];
    __shared__ double sred[HL_WARPS][3];
    const int i = blockIdx.x;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int T = (K + 31) / 32;
    const float invK = 1.0f / (float)K;
    const float ch = coshf(invK), sh = sinhf(invK);
    float ui[HL_MAXT], si[HL_MAXT], g[HL_MAXT];
    for (int t = 0; t < HL_MAXT; t++) {
        int k = lane + 32 * t;
        ui[t] = (t < T && k < K) ? u[(size_t)i * K + k] : 0.0f;
        si[t] = dh_hl_sign(ui[t]);
        g[t] = 0.0f;
    }
    const int32_t li = labels[i];
    double q = 0, sur = 0, right = 0;
    for (int j = warp; j < B; j += HL_WARPS) {
        if (j == i) continue;
        float uj[HL_MAXT];
        int cnt = 0;
        for (int t = 0; t < HL_MAXT; t++) {
            int k = lane + 32 * t;
            bool in = t < T && k < K;
            uj[t] = in ? u[(size_t)j * K + k] : 0.0f;
            if (in) cnt += (si[t] == dh_hl_sign(uj[t])) ? 1 : -1;
        }
        for (int off = 16; off > 0; off >>= 1) cnt += __shfl_xor_sync(0xffffffffu, cnt, off);
        const float P = (float)cnt * invK;
        const float y = labels[j] == li ? 1.0f : -1.0f;
        const float w = y > 0 ? wpos : wneg;
        const float cp = -y * sh;
        const float Rp = dh_hl_reweight(y, P, 1.0f, invK), Rm = dh_hl_reweight(y, P, -1.0f, invK);
        float ls = 0.0f;
        for (int t = 0; t < HL_MAXT; t++) {
            int k = lane + 32 * t;
            if (t < T && k < K) {
                float dl;
                ls += dh_hl_bit_r(si[t] == dh_hl_sign(uj[t]) ? Rp : Rm, ui[t] * uj[t], ch, cp, &dl);
                g[t] += 2.0f * w * invK * dl * uj[t];
            }
        }
        for (int off = 16; off > 0; off >>= 1) ls += __shfl_xor_sync(0xffffffffu, ls, off);
        if (lane == 0) {
            q += (double)w * exp(-(double)y * (double)cnt / (double)K);
            sur += (double)w * invK * ls;
            right += (y * (float)cnt > 0) ? 1.0 : 0.0;
        }
    }
    for (int t = 0; t < HL_MAXT; t++) sgrad[warp][lane + 32 * t] = g[t];
    if (lane == 0) {
        sred[warp][0] = q;
        sred[warp][1] = sur;
        sred[warp][2] = right;
    }
    __syncthreads();
    if (du) {
        for (int k = threadIdx.x; k < K; k += blockDim.x) {
            float s = 0.0f;
            for (int w = 0; w < HL_WARPS; w++) s += sgrad[w][k];
            du[(size_t)i * K + k] = s;
        }
    }
    if (threadIdx.x < 3) {
        double s = 0;
        for (int w = 0; w < HL_WARPS; w++) s += sred[w][threadIdx.x];
        atomicAdd(&sums[threadIdx.x], s);
    }
}

/* K > 256: the same arithmetic, the bits in tiles of HL_TILE; the code
 * products (sign agreements minus disagreements, |cnt| <= K <= 4096) of row
 * i with every row j are computed first and kept in scnt (B shorts). */
__global__ void hashloss_rows_tiled(const float *__restrict__ u, const int32_t *__restrict__ labels, int B, int K,
                                    float wpos, float wneg, float *__restrict__ du, double *__restrict__ sums) {
    extern __shared__ short scnt[]; /* (B) */
    __shared__ float sgrad[HL_WARPS][HL_TILE];
    __shared__ double sred[HL_WARPS][3];
    const int i = blockIdx.x;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const float invK = 1.0f / (float)K;
    const float ch = coshf(invK), sh = sinhf(invK);
    const float *ui = u + (size_t)i * K;
    const int32_t li = labels[i];
    double q = 0, sur = 0, right = 0;
    /* pass 1: code products, Q, pairs right */
    for (int j = warp; j < B; j += HL_WARPS) {
        if (j == i) continue;
        const float *uj = u + (size_t)j * K;
        int cnt = 0;
        for (int k = lane; k < K; k += 32) cnt += (dh_hl_sign(ui[k]) == dh_hl_sign(uj[k])) ? 1 : -1;
        for (int off = 16; off > 0; off >>= 1) cnt += __shfl_xor_sync(0xffffffffu, cnt, off);
        if (lane == 0) {
            scnt[j] = (short)cnt;
            const double y = labels[j] == li ? 1.0 : -1.0;
            q += (double)(y > 0 ? wpos : wneg) * exp(-y * (double)cnt / (double)K);
            right += (y * cnt > 0) ? 1.0 : 0.0;
        }
    }
    __syncthreads();
    /* pass 2: the surrogate and the gradient, one tile of bits at a time */
    for (int k0 = 0; k0 < K; k0 += HL_TILE) {
        float uit[HL_MAXT], sit[HL_MAXT], g[HL_MAXT];
        for (int t = 0; t < HL_MAXT; t++) {
            int k = k0 + lane + 32 * t;
            uit[t] = k < K ? ui[k] : 0.0f;
            sit[t] = dh_hl_sign(uit[t]);
            g[t] = 0.0f;
        }
        for (int j = warp; j < B; j += HL_WARPS) {
            if (j == i) continue;
            const float *uj = u + (size_t)j * K;
            const int cnt = scnt[j];
            const float P = (float)cnt * invK;
            const float y = labels[j] == li ? 1.0f : -1.0f;
            const float w = y > 0 ? wpos : wneg;
            const float cp = -y * sh;
            const float Rp = dh_hl_reweight(y, P, 1.0f, invK), Rm = dh_hl_reweight(y, P, -1.0f, invK);
            float ls = 0.0f;
            for (int t = 0; t < HL_MAXT; t++) {
                int k = k0 + lane + 32 * t;
                if (k < K) {
                    float ujk = uj[k], dl;
                    ls += dh_hl_bit_r(sit[t] == dh_hl_sign(ujk) ? Rp : Rm, uit[t] * ujk, ch, cp, &dl);
                    g[t] += 2.0f * w * invK * dl * ujk;
                }
            }
            for (int off = 16; off > 0; off >>= 1) ls += __shfl_xor_sync(0xffffffffu, ls, off);
            if (lane == 0) sur += (double)w * invK * ls;
        }
        for (int t = 0; t < HL_MAXT; t++) sgrad[warp][lane + 32 * t] = g[t];
        __syncthreads();
        if (du)
            for (int kk = threadIdx.x; kk < HL_TILE && k0 + kk < K; kk += blockDim.x) {
                float s = 0.0f;
                for (int w = 0; w < HL_WARPS; w++) s += sgrad[w][kk];
                du[(size_t)i * K + k0 + kk] = s;
            }
        __syncthreads(); /* sgrad is rewritten by the next tile */
    }
    if (lane == 0) {
        sred[warp][0] = q;
        sred[warp][1] = sur;
        sred[warp][2] = right;
    }
    __syncthreads();
    if (threadIdx.x < 3) {
        double s = 0;
        for (int w = 0; w < HL_WARPS; w++) s += sred[w][threadIdx.x];
        atomicAdd(&sums[threadIdx.x], s);
    }
}

/* ---- buffers kept between calls --------------------------------------------------------------------------------- */
static double *g_sums;    /* (3) */
static float *g_u, *g_du; /* (B K) each, for dhcu_hashloss_host */
static int32_t *g_lab;    /* (B) */
static size_t g_cap_u, g_cap_du, g_cap_b;
static size_t g_tiled_smem; /* dynamic shared memory the tiled kernel was allowed */


extern "C" void dhcu_hashloss_release(void) {
    cudaFree(g_sums);
    cudaFree(g_u);
    cudaFree(g_du);
    cudaFree(g_lab);
    g_sums = NULL;
    g_u = g_du = NULL;
    g_lab = NULL;
    g_cap_u = g_cap_du = g_cap_b = 0;
}

extern "C" int dhcu_hashloss(const float *d_u, const int32_t *d_labels, int B, int K, double wpos, double wneg,
                             float *d_du, dh_hashloss_stats *st, dh_err *e) {
    if (!g_sums) {
        size_t cap = 0;
        int rc = dh_cuda_grow((void **)&g_sums, &cap, 3 * sizeof(double), e, "hash loss: allocating the sums");
        if (rc) return rc;
    }
    DH_CUDA_TRY(cudaMemsetAsync(g_sums, 0, 3 * sizeof(double)), e, "hash loss: clearing the sums");
    if (K <= HL_TILE) {
        hashloss_rows<<<B, 32 * HL_WARPS>>>(d_u, d_labels, B, K, (float)wpos, (float)wneg, d_du, g_sums);
    } else {
        size_t smem = (size_t)B * sizeof(short);
        size_t statics = sizeof(float) * HL_WARPS * HL_TILE + sizeof(double) * HL_WARPS * 3;
        if (smem + statics > 48 * 1024 && smem > g_tiled_smem) {
            int dev = 0, optin = 0;
            DH_CUDA_TRY(cudaGetDevice(&dev), e, "hash loss");
            DH_CUDA_TRY(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), e, "hash loss");
            if (smem + statics > (size_t)optin)
                return dh_seterr(e, DH_ELIMIT,
                                 "hash loss (CUDA): a batch of %d rows at %d bits needs %zu bytes of shared memory; "
                                 "this device allows %d (use a smaller batch, or at most %d bits)",
                                 B, K, smem + statics, optin, HL_TILE);
            DH_CUDA_TRY(
                cudaFuncSetAttribute(hashloss_rows_tiled, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem), e,
                "hash loss: shared memory");
            g_tiled_smem = smem;
        }
        hashloss_rows_tiled<<<B, 32 * HL_WARPS, smem>>>(d_u, d_labels, B, K, (float)wpos, (float)wneg, d_du, g_sums);
    }
    DH_CUDA_TRY(cudaGetLastError(), e, "hash loss kernel");
    double h[3];
    DH_CUDA_TRY(cudaMemcpy(h, g_sums, sizeof h, cudaMemcpyDeviceToHost), e, "hash loss kernel");
    if (st) {
        st->q = h[0];
        st->surrogate = h[1];
        st->pairs = (int64_t)B * (B - 1);
        st->right = h[2] / (double)st->pairs;
    }
    return DH_OK;
}

extern "C" int dhcu_hashloss_host(const float *u, const int32_t *labels, int B, int K, double wpos, double wneg,
                                  float *du, dh_hashloss_stats *st, dh_err *e) {
    size_t nu = (size_t)B * K * sizeof(float), nl = (size_t)B * sizeof(int32_t);
    int rc = dh_cuda_grow((void **)&g_u, &g_cap_u, nu, e, "hash loss: device buffer");
    if (!rc) rc = dh_cuda_grow((void **)&g_lab, &g_cap_b, nl, e, "hash loss: device buffer");
    if (!rc && du) rc = dh_cuda_grow((void **)&g_du, &g_cap_du, nu, e, "hash loss: device buffer");
    if (rc) return rc;
    DH_CUDA_TRY(cudaMemcpy(g_u, u, nu, cudaMemcpyHostToDevice), e, "hash loss: copy in");
    DH_CUDA_TRY(cudaMemcpy(g_lab, labels, nl, cudaMemcpyHostToDevice), e, "hash loss: copy in");
    rc = dhcu_hashloss(g_u, g_lab, B, K, wpos, wneg, du ? g_du : NULL, st, e);
    if (rc) return rc;
    if (du) DH_CUDA_TRY(cudaMemcpy(du, g_du, nu, cudaMemcpyDeviceToHost), e, "hash loss: copy out");
    return DH_OK;
}
