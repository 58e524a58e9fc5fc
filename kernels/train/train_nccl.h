/* train_nccl.h — NCCL, opened at run time (private to kernels/train; used
 * by train_dist.c for CUDA tensors).
 *
 * libnccl.so.2 is opened on the first use: on the linker's path, else found
 * in the folders dh_cudaload.h searches (DH_CUDA_PATH, LD_LIBRARY_PATH, the
 * CUDA folders, the Python wheels' nvidia/nccl/lib). No NCCL header is
 * needed at build time: the few entry points and constants used are
 * declared here from NCCL's stable C ABI (nccl.h, 2.x). Every collective is
 * enqueued on the CUDA default stream, where the tensor library runs, so it
 * is ordered with the kernels before and after it. Errors: DH_EDEVICE when
 * the library is missing, DH_EIO with ncclGetErrorString's text when a call
 * fails.
 */
#ifndef TRAIN_NCCL_H
#define TRAIN_NCCL_H
#include <stddef.h>
#include "dh_util.h"

#define TRAIN_NCCL_ID_BYTES 128 /* sizeof(ncclUniqueId) */

/* Open libnccl.so.2 (once); its version (e.g. 22703 for 2.27.3) into *version when not NULL. */
int train_nccl_load(int *version, dh_err *e);
/* ncclGetUniqueId (rank 0), into id (TRAIN_NCCL_ID_BYTES). */
int train_nccl_unique_id(void *id, dh_err *e);
/* ncclCommInitRank on the current CUDA device. */
int train_nccl_comm_init(void **comm, int nranks, const void *id, int rank, dh_err *e);
void train_nccl_comm_destroy(void *comm);
/* ncclGroupStart (start 1) / ncclGroupEnd (start 0). */
int train_nccl_group(int start, dh_err *e);
/* In place: buf (n floats, device) = the sum over the ranks. */
int train_nccl_allreduce_sum(void *comm, float *buf, size_t n, dh_err *e);
/* recv (nranks x n floats) = every rank's send (n floats), in rank order. */
int train_nccl_allgather(void *comm, const float *send, float *recv, size_t n, dh_err *e);
/* buf (n floats) = rank root's. */
int train_nccl_bcast(void *comm, float *buf, size_t n, int root, dh_err *e);

#endif
