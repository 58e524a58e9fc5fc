/* dh-rank — Hamming ranking of query codes against a database of codes.
 *
 * Query codes on stdin (or a file), database codes from --db; writes a
 * rankings stream (kind "rankings", see man/dh-rank.1): per query its
 * database rows ordered by Hamming distance, then by database position,
 * cut to --top R and/or --radius r.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include "dh_prog.h"
#include "dhs.h"
#include "hamming.h"
#include "rank.h"
#include "rank_codes.h"
#include "dk_prog.h"

static void usage(void) {
    printf("Usage: dh-rank --db FILE [OPTIONS] [QUERIES]\n"
           "Rank database codes by Hamming distance to each query code.\n"
           "Reads a codes stream of queries (stdin or QUERIES), writes a rankings stream.\n\n"
           "  -d, --db FILE        database codes stream (required)\n"
           "  -k, --top R|all      keep the first R rows of each ranking (default: all)\n"
           "  -r, --radius N       keep only rows at Hamming distance <= N\n"
           "      --device D       cpu, cuda or auto (default: $DH_DEVICE, else auto)\n"
           "  -j, --threads N      CPU threads (default: all cores, or $DH_THREADS)\n"
           "      --batch N        queries ranked at a time (default: automatic)\n"
           "      --progress       show progress even when stderr is not a terminal\n"
           "  -q, --quiet          no progress\n"
           "  -h, --help           this help\n"
           "  -V, --version        version\n\n"
           "Order: by distance, then by database position (stable). See dh-rank(1).\n");
    exit(DH_EXIT_OK);
}

int main(int argc, char **argv) {
    dh_prog_init("dh-rank", argc, argv);
    const char *dbpath = NULL, *device = getenv("DH_DEVICE");
    int64_t top = DH_RANK_ALL, batch = 0;
    int radius = DH_RANK_NORADIUS, threads = dh_rank_default_threads(), top_given = 0;
    static const struct option lo[] = { { "db", required_argument, 0, 'd' },
                                        { "top", required_argument, 0, 'k' },
                                        { "radius", required_argument, 0, 'r' },
                                        { "device", required_argument, 0, 'D' },
                                        { "threads", required_argument, 0, 'j' },
                                        { "batch", required_argument, 0, 'b' },
                                        DH_COMMON_LONGOPTS('P') };
    int c;
    while ((c = getopt_long(argc, argv, "d:k:r:j:qhV", lo, NULL)) != -1) {
        switch (c) {
        case 'd': dbpath = optarg; break;
        case 'k':
            top_given = 1;
            if (!strcmp(optarg, "all"))
                top = DH_RANK_ALL;
            else if (dh_parse_i64(optarg, 1, INT64_MAX, &top) != 0)
                dh_usage_error("--top: '%s' is not a positive number or 'all'", optarg);
            break;
        case 'r':
            if (dh_parse_int(optarg, 0, DH_HAMMING_MAX_BITS, &radius) != 0)
                dh_usage_error("--radius: '%s' is not a number in 0..%d", optarg, DH_HAMMING_MAX_BITS);
            break;
        case 'D': device = optarg; break;
        case 'j':
            if (dh_parse_int(optarg, 1, 256, &threads) != 0) dh_usage_error("--threads: '%s' is not in 1..256", optarg);
            break;
        case 'b':
            if (dh_parse_i64(optarg, 1, 1 << 24, &batch) != 0)
                dh_usage_error("--batch: '%s' is not in 1..16777216", optarg);
            break;
        default:
            if (!dh_common_option(c, 'P', usage)) exit(DH_EXIT_USAGE);
        }
    }
    if (!dbpath) dh_usage_error("no database: give --db FILE");
    if (argc - optind > 1) dh_usage_error("more than one query input");
    const char *qpath = optind < argc ? argv[optind] : NULL;
    dh_stdin_once("--db", dbpath, qpath);
    int auto_dev, use_cuda = dk_prog_rank_device(device, &auto_dev);
    (void)top_given;

    dh_err e;
    /* the query header first: a wrong stream fails before the database is read */
    dhs_reader *qr = dhs_open_path(qpath, NULL, &e);
    if (!qr) dh_die_err(&e, qpath ? NULL : "<stdin>");
    const char *qname = dh_in_name(qpath);
    int qbits, qlf, qidf;
    if (dh_codes_schema(dhs_reader_schema(qr), &qbits, &qlf, &qidf, &e) != DH_OK) dh_die_err(&e, qname);
    int qcf = dhs_field_index(dhs_reader_schema(qr), "code");

    dh_codeset db;
    if (dh_codes_load(dbpath, &db, 0, &e) != DH_OK) dh_die_err(&e, NULL);
    if (db.bits != qbits)
        dh_die(DH_EXIT_FAIL, "code length mismatch: queries have %d bits, database %s has %d", qbits, dbpath, db.bits);
    if (db.n == 0) dh_die(DH_EXIT_FAIL, "%s: the database is empty", dbpath);
    if (top != DH_RANK_ALL && top > db.n)
        dh_die(DH_EXIT_USAGE, "--top %lld is larger than the database (%lld rows in %s)", (long long)top,
               (long long)db.n, dbpath);
    int bits = qbits, W = db.W;

    dh_rank_cuda *gctx = NULL;
    if (use_cuda && dh_rank_cuda_open(&gctx, db.w, db.n, bits, db.label, &e) != DH_OK) {
        /* auto: codes the CUDA kernels do not handle go to the CPU */
        if (!auto_dev) {
            if (e.code == DH_EUNSUPPORTED) e.code = DH_EDEVICE;
            dh_die_err(&e, "--device cuda");
        }
        gctx = NULL;
    }

    /* rankings stream */
    dhs_schema s;
    dhs_schema_init(&s, "rankings");
    int64_t var = -1;
    if (dhs_schema_add(&s, "query", DHS_I64, 0, NULL, &e) < 0 ||
        dhs_schema_add(&s, "label", DHS_I32, 0, NULL, &e) < 0 || dhs_schema_add(&s, "id", DHS_STR, 0, NULL, &e) < 0 ||
        dhs_schema_add(&s, "idx", DHS_I64, 1, &var, &e) < 0 || dhs_schema_add(&s, "dist", DHS_I32, 1, &var, &e) < 0)
        dh_die_err(&e, "rankings schema");
    dhs_meta *m = dhs_meta_new();
    if (!m) dh_die(DH_EXIT_NOMEM, "out of memory");
    dhs_meta_set_str(m, "program", "dh-rank");
    dhs_meta_set_str(m, "command", dh_cmdline());
    dhs_meta_set_int(m, "bits", bits);
    dhs_meta_set_str(m, "db", dbpath);
    dhs_meta_set_int(m, "db_rows", db.n);
    dhs_meta_set_int(m, "top", top == DH_RANK_ALL ? -1 : top);
    dhs_meta_set_int(m, "radius", radius);
    dhs_meta_set_bool(m, "labels", qlf >= 0);
    dhs_meta_set_str(m, "order", "distance, then database position");
    dhs_meta_set_str(m, "device", gctx ? "cuda" : "cpu");
    dhs_writer *w = dhs_writer_open(stdout, "<stdout>", &s, m, &e);
    dhs_meta_free(m);
    if (!w) dh_die_err(&e, "<stdout>");

    /* queries per batch: about 256 MiB of results at most */
    int64_t per = top == DH_RANK_ALL ? db.n : top;
    if (batch == 0) {
        batch = (256 << 20) / (per * 12 + 1);
        if (batch < 1) batch = 1;
        if (batch > 8192) batch = 8192;
    }
    uint64_t *qw = dh_malloc(&e, (size_t)batch * W, sizeof *qw);
    int64_t *qidx = dh_malloc(&e, (size_t)batch, sizeof *qidx);
    int32_t *qlab = dh_malloc(&e, (size_t)batch, sizeof *qlab);
    uint32_t *idlen = dh_malloc(&e, (size_t)batch, sizeof *idlen);
    uint32_t *cnt = dh_malloc(&e, (size_t)batch, sizeof *cnt);
    if (!qw || !qidx || !qlab || !idlen || !cnt) {
        dhs_writer_abort(w);
        dh_die_err(&e, NULL);
    }
    int nbytes = (bits + 7) / 8;
    dh_progress pg;
    dh_progress_start(&pg, "ranking", "queries", 0);
    int64_t done = 0;
    for (;;) {
        dhs_chunk *ch;
        int rc = dhs_read_chunk(qr, &ch, &e);
        if (rc == DH_EOF) break;
        if (rc != DH_OK) {
            dhs_writer_abort(w);
            dh_die_err(&e, qname);
        }
        for (int64_t i0 = 0; i0 < ch->nrows; i0 += batch) {
            int64_t n = ch->nrows - i0 < batch ? ch->nrows - i0 : batch;
            dh_ham_pack((const uint8_t *)ch->col[qcf] + i0 * nbytes, n, bits, qw);
            for (int64_t i = 0; i < n; i++) {
                qidx[i] = done + i;
                qlab[i] = INT32_MIN;
                if (qlf >= 0)
                    memcpy(&qlab[i], (const char *)ch->col[qlf] + (i0 + i) * sizeof(int32_t), sizeof(int32_t));
                idlen[i] = qidf >= 0 ? (uint32_t)(ch->off[qidf][i0 + i + 1] - ch->off[qidf][i0 + i]) : 0;
            }
            const char *ids = qidf >= 0 ? (const char *)ch->col[qidf] + ch->off[qidf][i0] : "";
            dh_rank_result res;
            rc = gctx ? dh_rank_cuda_run(gctx, qw, n, top, radius, &res, &e)
                      : dh_rank_cpu(qw, n, db.w, db.n, bits, top, radius, threads, &res, &e);
            if (rc != DH_OK) {
                dhs_writer_abort(w);
                dh_die_err(&e, "ranking");
            }
            for (int64_t i = 0; i < n; i++) cnt[i] = (uint32_t)(res.off[i + 1] - res.off[i]);
            const void *cols[5] = { qidx, qlab, ids, res.idx, res.dist };
            const uint32_t *lens[5] = { NULL, NULL, idlen, cnt, cnt };
            rc = dhs_write_rows(w, n, cols, lens, &e);
            dh_rank_result_free(&res);
            if (rc != DH_OK) {
                dhs_writer_abort(w);
                dh_die_err(&e, "<stdout>");
            }
            done += n;
            dh_progress_update(&pg, done);
        }
    }
    dh_progress_end(&pg, done);
    dhs_close(qr);
    if (dhs_writer_close(w, &e) != DH_OK) dh_die_err(&e, "<stdout>");
    dh_rank_cuda_close(gctx);
    free(qw);
    free(qidx);
    free(qlab);
    free(idlen);
    free(cnt);
    dh_codes_free(&db);
    return DH_EXIT_OK;
}
