/* dh-pretrain — stage 1: train a network plus a softmax classifier on an
 * images stream and write a net model.
 *
 *   dh-pretrain --arch cifar < train.dhs > net.dhm
 *
 * The whole images stream is held in memory (on the GPU when running
 * there: the pixels are uploaded once as u8, and every batch is gathered,
 * augmented and normalised on the device). See dh-pretrain(1).
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dh_prog.h"
#include "dhs.h"
#include "dk.h"
#include "dk_prog.h"
#include "net.h"
#include "netspec.h"

typedef struct {
    int epochs, batch;
    double lr, momentum, wd, smoothing;
    const char *schedule;
    int nesterov, augment;
} hyper;

/* Defaults per architecture (user specs get the "net" row). */
static const struct {
    const char *arch;
    hyper h;
} defaults[] = {
    { "lenet", { 5, 64, 0.05, 0.9, 5e-4, 0.0, "onecycle", 0, 0 } },
    { "cifar", { 40, 128, 0.02, 0.9, 5e-4, 0.0, "step", 0, 1 } },
    { "fast", { 16, 512, 0.4, 0.9, 5e-4, 0.2, "onecycle:0.25", 1, 1 } },
    { "net", { 10, 128, 0.01, 0.9, 5e-4, 0.0, "step", 0, 0 } },
};

static void usage(void) {
    printf("Usage: %s [OPTION]... [IMAGES]\n"
           "Train a network and a softmax classifier on an images stream (stage 1)\n"
           "and write a net model. Reads IMAGES (default: standard input; kind images:\n"
           "pixels u8[C,H,W], label i32, id str).\n\n"
           "  -a, --arch NAME         built-in network: lenet, cifar, fast (default: lenet for\n"
           "                          1x28x28 images, cifar for 3x32x32)\n"
           "  -n, --net FILE          network specification file (see dh-net(5))\n"
           "  -e, --epochs N          passes over the data (lenet 5, cifar 40, fast 16, else 10)\n"
           "  -b, --batch N           mini-batch size (lenet 64, cifar 128, fast 512, else 128)\n"
           "  -l, --lr X              (peak) learning rate (lenet 0.05, cifar 0.02, fast 0.4, else 0.01)\n"
           "  -S, --schedule S        step[:E1,E2..] (x0.1 at those epochs; plain 'step' drops\n"
           "                          at 50%% and 75%% of the epochs), onecycle[:WARMUP[:FINAL]],\n"
           "                          cosine[:WARMUP[:FINAL]], const (default: step; lenet:\n"
           "                          onecycle, fast: onecycle:0.25)\n"
           "  -m, --momentum X        SGD momentum (default 0.9)\n"
           "      --nesterov          Nesterov momentum (default for fast)\n"
           "      --no-nesterov\n"
           "  -w, --weight-decay X    L2 weight decay on conv/fc weights (default 5e-4)\n"
           "      --label-smoothing X label smoothing in [0,1) (fast 0.2, else 0)\n"
           "      --augment           random crops (padding H/8) and horizontal flips\n"
           "      --no-augment        (default: on for cifar and fast, off otherwise)\n"
           "      --val FILE          images stream to report test accuracy on after each epoch\n"
           "  -s, --seed N            random seed (default 1)\n"
           "  -d, --device DEV        cpu, cuda or auto (default $DH_DEVICE, else auto)\n"
           "  -o, --output FILE       write the model to FILE atomically (default: stdout)\n"
           "      --print-net         print the network specification (of --arch/--net) and exit\n"
           "  -q, --quiet             no progress or report on stderr\n"
           "      --progress          progress line even when stderr is not a terminal\n"
           "  -h, --help              show this help and exit\n"
           "  -V, --version           show the version and exit\n\n"
           "See dh-pretrain(1) and dh-net(5).\n",
           dh_progname);
}

/* An images stream read whole and uploaded to the device. */
typedef struct {
    const char *name;
    int64_t S;
    int C, H, W;
    uint8_t *pix;   /* device (S, C, H, W) */
    int32_t *lab;   /* device (S) */
    int32_t *hlab;  /* host copy */
    int nclasses;   /* from meta "classes", or max label + 1 */
    char **classes; /* meta "classes" or NULL */
    double mean[DK_MAXCHAN], std[DK_MAXCHAN];
} dataset;

static void load_images(const char *path, dk_device dev, int want_stats, dataset *d) {
    dh_err e;
    memset(d, 0, sizeof *d);
    d->name = dh_in_name(path);
    dhs_reader *r = dhs_open_path(path, NULL, &e);
    if (!r) dh_die_err(&e, NULL);
    const dhs_schema *s = dhs_reader_schema(r);
    if (strcmp(s->kind, "images") != 0) dh_die(DH_EXIT_FAIL, "%s: a '%s' stream, expected images", d->name, s->kind);
    int fp = dhs_require_field(s, "pixels", DHS_U8, 3, &e);
    if (fp < 0) dh_die_err(&e, d->name);
    int fl = dhs_require_field(s, "label", DHS_I32, 0, &e);
    if (fl < 0) dh_die_err(&e, d->name);
    if (s->fields[fp].variable) dh_die(DH_EXIT_FAIL, "%s: pixels must have a fixed shape", d->name);
    d->C = (int)s->fields[fp].shape[0];
    d->H = (int)s->fields[fp].shape[1];
    d->W = (int)s->fields[fp].shape[2];
    const dhs_meta *meta = dhs_reader_meta(r);
    int nc = dhs_meta_len(meta, "classes");
    if (nc > 0) {
        d->classes = calloc(nc, sizeof *d->classes);
        if (!d->classes) dh_die(DH_EXIT_NOMEM, "out of memory");
        for (int i = 0; i < nc; i++) {
            const char *c = dhs_meta_str_at(meta, "classes", i);
            d->classes[i] = strdup(c ? c : "");
        }
        d->nclasses = nc;
    }
    dhs_table t;
    memset(&t, 0, sizeof t);
    if (dhs_read_table(r, &t, 0, &e)) dh_die_err(&e, NULL);
    dhs_close(r);
    d->S = t.nrows;
    if (d->S < 1) dh_die(DH_EXIT_FAIL, "%s: no images", d->name);
    const int32_t *lab = t.col[fl];
    int maxl = -1;
    for (int64_t i = 0; i < d->S; i++) {
        if (lab[i] < 0 || (nc > 0 && lab[i] >= nc))
            dh_die(DH_EXIT_FAIL, "%s: row %lld: label %d out of range%s", d->name, (long long)i, lab[i],
                   nc > 0 ? " (not one of the stream's classes)" : "");
        if (lab[i] > maxl) maxl = lab[i];
    }
    if (nc <= 0) d->nclasses = maxl + 1;
    size_t pb = (size_t)d->S * d->C * d->H * d->W;
    const uint8_t *px = t.col[fp];
    if (want_stats && d->C <= DK_MAXCHAN) {
        size_t plane = (size_t)d->H * d->W;
        for (int c = 0; c < d->C; c++) {
            double s1 = 0, s2 = 0;
            for (int64_t i = 0; i < d->S; i++) {
                const uint8_t *p = px + ((size_t)i * d->C + c) * plane;
                uint64_t a = 0, b = 0;
                for (size_t j = 0; j < plane; j++) {
                    a += p[j];
                    b += (uint64_t)p[j] * p[j];
                }
                s1 += (double)a;
                s2 += (double)b;
            }
            double n = (double)d->S * plane, m = s1 / n / 255.0;
            double var = s2 / n / (255.0 * 255.0) - m * m;
            d->mean[c] = m;
            d->std[c] = var > 1e-8 ? sqrt(var) : 1.0;
        }
    }
    d->hlab = malloc((size_t)d->S * sizeof *d->hlab);
    if (!d->hlab) dh_die(DH_EXIT_NOMEM, "out of memory");
    memcpy(d->hlab, lab, (size_t)d->S * sizeof *d->hlab);
    if (dk_mem_alloc(dev, pb, (void **)&d->pix, &e) || dk_mem_upload(dev, d->pix, px, pb, &e) ||
        dk_mem_alloc(dev, (size_t)d->S * sizeof(int32_t), (void **)&d->lab, &e) ||
        dk_mem_upload(dev, d->lab, lab, (size_t)d->S * sizeof(int32_t), &e))
        dh_die_err(&e, d->name);
    dhs_table_free(&t);
}

static void free_images(dk_device dev, dataset *d) {
    dk_mem_free(dev, d->pix);
    dk_mem_free(dev, d->lab);
    free(d->hlab);
    for (int i = 0; d->classes && i < d->nclasses; i++) free(d->classes[i]);
    free(d->classes);
}

/* Accuracy and mean loss of the net on a whole dataset (inference mode). */
static void evaluate(net *n, dataset *d, dk_tensor *xbuf, double *acc, double *loss) {
    dh_err e;
    int64_t B = xbuf->shape[0], correct = 0;
    double lsum = 0;
    for (int64_t s = 0; s < d->S; s += B) {
        int64_t nb = d->S - s < B ? d->S - s : B;
        dk_tensor x;
        if (dk_tensor_rows(xbuf, 0, nb, &x, &e) ||
            dk_images_augment(d->pix + (size_t)s * d->C * d->H * d->W, nb, d->C, d->H, d->W, NULL, 0, 0, n->mean,
                              n->std, 0, 0, &x, &e))
            dh_die_err(&e, d->name);
        double l;
        int64_t c;
        if (net_eval_xent(n, &x, d->lab + s, &l, &c, &e)) dh_die_err(&e, d->name);
        correct += c;
        lsum += l * nb;
    }
    *acc = (double)correct / d->S;
    *loss = lsum / d->S;
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

/* The output is opened before training (so a bad -o fails at once) and
 * removed at exit unless committed. */
static dh_outfile outf;

int main(int argc, char **argv) {
    dh_prog_init("dh-pretrain", argc, argv);
    const char *arch = NULL, *netfile = NULL, *device = NULL, *out = NULL, *valfile = NULL;
    const char *schedule = NULL;
    int epochs = 0, batch = 0, nesterov = -1, augment = -1;
    double lr = -1, momentum = -1, wd = -1, smoothing = -1;
    uint64_t seed = 1;
    int64_t v;
    enum { O_NEST = 256, O_NONEST, O_LS, O_AUG, O_NOAUG, O_VAL, O_PROG, O_PRINT };
    static const struct option lo[] = { { "arch", 1, 0, 'a' },
                                        { "net", 1, 0, 'n' },
                                        { "epochs", 1, 0, 'e' },
                                        { "batch", 1, 0, 'b' },
                                        { "lr", 1, 0, 'l' },
                                        { "schedule", 1, 0, 'S' },
                                        { "momentum", 1, 0, 'm' },
                                        { "nesterov", 0, 0, O_NEST },
                                        { "no-nesterov", 0, 0, O_NONEST },
                                        { "weight-decay", 1, 0, 'w' },
                                        { "label-smoothing", 1, 0, O_LS },
                                        { "augment", 0, 0, O_AUG },
                                        { "no-augment", 0, 0, O_NOAUG },
                                        { "val", 1, 0, O_VAL },
                                        { "seed", 1, 0, 's' },
                                        { "device", 1, 0, 'd' },
                                        { "output", 1, 0, 'o' },
                                        { "print-net", 0, 0, O_PRINT },
                                        DH_COMMON_LONGOPTS(O_PROG) };
    int c, print_net = 0;
    while ((c = getopt_long(argc, argv, "a:n:e:b:l:S:m:w:s:d:o:qhV", lo, NULL)) != -1) {
        switch (c) {
        case 'a': arch = optarg; break;
        case 'n': netfile = optarg; break;
        case 'e':
            if (dh_parse_int(optarg, 1, 100000, &epochs)) dh_usage_error("--epochs: bad value '%s'", optarg);
            break;
        case 'b':
            if (dh_parse_int(optarg, 1, 1 << 20, &batch)) dh_usage_error("--batch: bad value '%s'", optarg);
            break;
        case 'l':
            if (dh_parse_double(optarg, 1e-12, 1e4, &lr)) dh_usage_error("--lr: bad value '%s'", optarg);
            break;
        case 'S': schedule = optarg; break;
        case 'm':
            if (dh_parse_double(optarg, 0, 0.9999, &momentum)) dh_usage_error("--momentum: bad value '%s'", optarg);
            break;
        case O_NEST: nesterov = 1; break;
        case O_NONEST: nesterov = 0; break;
        case 'w':
            if (dh_parse_double(optarg, 0, 1, &wd)) dh_usage_error("--weight-decay: bad value '%s'", optarg);
            break;
        case O_LS:
            if (dh_parse_double(optarg, 0, 0.999, &smoothing))
                dh_usage_error("--label-smoothing: bad value '%s'", optarg);
            break;
        case O_AUG: augment = 1; break;
        case O_NOAUG: augment = 0; break;
        case O_VAL: valfile = optarg; break;
        case 's':
            if (dh_parse_i64(optarg, 0, INT64_MAX, &v)) dh_usage_error("--seed: bad value '%s'", optarg);
            seed = (uint64_t)v;
            break;
        case 'd': device = optarg; break;
        case 'o': out = optarg; break;
        case O_PRINT: print_net = 1; break;
        default:
            if (!dh_common_option(c, O_PROG, usage)) dh_usage_error("bad option (see --help)");
        }
    }
    const char *in = dh_input_arg(argc, argv);
    if (arch && netfile) dh_usage_error("--arch and --net exclude each other");
    if (print_net) {
        netspec ps;
        dh_err pe;
        if (!arch && !netfile) dh_usage_error("--print-net needs --arch or --net");
        if (arch ? netspec_builtin(arch, &ps, &pe) : netspec_load(netfile, &ps, &pe))
            dh_die_err(&pe, arch ? "--arch" : NULL);
        fputs(ps.text, stdout);
        netspec_free(&ps);
        return DH_EXIT_OK;
    }
    if ((!out || !strcmp(out, "-")) && isatty(STDOUT_FILENO))
        dh_usage_error("refusing to write a model to a terminal (use -o FILE or redirect)");
    dh_err e;
    netspec spec;
    memset(&spec, 0, sizeof spec);
    if (arch && netspec_builtin(arch, &spec, &e)) dh_usage_error("--arch: %s", e.msg);
    if (netfile && netspec_load(netfile, &spec, &e)) dh_die_err(&e, NULL);
    if (dh_out_open_guarded(&outf, out, &e)) dh_die_err(&e, NULL);
    dk_device dev = dk_prog_device_open(device);

    dataset tr;
    load_images(in, dev, 1, &tr);
    if (!arch && !netfile) {
        if (tr.C == 1 && tr.H == 28 && tr.W == 28)
            arch = "lenet";
        else if (tr.C == 3 && tr.H == 32 && tr.W == 32)
            arch = "cifar";
        else
            dh_usage_error("%s: no built-in network for %dx%dx%d images: give --net FILE", tr.name, tr.C, tr.H, tr.W);
        if (netspec_builtin(arch, &spec, &e)) dh_die_err(&e, NULL);
    }
    if (spec.in[0] != tr.C || spec.in[1] != tr.H || spec.in[2] != tr.W)
        dh_die(DH_EXIT_FAIL, "%s: images are %dx%dx%d, the network '%s' takes %dx%dx%d", tr.name, tr.C, tr.H, tr.W,
               arch ? arch : netfile, spec.in[0], spec.in[1], spec.in[2]);
    if (tr.nclasses < 2) dh_die(DH_EXIT_FAIL, "%s: %d class(es): need at least 2", tr.name, tr.nclasses);

    /* hyper-parameters: arch defaults, then options */
    hyper h = defaults[3].h;
    for (int i = 0; i < 3; i++)
        if (arch && !strcmp(arch, defaults[i].arch)) h = defaults[i].h;
    if (epochs) h.epochs = epochs;
    if (batch) h.batch = batch;
    if (lr > 0) h.lr = lr;
    if (momentum >= 0) h.momentum = momentum;
    if (wd >= 0) h.wd = wd;
    if (smoothing >= 0) h.smoothing = smoothing;
    if (nesterov >= 0) h.nesterov = nesterov;
    if (augment >= 0) h.augment = augment;
    if (schedule) h.schedule = schedule;
    if (h.nesterov && h.momentum == 0) dh_usage_error("--nesterov needs a non-zero momentum");
    dk_schedule sched;
    static char stepbuf[64];
    if (!strcmp(h.schedule, "step")) {
        char *buf = stepbuf;
        int a = h.epochs / 2, b = h.epochs * 3 / 4;
        if (a < 1) a = 1;
        if (b <= a) b = a + 1;
        snprintf(buf, sizeof stepbuf, "step:%d,%d", a, b);
        if (dk_schedule_parse(buf, h.lr, &sched, &e)) dh_usage_error("--schedule: %s", e.msg);
        h.schedule = stepbuf;
    } else if (dk_schedule_parse(h.schedule, h.lr, &sched, &e)) {
        dh_usage_error("--schedule: %s", e.msg);
    }

    int64_t B = h.batch;
    if (B > tr.S) B = tr.S;
    int64_t spe = tr.S / B, total = spe * h.epochs;
    if (B < 2) {
        for (int i = 0; i < spec.nlayers; i++)
            if (spec.layers[i].type == NS_BN)
                dh_die(DH_EXIT_FAIL, "%s: one image: batch normalisation needs batches of 2 or more", tr.name);
    }

    dataset va;
    memset(&va, 0, sizeof va);
    if (valfile) {
        load_images(valfile, dev, 0, &va);
        if (va.C != tr.C || va.H != tr.H || va.W != tr.W)
            dh_die(DH_EXIT_FAIL, "%s: images are %dx%dx%d, the training images %dx%dx%d", va.name, va.C, va.H, va.W,
                   tr.C, tr.H, tr.W);
        if (va.classes && tr.classes) {
            int same = va.nclasses == tr.nclasses;
            for (int i = 0; same && i < va.nclasses; i++) same = !strcmp(va.classes[i], tr.classes[i]);
            if (!same) dh_die(DH_EXIT_FAIL, "%s: its classes differ from the training stream's", va.name);
        }
        if (va.nclasses > tr.nclasses)
            dh_die(DH_EXIT_FAIL, "%s: labels up to %d, the training stream has %d classes", va.name, va.nclasses - 1,
                   tr.nclasses);
    }

    net *n;
    if (net_create(&spec, tr.nclasses, dev, B, &n, &e)) dh_die_err(&e, "network");
    if (net_init(n, seed, &e)) dh_die_err(&e, "network");
    float mean[DK_MAXCHAN], sd[DK_MAXCHAN];
    for (int i = 0; i < tr.C; i++) {
        mean[i] = (float)tr.mean[i];
        sd[i] = (float)tr.std[i];
    }
    if (net_set_norm(n, mean, sd, &e)) dh_die_err(&e, "network");
    if (tr.classes && net_set_classes(n, (const char *const *)tr.classes, tr.nclasses, &e)) dh_die_err(&e, "network");

    int pad = h.augment ? (tr.H / 8 > 0 ? tr.H / 8 : 1) : 0, flip = h.augment;
    dh_note("%s: %lld images %dx%dx%d, %d classes; net %s: %lld parameters, z %d; %s", tr.name, (long long)tr.S, tr.C,
            tr.H, tr.W, tr.nclasses, arch ? arch : netfile, (long long)net_nparams(n), n->zdim, dk_device_name(dev));
    dh_note("%d epochs x %lld steps of %lld, lr %g (%s), momentum %g%s, weight decay %g, "
            "label smoothing %g, augment %s, seed %llu",
            h.epochs, (long long)spe, (long long)B, h.lr, h.schedule, h.momentum, h.nesterov ? " (nesterov)" : "", h.wd,
            h.smoothing, h.augment ? "crop+flip" : "off", (unsigned long long)seed);

    /* device buffers: the epoch's permutation, a batch of images and labels */
    int32_t *perm = malloc((size_t)tr.S * sizeof *perm);
    int32_t *perm_dev = NULL, *lab_dev = NULL;
    dk_tensor xbuf = { 0 };
    if (!perm) dh_die(DH_EXIT_NOMEM, "out of memory");
    if (dk_mem_alloc(dev, (size_t)tr.S * sizeof(int32_t), (void **)&perm_dev, &e) ||
        dk_mem_alloc(dev, (size_t)B * sizeof(int32_t), (void **)&lab_dev, &e) ||
        dk_tensor_alloc4(&xbuf, dev, 4, B, tr.C, tr.H, tr.W, &e))
        dh_die_err(&e, dk_device_name(dev));

    dh_progress prog;
    dh_progress_start(&prog, "training", "images", total * B);
    double t0 = dh_now(), last_train_acc = 0, last_val_acc = -1, last_loss = 0;
    int64_t step = 0;
    for (int ep = 0; ep < h.epochs; ep++) {
        double te = dh_now();
        dk_permutation(perm, tr.S, seed, (uint64_t)ep);
        if (dk_mem_upload(dev, perm_dev, perm, (size_t)tr.S * sizeof(int32_t), &e)) dh_die_err(&e, "upload");
        double lsum = 0;
        int64_t csum = 0;
        float cur_lr = 0;
        for (int64_t it = 0; it < spe; it++, step++) {
            cur_lr = (float)dk_schedule_lr(&sched, step, total, spe);
            const int32_t *idx = perm_dev + it * B;
            if (dk_images_augment(tr.pix, tr.S, tr.C, tr.H, tr.W, idx, pad, flip, n->mean, n->std, seed ^ 0xA5A5A5A5ULL,
                                  (uint64_t)step * B, &xbuf, &e) ||
                dk_gather_i32(dev, tr.lab, idx, B, lab_dev, &e))
                dh_die_err(&e, "batch");
            double loss;
            int64_t correct;
            if (net_grad_xent(n, &xbuf, lab_dev, (float)h.smoothing, &loss, &correct, &e)) dh_die_err(&e, "training");
            if (!isfinite(loss))
                dh_die(DH_EXIT_FAIL, "training diverged at epoch %d step %lld (loss %g): lower --lr", ep + 1,
                       (long long)it + 1, loss);
            float lrs[NET_NGROUPS] = { cur_lr, cur_lr }, wds[NET_NGROUPS] = { (float)h.wd, (float)h.wd };
            if (net_sgd_step(n, lrs, (float)h.momentum, wds, h.nesterov, &e)) dh_die_err(&e, "training");
            lsum += loss;
            csum += correct;
            dh_progress_update(&prog, (step + 1) * B);
        }
        double now = dh_now(), dt = now - te;
        last_loss = lsum / spe;
        last_train_acc = (double)csum / (spe * B);
        char val[64] = "", eta[32];
        if (valfile) {
            double vl;
            evaluate(n, &va, &xbuf, &last_val_acc, &vl);
            snprintf(val, sizeof val, "  val loss %.4f acc %.2f%%", vl, 100 * last_val_acc);
        }
        double per_ep = (now - t0) / (ep + 1);
        fmt_dur(eta, sizeof eta, per_ep * (h.epochs - ep - 1));
        if (dh_progress_on && !dh_quiet) fputs("\r\033[K", stderr);
        dh_note("epoch %d/%d  loss %.4f  train acc %.2f%%%s  lr %.4g  %.0f images/s  ETA %s", ep + 1, h.epochs,
                last_loss, 100 * last_train_acc, val, cur_lr, spe * B / dt, eta);
    }
    dh_progress_end(&prog, total * B);
    double wall = dh_now() - t0;
    dh_note("trained in %.1f s (%.0f images/s)", wall, total * B / (wall > 0 ? wall : 1));

    /* the model */
    dhs_model m;
    dhs_model_init(&m);
    if (dhs_meta_set_str(m.meta, "model", "net") || dhs_meta_set_str(m.meta, "program", "dh-pretrain") ||
        dhs_meta_set_str(m.meta, "cmdline", dh_cmdline()) || dhs_meta_set_str(m.meta, "arch", arch ? arch : "") ||
        dhs_meta_set_int(m.meta, "seed", (int64_t)seed) || dhs_meta_set_int(m.meta, "epochs", h.epochs) ||
        dhs_meta_set_int(m.meta, "train_rows", tr.S) || dhs_meta_set_float(m.meta, "train_loss", last_loss) ||
        dhs_meta_set_float(m.meta, "train_accuracy", last_train_acc) ||
        (valfile && dhs_meta_set_float(m.meta, "val_accuracy", last_val_acc)) ||
        dhs_meta_set_str(m.meta, "device", dk_device_name(dev)))
        dh_die(DH_EXIT_NOMEM, "out of memory");
    if (net_to_model(n, &m, &e)) dh_die_err(&e, "model");
    if (dhs_model_write(outf.f, out ? out : "<stdout>", &m, &e)) dh_die_err(&e, NULL);
    if (dh_out_commit(&outf, &e)) dh_die_err(&e, NULL);
    dhs_model_free(&m);

    free(perm);
    dk_mem_free(dev, perm_dev);
    dk_mem_free(dev, lab_dev);
    dk_tensor_free(&xbuf);
    free_images(dev, &tr);
    if (valfile) free_images(dev, &va);
    net_free(n);
    netspec_free(&spec);
    dk_shutdown();
    return DH_EXIT_OK;
}
