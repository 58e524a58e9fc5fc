/* dh-head — the first N rows of a deephash stream. */
#include "dh_prog.h"
#include "dhs.h"
#include <getopt.h>

static const char usage[] = "Usage: dh-head [OPTION]... [FILE]\n"
                            "Write the first N rows of a deephash stream (standard input by default) as a\n"
                            "complete stream with the same schema and metadata.\n"
                            "\n"
                            "  -n, --rows N       rows to keep (default 10; 0 gives an empty stream)\n"
                            "  -o, --output FILE  write to FILE atomically (default: standard output)\n"
                            "  -q, --quiet        no messages but errors (dh-head prints none)\n"
                            "  -h, --help         show this help and exit\n"
                            "  -V, --version      show the version and exit\n"
                            "\n"
                            "Rows before the cut are verified; the rest of the input is not read.\n"
                            "Exit status: 0 ok, 1 damaged input, 2 usage, 3 I/O error.\n";

static void help(void) { fputs(usage, stdout); }

/* Removed at exit unless committed: a failed run leaves no file. */
static dh_outfile of;

int main(int argc, char **argv) {
    dh_prog_init("dh-head", argc, argv);
    static const struct option opts[] = {
        { "rows", required_argument, 0, DH_OPT_ROWS }, { "output", required_argument, 0, DH_OPT_OUTPUT },
        { "quiet", no_argument, 0, DH_OPT_QUIET },     { "help", no_argument, 0, DH_OPT_HELP },
        { "version", no_argument, 0, DH_OPT_VERSION }, { 0, 0, 0, 0 }
    };
    int64_t n = 10;
    const char *out = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "n:o:qhV", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'n':
            if (dh_parse_i64(optarg, 0, INT64_MAX, &n)) dh_usage_error("--rows: '%s' is not a row count", optarg);
            break;
        default:
            if (!dh_common_option(c, 0, help)) dh_bad_option(argv); /* -q, --help, --version */
        }
    }
    if (argc - optind > 1) dh_usage_error("one input at most");
    const char *path = optind < argc ? argv[optind] : NULL;
    dh_err e;
    dhs_reader *r = dhs_open_path(path, NULL, &e);
    if (!r) dh_die_err(&e, NULL);
    if (dh_out_open_guarded(&of, out, &e)) dh_die_err(&e, NULL);
    dhs_writer *w = dhs_writer_open(of.f, of.path ? of.path : "<stdout>", dhs_reader_schema(r), dhs_reader_meta(r), &e);
    if (!w) dh_die_err(&e, NULL);
    int64_t done = 0;
    while (done < n) {
        dhs_chunk *ch;
        int rc = dhs_read_chunk(r, &ch, &e);
        if (rc == DH_EOF) break;
        if (rc) {
            dhs_writer_abort(w);
            dh_die_err(&e, NULL);
        }
        int64_t k = ch->nrows < n - done ? ch->nrows : n - done;
        if (dhs_write_chunk_range(w, ch, 0, k, &e)) {
            dhs_writer_abort(w);
            dh_die_err(&e, NULL);
        }
        done += k;
    }
    if (dhs_writer_close(w, &e) || dh_out_commit(&of, &e)) dh_die_err(&e, NULL);
    dhs_close(r);
    return 0;
}
