/* dh-pretrain — stage 1: train a network plus a softmax classifier on an
 * images stream and write a net model.
 *
 *   dh-pretrain --arch cifar < train.dhs > net.dhm
 *
 * The whole images stream is held in memory (on the GPU when running
 * there: the pixels are uploaded once as u8, and every batch is gathered,
 * augmented and normalised on the device; kernels/train). See dh-pretrain(1).
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dh_ckpt.h"
#include "dh_prog.h"
#include "dk_prog.h"
#include "train_ckpt.h"
#include "train_dist.h"

typedef struct {
    int epochs, batch;
    double lr, momentum, wd, smoothing;
    const char *schedule;
    int nesterov, augment;
    int translate;       /* crop padding with --augment; 0: H/8 */
    int flip;            /* with --augment: DK_FLIP_RANDOM, or DK_FLIP_ALT_EVEN for alternating flips */
    int lookahead, tta;  /* weight averaging (train_lookahead_decay); test-time augmentation level in --val */
    train_recipe rc;     /* per-parameter settings (train.h) */
    int reflect;         /* crops with --augment: 1 reflection at the borders, 0 the mean colour */
    double warmup_start; /* onecycle/cosine warm-up from this fraction of the peak (train_schedule_lr) */
} hyper;

/* Defaults per architecture (user specs get the "net" row). */
static const struct {
    const char *arch;
    hyper h;
} defaults[] = {
    { "lenet",
      { 5, 64, 0.05, 0.9, 5e-4, 0.0, "onecycle", 0, 0, 0, DK_FLIP_RANDOM, 0, 0, { 0, 0, 0, 0, 0, 0, 0, 0, 0 }, 0, 0 } },
    { "cifar",
      { 40, 128, 0.02, 0.9, 5e-4, 0.0, "step", 0, 1, 0, DK_FLIP_RANDOM, 0, 0, { 0, 0, 0, 0, 0, 0, 0, 0, 0 }, 0, 0 } },
    { "fast",
      { 16,
        512,
        0.4,
        0.9,
        5e-4,
        0.2,
        "onecycle:0.25",
        1,
        1,
        0,
        DK_FLIP_RANDOM,
        0,
        0,
        { 0, 0, 0, 0, 0, 0, 0, 0, 0 },
        0,
        0 } },
    /* airbench94's recipe (Jordan 2024) in this library's units: its lr 11.5 and decay 0.0153 per 1024
     * summed-loss examples with momentum 0.85 are lr 1.5 and wd 1.33e-3 on the mean loss; batch-norm
     * shifts at 64x the rate, scales fixed; warm-up from 0.2 over 23% then down to 0.07; translate 2 with
     * reflection at the borders, alternating flips, lookahead from epoch 3 (the net gets the average
     * after each epoch); conv weights start at PyTorch's default scale (He x 1/sqrt 6) with a partial
     * identity, the head as nn.Linear(bias=False); the whitening layer's bias trains for 3 epochs (with
     * weight decay, as every trained parameter); test-
     * time flips and translations (dh-pretrain(1)) */
    { "air",
      { 10,
        1024,
        1.5,
        0.85,
        1.33e-3,
        0.2,
        "onecycle:0.23:0.07",
        1,
        1,
        2,
        DK_FLIP_ALT_EVEN,
        1,
        TRAIN_TTA_FULL,
        { 0.4f, 64.0f, 1, 0.408f, 1, 3, 1, 3, 1 },
        1,
        0.2 } },
    { "net",
      { 10, 128, 0.01, 0.9, 5e-4, 0.0, "step", 0, 0, 0, DK_FLIP_RANDOM, 0, 0, { 0, 0, 0, 0, 0, 0, 0, 0, 0 }, 0, 0 } },
};
#define NDEFAULTS (int)(sizeof defaults / sizeof defaults[0])

/* An epoch with fewer steps than this learns next to nothing: a warning. */
#define FEW_STEPS 10

static void usage(void) {
    printf("Usage: %s [OPTION]... [IMAGES]\n"
           "Train a network and a softmax classifier on an images stream (stage 1)\n"
           "and write a net model. Reads IMAGES (default: standard input; kind images:\n"
           "pixels u8[C,H,W], label i32, id str).\n\n"
           "  -a, --arch NAME         built-in network: lenet, cifar, fast, air (default: lenet\n"
           "                          for 1x28x28 images, cifar for 3x32x32)\n"
           "  -N, --net FILE          network specification file (see dh-net(5))\n"
           "      --recipe NAME       the training defaults of a built-in network (lenet, cifar,\n"
           "                          fast, air) for this one, e.g. air's for a wider air net in\n"
           "                          a --net file (default: --arch's own; a --net file: plain)\n"
           "  -e, --epochs N          passes over the data (lenet 5, cifar 40, fast 16, else 10)\n"
           "  -B, --batch N           mini-batch size (lenet 64, cifar 128, fast 512, air 1024,\n"
           "                          else 128)\n"
           "  -l, --lr X              (peak) learning rate (lenet 0.05, cifar 0.02, fast 0.4,\n"
           "                          air 1.5, else 0.01)\n"
           "  -S, --schedule S        step[:E1,E2..] (x0.1 at those epochs; plain 'step' drops\n"
           "                          at 50%% and 75%% of the epochs, rounded down), onecycle[:WARMUP[:FINAL]],\n"
           "                          cosine[:WARMUP[:FINAL]], const (default: step; lenet:\n"
           "                          onecycle, fast: onecycle:0.25, air: onecycle:0.23:0.07)\n"
           "      --warmup-start X    onecycle/cosine: warm up linearly from X x the peak rate\n"
           "                          (default 0: from about 0; air 0.2)\n"
           "      --momentum X        SGD momentum (default 0.9; air 0.85)\n"
           "      --nesterov          Nesterov momentum (default for fast and air)\n"
           "      --no-nesterov\n"
           "  -w, --weight-decay X    L2 weight decay on conv/fc weights (default 5e-4; air 1.33e-3)\n"
           "      --label-smoothing X label smoothing in [0,1) (fast and air 0.2, else 0)\n"
           "      --augment           random crops (translation by up to --translate pixels)\n"
           "                          and horizontal flips\n"
           "      --no-augment        (default: on for cifar, fast and air, off otherwise)\n"
           "      --translate N       crop padding with --augment (default H/8; air 2)\n"
           "      --crop-pad MODE     what the crops see beyond the border: mean (the mean colour)\n"
           "                          or reflect (the image mirrored at its edge) (default: mean;\n"
           "                          air: reflect)\n"
           "      --flip MODE         random (a coin per image and step) or alternate (a coin per\n"
           "                          image, inverted every other epoch) (default: random; air:\n"
           "                          alternate)\n"
           "      --lookahead         average the weights (every %d steps) and train on from the\n"
           "                          average; the model is the average (default for air)\n"
           "      --no-lookahead\n"
           "      --val FILE          images stream to report test accuracy on after each epoch\n"
           "      --val-every N       ... after every N-th epoch and the last only (default 1)\n"
           "      --tta[=MODE]        the last --val also with test-time augmentation: flip (the\n"
           "                          logits of each image and its mirror image averaged) or full\n"
           "                          (plain --tta; also the image translated by one pixel each\n"
           "                          way, airbench94's level 2) (default for air: full)\n"
           "      --no-tta\n"
           "  -s, --seed N            random seed (default 1)\n"
           "  -d, --device DEV        cpu, cuda or auto (default $DH_DEVICE, else auto)\n"
           "      --precision P       CPU arithmetic: fp32 (default) or bf16 (oneDNN, CPUs with\n"
           "                          AVX512-BF16 or AMX; as $DH_PRECISION)\n"
           "  -o, --output FILE       write the model to FILE atomically (default: stdout)\n"
           "      --print-net         print the network specification (of --arch/--net) and exit\n"
           "%s"
           "  -q, --quiet             no progress or report on stderr\n"
           "      --progress          progress line even when stderr is not a terminal\n"
           "  -h, --help              show this help and exit\n"
           "  -V, --version           show the version and exit\n\n"
           "See dh-pretrain(1) and dh-net(5).\n",
           dh_progname, TRAIN_LOOKAHEAD_EVERY, dh_ckpt_help);
}

typedef struct pt_opts {
    const char *arch, *netfile, *recipe, *device, *out, *val, *in;
    hyper h; /* set fields override the architecture's defaults: 0 or -1 mean unset */
    uint64_t seed;
    int print_net;
    int val_every; /* --val-every */
    dh_ckpt ck;    /* --checkpoint, --checkpoint-every, --resume, --stop-after */
} pt_opts;

static double num(const char *opt, const char *v, double lo, double hi) {
    double x;
    if (dh_parse_double(v, lo, hi, &x)) dh_usage_error("%s: bad value '%s'", opt, v);
    return x;
}

static int inum(const char *opt, const char *v, int lo, int hi) {
    int x;
    if (dh_parse_int(v, lo, hi, &x)) dh_usage_error("%s: '%s' is not an integer in %d..%d", opt, v, lo, hi);
    return x;
}

static void parse_options(pt_opts *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    o->h = (hyper){ 0, 0, -1, -1, -1, -1, NULL, -1, -1, -1, -1, -1, -1, { 0, 0, 0, 0, 0, 0, 0, 0, 0 }, -1, -1 };
    o->seed = 1;
    /* the long-only options: --momentum, --nesterov, --no-nesterov, --label-smoothing, --augment,
     * --no-augment, --val, --print-net, --progress */
    enum {
        O_MOM = 256,
        O_NES,
        O_NON,
        O_LSM,
        O_AUG,
        O_NOA,
        O_VAL,
        O_PRI,
        O_TRN,
        O_FLP,
        O_LAH,
        O_NLA,
        O_TTA,
        O_NTT,
        O_VEV,
        O_CRP,
        O_WUS,
        O_PREC,
        O_PRG,
        O_REC,
        O_CK
    };
    static const struct option lo[] = {
        { "arch", 1, 0, 'a' },           { "net", 1, 0, 'N' },          { "lr", 1, 0, 'l' },
        { "epochs", 1, 0, 'e' },         { "batch", 1, 0, 'B' },        { "schedule", 1, 0, 'S' },
        { "momentum", 1, 0, O_MOM },     { "nesterov", 0, 0, O_NES },   { "no-nesterov", 0, 0, O_NON },
        { "augment", 0, 0, O_AUG },      { "no-augment", 0, 0, O_NOA }, { "weight-decay", 1, 0, 'w' },
        { "val", 1, 0, O_VAL },          { "print-net", 0, 0, O_PRI },  { "label-smoothing", 1, 0, O_LSM },
        { "seed", 1, 0, 's' },           { "device", 1, 0, 'd' },       { "output", 1, 0, 'o' },
        { "translate", 1, 0, O_TRN },    { "flip", 1, 0, O_FLP },       { "lookahead", 0, 0, O_LAH },
        { "no-lookahead", 0, 0, O_NLA }, { "tta", 2, 0, O_TTA },        { "no-tta", 0, 0, O_NTT },
        { "val-every", 1, 0, O_VEV },    { "crop-pad", 1, 0, O_CRP },   { "warmup-start", 1, 0, O_WUS },
        { "precision", 1, 0, O_PREC },   { "recipe", 1, 0, O_REC },     DH_CKPT_LONGOPTS(O_CK),
        DH_COMMON_LONGOPTS(O_PRG)
    };
    /* letters given up for the option grammar (dh_opts.h): refused, naming the new ones */
    static const dh_moved moved[] = { { 'b', "batch size", 'B', "batch" },
                                      { 'm', "momentum", 0, "momentum" },
                                      { 'n', "network specification", 'N', "net" },
                                      { 0, 0, 0, 0 } };
    dh_prog_moved(moved);
    hyper *h = &o->h;
    int c;
    int64_t v;
    dh_ckpt_init(&o->ck);
    while ((c = getopt_long(argc, argv, "a:N:e:B:l:S:w:s:d:o:qhV", lo, NULL)) != -1) {
        switch (c) {
        case 'a': o->arch = optarg; break;
        case 'N': o->netfile = optarg; break;
        case O_REC: o->recipe = optarg; break;
        case 'e': h->epochs = inum("--epochs", optarg, 1, 100000); break;
        case 'B': h->batch = inum("--batch", optarg, 1, 1 << 20); break;
        case 'l': h->lr = num("--lr", optarg, 1e-12, 1e4); break;
        case 'S': h->schedule = optarg; break;
        case O_MOM: h->momentum = num("--momentum", optarg, 0, 0.9999); break;
        case O_NES: h->nesterov = 1; break;
        case O_NON: h->nesterov = 0; break;
        case 'w': h->wd = num("--weight-decay", optarg, 0, 1); break;
        case O_LSM: h->smoothing = num("--label-smoothing", optarg, 0, 0.999); break;
        case O_AUG: h->augment = 1; break;
        case O_NOA: h->augment = 0; break;
        case O_VAL: o->val = optarg; break;
        case O_TRN: h->translate = inum("--translate", optarg, 0, 64); break;
        case O_FLP:
            if (!strcmp(optarg, "random"))
                h->flip = DK_FLIP_RANDOM;
            else if (!strcmp(optarg, "alternate"))
                h->flip = DK_FLIP_ALT_EVEN;
            else
                dh_usage_error("--flip: '%s' is not random or alternate", optarg);
            break;
        case O_LAH: h->lookahead = 1; break;
        case O_NLA: h->lookahead = 0; break;
        case O_TTA:
            if (!optarg || !strcmp(optarg, "full"))
                h->tta = TRAIN_TTA_FULL;
            else if (!strcmp(optarg, "flip"))
                h->tta = TRAIN_TTA_FLIP;
            else
                dh_usage_error("--tta: '%s' is not flip or full", optarg);
            break;
        case O_CRP:
            if (!strcmp(optarg, "reflect"))
                h->reflect = 1;
            else if (!strcmp(optarg, "mean"))
                h->reflect = 0;
            else
                dh_usage_error("--crop-pad: '%s' is not mean or reflect", optarg);
            break;
        case O_WUS: h->warmup_start = num("--warmup-start", optarg, 0, 1); break;
        case O_PREC: dk_prog_set_precision(optarg); break;
        case O_NTT: h->tta = 0; break;
        case O_VEV: o->val_every = inum("--val-every", optarg, 1, 100000); break;
        case 's':
            if (dh_parse_i64(optarg, 0, INT64_MAX, &v)) dh_usage_error("--seed: bad value '%s'", optarg);
            o->seed = (uint64_t)v;
            break;
        case 'd': o->device = optarg; break;
        case 'o': o->out = optarg; break;
        case O_PRI: o->print_net = 1; break;
        default:
            if (!dh_ckpt_option(&o->ck, c, O_CK, optarg) && !dh_common_option(c, O_PRG, usage))
                dh_usage_error("bad option (see --help)");
        }
    }
    o->in = dh_input_arg(argc, argv);
    if (o->arch && o->netfile) dh_usage_error("--arch and --net exclude each other");
    if (o->recipe && !netspec_builtin_text(o->recipe))
        dh_usage_error("--recipe: unknown recipe '%s' (known: %s)", o->recipe, netspec_builtin_names());
    dh_ckpt_start(&o->ck);
    dh_ckpt_not_output(&o->ck, "-o", o->out);
}

/* The architecture's defaults, overridden by what the options set. */
static hyper hyper_for(const char *arch, const hyper *set) {
    hyper h = defaults[NDEFAULTS - 1].h;
    for (int i = 0; i < NDEFAULTS - 1; i++)
        if (arch && !strcmp(arch, defaults[i].arch)) h = defaults[i].h;
    if (set->epochs) h.epochs = set->epochs;
    if (set->batch) h.batch = set->batch;
    if (set->lr > 0) h.lr = set->lr;
    if (set->momentum >= 0) h.momentum = set->momentum;
    if (set->wd >= 0) h.wd = set->wd;
    if (set->smoothing >= 0) h.smoothing = set->smoothing;
    if (set->nesterov >= 0) h.nesterov = set->nesterov;
    if (set->augment >= 0) h.augment = set->augment;
    if (set->schedule) h.schedule = set->schedule;
    if (set->translate >= 0) h.translate = set->translate;
    if (set->flip >= 0) h.flip = set->flip;
    if (set->lookahead >= 0) h.lookahead = set->lookahead;
    if (set->tta >= 0) h.tta = set->tta;
    if (set->reflect >= 0) h.reflect = set->reflect;
    if (set->warmup_start >= 0) h.warmup_start = set->warmup_start;
    if (h.nesterov && h.momentum == 0) dh_usage_error("--nesterov needs a non-zero momentum");
    return h;
}

/* What makes images of d fit a network that takes in (C, H, W): the
 * dh-ingest options, or "" when they cannot. */
static const char *refit(const train_images *d, const int *in, char *buf, size_t n) {
    const char *ch = in[0] == d->C ? "" : in[0] == 1 ? "--gray " : in[0] == 3 ? "--rgb " : NULL;
    if (!ch) return "";
    if (in[1] == d->H && in[2] == d->W)
        snprintf(buf, n, ": re-ingest them with dh-ingest %.*s", (int)strlen(ch) - 1, ch);
    else
        snprintf(buf, n, ": re-ingest them with dh-ingest %s--resize %dx%d", ch, in[2], in[1]);
    return buf;
}

static void fmt_dur(char *b, size_t n, double s) {
    int t = (int)(s + 0.5);
    if (t >= 3600)
        snprintf(b, n, "%dh%02dm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(b, n, "%dm%02ds", t / 60, t % 60);
    else
        snprintf(b, n, "%ds", t);
}

/* --val after an epoch: the accuracy (and with tta > 0 the accuracy with
 * test-time augmentation at that level) into *acc, *acc_tta and the report
 * `val`; the seconds it took. */
static double val_eval(net *n, const train_images *va, dk_tensor *x, int tta, double *acc, double *acc_tta, char *val,
                       size_t len) {
    dh_err e;
    double t = dh_now(), vl;
    if (tta) {
        if (train_images_eval_tta(n, va, x, tta, acc, acc_tta, &vl, &e)) dh_die_err(&e, NULL);
        snprintf(val, len, "  val loss %.4f acc %.2f%% (%s %.2f%%)", vl, 100 * *acc,
                 tta == TRAIN_TTA_FLIP ? "flips" : "tta", 100 * *acc_tta);
    } else {
        if (train_images_eval(n, va, x, acc, &vl, &e)) dh_die_err(&e, NULL);
        snprintf(val, len, "  val loss %.4f acc %.2f%%", vl, 100 * *acc);
    }
    return dh_now() - t;
}

/* Checkpoints (dh_ckpt.h, train_ckpt.h): what a resume must match (NULL
 * without checkpoints), and the state of --resume: the network, the
 * lookahead average, the steps done, the running sums of the epoch they
 * end in. */
static dhs_meta *ckpt_setup(pt_opts *o, const hyper *h, const char *sched, const train_images *tr, net *n, net_ema *ema,
                            int64_t B, int64_t total, int64_t *step, double *lsum, int64_t *csum) {
    if (!o->ck.path && !o->ck.resume) return NULL;
    dh_err e;
    uint64_t data, arch = train_hash64(n->spec.text, strlen(n->spec.text), (uint64_t)n->nclasses);
    dhs_meta *m = dhs_meta_new();
    if (train_images_fingerprint(tr, &data, &e)) dh_die_err(&e, "checkpoint");
    if (!m || train_ckpt_match(m, "data", "%016llx (%lld images)", (unsigned long long)data, (long long)tr->S) ||
        train_ckpt_match(m, "arch", "%016llx", (unsigned long long)arch) ||
        train_ckpt_match(m, "batch", "%lld", (long long)B) ||
        train_ckpt_match(m, "seed", "%llu", (unsigned long long)o->seed) ||
        train_ckpt_match(m, "schedule", "%s over %d epochs", sched, h->epochs) ||
        train_ckpt_match(m, "recipe",
                         "lr %.15g, momentum %.15g, nesterov %d, wd %.15g, smoothing %.15g, augment %d (translate %d, "
                         "flip %d, reflect %d), lookahead %d (from epoch %d), bn %g/%g/%d, conv %g, dirac %d, whiten "
                         "bias %d, head %d, decay all %d",
                         h->lr, h->momentum, h->nesterov, h->wd, h->smoothing, h->augment, h->translate, h->flip,
                         h->reflect, h->lookahead, h->rc.lookahead_start, h->rc.bn_momentum, h->rc.bn_bias_lr,
                         h->rc.bn_scale_frozen, h->rc.conv_scale, h->rc.dirac, h->rc.whiten_bias_epochs,
                         h->rc.head_torch, h->rc.decay_all))
        dh_die(DH_EXIT_NOMEM, "out of memory");
    if (o->ck.resume) {
        dhs_model ck;
        dh_ckpt_load(&o->ck, &ck);
        if (train_ckpt_check(&ck, o->ck.resume, "dh-pretrain", m, step, &e) ||
            train_pretrain_restore(&ck, n, lsum, csum, &e) ||
            (ema->np && (train_ckpt_get_tensors(&ck, "ema:p", ema->p, ema->np, &e) ||
                         train_ckpt_get_tensors(&ck, "ema:s", ema->s, ema->ns, &e))))
            dh_die_err(&e, o->ck.resume);
        if (*step > total)
            dh_die(DH_EXIT_FAIL, "%s: step %lld beyond the run's %lld", o->ck.resume, (long long)*step,
                   (long long)total);
        char now[128];
        train_ckpt_engine(n->dev, now, sizeof now);
        if (!train_ckpt_same_engine(&ck, n->dev))
            dh_note("%s was written on %s, this run computes on %s: it continues, but not to the same bits",
                    o->ck.resume, dhs_meta_str(ck.meta, "engine") ? dhs_meta_str(ck.meta, "engine") : "?", now);
        dhs_model_free(&ck);
        dh_note("resumed from %s at step %lld of %lld", o->ck.resume, (long long)*step, (long long)total);
    }
    return m;
}

/* Write the checkpoint after `step` steps (`done` epochs); dh_ckpt_save exits when asked to stop. */
static void ckpt_save(dh_ckpt *c, const net *n, const net_ema *ema, int64_t step, const dhs_meta *match, double lsum,
                      int64_t csum, int done) {
    dh_err e;
    dhs_model m;
    dhs_model_init(&m);
    if (train_ckpt_begin(&m, "dh-pretrain", dh_cmdline(), step, match, &e) ||
        train_pretrain_ckpt(&m, n, lsum, csum, &e) ||
        (ema->np && (train_ckpt_put_tensors(&m, "ema:p", ema->p, ema->np, &e) ||
                     train_ckpt_put_tensors(&m, "ema:s", ema->s, ema->ns, &e))))
        dh_die_err(&e, c->path);
    dh_ckpt_save(c, &m, done);
    dhs_model_free(&m);
}

/* The output is opened before training (so a bad -o fails at once) and
 * removed at exit unless committed. */
static dh_outfile outf;

int main(int argc, char **argv) {
    dh_prog_init("dh-pretrain", argc, argv);
    pt_opts o;
    parse_options(&o, argc, argv);
    dh_err e;
    netspec spec;
    memset(&spec, 0, sizeof spec);
    if (o.arch && netspec_builtin(o.arch, &spec, &e)) dh_usage_error("--arch: %s", e.msg);
    if (o.netfile && netspec_load(o.netfile, &spec, &e)) dh_die_err(&e, NULL);
    if (o.print_net) {
        if (!o.arch && !o.netfile) dh_usage_error("--print-net needs --arch or --net");
        fputs(spec.text, stdout);
        netspec_free(&spec);
        return DH_EXIT_OK;
    }
    static train_dist dist; /* mpirun -np N: each rank a slice of every batch, rank 0 writes (train_dist.h) */
    if (train_dist_init(&dist, &e)) dh_die_err(&e, "data-parallel training");
    if (dist.rank > 0) o.out = o.ck.path = NULL, dh_quiet = 1;
    if ((!o.out || !strcmp(o.out, "-")) && isatty(STDOUT_FILENO) && dist.size == 1) /* mpirun: a tty, forwarded */
        dh_usage_error("refusing to write a model to a terminal (use -o FILE or redirect)");
    if (dh_out_open_guarded(&outf, o.out, &e)) dh_die_err(&e, NULL);
    dk_device dev = dk_prog_device_open(o.device);

    /* the training images, and the network that fits them */
    static train_images tr, va;
    dhs_reader *r = dhs_open_path(o.in, NULL, &e);
    if (!r || train_images_read(r, dev, TRAIN_CLASS_LABELS, &tr, &e)) dh_die_err(&e, NULL);
    dhs_close(r);
    const char *arch = o.arch, *netname = o.arch ? o.arch : o.netfile;
    char hint[128];
    if (!o.arch && !o.netfile) {
        arch = tr.C == 1 && tr.H == 28 && tr.W == 28 ? "lenet" : tr.C == 3 && tr.H == 32 && tr.W == 32 ? "cifar" : NULL;
        if (!arch)
            dh_usage_error("%s: no built-in network for %dx%dx%d images (lenet takes 1x28x28, cifar and fast "
                           "3x32x32): re-ingest them with dh-ingest --gray --resize 28x28 or --rgb --resize 32x32, "
                           "or give -N FILE",
                           tr.name, tr.C, tr.H, tr.W);
        if (netspec_builtin(arch, &spec, &e)) dh_die_err(&e, NULL);
        netname = arch;
    }
    if (spec.in[0] != tr.C || spec.in[1] != tr.H || spec.in[2] != tr.W)
        dh_die(DH_EXIT_FAIL, "%s: images are %dx%dx%d, the network '%s' takes %dx%dx%d%s", tr.name, tr.C, tr.H, tr.W,
               netname, spec.in[0], spec.in[1], spec.in[2], refit(&tr, spec.in, hint, sizeof hint));
    if (tr.nclasses < 2) dh_die(DH_EXIT_FAIL, "%s: %d class(es): need at least 2", tr.name, tr.nclasses);

    /* hyper-parameters: the recipe's (by default the architecture's) defaults, then the options */
    const char *recipe = o.recipe ? o.recipe : arch;
    hyper h = hyper_for(recipe, &o.h);
    dk_schedule sched;
    char sched_text[64];
    if (train_schedule(h.schedule, h.lr, h.epochs, &sched, sched_text, sizeof sched_text, &e))
        dh_usage_error("--schedule: %s", e.msg);
    if (h.warmup_start > 0 && (sched.kind == DK_SCHED_ONECYCLE || sched.kind == DK_SCHED_COSINE)) {
        size_t l = strlen(sched_text);
        snprintf(sched_text + l, sizeof sched_text - l, " from %g", h.warmup_start);
    }
    int64_t B = h.batch < tr.S ? h.batch : tr.S, spe = tr.S / B, total = spe * h.epochs, r0, Bl;
    if (train_dist_slice(&dist, B, &r0, &Bl, &e)) dh_usage_error("--batch: %s", e.msg);
    for (int i = 0; Bl < 2 && i < spec.nlayers; i++)
        if (spec.layers[i].type == NS_BN)
            dh_die(DH_EXIT_FAIL, "%s: one image: batch normalisation needs batches of 2 or more", tr.name);

    if (o.val) {
        r = dhs_open_path(o.val, NULL, &e);
        if (!r || train_images_read(r, dev, TRAIN_CLASS_LABELS, &va, &e)) dh_die_err(&e, NULL);
        dhs_close(r);
        if (train_images_match(&va, &tr, &e)) dh_die_err(&e, NULL);
    }

    net *n;
    if (train_net_new(&spec, tr.nclasses, dev, B, o.seed, &tr, &n, &e) || train_recipe_apply(n, &h.rc, &e) ||
        train_dist_bcast_net(&dist, n, &e))
        dh_die_err(&e, "network");
    int pad = !h.augment ? 0 : h.translate > 0 ? h.translate : tr.H / 8 > 0 ? tr.H / 8 : 1;
    char augtext[64] = "off";
    if (h.augment)
        snprintf(augtext, sizeof augtext, "translate %d%s + %s flips", pad, h.reflect ? " (reflect)" : "",
                 h.flip == DK_FLIP_ALT_EVEN ? "alternating" : "random");
    dh_note("%s: %lld images %dx%dx%d, %d classes; net %s: %lld parameters, z %d; %s", tr.name, (long long)tr.S, tr.C,
            tr.H, tr.W, tr.nclasses, netname, (long long)net_nparams(n), n->zdim, dk_device_name(dev));
    char ranks[64];
    dh_note("%d epochs x %lld steps of %lld, lr %g (%s), momentum %g%s, weight decay %g, "
            "label smoothing %g, augment %s%s, seed %llu%s",
            h.epochs, (long long)spe, (long long)B, h.lr, sched_text, h.momentum, h.nesterov ? " (nesterov)" : "", h.wd,
            h.smoothing, augtext, h.lookahead ? ", lookahead" : "", (unsigned long long)o.seed,
            train_dist_describe(&dist, ranks, sizeof ranks));
    if (spe < FEW_STEPS && dist.rank == 0) /* a warning, also with --quiet: such a run learns next to nothing */
        fprintf(stderr,
                "%s: warning: %s: %lld images in batches of %lld: %lld step%s per epoch, too few to learn from "
                "(give a smaller -B, e.g. -B %lld, or more images)\n",
                dh_progname, tr.name, (long long)tr.S, (long long)B, (long long)spe, spe == 1 ? "" : "s",
                (long long)(tr.S / FEW_STEPS > 2 ? tr.S / FEW_STEPS : 2));

    /* training: each epoch a fresh permutation, batches gathered on the device */
    int32_t *perm = dh_malloc(&e, (size_t)tr.S, sizeof *perm), *lab_dev = NULL;
    dk_tensor xbuf = { 0 };
    if (!perm || dk_mem_alloc(dev, (size_t)B * sizeof(int32_t), (void **)&lab_dev, &e) ||
        dk_tensor_alloc4(&xbuf, dev, 4, Bl, tr.C, tr.H, tr.W, &e))
        dh_die_err(&e, dk_device_name(dev));
    /* what the crops see beyond the border (dk_images_augment, on the device) */
    int padmode = h.augment && pad > 0 && h.reflect ? DK_PAD_REFLECT : DK_PAD_MEAN;
    dh_progress prog;
    dh_progress_start(&prog, "training", "images", total * B);
    double t0 = dh_now(), last_train_acc = 0, last_val_acc = -1, last_loss = 0, lsum0 = 0;
    int64_t step = 0, csum0 = 0;
    net_ema ema = { 0 };
    if (h.lookahead && net_ema_init(&ema, n, &e)) dh_die_err(&e, "lookahead");
    dhs_meta *match = ckpt_setup(&o, &h, sched_text, &tr, n, &ema, B, total, &step, &lsum0, &csum0);
    double t_eval = 0, last_val_tta = -1;
    for (int ep = (int)(step / spe); ep < h.epochs; ep++) {
        double te = dh_now(), lsum = lsum0;
        int64_t csum = csum0, it0 = step - ep * spe;
        float cur_lr = 0;
        lsum0 = 0, csum0 = 0;
        train_recipe_epoch(n, &h.rc, ep);
        int flip = !h.augment ? 0 : h.flip == DK_FLIP_ALT_EVEN && (ep & 1) ? DK_FLIP_ALT_ODD : h.flip;
        dk_permutation(perm, tr.S, o.seed, (uint64_t)ep);
        if (train_images_order(&tr, perm, &e)) dh_die_err(&e, "upload");
        for (int64_t it = it0; it < spe; it++, step++) {
            if (it > it0 && dh_ckpt_due_step(&o.ck)) ckpt_save(&o.ck, n, &ema, step, match, lsum, csum, ep);
            cur_lr = (float)train_schedule_lr(&sched, h.warmup_start, step, total, spe);
            const int32_t *idx = tr.order + it * B + r0;
            double loss;
            int64_t correct;
            if (dk_images_augment(tr.pix, tr.S, tr.C, tr.H, tr.W, idx, pad, flip | padmode, n->mean, n->std,
                                  o.seed ^ 0xA5A5A5A5ULL, (uint64_t)(step * B + r0), &xbuf, &e) ||
                dk_gather_i32(dev, tr.lab, idx, Bl, lab_dev, &e))
                dh_die_err(&e, "batch");
            if (net_grad_xent(n, &xbuf, lab_dev, (float)h.smoothing, &loss, &correct, &e) ||
                train_dist_grads(&dist, n, 1, &e))
                dh_die_err(&e, "training");
            if (!isfinite(loss))
                dh_die(DH_EXIT_FAIL, "training diverged at epoch %d step %lld (loss %g): lower --lr", ep + 1,
                       (long long)it + 1, loss);
            float lrs[NET_NGROUPS] = { cur_lr, cur_lr }, wds[NET_NGROUPS] = { (float)h.wd, (float)h.wd };
            if (net_sgd_step(n, lrs, (float)h.momentum, wds, h.nesterov, &e)) dh_die_err(&e, "training");
            /* lookahead: the first averaging step of a delayed start copies the net into the average */
            if (h.lookahead && (step + 1) % TRAIN_LOOKAHEAD_EVERY == 0 &&
                train_lookahead_started(&h.rc, step + 1, spe) &&
                net_ema_lookahead(
                    &ema, n,
                    train_lookahead_started(&h.rc, step, spe) ? (float)train_lookahead_decay(step + 1, total) : 0.0f,
                    &e))
                dh_die_err(&e, "lookahead");
            lsum += loss;
            csum += correct;
            dh_progress_update(&prog, (step + 1) * B);
        }
        /* the net gets the average: after the last epoch, or with a delayed start (air) after each epoch */
        if (h.lookahead && (ep == h.epochs - 1 || h.rc.lookahead_start > 0) &&
            train_lookahead_started(&h.rc, step, spe) && net_ema_lookahead(&ema, n, 1.0f, &e))
            dh_die_err(&e, "lookahead");
        double red[2] = { lsum / dist.size, (double)csum }; /* the ranks' reports, their batch-norm statistics */
        if (train_dist_sum(&dist, red, 2, &e) || train_dist_sync(&dist, n, &e)) dh_die_err(&e, "training");
        lsum = red[0], csum = (int64_t)red[1];
        double now = dh_now(), dt = now - te;
        last_loss = lsum / spe;
        last_train_acc = (double)csum / (spe * B);
        char val[96] = "", eta[32];
        if (o.val && ((ep + 1) % (o.val_every > 0 ? o.val_every : 1) == 0 || ep + 1 == h.epochs))
            t_eval += val_eval(n, &va, &xbuf, ep + 1 == h.epochs ? h.tta : 0, &last_val_acc, &last_val_tta, val,
                               sizeof val); /* test-time augmentation: the last evaluation only */
        fmt_dur(eta, sizeof eta, (now - t0) / (ep + 1) * (h.epochs - ep - 1));
        if (dh_progress_on && !dh_quiet) fputs("\r\033[K", stderr);
        dh_note("epoch %d/%d  loss %.4f  train acc %.2f%%%s  lr %.4g  %.0f images/s  ETA %s", ep + 1, h.epochs,
                last_loss, 100 * last_train_acc, val, cur_lr, spe * B / dt, eta);
        if (dh_ckpt_due_epoch(&o.ck, ep + 1, h.epochs)) ckpt_save(&o.ck, n, &ema, step, match, 0, 0, ep + 1);
    }
    dhs_meta_free(match);
    dh_progress_end(&prog, total * B);
    net_ema_free(&ema);
    double wall = dh_now() - t0 - t_eval;
    dh_note("trained in %.1f s (%.0f images/s)%s", wall, total * B / (wall > 0 ? wall : 1),
            o.val ? ", evaluation not counted" : "");
    if (o.val) {
        char tta[80] = "";
        if (h.tta)
            snprintf(tta, sizeof tta, ", %.2f%% with test-time flips%s", 100 * last_val_tta,
                     h.tta == TRAIN_TTA_FULL ? " and translations" : "");
        dh_note("%s: test accuracy %.2f%%%s (evaluations %.1f s)", va.name, 100 * last_val_acc, tta, t_eval);
    }

    /* the model */
    dhs_model m;
    dhs_model_init(&m);
    if (dhs_meta_set_str(m.meta, "model", "net") || dhs_meta_set_str(m.meta, "program", "dh-pretrain") ||
        dhs_meta_set_str(m.meta, "cmdline", dh_cmdline()) || dhs_meta_set_str(m.meta, "arch", arch ? arch : "") ||
        dhs_meta_set_str(m.meta, "recipe", recipe ? recipe : "") || dhs_meta_set_int(m.meta, "seed", (int64_t)o.seed) ||
        dhs_meta_set_int(m.meta, "epochs", h.epochs) || dhs_meta_set_int(m.meta, "train_rows", tr.S) ||
        dhs_meta_set_float(m.meta, "train_loss", last_loss) ||
        dhs_meta_set_float(m.meta, "train_accuracy", last_train_acc) ||
        (o.val && dhs_meta_set_float(m.meta, "val_accuracy", last_val_acc)) ||
        (o.val && h.tta && dhs_meta_set_float(m.meta, "val_accuracy_tta", last_val_tta)) ||
        (o.val && h.tta && dhs_meta_set_str(m.meta, "tta", h.tta == TRAIN_TTA_FULL ? "full" : "flip")) ||
        dhs_meta_set_str(m.meta, "device", dk_device_name(dev)) ||
        (dev == DK_CPU && dhs_meta_set_str(m.meta, "precision", dk_cpu_precision_name())))
        dh_die(DH_EXIT_NOMEM, "out of memory");
    if (net_to_model(n, &m, &e)) dh_die_err(&e, "model");
    if (dhs_model_write(outf.f, o.out ? o.out : "<stdout>", &m, &e)) dh_die_err(&e, NULL);
    if (dh_out_commit(&outf, &e)) dh_die_err(&e, NULL);
    dhs_model_free(&m);
    free(perm);
    dk_mem_free(dev, lab_dev);
    dk_tensor_free(&xbuf);
    train_images_free(&tr);
    train_images_free(&va);
    net_free(n);
    netspec_free(&spec);
    dk_shutdown();
    train_dist_finalize(&dist);
    return DH_EXIT_OK;
}
