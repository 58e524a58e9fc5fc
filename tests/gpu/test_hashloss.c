/* test_hashloss.c (GPU) — the CUDA hash loss against the CPU reference:
 * |gpu - ref| <= atol + rtol * |ref| for Q, the surrogate and every gradient,
 * from 12 bits (one-pass kernel) to 4096 (tiled kernel), the device entry
 * point (dh_hashloss_cuda) as well as the host one, and the device buffers
 * kept between calls. Prints one "#" line of errors per case.
 * DH_GPU_QUICK=1 leaves out the 8192-row timing case (compute-sanitizer). */
#include <stdint.h>
#include <stdlib.h>
#include "../unit/check.h"
#include "dk.h"
#include "hashloss.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static int have_gpu(void) { return dk_cuda_available(); }

/* device: 0 host entry point, 1 the device one (dh_hashloss_cuda) */
static void compare_on(int B, int K, int ncls, dh_hl_norm norm, double scale, int device) {
    if (!have_gpu()) SKIP_TEST("no CUDA device");
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
    int rc;
    if (!device) {
        rc = dh_hashloss_cuda_host(u, lab, B, K, &o, g, &sg, &e);
    } else {
        float *du = NULL, *dg = NULL;
        int32_t *dl = NULL;
        size_t nu = sizeof(float) * B * K;
        rc = dk_init(DK_CUDA, &e);
        if (!rc) rc = dk_mem_alloc(DK_CUDA, nu, (void **)&du, &e);
        if (!rc) rc = dk_mem_alloc(DK_CUDA, nu, (void **)&dg, &e);
        if (!rc) rc = dk_mem_alloc(DK_CUDA, sizeof(int32_t) * B, (void **)&dl, &e);
        if (!rc) rc = dk_mem_upload(DK_CUDA, du, u, nu, &e);
        if (!rc) rc = dk_mem_upload(DK_CUDA, dl, lab, sizeof(int32_t) * B, &e);
        dh_hashloss_stats w;
        dh_hashloss_weights(lab, B, &o, &w);
        if (!rc) rc = dh_hashloss_cuda(du, dl, B, K, w.wpos, w.wneg, dg, &sg, &e);
        if (!rc) rc = dk_mem_download(DK_CUDA, g, dg, nu, &e);
        dk_mem_free(DK_CUDA, du);
        dk_mem_free(DK_CUDA, dg);
        dk_mem_free(DK_CUDA, dl);
    }
    double t1 = dh_now();
    CHECKF(rc == DH_OK, "cuda: %s", e.msg);
    if (rc != DH_OK) goto out;
    double gmax = 0, maxerr = 0;
    for (int t = 0; t < B * K; t++)
        if (fabs(r[t]) > gmax) gmax = fabs(r[t]);
    for (int t = 0; t < B * K; t++) {
        double err = fabs(g[t] - r[t]);
        if (!(err == err)) err = INFINITY;
        if (err > maxerr) maxerr = err;
        CHECKF(err <= 2e-4 * fabs(r[t]) + 1.1e-5 * gmax, "du[%d]: gpu %g cpu %g", t, g[t], r[t]);
    }
    CHECK_NEAR(sg.q, sc.q, 1e-6 * fabs(sc.q));
    CHECK_NEAR(sg.surrogate, sc.surrogate, 1e-4 * fabs(sc.surrogate));
    CHECK_NEAR(sg.right, sc.right, 1e-12);
    CHECK(sg.pairs == sc.pairs);
    printf("# %s B=%d K=%d: max |du gpu-cpu| %.3g (max |du| %.3g), Q %.9g vs %.9g (rel %.2g), S rel %.2g, %.1f ms\n",
           device ? "device" : "host", B, K, maxerr, gmax, sg.q, sc.q, fabs(sg.q - sc.q) / fabs(sc.q),
           fabs(sg.surrogate - sc.surrogate) / fabs(sc.surrogate), (t1 - t0) * 1e3);
out:
    free(u);
    free(g);
    free(r);
    free(lab);
}
static void compare(int B, int K, int ncls, dh_hl_norm norm, double scale) { compare_on(B, K, ncls, norm, scale, 0); }

static void t_small_k12(void) { compare(64, 12, 10, DH_HL_SUM, 0); }
static void t_k48_mean(void) { compare(300, 48, 10, DH_HL_MEAN, 48.0 * 48.0); }
static void t_k65_balanced(void) { compare(257, 65, 3, DH_HL_BALANCED, 1); }
static void t_k256(void) { compare(128, 256, 10, DH_HL_MEAN, 1); }
/* above 256 bits: the tiled kernel (a partial last tile, then whole tiles) */
static void t_k300_tiled(void) { compare(97, 300, 10, DH_HL_BALANCED, 1); }
static void t_k1024_tiled(void) { compare(64, 1024, 4, DH_HL_MEAN, 1); }
static void t_k4096_max(void) { compare(33, 4096, 5, DH_HL_SUM, 0); }
/* the device entry point, as dh-finetune calls it on images */
static void t_device_k48(void) { compare_on(256, 48, 10, DH_HL_BALANCED, 48.0 * 48.0, 1); }
static void t_device_k512(void) { compare_on(130, 512, 10, DH_HL_MEAN, 1, 1); }
/* the buffers kept between calls: a larger call after smaller ones, then a smaller one again */
static void t_buffers_grow_and_shrink(void) {
    compare(16, 8, 3, DH_HL_SUM, 0);
    compare(512, 96, 10, DH_HL_MEAN, 1);
    compare(20, 24, 3, DH_HL_BALANCED, 1);
    dh_hashloss_cuda_release();
    compare(40, 16, 3, DH_HL_SUM, 0);
}

static void t_big_batch_fits(void) {
    if (!have_gpu()) SKIP_TEST("no CUDA device");
    const char *q = getenv("DH_GPU_QUICK");
    if (q && !strcmp(q, "1")) {
        printf("# big batch: left out (DH_GPU_QUICK=1)\n");
        return;
    }
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
    CHECKF(rc == DH_OK, "%s", e.msg);
    printf("# B=%d K=%d: loss+grad %.2f ms incl. copies (%.0f pairs/us), right %.3f\n", B, K, (t1 - t0) * 1e3,
           (double)B * (B - 1) / ((t1 - t0) * 1e6), s.right);
    free(u);
    free(g);
    free(lab);
}

int main(void) {
    RUN(t_small_k12);
    RUN(t_k48_mean);
    RUN(t_k65_balanced);
    RUN(t_k256);
    RUN(t_k300_tiled);
    RUN(t_k1024_tiled);
    RUN(t_k4096_max);
    RUN(t_device_k48);
    RUN(t_device_k512);
    RUN(t_buffers_grow_and_shrink);
    RUN(t_big_batch_fits);
    dh_hashloss_cuda_release();
    dk_shutdown();
    return check_done();
}
