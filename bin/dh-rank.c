/* dh-rank — Hamming ranking of query codes against a database of codes.
 *
 * Query codes on stdin (or a file), database codes from --db; writes a
 * rankings stream (kind "rankings", see man/dh-rank.1 and rankings.h): per
 * query its database rows ordered by Hamming distance, then by database
 * position, cut to --top R and/or --radius r. The ranking is the search
 * library's: the linear scan (dh_ranker: CPU threads or CUDA), or
 * multi-index hashing (mih.h: an index from dh-index, or built here), which
 * gives the same rankings. A database that is a shard (dh-split --shards)
 * is ranked with its rows numbered as in the whole database (shard.h), for
 * dh-merge.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include "dh_prog.h"
#include "dhs.h"
#include "hamming.h"
#include "mih.h"
#include "rank.h"
#include "rank_codes.h"
#include "rankings.h"
#include "shard.h"

static void usage(void) {
    printf("Usage: dh-rank -D DATABASE [OPTIONS] [QUERIES]\n"
           "Rank database codes by Hamming distance to each query code.\n"
           "Reads a codes stream of queries (stdin or QUERIES), writes a rankings stream.\n\n"
           "  -D, --db FILE        database codes stream (required)\n"
           "  -k, --top R|all      keep the first R rows of each ranking (default: all)\n"
           "  -r, --radius N       keep only rows at Hamming distance <= N\n"
           "  -M, --method M       scan (every code, default) or mih (multi-index hashing:\n"
           "                       reads a small part of the database; same rankings)\n"
           "  -I, --index FILE     the database's index from dh-index (implies --method mih)\n"
           "  -t, --tables M       --method mih without --index: tables of the index built\n"
           "                       here (default: substrings of about log2(rows) - 3 bits)\n"
           "  -o, --output FILE    write the rankings to FILE atomically (default: stdout)\n"
           "  -d, --device DEV     cpu, cuda or auto (default: $DH_DEVICE, else auto)\n"
           "  -j, --threads N      CPU threads (default: all cores, or $DH_THREADS)\n"
           "  -B, --batch N        queries ranked at a time (default: automatic)\n"
           "      --progress       show progress even when stderr is not a terminal\n"
           "  -q, --quiet          no progress\n"
           "  -h, --help           this help\n"
           "  -V, --version        version\n\n"
           "Order: by distance, then by database position (stable). See dh-rank(1).\n");
}

typedef struct opts {
    const char *db, *in, *out, *index;
    int64_t top, batch;
    int radius, threads, mih, tables;
    dh_search_dev dev;
} opts;

static void parse(int argc, char **argv, opts *o) {
    const char *device = getenv("DH_DEVICE");
    *o = (opts){ .top = DH_RANK_ALL, .radius = DH_RANK_NORADIUS, .mih = -1 };
    enum { O_DEVICE = 256, O_PROG };
    static const struct option lo[] = { { "db", required_argument, 0, DH_OPT_DB },
                                        { "top", required_argument, 0, 'k' },
                                        { "radius", required_argument, 0, 'r' },
                                        { "output", required_argument, 0, DH_OPT_OUTPUT },
                                        { "device", required_argument, 0, O_DEVICE },
                                        { "threads", required_argument, 0, DH_OPT_THREADS },
                                        { "batch", required_argument, 0, DH_OPT_BATCH },
                                        { "method", required_argument, 0, 'M' },
                                        { "index", required_argument, 0, 'I' },
                                        { "tables", required_argument, 0, 't' },
                                        DH_COMMON_LONGOPTS(O_PROG) };
    int c;
    while ((c = getopt_long(argc, argv, "D:k:r:M:I:t:o:d:j:B:qhV", lo, NULL)) != -1) {
        switch (c) {
        case DH_OPT_DB: o->db = optarg; break;
        case DH_OPT_DEVICE: /* -d was --db before the option grammar: a path is refused */
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda") && strcmp(optarg, "auto"))
                dh_refuse_moved('d', "database", 'D', "db");
            device = optarg;
            break;
        case DH_OPT_OUTPUT: o->out = optarg; break;
        case 'k':
            if (!strcmp(optarg, "all"))
                o->top = DH_RANK_ALL;
            else if (dh_parse_i64(optarg, 1, INT64_MAX, &o->top) != 0)
                dh_usage_error("--top: '%s' is not a positive number or 'all'", optarg);
            break;
        case 'r':
            if (dh_parse_int(optarg, 0, DH_HAMMING_MAX_BITS, &o->radius) != 0)
                dh_usage_error("--radius: '%s' is not a number in 0..%d", optarg, DH_HAMMING_MAX_BITS);
            break;
        case O_DEVICE: device = optarg; break;
        case 'M':
            if (!strcmp(optarg, "scan"))
                o->mih = 0;
            else if (!strcmp(optarg, "mih"))
                o->mih = 1;
            else
                dh_usage_error("--method: '%s' is not scan or mih", optarg);
            break;
        case 'I': o->index = optarg; break;
        case 't':
            if (dh_parse_int(optarg, 1, DH_MIH_MAX_TABLES, &o->tables) != 0)
                dh_usage_error("--tables: '%s' is not in 1..%d", optarg, DH_MIH_MAX_TABLES);
            break;
        case DH_OPT_THREADS:
            if (dh_parse_int(optarg, 1, 256, &o->threads) != 0)
                dh_usage_error("--threads: '%s' is not in 1..256", optarg);
            break;
        case DH_OPT_BATCH:
            if (dh_parse_i64(optarg, 1, 1 << 24, &o->batch) != 0)
                dh_usage_error("--batch: '%s' is not in 1..16777216", optarg);
            break;
        default:
            if (!dh_common_option(c, O_PROG, usage)) exit(DH_EXIT_USAGE);
        }
    }
    if (!o->db) dh_usage_error("no database: give -D FILE (--db)");
    o->threads = dh_prog_threads(o->threads); /* $DH_THREADS when no --threads was given */
    if (argc - optind > 1) dh_usage_error("more than one query input");
    o->in = optind < argc ? argv[optind] : NULL;
    dh_stdin_once("--db", o->db, o->in);
    dh_err e;
    if (dh_search_dev_parse(device, &o->dev, &e)) dh_usage_error("--device: %s", e.msg);
    if (o->index && o->mih == 0) dh_usage_error("--index is for --method mih, not scan");
    if (o->index && o->tables) dh_usage_error("--tables applies to an index built here: the index file has its own");
    if (o->mih < 0) o->mih = o->index != NULL;
    if (o->tables && !o->mih) dh_usage_error("--tables is for --method mih");
    if (o->mih && o->dev == DH_SEARCH_CUDA) dh_usage_error("--method mih runs on the CPU: give --device cpu or auto");
    if (o->index) dh_stdin_once("--index", o->index, o->in);
}

static void fail(dhs_writer *w, const dh_err *e, const char *ctx) {
    if (w) dhs_writer_abort(w); /* no trailer: the output (a temporary file for -o) is visibly incomplete */
    dh_die_err(e, ctx);
}

int main(int argc, char **argv) {
    dh_prog_init("dh-rank", argc, argv);
    opts o;
    parse(argc, argv, &o);

    dh_err e;
    /* the query header first: a wrong stream fails before the database is read */
    dhs_reader *qr = dhs_open_path(o.in, NULL, &e);
    if (!qr) dh_die_err(&e, o.in ? NULL : "<stdin>");
    const char *qname = dh_in_name(o.in);
    int bits, qlf, qidf;
    if (dh_codes_schema(dhs_reader_schema(qr), &bits, &qlf, &qidf, &e) != DH_OK) dh_die_err(&e, qname);
    int qcf = dhs_field_index(dhs_reader_schema(qr), "code");

    dh_codeset db;
    dh_shard shard;
    if (dh_shard_codes_load(o.db, &db, &shard, &e) != DH_OK) dh_die_err(&e, NULL);
    if (db.bits != bits)
        dh_die(DH_EXIT_FAIL, "code length mismatch: queries have %d bits, database %s has %d", bits, o.db, db.bits);
    if (db.n == 0 && !shard.n) dh_die(DH_EXIT_FAIL, "%s: the database is empty", o.db); /* a shard may be */
    /* a shard's rankings are cut as the whole database's are */
    int64_t whole = shard.n ? shard.total : db.n;
    if (o.top != DH_RANK_ALL && o.top > whole)
        dh_die(DH_EXIT_USAGE, "--top %lld is larger than the database (%lld rows in %s%s)", (long long)o.top,
               (long long)whole, shard.n ? "the database sharded into " : "", shard.n && shard.of ? shard.of : o.db);
    dh_ranker *rk = NULL;
    dh_mih *mih = NULL;
    if (o.mih && o.index) {
        FILE *fi = fopen(o.index, "rb");
        if (!fi) dh_die(DH_EXIT_IO, "%s: %s", o.index, strerror(errno));
        int rc = dh_mih_read(&mih, fi, o.index, db.w, db.n, bits, o.threads, &e);
        fclose(fi);
        if (rc != DH_OK) dh_die_err(&e, NULL);
    } else if (o.mih) {
        if (dh_mih_build(&mih, db.w, db.n, bits, o.tables, o.threads, &e) != DH_OK) dh_die_err(&e, "--method mih");
    } else if (dh_ranker_open(&rk, db.w, db.n, bits, db.n ? o.dev : DH_SEARCH_CPU /* an empty shard */, o.threads,
                              &e) != DH_OK)
        dh_die_err(&e, o.dev == DH_SEARCH_CUDA ? "--device cuda" : NULL);

    dh_rankings_meta meta = { .bits = bits,
                              .db = o.db,
                              .db_rows = whole,
                              .top = o.top == DH_RANK_ALL ? -1 : o.top,
                              .radius = o.radius,
                              .labels = qlf >= 0,
                              .program = "dh-rank",
                              .command = dh_cmdline(),
                              .device = rk ? dh_ranker_device(rk) : "cpu" };
    static dh_outfile of; /* removed at exit unless committed */
    const char *oname = o.out && strcmp(o.out, "-") ? o.out : "<stdout>";
    if (dh_out_open_guarded(&of, o.out, &e) != DH_OK) dh_die_err(&e, o.out);
    dhs_writer *w = dh_shard_rankings_writer_open(of.f, oname, &meta, &shard, &e);
    if (!w) dh_die_err(&e, oname);

    /* queries per batch: about 256 MiB of results at most */
    int64_t per = o.top == DH_RANK_ALL ? db.n : o.top, batch = o.batch;
    if (batch == 0) {
        batch = (256 << 20) / (per * 12 + 1);
        if (batch < 1) batch = 1;
        if (batch > 8192) batch = 8192;
    }
    uint64_t *qw = dh_malloc(&e, (size_t)batch * db.W, sizeof *qw);
    int32_t *qlab = dh_malloc(&e, (size_t)batch, sizeof *qlab);
    uint32_t *idlen = dh_malloc(&e, (size_t)batch, sizeof *idlen);
    if (!qw || !qlab || !idlen) fail(w, &e, NULL);
    int nbytes = (bits + 7) / 8;
    dh_progress pg;
    dh_progress_start(&pg, "ranking", "queries", 0);
    int64_t done = 0;
    dhs_chunk *ch;
    int rc;
    while ((rc = dhs_read_chunk(qr, &ch, &e)) == DH_OK) {
        for (int64_t i0 = 0; i0 < ch->nrows; i0 += batch) {
            int64_t n = ch->nrows - i0 < batch ? ch->nrows - i0 : batch;
            dh_ham_pack((const uint8_t *)ch->col[qcf] + i0 * nbytes, n, bits, qw);
            if (qlf >= 0) memcpy(qlab, (const char *)ch->col[qlf] + i0 * sizeof(int32_t), (size_t)n * sizeof(int32_t));
            for (int64_t i = 0; qidf >= 0 && i < n; i++)
                idlen[i] = (uint32_t)(ch->off[qidf][i0 + i + 1] - ch->off[qidf][i0 + i]);
            const char *ids = qidf >= 0 ? (const char *)ch->col[qidf] + ch->off[qidf][i0] : NULL;
            dh_rank_result res;
            if ((mih ? dh_mih_search(mih, qw, n, o.top, o.radius, o.threads, &res, &e)
                     : dh_ranker_run(rk, qw, n, o.top, o.radius, &res, &e)) != DH_OK)
                fail(w, &e, "ranking");
            dh_shard_map(&shard, res.idx, res.off[n]);
            rc = dh_rankings_write(w, done, n, qlf >= 0 ? qlab : NULL, ids, qidf >= 0 ? idlen : NULL, &res, &e);
            dh_rank_result_free(&res);
            if (rc != DH_OK) fail(w, &e, oname);
            done += n;
            dh_progress_update(&pg, done);
        }
    }
    if (rc != DH_EOF) fail(w, &e, qname);
    dh_progress_end(&pg, done);
    dhs_close(qr);
    if (dhs_writer_close(w, &e) != DH_OK || dh_out_commit(&of, &e) != DH_OK) dh_die_err(&e, oname);
    dh_ranker_close(rk);
    dh_mih_free(mih);
    dh_shard_free(&shard);
    free(qw);
    free(qlab);
    free(idlen);
    dh_codes_free(&db);
    return DH_EXIT_OK;
}
