/* dh-index — build the multi-index hashing index of a database of codes,
 * once, for dh-rank --index (kernels/search/mih.h; the file layout is in
 * man/dh-index.1). */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dh_prog.h"
#include "mih.h"
#include "rank.h"
#include "rank_codes.h"

static void usage(void) {
    printf("Usage: dh-index [OPTION]... [DATABASE]\n"
           "Build the multi-index hashing index of a codes stream (DATABASE, -D or standard\n"
           "input) for dh-rank --index: the codes cut into M substrings, one table of\n"
           "buckets per substring. dh-rank checks the index against the database.\n\n"
           "  -D, --db FILE        the database codes stream (or the operand)\n"
           "  -t, --tables M       substrings (default: about log2(rows) - 3 bits each;\n"
           "                       at most %d bits a substring, at most %d tables)\n"
           "  -o, --output FILE    write the index to FILE atomically (default: stdout)\n"
           "  -j, --threads N      threads (default: all cores, or $DH_THREADS)\n"
           "  -q, --quiet          no report\n"
           "  -h, --help           this help\n"
           "  -V, --version        version\n\n"
           "Codes of 1..%d bits, at most 4294967295 rows. See dh-index(1).\n",
           DH_MIH_MAX_SUBBITS, DH_MIH_MAX_TABLES, DH_MIH_MAX_BITS);
}

static dh_outfile of; /* removed at exit unless committed */

int main(int argc, char **argv) {
    dh_prog_init("dh-index", argc, argv);
    static const struct option lo[] = {
        { "db", required_argument, 0, DH_OPT_DB },         { "tables", required_argument, 0, 't' },
        { "output", required_argument, 0, DH_OPT_OUTPUT }, { "threads", required_argument, 0, DH_OPT_THREADS },
        { "quiet", no_argument, 0, DH_OPT_QUIET },         { "help", no_argument, 0, DH_OPT_HELP },
        { "version", no_argument, 0, DH_OPT_VERSION },     { 0, 0, 0, 0 }
    };
    const char *db = NULL, *out = NULL;
    int tables = 0, threads = 0, c;
    while ((c = getopt_long(argc, argv, "D:t:o:j:qhV", lo, NULL)) != -1) {
        switch (c) {
        case DH_OPT_DB: db = optarg; break;
        case 't':
            if (dh_parse_int(optarg, 1, DH_MIH_MAX_TABLES, &tables) != 0)
                dh_usage_error("--tables: '%s' is not in 1..%d", optarg, DH_MIH_MAX_TABLES);
            break;
        case DH_OPT_OUTPUT: out = optarg; break;
        case DH_OPT_THREADS:
            if (dh_parse_int(optarg, 1, 256, &threads) != 0) dh_usage_error("--threads: '%s' is not in 1..256", optarg);
            break;
        default:
            if (!dh_common_option(c, 0, usage)) dh_bad_option(argv);
        }
    }
    threads = dh_prog_threads(threads); /* $DH_THREADS when no --threads was given */
    if (argc - optind > 1) dh_usage_error("one database at most");
    if (optind < argc) {
        if (db) dh_usage_error("the database twice: as -D and as an operand");
        db = argv[optind];
    }
    if ((!out || !strcmp(out, "-")) && isatty(STDOUT_FILENO))
        dh_usage_error("the index is binary: give -o FILE or redirect standard output");
    dh_err e;
    dh_codeset cs;
    double t0 = dh_now();
    if (dh_codes_load(db, &cs, 0, &e) != DH_OK) dh_die_err(&e, NULL);
    const char *name = dh_in_name(db);
    dh_mih *x;
    if (dh_mih_build(&x, cs.w, cs.n, cs.bits, tables, threads, &e) != DH_OK) dh_die_err(&e, name);
    const char *oname = out && strcmp(out, "-") ? out : "<stdout>";
    if (dh_out_open_guarded(&of, out, &e) != DH_OK) dh_die_err(&e, out);
    if (dh_mih_write(x, of.f, oname, &e) != DH_OK || dh_out_commit(&of, &e) != DH_OK) dh_die_err(&e, NULL);
    dh_note("%s: %lld codes of %d bits, %d tables, %.1f MB in memory when loaded, %.2f s", name, (long long)cs.n,
            cs.bits, dh_mih_tables(x), dh_mih_bytes(x) / 1e6, dh_now() - t0);
    dh_mih_free(x);
    dh_codes_free(&cs);
    return DH_EXIT_OK;
}
