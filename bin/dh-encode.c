/* dh-encode — hash a stream into packed binary codes.
 *
 *   dh-encode -m deephash.dhm < test.dhs > test.codes      (images + deep hash model)
 *   dh-encode -m hash0.dhm < feats.dhs > feats.codes       (features + hash model)
 *
 * Output: kind codes (code bits [K], label i32, id str — label and id when
 * the input has them), meta "bits", the model's provenance. Rows are
 * processed in batches of --batch, so memory stays bounded.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dh_prog.h"
#include "dhs.h"
#include "dk.h"
#include "dk_prog.h"
#include "net.h"
#include "hashfn.h"
#include "train.h"

static void usage(void) {
    printf("Usage: %s -m MODEL [OPTION]... [INPUT]\n"
           "Encode an images stream (deep hash model) or a features stream (hash model)\n"
           "into a codes stream of packed bits. INPUT defaults to standard input.\n\n"
           "  -m, --model FILE    hash model (dh-inithash) or deep hash model (dh-finetune)\n"
           "  -B, --batch N       rows per batch (default 256)\n"
           "  -d, --device DEV    cpu, cuda or auto (default $DH_DEVICE, else auto)\n"
           "  -o, --output FILE   write to FILE atomically (default: standard output)\n"
           "      --precision P  CPU arithmetic of a deep model's net: fp32 (default) or bf16\n"
           "                      (oneDNN, CPUs with AVX512-BF16 or AMX; as $DH_PRECISION)\n"
           "      --tta[=MODE]    images: test-time augmentation, the network's z averaged\n"
           "                      over views of each image before hashing: flip (the image\n"
           "                      and its mirror image) or full (plain --tta; also translated\n"
           "                      by one pixel each way); none (default)\n"
           "  -q, --quiet         no progress line and no report (rows, bits, rate) at the end\n"
           "      --progress      show progress even when stderr is not a terminal\n"
           "  -h, --help          show this help and exit\n"
           "  -V, --version       show the version and exit\n\n"
           "Bit k of a code is 1 when the k-th hash projection u_k > 0. See dh-encode(1).\n",
           dh_progname);
}

typedef struct enc {
    dhs_model model;
    dh_hashfn h;
    net *nw; /* images only */
    dk_device dev;
    int images;
    int fin, fl, fid; /* input field indices (pixels or z; label; id) */
    int64_t B;
    float *z;        /* (B, D) host */
    float *u;        /* (B, K) */
    uint8_t *codes;  /* (B, nb) */
    uint8_t *dpix;   /* device copy of a batch of pixels */
    dk_tensor x;     /* (B, C, H, W) */
    train_tta_z aug; /* images: the views and their combination */
    uint32_t *idlen; /* (B) */
} enc;

static enc E; /* global: reachable from exit paths */

static void fail(dhs_writer *w, dh_outfile *of, const dh_err *e, const char *ctx) {
    if (w) dhs_writer_abort(w);
    if (of) dh_out_abort(of);
    dh_die_err(e, ctx);
}

int main(int argc, char **argv) {
    dh_prog_init("dh-encode", argc, argv);
    const char *mpath = NULL, *out = NULL, *device = NULL;
    int64_t B = 256;
    int tta = -1; /* -1: not given */
    enum { O_PROG = 256, O_PREC = 300, O_TTA };
    static const struct option lo[] = { { "model", 1, 0, DH_OPT_MODEL },   { "batch", 1, 0, DH_OPT_BATCH },
                                        { "device", 1, 0, DH_OPT_DEVICE }, { "output", 1, 0, DH_OPT_OUTPUT },
                                        { "precision", 1, 0, O_PREC },     { "tta", 2, 0, O_TTA },
                                        DH_COMMON_LONGOPTS(O_PROG) };
    int c;
    while ((c = getopt_long(argc, argv, "m:B:d:o:qhV", lo, NULL)) != -1) {
        switch (c) {
        case 'm': mpath = optarg; break;
        case 'B':
            if (dh_parse_i64(optarg, 1, 1 << 20, &B))
                dh_usage_error("--batch: '%s' is not an integer in 1..%d", optarg, 1 << 20);
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
    if (!mpath) dh_usage_error("no model: use -m MODEL");
    const char *in = dh_input_arg(argc, argv);
    dh_stdin_once("-m", mpath, in);
    dh_err e;
    E.B = B;
    if (dhs_model_load(mpath, &E.model, &e)) dh_die_err(&e, NULL);
    const char *mk = dhs_meta_str(E.model.meta, "model");
    if (!mk) dh_die(DH_EXIT_FAIL, "%s: not a model (meta \"model\" missing)", mpath);
    int deep = strcmp(mk, "deephash") == 0;
    if (!deep && strcmp(mk, "hash") != 0)
        dh_die(DH_EXIT_FAIL,
               "%s: a '%s' model: dh-encode needs a hash model (dh-inithash) or a deep hash model (dh-finetune)", mpath,
               mk);
    if (dh_hashfn_bind(&E.h, &E.model, deep ? "hash." : "", &e)) dh_die_err(&e, mpath);
    const int K = E.h.K, D = E.h.D, nb = (K + 7) / 8;

    dhs_reader *r = dhs_open_path(in, NULL, &e);
    if (!r) dh_die_err(&e, NULL);
    const dhs_schema *s = dhs_reader_schema(r);
    const char *iname = dh_in_name(in);
    if (strcmp(s->kind, "images") == 0) {
        if (!deep)
            dh_die(DH_EXIT_FAIL,
                   "%s: an images stream needs a deep hash model (dh-finetune); %s is a shallow hash model: encode "
                   "features instead",
                   iname, mpath);
        E.images = 1;
        E.fin = dhs_require_field(s, "pixels", DHS_U8, 3, &e);
        if (E.fin < 0) dh_die_err(&e, iname);
        E.dev = dk_prog_device_open(device);
        if (net_from_model(&E.model, E.dev, B, &E.nw, &e)) dh_die_err(&e, mpath);
        const dhs_field *f = &s->fields[E.fin];
        const int *ni = E.nw->spec.in;
        if (f->shape[0] != ni[0] || f->shape[1] != ni[1] || f->shape[2] != ni[2])
            dh_die(DH_EXIT_FAIL, "%s: images are %lldx%lldx%lld, the network expects %dx%dx%d", iname,
                   (long long)f->shape[0], (long long)f->shape[1], (long long)f->shape[2], ni[0], ni[1], ni[2]);
        if (E.nw->zdim != D)
            dh_die(DH_EXIT_FAIL, "%s: network z has %d dimensions, the hash layer expects %d", mpath, E.nw->zdim, D);
        if (dk_mem_alloc(E.dev, (size_t)B * f->row_bytes, (void **)&E.dpix, &e) ||
            dk_tensor_alloc4(&E.x, E.dev, 4, B, ni[0], ni[1], ni[2], &e))
            dh_die_err(&e, "allocating a batch");
        if (train_tta_z_init(&E.aug, E.nw, B, tta < 0 ? TRAIN_TTA_NONE : tta, &e)) dh_die_err(&e, "--tta");
    } else if (strcmp(s->kind, "features") == 0) {
        E.fin = dhs_require_field(s, "z", DHS_F32, 1, &e);
        if (E.fin < 0) dh_die_err(&e, iname);
        if (s->fields[E.fin].variable || s->fields[E.fin].shape[0] != D)
            dh_die(DH_EXIT_FAIL, "%s: features have %lld dimensions, the hash model %s expects %d", iname,
                   (long long)s->fields[E.fin].shape[0], mpath, D);
        if (device) dk_prog_device_parse(device);
        if (tta > TRAIN_TTA_NONE)
            dh_die(DH_EXIT_USAGE, "--tta: %s is a features stream; test-time augmentation needs images (give it to "
                   "dh-feats instead)", iname);
    } else {
        dh_die(DH_EXIT_FAIL, "%s: a '%s' stream: expected images or features", iname, s->kind);
    }
    E.fl = dhs_field_index(s, "label");
    if (E.fl >= 0 && (s->fields[E.fl].dtype != DHS_I32 || s->fields[E.fl].ndim != 0)) E.fl = -1;
    E.fid = dhs_field_index(s, "id");
    if (E.fid >= 0 && s->fields[E.fid].dtype != DHS_STR) E.fid = -1;

    E.z = dh_malloc(&e, (size_t)B * D, sizeof(float));
    E.u = dh_malloc(&e, (size_t)B * K, sizeof(float));
    E.codes = dh_malloc(&e, (size_t)B * nb, 1);
    E.idlen = dh_malloc(&e, (size_t)B, sizeof(uint32_t));
    if (!E.z || !E.u || !E.codes || !E.idlen) dh_die_err(&e, NULL);

    /* output schema and meta */
    dhs_schema os;
    dhs_schema_init(&os, "codes");
    int64_t kk = K;
    int oc = dhs_schema_add(&os, "code", DHS_BITS, 1, &kk, &e);
    int ol = E.fl >= 0 ? dhs_schema_add(&os, "label", DHS_I32, 0, NULL, &e) : -1;
    int oi = E.fid >= 0 ? dhs_schema_add(&os, "id", DHS_STR, 0, NULL, &e) : -1;
    if (oc < 0 || (E.fl >= 0 && ol < 0) || (E.fid >= 0 && oi < 0)) dh_die_err(&e, "output schema");
    dhs_meta *om = dhs_meta_new();
    const dhs_meta *imeta = dhs_reader_meta(r);
    if (!om) dh_die(DH_EXIT_NOMEM, "out of memory");
    dhs_meta_set_str(om, "program", "dh-encode");
    dhs_meta_set_str(om, "cmdline", dh_cmdline());
    dhs_meta_set_int(om, "bits", K);
    dhs_meta_set_str(om, "model", mpath);
    dhs_meta_set_str(om, "model_kind", mk);
    dhs_meta_set_str(om, "hash_method", E.h.method);
    if (E.images) dhs_meta_set_str(om, "tta", train_tta_name(E.aug.level));
    const char *mc = dhs_meta_str(E.model.meta, "cmdline");
    if (mc) dhs_meta_set_str(om, "model_cmdline", mc);
    dh_meta_carry(om, imeta);
    dh_outfile of;
    if (dh_out_open(&of, out, &e)) dh_die_err(&e, NULL); /* the message names the file */
    dhs_writer *w = dhs_writer_open(of.f, out ? out : "<stdout>", &os, om, &e);
    dhs_meta_free(om);
    if (!w) fail(NULL, &of, &e, out ? out : "<stdout>");

    dh_progress pr;
    dh_progress_start(&pr, "encoding", "rows", 0);
    double t0 = dh_now();
    dhs_chunk *ch;
    int rc;
    int64_t done = 0;
    while ((rc = dhs_read_chunk(r, &ch, &e)) == DH_OK) {
        for (int64_t s0 = 0; s0 < ch->nrows; s0 += B) {
            int64_t n = ch->nrows - s0 < B ? ch->nrows - s0 : B;
            const float *zb;
            if (E.images) {
                const dhs_field *f = &s->fields[E.fin];
                const uint8_t *pix = (const uint8_t *)ch->col[E.fin] + s0 * f->row_bytes;
                if (dk_mem_upload(E.dev, E.dpix, pix, (size_t)(n * f->row_bytes), &e) ||
                    train_tta_z_batch(&E.aug, E.nw, E.dpix, n, &E.x, E.z, &e))
                    fail(w, &of, &e, iname);
                zb = E.z;
            } else {
                zb = (const float *)ch->col[E.fin] + s0 * D;
            }
            if (dh_hashfn_project(&E.h, zb, n, E.u, &e)) fail(w, &of, &e, mpath);
            for (int64_t i = 0; i < n * K; i++)
                if (!isfinite(E.u[i])) {
                    dh_seterr(&e, DH_EFORMAT, "row %lld: non-finite %s (NaN or infinite values)",
                              (long long)(done + i / K), E.images ? "network output" : "feature values");
                    fail(w, &of, &e, iname);
                }
            dh_pack_signs(E.u, n, K, E.codes);
            const void *cols[DHS_MAX_FIELDS] = { 0 };
            const uint32_t *lens[DHS_MAX_FIELDS] = { 0 };
            cols[oc] = E.codes;
            if (ol >= 0) cols[ol] = (const int32_t *)ch->col[E.fl] + s0;
            if (oi >= 0) {
                const uint64_t *off = ch->off[E.fid];
                for (int64_t i = 0; i < n; i++) E.idlen[i] = (uint32_t)(off[s0 + i + 1] - off[s0 + i]);
                cols[oi] = (const char *)ch->col[E.fid] + off[s0];
                lens[oi] = E.idlen;
            }
            if (dhs_write_rows(w, n, cols, lens, &e)) fail(w, &of, &e, out ? out : "<stdout>");
            done += n;
            dh_progress_update(&pr, done);
        }
    }
    if (rc != DH_EOF) fail(w, &of, &e, NULL);
    dh_progress_end(&pr, done);
    if (dhs_writer_close(w, &e)) {
        dh_out_abort(&of);
        dh_die_err(&e, out ? out : "<stdout>");
    }
    if (dh_out_commit(&of, &e)) dh_die_err(&e, NULL);
    double dt = dh_now() - t0; /* the report, once the output is complete */
    dh_note("%lld rows -> %d-bit codes in %.1f s (%.0f rows/s, %s)", (long long)done, K, dt,
            done / (dt > 0 ? dt : 1e-9), E.images ? dk_device_name(E.dev) : "cpu");
    dhs_close(r);
    if (E.nw) net_free(E.nw);
    if (E.images) {
        dk_tensor_free(&E.x);
        train_tta_z_free(&E.aug);
        dk_mem_free(E.dev, E.dpix);
        dk_shutdown();
    }
    free(E.z);
    free(E.u);
    free(E.codes);
    free(E.idlen);
    dhs_model_free(&E.model);
    return DH_EXIT_OK;
}
