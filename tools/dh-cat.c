/* dh-cat — concatenate deephash streams that share a schema. */
#include "dh_prog.h"
#include "dhs.h"
#include <getopt.h>
#include <string.h>

static const char usage[] = "Usage: dh-cat [OPTION]... [FILE]...\n"
                            "Concatenate deephash streams (standard input when no FILE or FILE is -) into one\n"
                            "stream on standard output. All inputs must have the same kind and fields; the\n"
                            "metadata of the first input is kept. Every chunk is verified on the way through.\n"
                            "\n"
                            "  -o, --output FILE  write to FILE atomically (default: standard output)\n"
                            "  -q, --quiet        no progress\n"
                            "  -h, --help         show this help and exit\n"
                            "  -V, --version      show the version and exit\n"
                            "\n"
                            "Exit status: 0 ok, 1 damaged input or schemas that differ, 2 usage, 3 I/O error.\n";

static void help(void) { fputs(usage, stdout); }

/* Removed at exit unless committed: a failed run leaves no file. */
static dh_outfile of;

int main(int argc, char **argv) {
    dh_prog_init("dh-cat", argc, argv);
    static const struct option opts[] = { { "output", required_argument, 0, DH_OPT_OUTPUT },
                                          { "quiet", no_argument, 0, DH_OPT_QUIET },
                                          { "help", no_argument, 0, DH_OPT_HELP },
                                          { "version", no_argument, 0, DH_OPT_VERSION },
                                          { 0, 0, 0, 0 } };
    const char *out = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "o:qhV", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        default:
            if (!dh_common_option(c, 0, help)) dh_bad_option(argv); /* -q, --help, --version */
        }
    }
    const char *stdin_only[] = { "-" };
    const char **inputs = optind < argc ? (const char **)argv + optind : stdin_only;
    int ninputs = optind < argc ? argc - optind : 1;
    dh_err e;
    dhs_writer *w = NULL;
    dhs_schema first;
    dh_progress p;
    dh_progress_start(&p, "rows", "rows", 0);
    int64_t rows = 0;
    for (int i = 0; i < ninputs; i++) {
        dhs_reader *r = dhs_open_path(inputs[i], NULL, &e);
        if (!r) {
            dhs_writer_abort(w);
            dh_die_err(&e, NULL);
        }
        if (!w) {
            first = *dhs_reader_schema(r);
            if (dh_out_open_guarded(&of, out, &e)) dh_die_err(&e, NULL);
            w = dhs_writer_open(of.f, of.path ? of.path : "<stdout>", &first, dhs_reader_meta(r), &e);
            if (!w) dh_die_err(&e, NULL);
        } else if (!dhs_schema_equal(&first, dhs_reader_schema(r))) {
            char a[512], b[512];
            dhs_schema_describe(&first, a, sizeof a);
            dhs_schema_describe(dhs_reader_schema(r), b, sizeof b);
            dhs_writer_abort(w);
            dh_die(DH_EXIT_FAIL, "%s: schema differs from the first input: %s %s vs %s %s", dh_in_name(inputs[i]),
                   dhs_reader_schema(r)->kind, b, first.kind, a);
        }
        dhs_chunk *ch;
        int rc;
        while ((rc = dhs_read_chunk(r, &ch, &e)) == DH_OK) {
            if (dhs_write_chunk(w, ch, &e)) {
                dhs_writer_abort(w);
                dh_die_err(&e, NULL);
            }
            rows += ch->nrows;
            dh_progress_update(&p, rows);
        }
        if (rc != DH_EOF) {
            dhs_writer_abort(w);
            dh_die_err(&e, NULL);
        }
        dhs_close(r);
    }
    dh_progress_end(&p, rows);
    if (dhs_writer_close(w, &e) || dh_out_commit(&of, &e)) dh_die_err(&e, NULL);
    return 0;
}
