/* train_nccl.c — NCCL opened at run time (train_nccl.h). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <string.h>
#include "train_nccl.h"
#include "dh_cudaload.h"

/* From nccl.h (NCCL 2.x; the C ABI has kept these since 2.0). */
typedef int nccl_result; /* ncclResult_t: 0 ncclSuccess */
typedef struct nccl_id {
    char internal[TRAIN_NCCL_ID_BYTES];
} nccl_id;                 /* ncclUniqueId */
enum { NCCL_FLOAT32 = 7 }; /* ncclFloat32 */
enum { NCCL_SUM = 0 };     /* ncclSum */

static struct {
    int state; /* 0 not tried, 1 loaded, -1 failed (err says why) */
    dh_err err;
    int version;
    nccl_result (*get_version)(int *);
    nccl_result (*get_unique_id)(nccl_id *);
    nccl_result (*comm_init_rank)(void **, int, nccl_id, int);
    nccl_result (*comm_destroy)(void *);
    nccl_result (*group_start)(void);
    nccl_result (*group_end)(void);
    nccl_result (*all_reduce)(const void *, void *, size_t, int, int, void *, void *);
    nccl_result (*all_gather)(const void *, void *, size_t, int, void *, void *);
    nccl_result (*broadcast)(const void *, void *, size_t, int, int, void *, void *);
    const char *(*error_string)(nccl_result);
} L;

static int load(dh_err *e) {
    void *h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        char path[PATH_MAX];
        if (dh_cuda_find_lib("libnccl.so.2", path, sizeof path) != 0)
            return dh_seterr(e, DH_EDEVICE,
                             "NCCL (libnccl.so.2) not found, needed for training on several GPUs: searched the "
                             "linker's path, LD_LIBRARY_PATH, the CUDA folders and the Python wheels "
                             "(nvidia/nccl/lib: pip install nvidia-nccl-cu12); DH_CUDA_PATH=DIR adds a folder");
        h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
        if (!h) {
            const char *m = dlerror();
            return dh_seterr(e, DH_EDEVICE, "NCCL: %s", m ? m : path);
        }
    }
    struct {
        void **fp;
        const char *name;
    } sym[] = {
        { (void **)&L.get_version, "ncclGetVersion" },      { (void **)&L.get_unique_id, "ncclGetUniqueId" },
        { (void **)&L.comm_init_rank, "ncclCommInitRank" }, { (void **)&L.comm_destroy, "ncclCommDestroy" },
        { (void **)&L.group_start, "ncclGroupStart" },      { (void **)&L.group_end, "ncclGroupEnd" },
        { (void **)&L.all_reduce, "ncclAllReduce" },        { (void **)&L.all_gather, "ncclAllGather" },
        { (void **)&L.broadcast, "ncclBroadcast" },         { (void **)&L.error_string, "ncclGetErrorString" }
    };
    for (size_t i = 0; i < sizeof sym / sizeof sym[0]; i++)
        if (!(*sym[i].fp = dlsym(h, sym[i].name)))
            return dh_seterr(e, DH_EDEVICE, "NCCL: libnccl.so.2 has no %s (NCCL older than 2.2?)", sym[i].name);
    if (L.get_version(&L.version) != 0) L.version = 0;
    return DH_OK;
}

int train_nccl_load(int *version, dh_err *e) {
    if (L.state == 0) {
        memset(&L.err, 0, sizeof L.err);
        L.state = load(&L.err) == DH_OK ? 1 : -1;
    }
    if (L.state < 0) {
        if (e) *e = L.err;
        return L.err.code ? (int)L.err.code : DH_EDEVICE;
    }
    if (version) *version = L.version;
    return DH_OK;
}

static int check(nccl_result r, const char *what, dh_err *e) {
    if (r == 0) return DH_OK;
    return dh_seterr(e, DH_EIO, "NCCL %s: %s (error %d)", what, L.error_string ? L.error_string(r) : "failed", r);
}

int train_nccl_unique_id(void *id, dh_err *e) {
    int rc = train_nccl_load(NULL, e);
    if (rc) return rc;
    nccl_id u;
    memset(&u, 0, sizeof u);
    rc = check(L.get_unique_id(&u), "ncclGetUniqueId", e);
    memcpy(id, &u, sizeof u);
    return rc;
}

int train_nccl_comm_init(void **comm, int nranks, const void *id, int rank, dh_err *e) {
    int rc = train_nccl_load(NULL, e);
    if (rc) return rc;
    nccl_id u;
    memcpy(&u, id, sizeof u);
    *comm = NULL;
    return check(L.comm_init_rank(comm, nranks, u, rank), "ncclCommInitRank", e);
}

void train_nccl_comm_destroy(void *comm) {
    if (comm && L.state == 1) L.comm_destroy(comm);
}

int train_nccl_group(int start, dh_err *e) {
    int rc = train_nccl_load(NULL, e);
    if (rc) return rc;
    return start ? check(L.group_start(), "ncclGroupStart", e) : check(L.group_end(), "ncclGroupEnd", e);
}

int train_nccl_allreduce_sum(void *comm, float *buf, size_t n, dh_err *e) {
    int rc = train_nccl_load(NULL, e);
    if (rc) return rc;
    return check(L.all_reduce(buf, buf, n, NCCL_FLOAT32, NCCL_SUM, comm, NULL), "ncclAllReduce", e);
}

int train_nccl_allgather(void *comm, const float *send, float *recv, size_t n, dh_err *e) {
    int rc = train_nccl_load(NULL, e);
    if (rc) return rc;
    return check(L.all_gather(send, recv, n, NCCL_FLOAT32, comm, NULL), "ncclAllGather", e);
}

int train_nccl_bcast(void *comm, float *buf, size_t n, int root, dh_err *e) {
    int rc = train_nccl_load(NULL, e);
    if (rc) return rc;
    return check(L.broadcast(buf, buf, n, NCCL_FLOAT32, root, comm, NULL), "ncclBroadcast", e);
}
