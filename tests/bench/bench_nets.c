/* bench_nets.c — training and inference images/s of the built-in nets on
 * the CPU (lenet batch 64, cifar batch 128, fast and air batch 512), and, where
 * Debian's python3-torch is installed, the same nets in PyTorch
 * (tests/bench/torch_nets.py) on the same images, thread count and batch
 * sizes, run in the same invocation, interleaved net by net, with the ratio.
 *
 *   bench_nets [--quick] [--nets lenet,cifar,fast,air] [--scale F] [--batch B] [--no-torch] [--bf16]
 *
 * Each figure is timed over at least 3 steps after 2 warm-up steps and at
 * least 3 s (lenet), 4 s (cifar), 15 s (fast), 10 s (air) times F (--quick: F = 0.2),
 * every step on its own: the figure is the batch size over the median
 * step's time, so that a step slowed by another process (a page reclaim, a
 * daemon waking) does not move it; torch_nets.py does the same.
 *
 * A training step is what dh-pretrain does per batch: gather a shuffled
 * batch of u8 images and normalise it (dk_images_augment), forward, softmax
 * cross-entropy, backward, SGD with Nesterov momentum and weight decay.
 * Inference: normalise and forward through the net and its head in
 * evaluation mode. Images are synthetic (a fixed hash of the pixel index;
 * labels i mod 10), made the same way in torch_nets.py. Threads: DH_THREADS
 * or every core, for both. --bf16: our DH_PRECISION=bf16 against PyTorch's
 * best configuration (bf16 autocast and channels-last).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "dk.h"
#include "net.h"
#include "netspec.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void die(const dh_err *e, const char *what) {
    fprintf(stderr, "bench_nets: %s: %s\n", what, e->msg);
    exit(1);
}

typedef struct {
    const char *name;
    int batch;
    double seconds; /* per measurement (at least 3 steps after 2 warm-up steps) */
} netcase;

static netcase cases[] = { { "lenet", 64, 3 }, { "cifar", 128, 4 }, { "fast", 512, 15 }, { "air", 512, 10 } };
#define NIMG 4096

typedef struct {
    double train, infer; /* images/s */
    int64_t params;
} result;

/* Pixel i of the synthetic set (also in torch_nets.py). */
static uint8_t pixel(uint64_t i) { return (uint8_t)((i * 2654435761u) >> 13); }

static result run_ours(const netcase *c, double scale) {
    dh_err e;
    netspec ns;
    if (netspec_builtin(c->name, &ns, &e)) die(&e, c->name);
    int C = ns.in[0], H = ns.in[1], W = ns.in[2];
    int64_t B = c->batch, S = NIMG, pix = (int64_t)C * H * W;
    uint8_t *img = malloc((size_t)(S * pix));
    int32_t *lab = malloc(S * sizeof *lab), *perm = malloc(S * sizeof *perm), *blab = malloc(B * sizeof *blab);
    if (!img || !lab || !perm || !blab) {
        fprintf(stderr, "bench_nets: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < S * pix; i++) img[i] = pixel((uint64_t)i);
    for (int64_t i = 0; i < S; i++) lab[i] = (int32_t)(i % 10);
    net *n;
    dk_tensor x;
    if (net_create(&ns, 10, DK_CPU, B, &n, &e) || net_init(n, 1, &e) || dk_tensor_alloc4(&x, DK_CPU, 4, B, C, H, W, &e))
        die(&e, c->name);
    float mean[DK_MAXCHAN], sd[DK_MAXCHAN];
    for (int i = 0; i < C; i++) {
        mean[i] = 0.5f;
        sd[i] = 0.25f;
    }
    net_set_norm(n, mean, sd, &e);
    result r = { 0, 0, net_nparams(n) };
    double budget = c->seconds * scale;
    enum { MAXSTEPS = 1 << 16 };
    double *dt = malloc(MAXSTEPS * sizeof *dt);
    if (!dt) {
        fprintf(stderr, "bench_nets: out of memory\n");
        exit(1);
    }
    for (int train = 1; train >= 0; train--) {
        int64_t steps = 0;
        double t0 = 0, ts = 0;
        for (int64_t it = 0;; it++) {
            if (it == 2) t0 = dh_now(); /* two warm-up steps */
            ts = dh_now();
            int64_t off = (it * B) % (S - B + 1);
            if (it % (S / B) == 0) dk_permutation(perm, S, 7, (uint64_t)it);
            if (dk_images_augment(img, S, C, H, W, perm + off, 0, 0, n->mean, n->std, 3, 0, &x, &e) ||
                dk_gather_i32(DK_CPU, lab, perm + off, B, blab, &e))
                die(&e, "batch");
            double loss;
            int64_t correct;
            if (train) {
                float lr[NET_NGROUPS] = { 0.01f, 0.01f }, wd[NET_NGROUPS] = { 5e-4f, 5e-4f };
                if (net_grad_xent(n, &x, blab, 0.0f, &loss, &correct, &e) || net_sgd_step(n, lr, 0.9f, wd, 1, &e))
                    die(&e, "train");
            } else if (net_eval_xent(n, &x, blab, &loss, &correct, &e)) {
                die(&e, "infer");
            }
            double now = dh_now();
            if (it >= 2) dt[steps++] = now - ts;
            if (it >= 2 && steps >= 3 && (now - t0 >= budget || steps == MAXSTEPS)) break;
        }
        qsort(dt, (size_t)steps, sizeof *dt, cmp_double);
        double ips = B / (steps % 2 ? dt[steps / 2] : 0.5 * (dt[steps / 2 - 1] + dt[steps / 2]));
        if (train)
            r.train = ips;
        else
            r.infer = ips;
    }
    free(dt);
    net_free(n);
    netspec_free(&ns);
    dk_tensor_free(&x);
    free(img);
    free(lab);
    free(perm);
    free(blab);
    return r;
}

/* PyTorch's figures from torch_nets.py: 0 when it could not run. */
static int run_torch(const char *py, const netcase *c, int threads, double scale, int bf16, result *r) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s tests/bench/torch_nets.py --net %s --batch %d --threads %d --seconds %g%s 2>&1", py,
             c->name, c->batch, threads, c->seconds * scale, bf16 ? " --bf16" : "");
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    char line[512];
    int got = 0;
    while (fgets(line, sizeof line, p)) {
        long long np;
        double t, i;
        if (sscanf(line, "TORCH %*s params %lld train %lf infer %lf", &np, &t, &i) == 3) {
            r->params = np;
            r->train = t;
            r->infer = i;
            got = 1;
        } else {
            fprintf(stderr, "torch_nets.py: %s", line);
        }
    }
    return pclose(p) == 0 && got;
}

/* The Python that has torch: Debian's (/usr/bin/python3) first. */
static const char *torch_python(void) {
    static const char *cands[] = { "/usr/bin/python3", "python3" };
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "%s -c 'import torch' >/dev/null 2>&1", cands[i]);
        if (system(cmd) == 0) return cands[i];
    }
    return NULL;
}

int main(int argc, char **argv) {
    double scale = 1.0;
    int use_torch = 1, bf16 = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            scale = 0.2;
        else if (!strcmp(argv[i], "--no-torch"))
            use_torch = 0;
        else if (!strcmp(argv[i], "--bf16"))
            bf16 = 1;
        else if (!strcmp(argv[i], "--nets") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--scale") && i + 1 < argc)
            scale = atof(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            int b = atoi(argv[++i]);
            for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) cases[k].batch = b > 0 ? b : cases[k].batch;
        } else if (!strcmp(argv[i], "--gpu"))
            return 0; /* CPU only */
        else {
            fprintf(stderr, "usage: bench_nets [--quick] [--nets lenet,cifar,fast,air] [--scale F] [--batch B] "
                            "[--no-torch] [--bf16]\n");
            return 2;
        }
    }
    dh_err e;
    if (bf16 && setenv("DH_PRECISION", "bf16", 1)) return 1;
    if (dk_init(DK_CPU, &e)) die(&e, "cpu");
    int threads = dk_threads();
    const char *py = use_torch ? torch_python() : NULL;
    printf("# CPU nets, %d threads, backend %s, %s; PyTorch: %s\n", threads, dk_cpu_backend_name(dk_cpu_get_backend()),
           dk_cpu_precision_name(),
           py          ? (bf16 ? "bf16 autocast + channels-last" : "fp32")
           : use_torch ? "not installed (Debian python3-torch)"
                       : "left out (--no-torch)");
    printf("%-6s %5s %9s | %12s %12s | %12s %12s | %6s %6s\n", "net", "batch", "params", "train img/s", "torch",
           "infer img/s", "torch", "train", "infer");
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const netcase *c = &cases[k];
        if (only && !strstr(only, c->name)) continue;
        result o = run_ours(c, scale), t = { 0, 0, 0 };
        int have = py && run_torch(py, c, threads, scale, bf16, &t);
        if (have)
            printf("%-6s %5d %9lld | %12.0f %12.0f | %12.0f %12.0f | %5.2fx %5.2fx%s\n", c->name, c->batch,
                   (long long)o.params, o.train, t.train, o.infer, t.infer, o.train / t.train, o.infer / t.infer,
                   t.params == o.params ? "" : "  PARAMETER COUNTS DIFFER");
        else
            printf("%-6s %5d %9lld | %12.0f %12s | %12.0f %12s |\n", c->name, c->batch, (long long)o.params, o.train,
                   "-", o.infer, "-");
        if (have && t.params != o.params)
            printf("# %s: %lld parameters here, %lld in PyTorch\n", c->name, (long long)o.params, (long long)t.params);
        fflush(stdout);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("# peak RSS of this process (all nets): %.0f MiB\n", ru.ru_maxrss / 1024.0);
    dk_shutdown();
    return 0;
}
