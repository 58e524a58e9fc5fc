/* dh-split — split a stream in two, deterministically from a seed: a
 * random count, a random fraction, or a number of rows per class go to
 * the first output; the rest to the second. Rows keep their input order.
 * Or cut a database into N shards (--shards: contiguous ranges of rows, or
 * by a hash of each row's id), each a stream that says which part of the
 * whole it is (kernels/search/shard.h), for dh-rank and dh-merge. */
#include "dh_prog.h"
#include "dhs.h"
#include "dh_rng.h"
#include "shard.h"
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

static const char usage[] =
    "Usage: dh-split (--count N | --fraction F | --per-class N) -o FIRST [-r REST] [OPTION]... [FILE]\n"
    "   or: dh-split --shards N [--shard-by contiguous|hash] -o PATTERN [FILE]\n"
    "Split a deephash stream (standard input by default) into two streams: a random\n"
    "selection goes to FIRST, every other row to REST. The selection depends only on\n"
    "the seed and the input, and rows keep their input order in both outputs.\n"
    "\n"
    "  -c, --count N       N rows chosen uniformly at random\n"
    "  -f, --fraction F    round(F x rows) rows chosen at random (0 <= F <= 1)\n"
    "  -p, --per-class N   N rows of every class (field 'label'), e.g. 100 queries\n"
    "                      per class; an error if a class has fewer than N rows\n"
    "      --shards N      cut the stream into N shards (1..%d), written to the names\n"
    "                      -o PATTERN gives with its %%d (or %%03d ...) replaced by 0..N-1\n"
    "      --shard-by HOW  contiguous (default: N ranges of rows) or hash (by a hash of\n"
    "                      each row's id, or of its row number when it has none)\n"
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

static void help(void) { printf(usage, DH_SHARDS_MAX); }

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

/* ---- --shards ---------------------------------------------------------------------------------------- */

/* The shard of a row: by a hash of its id (FNV-1a, 64 bits, mixed), or of
 * its row number when the stream has no id field or the id is empty. */
static int hash_shard(const char *id, size_t len, int64_t row, int n) {
    uint64_t h;
    if (len) {
        h = 0xcbf29ce484222325ull;
        for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)id[i]) * 0x100000001b3ull;
    } else
        h = (uint64_t)row;
    return (int)(dh_splitmix64(&h) % (uint64_t)n);
}

typedef struct gather {
    int64_t n, cap;
    int64_t *sel; /* rows of the chunk */
} gather;

/* Write the rows sel[0..n) of a chunk to w, plus the field "row" (whole
 * stream row numbers row0 + sel[i]) when with_row. */
static int write_rows_of(dhs_writer *w, const dhs_schema *s, const dhs_chunk *ch, const gather *g, int64_t row0,
                         int with_row, dh_err *e) {
    if (!g->n) return DH_OK;
    const void *cols[DHS_MAX_FIELDS];
    uint32_t *lens[DHS_MAX_FIELDS] = { 0 };
    void *bufs[DHS_MAX_FIELDS] = { 0 };
    int rc = DH_OK, nf = s->nfields;
    for (int f = 0; !rc && f < nf; f++) {
        const dhs_field *fd = &s->fields[f];
        if (!fd->variable) {
            unsigned char *b = dh_malloc(e, (size_t)g->n, (size_t)fd->row_bytes);
            if (!(bufs[f] = b)) rc = DH_ENOMEM;
            for (int64_t i = 0; !rc && i < g->n; i++)
                memcpy(b + i * fd->row_bytes, (const unsigned char *)ch->col[f] + g->sel[i] * fd->row_bytes,
                       (size_t)fd->row_bytes);
            cols[f] = b;
            continue;
        }
        size_t es = fd->dtype == DHS_STR ? 1 : dhs_dtype_size(fd->dtype), tot = 0;
        lens[f] = dh_malloc(e, (size_t)g->n, sizeof(uint32_t));
        if (!lens[f]) rc = DH_ENOMEM;
        for (int64_t i = 0; !rc && i < g->n; i++) {
            lens[f][i] = (uint32_t)(ch->off[f][g->sel[i] + 1] - ch->off[f][g->sel[i]]);
            tot += lens[f][i] * es;
        }
        unsigned char *b = rc ? NULL : dh_malloc(e, tot ? tot : 1, 1);
        if (!rc && !(bufs[f] = b)) rc = DH_ENOMEM;
        for (int64_t i = 0, o = 0; !rc && i < g->n; i++) {
            if (lens[f][i])
                memcpy(b + o, (const unsigned char *)ch->col[f] + ch->off[f][g->sel[i]] * es, lens[f][i] * es);
            o += (int64_t)(lens[f][i] * es);
        }
        cols[f] = b;
    }
    if (!rc && with_row) {
        int64_t *b = dh_malloc(e, (size_t)g->n, sizeof *b);
        if (!(bufs[nf] = b)) rc = DH_ENOMEM;
        for (int64_t i = 0; !rc && i < g->n; i++) b[i] = row0 + g->sel[i];
        cols[nf] = b;
    }
    if (!rc) rc = dhs_write_rows(w, g->n, cols, (const uint32_t *const *)lens, e);
    for (int f = 0; f < DHS_MAX_FIELDS; f++) {
        free(lens[f]);
        free(bufs[f]);
    }
    return rc;
}

/* Pass 2 of --shards: every row to its shard, each shard a complete stream
 * with the shard metadata of kernels/search/shard.h. */
static int write_shards(FILE *in, const char *name, int64_t n, int N, const char *by, const char *pattern) {
    dh_err e;
    int hash = !strcmp(by, "hash");
    rewind(in);
    dhs_reader *r = dhs_open(in, name, NULL, &e);
    if (!r) dh_die_err(&e, NULL);
    const dhs_meta *im = dhs_reader_meta(r);
    if (dhs_meta_has(im, "shards"))
        dh_die(DH_EXIT_FAIL, "%s: already a shard (metadata 'shards'): shard the whole database", name);
    dhs_schema sch = *dhs_reader_schema(r);
    int idf = dhs_field_index(&sch, "id");
    if (idf >= 0 && sch.fields[idf].dtype != DHS_STR) idf = -1;
    if (hash) {
        if (dhs_field_index(&sch, "row") >= 0)
            dh_die(DH_EXIT_FAIL, "%s: the stream has a field 'row' already; --shard-by hash adds one", name);
        if (dhs_schema_add(&sch, "row", DHS_I64, 0, NULL, &e) < 0) dh_die_err(&e, name);
    }
    dh_outfile *o = calloc((size_t)N, sizeof *o);
    dhs_writer **w = calloc((size_t)N, sizeof *w);
    gather *g = calloc((size_t)N, sizeof *g);
    char **names = calloc((size_t)N, sizeof *names);
    if (!o || !w || !g || !names) dh_die(DH_EXIT_NOMEM, "out of memory");
    for (int k = 0; k < N; k++) {
        char buf[4096];
        if (dh_shard_name(pattern, k, buf, sizeof buf, &e) || !(names[k] = strdup(buf)))
            dh_die(DH_EXIT_USAGE, "--output: %s", e.msg);
    }
    for (int k = 0; k < N; k++) {
        dhs_meta *meta = dhs_meta_copy(im);
        if (!meta) dh_die(DH_EXIT_NOMEM, "out of memory");
        dhs_meta_set_str(meta, "split_command", dh_cmdline());
        dhs_meta_set_int(meta, "shard", k);
        dhs_meta_set_int(meta, "shards", N);
        dhs_meta_set_str(meta, "shard_by", by);
        dhs_meta_set_int(meta, "shard_total_rows", n);
        dhs_meta_set_str(meta, "shard_of", name);
        if (!hash) dhs_meta_set_int(meta, "shard_row0", n * k / N);
        if (dh_out_open(&o[k], names[k], &e)) goto fail;
        w[k] = dhs_writer_open(o[k].f, names[k], &sch, meta, &e);
        dhs_meta_free(meta);
        if (!w[k]) goto fail;
    }
    int64_t row = 0;
    dhs_chunk *ch;
    int rc;
    while ((rc = dhs_read_chunk(r, &ch, &e)) == DH_OK) {
        if (!hash) { /* runs of rows: shard k holds rows [n k / N, n (k + 1) / N) */
            int64_t i = 0;
            while (i < ch->nrows) {
                int64_t gr = row + i;
                int k = (int)((gr * N) / (n ? n : 1));
                while (k + 1 < N && n * (k + 1) / N <= gr) k++;
                while (k > 0 && n * k / N > gr) k--;
                int64_t end = n * (k + 1) / N - row;
                if (end > ch->nrows) end = ch->nrows;
                if (dhs_write_chunk_range(w[k], ch, i, end - i, &e)) goto fail;
                i = end;
            }
        } else {
            for (int k = 0; k < N; k++) g[k].n = 0;
            for (int64_t i = 0; i < ch->nrows; i++) {
                size_t len = 0;
                const char *id = idf >= 0 ? dhs_str_at(ch, idf, i, &len) : NULL;
                int k = hash_shard(id, id ? len : 0, row + i, N);
                if (g[k].n == g[k].cap) {
                    int64_t nc = g[k].cap ? 2 * g[k].cap : 64;
                    int64_t *ns = realloc(g[k].sel, (size_t)nc * sizeof *ns);
                    if (!ns) dh_die(DH_EXIT_NOMEM, "out of memory");
                    g[k].sel = ns;
                    g[k].cap = nc;
                }
                g[k].sel[g[k].n++] = i;
            }
            for (int k = 0; k < N; k++)
                if (write_rows_of(w[k], dhs_reader_schema(r), ch, &g[k], row, 1, &e)) goto fail;
        }
        row += ch->nrows;
    }
    if (rc != DH_EOF) goto fail;
    if (row != n) {
        dh_seterr(&e, DH_EFORMAT, "%s: input changed between passes", name);
        goto fail;
    }
    for (int k = 0; k < N; k++) {
        dhs_writer *wk = w[k];
        w[k] = NULL;
        if (dhs_writer_close(wk, &e)) goto fail;
    }
    for (int k = 0; k < N; k++)
        if (dh_out_commit(&o[k], &e)) goto fail;
    dhs_close(r);
    for (int k = 0; k < N; k++) {
        free(names[k]);
        free(g[k].sel);
    }
    free(names);
    free(g);
    free(w);
    free(o);
    return 0;
fail:
    for (int k = 0; k < N; k++) {
        dhs_writer_abort(w[k]);
        dh_out_abort(&o[k]); /* a no-op once committed */
    }
    dh_die_err(&e, NULL);
}

int main(int argc, char **argv) {
    dh_prog_init("dh-split", argc, argv);
    static const struct option opts[] = {
        { "count", required_argument, 0, 'c' },        { "fraction", required_argument, 0, 'f' },
        { "per-class", required_argument, 0, 'p' },    { "output", required_argument, 0, DH_OPT_OUTPUT },
        { "rest", required_argument, 0, 'r' },         { "seed", required_argument, 0, DH_OPT_SEED },
        { "quiet", no_argument, 0, DH_OPT_QUIET },     { "help", no_argument, 0, DH_OPT_HELP },
        { "version", no_argument, 0, DH_OPT_VERSION }, { "shards", required_argument, 0, 256 },
        { "shard-by", required_argument, 0, 257 },     { 0, 0, 0, 0 }
    };
    int64_t count = -1, per_class = -1, seed = 1;
    double fraction = -1;
    const char *out = NULL, *rest = NULL, *shard_by = NULL;
    int modes = 0, c, shards = 0;
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
        case 256:
            modes++;
            if (dh_parse_int(optarg, 1, DH_SHARDS_MAX, &shards))
                dh_usage_error("--shards: '%s' is not in 1..%d", optarg, DH_SHARDS_MAX);
            break;
        case 257:
            if (strcmp(optarg, "contiguous") && strcmp(optarg, "hash"))
                dh_usage_error("--shard-by: '%s' is not contiguous or hash", optarg);
            shard_by = optarg;
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
    if (modes != 1) dh_usage_error("give exactly one of --count, --fraction, --per-class, --shards");
    if (!out) dh_usage_error("--output %s is required", shards ? "PATTERN" : "FILE");
    if (shard_by && !shards) dh_usage_error("--shard-by is for --shards");
    if (shards && rest) dh_usage_error("--rest is not for --shards: every row goes to a shard");
    if (shards) {
        char name[4096];
        dh_err pe;
        if (dh_shard_name(out, 0, name, sizeof name, &pe)) dh_usage_error("--output: %s", pe.msg);
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (rlim_t)shards + 16 > rl.rlim_cur)
            dh_usage_error("--shards %d: more files than this process may open at once (ulimit -n %llu)", shards,
                           (unsigned long long)rl.rlim_cur);
    }
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
    if (shards) return write_shards(in, name, n, shards, shard_by ? shard_by : "contiguous", out);

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
