/* deeploss_cuda.h — internal to kernels/hash: the interface between the C
 * side of the deep losses' device path (deeploss_device.c, in
 * libdeephash.a) and its kernels (deeploss_kernels.cu, in libdhcuda.so,
 * loaded at first use: dh_cudaload.h). Not installed for library users.
 *
 * The C side checks the batch on the host, computes the scalars that need
 * only the host labels (pair counts, HashNet's beta, the pair weights) and
 * the method's parameters, and calls dhcu_dloss with u and du on the device
 * and the labels on the host; the kernels upload the labels (and the
 * codebook) into buffers kept between calls and return the loss terms.
 */
#ifndef DH_DEEPLOSS_CUDA_H
#define DH_DEEPLOSS_CUDA_H
#include <stdint.h>
#include "dh_util.h"

/* The kernels (dl_cu_args.method). 0 is "no device path". */
enum {
    DL_CU_NONE = 0,
    DL_CU_DEEPHASH, /* the paper's loss: dhcu_hashloss (hashloss_kernels.cu) */
    DL_CU_DPSH,
    DL_CU_DHN,
    DL_CU_HASHNET,
    DL_CU_DCH,
    DL_CU_DSH,
    DL_CU_CSQ,
    DL_CU_ORTHOHASH,
    DL_CU_DTSH,
    DL_CU_MIHASH
};

#define DL_CU_NSCAL  8
#define DL_CU_NTERMS 4 /* = DH_DLOSS_MAX_TERMS */

typedef struct dl_cu_args {
    int method;            /* DL_CU_* */
    int B, K, C;           /* rows, bits, classes (C: columns of multi, rows of the codebook) */
    const float *u;        /* device (B, K) */
    float *du;             /* device (B, K), or NULL (loss only) */
    const int32_t *labels; /* host (B), or NULL */
    const uint8_t *multi;  /* host (B, C), or NULL */
    const float *codebook; /* host (C, K) +-1: csq, orthohash; else NULL */
    const float *tie;      /* host (K) +-1: CSQ's tie-breaking signs for multi-hot rows; else NULL */
    double s[DL_CU_NSCAL]; /* the method's scalars (deeploss_device.c says which) */
} dl_cu_args;

/* The loss's terms (term[0..DL_CU_NTERMS-1], named by the method's
 * terms, scaled as the CPU reference scales them) into term; du written (not accumulated) when a->du.
 * DH_OK, DH_ENOMEM / DH_EDEVICE from CUDA, DH_ELIMIT for a batch whose
 * B x B matrices do not fit the device. */
int dhcu_dloss(const dl_cu_args *a, double *term, dh_err *e);
/* Frees the buffers kept between calls. */
void dhcu_dloss_release(void);

#endif
