/* deeploss.h — the deep hashing loss family as a library: a registry of
 * losses, each implemented from its paper, behind one interface.
 *
 * A loss maps a mini-batch's real-valued hash-layer outputs u (B, K) and
 * its labels to a scalar and its gradient dL/du (B, K). Every method takes
 * u before any squashing: a method that needs tanh(u) (or tanh(beta u),
 * 2 sigmoid(u) - 1 ...) applies it itself and includes its derivative in
 * dL/du. Codes are always sign(u) (bit k is 1 when u_k > 0), except ADSH's
 * database codes, which the method learns directly (dh_dloss_tensor "V").
 *
 *   dh_dloss *L;
 *   dh_dloss_config c = { .bits = K, .classes = C, .seed = 7, .db_size = N };
 *   dh_dloss_create_spec("hashnet:alpha=0.2", &c, &L, &e);    (or dh_dloss_create)
 *   dh_dloss_set_database(L, train_labels, NULL, N, &e);     (needed by adsh only)
 *   per step:  dh_dloss_batch b = { .u = u, .rows = B, .labels = y, .idx = rows,
 *                                   .step = t, .epoch = ep, .learn = 1 };
 *              dh_dloss_eval(L, &b, du, &st, &e);   then backpropagate du
 *   per epoch: dh_dloss_epoch_end(L, &e);           (DSDH's W/B steps, ADSH's V step)
 *   dh_dloss_free(L);
 *
 * Normalisation (one rule for every method, see dh-deep-methods(7)): the
 * paper's objective restricted to the mini-batch (all its ordered pairs,
 * all its triplets, all its anchors or rows), divided by the number of
 * terms of its main sum; a regulariser keeps the paper's weight relative
 * to that sum.
 *
 * Methods with state (CSQ's and OrthoHash's codebooks, GreedyHash's
 * classifier, DSDH's codes B and classifier W, ADSH's database codes V)
 * keep it in the dh_dloss object, created once per training run. With
 * batch.learn = 0 a call never changes the state (gradient checks,
 * validation losses); with learn = 1 it may (GreedyHash's classifier takes
 * one SGD step; DSDH and ADSH remember the batch's outputs for the epoch's
 * discrete step). dh_dloss_epoch_end runs the discrete steps.
 *
 * dh_dloss_eval is the CPU reference (double accumulation). Methods
 * flagged DH_DLOSS_DEVICE also have a device path, dh_dloss_eval_cuda
 * (kernels/hash/deeploss_kernels.cu, in libdhcuda.so), on u and dL/du in
 * GPU memory, in double (deephash: the float kernel of hashloss.h):
 * deephash, dpsh, dhn, hashnet, dch, dsh, dtsh, mihash, csq, orthohash.
 * GreedyHash, DSDH and ADSH, whose state the host updates at every batch,
 * run on the host only: on a GPU the caller downloads u and uploads dL/du
 * (a batch is B x K, e.g. 128 x 64, small beside the network).
 *
 * Errors: DH_EINVAL for a bad name, parameter, shape or batch (one line:
 * "deep loss dpsh: eta=-1: out of range [0, 1e+06]"), DH_EUNSUPPORTED for
 * a valid request the method cannot serve (multi-label batches for a
 * single-label method), DH_ENOMEM.
 */
#ifndef DH_DEEPLOSS_H
#define DH_DEEPLOSS_H
#include <stdint.h>
#include "dh_util.h"

#define DH_DLOSS_MAX_PARAMS 8
#define DH_DLOSS_MAX_TERMS  4
#define DH_DLOSS_MAX_BITS   4096

/* A method parameter. The default is def * K^def_kpow (e.g. HashNet's
 * alpha = 10/K: def 10, def_kpow -1); an integer parameter's default is
 * rounded, and at least lo. A parameter with choices ("auto,hadamard,
 * bernoulli") takes one of the words; its value is the word's index. */
typedef struct dh_dloss_param {
    const char *name;
    double def;
    int def_kpow;
    double lo, hi;       /* accepted range, inclusive (numeric parameters) */
    int is_int;          /* 1: must be an integer */
    const char *choices; /* NULL, or comma-separated words */
    const char *doc;     /* one line: meaning and where the default comes from */
} dh_dloss_param;

/* What a method needs and supports. */
enum {
    DH_DLOSS_MULTILABEL = 1, /* accepts multi-hot labels */
    DH_DLOSS_NEEDS_IDX = 2,  /* batches must carry database row indices (idx) */
    DH_DLOSS_NEEDS_DB = 4,   /* dh_dloss_set_database before the first batch */
    DH_DLOSS_CLASSES = 8,    /* needs the number of classes (config.classes >= 2) */
    DH_DLOSS_STRAIGHT = 16,  /* straight-through estimator (batch.relaxed applies) */
    DH_DLOSS_ASYM = 32,      /* learns the database codes itself (tensor "V") */
    DH_DLOSS_DEVICE = 64     /* has a device path (dh_dloss_eval_cuda) */
};

typedef struct dh_dloss dh_dloss;
typedef struct dh_dloss_batch dh_dloss_batch;
typedef struct dh_dloss_stats dh_dloss_stats;
typedef struct dh_dloss_state dh_dloss_state;

/* A registry entry (kernels/hash/deeploss.c holds the table). */
typedef struct dh_dloss_method {
    const char *name;    /* lower case, e.g. "dpsh" */
    const char *title;   /* e.g. "DPSH (Li, Zhao & Kang, IJCAI 2016)" */
    const char *group;   /* the survey's family: pairwise, multiwise, implicit, ... */
    const char *summary; /* one line */
    const char *input;   /* what the method does to u: "u", "tanh(u)", ... */
    unsigned flags;      /* DH_DLOSS_* */
    double lr_hint;      /* a starting learning rate for a linear hash layer on unit-scale
                             features with plain SGD (the unit test's toy problem) */
    int nparams;
    dh_dloss_param params[DH_DLOSS_MAX_PARAMS];
    const char *terms[DH_DLOSS_MAX_TERMS]; /* names of the reported loss terms (NULL-ended) */
    /* implementation (kernels/hash/deeploss_*.c) */
    int (*init)(dh_dloss *L, dh_err *e); /* allocate and seed the state */
    void (*destroy)(dh_dloss *L);        /* free the state (may be NULL) */
    /* u: the batch's u in double; du (B, K) zeroed, to accumulate into; st zeroed */
    int (*eval)(dh_dloss *L, const dh_dloss_batch *b, const double *u, double *du, dh_dloss_stats *st, dh_err *e);
    int (*epoch_end)(dh_dloss *L, dh_err *e);                                              /* may be NULL */
    const float *(*tensor)(const dh_dloss *L, const char *name, int64_t *rows, int *cols); /* may be NULL */
    int (*state)(dh_dloss *L, int i, dh_dloss_state *out); /* may be NULL: no state that training changes */
    void (*restored)(dh_dloss *L);                         /* may be NULL */
} dh_dloss_method;

typedef struct dh_dloss_config {
    int bits;        /* K, 1..DH_DLOSS_MAX_BITS */
    int classes;     /* C: labels are 0..C-1 (multi-hot rows have C entries); 0 = unknown */
    uint64_t seed;   /* codebooks, classifier initialisation */
    int64_t db_size; /* N: rows that batch.idx refers to (DSDH, ADSH); 0 = none */
} dh_dloss_config;

struct dh_dloss_batch {
    const float *u;        /* (B, K) hash-layer outputs, row-major */
    int rows;              /* B >= 2 */
    const int32_t *labels; /* (B) class indices in 0..C-1, or NULL when multi */
    const uint8_t *multi;  /* (B, C) 0/1 multi-hot labels, or NULL */
    const int64_t *idx;    /* (B) database row of each batch row (0..N-1), or NULL */
    int64_t step;          /* global training step (0-based): continuation schedules */
    int epoch;             /* 0-based */
    int learn;             /* 1: training step, the method may update its state */
    int relaxed;           /* 1: straight-through methods differentiate the relaxed
                               function (b = u instead of sign(u)): gradient checks */
};

struct dh_dloss_stats {
    double loss;                     /* the value whose gradient is returned */
    double term[DH_DLOSS_MAX_TERMS]; /* its parts, named by method->terms */
    double scale;                    /* method-specific scalar: HashNet's beta, else 0 */
};

/* ---- the registry ---- */
int dh_dloss_count(void);
const dh_dloss_method *dh_dloss_method_at(int i);       /* NULL past the end */
const dh_dloss_method *dh_dloss_find(const char *name); /* case-insensitive; NULL if unknown */
/* The default of parameter p for K bits. */
double dh_dloss_param_default(const dh_dloss_param *p, int bits);

/* ---- creating a loss ----
 * params: n strings "name=value" (each name at most once); unknown names,
 * malformed or out-of-range values are DH_EINVAL. */
int dh_dloss_create(const char *name, const char *const *params, int n, const dh_dloss_config *cfg, dh_dloss **out,
                    dh_err *e);
/* The same from one string "NAME" or "NAME:a=1,b=2" (for --loss options). */
int dh_dloss_create_spec(const char *spec, const dh_dloss_config *cfg, dh_dloss **out, dh_err *e);
void dh_dloss_free(dh_dloss *L);

/* The database's labels (labels or multi, n = config.db_size rows): needed
 * by methods flagged DH_DLOSS_NEEDS_DB, harmless for the others. */
int dh_dloss_set_database(dh_dloss *L, const int32_t *labels, const uint8_t *multi, int64_t n, dh_err *e);

/* Loss and gradient of one batch. du (B, K) may be NULL (loss only); st
 * may be NULL. */
int dh_dloss_eval(dh_dloss *L, const dh_dloss_batch *b, float *du, dh_dloss_stats *st, dh_err *e);
/* The device path of methods flagged DH_DLOSS_DEVICE: the same loss and
 * gradient as dh_dloss_eval (within rounding: the sums are in double, in
 * another order), with d_u (B, K) and d_du (B, K, written; may be NULL for
 * the loss only) in CUDA device memory. b is checked as for dh_dloss_eval
 * except b->u, which is ignored (may be NULL): its labels, multi and idx
 * are on the host (the labels are copied to the device, into buffers kept
 * between calls). The method's state is never changed (the flagged
 * methods have none that training changes). Synchronises (the loss comes
 * back to the host). DH_EUNSUPPORTED for a method without a device path,
 * DH_EDEVICE when the CUDA backend cannot be loaded (a build without CUDA),
 * DH_ELIMIT when the batch's B x B matrices cannot fit, DH_EINVAL for a bad
 * batch or a loss that is not finite. */
int dh_dloss_eval_cuda(dh_dloss *L, const dh_dloss_batch *b, const float *d_u, float *d_du, dh_dloss_stats *st,
                       dh_err *e);
/* Frees the device path's buffers (never loads the backend). */
void dh_dloss_cuda_release(void);
/* End of an epoch: the methods' discrete steps (a no-op for most). */
int dh_dloss_epoch_end(dh_dloss *L, dh_err *e);

/* ---- inspection ---- */
const dh_dloss_method *dh_dloss_method_of(const dh_dloss *L);
/* Value of a parameter by name (NaN if the method has no such parameter);
 * for choice parameters, the index of the word. */
double dh_dloss_param_value(const dh_dloss *L, const char *name);
/* A named state tensor (rows x cols, row-major float), or NULL:
 * "centres" (csq, orthohash: C x K, entries +-1), "W" (greedyhash: K x C
 * classifier; dsdh: K x C), "B" (dsdh: N x K codes, 0 for rows not seen
 * yet), "V" (adsh: N x K database codes, +-1 after the first epoch_end). */
const float *dh_dloss_tensor(const dh_dloss *L, const char *name, int64_t *rows, int *cols);
/* ---- checkpoints ----
 * The state a method changes as it trains (GreedyHash's classifier and its
 * momentum; DSDH's outputs, codes, labels and seen flags of the rows and
 * its classifier; ADSH's database codes, the outputs and seen flags of the
 * epoch): buffer i = 0, 1, ... (-1 past the last; a stateless method has
 * none). Copying saved values back into the buffers and then calling
 * dh_dloss_state_restored continues a run exactly (sums derived from the
 * state are computed again). */
struct dh_dloss_state {
    const char *name; /* e.g. "V" */
    void *data;       /* the method's own buffer */
    int64_t n;        /* elements */
    int u8;           /* 1: bytes (uint8_t), 0: floats */
};
int dh_dloss_state_at(dh_dloss *L, int i, dh_dloss_state *out);
void dh_dloss_state_restored(dh_dloss *L);
/* One line per method and parameter (for --help and the man page check). */
int dh_dloss_describe(char *buf, size_t size);

#endif
