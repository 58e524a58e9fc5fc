/* hashfn.h — hash-function models: fit K-bit hash functions to features,
 * store them as a model stream, and encode features into packed codes.
 *
 * A hash model is a dhs_model (formats/dhs.h) whose meta holds
 *   "model":"hash", "method":NAME, "bits":K, "dim":D, "transform":T
 * (plus whatever the method records: "seed", "epochs", ...), and whose
 * tensors depend on the transform:
 *
 *   "linear"  u = W (z - mean) + b        the default; most methods
 *             W    (K, D)   required
 *             mean (D)      optional (absent = 0)
 *             b    (K)      optional (absent = 0)
 *   other     u = method->project(model, z)  (sh, ksh, ...: the method's
 *             own tensors; see its hash_<method>.c)
 *
 * Bit k of a code is 1 when u_k > 0, 0 otherwise (u_k == 0 gives 0).
 * Codes are packed as in formats/dhs.h: bit k at byte k/8, bit k%8, LSB
 * first; padding bits 0.
 *
 * A deep hash model (meta "model":"deephash", written by dh-finetune)
 * holds the network's tensors and the hash layer's under the prefix
 * "hash." ("hash.W", "hash.b", "hash.mean"); dh_hashfn_bind() takes the
 * prefix ("" for a plain hash model).
 *
 * Methods are registered in kernels/hash_methods.c (one table line each).
 */
#ifndef DH_HASHFN_H
#define DH_HASHFN_H
#include <stdint.h>
#include "dh_util.h"
#include "dhs.h"

#define DH_HASH_MIN_BITS   8
#define DH_HASH_MAX_BITS   256
#define DH_HASH_MAX_PARAMS 32

/* Generic fitting options. A field left 0 means "the method's default".
 * Method-specific settings come as name=value strings (dh-inithash
 * --param NAME=VALUE); read them with dh_hash_param*(). */
typedef struct dh_hash_opts {
    uint64_t seed;                  /* RNG seed (always set by the caller)              */
    int epochs;                     /* passes over the data (gradient methods)          */
    double lr;                      /* learning rate                                    */
    int batch;                      /* mini-batch size                                  */
    int iterations;                 /* iterations of alternating methods (itq, sdh ...) */
    int anchors;                    /* ksh / sdh: number of kernel anchors              */
    int64_t pairs;                  /* bre / mlh / ksh: labelled training pairs         */
    int64_t samples;                /* subsample the training set to this many rows     */
    double sigma;                   /* kernel width (0 = method's heuristic)            */
    double lambda;                  /* regularisation weight                            */
    int use_cuda;                   /* 1 = the CUDA backend was requested and is there  */
    int verbose;                    /* 1 = the method may report progress via a callback */
    void (*note)(const char *line); /* progress/report sink, may be NULL     */
    int nparams;
    const char *param[DH_HASH_MAX_PARAMS]; /* "name=value" strings          */
    unsigned *param_used;                  /* NULL, or bit i set when a method reads param[i]  */
} dh_hash_opts;

void dh_hash_opts_init(dh_hash_opts *o); /* zeros, seed 1 */
/* The value of method-specific parameter `name`, or NULL if not given. */
const char *dh_hash_param(const dh_hash_opts *o, const char *name);
/* Parsed forms with a default; -1 (and e set) on a malformed value. */
int dh_hash_param_double(const dh_hash_opts *o, const char *name, double def, double *out, dh_err *e);
int dh_hash_param_int(const dh_hash_opts *o, const char *name, int64_t def, int64_t *out, dh_err *e);

/* Fit K hash functions to features z (N, D) with labels (N) (NULL when the
 * stream has none; supervised methods then fail with DH_ESCHEMA). Fills
 * `out` (initialised by the caller with dhs_model_init) via
 * dh_hash_model_begin() and tensors. Returns DH_OK or an error code. */
typedef int (*dh_hash_fit_fn)(const float *z /* (N, D) */, const int32_t *labels /* (N) or NULL */, int64_t N, int D,
                              int K, const dh_hash_opts *opts, dhs_model *out, dh_err *e);

/* Non-linear transforms: compute the K projections u (n, K) of z (n, D).
 * `prefix` is prepended to tensor names ("" or "hash."). */
typedef int (*dh_hash_project_fn)(const dhs_model *m, const char *prefix, const float *z /* (n, D) */, int64_t n, int D,
                                  int K, float *u /* (n, K) */, dh_err *e);

typedef struct dh_hash_method {
    const char *name;    /* --method NAME, stored in meta "method"       */
    const char *summary; /* one line for --help                          */
    int supervised;      /* 1 = needs labels                              */
    dh_hash_fit_fn fit;
    const char *transform;      /* "linear", or the name of a custom transform   */
    dh_hash_project_fn project; /* NULL for "linear"                        */
} dh_hash_method;

/* The registry (kernels/hash_methods.c). */
const dh_hash_method *dh_hash_method_find(const char *name); /* NULL if unknown */
const dh_hash_method *dh_hash_method_at(int i);              /* i-th method, NULL past the end */
/* Look up a transform's projection by transform name (NULL for "linear"
 * or unknown; check with dh_hash_transform_known). */
dh_hash_project_fn dh_hash_transform_project(const char *transform);
int dh_hash_transform_known(const char *transform);

/* Helpers for fit functions. */
/* Set the standard meta (model, method, bits, dim, transform). */
int dh_hash_model_begin(dhs_model *out, const char *method, const char *transform, int K, int D, dh_err *e);
/* Add the linear transform's tensors (mean and b may be NULL). */
int dh_hash_model_set_linear(dhs_model *out, const char *prefix, const float *W /* (K, D) */,
                             const float *b /* (K) or NULL */, const float *mean /* (D) or NULL */, int K, int D,
                             dh_err *e);

/* A hash function bound to a loaded model (pointers into the model; the
 * model must outlive it). */
typedef struct dh_hashfn {
    int K, D;
    char method[64];
    char transform[64];
    char prefix[16];
    const dhs_model *model;
    const float *W;             /* (K, D) linear only */
    const float *b;             /* (K) or NULL */
    const float *mean;          /* (D) or NULL */
    dh_hash_project_fn project; /* non-linear only */
} dh_hashfn;

/* Bind to a hash model (prefix "") or to the hash part of a deephash model
 * (prefix "hash."). Reads K, D, method, transform from the meta ("bits",
 * "dim"; for prefixed models "hash_bits", "hash_dim", "hash_method",
 * "hash_transform" when present, else from the tensor shapes) and checks
 * the tensors' shapes. DH_ESCHEMA on anything missing or inconsistent. */
int dh_hashfn_bind(dh_hashfn *h, const dhs_model *m, const char *prefix, dh_err *e);
/* u (n, K) = projections of z (n, D). */
int dh_hashfn_project(const dh_hashfn *h, const float *z /* (n, D) */, int64_t n, float *u /* (n, K) */, dh_err *e);
/* Packed codes (n, ceil(K/8)) of z (n, D); uses a scratch buffer of n*K floats. */
int dh_hashfn_encode(const dh_hashfn *h, const float *z /* (n, D) */, int64_t n, uint8_t *codes /* (n, (K+7)/8) */,
                     dh_err *e);
/* Pack signs: bit k of row i = u[i*K+k] > 0. */
void dh_pack_signs(const float *u /* (n, K) */, int64_t n, int K, uint8_t *codes);

/* Linear projection helper usable by methods: u = W (z - mean) + b. */
void dh_linear_project(const float *W /* (K, D) */, const float *b, const float *mean, const float *z /* (n, D) */,
                       int64_t n, int D, int K, float *u /* (n, K) */);

/* The paper's stage 2 (kernels/hash_deephash.c): hash layer z -> sigmoid(W z + b)
 * followed by a softmax classifier trained on the frozen z; then each row of
 * W, b is rescaled (which keeps every code) so that RMS(u_k) over the
 * training set is `urms` (param "urms", default 1). Params: "urms",
 * "momentum" (0.9), "wd" (weight decay, 1e-4), "activation" (sigmoid|tanh). */
int dh_fit_deephash(const float *z, const int32_t *labels, int64_t N, int D, int K, const dh_hash_opts *opts,
                    dhs_model *out, dh_err *e);

#endif
