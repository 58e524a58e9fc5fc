/* dh-map — retrieval metrics of Hamming rankings (man/dh-map.1): mAP
 * (database order and tie-aware), mAP@R, precision/recall@k, precision
 * within a Hamming radius, precision-recall by radius; a table or JSON.
 *
 *   dh-map [RANKINGS]               rankings stream (stdin) + database labels
 *   dh-map --db DB [QUERIES]        the fast path from codes, no rankings
 *   dh-map --query Q --db DB        the same
 *
 * The metrics are the search library's (evalmap.h, map_report.h); plots are
 * dh-plot's.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dh_prog.h"
#include "dhs.h"
#include "evalmap.h"
#include "map_report.h"
#include "rank_codes.h"
#include "rankings.h"

static void usage(void) {
    printf("Usage: dh-map [OPTIONS] [RANKINGS | QUERIES]\n"
           "       dh-map --query QUERIES --db DATABASE [OPTIONS]\n"
           "Evaluate Hamming retrieval: relevant = same label; ranking = database sorted\n"
           "by Hamming distance, ties in database order; every metric also tie-aware (its\n"
           "exact expected value under a random order among equal distances).\n"
           "The input (stdin or a file) is a rankings stream (dh-rank) or, with --db, a\n"
           "codes stream of queries (the fast path, as --query).\n\n"
           "  -D, --db FILE        database codes (labels); default: the rankings' db\n"
           "  -Q, --query FILE     query codes: evaluate directly (fast path)\n"
           "  -R, --at R           mAP@R cut-off (default 1000; 0: none)\n"
           "  -k, --k LIST         precision/recall@k cut-offs (default 1,10,100,1000)\n"
           "  -r, --radius N       precision within Hamming radius N (default 2)\n"
           "      --json           JSON instead of the table\n"
           "      --title TEXT     name of this result in the table and JSON\n"
           "  -o, --output FILE    write the report to FILE atomically (default: stdout)\n"
           "  -d, --device DEV     cpu, cuda or auto for the fast path (default $DH_DEVICE, else auto)\n"
           "  -j, --threads N      CPU threads (default: all cores, or $DH_THREADS)\n"
           "      --progress       show progress even when stderr is not a terminal\n"
           "  -q, --quiet          no notes on stderr\n"
           "  -h, --help           this help\n"
           "  -V, --version        version\n\n"
           "A query with no relevant item has AP 0 and counts in the mean; unlabelled rows\n"
           "(no label field, or -1) are an error. Plots: dh-plot(1). See dh-map(1).\n");
}

typedef struct opts {
    const char *db, *query, *in, *title, *out;
    int json, threads;
    dh_search_dev dev;
    dh_map_opts m;
} opts;

static void parse_ks(const char *arg, dh_map_opts *m) {
    m->nk = 0;
    char *s = strdup(arg), *save = NULL;
    if (!s) dh_die(DH_EXIT_NOMEM, "out of memory");
    for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (m->nk == DH_MAP_MAX_K) dh_usage_error("--k: more than %d values", DH_MAP_MAX_K);
        if (dh_parse_i64(t, 1, INT64_MAX, &m->ks[m->nk]) != 0) dh_usage_error("--k: '%s' is not a positive number", t);
        m->nk++;
    }
    free(s);
}

static void parse(int argc, char **argv, opts *o) {
    const char *device = getenv("DH_DEVICE");
    *o = (opts){ .m = { .at_r = 1000, .nk = 4, .ks = { 1, 10, 100, 1000 }, .radius = 2 } };
    enum { O_JSON = 256, O_PLOT, O_TITLE, O_DEVICE, O_PROG };
    static const struct option lo[] = { { "db", required_argument, 0, DH_OPT_DB },
                                        { "query", required_argument, 0, 'Q' },
                                        { "at", required_argument, 0, 'R' },
                                        { "k", required_argument, 0, 'k' },
                                        { "radius", required_argument, 0, 'r' },
                                        { "json", no_argument, 0, O_JSON },
                                        { "plot", required_argument, 0, O_PLOT },
                                        { "title", required_argument, 0, O_TITLE },
                                        { "output", required_argument, 0, DH_OPT_OUTPUT },
                                        { "device", required_argument, 0, O_DEVICE },
                                        { "threads", required_argument, 0, DH_OPT_THREADS },
                                        DH_COMMON_LONGOPTS(O_PROG) };
    int c;
    while ((c = getopt_long(argc, argv, "D:Q:R:k:r:o:d:j:qhV", lo, NULL)) != -1) {
        switch (c) {
        case DH_OPT_DB: o->db = optarg; break;
        case DH_OPT_DEVICE: /* -d was --db before the option grammar: a path is refused */
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda") && strcmp(optarg, "auto"))
                dh_refuse_moved('d', "database", 'D', "db");
            device = optarg;
            break;
        case DH_OPT_OUTPUT: o->out = optarg; break;
        case 'Q': o->query = optarg; break;
        case 'R':
            if (dh_parse_i64(optarg, 0, INT64_MAX, &o->m.at_r) != 0)
                dh_usage_error("--at: '%s' is not a number >= 0", optarg);
            break;
        case 'k': parse_ks(optarg, &o->m); break;
        case 'r':
            if (dh_parse_int(optarg, 0, DH_HAMMING_MAX_BITS, &o->m.radius) != 0)
                dh_usage_error("--radius: '%s' is not a number in 0..%d", optarg, DH_HAMMING_MAX_BITS);
            break;
        case O_JSON: o->json = 1; break;
        case O_PLOT:
            dh_usage_error("--plot: plots are drawn by dh-plot: 'dh-map --json ... | dh-plot -o %s', or 'dh-plot -o "
                           "%s RESULT.json...'",
                           optarg, optarg);
        case O_TITLE: o->title = optarg; break;
        case O_DEVICE: device = optarg; break;
        case DH_OPT_THREADS:
            if (dh_parse_int(optarg, 1, 256, &o->threads) != 0)
                dh_usage_error("--threads: '%s' is not in 1..256", optarg);
            break;
        default:
            if (!dh_common_option(c, O_PROG, usage)) exit(DH_EXIT_USAGE);
        }
    }
    dh_err e;
    if (dh_search_dev_parse(device, &o->dev, &e)) dh_usage_error("--device: %s", e.msg);
    o->threads = dh_prog_threads(o->threads); /* $DH_THREADS when no --threads was given */
    if (argc - optind > 1) dh_usage_error("more than one input (to plot saved results: dh-plot)");
    o->in = optind < argc ? argv[optind] : NULL;
    if (o->query && o->in) dh_usage_error("--query given: no rankings input expected");
    if (o->query && !o->db) dh_usage_error("--query needs --db FILE");
    dh_stdin_once("--db", o->db, o->query ? o->query : o->in);
}

static void progress(void *pg, int64_t done) { dh_progress_update(pg, done); }

/* The fast path: the query codes q against the database's. Returns the
 * device it ran on; *secs the time of the computation. */
static const char *eval_codes(const opts *o, dh_codeset *q, const char *qname, dh_map_acc *acc, double *secs) {
    dh_err e;
    dh_codeset db;
    if (dh_codes_load(o->db, &db, 1, &e) != DH_OK) dh_die_err(&e, NULL);
    if (q->bits != db.bits)
        dh_die(DH_EXIT_FAIL, "code length mismatch: queries %s have %d bits, database %s has %d", qname, q->bits, o->db,
               db.bits);
    if (db.n == 0) dh_die(DH_EXIT_FAIL, "%s: the database is empty", o->db);
    if (q->n == 0) dh_die(DH_EXIT_FAIL, "%s: no queries", qname);
    if (dh_map_acc_init(acc, db.bits, db.n, &o->m, NULL, &e) != DH_OK) dh_die_err(&e, NULL);
    dh_progress pg;
    dh_progress_start(&pg, "evaluating", "queries", q->n);
    dh_map_run run = { .dev = o->dev, .nthreads = o->threads, .progress = progress, .ctx = &pg };
    int rc = dh_map_codes(q, &db, &run, acc, &e);
    dh_progress_end(&pg, q->n);
    if (rc != DH_OK) dh_die_err(&e, !strcmp(run.used, "cuda") ? "--device cuda" : NULL);
    *secs = run.seconds;
    dh_codes_free(&db);
    return run.used;
}

/* Rankings from dh-rank (reader r, its header read) against the database
 * labels. Returns the note on what a cut leaves out, or NULL. */
static const char *eval_rankings(const opts *o, dhs_reader *r, const char *inname, dh_map_acc *acc, double *secs) {
    dh_err e;
    dh_rankings_reader rr;
    if (dh_rankings_open(&rr, r, &e) != DH_OK) dh_die_err(&e, inname);
    if (!rr.meta.labels) dh_die(DH_EXIT_FAIL, "%s: the queries had no labels: cannot judge relevance", inname);
    const char *dbpath = o->db ? o->db : rr.meta.db;
    if (!dbpath) dh_usage_error("no database: give --db FILE");
    dh_codeset db;
    if (dh_codes_load(dbpath, &db, 1, &e) != DH_OK) dh_die_err(&e, NULL);
    if (db.n != rr.meta.db_rows)
        dh_die(DH_EXIT_FAIL, "%s has %lld rows but the rankings were made against %lld", dbpath, (long long)db.n,
               (long long)rr.meta.db_rows);
    if (db.bits != rr.meta.bits)
        dh_die(DH_EXIT_FAIL, "code length mismatch: rankings of %d-bit codes, database %s has %d", rr.meta.bits, dbpath,
               db.bits);
    dh_map_lists lists;
    if (dh_map_acc_init(acc, db.bits, db.n, &o->m, NULL, &e) != DH_OK ||
        dh_map_lists_init(&lists, db.label, db.n, db.bits, rr.meta.top, rr.meta.radius, &e) != DH_OK)
        dh_die_err(&e, NULL);
    double t1 = dh_now();
    dh_progress pg;
    dh_progress_start(&pg, "evaluating", "queries", 0);
    dh_ranking q;
    int rc;
    while ((rc = dh_rankings_next(&rr, &q, &e)) == DH_OK) {
        if (dh_map_lists_add(&lists, acc, q.label, q.idx, q.dist, q.n, &e) != DH_OK)
            dh_die(DH_EXIT_FAIL, "%s: query %lld: %s", inname, (long long)q.query, e.msg);
        dh_progress_update(&pg, acc->nq);
    }
    if (rc != DH_EOF) dh_die_err(&e, inname);
    dh_progress_end(&pg, acc->nq);
    *secs = dh_now() - t1;
    const char *note = dh_map_lists_note(&lists);
    dh_map_lists_free(&lists);
    dh_rankings_close(&rr);
    dh_codes_free(&db);
    return note;
}

int main(int argc, char **argv) {
    dh_prog_init("dh-map", argc, argv);
    opts o;
    parse(argc, argv, &o);
    dh_err e;
    static dh_outfile of; /* removed at exit unless committed */
    if (dh_out_open_guarded(&of, o.out, &e) != DH_OK) dh_die_err(&e, o.out);
    dh_map_acc acc;
    const char *note = NULL, *devname = "cpu", *label;
    double t0 = dh_now(), secs = 0;
    dh_codeset q;
    if (o.query) {
        if (dh_codes_load(o.query, &q, 1, &e) != DH_OK) dh_die_err(&e, NULL);
        devname = eval_codes(&o, &q, o.query, &acc, &secs);
        label = o.query;
        dh_codes_free(&q);
    } else {
        const char *inname = dh_in_name(o.in);
        dhs_reader *r = dhs_open_path(o.in, NULL, &e);
        if (!r) dh_die_err(&e, o.in ? NULL : inname);
        if (!strcmp(dhs_reader_schema(r)->kind, "codes")) { /* queries: the fast path */
            if (!o.db) dh_usage_error("%s: a codes stream: the queries of the fast path need --db DATABASE", inname);
            if (dh_codes_read(r, inname, &q, 1, &e) != DH_OK) dh_die_err(&e, inname);
            devname = eval_codes(&o, &q, inname, &acc, &secs);
            dh_codes_free(&q);
        } else
            note = eval_rankings(&o, r, inname, &acc, &secs);
        label = inname;
        dhs_close(r);
    }
    if (o.title) label = o.title;
    if (acc.nq == 0) dh_die(DH_EXIT_FAIL, "no queries to evaluate");
    dh_map_result res;
    if (dh_map_acc_result(&acc, &res, &e) != DH_OK) dh_die_err(&e, NULL);
    if (o.json)
        dh_map_write_json(of.f, &res, label, note);
    else
        dh_map_write_table(of.f, &res, label, note);
    if (dh_out_commit(&of, &e) != DH_OK) dh_die_err(&e, o.out ? o.out : "<stdout>");
    dh_note("evaluated %lld queries against %lld in %.3f s of computation on %s (%.3f s in all)", (long long)res.nq,
            (long long)res.ndb, secs, devname, dh_now() - t0);
    dh_map_result_free(&res);
    dh_map_acc_free(&acc);
    return DH_EXIT_OK;
}
