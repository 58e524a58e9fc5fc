/* test_train_dist.c — data-parallel training's module alone
 * (kernels/train/train_dist.h): started without a launcher a program is one
 * rank of one (MPI never initialised), every collective leaves its
 * buffers as they are, and the batch slicing rule and its refusal. The
 * ranks' exchange itself is tested under mpirun by tests/cli/mpi.sh. */
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "train_dist.h"

static void t_alone(void) {
    /* as the test runner starts it: no launcher in the environment */
    const char *launch[] = { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK" };
    for (size_t i = 0; i < sizeof launch / sizeof *launch; i++) unsetenv(launch[i]);
    train_dist d;
    dh_err e;
    REQUIRE(train_dist_init(&d, &e) == 0);
    CHECK(d.rank == 0 && d.size == 1 && d.local_size == 1 && !d.mpi);
    char buf[64];
    CHECK(strcmp(train_dist_describe(&d, buf, sizeof buf), "") == 0);
    float h[6] = { 1, 2, 3, 4, 5, 6 };
    dk_tensor t = { DK_CPU, 1, { 6, 1, 1, 1 }, 6, h, 0, 0 }, a = t;
    dk_tensor *ts[1] = { &t };
    double v[2] = { 1.5, -2 };
    CHECK(train_dist_allreduce(&d, ts, 1, 1, &e) == 0 && train_dist_bcast(&d, ts, 1, 0, &e) == 0 &&
          train_dist_allgather(&d, &t, &a, &e) == 0 && train_dist_sum(&d, v, 2, &e) == 0);
    CHECK(h[0] == 1 && h[5] == 6 && v[0] == 1.5 && v[1] == -2);
    train_dist_finalize(&d);
    CHECK(d.size == 1);
    printf("# %s\n", train_dist_library());
}

static void t_slices(void) {
    train_dist d = { 0 };
    dh_err e;
    int64_t r0, n;
    d.size = 4, d.rank = 3;
    CHECK(train_dist_slice(&d, 128, &r0, &n, &e) == 0 && r0 == 96 && n == 32);
    d.rank = 0;
    CHECK(train_dist_slice(&d, 4, &r0, &n, &e) == 0 && r0 == 0 && n == 1);
    CHECK(train_dist_slice(&d, 130, &r0, &n, &e) == DH_EINVAL);
    CHECKF(strstr(e.msg, "a batch of 130 does not divide among 4 ranks") != NULL, "%s", e.msg);
    CHECK(train_dist_slice(&d, 2, &r0, &n, &e) == DH_EINVAL);
}

int main(void) {
    RUN(t_alone);
    RUN(t_slices);
    return check_done();
}
