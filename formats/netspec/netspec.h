/* netspec.h — network specifications: a small line-based text language
 * (see man/dh-net.5), parsed with "file:line: message" errors, with the
 * output shape of every layer computed, and the built-in architectures.
 *
 * Grammar (one statement a line; '#' starts a comment; words separated by
 * blanks; options are kN sN pN for kernel/stride/padding, name=NAME):
 *
 *   input C H W                  first statement: the image shape
 *   conv OUT kK [sS] [pP] [nobias] [whiten] [name=N]   2-D convolution (s1 p0 default);
 *                                whiten: the first layer only, OUT even and at most
 *                                2 C K K; its weights are the patch-whitening
 *                                filters of the training images (net_whiten_init)
 *                                and are not trained
 *   fc OUT [nobias] [name=N]     fully connected (flattens its input)
 *   bn [name=N]                  batch normalisation (per channel / unit)
 *   relu | gelu                  activations
 *   maxpool kK [sS] [pP]         max pooling (stride defaults to K)
 *   avgpool kK [sS] [pP]         average pooling (padding counts as zeros)
 *   gap                          global average pooling -> (C,1,1)
 *   dropout P                    dropout with drop probability 0 <= P < 1
 *   flatten                      (C,H,W) -> (C*H*W,1,1)
 *   scale F                      multiply by the constant F
 *   res ... end                  residual block: y = x + body(x); shapes must agree
 *   feature [NAME]               z = the output at this point; the last statement.
 *                                NAME, if given, must be the last layer with
 *                                parameters before it (e.g. "fc 1024 name=z",
 *                                "relu", "feature z").
 *
 * Layers with parameters get names "<type><n>" (conv1, fc2, bn3) unless
 * name= is given; their tensors are "<name>.weight", "<name>.bias" and, for
 * bn, "<name>.running_mean" / "<name>.running_var".
 * Shapes are (C,H,W); an fc output is (OUT,1,1).
 */
#ifndef NETSPEC_H
#define NETSPEC_H
#include "dh_util.h"

#define NS_NAME_MAX   48
#define NS_MAX_LAYERS 256
#define NS_MAX_DEPTH  8 /* nesting of res blocks */

typedef enum {
    NS_CONV = 1,
    NS_FC,
    NS_BN,
    NS_RELU,
    NS_GELU,
    NS_MAXPOOL,
    NS_AVGPOOL,
    NS_GAP,
    NS_DROPOUT,
    NS_FLATTEN,
    NS_SCALE,
    NS_RES,
    NS_END
} ns_type;

typedef struct ns_layer {
    ns_type type;
    char name[NS_NAME_MAX]; /* layers with parameters: unique name; else "" */
    int line;               /* source line */
    int out;                /* conv: output channels; fc: units */
    int k, s, p;            /* conv/pool: kernel, stride, padding */
    int bias;               /* conv/fc: has a bias (default 1) */
    int whiten;             /* conv: weights from patch whitening, frozen (default 0) */
    float f;                /* dropout: probability; scale: factor */
    int match;              /* NS_RES: index of its NS_END; NS_END: index of its NS_RES */
    int in[3], shape[3];    /* input and output shape (C,H,W) */
} ns_layer;

typedef struct netspec {
    int in[3]; /* input (C,H,W) */
    int nlayers;
    ns_layer *layers;        /* (nlayers) */
    int zdim;                /* size of z = C*H*W of the feature point */
    char zname[NS_NAME_MAX]; /* NAME given to "feature", or "z" */
    char *text;              /* the spec text as given (stored in models) */
} netspec;

/* Parse spec text; fname is used in messages ("cifar", "net.txt").
 * On error returns DH_EFORMAT with e->msg = "fname:line: message". */
int netspec_parse(const char *text, const char *fname, netspec *ns, dh_err *e);
/* Read a file and parse it. */
int netspec_load(const char *path, netspec *ns, dh_err *e);
/* Built-in architectures: "lenet", "cifar", "fast", "air". NULL if unknown. */
const char *netspec_builtin_text(const char *name);
int netspec_builtin(const char *name, netspec *ns, dh_err *e);
/* Space-separated list of built-in names, for messages and --help. */
const char *netspec_builtin_names(void);
void netspec_free(netspec *ns);
const char *ns_type_name(ns_type t);
/* Number of parameters of the network (weights, biases, bn scale/shift). */
int64_t netspec_nparams(const netspec *ns);

#endif
