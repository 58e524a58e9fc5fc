/* train_ckpt.h — checkpoints of a training run (dh-pretrain, dh-finetune):
 * what a run changes as it trains, so that a run stopped at a step
 * boundary and resumed from its checkpoint continues exactly; on the CPU
 * the resumed run writes the same model, bit for bit, as one that was not
 * stopped. That holds because every random draw of training is a
 * counter-based stream keyed by the seed and the position (the epoch's
 * permutation by the epoch, crops, flips and dropout by the step): the
 * position is the state.
 *
 * A resume starts the run as the first command did (the same data, the
 * same initial models, the same options), then overwrites what training
 * changed with the checkpoint's values; what a run computes once at its
 * start from its inputs (channel statistics, preconditioning statistics,
 * a registry loss's codebook) is computed again, and a fingerprint of it
 * is part of what the resume must match.
 *
 * A checkpoint is a model stream (dhs_model, dh-stream(5)):
 *   meta    "model": "checkpoint", "checkpoint_of": the program,
 *           "checkpoint_version": TRAIN_CKPT_VERSION, "step": the steps
 *           done, "cmdline": the run's command, "engine": what computed it
 *           (train_ckpt_engine), "match": a map of what a
 *           resume must agree on (KEY: text: the data's fingerprint, the
 *           architecture, batch, seed, schedule ...), and the program's own
 *           scalars (e.g. "cursor", "net_step", an epoch's running sums);
 *   tensors "net:NAME" (a parameter or a batch-norm statistic), "net:NAME:v"
 *           (a parameter's momentum), "hash:W", "hash:b", "hash:c",
 *           "hash:vW", "hash:vb" (stage 3's hash layer and its momentum),
 *           "loss:NAME" (a registry loss's state, dh_dloss_state_at), and
 *           any extra tensor a program adds by name (train_ckpt_put_host,
 *           e.g. EMA weights).
 * dh-info reads it like any model; dh-encode refuses it (not a model it
 * knows). Errors are values; messages name the checkpoint.
 */
#ifndef DH_TRAIN_CKPT_H
#define DH_TRAIN_CKPT_H
#include <stdint.h>
#include "train.h"

#define TRAIN_CKPT_VERSION 1

/* ---- the container ------------------------------------------------------------------------------------------------ */
/* Start checkpoint ck (initialised by the caller, empty) of `program` after
 * `step` steps of the run started by cmdline; match (copied) is what a
 * resume must agree on. */
int train_ckpt_begin(dhs_model *ck, const char *program, const char *cmdline, int64_t step, const dhs_meta *match,
                     dh_err *e);
/* Set KEY of a match map to the printf-formatted text (0, or -1 out of memory). */
int train_ckpt_match(dhs_meta *match, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Whether ck (read from `name`) is a checkpoint of `program` in this
 * version and of this run (every key of want with the same text):
 * DH_ESCHEMA "NAME: not a checkpoint (a 'net' model)", "NAME: a checkpoint
 * of dh-pretrain, not of dh-finetune", "NAME: a checkpoint of another run:
 * batch 64 there, 32 here (a resume takes the run's data and options)".
 * *step receives the steps done. */
int train_ckpt_check(const dhs_model *ck, const char *name, const char *program, const dhs_meta *want, int64_t *step,
                     dh_err *e);

/* The engine a run computes with, for meta "engine" (train_finetune_ckpt
 * and train_pretrain_ckpt set it): "cpu onednn, 2 threads, fp32", "cuda". A resume on another
 * engine continues the run, but not to the same bits (dk.h: a backend, a
 * thread count and a precision give the same bits run to run). */
void train_ckpt_engine(dk_device dev, char *buf, size_t n);
/* 1 when ck was written on the engine of dev now. */
int train_ckpt_same_engine(const dhs_model *ck, dk_device dev);

/* Named tensors: a device tensor (downloaded) or host floats, and back
 * (the element count must agree: DH_ESCHEMA naming the tensor). */
int train_ckpt_put(dhs_model *ck, const char *name, const dk_tensor *t, dh_err *e);
int train_ckpt_get(const dhs_model *ck, const char *name, dk_tensor *t, dh_err *e);
int train_ckpt_put_host(dhs_model *ck, const char *name, const float *x, int64_t n, dh_err *e);
int train_ckpt_get_host(const dhs_model *ck, const char *name, float *x, int64_t n, dh_err *e);
/* n device tensors as "PREFIX:0", "PREFIX:1", ... (e.g. EMA weights:
 * train_ckpt_put_tensors(ck, "ema", a.p, a.np)), and back. */
int train_ckpt_put_tensors(dhs_model *ck, const char *prefix, const dk_tensor *t, int n, dh_err *e);
int train_ckpt_get_tensors(const dhs_model *ck, const char *prefix, dk_tensor *t, int n, dh_err *e);
/* An integer or a float of the meta (DH_ESCHEMA when absent). */
int train_ckpt_get_int(const dhs_model *ck, const char *key, int64_t *v, dh_err *e);
int train_ckpt_get_float(const dhs_model *ck, const char *key, double *v, dh_err *e);

/* A network's training state: every parameter ("net:NAME") and its
 * momentum ("net:NAME:v"), every batch-norm statistic, and the count of
 * training forward passes (meta "net_step": dropout's stream). */
int train_ckpt_put_net(dhs_model *ck, const net *n, dh_err *e);
int train_ckpt_get_net(const dhs_model *ck, net *n, dh_err *e);

/* ---- fingerprints (for the match map) ------------------------------------------------------------------------------ */
/* A 64-bit hash of n bytes, continuing from h (start with 0). */
uint64_t train_hash64(const void *p, size_t n, uint64_t h);
/* The training data: rows, shape, labels, pixels (downloaded from the
 * device in pieces) and ids; or the features' rows, z and labels. */
int train_images_fingerprint(const train_images *d, uint64_t *h, dh_err *e);
uint64_t train_features_fingerprint(const train_features *f);
/* A network's specification and every tensor (parameters and statistics). */
int train_net_fingerprint(const net *n, uint64_t *h, dh_err *e);

/* ---- stage 3 ------------------------------------------------------------------------------------------------------- */
/* What a stage-3 run starts from, fingerprinted right after
 * train_finetune_init: the network (when there is one), the hash layer,
 * the preconditioning statistics, K, D, B. */
int train_finetune_fingerprint(const train_finetune *t, uint64_t *h, dh_err *e);
/* Add t's training state to ck (begun with t->step): the hash layer and
 * its momentum, the network's state (when there is one), the registry
 * loss's state, meta "cursor" (the paper sampling's position at the start
 * of the epoch the checkpoint is in). */
int train_finetune_ckpt(const train_finetune *t, dhs_model *ck, dh_err *e);
/* Restore t (freshly initialised as the run's first command did) from ck,
 * checked by train_ckpt_check: t->step, the cursor and every tensor; the
 * next train_finetune_epoch call is for epoch t->step / (N / B). */
int train_finetune_restore(train_finetune *t, const dhs_model *ck, dh_err *e);

/* ---- stage 1 ------------------------------------------------------------------------------------------------------- */
/* dh-pretrain's state besides the network: the running sums of the epoch
 * the checkpoint is in (loss and correct rows, so that its report and the
 * model's train_loss and train_accuracy come out the same). */
int train_pretrain_ckpt(dhs_model *ck, const net *n, double loss_sum, int64_t correct, dh_err *e);
int train_pretrain_restore(const dhs_model *ck, net *n, double *loss_sum, int64_t *correct, dh_err *e);

#endif
