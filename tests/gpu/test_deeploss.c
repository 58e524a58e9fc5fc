/* test_deeploss.c (GPU) — the deep losses' device path (dh_dloss_eval_cuda,
 * kernels/hash/deeploss_kernels.cu) against the CPU reference
 * (dh_dloss_eval): for every method flagged DH_DLOSS_DEVICE, random u and
 * labels (single-label, and multi-hot where the method takes them, some
 * rows without labels), several B and K (K above 128 and 256: more than one
 * block of bits), the loss, each of its terms and every element of dL/du:
 *   |gpu - cpu| <= 1e-5 * scale + 1e-4 * |cpu|
 * with scale = max(1, |loss|) for the loss and its terms and max |du| for
 * the gradient (deephash, whose kernel and reference are both in float:
 * gpu_test_hashloss's 1.1e-5 and 2e-4 for the gradient). Prints one "#" line per case with the maximum errors. Also:
 * the loss without a gradient, methods without a device path refused,
 * buffers grown, shrunk and released, and the hash-layer trainer on CUDA
 * (device path, or host path for the others) against the trainer on the
 * CPU. DH_GPU_QUICK=1 (compute-sanitizer) sweeps three small shapes only
 * and leaves out the timing case. Skipped (SKIP lines) without a GPU. */
#include <stdint.h>
#include <stdlib.h>
#include "../unit/check.h"
#include "deeploss.h"
#include "dk.h"
#include "train.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static int have_gpu(void) {
    static int init = -1;
    if (init < 0) {
        dh_err e;
        init = dk_cuda_available() && dk_init(DK_CUDA, &e) == DH_OK;
        if (!init && dk_cuda_available()) printf("# dk_init(cuda): %s\n", e.msg);
    }
    return init;
}

static double worst_rel; /* over the whole run: max error / tolerance */

/* One comparison: method spec, B rows, K bits, C classes, multi-hot or not,
 * step (HashNet's beta). Returns 0 when compared, -1 on a setup error. */
static int compare(const char *spec, int B, int K, int C, int multi, int64_t step) {
    dh_dloss_config cfg = { K, C, 7, 0 };
    dh_dloss *L = NULL;
    dh_err e;
    int rc = dh_dloss_create_spec(spec, &cfg, &L, &e);
    CHECKF(rc == DH_OK, "%s: %s", spec, e.msg);
    if (rc) return -1;
    size_t n = (size_t)B * K;
    float *u = malloc(sizeof(float) * n), *r = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n);
    int32_t *lab = malloc(sizeof(int32_t) * B);
    uint8_t *mh = malloc((size_t)B * C);
    float *d_u = NULL, *d_du = NULL;
    int ret = -1;
    if (!u || !r || !g || !lab || !mh) goto out;
    for (size_t t = 0; t < n; t++) u[t] = (float)((urand() * 2 - 1) * 1.6);
    for (int i = 0; i < B; i++) {
        lab[i] = (int32_t)(urand() * C);
        int none = multi && i % 11 == 5; /* some multi-hot rows without labels */
        for (int c = 0; c < C; c++) mh[(size_t)i * C + c] = !none && (c == lab[i] || urand() < 0.2);
    }
    dh_dloss_batch bt = { .u = u, .rows = B, .labels = multi ? NULL : lab, .multi = multi ? mh : NULL, .step = step };
    dh_dloss_stats sc, sg;
    rc = dh_dloss_eval(L, &bt, r, &sc, &e);
    CHECKF(rc == DH_OK, "%s cpu: %s", spec, e.msg);
    if (rc) goto out;
    rc = dk_mem_alloc(DK_CUDA, sizeof(float) * n, (void **)&d_u, &e);
    if (!rc) rc = dk_mem_alloc(DK_CUDA, sizeof(float) * n, (void **)&d_du, &e);
    if (!rc) rc = dk_mem_upload(DK_CUDA, d_u, u, sizeof(float) * n, &e);
    dh_dloss_batch bd = bt;
    bd.u = NULL; /* the device path never reads the host u */
    double t0 = dh_now();
    if (!rc) rc = dh_dloss_eval_cuda(L, &bd, d_u, d_du, &sg, &e);
    double t1 = dh_now();
    if (!rc) rc = dk_mem_download(DK_CUDA, g, d_du, sizeof(float) * n, &e);
    CHECKF(rc == DH_OK, "%s cuda: %s", spec, e.msg);
    if (rc) goto out;
    /* the paper's loss is the float kernel of hashloss_kernels.cu against the
     * float reference dh_hashloss_cpu: gpu_test_hashloss's gradient tolerance */
    int fl = !strncmp(spec, "deephash", 8);
    double at = fl ? 1.1e-5 : 1e-5, rt = fl ? 2e-4 : 1e-4;
    double gmax = 0, derr = 0, drel = 0;
    for (size_t t = 0; t < n; t++) gmax = fmax(gmax, fabs(r[t]));
    for (size_t t = 0; t < n; t++) {
        double err = fabs((double)g[t] - r[t]), tol = at * gmax + rt * fabs(r[t]);
        if (!(err == err)) err = INFINITY;
        derr = fmax(derr, err);
        drel = fmax(drel, tol > 0 ? err / tol : (err > 0 ? INFINITY : 0));
        CHECKF(err <= tol, "%s B=%d K=%d %s: du[%zu] gpu %.9g cpu %.9g", spec, B, K, multi ? "multi" : "single", t,
               g[t], r[t]);
    }
    double ls = fmax(1.0, fabs(sc.loss)), lerr = fabs(sg.loss - sc.loss), terr = 0;
    CHECKF(lerr <= 1e-5 * ls + 1e-4 * fabs(sc.loss), "%s B=%d K=%d: loss gpu %.12g cpu %.12g", spec, B, K, sg.loss,
           sc.loss);
    for (int t = 0; t < DH_DLOSS_MAX_TERMS; t++) {
        double err = fabs(sg.term[t] - sc.term[t]);
        terr = fmax(terr, err);
        CHECKF(err <= 1e-5 * ls + 1e-4 * fabs(sc.term[t]), "%s B=%d K=%d: term %d gpu %.12g cpu %.12g", spec, B, K, t,
               sg.term[t], sc.term[t]);
    }
    CHECKF(fabs(sg.scale - sc.scale) <= 1e-12 * fabs(sc.scale), "%s: scale gpu %g cpu %g", spec, sg.scale, sc.scale);
    drel = fmax(drel, lerr / (1e-5 * ls + 1e-4 * fabs(sc.loss)));
    worst_rel = fmax(worst_rel, drel);
    printf("# %-10s %-6s B=%-4d K=%-4d C=%-3d loss cpu %.10g |gpu-cpu| %.2g (terms %.2g), max |du gpu-cpu| %.3g "
           "(max |du| %.3g; worst err/tol %.2g), %.2f ms\n",
           spec, multi ? "multi" : "single", B, K, C, sc.loss, lerr, terr, derr, gmax, drel, (t1 - t0) * 1e3);
    ret = 0;
out:
    dk_mem_free(DK_CUDA, d_u);
    dk_mem_free(DK_CUDA, d_du);
    dh_dloss_free(L);
    free(u);
    free(r);
    free(g);
    free(lab);
    free(mh);
    return ret;
}

/* Every flagged method at the shapes below, single-label and (when taken) multi-hot. */
static void sweep(const char *name, const char *spec) {
    if (!have_gpu()) SKIP_TEST("no CUDA device");
    const dh_dloss_method *m = dh_dloss_find(name);
    REQUIRE(m && (m->flags & DH_DLOSS_DEVICE));
    static const int shapes[][3] = { { 2, 12, 3 }, { 37, 48, 10 }, { 128, 64, 10 }, { 200, 300, 7 }, { 64, 1024, 4 } };
    static const int quick[][3] = { { 2, 12, 3 }, { 37, 48, 10 }, { 17, 300, 3 } }; /* under compute-sanitizer */
    const char *q = getenv("DH_GPU_QUICK");
    int isq = q && !strcmp(q, "1");
    size_t ns = isq ? sizeof quick / sizeof quick[0] : sizeof shapes / sizeof shapes[0];
    for (size_t s = 0; s < ns; s++) {
        const int *sh = isq ? quick[s] : shapes[s];
        int B = sh[0], K = sh[1], C = sh[2];
        if (!strcmp(name, "dtsh") && B > 128) B = 128; /* the CPU reference is O(B^3 + B^2 K) */
        compare(spec, B, K, C, 0, 0);
        if (m->flags & DH_DLOSS_MULTILABEL) compare(spec, B, K, C, 1, 0);
    }
}

static void t_deephash(void) { sweep("deephash", "deephash"); }
static void t_deephash_sum(void) {
    if (!have_gpu()) SKIP_TEST("no CUDA device");
    compare("deephash:norm=sum", 50, 32, 5, 0, 0);
    compare("deephash:norm=mean,scale=3", 300, 512, 10, 0, 0);
}
static void t_dpsh(void) { sweep("dpsh", "dpsh"); }
static void t_dhn(void) { sweep("dhn", "dhn"); }
static void t_hashnet(void) { sweep("hashnet", "hashnet"); }
static void t_hashnet_beta(void) { /* continuation: beta > 1, no balance */
    if (!have_gpu()) SKIP_TEST("no CUDA device");
    compare("hashnet", 96, 48, 10, 0, 5000);
    compare("hashnet:balance=0,step_size=7", 96, 48, 10, 1, 12345);
}
static void t_dch(void) { sweep("dch", "dch"); }
static void t_dsh(void) { sweep("dsh", "dsh"); }
static void t_dsh_margin(void) { /* a margin inside the distances: both branches of the hinge */
    if (!have_gpu()) SKIP_TEST("no CUDA device");
    compare("dsh:m=30", 100, 24, 10, 0, 0);
    compare("dsh:m=30", 100, 24, 10, 1, 0);
}
static void t_dtsh(void) { sweep("dtsh", "dtsh"); }
static void t_mihash(void) { sweep("mihash", "mihash"); }
static void t_mihash_bins(void) { /* few and many bins, a sharper sigmoid */
    if (!have_gpu()) SKIP_TEST("no CUDA device");
    compare("mihash:nbins=2", 70, 24, 6, 0, 0);
    compare("mihash:nbins=48,a=3", 70, 48, 6, 1, 0);
}
static void t_csq(void) { sweep("csq", "csq"); }
static void t_csq_bernoulli(void) {
    if (!have_gpu()) SKIP_TEST("no CUDA device");
    compare("csq:centres=bernoulli,lambda=0.5", 80, 40, 30, 0, 0);
    compare("csq:centres=bernoulli,lambda=0.5", 80, 40, 30, 1, 0);
}
static void t_orthohash(void) { sweep("orthohash", "orthohash"); }
static void t_orthohash_quan(void) {
    if (!have_gpu()) SKIP_TEST("no CUDA device");
    compare("orthohash:quan=0.5,codebook=hadamard", 90, 64, 100, 0, 0);
    compare("orthohash:quan=0.5", 90, 64, 100, 1, 0);
}

/* Loss only (d_du NULL), equal to the loss with the gradient. */
static void t_loss_only(void) {
    if (!have_gpu()) SKIP_TEST("no CUDA device");
    const char *specs[] = { "deephash", "dpsh", "dhn", "hashnet", "dch", "dsh", "dtsh", "mihash", "csq", "orthohash" };
    int B = 40, K = 32, C = 6;
    float u[40 * 32], *d_u = NULL, *d_du = NULL;
    int32_t lab[40];
    for (int t = 0; t < B * K; t++) u[t] = (float)(urand() * 2 - 1);
    for (int i = 0; i < B; i++) lab[i] = i % C;
    dh_err e;
    REQUIRE(dk_mem_alloc(DK_CUDA, sizeof u, (void **)&d_u, &e) == DH_OK &&
            dk_mem_alloc(DK_CUDA, sizeof u, (void **)&d_du, &e) == DH_OK &&
            dk_mem_upload(DK_CUDA, d_u, u, sizeof u, &e) == DH_OK);
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        dh_dloss_config cfg = { K, C, 3, 0 };
        dh_dloss *L = NULL;
        dh_dloss_stats a, b;
        dh_dloss_batch bt = { .rows = B, .labels = lab };
        CHECK(dh_dloss_create_spec(specs[s], &cfg, &L, &e) == DH_OK);
        if (!L) continue;
        int r1 = dh_dloss_eval_cuda(L, &bt, d_u, NULL, &a, &e), r2 = dh_dloss_eval_cuda(L, &bt, d_u, d_du, &b, &e);
        CHECKF(r1 == DH_OK && r2 == DH_OK && a.loss == b.loss, "%s: %d %d %g %g (%s)", specs[s], r1, r2, a.loss, b.loss,
               e.msg);
        dh_dloss_free(L);
    }
    dk_mem_free(DK_CUDA, d_u);
    dk_mem_free(DK_CUDA, d_du);
}

/* The methods without a device path say so (before any CUDA call). */
static void t_host_only_refused(void) {
    const char *host[] = { "greedyhash", "dsdh", "adsh" };
    for (size_t s = 0; s < sizeof host / sizeof host[0]; s++) {
        const dh_dloss_method *m = dh_dloss_find(host[s]);
        REQUIRE(m);
        CHECKF(!(m->flags & DH_DLOSS_DEVICE), "%s flagged", host[s]);
        dh_dloss_config cfg = { 16, 4, 1, 10 };
        dh_dloss *L = NULL;
        dh_err e;
        int32_t db[10] = { 0, 1, 2, 3, 0, 1, 2, 3, 0, 1 };
        REQUIRE(dh_dloss_create(host[s], NULL, 0, &cfg, &L, &e) == DH_OK);
        dh_dloss_set_database(L, db, NULL, 10, &e);
        int64_t idx[4] = { 0, 1, 2, 3 };
        dh_dloss_batch bt = { .rows = 4, .labels = db, .idx = idx };
        float dummy;
        CHECK(dh_dloss_eval_cuda(L, &bt, &dummy, NULL, NULL, &e) == DH_EUNSUPPORTED && strstr(e.msg, "no device path"));
        dh_dloss_free(L);
    }
}

/* Buffers kept between calls: larger after smaller, smaller again, after a release. */
static void t_buffers_grow_and_shrink(void) {
    if (!have_gpu()) SKIP_TEST("no CUDA device");
    compare("dpsh", 16, 8, 3, 0, 0);
    compare("dtsh", 120, 96, 5, 1, 0);
    compare("orthohash", 300, 32, 50, 0, 0);
    compare("dch", 20, 24, 3, 0, 0);
    dh_dloss_cuda_release();
    compare("csq", 40, 16, 3, 1, 0);
}

/* A training-size batch: the device path's time against the host's. */
static void t_timing(void) {
    if (!have_gpu()) SKIP_TEST("no CUDA device");
    const char *q = getenv("DH_GPU_QUICK");
    if (q && !strcmp(q, "1")) {
        printf("# timing: left out (DH_GPU_QUICK=1)\n");
        return;
    }
    compare("hashnet", 1024, 64, 100, 0, 0);
    compare("dch", 1024, 64, 100, 1, 0);
}

/* The trainer (kernels/train/train_hash.c) on CUDA against the same on the
 * CPU, a registry loss, three steps: the device path where the method has
 * one (dpsh, hashnet, mihash, csq), the host path on the CUDA trainer
 * otherwise (greedyhash); the losses of every step and W at the end agree. */
static void trainer_case(const char *spec) {
    enum { B = 48, K = 32, D = 64, C = 5, STEPS = 3 };
    static float W0[K * D], b0[K], z[B * D], Wc[K * D], Wg[K * D], bc[K], bg[K];
    int32_t lab[B];
    for (int t = 0; t < K * D; t++) W0[t] = (float)((urand() * 2 - 1) * 0.2);
    for (int k = 0; k < K; k++) b0[k] = (float)((urand() * 2 - 1) * 0.1);
    for (int t = 0; t < B * D; t++) z[t] = (float)(urand() * 2 - 1);
    for (int i = 0; i < B; i++) lab[i] = (int32_t)(urand() * C);
    dh_err e;
    double lossc[STEPS], lossg[STEPS];
    for (int dev = 0; dev < 2; dev++) {
        dk_device d = dev ? DK_CUDA : DK_CPU;
        dh_dloss_config cfg = { K, C, 5, B };
        dh_dloss *L = NULL;
        REQUIRE(dh_dloss_create_spec(spec, &cfg, &L, &e) == DH_OK);
        train_hash_opts o = { { DH_HL_BALANCED, 1 }, 0.9f, 0.0f, NULL, 1.0, L };
        train_hash t;
        dk_tensor zt = { 0 };
        int64_t idx[B];
        for (int i = 0; i < B; i++) idx[i] = i;
        int rc = dk_init(d, &e);
        if (!rc) rc = train_hash_init(&t, d, K, D, B, W0, b0, &o, &e);
        if (!rc) rc = dk_tensor_alloc4(&zt, d, 2, B, D, 1, 1, &e);
        if (!rc) rc = dk_upload(&zt, z, (int64_t)B * D, &e);
        for (int s = 0; !rc && s < STEPS; s++) {
            train_hash_pos pos = { idx, s, 0 };
            train_hash_stats st;
            rc = train_hash_step(&t, &zt, lab, &pos, 0.05f, 0, &st, &e);
            (dev ? lossg : lossc)[s] = st.loss;
        }
        if (!rc) rc = train_hash_get(&t, dev ? Wg : Wc, dev ? bg : bc, &e);
        CHECKF(rc == DH_OK, "%s on %s: %s", spec, dev ? "cuda" : "cpu", e.msg);
        dk_tensor_free(&zt);
        if (rc == DH_OK) train_hash_free(&t);
        dh_dloss_free(L);
        if (rc) return;
    }
    double wmax = 0, werr = 0, lerr = 0;
    for (int t = 0; t < K * D; t++) wmax = fmax(wmax, fabs(Wc[t]));
    for (int t = 0; t < K * D; t++) {
        double err = fabs(Wg[t] - Wc[t]);
        werr = fmax(werr, err);
        CHECKF(err <= 1e-5 * wmax + 1e-4 * fabs(Wc[t]), "%s: W[%d] cuda %.9g cpu %.9g", spec, t, Wg[t], Wc[t]);
    }
    for (int s = 0; s < STEPS; s++) {
        lerr = fmax(lerr, fabs(lossg[s] - lossc[s]));
        CHECKF(fabs(lossg[s] - lossc[s]) <= 1e-5 * fmax(1, fabs(lossc[s])) + 1e-4 * fabs(lossc[s]),
               "%s: step %d loss cuda %.9g cpu %.9g", spec, s, lossg[s], lossc[s]);
    }
    const dh_dloss_method *m = dh_dloss_find(spec);
    printf("# trainer %-10s (%s path on cuda): %d steps, loss %.8g -> %.8g, max |loss cuda-cpu| %.2g, "
           "max |W cuda-cpu| %.3g (max |W| %.3g)\n",
           spec, m && (m->flags & DH_DLOSS_DEVICE) ? "device" : "host", STEPS, lossc[0], lossc[STEPS - 1], lerr, werr,
           wmax);
}
static void t_trainer_cuda_vs_cpu(void) {
    if (!have_gpu()) SKIP_TEST("no CUDA device");
    const char *specs[] = { "dpsh", "hashnet", "csq", "mihash", "greedyhash" };
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) trainer_case(specs[s]);
}

int main(void) {
    RUN(t_deephash);
    RUN(t_deephash_sum);
    RUN(t_dpsh);
    RUN(t_dhn);
    RUN(t_hashnet);
    RUN(t_hashnet_beta);
    RUN(t_dch);
    RUN(t_dsh);
    RUN(t_dsh_margin);
    RUN(t_dtsh);
    RUN(t_mihash);
    RUN(t_mihash_bins);
    RUN(t_csq);
    RUN(t_csq_bernoulli);
    RUN(t_orthohash);
    RUN(t_orthohash_quan);
    RUN(t_loss_only);
    RUN(t_host_only_refused);
    RUN(t_buffers_grow_and_shrink);
    RUN(t_timing);
    RUN(t_trainer_cuda_vs_cpu);
    if (have_gpu()) printf("# worst error / tolerance over the run: %.3g\n", worst_rel);
    dh_dloss_cuda_release();
    dk_shutdown();
    return check_done();
}
