/* net.h — the network runtime: a network built from a parsed specification
 * (formats/netspec.h) on a device (kernels/dk.h), with an optional softmax
 * classifier head, forward (train/eval) and backward passes, parameter
 * lists for the optimiser, and saving/loading through dhs_model.
 *
 * Data flow for a batch of N images:
 *   x (N, C, H, W) normalised  --body-->  z (N, zdim)  --head-->  logits (N, K)
 * The body is the layer list of the spec; z is its last output (the
 * spec's "feature" point), flattened. The head (fc zdim -> K, tensors
 * "head.weight" (K, zdim) and "head.bias" (K)) is present when the net was
 * created with nclasses > 0 or loaded from a model that has it.
 *
 * Activations and gradients are allocated once, for a batch capacity given
 * at creation; any batch of 1..capacity rows may be passed, and a training
 * step or inference batch allocates nothing. A layer's output is its own
 * buffer, except that a ReLU right after conv, bn, fc, avgpool or gap runs
 * in place (none of them needs its output for its backward pass) and res
 * and flatten are views of their input. Gradients share two buffers used
 * alternately down the layers, plus one per residual block's end (read
 * again by its res). The last forward's activations are kept for the
 * backward pass, so call forward (train = 1) and then backward on the same
 * batch.
 *
 * Parameters (trainable, with gradient and momentum buffers) and state
 * (batch-norm running statistics, not trained) are listed in the net so that
 * an optimiser can walk them; each parameter has a group (NET_GROUP_BODY or
 * NET_GROUP_HEAD) for per-group learning rates, and a decay flag (weights of
 * conv/fc layers: 1; biases and batch-norm scale/shift: 0).
 *
 * Model files (kind "model", meta "model": "net"):
 *   meta  "net": spec text, "input": [C,H,W], "zdim": D, "zname": NAME,
 *         "mean", "std": per-channel normalisation (pixel/255 space),
 *         "classes": class names (when known)
 *   tensors: every parameter and state tensor by name ("conv1.weight",
 *            "bn1.running_mean", "head.bias" ...).
 * Other tensors and meta keys in a model are ignored by net_from_model, so
 * larger models (e.g. a deep hash model) can embed a net.
 */
#ifndef NET_H
#define NET_H
#include <stdint.h>
#include "dh_util.h"
#include "dhs.h"
#include "dk.h"
#include "netspec.h"

enum { NET_GROUP_BODY = 0, NET_GROUP_HEAD = 1, NET_NGROUPS = 2 };

typedef struct net_param {
    char name[NS_NAME_MAX + 24]; /* "conv1.weight" */
    dk_tensor w;                 /* value */
    dk_tensor g;                 /* gradient of the last backward (overwritten) */
    dk_tensor v;                 /* momentum buffer */
    int group;                   /* NET_GROUP_BODY / NET_GROUP_HEAD */
    int decay;                   /* 1: weight decay applies */
    float lr_scale;              /* the step uses lr x lr_scale and decay wd / lr_scale (default 1) */
    int frozen;                  /* 1: not trained (the weight of a "whiten" conv; recipes may set it) */
} net_param;

typedef struct net_state {
    char name[NS_NAME_MAX + 24]; /* "bn1.running_mean" */
    dk_tensor t;
} net_state;

typedef struct net_layer net_layer; /* private */

typedef struct net {
    netspec spec;
    dk_device dev;
    int64_t cap;  /* batch capacity */
    int nclasses; /* head outputs; 0: no head */
    int zdim;
    int nparams;
    net_param *params; /* (nparams) */
    int nstate;
    net_state *state;                        /* (nstate) */
    float mean[DK_MAXCHAN], std[DK_MAXCHAN]; /* input normalisation, C of them */
    int nclass_names;
    char **class_names;        /* (nclass_names) or NULL */
    float bn_momentum, bn_eps; /* defaults 0.1, 1e-5 */
    uint64_t seed;             /* dropout draws */
    uint64_t step;             /* forward passes in train mode so far */
    /* private */
    net_layer *L;              /* (spec.nlayers) */
    dk_tensor xin;             /* view of the last input */
    dk_tensor gin;             /* (cap, C, H, W) gradient w.r.t. the input (scratch) */
    dk_tensor gbuf[2];         /* the shared gradient buffers (cap x the largest layer) */
    dk_tensor logits, dlogits; /* (cap, K) */
    int64_t nb;                /* rows in the last forward */
    int head_w, head_b;        /* indices into params, or -1 */
    int fused;                 /* the last forward fused layers (inference): no backward from it */
    int nochain;               /* 1: inference keeps no fused op's output in the backend's layout (dk.h:
                                  inference chains; for comparisons and debugging) */
} net;

/* Build a net for `spec` (copied) on dev with room for batches of `cap`
 * rows and a head of nclasses outputs (0: none). Parameters are zero until
 * net_init or net_load_params. mean/std default to 0/1. */
int net_create(const netspec *spec, int nclasses, dk_device dev, int64_t cap, net **out, dh_err *e);
void net_free(net *n);
/* Initialise parameters: conv/fc weights He-normal, head Xavier-uniform,
 * biases 0, bn scale 1 / shift 0, running mean 0 / var 1. Deterministic in
 * seed (the same values on both devices). Also sets n->seed. */
int net_init(net *n, uint64_t seed, dh_err *e);
/* Normalisation (C values each) and class names (copied; may be NULL). */
int net_set_norm(net *n, const float *mean, const float *std, dh_err *e);
int net_set_classes(net *n, const char *const *names, int count, dh_err *e);

/* Forward x (N, C, H, W) (normalised; N <= cap) through the body.
 * train: batch statistics and dropout (and running-stat updates); else
 * inference, where each convolution followed by batch normalisation (and a
 * ReLU or GELU) runs as one dk_conv2d_bn_forward, and each convolution
 * followed by pooling (with or without a ReLU between; and a batch
 * normalisation, with or without a ReLU or GELU, after; a ReLU after max
 * pooling runs before it, the same values) as one
 * dk_conv2d_pool_forward; where one such op feeds the next, its output
 * stays in the backend's layout (dk.h, inference chains; the same result);
 * after a forward that
 * fused any, net_backward_from_z refuses (the activations it needs were not
 * kept). *z is set to a view (N, zdim) of the net's buffer,
 * valid until the next forward. */
int net_forward_to_z(net *n, const dk_tensor *x, int train, dk_tensor *z, dh_err *e);
/* Backward through the body from dz (N, zdim) (the gradient of the loss
 * w.r.t. the z of the last forward): overwrites the gradients of every body
 * parameter. dz may be the buffer returned by net_dz. */
int net_backward_from_z(net *n, const dk_tensor *dz, dh_err *e);
/* A view (N, zdim) of the net's own dz buffer for the last forward (fill it
 * and pass it to net_backward_from_z to avoid a copy). */
int net_dz(net *n, dk_tensor *dz, dh_err *e);

/* Head: logits (N, K) for the z of the last forward; *logits is a view. */
int net_head_forward(net *n, dk_tensor *logits, dh_err *e);
/* One training step's gradients for the classifier: forward (train), head,
 * softmax cross-entropy with labels (N int32 on the device) and label
 * smoothing, backward through head and body. Reports the mean loss and the
 * number of correct rows. */
int net_grad_xent(net *n, const dk_tensor *x, const int32_t *labels, float smoothing, double *loss, int64_t *correct,
                  dh_err *e);
/* An auxiliary classification term for a training step that already has a
 * gradient dz (N, zdim) at z from another loss (stage 3): after a training
 * forward, the head's logits for the last forward, softmax cross-entropy
 * with labels (N int32 on the device) and label smoothing, weighted by
 * weight: the head's parameter gradients are set to it, and dz += its
 * gradient at z (dz must not be net_dz's buffer). Reports the mean
 * (unweighted) loss and the number of correct rows. DH_EINVAL without a
 * head or a training forward. */
int net_head_xent_add(net *n, const int32_t *labels, float smoothing, float weight, double *loss, int64_t *correct,
                      dk_tensor *dz, dh_err *e);
/* Evaluation (inference mode): mean loss and correct count for a batch. */
int net_eval_xent(net *n, const dk_tensor *x, const int32_t *labels, double *loss, int64_t *correct, dh_err *e);

/* SGD step over every parameter that is not frozen: group g uses
 * lr[g] x lr_scale; weight decay wd[g] / lr_scale applies to parameters with
 * decay set (so the decay per step, lr x wd, is the group's whatever the
 * scale). */
int net_sgd_step(net *n, const float lr[NET_NGROUPS], float momentum, const float wd[NET_NGROUPS], int nesterov,
                 dh_err *e);

/* Save into m (meta and tensors added to whatever m holds; meta "model" is
 * set to "net" only when m has no "model" yet, so a caller may set e.g.
 * "deephash" first). */
int net_to_model(const net *n, dhs_model *m, dh_err *e);
/* Build a net from a model (meta "net" required; "model" may be anything
 * that embeds a net). The head is loaded when the model has "head.weight".
 * Errors name the problem: missing meta, bad spec (as "model:net:LINE: .."),
 * missing tensor or wrong shape. */
int net_from_model(const dhs_model *m, dk_device dev, int64_t cap, net **out, dh_err *e);

/* ---- recipe pieces (dh-pretrain --arch air; dh-pretrain(1)) ---- */
/* Patch whitening (the fast CIFAR-10 records): set the weights of the
 * "whiten" conv (the first layer; OUT = 2 m outputs, K x K kernel on C
 * channels) from x, N normalised images (N, C, H, W) on the host: with
 * Sigma = the mean of p p^T over every K x K patch p (C K K values, not
 * centred) of the images and Sigma's eigenpairs (lambda_i, v_i) in
 * descending order, output i < m gets v_i / sqrt(lambda_i + eps) and output
 * m + i its negative. The layer's outputs on the patches then have
 * covariance diag(lambda_i / (lambda_i + eps)) (about I). Its bias is set
 * to 0. Does nothing for a net without a whiten layer. */
int net_whiten_init(net *n, const float *x, int64_t N, double eps, dh_err *e);
/* Eigen-decomposition of the symmetric d x d matrix A (row-major; d <=
 * 1024): eigenvalues in descending order into w (d), unit eigenvectors as
 * the ROWS of V (d x d). Cyclic Jacobi in double precision. */
int net_sym_eig(const double *A, int d, double *w, double *V, dh_err *e);
/* Partial identity ("dirac") start for every conv that is not whiten, with
 * OUT >= C and an odd kernel: output o < C gets the centre tap 1 on input
 * o and 0 elsewhere (the rest keep their values). */
int net_init_dirac(net *n, dh_err *e);

/* Lookahead / exponential moving average of the weights: a copy of every
 * parameter and state tensor (running statistics). */
typedef struct net_ema {
    int np, ns;
    dk_tensor *p, *s; /* (np), (ns) */
} net_ema;
/* Start the average at the net's current values. */
int net_ema_init(net_ema *a, const net *n, dh_err *e);
/* a = decay a + (1 - decay) w for every tensor, then (lookahead) w = a.
 * decay 1 copies the average into the net; 0 the net into the average. */
int net_ema_lookahead(net_ema *a, net *n, float decay, dh_err *e);
void net_ema_free(net_ema *a);

/* Total number of trainable scalars. */
int64_t net_nparams(const net *n);

#endif
