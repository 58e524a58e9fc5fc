/* hashloss.h — the exponentiated code-product loss of Mu & Liu (AAAI 2017)
 * and its bilinear smooth surrogate (Eqs. 6-11), CPU reference and CUDA twin.
 *
 * Inputs: u (B, K) hash pre-activations of a mini-batch, labels (B).
 *   b_i(k) = +1 if u_ik > 0 else -1          (the same rule as the codes)
 *   P_ij   = b_i∘b_j = (1/K) Σ_k b_i(k) b_j(k)
 *   Y_ij   = +1 same label, -1 otherwise
 * Pairs: every ordered pair (i, j) with i != j (the diagonal is left out:
 * its exact term is the constant e^-1 and its surrogate only inflates |u|).
 * Pair weights w_ij (dh_hl_norm): 1 (paper's plain sum), 1/#pairs (mean),
 * or balanced (positive and negative pairs each carry half the weight),
 * all times opts->scale.
 *
 *   exact      Q = Σ_ij w_ij exp(-Y_ij P_ij)
 *   surrogate  S = Σ_ij w_ij (1/K) Σ_k l_k(i,j)
 *              l_k = R_ijk (c + c' (2σ(u_ik u_jk) - 1)),  R_ijk = exp(-Y_ij (P_ij - b_i(k) b_j(k)/K))
 *              c = cosh(1/K), c' = -Y_ij sinh(1/K); R held constant (not differentiated)
 *   gradient   dS/du_ik = Σ_{j != i} (w_ij + w_ji) (1/K) R_ijk c' 2σ(a)(1-σ(a)) u_jk,  a = u_ik u_jk
 * (then dW_k = Σ_i dS/du_ik z_i and dz_i = Σ_k dS/du_ik W_k: the paper's
 * chain rule (z_i z_j^T + z_j z_i^T) w_k and w_k w_k^T z_j.)
 *
 * Memory: O(B K); never a B x B x K tensor (the CUDA kernel tiles over pairs
 * and accumulates per-row gradients).
 */
#ifndef DH_HASHLOSS_H
#define DH_HASHLOSS_H
#include <math.h>
#include <stdint.h>
#include "dh_util.h"

#ifdef __CUDACC__
#define DH_HL_HD static inline __host__ __device__
#else
#define DH_HL_HD static inline
#endif

typedef enum {
    DH_HL_SUM = 0,     /* w = 1: the paper's Q = Σ_ij                     */
    DH_HL_MEAN = 1,    /* w = 1 / (B (B-1))                               */
    DH_HL_BALANCED = 2 /* w = 1/(2 #pos) on positive, 1/(2 #neg) on negative pairs */
} dh_hl_norm;

typedef struct dh_hashloss_opts {
    dh_hl_norm norm;
    double scale; /* multiplies every weight (e.g. K*K); 0 means 1 */
} dh_hashloss_opts;

typedef struct dh_hashloss_stats {
    double q;          /* exact loss with the same weights                */
    double surrogate;  /* the smooth surrogate S                           */
    double right;      /* fraction of pairs with Y_ij * P_ij > 0           */
    int64_t pairs;     /* ordered pairs i != j                             */
    int64_t pos_pairs; /* ordered same-label pairs                         */
    double wpos, wneg; /* the pair weights used                            */
} dh_hashloss_stats;

/* ---- per-element logic shared by the CPU reference and the CUDA kernel ---- */
DH_HL_HD float dh_hl_sign(float u) { return u > 0.0f ? 1.0f : -1.0f; }
DH_HL_HD float dh_hl_sigmoid(float a) {
    if (a >= 0.0f) return 1.0f / (1.0f + expf(-a));
    float t = expf(a);
    return t / (1.0f + t);
}
/* The reweighting factor R of a pair for a bit whose product is s = ±1:
 * exp(-y (P - s/K)); it takes only two values per pair. */
DH_HL_HD float dh_hl_reweight(float y, float P, float s, float invK) { return expf(-y * (P - s * invK)); }
/* One bit given its R: returns l_k, *dl_da = dl_k/da (R held constant). */
DH_HL_HD float dh_hl_bit_r(float R, float a, float c, float cp, float *dl_da) {
    float sg = dh_hl_sigmoid(a);
    *dl_da = R * cp * 2.0f * sg * (1.0f - sg);
    return R * (c + cp * (2.0f * sg - 1.0f));
}
/* One bit k of one ordered pair: y = ±1, P = exact code product of the pair,
 * s = b_i(k) b_j(k), a = u_ik u_jk, c/cp = c_ij, c'_ij. Returns l_k; *dl_da
 * receives dl_k/da with R held constant. */
DH_HL_HD float dh_hl_bit(float y, float P, float s, float a, float invK, float c, float cp, float *dl_da) {
    return dh_hl_bit_r(dh_hl_reweight(y, P, s, invK), a, c, cp, dl_da);
}

/* Pair weights for a batch (host; labels on the host). Fills st->pairs,
 * pos_pairs, wpos, wneg. */
void dh_hashloss_weights(const int32_t *labels /* (B) */, int B, const dh_hashloss_opts *o, dh_hashloss_stats *st);

/* CPU reference (the specification: plain loops, double sums). du (B, K)
 * may be NULL (loss only). Returns DH_OK, or DH_EINVAL for B < 2 or K out
 * of 1..DH_HL_MAX_BITS. */
#define DH_HL_MAX_BITS 4096
int dh_hashloss_ref(const float *u /* (B, K) */, const int32_t *labels /* (B) */, int B, int K,
                    const dh_hashloss_opts *o, float *du /* (B, K) or NULL */, dh_hashloss_stats *st, dh_err *e);
/* The CPU engine's path, what training calls: the same loss with the
 * batch's rows spread over the OpenMP threads (DH_THREADS) and the bit loop
 * vectorised; within 1e-5 relative of the reference (test_hashloss), the
 * same bits for the same thread count. DH_CPU=ref makes it the reference. */
int dh_hashloss_cpu(const float *u /* (B, K) */, const int32_t *labels /* (B) */, int B, int K,
                    const dh_hashloss_opts *o, float *du /* (B, K) or NULL */, dh_hashloss_stats *st, dh_err *e);
/* Its work buffers are one block per calling thread, kept between calls and
 * grown on demand: a training loop allocates nothing after its first batch.
 * How many times the calling thread's block has grown; and freeing it. */
int64_t dh_hashloss_cpu_grows(void);
void dh_hashloss_cpu_release(void);

/* CUDA twin (hashloss_kernels.cu, in libdhcuda.so, loaded at first use:
 * dh_cudaload.h), on device pointers (d_u, d_labels, d_du on the device;
 * d_du may be NULL); wpos/wneg from dh_hashloss_weights on the host labels.
 * Stats q, surrogate, right and pairs are filled (synchronises: one copy of
 * three sums; no allocation after the first call). The same B and K as the
 * CPU (K up to DH_HL_MAX_BITS; above 256 bits the kernel keeps the batch's
 * code products in shared memory, B * 2 bytes, so B is bounded by the
 * device: about 24,000 rows at 48 KiB, 110,000 on an H100). Without the CUDA
 * backend: DH_EDEVICE naming what is missing. */
int dh_hashloss_cuda(const float *d_u, const int32_t *d_labels, int B, int K, double wpos, double wneg, float *d_du,
                     dh_hashloss_stats *st, dh_err *e);
/* Same on host arrays (copies in and out through device buffers kept
 * between calls and grown on demand; for --features and tests). */
int dh_hashloss_cuda_host(const float *u, const int32_t *labels, int B, int K, const dh_hashloss_opts *o, float *du,
                          dh_hashloss_stats *st, dh_err *e);
/* Frees those buffers (never loads the backend). */
void dh_hashloss_cuda_release(void);

/* Internal: the entry points in libdhcuda.so behind the three above
 * (arguments checked by hashloss.c first). */
int dhcu_hashloss(const float *d_u, const int32_t *d_labels, int B, int K, double wpos, double wneg, float *d_du,
                  dh_hashloss_stats *st, dh_err *e);
int dhcu_hashloss_host(const float *u, const int32_t *labels, int B, int K, double wpos, double wneg, float *du,
                       dh_hashloss_stats *st, dh_err *e);
void dhcu_hashloss_release(void);

#endif
