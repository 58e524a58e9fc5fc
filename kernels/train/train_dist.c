/* train_dist.c — data-parallel training over MPI (CPU) or NCCL (GPUs)
 * (train_dist.h). The one file of deephash that includes <mpi.h>; built
 * without it (DH_USE_MPI 0) every collective is a no-op of a size-1 run. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <glob.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "train_dist.h"
#include "train_nccl.h"
#ifndef DH_USE_MPI
#define DH_USE_MPI 0
#endif
#if DH_USE_MPI
#include <dlfcn.h>
#include <mpi.h>
#endif

int train_dist_built(void) { return DH_USE_MPI; }

#define DIST_STR2(x) #x
#define DIST_STR(x)  DIST_STR2(x)
const char *train_dist_library(void) {
#if DH_USE_MPI && defined(OMPI_MAJOR_VERSION)
    return "MPI (Open MPI " DIST_STR(OMPI_MAJOR_VERSION) "." DIST_STR(OMPI_MINOR_VERSION) "." DIST_STR(
        OMPI_RELEASE_VERSION) ")";
#elif DH_USE_MPI
    return "MPI";
#else
    return "no MPI in this build";
#endif
}

/* ---- the launcher ------------------------------------------------------------------------------------------------ */
static int env_int(const char *name, int *v) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long x = strtol(s, &end, 10);
    if (*end || x < 0 || x > (1 << 24)) return 0;
    *v = (int)x;
    return 1;
}

/* Whether a launcher started this process: its size and rank as far as the
 * environment tells them (-1 when not). */
static int launched(int *size, int *rank, char *who, size_t n) {
    *size = *rank = -1;
    if (env_int("OMPI_COMM_WORLD_SIZE", size)) {
        env_int("OMPI_COMM_WORLD_RANK", rank);
        snprintf(who, n, "mpirun (Open MPI)");
        return 1;
    }
    if (env_int("PMI_SIZE", size)) {
        env_int("PMI_RANK", rank);
        snprintf(who, n, "a PMI launcher (mpiexec, srun)");
        return 1;
    }
    if (env_int("PMI_RANK", rank) || env_int("PMIX_RANK", rank)) {
        snprintf(who, n, "a PMI launcher (mpiexec, srun)");
        return 1;
    }
    return 0;
}

#if DH_USE_MPI
/* The MPI library, opened at run time (only when a launcher started the
 * program), so that programs need no libmpi to start, and a bundle
 * (tools/dh-bundle) uses the host's, the one its mpirun speaks to. Its
 * entry points have the prototypes of the <mpi.h> built against; Open MPI's
 * predefined handles are the addresses of its global objects, MPICH's
 * (and its ABI's: Intel MPI, MVAPICH) constants. */
#ifdef OMPI_MAJOR_VERSION
#define DIST_MPI_SONAME "libmpi.so.40"
#define DIST_MPI_KIND   "Open MPI"
#else
#define DIST_MPI_SONAME "libmpi.so.12"
#define DIST_MPI_KIND   "MPICH"
#endif
static struct {
    void *h;
    __typeof__(&MPI_Initialized) Initialized;
    __typeof__(&MPI_Init_thread) Init_thread;
    __typeof__(&MPI_Finalize) Finalize;
    __typeof__(&MPI_Comm_set_errhandler) Comm_set_errhandler;
    __typeof__(&MPI_Comm_rank) Comm_rank;
    __typeof__(&MPI_Comm_size) Comm_size;
    __typeof__(&MPI_Comm_split_type) Comm_split_type;
    __typeof__(&MPI_Comm_free) Comm_free;
    __typeof__(&MPI_Error_string) Error_string;
    __typeof__(&MPI_Bcast) Bcast;
    __typeof__(&MPI_Allreduce) Allreduce;
    __typeof__(&MPI_Allgather) Allgather;
    MPI_Comm world;
    MPI_Errhandler errors_return;
    MPI_Info info_null;
    MPI_Datatype f32, f64, i32, byte;
    MPI_Op sum, min;
} M;

static int mpi_load(dh_err *e) {
    if (M.h) return DH_OK;
    const char *env = getenv("DH_MPI_LIB"), *name = env && *env ? env : DIST_MPI_SONAME;
    void *h = dlopen(name, RTLD_NOW | RTLD_GLOBAL); /* global: Open MPI's plugins link against it */
    if (!h) {
        const char *m = dlerror();
        return dh_seterr(e, DH_EUNSUPPORTED,
                         "the MPI library %s (%s, as built) cannot be loaded: %s (install the MPI that mpirun is "
                         "from, or name the library with DH_MPI_LIB=PATH)",
                         name, DIST_MPI_KIND, m ? m : "not found");
    }
    struct {
        void **p;
        const char *name;
    } sym[] = { { (void **)&M.Initialized, "MPI_Initialized" },
                { (void **)&M.Init_thread, "MPI_Init_thread" },
                { (void **)&M.Finalize, "MPI_Finalize" },
                { (void **)&M.Comm_set_errhandler, "MPI_Comm_set_errhandler" },
                { (void **)&M.Comm_rank, "MPI_Comm_rank" },
                { (void **)&M.Comm_size, "MPI_Comm_size" },
                { (void **)&M.Comm_split_type, "MPI_Comm_split_type" },
                { (void **)&M.Comm_free, "MPI_Comm_free" },
                { (void **)&M.Error_string, "MPI_Error_string" },
                { (void **)&M.Bcast, "MPI_Bcast" },
                { (void **)&M.Allreduce, "MPI_Allreduce" },
                { (void **)&M.Allgather, "MPI_Allgather" },
#ifdef OMPI_MAJOR_VERSION
                { (void **)&M.world, "ompi_mpi_comm_world" },
                { (void **)&M.errors_return, "ompi_mpi_errors_return" },
                { (void **)&M.info_null, "ompi_mpi_info_null" },
                { (void **)&M.f32, "ompi_mpi_float" },
                { (void **)&M.f64, "ompi_mpi_double" },
                { (void **)&M.i32, "ompi_mpi_int" },
                { (void **)&M.byte, "ompi_mpi_byte" },
                { (void **)&M.sum, "ompi_mpi_op_sum" },
                { (void **)&M.min, "ompi_mpi_op_min" }
#endif
    };
    for (size_t i = 0; i < sizeof sym / sizeof sym[0]; i++)
        if (!(*sym[i].p = dlsym(h, sym[i].name)))
            return dh_seterr(e, DH_EUNSUPPORTED, "the MPI library %s has no %s: not %s's (DH_MPI_LIB)", name,
                             sym[i].name, DIST_MPI_KIND);
#ifndef OMPI_MAJOR_VERSION
    M.world = MPI_COMM_WORLD, M.errors_return = MPI_ERRORS_RETURN, M.info_null = MPI_INFO_NULL;
    M.f32 = MPI_FLOAT, M.f64 = MPI_DOUBLE, M.i32 = MPI_INT, M.byte = MPI_BYTE, M.sum = MPI_SUM, M.min = MPI_MIN;
#endif
    M.h = h;
    return DH_OK;
}

/* Several ranks on one host: share its cores and its GPUs, unless the user chose. */
static void share_host(const train_dist *d) {
    char v[32];
    if (!getenv("DH_THREADS")) {
        cpu_set_t set;
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        if (sched_getaffinity(0, sizeof set, &set) == 0 && online > 0 && CPU_COUNT(&set) >= online) {
            int t = (int)(online / d->local_size);
            snprintf(v, sizeof v, "%d", t > 0 ? t : 1);
            setenv("DH_THREADS", v, 1);
        } /* else the launcher bound this rank to its own cores already: use them all */
    }
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    if (cvd && *cvd) { /* a list: this rank's entry of it */
        int k = 1;
        for (const char *p = cvd; *p; p++) k += *p == ',';
        if (k > 1) {
            int want = d->local_rank % k;
            const char *p = cvd;
            for (int i = 0; i < want; i++) p = strchr(p, ',') + 1;
            size_t len = strcspn(p, ",");
            char one[128];
            if (len < sizeof one) {
                memcpy(one, p, len);
                one[len] = 0;
                setenv("CUDA_VISIBLE_DEVICES", one, 1);
            }
        }
        return;
    }
    glob_t g;
    if (glob("/dev/nvidia[0-9]*", 0, NULL, &g) == 0) {
        if (g.gl_pathc > 1) {
            snprintf(v, sizeof v, "%d", d->local_rank % (int)g.gl_pathc);
            setenv("CUDA_VISIBLE_DEVICES", v, 1);
        }
        globfree(&g);
    }
}

static int mpi_fail(int rc, const char *what, dh_err *e) {
    char s[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    M.Error_string(rc, s, &len);
    return dh_seterr(e, DH_EIO, "MPI %s: %s", what, len > 0 ? s : "failed");
}
#define DIST_TRY(call, what)                                                                                           \
    do {                                                                                                               \
        int mrc_ = (call);                                                                                             \
        if (mrc_ != MPI_SUCCESS) return mpi_fail(mrc_, what, e);                                                       \
    } while (0)
#endif

int train_dist_init(train_dist *d, dh_err *e) {
    memset(d, 0, sizeof *d);
    d->size = d->local_size = 1;
    int size, rank;
    char who[64];
    if (!launched(&size, &rank, who, sizeof who)) return DH_OK;
#if !DH_USE_MPI
    if (size > 1 || rank > 0)
        return dh_seterr(e, DH_EUNSUPPORTED,
                         "started by %s as rank %d of %d, but this build has no MPI, so the ranks cannot share the "
                         "training: rebuild with MPI (Debian: libopenmpi-dev; make's first line says whether it was "
                         "found), or run one process",
                         who, rank, size);
    return DH_OK;
#else
    int flag = 0, provided = 0, rc = mpi_load(e);
    if (rc) return rc;
    M.Initialized(&flag);
    if (!flag) {
        rc = M.Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return dh_seterr(e, DH_EIO, "MPI_Init failed (started by %s)", who);
        d->mpi = 1;
    }
    snprintf(d->launcher, sizeof d->launcher, "%s", who);
    DIST_TRY(M.Comm_set_errhandler(M.world, M.errors_return), "MPI_Comm_set_errhandler");
    DIST_TRY(M.Comm_rank(M.world, &d->rank), "MPI_Comm_rank");
    DIST_TRY(M.Comm_size(M.world, &d->size), "MPI_Comm_size");
    if (size > 1 && d->size != size) /* e.g. MPICH's mpiexec and Open MPI's library: N runs of one rank each */
        return dh_seterr(e, DH_EUNSUPPORTED,
                         "started by %s as one of %d ranks, but the MPI library %s (%s) sees %d: mpirun and the "
                         "library are of different MPIs (DH_MPI_LIB names the launcher's)",
                         who, size, getenv("DH_MPI_LIB") ? getenv("DH_MPI_LIB") : DIST_MPI_SONAME, DIST_MPI_KIND,
                         d->size);
    MPI_Comm local;
    DIST_TRY(M.Comm_split_type(M.world, MPI_COMM_TYPE_SHARED, d->rank, M.info_null, &local), "MPI_Comm_split_type");
    M.Comm_rank(local, &d->local_rank);
    M.Comm_size(local, &d->local_size);
    M.Comm_free(&local);
    if (d->local_size > 1) share_host(d);
    if (d->rank > 0) { /* rank 0 writes the outputs */
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            close(fd);
        }
    }
    return DH_OK;
#endif
}

void train_dist_finalize(train_dist *d) {
    if (d->nccl) train_nccl_comm_destroy(d->nccl);
#if DH_USE_MPI
    if (d->mpi) M.Finalize();
#endif
    free(d->buf);
    memset(d, 0, sizeof *d);
    d->size = d->local_size = 1;
}

int train_dist_slice(const train_dist *d, int64_t B, int64_t *first, int64_t *rows, dh_err *e) {
    if (B % d->size || B < d->size)
        return dh_seterr(e, DH_EINVAL, "a batch of %lld does not divide among %d ranks: give a multiple of %d",
                         (long long)B, d->size, d->size);
    *rows = B / d->size;
    *first = d->rank * *rows;
    return DH_OK;
}

const char *train_dist_describe(const train_dist *d, char *buf, size_t n) {
    if (d->size <= 1)
        snprintf(buf, n, "%s", "");
    else
        snprintf(buf, n, " on %d ranks (MPI%s)", d->size, d->nccl ? ", NCCL" : "");
    return buf;
}

/* ---- collectives ---------------------------------------------------------------------------------------------- */
#if DH_USE_MPI
static int grow(train_dist *d, size_t n, dh_err *e) {
    if (n <= d->cap) return DH_OK;
    float *b = realloc(d->buf, n * sizeof *b);
    if (!b) return dh_seterr(e, DH_ENOMEM, "out of memory (%zu floats for the ranks' exchange)", n);
    d->buf = b;
    d->cap = n;
    return DH_OK;
}

/* MPI counts are ints: long buffers go in pieces. */
#define DIST_PIECE (1 << 30)

/* The NCCL communicator, at the first CUDA collective (every rank gets here
 * together): rank 0's id sent with MPI_Bcast, with a status that every rank
 * agrees on before ncclCommInitRank (which would wait for a missing rank). */
static int nccl_ready(train_dist *d, dh_err *e) {
    if (d->nccl) return DH_OK;
    struct {
        int ok;
        char id[TRAIN_NCCL_ID_BYTES];
    } msg;
    memset(&msg, 0, sizeof msg);
    dh_err le;
    memset(&le, 0, sizeof le);
    int rc = train_nccl_load(NULL, &le);
    if (d->rank == 0 && rc == DH_OK) rc = train_nccl_unique_id(msg.id, &le);
    msg.ok = rc == DH_OK;
    DIST_TRY(M.Bcast(&msg, (int)sizeof msg, M.byte, 0, M.world), "MPI_Bcast (NCCL id)");
    int mine = rc == DH_OK, all = 0;
    DIST_TRY(M.Allreduce(&mine, &all, 1, M.i32, M.min, M.world), "MPI_Allreduce");
    if (rc) {
        if (e) *e = le;
        return rc;
    }
    if (!all) return dh_seterr(e, DH_EDEVICE, "NCCL failed on another rank (its message says why)");
    if ((rc = train_nccl_comm_init(&d->nccl, d->size, msg.id, d->rank, e)) && d->local_size > 1)
        dh_err_prefix(e, "%d ranks on this host, each needs a GPU of its own (CUDA_VISIBLE_DEVICES)", d->local_size);
    return rc;
}

static int same_device(dk_tensor *const *t, int n, dh_err *e) {
    for (int i = 1; i < n; i++)
        if (t[i]->dev != t[0]->dev) return dh_seterr(e, DH_EINVAL, "tensors on different devices");
    return DH_OK;
}
#endif

int train_dist_allreduce(train_dist *d, dk_tensor *const *t, int n, int average, dh_err *e) {
    if (d->size <= 1 || n <= 0) return DH_OK;
#if DH_USE_MPI
    int rc = same_device(t, n, e);
    if (rc) return rc;
    const float s = average ? 1.0f / (float)d->size : 1.0f;
    if (t[0]->dev == DK_CUDA) {
        if ((rc = nccl_ready(d, e)) || (rc = train_nccl_group(1, e))) return rc;
        for (int i = 0; i < n && !rc; i++) rc = train_nccl_allreduce_sum(d->nccl, t[i]->data, (size_t)t[i]->n, e);
        int rc2 = train_nccl_group(0, e);
        if (rc || rc2) return rc ? rc : rc2;
        for (int i = 0; i < n && average; i++)
            if ((rc = dk_scale(t[i], s, e))) return rc;
        return DH_OK;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)t[i]->n;
    if ((rc = grow(d, total, e))) return rc;
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        memcpy(d->buf + o, t[i]->data, (size_t)t[i]->n * sizeof(float));
        o += (size_t)t[i]->n;
    }
    for (size_t p = 0; p < total; p += DIST_PIECE) {
        int cnt = (int)(total - p < DIST_PIECE ? total - p : DIST_PIECE);
        DIST_TRY(M.Allreduce(MPI_IN_PLACE, d->buf + p, cnt, M.f32, M.sum, M.world), "MPI_Allreduce");
    }
    o = 0;
    for (int i = 0; i < n; i++) {
        float *dst = t[i]->data;
        const float *src = d->buf + o;
        for (int64_t k = 0; k < t[i]->n; k++) dst[k] = src[k] * s;
        o += (size_t)t[i]->n;
    }
    return DH_OK;
#else
    return dh_seterr(e, DH_EUNSUPPORTED, "no MPI in this build");
#endif
}

int train_dist_allgather(train_dist *d, const dk_tensor *part, dk_tensor *all, dh_err *e) {
    if (part->dev != all->dev || all->n != part->n * d->size)
        return dh_seterr(e, DH_EINVAL, "allgather: %lld elements for %d parts of %lld", (long long)all->n, d->size,
                         (long long)part->n);
    if (d->size <= 1) return part->data == all->data ? DH_OK : dk_copy(all, part, e);
#if DH_USE_MPI
    if (part->dev == DK_CUDA) {
        int rc = nccl_ready(d, e);
        return rc ? rc : train_nccl_allgather(d->nccl, part->data, all->data, (size_t)part->n, e);
    }
    if (part->n > DIST_PIECE) return dh_seterr(e, DH_ELIMIT, "allgather: %lld elements per rank", (long long)part->n);
    DIST_TRY(M.Allgather(part->data, (int)part->n, M.f32, all->data, (int)part->n, M.f32, M.world), "MPI_Allgather");
    return DH_OK;
#else
    return dh_seterr(e, DH_EUNSUPPORTED, "no MPI in this build");
#endif
}

int train_dist_bcast(train_dist *d, dk_tensor *const *t, int n, int root, dh_err *e) {
    if (d->size <= 1 || n <= 0) return DH_OK;
#if DH_USE_MPI
    int rc = same_device(t, n, e);
    if (rc) return rc;
    if (t[0]->dev == DK_CUDA) {
        if ((rc = nccl_ready(d, e)) || (rc = train_nccl_group(1, e))) return rc;
        for (int i = 0; i < n && !rc; i++) rc = train_nccl_bcast(d->nccl, t[i]->data, (size_t)t[i]->n, root, e);
        int rc2 = train_nccl_group(0, e);
        return rc ? rc : rc2;
    }
    for (int i = 0; i < n; i++)
        for (int64_t p = 0; p < t[i]->n; p += DIST_PIECE) {
            int cnt = (int)(t[i]->n - p < DIST_PIECE ? t[i]->n - p : DIST_PIECE);
            DIST_TRY(M.Bcast(t[i]->data + p, cnt, M.f32, root, M.world), "MPI_Bcast");
        }
    return DH_OK;
#else
    return dh_seterr(e, DH_EUNSUPPORTED, "no MPI in this build");
#endif
}

int train_dist_sum(train_dist *d, double *v, int n, dh_err *e) {
    if (d->size <= 1 || n <= 0) return DH_OK;
#if DH_USE_MPI
    DIST_TRY(M.Allreduce(MPI_IN_PLACE, v, n, M.f64, M.sum, M.world), "MPI_Allreduce");
    return DH_OK;
#else
    return dh_seterr(e, DH_EUNSUPPORTED, "no MPI in this build");
#endif
}

/* ---- the network ------------------------------------------------------------------------------------------------ */
/* The tensors of n: parameters (what 0: values, 1: gradients) and/or state. */
static dk_tensor **net_tensors(const net *n, int params, int what, int state, int *count, dh_err *e) {
    int k = (params ? n->nparams : 0) + (state ? n->nstate : 0);
    dk_tensor **t = dh_malloc(e, (size_t)(k > 0 ? k : 1), sizeof *t);
    if (!t) return NULL;
    int c = 0;
    for (int i = 0; params && i < n->nparams; i++) t[c++] = what ? &n->params[i].g : &n->params[i].w;
    for (int i = 0; state && i < n->nstate; i++) t[c++] = &n->state[i].t;
    *count = c;
    return t;
}

int train_dist_bcast_net(train_dist *d, net *n, dh_err *e) {
    if (d->size <= 1) return DH_OK;
    int c;
    dk_tensor **t = net_tensors(n, 1, 0, 1, &c, e);
    if (!t) return DH_ENOMEM;
    int rc = train_dist_bcast(d, t, c, 0, e);
    free(t);
    return rc;
}

int train_dist_grads(train_dist *d, net *n, int average, dh_err *e) {
    if (d->size <= 1) return DH_OK;
    int c;
    dk_tensor **t = net_tensors(n, 1, 1, 0, &c, e);
    if (!t) return DH_ENOMEM;
    int rc = train_dist_allreduce(d, t, c, average, e);
    free(t);
    return rc;
}

int train_dist_sync(train_dist *d, net *n, dh_err *e) {
    if (d->size <= 1) return DH_OK;
    int c, rc;
    dk_tensor **t = net_tensors(n, 0, 0, 1, &c, e);
    if (!t) return DH_ENOMEM;
    rc = train_dist_allreduce(d, t, c, 1, e);
    free(t);
    if (rc) return rc;
    if (!(t = net_tensors(n, 1, 0, 0, &c, e))) return DH_ENOMEM;
    rc = train_dist_bcast(d, t, c, 0, e);
    free(t);
    return rc;
}
