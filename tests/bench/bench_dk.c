/* bench_dk.c — kernel library throughput: convolution forward + backward
 * (data and filter) in GFLOP/s for LeNet-sized and CIFAR-sized layers, and
 * a whole LeNet training step (images/s), on the CPU; with --gpu also on
 * the CUDA backend when a device is present.
 *
 *   bench_dk [--gpu] [--quick]
 *
 * FLOPs counted: 2 N F C KH KW OH OW per convolution pass (three passes per
 * forward + backward). Pooling (the cifar net's three layers, batch 128):
 * milliseconds per forward and per backward call (wall, and CPU time of
 * all threads), and the input's GB/s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "dk.h"

static int quick;

/* Process CPU seconds (all threads): on a shared, loaded machine the wall
 * time overstates the cost; both are printed. */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const dh_err *e) {
    fprintf(stderr, "bench_dk: %s\n", e->msg);
    exit(1);
}

static dk_tensor T(dk_device d, int nd, int64_t a, int64_t b, int64_t c, int64_t x) {
    dk_tensor t;
    dh_err e;
    if (dk_tensor_alloc4(&t, d, nd, a, b, c, x, &e)) die(&e);
    if (dk_rand_uniform(&t, -1, 1, 1, 0, &e)) die(&e);
    return t;
}

typedef struct {
    const char *name;
    int N, C, H, W, F, K, s, p;
} convcase;

static void bench_conv(dk_device d, const convcase *c) {
    int64_t OH = dk_out_size(c->H, c->K, c->s, c->p), OW = dk_out_size(c->W, c->K, c->s, c->p);
    dk_tensor x = T(d, 4, c->N, c->C, c->H, c->W), w = T(d, 4, c->F, c->C, c->K, c->K), b = T(d, 1, c->F, 1, 1, 1);
    dk_tensor y = T(d, 4, c->N, c->F, OH, OW), dx = T(d, 4, c->N, c->C, c->H, c->W),
              dw = T(d, 4, c->F, c->C, c->K, c->K);
    dk_tensor db = T(d, 1, c->F, 1, 1, 1);
    double flop = 2.0 * c->N * c->F * c->C * c->K * c->K * (double)OH * OW;
    dh_err e;
    double tf = 0, tb = 0;
    int reps = 0;
    double budget = quick ? 0.2 : 1.0, t0 = dh_now();
    do {
        double a = dh_now();
        if (dk_conv2d_forward(&x, &w, &b, c->s, c->p, &y, &e)) die(&e);
        if (dk_sync(d, &e)) die(&e);
        double m = dh_now();
        if (dk_conv2d_backward_data(&y, &w, c->s, c->p, &dx, &e)) die(&e);
        if (dk_conv2d_backward_filter(&x, &y, c->s, c->p, &dw, &e)) die(&e);
        if (dk_conv2d_backward_bias(&y, &db, &e)) die(&e);
        if (dk_sync(d, &e)) die(&e);
        double z = dh_now();
        if (reps > 0 || d == DK_CPU) {
            tf += m - a;
            tb += z - m;
        } /* GPU: skip the warm-up pass */
        reps++;
    } while (dh_now() - t0 < budget || reps < 3);
    int n = d == DK_CPU ? reps : reps - 1;
    printf("%-5s conv %-22s N=%-4d %3d->%-3d %2dx%-2d k%d s%d p%d: fwd %7.2f GFLOP/s, bwd %7.2f GFLOP/s, "
           "fwd+bwd %7.2f GFLOP/s (%.2f ms/iter)\n",
           dk_device_name(d), c->name, c->N, c->C, c->F, c->H, c->W, c->K, c->s, c->p, flop * n / tf / 1e9,
           2 * flop * n / tb / 1e9, 3 * flop * n / (tf + tb) / 1e9, (tf + tb) / n * 1e3);
    dk_tensor *all[] = { &x, &w, &b, &y, &dx, &dw, &db };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dk_tensor_free(all[i]);
}

/* LeNet (Caffe): conv 20 k5 -> maxpool 2 -> conv 50 k5 -> maxpool 2 -> fc 500 -> relu -> fc 10 -> softmax CE,
 * forward + backward + SGD on all parameters. */
static void bench_lenet(dk_device d, int N) {
    dh_err e;
    dk_tensor x = T(d, 4, N, 1, 28, 28);
    dk_tensor w1 = T(d, 4, 20, 1, 5, 5), b1 = T(d, 1, 20, 1, 1, 1), c1 = T(d, 4, N, 20, 24, 24),
              p1 = T(d, 4, N, 20, 12, 12);
    dk_tensor w2 = T(d, 4, 50, 20, 5, 5), b2 = T(d, 1, 50, 1, 1, 1), c2 = T(d, 4, N, 50, 8, 8),
              p2 = T(d, 4, N, 50, 4, 4);
    dk_tensor w3 = T(d, 2, 500, 800, 1, 1), b3 = T(d, 1, 500, 1, 1, 1), h3 = T(d, 2, N, 500, 1, 1);
    dk_tensor w4 = T(d, 2, 10, 500, 1, 1), b4 = T(d, 1, 10, 1, 1, 1), z = T(d, 2, N, 10, 1, 1);
    dk_tensor gz = T(d, 2, N, 10, 1, 1), gh3 = T(d, 2, N, 500, 1, 1), gp2 = T(d, 4, N, 50, 4, 4),
              gc2 = T(d, 4, N, 50, 8, 8);
    dk_tensor gp1 = T(d, 4, N, 20, 12, 12), gc1 = T(d, 4, N, 20, 24, 24);
    dk_tensor gw1 = T(d, 4, 20, 1, 5, 5), gb1 = T(d, 1, 20, 1, 1, 1), gw2 = T(d, 4, 50, 20, 5, 5),
              gb2 = T(d, 1, 50, 1, 1, 1);
    dk_tensor gw3 = T(d, 2, 500, 800, 1, 1), gb3 = T(d, 1, 500, 1, 1, 1), gw4 = T(d, 2, 10, 500, 1, 1),
              gb4 = T(d, 1, 10, 1, 1, 1);
    dk_tensor *params[] = { &w1, &b1, &w2, &b2, &w3, &b3, &w4, &b4 },
              *grads[] = { &gw1, &gb1, &gw2, &gb2, &gw3, &gb3, &gw4, &gb4 };
    dk_tensor vel[8];
    for (int i = 0; i < 8; i++) {
        vel[i] = T(d, 1, params[i]->n, 1, 1, 1);
        dk_zero(&vel[i], NULL);
    }
    int32_t *lab = NULL, *hl = malloc((size_t)N * sizeof *hl);
    for (int i = 0; i < N; i++) hl[i] = i % 10;
    if (dk_mem_alloc(d, (size_t)N * sizeof *lab, (void **)&lab, &e) ||
        dk_mem_upload(d, lab, hl, (size_t)N * sizeof *lab, &e))
        die(&e);
    dk_tensor p2v;
    int64_t s2[2] = { N, 800 };
    dk_tensor_view(&p2, 2, s2, &p2v, NULL);
    dk_tensor gp2v;
    dk_tensor_view(&gp2, 2, s2, &gp2v, NULL);
    int steps = 0;
    double budget = quick ? 0.3 : 2.0, t0 = 0, c0 = 0;
    for (;;) {
        if (steps == 1) {
            if (dk_sync(d, &e)) die(&e);
            t0 = dh_now();
            c0 = cpu_now();
        } /* first step is warm-up */
        double loss;
        if (dk_conv2d_forward(&x, &w1, &b1, 1, 0, &c1, &e) || dk_maxpool_forward(&c1, 2, 2, 0, &p1, &e) ||
            dk_conv2d_forward(&p1, &w2, &b2, 1, 0, &c2, &e) || dk_maxpool_forward(&c2, 2, 2, 0, &p2, &e) ||
            dk_fc_forward(&p2v, &w3, &b3, &h3, &e) || dk_relu_forward(&h3, &h3, &e) ||
            dk_fc_forward(&h3, &w4, &b4, &z, &e) ||
            dk_softmax_xent(&z, lab, 0.0f, 1.0f, steps % 50 == 0 ? &loss : NULL, NULL, &gz, &e) ||
            dk_fc_backward(&h3, &w4, &gz, &gh3, &gw4, &gb4, &e) || dk_relu_backward(&h3, &gh3, &gh3, &e) ||
            dk_fc_backward(&p2v, &w3, &gh3, &gp2v, &gw3, &gb3, &e) ||
            dk_maxpool_backward(&c2, &p2, &gp2, 2, 2, 0, &gc2, &e) ||
            dk_conv2d_backward_filter(&p1, &gc2, 1, 0, &gw2, &e) || dk_conv2d_backward_bias(&gc2, &gb2, &e) ||
            dk_conv2d_backward_data(&gc2, &w2, 1, 0, &gp1, &e) ||
            dk_maxpool_backward(&c1, &p1, &gp1, 2, 2, 0, &gc1, &e) ||
            dk_conv2d_backward_filter(&x, &gc1, 1, 0, &gw1, &e) || dk_conv2d_backward_bias(&gc1, &gb1, &e))
            die(&e);
        for (int i = 0; i < 8; i++)
            if (dk_sgd_step(params[i], grads[i], &vel[i], 0.01f, 0.9f, 5e-4f, 0, &e)) die(&e);
        steps++;
        if (steps > 1 && steps % 5 == 0) {
            if (dk_sync(d, &e)) die(&e);
            if (dh_now() - t0 >= budget && steps >= 6) break;
        }
    }
    double dt = dh_now() - t0, dc = cpu_now() - c0;
    double ips = (double)(steps - 1) * N / dt;
    printf("%-5s lenet train step (fwd+bwd+sgd)   batch %-4d: %8.0f images/s  (%.2f ms/step wall, %.2f ms CPU time "
           "over all threads; 60,000 images: %.1f s/epoch)\n",
           dk_device_name(d), N, ips, dt / (steps - 1) * 1e3, dc / (steps - 1) * 1e3, 60000.0 / ips);
    dk_mem_free(d, lab);
    free(hl);
    dk_tensor *all[] = { &x,  &w1,  &b1,  &c1,  &p1,  &w2,  &b2,  &c2,  &p2,  &w3,  &b3,  &h3,  &w4,  &b4, &z,
                         &gz, &gh3, &gp2, &gc2, &gp1, &gc1, &gw1, &gb1, &gw2, &gb2, &gw3, &gb3, &gw4, &gb4 };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dk_tensor_free(all[i]);
    for (int i = 0; i < 8; i++) dk_tensor_free(&vel[i]);
}

typedef struct {
    const char *name;
    int avg, N, C, H, W, k, s, p;
} poolcase;

static void bench_pool(dk_device d, const poolcase *c) {
    int64_t OH = dk_out_size(c->H, c->k, c->s, c->p), OW = dk_out_size(c->W, c->k, c->s, c->p);
    dk_tensor x = T(d, 4, c->N, c->C, c->H, c->W), y = T(d, 4, c->N, c->C, OH, OW), dx = T(d, 4, c->N, c->C, c->H, c->W);
    dh_err e;
    double tf = 0, tb = 0, cf = 0, cb = 0;
    int reps = 0;
    double budget = quick ? 0.2 : 1.0, t0 = dh_now();
    do {
        double a = dh_now(), ca = cpu_now();
        int rc = c->avg ? dk_avgpool_forward(&x, c->k, c->s, c->p, &y, &e)
                        : dk_maxpool_forward(&x, c->k, c->s, c->p, &y, &e);
        if (rc || dk_sync(d, &e)) die(&e);
        double m = dh_now(), cm = cpu_now();
        rc = c->avg ? dk_avgpool_backward(&y, c->k, c->s, c->p, &dx, &e)
                    : dk_maxpool_backward(&x, &y, &y, c->k, c->s, c->p, &dx, &e);
        if (rc || dk_sync(d, &e)) die(&e);
        double z = dh_now(), cz = cpu_now();
        if (reps > 0) { /* skip the warm-up pass */
            tf += m - a;
            tb += z - m;
            cf += cm - ca;
            cb += cz - cm;
        }
        reps++;
    } while (dh_now() - t0 < budget || reps < 4);
    int n = reps - 1;
    printf("%-5s %-22s N=%-4d C=%-3d %2dx%-2d k%d s%d p%d: fwd %7.3f ms (%6.2f GB/s in; cpu %7.3f ms), "
           "bwd %7.3f ms (cpu %7.3f ms)\n",
           dk_device_name(d), c->name, c->N, c->C, c->H, c->W, c->k, c->s, c->p, tf / n * 1e3,
           4.0 * (double)x.n * n / tf / 1e9, cf / n * 1e3, tb / n * 1e3, cb / n * 1e3);
    dk_tensor_free(&x);
    dk_tensor_free(&y);
    dk_tensor_free(&dx);
}

static const poolcase pools[] = {
    { "cifar maxpool1", 0, 128, 32, 32, 32, 3, 2, 1 },
    { "cifar avgpool2", 1, 128, 32, 16, 16, 3, 2, 1 },
    { "cifar avgpool3", 1, 128, 64, 8, 8, 3, 2, 1 },
    { "lenet maxpool1", 0, 64, 20, 24, 24, 2, 2, 0 },
};

static const convcase cases[] = {
    { "lenet conv1", 64, 1, 28, 28, 20, 5, 1, 0 },
    { "lenet conv2", 64, 20, 12, 12, 50, 5, 1, 0 },
    { "cifar(caffe) conv1", 100, 3, 32, 32, 32, 5, 1, 2 },
    { "cifar(caffe) conv2", 100, 32, 16, 16, 32, 5, 1, 2 },
    { "fast-net 64->128 3x3", 128, 64, 16, 16, 128, 3, 1, 1 },
};

int main(int argc, char **argv) {
    int gpu = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--gpu") == 0)
            gpu = 1;
        else if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else {
            fprintf(stderr, "usage: bench_dk [--gpu] [--quick]\n");
            return 2;
        }
    }
    dh_err e;
    dk_device devs[2];
    int nd = 0;
    if (!gpu) devs[nd++] = DK_CPU;
    if (gpu) {
        if (!dk_cuda_available()) {
            printf("cuda: no CUDA device available, GPU figures skipped\n");
            return 0;
        }
        devs[nd++] = DK_CUDA;
    }
    for (int k = 0; k < nd; k++) {
        if (dk_init(devs[k], &e)) die(&e);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) bench_conv(devs[k], &cases[i]);
        for (size_t i = 0; i < sizeof pools / sizeof *pools; i++) bench_pool(devs[k], &pools[i]);
        bench_lenet(devs[k], 64);
        if (devs[k] == DK_CUDA) bench_lenet(devs[k], 512);
    }
    dk_shutdown();
    return 0;
}
