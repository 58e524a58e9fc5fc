/* deeploss_elem.h — the scalar helpers of the deep hashing losses, in
 * double, written once for the CPU reference (deeploss_*.c) and the CUDA
 * kernels (deeploss_kernels.cu), as hashloss.h's per-element logic is. */
#ifndef DH_DEEPLOSS_ELEM_H
#define DH_DEEPLOSS_ELEM_H
#include <math.h>

#ifdef __CUDACC__
#define DL_HD static inline __host__ __device__
#else
#define DL_HD static inline
#endif

/* Code of a real value: the rule of the codes (bit 1 when u > 0). */
DL_HD double dl_sign(double x) { return x > 0 ? 1.0 : -1.0; }
DL_HD double dl_sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double t = exp(x);
    return t / (1.0 + t);
}
/* log(1 + e^x) without overflow. */
DL_HD double dl_softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
/* log cosh x without overflow. */
DL_HD double dl_logcosh(double x) {
    double a = fabs(x);
    return a + log1p(exp(-2.0 * a)) - 0.69314718055994530942;
}

#endif
