/* dh-merge — merge the rankings of the shards of a database (dh-split
 * --shards, then dh-rank on each shard, anywhere) into the rankings of the
 * whole database: exactly what dh-rank on the unsharded database writes
 * (the same rows and distances in the same order: distance, then row of
 * the whole database), cut to the same --top and --radius. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include "dh_prog.h"
#include "dhs.h"
#include "rankings.h"
#include "shard.h"

static void usage(void) {
    printf("Usage: dh-merge [OPTION]... RANKINGS...\n"
           "Merge the rankings of every shard of a database (dh-rank on each file of\n"
           "dh-split --shards) into the rankings of the whole database: the same rows,\n"
           "distances and order as dh-rank on the unsharded database.\n\n"
           "  -o, --output FILE    write the rankings to FILE atomically (default: stdout)\n"
           "  -D, --db FILE        the whole database's name for the metadata (default: the\n"
           "                       name dh-split was given, which dh-map then reads)\n"
           "  -q, --quiet          no report\n"
           "  -h, --help           this help\n"
           "  -V, --version        version\n\n"
           "Give the rankings of all N shards, in any order ('-' is standard input).\n"
           "See dh-merge(1).\n");
}

typedef struct input {
    const char *name;
    dhs_reader *r;
    dh_rankings_reader rr;
    dh_shard sh;
    int64_t shard_rows;
    int fid; /* the id field */
    dhs_chunk *ch;
    int64_t i; /* next row of ch */
    /* the current query */
    int64_t query, n, pos;
    int32_t label;
    const char *id;
    size_t idlen;
    const int64_t *idx; /* unaligned copies below */
    int64_t *ibuf;
    int32_t *dbuf;
    int64_t cap;
} input;

static dh_outfile of; /* removed at exit unless committed */
static dhs_writer *w;

static void die_err(const dh_err *e, const char *ctx) {
    if (w) dhs_writer_abort(w);
    dh_die_err(e, ctx);
}

static void die(int st, const char *msg, const char *name) {
    if (w) dhs_writer_abort(w);
    dh_die(st, "%s: %s", name, msg);
}

/* The next query of an input: 1, 0 at the end; dies on an error. */
static int next_query(input *in) {
    dh_err e;
    while (!in->ch || in->i >= in->ch->nrows) {
        int rc = dhs_read_chunk(in->r, &in->ch, &e);
        if (rc == DH_EOF) {
            in->ch = NULL;
            return 0;
        }
        if (rc) die_err(&e, NULL);
        in->i = 0;
    }
    const dhs_chunk *ch = in->ch;
    int64_t i = in->i++;
    const dh_rankings_reader *rr = &in->rr;
    memcpy(&in->query, (const char *)ch->col[rr->fq] + i * 8, 8);
    memcpy(&in->label, (const char *)ch->col[rr->fl] + i * 4, 4);
    in->id = in->fid >= 0 ? dhs_str_at(ch, in->fid, i, &in->idlen) : "";
    if (in->fid < 0) in->idlen = 0;
    int64_t n = (int64_t)(ch->off[rr->fi][i + 1] - ch->off[rr->fi][i]);
    if ((int64_t)(ch->off[rr->fd][i + 1] - ch->off[rr->fd][i]) != n)
        die(DH_EXIT_FAIL, "a query with as many rows as distances expected", in->name);
    if (n > in->cap) {
        int64_t *ni = realloc(in->ibuf, (size_t)n * sizeof *ni);
        int32_t *nd = ni ? realloc(in->dbuf, (size_t)n * sizeof *nd) : NULL;
        if (ni) in->ibuf = ni;
        if (nd) in->dbuf = nd;
        if (!ni || !nd) die(DH_EXIT_NOMEM, "out of memory", in->name);
        in->cap = n;
    }
    if (n) {
        memcpy(in->ibuf, (const char *)ch->col[rr->fi] + ch->off[rr->fi][i] * 8, (size_t)n * 8);
        memcpy(in->dbuf, (const char *)ch->col[rr->fd] + ch->off[rr->fd][i] * 4, (size_t)n * 4);
    }
    in->n = n;
    in->pos = 0;
    return 1;
}

/* (dist, idx) of the head of an input, as one key: smaller is better */
static inline uint64_t head_key(const input *in) {
    return (uint64_t)in->dbuf[in->pos] << 44 | (uint64_t)in->ibuf[in->pos];
}

static void heap_down(input **h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, m = i;
        if (l < n && head_key(h[l]) < head_key(h[m])) m = l;
        if (l + 1 < n && head_key(h[l + 1]) < head_key(h[m])) m = l + 1;
        if (m == i) return;
        input *t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

int main(int argc, char **argv) {
    dh_prog_init("dh-merge", argc, argv);
    static const struct option lo[] = {
        { "output", required_argument, 0, DH_OPT_OUTPUT }, { "db", required_argument, 0, DH_OPT_DB },
        { "quiet", no_argument, 0, DH_OPT_QUIET },         { "help", no_argument, 0, DH_OPT_HELP },
        { "version", no_argument, 0, DH_OPT_VERSION },     { 0, 0, 0, 0 }
    };
    const char *out = NULL, *dbname = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "o:D:qhV", lo, NULL)) != -1) {
        switch (c) {
        case DH_OPT_OUTPUT: out = optarg; break;
        case DH_OPT_DB: dbname = optarg; break;
        default:
            if (!dh_common_option(c, 0, usage)) dh_bad_option(argv);
        }
    }
    int N = argc - optind;
    if (N < 1) dh_usage_error("no rankings: give the rankings of every shard");
    if (N > DH_SHARDS_MAX) dh_usage_error("%d rankings: at most %d shards", N, DH_SHARDS_MAX);
    int nstdin = 0;
    for (int i = optind; i < argc; i++) nstdin += !strcmp(argv[i], "-");
    if (nstdin > 1) dh_usage_error("standard input ('-') named more than once");
    dh_err e;
    input *in = calloc((size_t)N, sizeof *in);
    input **byk = calloc((size_t)N, sizeof *byk);
    if (!in || !byk) dh_die(DH_EXIT_NOMEM, "out of memory");
    for (int j = 0; j < N; j++) {
        input *p = &in[j];
        const char *path = argv[optind + j];
        p->name = dh_in_name(path);
        if (!(p->r = dhs_open_path(path, NULL, &e))) dh_die_err(&e, NULL);
        if (dh_rankings_open(&p->rr, p->r, &e) != DH_OK) dh_die_err(&e, p->name);
        const dhs_meta *m = dhs_reader_meta(p->r);
        if (dh_shard_meta(m, &p->sh, &e) != DH_OK) dh_die_err(&e, p->name);
        if (!p->sh.n)
            dh_die(DH_EXIT_FAIL,
                   "%s: not the rankings of a shard (no 'shards' metadata: rank the files of dh-split --shards)",
                   p->name);
        if (dhs_meta_int(m, "shard_rows", &p->shard_rows) || p->shard_rows < 0 || p->shard_rows > p->sh.total)
            dh_die(DH_EXIT_FAIL, "%s: bad shard metadata (shard_rows)", p->name);
        p->fid = dhs_field_index(dhs_reader_schema(p->r), "id");
        if (p->fid >= 0 && dhs_reader_schema(p->r)->fields[p->fid].dtype != DHS_STR) p->fid = -1;
        const input *a = &in[0];
        if (p->sh.n != N)
            dh_die(DH_EXIT_FAIL, "%s: shard %d of %d, but %d rankings given: give one per shard", p->name, p->sh.k,
                   p->sh.n, N);
        if (byk[p->sh.k]) dh_die(DH_EXIT_FAIL, "%s: shard %d again (also %s)", p->name, p->sh.k, byk[p->sh.k]->name);
        byk[p->sh.k] = p;
        const dh_rankings_meta *x = &p->rr.meta, *y = &a->rr.meta;
        const char *what = x->bits != y->bits                            ? "code length"
                           : x->db_rows != y->db_rows                    ? "database rows"
                           : p->sh.total != x->db_rows                   ? "database rows (shard_total_rows)"
                           : x->top != y->top                            ? "--top"
                           : x->radius != y->radius                      ? "--radius"
                           : x->labels != y->labels                      ? "query labels"
                           : strcmp(p->sh.by, a->sh.by)                  ? "shard_by"
                           : (!p->sh.of) != (!a->sh.of)                  ? "shard_of"
                           : p->sh.of && strcmp(p->sh.of, a->sh.of) != 0 ? "shard_of"
                                                                         : NULL;
        if (what)
            dh_die(DH_EXIT_FAIL, "%s and %s disagree on %s: not the rankings of the shards of one database", a->name,
                   p->name, what);
    }
    int64_t rows = 0;
    for (int k = 0; k < N; k++) rows += byk[k]->shard_rows;
    if (rows != in[0].rr.meta.db_rows)
        dh_die(DH_EXIT_FAIL, "the shards hold %lld rows, the database %lld: shards of different splits?",
               (long long)rows, (long long)in[0].rr.meta.db_rows);

    const dh_rankings_meta *m0 = &in[0].rr.meta;
    const char *device = m0->device ? m0->device : "cpu";
    for (int j = 1; j < N; j++)
        if (!in[j].rr.meta.device || strcmp(in[j].rr.meta.device, device)) device = "mixed";
    dh_rankings_meta meta = { .bits = m0->bits,
                              .db = dbname                                          ? dbname
                                    : in[0].sh.of && strcmp(in[0].sh.of, "<stdin>") ? in[0].sh.of
                                                                                    : "",
                              .db_rows = m0->db_rows,
                              .top = m0->top,
                              .radius = m0->radius,
                              .labels = m0->labels,
                              .program = "dh-merge",
                              .command = dh_cmdline(),
                              .device = device };
    const char *oname = out && strcmp(out, "-") ? out : "<stdout>";
    if (dh_out_open_guarded(&of, out, &e) != DH_OK) dh_die_err(&e, out);
    if (!(w = dh_rankings_writer_open(of.f, oname, &meta, &e))) dh_die_err(&e, oname);

    /* a batch of merged queries */
    enum { BATCH = 1024 };
    int64_t *off = malloc((BATCH + 1) * sizeof *off), cap = 1 << 16, icap = 1 << 12, q0 = 0, nb = 0;
    int64_t *idx = malloc((size_t)cap * sizeof *idx);
    int32_t *dist = malloc((size_t)cap * sizeof *dist), *lab = malloc(BATCH * sizeof *lab);
    uint32_t *idlen = malloc(BATCH * sizeof *idlen);
    char *ids = malloc((size_t)icap);
    input **heap = malloc((size_t)N * sizeof *heap);
    if (!off || !idx || !dist || !lab || !idlen || !ids || !heap) die(DH_EXIT_NOMEM, "out of memory", "dh-merge");
    off[0] = 0;
    int64_t nq = 0, top = m0->top, total = 0;
    size_t used = 0; /* bytes of ids in the batch */
    int radius = m0->radius, bits = m0->bits;
    for (;;) {
        int more = next_query(byk[0]);
        for (int k = 1; k < N; k++)
            if (next_query(byk[k]) != more)
                die(DH_EXIT_FAIL,
                    more ? "ends before the other rankings: not the same queries" : "has more queries than the others",
                    byk[k]->name);
        if (!more) break;
        /* the same query everywhere, and lists that are what dh-rank writes */
        int nh = 0;
        for (int k = 0; k < N; k++) {
            input *p = byk[k];
            if (p->query != byk[0]->query || p->label != byk[0]->label || p->idlen != byk[0]->idlen ||
                memcmp(p->id, byk[0]->id, p->idlen))
                die(DH_EXIT_FAIL, "not the same queries as the other rankings", p->name);
            if (p->query != nq) die(DH_EXIT_FAIL, "queries out of order", p->name);
            if (top >= 0 && p->n > top) die(DH_EXIT_FAIL, "a list longer than --top", p->name);
            for (int64_t i = 0; i < p->n; i++) {
                int64_t r = p->ibuf[i];
                int32_t d = p->dbuf[i];
                if (r < 0 || r >= m0->db_rows || d < 0 || d > bits || (radius >= 0 && d > radius) ||
                    (i > 0 && (d < p->dbuf[i - 1] || (d == p->dbuf[i - 1] && r <= p->ibuf[i - 1]))))
                    die(DH_EXIT_FAIL, "a list out of order or out of range (not written by dh-rank?)", p->name);
            }
            if (p->n) heap[nh++] = p;
        }
        for (int i = nh / 2 - 1; i >= 0; i--) heap_down(heap, nh, i);
        int64_t limit = top >= 0 ? top : INT64_MAX, got = 0;
        while (nh && got < limit) {
            input *p = heap[0];
            if (total == cap) {
                cap *= 2;
                int64_t *ni = realloc(idx, (size_t)cap * sizeof *ni);
                int32_t *nd = ni ? realloc(dist, (size_t)cap * sizeof *nd) : NULL;
                if (ni) idx = ni;
                if (nd) dist = nd;
                if (!ni || !nd) die(DH_EXIT_NOMEM, "out of memory", "dh-merge");
            }
            idx[total] = p->ibuf[p->pos];
            dist[total] = p->dbuf[p->pos];
            total++;
            got++;
            if (++p->pos == p->n) heap[0] = heap[--nh];
            heap_down(heap, nh, 0);
        }
        /* the query's label and id */
        if (used + byk[0]->idlen > (size_t)icap) {
            while (used + byk[0]->idlen > (size_t)icap) icap *= 2;
            char *ni = realloc(ids, (size_t)icap);
            if (!ni) die(DH_EXIT_NOMEM, "out of memory", "dh-merge");
            ids = ni;
        }
        if (byk[0]->idlen) memcpy(ids + used, byk[0]->id, byk[0]->idlen);
        used += byk[0]->idlen;
        idlen[nb] = (uint32_t)byk[0]->idlen;
        lab[nb] = byk[0]->label;
        off[++nb] = total;
        nq++;
        if (nb == BATCH || total > (1 << 22)) {
            dh_rank_result res = { .nq = nb, .off = off, .idx = idx, .dist = dist };
            if (dh_rankings_write(w, q0, nb, m0->labels ? lab : NULL, ids, idlen, &res, &e)) die_err(&e, oname);
            q0 += nb;
            nb = 0;
            total = 0;
            used = 0;
        }
    }
    if (nb) {
        dh_rank_result res = { .nq = nb, .off = off, .idx = idx, .dist = dist };
        if (dh_rankings_write(w, q0, nb, m0->labels ? lab : NULL, ids, idlen, &res, &e)) die_err(&e, oname);
    }
    dhs_writer *ww = w;
    w = NULL;
    if (dhs_writer_close(ww, &e) != DH_OK || dh_out_commit(&of, &e) != DH_OK) dh_die_err(&e, oname);
    dh_note("%lld queries, %d shards merged", (long long)nq, N);
    for (int j = 0; j < N; j++) {
        dh_rankings_close(&in[j].rr);
        dhs_close(in[j].r);
        dh_shard_free(&in[j].sh);
        free(in[j].ibuf);
        free(in[j].dbuf);
    }
    free(in);
    free(byk);
    free(off);
    free(idx);
    free(dist);
    free(lab);
    free(idlen);
    free(ids);
    free(heap);
    return DH_EXIT_OK;
}
