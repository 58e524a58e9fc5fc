/* test_env.c (GPU) — the CUDA environment, first step of the device check:
 * the CUDA backend loads (libdhcuda.so, the driver, cuBLAS, cuDNN: where
 * each came from), a device is there, the cuBLAS and cuDNN handles are made,
 * and cuDNN's sub-libraries answer (a tiny convolution runs). Prints "#"
 * lines with the libraries, device, driver and library versions; on a
 * machine without a GPU every case FAILs with the reason (no SKIP: the
 * device check must not pass there).
 */
#include <stdio.h>
#include <string.h>
#include "../unit/check.h"
#include "dh_cudaload.h"
#include "dk.h"
#include "dk_impl.h"

static int loaded, usable;

static void t_cuda_backend_loads(void) {
    dh_err e;
    int rc = dh_cuda_load(&e);
    CHECKF(rc == 0, "%s", e.msg);
    loaded = rc == 0;
}

static void t_device_found(void) {
    REQUIRE(loaded);
    dh_err e;
    dk_device d;
    int rc = dk_device_parse("cuda", &d, &e);
    CHECKF(rc == 0, "%s", e.msg);
    usable = rc == 0;
}

static void t_cublas_cudnn_handles(void) {
    REQUIRE(usable);
    dh_err e;
    int rc = dk_init(DK_CUDA, &e);
    CHECKF(rc == 0, "%s", e.msg);
    REQUIRE(rc == 0);
    CHECK(dk_cublas_handle() != NULL);
    CHECK(dk_cudnn_handle() != NULL);
    char buf[1024];
    rc = DH_CUDA_CALL(dk_cuda_info, &e, buf, sizeof buf, &e);
    CHECKF(rc == 0, "%s", e.msg);
    if (rc == 0) printf("# %s\n", buf);
}

/* A 1x1x3x3 convolution through cuDNN (loads its engine sub-libraries). */
static void t_cudnn_runs(void) {
    REQUIRE(usable);
    dh_err e;
    dk_tensor x, w, y;
    REQUIRE(dk_tensor_alloc4(&x, DK_CUDA, 4, 1, 1, 3, 3, &e) == 0);
    REQUIRE(dk_tensor_alloc4(&w, DK_CUDA, 4, 1, 1, 3, 3, &e) == 0);
    REQUIRE(dk_tensor_alloc4(&y, DK_CUDA, 4, 1, 1, 1, 1, &e) == 0);
    REQUIRE(dk_fill(&x, 2.0f, &e) == 0 && dk_fill(&w, 0.5f, &e) == 0);
    int rc = dk_conv2d_forward(&x, &w, NULL, 1, 0, &y, &e);
    CHECKF(rc == 0, "%s", e.msg);
    float h = 0;
    if (rc == 0) {
        REQUIRE(dk_download(&y, &h, 1, &e) == 0);
        CHECKF(h == 9.0f, "3x3 convolution of 2 by 0.5 gave %g, not 9", h);
    }
    dk_tensor_free(&x);
    dk_tensor_free(&w);
    dk_tensor_free(&y);
}

int main(void) {
    RUN(t_cuda_backend_loads);
    RUN(t_device_found);
    RUN(t_cublas_cudnn_handles);
    RUN(t_cudnn_runs);
    char buf[4096];
    printf("# libraries: %s\n", dh_cuda_libs_report(buf, sizeof buf));
    const char *tf = getenv("DH_TF32");
    printf("# TF32: %s\n", tf && !strcmp(tf, "1") ? "on (DH_TF32=1)" : "off (FP32; DH_TF32=1 allows TF32)");
    dk_shutdown();
    return check_done();
}
