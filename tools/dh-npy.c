/* dh-npy — move a stream field to and from NumPy .npy files. */
#include "dh_prog.h"
#include "dhs.h"
#include "npy.h"
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "Usage: dh-npy export --field NAME [--unpack] [-o OUT.npy] [FILE]\n"
    "       dh-npy import --kind KIND --field NAME [--labels LABELS.npy] [--bits] [-o OUT.dhs] DATA.npy\n"
    "Convert between one field of a deephash stream and a NumPy .npy file, so that\n"
    "features and codes can come from and go to other tools.\n"
    "\n"
    "export: write field NAME of the stream (standard input by default) as an array\n"
    "        of shape (rows, *field shape): u8 -> |u1, i32 -> <i4, i64 -> <i8,\n"
    "        f32 -> <f4, f64 -> <f8; a bits field as packed bytes |u1 (rows, ceil(K/8)),\n"
    "        or with --unpack as 0/1 |u1 (rows, K). Variable-length fields cannot be exported.\n"
    "import: make a stream of kind KIND (e.g. features, codes) whose field NAME holds\n"
    "        the rows of DATA.npy (first axis = rows; <f4/<f8 become f32, integer arrays\n"
    "        keep their type; with --bits a 0/1 (rows, K) array becomes packed bits),\n"
    "        plus a 'label' i32 field from --labels (integer array of rows) and an 'id'\n"
    "        str field holding the row number.\n"
    "\n"
    "  -F, --field NAME     the field (export, import)\n"
    "  -k, --kind KIND      the stream kind (import; default features)\n"
    "  -l, --labels FILE    labels .npy for import (1-D integer array)\n"
    "  -b, --bits           import a 0/1 array as a packed bits field\n"
    "  -u, --unpack         export a bits field as 0/1 bytes, one per bit\n"
    "  -o, --output FILE    write to FILE atomically (default: standard output)\n"
    "  -q, --quiet          no messages but errors (dh-npy prints none)\n"
    "  -h, --help           show this help and exit\n"
    "  -V, --version        show the version and exit\n"
    "\n"
    "Exit status: 0 ok, 1 bad input, 2 usage, 3 I/O error, 5 limit.\n";

static void help(void) { fputs(usage, stdout); }

/* The output (-o FILE, or standard output): removed at exit unless
 * committed, so a failed run leaves no file. */
static dh_outfile of;
static const char *out_name(void) { return of.path ? of.path : "<stdout>"; }

/* The .npy header and row parsing is formats/stream/npy.c (shared with the
 * fuzz target tests/fuzz/fuzz_npy.c). */

/* ---- export ------------------------------------------------------------ */
static int do_export(const char *path, const char *field, int unpack) {
    dh_err e;
    dhs_reader *r = dhs_open_path(path, NULL, &e);
    if (!r) dh_die_err(&e, NULL);
    const dhs_schema *s = dhs_reader_schema(r);
    int fi = dhs_field_index(s, field);
    if (fi < 0) dh_die(DH_EXIT_FAIL, "%s: %s stream has no field '%s'", dh_in_name(path), s->kind, field);
    const dhs_field *f = &s->fields[fi];
    if (f->variable)
        dh_die(DH_EXIT_FAIL, "%s: field '%s' has variable length: cannot be an array", dh_in_name(path), field);
    size_t rowb = f->dtype == DHS_BITS && unpack ? (size_t)f->row_elems : (size_t)f->row_bytes;
    unsigned char *data = NULL;
    size_t used = 0, cap = 0;
    int64_t n = 0;
    dhs_chunk *c;
    int rc;
    while ((rc = dhs_read_chunk(r, &c, &e)) == DH_OK) {
        size_t need = used + (size_t)c->nrows * rowb;
        if (need > cap) {
            cap = need * 2;
            data = realloc(data, cap);
            if (!data) dh_die(DH_EXIT_NOMEM, "out of memory");
        }
        if (f->dtype == DHS_BITS && unpack) {
            const uint8_t *src = c->col[fi];
            for (int64_t i = 0; i < c->nrows; i++)
                for (int64_t k = 0; k < f->row_elems; k++)
                    data[used + i * rowb + k] = (src[i * f->row_bytes + (k >> 3)] >> (k & 7)) & 1;
        } else
            memcpy(data + used, c->col[fi], (size_t)c->nrows * rowb);
        used += (size_t)c->nrows * rowb;
        n += c->nrows;
    }
    if (rc != DH_EOF) dh_die_err(&e, NULL);
    int64_t shape[DHS_MAX_DIMS + 1];
    int nd = 1;
    shape[0] = n;
    const char *descr;
    switch (f->dtype) {
    case DHS_U8: descr = "|u1"; break;
    case DHS_I32: descr = "<i4"; break;
    case DHS_I64: descr = "<i8"; break;
    case DHS_F32: descr = "<f4"; break;
    case DHS_F64: descr = "<f8"; break;
    default: descr = "|u1"; break;
    }
    if (f->dtype == DHS_BITS)
        shape[nd++] = unpack ? f->row_elems : f->row_bytes;
    else
        for (int d = 0; d < f->ndim; d++) shape[nd++] = f->shape[d];
    if (npy_write_header(of.f, descr, nd, shape, &e)) dh_die_err(&e, out_name());
    if (used && fwrite(data, 1, used, of.f) != used)
        dh_die(DH_EXIT_IO, "%s: write error: %s", out_name(), strerror(errno));
    if (dh_out_commit(&of, &e)) dh_die_err(&e, NULL);
    free(data);
    dhs_close(r);
    return 0;
}

/* ---- import ------------------------------------------------------------- */
static int do_import(const char *path, const char *kind, const char *field, const char *labels, int bits) {
    const char *name = dh_in_name(path);
    FILE *f = dh_open_in(path);
    npy_hdr h;
    dh_err e;
    if (npy_read_header(f, name, 0, &h, &e)) dh_die_err(&e, NULL);
    int64_t n = h.shape[0];
    dhs_dtype t;
    const char *d = h.descr;
    if (bits) {
        if (h.esize != 1 || h.ndim != 2) dh_die(DH_EXIT_FAIL, "%s: --bits needs a 2-D 0/1 array of u1/b1", name);
        t = DHS_BITS;
    } else if (!strcmp(d, "<f4") || !strcmp(d, "<f8"))
        t = DHS_F32;
    else if (!strcmp(d, "<i4"))
        t = DHS_I32;
    else if (!strcmp(d, "<i8"))
        t = DHS_I64;
    else if (!strcmp(d, "|u1") || !strcmp(d, "|b1"))
        t = DHS_U8;
    else
        dh_die(DH_EXIT_FAIL, "%s: dtype %s cannot be imported", name, d);
    dhs_schema s;
    dhs_schema_init(&s, kind);
    if (dhs_schema_add(&s, field, t, h.ndim - 1, h.shape + 1, &e) < 0) dh_die_err(&e, name);
    int32_t *lab = NULL;
    if (labels) {
        FILE *lf = dh_open_in(labels);
        if (npy_read_labels(lf, labels, n, &lab, &e)) dh_die_err(&e, NULL);
        fclose(lf);
        if (dhs_schema_add(&s, "label", DHS_I32, 0, NULL, &e) < 0) dh_die_err(&e, NULL);
    }
    if (dhs_schema_add(&s, "id", DHS_STR, 0, NULL, &e) < 0) dh_die_err(&e, NULL);
    dhs_meta *meta = dhs_meta_new();
    dhs_meta_set_str(meta, "source", name);
    dhs_meta_set_str(meta, "command", dh_cmdline());
    dhs_writer *w = dhs_writer_open(of.f, out_name(), &s, meta, &e);
    dhs_meta_free(meta);
    if (!w) dh_die_err(&e, NULL);
    const dhs_field *fl = &s.fields[0];
    size_t in_row = (size_t)h.elems * h.esize;
    unsigned char *in = malloc(in_row ? in_row : 1);
    unsigned char *row = malloc((size_t)fl->row_bytes + 1);
    if (!in || !row) dh_die(DH_EXIT_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        if (npy_read_row(f, name, &h, t == DHS_BITS, i, in, row, &e)) {
            dhs_writer_abort(w);
            dh_die_err(&e, NULL);
        }
        char id[32];
        uint32_t idl = (uint32_t)snprintf(id, sizeof id, "%lld", (long long)i);
        const void *cols[3];
        const uint32_t *lens[3] = { 0 };
        int k = 0;
        cols[k++] = row;
        if (lab) cols[k++] = &lab[i];
        lens[k] = &idl;
        cols[k++] = id;
        if (dhs_write_rows(w, 1, cols, lens, &e)) {
            dhs_writer_abort(w);
            dh_die_err(&e, NULL);
        }
    }
    if (fgetc(f) != EOF) {
        dhs_writer_abort(w);
        dh_die(DH_EXIT_FAIL, "%s: more data than the shape says", name);
    }
    if (dhs_writer_close(w, &e) || dh_out_commit(&of, &e)) dh_die_err(&e, NULL);
    free(in);
    free(row);
    free(lab);
    if (f != stdin) fclose(f);
    return 0;
}

int main(int argc, char **argv) {
    dh_prog_init("dh-npy", argc, argv);
    static const struct option opts[] = { { "field", required_argument, 0, 'F' },
                                          { "kind", required_argument, 0, 'k' },
                                          { "labels", required_argument, 0, 'l' },
                                          { "bits", no_argument, 0, DH_OPT_BITS },
                                          { "unpack", no_argument, 0, 'u' },
                                          { "output", required_argument, 0, DH_OPT_OUTPUT },
                                          { "quiet", no_argument, 0, DH_OPT_QUIET },
                                          { "help", no_argument, 0, DH_OPT_HELP },
                                          { "version", no_argument, 0, DH_OPT_VERSION },
                                          { 0, 0, 0, 0 } };
    const char *field = NULL, *kind = "features", *labels = NULL, *out = NULL;
    int bits = 0, unpack = 0, c;
    while ((c = getopt_long(argc, argv, "F:k:l:buo:qhV", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'F': field = optarg; break;
        case 'k': kind = optarg; break;
        case 'l': labels = optarg; break;
        case 'b': bits = 1; break;
        case 'u': unpack = 1; break;
        default:
            if (!dh_common_option(c, 0, help)) dh_bad_option(argv); /* -q, --help, --version */
        }
    }
    if (optind >= argc) dh_usage_error("give a command: export or import (see dh-npy --help)");
    const char *cmd = argv[optind++];
    if (!field) dh_usage_error("--field NAME is required");
    if (argc - optind > 1) dh_usage_error("one input at most");
    const char *path = optind < argc ? argv[optind] : NULL;
    if (strcmp(cmd, "export") && strcmp(cmd, "import")) dh_usage_error("unknown command '%s' (export or import)", cmd);
    dh_err e;
    if (dh_out_open_guarded(&of, out, &e)) dh_die_err(&e, NULL);
    if (!strcmp(cmd, "export")) return do_export(path, field, unpack);
    return do_import(path, kind, field, labels, bits);
}
