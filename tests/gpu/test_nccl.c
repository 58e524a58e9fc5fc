/* test_nccl.c (GPU) — NCCL as data-parallel training uses it
 * (kernels/train/train_nccl.h, opened at run time): libnccl.so.2 is found
 * and loaded, a communicator of one rank is made on the GPU, and its
 * all-reduce, all-gather and broadcast run on the tensor library's CUDA
 * tensors (the default stream) with the right results. Several ranks need
 * a GPU each (NCCL refuses two ranks on one device), so the exchange
 * between ranks is left to `mpirun -np N` on a machine with N GPUs; one
 * rank still checks the library, its entry points' C ABI as declared in
 * train_nccl.c, and the stream order. SKIP when libnccl.so.2 is not found
 * (pip install nvidia-nccl-cu13, or DH_CUDA_PATH).
 */
#include <stdio.h>
#include <string.h>
#include "../unit/check.h"
#include "dk.h"
#include "train_nccl.h"

static void t_nccl_one_rank(void) {
    dh_err e;
    int ver = 0;
    if (train_nccl_load(&ver, &e)) SKIP_TEST("%s", e.msg);
    printf("# NCCL %d.%d.%d\n", ver / 10000, ver / 100 % 100, ver % 100);
    REQUIRE(dk_init(DK_CUDA, &e) == 0);
    char id[TRAIN_NCCL_ID_BYTES];
    void *comm = NULL;
    CHECKF(train_nccl_unique_id(id, &e) == 0, "%s", e.msg);
    CHECKF(train_nccl_comm_init(&comm, 1, id, 0, &e) == 0, "%s", e.msg);
    REQUIRE(comm != NULL);
    enum { N = 100000 };
    static float h[N], g[N];
    for (int i = 0; i < N; i++) h[i] = (float)(i % 977) * 0.25f;
    dk_tensor t = { 0 }, a = { 0 };
    REQUIRE(dk_tensor_alloc4(&t, DK_CUDA, 1, N, 1, 1, 1, &e) == 0 &&
            dk_tensor_alloc4(&a, DK_CUDA, 1, N, 1, 1, 1, &e) == 0);
    REQUIRE(dk_upload(&t, h, N, &e) == 0);
    /* queued behind a kernel of the library, read back after: the stream's order */
    CHECKF(dk_scale(&t, 2.0f, &e) == 0 && train_nccl_group(1, &e) == 0 &&
               train_nccl_allreduce_sum(comm, t.data, N, &e) == 0 && train_nccl_group(0, &e) == 0 &&
               train_nccl_allgather(comm, t.data, a.data, N, &e) == 0 && dk_download(&a, g, N, &e) == 0,
           "%s", e.msg);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += g[i] != 2.0f * h[i];
    CHECKF(bad == 0, "%d of %d wrong after all-reduce and all-gather", bad, N);
    CHECKF(dk_fill(&t, 7.0f, &e) == 0 && train_nccl_bcast(comm, t.data, N, 0, &e) == 0 &&
               dk_download(&t, g, N, &e) == 0,
           "%s", e.msg);
    bad = 0;
    for (int i = 0; i < N; i++) bad += g[i] != 7.0f;
    CHECKF(bad == 0, "%d of %d wrong after the broadcast", bad, N);
    dk_tensor_free(&t);
    dk_tensor_free(&a);
    train_nccl_comm_destroy(comm);
}

int main(void) {
    RUN(t_nccl_one_rank);
    dk_shutdown();
    return check_done();
}
