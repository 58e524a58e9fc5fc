/* dh-inithash — stage 2: fit K-bit hash functions to a features stream.
 *
 *   dh-feats -m net.dhm < train.dhs | dh-inithash --bits 48 > hash0.dhm
 *
 * Reads a features stream (z f32 [D], label i32, id str), fits the hash
 * functions of --method (default "deephash", the paper's stage 2; the
 * registry in kernels/hash_methods.c lists the others) and writes a hash
 * model (kind "model", meta "model":"hash"; see kernels/hashfn.h).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dh_prog.h"
#include "dhs.h"
#include "dk.h"
#include "dk_prog.h"
#include "hashfn.h"

static void usage(void) {
    printf("Usage: %s [OPTION]... [FEATURES]\n"
           "Fit K-bit hash functions to a features stream (stage 2) and write a hash model.\n"
           "Reads FEATURES (default: standard input; kind features: z f32[D], label i32, id str).\n\n"
           "  -b, --bits K          code length, %d..%d (default 48)\n"
           "  -M, --method NAME     fitting method (default deephash; see below)\n"
           "  -e, --epochs N        passes over the data (method default; deephash 30)\n"
           "  -l, --lr X            learning rate (method default; deephash 0.1)\n"
           "  -B, --batch N         mini-batch size (method default; deephash 128)\n"
           "      --iterations N    iterations of alternating methods\n"
           "      --anchors N       kernel anchors (ksh, sdh)\n"
           "      --pairs N         labelled pairs (bre, mlh, ksh)\n"
           "      --samples N       fit on a random subset of N rows\n"
           "      --sigma X         kernel width\n"
           "      --lambda X        regularisation weight\n"
           "  -p, --param NAME=VAL  a method-specific parameter (repeatable)\n"
           "  -s, --seed N          random seed (default 1)\n"
           "  -d, --device DEV      cpu, cuda or auto (default $DH_DEVICE, else auto)\n"
           "  -o, --output FILE     write the model to FILE atomically (default: stdout)\n"
           "      --list-methods    list the methods and exit\n"
           "  -q, --quiet           no progress or report on stderr\n"
           "      --progress        report progress even when stderr is not a terminal\n"
           "  -h, --help            show this help and exit\n"
           "  -V, --version         show the version and exit\n\nMethods:\n",
           dh_progname, DH_HASH_MIN_BITS, DH_HASH_MAX_BITS);
    const dh_hash_method *m;
    for (int i = 0; (m = dh_hash_method_at(i)) != NULL; i++)
        printf("  %-10s %s%s\n", m->name, m->summary, m->supervised ? " [supervised]" : "");
    printf("\nSee dh-inithash(1).\n");
}

static void note_line(const char *s) {
    if (dh_progress_on) dh_note("%s", s);
}

int main(int argc, char **argv) {
    dh_prog_init("dh-inithash", argc, argv);
    int K = 48;
    const char *method = "deephash", *out = NULL, *device = NULL;
    dh_hash_opts o;
    dh_hash_opts_init(&o);
    int list = 0;
    enum { O_ITER = 256, O_ANCH, O_PAIRS, O_SAMP, O_SIGMA, O_LAMBDA, O_LIST, O_PROG };
    static const struct option lo[] = { { "bits", 1, 0, DH_OPT_BITS },     { "method", 1, 0, 'M' },
                                        { "epochs", 1, 0, 'e' },           { "lr", 1, 0, 'l' },
                                        { "batch", 1, 0, DH_OPT_BATCH },   { "iterations", 1, 0, O_ITER },
                                        { "anchors", 1, 0, O_ANCH },       { "pairs", 1, 0, O_PAIRS },
                                        { "samples", 1, 0, O_SAMP },       { "sigma", 1, 0, O_SIGMA },
                                        { "lambda", 1, 0, O_LAMBDA },      { "param", 1, 0, 'p' },
                                        { "seed", 1, 0, DH_OPT_SEED },     { "device", 1, 0, DH_OPT_DEVICE },
                                        { "output", 1, 0, DH_OPT_OUTPUT }, { "list-methods", 0, 0, O_LIST },
                                        DH_COMMON_LONGOPTS(O_PROG) };
    int c;
    int64_t v;
    while ((c = getopt_long(argc, argv, "b:M:e:l:B:p:s:d:o:qhV", lo, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (dh_parse_int(optarg, DH_HASH_MIN_BITS, DH_HASH_MAX_BITS, &K))
                dh_usage_error("--bits: '%s' is not an integer in %d..%d", optarg, DH_HASH_MIN_BITS, DH_HASH_MAX_BITS);
            break;
        case 'M': method = optarg; break;
        case 'e':
            if (dh_parse_int(optarg, 1, 1000000, &o.epochs)) dh_usage_error("--epochs: bad value '%s'", optarg);
            break;
        case 'l':
            if (dh_parse_double(optarg, 1e-12, 1e6, &o.lr)) dh_usage_error("--lr: bad value '%s'", optarg);
            break;
        case 'B':
            if (dh_parse_int(optarg, 1, 1 << 24, &o.batch)) dh_usage_error("--batch: bad value '%s'", optarg);
            break;
        case O_ITER:
            if (dh_parse_int(optarg, 1, 100000000, &o.iterations))
                dh_usage_error("--iterations: bad value '%s'", optarg);
            break;
        case O_ANCH:
            if (dh_parse_int(optarg, 1, 1 << 24, &o.anchors)) dh_usage_error("--anchors: bad value '%s'", optarg);
            break;
        case O_PAIRS:
            if (dh_parse_i64(optarg, 1, INT64_MAX, &o.pairs)) dh_usage_error("--pairs: bad value '%s'", optarg);
            break;
        case O_SAMP:
            if (dh_parse_i64(optarg, 1, INT64_MAX, &o.samples)) dh_usage_error("--samples: bad value '%s'", optarg);
            break;
        case O_SIGMA:
            if (dh_parse_double(optarg, 1e-300, 1e300, &o.sigma)) dh_usage_error("--sigma: bad value '%s'", optarg);
            break;
        case O_LAMBDA:
            if (dh_parse_double(optarg, 0, 1e300, &o.lambda)) dh_usage_error("--lambda: bad value '%s'", optarg);
            break;
        case 'p':
            if (!strchr(optarg, '=') || optarg[0] == '=')
                dh_usage_error("--param: expected NAME=VALUE, got '%s'", optarg);
            if (o.nparams >= DH_HASH_MAX_PARAMS) dh_usage_error("--param: at most %d parameters", DH_HASH_MAX_PARAMS);
            o.param[o.nparams++] = optarg;
            break;
        case 's':
            if (dh_parse_i64(optarg, 0, INT64_MAX, &v)) dh_usage_error("--seed: bad value '%s'", optarg);
            o.seed = (uint64_t)v;
            break;
        case 'd': device = optarg; break;
        case 'o': out = optarg; break;
        case O_LIST: list = 1; break;
        default:
            if (!dh_common_option(c, O_PROG, usage)) dh_usage_error("bad option (see --help)");
        }
    }
    if (list) {
        const dh_hash_method *m;
        for (int i = 0; (m = dh_hash_method_at(i)) != NULL; i++) printf("%s\n", m->name);
        return DH_EXIT_OK;
    }
    const char *in = dh_input_arg(argc, argv);
    const dh_hash_method *m = dh_hash_method_find(method);
    if (!m) dh_usage_error("--method: unknown method '%s' (see --list-methods)", method);
    dh_err e;
    dk_device dev = dk_prog_device_parse(device);
    o.use_cuda = dev == DK_CUDA;
    o.note = note_line;
    o.verbose = !dh_quiet;

    /* read the whole features stream */
    dhs_reader *r = dhs_open_path(in, NULL, &e);
    if (!r) dh_die_err(&e, NULL);
    const dhs_schema *s = dhs_reader_schema(r);
    if (strcmp(s->kind, "features") != 0)
        dh_die(DH_EXIT_FAIL, "%s: a '%s' stream, expected features", dh_in_name(in), s->kind);
    int fz = dhs_require_field(s, "z", DHS_F32, 1, &e);
    if (fz < 0 || s->fields[fz].variable) {
        if (fz >= 0) dh_seterr(&e, DH_ESCHEMA, "field z must have a fixed size");
        dh_die_err(&e, dh_in_name(in));
    }
    int D = (int)s->fields[fz].shape[0];
    int fl = dhs_field_index(s, "label");
    if (fl >= 0 && (s->fields[fl].dtype != DHS_I32 || s->fields[fl].ndim != 0))
        dh_die(DH_EXIT_FAIL, "%s: field label must be a scalar i32", dh_in_name(in));
    dhs_table t;
    memset(&t, 0, sizeof t);
    if (dhs_read_table(r, &t, 0, &e)) dh_die_err(&e, NULL);
    dhs_close(r);
    if (t.nrows < 2) dh_die(DH_EXIT_FAIL, "%s: %lld rows: need at least 2", dh_in_name(in), (long long)t.nrows);
    if (m->supervised && fl < 0)
        dh_die(DH_EXIT_FAIL, "%s: no label field: method %s is supervised", dh_in_name(in), m->name);
    const float *z = t.col[fz];
    const int32_t *lab = fl >= 0 ? t.col[fl] : NULL;

    double t0 = dh_now();
    dhs_model model;
    dhs_model_init(&model);
    unsigned used = 0;
    o.param_used = &used;
    int rc = m->fit(z, lab, t.nrows, D, K, &o, &model, &e);
    if (rc) dh_die_err(&e, m->name);
    for (int i = 0; i < o.nparams; i++) /* a misspelt or another method's parameter */
        if (!(used & (1u << i)))
            dh_usage_error("--param %s: not a parameter of %s (or overridden by its option)", o.param[i], m->name);
    dh_note("%s: %d bits from %lld rows of %d-D features in %.1f s", m->name, K, (long long)t.nrows, D, dh_now() - t0);
    /* provenance */
    if (dhs_meta_set_str(model.meta, "program", "dh-inithash") ||
        dhs_meta_set_str(model.meta, "cmdline", dh_cmdline()) ||
        dhs_meta_set_int(model.meta, "seed", (int64_t)o.seed) || dhs_meta_set_int(model.meta, "train_rows", t.nrows))
        dh_die(DH_EXIT_NOMEM, "out of memory");
    dh_meta_carry(model.meta, t.meta);
    if (dh_model_save(out, &model, &e)) dh_die_err(&e, out ? out : "<stdout>");
    dhs_model_free(&model);
    dhs_table_free(&t);
    return DH_EXIT_OK;
}
