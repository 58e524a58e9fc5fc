/* train.h — the training logic of stage 1 (dh-pretrain) and stage 3
 * (dh-finetune), so that their mains only parse options, open the input,
 * loop and commit:
 *
 *   - datasets read whole: images onto a device with their per-channel
 *     statistics (one rule), cached features on the host;
 *   - the order of an epoch's rows and the learning-rate schedule as the
 *     programs spell it (one rounding for the paper's "step");
 *   - the hash-layer trainer of stage 3: forward, the loss (the paper's
 *     exponentiated loss, kernels/hash/hashloss.h, or one of the deep
 *     hashing losses of kernels/hash/deeploss.h), backward and a
 *     preconditioned momentum SGD step, on the tensors' device (CPU or CUDA).
 *
 * Errors are values (dh_err); messages name the input where there is one.
 */
#ifndef DH_TRAIN_H
#define DH_TRAIN_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "dh_util.h"
#include "dhs.h"
#include "deeploss.h"
#include "dk.h"
#include "hashloss.h"
#include "net.h"

/* ---- images datasets --------------------------------------------------------------------------------------------- */
/* Per-channel statistics of pixel/255 over every image: mean and standard
 * deviation (population variance, from exact integer sums). A channel
 * whose variance is at most TRAIN_MIN_VAR (a constant channel) gets std 1.
 * The one rule of dh-pretrain and dh-finetune --arch; stored in the model
 * as the input normalisation. pix: host (S, C, H, W); mean, std: C floats. */
#define TRAIN_MIN_VAR 1e-8
void train_channel_stats(const uint8_t *pix, int64_t S, int C, int H, int W, float *mean, float *std);

/* An images stream read whole, its pixels and labels on a device. */
typedef struct train_images {
    char name[256]; /* the reader's name, for messages */
    dk_device dev;
    int64_t S; /* rows */
    int C, H, W;
    uint8_t *pix;                            /* device (S, C, H, W) */
    int32_t *lab;                            /* device (S) */
    int32_t *order;                          /* device (S): the epoch's order (train_images_order) */
    int32_t *hlab;                           /* host (S) */
    char *ids;                               /* host: the "id" column's bytes, or NULL (no id field) */
    uint64_t *idoff;                         /* host (S + 1): row i's id is ids[idoff[i] .. idoff[i + 1]) */
    int nclasses;                            /* length of meta "classes", else max label + 1 */
    char **classes;                          /* (nclasses) from meta "classes", or NULL */
    float mean[DK_MAXCHAN], std[DK_MAXCHAN]; /* train_channel_stats */
} train_images;

enum {
    TRAIN_CLASS_LABELS = 1 /* labels must be class indices: 0 <= label < the number of classes */
};
/* Read the rest of r (kind "images": pixels u8 (C, H, W) of a fixed shape,
 * label i32; C <= DK_MAXCHAN; at least one row) into d on dev. flags:
 * TRAIN_CLASS_LABELS. DH_ESCHEMA for a stream of another kind or fields,
 * DH_EFORMAT for a label out of range; the reader's errors as they are.
 * Free d with train_images_free, also after a failure. */
int train_images_read(dhs_reader *r, dk_device dev, int flags, train_images *d, dh_err *e);
void train_images_free(train_images *d);
/* Whether images d (e.g. a validation set) fit a net trained on tr: the
 * same shape, the same class names when both have them, labels within tr's
 * classes (DH_ESCHEMA / DH_EFORMAT naming d otherwise). */
int train_images_match(const train_images *d, const train_images *tr, dh_err *e);
/* Upload an epoch's order (S row indices) to d->order. */
int train_images_order(train_images *d, const int32_t *order, dh_err *e);
/* Accuracy and mean loss of the classifier of n on every image of d, in
 * inference mode, in batches of x's rows (x (B, C, H, W) on d's device). */
int train_images_eval(net *n, const train_images *d, dk_tensor *x, double *acc, double *loss, dh_err *e);

/* ---- cached features ----------------------------------------------------------------------------------------------- */
/* A features stream read whole on the host: z f32 (D) of a fixed size, label
 * i32, every value finite (DH_EFORMAT names the first row that is not). */
typedef struct train_features {
    int64_t N;
    int D;
    const float *z;     /* (N, D), in t */
    const int32_t *lab; /* (N), in t */
    dhs_table t;
} train_features;
int train_features_read(dhs_reader *r, train_features *f, dh_err *e);
void train_features_free(train_features *f);

/* The hashing loss needs at least 2 rows and 2 classes among them
 * (DH_EFORMAT otherwise). */
int train_check_pairs(const int32_t *labels, int64_t N, dh_err *e);
/* Whether nw can carry a classification term on these labels (N): a
 * classifier head of at least 2 classes that covers every label; DH_EINVAL
 * saying which otherwise. */
int train_check_head(const net *nw, const int32_t *labels, int64_t N, dh_err *e);

/* ---- epochs and schedules ------------------------------------------------------------------------------------------ */
/* The order of epoch `epoch`'s N rows: skip < 0 shuffles (a fresh
 * permutation of the rows, dk_permutation(seed, 1000 + epoch)); skip >= 0
 * is the paper's sampling: walk the rows in order from *cursor, skipping a
 * random 0..skip rows after each pick (*cursor carries on to the next epoch). */
void train_epoch_order(int32_t *order, int64_t N, int epoch, uint64_t seed, int skip, int64_t *cursor);

/* A learning-rate schedule as dh-pretrain and dh-finetune spell it: the
 * grammar of dk_schedule_parse (const, step:E1,E2,..., onecycle[:W[:F]],
 * cosine[:W[:F]]), plus "constant" for const and plain "step", the paper's:
 * x0.1 at 50% and 75% of `epochs`, rounded down: step:A,B with A = E/2,
 * B = 3E/4 (integer division, epochs counted from 0; A at least 1 and B at
 * least A + 1): step:5,7 for 10 epochs, step:20,30 for 40. The resolved
 * text (e.g. "step:5,7") goes to `resolved` (n bytes) when not NULL. */
int train_schedule(const char *s, double base, int epochs, dk_schedule *out, char *resolved, size_t n, dh_err *e);

/* ---- the hash layer of stage 3 ------------------------------------------------------------------------------------- */
/* A linear hash layer from a hash model file (u = W z + b; a "mean" tensor
 * is folded into b): *W (K, D) and *b (K) are allocated (free them). The
 * model stays in m (the caller frees it with dhs_model_free). DH_ESCHEMA
 * for a hash model whose transform is not linear. */
int train_hash_load(const char *path, dhs_model *m, float **W, float **b, int *K, int *D, dh_err *e);
/* A random hash layer: W_kd = N(0, 1) * sqrt(1/D) drawn from
 * (seed ^ 0x4a5b, k D + d), b = 0. With z (n, D) (host, n > 0), W is then
 * scaled so that the RMS of u = W z over those rows is 1. */
void train_hash_random(float *W, float *b, int K, int D, uint64_t seed, const float *z, int64_t n);

/* The layer stage 3 starts from: the hash model at path (train_hash_load:
 * *K and *HD are its bits and dimension; the caller checks *HD), or, with
 * path NULL, a random layer of *K bits on D-D features (train_hash_random
 * from seed, scaled on the first min(n, 4096) rows of z when z is given;
 * *HD = D). */
int train_hash_start(const char *path, dhs_model *m, int D, const float *z, int64_t n, uint64_t seed, float **W,
                     float **b, int *K, int *HD, dh_err *e);

/* Preconditioning statistics of features z: m = the mean row (D) and
 * r2 = the mean squared norm of z - m (1 when that is not above 1e-20).
 * From host rows, or from the z of the first n images of d through the net
 * (inference mode, in batches of x's rows; n a multiple of them). */
void train_zstats(const float *z, int64_t n, int D, float *m, double *r2);
int train_zstats_net(net *nw, const train_images *d, int64_t n, dk_tensor *x, float *m, double *r2, dh_err *e);

typedef struct train_hash_opts {
    dh_hashloss_opts loss;
    float momentum;
    float wd;        /* weight decay on W (not on b) */
    const float *m;  /* (D) preconditioning: the mean of z, or NULL for none */
    double r2;       /* with m: the mean squared norm of z - m */
    dh_dloss *dloss; /* a loss of the deeploss registry (not owned), or NULL: the exponentiated loss `loss` */
} train_hash_opts;

/* Statistics of one step. */
typedef struct train_hash_stats {
    double q, surrogate, right;      /* the exponentiated loss's (dh_hashloss_stats); NaN with a registry loss */
    double absu;                     /* mean |u| over the batch */
    double loss;                     /* the value whose gradient was taken: the surrogate, or the registry loss */
    double term[DH_DLOSS_MAX_TERMS]; /* the registry loss's terms (its method's terms), else 0 */
    double scale;                    /* the registry loss's scalar (HashNet's beta), else 0 */
} train_hash_stats;

/* Where a batch sits in the run, for a registry loss: the database row of
 * each batch row (B of them; DSDH and ADSH need them), the global step
 * (0-based; HashNet's continuation) and the epoch. */
typedef struct train_hash_pos {
    const int64_t *idx;
    int64_t step;
    int epoch;
} train_hash_pos;

/* The trainer: the hash layer (W, b) on a device and its SGD state.
 * Preconditioning (opts.m set) trains the layer in the coordinates
 *   x = (z - m) / r:   u = W' x + c,   W = W' / r,   b = c - W m,
 * so that a learning rate moves u by about as much whatever the scale,
 * offset and dimension of z. The step is written in z's coordinates:
 *   vW = momentum vW + (gW - gb m^T) + wd W;   W -= lr / r^2 vW
 *   vc = momentum vc + gb;                     c -= lr vc;   b = c - W m
 * (plain momentum SGD without m). */
typedef struct train_hash {
    dk_device dev;
    int K, D, B;
    dh_hashloss_opts loss;
    dh_dloss *dloss; /* or NULL (train_hash_opts) */
    float momentum, wd;
    int precond;
    double r2;
    dk_tensor W, b, c, m, gW, gb, vW, vb; /* (K, D), (K), (K), (D), then their gradients and velocities */
    dk_tensor u, du, dz;                  /* (B, K), (B, K), (B, D) */
    float *hu, *hdu;                      /* host (B, K) */
    int32_t *dlab;                        /* device (B): labels for the CUDA loss */
} train_hash;

/* A trainer on dev for batches of B rows, starting from W (K, D) and b (K)
 * (host). */
int train_hash_init(train_hash *t, dk_device dev, int K, int D, int B, const float *W, const float *b,
                    const train_hash_opts *o, dh_err *e);
/* One step on a batch: z (B, D) on the trainer's device, labels (B) on the
 * host, pos (may be NULL: no indices, step and epoch 0) for a registry loss,
 * learning rate lr. Fills st (may be NULL). With want_dz, t->dz receives
 * the gradient of the loss with respect to z (for the backbone; computed
 * before the update). A registry loss with a device path (DH_DLOSS_DEVICE)
 * on a CUDA trainer writes dL/du in t->du directly; any other sees u on the
 * host (downloaded from the device, its gradient uploaded) with learn = 1. When u is not finite the step changes nothing and st->loss
 * is NaN (the caller reports the divergence). */
int train_hash_step(train_hash *t, const dk_tensor *z, const int32_t *labels, const train_hash_pos *pos, float lr,
                    int want_dz, train_hash_stats *st, dh_err *e);
/* The layer in z's coordinates: W (K, D), b (K) on the host. */
int train_hash_get(const train_hash *t, float *W, float *b, dh_err *e);
void train_hash_free(train_hash *t);

/* ---- stage 3: the hash layer on cached features, or on a network's z ---------------------------------------------- */
typedef struct train_finetune_opts {
    dh_hashloss_opts loss;        /* the exponentiated loss, when loss_spec is NULL */
    const char *loss_spec;        /* NULL, or a deeploss registry spec "NAME[:k=v,...]" (dh_dloss_create_spec) */
    int precond;                  /* 1: preconditioning (train_hash), statistics from the data */
    double lr, backbone_lr;       /* peak rates; backbone_lr 0: the network is frozen (inference mode) */
    double momentum, wd, hash_wd; /* wd: the backbone's weight decay; hash_wd: W's */
    dk_schedule sched;            /* the rates' schedule (a factor: built with base 1) */
    int epochs, skip, pad, flip;  /* skip: train_epoch_order; pad, flip: dk_images_augment */
    uint64_t seed;
    double aux_xent;         /* > 0: add this times the classifier head's cross-entropy (net_head_xent_add) */
    struct train_dist *dist; /* data-parallel ranks (train_dist.h) for images, or NULL: alone */
} train_finetune_opts;

/* One epoch's report: the means over its batches, and the rates at its end. */
typedef struct train_finetune_stats {
    double q, surrogate, right, absu, lr, backbone_lr;
    double loss, term[DH_DLOSS_MAX_TERMS], scale; /* train_hash_stats (scale: its value at the epoch's end) */
    double xent, acc; /* with aux_xent: the head's mean cross-entropy and accuracy (this rank's rows) */
    int64_t batches, rows, correct;
    int constant_bits; /* bits of u whose sign was the same for every row of the epoch (as far as this process ran
                          it): K when every code was the same, i.e. the codes collapsed */
    int paused;        /* 1: the epoch stopped between two steps (t->pause said so) */
} train_finetune_stats;

typedef struct train_finetune {
    train_finetune_opts o;
    const train_features *f; /* the data: cached features, or */
    train_images *im;        /* images, through */
    net *nw;                 /* this network (its batch capacity at least B) */
    int64_t N, step, cursor; /* rows; steps so far; the paper sampling's position */
    int64_t ep_cursor;       /* the cursor at the start of epoch ep_loaded */
    int ep_loaded;           /* the epoch whose order is loaded, or -1 */
    int (*pause)(void *arg); /* NULL, or asked between two steps of an epoch: 1 pauses it (a checkpoint) */
    void *pause_arg;
    int B, K, D;
    int64_t r0, bl;  /* this rank's rows of every batch, [r0, r0 + bl): all B alone */
    int classes;     /* labels are 0..classes-1 (with a registry loss) */
    dh_dloss *dloss; /* the registry loss (o.loss_spec), or NULL */
    int64_t *idx;    /* host (B): the batch's rows, for the registry loss */
    float *m;        /* (D) preconditioning mean (zeros without) */
    double r2;       /* and mean squared norm */
    train_hash th;
    int32_t *order, *lab; /* host (N), (B) */
    uint8_t *signs;       /* host (K): this epoch's signs of u per bit, 1 some row > 0, 2 some row <= 0 */
    int32_t *dlab;        /* device (B): the labels of the classification term (o.aux_xent), or NULL */
    float *zh;            /* host (B, D) */
    dk_tensor x, z;       /* (B, C, H, W) images, (B, D) features */
} train_finetune;

/* A stage-3 run on dev, on f (features; im and nw NULL) or on im through nw, in
 * batches of B rows (2 <= B <= rows), from the hash layer W (K, D), b (K)
 * (host; D = f->D or nw->zdim). With o->precond, m and r2 come from every
 * feature row, or from the z of the first min(N, 4096) images (whole
 * batches, inference mode).
 * With o->loss_spec, the registry loss is created for (K, the number of
 * classes, o->seed, the N training rows): classes = the images' classes or
 * max label + 1 (a negative label is DH_EFORMAT); GreedyHash's classifier
 * rate lr= defaults to o->lr; methods that need the database (ADSH) get
 * the training labels. A bad spec is DH_EINVAL with the registry's message
 * (train_loss_check says so before any data is read). With o->aux_xent > 0
 * the network (images only) must have a classifier head whose classes cover
 * every label (DH_EINVAL otherwise); the head learns at the backbone's rate
 * and weight decay. */
int train_finetune_init(train_finetune *t, const train_finetune_opts *o, dk_device dev, const train_features *f,
                        train_images *im, net *nw, int B, const float *W, const float *b, int K, dh_err *e);
/* Epoch `epoch` (0, 1, ... in turn): st receives its report; progress (may be
 * NULL) is called with the rows done after each batch. A non-finite loss is
 * DH_EFORMAT "training diverged at epoch N (try a smaller --lr)". The epoch
 * runs from step t->step (its first, or where a pause or a restored
 * checkpoint left it): when t->pause returns 1 between two of its steps it
 * returns with st->paused set, and the next call for the same epoch
 * continues it, adding to st (zeroed by the epoch's first call). */
int train_finetune_epoch(train_finetune *t, int epoch, train_finetune_stats *st,
                         void (*progress)(void *arg, int64_t rows), void *arg, dh_err *e);
void train_finetune_free(train_finetune *t);

/* Whether spec names a registry loss with valid parameters for K bits (a
 * provisional configuration: 2 classes, 1 database row): DH_EINVAL with
 * the registry's message otherwise. For --loss before the data is read. */
int train_loss_check(const char *spec, int K, dh_err *e);
/* The registry method a spec names (case-insensitive; NULL if none). */
const dh_dloss_method *train_loss_method(const char *spec);
/* dh-finetune's default hash-layer rate for a registry method in this
 * trainer (preconditioned features, momentum 0.9): measured per method
 * (train_finetune.c, dh-finetune(1)): 3 for deephash, dpsh, dhn, hashnet,
 * dch, dsh, dtsh and mihash, 1 for dsdh, 0.1 for greedyhash and adsh, 0.03
 * for csq and orthohash; 10 x lr_hint for a method not measured. */
double train_default_lr(const dh_dloss_method *m);
/* What the run does, for the program's first note: "fine-tuning ... on N
 * cached D-D features: K bits, loss LOSS, lr ..., batch B, E epochs" (net:
 * the network's name, for images; "loss LOSS (scale S) + W x
 * classification" when the classification term runs). */
void train_finetune_describe(const train_finetune *t, const char *loss, const char *netname, char *buf, size_t n);
/* One line of an epoch's report, without the rates and speed: "Q ...
 * surrogate ... right-sign pairs ... mean|u| ..." for the exponentiated
 * loss, "loss ... TERM ... [beta ...] mean|u| ..." for a registry loss;
 * then "xent ... train acc ...%" when the classification term ran, and
 * "constant bits N/K" when N bits had one sign in every row. */
void train_finetune_report(const train_finetune *t, const train_finetune_stats *st, char *buf, size_t n);
/* The database codes a method learned itself (ADSH's V, DH_DLOSS_ASYM):
 * a codes stream (code bits [K], label i32, id str when the training data
 * has ids) of the N training rows in their order, bit k = 1 when V > 0,
 * written to f (named name) with meta (may be NULL) plus "bits",
 * "hash_method" (the loss) and "codes": "learned". DH_EUNSUPPORTED when
 * the loss learns no database codes. */
int train_finetune_db_codes(const train_finetune *t, FILE *f, const char *name, const dhs_meta *meta, dh_err *e);

/* The model of stage 3 from W (K, D), b (K) (host), into out (initialised
 * by the caller): a hash model ("model": "hash", method `method`, linear)
 * when nw is NULL, else a deep hash model: nw's tensors and meta plus
 * "hash.W", "hash.b" and the meta "model": "deephash", "hash_bits",
 * "hash_dim", "hash_method" (`method`), "hash_transform". method NULL:
 * "deephash" (the paper's loss); else the registry loss's name. */
int train_hash_model(dhs_model *out, const net *nw, const char *method, const float *W, const float *b, int K, int D,
                     dh_err *e);

/* Where a stage-3 model came from, for its meta (NULL members are left out). */
typedef struct train_model_info {
    const char *program, *cmdline, *stage; /* "program", "cmdline", "stage" */
    const char *init_net, *init_hash;      /* "init_net", "init_hash": the files it started from */
    const char *init_method;               /* "init_method": the stage-2 method of init_hash */
    const char *loss;                      /* "loss": its name or spec */
    const char *device;                    /* "device": dk_device_name of the device it trained on */
    const char *precision;                 /* "precision": "fp32" or "bf16" (CPU only: NULL elsewhere) */
} train_model_info;
/* The trained layer (into W (K, D), b (K), host) and the model of t
 * (train_hash_model with the registry loss's name as its method; nw as
 * given to train_finetune_init) with info's meta and "seed". */
int train_finetune_model(const train_finetune *t, const net *nw, const train_model_info *info, float *W, float *b,
                         dhs_model *out, dh_err *e);

/* A network of spec on dev for batches of B rows with a head of nclasses
 * outputs (0: none), initialised from seed (net_init), normalised with d's
 * channel statistics and named with d's classes (when it has a head). */
int train_net_new(const netspec *spec, int nclasses, dk_device dev, int64_t B, uint64_t seed, const train_images *d,
                  net **out, dh_err *e);

/* ---- stage 1's recipe (train_pretrain.c; dh-pretrain(1)) ------------------------------------------------------------ */
/* The patch-whitening start of a net whose first layer is a "whiten" conv
 * (net_whiten_init) from `count` images of d, rows spread evenly over it,
 * normalised as the net normalises them; nothing for other nets.
 * train_net_new calls it with TRAIN_WHITEN_IMAGES. */
#define TRAIN_WHITEN_IMAGES 5000
#define TRAIN_WHITEN_EPS    5e-4
int train_whiten(net *n, const train_images *d, int64_t count, dh_err *e);

/* The per-parameter settings of the fast CIFAR-10 recipe. */
typedef struct train_recipe {
    float bn_momentum;      /* > 0: the nets' batch-norm running-statistics momentum */
    float bn_bias_lr;       /* > 0: batch-norm shifts train at lr x this, with weight decay wd / this */
    int bn_scale_frozen;    /* batch-norm scales stay 1 */
    float conv_scale;       /* > 0: the start's conv weights (not whiten) times this (before dirac) */
    int dirac;              /* net_init_dirac */
    int whiten_bias_epochs; /* > 0: the whitening layer's bias freezes after this many epochs */
    int head_torch;         /* the classifier head as PyTorch's nn.Linear(bias=False) starts it: weights
                             * U(-1/sqrt(z), 1/sqrt(z)) (the Xavier start rescaled), bias 0 and frozen */
    int lookahead_start;    /* > 0: lookahead begins at the first averaging step of this epoch (from 0)
                             * (train_lookahead_started) */
    int decay_all;          /* weight decay on every trained parameter, biases too (PyTorch's SGD
                             * weight_decay on all groups), not on weights only */
} train_recipe;
int train_recipe_apply(net *n, const train_recipe *r, dh_err *e);
/* At the start of epoch `epoch` (from 0): freezes what the recipe freezes then. */
void train_recipe_epoch(net *n, const train_recipe *r, int epoch);
/* Lookahead (net_ema_lookahead) every TRAIN_LOOKAHEAD_EVERY steps with
 * decay 0.95^EVERY x (step / total)^3 (no averaging at the start, the most
 * at the end), as the records do; the net gets the average at the end. */
#define TRAIN_LOOKAHEAD_EVERY 5
double train_lookahead_decay(int64_t step, int64_t total);
/* With airbench's delayed start (r->lookahead_start = E > 0): the average
 * is a copy of the net taken at the first step count s (steps done, from 1)
 * with s % EVERY == 0 in epoch E or later, and averages from the next such
 * step on; after each epoch from then on the net gets the average. Whether
 * that copy has been taken once `steps` steps are done (spe steps per epoch):
 * a function of the step count, so a resumed run knows it. E = 0: from the
 * start (the copy is the initial net). */
int train_lookahead_started(const train_recipe *r, int64_t steps, int64_t spe);

/* The learning rate of step `step` (from 0) of `total`: dk_schedule_lr,
 * except that with start > 0 a onecycle or cosine schedule warms up
 * linearly from start x base to base over the first P = floor(warmup x
 * total) steps and then falls linearly (cosine: by a half cosine) from base
 * at step P to final x base at step `total` (airbench94's triangle: start
 * 0.2, peak at 23%, final 0.07). */
double train_schedule_lr(const dk_schedule *s, double start, int64_t step, int64_t total, int64_t spe);

/* ---- augmentation with reflection (train_data.c) ---- */
/* Training crops with reflection: dk_images_augment with DK_PAD_REFLECT (on
 * the device). For test-time views, one image, host to host: out (C, H, W)
 * normalised as dk_images_augment does, out[c, y, x] = img[c, R(y + dy),
 * R(x' + dx)] with x' = W-1-x when flip else x, where R reflects a position
 * outside the image about its edge pixel without repeating it (-1 -> 1,
 * H -> H-2; PyTorch's F.pad 'reflect', dk_aug_reflect). |dy| < H, |dx| < W;
 * H, W at most 4096. */
void train_image_shift_reflect(const uint8_t *img, int C, int H, int W, int dy, int dx, int flip, const float *mean,
                               const float *std, float *out);

/* ---- test-time augmentation ---- */
/* Levels: 1 the image and its mirror image; 2 airbench94's, also the image
 * translated by one pixel up-left and down-right (reflection at the edges),
 * each with its mirror image. */
enum { TRAIN_TTA_NONE = 0, TRAIN_TTA_FLIP = 1, TRAIN_TTA_FULL = 2 };
#define TRAIN_TTA_MAXVIEWS 6
/* The number of views of a level (1, 2 or 6) and view v's shift and flip
 * (view 0: the image; 1: its mirror; 2, 3: shifted by (-1, -1), plain and
 * mirrored; 4, 5: by (+1, +1)). */
int train_tta_views(int level);
void train_tta_view(int v, int *dy, int *dx, int *flip);
/* The combined logits of n rows of K classes: level 1 the mean of views 0
 * and 1; level 2 0.5 x mean(v0, v1) + 0.5 x mean(mean(v2, v3), mean(v4, v5)),
 * as airbench94's tta_level 2. view[v] (n, K) host. */
void train_tta_combine(int level, const float *const *view, int64_t n, int K, float *out);
/* train_images_eval, and with level > 0 the accuracy of the combined logits
 * of test-time augmentation at that level into *acc_tta. */
int train_images_eval_tta(net *n, const train_images *d, dk_tensor *x, int level, double *acc, double *acc_tta,
                          double *loss, dh_err *e);
/* A level's name ("none", "flip", "full") and back (-1 for another name). */
int train_tta_parse(const char *s);
const char *train_tta_name(int level);

/* The features z of batches of images under test-time augmentation: the
 * views' z combined with train_tta_combine's weights. The hash projection
 * and a linear head are linear in z, so hashing (or classifying) the
 * combined z is hashing the combined outputs. Buffers are sized once for
 * batches of up to B images; a batch allocates nothing. */
typedef struct train_tta_z {
    int level, nv, C, H, W, D;
    int64_t B;
    float *view[TRAIN_TTA_MAXVIEWS]; /* (B, D) host each, with more than one view */
    uint8_t *pix;                    /* (B, C, H, W) host copy of the pixels: translations only */
    float *img;                      /* (B, C, H, W) host: one translated view */
} train_tta_z;
int train_tta_z_init(train_tta_z *t, const net *n, int64_t B, int level, dh_err *e);
/* z (nb, D) host of the nb images at dpix (u8 [nb, C, H, W] in the net's
 * device memory); x a device tensor of at least nb rows of C x H x W for
 * the network's input. Level 0: z of the images as they are. */
int train_tta_z_batch(train_tta_z *t, net *n, const uint8_t *dpix, int64_t nb, dk_tensor *x, float *z, dh_err *e);
void train_tta_z_free(train_tta_z *t);

#endif
