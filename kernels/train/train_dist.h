/* train_dist.h — data-parallel training over MPI (CPU) or NCCL (GPUs).
 *
 *   mpirun -np 4 dh-pretrain --arch cifar -o net.dhm train.dhs
 *
 * Every rank holds the whole dataset and a whole replica of the network,
 * walks the same epoch order (the same seed), and takes its slice of every
 * global batch of B rows: rank r of N the rows [r B/N, (r+1) B/N) (B must
 * divide by N). Gradients are then averaged (or summed) over the ranks
 * before the identical SGD step on every rank, so the replicas stay equal
 * and rank 0 writes the model; the other ranks are quiet and write nothing
 * (their stdout goes to /dev/null).
 *
 * Transport: MPI_Allreduce on host buffers for CPU tensors (one packed
 * buffer per call), NCCL on CUDA tensors (libnccl.so.2 opened at run time,
 * train_nccl.c; the NCCL id is sent from rank 0 with MPI_Bcast; each rank
 * uses one GPU: the local rank's among those visible). The MPI headers are
 * used when the build found them (make's first line says; NO_MPI=1 leaves
 * them out); the library (libmpi.so.40 for Open MPI, libmpi.so.12 for
 * MPICH; DH_MPI_LIB=PATH) is opened at run time, and only when a launcher
 * started the program (mpirun, mpiexec, srun: OMPI_COMM_WORLD_SIZE,
 * PMI_SIZE, PMI_RANK or PMIX_RANK in the environment); otherwise it runs
 * alone as before, MPI never loaded. A build without MPI started as one of
 * several ranks refuses (DH_EUNSUPPORTED) rather than train N independent
 * copies, as does one whose MPI library cannot be loaded.
 *
 * Numerics: without batch normalisation N ranks compute the gradient of
 * the same global batch as one process, summed in another order (float
 * rounding). Batch normalisation normalises each rank's slice with that
 * slice's statistics (as PyTorch DDP without SyncBatchNorm): the trained
 * model then differs from one process's by more than rounding; running
 * statistics are averaged over the ranks (train_dist_sync).
 *
 * With size 1 (no launcher) every call is a no-op, so the programs call
 * them unconditionally. Errors are values (DH_EINVAL for a batch that does
 * not divide, DH_EIO for a failed MPI/NCCL call, DH_EDEVICE for NCCL not
 * found, DH_EUNSUPPORTED for a launcher without MPI support).
 */
#ifndef TRAIN_DIST_H
#define TRAIN_DIST_H
#include <stddef.h>
#include <stdint.h>
#include "dh_util.h"
#include "dk.h"
#include "net.h"

typedef struct train_dist {
    int rank, size;             /* 0 and 1 when not distributed */
    int local_rank, local_size; /* on this host */
    int mpi;                    /* 1: MPI was initialised here (train_dist_finalize ends it) */
    char launcher[64];          /* "mpirun (Open MPI)", "PMI", ... or "" */
    void *nccl;                 /* the NCCL communicator, created at the first CUDA collective */
    float *buf;                 /* host staging (packed CPU buffers) */
    size_t cap;                 /* its floats */
} train_dist;

/* 1 when this build has MPI (data-parallel training possible). */
int train_dist_built(void);
/* "MPI (Open MPI v4.1.4 ...)" or "no MPI in this build", for --version-like reports. */
const char *train_dist_library(void);

/* Join the ranks when a launcher started this process: MPI_Init, rank and
 * size, the local rank; then, when several ranks share the host, and unless
 * the user chose: DH_THREADS = the cores this process may use / the local
 * ranks (when not bound to fewer already), and CUDA_VISIBLE_DEVICES
 * narrowed to the local rank's GPU (local rank mod the GPUs listed, or
 * /dev/nvidiaN found). Ranks other than 0 get /dev/null as stdout. Call it
 * before dk_init (the device is opened after). d is {size 1} when not
 * launched. */
int train_dist_init(train_dist *d, dh_err *e);
/* MPI_Finalize (when train_dist_init initialised MPI) and the NCCL
 * communicator; d is size 1 afterwards. Call it after the outputs are
 * committed (rank 0) and before returning from main. */
void train_dist_finalize(train_dist *d);

/* This rank's slice of a global batch of B rows: *first = rank B/N and
 * *rows = B/N. DH_EINVAL "batch B does not divide among N ranks" otherwise
 * (also when a slice would be empty). */
int train_dist_slice(const train_dist *d, int64_t B, int64_t *first, int64_t *rows, dh_err *e);

/* Collectives over every rank (each rank must call them in the same order
 * with the same shapes). Tensors on one device: CPU (MPI) or CUDA (NCCL). */
/* t[i] = the sum over the ranks of t[i], times 1/size with average. */
int train_dist_allreduce(train_dist *d, dk_tensor *const *t, int n, int average, dh_err *e);
/* all (size x part's rows, same row size) = the parts of ranks 0, 1, ...
 * stacked in rank order. */
int train_dist_allgather(train_dist *d, const dk_tensor *part, dk_tensor *all, dh_err *e);
/* t[i] = rank root's t[i]. */
int train_dist_bcast(train_dist *d, dk_tensor *const *t, int n, int root, dh_err *e);
/* v[0..n) = the sums over the ranks (host doubles: counters, losses). */
int train_dist_sum(train_dist *d, double *v, int n, dh_err *e);

/* The network: */
/* every parameter and state tensor = rank 0's (a common start whatever
 * each rank initialised or loaded); */
int train_dist_bcast_net(train_dist *d, net *n, dh_err *e);
/* every parameter's gradient = the mean (average 1: each rank's loss is a
 * mean over its slice, as net_grad_xent's) or the sum (average 0: each
 * rank's gradient is its rows' share of a loss over the global batch) over
 * the ranks; */
int train_dist_grads(train_dist *d, net *n, int average, dh_err *e);
/* the state (batch-norm running statistics) averaged over the ranks, and
 * the parameters set to rank 0's (which they equal up to the reduction's
 * rounding): call at an epoch's end, before evaluating or writing. */
int train_dist_sync(train_dist *d, net *n, dh_err *e);

/* "" when alone, else " on N ranks (MPI[, NCCL])" for the programs' notes. */
const char *train_dist_describe(const train_dist *d, char *buf, size_t n);

#endif
