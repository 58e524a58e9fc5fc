/* dh-info — describe a deephash stream or model: kind, schema, metadata,
 * row count and per-field summaries; --verify checks it end to end. */
#include "dh_prog.h"
#include "dhs.h"
#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] = "Usage: dh-info [OPTION]... [FILE]...\n"
                            "Describe deephash streams and models (standard input when no FILE or FILE is -):\n"
                            "kind, fields, metadata, row count, and per-field summaries (min/max/mean of\n"
                            "numbers, class histogram of labels, bit balance of codes, tensors of models).\n"
                            "\n"
                            "  -v, --verify     only check the stream end to end (checksums, row counts,\n"
                            "                   trailer); print one line per file; exit 1 on any damage\n"
                            "  -M, --meta       print only the metadata, as JSON\n"
                            "  -q, --quiet      with --verify, print nothing; the exit status tells\n"
                            "  -h, --help       show this help and exit\n"
                            "  -V, --version    show the version and exit\n"
                            "\n"
                            "Exit status: 0 ok, 1 damaged or malformed input, 2 usage, 3 I/O error, 5 limit.\n";

static void help(void) { fputs(usage, stdout); }

typedef struct {
    double min, max, sum;
    uint64_t n;
    uint64_t ones;           /* bits: set bits */
    int64_t *hist;           /* label histogram */
    int64_t hist_lo, hist_n; /* histogram over [hist_lo, hist_lo + hist_n) */
    int64_t hist_other;
    uint64_t len_min, len_max;
} summary;

static void sum_add(summary *s, double v) {
    if (!isfinite(v)) return;
    if (s->n == 0 || v < s->min) s->min = v;
    if (s->n == 0 || v > s->max) s->max = v;
    s->sum += v;
    s->n++;
}

static void summarize_chunk(const dhs_schema *sc, const dhs_chunk *c, summary *S) {
    for (int f = 0; f < sc->nfields; f++) {
        const dhs_field *fl = &sc->fields[f];
        summary *s = &S[f];
        uint64_t nel = fl->variable ? c->off[f][c->nrows] : (uint64_t)c->nrows * fl->row_elems;
        const void *p = c->col[f];
        if (fl->variable) {
            for (int64_t i = 0; i < c->nrows; i++) {
                uint64_t l = c->off[f][i + 1] - c->off[f][i];
                if (s->len_min > l || (s->n == 0 && i == 0 && !s->len_max)) s->len_min = l;
                if (l > s->len_max) s->len_max = l;
            }
        }
        switch (fl->dtype) {
        case DHS_U8:
            for (uint64_t i = 0; i < nel; i++) sum_add(s, ((const uint8_t *)p)[i]);
            break;
        case DHS_I32:
            for (uint64_t i = 0; i < nel; i++) {
                int32_t v = ((const int32_t *)p)[i];
                sum_add(s, v);
                if (s->hist) {
                    if (v >= s->hist_lo && v < s->hist_lo + s->hist_n)
                        s->hist[v - s->hist_lo]++;
                    else
                        s->hist_other++;
                }
            }
            break;
        case DHS_I64:
            for (uint64_t i = 0; i < nel; i++) sum_add(s, (double)((const int64_t *)p)[i]);
            break;
        case DHS_F32:
            for (uint64_t i = 0; i < nel; i++) sum_add(s, ((const float *)p)[i]);
            break;
        case DHS_F64:
            for (uint64_t i = 0; i < nel; i++) sum_add(s, ((const double *)p)[i]);
            break;
        case DHS_BITS:
            for (int64_t i = 0; i < c->nrows; i++) {
                const uint8_t *row = (const uint8_t *)p + i * fl->row_bytes;
                for (int64_t k = 0; k < fl->row_elems; k++) s->ones += (row[k >> 3] >> (k & 7)) & 1;
            }
            s->n += (uint64_t)c->nrows * fl->row_elems;
            break;
        case DHS_STR: s->n += (uint64_t)c->nrows; break;
        }
    }
}

static void print_model(const char *name, dhs_reader *r) {
    dhs_model m;
    dh_err e;
    if (dhs_model_read(r, &m, &e)) dh_die_err(&e, NULL);
    int64_t total = 0;
    printf("tensors:  %d\n", m.ntensors);
    for (int i = 0; i < m.ntensors; i++) {
        const dhs_tensor *t = &m.t[i];
        char sh[128] = "";
        for (int d = 0, o = 0; d < t->ndim; d++)
            o += snprintf(sh + o, sizeof sh - o, "%s%lld", d ? "x" : "", (long long)t->shape[d]);
        double mn = 0, mx = 0, sum = 0, sq = 0;
        for (int64_t k = 0; k < t->n; k++) {
            double v = t->data[k];
            if (k == 0 || v < mn) mn = v;
            if (k == 0 || v > mx) mx = v;
            sum += v;
            sq += v * v;
        }
        printf("  %-28s %-16s min %-11.4g max %-11.4g mean %-11.4g rms %.4g\n", t->name, sh[0] ? sh : "scalar", mn, mx,
               t->n ? sum / t->n : 0, t->n ? sqrt(sq / t->n) : 0);
        total += t->n;
    }
    printf("parameters: %lld\n", (long long)total);
    (void)name;
    dhs_model_free(&m);
}

static int info(const char *path, int verify, int meta_only) {
    dh_err e;
    dhs_reader *r = dhs_open_path(path, NULL, &e);
    if (!r) dh_die_err(&e, NULL);
    const dhs_schema *sc = dhs_reader_schema(r);
    const dhs_meta *meta = dhs_reader_meta(r);
    if (meta_only) {
        char *j = dhs_meta_to_json(meta);
        if (!j) dh_die(DH_EXIT_NOMEM, "out of memory");
        printf("%s\n", j);
        free(j);
        dhs_close(r);
        return 0;
    }
    if (verify) {
        dhs_chunk *c;
        int rc;
        int64_t chunks = 0;
        while ((rc = dhs_read_chunk(r, &c, &e)) == DH_OK) chunks++;
        if (rc != DH_EOF) dh_die_err(&e, NULL);
        if (!dh_quiet)
            printf("%s: ok: %s stream, %lld rows in %lld chunks, %d stream%s\n", dh_in_name(path), sc->kind,
                   (long long)dhs_reader_rows(r), (long long)chunks, dhs_reader_streams(r),
                   dhs_reader_streams(r) == 1 ? "" : "s");
        dhs_close(r);
        return 0;
    }
    char desc[2048];
    dhs_schema_describe(sc, desc, sizeof desc);
    printf("file:     %s\n", dh_in_name(path));
    printf("kind:     %s\n", sc->kind);
    printf("fields:   %s\n", desc);
    char *j = dhs_meta_to_json(meta);
    printf("meta:     %s\n", j ? j : "?");
    free(j);
    if (!strcmp(sc->kind, "model")) {
        print_model(path, r);
        dhs_close(r);
        return 0;
    }
    summary S[DHS_MAX_FIELDS];
    memset(S, 0, sizeof S);
    int nclasses = dhs_meta_len(meta, "classes");
    for (int f = 0; f < sc->nfields; f++) {
        if (sc->fields[f].dtype == DHS_I32 && sc->fields[f].ndim == 0 && !strcmp(sc->fields[f].name, "label")) {
            S[f].hist_lo = 0;
            S[f].hist_n = nclasses > 0 ? nclasses : 1000;
            S[f].hist = calloc((size_t)S[f].hist_n, sizeof(int64_t));
            if (!S[f].hist) dh_die(DH_EXIT_NOMEM, "out of memory");
        }
    }
    dhs_chunk *c;
    int rc;
    int64_t chunks = 0;
    while ((rc = dhs_read_chunk(r, &c, &e)) == DH_OK) {
        summarize_chunk(sc, c, S);
        chunks++;
    }
    if (rc != DH_EOF) dh_die_err(&e, NULL);
    printf("rows:     %lld (%lld chunks, %d stream%s)\n", (long long)dhs_reader_rows(r), (long long)chunks,
           dhs_reader_streams(r), dhs_reader_streams(r) == 1 ? "" : "s");
    for (int f = 0; f < sc->nfields; f++) {
        const dhs_field *fl = &sc->fields[f];
        summary *s = &S[f];
        printf("  %-10s ", fl->name);
        if (fl->dtype == DHS_STR)
            printf("strings, length %llu..%llu", (unsigned long long)s->len_min, (unsigned long long)s->len_max);
        else if (fl->dtype == DHS_BITS)
            printf("%lld-bit codes, fraction of ones %.4f", (long long)fl->row_elems,
                   s->n ? (double)s->ones / s->n : 0.0);
        else if (s->n)
            printf("min %.6g  max %.6g  mean %.6g", s->min, s->max, s->sum / s->n);
        else
            printf("no values");
        if (fl->variable && fl->dtype != DHS_STR)
            printf("  (lengths %llu..%llu)", (unsigned long long)s->len_min, (unsigned long long)s->len_max);
        printf("\n");
        if (s->hist) {
            for (int64_t k = 0; k < s->hist_n; k++) {
                if (!s->hist[k] && nclasses <= 0) continue;
                const char *cn = nclasses > 0 ? dhs_meta_str_at(meta, "classes", (int)k) : NULL;
                printf("             %4lld %-16s %lld\n", (long long)k, cn ? cn : "", (long long)s->hist[k]);
            }
            if (s->hist_other) printf("             other labels     %lld\n", (long long)s->hist_other);
            free(s->hist);
        }
    }
    dhs_close(r);
    return 0;
}

int main(int argc, char **argv) {
    dh_prog_init("dh-info", argc, argv);
    static const struct option opts[] = { { "verify", no_argument, 0, 'v' },  { "meta", no_argument, 0, 'M' },
                                          { "quiet", no_argument, 0, 'q' },   { "help", no_argument, 0, 'h' },
                                          { "version", no_argument, 0, 'V' }, { 0, 0, 0, 0 } };
    int verify = 0, meta_only = 0, c;
    static const dh_moved moved[] = { { 'm', "metadata", 'M', "meta" }, { 0 } };
    dh_prog_moved(moved);
    while ((c = getopt_long(argc, argv, "vMqhV", opts, NULL)) != -1) {
        switch (c) {
        case 'v': verify = 1; break;
        case 'M': meta_only = 1; break;
        default:
            if (!dh_common_option(c, 0, help)) dh_bad_option(argv); /* -q, --help, --version */
        }
    }
    if (optind >= argc) info(NULL, verify, meta_only);
    for (int i = optind; i < argc; i++) {
        if (i > optind && !verify) printf("\n");
        info(argv[i], verify, meta_only);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) dh_die(DH_EXIT_IO, "<stdout>: write error: %s", strerror(errno));
    return 0;
}
