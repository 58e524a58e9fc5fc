/* dh_opts.h — the option grammar every deephash program follows.
 *
 * A short letter means the same thing in every program, or nothing. The
 * reserved letters (and their long options, which are the interface
 * scripts rely on):
 *
 *     -b --bits K         code length            -B --batch N      mini-batch size
 *     -d --device DEV     cpu, cuda or auto       -D --db FILE      database codes
 *     -m --model FILE     a model file (--net)    -o --output FILE  atomic output file
 *     -s --seed N         random seed             -n --limit/--rows N  a row count
 *     -j --threads N      worker threads          -q --quiet        no progress, no report
 *     -h --help           help, exit 0            -V --version      version, exit 0
 *
 * A program uses a reserved letter only for its reserved option (a program
 * without that option leaves the letter unknown to getopt: "invalid
 * option"). A letter a program used to give another option is refused
 * with one usage line naming the new letter (exit 2), e.g.
 *     dh-feats: -b is --bits in deephash; the batch size is -B (--batch)
 * Long options never change. Other letters (-M --method, -S --split ...)
 * are each program's own, documented in its man page; deephash(7) has
 * the table.
 *
 * In a program:
 *     static const dh_moved moved[] = { { 'b', "batch size", 'B', "batch" }, { 0 } };
 *     dh_prog_moved(moved);            // before the getopt loop
 *     { "batch", 1, 0, DH_OPT_BATCH }  // in the getopt_long table
 * The moved letters stay out of the getopt short-option string, so getopt
 * returns '?' for them whatever follows; dh_bad_option (through
 * dh_common_option) then prints the refusal instead of "invalid option".
 */
#ifndef DH_OPTS_H
#define DH_OPTS_H

/* The reserved letters, for getopt_long tables. */
enum {
    DH_OPT_BITS = 'b',    /* --bits K                        */
    DH_OPT_BATCH = 'B',   /* --batch N                       */
    DH_OPT_DEVICE = 'd',  /* --device cpu|cuda|auto          */
    DH_OPT_DB = 'D',      /* --db FILE                       */
    DH_OPT_MODEL = 'm',   /* --model FILE (also --net, dh-finetune) */
    DH_OPT_OUTPUT = 'o',  /* --output FILE, written atomically */
    DH_OPT_SEED = 's',    /* --seed N                        */
    DH_OPT_ROWS = 'n',    /* --limit N or --rows N: a row count */
    DH_OPT_THREADS = 'j', /* --threads N                     */
    DH_OPT_QUIET = 'q',   /* --quiet                         */
    DH_OPT_HELP = 'h',    /* --help                          */
    DH_OPT_VERSION = 'V'  /* --version                       */
};

/* One reserved letter: its long option(s) as the refusal names them. */
typedef struct dh_letter {
    char letter;
    const char *longopt; /* "--bits", "--limit/--rows" */
    const char *meaning; /* "code length" */
} dh_letter;
/* The table above, ending with { 0 }. */
extern const dh_letter dh_letters[];
/* The reserved entry of letter c, or NULL when c is not reserved. */
const dh_letter *dh_letter_find(int c);

/* A short letter a program gave up: it used to mean `what` (e.g. "batch
 * size"), which is now -newletter (0: no short letter) --newlong. */
typedef struct dh_moved {
    char letter;
    const char *what;
    char newletter;
    const char *newlong; /* without the dashes */
} dh_moved;

/* Register the program's moved letters (a { 0 }-terminated array that lasts
 * until exit); dh_bad_option refuses them with dh_refuse_moved. */
void dh_prog_moved(const dh_moved *moved);

/* "dh-prog: -b is --bits in deephash; the batch size is -B (--batch)" on
 * stderr, exit 2 (DH_EXIT_USAGE). A letter that is not reserved reads
 * "-x is not an option of dh-prog any more; the ... is ...". */
void dh_refuse_moved(int letter, const char *what, int newletter, const char *newlong) __attribute__((noreturn));

#endif
