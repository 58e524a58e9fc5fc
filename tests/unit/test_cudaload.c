/* test_cudaload.c — the CPU side of the CUDA path, on a machine without a
 * GPU: how the CUDA libraries are found (folders, Python wheel layout,
 * $DH_CUDA_PATH), the dlerror() parsing the loader relies on, what
 * --device cuda says when CUDA cannot be used (DH_EDEVICE, exit 4 in the
 * programs), the argument checks the CUDA entry points make before loading
 * anything, and the batch-norm refusal shared by both devices.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "check.h"
#include "dh_cudaload.h"
#include "dk.h"
#include "hashloss.h"

static char root[256];

static void mkdirs(const char *path) {
    char p[512];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
}

static void touch(const char *dir, const char *name) {
    char p[512];
    mkdirs(dir);
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) fclose(f);
}

static void clear_env(void) {
    static const char *const vars[] = { "DH_CUDA_PATH", "DH_CUDA_PATH_ONLY", "VIRTUAL_ENV", "CONDA_PREFIX",
                                        "PYTHONPATH",   "CUDA_HOME",         "CUDA_PATH",   "CUDNN_HOME" };
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) unsetenv(vars[i]);
}

static void t_dlerror_parsing(void) {
    char n[256];
    CHECK(dh_cuda_dlerror_missing("libcudnn.so.9: cannot open shared object file: No such file or directory", n,
                                  sizeof n) == 0);
    CHECK(strcmp(n, "libcudnn.so.9") == 0);
    CHECK(dh_cuda_dlerror_missing("/x/lib/libdhcuda.so: cannot open shared object file: No such file or directory", n,
                                  sizeof n) == 0);
    CHECK(strcmp(n, "/x/lib/libdhcuda.so") == 0);
    CHECK(dh_cuda_dlerror_missing("/x/libdhcuda.so: undefined symbol: cudnnCreate", n, sizeof n) != 0);
    CHECK(dh_cuda_dlerror_missing(NULL, n, sizeof n) != 0);
    CHECK(dh_cuda_dlerror_missing("a-very-long-name.so: cannot open shared object file", n, 4) != 0);
}

/* The pip wheels: nvidia-cudnn-cu13 ships only libcudnn.so.9 in
 * nvidia/cudnn/lib; CUDA 13's nvidia-cublas puts libcublas.so.13 in
 * nvidia/cu13/lib. */
static void t_finds_wheel_layout(void) {
    clear_env();
    char venv[512], dir[600], path[1024];
    snprintf(venv, sizeof venv, "%s/venv", root);
    snprintf(dir, sizeof dir, "%s/lib/python3.12/site-packages/nvidia/cudnn/lib", venv);
    touch(dir, "libcudnn.so.9");
    snprintf(dir, sizeof dir, "%s/lib/python3.12/site-packages/nvidia/cu13/lib", venv);
    touch(dir, "libcublas.so.13");
    setenv("VIRTUAL_ENV", venv, 1);
    CHECK(dh_cuda_find_lib("libcudnn.so.9", path, sizeof path) == 0);
    CHECKF(strstr(path, "/venv/lib/python3.12/site-packages/nvidia/cudnn/lib/libcudnn.so.9") != NULL, "found %s", path);
    CHECK(dh_cuda_find_lib("libcublas.so.13", path, sizeof path) == 0);
    CHECKF(strstr(path, "nvidia/cu13/lib/libcublas.so.13") != NULL, "found %s", path);
    /* a conda environment, dist-packages */
    clear_env();
    char conda[512];
    snprintf(conda, sizeof conda, "%s/conda", root);
    snprintf(dir, sizeof dir, "%s/lib/python3.10/dist-packages/nvidia/cudnn/lib", conda);
    touch(dir, "libcudnn.so.9");
    setenv("CONDA_PREFIX", conda, 1);
    CHECK(dh_cuda_find_lib("libcudnn.so.9", path, sizeof path) == 0 && strstr(path, "/conda/") != NULL);
    /* a PYTHONPATH entry (a site folder itself) */
    clear_env();
    char site[512];
    snprintf(site, sizeof site, "%s/site", root);
    snprintf(dir, sizeof dir, "%s/nvidia/cudnn/lib", site);
    touch(dir, "libdhtest_cudnn.so.9"); /* a name no system folder has */
    char pp[1100];
    snprintf(pp, sizeof pp, "/nonexistent:%s", site);
    setenv("PYTHONPATH", pp, 1);
    CHECK(dh_cuda_find_lib("libdhtest_cudnn.so.9", path, sizeof path) == 0 && strstr(path, "/site/nvidia/") != NULL);
    clear_env();
}

static void t_dh_cuda_path_first_and_only(void) {
    clear_env();
    char a[512], b[512], both[1100], path[1024];
    snprintf(a, sizeof a, "%s/first", root);
    snprintf(b, sizeof b, "%s/second", root);
    touch(a, "libfake.so.7");
    touch(b, "libfake.so.7");
    touch(b, "libonly2.so.1");
    snprintf(both, sizeof both, "%s:%s", a, b);
    setenv("DH_CUDA_PATH", both, 1);
    CHECK(dh_cuda_find_lib("libfake.so.7", path, sizeof path) == 0 && strstr(path, "/first/") != NULL);
    CHECK(dh_cuda_find_lib("libonly2.so.1", path, sizeof path) == 0 && strstr(path, "/second/") != NULL);
    CHECK(dh_cuda_find_lib("libnothere.so.3", path, sizeof path) != 0);
    /* DH_CUDA_PATH_ONLY: nothing else, not even CUDA_HOME */
    char cuda[512];
    snprintf(cuda, sizeof cuda, "%s/cuda/lib64", root);
    touch(cuda, "libcudnn.so.9");
    snprintf(cuda, sizeof cuda, "%s/cuda", root);
    setenv("CUDA_HOME", cuda, 1);
    CHECK(dh_cuda_find_lib("libcudnn.so.9", path, sizeof path) == 0 && strstr(path, "/cuda/lib64/") != NULL);
    setenv("DH_CUDA_PATH_ONLY", "1", 1);
    CHECK(dh_cuda_find_lib("libcudnn.so.9", path, sizeof path) != 0);
    clear_env();
}

/* No GPU here: --device cuda is DH_EDEVICE (exit 4) with a reason that
 * names what is missing; auto is the CPU; CPU work goes on. */
static void t_device_cuda_without_cuda(void) {
    dh_err e;
    dk_device d = DK_CUDA;
    if (dk_cuda_available()) SKIP_TEST("a CUDA device is here");
    memset(&e, 0, sizeof e);
    CHECK(dk_device_parse("cuda", &d, &e) == DH_EDEVICE);
    CHECKF(strstr(e.msg, "libcuda.so.1") || strstr(e.msg, "no CUDA backend") || strstr(e.msg, "CUDA device"),
           "message does not say why: %s", e.msg);
    printf("# --device cuda: %s\n", e.msg);
    CHECK(dk_init(DK_CUDA, &e) == DH_EDEVICE);
    CHECK(dk_device_parse("auto", &d, &e) == 0 && d == DK_CPU);
    CHECK(dk_device_parse(NULL, &d, &e) == 0);
    CHECK(dk_init(DK_CPU, &e) == 0);
    void *p = NULL;
    CHECK(dk_mem_alloc(DK_CUDA, 16, &p, &e) == DH_EDEVICE && p == NULL);
    dk_mem_free(DK_CUDA, (void *)1); /* never loads the backend, never crashes */
    CHECK(dk_cublas_handle() == NULL && dk_cudnn_handle() == NULL);
    dk_allow_tf32(1);
    dk_allow_tf32(0);
    char buf[256];
    CHECK(strcmp(dh_cuda_libs_report(buf, sizeof buf), "(no CUDA library loaded)") == 0);
    CHECK(dh_cuda_loaded() == 0);
    CHECK(dh_cuda_sym("dk_cuda_init", NULL) == NULL);
}

static void t_hashloss_cuda_checks_first(void) {
    float u[8] = { 0 }, du[8];
    int32_t lab[2] = { 0, 1 };
    dh_hashloss_stats st;
    dh_err e;
    CHECK(dh_hashloss_cuda_host(u, lab, 1, 4, NULL, du, &st, &e) == DH_EINVAL);
    CHECK(dh_hashloss_cuda_host(u, lab, 2, DH_HL_MAX_BITS + 1, NULL, du, &st, &e) == DH_EINVAL);
    CHECK(strstr(e.msg, "1..4096") != NULL);
    CHECK(dh_hashloss_cuda(u, lab, 2, 0, 1, 1, du, &st, &e) == DH_EINVAL);
    /* valid: then the backend is needed, and (without a GPU) it fails as --device cuda does */
    if (!dk_cuda_available()) CHECK(dh_hashloss_cuda_host(u, lab, 2, 4, NULL, du, &st, &e) == DH_EDEVICE);
    dh_hashloss_cuda_release();
    /* the CPU takes the same range */
    float big[2 * 300];
    for (int i = 0; i < 600; i++) big[i] = (float)((i * 7) % 5) - 2.0f;
    float gb[600];
    CHECK(dh_hashloss_cpu(big, lab, 2, 300, NULL, gb, &st, &e) == DH_OK);
}

/* Training-mode batch norm needs two values per channel on both devices
 * (cuDNN's unbiased variance divides by N*H*W - 1). */
static void t_batchnorm_one_value_per_channel(void) {
    dh_err e;
    dk_tensor x, g, b, rm, rv, y, sm, si;
    REQUIRE(dk_tensor_alloc4(&x, DK_CPU, 4, 1, 3, 1, 1, &e) == 0 &&
            dk_tensor_alloc4(&y, DK_CPU, 4, 1, 3, 1, 1, &e) == 0);
    REQUIRE(dk_tensor_alloc4(&g, DK_CPU, 1, 3, 1, 1, 1, &e) == 0 &&
            dk_tensor_alloc4(&b, DK_CPU, 1, 3, 1, 1, 1, &e) == 0);
    REQUIRE(dk_tensor_alloc4(&rm, DK_CPU, 1, 3, 1, 1, 1, &e) == 0 &&
            dk_tensor_alloc4(&rv, DK_CPU, 1, 3, 1, 1, 1, &e) == 0);
    REQUIRE(dk_tensor_alloc4(&sm, DK_CPU, 1, 3, 1, 1, 1, &e) == 0 &&
            dk_tensor_alloc4(&si, DK_CPU, 1, 3, 1, 1, 1, &e) == 0);
    dk_fill(&g, 1.0f, &e);
    dk_fill(&rv, 1.0f, &e);
    CHECK(dk_batchnorm_forward_train(&x, &g, &b, &rm, &rv, 0.1f, 1e-5f, &y, &sm, &si, &e) == DH_EINVAL);
    CHECKF(strstr(e.msg, "at least 2") != NULL, "%s", e.msg);
    /* inference with one value is fine */
    CHECK(dk_batchnorm_forward_infer(&x, &g, &b, &rm, &rv, 1e-5f, &y, &e) == 0);
    /* two values per channel: (2, 3) */
    dk_tensor x2, y2;
    REQUIRE(dk_tensor_alloc4(&x2, DK_CPU, 2, 2, 3, 1, 1, &e) == 0 &&
            dk_tensor_alloc4(&y2, DK_CPU, 2, 2, 3, 1, 1, &e) == 0);
    float h[6] = { 1, 2, 3, 4, 5, 6 };
    REQUIRE(dk_upload(&x2, h, 6, &e) == 0);
    CHECK(dk_batchnorm_forward_train(&x2, &g, &b, &rm, &rv, 0.1f, 1e-5f, &y2, &sm, &si, &e) == 0);
    dk_tensor *all[] = { &x, &g, &b, &rm, &rv, &y, &sm, &si, &x2, &y2 };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dk_tensor_free(all[i]);
}

int main(void) {
    snprintf(root, sizeof root, "%s/dhcudaload.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(root)) {
        printf("FAIL setup: mkdtemp\n");
        return 1;
    }
    RUN(t_dlerror_parsing);
    RUN(t_finds_wheel_layout);
    RUN(t_dh_cuda_path_first_and_only);
    RUN(t_device_cuda_without_cuda);
    RUN(t_hashloss_cuda_checks_first);
    RUN(t_batchnorm_one_value_per_channel);
    dk_shutdown();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) printf("# could not remove %s\n", root);
    return check_done();
}
