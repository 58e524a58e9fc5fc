/* dh-split — split a stream in two, deterministically from a seed: a
 * random count, a random fraction, or a number of rows per class go to
 * the first output; the rest to the second. Rows keep their input order. */
#include "dh_prog.h"
#include "dhs.h"
#include "dh_rng.h"
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "Usage: dh-split (--count N | --fraction F | --per-class N) -o FIRST [-r REST] [OPTION]... [FILE]\n"
    "Split a deephash stream (standard input by default) into two streams: a random\n"
    "selection goes to FIRST, every other row to REST. The selection depends only on\n"
    "the seed and the input, and rows keep their input order in both outputs.\n"
    "\n"
    "  -c, --count N       N rows chosen uniformly at random\n"
    "  -f, --fraction F    round(F x rows) rows chosen at random (0 <= F <= 1)\n"
    "  -p, --per-class N   N rows of every class (field 'label'), e.g. 100 queries\n"
    "                      per class; an error if a class has fewer than N rows\n"
    "  -o, --output FILE   the selected rows (required)\n"
    "  -r, --rest FILE     the other rows (optional)\n"
    "  -s, --seed S        random seed (default 1)\n"
    "  -q, --quiet         no messages but errors (dh-split prints none)\n"
    "  -h, --help          show this help and exit\n"
    "  -V, --version       show the version and exit\n"
    "\n"
    "Outputs are written atomically (temporary file, then rename). Standard input is\n"
    "spooled to a temporary file, since the split needs two passes.\n"
    "Exit status: 0 ok, 1 damaged input or impossible split, 2 usage, 3 I/O error.\n";

static void help(void) { fputs(usage, stdout); }

static uint64_t below(uint64_t *s, uint64_t n) { return dh_splitmix64(s) % n; } /* n small relative to 2^64 */

/* Mark k of the n indices in idx[] as selected (partial Fisher-Yates). */
static void choose(int64_t *idx, int64_t n, int64_t k, uint8_t *sel, uint64_t *rng) {
    for (int64_t i = 0; i < k; i++) {
        int64_t j = i + (int64_t)below(rng, (uint64_t)(n - i));
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        sel[idx[i]] = 1;
    }
}

int main(int argc, char **argv) {
    dh_prog_init("dh-split", argc, argv);
    static const struct option opts[] = {
        { "count", required_argument, 0, 'c' },        { "fraction", required_argument, 0, 'f' },
        { "per-class", required_argument, 0, 'p' },    { "output", required_argument, 0, DH_OPT_OUTPUT },
        { "rest", required_argument, 0, 'r' },         { "seed", required_argument, 0, DH_OPT_SEED },
        { "quiet", no_argument, 0, DH_OPT_QUIET },     { "help", no_argument, 0, DH_OPT_HELP },
        { "version", no_argument, 0, DH_OPT_VERSION }, { 0, 0, 0, 0 }
    };
    int64_t count = -1, per_class = -1, seed = 1;
    double fraction = -1;
    const char *out = NULL, *rest = NULL;
    int modes = 0, c;
    while ((c = getopt_long(argc, argv, "c:f:p:o:r:s:qhV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            modes++;
            if (dh_parse_i64(optarg, 0, INT64_MAX, &count)) dh_usage_error("--count: '%s' is not a row count", optarg);
            break;
        case 'f':
            modes++;
            if (dh_parse_double(optarg, 0, 1, &fraction)) dh_usage_error("--fraction: '%s' is not in [0, 1]", optarg);
            break;
        case 'p':
            modes++;
            if (dh_parse_i64(optarg, 0, INT64_MAX, &per_class))
                dh_usage_error("--per-class: '%s' is not a row count", optarg);
            break;
        case 'o': out = optarg; break;
        case 'r': rest = optarg; break;
        case 's':
            if (dh_parse_i64(optarg, INT64_MIN, INT64_MAX, &seed))
                dh_usage_error("--seed: '%s' is not an integer", optarg);
            break;
        default:
            if (!dh_common_option(c, 0, help)) dh_bad_option(argv); /* -q, --help, --version */
        }
    }
    if (modes != 1) dh_usage_error("give exactly one of --count, --fraction, --per-class");
    if (!out) dh_usage_error("--output FILE is required");
    if (rest) { /* one would overwrite the other (or both interleave on stdout) */
        struct stat so, sr;
        if (!strcmp(out, rest) ||
            (stat(out, &so) == 0 && stat(rest, &sr) == 0 && so.st_dev == sr.st_dev && so.st_ino == sr.st_ino))
            dh_usage_error("--output and --rest name the same file '%s'", rest);
    }
    if (argc - optind > 1) dh_usage_error("one input at most");
    const char *path = optind < argc ? argv[optind] : NULL;
    const char *name = dh_in_name(path);
    dh_err e;

    /* Two passes: spool standard input to a temporary file first. */
    FILE *in = dh_open_in(path);
    if (in == stdin) {
        FILE *t = tmpfile();
        if (!t) dh_die(DH_EXIT_IO, "temporary file: %s", strerror(errno));
        char buf[1 << 16];
        size_t k;
        while ((k = fread(buf, 1, sizeof buf, stdin)) > 0)
            if (fwrite(buf, 1, k, t) != k) dh_die(DH_EXIT_IO, "temporary file: %s", strerror(errno));
        if (ferror(stdin)) dh_die(DH_EXIT_IO, "%s: read error", name);
        rewind(t);
        in = t;
    }

    /* Pass 1: rows and labels. */
    dhs_reader *r = dhs_open(in, name, NULL, &e);
    if (!r) dh_die_err(&e, NULL);
    int lf = -1;
    if (per_class >= 0) {
        lf = dhs_require_field(dhs_reader_schema(r), "label", DHS_I32, 0, &e);
        if (lf < 0) dh_die_err(&e, name);
    }
    int32_t *labels = NULL;
    int64_t n = 0, cap = 0;
    dhs_chunk *ch;
    int rc;
    while ((rc = dhs_read_chunk(r, &ch, &e)) == DH_OK) {
        if (lf >= 0) {
            if (n + ch->nrows > cap) {
                cap = 2 * (n + ch->nrows);
                labels = realloc(labels, (size_t)cap * sizeof *labels);
                if (!labels) dh_die(DH_EXIT_NOMEM, "out of memory");
            }
            memcpy(labels + n, ch->col[lf], (size_t)ch->nrows * sizeof *labels);
        }
        n += ch->nrows;
    }
    if (rc != DH_EOF) dh_die_err(&e, NULL);
    dhs_close(r);

    uint8_t *sel = calloc((size_t)n + 1, 1);
    int64_t *idx = malloc(((size_t)n + 1) * sizeof *idx);
    if (!sel || !idx) dh_die(DH_EXIT_NOMEM, "out of memory");
    uint64_t rng = (uint64_t)seed ^ 0x5eed5eed5eedull;
    if (count >= 0 || fraction >= 0) {
        int64_t k = count >= 0 ? count : (int64_t)(fraction * (double)n + 0.5);
        if (k > n)
            dh_die(DH_EXIT_FAIL, "%s: --count %lld is more than the %lld rows", name, (long long)k, (long long)n);
        for (int64_t i = 0; i < n; i++) idx[i] = i;
        choose(idx, n, k, sel, &rng);
    } else {
        int32_t lo = 0, hi = -1;
        for (int64_t i = 0; i < n; i++) {
            if (i == 0 || labels[i] < lo) lo = labels[i];
            if (i == 0 || labels[i] > hi) hi = labels[i];
        }
        for (int64_t l = lo; l <= hi && n; l++) { /* classes in label order */
            int64_t m = 0;
            for (int64_t i = 0; i < n; i++)
                if (labels[i] == l) idx[m++] = i;
            if (m == 0) continue;
            if (m < per_class)
                dh_die(DH_EXIT_FAIL, "%s: class %lld has %lld rows, fewer than --per-class %lld", name, (long long)l,
                       (long long)m, (long long)per_class);
            choose(idx, m, per_class, sel, &rng);
        }
    }

    /* Pass 2: route the rows. */
    rewind(in);
    r = dhs_open(in, name, NULL, &e);
    if (!r) dh_die_err(&e, NULL);
    dh_outfile o[2];
    dhs_writer *w[2] = { 0 };
    const char *paths[2] = { out, rest };
    dhs_meta *meta = dhs_meta_copy(dhs_reader_meta(r));
    if (!meta) dh_die(DH_EXIT_NOMEM, "out of memory");
    dhs_meta_set_str(meta, "split_command", dh_cmdline());
    for (int k = 0; k < 2; k++) {
        if (!paths[k]) continue;
        if (dh_out_open(&o[k], paths[k], &e)) dh_die_err(&e, NULL);
        dhs_meta_set_str(meta, "split_part", k == 0 ? "selected" : "rest");
        w[k] = dhs_writer_open(o[k].f, paths[k], dhs_reader_schema(r), meta, &e);
        if (!w[k]) dh_die_err(&e, NULL);
    }
    dhs_meta_free(meta);
    int64_t row = 0;
    while ((rc = dhs_read_chunk(r, &ch, &e)) == DH_OK) {
        int64_t i = 0;
        while (i < ch->nrows) { /* runs of rows going to the same output */
            int part = sel[row + i] ? 0 : 1;
            int64_t j = i + 1;
            while (j < ch->nrows && (sel[row + j] ? 0 : 1) == part) j++;
            if (w[part] && dhs_write_chunk_range(w[part], ch, i, j - i, &e)) goto fail;
            i = j;
        }
        row += ch->nrows;
    }
    if (rc != DH_EOF) goto fail;
    if (row != n) {
        dh_seterr(&e, DH_EFORMAT, "%s: input changed between passes", name);
        goto fail;
    }
    for (int k = 0; k < 2; k++) {
        if (!w[k]) continue;
        if (dhs_writer_close(w[k], &e)) {
            w[k] = NULL;
            goto fail;
        }
        w[k] = NULL;
        if (dh_out_commit(&o[k], &e)) goto fail;
    }
    dhs_close(r);
    free(sel);
    free(idx);
    free(labels);
    return 0;
fail:
    for (int k = 0; k < 2; k++) {
        if (!paths[k]) continue;
        dhs_writer_abort(w[k]);
        dh_out_abort(&o[k]);
    }
    dh_die_err(&e, NULL);
}
