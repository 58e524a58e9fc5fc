/* test_dk_steady.c — no allocation in the steady state: after a warm-up
 * training step and inference batch, further training steps and inference
 * batches of the same size allocate nothing in the library (its counters:
 * dk_cpu_get_stats) and fault no new pages (getrusage minor faults), on
 * both CPU backends. Under AddressSanitizer (whose allocator keeps freed
 * memory in quarantine, so any malloc/free pair touches fresh pages) the
 * page-fault check is replaced by counting calls to malloc that request
 * 64 KiB or more (the sizes that would be fresh mappings), and small ones
 * are reported.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "check.h"
#include "dk.h"
#include "net.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
/* from <sanitizer/allocator_interface.h>, which gcc does not ship */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));
static volatile long n_small, n_large;
static void on_malloc(const volatile void *p, size_t size) {
    (void)p;
    if (size >= 65536)
        n_large++;
    else
        n_small++;
}
static void on_free(const volatile void *p) { (void)p; }
#else
#define ASAN 0
#endif

static long minflt(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

static const char *spec = "input 3 16 16\n"
                          "conv 16 k3 p1 nobias\n"
                          "bn\n"
                          "relu\n"
                          "conv 32 k5 p2\n"
                          "maxpool k2\n"
                          "bn\n"
                          "relu\n"
                          "res\n"
                          "  conv 32 k3 p1 nobias\n"
                          "  bn\n"
                          "  relu\n"
                          "end\n"
                          "maxpool k3 s2 p1\n"
                          "avgpool k3 s2 p1\n"
                          "flatten\n"
                          "fc 64 name=z\n"
                          "relu\n"
                          "dropout 0.2\n"
                          "feature z\n";

static void steady(dk_cpu_backend b) {
    dh_err e;
    if (dk_cpu_set_backend(b, &e)) SKIP_TEST("%s", e.msg);
    netspec ns;
    REQUIRE(netspec_parse(spec, "steady", &ns, &e) == 0);
    const int64_t B = 32, S = 256;
    net *n;
    dk_tensor x;
    REQUIRE(net_create(&ns, 10, DK_CPU, B, &n, &e) == 0 && net_init(n, 3, &e) == 0);
    REQUIRE(dk_tensor_alloc4(&x, DK_CPU, 4, B, 3, 16, 16, &e) == 0);
    uint8_t *img = malloc((size_t)S * 3 * 16 * 16);
    int32_t *lab = malloc(S * sizeof *lab), *perm = malloc(S * sizeof *perm), *bl = malloc(B * sizeof *bl);
    REQUIRE(img && lab && perm && bl);
    for (int64_t i = 0; i < S * 3 * 16 * 16; i++) img[i] = (uint8_t)(i * 2654435761u >> 13);
    for (int64_t i = 0; i < S; i++) lab[i] = (int32_t)(i % 10);
    float lr[NET_NGROUPS] = { 0.01f, 0.01f }, wd[NET_NGROUPS] = { 5e-4f, 5e-4f };
    dk_cpu_stats s0, s1;
    long f0 = 0;
#if ASAN
    long small0 = 0, large0 = 0;
#endif
    for (int it = 0; it < 5; it++) {
        if (it == 2) { /* after two warm-up rounds */
            dk_cpu_get_stats(&s0);
            f0 = minflt();
#if ASAN
            small0 = n_small;
            large0 = n_large;
#endif
        }
        dk_permutation(perm, S, 1, (uint64_t)it);
        double loss;
        int64_t correct;
        REQUIRE(dk_images_augment(img, S, 3, 16, 16, perm, 2, 1, n->mean, n->std, 5, (uint64_t)it * B, &x, &e) == 0);
        REQUIRE(dk_gather_i32(DK_CPU, lab, perm, B, bl, &e) == 0);
        REQUIRE(net_grad_xent(n, &x, bl, 0.1f, &loss, &correct, &e) == 0);
        REQUIRE(net_sgd_step(n, lr, 0.9f, wd, 1, &e) == 0);
        REQUIRE(net_eval_xent(n, &x, bl, &loss, &correct, &e) == 0);
    }
    dk_cpu_get_stats(&s1);
    long df = minflt() - f0;
    printf("  %-6s warm-up: %lld allocations, %.1f MiB, %lld primitives; 3 steady rounds: %lld allocations, "
           "%ld minor faults",
           dk_cpu_backend_name(b), (long long)s0.allocs, s0.bytes / 1048576.0, (long long)s0.primitives,
           (long long)(s1.allocs - s0.allocs), df);
#if ASAN
    printf(" (ASan: not checked); mallocs of the process (OpenBLAS, oneDNN) >= 64 KiB: %ld, smaller: %ld",
           n_large - large0, n_small - small0);
    /* OpenBLAS (threaded sgemm) and oneDNN (gemm packing) malloc per call; glibc reuses those
     * blocks (no new pages: the optimised build checks), ASan does not: reported only */
#else
    CHECK(df == 0);
#endif
    printf("\n");
    CHECK(s1.allocs == s0.allocs && s1.bytes == s0.bytes && s1.primitives == s0.primitives);
    net_free(n);
    netspec_free(&ns);
    dk_tensor_free(&x);
    free(img);
    free(lab);
    free(perm);
    free(bl);
}

static void t_steady_ref(void) { steady(DK_CPU_REF); }
static void t_steady_onednn(void) {
    if (!dk_cpu_has_onednn()) SKIP_TEST("this build has no oneDNN backend");
    steady(DK_CPU_ONEDNN);
}

int main(void) {
#if ASAN
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
#endif
    dh_err e;
    if (dk_init(DK_CPU, &e)) {
        printf("FAIL init: %s\n", e.msg);
        return 1;
    }
    RUN(t_steady_ref);
    RUN(t_steady_onednn);
    dk_shutdown();
    return check_done();
}
