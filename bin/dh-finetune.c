/* dh-finetune — stage 3: train the network and the hash layer jointly with
 * the exponentiated code-product loss (Mu & Liu 2017, Eqs. 6-11), or with a
 * loss of the deeploss registry (--loss dpsh, hashnet:alpha=0.2, ...).
 *
 *   dh-finetune -m net.dhm --hash hash0.dhm < train.dhs > deephash.dhm
 *   dh-finetune --arch lenet < train.dhs > deephash.dhm      ("random init.")
 *   dh-finetune --features --hash hash0.dhm < feats.dhs > hash1.dhm
 *
 * With --features the input is a features stream (cached z, a frozen
 * backbone) and the output a hash model; otherwise an images stream and a
 * deep hash model (the network's tensors plus "hash.W" (K, D), "hash.b" (K)).
 * The training logic (datasets, schedule, the hash-layer trainer) is
 * kernels/train; the losses and the evidence behind the defaults are in
 * dh-finetune(1).
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dh_ckpt.h"
#include "dh_prog.h"
#include "dk_prog.h"
#include "hashfn.h"
#include "train_ckpt.h"
#include "train_dist.h"

enum { LOSS_PAPER, LOSS_SCALED, LOSS_BALANCED, LOSS_REGISTRY };
#define AUX_XENT_JOINT 100.0 /* --aux-xent's default with -m (the exponentiated balanced loss) */

typedef struct ft_opts {
    const char *net_path, *hash_path, *arch, *out, *in, *device, *schedule, *db_codes;
    int features, loss, freeze, batch, augment, K, bits_set;
    int aux_default;       /* the classification term is on by default (-m, the exponentiated loss), not asked for */
    double loss_scale;     /* 0: the loss's default */
    train_finetune_opts t; /* rates, schedule, epochs, sampling, seed, preconditioning */
    dh_ckpt ck;            /* --checkpoint, --checkpoint-every, --resume, --stop-after */
} ft_opts;

static void usage(void) {
    printf("Usage: %s -m NET --hash HASH [OPTION]... [IMAGES]\n"
           "   or: %s --arch NAME [OPTION]... [IMAGES]           (\"random init.\")\n"
           "   or: %s --features [--hash HASH] [OPTION]... [FEATURES]\n"
           "Stage 3: train the network and the K-bit hash layer jointly with the\n"
           "exponentiated code-product loss (or another deep hashing loss); write a deep\n"
           "hash model (or, with --features, a hash model). Input defaults to standard input.\n\n"
           "  -m, --net FILE          stage-1 network (dh-pretrain)\n"
           "  -H, --hash FILE         stage-2 hash model (dh-inithash; linear methods)\n"
           "  -a, --arch NAME         random initialisation of this architecture (%s or a spec file)\n"
           "  -b, --bits K            code length for random initialisation (default 48)\n"
           "  -f, --features          train the hash layer alone on a features stream (frozen backbone)\n"
           "  -L, --loss NAME         balanced (default), scaled or paper: the exponentiated loss; or a\n"
           "                          deep hashing loss NAME[:PARAM=V,...] (dpsh, hashnet, csq, adsh, ...;\n"
           "                          --loss help lists them and their parameters)\n"
           "      --db-codes FILE     adsh: write the database codes it learned (the training rows)\n"
           "      --loss-scale X      multiply the loss by X (default: K^2 for scaled/balanced, 1 for paper)\n"
           "      --aux-xent W        add W x the classifier's cross-entropy on z (stage 1's head, or\n"
           "                          a new one with --arch; learns at the backbone's rate; default 100\n"
           "                          with -m and the balanced loss, else 0; 0: the loss alone)\n"
           "  -l, --lr X              hash-layer learning rate (default 3, in the --precondition\n"
           "                          norm coordinates; paper loss: 0.001; others: see dh-finetune(1))\n"
           "      --backbone-lr X     backbone learning rate (default 1e-4, 1e-3 with --arch;\n"
           "                          paper loss: same as --lr)\n"
           "      --freeze-backbone   backbone learning rate 0 (inference-mode forward)\n"
           "      --momentum X        SGD momentum (default 0.9)\n"
           "      --wd X              backbone weight decay (default 5e-4)\n"
           "      --hash-wd X         hash-layer weight decay (default 0; paper loss: --wd)\n"
           "      --precondition P    norm (default; paper loss: none): train the hash layer on\n"
           "                          z centred and scaled to unit mean squared norm\n"
           "  -e, --epochs N          epochs (default 10)\n"
           "  -B, --batch N           mini-batch size (default 256; pairs per batch: B(B-1))\n"
           "      --schedule S        cosine:0 (default: cosine decay to 0, no warm-up), step (x0.1 at\n"
           "                          50%% and 75%% of the epochs, rounded down; the paper's), const,\n"
           "                          step:E1,E2.., onecycle[:W[:F]], cosine[:W[:F]] (as dh-pretrain)\n"
           "      --sampling S        shuffle (a fresh permutation each epoch; default) or paper\n"
           "                          (in order, skipping a random 0..--skip rows after each pick)\n"
           "      --skip N            the paper sampling's maximum skip (default 200)\n"
           "      --augment A         none (default) or crop-flip (pad 4 + horizontal flip)\n"
           "  -s, --seed N            random seed (default 1)\n"
           "  -d, --device DEV        cpu, cuda or auto (default $DH_DEVICE, else auto)\n"
           "      --precision P       CPU arithmetic: fp32 (default) or bf16 (oneDNN, CPUs with\n"
           "                          AVX512-BF16 or AMX; as $DH_PRECISION)\n"
           "  -o, --output FILE       write the model to FILE atomically (default: stdout)\n"
           "%s"
           "  -q, --quiet             no progress or per-epoch report\n"
           "      --progress          progress line within each epoch even when stderr is not a terminal\n"
           "  -h, --help              show this help and exit\n"
           "  -V, --version           show the version and exit\n\nSee dh-finetune(1).\n",
           dh_progname, dh_progname, dh_progname, netspec_builtin_names(), dh_ckpt_help);
}

/* --loss: one of names (the exponentiated loss), "help", or a registry spec. */
static int loss_arg(const char *v, const char *const *names, const char **spec) {
    for (int i = 0; names[i]; i++)
        if (!strcmp(v, names[i])) return *spec = NULL, i;
    static char buf[1 << 15];
    if (!strcmp(v, "help") && dh_dloss_describe(buf, sizeof buf) >= 0) printf("%s", buf), exit(DH_EXIT_OK);
    return *spec = v, LOSS_REGISTRY;
}

/* The index of v among names (NULL-terminated), else a usage error. */
static int pick(const char *opt, const char *v, const char *const *names, const char *list) {
    for (int i = 0; names[i]; i++)
        if (!strcmp(v, names[i])) return i;
    dh_usage_error("%s: '%s' is not %s", opt, v, list);
}

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

static void parse_options(ft_opts *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    train_finetune_opts *t = &o->t;
    o->loss = LOSS_BALANCED, t->lr = 3.0, t->backbone_lr = 1e-4, t->momentum = 0.9, t->wd = 5e-4, t->seed = 1;
    t->epochs = 10, o->batch = 256, o->K = 48, o->schedule = "cosine:0", o->augment = 0, t->precond = -1;
    /* the long-only options: --loss-scale, --backbone-lr, --momentum, --freeze-backbone, --wd, --hash-wd,
     * --schedule, --sampling, --skip, --augment, --precondition, --aux-xent, --progress */
    enum { O_LSC = 256, O_BLR, O_MOM, O_FRZ, O_WD, O_HWD, O_SCH, O_SAM, O_SKP, O_AUG, O_PRE, O_DBC, O_PRG, O_AUX, O_CK, O_PREC = 400 };
    static const struct option lo[] = {
        { "net", 1, 0, 'm' },           { "model", 1, 0, 'm' },        { "hash", 1, 0, 'H' },
        { "arch", 1, 0, 'a' },          { "bits", 1, 0, 'b' },         { "features", 0, 0, 'f' },
        { "loss", 1, 0, 'L' },          { "loss-scale", 1, 0, O_LSC }, { "lr", 1, 0, 'l' },
        { "backbone-lr", 1, 0, O_BLR }, { "momentum", 1, 0, O_MOM },   { "freeze-backbone", 0, 0, O_FRZ },
        { "wd", 1, 0, O_WD },           { "hash-wd", 1, 0, O_HWD },    { "epochs", 1, 0, 'e' },
        { "batch", 1, 0, 'B' },         { "schedule", 1, 0, O_SCH },   { "sampling", 1, 0, O_SAM },
        { "skip", 1, 0, O_SKP },        { "augment", 1, 0, O_AUG },    { "precondition", 1, 0, O_PRE },
        { "seed", 1, 0, 's' },          { "device", 1, 0, 'd' },       { "output", 1, 0, 'o' },
        { "db-codes", 1, 0, O_DBC },    { "precision", 1, 0, O_PREC }, { "aux-xent", 1, 0, O_AUX },    DH_CKPT_LONGOPTS(O_CK),        DH_COMMON_LONGOPTS(O_PRG)
    };
    static const char *const losses[] = { "paper", "scaled", "balanced", NULL },
                             *const samp[] = { "shuffle", "paper", NULL }, *const aug[] = { "none", "crop-flip", NULL },
                             *const pre[] = { "none", "norm", NULL };
    int c, lr_set = 0, blr_set = 0, hwd_set = 0, aux_set = 0, skip = 200, sampling = 0;
    int64_t v;
    dh_ckpt_init(&o->ck);
    while ((c = getopt_long(argc, argv, "m:H:a:b:fL:l:e:B:s:d:o:qhV", lo, NULL)) != -1) {
        switch (c) {
        case 'm': o->net_path = optarg; break;
        case 'H': o->hash_path = optarg; break;
        case 'a': o->arch = optarg; break;
        case 'b': o->K = inum("--bits", optarg, DH_HASH_MIN_BITS, DH_HASH_MAX_BITS), o->bits_set = 1; break;
        case 'f': o->features = 1; break;
        case 'L': o->loss = loss_arg(optarg, losses, &t->loss_spec); break;
        case O_LSC: o->loss_scale = num("--loss-scale", optarg, 1e-30, 1e30); break;
        case 'l': t->lr = num("--lr", optarg, 0, 1e6), lr_set = 1; break;
        case O_BLR: t->backbone_lr = num("--backbone-lr", optarg, 0, 1e6), blr_set = 1; break;
        case O_MOM: t->momentum = num("--momentum", optarg, 0, 0.999999); break;
        case O_FRZ: o->freeze = 1; break;
        case O_WD: t->wd = num("--wd", optarg, 0, 1); break;
        case O_HWD: t->hash_wd = num("--hash-wd", optarg, 0, 1), hwd_set = 1; break;
        case 'e': t->epochs = inum("--epochs", optarg, 1, 100000); break;
        case 'B': o->batch = inum("--batch", optarg, 2, 1 << 20); break;
        case O_SCH: o->schedule = optarg; break;
        case O_SAM: sampling = pick("--sampling", optarg, samp, "shuffle or paper"); break;
        case O_SKP: skip = inum("--skip", optarg, 0, 1 << 30); break;
        case O_AUG: o->augment = pick("--augment", optarg, aug, "none or crop-flip"); break;
        case O_PRE: t->precond = pick("--precondition", optarg, pre, "norm or none"); break;
        case 's':
            if (dh_parse_i64(optarg, 0, INT64_MAX, &v)) dh_usage_error("--seed: bad value '%s'", optarg);
            t->seed = (uint64_t)v;
            break;
        case 'd': o->device = optarg; break;
        case 'o': o->out = optarg; break;
        case O_DBC: o->db_codes = optarg; break;
        case O_AUX: t->aux_xent = num("--aux-xent", optarg, 0, 1e6), aux_set = 1; break;
        case O_PREC: dk_prog_set_precision(optarg); break;
        default:
            if (!dh_ckpt_option(&o->ck, c, O_CK, optarg) && !dh_common_option(c, O_PRG, usage))
                dh_usage_error("bad option (see --help)");
        }
    }
    o->in = dh_input_arg(argc, argv);
    dh_ckpt_start(&o->ck);
    dh_ckpt_not_output(&o->ck, "-o", o->out);
    dh_ckpt_not_output(&o->ck, "--db-codes", o->db_codes);
    dh_err e;
    if (train_schedule(o->schedule, 1.0, t->epochs, &t->sched, NULL, 0, &e)) dh_usage_error("--schedule: %s", e.msg);
    t->skip = sampling ? skip : -1;
    t->loss.norm = o->loss == LOSS_PAPER ? DH_HL_SUM : o->loss == LOSS_BALANCED ? DH_HL_BALANCED : DH_HL_MEAN;
    if (t->loss_spec && train_loss_check(t->loss_spec, o->bits_set ? o->K : 64, &e))
        dh_usage_error("--loss: %s", e.msg);
    const dh_dloss_method *me = t->loss_spec ? train_loss_method(t->loss_spec) : NULL;
    if (me && o->loss_scale > 0) dh_usage_error("--loss-scale: for balanced, scaled and paper only (%s)", me->name);
    if (o->db_codes && !(me && (me->flags & DH_DLOSS_ASYM)))
        dh_usage_error("--db-codes: only a loss that learns the database codes writes them (--loss adsh)");
    if (me && !lr_set) t->lr = train_default_lr(me);
    /* the paper's setting: one learning rate and weight decay for every layer, no preconditioning */
    if (o->loss == LOSS_PAPER && !lr_set) t->lr = 0.001;
    if (o->loss == LOSS_PAPER && !blr_set) t->backbone_lr = t->lr;
    if (!hwd_set && o->loss == LOSS_PAPER) t->hash_wd = t->wd;
    if (t->precond < 0) t->precond = o->loss != LOSS_PAPER;
    /* "random init.": the network has everything to learn (Fashion-MNIST, lenet,
     * 2 epochs: 1e-4 0.527, 1e-3 0.683, 1e-2 collapse) */
    if (!o->net_path && !o->features && !blr_set && o->loss != LOSS_PAPER) t->backbone_lr = 1e-3;
    if (o->freeze || o->features) t->backbone_lr = 0;
    /* joint fine-tuning keeps stage 1's classification task beside the codes (CIFAR-10 cifar net, 48 bits: joint
     * 0.7535, with the term 0.7709; dh-finetune(1), "A classification term"); the paper's loss, the other losses
     * and random init. go without unless asked */
    if (!aux_set && o->net_path && !o->features && !o->freeze && o->loss == LOSS_BALANCED && !t->loss_spec)
        t->aux_xent = AUX_XENT_JOINT, o->aux_default = 1;
    /* options the chosen initialisation would silently ignore, and the ones it needs */
    if (o->net_path && o->arch)
        dh_usage_error("-m NET and --arch NAME exclude each other (--arch is the random initialisation)");
    if (o->features && t->aux_xent > 0)
        dh_usage_error("--aux-xent: the classification term trains a network: not with --features");
    if (o->freeze && t->aux_xent > 0)
        dh_usage_error("--aux-xent: the classification term trains the network: not with --freeze-backbone");
    if (o->features && o->net_path)
        dh_usage_error("--features trains the hash layer on cached features: -m is not used");
    if (!o->features && o->net_path && !o->hash_path)
        dh_usage_error(
            "-m NET needs --hash HASH (the stage-2 hash layer); for \"random init.\" give neither, with --arch");
    if (!o->features && !o->net_path && o->hash_path)
        dh_usage_error("--hash without -m: give the stage-1 network with -m (or use --features)");
    if (!o->features && !o->net_path && !o->arch)
        dh_usage_error("no network: give -m NET --hash HASH, or --arch NAME for random initialisation (or --features)");
}

static void progress(void *arg, int64_t rows) { dh_progress_update(arg, rows); }

/* What a resume must agree on (train_ckpt.h): the data, what the run starts
 * from (network, hash layer, preconditioning) and every option of training. */
static dhs_meta *ckpt_match(const ft_opts *o, const train_finetune *t, const train_features *f, const train_images *im,
                            const char *lname) {
    dh_err e;
    uint64_t data = 0, start = 0;
    if ((o->features ? (data = train_features_fingerprint(f), 0) : train_images_fingerprint(im, &data, &e)) ||
        train_finetune_fingerprint(t, &start, &e))
        dh_die_err(&e, "checkpoint");
    const train_finetune_opts *p = &t->o;
    char aux[64] = ""; /* only when used: checkpoints without the term still match */
    if (p->aux_xent > 0) snprintf(aux, sizeof aux, ", classification %.15g", p->aux_xent);
    dhs_meta *m = dhs_meta_new();
    if (!m || train_ckpt_match(m, "data", "%016llx (%lld rows)", (unsigned long long)data, (long long)t->N) ||
        train_ckpt_match(m, "batch", "%d", t->B) || train_ckpt_match(m, "seed", "%llu", (unsigned long long)p->seed) ||
        train_ckpt_match(m, "schedule", "%s over %d epochs", o->schedule, p->epochs) ||
        train_ckpt_match(m, "loss", "%s (scale %.15g)", lname, p->loss.scale) ||
        train_ckpt_match(m, "rates", "lr %.15g, backbone %.15g, momentum %.15g, wd %.15g, hash wd %.15g%s", p->lr,
                         p->backbone_lr, p->momentum, p->wd, p->hash_wd, aux) ||
        train_ckpt_match(m, "sampling", "skip %d, pad %d, flip %d, precondition %d", p->skip, p->pad, p->flip,
                         p->precond) ||
        train_ckpt_match(m, "start", "%016llx (%s)", (unsigned long long)start,
                         o->features   ? "features"
                         : o->net_path ? "net and hash model"
                                       : "random init."))
        dh_die(DH_EXIT_NOMEM, "out of memory");
    return m;
}

/* Write the checkpoint of t (after `done` epochs); dh_ckpt_save exits when asked to stop. */
static void ckpt_save(dh_ckpt *ck, const train_finetune *t, const dhs_meta *match, int done) {
    dh_err e;
    dhs_model m;
    dhs_model_init(&m);
    if (train_ckpt_begin(&m, "dh-finetune", dh_cmdline(), t->step, match, &e) || train_finetune_ckpt(t, &m, &e))
        dh_die_err(&e, ck->path);
    dh_ckpt_save(ck, &m, done);
    dhs_model_free(&m);
}

static int ckpt_pause(void *ck) { return dh_ckpt_due_step(ck); }

int main(int argc, char **argv) {
    dh_prog_init("dh-finetune", argc, argv);
    ft_opts o;
    parse_options(&o, argc, argv);
    dh_err e;
    static train_dist dist; /* mpirun -np N: each rank a slice of every batch, rank 0 writes (train_dist.h) */
    if (train_dist_init(&dist, &e)) dh_die_err(&e, "data-parallel training");
    if (dist.rank > 0) o.out = o.db_codes = o.ck.path = NULL, dh_quiet = 1;
    o.t.dist = &dist;
    dk_device dev = dk_prog_device_open(o.device);

    /* the data: cached features, or images onto the device */
    static train_features f;
    static train_images im;
    const char *iname = dh_in_name(o.in);
    dhs_reader *r = dhs_open_path(o.in, NULL, &e);
    if (!r) dh_die_err(&e, NULL);
    const char *kind = dhs_reader_schema(r)->kind;
    if (strcmp(kind, o.features ? "features" : "images") != 0)
        dh_die(DH_EXIT_FAIL, "%s: a '%s' stream: %s", iname, kind,
               o.features ? "--features needs a features stream"
                          : "expected images (or use --features for a features stream)");
    if (o.features ? train_features_read(r, &f, &e) : train_images_read(r, dev, 0, &im, &e)) dh_die_err(&e, NULL);
    dhs_meta *dbm = dhs_meta_new(); /* the meta of --db-codes: the input's source and classes */
    if (!dbm) dh_die(DH_EXIT_NOMEM, "out of memory");
    dh_meta_carry(dbm, dhs_reader_meta(r));
    dhs_close(r);
    const int64_t N = o.features ? f.N : im.S;
    if (train_check_pairs(o.features ? f.lab : im.hlab, N, &e)) dh_die_err(&e, iname);
    const int B = o.batch < N ? o.batch : (int)N;
    int64_t r0, bl;
    if (!o.features && train_dist_slice(&dist, B, &r0, &bl, &e)) dh_usage_error("--batch: %s", e.msg);

    /* the network: stage 1's, or a new one ("random init."), or none */
    static dhs_model nm, hm;
    net *nw = NULL;
    netspec ns;
    if (o.net_path && dhs_model_load(o.net_path, &nm, &e)) dh_die_err(&e, NULL);
    if (o.net_path && net_from_model(&nm, dev, B, &nw, &e)) dh_die_err(&e, o.net_path);
    if (o.arch && !o.features) {
        if (netspec_builtin(o.arch, &ns, &e) && netspec_load(o.arch, &ns, &e))
            dh_die(DH_EXIT_USAGE, "--arch: '%s' is neither a built-in (%s) nor a readable spec file", o.arch,
                   netspec_builtin_names());
        /* a classifier head for the classification term */
        if (train_net_new(&ns, o.t.aux_xent > 0 ? im.nclasses : 0, dev, B, o.t.seed, &im, &nw, &e))
            dh_die_err(&e, o.arch);
        netspec_free(&ns);
    }
    if (nw && (nw->spec.in[0] != im.C || nw->spec.in[1] != im.H || nw->spec.in[2] != im.W))
        dh_die(DH_EXIT_FAIL, "%s: images are %dx%dx%d, the network expects %dx%dx%d", iname, im.C, im.H, im.W,
               nw->spec.in[0], nw->spec.in[1], nw->spec.in[2]);

    if (nw && o.t.aux_xent > 0 && train_check_head(nw, im.hlab, N, &e)) {
        if (!o.aux_default)
            dh_die(DH_EXIT_FAIL, "%s: --aux-xent with %s: %s", iname, o.net_path ? o.net_path : o.arch, e.msg);
        dh_note("%s: no classification term (%s)", o.net_path, e.msg); /* the default falls back to the loss alone */
        o.t.aux_xent = 0;
    }

    /* the hash layer: stage 2's, or a random one */
    int K = o.K, D = nw ? nw->zdim : f.D, HD = D;
    float *W = NULL, *b = NULL;
    if (train_hash_start(o.hash_path, &hm, D, o.features ? f.z : NULL, N, o.t.seed, &W, &b, &K, &HD, &e))
        dh_die_err(&e, NULL);
    if (o.hash_path && o.bits_set && o.K != K) /* it would be silently ignored */
        dh_usage_error("--bits %d: the hash model %s has %d bits", o.K, o.hash_path, K);
    if (HD != D)
        dh_die(DH_EXIT_FAIL, "%s: the hash layer expects %d-D features, %s %s has %d", o.hash_path, HD,
               nw ? "the z of the network" : "the features stream", nw ? o.net_path : iname, D);

    /* training */
    train_finetune_opts *to = &o.t;
    to->loss.scale = o.loss_scale > 0 ? o.loss_scale : o.loss == LOSS_PAPER ? 1.0 : (double)K * K;
    /* default: no augmentation, for fine-tuning and random init. alike: the codes of the training images
     * are what the database holds (dh-finetune(1), "Augmentation") */
    int aug = o.augment;
    to->pad = 4 * aug;
    to->flip = aug;
    train_finetune t;
    if (train_finetune_init(&t, to, dev, o.features ? &f : NULL, &im, nw, B, W, b, K, &e))
        dh_die_err(&e, to->loss_spec && e.code == DH_EINVAL ? "--loss" : "device buffers");
    const char *lname = to->loss_spec ? to->loss_spec : (const char *[]){ "paper", "scaled", "balanced" }[o.loss];
    char desc[512], ranks[64];
    train_finetune_describe(&t, lname, o.net_path ? o.net_path : o.arch, desc, sizeof desc);
    dh_note("%s, device %s%s", desc, dk_device_name(dev), train_dist_describe(&dist, ranks, sizeof ranks));
    if (t.dloss && (dh_dloss_method_of(t.dloss)->flags & DH_DLOSS_ASYM) && !o.db_codes)
        dh_note("%s learns the database codes: keep them with --db-codes FILE (encoding the training set with the "
                "model gives other codes)",
                lname);
    /* checkpoints: what a resume must match, the state of --resume, a pause between steps when one is due */
    dhs_meta *match = o.ck.path || o.ck.resume ? ckpt_match(&o, &t, &f, &im, lname) : NULL;
    const int64_t spe = N / B;
    if (o.ck.resume) {
        dhs_model ckm;
        int64_t step;
        dh_ckpt_load(&o.ck, &ckm);
        if (train_ckpt_check(&ckm, o.ck.resume, "dh-finetune", match, &step, &e) ||
            train_finetune_restore(&t, &ckm, &e))
            dh_die_err(&e, o.ck.resume);
        if (!train_ckpt_same_engine(&ckm, dev)) {
            char now[128];
            const char *was = dhs_meta_str(ckm.meta, "engine");
            train_ckpt_engine(dev, now, sizeof now);
            dh_note("%s was written on %s, this run computes on %s: it continues, but not to the same bits",
                    o.ck.resume, was ? was : "?", now);
        }
        dhs_model_free(&ckm);
        dh_note("resumed from %s: epoch %lld, step %lld of %lld", o.ck.resume, (long long)(t.step / spe + 1),
                (long long)t.step, (long long)(spe * to->epochs));
    }
    t.pause = ckpt_pause, t.pause_arg = &o.ck;
    int collapsed = 0; /* the last epoch's codes were all one */
    for (int ep = (int)(t.step / spe); ep < to->epochs; ep++) {
        train_finetune_stats st;
        dh_progress pr;
        char what[64];
        double t0 = dh_now();
        snprintf(what, sizeof what, "epoch %d/%d", ep + 1, to->epochs);
        dh_progress_start(&pr, what, o.features ? "rows" : "images", N / B * B);
        do {
            if (train_finetune_epoch(&t, ep, &st, progress, &pr, &e)) dh_die_err(&e, NULL);
            if (st.paused) ckpt_save(&o.ck, &t, match, ep);
        } while (st.paused);
        dh_progress_end(&pr, st.rows);
        double secs = dh_now() - t0;
        char rep[256];
        train_finetune_report(&t, &st, rep, sizeof rep);
        dh_note("epoch %d/%d: %s  lr %.3g/%.3g  %.0f rows/s", ep + 1, to->epochs, rep, st.lr, st.backbone_lr,
                secs > 0 ? (double)st.rows / secs : 0.0);
        collapsed = st.constant_bits == t.K;
        if (dh_ckpt_due_epoch(&o.ck, ep + 1, to->epochs)) ckpt_save(&o.ck, &t, match, ep + 1);
    }
    dhs_meta_free(match);
    if (collapsed && dist.rank == 0) /* a warning, also with --quiet: the model is whole but its codes say nothing */
        fprintf(stderr,
                "%s: warning: every training row had the same code in the last epoch: the codes collapsed and carry "
                "nothing (try a smaller --lr%s)\n",
                dh_progname, to->aux_xent > 0 ? " or --aux-xent" : "");

    /* the model: a hash model (--features), or the network with the hash layer */
    dhs_model out;
    dhs_model_init(&out);
    const char *stage = o.features ? "finetune-features" : o.net_path ? "finetune" : "random-init";
    train_model_info mi = { "dh-finetune", dh_cmdline(),
                            stage,         o.net_path,
                            o.hash_path,   o.features && o.hash_path ? dhs_meta_str(hm.meta, "method") : NULL,
                            lname,
                            dk_device_name(dev),
                            dev == DK_CPU && !o.features ? dk_cpu_precision_name() : NULL };
    if (train_finetune_model(&t, nw, &mi, W, b, &out, &e)) dh_die_err(&e, "saving the model");
    dh_outfile of; /* adsh: the codes it learned for the training rows, committed with the model */
    if (o.db_codes) {
        if (dhs_meta_set_str(dbm, "program", "dh-finetune") || dhs_meta_set_str(dbm, "cmdline", dh_cmdline()) ||
            dhs_meta_set_str(dbm, "model", o.out ? o.out : "<stdout>"))
            dh_die(DH_EXIT_NOMEM, "out of memory");
        if (dh_out_open(&of, o.db_codes, &e)) dh_die_err(&e, NULL);
        if (train_finetune_db_codes(&t, of.f, o.db_codes, dbm, &e)) dh_out_abort(&of), dh_die_err(&e, o.db_codes);
    }
    if (dh_model_save(o.out, &out, &e)) {
        if (o.db_codes) dh_out_abort(&of);
        dh_die_err(&e, o.out ? o.out : "<stdout>");
    }
    if (o.db_codes && dh_out_commit(&of, &e)) dh_die_err(&e, NULL);
    dhs_model_free(&out), dhs_model_free(&nm), dhs_model_free(&hm), dhs_meta_free(dbm);
    train_finetune_free(&t), train_features_free(&f), train_images_free(&im), net_free(nw), dk_shutdown();
    free(W), free(b), train_dist_finalize(&dist);
    return DH_EXIT_OK;
}
