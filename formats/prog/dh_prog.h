/* dh_prog.h — what every deephash program shares: its name, the exit
 * statuses, the one-line error convention, input/output opening, atomic
 * output files, and the progress line.
 *
 * The skeleton of every main():
 *     dh_prog_init("dh-foo", argc, argv);
 *     parse options into a struct (getopt_long; --help -> dh_usage text on
 *         stdout, exit 0; --version -> dh_version(); bad option -> exit 2)
 *     open input (default stdin), read and check the header
 *     loop over chunks
 *     close and check; exit DH_EXIT_OK
 */
#ifndef DH_PROG_H
#define DH_PROG_H
#include <stdio.h>
#include <stdint.h>
#include "dh_util.h"
#include "dh_opts.h"

/* Exit statuses, the same for every program (documented in each man page). */
enum {
    DH_EXIT_OK = 0,     /* success                                              */
    DH_EXIT_FAIL = 1,   /* bad or damaged input data, or the work failed       */
    DH_EXIT_USAGE = 2,  /* bad command line: unknown option, bad value         */
    DH_EXIT_IO = 3,     /* a file could not be opened, read or written         */
    DH_EXIT_DEVICE = 4, /* CUDA requested but unavailable, or a device failure */
    DH_EXIT_NOMEM = 5   /* out of memory or beyond a configured limit           */
};

extern const char *dh_progname;
extern int dh_quiet;       /* --quiet: no progress */
extern int dh_progress_on; /* progress shown: stderr is a tty, or --progress */

/* Set the program name, remember the command line (for stream metadata),
 * restore default SIGPIPE so `| head` ends us quietly. */
void dh_prog_init(const char *name, int argc, char **argv);
const char *dh_cmdline(void); /* the command line, shell-quoted */
/* From now on dh_cmdline leaves out the options named in omit (long names
 * taking a value, NULL-terminated), as given before getopt_long permuted
 * argv (dh_ckpt: the checkpoint options). */
void dh_cmdline_omit(const char *const *omit);

/* "dh-prog: message" on stderr, then exit(status). */
void dh_die(int status, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
/* "dh-prog: ctx: e->msg" (ctx may be NULL) and the exit status for e->code;
 * ctx is left out when the message already starts with "ctx: " (a path
 * named once, not twice). */
void dh_die_err(const dh_err *e, const char *ctx) __attribute__((noreturn));
int dh_exit_status(dh_code c);
/* Usage error: "dh-prog: msg" + "Try 'dh-prog --help'." is NOT printed (one
 * line only); exits DH_EXIT_USAGE. */
void dh_usage_error(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* After getopt_long returned '?' or ':' (dh_prog_init sets opterr = 0 so
 * getopt prints nothing): one line naming the bad option, exit 2; a letter
 * registered with dh_prog_moved is refused with dh_refuse_moved instead. */
void dh_bad_option(char **argv) __attribute__((noreturn));
/* Print "dh-prog (deephash) VERSION" on stdout and exit 0. */
void dh_version(void) __attribute__((noreturn));

/* The options every stage program shares, to end its getopt_long table:
 * -q/--quiet, --progress (getopt value `progress`), -h/--help, -V/--version. */
#define DH_COMMON_LONGOPTS(progress)                                                                                   \
    { "quiet", 0, 0, 'q' }, { "progress", 0, 0, (progress) }, { "help", 0, 0, 'h' }, { "version", 0, 0, 'V' }, {       \
        0, 0, 0, 0                                                                                                     \
    }
/* Handle getopt value c if it is one of DH_COMMON_LONGOPTS: -q sets dh_quiet,
 * --progress dh_progress_on, -h calls usage() and exits 0, -V dh_version();
 * getopt's '?' or ':' (a bad option) ends the program through dh_bad_option.
 * Returns 1 when c was one of them, 0 otherwise (the caller reports it). */
int dh_common_option(int c, int progress, void (*usage)(void));
/* The one optional input operand after the options: argv[optind], or NULL
 * (standard input) when there is none; more than one is a usage error. */
const char *dh_input_arg(int argc, char **argv);

/* Usage error when option opt's value optval is "-" (standard input) and the
 * input operand (NULL or "-": standard input too) would read it as well. */
void dh_stdin_once(const char *opt, const char *optval, const char *operand);

/* The search programs' thread count: `given` (their --threads) when it is
 * not 0, else $DH_THREADS or the processors (dh_rank_default_threads);
 * dies "dh-prog: environment: DH_THREADS='x': ..." on a bad DH_THREADS. */
int dh_prog_threads(int given);

/* Open an input: NULL or "-" is stdin. Dies with DH_EXIT_IO on failure. */
FILE *dh_open_in(const char *path);
/* Display name for messages: "<stdin>" for NULL/"-". */
const char *dh_in_name(const char *path);

/* Atomic output. path NULL or "-" writes stdout directly. Otherwise writes a
 * temporary file beside path and renames it over path at commit, so a
 * failed run never leaves a partial file under the final name. */
typedef struct dh_outfile {
    FILE *f;
    char *path; /* final path (NULL for stdout) */
    char *tmp;  /* temporary path */
} dh_outfile;
int dh_out_open(dh_outfile *o, const char *path, dh_err *e);
int dh_out_commit(dh_outfile *o, dh_err *e); /* fflush, fsync, close, rename */
void dh_out_abort(dh_outfile *o);            /* close and unlink temp */
/* The signal handler of dh_out_open (installed for SIGINT, SIGTERM and
 * SIGHUP unless the program handles them): unlink the temporary files not
 * yet committed, then die by sig. */
void dh_out_on_signal(int sig);
/* dh_out_open, then dh_out_abort(o) at exit (a no-op once committed), so a
 * program that dies between opening and committing leaves no file. For one
 * output per program; o must last until exit (a static). */
int dh_out_open_guarded(dh_outfile *o, const char *path, dh_err *e);

/* Save a model atomically to path (temporary file + rename), or to stdout
 * for NULL or "-": dh_out_open, dhs_model_write, dh_out_commit. */
struct dhs_model;
int dh_model_save(const char *path, const struct dhs_model *m, dh_err *e);

/* Provenance an output carries over from its input's meta (in may be NULL):
 * "source" when it is a string, "classes" when it is a non-empty array of
 * strings. Best effort: what cannot be copied is left out. */
struct dhs_meta;
void dh_meta_carry(struct dhs_meta *out, const struct dhs_meta *in);

/* Progress on stderr: "\rdh-prog: what  done/total  rate/s  ETA".
 * Only when dh_progress_on and !dh_quiet; updates at most 4 times a second. */
typedef struct dh_progress {
    const char *what;
    const char *unit;
    int64_t total; /* 0 if unknown */
    double t0, tlast;
    int shown;
} dh_progress;
void dh_progress_start(dh_progress *p, const char *what, const char *unit, int64_t total);
void dh_progress_update(dh_progress *p, int64_t done);
void dh_progress_end(dh_progress *p, int64_t done);
/* A full line of progress/report on stderr (respects --quiet). */
void dh_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
