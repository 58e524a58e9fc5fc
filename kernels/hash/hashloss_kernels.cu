// hashloss_kernels.cu — CUDA twin of kernels/hashloss.c.
//
// One block per row i; its 8 warps walk the partners j (j = warp, warp+8, ...),
// the 32 lanes of a warp cover the bits k = lane + 32 t (t < 8, K <= 256).
// The code product P_ij is a warp reduction of sign agreements. Each lane
// keeps its bits' gradient in registers; at the end the warps' partial
// gradients are summed through shared memory. Memory O(B K): no B x B x K.
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>
extern "C" {
#include "hashloss.h"
}

#define HL_WARPS 8
#define HL_MAXT  8 // K <= 32 * HL_MAXT

__global__ void hashloss_rows(const float *__restrict__ u, const int32_t *__restrict__ labels, int B, int K, float wpos,
                              float wneg, float *__restrict__ du, double *__restrict__ sums /* q, surrogate, right */) {
    __shared__ float sgrad[HL_WARPS][32 * HL_MAXT];
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

static int cuda_fail(dh_err *e, cudaError_t c, const char *what) {
    return dh_seterr(e, DH_EDEVICE, "CUDA %s: %s", what, cudaGetErrorString(c));
}

extern "C" int dh_hashloss_cuda(const float *d_u, const int32_t *d_labels, int B, int K, double wpos, double wneg,
                                float *d_du, dh_hashloss_stats *st, dh_err *e) {
    if (B < 2) return dh_seterr(e, DH_EINVAL, "hash loss: a batch needs at least 2 rows, got %d", B);
    if (K < 1 || K > 32 * HL_MAXT)
        return dh_seterr(e, DH_EINVAL, "hash loss (CUDA): bits %d out of range 1..%d", K, 32 * HL_MAXT);
    double *d_sums = NULL, h_sums[3];
    cudaError_t c = cudaMalloc(&d_sums, 3 * sizeof(double));
    if (c != cudaSuccess) return cuda_fail(e, c, "malloc");
    cudaMemset(d_sums, 0, 3 * sizeof(double));
    hashloss_rows<<<B, 32 * HL_WARPS>>>(d_u, d_labels, B, K, (float)wpos, (float)wneg, d_du, d_sums);
    c = cudaGetLastError();
    if (c == cudaSuccess) c = cudaMemcpy(h_sums, d_sums, sizeof h_sums, cudaMemcpyDeviceToHost);
    cudaFree(d_sums);
    if (c != cudaSuccess) return cuda_fail(e, c, "hash loss kernel");
    if (st) {
        st->q = h_sums[0];
        st->surrogate = h_sums[1];
        st->pairs = (int64_t)B * (B - 1);
        st->right = h_sums[2] / (double)st->pairs;
    }
    return DH_OK;
}

extern "C" int dh_hashloss_cuda_host(const float *u, const int32_t *labels, int B, int K, const dh_hashloss_opts *o,
                                     float *du, dh_hashloss_stats *st, dh_err *e) {
    dh_hashloss_stats s;
    memset(&s, 0, sizeof s);
    if (B < 2) return dh_seterr(e, DH_EINVAL, "hash loss: a batch needs at least 2 rows, got %d", B);
    dh_hashloss_weights(labels, B, o, &s);
    float *d_u = NULL, *d_du = NULL;
    int32_t *d_l = NULL;
    size_t nu = (size_t)B * K * sizeof(float);
    cudaError_t c = cudaMalloc(&d_u, nu);
    if (c == cudaSuccess) c = cudaMalloc(&d_l, (size_t)B * sizeof(int32_t));
    if (c == cudaSuccess && du) c = cudaMalloc(&d_du, nu);
    if (c == cudaSuccess) c = cudaMemcpy(d_u, u, nu, cudaMemcpyHostToDevice);
    if (c == cudaSuccess) c = cudaMemcpy(d_l, labels, (size_t)B * sizeof(int32_t), cudaMemcpyHostToDevice);
    int rc = DH_OK;
    if (c != cudaSuccess) rc = cuda_fail(e, c, "copy in");
    if (rc == DH_OK) rc = dh_hashloss_cuda(d_u, d_l, B, K, s.wpos, s.wneg, d_du, &s, e);
    if (rc == DH_OK && du) {
        c = cudaMemcpy(du, d_du, nu, cudaMemcpyDeviceToHost);
        if (c != cudaSuccess) rc = cuda_fail(e, c, "copy out");
    }
    cudaFree(d_u);
    cudaFree(d_l);
    cudaFree(d_du);
    if (rc == DH_OK && st) *st = s;
    return rc;
}
