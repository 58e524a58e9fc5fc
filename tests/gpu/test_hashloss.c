/* test_hashloss.c (GPU) — the CUDA hash loss against the CPU reference:
 * |gpu - ref| <= atol + rtol * |ref| for Q, the surrogate and every gradient. */
#include <stdint.h>
#include <stdlib.h>
#include "../unit/check.h"
#include "hashloss.h"
#if DH_USE_CUDA
#include <cuda_runtime.h>
#endif

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static void compare(int B, int K, int ncls, dh_hl_norm norm, double scale) {
#if DH_USE_CUDA
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) SKIP_TEST("no CUDA device");
    float *u = malloc(sizeof(float) * B * K), *g = malloc(sizeof(float) * B * K), *r = malloc(sizeof(float) * B * K);
    int32_t *lab = malloc(sizeof(int32_t) * B);
    REQUIRE(u && g && r && lab);
    for (int t = 0; t < B * K; t++) u[t] = (float)((urand() * 2 - 1) * 1.5);
    for (int i = 0; i < B; i++) lab[i] = (int32_t)(urand() * ncls);
    dh_hashloss_opts o = { norm, scale };
    dh_hashloss_stats sc, sg;
    dh_err e;
    REQUIRE(dh_hashloss_cpu(u, lab, B, K, &o, r, &sc, &e) == DH_OK);
    double t0 = dh_now();
    int rc = dh_hashloss_cuda_host(u, lab, B, K, &o, g, &sg, &e);
    double t1 = dh_now();
    CHECKF(rc == DH_OK, "cuda: %s", e.msg);
    if (rc != DH_OK) goto out;
    const double atol = 1e-6, rtol = 2e-4;
    double gmax = 0, maxerr = 0;
    for (int t = 0; t < B * K; t++)
        if (fabs(r[t]) > gmax) gmax = fabs(r[t]);
    for (int t = 0; t < B * K; t++) {
        double err = fabs(g[t] - r[t]);
        if (err > maxerr) maxerr = err;
        CHECKF(err <= atol * gmax + rtol * fabs(r[t]) + 1e-5 * gmax, "du[%d]: gpu %g cpu %g", t, g[t], r[t]);
    }
    CHECK_NEAR(sg.q, sc.q, 1e-6 * fabs(sc.q));
    CHECK_NEAR(sg.surrogate, sc.surrogate, 1e-4 * fabs(sc.surrogate));
    CHECK_NEAR(sg.right, sc.right, 1e-12);
    printf("# B=%d K=%d: max |du gpu-cpu| %.3g (max |du| %.3g), Q %.9g vs %.9g, %.1f ms incl. copies\n", B, K, maxerr,
           gmax, sg.q, sc.q, (t1 - t0) * 1e3);
out:
    free(u);
    free(g);
    free(r);
    free(lab);
#else
    (void)B;
    (void)K;
    (void)ncls;
    (void)norm;
    (void)scale;
    SKIP_TEST("built without CUDA");
#endif
}

static void t_small_k12(void) { compare(64, 12, 10, DH_HL_SUM, 0); }
static void t_k48_mean(void) { compare(300, 48, 10, DH_HL_MEAN, 48.0 * 48.0); }
static void t_k65_balanced(void) { compare(257, 65, 3, DH_HL_BALANCED, 1); }
static void t_k256(void) { compare(128, 256, 10, DH_HL_MEAN, 1); }

static void t_big_batch_fits(void) {
#if DH_USE_CUDA
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) SKIP_TEST("no CUDA device");
    int B = 8192, K = 48;
    float *u = malloc(sizeof(float) * B * K), *g = malloc(sizeof(float) * B * K);
    int32_t *lab = malloc(sizeof(int32_t) * B);
    REQUIRE(u && g && lab);
    for (int t = 0; t < B * K; t++) u[t] = (float)(urand() * 2 - 1);
    for (int i = 0; i < B; i++) lab[i] = (int32_t)(urand() * 10);
    dh_hashloss_opts o = { DH_HL_MEAN, K * K };
    dh_hashloss_stats s;
    dh_err e;
    REQUIRE(dh_hashloss_cuda_host(u, lab, B, K, &o, g, &s, &e) == DH_OK); /* warm-up */
    double t0 = dh_now();
    int rc = dh_hashloss_cuda_host(u, lab, B, K, &o, g, &s, &e);
    double t1 = dh_now();
    CHECK(rc == DH_OK);
    printf("# B=%d K=%d: loss+grad %.2f ms incl. copies (%.0f pairs/us), right %.3f\n", B, K, (t1 - t0) * 1e3,
           (double)B * (B - 1) / ((t1 - t0) * 1e6), s.right);
    free(u);
    free(g);
    free(lab);
#else
    SKIP_TEST("built without CUDA");
#endif
}

int main(void) {
    RUN(t_small_k12);
    RUN(t_k48_mean);
    RUN(t_k65_balanced);
    RUN(t_k256);
    RUN(t_big_batch_fits);
    return check_done();
}
