/* dh-feats — forward pass of a net model to its feature layer z for every
 * image of an images stream; writes a features stream chunk by chunk.
 *
 *   dh-feats -m net.dhm < train.dhs > train.feats
 *
 * Memory is bounded by one input chunk plus one batch of activations.
 * See dh-feats(1).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dh_prog.h"
#include "dhs.h"
#include "dk.h"
#include "dk_prog.h"
#include "net.h"
#include "train.h"

static void usage(void) {
    printf("Usage: %s -m MODEL [OPTION]... [IMAGES]\n"
           "Compute the features z (the network's feature layer) of every image of an\n"
           "images stream (default: standard input; pixels u8[C,H,W], label i32, id str)\n"
           "and write a features stream (z f32[D], label i32, id str; no label when the images have none)\non standard "
           "output.\n\n"
           "  -m, --model FILE   net model written by dh-pretrain (or any model with a net)\n"
           "  -B, --batch N      images per forward pass (default 256)\n"
           "  -d, --device DEV   cpu, cuda or auto (default $DH_DEVICE, else auto)\n"
           "  -o, --output FILE  write to FILE atomically (default: stdout)\n"
           "      --precision P  CPU arithmetic: fp32 (default) or bf16 (oneDNN, CPUs with\n"
           "                     AVX512-BF16 or AMX; as $DH_PRECISION)\n"
           "      --tta[=MODE]   test-time augmentation: z averaged over views of each\n"
           "                     image: flip (the image and its mirror image) or full\n"
           "                     (plain --tta; also translated by one pixel each way,\n"
           "                     airbench94's level 2); none (default)\n"
           "  -q, --quiet        no progress or report on stderr\n"
           "      --progress     progress line even when stderr is not a terminal\n"
           "  -h, --help         show this help and exit\n"
           "  -V, --version      show the version and exit\n\n"
           "See dh-feats(1).\n",
           dh_progname);
}

/* Removed at exit unless committed: a failed run leaves no file. */
static dh_outfile of;

int main(int argc, char **argv) {
    dh_prog_init("dh-feats", argc, argv);
    const char *model = NULL, *device = NULL, *out = NULL;
    int batch = 256, tta = TRAIN_TTA_NONE;
    enum { O_PROG = 256, O_PREC = 300, O_TTA };
    static const struct option lo[] = { { "model", 1, 0, DH_OPT_MODEL },   { "batch", 1, 0, DH_OPT_BATCH },
                                        { "device", 1, 0, DH_OPT_DEVICE }, { "output", 1, 0, DH_OPT_OUTPUT },
                                        { "precision", 1, 0, O_PREC },     { "tta", 2, 0, O_TTA },
                                        DH_COMMON_LONGOPTS(O_PROG) };
    static const dh_moved moved[] = { { 'b', "batch size", 'B', "batch" }, { 0 } };
    dh_prog_moved(moved);
    int c;
    while ((c = getopt_long(argc, argv, "m:B:d:o:qhV", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'B':
            if (dh_parse_int(optarg, 1, 1 << 16, &batch)) dh_usage_error("--batch: bad value '%s'", optarg);
            break;
        case 'd': device = optarg; break;
        case 'o': out = optarg; break;
        case O_PREC: dk_prog_set_precision(optarg); break;
        case O_TTA:
            if ((tta = optarg ? train_tta_parse(optarg) : TRAIN_TTA_FULL) < 0)
                dh_usage_error("--tta: '%s' is not none, flip or full", optarg);
            break;
        default:
            if (!dh_common_option(c, O_PROG, usage)) dh_usage_error("bad option (see --help)");
        }
    }
    if (!model) dh_usage_error("no model: give -m MODEL");
    const char *in = dh_input_arg(argc, argv);
    dh_stdin_once("-m", model, in);
    dh_err e;
    dk_device dev = dk_prog_device_open(device);

    dhs_model m;
    if (dhs_model_load(model, &m, &e)) dh_die_err(&e, NULL);
    net *n;
    if (net_from_model(&m, dev, batch, &n, &e)) dh_die_err(&e, model);

    dhs_reader *r = dhs_open_path(in, NULL, &e);
    const char *iname = dh_in_name(in);
    if (!r) dh_die_err(&e, NULL);
    const dhs_schema *s = dhs_reader_schema(r);
    if (strcmp(s->kind, "images") != 0) dh_die(DH_EXIT_FAIL, "%s: a '%s' stream, expected images", iname, s->kind);
    int fp = dhs_require_field(s, "pixels", DHS_U8, 3, &e);
    if (fp < 0) dh_die_err(&e, iname);
    int fl = dhs_field_index(s, "label"); /* absent for unlabelled images (query files) */
    if (fl >= 0 && dhs_require_field(s, "label", DHS_I32, 0, &e) < 0) dh_die_err(&e, iname);
    int fi = dhs_require_field(s, "id", DHS_STR, 0, &e);
    if (fi < 0) dh_die_err(&e, iname);
    const dhs_field *pf = &s->fields[fp];
    int C = n->spec.in[0], H = n->spec.in[1], W = n->spec.in[2];
    if (pf->variable || pf->shape[0] != C || pf->shape[1] != H || pf->shape[2] != W)
        dh_die(DH_EXIT_FAIL, "%s: images are %lldx%lldx%lld, the model's network takes %dx%dx%d", iname,
               (long long)pf->shape[0], (long long)pf->shape[1], (long long)pf->shape[2], C, H, W);
    const dhs_meta *imeta = dhs_reader_meta(r);
    int mc = dhs_meta_len(m.meta, "classes"), ic = dhs_meta_len(imeta, "classes");
    if (mc > 0 && ic > 0) {
        int same = mc == ic;
        for (int i = 0; same && i < mc; i++) {
            const char *a = dhs_meta_str_at(m.meta, "classes", i), *b = dhs_meta_str_at(imeta, "classes", i);
            same = a && b && !strcmp(a, b);
        }
        if (!same) dh_note("warning: %s: the stream's classes differ from the model's", iname);
    }

    /* output: kind features, meta copied from the input plus provenance */
    int D = n->zdim;
    dhs_schema os;
    dhs_schema_init(&os, "features");
    int64_t zs = D;
    if (dhs_schema_add(&os, "z", DHS_F32, 1, &zs, &e) < 0 ||
        (fl >= 0 && dhs_schema_add(&os, "label", DHS_I32, 0, NULL, &e) < 0) ||
        dhs_schema_add(&os, "id", DHS_STR, 0, NULL, &e) < 0)
        dh_die_err(&e, "schema");
    dhs_meta *om = dhs_meta_copy(imeta);
    if (!om) dh_die(DH_EXIT_NOMEM, "out of memory");
    const char *zname = dhs_meta_str(m.meta, "zname");
    if (dhs_meta_set_str(om, "program", "dh-feats") || dhs_meta_set_str(om, "cmdline", dh_cmdline()) ||
        dhs_meta_set_str(om, "model_file", model) || dhs_meta_set_str(om, "model_net", n->spec.text) ||
        dhs_meta_set_str(om, "feature_layer", zname ? zname : "z") || dhs_meta_set_int(om, "zdim", D) ||
        dhs_meta_set_str(om, "tta", train_tta_name(tta)) ||
        (dhs_meta_str(m.meta, "cmdline") && dhs_meta_set_str(om, "model_cmdline", dhs_meta_str(m.meta, "cmdline"))))
        dh_die(DH_EXIT_NOMEM, "out of memory");
    if (ic <= 0 && mc > 0) {
        const char **names = calloc(mc, sizeof *names);
        if (!names) dh_die(DH_EXIT_NOMEM, "out of memory");
        for (int i = 0; i < mc; i++) names[i] = dhs_meta_str_at(m.meta, "classes", i);
        if (dhs_meta_set_strv(om, "classes", names, mc)) dh_die(DH_EXIT_NOMEM, "out of memory");
        free(names);
    }
    if (dh_out_open_guarded(&of, out, &e)) dh_die_err(&e, NULL);
    dhs_writer *w = dhs_writer_open(of.f, out ? out : "<stdout>", &os, om, &e);
    if (!w) {
        dh_out_abort(&of);
        dh_die_err(&e, NULL);
    }
    dhs_meta_free(om);

    size_t img = (size_t)C * H * W;
    uint8_t *pix_dev = NULL;
    dk_tensor xbuf = { 0 };
    train_tta_z aug;
    if (dk_mem_alloc(dev, (size_t)batch * img, (void **)&pix_dev, &e) ||
        dk_tensor_alloc4(&xbuf, dev, 4, batch, C, H, W, &e))
        dh_die_err(&e, dk_device_name(dev));
    if (train_tta_z_init(&aug, n, batch, tta, &e)) dh_die_err(&e, "--tta");
    float *zh = NULL;
    uint32_t *lens = NULL;
    int64_t zcap = 0;
    dh_progress prog;
    dh_progress_start(&prog, "features", "images", 0);
    double t0 = dh_now();
    dhs_chunk *ch;
    int rc;
    while ((rc = dhs_read_chunk(r, &ch, &e)) == DH_OK) {
        int64_t N = ch->nrows;
        if (N > zcap) {
            free(zh);
            free(lens);
            zh = malloc((size_t)N * D * sizeof *zh);
            lens = malloc((size_t)N * sizeof *lens);
            if (!zh || !lens) {
                dhs_writer_abort(w);
                dh_out_abort(&of);
                dh_die(DH_EXIT_NOMEM, "out of memory");
            }
            zcap = N;
        }
        const uint8_t *px = ch->col[fp];
        for (int64_t s0 = 0; s0 < N; s0 += batch) {
            int64_t nb = N - s0 < batch ? N - s0 : batch;
            if (dk_mem_upload(dev, pix_dev, px + (size_t)s0 * img, (size_t)nb * img, &e) ||
                train_tta_z_batch(&aug, n, pix_dev, nb, &xbuf, zh + (size_t)s0 * D, &e)) {
                dhs_writer_abort(w);
                dh_out_abort(&of);
                dh_die_err(&e, "forward");
            }
        }
        for (int64_t i = 0; i < N; i++) lens[i] = (uint32_t)(ch->off[fi][i + 1] - ch->off[fi][i]);
        const void *cols[3] = { zh, fl >= 0 ? ch->col[fl] : ch->col[fi], ch->col[fi] };
        const uint32_t *lv[3] = { NULL, fl >= 0 ? NULL : lens, lens }; /* without labels: z, id */
        if (dhs_write_rows(w, N, cols, lv, &e)) {
            dhs_writer_abort(w);
            dh_out_abort(&of);
            dh_die_err(&e, NULL);
        }
        dh_progress_update(&prog, dhs_reader_rows(r));
    }
    if (rc != DH_EOF) {
        dhs_writer_abort(w);
        dh_out_abort(&of);
        dh_die_err(&e, NULL);
    }
    int64_t rows = dhs_reader_rows(r);
    dh_progress_end(&prog, rows);
    if (dhs_writer_close(w, &e)) {
        dh_out_abort(&of);
        dh_die_err(&e, NULL);
    }
    if (dh_out_commit(&of, &e)) dh_die_err(&e, NULL);
    double dt = dh_now() - t0;
    dh_note("%lld images -> %d-D features in %.1f s (%.0f images/s, %s)", (long long)rows, D, dt,
            rows / (dt > 0 ? dt : 1e-9), dk_device_name(dev));
    dhs_close(r);
    free(zh);
    free(lens);
    dk_mem_free(dev, pix_dev);
    dk_tensor_free(&xbuf);
    train_tta_z_free(&aug);
    net_free(n);
    dhs_model_free(&m);
    dk_shutdown();
    return DH_EXIT_OK;
}
