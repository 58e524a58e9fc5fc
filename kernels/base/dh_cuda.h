/* dh_cuda.h — the one CUDA error helper, for the .cu files of every room.
 *
 * A CUDA runtime status becomes a dh_err: out of memory is DH_ENOMEM
 * (exit 5 in the programs), every other failure DH_EDEVICE (exit 4). The
 * message is "CUDA: WHAT: cudaGetErrorString (cudaGetErrorName)".
 *
 *     DH_CUDA_TRY(cudaMemcpy(...), e, "uploading codes");
 */
#ifndef DH_CUDA_H
#define DH_CUDA_H
#include <cuda_runtime.h>
#include "dh_util.h"

static inline int dh_cuda_err(cudaError_t st, dh_err *e, const char *what) {
    if (st == cudaSuccess) return 0;
    dh_code c = (st == cudaErrorMemoryAllocation) ? DH_ENOMEM : DH_EDEVICE;
    return dh_seterr(e, c, "CUDA: %s: %s (%s)", what, cudaGetErrorString(st), cudaGetErrorName(st));
}

/* A device buffer *p of at least bytes (at least 1), grown (freed and
 * allocated again, contents lost) when smaller, never shrunk; *cap holds
 * its size. On failure *p is NULL, *cap 0, and the error is set. */
static inline int dh_cuda_grow(void **p, size_t *cap, size_t bytes, dh_err *e, const char *what) {
    if (bytes == 0) bytes = 1;
    if (*p && *cap >= bytes) return 0;
    if (*p) cudaFree(*p);
    *p = NULL;
    *cap = 0;
    cudaError_t st = cudaMalloc(p, bytes);
    if (st != cudaSuccess) {
        cudaGetLastError();
        *p = NULL;
        return dh_cuda_err(st, e, what);
    }
    *cap = bytes;
    return 0;
}

/* Return from the calling function with the error when call fails. */
#define DH_CUDA_TRY(call, e, what)                                                                                     \
    do {                                                                                                               \
        int dh_cuda_rc_ = dh_cuda_err((call), (e), (what));                                                            \
        if (dh_cuda_rc_) return dh_cuda_rc_;                                                                           \
    } while (0)

#endif
